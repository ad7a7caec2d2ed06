#define _GNU_SOURCE
/*
 * MORSEL_IOC_MAP links/maps a range of the caller's mappings at once; after
 * it, touching any populated page takes no page fault (ru_minflt).  With
 * MORSEL_MAP_POPULATE every frame is allocated first.  Errors: EINVAL for
 * bad argsz/flags/reserved, unaligned or empty ranges and ranges not inside
 * mappings of this file; EACCES for PROT_NONE; EFAULT for a bad pointer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/eager_map"
#define PATH2 "/dev/morsel/eager_map2"

static int emap(int fd, void *addr, unsigned long len, unsigned flags,
		struct morsel_map *out)
{
	struct morsel_map m = { 0 };

	memset(&m, 0, sizeof(m));
	m.argsz = sizeof(m);
	m.flags = flags;
	m.addr = (uintptr_t)addr;
	m.length = len;
	if (ioctl(fd, MORSEL_IOC_MAP, &m))
		return -1;
	if (out)
		*out = m;
	return 0;
}

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Read and write one byte of every page at @step in [from, to). */
static __attribute__((noinline)) void
touch(volatile unsigned char *p, unsigned long from, unsigned long to,
      unsigned long step)
{
	unsigned long off;

	for (off = from; off < to; off += step)
		p[off] = p[off] + 1;
}

/* Faults taken by touch(); the code and stack are warmed up first. */
static long faults_of_touch(unsigned char *p, unsigned long from,
			    unsigned long to, unsigned long step)
{
	static unsigned char warm[8192];
	long before;

	touch(warm, 0, sizeof(warm), 4096);
	minflt();
	before = minflt();
	touch(p, from, to, step);
	return minflt() - before;
}

static void full_64m(void)
{
	unsigned long size = 64 * MiB;
	struct morsel_map m = { 0 };
	unsigned char *p;
	long f;
	int fd, r;

	fd = mkobj(PATH, size);
	tap_require(fallocate(fd, 0, 0, size) == 0);
	tap_require(mstat(fd).data_pages == size / 4096);

	/* Control: without MORSEL_IOC_MAP the first touches do fault. */
	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	f = faults_of_touch(p, 0, 4 * MiB, 4096);
	tap_ok(f >= 2, "control: touching 4 MiB unmapped takes faults (%ld)", f);
	munmap(p, 4 * MiB);

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	r = emap(fd, p, size, 0, &m);
	tap_ok(r == 0 && m.linked == 32 && m.pages == 0,
	       "64 MiB populated: MORSEL_IOC_MAP links 32 granules (%llu, "
	       "pages %llu)", m.linked, m.pages);
	tap_ok(mstat(fd).links == 32, "  stat: 32 links");
	f = faults_of_touch(p, 0, size, 4096);
	tap_ok(f == 0, "  then touching all 16384 pages: %ld faults", f);
	r = emap(fd, p, size, 0, &m);
	tap_ok(r == 0 && m.linked == 0 && m.pages == 0,
	       "  again: nothing more to link");
	munmap(p, size);
	close(fd);
	unlink(PATH);
}

/* 2 GiB + 2 MiB + 8 KiB, sparse: PUD, PMD and page-by-page parts. */
static void sparse_big(void)
{
	unsigned long size = 2 * GiB + 2 * MiB + 8 * KiB, off;
	struct morsel_map m = { 0 };
	unsigned char *p;
	long f;
	int fd, r;

	fd = mkobj(PATH, size);
	for (off = 0; off < 2 * GiB + 2 * MiB; off += 2 * MiB)
		tap_require(fallocate(fd, 0, off + 8 * KiB, 4096) == 0);
	tap_require(fallocate(fd, 0, 2 * GiB + 2 * MiB, 8 * KiB) == 0);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	r = emap(fd, p, size, 0, &m);
	tap_ok(r == 0 && m.linked == 3 && m.pages == 2,
	       "2 GiB+2 MiB+8 KiB: 2 PUD + 1 PMD links, 2 tail pages "
	       "(linked %llu pages %llu)", m.linked, m.pages);
	tap_ok(mstat(fd).links == 3 && mstat(fd).data_pages == 1025 + 2,
	       "  stat: 3 links, no page allocated");
	f = faults_of_touch(p, 8 * KiB, 2 * GiB + 2 * MiB, 2 * MiB);
	f += faults_of_touch(p, 2 * GiB + 2 * MiB, size, 4096);
	tap_ok(f == 0, "  then touching every populated page: %ld faults", f);
	munmap(p, size);
	close(fd);
	unlink(PATH);
}

