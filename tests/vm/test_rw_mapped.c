#define _GNU_SOURCE
/*
 * read()/write()/fallocate/punch against an object that is mapped at the
 * same time in every way a mapping can reach it: a writable linked mapping,
 * a read-only mapping (linked read-only twin tables), writable and
 * read-only mappings that cut a granule (page by page), and a read-only
 * 2 GiB mapping linked by PUD.  Every change through the file is seen by
 * every mapper at once, and every store through a mapping by read().
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

static int fbyte(int fd, off_t off)
{
	unsigned char c;

	return pread(fd, &c, 1, off) == 1 ? c : -1;
}

static int put(int fd, off_t off, int v)
{
	unsigned char c = v;

	return pwrite(fd, &c, 1, off) == 1;
}

int main(void)
{
	const char *path = "/dev/morsel/rwm_a";
	long base_d = total("data_pages"), base_t = total("table_pages");
	volatile unsigned char *A, *B, *C, *D, *E, *F;
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, 4 * MiB) == 0, "create");

	A = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	B = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	C = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 1 * MiB);
	D = mmap(NULL, 1 * MiB, PROT_READ, MAP_SHARED, fd, 2 * MiB + 512 * 1024);
	tap_require(A != MAP_FAILED && B != MAP_FAILED && C != MAP_FAILED &&
		    D != MAP_FAILED, "mmap");
	/* Make every mapping fault in once (links and single pages). */
	tap_ok(A[0] == 0 && B[0] == 0 && A[3 * MiB] == 0 && B[3 * MiB] == 0 &&
	       C[0] == 0 && D[0] == 0, "holes read as zeros through all four mappings");

	tap_ok(put(fd, 10 * PG + 1, 0x10) && A[10 * PG + 1] == 0x10 &&
	       B[10 * PG + 1] == 0x10,
	       "pwrite into a hole: seen through the linked RW and the RO twin mapping");
	tap_ok(put(fd, 300 * PG, 0x30) && A[300 * PG] == 0x30 && B[300 * PG] == 0x30 &&
	       C[300 * PG - 1 * MiB] == 0x30,
	       "pwrite into a hole: seen through the page-by-page RW mapping too");
	tap_ok(put(fd, 2 * MiB + 600 * 1024, 0x60) && A[2 * MiB + 600 * 1024] == 0x60 &&
	       B[2 * MiB + 600 * 1024] == 0x60 && D[600 * 1024 - 512 * 1024] == 0x60,
	       "pwrite in chunk 1: seen by RW, RO twin and page-by-page RO mappings");

	A[20 * PG] = 0x20;
	tap_ok(fbyte(fd, 20 * PG) == 0x20 && B[20 * PG] == 0x20,
	       "store through the linked RW mapping: read() and the RO mapping see it");
	C[5 * PG] = 0x55;
	tap_ok(fbyte(fd, 1 * MiB + 5 * PG) == 0x55 && A[1 * MiB + 5 * PG] == 0x55 &&
	       B[1 * MiB + 5 * PG] == 0x55,
	       "store through the page-by-page RW mapping: read(), A and B see it");

	/* Punch then rewrite: twins must follow the primary table. */
	tap_ok(fallocate(fd, PUNCH, 10 * PG, PG) == 0 && A[10 * PG + 1] == 0 &&
	       B[10 * PG + 1] == 0, "punch: both linked mappings read zero");
	tap_ok(put(fd, 10 * PG + 1, 0x11) && A[10 * PG + 1] == 0x11 &&
	       B[10 * PG + 1] == 0x11,
	       "pwrite into the punched page: the new frame shows in A and in the twin (B)");
	tap_ok(fallocate(fd, PUNCH, 300 * PG, PG) == 0 && C[300 * PG - 1 * MiB] == 0 &&
	       B[300 * PG] == 0 && put(fd, 300 * PG, 0x31) &&
	       C[300 * PG - 1 * MiB] == 0x31 && B[300 * PG] == 0x31,
	       "punch and rewrite of a page mapped page by page: C and B follow");
	tap_ok(fallocate(fd, PUNCH, 2 * MiB, 2 * MiB) == 0 &&
	       D[600 * 1024 - 512 * 1024] == 0 && B[2 * MiB + 600 * 1024] == 0,
	       "punch of all of chunk 1: D and B read zero");
	tap_ok(fallocate(fd, 0, 2 * MiB, 2 * MiB) == 0 && put(fd, 3 * MiB, 0x77) &&
	       B[3 * MiB] == 0x77 && A[3 * MiB] == 0x77 &&
	       D[3 * MiB - 2 * MiB - 512 * 1024] == 0x77,
	       "fallocate and pwrite after the punch: every mapper sees the data");
	{
		unsigned char buf[3 * PG];

		memset(buf, 0x99, sizeof(buf));
		tap_ok(pwrite(fd, buf, sizeof(buf), 2 * MiB - PG) == sizeof(buf) &&
		       A[2 * MiB - PG] == 0x99 && B[2 * MiB - 1] == 0x99 &&
		       B[2 * MiB] == 0x99 && B[2 * MiB + PG + 4095] == 0x99 &&
		       B[2 * MiB + 2 * PG] == 0,
		       "a pwrite across the 2 MiB boundary: seen in both chunks by A and B");
	}
	tap_ok(ftruncate(fd, 4 * MiB) == 0, "mapped four times: ftruncate to the same size works");
	munmap((void *)A, 4 * MiB);
	munmap((void *)B, 4 * MiB);
	munmap((void *)C, 1 * MiB);
	munmap((void *)D, 1 * MiB);

	/* Level 3: read-only PUD links see writes through the file. */
	tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, 2 * GiB) == 0, "2G");
	E = mmap(NULL, 2 * GiB, PROT_READ, MAP_SHARED, fd, 0);
	F = mmap(NULL, 2 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(E != MAP_FAILED && F != MAP_FAILED, "mmap 2G");
	tap_ok(E[0] == 0 && E[1 * GiB] == 0 && F[1 * GiB + 4 * MiB] == 0,
	       "2 GiB: holes read zero through RO and RW PUD links");
	tap_ok(put(fd, 1 * GiB + 3 * MiB, 0x13) && E[1 * GiB + 3 * MiB] == 0x13 &&
	       F[1 * GiB + 3 * MiB] == 0x13,
	       "2 GiB: pwrite into a hole under a PUD link is seen by both mappings");
	F[5 * MiB] = 0x15;
	tap_ok(E[5 * MiB] == 0x15 && fbyte(fd, 5 * MiB) == 0x15,
	       "2 GiB: store through the RW mapping: RO mapping and read() see it");
	tap_ok(fallocate(fd, PUNCH, 5 * MiB, PG) == 0 && E[5 * MiB] == 0 &&
	       F[5 * MiB] == 0 && put(fd, 5 * MiB, 0x16) && E[5 * MiB] == 0x16,
	       "2 GiB: punch and rewrite are seen through the PUD links");
	munmap((void *)E, 2 * GiB);
	munmap((void *)F, 2 * GiB);

	/* Read-only mapping first, then the file fills the holes. */
	tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, 2 * MiB) == 0, "2M");
	B = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(B != MAP_FAILED, "mmap ro 2M");
	tap_ok(B[0] == 0, "RO mapping of an empty 2 MiB object reads zero");
	{
		static unsigned char buf[2 * MiB];
		long long i, bad = 0;

		for (i = 0; i < 2 * MiB; i++)
			buf[i] = (unsigned char)(i / PG + 1);
		tap_ok(pwrite(fd, buf, 2 * MiB, 0) == 2 * MiB, "fill the whole object by pwrite");
		for (i = 0; i < 2 * MiB; i += PG)
			bad += B[i] != (unsigned char)(i / PG + 1) ||
			       B[i + PG - 1] != (unsigned char)(i / PG + 1);
		tap_ok(bad == 0, "every page shows through the RO twin (%lld bad)", bad);
	}
	munmap((void *)B, 2 * MiB);

	close(fd);
	unlink(path);
	tap_ok(total("data_pages") == base_d && total("table_pages") == base_t,
	       "all frames and tables (twins included) freed");
	return tap_done();
}
