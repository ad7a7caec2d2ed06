#define _GNU_SOURCE
/*
 * A store that copies a page into a child must not race its freeze
 * (regression, session 6 second review).  The store fault checked that
 * the child was not frozen, then allocated a copy of the table (a point
 * where it can be preempted), then set the child's entry: when the child
 * was frozen and split in between, the grandchild took the root base's
 * table for its own (its entry no longer matched its parent's), wrote
 * the base's frozen data and freed its table on close.
 *
 * What this checks, as uid 1000 with read access to a root-owned frozen
 * base: in many rounds, a low-priority thread stores into a fresh child
 * while a spinning thread preempts it, and another CPU freezes the child
 * and splits a grandchild meanwhile.  The grandchild must never own a
 * page it did not write, and the base must read as it was.  A store that
 * sees the freeze gets SIGSEGV, which the thread catches.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include "vm.h"

#define BASE "/dev/morsel/cfr_base"
#define ROUNDS 1500

static volatile char *target;
static atomic_int go, done, armed, spinning, quit;
static sigjmp_buf jb;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jb, 1);
}

static void *storer(void *arg)
{
	struct sched_param sp = { 0 };

	(void)arg;
	pin(0);
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	while (!atomic_load(&quit)) {
		if (!atomic_load(&go))
			continue;
		atomic_store(&go, 0);
		if (!sigsetjmp(jb, 1))
			target[0] = 'A';
		atomic_store(&done, 1);
	}
	return NULL;
}

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Preempts the storer at a random moment, for 4 ms. */
static void *preemptor(void *arg)
{
	struct timespec ts = { 0 };
	long long t;

	(void)arg;
	pin(0);
	while (!atomic_load(&quit)) {
		if (!atomic_load(&armed)) {
			sched_yield();
			continue;
		}
		ts.tv_nsec = (rand() % 60) * 1000;
		nanosleep(&ts, NULL);
		atomic_store(&spinning, 1);
		for (t = now_ns(); now_ns() - t < 4000000;)
			;
		atomic_store(&spinning, 0);
		atomic_store(&armed, 0);
	}
	return NULL;
}

static int owned_pages(int fd)
{
	unsigned long long owned[16] = { 0 };
	struct morsel_scan s = {
		.argsz = sizeof(s), .length = 4 * MiB,
		.owned = (uintptr_t)owned,
	};
	int i, n = 0;

	if (ioctl(fd, MORSEL_IOC_SCAN, &s))
		return -1;
	for (i = 0; i < 16; i++)
		n += __builtin_popcountll(owned[i]);
	return n;
}

static void as_user(void)
{
	struct sigaction sa = { .sa_handler = on_segv, .sa_flags = SA_NODEFER };
	int b = open(BASE, O_RDONLY), c, g, i, raced = 0, bad = 0, errs = 0;
	char got[8];
	pthread_t ts, tp;

	tap_require(b >= 0, "open base read-only");
	sigaction(SIGSEGV, &sa, NULL);
	srand(getpid());
	tap_require(pthread_create(&ts, NULL, storer, NULL) == 0 &&
		    pthread_create(&tp, NULL, preemptor, NULL) == 0, "threads");
	pin(1);
	for (i = 0; i < ROUNDS && !bad; i++) {
		void *p;

		c = split(b);
		p = c < 0 ? MAP_FAILED :
		    mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
		if (p == MAP_FAILED) {
			errs++;
			break;
		}
		target = p;
		(void)target[0];
		atomic_store(&done, 0);
		atomic_store(&armed, 1);
		atomic_store(&go, 1);
		while (!atomic_load(&spinning) && !atomic_load(&done))
			;
		g = -1;
		if (!atomic_load(&done)) {
			raced++;
			errs += freeze(c) != 0;
			g = split(c);
			errs += g < 0;
		}
		while (!atomic_load(&done) || atomic_load(&armed))
			;
		if (g >= 0 && owned_pages(g) != 0)
			bad++;
		munmap(p, PG);
		close(c);
		if (g >= 0)
			close(g);
	}
	atomic_store(&quit, 1);
	pthread_join(ts, NULL);
	pthread_join(tp, NULL);
	tap_diag("%d rounds, %d with the freeze while the store was preempted", i, raced);
	tap_ok(!bad && !errs,
	       "a store racing the child's freeze never gives the grandchild a page (%d bad rounds, %d errors)",
	       bad, errs);
	tap_ok(pread(b, got, 8, 0) == 8 && !memcmp(got, "BBBBBBBB", 8) &&
	       lseek(b, 0, SEEK_DATA) == 0 && data_of(b) == 4,
	       "the root-owned base reads as it was");
	close(b);
}

int main(void)
{
	char page[4096];
	int fd, i;

	fd = open(BASE, O_RDWR | O_CREAT | O_EXCL, 0644);
	memset(page, 'B', sizeof(page));
	tap_require(fd >= 0 && ftruncate(fd, 4 * MiB) == 0, "base");
	for (i = 0; i < 4; i++)
		tap_require(pwrite(fd, page, PG, i * PG) == PG, "write base");
	tap_require(freeze(fd) == 0 && fchmod(fd, 0444) == 0, "freeze base");
	close(fd);
	watchdog(280);
	tap_run_as(1000, 1000, as_user);
	unlink(BASE);
	return tap_done();
}
