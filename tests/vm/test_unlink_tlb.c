#define _GNU_SOURCE
/*
 * No translation survives the removal of a link (issue 13, item 5;
 * docs/kernel-facts.md, "Rules and the tests that keep them": rules T1 and
 * T2).  When munmap or mremap removes a link, the module's mmu notifier
 * clears the process's PMD or PUD entry; the core mm's own zap then finds
 * nothing and flushes nothing, so the module must flush every CPU that may
 * cache the address space (link.c, unlink_and_flush(), flush_mm_tlb()).
 * The unmapped range is half of a two-granule mapping, so the core keeps
 * the process's page table above it and does not flush for a freed table
 * either: only the module's flush stands between a CPU and a stale entry.
 *
 * 1. A thread pinned to CPU 1 keeps reading a page through a link (2 MiB:
 *    a PMD entry; 1 GiB: a PUD entry) while the main thread, on CPU 0,
 *    munmaps that granule (or mremaps it elsewhere).  Once the call has
 *    returned, the very next read of the reader must raise SIGSEGV: a read
 *    that still succeeds went through a stale translation of CPU 1.
 * 2. Lazy CPUs: the thread reads and stores through the link on CPU 1 and
 *    blocks on a pipe, so CPU 1 idles holding the address space lazily
 *    (still in mm_cpumask, CR3 unchanged).  The main thread munmaps the
 *    granule on CPU 0 and wakes the thread, which must fault at once on
 *    CPU 1.  Returning to the same mm, switch_mm_irqs_off() flushes only
 *    if the mm's tlb_gen moved, so a module that neither makes the lazy
 *    CPU leave the mm nor bumps the generation lets the read through.
 * Every round checks that the other granule still reads its data.
 * argv[1] (optional) picks cases: 2m-munmap 2m-mremap 1g-munmap 1g-mremap
 * 2m-lazy 1g-lazy, e.g. to run one against a module changed on purpose.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "vm.h"

#define PATH "/dev/morsel/unlink_tlb"
#define LATE_MAX 100000		/* a missing flush fails, does not hang */

static _Thread_local sigjmp_buf *jump;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(*jump, 1);
}

/* ----------------------------------------------- 1. a reader that spins */

struct race {
	volatile unsigned char *p;	/* the granule that goes */
	unsigned char want;
	atomic_int reads, gone, late, wrong, faulted;
};

static void *spin_reader(void *arg)
{
	struct race *r = arg;
	sigjmp_buf jb;

	pin(1);
	jump = &jb;
	if (sigsetjmp(jb, 1)) {
		atomic_store(&r->faulted, 1);
		return NULL;
	}
	for (;;) {
		int after = atomic_load(&r->gone);

		if (r->p[0] != r->want)
			atomic_fetch_add(&r->wrong, 1);
		atomic_fetch_add(&r->reads, 1);
		if (after && atomic_fetch_add(&r->late, 1) >= LATE_MAX)
			return NULL;
	}
}

/*
 * One round: map two granules of @g, link both, let the reader spin on
 * the first, remove it by munmap (@how 0) or by mremap to a new place
 * (@how 1).  Returns the number of reads after the call returned that did
 * not fault (0 is right), or -1 if the round itself went wrong.
 */
