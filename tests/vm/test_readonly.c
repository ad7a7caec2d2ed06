#define _GNU_SOURCE
/*
 * Read-only mappings (PROT_READ, or files opened O_RDONLY) see every store
 * of the writable mappers but never write: a store raises SIGSEGV, in this
 * process and in another one, while writable mappings keep writing.  A
 * read-only VMA links whole granules too (a read-only twin of the PTE
 * table, or a PUD entry with RW clear); the twin follows every change of
 * the object's table (new frames, punched holes).
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

#define PATH "/dev/morsel/readonly"

static unsigned char pat(unsigned long off, int gen)
{
	return (unsigned char)(((off >> 12) * 31 + gen * 101 + 17) | 1);
}

static void one_size(unsigned long size)
{
	unsigned long step = size / 512 > 4 * KiB ? size / 512 : 4 * KiB;
	unsigned long off, gran, wlinks, rlinks;
	const char *u = size >= GiB ? "GiB" : size >= MiB ? "MiB" : "KiB";
	unsigned long h = size >= GiB ? size / GiB :
			  size >= MiB ? size / MiB : size / KiB;
	unsigned char *w, *r;
	struct morsel_stat s;
	int fd, bad, sig, st;
	pid_t pid;

	fd = mkobj(PATH, size);
	w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	r = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(w != MAP_FAILED && r != MAP_FAILED);
	for (off = 0; off < size; off += step)
		w[off] = pat(off, 0);
	bad = 0;
	for (off = 0; off < size; off += step)
		bad += r[off] != pat(off, 0);
	tap_ok(!bad, "%lu %s: PROT_READ mapping sees the stores (%d bad)", h,
	       u, bad);
	sig = try_write(r + step / 2, 0xEE);
	tap_ok(sig == SIGSEGV, "%lu %s: store to PROT_READ raises SIGSEGV (%d)",
	       h, u, sig);
	tap_ok(w[step / 2] == 0 && w[0] == pat(0, 0),
	       "%lu %s: the refused store changed nothing", h, u);
	for (off = 0; off < size; off += step)
		w[off] = pat(off, 1);
	bad = 0;
	for (off = 0; off < size; off += step)
		bad += r[off] != pat(off, 1);
	tap_ok(!bad, "%lu %s: writable mapping still writes, reader sees it",
	       h, u);
	gran = size >= GiB ? GiB : 2 * MiB;
	wlinks = size / gran;
	/*
	 * Read-only VMAs link read-only twins, 2 MiB each: never a PUD link,
	 * whose leaves would be writable for follow_pfnmap() (KVM).
	 */
	rlinks = step >= 2 * MiB ? size / step : size / (2 * MiB);
	s = mstat(fd);
	tap_ok(s.links == wlinks + rlinks,
	       "%lu %s: links %llu == %lu writable + %lu read-only", h, u,
	       s.links, wlinks, rlinks);

	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ, MAP_SHARED, fd,
					0);
		if (q == MAP_FAILED)
			_exit(1);
		signal(SIGSEGV, SIG_DFL);
		for (off = 0; off < size; off += step)
			if (q[off] != pat(off, 1))
				_exit(2);
		q[size - 1] = 0xEE;
		_exit(3);
	}
	st = wait_status(pid);
	tap_ok(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
	       "%lu %s: another process reads, its store dies of SIGSEGV "
	       "(status %#x)", h, u, st);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED)
			_exit(1);
		q[size - 1] = 0x42;
		_exit(0);
	}
	st = wait_status(pid);
	tap_ok(st == 0 && r[size - 1] == 0x42 && w[size - 1] == 0x42,
	       "%lu %s: writable mapper in another process writes, seen here",
	       h, u);
	munmap(w, size);
	munmap(r, size);
	s = mstat(fd);
	tap_ok(s.links == 0 && s.mappers == 0, "%lu %s: unmapped", h, u);
	close(fd);
	unlink(PATH);
}

static void rdonly_file(unsigned long size)
{
	unsigned long h = size >= GiB ? size / GiB : size / MiB;
	const char *u = size >= GiB ? "GiB" : "MiB";
	unsigned char *p;
	int fd, rfd;

	fd = mkobj(PATH, size);
	tap_require(pwrite(fd, "xyz", 3, size - 3) == 3);
	rfd = open(PATH, O_RDONLY);
	tap_require(rfd >= 0);
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, rfd, 0);
	tap_ok(p != MAP_FAILED, "%lu %s O_RDONLY: mmap(PROT_READ, MAP_SHARED) "
	       "works", h, u);
	if (p == MAP_FAILED) {
		tap_diag("mmap failed: %s", strerror(errno));
		tap_ok(0, "%lu %s O_RDONLY: reads", h, u);
		tap_ok(0, "%lu %s O_RDONLY: store raises SIGSEGV", h, u);
		tap_ok(0, "%lu %s O_RDONLY: mprotect(PROT_WRITE) EACCES", h, u);
	} else {
		tap_ok(memcmp(p + size - 3, "xyz", 3) == 0,
		       "%lu %s O_RDONLY: reads", h, u);
		tap_ok(try_write(p + size - 1, 'Q') == SIGSEGV && p[size - 1] == 'z',
		       "%lu %s O_RDONLY: store raises SIGSEGV", h, u);
		tap_errno(mprotect(p, size, PROT_READ | PROT_WRITE), EACCES,
			  "%lu %s O_RDONLY: mprotect(PROT_WRITE) EACCES", h, u);
		munmap(p, size);
	}
	close(rfd);
	close(fd);
	unlink(PATH);
}

/* The read-only twin of a PTE table follows its primary. */
static void twin(void)
{
	unsigned long size = 4 * MiB;
	unsigned char *w, *r, v = 0;
	struct morsel_stat s;
	int fd;

	fd = mkobj(PATH, size);
	r = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(r != MAP_FAILED && w != MAP_FAILED);
	v = r[0];			/* the twin of granule 0 is linked first */
	s = mstat(fd);
	tap_ok(v == 0 && s.links == 1, "twin: read-only mapping links "
	       "granule 0 before any store (links %llu)", s.links);
	w[5 * 4096 + 1] = 0x51;		/* a new frame in the primary */
	tap_ok(r[5 * 4096 + 1] == 0x51, "twin: sees a frame allocated later");
	tap_ok(fallocate(fd, 0x01 | 0x02, 5 * 4096, 4096) == 0 &&
	       r[5 * 4096 + 1] == 0, "twin: sees the hole after a punch");
	w[5 * 4096 + 2] = 0x52;
	tap_ok(r[5 * 4096 + 2] == 0x52 && r[5 * 4096 + 1] == 0,
	       "twin: sees the frame stored after the punch");
	tap_ok(try_write(r + 5 * 4096, 1) == SIGSEGV && w[5 * 4096] == 0,
	       "twin: a store through it raises SIGSEGV");
	s = mstat(fd);
	tap_ok(s.links == 2, "twin: 1 read-only + 1 writable link (%llu)",
	       s.links);
	munmap(r, size);
	munmap(w, size);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0, "twin: unmapped");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	static const unsigned long sizes[] = {
		4 * KiB, 2 * MiB, 64 * MiB, GiB, 2 * GiB,
	};
	unsigned i;

	probe_init();
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		one_size(sizes[i]);
	twin();
	rdonly_file(2 * MiB);
	rdonly_file(GiB);
	return tap_done();
}
