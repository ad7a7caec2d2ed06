#define _GNU_SOURCE
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bench: morsel mapping against the classic ways, inside the VM.
 *
 * One line per comparison:
 *   BENCH <name> size=<bytes> morsel_us=<t> <baseline>_us=<t> ratio=<baseline/morsel>
 * Lines starting with '#' are details (samples, fill times, skips).
 *
 *   map_populated  a filled object; a fresh child process times
 *                  morsel:  open by name + mmap + MORSEL_IOC_MAP (all linked)
 *                  memfd:   mmap(MAP_SHARED | MAP_POPULATE) of the memfd
 *                  hugetlb: the same on a 2 MiB hugetlb memfd (if the
 *                           hugepages can be reserved)
 *   unmap          munmap of those same mappings, in the same children
 *   share          a second process gets a named 4 GiB object: open by name
 *                  + mmap + link, against opening /proc/PID/fd/N of the
 *                  memfd + mmap(MAP_POPULATE)
 *   map_flatness   morsel map time of the largest size over 1 GiB
 *   split          a filled, frozen morsel of 1 and 4 GiB: MORSEL_IOC_SPLIT
 *                  + close of the child, against
 *                  fork:  fork() of a process holding as much populated
 *                         private anonymous memory (4 KiB pages,
 *                         MADV_NOHUGEPAGE), until fork returns in the parent
 *                  memfd_private: mmap(MAP_PRIVATE | MAP_POPULATE,
 *                         PROT_READ | PROT_WRITE) of a filled memfd (the
 *                         kernel breaks COW of a writable private mapping
 *                         while populating: a full copy; a '#' line gives
 *                         the PROT_READ figure too)
 *   cow_write      the first store to 1, 64 and 4096 pages of a child of a
 *                  filled 64 MiB base (mapped, linked with MORSEL_IOC_MAP),
 *                  against the same stores in a fork child to its parent's
 *                  populated private anonymous memory (1 page gets 3x the
 *                  samples):
 *                  BENCH cow_write pages=N size=<bytes written> morsel_us=..
 *                        fork_us=.. ratio=..
 *                  and, for 1 page, an informational '#' line: the same
 *                  first store right after the same store to another
 *                  child (the fault path warm), against the same fork
 *                  figure: under TCG most of a lone first store is the
 *                  emulator's cold code and TLB (docs/gup.md, session 9);
 *                  and a second one with both sides equally cold: a 20 ms
 *                  sleep right before the timed store, in the fork child
 *                  as after the morsel child's map (docs/gup.md, session
 *                  11: a fork child's first store comes right after its
 *                  parent took the same copy-on-write path).  Each
 *                  series of samples (morsel, fork) starts after a 3 s
 *                  pause (settle(): the first series after a large
 *                  benchmark otherwise paid for the host's work left
 *                  from it)
 *
 * Objects are filled (not timed) with fallocate plus one byte per 4 KiB
 * page; each object is freed before the next is created.  Every figure is
 * the median of several runs, each in a new child process.
 *
 * Options: --sizes 1G,4G,8G  --share-size 4G  --reps N (slow baselines)
 *          --fast-reps N (morsel and hugetlb)  --no-hugetlb
 *          --split-sizes 1G,4G  --only NAME[,NAME] (map_populated, unmap,
 *          map_flatness (these three run together), share, split, cow_write)
 */
#include "libmorsel.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB	0x0004U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB	(21U << 26)
#endif

#define PAGE		4096ULL
#define HPAGE		(2ULL << 20)
#define MAX_REPS	64
#define MAX_SIZES	8

static int reps_slow = 3;	/* memfd: every run costs seconds in TCG */
static int reps_fast = 9;	/* morsel and hugetlb */
static int use_hugetlb = 1;

enum {
	ONLY_MAP = 1 << 0,	/* map_populated, unmap, hugetlb, map_flatness */
	ONLY_SHARE = 1 << 1,
	ONLY_SPLIT = 1 << 2,
	ONLY_COW = 1 << 3,
	ONLY_ALL = (1 << 4) - 1,
};
static unsigned int only = ONLY_ALL;

