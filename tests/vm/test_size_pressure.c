#define _GNU_SOURCE
/*
 * The mount's size= limit under concurrent writers (issue 13, item 4):
 * eight processes on a morselfs mounted with size=32M write, store
 * through mappings, fallocate and split into objects of their own until
 * the mount is full.  Every call either works or fails with ENOSPC (a
 * store through a mapping: SIGBUS), never anything else; statfs never
 * shows more blocks used than the limit; what each process wrote and was
 * told succeeded reads back; and once the objects are gone every block
 * is free again.
 */
#include <sys/statfs.h>
#include <sys/mount.h>
#include "vm.h"

#define DIR	"/tmp/size-pressure"
#define WRITERS	8

/*
 * More pages in use than size= allows?  size= bounds data frames and
 * page tables together; the module's totals count both, over every
 * mount, so what they held before the test is taken off (an object a
 * crashed earlier test left on /dev/morsel once made this test fail on
 * the debug kernel, 5 pages over).
 */
static long baseline;

static long in_use(void)
{
	return total("data_pages") + total("table_pages") - baseline;
}

static int over_limit(void)
{
	return in_use() > 32 * MiB / PG;
}

/* One writer: returns 0, or a code naming what went wrong. */
static int writer(int id)
{
	char path[64], buf[4096];
	long off, good = 0, i;
	unsigned char *p;
	int fd, cfd;

	snprintf(path, sizeof(path), DIR "/w%d", id);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, 16 * MiB))
		return 1;
	memset(buf, 'a' + id, sizeof(buf));
	/* write() until the mount is full */
	for (off = 0; off < 16 * MiB; off += 4096) {
		if (pwrite(fd, buf, 4096, off) == 4096) {
			good = off + 4096;
			continue;
		}
		if (errno != ENOSPC)
			return 2;
		break;
	}
	if (over_limit())
		return 3;
	/* stores through a mapping: SIGBUS when there is no room */
	p = mmap(NULL, 16 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 4;
	probe_init();
	for (i = good; i < good + 64 * 4096 && i < 16 * MiB; i += 4096) {
		int sig = try_write(p + i, 'm');

		if (sig && sig != SIGBUS)
			return 5;
	}
	/* fallocate and a split with a copy: ENOSPC or success */
	if (fallocate(fd, 0, 0, 16 * MiB) && errno != ENOSPC)
		return 6;
	if (freeze(fd) == 0) {
		cfd = split(fd);
		if (cfd >= 0) {
			if (pwrite(cfd, "c", 1, 0) != 1 && errno != ENOSPC)
				return 7;
			close(cfd);
		} else if (errno != ENOSPC && errno != ENOMEM) {
			return 8;
		}
	}
	if (over_limit())
		return 9;
	/* what write() said it wrote is there */
	for (off = 0; off < good; off += 4096)
		if (p[off] != 'a' + id || p[off + 4095] != 'a' + id)
			return 10;
	munmap(p, 16 * MiB);
	close(fd);
	return 0;
}

int main(void)
{
	struct statfs st;
	pid_t pids[WRITERS];
	int i, st_, bad = 0;

	watchdog(600);
	baseline = total("data_pages") + total("table_pages");
	mkdir(DIR, 0700);
	tap_require(mount("none", DIR, "morselfs", 0, "size=32M") == 0, "mount");
	for (i = 0; i < WRITERS; i++) {
		pids[i] = fork();
		tap_require(pids[i] >= 0);
		if (pids[i] == 0)
			_exit(writer(i));
	}
	for (i = 0; i < WRITERS; i++) {
		st_ = wait_status(pids[i]);
		if (!CHILD_OK(st_)) {
			tap_diag("writer %d: status %#x", i, st_);
			bad++;
		}
	}
	tap_ok(bad == 0,
	       "%d processes filling a size=32M mount: every call worked or said ENOSPC/SIGBUS, data intact (%d failed)",
	       WRITERS, bad);
	tap_require(statfs(DIR, &st) == 0, "statfs");
	tap_ok(st.f_bfree < st.f_blocks / 8 && !over_limit(),
	       "  the mount is full and never over its limit (%ld of %ld blocks free, %ld pages in use)",
	       (long)st.f_bfree, (long)st.f_blocks, in_use());
	for (i = 0; i < WRITERS; i++) {
		char path[64];

		snprintf(path, sizeof(path), DIR "/w%d", i);
		unlink(path);
	}
	tap_require(statfs(DIR, &st) == 0, "statfs");
	tap_ok(st.f_bfree == st.f_blocks,
	       "  unlinking every object frees every block (%ld of %ld free)",
	       (long)st.f_bfree, (long)st.f_blocks);
	tap_ok(umount(DIR) == 0, "  and the mount goes away cleanly");
	rmdir(DIR);
	return tap_done();
}
