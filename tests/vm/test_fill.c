// SPDX-License-Identifier: GPL-2.0
/*
 * MORSEL_IOC_FILL: pages read from a file straight into holes.  Data lands
 * at the listed pages in order; pages that are not holes keep what they
 * have; a wrong crc in any run or a short file installs nothing; bad arguments,
 * read-only objects, frozen objects and children are refused with their
 * errno; sources of every kind (a plain file, O_DIRECT where the file
 * system has it, another morsel, the object itself); two threads filling
 * the same window install each page once; a mapping sees filled pages;
 * a mount's size= limit holds; filled pages are dirty for the next save;
 * a fill that installs is a modification (mtime, inotify IN_MODIFY), one
 * that installs nothing is not.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include "libmorsel.h"
#include "vm.h"

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

/* One MORSEL_IOC_FILL request: where the pages go, and their runs. */
struct req {
	struct morsel_fill f;
	uint64_t pages[MORSEL_FILL_MAX_PAGES];
	struct morsel_fill_run runs[MORSEL_FILL_MAX_PAGES];
};

static void req_init(struct req *r, long long file_offset)
{
	memset(r, 0, sizeof(*r));
	r->f.file_offset = file_offset;
	r->f.pages = (uintptr_t)r->pages;
}

static void req_pages(struct req *r, uint64_t first, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		r->pages[r->f.nr_pages++] = first + i;
}

/* The next @n pages of the file form a run whose crc32c is @crc. */
static void req_run(struct req *r, unsigned int n, uint32_t crc)
{
	r->runs[r->f.nr_runs].nr_pages = n;
	r->runs[r->f.nr_runs].crc = crc;
	r->f.nr_runs++;
	r->f.runs = (uintptr_t)r->runs;
	r->f.flags |= MORSEL_FILL_CRC;
}

static int fill(int fd, int src, struct req *r)
{
	int ret = morsel_fill(fd, src, &r->f);

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
	int fd = obj("fill-a", 8 * MiB), ok = 1;
	struct req r;

	req_init(&r, 100 * PG);
	req_pages(&r, 512, 512);
	req_run(&r, 512, crc_of_source(100, 512));
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 512 &&
	       r.f.read == 512 * PG,
	       "512 pages with their crc: 512 filled, 2 MiB read");
	for (long i = 0; i < 512; i++)
		ok &= page_is(fd, 512 + i, 100 + i);
	tap_ok(ok, "every page holds its page of the file");
	tap_ok(data_of(fd) == 512 && page_is(fd, 0, -1) &&
	       lseek(fd, 0, SEEK_DATA) == 2 * MiB,
	       "nothing else was allocated (512 data pages, first data at 2 MiB)");
	close(fd);
	rm("fill-a");
}