enum kind {
	K_MORSEL,	/* open(name) + mmap + MORSEL_IOC_MAP */
	K_POPULATE,	/* mmap(MAP_POPULATE) of an inherited fd */
	K_PROC_FD,	/* open(/proc/PPID/fd/N) + mmap(MAP_POPULATE) */
};

struct sample {
	double map_us;
	double unmap_us;
	int ok;
};

struct target {
	enum kind kind;
	const char *path;	/* K_MORSEL */
	int fd;			/* K_POPULATE, K_PROC_FD: the parent's fd */
	pid_t owner;		/* K_PROC_FD */
	uint64_t size;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
	printf("# ERROR %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void die_ret(const char *what, int neg_errno)
{
	errno = -neg_errno;
	die(what);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	double tmp[MAX_REPS];

	memcpy(tmp, v, sizeof(double) * n);
	qsort(tmp, n, sizeof(double), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static uint64_t meminfo_kb(const char *key)
{
	char line[256];
	size_t kl = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = strtoull(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static char pattern(uint64_t off)
{
	return (char)((off >> 12) * 31 + 7) | 1;
}

/* One byte per 4 KiB page: makes every page "filled" cheaply under TCG. */
static void touch_pages(char *p, uint64_t size)
{
	uint64_t off;

	for (off = 0; off < size; off += PAGE)
		p[off] = pattern(off);
}

static int check_pages(const char *p, uint64_t size)
{
	return p[0] == pattern(0) && p[size / 2] == pattern(size / 2) &&
	       p[size - PAGE] == pattern(size - PAGE);
}

/* Fill a morsel: fallocate (frames), link everything, one byte per page. */
static int morsel_filled(const char *path, uint64_t size, double *fill_us)
{
	double t0 = now_us();
	void *p;
	int fd, ret;

	unlink(path);
	fd = morsel_create(path, size, 0600);
	if (fd < 0)
		die_ret("morsel_create", fd);
	if (fallocate(fd, 0, 0, (off_t)size))
		die("fallocate morsel");
	ret = morsel_map(fd, size, PROT_READ | PROT_WRITE, MORSEL_MAP_EAGER,
			 &p);
	if (ret)
		die_ret("morsel_map (fill)", ret);
	touch_pages(p, size);
	morsel_unmap(p, size);
	*fill_us = now_us() - t0;
	return fd;
}

/* A memfd (4 KiB shmem, or 2 MiB hugetlb) filled the same way. */
static int memfd_filled(uint64_t size, int huge, double *fill_us)
{
	double t0 = now_us();
	char *p;
	int fd;

	fd = memfd_create(huge ? "bench-huge" : "bench",
			  huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0);
	if (fd < 0)
		die("memfd_create");
	if (ftruncate(fd, (off_t)size))
		die("ftruncate memfd");
	if (fallocate(fd, 0, 0, (off_t)size))
		die("fallocate memfd");
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED)
		die("mmap memfd (fill)");
	touch_pages(p, size);
	munmap(p, size);
	*fill_us = now_us() - t0;
	return fd;
}

/* The timed part, in the child. */
static struct sample child_run(const struct target *t)
{
	struct sample s = { 0, 0, 0 };
	char proc[64];
	double t0, t1;
	char *p;
	int fd = -1;

	t0 = now_us();
	switch (t->kind) {
	case K_MORSEL: {
		struct morsel_map mm;

		fd = open(t->path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return s;
		p = mmap(NULL, t->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 fd, 0);
		if (p == MAP_FAILED)
			return s;
		if (morsel_link_range(fd, p, t->size, 0, &mm))
			return s;
		break;
	}
	case K_PROC_FD:
		snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", (int)t->owner,
			 t->fd);
		fd = open(proc, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return s;
		/* fall through */
	case K_POPULATE:
		p = mmap(NULL, t->size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_POPULATE, fd >= 0 ? fd : t->fd, 0);
		if (p == MAP_FAILED)
			return s;
		break;
	default:
		return s;
	}
	t1 = now_us();
	s.map_us = t1 - t0;
	s.ok = check_pages(p, t->size);	/* no fault expected: not timed */
	t0 = now_us();
	munmap(p, t->size);
	t1 = now_us();
	s.unmap_us = t1 - t0;
	if (fd >= 0)
		close(fd);
	return s;
}

/* @n runs, each in a fresh child; medians into @map/@unmap. */
static void measure(const struct target *t, int n, double *map, double *unmap,
		    const char *label)
{
	double m[MAX_REPS], u[MAX_REPS];
	int i;

	if (n > MAX_REPS)
		n = MAX_REPS;
	for (i = 0; i < n; i++) {
		struct sample s;
		int pfd[2], status;
		pid_t pid;

		if (pipe(pfd))
			die("pipe");
		fflush(stdout);
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			close(pfd[0]);
			s = child_run(t);
			if (!s.ok)
				s.map_us = -errno;
			if (write(pfd[1], &s, sizeof(s)) != sizeof(s))
				_exit(2);
			_exit(0);
		}
		close(pfd[1]);
		if (read(pfd[0], &s, sizeof(s)) != sizeof(s))
			s.ok = 0;
		close(pfd[0]);
		waitpid(pid, &status, 0);
		if (!s.ok || !WIFEXITED(status) || WEXITSTATUS(status)) {
			errno = s.map_us < 0 ? (int)-s.map_us : EIO;
			die(label);
		}
		m[i] = s.map_us;
		u[i] = s.unmap_us;
	}
	*map = median(m, n);
	*unmap = median(u, n);
	printf("# %-28s map us:", label);
	for (i = 0; i < n; i++)
		printf(" %.1f", m[i]);
	printf("  unmap us:");
	for (i = 0; i < n; i++)
		printf(" %.1f", u[i]);
	printf("\n");
	fflush(stdout);
}

static void bench_line(const char *name, uint64_t size, double morsel_us,
		       const char *base, double base_us)
{
	printf("BENCH %s size=%llu morsel_us=%.1f %s_us=%.1f ratio=%.1f\n",
	       name, (unsigned long long)size, morsel_us, base, base_us,
	       base_us / (morsel_us > 0 ? morsel_us : 0.1));
	fflush(stdout);
}

static const char *gib(uint64_t size, char *buf, size_t len)
{
	return morsel_size_format(size, buf, len);
}

static int write_nr_hugepages(uint64_t n)
{
	char buf[32];
	int fd, len, ret = 0;

	fd = open("/proc/sys/vm/nr_hugepages", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)n);
	if (write(fd, buf, len) != len)
		ret = -errno;
	close(fd);
	return ret;
}

/* Reserve @need 2 MiB pages; returns how many the kernel gave. */
static uint64_t reserve_hugepages(uint64_t need)
{
	if (write_nr_hugepages(need))
		return 0;
	return meminfo_kb("HugePages_Free");	/* a count, not kB */
}

static void bench_hugetlb(uint64_t size, double morsel_map, double morsel_unmap)
{
	uint64_t need = size / HPAGE, got;
	struct target t = { K_POPULATE, NULL, -1, 0, size };
	double fill, map, unmap;
	char a[32], label[64];

	if (!use_hugetlb) {
		printf("# skipped hugetlb size=%llu: --no-hugetlb\n",
		       (unsigned long long)size);
		return;
	}
	got = reserve_hugepages(need);
	if (got < need) {
		printf("# skipped hugetlb size=%llu: reserved only %llu of %llu 2 MiB hugepages\n",
		       (unsigned long long)size, (unsigned long long)got,
		       (unsigned long long)need);
		write_nr_hugepages(0);
		return;
	}
	t.fd = memfd_filled(size, 1, &fill);
	printf("# hugetlb %s filled in %.1f s\n", gib(size, a, sizeof(a)),
	       fill / 1e6);
	snprintf(label, sizeof(label), "hugetlb %s", a);
	measure(&t, reps_fast, &map, &unmap, label);
	close(t.fd);
	write_nr_hugepages(0);
	bench_line("map_populated", size, morsel_map, "hugetlb", map);
	bench_line("unmap", size, morsel_unmap, "hugetlb", unmap);
}

static double morsel_map_at[MAX_SIZES], memfd_map_at[MAX_SIZES];

static int enough_memory(uint64_t size, const char *what)
{
	/* the object, plus page tables for a 4 KiB mapping, plus slack */
	uint64_t need_kb = (size + size / 256) / 1024 + 256 * 1024;
	uint64_t have_kb = meminfo_kb("MemAvailable");
	char a[32];

	if (have_kb >= need_kb)
		return 1;
	printf("# skipped %s %s: needs %llu MiB available, MemAvailable is %llu MiB\n",
	       gib(size, a, sizeof(a)), what,
	       (unsigned long long)(need_kb >> 10),
	       (unsigned long long)(have_kb >> 10));
	return 0;
}

static int bench_size(uint64_t size, int idx)
{
	const char *path = "bench-map";
	char full[4096], a[32], label[64];
	struct target t = { K_MORSEL, full, -1, 0, size };
	double fill, mmap_us, munmap_us, fmap, funmap;
	int fd;

	gib(size, a, sizeof(a));
	if (!enough_memory(size, "map_populated"))
		return 0;
	if (morsel_path(path, full, sizeof(full)))
		die("morsel_path");

	/* morsel */
	fd = morsel_filled(full, size, &fill);
	printf("# morsel %s filled in %.1f s\n", a, fill / 1e6);
	snprintf(label, sizeof(label), "morsel %s", a);
	measure(&t, reps_fast, &mmap_us, &munmap_us, label);
	unlink(full);
	close(fd);

	/* memfd, 4 KiB shmem pages */
	t.kind = K_POPULATE;
	t.fd = memfd_filled(size, 0, &fill);
	printf("# memfd %s filled in %.1f s\n", a, fill / 1e6);
	snprintf(label, sizeof(label), "memfd %s", a);
	measure(&t, size <= (1ULL << 30) ? reps_slow + 2 : reps_slow,
		&fmap, &funmap, label);
	close(t.fd);

	bench_line("map_populated", size, mmap_us, "memfd", fmap);
	bench_line("unmap", size, munmap_us, "memfd", funmap);
	morsel_map_at[idx] = mmap_us;
	memfd_map_at[idx] = fmap;

	bench_hugetlb(size, mmap_us, munmap_us);
	return 1;
}

static void bench_share(uint64_t size)
{
	char full[4096], a[32], label[64];
	struct target t = { K_MORSEL, full, -1, 0, size };
	double fill, m_map, m_unmap, f_map, f_unmap;
	int fd;

	gib(size, a, sizeof(a));
	if (!enough_memory(size, "share"))
		return;
	if (morsel_path("bench-share", full, sizeof(full)))
		die("morsel_path");
	fd = morsel_filled(full, size, &fill);
	printf("# share: morsel %s filled in %.1f s\n", a, fill / 1e6);
	snprintf(label, sizeof(label), "share morsel %s by name", a);
	measure(&t, reps_fast, &m_map, &m_unmap, label);
	unlink(full);
	close(fd);

	t.kind = K_PROC_FD;
	t.owner = getpid();
	t.fd = memfd_filled(size, 0, &fill);
	printf("# share: memfd %s filled in %.1f s\n", a, fill / 1e6);
	snprintf(label, sizeof(label), "share memfd %s /proc/fd", a);
	measure(&t, reps_slow, &f_map, &f_unmap, label);
	close(t.fd);

	bench_line("share", size, m_map, "memfd", f_map);
}

/* ------------------------------------------------------ copy-on-write */

static int morsel_freeze_fd(int fd)
{
	struct morsel_freeze f;

	memset(&f, 0, sizeof(f));
	f.argsz = sizeof(f);
	return ioctl(fd, MORSEL_IOC_FREEZE, &f);
}

/* MORSEL_IOC_SPLIT: the child's fd, or -1 with errno. */
static int morsel_split_fd(int fd)
{
	struct morsel_split sp;

	memset(&sp, 0, sizeof(sp));
	sp.argsz = sizeof(sp);
	sp.flags = MORSEL_SPLIT_CLOEXEC;
	if (ioctl(fd, MORSEL_IOC_SPLIT, &sp))
		return -1;
	return sp.fd;
}

/* A filled, frozen morsel named @name (unlinked by the caller). */
static int morsel_frozen(const char *name, uint64_t size, char *full,
			 size_t len)
{
	double fill;
	char a[32];
	int fd;

	if (morsel_path(name, full, len))
		die("morsel_path");
	fd = morsel_filled(full, size, &fill);
	if (morsel_freeze_fd(fd))
		die("MORSEL_IOC_FREEZE (is this morsel.ko new enough?)");
	printf("# frozen morsel %s filled in %.1f s\n", gib(size, a, sizeof(a)),
	       fill / 1e6);
	return fd;
}

/* Private anonymous memory of @size, 4 KiB pages, every page written. */
static char *anon_filled(uint64_t size, double *fill_us)
{
	double t0 = now_us();
	char *p;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap anonymous");
	madvise(p, size, MADV_NOHUGEPAGE);	/* 4 KiB pages, like a morsel */
	touch_pages(p, size);
	*fill_us = now_us() - t0;
	return p;
}

/*
 * Run @fn(@arg, out, n) in a child process (so that its memory goes away
 * with it) and read back @n doubles.
 */
static void in_child(void (*fn)(void *, double *, int), void *arg, double *out,
		     int n, const char *label)
{
	int pfd[2], status;
	ssize_t want = (ssize_t)(sizeof(double) * n);
	pid_t pid;

	if (pipe(pfd))
		die("pipe");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(pfd[0]);
		fn(arg, out, n);
		if (write(pfd[1], out, want) != want)
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], out, want) != want)
		errno = EIO;
	else
		errno = 0;
	close(pfd[0]);
	waitpid(pid, &status, 0);
	if (errno || !WIFEXITED(status) || WEXITSTATUS(status))
		die(label);
}

static void print_samples(const char *label, const double *v, int n)
{
	printf("# %-28s us:", label);
	for (int i = 0; i < n; i++)
		printf(" %.1f", v[i]);
	printf("\n");
	fflush(stdout);
}

/* In a child: populate @size of anonymous memory, then time n forks. */
static void fork_child(void *arg, double *out, int n)
{
	uint64_t size = *(uint64_t *)arg;
	double fill;
	char *p = anon_filled(size, &fill);

	printf("# anonymous %llu MiB filled in %.1f s\n",
	       (unsigned long long)(size >> 20), fill / 1e6);
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		double t0 = now_us(), t1;
		pid_t pid = fork();

		if (pid < 0)
			_exit(3);
		if (pid == 0)
			_exit(0);
		t1 = now_us();
		waitpid(pid, NULL, 0);
		out[i] = t1 - t0;
	}
	munmap(p, size);
}

