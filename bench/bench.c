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
 *
 * Objects are filled (not timed) with fallocate plus one byte per 4 KiB
 * page; each object is freed before the next is created.  Every figure is
 * the median of several runs, each in a new child process.
 *
 * Options: --sizes 1G,4G,8G  --share-size 4G  --reps N (slow baselines)
 *          --fast-reps N (morsel and hugetlb)  --no-hugetlb
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
	int nsizes = 3, i, done[MAX_SIZES] = { 0 }, last = -1;
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
		} else {
			nsizes = -1;
		}
		if (nsizes < 1 || reps_slow < 1 || reps_fast < 1 ||
		    reps_slow > MAX_REPS - 2 || reps_fast > MAX_REPS) {
			fprintf(stderr, "usage: bench [--sizes 1G,4G,8G] [--share-size 4G] [--reps N] [--fast-reps N] [--no-hugetlb]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	printf("# bench: MemAvailable %llu MiB, %ld CPUs, %d/%d repetitions (memfd/morsel)\n",
	       (unsigned long long)(meminfo_kb("MemAvailable") >> 10),
	       sysconf(_SC_NPROCESSORS_ONLN), reps_slow, reps_fast);
	fflush(stdout);

	for (i = 0; i < nsizes; i++) {
		done[i] = bench_size(sizes[i], i);
		if (done[i])
			last = i;
	}
	if (done[0] && last > 0) {
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
	bench_share(share);
	printf("# bench done in %.0f s\n", (now_us() - t_start) / 1e6);
	return 0;
}
