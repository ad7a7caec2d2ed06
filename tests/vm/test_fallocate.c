#define _GNU_SOURCE
/*
 * fallocate on morsels: mode 0 and KEEP_SIZE allocate frames (only below
 * the size; mode 0 extends), PUNCH_HOLE|KEEP_SIZE frees whole pages and
 * zeroes partial ones, in every mapper at once; punching beyond the end is
 * harmless; other modes fail with EOPNOTSUPP; st_blocks counts populated
 * pages, 8 per 4 KiB page.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define PUNCH (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)

static long long blocks_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_blocks;
}

/* Is [off, off+n) all byte @v? */
static int bytes_are(int fd, off_t off, size_t n, int v)
{
	unsigned char buf[8192];
	size_t i;

	if (n > sizeof(buf) || pread(fd, buf, n, off) != (ssize_t)n)
		return 0;
	for (i = 0; i < n; i++)
		if (buf[i] != (unsigned char)v)
			return 0;
	return 1;
}

static void fill(int fd, off_t off, size_t n, int v)
{
	unsigned char buf[8192];

	memset(buf, v, sizeof(buf));
	while (n) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf);

		if (pwrite(fd, buf, k, off) != (ssize_t)k)
			tap_fatal("fill");
		off += k;
		n -= k;
	}
}