struct private_arg {
	int fd;
	uint64_t size;
	int prot;
};

/* In a child: time n mmap(MAP_PRIVATE | MAP_POPULATE) of a memfd. */
static void private_child(void *arg, double *out, int n)
{
	struct private_arg *a = arg;

	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		char *p = mmap(NULL, a->size, a->prot,
			       MAP_PRIVATE | MAP_POPULATE, a->fd, 0);

		out[i] = now_us() - t0;
		if (p == MAP_FAILED || !check_pages(p, a->size))
			_exit(4);
		munmap(p, a->size);
	}
}

static void bench_split(uint64_t size)
{
	double m[MAX_REPS], f[MAX_REPS], fill, mus, fus, pus, rus;
	int n = reps_fast, ns = reps_slow, fd, c;
	struct private_arg pa;
	struct morsel_stat st;
	char full[4096], a[32], label[64];

	gib(size, a, sizeof(a));
	if (!enough_memory(size, "split"))
		return;
	fd = morsel_frozen("bench-split", size, full, sizeof(full));
	for (int i = 0; i < n; i++) {
		double t0 = now_us();

		c = morsel_split_fd(fd);
		if (c < 0)
			die("MORSEL_IOC_SPLIT");
		if (i == 0 && (morsel_stat(c, &st) || st.size != size ||
			       st.borrowed_pages != size / PAGE))
			die("split child does not borrow every page");
		close(c);
		m[i] = now_us() - t0;
	}
	unlink(full);
	close(fd);
	snprintf(label, sizeof(label), "split morsel %s", a);
	print_samples(label, m, n);
	mus = median(m, n);

	/* fork() of a process holding as much private memory */
	in_child(fork_child, &size, f, n, "fork baseline");
	snprintf(label, sizeof(label), "split fork %s", a);
	print_samples(label, f, n);
	fus = median(f, n);
	bench_line("split", size, mus, "fork", fus);

	/* mmap(MAP_PRIVATE | MAP_POPULATE) of a filled memfd */
	if (!enough_memory(2 * size, "split memfd_private (memfd + copy)"))
		return;
	pa.fd = memfd_filled(size, 0, &fill);
	pa.size = size;
	printf("# memfd %s filled in %.1f s\n", a, fill / 1e6);
	pa.prot = PROT_READ;
	in_child(private_child, &pa, f, ns, "memfd private read-only");
	snprintf(label, sizeof(label), "split memfd ro %s", a);
	print_samples(label, f, ns);
	rus = median(f, ns);
	pa.prot = PROT_READ | PROT_WRITE;
	in_child(private_child, &pa, f, ns, "memfd private");
	snprintf(label, sizeof(label), "split memfd rw %s", a);
	print_samples(label, f, ns);
	pus = median(f, ns);
	close(pa.fd);
	printf("# split size=%llu memfd_private PROT_READ only (no copy): %.1f us\n",
	       (unsigned long long)size, rus);
	bench_line("split", size, mus, "memfd_private", pus);
}

