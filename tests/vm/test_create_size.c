#define _GNU_SOURCE
/*
 * Object sizes: ftruncate() accepts whole multiples of 4 KiB up to
 * MORSEL_MAX_SIZE (EINVAL otherwise, EFBIG beyond), the root level follows
 * the size, and resizing re-roots the subtree keeping the data at offsets
 * still inside and freeing the frames and tables beyond.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/morsel.h>
#include "vm.h"

static int byte_at(int fd, off_t off)
{
	unsigned char c;

	if (pread(fd, &c, 1, off) != 1)
		return -1;
	return c;
}

static int put_byte(int fd, off_t off, int v)
{
	unsigned char c = v;

	return pwrite(fd, &c, 1, off) == 1 ? 0 : -1;
}

static long long level_of(int fd)
{
	struct morsel_stat s;

	if (stat_of(fd, &s))
		return -1;
	return s.level;
}

static const struct {
	long long size;
	int level;
} levels[] = {
	{ 0, MORSEL_LEVEL_NONE },
	{ 4 * KiB, MORSEL_LEVEL_PTE },
	{ 2 * MiB, MORSEL_LEVEL_PTE },
	{ 2 * MiB + 4 * KiB, MORSEL_LEVEL_PMD },
	{ 1 * GiB, MORSEL_LEVEL_PMD },
	{ 1 * GiB + 4 * KiB, MORSEL_LEVEL_PUD },
	{ 64 * GiB, MORSEL_LEVEL_PUD },
	{ 512 * GiB, MORSEL_LEVEL_PUD },
};
#define NLEVELS (int)(sizeof(levels) / sizeof(levels[0]))

int main(void)
{
	const char *path = "/dev/morsel/cs_a";
	const char *path2 = "/dev/morsel/cs_b";
	struct morsel_stat s;
	struct stat st;
	long base_data = total("data_pages"), base_tables = total("table_pages");
	int fd, i;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0, "create");

	/* A new morsel: size 0, no table. */
	tap_ok(stat_of(fd, &s) == 0 && s.size == 0 && s.level == MORSEL_LEVEL_NONE &&
	       s.data_pages == 0 && s.table_pages == 0,
	       "new object: size 0, level 0, no frames, no tables");

	/* Sizes in bytes (test_sizes has the rest). */
	tap_ok(ftruncate(fd, 4097) == 0 && size_of(fd) == 4097,
	       "ftruncate to 4097 bytes: size 4097");
	tap_ok(ftruncate(fd, 1) == 0 && size_of(fd) == 1,
	       "ftruncate to 1 byte: size 1");
	tap_ok(ftruncate(fd, 2 * MiB + 1) == 0 && size_of(fd) == 2 * MiB + 1 &&
	       ftruncate(fd, 0) == 0,
	       "ftruncate to 2 MiB + 1: size 2 MiB + 1 (then back to 0)");
	/* Too big. */
	tap_errno(ftruncate(fd, 512 * GiB + 4 * KiB), EFBIG,
		  "ftruncate to 512 GiB + 4 KiB: EFBIG");
	tap_errno(ftruncate(fd, 1024 * GiB), EFBIG,
		  "ftruncate to 1 TiB: EFBIG");
	tap_errno(ftruncate(fd, -4096), EINVAL, "ftruncate to -4096: EINVAL");
	tap_ok(fstat(fd, &st) == 0 && st.st_size == 0,
	       "failed ftruncates leave the size at 0");

	/* Levels on fresh objects. */
	for (i = 0; i < NLEVELS; i++) {
		int f2 = open(path2, O_RDWR | O_CREAT | O_EXCL, 0600);

		tap_require(f2 >= 0, "create");
		tap_ok(ftruncate(f2, levels[i].size) == 0 &&
		       stat_of(f2, &s) == 0 && s.size == (uint64_t)levels[i].size &&
		       fstat(f2, &st) == 0 && st.st_size == levels[i].size,
		       "fresh object: ftruncate to %lld bytes, STAT and fstat report it",
		       levels[i].size);
		tap_ok(s.level == (uint32_t)levels[i].level && s.data_pages == 0,
		       "fresh object of %lld bytes: level %d (got %u), no frames",
		       levels[i].size, levels[i].level, s.level);
		if (levels[i].size) {
			/* One page written at the end: one table per level. */
			long long t0 = tables_of(f2);

			tap_ok(put_byte(f2, levels[i].size - 1, 0x5a) == 0 &&
			       byte_at(f2, levels[i].size - 1) == 0x5a &&
			       data_of(f2) == 1,
			       "%lld bytes: write to the last byte populates one frame",
			       levels[i].size);
			tap_ok(tables_of(f2) == levels[i].level,
			       "%lld bytes: one populated page needs %d tables (had %lld, now %lld)",
			       levels[i].size, levels[i].level, t0,
			       tables_of(f2));
			tap_ok(fstat(f2, &st) == 0 && st.st_size == levels[i].size,
			       "%lld bytes: writing inside does not change the size",
			       levels[i].size);
		}
		close(f2);
		unlink(path2);
	}
	tap_ok(total("data_pages") == base_data &&
	       total("table_pages") == base_tables,
	       "unlinking the fresh objects freed their frames and tables");

	/* Re-rooting one object up through every level, keeping the data. */
	tap_ok(ftruncate(fd, 4 * KiB) == 0 && level_of(fd) == MORSEL_LEVEL_PTE,
	       "0 -> 4 KiB: level 1");
	put_byte(fd, 0, 0x11);
	tap_ok(ftruncate(fd, 2 * MiB + 4 * KiB) == 0 &&
	       level_of(fd) == MORSEL_LEVEL_PMD && byte_at(fd, 0) == 0x11,
	       "4 KiB -> 2 MiB + 4 KiB: level 2, byte 0 kept");
	put_byte(fd, 2 * MiB, 0x22);
	tap_ok(ftruncate(fd, 1 * GiB + 4 * KiB) == 0 &&
	       level_of(fd) == MORSEL_LEVEL_PUD && byte_at(fd, 0) == 0x11 &&
	       byte_at(fd, 2 * MiB) == 0x22,
	       "-> 1 GiB + 4 KiB: level 3, bytes at 0 and 2 MiB kept");
	put_byte(fd, 1 * GiB, 0x33);
	tap_ok(ftruncate(fd, 64 * GiB) == 0 && level_of(fd) == MORSEL_LEVEL_PUD &&
	       byte_at(fd, 0) == 0x11 && byte_at(fd, 2 * MiB) == 0x22 &&
	       byte_at(fd, 1 * GiB) == 0x33,
	       "-> 64 GiB: level 3, bytes at 0, 2 MiB, 1 GiB kept");
	put_byte(fd, 63 * GiB + 12345, 0x44);
	put_byte(fd, 1 * GiB + 8 * KiB, 0x55);
	tap_ok(data_of(fd) == 5, "five pages populated (got %lld)", data_of(fd));
	tap_ok(stat_of(fd, &s) == 0 && s.table_pages == 1 + 3 + 4,
	       "64 GiB with data in chunks 0, 1, 63: 1 PUD + 3 PMD + 4 PTE tables (got %llu)",
	       (unsigned long long)s.table_pages);

	/* Shrink down again. */
	tap_ok(ftruncate(fd, 1 * GiB + 4 * KiB) == 0 &&
	       level_of(fd) == MORSEL_LEVEL_PUD && data_of(fd) == 3,
	       "64 GiB -> 1 GiB + 4 KiB: level 3, page at 63 GiB and 1 GiB + 8 KiB freed (data_pages %lld)",
	       data_of(fd));
	tap_ok(byte_at(fd, 0) == 0x11 && byte_at(fd, 2 * MiB) == 0x22 &&
	       byte_at(fd, 1 * GiB) == 0x33,
	       "1 GiB + 4 KiB: bytes at 0, 2 MiB, 1 GiB kept");
	tap_ok(tables_of(fd) == 1 + 2 + 3,
	       "1 GiB + 4 KiB: tables beyond the size freed (got %lld, want 6)",
	       tables_of(fd));
	tap_ok(ftruncate(fd, 2 * MiB + 4 * KiB) == 0 &&
	       level_of(fd) == MORSEL_LEVEL_PMD && data_of(fd) == 2 &&
	       byte_at(fd, 0) == 0x11 && byte_at(fd, 2 * MiB) == 0x22,
	       "-> 2 MiB + 4 KiB: level 2, two pages kept with their data");
	tap_ok(tables_of(fd) == 3,
	       "2 MiB + 4 KiB: 1 PMD + 2 PTE tables (got %lld)", tables_of(fd));
	tap_ok(ftruncate(fd, 4 * KiB) == 0 && level_of(fd) == MORSEL_LEVEL_PTE &&
	       data_of(fd) == 1 && byte_at(fd, 0) == 0x11 && tables_of(fd) == 1,
	       "-> 4 KiB: level 1, one page, one table, byte 0 kept");
	tap_ok(ftruncate(fd, 0) == 0 && stat_of(fd, &s) == 0 &&
	       s.level == MORSEL_LEVEL_NONE && s.data_pages == 0 &&
	       s.table_pages == 0,
	       "-> 0: level 0, no frames, no tables");
	tap_ok(ftruncate(fd, 1 * GiB + 4 * KiB) == 0 && byte_at(fd, 0) == 0 &&
	       byte_at(fd, 2 * MiB) == 0 && byte_at(fd, 1 * GiB) == 0 &&
	       data_of(fd) == 0,
	       "grow again after 0: old data is gone, reads give zeros");

	/* Shrinking inside a level frees exactly what lies beyond. */
	tap_ok(ftruncate(fd, 0) == 0 && ftruncate(fd, 8 * KiB) == 0 &&
	       put_byte(fd, 0, 1) == 0 && put_byte(fd, 4 * KiB, 2) == 0 &&
	       data_of(fd) == 2, "8 KiB object with two pages");
	tap_ok(ftruncate(fd, 4 * KiB) == 0 && data_of(fd) == 1 &&
	       ftruncate(fd, 8 * KiB) == 0 && byte_at(fd, 4 * KiB) == 0 &&
	       byte_at(fd, 0) == 1,
	       "8 KiB -> 4 KiB -> 8 KiB: second page freed and reads zero");
	tap_ok(ftruncate(fd, 3 * GiB) == 0 && put_byte(fd, 2 * GiB + 8 * KiB, 3) == 0 &&
	       put_byte(fd, 2 * GiB + 2 * MiB + 4 * KiB, 4) == 0 &&
	       ftruncate(fd, 2 * GiB + 2 * MiB + 4 * KiB) == 0 &&
	       level_of(fd) == MORSEL_LEVEL_PUD && data_of(fd) == 2 &&
	       ftruncate(fd, 3 * GiB) == 0 &&
	       byte_at(fd, 2 * GiB + 8 * KiB) == 3 &&
	       byte_at(fd, 2 * GiB + 2 * MiB + 4 * KiB) == 0,
	       "3 GiB: shrink to 2 GiB + 2 MiB + 4 KiB frees only the page past it");

	/* Frame accounting of a shrink, module-wide. */
	{
		long before;

		ftruncate(fd, 0);
		ftruncate(fd, 4 * MiB);
		for (i = 0; i < 1024; i++)
			put_byte(fd, (off_t)i * 4096, i);
		before = total("data_pages");
		tap_ok(data_of(fd) == 1024 && before - base_data == 1024,
		       "4 MiB fully written: 1024 frames, module total +1024");
		tap_ok(ftruncate(fd, 1 * MiB) == 0 && data_of(fd) == 256 &&
		       total("data_pages") == before - 768,
		       "shrink to 1 MiB frees 768 frames (object and module total)");
		fstat(fd, &st);
		tap_ok(st.st_blocks == 256 * 8, "st_blocks %lld == 256 pages * 8",
		       (long long)st.st_blocks);
		tap_ok(byte_at(fd, 255 * 4096) == 255 && byte_at(fd, 17 * 4096) == 17,
		       "data below the new size intact");
		tap_ok(level_of(fd) == MORSEL_LEVEL_PTE && tables_of(fd) == 1,
		       "1 MiB after 4 MiB: re-rooted at level 1 with one table");
	}

	/* truncate() by path and O_TRUNC. */
	tap_ok(truncate(path, 8 * KiB) == 0 && stat(path, &st) == 0 &&
	       st.st_size == 8 * KiB, "truncate() by path to 8 KiB");
	tap_ok(truncate(path, 8 * KiB + 100) == 0 && stat(path, &st) == 0 &&
	       st.st_size == 8 * KiB + 100, "truncate() by path to 8 KiB + 100");
	tap_errno(truncate(path, 600 * GiB), EFBIG,
		  "truncate() by path to 600 GiB: EFBIG");
	{
		int f3 = open(path, O_RDWR | O_TRUNC);

		tap_ok(f3 >= 0 && stat_of(f3, &s) == 0 && s.size == 0 &&
		       s.data_pages == 0 && s.table_pages == 0 &&
		       s.level == MORSEL_LEVEL_NONE,
		       "open(O_TRUNC) empties the object: size 0, no frames or tables");
		close(f3);
	}

	/* Write past the end extends to its last byte. */
	tap_ok(pwrite(fd, "abc", 3, 10) == 3 && fstat(fd, &st) == 0 &&
	       st.st_size == 13,
	       "write of 3 bytes at 10 into an empty object: size 13");
	tap_ok(pwrite(fd, "x", 1, 2 * MiB) == 1 && fstat(fd, &st) == 0 &&
	       st.st_size == 2 * MiB + 1 && level_of(fd) == MORSEL_LEVEL_PMD &&
	       byte_at(fd, 10) == 'a',
	       "write at 2 MiB: size 2 MiB + 1, level 2, old data kept");
	tap_errno(pwrite(fd, "x", 1, 512 * GiB), EFBIG,
		  "write at 512 GiB: EFBIG");

	close(fd);
	unlink(path);
	tap_ok(total("data_pages") == base_data &&
	       total("table_pages") == base_tables,
	       "all frames and tables freed at the end");
	return tap_done();
}