static int race_round(int fd, unsigned long g, int how, unsigned char v)
{
	struct race r = { .want = v };
	unsigned char *p, *t = NULL;
	pthread_t th;
	int late, ok = 1;

	p = mmap(NULL, 2 * g, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	p[0] = v;
	p[g] = (unsigned char)(v + 1);
	if (links(fd) != 2)
		ok = 0;
	r.p = p;
	if (pthread_create(&th, NULL, spin_reader, &r))
		tap_fatal("pthread_create");
	while (atomic_load(&r.reads) < 2000)
		sched_yield();
	if (how == 0) {
		if (munmap(p, g))
			ok = 0;
	} else {
		t = (unsigned char *)free_range(3 * g, g);
		if (mremap(p, g, g, MREMAP_MAYMOVE | MREMAP_FIXED, t) != t)
			ok = 0;
	}
	atomic_store(&r.gone, 1);
	pthread_join(th, NULL);
	late = atomic_load(&r.late);
	if (!atomic_load(&r.faulted) && late <= LATE_MAX)
		ok = 0;		/* the reader stopped for another reason */
	if (atomic_load(&r.wrong) || p[g] != (unsigned char)(v + 1))
		ok = 0;
	if (how == 1 && t[0] != v)
		ok = 0;
	munmap(p + g, g);
	if (t)
		munmap(t, g);
	return ok ? late : -1;
}

static void races(unsigned long g, const char *name, int how, int rounds)
{
	int i, late = 0, bad = 0, n;

	for (i = 0; i < rounds; i++) {
		int fd = mkobj(PATH, 2 * g);

		n = race_round(fd, g, how, (unsigned char)(i + 3));
		close(fd);
		unlink(PATH);
		if (n < 0)
			bad++;
		else
			late += n;
	}
	tap_ok(bad == 0, "%s %s: %d rounds ran, data intact (%d went wrong)",
	       name, how ? "mremap" : "munmap", rounds, bad);
	tap_ok(late == 0,
	       "%s %s: a reader on CPU 1 faults at once (%d reads after the call went through)",
	       name, how ? "mremap" : "munmap", late);
}

/* ------------------------------------ 2. a reader that sleeps on CPU 1 */

struct lazy {
	volatile unsigned char *p;
	int go[2], ready[2];
	int result;		/* 0 faulted, 1 read went through, -1 error */
};

static void *sleeper(void *arg)
{
	struct lazy *l = arg;
	sigjmp_buf jb;
	char c = 'r';

	pin(1);
	jump = &jb;
	l->p[0]++;		/* a writable, dirty translation on CPU 1 */
	(void)l->p[0];
	if (write(l->ready[1], &c, 1) != 1 || read(l->go[0], &c, 1) != 1) {
		l->result = -1;
		return NULL;
	}
	if (sigsetjmp(jb, 1)) {
		l->result = 0;
		return NULL;
	}
	(void)l->p[0];
	l->p[0]++;
	l->result = 1;
	return NULL;
}

static void lazy(unsigned long g, const char *name, int rounds)
{
	int i, through = 0, bad = 0, fd;
	unsigned char *p;
	char c = 'g';

	for (i = 0; i < rounds; i++) {
		struct lazy l = { .result = -1 };
		pthread_t th;

		fd = mkobj(PATH, 2 * g);
		p = mmap(NULL, 2 * g, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		tap_require(p != MAP_FAILED && pipe(l.go) == 0 &&
			    pipe(l.ready) == 0);
		p[g] = 0x5a;
		l.p = p;
		tap_require(pthread_create(&th, NULL, sleeper, &l) == 0);
		tap_require(read(l.ready[0], &c, 1) == 1);
		usleep(20000);	/* the thread blocks, CPU 1 goes idle */
		if (links(fd) != 2 || munmap(p, g))
			bad++;
		tap_require(write(l.go[1], &c, 1) == 1);
		pthread_join(th, NULL);
		if (l.result < 0 || p[g] != 0x5a)
			bad++;
		through += l.result == 1;
		munmap(p + g, g);
		close(l.go[0]);
		close(l.go[1]);
		close(l.ready[0]);
		close(l.ready[1]);
		close(fd);
		unlink(PATH);
	}
	tap_ok(bad == 0, "%s lazy: %d rounds ran (%d went wrong)", name,
	       rounds, bad);
	tap_ok(through == 0,
	       "%s lazy: CPU 1, idle with the mm during munmap, faults when the thread returns (%d of %d did not)",
	       name, through, rounds);
}

/* argv[1], if given: which cases run (e.g. "lazy" or "2m-munmap,1g-lazy"). */
static const char *only;

static int want(const char *c)
{
	return !only || strstr(only, c);
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		tap_skip_all("needs 2 CPUs");
	only = argc > 1 ? argv[1] : NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigaction(SIGSEGV, &sa, NULL);
	pin(0);
	watchdog(240);
	phase = "2 MiB munmap race";
	if (want("2m-munmap"))
		races(2 * MiB, "2 MiB", 0, 100);
	phase = "2 MiB mremap race";
	if (want("2m-mremap"))
		races(2 * MiB, "2 MiB", 1, 50);
	phase = "1 GiB munmap race";
	if (want("1g-munmap"))
		races(GiB, "1 GiB", 0, 50);
	phase = "1 GiB mremap race";
	if (want("1g-mremap"))
		races(GiB, "1 GiB", 1, 20);
	phase = "2 MiB lazy";
	if (want("2m-lazy"))
		lazy(2 * MiB, "2 MiB", 20);
	phase = "1 GiB lazy";
	if (want("1g-lazy"))
		lazy(GiB, "1 GiB", 10);
	return tap_done();
}