#define COW_BASE	(64ULL << 20)

struct cow_arg {
	char *mem;		/* the parent's private memory */
	uint64_t pages;
	unsigned int sleep_us;	/* before the timed stores */
};

#define COLD_SLEEP_US	20000

/* In a fork child: time the first store to @pages pages of @mem. */
static void cow_fork_child(void *arg, double *out, int n)
{
	struct cow_arg *a = arg;
	volatile char *p = a->mem;
	double t0;

	(void)n;
	if (a->sleep_us)
		usleep(a->sleep_us);
	t0 = now_us();
	for (uint64_t i = 0; i < a->pages; i++)
		p[i * PAGE + 8] = (char)(i | 1);
	out[0] = now_us() - t0;
}

/* A new child of @fd, mapped and linked; *@v its mapping.  The child's fd. */
static int cow_child(int fd, void **v)
{
	int c = morsel_split_fd(fd), ret;

	if (c < 0)
		die("MORSEL_IOC_SPLIT");
	ret = morsel_map(c, COW_BASE, PROT_READ | PROT_WRITE, MORSEL_MAP_EAGER, v);
	if (ret)
		die_ret("morsel_map (child)", ret);
	return c;
}

/*
 * The first store to one page of a new child, made right after the same
 * first store to another child: the fault path's code and data warm.
 */
