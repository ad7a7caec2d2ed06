// SPDX-License-Identifier: GPL-2.0
/*
 * MORSEL_IOC_FILL: pages read from a file straight into holes.  Data lands
 * at the marked pages in order; pages that are not holes keep what they
 * have; a wrong crc or a short file installs nothing; bad arguments,
 * read-only objects, frozen objects and children are refused with their
 * errno; sources of every kind (a plain file, O_DIRECT where the file
 * system has it, another morsel, the object itself); two threads filling
 * the same window install each page once; a mapping sees filled pages;
 * a mount's size= limit holds; filled pages are dirty for the next save.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include "libmorsel.h"
#include "objtest.h"

#define PG	4096LL
#define SRC	"/tmp/fill.src"
#define SRC_PAGES 1024
#define MNT	"/tmp/fill-mnt"

static char buf[2 * 1024 * 1024] __attribute__((aligned(4096)));

/* Page @i of the source file: every byte says which page it is. */
static void pattern(char *p, long i)
{
	for (long b = 0; b < PG; b += 8)
		snprintf(p + b, 9, "%07lx", (i * 8191 + b) & 0xfffffff);
}

static int make_source(void)
{
	int fd = open(SRC, O_CREAT | O_TRUNC | O_RDWR, 0600);

	for (long i = 0; fd >= 0 && i < SRC_PAGES; i++) {
		pattern(buf, i);
		if (pwrite(fd, buf, PG, i * PG) != PG)
			return -1;
	}
	return fd;
}

static uint32_t crc_of_source(long first, long n)
{
	uint32_t crc = 0;

	for (long i = first; i < first + n; i++) {
		pattern(buf, i);
		crc = mimg_crc32c(crc, buf, PG);
	}
	return crc;
}

/* Does page @pg of @fd hold source page @src (or zeros for src < 0)? */
static int page_is(int fd, long pg, long src)
{
	static char want[4096], got[4096];

	if (src < 0)
		memset(want, 0, PG);
	else
		pattern(want, src);
	return pread(fd, got, PG, pg * PG) == PG && !memcmp(got, want, PG);
}

static void window(struct morsel_fill *f, long long offset, unsigned int nr,
		   long long file_offset)
{
	memset(f, 0, sizeof(*f));
	f->offset = offset;
	f->nr_pages = nr;
	f->file_offset = file_offset;
}

static void mark(struct morsel_fill *f, unsigned int bit)
{
	f->map[bit / 64] |= 1ULL << (bit % 64);
}

static int fill(int fd, int src, struct morsel_fill *f)
{
	int ret = morsel_fill(fd, src, f);

	errno = ret < 0 ? -ret : 0;
	return ret ? -1 : 0;
}

static int obj(const char *name, long long size)
{
	int fd = morsel_create(name, size, 0600);

	tap_require(fd >= 0, "create %s", name);
	return fd;
}

static void rm(const char *name)
{
	char path[256];

	morsel_path(name, path, sizeof(path));
	unlink(path);
}

static void whole_window(int src)
{
	struct morsel_fill f;
	int fd = obj("fill-a", 8 * MiB), ok = 1;

	window(&f, 2 * MiB, 512, 100 * PG);
	memset(f.map, 0xff, sizeof(f.map));
	f.flags = MORSEL_FILL_CRC;
	f.crc = crc_of_source(100, 512);
	tap_ok(fill(fd, src, &f) == 0 && f.filled == 512 &&
	       f.read == 512 * PG && f.crc == crc_of_source(100, 512),
	       "a whole 2 MiB window: 512 pages filled, 2 MiB read, crc back");
	for (long i = 0; i < 512; i++)
		ok &= page_is(fd, 512 + i, 100 + i);
	tap_ok(ok, "every page holds its page of the file");
	tap_ok(data_of(fd) == 512 && page_is(fd, 0, -1) &&
	       lseek(fd, 0, SEEK_DATA) == 2 * MiB,
	       "nothing else was allocated (512 data pages, first data at 2 MiB)");
	close(fd);
	rm("fill-a");
}

