#define _GNU_SOURCE
/*
 * fork: the child inherits morsel mappings without copied table entries
 * (it links on its first touch) and shares data both ways; MADV_DONTFORK
 * drops the mapping from children and MADV_DOFORK brings it back;
 * MADV_KEEPONFORK does not make fork copy links; many fork/exit cycles
 * leave the totals as they were.
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

#define PATH "/dev/morsel/fork"

static void touch(volatile unsigned char *p, unsigned long len,
		  unsigned long step)
{
	unsigned long off;

	for (off = 0; off < len; off += step)
		(void)p[off];
}

static void share_both_ways(void)
{
	unsigned long size = 8 * MiB, off;
	int fd, c2p[2], p2c[2], st;
	unsigned char *p;
	char b;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (off = 0; off < size; off += 256 * KiB)
		p[off] = (unsigned char)(off >> 18) | 0x80;
	tap_require(mstat(fd).links == 4);
	tap_require(pipe(c2p) == 0 && pipe(p2c) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		struct morsel_stat s = mstat(fd);

		/* Nothing copied: only the parent's links, two VMAs. */
		if (s.links != 4 || s.mappers != 2)
			_exit(10);
		for (off = 0; off < size; off += 256 * KiB)
			if (p[off] != ((unsigned char)(off >> 18) | 0x80))
				_exit(11);
		if (mstat(fd).links != 8)	/* linked on first touch */
			_exit(12);
		p[3 * MiB + 3] = 'C';
		if (write(c2p[1], "x", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(13);
		_exit(p[5 * MiB + 5] == 'P' ? 0 : 14);
	}
	tap_ok(read(c2p[0], &b, 1) == 1 && p[3 * MiB + 3] == 'C',
	       "child's store through the inherited mapping seen by parent");
	p[5 * MiB + 5] = 'P';
	tap_require(write(p2c[1], "y", 1) == 1);
	st = wait_status(pid);
	tap_ok(CHILD_OK(st), "child: no copied links, data seen, links on touch, "
	       "sees parent's later store (status %#x)", st);
	tap_ok(mstat(fd).links == 4 && mstat(fd).mappers == 1,
	       "after the child exits: parent's 4 links, 1 mapper");
	close(c2p[0]); close(c2p[1]); close(p2c[0]); close(p2c[1]);

	/* MADV_DONTFORK / MADV_DOFORK on a second mapping. */
	{
		unsigned char *d = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);

		tap_require(d != MAP_FAILED);
		d[0] = 'D';
		tap_ok(madvise(d, size, MADV_DONTFORK) == 0, "MADV_DONTFORK works");
		pid = fork();
		tap_require(pid >= 0);
		if (pid == 0) {
			signal(SIGSEGV, SIG_DFL);
			if (mstat(fd).mappers != 3)	/* 2 parent + 1 here */
				_exit(20);
			if (p[0] != 'D')
				_exit(21);
			(void)*(volatile unsigned char *)d;
			_exit(22);
		}
		st = wait_status(pid);
		tap_ok(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
		       "child has no MADV_DONTFORK mapping: SIGSEGV (status %#x)",
		       st);
		tap_ok(d[0] == 'D' && mstat(fd).mappers == 2,
		       "parent's DONTFORK mapping unaffected");
		tap_ok(madvise(d, size, MADV_DOFORK) == 0, "MADV_DOFORK works");
		pid = fork();
		tap_require(pid >= 0);
		if (pid == 0)
			_exit(mstat(fd).mappers == 4 && d[0] == 'D' ? 0 : 23);
		st = wait_status(pid);
		tap_ok(st == 0, "  a child has that mapping again and reads it "
		       "(status %#x)", st);
		munmap(d, size);
	}
	munmap(p, size);
	close(fd);
	unlink(PATH);
}

