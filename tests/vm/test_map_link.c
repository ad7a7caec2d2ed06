#define _GNU_SOURCE
/*
 * Mapping links whole tables: MORSEL_IOC_STAT links equals the number of
 * 2 MiB (or 1 GiB) granules touched; stores are shared by every mapper with
 * no copy; placement is aligned and congruent with the file offset; small
 * objects and tails that cut a granule work page by page.
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
#include <sys/wait.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/map_link"

static unsigned char pat(unsigned long off)
{
	return (unsigned char)(((off >> 12) * 31 + (off >> 21) * 7 + 17) | 1);
}

/* Which granules and pages a size touches. */
struct plan {
	unsigned long size, granule, step, ngran;
};

static int granule_touched(const struct plan *pl, unsigned long g)
{
	return pl->ngran <= 2 || !(g & 1);
}

static int page_touched(const struct plan *pl, unsigned long off)
{
	return granule_touched(pl, off / pl->granule) && off % pl->step == 0;
}

static int expected_level(unsigned long size)
{
	return size <= 2 * MiB ? MORSEL_LEVEL_PTE :
	       size <= GiB ? MORSEL_LEVEL_PMD : MORSEL_LEVEL_PUD;
}

static void one_size(unsigned long size)
{
	struct plan pl = { .size = size };
	unsigned long g, off, pages = 0, touched_g = 0, last = size - 4 * KiB;
	const char *u = size >= GiB ? "GiB" : "MiB";
	unsigned long h = size >= GiB ? size / GiB : size / MiB;
	struct morsel_stat s;
	unsigned char *p;
	int fd, st, bad;
	pid_t pid;

	pl.granule = size >= GiB ? GiB : 2 * MiB;
	pl.step = size >= GiB ? 2 * MiB : 4 * KiB;
	pl.ngran = size / pl.granule;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(((uintptr_t)p & (pl.granule - 1)) == 0,
	       "%lu %s: mapping at %p aligned to its link granule", h, u, p);
	for (g = 0; g < pl.ngran; g++) {
		if (!granule_touched(&pl, g))
			continue;
		touched_g++;
		for (off = g * pl.granule; off < (g + 1) * pl.granule;
		     off += pl.step) {
			p[off] = pat(off);
			pages++;
		}
	}
	s = mstat(fd);
	tap_ok(s.level == (unsigned)expected_level(size),
	       "%lu %s: level %u", h, u, s.level);
	tap_ok(s.links == touched_g,
	       "%lu %s: links %llu == granules touched %lu", h, u, s.links,
	       touched_g);
	tap_ok(s.data_pages == pages, "%lu %s: data_pages %llu == %lu", h, u,
	       s.data_pages, pages);
	tap_ok(s.mappers == 1, "%lu %s: one mapper", h, u);

	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED)
			_exit(2);
		for (off = 0; off < size; off += pl.step)
			if (page_touched(&pl, off) && q[off] != pat(off))
				_exit(3);
		q[0] = 0xA5;
		q[last + 5] = 0x5A;
		_exit(0);
	}
	st = wait_status(pid);
	tap_ok(CHILD_OK(st), "%lu %s: another process's mapping sees every "
	       "store (status %#x)", h, u, st);
	s = mstat(fd);
	tap_ok(s.links == touched_g,
	       "%lu %s: links back to %lu after the child exits (%llu)", h, u,
	       touched_g, s.links);
	tap_ok(s.data_pages == pages + !page_touched(&pl, last),
	       "%lu %s: child stores did not copy (data_pages %llu)", h, u,
	       s.data_pages);
	tap_ok(p[0] == 0xA5 && p[last + 5] == 0x5A,
	       "%lu %s: child's stores visible in the parent mapping", h, u);
	bad = 0;
	for (off = pl.step; off < size; off += pl.step)
		if (page_touched(&pl, off) && p[off] != pat(off))
			bad++;
	{
		unsigned char c = 0;

		tap_ok(!bad && pread(fd, &c, 1, last + 5) == 1 && c == 0x5A,
		       "%lu %s: data intact and read() sees the stores", h, u);
	}
	tap_ok(munmap(p, size) == 0 && (s = mstat(fd)).links == 0 &&
	       s.mappers == 0, "%lu %s: munmap drops links and mappers", h, u);
	close(fd);
	unlink(PATH);
}