static void scatter_and_keep(int src)
{
	struct morsel_fill f;
	int fd = obj("fill-b", 4 * MiB);
	char tag[4096];

	window(&f, 0, 512, 10 * PG);
	mark(&f, 0);
	mark(&f, 3);
	mark(&f, 511);
	tap_ok(fill(fd, src, &f) == 0 && f.filled == 3 && f.read == 3 * PG,
	       "three marked pages: three filled, three pages read");
	tap_ok(page_is(fd, 0, 10) && page_is(fd, 3, 11) &&
	       page_is(fd, 511, 12) && data_of(fd) == 3,
	       "they land at pages 0, 3, 511 in file order; nothing else");
	memset(tag, 'T', sizeof(tag));
	tap_require(pwrite(fd, tag, PG, 5 * PG) == PG);
	window(&f, 0, 8, 20 * PG);
	mark(&f, 4);
	mark(&f, 5);
	mark(&f, 6);
	tap_ok(fill(fd, src, &f) == 0 && f.filled == 2,
	       "a page that is no longer a hole is skipped (filled 2 of 3)");
	pread(fd, buf, PG, 5 * PG);
	tap_ok(page_is(fd, 4, 20) && !memcmp(buf, tag, PG) &&
	       page_is(fd, 6, 22),
	       "it keeps its own data; the others get pages 20 and 22");
	close(fd);
	rm("fill-b");
}

static void refused_data(int src)
{
	struct morsel_fill f;
	int fd = obj("fill-c", 4 * MiB);
	long before = total("data_pages");

	window(&f, 0, 512, 0);
	memset(f.map, 0xff, sizeof(f.map));
	f.flags = MORSEL_FILL_CRC;
	f.crc = crc_of_source(0, 512) ^ 1;
	tap_errno(fill(fd, src, &f), EBADMSG, "a wrong crc: EBADMSG");
	tap_ok(f.crc == crc_of_source(0, 512) && f.read == 2 * MiB &&
	       f.filled == 0, "the crc read is reported, nothing filled");
	tap_ok(data_of(fd) == 0 && total("data_pages") == before,
	       "and no frame was kept");
	window(&f, 0, 512, (SRC_PAGES - 100) * PG);
	memset(f.map, 0xff, sizeof(f.map));
	tap_errno(fill(fd, src, &f), ENODATA,
		  "the file ends inside the data: ENODATA");
	tap_ok(f.read == 100 * PG && data_of(fd) == 0,
	       "read says where it ended (%llu bytes), nothing filled",
	       (unsigned long long)f.read);
	close(fd);
	rm("fill-c");
}

