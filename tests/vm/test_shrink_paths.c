#define _GNU_SOURCE
/*
 * test_shrink_paths: every way a task can reach a child's page past a
 * size that a racing shrink cuts (session-12 reviews), as uid 1000.  The
 * base is a frozen 4 MiB object; each round splits a child, maps it
 * 4 MiB, and while ftruncate() cuts it to 1 MiB (a PTE root: slot N of
 * page 512+N would alias page N) one thread does one of:
 *   0 a read fault through a fresh mapping of a hole (zero-page install)
 *   1 a write through /proc/self/mem (GUP FOLL_WRITE|FOLL_FORCE)
 *   2 process_vm_writev() to itself (FOLL_PIN)
 *   3 MADV_POPULATE_WRITE
 *   4 MORSEL_IOC_MAP with MORSEL_MAP_POPULATE
 *   5 a plain store (->page_mkwrite)
 * at page 517 (a hole of the base: 512+5) or 518 (data).  After each
 * round the child must own only the frame of page 7 (stored before the
 * race), its pages 5 and 6 must still read as the base's, stores to them
 * must copy (data_pages 3), and the base must be intact: an op that
 * reached slot 5 or 6 of the new PTE root would take the base's frame
 * for the child's own and make it writable, so the store to page 5 or 6
 * would write the base.  Every 16th round the child is frozen and a
 * grandchild split, written and closed: a frame past the child's size
 * would WARN (frame_is_ours()) or leak.  Then a plain store races a
 * shrink from 4 to 3 MiB (part_past_size()), which leaves the root as it
 * was: no frame may land past the new size.  Args "FIRST LAST": only ops
 * FIRST..LAST, and no second part.  On the module before the fix
 * (->page_mkwrite checked the size before m->lock) op 1 fails within
 * about 200 rounds and the second part in its first rounds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <time.h>
#include "vm.h"

#define MNT	"/tmp/shrink-paths"
#define SECS_PER_OP	8
#define HOLE_PG	517
#define DATA_PG	518

static atomic_int go, ready;
static unsigned char *target;
static int op;
static unsigned wdelay, tdelay;
static __thread sigjmp_buf tjb;
static int map_fd;

static void on_sig(int sig)
{
	(void)sig;
	siglongjmp(tjb, 1);
}

static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

static void do_op(void)
{
	unsigned char v = 0x5a, buf[64];
	int fd;

	memset(buf, 0x5a, sizeof(buf));
	switch (op) {
	case 0:
		v = *(volatile unsigned char *)target;
		(void)v;
		break;
	case 1:
		fd = open("/proc/self/mem", O_RDWR);
		if (fd >= 0) {
			ssize_t n = pwrite(fd, buf, sizeof(buf),
					   (off_t)(uintptr_t)target);
			(void)n;
			close(fd);
		}
		break;
	case 2: {
		struct iovec l = { buf, sizeof(buf) }, r = { target, sizeof(buf) };

		process_vm_writev(getpid(), &l, 1, &r, 1, 0);
		break;
	}
	case 3:
		madvise((void *)((uintptr_t)target & ~(PG - 1)), PG,
			23 /* MADV_POPULATE_WRITE */);
		break;
	case 4: {
		struct morsel_map a = {
			.argsz = sizeof(a), .flags = MORSEL_MAP_POPULATE,
			.addr = (uintptr_t)target & ~(PG - 1), .length = PG,
		};

		ioctl(map_fd, MORSEL_IOC_MAP, &a);
		break;
	}
	case 5:
		*(volatile unsigned char *)target = 0x5a;
		break;
	}
}

static void *worker(void *arg)
{
	(void)arg;
	pin(1);
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&go))
		;
	spin(wdelay);
	if (sigsetjmp(tjb, 1) == 0)
		do_op();
	return NULL;
}

static void race(int fd, unsigned char *p, long pg, long to)
{
	pthread_t t;

	atomic_store(&go, 0);
	atomic_store(&ready, 0);
	target = p + pg * PG;
	map_fd = fd;
	wdelay = rand() % 60000;
	tdelay = rand() % 60000;
	pthread_create(&t, NULL, worker, NULL);
	while (!atomic_load(&ready))
		;
	atomic_store(&go, 1);
	spin(tdelay);
	if (ftruncate(fd, to))
		tap_fatal("ftruncate");
	pthread_join(t, NULL);
}

static int mkbase_holes(const char *name)
{
	char buf[PG];
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);

	tap_require(fd >= 0 && ftruncate(fd, 4 * MiB) == 0, "base");
	for (long pg = 0; pg < 1024; pg++) {
		if (pg == HOLE_PG || pg == 900)
			continue;
		fill_page(buf, 0xB0, pg * PG);
		tap_require(pwrite(fd, buf, PG, pg * PG) == PG, "pwrite base");
	}
	tap_require(freeze(fd) == 0, "freeze");
	return fd;
}

static int grandchild_check(int c)
{
	char buf[PG];
	int g, ok;

	if (freeze(c))
		return 1;
	g = split(c);
	if (g < 0)
		return 0;
	memset(buf, 'g', PG);
	ok = pwrite(g, buf, PG, 3 * PG) == PG &&
	     ftruncate(g, 3 * MiB) == 0 &&
	     pwrite(g, buf, PG, 700 * PG) == PG;
	close(g);
	return ok;
}