static double cow_store_warm(int fd)
{
	void *a, *b;
	int ca = cow_child(fd, &a), cb = cow_child(fd, &b);
	double t0, t;

	((volatile char *)a)[8] = 1;
	t0 = now_us();
	((volatile char *)b)[8] = 1;
	t = now_us() - t0;
	morsel_unmap(a, COW_BASE);
	morsel_unmap(b, COW_BASE);
	close(ca);
	close(cb);
	return t;
}

/*
 * The first store to one page of a new child after a sleep of
 * COLD_SLEEP_US: as cold as a fork child's store after the same sleep.
 */
static double cow_store_cold(int fd)
{
	void *a;
	int ca = cow_child(fd, &a);
	double t0, t;

	usleep(COLD_SLEEP_US);
	t0 = now_us();
	((volatile char *)a)[8] = 1;
	t = now_us() - t0;
	morsel_unmap(a, COW_BASE);
	close(ca);
	return t;
}

/*
 * Wait before a series of single-fault samples for what earlier work left
 * running outside the guest.  Right after a benchmark that touched
 * gigabytes, with the guest idle (/proc/stat), both sides' first stores
 * ran about twice as slow for a few seconds, so whichever series came
 * first paid for the one before: cow_write right after map_populated of
 * 1 GiB gave morsel 126 us and fork 73 us, after a 3 s pause 49 and 39 us
 * (session 12, docs/gup.md).  Each series now starts after the same pause.
 */
