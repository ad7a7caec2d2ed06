#define _GNU_SOURCE
/*
 * mprotect must not let a fault link again with the old protection
 * (issue 13, item 5; docs/kernel-facts.md, "Rules and the tests that keep
 * them": rule M1).  The core mm calls ->mprotect before it splits the VMA
 * and write-locks it; the module's ->mprotect (fault.c,
 * morsel_vma_mprotect()) write-locks the VMA itself before it removes the
 * links.  Without that, a store fault taken under the per-VMA lock between
 * the removal and the core's vma_start_write() links the granule again,
 * writable, and change_protection() then walks through the link and
 * write-protects leaves every mapper shares.  The link outlives the
 * mprotect, and once another mapper's store has made the shared leaf
 * writable again, the "read-only" mapping writes through it.
 *
 * A thread on CPU 1 keeps storing into the first granule of a mapping
 * while the main thread on CPU 0 mprotects it PROT_READ, after a delay
 * that changes from round to round: the whole VMA (no split) or only the
 * first granule (a split at the granule boundary).  A second writable
 * mapping of the same object in the process stays linked.  After each
 * round: no store of the thread succeeded after mprotect returned; the
 * object has exactly one link (the second mapping's); after a store
 * through the second mapping, a store through the read-only one raises
 * SIGSEGV and the byte is unchanged.  2 MiB (PMD links) and 1 GiB (PUD
 * links, change_pud_range()).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "vm.h"

#define PATH "/dev/morsel/mprotect_relink"
#define LATE_MAX 100000

static _Thread_local sigjmp_buf *jump;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(*jump, 1);
}

struct race {
	volatile unsigned char *p;
	atomic_int stores, done, late, faulted;
};

static void *storer(void *arg)
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
		int after = atomic_load(&r->done);

		/* a store alone: a load would fault and link read-only */
		r->p[64] = (unsigned char)atomic_fetch_add(&r->stores, 1);
		if (after && atomic_fetch_add(&r->late, 1) >= LATE_MAX)
			return NULL;
	}
}

/* A store to @p: 1 if it went through, 0 if it raised SIGSEGV. */
static int store_works(volatile unsigned char *p)
{
	sigjmp_buf jb;

	jump = &jb;
	if (sigsetjmp(jb, 1))
		return 0;
	p[64] = 0xee;
	return 1;
}

struct tally {
	int bad, late, relinked, wrote;
};

static void round_(int fd, unsigned long g, int split, int delay,
		   struct tally *t)
{
	struct race r = { 0 };
	unsigned char *p, *w, before;
	unsigned long l;
	pthread_t th;
	int i;

	p = mmap(NULL, 2 * g, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	w = mmap(NULL, 2 * g, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED && w != MAP_FAILED);
	w[0] = 1;		/* the second mapping's link */
	r.p = p;
	tap_require(pthread_create(&th, NULL, storer, &r) == 0);
	while (atomic_load(&r.stores) < 100)
		sched_yield();
	for (i = 0; i < delay; i++)
		__asm__ volatile("" ::: "memory");
	if (mprotect(p, split ? g : 2 * g, PROT_READ))
		t->bad++;
	atomic_store(&r.done, 1);
	pthread_join(th, NULL);
	if (!atomic_load(&r.faulted) && atomic_load(&r.late) <= LATE_MAX)
		t->bad++;
	t->late += atomic_load(&r.late);
	l = links(fd);
	if (l != 1 && t->relinked++ < 3)
		tap_diag("%lu links after mprotect, 1 expected", l);
	w[64]++;		/* makes the shared leaf writable again */
	before = p[64];
	if (store_works(p) || p[64] != before)
		t->wrote++;
	munmap(p, 2 * g);
	munmap(w, 2 * g);
}

static void races(unsigned long g, const char *name, int split, int rounds)
{
	struct tally t = { 0 };
	int i, fd;

	for (i = 0; i < rounds; i++) {
		fd = mkobj(PATH, 2 * g);
		round_(fd, g, split, (i * 37) % 4000, &t);
		close(fd);
		unlink(PATH);
	}
	tap_ok(t.bad == 0, "%s, %s: %d rounds ran (%d went wrong)", name,
	       split ? "first granule (split)" : "whole VMA", rounds, t.bad);
	tap_ok(t.late == 0, "%s, %s: no store after mprotect returned (%d)",
	       name, split ? "split" : "whole", t.late);
	tap_ok(t.relinked == 0,
	       "%s, %s: only the other mapping's link is left (%d rounds had more)",
	       name, split ? "split" : "whole", t.relinked);
	tap_ok(t.wrote == 0,
	       "%s, %s: the read-only mapping never writes, even after another mapper's store (%d did)",
	       name, split ? "split" : "whole", t.wrote);
}

int main(void)
{
	struct sigaction sa;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		tap_skip_all("needs 2 CPUs");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigaction(SIGSEGV, &sa, NULL);
	pin(0);
	watchdog(240);
	phase = "2 MiB whole";
	races(2 * MiB, "2 MiB", 0, 200);
	phase = "2 MiB split";
	races(2 * MiB, "2 MiB", 1, 200);
	phase = "1 GiB whole";
	races(GiB, "1 GiB", 0, 60);
	phase = "1 GiB split";
	races(GiB, "1 GiB", 1, 60);
	return tap_done();
}
