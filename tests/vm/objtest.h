/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the object/contents tests (read/write, fallocate,
 * sizes, seek, names, mount options and the like; not the mapping tests,
 * which use vmtest.h, nor the copy-on-write tests, which use cow.h): the
 * long long size macros KiB/MiB/GiB, the MORSEL_IOC_STAT wrapper
 * mstat(fd, &s) returning the ioctl's result, size_of(), data_of() and
 * tables_of() (-1 on error), and total(), a module total from
 * /sys/kernel/morsel (-1 if unreadable), and tap_run_as(), which runs a
 * part of a test as an unprivileged user.  Helpers used by one test
 * only, or whose copies differ, stay in their tests.
 */
#ifndef MORSEL_TESTS_VM_OBJTEST_H
#define MORSEL_TESTS_VM_OBJTEST_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>
#include <linux/morsel.h>
#include "tap.h"

#define KiB 1024LL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

static inline int mstat(int fd, struct morsel_stat *s)
{
	memset(s, 0, sizeof(*s));
	s->argsz = sizeof(*s);
	return ioctl(fd, MORSEL_IOC_STAT, s);
}

static inline long long size_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_size;
}

static inline long long data_of(int fd)
{
	struct morsel_stat s;

	return mstat(fd, &s) ? -1 : (long long)s.data_pages;
}

static inline long long tables_of(int fd)
{
	struct morsel_stat s;

	return mstat(fd, &s) ? -1 : (long long)s.table_pages;
}

static inline long total(const char *name)
{
	char path[128], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/kernel/morsel/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return atol(buf);
}

/*
 * Run @fn as @uid:@gid (no supplementary groups) in a child process,
 * continuing the TAP numbering; the child's counts come back through a
 * pipe.  A child that dies without reporting bails the whole test out.
 */
static inline void tap_run_as(uid_t uid, gid_t gid, void (*fn)(void))
{
	int pfd[2], r[2], status;
	ssize_t n;
	pid_t pid;

	tap_require(pipe(pfd) == 0, "pipe");
	fflush(stdout);
	pid = fork();
	tap_require(pid >= 0, "fork");
	if (pid == 0) {
		close(pfd[0]);
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			tap_fatal("cannot become %d:%d", (int)uid, (int)gid);
		fn();
		r[0] = tap_run;
		r[1] = tap_failed;
		if (write(pfd[1], r, sizeof(r)) != sizeof(r))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	n = read(pfd[0], r, sizeof(r));
	close(pfd[0]);
	waitpid(pid, &status, 0);
	if (n != sizeof(r))
		tap_fatal("unprivileged child died (status 0x%x)", status);
	tap_run = r[0];
	tap_failed = r[1];
}

#endif /* MORSEL_TESTS_VM_OBJTEST_H */
