// SPDX-License-Identifier: GPL-2.0
/*
 * MORSEL_IOC_SCAN and dirty tracking, the basis of incremental saves:
 * which pages are present, owned and dirty; CLEAN reports and cleans in
 * one step; every way of storing to a page (a linked mapping, a page
 * mapped one by one, write(), a copy-on-write child) makes it dirty again;
 * errors; and, with writer threads running, a loop of CLEAN scans that
 * copies the dirty pages keeps an exact replica of the object.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>
#include "libmorsel.h"
#include "vm.h"

#define SZ (8 * MiB)
#define NPG (SZ / PG)
#define WORDS (NPG / 64)

static uint64_t present[WORDS], owned[WORDS], dirty[WORDS];

static int bit(const uint64_t *map, unsigned long i)
{
	return map[i / 64] >> (i % 64) & 1;
}

static unsigned long count(const uint64_t *map)
{
	unsigned long n = 0, i;

	for (i = 0; i < WORDS; i++)
		n += __builtin_popcountll(map[i]);
	return n;
}

/* Scan the whole object; returns the ioctl's result (0 or -errno). */
static int scan(int fd, unsigned int flags, struct morsel_scan *out)
{
	memset(present, 0xa5, sizeof(present));	/* must be overwritten */
	memset(owned, 0xa5, sizeof(owned));
	memset(dirty, 0xa5, sizeof(dirty));
	return morsel_scan(fd, 0, SZ, flags, 0, present, owned, dirty, out);
}

/* Exactly pages @a and @b (or only @a if b < 0) are set in @map. */
static int only(const uint64_t *map, long a, long b)
{
	unsigned long i;

	for (i = 0; i < NPG; i++)
		if (bit(map, i) != ((long)i == a || (long)i == b))
			return 0;
	return 1;
}

static void pwrite_tag(int fd, unsigned long pg, char tag)
{
	char buf[64];

	memset(buf, tag, sizeof(buf));
	tap_require(pwrite(fd, buf, sizeof(buf), pg * PG + 100) ==
		    (ssize_t)sizeof(buf));
}

static void basics(void)
{
	struct morsel_scan s;
	int fd = mkobj("/dev/morsel/dirty", SZ);
	unsigned char *p;

	tap_ok(scan(fd, 0, &s) == 0 && s.present_pages == 0 &&
	       count(present) == 0 && count(dirty) == 0,
	       "an empty object: nothing present, bitmaps written as zeros");
	pwrite_tag(fd, 3, 'a');
	pwrite_tag(fd, 700, 'b');
	tap_ok(scan(fd, 0, &s) == 0 && s.present_pages == 2 &&
	       s.dirty_pages == 2 && only(present, 3, 700) &&
	       only(owned, 3, 700) && only(dirty, 3, 700),
	       "pages written by pwrite() are present, owned and dirty");
	tap_ok(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0 && s.dirty_pages == 2 &&
	       only(dirty, 3, 700) && s.gen == 1,
	       "CLEAN reports the two dirty pages, clean_gen becomes 1");
	tap_ok(scan(fd, 0, &s) == 0 && s.dirty_pages == 0 &&
	       only(present, 3, 700) && count(dirty) == 0,
	       "after CLEAN the pages are present and clean");
	tap_ok(mstat(fd).clean_gen == 1 && mstat(fd).id != 0,
	       "MORSEL_IOC_STAT shows clean_gen 1 and a non-zero id");

	/* A linked mapping: the CPU's stores. */
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(p[3 * PG + 100] == 'a', "the mapping reads the data");
	tap_ok(scan(fd, 0, &s) == 0 && s.dirty_pages == 0,
	       "reading through a mapping does not dirty");
	p[700 * PG] = 'x';
	tap_ok(scan(fd, 0, &s) == 0 && only(dirty, 700, -1),
	       "a store through the mapping dirties exactly that page");
	tap_ok(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0 && only(dirty, 700, -1),
	       "CLEAN reports it");
	p[700 * PG + 1] = 'y';		/* same page, same pointer, after clean */
	tap_ok(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0 && only(dirty, 700, -1),
	       "a second store to a cleaned page dirties it again");
	p[5 * PG] = 'z';		/* a new page: allocated by the fault */
	tap_ok(scan(fd, 0, &s) == 0 && only(dirty, 5, -1) &&
	       bit(present, 5), "a page allocated by a store is dirty");
	tap_ok(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0 && only(dirty, 5, -1),
	       "CLEAN reports the new page");
	pwrite_tag(fd, 3, 'c');
	tap_ok(scan(fd, 0, &s) == 0 && only(dirty, 3, -1) &&
	       p[3 * PG + 100] == 'c',
	       "pwrite() to a mapped, cleaned page dirties it");
	munmap(p, SZ);
	close(fd);
	unlink("/dev/morsel/dirty");
}

