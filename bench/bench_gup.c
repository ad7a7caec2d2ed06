#define _GNU_SOURCE
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bench_gup: morsel memory used by the rest of the kernel (issue 12),
 * inside the VM, with an ext4 disk at /mnt/disk (vm/run --disk).  One line
 * per comparison, as bench.c:
 *   BENCH <name> size=<bytes> morsel_us=<t> <baseline>_us=<t> ratio=<baseline/morsel>
 * (ratio above 1: morsel faster; the targets are at least 0.9).
 *
 *   futex_pingpong  two processes hand a process-shared mutex back and
 *                   forth (condition variable on a turn word: every
 *                   handoff is a FUTEX_WAKE and a FUTEX_WAIT), 20000
 *                   handoffs, the objects in a morsel vs in a memfd
 *   odirect_write   1 GiB written with O_DIRECT from morsel memory vs
 *                   memfd memory to a file on the disk (8 MiB requests)
 *   odirect_read    1 GiB read with O_DIRECT from that file into morsel
 *                   memory vs memfd memory
 *   sqlite_insert   20000 rows of 200 bytes in transactions of 500, WAL,
 *                   into a database on morselfs vs on tmpfs
 *   sqlite_query    400 range queries (sum over 1000 rows by index) on it
 *
 * Every figure is the median of --reps runs (default 5), morsel and
 * baseline alternating.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define MAXREPS	15

static int reps = 5;
static const char *only;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_gup: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void report(const char *name, unsigned long long size, double *m,
		   double *b, const char *base)
{
	double mm = median(m, reps), bb = median(b, reps);

	printf("BENCH %s size=%llu morsel_us=%.0f %s_us=%.0f ratio=%.2f\n",
	       name, size, mm, base, bb, bb / mm);
	fflush(stdout);
}

/* A shared file of @size: the morsel, or a memfd. */
static int shared_file(int morsel, unsigned long long size)
{
	int fd = morsel ? open("/dev/morsel/bench_gup",
			       O_RDWR | O_CREAT | O_TRUNC, 0600) :
			  memfd_create("bench_gup", 0);

	if (fd < 0 || ftruncate(fd, (off_t)size))
		die("shared file");
	if (morsel)
		unlink("/dev/morsel/bench_gup");
	return fd;
}

/* ------------------------------------------------------------ futexes */

#define HANDOFFS 20000

struct pingpong {
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	long turn;
};

static void pingpong_side(struct pingpong *s, int me)
{
	long i;

	for (i = 0; i < HANDOFFS / 2; i++) {
		pthread_mutex_lock(&s->mutex);
		while ((s->turn & 1) != me)
			pthread_cond_wait(&s->cond, &s->mutex);
		s->turn++;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->mutex);
	}
}

static double futex_pingpong(int morsel)
{
	int fd = shared_file(morsel, 2 * MiB), st;
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	struct pingpong *s;
	double t0, t;
	pid_t pid;

	s = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s == MAP_FAILED)
		die("mmap");
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&s->mutex, &ma);
	pthread_cond_init(&s->cond, &ca);
	s->turn = 0;
	t0 = now_us();
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		pingpong_side(s, 1);
		_exit(0);
	}
	pingpong_side(s, 0);
	waitpid(pid, &st, 0);
	t = now_us() - t0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) || s->turn != HANDOFFS) {
		fprintf(stderr, "bench_gup: pingpong went wrong (%ld)\n", s->turn);
		exit(1);
	}
	munmap(s, 2 * MiB);
	close(fd);
	return t;
}

/* ------------------------------------------------------------ O_DIRECT */

#define ODSIZE	GiB
#define ODREQ	(8 * MiB)
#define ODFILE	"/mnt/disk/bench_gup.dat"

