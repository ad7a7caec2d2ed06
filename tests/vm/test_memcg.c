#define _GNU_SOURCE
/*
 * Frames and tables are charged to the memory cgroup of the process that
 * created the morsel, whoever populates them later: the frames of a dense
 * object (memory.current), and the page tables of a sparse one (one byte
 * every 2 MiB of 1 GiB: 512 PTE tables, memory.stat pagetables), until the
 * object is gone.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vm.h"

#define CG "/sys/fs/cgroup"
#define CHILD_CG CG "/morsel-test"
#define SIZE (32UL << 20)

/* The "pagetables" line of @cg's memory.stat, in bytes. */
static long pagetables_of(const char *cg)
{
	char path[128], line[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.stat", cg);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "pagetables %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

int main(void)
{
	long before, created, populated, after;
	char pid[32];
	int status, fd;
	pid_t child;

	mkdir(CG, 0755);
	if (access(CG "/cgroup.procs", F_OK))
		tap_require(mount("none", CG, "cgroup2", 0, NULL) == 0);
	tap_require(write_file(CG "/cgroup.subtree_control", "+memory") == 0);
	rmdir(CHILD_CG);
	tap_require(mkdir(CHILD_CG, 0755) == 0);
	before = read_long_file(CHILD_CG "/memory.current");
	tap_require(before >= 0);

	/* A child in the new cgroup creates the morsel and exits. */
	child = fork();
	tap_require(child >= 0);
	if (child == 0) {
		snprintf(pid, sizeof(pid), "%d", getpid());
		if (write_file(CHILD_CG "/cgroup.procs", pid))
			_exit(2);
		fd = open("/dev/morsel/memcg", O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd < 0 || ftruncate(fd, SIZE))
			_exit(3);
		_exit(0);
	}
	tap_require(waitpid(child, &status, 0) == child);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "a process in a child cgroup creates a %lu MiB morsel", SIZE >> 20);
	created = read_long_file(CHILD_CG "/memory.current");

	/* This process (root cgroup) populates it. */
	fd = open("/dev/morsel/memcg", O_RDWR);
	tap_require(fd >= 0);
	tap_ok(fallocate(fd, 0, 0, SIZE) == 0,
	       "another process in another cgroup populates every page");
	populated = read_long_file(CHILD_CG "/memory.current");
	tap_diag("memory.current: before %ld, created %ld, populated %ld",
		 before, created, populated);
	tap_ok(populated - created >= (long)SIZE,
	       "the creator's cgroup is charged for all %lu MiB of frames",
	       SIZE >> 20);
	close(fd);
	tap_ok(unlink("/dev/morsel/memcg") == 0, "unlink frees the morsel");
	after = read_long_file(CHILD_CG "/memory.current");
	tap_ok(after - before < (long)(SIZE / 8),
	       "the charge goes away with the morsel (now %ld)", after);

	/* Page tables: a sparse object made in the child cgroup. */
	child = fork();
	tap_require(child >= 0);
	if (child == 0) {
		snprintf(pid, sizeof(pid), "%d", getpid());
		if (write_file(CHILD_CG "/cgroup.procs", pid))
			_exit(2);
		fd = open("/dev/morsel/memcg", O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd < 0 || ftruncate(fd, 512UL << 30))
			_exit(3);
		_exit(0);
	}
	tap_require(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0, "sparse object");
	before = pagetables_of(CHILD_CG);
	fd = open("/dev/morsel/memcg", O_RDWR);
	tap_require(fd >= 0);
	for (created = 0; created < 512; created++)
		tap_require(pwrite(fd, "t", 1, created << 21) == 1, "write");
	/*
	 * memory.stat is flushed lazily (every 2 s, or past a batch of
	 * updates): wait for it.  "before" may still hold page tables of the
	 * creator, which exited just now and may free them later; so the
	 * charge for our tables is judged against the figure once the
	 * object is gone (below).
	 */
	for (created = 0; created < 300; created++) {
		populated = pagetables_of(CHILD_CG);
		if (populated - before >= 512 * 4096L)
			break;
		usleep(10000);
	}
	close(fd);
	unlink("/dev/morsel/memcg");
	/* Tables are freed after an RCU grace period (free_table()). */
	for (created = 0; created < 200; created++) {
		after = pagetables_of(CHILD_CG);
		if (after - before < 4 * 4096L)
			break;
		usleep(10000);
	}
	/* Past the periodic flush: the figure is exact now. */
	usleep(2500000);
	after = pagetables_of(CHILD_CG);
	tap_ok(before >= 0 && populated - after >= 512 * 4096L,
	       "one byte every 2 MiB of 1 GiB: the creator's cgroup was charged for the 512 tables (pagetables %ld -> %ld -> %ld)",
	       before, populated, after);
	tap_ok(after - before < 4 * 4096L,
	       "the tables' charge goes away with the morsel (pagetables %ld)", after);
	rmdir(CHILD_CG);
	return tap_done();
}
