/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one helper header of the VM tests (tests/vm/test_*.c): every test
 * includes it, after defining _GNU_SOURCE.  It includes tap.h and the
 * headers the helpers need.  Helpers used by one test only stay in that
 * test.  In order:
 *
 *   sizes      PG, KiB, MiB, GiB: long long (signed, like off_t)
 *   ioctls     stat_of() (MORSEL_IOC_STAT, the ioctl's result), mstat()
 *              (the same, bails out on failure), links(), size_of(),
 *              data_of(), tables_of() (-1 on error), freeze(), split(),
 *              split_flags(), link_all(), link_counted() (MORSEL_IOC_MAP)
 *   totals     total(name) from /sys/kernel/morsel (-1 if unreadable),
 *              struct totals / totals() for all five, totals_back()
 *   debugfs    read_objects(), object_figures(), ino(), replacements()
 *   objects    mkobj(), free_range(), mmap_notified()
 *   probes     probe_init(), try_write(), try_read(): sigsetjmp probes
 *   files      write_file() (a string, to sysfs, cgroupfs, debugfs, /proc),
 *              read_long_file()
 *   processes  wait_status(), CHILD_OK(), pin(), watchdog() with the
 *              phase it names on a hang, tap_run_as()
 *   pattern    word(), fill_page(), page_ok(), mkbase(): pages filled
 *              with a tag and their offset
 */
#ifndef MORSEL_TESTS_VM_VM_H
#define MORSEL_TESTS_VM_VM_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before any include (sched_setaffinity, fallocate, ...)"
#endif

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <linux/morsel.h>
#include "tap.h"

/* --------------------------------------------------------------- sizes */

#define PG	4096LL
#define KiB	(1LL << 10)
#define MiB	(1LL << 20)
#define GiB	(1LL << 30)

/* -------------------------------------------------------------- ioctls */

/* MORSEL_IOC_STAT into @s: the ioctl's result (0, or -1 with errno). */
static inline int stat_of(int fd, struct morsel_stat *s)
{
	memset(s, 0, sizeof(*s));
	s->argsz = sizeof(*s);
	return ioctl(fd, MORSEL_IOC_STAT, s);
}

/* MORSEL_IOC_STAT of @fd; bails out if it fails. */
static inline struct morsel_stat mstat(int fd)
{
	struct morsel_stat s;

	if (stat_of(fd, &s))
		tap_fatal("MORSEL_IOC_STAT");
	return s;
}

static inline unsigned long links(int fd)
{
	return mstat(fd).links;
}

/* st_size, data_pages, table_pages of @fd; -1 on error. */
static inline long long size_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_size;
}

static inline long long data_of(int fd)
{
	struct morsel_stat s;

	return stat_of(fd, &s) ? -1 : (long long)s.data_pages;
}

static inline long long tables_of(int fd)
{
	struct morsel_stat s;

	return stat_of(fd, &s) ? -1 : (long long)s.table_pages;
}

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

/* A close-on-exec child: split_flags(fd, MORSEL_SPLIT_CLOEXEC). */
static inline int split(int fd)
{
	return split_flags(fd, MORSEL_SPLIT_CLOEXEC);
}

/* MORSEL_IOC_MAP of [@p, @p + @len), a mapping of @fd; counts in *@m. */
static inline int link_counted(int fd, void *p, unsigned long len,
			       struct morsel_map *m)
{
	memset(m, 0, sizeof(*m));
	m->argsz = sizeof(*m);
	m->addr = (uintptr_t)p;
	m->length = len;
	return ioctl(fd, MORSEL_IOC_MAP, m);
}

/* MORSEL_IOC_MAP: link all of [@p, @p + @len), a mapping of @fd. */
static inline int link_all(int fd, void *p, unsigned long len)
{
	struct morsel_map m;

	return link_counted(fd, p, len, &m);
}

/* ------------------------------------------------------- module totals */

/* /sys/kernel/morsel/@name; -1 if unreadable or not one number. */
static inline long total(const char *name)
{
	char path[128], buf[64], *end;
	ssize_t n;
	long v;
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
	v = strtol(buf, &end, 10);
	return *end == '\n' && end != buf ? v : -1;
}

/* The five totals vm/run checks after every test. */
enum { T_MORSELS, T_DATA, T_TABLES, T_LINKS, T_MAPPERS, T_N };
static const char *const tnames[T_N] = {
	"morsels", "data_pages", "table_pages", "links", "mappers"
};

struct totals {
	long v[T_N];
};

static inline struct totals totals(void)
{
	struct totals t;

	for (int i = 0; i < T_N; i++)
		t.v[i] = total(tnames[i]);
	return t;
}

/* Poll (RCU-deferred frees) until the totals equal @base, up to 2 s. */
static inline int totals_back(struct totals base)
{
	struct totals t;

	for (int tries = 0; tries < 40; tries++) {
		t = totals();
		if (!memcmp(&t, &base, sizeof(t)))
			return 1;
		usleep(50000);
	}
	for (int i = 0; i < T_N; i++)
		if (t.v[i] != base.v[i])
			tap_diag("%s: %ld, baseline %ld", tnames[i], t.v[i],
				 base.v[i]);
	return 0;
}

/* ------------------------------------------------------------- debugfs */