/* MADV_KEEPONFORK must not let fork copy links (or pages). */
static void keeponfork(unsigned long size, unsigned long step)
{
	unsigned long h = size >= GiB ? size / GiB : size / MiB;
	const char *u = size >= GiB ? "GiB" : "MiB";
	unsigned long parent_links;
	unsigned char *p;
	int fd, st;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	touch(p, size, step);
	p[1] = 'k';
	parent_links = mstat(fd).links;
	tap_ok(madvise(p, size, MADV_KEEPONFORK) == 0,
	       "%lu %s: MADV_KEEPONFORK accepted", h, u);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		pid_t gc;

		if (mstat(fd).links != parent_links)
			_exit(30);
		if (p[1] != 'k')
			_exit(31);
		if (mstat(fd).links != parent_links + 1)
			_exit(32);
		touch(p, size, step);
		if (mstat(fd).links != 2 * parent_links)
			_exit(33);
		p[2] = 'c';
		/* And the child's own children, again. */
		gc = fork();
		if (gc < 0)
			_exit(34);
		if (gc == 0) {
			if (mstat(fd).links != 2 * parent_links)
				_exit(35);
			if (p[2] != 'c')
				_exit(36);
			if (mstat(fd).links != 2 * parent_links + 1)
				_exit(37);
			p[3] = 'g';
			_exit(0);
		}
		st = wait_status(gc);
		if (!CHILD_OK(st))
			_exit(st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 38);
		_exit(p[3] == 'g' ? 0 : 39);
	}
	st = wait_status(pid);
	tap_ok(CHILD_OK(st), "%lu %s: after KEEPONFORK child and grandchild "
	       "copy no link, link on touch, share data (status %#x)", h, u, st);
	tap_ok(p[2] == 'c' && p[3] == 'g' && mstat(fd).links == parent_links,
	       "%lu %s: their stores seen, links back to %lu", h, u,
	       parent_links);
	munmap(p, size);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0,
	       "%lu %s: unmapped", h, u);
	close(fd);
	unlink(PATH);
}

static void cycles(void)
{
	long links0 = total("links"), mappers0 = total("mappers");
	long data0 = total("data_pages"), tables0 = total("table_pages");
	unsigned long size = 16 * MiB;
	int fd, i, bad = 0, st, pfd[2];
	unsigned char *p;
	char b;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	p[0] = 1;
	touch(p, size, 2 * MiB);	/* parent: 8 links, 8 data pages */
	for (i = 0; i < 150; i++) {
		tap_require(pipe(pfd) == 0);
		pid = fork();
		tap_require(pid >= 0);
		if (pid == 0) {
			unsigned char *q = mmap(NULL, size,
						PROT_READ | PROT_WRITE,
						MAP_SHARED, fd, 0);
			if (q == MAP_FAILED)
				_exit(1);
			p[(i % 8) * 2 * MiB + 4096] = (unsigned char)i;
			q[((i + 3) % 8) * 2 * MiB + 8192] = (unsigned char)i;
			touch(q, size, 2 * MiB);
			if (write(pfd[1], "r", 1) != 1)
				_exit(2);
			if (i % 3 == 2)
				pause();	/* killed while linked */
			_exit(0);		/* no munmap */
		}
		close(pfd[1]);
		if (read(pfd[0], &b, 1) != 1)
			bad++;
		close(pfd[0]);
		if (i % 3 == 2)
			kill(pid, SIGKILL);
		st = wait_status(pid);
		if (i % 3 == 2 ? !(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			       : !CHILD_OK(st))
			bad++;
		if (p[(i % 8) * 2 * MiB + 4096] != (unsigned char)i ||
		    p[((i + 3) % 8) * 2 * MiB + 8192] != (unsigned char)i)
			bad++;
	}
	tap_ok(!bad, "150 fork/exit (every third killed) cycles: stores seen "
	       "(%d bad)", bad);
	tap_ok(total("links") == links0 + 8 && total("mappers") == mappers0 + 1,
	       "totals: only the parent's link and mapper remain (links %ld "
	       "mappers %ld)", total("links") - links0,
	       total("mappers") - mappers0);
	tap_ok(mstat(fd).data_pages == 8 + 16,
	       "data pages: only what was stored (%llu)", mstat(fd).data_pages);
	munmap(p, size);
	close(fd);
	unlink(PATH);
	tap_ok(total("links") == links0 && total("mappers") == mappers0 &&
	       total("data_pages") == data0 && total("table_pages") == tables0,
	       "totals back to baseline");
}

int main(void)
{
	share_both_ways();
	keeponfork(8 * MiB, 2 * MiB);
	keeponfork(GiB, 64 * MiB);
	cycles();
	return tap_done();
}
