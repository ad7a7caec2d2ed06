/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the copy-on-write tests (tests/vm/test_cow_*.c, and
 * test_kvm.c's copy-on-write case), on top of vmtest.h (size macros,
 * mstat(), total()): PG, the alarm watchdog that names the phase a hang
 * is in, wrappers for MORSEL_IOC_FREEZE/SPLIT/MAP, the module totals in
 * /sys/kernel/morsel and a wait for them to return to a baseline, CPU
 * pinning, the page pattern (word/fill_page/page_ok), a frozen base
 * filled with the pattern (mkbase), ino() and replacements() (copies
 * counted in the debugfs objects list).
 * Helpers used by one test only stay in that test.  Include after defining
 * _GNU_SOURCE (sched_setaffinity).
 */
#ifndef MORSEL_TESTS_VM_COW_H
#define MORSEL_TESTS_VM_COW_H

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/morsel.h>
#include "tap.h"
#include "vmtest.h"

#define PG 4096UL

/* A hang must fail the test, not the whole VM run. */
static const char *volatile phase = "start";

static inline void on_alarm(int sig)
{
	const char *p = phase;

	(void)sig;
	if (write(1, "Bail out! timed out in: ", 24) < 0 ||
	    write(1, p, strlen(p)) < 0 || write(1, "\n", 1) < 0)
		_exit(1);
	_exit(1);
}

static inline void watchdog(unsigned secs)
{
	signal(SIGALRM, on_alarm);
	alarm(secs);
}

/* ------------------------------------------------------------- ioctls */

static inline int freeze(int fd)
{
	struct morsel_freeze f;

	memset(&f, 0, sizeof(f));
	f.argsz = sizeof(f);
	return ioctl(fd, MORSEL_IOC_FREEZE, &f);
}

/* The child's fd, or -1 with errno. */
static inline int split_flags(int fd, unsigned flags)
{
	struct morsel_split s;

	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	s.flags = flags;
	if (ioctl(fd, MORSEL_IOC_SPLIT, &s))
		return -1;
	return s.fd;
}

static inline int split(int fd)
{
	return split_flags(fd, MORSEL_SPLIT_CLOEXEC);
}

/* MORSEL_IOC_MAP: link all of [@p, @p + @len), a mapping of @fd. */
static inline int link_all(int fd, void *p, unsigned long len)
{
	struct morsel_map m;

	memset(&m, 0, sizeof(m));
	m.argsz = sizeof(m);
	m.addr = (uintptr_t)p;
	m.length = len;
	return ioctl(fd, MORSEL_IOC_MAP, &m);
}

/* ------------------------------------------------------- module totals */

static const char *const tnames[] = { "morsels", "data_pages", "table_pages",
				       "links", "mappers" };

static inline void totals(long *t)
{
	for (int i = 0; i < 5; i++)
		t[i] = total(tnames[i]);
}

/* Poll (RCU-deferred frees) until the totals equal @base, up to 2 s. */
static inline int totals_back(const long *base)
{
	long t[5];

	for (int tries = 0; tries < 40; tries++) {
		totals(t);
		if (!memcmp(t, base, sizeof(t)))
			return 1;
		usleep(50000);
	}
	for (int i = 0; i < 5; i++)
		if (t[i] != base[i])
			tap_diag("%s: %ld, baseline %ld", tnames[i], t[i], base[i]);
	return 0;
}

/* --------------------------------------------------------------- misc */

static inline void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		tap_fatal("sched_setaffinity(%d)", cpu);
}

static inline ino_t ino(int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		tap_fatal("fstat");
	return st.st_ino;
}

/*
 * Leaves of @fd's object that copy-on-write replaced so far, and how many
 * of those without the core mm's zap (debugfs objects list); 1 if read.
 */
static inline int replacements(int fd, long long *all, long long *direct)
{
	long long f[8];

	if (!object_figures(ino(fd), f, 8))
		return 0;
	*all = f[6];
	*direct = f[7];
	return 1;
}

/* ------------------------------------------------------- page pattern */

/* The word at byte offset @off of a page filled with @tag. */
static inline uint64_t word(unsigned tag, unsigned long off)
{
	return ((uint64_t)tag << 48) | off;
}

static inline void fill_page(void *p, unsigned tag, unsigned long off)
{
	uint64_t *w = p;

	for (unsigned i = 0; i < PG / 8; i++)
		w[i] = word(tag, off + 8 * i);
}

static inline int page_ok(const volatile void *p, unsigned tag,
			  unsigned long off)
{
	const volatile uint64_t *w = p;

	for (unsigned i = 0; i < PG / 8; i++)
		if (w[i] != word(tag, off + 8 * i))
			return 0;
	return 1;
}

/* A frozen base @path of @pages pages, every page filled with tag 1. */
static inline int mkbase(const char *path, unsigned long pages)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	uint64_t *p;

	tap_require(fd >= 0 && ftruncate(fd, pages * PG) == 0);
	p = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (unsigned long i = 0; i < pages; i++)
		fill_page(p + i * PG / 8, 1, i * PG);
	munmap(p, pages * PG);
	tap_require(freeze(fd) == 0);
	return fd;
}

#endif /* MORSEL_TESTS_VM_COW_H */