/*
 * The module's per-object figures in /sys/kernel/debug/morsel/objects
 * (one line per object, after a header line).
 */
static char objects_text[1 << 20];

/* /sys/kernel/debug/morsel/objects into objects_text; its length or -1. */
static inline int read_objects(void)
{
	int fd = open("/sys/kernel/debug/morsel/objects", O_RDONLY), len = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	while ((n = read(fd, objects_text + len,
			 sizeof(objects_text) - 1 - len)) > 0)
		len += n;
	close(fd);
	objects_text[len] = 0;
	return len;
}

/* The first @n figures after inode @ino on its line; 1 if all were read. */
static inline int object_figures(ino_t ino, long long *f, int n)
{
	char key[32], *p, *end;

	if (read_objects() < 0)
		return 0;
	snprintf(key, sizeof(key), "\n%lu ", (unsigned long)ino);
	p = strstr(objects_text, key);
	if (!p)
		return 0;
	p += strlen(key) - 1;
	for (int i = 0; i < n; i++, p = end) {
		f[i] = strtoll(p, &end, 10);
		if (end == p)
			return 0;
	}
	return 1;
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

/* ------------------------------------------------------------- objects */

/* Create (or truncate) @path with @size bytes; bails out on failure. */
static inline int mkobj(const char *path, unsigned long size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	tap_require(fd >= 0, "open %s", path);
	tap_require(ftruncate(fd, size) == 0, "%s: %lu bytes", path, size);
	return fd;
}

/*
 * A writable shared mapping of @fd that keeps write notification: made
 * read-only, then mprotect()ed writable (docs/semantics.md).  A FREEZE
 * leaves it in place and its stores fault afterwards, where a mapping
 * made writable by mmap() makes the FREEZE fail with EBUSY.  MAP_FAILED
 * on failure, as mmap().
 */
static inline void *mmap_notified(void *addr, size_t len, int flags, int fd,
				  off_t off)
{
	void *p = mmap(addr, len, PROT_READ, flags, fd, off);

	if (p != MAP_FAILED && mprotect(p, len, PROT_READ | PROT_WRITE)) {
		munmap(p, len);
		return MAP_FAILED;
	}
	return p;
}

/* A free range of @len aligned to @align. */
static inline unsigned char *free_range(unsigned long len, unsigned long align)
{
	unsigned char *r = mmap(NULL, len + align, PROT_NONE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	tap_require(r != MAP_FAILED, "%lu bytes of address space", len + align);
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

/* SIGSEGV and SIGBUS end a probe; call before try_write()/try_read(). */
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

/* --------------------------------------------------------------- files */

/* Write @s to @path in one write(): 0, or -1. */
static inline int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok ? 0 : -1;
}

/* The number at the start of @path, or -1 if unreadable. */
static inline long read_long_file(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	long v = -1;

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) > 0)
			v = atol(buf);
		close(fd);
	}
	return v;
}

/* ----------------------------------------------------------- processes */

static inline int wait_status(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

#define CHILD_OK(st) ((st) >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)

static inline void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		tap_fatal("sched_setaffinity(%d)", cpu);
}

/* What the test is doing, for the watchdog's message. */
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

/*
 * A hang must fail the test, not the whole VM run.  @secs is for the
 * stock kernel; the debug kernel (make test-debug: KASAN, lockdep,
 * kmemleak) runs the same test several times slower and its suite
 * allows 1800 s a test, so there the limit is six times longer
 * (session 10: test_resize_enospc took 60-110 s on the stock kernel
 * under load and hit its 280 s on the debug kernel).
 */
static inline void watchdog(unsigned secs)
{
	struct utsname u;

	if (!uname(&u) && strstr(u.release, "-debug"))
		secs *= 6;
	signal(SIGALRM, on_alarm);
	alarm(secs);
}

/*
 * Run @fn as @uid:@gid (no supplementary groups) in a child process,
 * continuing the TAP numbering; the child's counts come back through a
 * pipe.  A child that dies without reporting bails the whole test out.
 */
static inline void tap_run_as(uid_t uid, gid_t gid, void (*fn)(void))
{
	int pfd[2], r[3], status;
	ssize_t n;
	pid_t pid, parent = getpid();

	tap_require(pipe(pfd) == 0, "pipe");
	fflush(stdout);
	pid = fork();
	tap_require(pid >= 0, "fork");
	if (pid == 0) {
		close(pfd[0]);
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			tap_fatal("cannot become %d:%d", (int)uid, (int)gid);
		/*
		 * Die with the test (its watchdog ends only the parent):
		 * set after setuid(), which clears it.
		 */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
			_exit(2);
		fn();
		r[0] = tap_run;
		r[1] = tap_failed;
		r[2] = tap_skipped;
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
	tap_skipped = r[2];
}

/* --------------------------------------------------------- page pattern */

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

	tap_require(fd >= 0 && ftruncate(fd, pages * PG) == 0, "%s", path);
	p = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "map %s", path);
	for (unsigned long i = 0; i < pages; i++)
		fill_page(p + i * PG / 8, 1, i * PG);
	munmap(p, pages * PG);
	tap_require(freeze(fd) == 0, "freeze %s", path);
	return fd;
}

#endif /* MORSEL_TESTS_VM_VM_H */
