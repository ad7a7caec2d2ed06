/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the object/contents tests (read/write, fallocate,
 * sizes, seek, names, mount options and the like; not the mapping tests,
 * which use vmtest.h, nor the copy-on-write tests, which use cow.h): the
 * long long size macros KiB/MiB/GiB, the MORSEL_IOC_STAT wrapper
 * mstat(fd, &s) returning the ioctl's result, size_of(), data_of() and
 * tables_of() (-1 on error), and total(), a module total from
 * /sys/kernel/morsel (-1 if unreadable), and tap_run_as() (run_as.h).
 * Helpers used by one test
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
#include <linux/morsel.h>
#include "run_as.h"
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

#endif /* MORSEL_TESTS_VM_OBJTEST_H */