#define NEXTRA	48
static void *extra[NEXTRA];

/* More mappings: the shrink's unmap holds m->lock longer (as the probe). */
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

static int op_first, op_last = 5;

static void part_ops(void)
{
	char buf[PG], want[PG];

	for (op = op_first; op <= op_last; op++) {
		int base = mkbase_holes(MNT "/base");
		time_t end = time(NULL) + SECS_PER_OP;
		int bad = 0, rounds = 0;
		long long stray = 0;

		while (time(NULL) < end && !bad) {
			int c = split(base);
			unsigned char *p;
			long pg = (rounds & 1) ? DATA_PG : HOLE_PG;

			tap_require(c >= 0, "split");
			map_extras(c);
			p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE,
				 MAP_SHARED, c, 0);
			tap_require(p != MAP_FAILED, "mmap child");
			/* A child's table of chunk 0 of its own (a store). */
			p[7 * PG] = 1;
			if (op != 0)	/* have the page mapped (read) */
				(void)*(volatile unsigned char *)(p + pg * PG);
			race(c, p, pg, 1 * MiB);
			munmap(p, 4 * MiB);
			unmap_extras();
			rounds++;
			stray = data_of(c);
			/* page 7 was written: one frame */
			if (stray != 1)
				bad = 1;
			for (long q = 5; q <= 6 && !bad; q++) {
				fill_page(want, 0xB0, q * PG);
				if (pread(c, buf, PG, q * PG) != PG ||
				    memcmp(buf, want, PG))
					bad = 2;
			}
			/* Stores to the child's pages 5 and 6 must copy. */
			if (!bad) {
				unsigned char *q = mmap(NULL, 1 * MiB,
					PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);

				tap_require(q != MAP_FAILED, "mmap 1M");
				q[5 * PG] = 0x77;
				q[6 * PG] = 0x77;
				munmap(q, 1 * MiB);
				stray = data_of(c);
				if (stray != 3)
					bad = 5;
			}
			for (long q = 5; q <= 6; q++) {
				fill_page(want, 0xB0, q * PG);
				if (pread(base, buf, PG, q * PG) != PG ||
				    memcmp(buf, want, PG))
					bad = 3;
			}
			if (!bad && !(rounds % 16) && !grandchild_check(c))
				bad = 4;
			close(c);
		}
		tap_ok(!bad, "op %d: %d rounds, child data_pages %lld, bad=%d",
		       op, rounds, stray, bad);
		close(base);
		unlink(MNT "/base");
	}
}

static long used_blocks(void)
{
	struct statfs st;

	if (statfs(MNT, &st))
		tap_fatal("statfs");
	return (long)(st.f_blocks - st.f_bfree);
}

/*
 * A store racing a shrink within the root's span (4 to 3 MiB, a PMD root
 * both sides) must not leave a frame past the new size.  Such a frame
 * (the bug) is then taken for its own by a grandchild grown over it, and
 * the grandchild's close must give back exactly what it took.
 */
static void part_past_size(void)
{
	int base = mkbase_holes(MNT "/base"), rounds = 0, stray = 0, c1 = -1;
	time_t end = time(NULL) + SECS_PER_OP;

	op = 5;
	while (time(NULL) < end) {
		unsigned char *p;

		c1 = split(base);
		tap_require(c1 >= 0, "split");
		map_extras(c1);
		p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED,
			 c1, 0);
		tap_require(p != MAP_FAILED, "mmap child");
		(void)*(volatile unsigned char *)(p + 896 * PG);
		race(c1, p, 896, 3 * MiB);
		munmap(p, 4 * MiB);
		unmap_extras();
		rounds++;
		if (data_of(c1) > 0) {
			stray = 1;
			break;
		}
		close(c1);
		c1 = -1;
	}
	tap_ok(!stray, "a store racing a shrink to 3 MiB leaves no frame past "
	       "the size (%d rounds)", rounds);
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
		close(c2);
		usleep(300000);
		after = used_blocks();
		tap_ok(after == before, "a grandchild's close gives back what "
		       "it took (used %ld before its split, %ld after)",
		       before, after);
		close(c1);
	}
	close(base);
	unlink(MNT "/base");
}

static void as_user(void)
{
	struct sigaction sa = { .sa_handler = on_sig, .sa_flags = SA_NODEFER };
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	srand(getpid());
	pin(0);
	prctl(PR_SET_DUMPABLE, 1);
	part_ops();
	if (op_first == 0 && op_last == 5)
		part_past_size();
}

int main(int argc, char **argv)
{
	if (argc > 2) {
		op_first = atoi(argv[1]);
		op_last = atoi(argv[2]);
	}
	mkdir(MNT, 0755);
	tap_require(mount("none", MNT, "morselfs", 0, "size=512M,mode=0777") == 0,
		    "mount");
	watchdog(280);
	tap_run_as(1000, 1000, as_user);
	umount(MNT);
	rmdir(MNT);
	return tap_done();
}
