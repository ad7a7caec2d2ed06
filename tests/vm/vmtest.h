/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the mapping tests (tests/vm/test_*.c that mmap a
 * morsel object; not the copy-on-write tests, which use cow.h, nor the
 * read/write tests with their own long long sizes): size macros, the
 * MORSEL_IOC_STAT wrapper mstat() and links(), a module total from
 * /sys/kernel/morsel, mkobj(), the sigsetjmp probes try_write()/try_read()
 * (call probe_init() first), wait_status()/CHILD_OK and free_range().
 * Helpers used by one test only stay in that test.
 */
#ifndef MORSEL_TESTS_VM_VMTEST_H
#define MORSEL_TESTS_VM_VMTEST_H

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <linux/morsel.h>
#include "objects.h"
#include "run_as.h"
#include "tap.h"

#define KiB (1UL << 10)
#define MiB (1UL << 20)
#define GiB (1UL << 30)

/* -------------------------------------------------------------- ioctls */

static inline struct morsel_stat mstat(int fd)
{
	struct morsel_stat s;

	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	if (ioctl(fd, MORSEL_IOC_STAT, &s))
		tap_fatal("MORSEL_IOC_STAT");
	return s;
}

static inline unsigned long links(int fd)
{
	return mstat(fd).links;
}

/* ------------------------------------------------------- module totals */

static inline long total(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/morsel/%s", name);
	f = fopen(path, "r");
	if (!f)
		tap_fatal("open %s", path);
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* ------------------------------------------------------------- objects */

static inline int mkobj(const char *path, unsigned long size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	tap_require(fd >= 0);
	tap_require(ftruncate(fd, size) == 0);
	return fd;
}

/* A free range of @len aligned to @align. */
static inline unsigned char *free_range(unsigned long len, unsigned long align)
{
	unsigned char *r = mmap(NULL, len + align, PROT_NONE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	tap_require(r != MAP_FAILED);
	munmap(r, len + align);
	return (unsigned char *)(((uintptr_t)r + align - 1) & ~(align - 1));
}

/* -------------------------------------------------------------- probes */

static sigjmp_buf probe_jb;
static volatile sig_atomic_t probe_sig;

static inline void probe_handler(int sig)
{
	probe_sig = sig;
	siglongjmp(probe_jb, 1);
}

static inline void probe_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = probe_handler;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

/* 0 if the store worked, else the signal it raised. */
static inline int try_write(volatile unsigned char *p, unsigned char v)
{
	probe_sig = 0;
	if (sigsetjmp(probe_jb, 1) == 0) {
		*p = v;
		return 0;
	}
	return probe_sig;
}

static inline int try_read(volatile unsigned char *p, unsigned char *v)
{
	probe_sig = 0;
	if (sigsetjmp(probe_jb, 1) == 0) {
		*v = *p;
		return 0;
	}
	return probe_sig;
}

/* ------------------------------------------------------------ children */

static inline int wait_status(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

#define CHILD_OK(st) ((st) >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)

#endif /* MORSEL_TESTS_VM_VMTEST_H */
