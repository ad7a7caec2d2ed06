#define _GNU_SOURCE
/*
 * mprotect removes the links of the range; later faults link (or map by
 * page) with the new protection.  RW->RO stores fault while other writable
 * mappers still write; RO->RW writes again; mprotect of half a granule
 * leaves the other half and the other granules working.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
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

#define PATH "/dev/morsel/mprotect"

/* A child maps the object writable and stores @v at @off. */
static int child_store(int fd, unsigned long size, unsigned long off,
		       unsigned char v)
{
	pid_t pid = fork();
	int st;

	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED)
			_exit(1);
		q[off] = v;
		_exit(q[off] == v ? 0 : 2);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

static void touch_all(unsigned char *p, unsigned long len, unsigned long step)
{
	unsigned long off;

	for (off = 0; off < len; off += step)
		(void)*(volatile unsigned char *)(p + off);
}

static void small(void)
{
	unsigned long size = 8 * MiB, off;
	unsigned char *p, *q, *r, v;
	unsigned long base;
	int fd, bad;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED && q != MAP_FAILED);
	for (off = 0; off < size; off += 64 * KiB)
		p[off] = (unsigned char)(off >> 16) | 1;
	touch_all(q, size, 2 * MiB);	/* q keeps 4 links throughout */
	tap_ok(links(fd) == 8, "8 MiB: 4 links + 4 of a second mapping (%lu)",
	       links(fd));

	tap_ok(mprotect(p, size, PROT_READ) == 0 && links(fd) == 4,
	       "RW->RO removes the 4 links of that mapping (%lu)", links(fd));
	tap_ok(try_write(p + 4 * MiB, 0xEE) == SIGSEGV,
	       "store after RW->RO raises SIGSEGV");
	bad = 0;
	for (off = 0; off < size; off += 64 * KiB)
		bad += p[off] != ((unsigned char)(off >> 16) | 1);
	{
		unsigned long l = links(fd);

		tap_ok(!bad && l == 8,
		       "reads work and link read-only twins again (%lu)", l);
	}
	tap_ok(child_store(fd, size, 4 * MiB + 1, 0x61) == 0 &&
	       p[4 * MiB + 1] == 0x61,
	       "another process's writable mapping still writes, seen here");
	q[6 * MiB + 1] = 0x62;
	tap_ok(p[6 * MiB + 1] == 0x62,
	       "writable mapping in this process still writes, seen here");

	tap_ok(mprotect(p, size, PROT_READ | PROT_WRITE) == 0 &&
	       try_write(p + 4 * MiB, 0x63) == 0 && q[4 * MiB] == 0x63,
	       "RO->RW: stores work again");
	touch_all(p, size, 2 * MiB);
	{
		unsigned long l = links(fd);

		tap_ok(l == 4 + 4,
		       "RO->RW: later faults link every granule again (%lu)", l);
	}

	/* Half a granule read-only, in a fresh mapping r. */
	r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(r != MAP_FAILED);
	base = links(fd);
	touch_all(r, size, 2 * MiB);
	tap_ok(links(fd) == base + 4, "fresh mapping links 4 granules");
	{
		int e = mprotect(r + 2 * MiB, 2 * MiB, PROT_READ);
		unsigned long l = links(fd);

		tap_ok(e == 0 && l == base + 3,
		       "mprotect of exactly granule 1 drops only its link "
		       "(%lu, want %lu)", l, base + 3);
		tap_require(mprotect(r + 2 * MiB, 2 * MiB,
				     PROT_READ | PROT_WRITE) == 0);
		touch_all(r, size, 2 * MiB);
		tap_diag("links after RO->RW of granule 1: %lu (base+4 = %lu)",
			 links(fd), base + 4);
		tap_require(munmap(r, size) == 0);
		r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		tap_require(r != MAP_FAILED);
		touch_all(r, size, 2 * MiB);
		tap_require(links(fd) == base + 4);
	}
	tap_ok(mprotect(r + 2 * MiB, 1 * MiB, PROT_READ) == 0 &&
	       links(fd) == base + 3,
	       "mprotect of half a granule drops that granule's link only");
	tap_ok(try_write(r + 2 * MiB + 8, 1) == SIGSEGV,
	       "store to the read-only half raises SIGSEGV");
	tap_ok(try_write(r + 3 * MiB + 8, 0x64) == 0 && q[3 * MiB + 8] == 0x64,
	       "store to the writable half works and is shared");
	tap_ok(try_read(r + 2 * MiB, &v) == 0 &&
	       v == ((unsigned char)((2 * MiB) >> 16) | 1),
	       "the read-only half reads the data");
	touch_all(r + 2 * MiB, 2 * MiB, 4 * KiB);
	tap_ok(links(fd) == base + 3,
	       "touching the cut granule maps it by page, no link");
	tap_ok(try_write(r + 4 * MiB + 8, 0x65) == 0 &&
	       try_write(r + 8, 0x66) == 0 && q[8] == 0x66,
	       "the other granules still write");
	q[2 * MiB + 16] = 0x67;
	tap_ok(r[2 * MiB + 16] == 0x67,
	       "the read-only half sees a store made elsewhere");
	tap_ok(mprotect(r + 2 * MiB, 1 * MiB, PROT_READ | PROT_WRITE) == 0 &&
	       try_write(r + 2 * MiB + 8, 0x68) == 0 && q[2 * MiB + 8] == 0x68,
	       "half back to RW writes");
	touch_all(r + 2 * MiB, 2 * MiB, 4 * KiB);
	{
		unsigned long l = links(fd);

		/*
		 * The granule is whole in one writable VMA again, but its
		 * process PTE table from the page-by-page phase stays until
		 * munmap (docs/semantics.md): still mapped by page.
		 */
		tap_ok(l == base + 3 && r[2 * MiB + 8] == 0x68 &&
		       q[2 * MiB + 16] == 0x67,
		       "halves merged: the granule stays mapped by page, data intact (%lu links, want %lu)",
		       l, base + 3);
	}
	munmap(r, size);
	tap_ok(links(fd) == base, "unmapping it drops its links");

	tap_ok(mprotect(p, size, PROT_NONE) == 0 && links(fd) == 4,
	       "PROT_NONE drops every link of that mapping (%lu)", links(fd));
	tap_ok(try_read(p + 4 * MiB, &v) == SIGSEGV,
	       "PROT_NONE: read raises SIGSEGV");
	tap_ok(mprotect(p, size, PROT_READ | PROT_WRITE) == 0 &&
	       try_read(p + 6 * MiB + 1, &v) == 0 && v == 0x62,
	       "back to RW: reads the data");
	munmap(p, size);
	munmap(q, size);
	tap_ok(links(fd) == 0 && mstat(fd).mappers == 0, "8 MiB: unmapped");
	close(fd);
	unlink(PATH);
}

