#define _GNU_SOURCE
/*
 * lseek SEEK_DATA/SEEK_HOLE at page granularity on sparse morsels of every
 * level (PTE, PMD, PUD roots, 64 GiB and 512 GiB objects with data in a
 * few places), with punched pages counting as holes and ENXIO at or after
 * the end.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

static int put(int fd, off_t off)
{
	return pwrite(fd, "d", 1, off) == 1 ? 0 : -1;
}

static int reset(int fd, long long size)
{
	return ftruncate(fd, 0) || ftruncate(fd, size) ? -1 : 0;
}

#define SEEK_IS(fd, off, whence, want, ...)				\
	do {								\
		errno = 0;						\
		off_t __got = lseek(fd, off, whence);			\
		if (__got != (off_t)(want))				\
			tap_diag("lseek(%lld, %s) = %lld errno %d, want %lld", \
				 (long long)(off), #whence,		\
				 (long long)__got, errno, (long long)(want)); \
		tap_ok(__got == (off_t)(want), __VA_ARGS__);		\
	} while (0)

int main(void)
{
	const char *path = "/dev/morsel/sk_a";
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0, "create");

	/* Size 0. */
	tap_errno(lseek(fd, 0, SEEK_DATA), ENXIO, "empty: SEEK_DATA at 0 ENXIO");
	tap_errno(lseek(fd, 0, SEEK_HOLE), ENXIO, "empty: SEEK_HOLE at 0 ENXIO");

	/* Level 1: 2 MiB with pages 3, 4 and 10. */
	tap_require(reset(fd, 2 * MiB) == 0, "2M");
	put(fd, 3 * PG);
	put(fd, 4 * PG + 4095);
	put(fd, 10 * PG + 7);
	SEEK_IS(fd, 0, SEEK_DATA, 3 * PG, "PTE level: first data at page 3");
	tap_ok(lseek(fd, 0, SEEK_CUR) == 3 * PG, "SEEK_DATA moved the position");
	SEEK_IS(fd, 3 * PG, SEEK_HOLE, 5 * PG, "PTE level: hole after pages 3-4 at page 5");
	SEEK_IS(fd, 3 * PG + 100, SEEK_DATA, 3 * PG + 100,
		"SEEK_DATA inside a data page returns the offset itself");
	SEEK_IS(fd, 100, SEEK_HOLE, 100,
		"SEEK_HOLE inside a hole returns the offset itself");
	SEEK_IS(fd, 100, SEEK_DATA, 3 * PG,
		"SEEK_DATA from inside a hole gives the page-aligned data start");
	SEEK_IS(fd, 5 * PG, SEEK_DATA, 10 * PG, "PTE level: next data at page 10");
	SEEK_IS(fd, 10 * PG, SEEK_HOLE, 11 * PG, "PTE level: hole at page 11");
	tap_errno(lseek(fd, 11 * PG, SEEK_DATA), ENXIO,
		  "PTE level: no data after page 10: ENXIO");
	SEEK_IS(fd, 2 * MiB - 1, SEEK_HOLE, 2 * MiB - 1, "PTE level: last byte is a hole");
	tap_errno(lseek(fd, 2 * MiB, SEEK_DATA), ENXIO, "SEEK_DATA at the size ENXIO");
	tap_errno(lseek(fd, 2 * MiB, SEEK_HOLE), ENXIO, "SEEK_HOLE at the size ENXIO");
	tap_errno(lseek(fd, 2 * MiB + 1, SEEK_HOLE), ENXIO, "SEEK_HOLE after the size ENXIO");
	tap_errno(lseek(fd, 1 * GiB, SEEK_DATA), ENXIO, "SEEK_DATA far after the size ENXIO");
	tap_errno(lseek(fd, -4096, SEEK_DATA), ENXIO, "SEEK_DATA at a negative offset ENXIO");

	/* Full objects: the hole is at the size. */
	tap_require(reset(fd, 16 * PG) == 0 && fallocate(fd, 0, 0, 16 * PG) == 0, "full");
	SEEK_IS(fd, 0, SEEK_HOLE, 16 * PG, "fully populated 64 KiB: SEEK_HOLE gives the size");
	SEEK_IS(fd, 15 * PG, SEEK_DATA, 15 * PG, "fully populated: last page is data");
	tap_require(reset(fd, 4 * MiB) == 0 && fallocate(fd, 0, 0, 2 * MiB) == 0, "half");
	SEEK_IS(fd, 0, SEEK_HOLE, 2 * MiB,
		"4 MiB with a full first PTE table: hole at 2 MiB");
	tap_errno(lseek(fd, 2 * MiB, SEEK_DATA), ENXIO,
		  "4 MiB: no data in the missing second table: ENXIO");
	tap_require(fallocate(fd, 0, 0, 4 * MiB) == 0, "all");
	SEEK_IS(fd, 0, SEEK_HOLE, 4 * MiB, "4 MiB fully populated: hole at the size");

	/* Punched pages are holes again (their table stays). */
	tap_require(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      1 * MiB, 2 * MiB) == 0, "punch");
	SEEK_IS(fd, 0, SEEK_HOLE, 1 * MiB, "after punching [1M,3M): hole at 1 MiB");
	SEEK_IS(fd, 1 * MiB, SEEK_DATA, 3 * MiB, "after punching: data again at 3 MiB");

	/* Level 2: 1 GiB. */
	tap_require(reset(fd, 1 * GiB) == 0, "1G");
	put(fd, 700 * MiB + 12 * KiB);
	put(fd, 1 * GiB - 1);
	SEEK_IS(fd, 0, SEEK_DATA, 700 * MiB + 12 * KiB, "PMD level: first data at 700M+12K");
	SEEK_IS(fd, 700 * MiB + 12 * KiB, SEEK_HOLE, 700 * MiB + 16 * KiB,
		"PMD level: hole after it");
	SEEK_IS(fd, 700 * MiB + 16 * KiB, SEEK_DATA, 1 * GiB - PG,
		"PMD level: data in the last page");
	SEEK_IS(fd, 1 * GiB - PG, SEEK_HOLE, 1 * GiB,
		"PMD level: the hole after the last page is the size");
	SEEK_IS(fd, 0, SEEK_HOLE, 0, "PMD level: SEEK_HOLE at 0 is 0");
	SEEK_IS(fd, 702 * MiB, SEEK_HOLE, 702 * MiB,
		"PMD level: hole inside a missing PTE table");

	/* Level 3: 64 GiB with data in a few places. */
	tap_require(reset(fd, 64 * GiB) == 0, "64G");
	put(fd, 5 * GiB + 2 * MiB + 8 * KiB);
	put(fd, 5 * GiB + 2 * MiB + 12 * KiB);
	put(fd, 40 * GiB);
	put(fd, 64 * GiB - 1);
	SEEK_IS(fd, 0, SEEK_DATA, 5 * GiB + 2 * MiB + 8 * KiB,
		"64 GiB: first data at 5G+2M+8K");
	SEEK_IS(fd, 5 * GiB, SEEK_DATA, 5 * GiB + 2 * MiB + 8 * KiB,
		"64 GiB: SEEK_DATA from the start of its PMD table");
	SEEK_IS(fd, 5 * GiB + 2 * MiB + 8 * KiB, SEEK_HOLE, 5 * GiB + 2 * MiB + 16 * KiB,
		"64 GiB: two data pages, then a hole");
	SEEK_IS(fd, 5 * GiB + 2 * MiB + 16 * KiB, SEEK_DATA, 40 * GiB,
		"64 GiB: next data at 40G across missing PMD tables");
	SEEK_IS(fd, 40 * GiB, SEEK_HOLE, 40 * GiB + PG, "64 GiB: hole after 40G");
	SEEK_IS(fd, 40 * GiB + PG, SEEK_DATA, 64 * GiB - PG, "64 GiB: data in the last page");
	SEEK_IS(fd, 64 * GiB - PG + 1, SEEK_DATA, 64 * GiB - PG + 1,
		"64 GiB: SEEK_DATA inside the last page");
	SEEK_IS(fd, 64 * GiB - PG, SEEK_HOLE, 64 * GiB, "64 GiB: the final hole is the size");
	SEEK_IS(fd, 20 * GiB + 5, SEEK_HOLE, 20 * GiB + 5,
		"64 GiB: SEEK_HOLE inside a missing PMD table");
	tap_errno(lseek(fd, 64 * GiB, SEEK_DATA), ENXIO, "64 GiB: SEEK_DATA at the size ENXIO");
	tap_errno(lseek(fd, 64 * GiB, SEEK_HOLE), ENXIO, "64 GiB: SEEK_HOLE at the size ENXIO");
	tap_require(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      40 * GiB, PG) == 0, "punch 40G");
	SEEK_IS(fd, 5 * GiB + 2 * MiB + 16 * KiB, SEEK_DATA, 64 * GiB - PG,
		"64 GiB: punched page at 40G is skipped");

	/* 512 GiB with data only near the end. */
	tap_require(reset(fd, 512 * GiB) == 0, "512G");
	put(fd, 511 * GiB + 4 * KiB);
	SEEK_IS(fd, 0, SEEK_DATA, 511 * GiB + 4 * KiB, "512 GiB: the only data at 511G+4K");
	SEEK_IS(fd, 511 * GiB + 4 * KiB, SEEK_HOLE, 511 * GiB + 8 * KiB,
		"512 GiB: hole right after it");
	tap_errno(lseek(fd, 511 * GiB + 8 * KiB, SEEK_DATA), ENXIO,
		  "512 GiB: no data after it ENXIO");
	tap_errno(lseek(fd, 512 * GiB, SEEK_HOLE), ENXIO,
		  "512 GiB: SEEK_HOLE at the size (MORSEL_MAX_SIZE) ENXIO");

	/* Shrink drops data beyond: its tables are gone too. */
	tap_require(ftruncate(fd, 3 * GiB) == 0, "3G");
	tap_errno(lseek(fd, 0, SEEK_DATA), ENXIO,
		  "after shrinking 512 GiB -> 3 GiB: no data ENXIO");
	SEEK_IS(fd, 0, SEEK_HOLE, 0, "after the shrink: hole at 0");

	close(fd);
	unlink(path);
	return tap_done();
}