static void scattered(int src)
{
	int fd = obj("fill-b", 64 * MiB);
	char tag[4096];
	struct req r;

	req_init(&r, 10 * PG);
	r.pages[0] = 0;
	r.pages[1] = 3;
	r.pages[2] = 9000;	/* another PTE table */
	r.f.nr_pages = 3;
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 3 &&
	       r.f.read == 3 * PG && r.f.crc == crc_of_source(10, 3),
	       "three listed pages: filled, read, and the crc of all of it back");
	tap_ok(page_is(fd, 0, 10) && page_is(fd, 3, 11) &&
	       page_is(fd, 9000, 12) && data_of(fd) == 3,
	       "they land at pages 0, 3, 9000 in file order; nothing else");
	/* Three records of 1, 2 and 1 pages, each with its own crc. */
	req_init(&r, 30 * PG);
	req_pages(&r, 100, 1);
	req_pages(&r, 200, 2);
	req_pages(&r, 4000, 1);
	req_run(&r, 1, crc_of_source(30, 1));
	req_run(&r, 2, crc_of_source(31, 2));
	req_run(&r, 1, crc_of_source(33, 1));
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 4 &&
	       page_is(fd, 100, 30) && page_is(fd, 201, 32) &&
	       page_is(fd, 4000, 33),
	       "three runs with their own crcs, one request");
	memset(tag, 'T', sizeof(tag));
	tap_require(pwrite(fd, tag, PG, 5 * PG) == PG);
	req_init(&r, 20 * PG);
	req_pages(&r, 4, 3);
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 2,
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
	int fd = obj("fill-c", 4 * MiB);
	long before = total("data_pages");
	struct req r;

	req_init(&r, 0);
	req_pages(&r, 0, 512);
	req_run(&r, 512, crc_of_source(0, 512) ^ 1);
	tap_errno(fill(fd, src, &r), EBADMSG, "a wrong crc: EBADMSG");
	tap_ok(r.f.crc == crc_of_source(0, 512) && r.f.bad_run == 0 &&
	       r.f.read == 2 * MiB && r.f.filled == 0,
	       "the run and the crc read are reported, nothing filled");
	tap_ok(data_of(fd) == 0 && total("data_pages") == before,
	       "and no frame was kept");
	req_init(&r, 0);
	req_pages(&r, 0, 3);
	req_run(&r, 1, crc_of_source(0, 1));
	req_run(&r, 1, crc_of_source(1, 1));
	req_run(&r, 1, crc_of_source(2, 1) ^ 4);
	tap_errno(fill(fd, src, &r), EBADMSG, "a wrong crc in the third run");
	tap_ok(r.f.bad_run == 2 && data_of(fd) == 0,
	       "bad_run is 2, and the good runs were not installed either");
	req_init(&r, (SRC_PAGES - 100) * PG);
	req_pages(&r, 0, 512);
	tap_errno(fill(fd, src, &r), ENODATA,
		  "the file ends inside the data: ENODATA");
	tap_ok(r.f.read == 100 * PG && data_of(fd) == 0,
	       "read says where it ended (%llu bytes), nothing filled",
	       (unsigned long long)r.f.read);
	close(fd);
	rm("fill-c");
}