static void big(void)
{
	unsigned long size = GiB;
	unsigned char *p, v;
	int fd;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	p[0] = 1;
	p[size - 1] = 2;
	tap_ok(links(fd) == 1, "1 GiB: one PUD link");
	tap_ok(mprotect(p, size, PROT_READ) == 0 && links(fd) == 0,
	       "1 GiB RW->RO: link removed");
	tap_ok(try_read(p + size - 1, &v) == 0 && v == 2 && links(fd) == 1,
	       "1 GiB RO: read links the GiB again, read-only (%lu)", links(fd));
	tap_ok(try_write(p + 4096, 3) == SIGSEGV && try_write(p, 3) == SIGSEGV,
	       "1 GiB RO: stores raise SIGSEGV");
	tap_ok(child_store(fd, size, 512 * MiB, 0x71) == 0 &&
	       p[512 * MiB] == 0x71,
	       "1 GiB RO: another process writes, seen here");
	tap_ok(mprotect(p, size, PROT_READ | PROT_WRITE) == 0 && links(fd) == 0 &&
	       try_write(p + 4096, 4) == 0 && links(fd) == 1,
	       "1 GiB RO->RW: link removed, store works and links again");
	/*
	 * The read-only phase linked 2 MiB twins, so the process now has a
	 * PMD table of its own here and the store above linked granule 0 by
	 * PMD, not the GiB by PUD: that link is outside the range and stays.
	 */
	tap_ok(mprotect(p + 512 * MiB, 2 * MiB, PROT_READ) == 0 &&
	       links(fd) <= 1,
	       "1 GiB: mprotect of one granule leaves no link over it (%lu left)",
	       links(fd));
	touch_all(p, 2 * MiB, 2 * MiB);
	touch_all(p + 512 * MiB, 2 * MiB, 4 * KiB);
	touch_all(p + size - 2 * MiB, 2 * MiB, 2 * MiB);
	{
		unsigned long l = links(fd);

		tap_ok(l == 3,
		       "  then 2 writable granules and the RO one (twin) link "
		       "by PMD (%lu)", l);
	}
	tap_ok(try_write(p + 512 * MiB + 8, 5) == SIGSEGV &&
	       p[512 * MiB] == 0x71,
	       "  store to the read-only granule raises SIGSEGV");
	tap_ok(try_write(p + 512 * MiB - 1, 6) == 0 &&
	       try_write(p + 514 * MiB, 7) == 0 && try_write(p + 8, 8) == 0,
	       "  stores around it work");
	munmap(p, size);
	tap_ok(links(fd) == 0 && mstat(fd).mappers == 0, "1 GiB: unmapped");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	probe_init();
	small();
	big();
	return tap_done();
}