int main(void)
{
	const char *path = "/dev/morsel/fa_a";
	long base_data = total("data_pages"), base_tables = total("table_pages");
	long long d;
	char *rw, *ro;
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, 8 * MiB) == 0, "create 8M");

	/* Allocation. */
	tap_ok(data_of(fd) == 0 && blocks_of(fd) == 0, "sparse 8 MiB: no frames, st_blocks 0");
	tap_ok(fallocate(fd, 0, 0, PG) == 0 && data_of(fd) == 1 && blocks_of(fd) == 8,
	       "fallocate one page: 1 frame, st_blocks 8");
	tap_ok(fallocate(fd, 0, 100, 5000) == 0 && data_of(fd) == 2 && blocks_of(fd) == 16,
	       "fallocate of [100, 5100): pages 0 and 1 (2 frames, st_blocks 16)");
	tap_ok(bytes_are(fd, 0, 8192, 0), "allocated frames read as zeros");
	tap_ok(fallocate(fd, 0, 0, 8 * MiB) == 0 && data_of(fd) == 2048 &&
	       blocks_of(fd) == 2048 * 8 && size_of(fd) == 8 * MiB,
	       "fallocate of all 8 MiB: 2048 frames, st_blocks 16384, size unchanged");
	tap_ok(total("data_pages") == base_data + 2048,
	       "module total counts the 2048 frames");
	tap_ok(fallocate(fd, FALLOC_FL_KEEP_SIZE, 8 * MiB - PG, 1 * MiB) == 0 &&
	       size_of(fd) == 8 * MiB && data_of(fd) == 2048,
	       "KEEP_SIZE past the end: size unchanged, no frames beyond the size");
	tap_ok(fallocate(fd, FALLOC_FL_KEEP_SIZE, 16 * MiB, 1 * MiB) == 0 &&
	       size_of(fd) == 8 * MiB && data_of(fd) == 2048 && tables_of(fd) == 1 + 4,
	       "KEEP_SIZE wholly beyond the end: nothing allocated, not even tables");
	tap_ok(fallocate(fd, 0, 8 * MiB, PG) == 0 && size_of(fd) == 8 * MiB + PG &&
	       data_of(fd) == 2049, "mode 0 past the end: size +1 page, frame allocated");
	tap_ok(fallocate(fd, 0, 8 * MiB + PG + 100, 10) == 0 &&
	       size_of(fd) == 8 * MiB + PG + 110 && data_of(fd) == 2050,
	       "mode 0 ending mid-page: size ends at its last byte, that page allocated");

	/* Punching. */
	fill(fd, 0, 16 * PG, 0xaa);
	d = data_of(fd);
	tap_ok(fallocate(fd, PUNCH, PG, 2 * PG) == 0 && data_of(fd) == d - 2 &&
	       blocks_of(fd) == (d - 2) * 8,
	       "punch of pages 1-2: 2 frames freed, st_blocks follows");
	tap_ok(bytes_are(fd, PG, 8192, 0) && bytes_are(fd, 0, PG, 0xaa) &&
	       bytes_are(fd, 3 * PG, PG, 0xaa),
	       "punched pages read zero, neighbours keep their data");
	tap_ok(fallocate(fd, PUNCH, 5 * PG + 100, 200) == 0 && data_of(fd) == d - 2,
	       "partial punch inside page 5 frees nothing");
	tap_ok(bytes_are(fd, 5 * PG, 100, 0xaa) && bytes_are(fd, 5 * PG + 100, 200, 0) &&
	       bytes_are(fd, 5 * PG + 300, PG - 300, 0xaa),
	       "partial punch zeroes exactly [100, 300) of the page");
	tap_ok(fallocate(fd, PUNCH, 10 * PG + 2048, 3 * PG) == 0 && data_of(fd) == d - 4,
	       "punch of [10.5, 13.5) pages frees pages 11 and 12 only");
	tap_ok(bytes_are(fd, 10 * PG, 2048, 0xaa) && bytes_are(fd, 10 * PG + 2048, 2048, 0) &&
	       bytes_are(fd, 11 * PG, 8192, 0) && bytes_are(fd, 13 * PG, 2048, 0) &&
	       bytes_are(fd, 13 * PG + 2048, 2048, 0xaa),
	       "half pages zeroed, whole pages read zero");
	tap_ok(fallocate(fd, PUNCH, 1 * PG, 2 * PG) == 0 && data_of(fd) == d - 4,
	       "punch of a hole again: harmless");
	tap_ok(fallocate(fd, PUNCH, 5 * MiB, PG) == 0 && data_of(fd) == d - 5,
	       "punch of a populated page in the third PTE table");
	tap_ok(fallocate(fd, PUNCH, 6 * MiB + 5, 1) == 0 && data_of(fd) == d - 5 &&
	       bytes_are(fd, 6 * MiB + 4, 1, 0) && bytes_are(fd, 6 * MiB + 5, 1, 0),
	       "punch of one byte of a zero page");
	{
		long long sz = size_of(fd);

		tap_ok(fallocate(fd, PUNCH, sz + PG, PG) == 0 && size_of(fd) == sz &&
		       data_of(fd) == d - 5, "punch wholly beyond the end: harmless");
		tap_ok(fallocate(fd, PUNCH, sz - PG, 1 * MiB) == 0 && size_of(fd) == sz &&
		       data_of(fd) == d - 6,
		       "punch straddling the end: last page freed, size unchanged");
		tap_ok(fallocate(fd, PUNCH, 0, 64 * MiB) == 0 && data_of(fd) == 0 &&
		       blocks_of(fd) == 0 && size_of(fd) == sz,
		       "punch of everything: no frames, st_blocks 0, size kept");
		tap_ok(tables_of(fd) == 0 && total("data_pages") == base_data &&
		       total("table_pages") == base_tables,
		       "punching everything of an unmapped object frees its tables too (%lld left)",
		       tables_of(fd));
	}

	/* Unsupported modes. */
	tap_ok(fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 64 * MiB, PG) == 0 &&
	       data_of(fd) == 0, "ZERO_RANGE|KEEP_SIZE wholly past the end: nothing to do");
	tap_ok(fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, PG) == 0 && data_of(fd) == 1 &&
	       bytes_are(fd, 0, PG, 0) && fallocate(fd, PUNCH, 0, PG) == 0,
	       "ZERO_RANGE allocates zeroed pages (test_sizes has more)");
	tap_errno(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, PG), EOPNOTSUPP,
		  "COLLAPSE_RANGE: EOPNOTSUPP");
	tap_errno(fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, PG), EOPNOTSUPP,
		  "INSERT_RANGE: EOPNOTSUPP");
	tap_errno(fallocate(fd, FALLOC_FL_UNSHARE_RANGE, 0, PG), EOPNOTSUPP,
		  "UNSHARE_RANGE: EOPNOTSUPP");
	tap_errno(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, PG), EOPNOTSUPP,
		  "PUNCH_HOLE without KEEP_SIZE: EOPNOTSUPP");
	tap_ok(data_of(fd) == 0 && size_of(fd) == 8 * MiB + PG + 110,
	       "refused modes changed nothing");
	tap_errno(fallocate(fd, 0, 0, 0), EINVAL, "length 0: EINVAL");
	tap_errno(fallocate(fd, 0, 512 * GiB - PG, 2 * PG), EFBIG,
		  "allocation ending beyond 512 GiB: EFBIG");
	tap_ok(size_of(fd) == 8 * MiB + PG + 110, "size unchanged by the refused calls");

	/* Across a 1 GiB boundary of a sparse object. */
	tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, 3 * GiB) == 0, "3G");
	tap_ok(fallocate(fd, 0, 1 * GiB - PG, 2 * PG) == 0 && data_of(fd) == 2 &&
	       tables_of(fd) == 1 + 2 + 2,
	       "3 GiB: fallocate across 1 GiB: 2 frames, PUD + 2 PMD + 2 PTE tables");
	tap_ok(fallocate(fd, 0, 3 * GiB - 2 * PG, 4 * PG) == 0 &&
	       size_of(fd) == 3 * GiB + 2 * PG && data_of(fd) == 6,
	       "3 GiB: mode 0 over the end extends and allocates 4 frames");

	/* Punch is seen by every mapper at once. */
	tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, 2 * MiB) == 0, "2M");
	rw = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ro = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(rw != MAP_FAILED && ro != MAP_FAILED, "mmap");
	memset(rw, 0x5c, 16 * PG);
	tap_ok(ro[7 * PG] == 0x5c && ro[8 * PG + 1] == 0x5c && data_of(fd) == 16,
	       "writable (linked) and read-only (page by page) mappings see the data");
	tap_ok(fallocate(fd, PUNCH, 7 * PG, PG) == 0 && data_of(fd) == 15,
	       "punch of page 7 while mapped twice frees its frame");
	tap_ok(rw[7 * PG] == 0 && ro[7 * PG] == 0 && rw[7 * PG + 4095] == 0,
	       "both mappers read zero at page 7 at once");
	tap_ok(fallocate(fd, PUNCH, 8 * PG + 1, 10) == 0 && rw[8 * PG] == 0x5c &&
	       rw[8 * PG + 1] == 0 && ro[8 * PG + 10] == 0 && ro[8 * PG + 11] == 0x5c,
	       "a partial punch is zeroed in both mappers");
	rw[7 * PG + 3] = 0x77;
	tap_ok(ro[7 * PG + 3] == 0x77 && data_of(fd) == 16,
	       "a new store after the punch reaches the other mapper (new frame)");
	tap_ok(fallocate(fd, PUNCH, 0, 2 * MiB) == 0 && data_of(fd) == 0 &&
	       rw[0] == 0 && ro[15 * PG] == 0, "punch of the whole mapped object");
	/* Reading through the mappings re-populated some pages: drop them. */
	munmap(rw, 2 * MiB);
	munmap(ro, 2 * MiB);
	tap_ok(fallocate(fd, 0, 0, 2 * MiB) == 0 && data_of(fd) == 512,
	       "fallocate after munmap fills the object");

	close(fd);
	unlink(path);
	tap_ok(total("data_pages") == base_data && total("table_pages") == base_tables,
	       "all frames and tables freed");
	return tap_done();
}
