#define _GNU_SOURCE
/*
 * Partial munmap of head, middle and tail of multi-granule mappings: the
 * links of the unmapped and cut granules go, the rest keeps working (cut
 * granules page by page), the data stays in the object, and other mappers
 * are unaffected.
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

#define PATH "/dev/morsel/munmap"

static unsigned char pat(unsigned long off)
{
	return (unsigned char)(((off >> 12) * 31 + 17) | 1);
}

/* Pattern intact at every 64 KiB step of [from, to)? */
static int intact(unsigned char *p, unsigned long from, unsigned long to)
{
	unsigned long off;

	for (off = from; off < to; off += 64 * KiB)
		if (p[off] != pat(off))
			return 0;
	return 1;
}

static void small(void)
{
	unsigned long size = 16 * MiB, off;
	unsigned char *p, v, buf[4];
	struct morsel_stat s;
	int fd;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (off = 0; off < size; off += 64 * KiB)
		p[off] = pat(off);
	tap_require(links(fd) == 8);
	s = mstat(fd);

	{
		int r = munmap(p, 2 * MiB);
		unsigned long l = links(fd);

		tap_ok(r == 0 && l == 7,
		       "head granule unmapped: 7 links, the next one kept (%lu)",
		       l);
	}
	tap_ok(try_read(p + 4096, &v) == SIGSEGV, "head access raises SIGSEGV");
	tap_ok(intact(p, 2 * MiB, size), "rest intact after head munmap");

	tap_ok(munmap(p + 6 * MiB + 512 * KiB, 1 * MiB) == 0 && links(fd) == 6,
	       "1 MiB out of the middle of granule 3: its link goes (6)");
	tap_ok(mstat(fd).mappers == 2, "the mapping is two VMAs now");
	tap_ok(intact(p, 6 * MiB, 6 * MiB + 512 * KiB) &&
	       intact(p, 7 * MiB + 512 * KiB, 8 * MiB),
	       "both pieces of the cut granule read the data");
	for (off = 6 * MiB; off < 8 * MiB; off += 4 * KiB)
		if (off < 6 * MiB + 512 * KiB || off >= 7 * MiB + 512 * KiB)
			p[off + 1] = 0x5c;
	tap_ok(links(fd) == 6, "  and map page by page: no new link");
	tap_ok(try_read(p + 7 * MiB, &v) == SIGSEGV,
	       "the unmapped middle raises SIGSEGV");

	tap_ok(munmap(p + 13 * MiB, 3 * MiB) == 0 && links(fd) == 4,
	       "tail 3 MiB unmapped: granules 6 and 7 unlinked (4)");
	tap_ok(intact(p, 12 * MiB, 13 * MiB) && links(fd) == 4,
	       "rest of granule 6 works page by page");
	tap_ok(try_read(p + 13 * MiB, &v) == SIGSEGV,
	       "unmapped tail raises SIGSEGV");
	tap_ok(pread(fd, buf, 1, 15 * MiB) == 1 && buf[0] == pat(15 * MiB) &&
	       pread(fd, buf, 1, 7 * MiB) == 1 && buf[0] == pat(7 * MiB) &&
	       pread(fd, buf, 2, 6 * MiB) == 2 && buf[1] == 0x5c,
	       "unmapped data stays in the object");
	tap_ok(mstat(fd).data_pages == s.data_pages + 240,
	       "no data page freed by munmap; page-by-page stores did not copy");
	tap_ok(munmap(p, size) == 0 && links(fd) == 0 && mstat(fd).mappers == 0,
	       "munmap over the holes and the rest: no link, no mapper");
	close(fd);
	unlink(PATH);
}

static void other_mapper(void)
{
	unsigned long size = 8 * MiB;
	int fd, c2p[2], p2c[2], st;
	unsigned char *p;
	char b;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_require(pipe(c2p) == 0 && pipe(p2c) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		unsigned long off;

		if (q == MAP_FAILED)
			_exit(1);
		for (off = 0; off < size; off += 64 * KiB)
			q[off] = pat(off);
		if (write(c2p[1], "a", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(2);
		if (!intact(q, 0, size) || q[5] != 'p')
			_exit(3);
		q[6] = 'q';
		_exit(0);
	}
	tap_require(read(c2p[0], &b, 1) == 1);
	p[5] = 'p';
	tap_ok(intact(p, 0, size) && links(fd) == 8,
	       "two processes linked (8 links)");
	tap_ok(munmap(p, 3 * MiB) == 0 && munmap(p + 5 * MiB, 3 * MiB) == 0 &&
	       links(fd) == 4 + 0, "this one unmaps head and tail (%lu)",
	       links(fd));
	tap_require(write(p2c[1], "b", 1) == 1);
	st = 0;
	if (waitpid(pid, &st, 0) != pid)
		st = -1;
	tap_ok(st == 0, "the other process still reads and writes everything");
	tap_ok(munmap(p, size) == 0 && links(fd) == 0 && mstat(fd).mappers == 0,
	       "all unmapped");
	close(c2p[0]); close(c2p[1]); close(p2c[0]); close(p2c[1]);
	close(fd);
	unlink(PATH);
}

static void big(void)
{
	unsigned long size = 2 * GiB;
	unsigned char *p, v;
	int fd;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	p[0] = 1;
	p[300 * MiB] = 2;
	p[GiB - 1] = 3;
	p[GiB + 7] = 4;
	tap_require(links(fd) == 2);
	tap_ok(munmap(p + 300 * MiB, 2 * MiB) == 0 && links(fd) == 1,
	       "2 MiB out of the first GiB drops its PUD link only");
	tap_ok(try_read(p + 300 * MiB, &v) == SIGSEGV && p[GiB + 7] == 4,
	       "hole raises SIGSEGV, second GiB still linked");
	tap_ok(p[0] == 1 && p[GiB - 1] == 3 && links(fd) == 3,
	       "first GiB's remains read the data with PMD links (%lu)",
	       links(fd));
	tap_ok(munmap(p + GiB, GiB) == 0 && links(fd) == 2,
	       "second GiB unmapped: its PUD link goes");
	tap_ok(munmap(p, size) == 0 && links(fd) == 0 && mstat(fd).mappers == 0,
	       "all unmapped");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	probe_init();
	small();
	other_mapper();
	big();
	return tap_done();
}