static void bad_arguments(int src)
{
	struct morsel_fill f;
	int fd = obj("fill-d", 4 * MiB + PG), ro, wo, child, ret;

	window(&f, 0, 1, 0);
	mark(&f, 0);
	f.argsz = sizeof(f) - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_FILL, &f), EINVAL, "argsz short: EINVAL");
	f.argsz = sizeof(f);
	f.fd = src;
	f.flags = 1U << 7;
	tap_errno(ioctl(fd, MORSEL_IOC_FILL, &f), EINVAL, "unknown flag: EINVAL");
	f.flags = 0;
	f.reserved[2] = 1;
	tap_errno(ioctl(fd, MORSEL_IOC_FILL, &f), EINVAL,
		  "reserved not zero: EINVAL");
	window(&f, 0, 0, 0);
	mark(&f, 0);
	tap_errno(fill(fd, src, &f), EINVAL, "no pages: EINVAL");
	window(&f, 0, 513, 0);
	mark(&f, 0);
	tap_errno(fill(fd, src, &f), EINVAL, "513 pages: EINVAL");
	window(&f, 0, 512, 0);
	tap_errno(fill(fd, src, &f), EINVAL, "an empty map: EINVAL");
	window(&f, 0, 8, 0);
	mark(&f, 8);
	tap_errno(fill(fd, src, &f), EINVAL, "a bit past nr_pages: EINVAL");
	window(&f, 100, 1, 0);
	mark(&f, 0);
	tap_errno(fill(fd, src, &f), EINVAL, "an unaligned offset: EINVAL");
	window(&f, 4 * MiB, 512, 0);
	mark(&f, 0);
	mark(&f, 1);
	tap_errno(fill(fd, src, &f), EINVAL,
		  "a marked page past the size: EINVAL");
	window(&f, 1ULL << 39, 1, 0);
	mark(&f, 0);
	tap_errno(fill(fd, src, &f), EINVAL, "past 512 GiB: EINVAL");
	window(&f, 0, 1, -4096);
	mark(&f, 0);
	tap_errno(fill(fd, src, &f), EINVAL, "a negative file offset: EINVAL");
	window(&f, 0, 1, 0);
	mark(&f, 0);
	tap_errno(fill(fd, -1, &f), EBADF, "no source descriptor: EBADF");
	wo = open(SRC, O_WRONLY);
	tap_errno(fill(fd, wo, &f), EBADF, "a write-only source: EBADF");
	close(wo);
	wo = open("/tmp", O_RDONLY | O_DIRECTORY);
	ret = fill(fd, wo, &f) ? errno : 0;
	tap_ok(ret == EISDIR || ret == EINVAL,
	       "a directory as source is refused (%s)", strerror(ret));
	close(wo);
	tap_errno(ioctl(fd, MORSEL_IOC_FILL, (void *)16), EFAULT,
		  "a bad argument pointer: EFAULT");
	{
		char path[256];

		morsel_path("fill-d", path, sizeof(path));
		ro = open(path, O_RDONLY);
		tap_errno(fill(ro, src, &f), EBADF,
			  "an object open read-only: EBADF");
		close(ro);
	}
	tap_ok(data_of(fd) == 0, "none of that filled anything");
	tap_require(pwrite(fd, "x", 1, 0) == 1);
	tap_require(morsel_freeze(fd) == 0);
	window(&f, 0, 2, 0);
	mark(&f, 1);
	tap_errno(fill(fd, src, &f), EPERM, "a frozen object: EPERM");
	child = morsel_split(fd, NULL);
	tap_require(child >= 0);
	tap_errno(fill(child, src, &f), EINVAL,
		  "a copy-on-write child: EINVAL (a hole may hide the base)");
	tap_ok(data_of(fd) == 1 && data_of(child) == 0,
	       "neither changed");
	close(child);
	close(fd);
	rm("fill-d");
}

static void sources(void)
{
	struct morsel_fill f;
	int fd = obj("fill-e", 4 * MiB), other, dio;

	/* Another morsel as the source, then the object itself. */
	other = obj("fill-e2", 2 * MiB);
	pattern(buf, 7);
	tap_require(pwrite(other, buf, PG, 3 * PG) == PG);
	window(&f, 0, 1, 3 * PG);
	mark(&f, 0);
	tap_ok(fill(fd, other, &f) == 0 && f.filled == 1 && page_is(fd, 0, 7),
	       "a morsel as the source");
	window(&f, 0, 2, 0);
	mark(&f, 1);
	tap_ok(fill(fd, fd, &f) == 0 && f.filled == 1 && page_is(fd, 1, 7),
	       "the object itself as the source (no lock held while reading)");
	close(other);
	rm("fill-e2");
	dio = open(SRC, O_RDONLY | O_DIRECT);
	if (dio < 0) {
		tap_ok(1, "# SKIP O_DIRECT: %s on /tmp", strerror(errno));
	} else {
		window(&f, 2 * MiB, 512, 200 * PG);
		memset(f.map, 0xff, sizeof(f.map));
		f.flags = MORSEL_FILL_CRC;
		f.crc = crc_of_source(200, 512);
		tap_ok(fill(fd, dio, &f) == 0 && f.filled == 512 &&
		       page_is(fd, 512, 200) && page_is(fd, 1023, 711),
		       "an O_DIRECT source");
		close(dio);
	}
	close(fd);
	rm("fill-e");
}

struct racer {
	int fd, src, ret;
	unsigned int filled;
};

static pthread_barrier_t start;

