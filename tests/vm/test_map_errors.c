#define _GNU_SOURCE
/*
 * mmap/mprotect refusals: MAP_PRIVATE (EINVAL), PROT_EXEC (EPERM at mmap,
 * EACCES at mprotect), MAP_FIXED at an address that disagrees with the
 * offset modulo 2 MiB (EINVAL, old mapping kept), O_RDONLY + PROT_WRITE
 * (EACCES); MAP_FIXED that agrees works; access beyond the end is SIGBUS.
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
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/map_errors"

static void flags_and_prot(void)
{
	unsigned char *p, v;
	int fd, ro;

	fd = mkobj(PATH, 4 * MiB);
	tap_errno(mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
		       0), EINVAL, "MAP_PRIVATE read-write fails with EINVAL");
	tap_errno(mmap(NULL, 4 * MiB, PROT_READ, MAP_PRIVATE, fd, 0), EINVAL,
		  "MAP_PRIVATE read-only fails with EINVAL");
	tap_errno(mmap(NULL, 4 * MiB, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0),
		  EPERM, "PROT_READ|PROT_EXEC fails with EPERM");
	tap_errno(mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_SHARED, fd, 0), EPERM,
		  "PROT_READ|PROT_WRITE|PROT_EXEC fails with EPERM");
	tap_ok(mstat(fd).mappers == 0, "refused mmaps leave no mapper");

	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	p[0] = 1;
	tap_errno(mprotect(p, 4 * MiB, PROT_READ | PROT_EXEC), EACCES,
		  "mprotect(PROT_READ|PROT_EXEC) fails with EACCES");
	tap_errno(mprotect(p + 2 * MiB, 2 * MiB, PROT_EXEC), EACCES,
		  "mprotect(PROT_EXEC) of half fails with EACCES");
	tap_ok(try_write(p + 2 * MiB + 8, 2) == 0 && p[0] == 1 &&
	       p[2 * MiB + 8] == 2, "mapping still read-write after that");
	munmap(p, 4 * MiB);
	close(fd);

	fd = open(PATH, O_RDONLY);
	tap_require(fd >= 0);
	tap_errno(mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       0), EACCES, "O_RDONLY fd with PROT_WRITE: EACCES");
	p = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	ro = p != MAP_FAILED;
	if (!ro)
		tap_diag("mmap(PROT_READ, MAP_SHARED) of O_RDONLY fd: %s",
			 strerror(errno));
	tap_ok(ro && try_read(p, &v) == 0 && v == 1,
	       "O_RDONLY fd with PROT_READ maps and reads");
	if (ro)
		munmap(p, 4 * MiB);
	close(fd);
	fd = open(PATH, O_WRONLY);
	tap_require(fd >= 0);
	tap_errno(mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       0), EACCES, "O_WRONLY fd: EACCES");
	close(fd);
	unlink(PATH);
}

static void fixed(void)
{
	unsigned char *base, *p, *r;
	int fd, ok;

	fd = mkobj(PATH, 8 * MiB);
	tap_require(pwrite(fd, "abcd", 4, 12 * KiB) == 4);
	base = free_range(8 * MiB, 2 * MiB);

	/* An existing mapping that a refused MAP_FIXED must keep. */
	r = mmap(base, 8 * MiB, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	tap_require(r == base);
	memset(r, 0x3c, 8 * MiB);
	tap_errno(mmap(base + 4 * KiB, 4 * MiB, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, fd, 0), EINVAL,
		  "MAP_FIXED at 2 MiB+4 KiB for offset 0: EINVAL");
	tap_errno(mmap(base, 4 * MiB, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, fd, 4 * KiB), EINVAL,
		  "MAP_FIXED at 2 MiB for offset 4 KiB: EINVAL");
	tap_errno(mmap(base + 1 * MiB, 4 * MiB, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, fd, 2 * MiB), EINVAL,
		  "MAP_FIXED at +1 MiB for offset 2 MiB: EINVAL");
	ok = 1;
	for (unsigned long i = 0; i < 8 * MiB; i += 4 * KiB)
		if (r[i] != 0x3c)
			ok = 0;
	tap_ok(ok, "the mapping under the refused MAP_FIXED is untouched");
	tap_ok(mstat(fd).mappers == 0, "refused MAP_FIXED leaves no mapper");

	p = mmap(base, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0);
	tap_ok(p == base, "MAP_FIXED at a 2 MiB boundary, offset 0 works");
	if (p == base) {
		tap_ok(memcmp(p + 12 * KiB, "abcd", 4) == 0,
		       "  and shows the file");
		p[2 * MiB] = 9;
		tap_ok(mstat(fd).links == 2, "  and links both granules (%llu)",
		       mstat(fd).links);
	} else {
		tap_ok(0, "  and shows the file");
		tap_ok(0, "  and links both granules");
	}
	p = mmap(base + 4 * MiB + 12 * KiB, 4 * KiB, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, fd, 12 * KiB);
	tap_ok(p == base + 4 * MiB + 12 * KiB && memcmp(p, "abcd", 4) == 0,
	       "MAP_FIXED at +12 KiB for offset 12 KiB works");
	p = mmap(base + 6 * MiB, 2 * MiB, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 2 * MiB);
	tap_ok(p == MAP_FAILED && errno == EEXIST,
	       "MAP_FIXED_NOREPLACE over a mapping: EEXIST");
	munmap(base + 6 * MiB, 2 * MiB);
	p = mmap(base + 6 * MiB, 2 * MiB, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 2 * MiB);
	tap_ok(p == base + 6 * MiB && p[0] == 9,
	       "MAP_FIXED_NOREPLACE congruent works and sees the data");
	tap_ok(mstat(fd).mappers == 3, "three mappings (%llu)",
	       mstat(fd).mappers);
	munmap(base, 8 * MiB);
	tap_ok(mstat(fd).mappers == 0 && mstat(fd).links == 0,
	       "all unmapped");
	close(fd);
	unlink(PATH);
}