#define SETTLE_S	3

static void settle(void)
{
	sleep(SETTLE_S);
}

/*
 * The 1-page figure is a single fault, the noisiest of the three: it gets
 * three times the samples.  Each side runs its samples back to back (a
 * fork sample sleeps in waitpid(), which would leave the next morsel
 * sample colder than its own kind leaves it).
 */
static void bench_cow_write(void)
{
	static const uint64_t counts[] = { 1, 64, 4096 };
	double m[MAX_REPS], f[MAX_REPS], w[MAX_REPS], fill;
	double cm[MAX_REPS], cf[MAX_REPS];
	int fd;
	char full[4096], label[64];
	char *anon;

	if (!enough_memory(2 * COW_BASE, "cow_write"))
		return;
	fd = morsel_frozen("bench-cow", COW_BASE, full, sizeof(full));
	anon = anon_filled(COW_BASE, &fill);
	printf("# anonymous %llu MiB filled in %.1f s\n",
	       (unsigned long long)(COW_BASE >> 20), fill / 1e6);
	for (unsigned k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		uint64_t pages = counts[k];
		struct cow_arg ca = { anon, pages, 0 };
		int n = pages == 1 ? 3 * reps_fast : reps_fast;

		if (n > MAX_REPS)
			n = MAX_REPS;
		settle();
		for (int i = 0; i < n; i++) {
			struct morsel_stat st;
			volatile char *p;
			void *v;
			double t0;
			int c = morsel_split_fd(fd), ret;

			if (c < 0)
				die("MORSEL_IOC_SPLIT");
			ret = morsel_map(c, COW_BASE, PROT_READ | PROT_WRITE,
					 MORSEL_MAP_EAGER, &v);
			if (ret)
				die_ret("morsel_map (child)", ret);
			p = v;
			t0 = now_us();
			for (uint64_t j = 0; j < pages; j++)
				p[j * PAGE + 8] = (char)(j | 1);
			m[i] = now_us() - t0;
			if (morsel_stat(c, &st) || st.data_pages != pages)
				die("cow_write: child did not copy each page once");
			morsel_unmap(v, COW_BASE);
			close(c);
		}
		if (pages == 1) {
			struct cow_arg cold = { anon, 1, COLD_SLEEP_US };

			for (int i = 0; i < n; i++)
				w[i] = cow_store_warm(fd);
			for (int i = 0; i < reps_fast; i++)
				cm[i] = cow_store_cold(fd);
			for (int i = 0; i < reps_fast; i++)
				in_child(cow_fork_child, &cold, &cf[i], 1,
					 "cow_write fork (cold)");
		}
		settle();
		for (int i = 0; i < n; i++)
			in_child(cow_fork_child, &ca, &f[i], 1, "cow_write fork");
		snprintf(label, sizeof(label), "cow_write morsel %llu pages",
			 (unsigned long long)pages);
		print_samples(label, m, n);
		snprintf(label, sizeof(label), "cow_write fork %llu pages",
			 (unsigned long long)pages);
		print_samples(label, f, n);
		if (pages == 1) {
			print_samples("cow_write morsel 1 page, path warm", w, n);
			printf("# cow_write pages=1 warm (the same store to another child just before): morsel_us=%.1f fork_us=%.1f ratio=%.2f\n",
			       median(w, n), median(f, n),
			       median(f, n) / (median(w, n) > 0 ? median(w, n) : 0.1));
			print_samples("cow_write morsel 1 page, after a sleep", cm, reps_fast);
			print_samples("cow_write fork 1 page, after a sleep", cf, reps_fast);
			printf("# cow_write pages=1 equally cold (both after a %d ms sleep): morsel_us=%.1f fork_us=%.1f ratio=%.2f\n",
			       COLD_SLEEP_US / 1000, median(cm, reps_fast),
			       median(cf, reps_fast),
			       median(cf, reps_fast) /
			       (median(cm, reps_fast) > 0 ? median(cm, reps_fast) : 0.1));
		}
		printf("BENCH cow_write pages=%llu size=%llu morsel_us=%.1f fork_us=%.1f ratio=%.2f\n",
		       (unsigned long long)pages, (unsigned long long)(pages * PAGE),
		       median(m, n), median(f, n),
		       median(f, n) / (median(m, n) > 0 ? median(m, n) : 0.1));
		fflush(stdout);
	}
	munmap(anon, COW_BASE);
	unlink(full);
	close(fd);
}

