#define _GNU_SOURCE
/*
 * Contents without mapping: read/write/pread/pwrite/readv/writev.  Reads of
 * holes give zeros and allocate nothing (no frame, no table); a write past
 * the end extends the size to the next 4 KiB boundary; reads stop at the
 * size; large writes cross 2 MiB and 1 GiB boundaries of a sparse object
 * intact; a faulting user buffer gives EFAULT or a short count and gives
 * back the size a failed write did not use.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/morsel.h>
#include "vm.h"

static int all_zero(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void pattern(unsigned char *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 131 + seed) ^ (i >> 12));
}

/* pread all of [off, off+n) and compare with @want. */
static int check(int fd, off_t off, const unsigned char *want, size_t n)
{
	unsigned char *got = malloc(n);
	int ok;

	ok = got && pread(fd, got, n, off) == (ssize_t)n && !memcmp(got, want, n);
	free(got);
	return ok;
}

int main(void)
{
	const char *path = "/dev/morsel/rw_a";
	long base_data = total("data_pages"), base_tables = total("table_pages");
	unsigned char buf[16384], *big, *rb;
	struct iovec iov[3];
	int fd, tfd;

	big = malloc(4 * MiB);
	rb = malloc(4 * MiB);
	tap_require(big && rb, "malloc");

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0, "create");

	/* Small objects and EOF. */
	tap_ok(read(fd, buf, sizeof(buf)) == 0, "read of an empty object returns 0");
	tap_ok(write(fd, "hello", 5) == 5 && size_of(fd) == 5 &&
	       lseek(fd, 0, SEEK_CUR) == 5,
	       "write of 5 bytes to an empty object: size 5, position 5");
	memset(buf, 0xee, sizeof(buf));
	tap_ok(lseek(fd, 0, SEEK_SET) == 0 && read(fd, buf, 8192) == 5 &&
	       !memcmp(buf, "hello", 5),
	       "read of 8192 at 0 returns the 5 bytes up to the size");
	tap_ok(read(fd, buf, 10) == 0, "read at EOF returns 0");
	tap_ok(pread(fd, buf, 10, 4) == 1 && buf[0] == 'o',
	       "pread across EOF is short (1 byte)");
	tap_ok(pread(fd, buf, 10, 1 * GiB) == 0, "pread far beyond EOF returns 0");
	tap_ok(pread(fd, buf, 0, 0) == 0, "read of 0 bytes returns 0");
	tap_ok(lseek(fd, 0, SEEK_END) == 5, "SEEK_END is the size");
	tap_ok(pwrite(fd, "abc", 3, 4094) == 3 && size_of(fd) == 4097 &&
	       pread(fd, buf, 4, 4094) == 3 && !memcmp(buf, "abc", 3) &&
	       pread(fd, buf, 4089, 5) == 4089 && all_zero(buf, 4089),
	       "pwrite straddling a page boundary past the end: size 4097, the gap zero");
	tap_ok(pwrite(fd, "Z", 1, 20000) == 1 && size_of(fd) == 20001 &&
	       data_of(fd) == 3,
	       "pwrite far past the end: size 20001, the gap stays a hole (3 pages)");
	tap_ok(pread(fd, buf, 3, 0) == 3 && !memcmp(buf, "hel", 3) &&
	       lseek(fd, 0, SEEK_CUR) == 5, "pread does not move the position");
	tap_ok(pwrite(fd, "XY", 2, 1) == 2 && pread(fd, buf, 6, 0) == 6 &&
	       !memcmp(buf, "hXYlo\0", 6),
	       "overwriting 2 bytes keeps the rest of the page");

	/* O_APPEND appends at the size. */
	{
		int afd = open(path, O_WRONLY | O_APPEND);

		tap_ok(afd >= 0 && write(afd, "app", 3) == 3 && size_of(fd) == 20004 &&
		       pread(fd, buf, 3, 20001) == 3 && !memcmp(buf, "app", 3),
		       "O_APPEND write lands at the size and extends by its length");
		close(afd);
	}

	/* readv / writev across pages. */
	memset(buf, 'v', sizeof(buf));
	iov[0].iov_base = buf;
	iov[0].iov_len = 100;
	iov[1].iov_base = buf + 100;
	iov[1].iov_len = 5000;
	iov[2].iov_base = buf + 5100;
	iov[2].iov_len = 3;
	tap_ok(pwritev(fd, iov, 3, 4000) == 5103 && size_of(fd) == 20004,
	       "pwritev of 3 segments across a page boundary");
	memset(buf, 0, sizeof(buf));
	tap_ok(preadv(fd, iov, 3, 4000) == 5103 && buf[0] == 'v' &&
	       buf[5102] == 'v' && buf[5103] == 0,
	       "preadv reads them back");

	/* Sparse 4 GiB object: holes read as zeros and allocate nothing. */
	tap_require(ftruncate(fd, 0) == 0, "empty");
	tap_ok(ftruncate(fd, 4 * GiB) == 0 && data_of(fd) == 0 && tables_of(fd) == 0,
	       "sparse 4 GiB object: no frames, no tables");
	memset(rb, 0xee, 4 * MiB);
	tap_ok(pread(fd, rb, 4 * MiB, 1 * GiB - 2 * MiB) == 4 * MiB &&
	       all_zero(rb, 4 * MiB), "4 MiB read across 1 GiB of a hole: zeros");
	tap_ok(pread(fd, rb, 1 * MiB, 4 * GiB - 1 * MiB) == 1 * MiB &&
	       all_zero(rb, 1 * MiB), "1 MiB read at the end of a hole: zeros");
	{
		long long n = 0, r;

		lseek(fd, 3 * GiB, SEEK_SET);
		while (n < 64 * MiB && (r = read(fd, rb, 4 * MiB)) > 0 &&
		       all_zero(rb, r))
			n += r;
		tap_ok(n == 64 * MiB, "64 MiB of read() at 3 GiB: zeros");
	}
	tap_ok(data_of(fd) == 0 && tables_of(fd) == 0 &&
	       total("data_pages") == base_data && total("table_pages") == base_tables,
	       "reads of holes allocated no frame and no table");

	/* Large writes across a 2 MiB and a 1 GiB boundary. */
	pattern(big, 4 * MiB, 1);
	tap_ok(pwrite(fd, big, 4 * MiB, 2 * MiB - 1 * MiB - 123) == 4 * MiB,
	       "4 MiB write across the 2 MiB boundary (unaligned start)");
	tap_ok(check(fd, 2 * MiB - 1 * MiB - 123, big, 4 * MiB),
	       "it reads back intact");
	tap_ok(data_of(fd) == 1025 && tables_of(fd) == 1 + 1 + 3,
	       "1025 pages, tables: PUD + PMD + 3 PTE (got %lld data, %lld tables)",
	       data_of(fd), tables_of(fd));
	pattern(big, 4 * MiB, 7);
	tap_ok(pwrite(fd, big, 3 * MiB, 1 * GiB - 3 * MiB / 2 + 7) == 3 * MiB,
	       "3 MiB write across the 1 GiB boundary");
	tap_ok(check(fd, 1 * GiB - 3 * MiB / 2 + 7, big, 3 * MiB),
	       "it reads back intact");
	tap_ok(pread(fd, rb, 8192, 1 * GiB - 3 * MiB / 2 - 8192 + 7) == 8192 &&
	       all_zero(rb, 8192),
	       "the hole before it still reads zero");
	tap_ok(tables_of(fd) == 1 + 2 + 3 + 2,
	       "tables: PUD + 2 PMD + 5 PTE (got %lld)", tables_of(fd));
	memset(big, 0x3c, 4 * MiB);
	tap_ok(pwrite(fd, big, 2 * MiB, 4 * GiB - 1 * MiB) == 2 * MiB &&
	       size_of(fd) == 4 * GiB + 1 * MiB,
	       "2 MiB write over the end of 4 GiB extends the size by 1 MiB");
	tap_ok(check(fd, 4 * GiB - 1 * MiB, big, 2 * MiB),
	       "data across the old end reads back");
	tap_ok(pwrite(fd, big, 100, 4 * GiB + 1 * MiB + 10) == 100 &&
	       size_of(fd) == 4 * GiB + 1 * MiB + 110,
	       "100 bytes at 10 past the end: size ends at its last byte");

	/* Faulting user buffers. */
	{
		long long sz = size_of(fd), d = data_of(fd);
		volatile uintptr_t bad_addr = 8;
		void *bad = (void *)bad_addr;
		char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		tap_errno(pwrite(fd, bad, 4096, sz), EFAULT,
			  "write past the end from a bad pointer: EFAULT");
		tap_ok(size_of(fd) == sz && data_of(fd) == d,
		       "the failed write gave back the size and frame it took");
		tap_errno(pread(fd, bad, 4096, 0), EFAULT,
			  "read into a bad pointer: EFAULT");
		tap_require(two != MAP_FAILED, "anon");
		memset(two, 'w', 4096);
		munmap(two + 4096, 4096);
		tap_ok(pwrite(fd, two, 8192, sz) == 4096 && size_of(fd) == sz + 4096,
		       "write past the end with the second half of the buffer unmapped: short, size +1 page");
		tap_ok(pread(fd, buf, 4, sz + 4092) == 4 && !memcmp(buf, "wwww", 4),
		       "the written part is there");
		/* A whole page over a hole, half of it from a faulting buffer. */
		{
			static char want[4096], got[4096];
			long long hole = sz + 4096;

			tap_require(ftruncate(fd, hole + 4096) == 0);
			memset(want, 'w', 2048);
			tap_ok(pwrite(fd, two + 2048, 4096, hole) == 2048,
			       "a page over a hole from a half-faulting buffer: short, 2048");
			tap_ok(pread(fd, got, 4096, hole) == 4096 &&
			       !memcmp(got, want, 4096),
			       "its first half is written, the rest reads zero");
		}
		munmap(two, 4096);
	}

	/* splice paths: sendfile out of and into a morsel. */
	tfd = open("/tmp/rw_tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(tfd >= 0, "tmp file");
	{
		off_t off = 1 * GiB - 100;

		pattern(big, 8192, 3);
		pwrite(fd, big, 8192, off);
		tap_ok(sendfile(tfd, fd, &off, 8192) == 8192 && off == 1 * GiB + 8092 &&
		       pread(tfd, rb, 8192, 0) == 8192 && !memcmp(rb, big, 8192),
		       "sendfile from a morsel copies its data");
		off = 0;
		tap_ok(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0 &&
		       sendfile(fd, tfd, &off, 8192) == 8192 &&
		       size_of(fd) == 8192 && check(fd, 0, big, 8192),
		       "sendfile into an empty morsel extends it and writes the data");
	}
	close(tfd);
	unlink("/tmp/rw_tmp");

	/* Written data survives close and reopen. */
	tap_ok(pwrite(fd, "persist", 7, 5000) == 7, "pwrite before close");
	close(fd);
	fd = open(path, O_RDONLY);
	tap_ok(fd >= 0 && pread(fd, buf, 7, 5000) == 7 && !memcmp(buf, "persist", 7),
	       "data read back after close and reopen");
	tap_errno(write(fd, "x", 1), EBADF, "write to an O_RDONLY fd: EBADF");
	close(fd);
	tap_ok(unlink(path) == 0 && total("data_pages") == base_data &&
	       total("table_pages") == base_tables, "unlink frees everything");

	fd = open("/dev/morsel", O_RDONLY | O_DIRECTORY);
	tap_errno(read(fd, buf, 10), EISDIR, "read of the directory: EISDIR");
	close(fd);
	free(big);
	free(rb);
	return tap_done();
}
