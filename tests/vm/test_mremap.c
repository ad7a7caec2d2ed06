#define _GNU_SOURCE
/*
 * mremap: moving to an address congruent with the offset works and keeps
 * the data (links are removed and made again on touch); growing fails with
 * EFAULT; moving to a non-congruent address fails with EINVAL and leaves
 * the old mapping working; shrinking and partial moves keep the rest.
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

#define PATH "/dev/morsel/mremap"

static unsigned char pat(unsigned long off)
{
	return (unsigned char)(((off >> 12) * 31 + 17) | 1);
}

/* Pattern at every 64 KiB of [from, to) of a mapping of offset @base. */
static int intact(unsigned char *p, unsigned long base, unsigned long from,
		  unsigned long to)
{
	unsigned long off;

	for (off = from; off < to; off += 64 * KiB)
		if (p[off] != pat(base + off))
			return 0;
	return 1;
}

static void small(void)
{
	unsigned long size = 8 * MiB, off;
	unsigned char *p, *n, *t, v;
	int fd;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (off = 0; off < size; off += 64 * KiB)
		p[off] = pat(off);
	tap_require(links(fd) == 4);

	tap_errno(mremap(p, size, size + 2 * MiB, MREMAP_MAYMOVE), EFAULT,
		  "grow with MREMAP_MAYMOVE fails with EFAULT");
	tap_errno(mremap(p, size, size + 4 * KiB, 0), EFAULT,
		  "grow in place fails with EFAULT");
	t = free_range(size, 2 * MiB);
	tap_errno(mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED,
			 t + 4 * KiB), EINVAL,
		  "MREMAP_FIXED to 2 MiB+4 KiB fails with EINVAL");
	tap_errno(mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED,
			 t + 1 * MiB), EINVAL,
		  "MREMAP_FIXED to +1 MiB fails with EINVAL");
	tap_errno(mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, t),
		  EINVAL, "MREMAP_DONTUNMAP fails with EINVAL");
	tap_ok(intact(p, 0, 0, size) && links(fd) == 4 &&
	       mstat(fd).mappers == 1,
	       "after the refusals the old mapping works, links kept");

	n = mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	tap_ok(n == t, "MREMAP_FIXED to a 2 MiB boundary moves (%p)", n);
	if (n != t)
		tap_fatal("mremap move failed");
	tap_ok(try_read(p + 4096, &v) == SIGSEGV, "old range raises SIGSEGV");
	tap_ok(links(fd) == 0 && mstat(fd).mappers == 1,
	       "moved: the old links are gone, one mapper");
	tap_ok(intact(n, 0, 0, size) && links(fd) == 4,
	       "data intact at the new place, links made again on touch");
	n[1] = 0x11;
	tap_ok(pread(fd, &v, 1, 1) == 1 && v == 0x11,
	       "stores at the new place reach the object");

	/* Move the aligned middle granule out. */
	t = free_range(2 * MiB, 2 * MiB);
	p = mremap(n + 2 * MiB, 2 * MiB, 2 * MiB,
		   MREMAP_MAYMOVE | MREMAP_FIXED, t);
	tap_ok(p == t && intact(p, 2 * MiB, 0, 2 * MiB) &&
	       intact(n, 0, 0, 2 * MiB) && intact(n, 0, 4 * MiB, size),
	       "granule 1 moved alone: all three pieces read the data");
	tap_ok(links(fd) == 4 && mstat(fd).mappers == 3,
	       "  4 links, 3 VMAs (links %lu)", links(fd));
	munmap(p, 2 * MiB);
	munmap(n, 2 * MiB);

	/* Shrink the remaining 4 MiB (granules 2 and 3) to 3 MiB. */
	p = mremap(n + 4 * MiB, 4 * MiB, 3 * MiB, 0);
	tap_ok(p == n + 4 * MiB && links(fd) == 1 && intact(p, 4 * MiB, 0, 3 * MiB),
	       "shrink to 3 MiB: cut granule unlinked, data intact (%lu)",
	       links(fd));
	tap_ok(try_read(p + 3 * MiB, &v) == SIGSEGV, "shrunk tail raises SIGSEGV");
	munmap(p, 3 * MiB);
	tap_ok(links(fd) == 0 && mstat(fd).mappers == 0, "all unmapped");

	/* Offset 12 KiB: the new place must be 12 KiB past a boundary. */
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 12 * KiB);
	tap_require(p != MAP_FAILED);
	t = free_range(4 * MiB, 2 * MiB);
	tap_errno(mremap(p, 2 * MiB, 2 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED,
			 t), EINVAL, "offset 12 KiB: move to a boundary EINVAL");
	n = mremap(p, 2 * MiB, 2 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED,
		   t + 12 * KiB);
	tap_ok(n == t + 12 * KiB &&
	       intact(n, 12 * KiB, 52 * KiB, 2 * MiB),
	       "offset 12 KiB: move to boundary+12 KiB works, data intact");
	munmap(n == MAP_FAILED ? p : n, 2 * MiB);
	close(fd);
	unlink(PATH);
}

static void big(void)
{
	unsigned long size = GiB;
	unsigned char *p, *n, *t;
	int fd;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	p[0] = 1;
	p[size - 1] = 2;
	tap_require(links(fd) == 1);
	t = free_range(size, GiB);
	n = mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	tap_ok(n == t && links(fd) == 0 && n[0] == 1 && n[size - 1] == 2 &&
	       links(fd) == 1, "1 GiB moved to a 1 GiB boundary: PUD link again");
	t = free_range(size + 2 * MiB, GiB) + 2 * MiB;
	p = mremap(n, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, t);
	tap_ok(p == t && p[0] == 1 && p[size - 1] == 2 && links(fd) == 2,
	       "1 GiB moved to 1 GiB+2 MiB: data intact, PMD links (%lu)",
	       links(fd));
	munmap(p, size);
	tap_ok(links(fd) == 0 && mstat(fd).mappers == 0, "1 GiB unmapped");
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
