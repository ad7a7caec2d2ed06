#define _GNU_SOURCE
/*
 * Changing the size of a morsel while any VMA maps it fails with EBUSY:
 * ftruncate, truncate, open(O_TRUNC), a write past the end and fallocate
 * without KEEP_SIZE.  Size-preserving operations still work.  Once the last
 * VMA is gone (munmap, every half of a split, a fork child's exit) the
 * size can change again.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

static long long mappers_of(int fd)
{
	struct morsel_stat s;

	return stat_of(fd, &s) ? -1 : (long long)s.mappers;
}

int main(void)
{
	const char *path = "/dev/morsel/rm_a";
	const long long sz = 4 * MiB;
	struct morsel_stat s;
	char *p, *q;
	int fd, fd2;
	char c;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0, "create");
	tap_require(ftruncate(fd, sz) == 0, "size");
	p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	p[0] = 'A';
	tap_ok(mappers_of(fd) == 1, "one VMA maps the object");

	tap_errno(ftruncate(fd, 8 * MiB), EBUSY, "mapped: ftruncate grow EBUSY");
	tap_errno(ftruncate(fd, 2 * MiB), EBUSY, "mapped: ftruncate shrink EBUSY");
	tap_errno(ftruncate(fd, 0), EBUSY, "mapped: ftruncate to 0 EBUSY");
	tap_errno(ftruncate(fd, 2 * GiB), EBUSY,
		  "mapped: ftruncate to another level EBUSY");
	tap_ok(ftruncate(fd, sz) == 0, "mapped: ftruncate to the same size works");
	tap_errno(truncate(path, 8 * MiB), EBUSY, "mapped: truncate() by path EBUSY");
	tap_errno(open(path, O_RDWR | O_TRUNC), EBUSY,
		  "mapped: open(O_TRUNC) of a non-empty object EBUSY");
	tap_errno(pwrite(fd, "x", 1, sz), EBUSY,
		  "mapped: pwrite at the end EBUSY");
	tap_errno(pwrite(fd, "xyz", 3, sz - 1), EBUSY,
		  "mapped: pwrite straddling the end EBUSY");
	lseek(fd, 0, SEEK_END);
	tap_errno(write(fd, "x", 1), EBUSY, "mapped: write() at EOF EBUSY");
	tap_errno(fallocate(fd, 0, sz - 4096, 8192), EBUSY,
		  "mapped: fallocate(0) past the end EBUSY");
	tap_ok(size_of(fd) == sz && p[0] == 'A',
	       "size and data unchanged after the refused changes");

	/* Size-preserving operations still work. */
	tap_ok(pwrite(fd, "B", 1, 4096) == 1 && p[4096] == 'B',
	       "mapped: pwrite inside works and shows in the mapping");
	tap_ok(fallocate(fd, 0, 0, sz) == 0 && data_of(fd) == sz / 4096 &&
	       size_of(fd) == sz, "mapped: fallocate(0) inside works");
	tap_ok(fallocate(fd, FALLOC_FL_KEEP_SIZE, sz - 4096, 1 * MiB) == 0 &&
	       size_of(fd) == sz && data_of(fd) == sz / 4096,
	       "mapped: fallocate(KEEP_SIZE) past the end works and allocates nothing beyond");
	tap_ok(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 * MiB,
			 1 * MiB) == 0 && size_of(fd) == sz &&
	       data_of(fd) == sz / 4096 - 256,
	       "mapped: punching a hole works");

	/* Through another open file of the same object. */
	fd2 = open(path, O_RDWR);
	tap_errno(ftruncate(fd2, 8 * MiB), EBUSY,
		  "mapped through another fd: ftruncate EBUSY");

	/* Split VMA: both halves count. */
	tap_ok(mprotect(p, 2 * MiB, PROT_READ) == 0 && mappers_of(fd) == 2,
	       "mprotect of half splits the VMA: 2 mappers");
	tap_ok(munmap(p, 2 * MiB) == 0 && mappers_of(fd) == 1,
	       "munmap of one half: 1 mapper");
	tap_errno(ftruncate(fd, 8 * MiB), EBUSY,
		  "one half still mapped: ftruncate EBUSY");
	tap_ok(munmap(p + 2 * MiB, 2 * MiB) == 0 && mappers_of(fd) == 0,
	       "munmap of the other half: no mapper");
	tap_ok(ftruncate(fd, 8 * MiB) == 0 && size_of(fd) == 8 * MiB,
	       "unmapped: ftruncate grow works");
	tap_ok(pwrite(fd, "C", 1, 8 * MiB) == 1 && size_of(fd) == 8 * MiB + 1,
	       "unmapped: write past the end extends");
	tap_ok(fallocate(fd, 0, 0, 10 * MiB) == 0 && size_of(fd) == 10 * MiB,
	       "unmapped: fallocate(0) past the end extends");

	/* Read-only and PROT_NONE mappings count too. */
	q = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, fd, 2 * MiB);
	tap_require(q != MAP_FAILED, "mmap ro");
	tap_errno(ftruncate(fd, 12 * MiB), EBUSY,
		  "read-only mapping of a part: ftruncate EBUSY");
	munmap(q, 2 * MiB);
	q = mmap(NULL, 2 * MiB, PROT_NONE, MAP_SHARED, fd, 0);
	tap_require(q != MAP_FAILED, "mmap none");
	tap_errno(fallocate(fd, 0, 0, 12 * MiB), EBUSY,
		  "PROT_NONE mapping: fallocate(0) extend EBUSY");
	munmap(q, 2 * MiB);

	/* A fork child's inherited mapping keeps it busy until it exits. */
	{
		int pfd[2], st;
		pid_t pid;

		q = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		tap_require(q != MAP_FAILED && pipe(pfd) == 0, "mmap/pipe");
		pid = fork();
		if (pid == 0) {
			close(pfd[1]);
			(void)!read(pfd[0], &c, 1);	/* wait for the parent */
			_exit(q[0] == 'A' ? 0 : 3);
		}
		munmap(q, 2 * MiB);
		tap_errno(ftruncate(fd, 12 * MiB), EBUSY,
			  "parent unmapped but a fork child maps: EBUSY");
		close(pfd[1]);
		waitpid(pid, &st, 0);
		tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		       "child saw the data through the inherited mapping");
		tap_ok(ftruncate(fd, 12 * MiB) == 0 && mappers_of(fd) == 0,
		       "after the child exited: ftruncate works");
		close(pfd[0]);
	}

	/* A PUD-level object, mapped 1 GiB aligned. */
	tap_require(ftruncate(fd, 2 * GiB) == 0, "2 GiB");
	q = mmap(NULL, 2 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(q != MAP_FAILED, "mmap 2G");
	q[GiB] = 1;
	tap_errno(ftruncate(fd, 1 * GiB), EBUSY,
		  "2 GiB object mapped: shrink to 1 GiB (re-root) EBUSY");
	munmap(q, 2 * GiB);
	tap_ok(ftruncate(fd, 1 * GiB) == 0 && stat_of(fd, &s) == 0 &&
	       s.level == MORSEL_LEVEL_PMD && s.links == 0,
	       "unmapped: shrink to 1 GiB re-roots to level 2");

	close(fd2);
	close(fd);
	unlink(path);
	return tap_done();
}
