#define _GNU_SOURCE
/*
 * Frames are zeroed before anyone can see them: after freeing many frames
 * full of a pattern (unlink, punch, shrink), new frames allocated by
 * fallocate, by a one-byte write, by a store or a read through a writable
 * (linked) or read-only (page-by-page) mapping, and by MORSEL_MAP_POPULATE
 * read as zeros everywhere else.
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

#define SZ (32 * MiB)

static unsigned char big[SZ];

/* Create a SZ object full of 0xa5 and free it one of three ways. */
static int dirty_and_free(int how)
{
	int fd = open("/dev/morsel/zf_dirty", O_RDWR | O_CREAT | O_EXCL, 0600);
	int ok;

	if (fd < 0)
		return 0;
	memset(big, 0xa5, SZ);
	ok = pwrite(fd, big, SZ, 0) == SZ;
	if (how == 1)
		ok &= fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, SZ) == 0;
	else if (how == 2)
		ok &= ftruncate(fd, 0) == 0;
	close(fd);
	unlink("/dev/morsel/zf_dirty");
	return ok;
}

/* Number of non-zero bytes in [0, SZ) of @fd, except page offsets @skip. */
static long long nonzero(int fd, long long skip_in_page)
{
	long long i, n = 0;

	if (pread(fd, big, SZ, 0) != SZ)
		return -1;
	for (i = 0; i < SZ; i++)
		if (big[i] && (i % PG) != skip_in_page)
			n++;
	return n;
}

static long long nonzero_mem(const unsigned char *p, long long skip_in_page)
{
	long long i, n = 0;

	for (i = 0; i < SZ; i++)
		if (p[i] && (i % PG) != skip_in_page)
			n++;
	return n;
}

int main(void)
{
	long base = total("data_pages");
	const char *path = "/dev/morsel/zf_new";
	unsigned char *p;
	int fd, round;

	for (round = 0; round < 3; round++) {
		static const char *const how[] = { "unlink", "punch", "shrink" };
		struct morsel_map m = { .argsz = sizeof(m) };
		long long i;

		tap_ok(dirty_and_free(round), "round %d: 32 MiB of 0xa5 written and freed by %s",
		       round, how[round]);

		fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
		tap_require(fd >= 0 && ftruncate(fd, SZ) == 0, "new");
		tap_ok(fallocate(fd, 0, 0, SZ) == 0 && nonzero(fd, -1) == 0,
		       "round %d: fallocated frames read as zeros", round);

		tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, SZ) == 0, "reset");
		dirty_and_free(round);
		for (i = 0; i < SZ; i += PG)
			pwrite(fd, "w", 1, i + 17);
		tap_ok(nonzero(fd, 17) == 0,
		       "round %d: one-byte writes allocate frames that are zero elsewhere", round);

		tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, SZ) == 0, "reset");
		dirty_and_free(round);
		p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		tap_require(p != MAP_FAILED, "mmap");
		for (i = 0; i < SZ; i += 2 * PG)
			p[i + 99] = 'm';	/* stores through links */
		tap_ok(nonzero_mem(p, 99) == 0 && nonzero(fd, 99) == 0,
		       "round %d: frames allocated by stores and reads through a writable mapping are zero",
		       round);
		munmap(p, SZ);

		tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, SZ) == 0, "reset");
		dirty_and_free(round);
		p = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
		tap_require(p != MAP_FAILED, "mmap ro");
		tap_ok(nonzero_mem(p, -1) == 0,
		       "round %d: frames allocated by reads through a read-only mapping are zero",
		       round);
		munmap(p, SZ);

		tap_require(ftruncate(fd, 0) == 0 && ftruncate(fd, SZ) == 0, "reset");
		dirty_and_free(round);
		p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		tap_require(p != MAP_FAILED, "mmap pop");
		m.addr = (uintptr_t)p;
		m.length = SZ;
		m.flags = MORSEL_MAP_POPULATE;
		tap_ok(ioctl(fd, MORSEL_IOC_MAP, &m) == 0 && nonzero_mem(p, -1) == 0,
		       "round %d: MORSEL_MAP_POPULATE frames are zero", round);
		munmap(p, SZ);
		close(fd);
		unlink(path);
	}
	tap_ok(total("data_pages") == base, "all frames freed");
	return tap_done();
}
