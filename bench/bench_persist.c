#define _GNU_SOURCE
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bench_persist: saving and loading morsels (issue 4), inside the VM, on a
 * real disk (vm/run --disk: ext4 on virtio-blk at /mnt/disk).
 *
 * One line per comparison, as bench.c:
 *   BENCH <name> size=<bytes> data=<bytes> morsel_us=<t> <baseline>_us=<t> ratio=<baseline/morsel>
 *
 *   save      morsel_save() of a 1 GiB dense and a 64 GiB sparse (10 MiB
 *             of data) morsel: scan + clean, write, fsync, rename, fsync
 *             of the directory; against
 *               dd:  GNU dd if=/dev/zero bs=1M conv=fsync of as many bytes
 *                    as the image holds (the disk's bandwidth limit)
 *               cp:  GNU cp --sparse=always of a memfd holding the same
 *                    data (same size, same holes), then fsync of the copy
 *   load      morsel_load() of that image into a new morsel, page cache
 *             dropped first; against dd of the dd file to /dev/null and
 *             cp --sparse=always of the cp file into a new memfd, both
 *             from a dropped cache
 *   save_incremental  1 GiB dense, 1 % of its pages (random) written since
 *             the last save: incremental save against a full save (at
 *             least 5 runs: an increment is short, its median noisy)
 *
 * GNU cp and dd come from the host (scripts/bench.sh puts them and their
 * libraries in /test/files/gnu and runs them through the dynamic loader:
 * the guest has only busybox).  Every figure is the median of --reps runs.
 */
#include "libmorsel.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE	4096ULL
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)

extern char **environ;

static const char *dir = "/mnt/disk";
static const char *gnu = "/test/files/gnu";
static int reps = 3;
static const char *only;	/* --only dense|sparse|incremental */

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_persist: %s: %s\n", what, strerror(err));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static void drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	sync();
	if (fd < 0 || write(fd, "3\n", 2) != 2)
		die("drop_caches", errno);
	close(fd);
}

/* Run a GNU tool from @gnu through its loader; returns the time in us. */
static double run_gnu(const char *tool, const char *const *args)
{
	char loader[256], libs[256], bin[256];
	const char *argv[16];
	double t0;
	pid_t pid;
	int i = 0, st;

	snprintf(loader, sizeof(loader), "%s/ld-linux-x86-64.so.2", gnu);
	snprintf(libs, sizeof(libs), "%s/lib", gnu);
	snprintf(bin, sizeof(bin), "%s/%s", gnu, tool);
	argv[i++] = loader;
	argv[i++] = "--library-path";
	argv[i++] = libs;
	argv[i++] = bin;
	while (*args && i < 15)
		argv[i++] = *args++;
	argv[i] = NULL;
	t0 = now_us();
	if (posix_spawn(&pid, loader, NULL, NULL, (char **)argv, environ))
		die("posix_spawn", errno);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		die(tool, EIO);
	return now_us() - t0;
}

static void fsync_path(const char *p)
{
	int fd = open(p, O_RDONLY);

	if (fd < 0 || fsync(fd))
		die(p, errno);
	close(fd);
}

/* Page @pg's contents: never all zero, different per page. */
static void fill_page(char *p, uint64_t pg)
{
	uint64_t i, v = pg * 0x9e3779b97f4a7c15ull + 1;

	for (i = 0; i < PAGE; i += 8) {
		v ^= v << 13;
		v ^= v >> 7;
		v ^= v << 17;
		memcpy(p + i, &v, 8);
	}
}

/* The data pages of a case: all of them, or 2560 spread over 64 GiB. */
static uint64_t nth_page(uint64_t size, int dense, uint64_t i)
{
	return dense ? i : i * (size / PAGE / 2560) + (i * 7 % 512);
}

static uint64_t nr_pages(uint64_t size, int dense)
{
	return dense ? size / PAGE : 2560;
}

static void fill(int fd, uint64_t size, int dense)
{
	static char buf[PAGE];
	uint64_t i, n = nr_pages(size, dense);

	if (ftruncate(fd, (off_t)size))
		die("ftruncate", errno);
	for (i = 0; i < n; i++) {
		uint64_t pg = nth_page(size, dense, i);

		fill_page(buf, pg);
		if (pwrite(fd, buf, PAGE, (off_t)(pg * PAGE)) != (ssize_t)PAGE)
			die("fill", errno);
	}
}

static void line(const char *name, uint64_t size, uint64_t data,
		 double morsel, const char *base, double base_us)
{
	printf("BENCH %s size=%llu data=%llu morsel_us=%.0f %s_us=%.0f "
	       "ratio=%.2f\n", name, (unsigned long long)size,
	       (unsigned long long)data, morsel, base, base_us,
	       base_us / morsel);
	fflush(stdout);
}