static int parse_only(const char *s)
{
	char buf[256], *tok, *save = NULL;
	unsigned int mask = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "map_populated") || !strcmp(tok, "unmap") ||
		    !strcmp(tok, "map_flatness") || !strcmp(tok, "map"))
			mask |= ONLY_MAP;
		else if (!strcmp(tok, "share"))
			mask |= ONLY_SHARE;
		else if (!strcmp(tok, "split"))
			mask |= ONLY_SPLIT;
		else if (!strcmp(tok, "cow_write"))
			mask |= ONLY_COW;
		else
			return -1;
	}
	if (!mask)
		return -1;
	only = mask;
	return 0;
}

static int parse_sizes(const char *s, uint64_t *sizes)
{
	char buf[256], *tok, *save = NULL;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok && n < MAX_SIZES;
	     tok = strtok_r(NULL, ",", &save)) {
		if (morsel_size_parse(tok, &sizes[n]) || !sizes[n] ||
		    sizes[n] % HPAGE)
			return -1;
		n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	uint64_t sizes[MAX_SIZES] = { 1ULL << 30, 4ULL << 30, 8ULL << 30 };
	uint64_t share = 4ULL << 30;
	uint64_t split_sizes[MAX_SIZES] = { 1ULL << 30, 4ULL << 30 };
	int nsizes = 3, nsplit = 2, i, done[MAX_SIZES] = { 0 }, last = -1;
	double t_start = now_us();

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--sizes") && v) {
			nsizes = parse_sizes(v, sizes);
			i++;
		} else if (!strcmp(a, "--share-size") && v) {
			if (morsel_size_parse(v, &share))
				nsizes = -1;
			i++;
		} else if (!strcmp(a, "--reps") && v) {
			reps_slow = atoi(v);
			i++;
		} else if (!strcmp(a, "--fast-reps") && v) {
			reps_fast = atoi(v);
			i++;
		} else if (!strcmp(a, "--no-hugetlb")) {
			use_hugetlb = 0;
		} else if (!strcmp(a, "--split-sizes") && v) {
			nsplit = parse_sizes(v, split_sizes);
			if (nsplit < 1)
				nsizes = -1;
			i++;
		} else if (!strcmp(a, "--only") && v) {
			if (parse_only(v))
				nsizes = -1;
			i++;
		} else {
			nsizes = -1;
		}
		if (nsizes < 1 || reps_slow < 1 || reps_fast < 1 ||
		    reps_slow > MAX_REPS - 2 || reps_fast > MAX_REPS) {
			fprintf(stderr, "usage: bench [--sizes 1G,4G,8G] [--share-size 4G] [--reps N] [--fast-reps N] [--no-hugetlb]\n"
				"             [--split-sizes 1G,4G] [--only map_populated,unmap,map_flatness,share,split,cow_write]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	printf("# bench: MemAvailable %llu MiB, %ld CPUs, %d/%d repetitions (memfd/morsel)\n",
	       (unsigned long long)(meminfo_kb("MemAvailable") >> 10),
	       sysconf(_SC_NPROCESSORS_ONLN), reps_slow, reps_fast);
	fflush(stdout);

	for (i = 0; i < nsizes && (only & ONLY_MAP); i++) {
		done[i] = bench_size(sizes[i], i);
		if (done[i])
			last = i;
	}
	if (!(only & ONLY_MAP)) {
		/* not asked for */
	} else if (done[0] && last > 0) {
		char a[32], b[32], name[96];

		gib(sizes[last], a, sizeof(a));
		gib(sizes[0], b, sizeof(b));
		for (char *c = a; *c; c++)
			*c = (char)(*c | 0x20);	/* "8g", "1g" */
		for (char *c = b; *c; c++)
			*c = (char)(*c | 0x20);
		snprintf(name, sizeof(name), "morsel_%s_over_%s", a, b);
		printf("BENCH map_flatness %s=%.2f\n", name,
		       morsel_map_at[last] / morsel_map_at[0]);
		printf("# for contrast memfd_%s_over_%s=%.2f\n", a, b,
		       memfd_map_at[last] / memfd_map_at[0]);
	} else {
		printf("# skipped map_flatness: needs the first and a larger size\n");
	}
	if (only & ONLY_SHARE)
		bench_share(share);
	for (i = 0; i < nsplit && (only & ONLY_SPLIT); i++)
		bench_split(split_sizes[i]);
	if (only & ONLY_COW)
		bench_cow_write();
	printf("# bench done in %.0f s\n", (now_us() - t_start) / 1e6);
	return 0;
}
