#define _GNU_SOURCE
/*
 * test_mkwrite_shrink: a store that faults while a shrink holds the
 * object's lock must see the new size (session-12 review).
 *
 * ->page_mkwrite used to check the size before it took m->lock and never
 * again, so a store that waited out a shrink looked up its page past the
 * new size, where a smaller root's slot belongs to another chunk:
 *  A: a child shrunk from 4 MiB to 1 MiB (a PTE root) took the base's
 *     frame of page 5 (slot 5) for its own page 517, made it writable,
 *     and the next store to the child's page 5 wrote the frozen base;
 *  B: a child shrunk from 4 MiB to 3 MiB got a frame past its size,
 *     which a grandchild's destroy later took for its own and freed
 *     while the child still mapped it.
 * Each part races a store against ftruncate() for a while, as uid 1000 on
 * a mount of its own, and checks the base's page and the child's frame
 * count; part B then checks that such a grandchild's close gives back
 * exactly what it took.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <time.h>
#include "vm.h"

#define MNT	"/tmp/mkwrite-shrink"
#define RACE_SECS	15
#define NEXTRA	48

static atomic_int go, ready;
static unsigned char *target;
static __thread sigjmp_buf tjb;
static volatile int wsig;
static unsigned wdelay, tdelay;
static int skip_a;

static void on_sig(int sig)
{
	wsig = sig;
	siglongjmp(tjb, 1);
}

static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

static void *writer(void *arg)
{
	(void)arg;
	pin(1);
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&go))
		;
	spin(wdelay);
	wsig = 0;
	if (sigsetjmp(tjb, 1) == 0)
		*(volatile unsigned char *)target = 0x5a;
	return NULL;
}

/* One race: store at @p + @woff while @fd is truncated to @to. */
static void race(int fd, unsigned char *p, long woff, long to)
{
	pthread_t t;

	atomic_store(&go, 0);
	atomic_store(&ready, 0);
	target = p + woff;
	wdelay = rand() % 40000;
	tdelay = rand() % 40000;
	pthread_create(&t, NULL, writer, NULL);
	while (!atomic_load(&ready))
		;
	atomic_store(&go, 1);
	spin(tdelay);
	if (ftruncate(fd, to))
		tap_fatal("ftruncate");
	pthread_join(t, NULL);
}

static void *extra[NEXTRA];

static void map_extras(int fd)
{
	for (int i = 0; i < NEXTRA; i++) {
		extra[i] = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
		if (extra[i] == MAP_FAILED)
			tap_fatal("extra mmap");
	}
}

static void unmap_extras(void)
{
	for (int i = 0; i < NEXTRA; i++)
		munmap(extra[i], PG);
}

static int mkbase4(const char *name, int pages_every)
{
	char buf[PG];
	int fd = mkobj(name, 4 * MiB);

	for (long pg = 0; pg < 1024; pg += pages_every) {
		fill_page(buf, 0xB0, pg * PG);
		if (pwrite(fd, buf, PG, pg * PG) != PG)
			tap_fatal("pwrite base");
	}
	tap_require(freeze(fd) == 0, "freeze");
	return fd;
}

static void part_a(void)
{
	int base = mkbase4(MNT "/a", 1), corrupt = 0, iters = 0;
	time_t end = time(NULL) + RACE_SECS;
	unsigned char buf[PG];

	while (time(NULL) < end && !corrupt) {
		int c = split(base);
		unsigned char *p, *q;

		tap_require(c >= 0, "split");
		map_extras(c);
		p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
		tap_require(p != MAP_FAILED, "mmap child");
		(void)*(volatile unsigned char *)(p + 517 * PG);
		race(c, p, 517 * PG, 1 * MiB);
		munmap(p, 4 * MiB);
		unmap_extras();
		iters++;
		/* A store through a mapping of the child at page 5. */
		q = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
		tap_require(q != MAP_FAILED, "mmap child 1M");
		q[5 * PG] = 0x77;
		munmap(q, 1 * MiB);
		tap_require(pread(base, buf, PG, 5 * PG) == PG, "pread base");
		if (!page_ok(buf, 0xB0, 5 * PG))
			corrupt = 1;
		close(c);
	}
	tap_diag("part A: %d rounds", iters);
	tap_ok(!corrupt, "A: a store to a child never changes its frozen base "
	       "(base page 5 %s)", corrupt ? "CHANGED" : "intact");
	close(base);
	unlink(MNT "/a");
}

static long used_blocks(void)
{
	struct statfs s;

	if (statfs(MNT, &s))
		tap_fatal("statfs");
	return (long)(s.f_blocks - s.f_bfree);
}

static void part_b(void)
{
	int base = mkbase4(MNT "/b", 1), iters = 0, stray = 0;
	time_t end = time(NULL) + RACE_SECS;
	int c1 = -1;

	while (time(NULL) < end) {
		unsigned char *p;

		c1 = split(base);
		tap_require(c1 >= 0, "split");
		map_extras(c1);
		p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, c1, 0);
		tap_require(p != MAP_FAILED, "mmap child");
		(void)*(volatile unsigned char *)(p + 896 * PG);
		race(c1, p, 896 * PG, 3 * MiB);
		munmap(p, 4 * MiB);
		unmap_extras();
		iters++;
		if (data_of(c1) > 0) {
			stray = 1;
			break;
		}
		close(c1);
		c1 = -1;
	}
	tap_diag("part B: %d rounds, C1 data_pages %lld size %lld", iters,
		 c1 >= 0 ? data_of(c1) : -1, c1 >= 0 ? size_of(c1) : -1);
	tap_ok(!stray, "B: no frame is installed past the size by a store "
	       "racing a shrink");
	if (stray) {
		char buf[PG];
		long before, after;
		int c2;

		memset(buf, 'c', PG);
		tap_require(freeze(c1) == 0, "freeze c1");
		before = used_blocks();
		c2 = split(c1);
		tap_require(c2 >= 0, "split c2");
		tap_require(pwrite(c2, buf, PG, 600 * PG) == PG, "c2 600");
		tap_require(ftruncate(c2, 5 * MiB) == 0, "grow c2");
		tap_require(pwrite(c2, buf, PG, 1100 * PG) == PG, "c2 1100");
		tap_diag("C2 data_pages %lld tables %lld", data_of(c2),
			 tables_of(c2));
		close(c2);
		usleep(300000);
		after = used_blocks();
		tap_ok(after == before, "B: C2's close gives back what it took "
		       "(used %ld before split, %ld after close)", before,
		       after);
		close(c1);
	}
	close(base);
	unlink(MNT "/b");
}

static void as_user(void)
{
	struct sigaction sa = { .sa_handler = on_sig, .sa_flags = SA_NODEFER };

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	srand(getpid());
	pin(0);
	if (!skip_a)
		part_a();
	part_b();
}

int main(int argc, char **argv)
{
	skip_a = argc > 1 && !strcmp(argv[1], "b");
	mkdir(MNT, 0755);
	tap_require(mount("none", MNT, "morselfs", 0, "size=512M,mode=0777") == 0,
		    "mount");
	watchdog(280);
	tap_run_as(1000, 1000, as_user);
	umount(MNT);
	rmdir(MNT);
	return tap_done();
}