/* A mapping that cannot link (not 2 MiB aligned): pages mapped one by one. */
static void page_by_page(void)
{
	int fd = mkobj("/dev/morsel/dirty-pp", SZ);
	struct morsel_scan s;
	unsigned char *p;

	pwrite_tag(fd, 1, 'a');
	/*
	 * With write notification (made read-only, then writable), a page
	 * mapped alone is mapped read-only until its first store; see
	 * plain_page_by_page() for a mapping made writable by mmap().
	 */
	p = mmap_notified(NULL, 16 * PG, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	/* 16 pages: shorter than a granule, so mapped page by page. */
	p[1 * PG] = 'b';
	tap_ok(mstat(fd).links == 0, "a 64 KiB mapping has no links");
	tap_ok(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0 && only(dirty, 1, -1),
	       "page by page: the stored page is dirty");
	p[1 * PG + 1] = 'c';	/* its writable PTE must have gone */
	tap_ok(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0 && only(dirty, 1, -1),
	       "page by page: a store after CLEAN dirties it again");
	tap_ok(p[1 * PG] == 'b' && p[1 * PG + 1] == 'c',
	       "page by page: the data is intact");
	(void)p[2 * PG];	/* read fault of a hole, then a store */
	p[2 * PG] = 'd';
	tap_ok(scan(fd, 0, &s) == 0 && only(dirty, 2, -1),
	       "page by page: read fault then store dirties the page");
	munmap(p, 16 * PG);
	close(fd);
	unlink("/dev/morsel/dirty-pp");
}

/*
 * A mapping made writable by mmap() has no write notification (it takes
 * writable long-term pins, docs/gup.md decision 10): a page it maps alone
 * is writable from the first access, so the module counts it as written
 * when it maps it, read or not (docs/semantics.md).  Through a link the
 * tracking stays exact.
 */
static void plain_page_by_page(void)
{
	int fd = mkobj("/dev/morsel/dirty-plain", SZ);
	struct morsel_scan s;
	unsigned char *p, *l;

	pwrite_tag(fd, 1, 'a');
	pwrite_tag(fd, 3, 'a');
	p = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_require(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0);
	tap_ok(p[PG + 100] == 'a' && scan(fd, 0, &s) == 0 && only(dirty, 1, -1),
	       "plain mapping, page by page: a read maps the page writable and counts it as written");
	p[4 * PG] = 'b';
	tap_ok(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0 && only(dirty, 1, 4),
	       "plain mapping, page by page: a store is dirty");
	p[4 * PG + 1] = 'c';
	tap_ok(scan(fd, 0, &s) == 0 && only(dirty, 4, -1),
	       "plain mapping, page by page: a store after CLEAN dirties it again");
	munmap(p, 16 * PG);
	l = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(l != MAP_FAILED);
	tap_require(scan(fd, MORSEL_SCAN_CLEAN, &s) == 0);
	tap_ok(l[3 * PG + 100] == 'a' && mstat(fd).links > 0 && scan(fd, 0, &s) == 0 &&
	       s.dirty_pages == 0,
	       "plain mapping, linked: a read leaves the page clean");
	l[3 * PG] = 'd';
	tap_ok(scan(fd, 0, &s) == 0 && only(dirty, 3, -1),
	       "plain mapping, linked: a store to the cleaned leaf dirties it (the core makes it writable)");
	munmap(l, SZ);
	close(fd);
	unlink("/dev/morsel/dirty-plain");
}

static void children(void)
{
	int base = mkobj("/dev/morsel/dirty-base", SZ), child;
	struct morsel_scan s;
	unsigned char *p;

	pwrite_tag(base, 10, 'a');
	pwrite_tag(base, 11, 'b');
	tap_require(morsel_freeze(base) == 0);
	tap_ok(scan(base, MORSEL_SCAN_CLEAN, &s) == 0 &&
	       only(dirty, 10, 11), "a frozen base can be cleaned once");
	tap_ok(scan(base, 0, &s) == 0 && s.dirty_pages == 0 &&
	       only(present, 10, 11), "and stays clean");
	child = morsel_split(base, NULL);
	tap_require(child >= 0);
	tap_ok(scan(child, 0, &s) == 0 && only(present, 10, 11) &&
	       count(owned) == 0 && count(dirty) == 0,
	       "a new child: the base's pages are present, borrowed, clean");
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, child, 0);
	tap_require(p != MAP_FAILED);
	p[10 * PG] = 'x';	/* copy-on-write */
	tap_ok(scan(child, 0, &s) == 0 && only(present, 10, 11) &&
	       only(owned, 10, -1) && only(dirty, 10, -1),
	       "a copied page is owned and dirty, the other stays borrowed");
	tap_ok(scan(child, MORSEL_SCAN_CLEAN, &s) == 0 &&
	       only(dirty, 10, -1), "CLEAN in the child reports the copy");
	p[10 * PG + 1] = 'y';
	tap_ok(scan(child, 0, &s) == 0 && only(dirty, 10, -1) &&
	       p[10 * PG] == 'x', "a store to the cleaned copy dirties it");
	tap_require(fallocate(child, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      11 * PG, PG) == 0);
	tap_ok(scan(child, 0, &s) == 0 && only(present, 10, -1),
	       "a hole punched over a borrowed page is not present");
	tap_ok(scan(base, 0, &s) == 0 && only(present, 10, 11) &&
	       s.dirty_pages == 0, "the base is unchanged and clean");
	munmap(p, SZ);
	close(child);
	close(base);
	unlink("/dev/morsel/dirty-base");
}

