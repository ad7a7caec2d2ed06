#define _GNU_SOURCE
/*
 * Once MORSEL_IOC_FREEZE has returned, no store lands in the object, not
 * even through a writable translation another CPU cached (issue 13, item
 * 5; docs/kernel-facts.md, "Rules and the tests that keep them": rule
 * T3).  FREEZE write-protects the object's leaves (cow.c,
 * morsel_freeze(): wrprotect_table) and then removes every link with
 * unmap_mapping_range(); the module's notifier flushes the TLBs of each
 * address space it unlinks (link.c, unlink_and_flush()).  A CPU that kept
 * a writable entry would go on storing into frozen contents.
 *
 * FREEZE fails with EBUSY while a mapping made writable by mmap() exists
 * (docs/semantics.md); one made read-only by mmap() and writable by
 * mprotect() keeps write notification and does not stop it: those are the
 * mappings here.  A thread on CPU 1 keeps storing (stores only, no loads)
 * into a page of such a linked mapping, 2 MiB (PMD link) or 1 GiB (PUD link), and
 * into a page of a mapping at an address one page off the granule (pages
 * mapped one by one in the process's own table), while the main thread on
 * CPU 0 freezes the object.  After FREEZE returns: the thread's next
 * store faults, and the bytes read the same through pread() and through
 * the mapping as right after the freeze, a while later.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "vm.h"

#define PATH "/dev/morsel/freeze_tlb"
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

		r->p[0] = (unsigned char)atomic_fetch_add(&r->stores, 1);
		if (after && atomic_fetch_add(&r->late, 1) >= LATE_MAX)
			return NULL;
	}
}

/*
 * One round on a fresh object of @size; the thread stores at @off of a
 * mapping that starts at file offset @moff (0: linked; 4096: page by
 * page).  Adds to @bad and @late.
 */
static void round_(unsigned long size, unsigned long moff, unsigned long off,
		   int *bad, int *late)
{
	struct race r = { 0 };
	unsigned char *p, a = 0, b = 0;
	pthread_t th;
	int fd;

	fd = mkobj(PATH, size);
	/* writable by mprotect(): a mapping writable by mmap() stops FREEZE */
	p = mmap(NULL, size - moff, PROT_READ, MAP_SHARED, fd, moff);
	tap_require(p != MAP_FAILED &&
		    mprotect(p, size - moff, PROT_READ | PROT_WRITE) == 0);
	r.p = p + off - moff;
	tap_require(pthread_create(&th, NULL, storer, &r) == 0);
	while (atomic_load(&r.stores) < 200)
		sched_yield();
	if (freeze(fd))
		(*bad)++;
	atomic_store(&r.done, 1);
	pthread_join(th, NULL);
	if (!atomic_load(&r.faulted) && atomic_load(&r.late) <= LATE_MAX)
		(*bad)++;
	*late += atomic_load(&r.late);
	if (pread(fd, &a, 1, off) != 1)
		(*bad)++;
	usleep(1000);
	if (pread(fd, &b, 1, off) != 1 || a != b || r.p[0] != a)
		(*late)++;
	munmap(p, size - moff);
	close(fd);
	unlink(PATH);
}

static void races(unsigned long size, unsigned long moff, const char *name,
		  int rounds)
{
	int i, bad = 0, late = 0;

	for (i = 0; i < rounds; i++)
		round_(size, moff, moff + (unsigned long)(i % 16) * PG + 8 * KiB,
		       &bad, &late);
	tap_ok(bad == 0, "%s: %d rounds ran (%d went wrong)", name, rounds,
	       bad);
	tap_ok(late == 0,
	       "%s: no store after FREEZE returned, contents stay (%d stores or changes)",
	       name, late);
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
	phase = "2 MiB linked";
	races(4 * MiB, 0, "4 MiB object, linked (PMD)", 60);
	phase = "page by page";
	races(4 * MiB, PG, "4 MiB object, mapped page by page", 60);
	phase = "1 GiB linked";
	races(2 * GiB, 0, "2 GiB object, linked (PUD)", 15);
	return tap_done();
}
