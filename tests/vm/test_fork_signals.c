#define _GNU_SOURCE
/*
 * Registering the module's mmu notifier can fail with EINTR (issue 13,
 * item 5; docs/kernel-facts.md, "Rules and the tests that keep them":
 * rule N1).  __mmu_notifier_register() takes mm_take_all_locks(), which
 * gives up when a signal is pending; dup_mmap() (fork) runs ->open with
 * signals unblocked, and fork still succeeds.  The module must then map
 * the VMA page by page (fault.c, morsel_vma_open() and morsel_mmap(): no
 * link record, vm_private_data NULL), never use the error as a record,
 * never fail the fork, never let fork copy leaf entries.
 *
 * A helper process on CPU 1 sends SIGUSR1 to the test process without
 * pause while the test process, on CPU 0, with a linked writable mapping
 * and 300 other VMAs (so mm_take_all_locks() has many steps at which to
 * notice a signal):
 *  1. forks: each child reads the parent's data through the inherited
 *     mapping, stores a byte the parent must see, and reports whether its
 *     read linked a granule (the object's link count grew) or not (the
 *     registration in ->open was interrupted: page by page);
 *  2. in a child that has no morsel mapping yet, mmaps the object afresh
 *     (the registration in ->mmap) and does the same.
 * Every child must see and share the data either way; the test reports how
 * many took the page-by-page path (it needs at least one, or it did not
 * test the rule: then it says so and fails).  Counters come back (the
 * suite checks).
 */
#include <stdatomic.h>
#include <time.h>

#include "vm.h"

#define PATH "/dev/morsel/fork_signals"
#define SIZE (4 * MiB)
#define SECS 20		/* per case; up to 3x while none was interrupted */

static atomic_long signals;
static _Atomic pid_t *target;	/* shared: whom the storm signals */

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&signals, 1);
}

/*
 * Child side.  Exit 0: linked; 10: mapped page by page; others: errors.
 * @fresh: map the object here first.
 */
static int child(int fd, unsigned char *p, unsigned long parent_links, int n)
{
	unsigned long l;

	if (!p) {
		/* be the storm's target until the registration is done */
		long s0 = atomic_load(&signals);

		atomic_store(target, getpid());
		while (atomic_load(&signals) < s0 + 3)
			;
		p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		atomic_store(target, getppid());
		if (p == MAP_FAILED)
			return 2;
	}
	if (mstat(fd).links != parent_links)
		return 3;	/* fork copied a link, or lost one */
	if (p[3 * MiB] != 0x77 || p[0] != 0x55)
		return 4;
	l = mstat(fd).links;
	p[MiB + (unsigned long)(n % 256) * PG] = (unsigned char)n;
	if (p[MiB + (unsigned long)(n % 256) * PG] != (unsigned char)n)
		return 5;
	return l == parent_links ? 10 : 0;
}

static pid_t start_storm(void)
{
	pid_t pid = fork();

	tap_require(pid >= 0);
	if (pid == 0) {
		cpu_set_t set;
		unsigned long i = 0;

		CPU_ZERO(&set);
		CPU_SET(1, &set);
		sched_setaffinity(0, sizeof(set), &set);
		for (;;) {
			if (kill(atomic_load(target), SIGUSR1) && errno != ESRCH)
				_exit(0);
			/* pauses of 0 to ~50 us: some land inside fork */
			for (unsigned long j = 0; j < (i * 7919) % 2000; j++)
				__asm__ volatile("" ::: "memory");
			i++;
		}
	}
	return pid;
}

static void run(int fresh, const char *name)
{
	unsigned long parent_links;
	int fd, st, n = 0, linked = 0, paged = 0, bad = 0, shared_bad = 0;
	unsigned char *p = NULL, *q;
	time_t start;
	pid_t storm, pid;

	phase = name;
	fd = mkobj(PATH, SIZE);
	q = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(q != MAP_FAILED);
	q[0] = 0x55;
	q[3 * MiB] = 0x77;
	memset(q + MiB, 0, 256 * PG);
	if (fresh) {
		/* the data stays, this process keeps no morsel mapping */
		tap_require(munmap(q, SIZE) == 0);
		q = NULL;
	} else {
		p = q;
	}
	parent_links = mstat(fd).links;
	atomic_store(target, getpid());
	storm = start_storm();
	start = time(NULL);
	while (paged < 20 && time(NULL) < start + (paged ? SECS : 3 * SECS)) {
		pid = fork();
		if (pid < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			tap_fatal("fork: %s", strerror(errno));
		}
		if (pid == 0)
			_exit(child(fd, p, parent_links, n));
		while (waitpid(pid, &st, 0) < 0)
			if (errno != EINTR)
				tap_fatal("waitpid: %s", strerror(errno));
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			linked++;
		else if (WIFEXITED(st) && WEXITSTATUS(st) == 10)
			paged++;
		else {
			if (bad++ < 5)
				tap_diag("%s: child %d: status 0x%x", name, n, st);
		}
		if (WIFEXITED(st) && WEXITSTATUS(st) <= 10) {
			unsigned char v = 0;

			if (pread(fd, &v, 1, MiB + (n % 256) * PG) != 1 ||
			    v != (unsigned char)n)
				shared_bad++;
		}
		n++;
	}
	kill(storm, SIGKILL);
	waitpid(storm, &st, 0);
	tap_diag("%s: %d children (%d linked, %d page by page), %ld signals",
		 name, n, linked, paged, atomic_load(&signals));
	tap_ok(n > 0 && bad == 0,
	       "%s: every child under the signal storm read and wrote the object (%d failed)",
	       name, bad);
	tap_ok(shared_bad == 0, "%s: every child's store reached the object (%d did not)",
	       name, shared_bad);
	tap_ok(paged > 0,
	       "%s: some registrations were interrupted (EINTR: %d children page by page)",
	       name, paged);
	if (p)
		tap_ok(p[0] == 0x55 && mstat(fd).links == parent_links,
		       "%s: the parent's mapping and links are as before", name);
	if (p)
		munmap(p, SIZE);
	close(fd);
	unlink(PATH);
}

int main(void)
{
	struct sigaction sa;
	int i;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		tap_skip_all("needs 2 CPUs");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	target = mmap(NULL, PG, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tap_require(target != MAP_FAILED);
	pin(0);
	watchdog(6 * SECS + 60);
	/* 300 VMAs that do not merge: mm_take_all_locks() walks them all */
	for (i = 0; i < 300; i++) {
		void *v = mmap(NULL, PG, i & 1 ? PROT_READ : PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		tap_require(v != MAP_FAILED);
	}
	run(0, "fork (->open)");
	run(1, "fresh mmap in a child (->mmap)");
	return tap_done();
}