static void bench_case(uint64_t size, int dense)
{
	const char *what = dense ? "dense" : "sparse";
	char img[256], ddf[256], cpf[256], memfd_path[64], count[64];
	char ofarg[300], ifarg[300];
	double save[16], load[16], dd_w[16], dd_r[16], cp_w[16], cp_r[16];
	uint64_t data = nr_pages(size, dense) * PAGE;
	struct mimg_header h;
	struct mimg_error err;
	int fd, mfd, back, r, ret;

	snprintf(img, sizeof(img), "%s/%s.img", dir, what);
	snprintf(ddf, sizeof(ddf), "%s/%s.dd", dir, what);
	snprintf(cpf, sizeof(cpf), "%s/%s.cp", dir, what);
	fd = morsel_create("bp-obj", 0, 0600);
	if (fd < 0)
		die("morsel_create", -fd);
	fill(fd, size, dense);
	mfd = memfd_create("bp", 0);
	if (mfd < 0)
		die("memfd_create", errno);
	fill(mfd, size, dense);
	snprintf(memfd_path, sizeof(memfd_path), "/proc/%d/fd/%d", getpid(),
		 mfd);

	for (r = 0; r < reps; r++) {
		const char *imgs[] = { img };
		struct morsel_load_opts lo = { .base_fd = -1 };
		double t0;

		t0 = now_us();
		ret = morsel_save(fd, img, NULL, &h, &err);
		save[r] = now_us() - t0;
		if (ret)
			die(err.msg, -ret);

		/* dd: as many bytes as the image, through the page cache. */
		snprintf(count, sizeof(count), "count=%llu",
			 (unsigned long long)((h.data_offset + h.data_pages *
					       PAGE + MiB - 1) / MiB));
		snprintf(ofarg, sizeof(ofarg), "of=%s", ddf);
		{
			const char *a[] = { "if=/dev/zero", ofarg, "bs=1M",
					    count, "conv=fsync", "status=none",
					    NULL };

			dd_w[r] = run_gnu("dd", a);
		}
		{
			const char *a[] = { "--sparse=always", memfd_path, cpf,
					    NULL };
			double t1 = now_us();

			run_gnu("cp", a);
			fsync_path(cpf);
			cp_w[r] = now_us() - t1;
		}

		drop_caches();
		unlink("/dev/morsel/bp-back");
		t0 = now_us();
		back = morsel_load(imgs, 1, "bp-back", &lo, NULL, &err);
		load[r] = now_us() - t0;
		if (back < 0)
			die(err.msg, -back);
		close(back);
		unlink("/dev/morsel/bp-back");

		drop_caches();
		snprintf(ifarg, sizeof(ifarg), "if=%s", ddf);
		{
			const char *a[] = { ifarg, "of=/dev/null", "bs=1M",
					    "status=none", NULL };

			dd_r[r] = run_gnu("dd", a);
		}
		drop_caches();
		{
			int dst = memfd_create("bp-back", 0);
			char dst_path[64];
			const char *a[] = { "--sparse=always", cpf, dst_path,
					    NULL };

			snprintf(dst_path, sizeof(dst_path), "/proc/%d/fd/%d",
				 getpid(), dst);
			cp_r[r] = run_gnu("cp", a);
			close(dst);
		}
	}
	printf("# %s %llu bytes, %llu data: image %llu bytes\n", what,
	       (unsigned long long)size, (unsigned long long)data,
	       (unsigned long long)(h.data_offset + h.data_pages * PAGE));
	{
		char name[32];
		double s = median(save, reps), l = median(load, reps);

		snprintf(name, sizeof(name), "save_%s", what);
		line(name, size, data, s, "dd", median(dd_w, reps));
		line(name, size, data, s, "cp_sparse", median(cp_w, reps));
		snprintf(name, sizeof(name), "load_%s", what);
		line(name, size, data, l, "dd", median(dd_r, reps));
		line(name, size, data, l, "cp_sparse", median(cp_r, reps));
	}
	unlink(img);
	unlink(ddf);
	unlink(cpf);
	close(mfd);
	close(fd);
	unlink("/dev/morsel/bp-obj");
}

static void bench_incremental(void)
{
	const uint64_t size = 1 * GiB, pages = size / PAGE;
	double full[16], inc[16];
	char img[256], incimg[256];
	struct morsel_save_opts o = { .base_fd = -1 };
	struct mimg_header h;
	struct mimg_error err;
	uint64_t i, stored = 0;
	unsigned char *p;
	unsigned int seed = 1;
	int fd, r, ret, ireps = reps < 5 ? 5 : reps;

	snprintf(img, sizeof(img), "%s/inc-full.img", dir);
	snprintf(incimg, sizeof(incimg), "%s/inc-1.img", dir);
	fd = morsel_create("bp-inc", 0, 0600);
	if (fd < 0)
		die("morsel_create", -fd);
	fill(fd, size, 1);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap", errno);
	o.parent = img;
	/* An increment takes ~50 ms: more runs for a stable median. */
	for (r = 0; r < ireps; r++) {
		double t0 = now_us();

		ret = morsel_save(fd, img, NULL, &h, &err);
		full[r] = now_us() - t0;
		if (ret)
			die(err.msg, -ret);
		for (i = 0; i < pages / 100; i++)
			p[(rand_r(&seed) % pages) * PAGE + 8]++;
		t0 = now_us();
		ret = morsel_save(fd, incimg, &o, &h, &err);
		inc[r] = now_us() - t0;
		if (ret)
			die(err.msg, -ret);
		stored = h.data_pages;
	}
	printf("# save_incremental: %llu pages stored of %llu written\n",
	       (unsigned long long)stored, (unsigned long long)(pages / 100));
	printf("BENCH save_incremental size=%llu data=%llu morsel_us=%.0f "
	       "full_save_us=%.0f ratio=%.2f\n", (unsigned long long)size,
	       (unsigned long long)(stored * PAGE), median(inc, ireps),
	       median(full, ireps), median(full, ireps) / median(inc, ireps));
	munmap(p, size);
	unlink(img);
	unlink(incimg);
	close(fd);
	unlink("/dev/morsel/bp-inc");
}

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--gnu") && i + 1 < argc)
			gnu = argv[++i];
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: bench_persist [--reps N] "
				"[--dir DIR] [--gnu DIR] "
				"[--only dense|sparse|incremental]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > 16)
		reps = 3;
	setenv("MORSEL_DIR", "/dev/morsel", 0);
	if (!only || !strcmp(only, "dense"))
		bench_case(1 * GiB, 1);
	if (!only || !strcmp(only, "sparse"))
		bench_case(64 * GiB, 0);
	if (!only || !strcmp(only, "incremental"))
		bench_incremental();
	return 0;
}