static void *race(void *arg)
{
	struct racer *r = arg;
	struct morsel_fill f;

	pthread_barrier_wait(&start);
	window(&f, 0, 512, 300 * PG);
	memset(f.map, 0xff, sizeof(f.map));
	r->ret = morsel_fill(r->fd, r->src, &f);
	r->filled = f.filled;
	return NULL;
}

static void concurrent(int src)
{
	int fd = obj("fill-f", 2 * MiB), ok = 1;
	struct racer r[2] = { { fd, src, 0, 0 }, { fd, src, 0, 0 } };
	pthread_t t[2];

	pthread_barrier_init(&start, NULL, 2);
	for (int round = 0; round < 20 && ok; round++) {
		tap_require(fallocate(fd, FALLOC_FL_PUNCH_HOLE |
				      FALLOC_FL_KEEP_SIZE, 0, 2 * MiB) == 0);
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, race, &r[i]);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		ok = !r[0].ret && !r[1].ret &&
		     r[0].filled + r[1].filled == 512 && data_of(fd) == 512 &&
		     page_is(fd, 0, 300) && page_is(fd, 511, 811);
	}
	tap_ok(ok, "two threads fill one window 20 times: each page "
	       "filled once (%u + %u)", r[0].filled, r[1].filled);
	pthread_barrier_destroy(&start);
	close(fd);
	rm("fill-f");
}

static void mapped(int src)
{
	int fd = obj("fill-g", 2 * MiB);
	struct morsel_fill f;
	struct morsel_scan s;
	uint64_t dirty[8];
	volatile char *p;
	char c;

	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	c = p[0];		/* a read fault: page 0 is no hole now */
	(void)c;
	window(&f, 0, 2, 40 * PG);
	mark(&f, 0);
	mark(&f, 1);
	tap_ok(fill(fd, src, &f) == 0 && f.filled == 1,
	       "a page faulted in through a mapping is not a hole");
	pattern(buf, 41);
	tap_ok(!memcmp((const char *)p + PG, buf, PG) && p[0] == 0,
	       "the mapping sees the filled page at once, page 0 stays zero");
	tap_require(morsel_scan(fd, 0, 2 * MiB, MORSEL_SCAN_CLEAN, 0, NULL,
				NULL, dirty, &s) == 0);
	window(&f, 0, 3, 42 * PG);
	mark(&f, 2);
	tap_require(fill(fd, src, &f) == 0 && f.filled == 1);
	tap_require(morsel_scan(fd, 0, 2 * MiB, 0, 0, NULL, NULL, dirty,
				&s) == 0);
	tap_ok(s.dirty_pages == 1 && (dirty[0] & 4),
	       "a filled page is dirty for the next incremental save");
	munmap((void *)p, 2 * MiB);
	close(fd);
	rm("fill-g");
}

static void quota(int src)
{
	struct morsel_fill f;
	char path[64];
	int fd;

	mkdir(MNT, 0700);
	if (mount("none", MNT, "morselfs", 0, "size=1M")) {
		tap_ok(0, "mount morselfs size=1M: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/q", MNT);
	fd = morsel_create(path, 4 * MiB, 0600);
	tap_require(fd >= 0);
	window(&f, 0, 512, 0);
	memset(f.map, 0xff, sizeof(f.map));
	tap_errno(fill(fd, src, &f), ENOSPC,
		  "2 MiB into a mount of size=1M: ENOSPC");
	window(&f, 0, 256, 0);
	memset(f.map, 0xff, 32);
	tap_ok(fill(fd, src, &f) == 0 && f.filled == 256,
	       "and nothing was held back by it: 1 MiB still fits");
	close(fd);
	unlink(path);
	umount(MNT);
	rmdir(MNT);
}

int main(void)
{
	int src;

	tap_plan(41);
	src = make_source();
	tap_require(src >= 0, "source file");
	whole_window(src);
	scatter_and_keep(src);
	refused_data(src);
	bad_arguments(src);
	sources();
	concurrent(src);
	mapped(src);
	quota(src);
	close(src);
	unlink(SRC);
	return tap_done();
}