static void bad_arguments(int src)
{
	int fd = obj("fill-d", 4 * MiB + PG), ro, wo, child, ret;
	struct req r;

	req_init(&r, 0);
	req_pages(&r, 0, 1);
	r.f.argsz = sizeof(r.f) - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_FILL, &r.f), EINVAL,
		  "argsz short: EINVAL");
	r.f.argsz = sizeof(r.f);
	r.f.fd = src;
	r.f.flags = 1U << 7;
	tap_errno(ioctl(fd, MORSEL_IOC_FILL, &r.f), EINVAL,
		  "unknown flag: EINVAL");
	r.f.flags = 0;
	{
		struct { struct morsel_fill f; uint64_t tail; } big;

		memset(&big, 0, sizeof(big));
		big.f = r.f;
		big.f.argsz = sizeof(big);
		big.tail = 1;
		tap_errno(ioctl(fd, MORSEL_IOC_FILL, &big), E2BIG,
			  "a field the module does not know set: E2BIG");
	}
	req_init(&r, 0);
	tap_errno(fill(fd, src, &r), EINVAL, "no pages: EINVAL");
	req_init(&r, 0);
	req_pages(&r, 0, 512);
	r.f.nr_pages = 513;
	tap_errno(fill(fd, src, &r), EINVAL, "513 pages: EINVAL");
	req_init(&r, 0);
	r.pages[0] = 5;
	r.pages[1] = 5;
	r.f.nr_pages = 2;
	tap_errno(fill(fd, src, &r), EINVAL, "a page listed twice: EINVAL");
	r.pages[1] = 4;
	tap_errno(fill(fd, src, &r), EINVAL, "pages out of order: EINVAL");
	req_init(&r, 0);
	r.pages[0] = 1024;
	r.pages[1] = 1025;
	r.f.nr_pages = 2;
	tap_errno(fill(fd, src, &r), EINVAL,
		  "a listed page past the size: EINVAL");
	r.pages[1] = 1ULL << 27;
	tap_errno(fill(fd, src, &r), EINVAL, "past 512 GiB: EINVAL");
	req_init(&r, 0);
	req_pages(&r, 0, 2);
	r.f.flags = MORSEL_FILL_CRC;
	tap_errno(fill(fd, src, &r), EINVAL, "crc without runs: EINVAL");
	req_run(&r, 1, 0);
	tap_errno(fill(fd, src, &r), EINVAL,
		  "runs that cover 1 of 2 pages: EINVAL");
	req_init(&r, 0);
	req_pages(&r, 0, 2);
	req_run(&r, 0, 0);
	req_run(&r, 2, 0);
	tap_errno(fill(fd, src, &r), EINVAL, "a run of 0 pages: EINVAL");
	req_init(&r, 0);
	req_pages(&r, 0, 1);
	r.f.nr_runs = 1;
	tap_errno(fill(fd, src, &r), EINVAL, "runs without the flag: EINVAL");
	req_init(&r, 0);
	r.f.nr_pages = 1;
	r.f.pages = 16;
	tap_errno(fill(fd, src, &r), EFAULT, "a bad page list: EFAULT");
	req_init(&r, 0);
	req_pages(&r, 0, 1);
	r.f.flags = MORSEL_FILL_CRC;
	r.f.nr_runs = 1;
	r.f.runs = 16;
	tap_errno(fill(fd, src, &r), EFAULT, "a bad run list: EFAULT");
	req_init(&r, -4096);
	req_pages(&r, 0, 1);
	tap_errno(fill(fd, src, &r), EINVAL, "a negative file offset: EINVAL");
	req_init(&r, 0);
	req_pages(&r, 0, 1);
	tap_errno(fill(fd, -1, &r), EBADF, "no source descriptor: EBADF");
	wo = open(SRC, O_WRONLY);
	tap_errno(fill(fd, wo, &r), EBADF, "a write-only source: EBADF");
	close(wo);
	wo = open("/tmp", O_RDONLY | O_DIRECTORY);
	ret = fill(fd, wo, &r) ? errno : 0;
	tap_ok(ret == EISDIR || ret == EINVAL || ret == EBADF,
	       "a directory as source is refused (%s)", strerror(ret));
	close(wo);
	tap_errno(ioctl(fd, MORSEL_IOC_FILL, (void *)16), EFAULT,
		  "a bad argument pointer: EFAULT");
	{
		char path[256];

		morsel_path("fill-d", path, sizeof(path));
		ro = open(path, O_RDONLY);
		tap_errno(fill(ro, src, &r), EBADF,
			  "an object open read-only: EBADF");
		close(ro);
	}
	tap_ok(data_of(fd) == 0, "none of that filled anything");
	tap_require(pwrite(fd, "x", 1, 0) == 1);
	tap_require(morsel_freeze(fd) == 0);
	req_init(&r, 0);
	req_pages(&r, 1, 1);
	tap_errno(fill(fd, src, &r), EPERM, "a frozen object: EPERM");
	child = morsel_split(fd, NULL);
	tap_require(child >= 0);
	tap_errno(fill(child, src, &r), EINVAL,
		  "a copy-on-write child: EINVAL (a hole may hide the base)");
	tap_ok(data_of(fd) == 1 && data_of(child) == 0,
	       "neither changed");
	close(child);
	close(fd);
	rm("fill-d");
}