/* /proc/PID/mem (ptrace) through a mapping made before the freeze. */
static void frozen_ptrace(void)
{
	int fd = mkobj("/dev/morsel/dirty-frz", SZ), mem;
	unsigned char *p;
	char c = 'Z';
	ssize_t n;

	pwrite_tag(fd, 0, 'a');
	/* Writable with write notification: it survives the freeze. */
	p = mmap_notified(NULL, SZ, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_require(morsel_freeze(fd) == 0);
	mem = open("/proc/self/mem", O_RDWR);
	tap_require(mem >= 0);
	n = pwrite(mem, &c, 1, (off_t)(uintptr_t)(p + 100));
	tap_ok(n != 1, "/proc/self/mem cannot write a frozen object through "
	       "an older writable mapping (returned %zd)", n);
	tap_ok(p[100] == 'a', "and its contents are unchanged");
	close(mem);
	munmap(p, SZ);
	close(fd);
	unlink("/dev/morsel/dirty-frz");
}

static void errors(void)
{
	int fd = mkobj("/dev/morsel/dirty-err", SZ), ro;
	struct morsel_scan s;
	uint64_t gen;

	tap_ok(morsel_scan(fd, 1, PG, 0, 0, NULL, NULL, NULL, NULL) == -EINVAL,
	       "unaligned start: EINVAL");
	tap_ok(morsel_scan(fd, 0, 100, 0, 0, NULL, NULL, NULL, NULL) == -EINVAL,
	       "unaligned length: EINVAL");
	tap_ok(morsel_scan(fd, 0, 0, 0, 0, NULL, NULL, NULL, NULL) == -EINVAL,
	       "zero length: EINVAL");
	tap_ok(morsel_scan(fd, 0, SZ + PG, 0, 0, NULL, NULL, NULL, NULL) ==
	       -EINVAL, "past the size: EINVAL");
	tap_ok(morsel_scan(fd, -4096ULL, 8192, 0, 0, NULL, NULL, NULL, NULL) ==
	       -EINVAL, "start + length overflowing: EINVAL");
	tap_ok(morsel_scan(fd, 0, SZ, 1U << 7, 0, NULL, NULL, NULL, NULL) ==
	       -EINVAL, "unknown flag: EINVAL");
	tap_ok(morsel_scan(fd, 0, SZ, MORSEL_SCAN_IF_GEN, 0, NULL, NULL, NULL,
			   NULL) == -EINVAL, "IF_GEN without CLEAN: EINVAL");
	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	s.length = SZ;
	s.argsz = MORSEL_SCAN_SIZE_VER0 + 8;	/* a byte past it set: s.length */
	{
		struct { struct morsel_scan s; uint64_t tail; } big;

		memset(&big, 0, sizeof(big));
		big.s = s;
		big.s.argsz = sizeof(big);
		big.tail = 1;
		tap_errno(ioctl(fd, MORSEL_IOC_SCAN, &big), E2BIG,
			  "a field the module does not know set: E2BIG");
	}
	s.argsz = sizeof(s) - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_SCAN, &s), EINVAL, "wrong argsz: EINVAL");
	pwrite_tag(fd, 0, 'a');
	tap_ok(morsel_scan(fd, 0, SZ, 0, 0, (uint64_t *)8, NULL, NULL, NULL) ==
	       -EFAULT, "a bad bitmap address: EFAULT");
	ro = open("/dev/morsel/dirty-err", O_RDONLY);
	tap_require(ro >= 0);
	tap_ok(morsel_scan(ro, 0, SZ, 0, 0, present, NULL, NULL, NULL) == 0,
	       "a read-only descriptor may scan");
	tap_ok(morsel_scan(ro, 0, SZ, MORSEL_SCAN_CLEAN, 0, NULL, NULL, NULL,
			   NULL) == -EBADF, "but not CLEAN: EBADF");
	close(ro);
	gen = mstat(fd).clean_gen;
	tap_ok(morsel_scan(fd, 0, SZ, MORSEL_SCAN_CLEAN | MORSEL_SCAN_IF_GEN,
			   gen + 1, NULL, NULL, NULL, NULL) == -ESTALE &&
	       mstat(fd).clean_gen == gen,
	       "IF_GEN with a stale generation: ESTALE, nothing cleaned");
	tap_ok(morsel_scan(fd, 0, SZ, MORSEL_SCAN_CLEAN | MORSEL_SCAN_IF_GEN,
			   gen, NULL, NULL, dirty, &s) == 0 &&
	       s.gen == gen + 1 && s.dirty_pages == 1,
	       "IF_GEN with the current generation cleans");
	tap_ok(morsel_scan(fd, 2 * MiB, 2 * MiB, 0, 0, present, NULL, NULL,
			   &s) == 0 && s.present_pages == 0,
	       "a sub-range scan sees only its pages");
	close(fd);
	unlink("/dev/morsel/dirty-err");
}