static double odirect(int morsel, int write_file)
{
	int fd = shared_file(morsel, ODSIZE), ffd;
	unsigned long long off;
	unsigned char *p;
	double t0, t;

	p = mmap(NULL, ODSIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		 fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	for (off = 0; off < ODSIZE; off += 4096)
		p[off] = (unsigned char)(off >> 12);
	ffd = open(ODFILE, (write_file ? O_WRONLY | O_CREAT : O_RDONLY) | O_DIRECT,
		   0600);
	if (ffd < 0)
		die(ODFILE);
	t0 = now_us();
	for (off = 0; off < ODSIZE; off += ODREQ) {
		ssize_t n = write_file ? pwrite(ffd, p + off, ODREQ, (off_t)off) :
					 pread(ffd, p + off, ODREQ, (off_t)off);

		if (n != (ssize_t)ODREQ)
			die(write_file ? "O_DIRECT write" : "O_DIRECT read");
	}
	if (write_file && fdatasync(ffd))
		die("fdatasync");
	t = now_us() - t0;
	close(ffd);
	munmap(p, ODSIZE);
	close(fd);
	return t;
}

/* ------------------------------------------------------------- SQLite */

#define SQROWS	20000

static void sq(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "bench_gup: sqlite: %s: %s\n", sql, msg);
		exit(1);
	}
}

/* Insert (returns its time); leaves the database for the query. */
static double sqlite_insert(const char *path)
{
	char blob[200] = { 0 };
	sqlite3_stmt *st;
	sqlite3 *db;
	double t0;
	int i;

	unlink(path);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die(path);
	sq(db, "PRAGMA journal_mode=WAL");
	sq(db, "CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER, b BLOB)");
	sq(db, "CREATE INDEX tv ON t(v)");
	sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?, ?, ?)", -1, &st, NULL);
	t0 = now_us();
	for (i = 0; i < SQROWS; i++) {
		if (i % 500 == 0)
			sq(db, "BEGIN");
		sqlite3_bind_int(st, 1, i);
		sqlite3_bind_int(st, 2, (i * 7919) % SQROWS);
		sqlite3_bind_blob(st, 3, blob, sizeof(blob), SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			die("insert");
		sqlite3_reset(st);
		if (i % 500 == 499)
			sq(db, "COMMIT");
	}
	t0 = now_us() - t0;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return t0;
}

static double sqlite_query(const char *path)
{
	sqlite3_stmt *st;
	long long sum = 0;
	sqlite3 *db;
	double t0;
	int i;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		die(path);
	sqlite3_prepare_v2(db, "SELECT sum(k) FROM t WHERE v BETWEEN ? AND ?",
			   -1, &st, NULL);
	t0 = now_us();
	for (i = 0; i < 400; i++) {
		sqlite3_bind_int(st, 1, (i * 37) % SQROWS);
		sqlite3_bind_int(st, 2, (i * 37) % SQROWS + 999);
		if (sqlite3_step(st) == SQLITE_ROW)
			sum += sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	t0 = now_us() - t0;
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (sum <= 0)
		die("query");
	return t0;
}

static void sqlite_remove(const char *path)
{
	char p[128];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

static int want(const char *name)
{
	return !only || strstr(name, only);
}

int main(int argc, char **argv)
{
	double m[MAXREPS], b[MAXREPS], qm[MAXREPS], qb[MAXREPS];
	int i, r;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: bench_gup [--reps N] [--only futex|odirect|sqlite]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > MAXREPS)
		reps = 5;
	if (want("futex_pingpong")) {
		for (r = 0; r < reps; r++) {
			m[r] = futex_pingpong(1);
			b[r] = futex_pingpong(0);
		}
		report("futex_pingpong", HANDOFFS, m, b, "memfd");
	}
	if (want("odirect")) {
		odirect(0, 1);	/* the file exists at full size from here */
		for (r = 0; r < reps; r++) {
			m[r] = odirect(1, 1);
			b[r] = odirect(0, 1);
		}
		report("odirect_write", ODSIZE, m, b, "memfd");
		for (r = 0; r < reps; r++) {
			m[r] = odirect(1, 0);
			b[r] = odirect(0, 0);
		}
		report("odirect_read", ODSIZE, m, b, "memfd");
		unlink(ODFILE);
	}
	if (want("sqlite")) {
		mkdir("/dev/morsel/sq", 0700);
		mkdir("/tmp/sq", 0700);
		for (r = 0; r < reps; r++) {
			m[r] = sqlite_insert("/dev/morsel/sq/b.db");
			qm[r] = sqlite_query("/dev/morsel/sq/b.db");
			b[r] = sqlite_insert("/tmp/sq/b.db");
			qb[r] = sqlite_query("/tmp/sq/b.db");
			sqlite_remove("/dev/morsel/sq/b.db");
			sqlite_remove("/tmp/sq/b.db");
		}
		report("sqlite_insert", SQROWS, m, b, "tmpfs");
		report("sqlite_query", 400, qm, qb, "tmpfs");
	}
	return 0;
}
