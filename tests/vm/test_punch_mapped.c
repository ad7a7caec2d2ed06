#define _GNU_SOURCE
/*
 * fallocate(PUNCH_HOLE|KEEP_SIZE) on a morsel mapped by several processes
 * (linked by PMD and PUD entries, and page by page): every mapper reads
 * zeros at once, partial pages are zeroed, the data pages are freed, and
 * later stores allocate again and are shared.
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
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/punch_mapped"
#define PUNCH (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)

static unsigned char pat(unsigned long off)
{
	return (unsigned char)(((off >> 12) * 31 + 17) | 1);
}

/* The first and last 128 bytes of every page of [from, to) hold @v or pat. */
static int check(unsigned char *p, unsigned long base, unsigned long from,
		 unsigned long to, unsigned long hs, unsigned long he)
{
	unsigned long off, i;

	for (off = from; off < to; off += 4 * KiB)
		for (i = 0; i < 4096; i += i == 127 ? 4096 - 255 : 1) {
			unsigned long o = off + i;
			unsigned char want = o >= hs && o < he ? 0 : pat(o & ~4095UL);

			if (p[o - base] != want)
				return 0;
		}
	return 1;
}

static void fillp(unsigned char *p, unsigned long len)
{
	unsigned long off;

	for (off = 0; off < len; off += 4 * KiB) {
		memset(p + off, pat(off), 128);
		memset(p + off + 4096 - 128, pat(off), 128);
	}
}

static void mid(void)
{
	unsigned long size = 16 * MiB, hs = 3 * MiB + 100, he = 11 * MiB + 100;
	unsigned char *p, *r;
	int fd, c2p[2], p2c[2], st;
	char b;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	/* r: read-only [1 MiB, 15 MiB): twins inside, page by page at ends. */
	r = mmap(NULL, 14 * MiB, PROT_READ, MAP_SHARED, fd, 1 * MiB);
	tap_require(p != MAP_FAILED && r != MAP_FAILED);
	fillp(p, size);
	tap_require(check(r, 1 * MiB, 1 * MiB, 15 * MiB, 0, 0));
	tap_require(pipe(c2p) == 0 && pipe(p2c) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED || !check(q, 0, 0, size, 0, 0))
			_exit(1);
		if (write(c2p[1], "a", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(2);
		if (!check(q, 0, 0, size, hs, he))
			_exit(3);
		if (write(c2p[1], "b", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(4);
		if (q[14 * MiB + 1] != 0)
			_exit(5);
		q[14 * MiB + 1] = 0x99;		/* store into a hole */
		_exit(0);
	}
	tap_require(read(c2p[0], &b, 1) == 1);
	tap_ok(mstat(fd).data_pages == 4096 && mstat(fd).links >= 16,
	       "16 MiB, 3 mappings in 2 processes: 4096 pages (links %llu)",
	       mstat(fd).links);
	tap_ok(fallocate(fd, PUNCH, hs, he - hs) == 0,
	       "punch [3 MiB+100, 11 MiB+100) while mapped");
	tap_ok(mstat(fd).data_pages == 4096 - 2047,
	       "  frees the 2047 whole pages (%llu left)", mstat(fd).data_pages);
	tap_ok(check(p, 0, 0, size, hs, he),
	       "  writable mapping: zeros in the hole (partial pages too)");
	tap_ok(check(r, 1 * MiB, 1 * MiB, 15 * MiB, hs, he),
	       "  read-only mapping (twins and pages): the same");
	tap_require(write(p2c[1], "c", 1) == 1);
	tap_ok(read(c2p[0], &b, 1) == 1, "  the other process: the same");

	/* A second hole that nobody reads: a store allocates one page. */
	tap_ok(fallocate(fd, PUNCH, 12 * MiB, 4 * MiB) == 0 &&
	       mstat(fd).data_pages == 4096 - 1024,
	       "punch [12 MiB, 16 MiB): data %llu", mstat(fd).data_pages);
	tap_require(write(p2c[1], "d", 1) == 1);
	st = -1;
	waitpid(pid, &st, 0);
	tap_ok(st == 0 && mstat(fd).data_pages == 4096 - 1024 + 1,
	       "a store into the hole by the other process allocates one page "
	       "(status %#x, data %llu)", st, mstat(fd).data_pages);
	tap_ok(p[14 * MiB + 1] == 0x99 && r[13 * MiB + 1] == 0x99,
	       "  and is seen by both mappings here");

	tap_ok(fallocate(fd, PUNCH, 0, size) == 0 && mstat(fd).data_pages == 0 &&
	       mstat(fd).table_pages == 0,
	       "punch everything: no data page left, and no table while mapped (%llu)",
	       mstat(fd).table_pages);
	tap_ok(p[0] == 0 && r[14 * MiB - 1] == 0 && p[14 * MiB + 1] == 0,
	       "  every mapping reads zeros");
	p[5 * MiB] = 0x33;
	tap_ok(r[4 * MiB] == 0x33 && mstat(fd).data_pages == 4,
	       "stores allocate again and are shared");
	munmap(p, size);
	munmap(r, 14 * MiB);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0, "unmapped");
	close(c2p[0]); close(c2p[1]); close(p2c[0]); close(p2c[1]);
	close(fd);
	unlink(PATH);
}

/* 1 GiB linked by PUD entries in two processes. */
static void big(void)
{
	unsigned long size = GiB, off;
	int fd, c2p[2], p2c[2], st;
	unsigned char *p;
	char b;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (off = 0; off < size; off += 256 * KiB)
		p[off] = 0x5a;
	tap_require(pipe(c2p) == 0 && pipe(p2c) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED || q[256 * MiB] != 0x5a)
			_exit(1);
		if (write(c2p[1], "a", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(2);
		for (off = 0; off < size; off += 256 * KiB)
			if (q[off] != (off >= 256 * MiB && off < 258 * MiB ? 0 : 0x5a))
				_exit(3);
		_exit(0);
	}
	tap_require(read(c2p[0], &b, 1) == 1);
	tap_ok(mstat(fd).links == 2 && mstat(fd).data_pages == 4096,
	       "1 GiB: two processes, two PUD links, 4096 pages");
	tap_ok(fallocate(fd, PUNCH, 256 * MiB, 2 * MiB) == 0 &&
	       mstat(fd).data_pages == 4096 - 8,
	       "1 GiB: punch a 2 MiB granule frees its 8 pages");
	tap_ok(p[256 * MiB] == 0 && p[256 * MiB + 256 * KiB] == 0 &&
	       p[258 * MiB] == 0x5a, "1 GiB: zeros here");
	tap_require(write(p2c[1], "b", 1) == 1);
	st = -1;
	waitpid(pid, &st, 0);
	tap_ok(st == 0, "1 GiB: zeros in the other process too");
	munmap(p, size);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0, "1 GiB: unmapped");
	close(c2p[0]); close(c2p[1]); close(p2c[0]); close(p2c[1]);
	close(fd);
	unlink(PATH);
}

int main(void)
{
	mid();
	big();
	return tap_done();
}