/*
 * Incremental copies under fire: writers store to random pages through a
 * linked mapping, page-by-page mapping and pwrite(); a loop of CLEAN scans
 * copies the reported pages into a replica.  After the writers stop and
 * one last CLEAN copy, the replica must equal the object.
 */
static unsigned char *obj, *replica;
static int objfd;
static atomic_int stop;

/*
 * A store through GUP: process_vm_writev() pins the page (FOLL_PIN) and
 * marks it dirty when it unpins, so SCAN sees PG_dirty and, while the
 * pin lasts, a pinned frame.
 */
static int gup_store(unsigned char *at, char v)
{
	struct iovec local = { .iov_base = &v, .iov_len = 1 };
	struct iovec remote = { .iov_base = at, .iov_len = 1 };

	return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == 1;
}

static void *writer(void *arg)
{
	unsigned int seed = (unsigned long)arg * 7919 + 1;
	/* One page short of a granule: mapped page by page. */
	unsigned char *pp = arg == (void *)1 ?
		mmap(NULL, 2 * MiB - PG, PROT_READ | PROT_WRITE, MAP_SHARED,
		     objfd, 0) : NULL;
	unsigned long n = 0;

	while (!atomic_load(&stop)) {
		unsigned long pg = rand_r(&seed) % NPG;
		unsigned long at = rand_r(&seed) % (PG - 8);
		char v = rand_r(&seed);

		if (arg == (void *)0)
			obj[pg * PG + at] = v;		/* linked */
		else if (arg == (void *)1)
			pp[(pg % 511) * PG + at] = v;	/* page by page */
		else if (arg == (void *)2) {
			if (pwrite(objfd, &v, 1, pg * PG + at) != 1)
				abort();
		} else if (!gup_store(obj + pg * PG + at, v))	/* a pin */
			abort();
		n++;
	}
	if (pp)
		munmap(pp, 2 * MiB - PG);
	return (void *)n;
}

static void copy_dirty(void)
{
	unsigned long i;

	tap_require(morsel_scan(objfd, 0, SZ, MORSEL_SCAN_CLEAN, 0, NULL, NULL,
				dirty, NULL) == 0);
	for (i = 0; i < NPG; i++)
		if (bit(dirty, i))
			tap_require(pread(objfd, replica + i * PG, PG,
					  i * PG) == (ssize_t)PG);
}

static void under_fire(void)
{
	pthread_t t[4];
	unsigned long rounds = 0, i, bad = 0;
	void *r;

	objfd = mkobj("/dev/morsel/dirty-fire", SZ);
	obj = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, objfd, 0);
	replica = calloc(1, SZ);
	tap_require(obj != MAP_FAILED && replica);
	copy_dirty();			/* start: all clean, replica empty */
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, writer, (void *)i);
	for (rounds = 0; rounds < 200; rounds++)
		copy_dirty();
	atomic_store(&stop, 1);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], &r);
	copy_dirty();
	for (i = 0; i < NPG; i++)
		bad += memcmp(obj + i * PG, replica + i * PG, PG) != 0;
	tap_ok(bad == 0, "200 CLEAN rounds under 4 writers (a link, a page-by-"
	       "page map, pwrite, process_vm_writev): the replica equals "
	       "the object (%lu pages differ)", bad);
	munmap(obj, SZ);
	free(replica);
	close(objfd);
	unlink("/dev/morsel/dirty-fire");
}

int main(void)
{
	basics();
	page_by_page();
	plain_page_by_page();
	children();
	frozen_ptrace();
	errors();
	under_fire();
	return tap_done();
}