static void beyond_eof(void)
{
	unsigned char *p, v;
	int fd;

	fd = mkobj(PATH, 2 * MiB + 8 * KiB);
	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(try_write(p + 2 * MiB + 4 * KiB, 1) == 0,
	       "last page of a 2 MiB+8 KiB object writes");
	tap_ok(try_read(p + 2 * MiB + 8 * KiB, &v) == SIGBUS,
	       "first page past the end: read raises SIGBUS");
	tap_ok(try_write(p + 4 * MiB - 1, 1) == SIGBUS,
	       "last byte of the mapping past the end: store raises SIGBUS");
	tap_ok(try_write(p + 5, 1) == 0 && p[2 * MiB + 4 * KiB] == 1,
	       "mapping still works");
	munmap(p, 4 * MiB);

	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 4 * MiB);
	tap_ok(p != MAP_FAILED, "mmap at an offset beyond the end succeeds");
	if (p != MAP_FAILED) {
		tap_ok(try_read(p, &v) == SIGBUS && try_write(p + 8, 1) == SIGBUS,
		       "  and any access raises SIGBUS");
		munmap(p, 2 * MiB);
	} else {
		tap_ok(0, "  and any access raises SIGBUS");
	}
	tap_ok(mstat(fd).data_pages == 2,
	       "SIGBUS accesses allocated nothing (data %llu)",
	       mstat(fd).data_pages);
	close(fd);
	unlink(PATH);

	/* 1 GiB + 4 KiB object in a 2 GiB mapping: second GiB is one page. */
	fd = mkobj(PATH, GiB + 4 * KiB);
	p = mmap(NULL, 2 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(try_write(p + GiB + 100, 7) == 0 && try_write(p, 6) == 0,
	       "1 GiB+4 KiB: first page of the second GiB writes");
	tap_ok(try_read(p + GiB + 4 * KiB, &v) == SIGBUS,
	       "1 GiB+4 KiB: next page raises SIGBUS");
	tap_ok(try_write(p + GiB + 2 * MiB, 1) == SIGBUS &&
	       try_read(p + 2 * GiB - 1, &v) == SIGBUS,
	       "1 GiB+4 KiB: later granules raise SIGBUS");
	tap_ok(mstat(fd).data_pages == 2, "1 GiB+4 KiB: 2 data pages");
	munmap(p, 2 * GiB);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0,
	       "1 GiB+4 KiB: unmapped");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	probe_init();
	flags_and_prot();
	fixed();
	beyond_eof();
	return tap_done();
}