static void sources(void)
{
	int fd = obj("fill-e", 4 * MiB), other, dio;
	struct req r;

	/* Another morsel as the source, then the object itself. */
	other = obj("fill-e2", 2 * MiB);
	pattern(buf, 7);
	tap_require(pwrite(other, buf, PG, 3 * PG) == PG);
	req_init(&r, 3 * PG);
	req_pages(&r, 0, 1);
	tap_ok(fill(fd, other, &r) == 0 && r.f.filled == 1 &&
	       page_is(fd, 0, 7), "a morsel as the source");
	req_init(&r, 0);
	req_pages(&r, 1, 1);
	tap_ok(fill(fd, fd, &r) == 0 && r.f.filled == 1 && page_is(fd, 1, 7),
	       "the object itself as the source (no lock held while reading)");
	close(other);
	rm("fill-e2");
	dio = open(SRC, O_RDONLY | O_DIRECT);
	if (dio < 0) {
		tap_skip("an O_DIRECT source: O_DIRECT: %s on /tmp",
			 strerror(errno));
	} else {
		req_init(&r, 200 * PG);
		req_pages(&r, 512, 512);
		req_run(&r, 512, crc_of_source(200, 512));
		tap_ok(fill(fd, dio, &r) == 0 && r.f.filled == 512 &&
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
	struct racer *rc = arg;
	static __thread struct req r;

	pthread_barrier_wait(&start);
	req_init(&r, 300 * PG);
	req_pages(&r, 0, 512);
	rc->ret = morsel_fill(rc->fd, rc->src, &r.f);
	rc->filled = r.f.filled;
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
	tap_ok(ok, "two threads fill one range 20 times: each page "
	       "filled once (%u + %u)", r[0].filled, r[1].filled);
	pthread_barrier_destroy(&start);
	close(fd);
	rm("fill-f");
}

static void mapped(int src)
{
	int fd = obj("fill-g", 2 * MiB);
	struct morsel_scan s;
	uint64_t dirty[8];
	volatile char *p;
	struct req r;
	char c;

	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	c = p[0];		/* a read fault: page 0 is no hole now */
	(void)c;
	req_init(&r, 40 * PG);
	req_pages(&r, 0, 2);
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 1,
	       "a page faulted in through a mapping is not a hole");
	pattern(buf, 41);
	tap_ok(!memcmp((const char *)p + PG, buf, PG) && p[0] == 0,
	       "the mapping sees the filled page at once, page 0 stays zero");
	tap_require(morsel_scan(fd, 0, 2 * MiB, MORSEL_SCAN_CLEAN, 0, NULL,
				NULL, dirty, &s) == 0);
	req_init(&r, 42 * PG);
	req_pages(&r, 2, 1);
	tap_require(fill(fd, src, &r) == 0 && r.f.filled == 1);
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
	char path[64];
	struct req r;
	int fd;

	mkdir(MNT, 0700);
	if (mount("none", MNT, "morselfs", 0, "size=1M")) {
		tap_ok(0, "mount morselfs size=1M: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/q", MNT);
	fd = morsel_create(path, 4 * MiB, 0600);
	tap_require(fd >= 0);
	req_init(&r, 0);
	req_pages(&r, 0, 512);
	tap_errno(fill(fd, src, &r), ENOSPC,
		  "2 MiB into a mount of size=1M: ENOSPC");
	req_init(&r, 0);
	req_pages(&r, 0, 254);
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 254,
	       "and nothing was held back by it: 254 pages and 2 tables still fit");
	close(fd);
	unlink(path);
	umount(MNT);
	rmdir(MNT);
}

/* Does the inotify descriptor @in have an event queued (none waits)? */
static uint32_t pending_mask(int in)
{
	char ev[sizeof(struct inotify_event) + 256]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n = read(in, ev, sizeof(ev));

	return n >= (ssize_t)sizeof(struct inotify_event) ?
	       ((struct inotify_event *)ev)->mask : 0;
}

static void notified(int src)
{
	int fd = obj("fill-n", 4 * MiB), in = inotify_init1(IN_NONBLOCK);
	char path[256];
	struct stat before, after;
	struct req r;

	tap_require(in >= 0, "inotify_init1");
	morsel_path("fill-n", path, sizeof(path));
	tap_require(inotify_add_watch(in, path, IN_MODIFY) >= 0, "watch");
	req_init(&r, 0);
	req_pages(&r, 0, 4);
	fstat(fd, &before);
	usleep(20000);		/* a coarse clock must still move */
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 4,
	       "a fill of 4 holes");
	fstat(fd, &after);
	tap_ok(pending_mask(in) & IN_MODIFY,
	       "inotify reports IN_MODIFY for it");
	tap_ok(after.st_mtim.tv_sec > before.st_mtim.tv_sec ||
	       (after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
		after.st_mtim.tv_nsec > before.st_mtim.tv_nsec),
	       "and the mtime moved");
	tap_ok(fill(fd, src, &r) == 0 && r.f.filled == 0 &&
	       !(pending_mask(in) & IN_MODIFY),
	       "a fill that finds no hole changes nothing and reports nothing");
	close(in);
	close(fd);
	rm("fill-n");
}

int main(void)
{
	int src;

	src = make_source();
	tap_require(src >= 0, "source file");
	whole_window(src);
	scattered(src);
	refused_data(src);
	bad_arguments(src);
	sources();
	concurrent(src);
	mapped(src);
	quota(src);
	notified(src);
	close(src);
	unlink(SRC);
	return tap_done();
}