static void congruence(void)
{
	unsigned long size = 8 * MiB, off = 2 * MiB + 12 * KiB;
	unsigned char v = 0x77, *q, *hint;
	struct morsel_stat s;
	int fd;

	fd = mkobj(PATH, size);
	tap_require(pwrite(fd, &v, 1, off) == 1);
	q = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	tap_ok(q != MAP_FAILED && ((uintptr_t)q - off) % (2 * MiB) == 0,
	       "offset 2 MiB+12 KiB: address %p congruent modulo 2 MiB", q);
	tap_ok(q != MAP_FAILED && q[0] == 0x77,
	       "first byte of that mapping is the byte at the offset");
	if (q != MAP_FAILED)
		munmap(q, 4 * MiB);

	/* A hint that disagrees with the offset is not taken as is. */
	hint = mmap(NULL, 8 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	tap_require(hint != MAP_FAILED);
	munmap(hint, 8 * MiB);
	hint = (unsigned char *)(((uintptr_t)hint + 2 * MiB - 1) &
				 ~(2 * MiB - 1)) + 4 * KiB;
	q = mmap(hint, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_ok(q != MAP_FAILED && ((uintptr_t)q & (2 * MiB - 1)) == 0,
	       "non-congruent hint %p: kernel picks aligned %p", hint, q);
	if (q != MAP_FAILED)
		munmap(q, 4 * MiB);
	close(fd);
	unlink(PATH);

	/* 1 GiB mappings at offsets of a bigger object. */
	size = 2 * GiB + 4 * MiB;
	fd = mkobj(PATH, size);
	q = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, GiB);
	tap_ok(q != MAP_FAILED && ((uintptr_t)q & (GiB - 1)) == 0,
	       "1 GiB at offset 1 GiB: address %p aligned to 1 GiB", q);
	if (q != MAP_FAILED) {
		q[0] = 1;
		q[GiB - 1] = 2;
		s = mstat(fd);
		tap_ok(s.links == 1, "  whole aligned GiB: one PUD link (%llu)",
		       s.links);
		munmap(q, GiB);
	} else {
		tap_ok(0, "  whole aligned GiB: one PUD link");
	}
	off = GiB + 2 * MiB;
	q = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	tap_ok(q != MAP_FAILED && ((uintptr_t)q - off) % GiB == 0,
	       "1 GiB at offset 1 GiB+2 MiB: address %p congruent mod 1 GiB",
	       q);
	if (q != MAP_FAILED) {
		q[0] = 3;
		q[2 * MiB] = 4;
		q[GiB - 1] = 5;
		s = mstat(fd);
		tap_ok(s.links == 3,
		       "  unaligned GiB: one PMD link per granule touched (%llu)",
		       s.links);
		tap_ok(q[GiB - 2 * MiB - 1] == 2,
		       "  sees the store made through the other mapping");
		munmap(q, GiB);
	} else {
		tap_ok(0, "  unaligned GiB: one PMD link per granule touched");
		tap_ok(0, "  sees the store made through the other mapping");
	}
	close(fd);
	unlink(PATH);
}

/* Objects and tails that do not fill a granule map page by page. */
static void small_and_tail(void)
{
	unsigned long size, off;
	struct morsel_stat s;
	unsigned char *p;
	int fd, st, ok;
	pid_t pid;

	size = 8 * KiB;
	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(((uintptr_t)p & (2 * MiB - 1)) == 0, "8 KiB: placed at 2 MiB");
	p[0] = 0x11;
	p[4 * KiB + 100] = 0x22;
	s = mstat(fd);
	tap_ok(s.links == 0 && s.data_pages == 2 && s.mappers == 1,
	       "8 KiB: no link, 2 data pages, 1 mapper (links %llu data %llu)",
	       s.links, s.data_pages);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED || q[0] != 0x11 || q[4 * KiB + 100] != 0x22)
			_exit(1);
		q[4 * KiB + 101] = 0x33;
		_exit(0);
	}
	st = wait_status(pid);
	tap_ok(CHILD_OK(st), "8 KiB: another process sees the data");
	tap_ok(p[4 * KiB + 101] == 0x33 && mstat(fd).data_pages == 2,
	       "8 KiB: its store is visible here, no copy");
	tap_ok(munmap(p, size) == 0 && mstat(fd).mappers == 0,
	       "8 KiB: unmapped");
	close(fd);
	unlink(PATH);

	size = 2 * MiB + 8 * KiB;
	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (off = 0; off < size; off += 4 * KiB)
		p[off] = pat(off);
	s = mstat(fd);
	tap_ok(s.links == 1 && s.data_pages == 514,
	       "2 MiB+8 KiB: granule linked, tail by page (links %llu data %llu)",
	       s.links, s.data_pages);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED)
			_exit(1);
		for (off = 0; off < size; off += 4 * KiB)
			if (q[off] != pat(off))
				_exit(2);
		q[size - 1] = 0x44;
		_exit(0);
	}
	st = wait_status(pid);
	tap_ok(CHILD_OK(st), "2 MiB+8 KiB: another process sees granule and tail");
	ok = p[size - 1] == 0x44;
	tap_ok(ok, "2 MiB+8 KiB: tail store from the other process visible");
	tap_ok(munmap(p, size) == 0 && mstat(fd).links == 0,
	       "2 MiB+8 KiB: unmapped, no links");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	static const unsigned long sizes[] = {
		2 * MiB, 4 * MiB, 64 * MiB, GiB, 2 * GiB, 4 * GiB,
	};
	unsigned i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		one_size(sizes[i]);
	congruence();
	small_and_tail();
	return tap_done();
}