static void populate(void)
{
	unsigned long size = 8 * MiB;
	struct morsel_map m = { 0 };
	unsigned char *p;
	long f;
	int fd, r;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	r = emap(fd, p + 2 * MiB, 4 * MiB, MORSEL_MAP_POPULATE, &m);
	tap_ok(r == 0 &&
	       m.linked == 2 && mstat(fd).data_pages == 1024,
	       "MORSEL_MAP_POPULATE of 4 MiB of a sparse object: 1024 pages, "
	       "2 links (linked %llu)", m.linked);
	f = faults_of_touch(p, 2 * MiB, 6 * MiB, 4096);
	tap_ok(f == 0, "  then touching them: %ld faults", f);
	tap_ok(p[0] == 0 && mstat(fd).data_pages == 1025,
	       "  the rest stayed holes until touched");
	munmap(p, size);

	/* Read-only mapping: links read-only twins. */
	p = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 4 * MiB);
	tap_require(p != MAP_FAILED);
	r = emap(fd, p, 4 * MiB, MORSEL_MAP_POPULATE, &m);
	tap_ok(r == 0 &&
	       m.linked == 2 && m.pages == 0 &&
	       mstat(fd).data_pages == 512 + 1024 + 1,
	       "read-only 4 MiB: populated, 2 read-only twins linked "
	       "(linked %llu pages %llu)", m.linked, m.pages);
	{
		static unsigned char warm[8192];
		unsigned long off, sum = 0;
		long before;

		touch(warm, 0, sizeof(warm), 4096);
		before = minflt();
		for (off = 0; off < 4 * MiB; off += 4096)
			sum += ((volatile unsigned char *)p)[off];
		f = minflt() - before;
		tap_ok(f == 0, "  reading them: %ld faults (sum %lu)", f, sum);
	}
	munmap(p, 4 * MiB);
	/* Frozen: holes stay holes (they read as the zero page). */
	{
		struct morsel_freeze fz = { .argsz = sizeof(fz) };
		unsigned long long data = mstat(fd).data_pages;

		tap_require(ioctl(fd, MORSEL_IOC_FREEZE, &fz) == 0);
		p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		tap_require(p != MAP_FAILED);
		r = emap(fd, p, size, MORSEL_MAP_POPULATE, &m);
		tap_ok(r == 0 && mstat(fd).data_pages == data && p[0] == 0,
		       "MORSEL_MAP_POPULATE of a frozen object allocates "
		       "nothing (data pages %llu, was %llu)",
		       (unsigned long long)mstat(fd).data_pages, data);
		munmap(p, size);
	}
	close(fd);
	unlink(PATH);
}

