#define _GNU_SOURCE
/*
 * madvise on morsel mappings, as on tmpfs: MADV_DONTNEED drops the
 * mapping's entries (and links) and the data stays in the object;
 * MADV_REMOVE punches a hole seen by every mapper; MADV_POPULATE_READ/WRITE
 * fill and link the whole range (GUP works on morsel memory, docs/gup.md);
 * MADV_HUGEPAGE/NOHUGEPAGE and other advice never break the mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

#define PATH "/dev/morsel/madvise"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

static unsigned char pat(unsigned long off)
{
	return (unsigned char)(((off >> 12) * 31 + 17) | 1);
}

static void fill(unsigned char *p, unsigned long len, unsigned long step)
{
	unsigned long off;

	for (off = 0; off < len; off += step)
		p[off] = pat(off);
}

static int intact(unsigned char *p, unsigned long len, unsigned long step)
{
	unsigned long off;

	for (off = 0; off < len; off += step)
		if (p[off] != pat(off))
			return 0;
	return 1;
}

static void remove_hole(void)
{
	unsigned long size = 8 * MiB, off;
	unsigned char *p, *q;
	int fd, c2p[2], p2c[2], st, bad;
	char b;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	/* q maps [1 MiB, 7 MiB): its ends cut granules (page by page). */
	q = mmap(NULL, 6 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 1 * MiB);
	tap_require(p != MAP_FAILED && q != MAP_FAILED);
	fill(p, size, 4 * KiB);
	tap_require(q[0] == pat(1 * MiB) && q[6 * MiB - 4096] == pat(7 * MiB - 4096));
	tap_require(pipe(c2p) == 0 && pipe(p2c) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *r = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (r == MAP_FAILED || !intact(r, size, 4 * KiB))
			_exit(1);
		if (write(c2p[1], "a", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(2);
		for (off = 0; off < size; off += 4 * KiB) {
			int hole = off >= 512 * KiB && off < 6 * MiB + 512 * KiB;

			if (r[off] != (hole ? 0 : pat(off)))
				_exit(3);
		}
		_exit(0);
	}
	tap_require(read(c2p[0], &b, 1) == 1);
	tap_ok(mstat(fd).data_pages == 2048, "8 MiB filled: 2048 data pages");
	tap_ok(madvise(p, size, MADV_DONTNEED) == 0, "MADV_DONTNEED works");
	tap_ok(intact(p, size, 4 * KiB), "data intact after MADV_DONTNEED");
	/* Punch [512 KiB, 6.5 MiB) through q's offsets: cut and whole granules. */
	tap_ok(madvise(p + 512 * KiB, 6 * MiB, MADV_REMOVE) == 0,
	       "MADV_REMOVE of 6 MiB at +512 KiB works");
	tap_ok(mstat(fd).data_pages == 2048 - 1536,
	       "  frees its 1536 data pages (%llu left)", mstat(fd).data_pages);
	bad = 0;
	for (off = 0; off < size; off += 4 * KiB) {
		int hole = off >= 512 * KiB && off < 6 * MiB + 512 * KiB;

		bad += p[off] != (hole ? 0 : pat(off));
	}
	tap_ok(!bad, "  this mapping reads zeros in the hole, data around it");
	bad = 0;
	for (off = 1 * MiB; off < 7 * MiB; off += 4 * KiB) {
		int hole = off < 6 * MiB + 512 * KiB;

		bad += q[off - 1 * MiB] != (hole ? 0 : pat(off));
	}
	tap_ok(!bad, "  the page-by-page mapping too (%d bad)", bad);
	tap_require(write(p2c[1], "b", 1) == 1);
	st = -1;
	waitpid(pid, &st, 0);
	tap_ok(st == 0, "  and the other process (status %#x)", st);
	/* (Reading the hole through a mapping allocated its frames again.) */
	q[2 * MiB] = 0x42;
	tap_ok(p[3 * MiB] == 0x42 && mstat(fd).data_pages == 2048,
	       "later stores land in the hole and are shared (data %llu)",
	       mstat(fd).data_pages);
	munmap(p, size);
	munmap(q, 6 * MiB);
	close(c2p[0]); close(c2p[1]); close(p2c[0]); close(p2c[1]);
	close(fd);
	unlink(PATH);
}

static void populate_and_others(void)
{
	unsigned long size = 8 * MiB, data;
	unsigned char *p, c = 0;
	int fd, r, e;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	errno = 0;
	r = madvise(p, size, MADV_POPULATE_READ);
	e = errno;
	tap_diag("MADV_POPULATE_READ: %d errno %d (%s)", r, e, strerror(e));
	tap_ok(r == 0, "MADV_POPULATE_READ works");
	tap_ok(mstat(fd).data_pages == size / 4096 && mstat(fd).links == 4,
	       "  and filled and linked all of it (%llu data pages, %llu links)",
	       mstat(fd).data_pages, mstat(fd).links);
	tap_ok(madvise(p, size, MADV_DONTNEED) == 0 && mstat(fd).links == 0,
	       "MADV_DONTNEED removes the links");
	errno = 0;
	r = madvise(p, size, MADV_POPULATE_WRITE);
	e = errno;
	tap_diag("MADV_POPULATE_WRITE: %d errno %d (%s)", r, e, strerror(e));
	tap_ok(r == 0 && mstat(fd).links == 4, "MADV_POPULATE_WRITE works");
	tap_ok(p[0] == 0 && p[size - 1] == 0, "  and the pages read zeros");

	fill(p, size, 16 * KiB);
	data = mstat(fd).data_pages;
	tap_ok(madvise(p, size, MADV_NOHUGEPAGE) == 0, "MADV_NOHUGEPAGE works");
	tap_ok(intact(p, size, 16 * KiB), "  data intact after NOHUGEPAGE");
	tap_ok(madvise(p, size, MADV_HUGEPAGE) == 0, "MADV_HUGEPAGE works");
	tap_ok(intact(p, size, 16 * KiB), "  data intact after HUGEPAGE");
	tap_ok(madvise(p + 2 * MiB, 2 * MiB, MADV_NOHUGEPAGE) == 0 &&
	       intact(p, size, 16 * KiB),
	       "NOHUGEPAGE on one granule (splits the VMA): data intact");
	p[2 * MiB + 5] = 0x77;
	tap_ok(pread(fd, &c, 1, 2 * MiB + 5) == 1 && c == 0x77,
	       "  and stores still reach the object");

	/* Other advice: whatever it returns, nothing may break. */
	{
		static const struct { int advice; const char *name; } adv[] = {
			{ MADV_WILLNEED, "WILLNEED" }, { MADV_COLD, "COLD" },
			{ MADV_PAGEOUT, "PAGEOUT" }, { MADV_FREE, "FREE" },
			{ MADV_DODUMP, "DODUMP" }, { MADV_DONTDUMP, "DONTDUMP" },
			{ MADV_MERGEABLE, "MERGEABLE" },
			{ MADV_UNMERGEABLE, "UNMERGEABLE" },
			{ MADV_WIPEONFORK, "WIPEONFORK" },
			{ MADV_COLLAPSE, "COLLAPSE" }, { MADV_RANDOM, "RANDOM" },
			{ MADV_SEQUENTIAL, "SEQUENTIAL" }, { MADV_NORMAL, "NORMAL" },
		};
		unsigned i;

		for (i = 0; i < sizeof(adv) / sizeof(adv[0]); i++) {
			errno = 0;
			r = madvise(p, size, adv[i].advice);
			e = errno;
			tap_diag("MADV_%s: %d errno %d (%s)", adv[i].name, r,
				 r ? e : 0, r ? strerror(e) : "-");
		}
	}
	tap_ok(intact(p + 4 * MiB, 4 * MiB, 16 * KiB) && p[2 * MiB + 5] == 0x77,
	       "after WILLNEED/COLD/PAGEOUT/FREE/DUMP/KSM/COLLAPSE/...: "
	       "data intact");
	tap_ok(mstat(fd).data_pages == data + 0,
	       "  no data page lost or added (%llu)", mstat(fd).data_pages);
	munmap(p, size);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0, "unmapped");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	remove_hole();
	populate_and_others();
	return tap_done();
}