static void errors(void)
{
	unsigned char *p, *a, *anon;
	struct morsel_map m = { 0 };
	int fd, fd2, r;

	fd = mkobj(PATH, 8 * MiB);
	fd2 = mkobj(PATH2, 8 * MiB);
	/* 8 MiB at a 2 MiB boundary with 2 MiB free after it. */
	p = mmap(NULL, 12 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(p != MAP_FAILED);
	munmap(p, 12 * MiB);
	p = (unsigned char *)(((uintptr_t)p + 2 * MiB - 1) & ~(2 * MiB - 1));
	p = mmap(p, 8 * MiB, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	tap_require(p != MAP_FAILED);

	tap_errno(emap(fd, p + 8 * MiB, 4096, 0, NULL), EINVAL,
		  "range after the mapping: EINVAL");
	tap_errno(emap(fd, p + 8 * MiB - 4096, 8192, 0, NULL), EINVAL,
		  "range running past the mapping: EINVAL");
	tap_errno(emap(fd, (void *)4096, 4096, 0, NULL), EINVAL,
		  "unmapped low address: EINVAL");
	tap_errno(emap(fd, p + 1, 4096, 0, NULL), EINVAL,
		  "unaligned address: EINVAL");
	tap_errno(emap(fd, p, 4095, 0, NULL), EINVAL,
		  "unaligned length: EINVAL");
	tap_errno(emap(fd, p, 0, 0, NULL), EINVAL, "length 0: EINVAL");
	tap_errno(emap(fd, p, -4096UL, 0, NULL), EINVAL,
		  "wrapping range: EINVAL");
	tap_errno(emap(fd, p, 4096, 2, NULL), EINVAL, "unknown flag: EINVAL");
	memset(&m, 0, sizeof(m));
	m.argsz = sizeof(m) - 8;
	m.addr = (uintptr_t)p;
	m.length = 4096;
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, &m), EINVAL, "short argsz: EINVAL");
	{
		struct { struct morsel_map m; uint64_t tail; } big;

		memset(&big, 0, sizeof(big));
		big.m = m;
		big.m.argsz = sizeof(big);
		big.tail = 1;
		tap_errno(ioctl(fd, MORSEL_IOC_MAP, &big), E2BIG,
			  "a field the module does not know set: E2BIG");
	}
	m.argsz = sizeof(m);
	tap_errno(ioctl(fd, MORSEL_IOC_MAP, (void *)8), EFAULT,
		  "bad pointer: EFAULT");

	/* Another file's mapping right after ours. */
	a = mmap(p + 8 * MiB, 2 * MiB, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED_NOREPLACE, fd2, 0);
	tap_require(a == p + 8 * MiB);
	tap_errno(emap(fd, p + 6 * MiB, 4 * MiB, 0, NULL), EINVAL,
		  "range running into another file's mapping: EINVAL");
	tap_errno(emap(fd2, p, 2 * MiB, 0, NULL), EINVAL,
		  "other file's fd for this mapping: EINVAL");
	tap_ok(emap(fd2, a, 2 * MiB, 0, NULL) == 0,
	       "the other file's own fd for its mapping works");
	munmap(a, 2 * MiB);
	/* A second mapping of the same file right after: two VMAs, allowed. */
	a = mmap(p + 8 * MiB, 2 * MiB, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	tap_require(a == p + 8 * MiB);
	/* Granule 3 was linked by the refused call above: one new link. */
	r = emap(fd, p + 6 * MiB, 4 * MiB, 0, &m);
	tap_ok(r == 0 && m.linked == 1 && mstat(fd).links == 2,
	       "range across two mappings of the same file: both linked "
	       "(r %d, new %llu)", r, m.linked);
	munmap(a, 2 * MiB);

	anon = mmap(p + 8 * MiB, 2 * MiB, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	tap_require(anon == p + 8 * MiB);
	tap_errno(emap(fd, anon, 2 * MiB, 0, NULL), EINVAL,
		  "anonymous memory: EINVAL");
	munmap(anon, 2 * MiB);

	tap_ok(mprotect(p + 4 * MiB, 2 * MiB, PROT_NONE) == 0,
	       "mprotect one granule PROT_NONE");
	tap_errno(emap(fd, p + 4 * MiB, 2 * MiB, 0, NULL), EACCES,
		  "PROT_NONE range: EACCES");
	tap_errno(emap(fd, p, 8 * MiB, 0, NULL), EACCES,
		  "range with a PROT_NONE part: EACCES");
	munmap(p, 8 * MiB);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0 &&
	       mstat(fd2).links == 0 && mstat(fd2).mappers == 0, "unmapped");
	close(fd);
	close(fd2);
	unlink(PATH);
	unlink(PATH2);
}

int main(void)
{
	full_64m();
	sparse_big();
	populate();
	errors();
	return tap_done();
}
