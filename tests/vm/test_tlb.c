#define _GNU_SOURCE
/*
 * TLB coherence across address spaces and CPUs.
 *
 * 1. Process A, pinned to CPU 0, keeps reading a page of a morsel through
 *    its link while process B, pinned to CPU 1, writes a new value with
 *    pwrite() (A must see it: same frame), then punches the page.  Once B
 *    says it is done, A must read zero at once: a stale translation would
 *    still reach the old, freed frame and its old value.
 * 2. A thread on CPU 1 keeps storing into a linked page while a thread on
 *    CPU 0 mprotects it read-only.  Once mprotect has returned, the very
 *    next store must fault.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vm.h"

#define SIZE (2UL << 20)
#define ROUNDS 200

struct shared {
	atomic_int step;	/* B: 2N-1 value N written, 2N page N punched */
	atomic_int seen;	/* A: the last step it checked */
	atomic_int wrong;	/* A: reads that did not match the step */
};

static int punch_and_refill(void)
{
	struct shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fd = open("/dev/morsel/tlb", O_RDWR | O_CREAT | O_EXCL, 0600);
	volatile unsigned char *a;
	unsigned char v;
	int status, r;
	pid_t pid;

	tap_require(sh != MAP_FAILED && fd >= 0 && ftruncate(fd, SIZE) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {		/* A: reader on CPU 0 */
		pin(0);
		a = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
		if (a == MAP_FAILED)
			_exit(2);
		for (r = 1; r <= 2 * ROUNDS; r++) {
			while (atomic_load(&sh->step) < r)
				(void)a[0];	/* keep the translation hot */
			if (a[0] != (r & 1 ? (unsigned char)(r / 2 + 1) : 0))
				atomic_fetch_add(&sh->wrong, 1);
			atomic_store(&sh->seen, r);
		}
		_exit(0);
	}
	pin(1);			/* B: writer on CPU 1 */
	for (r = 1; r <= 2 * ROUNDS; r++) {
		v = (unsigned char)(r / 2 + 1);
		if (r & 1 ? pwrite(fd, &v, 1, 0) != 1 :
		    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      0, 4096) != 0)
			tap_fatal("write or punch in step %d", r);
		atomic_store(&sh->step, r);
		while (atomic_load(&sh->seen) < r)
			sched_yield();
	}
	tap_require(waitpid(pid, &status, 0) == pid);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "reader process ran %d rounds", ROUNDS);
	tap_ok(atomic_load(&sh->wrong) == 0,
	       "a linked reader sees each write and each punch at once (%d stale reads)",
	       atomic_load(&sh->wrong));
	close(fd);
	unlink("/dev/morsel/tlb");
	munmap(sh, 4096);
	return 0;
}

static sigjmp_buf jump;
static atomic_int protected_now, late_stores, faults;
static volatile char *page;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jump, 1);
}

static void *storer(void *arg)
{
	(void)arg;
	pin(1);
	if (sigsetjmp(jump, 1)) {
		atomic_fetch_add(&faults, 1);
		return NULL;
	}
	for (;;) {
		int after = atomic_load(&protected_now);

		page[0]++;
		/* Bounded: a missing flush must fail the test, not hang it. */
		if (after && atomic_fetch_add(&late_stores, 1) > 100000)
			return NULL;
	}
}

static void mprotect_race(void)
{
	int fd = open("/dev/morsel/tlb2", O_RDWR | O_CREAT | O_EXCL, 0600);
	struct sigaction sa = { .sa_handler = on_segv };
	pthread_t t;

	tap_require(fd >= 0 && ftruncate(fd, SIZE) == 0);
	page = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(page != MAP_FAILED);
	page[0] = 1;
	sigaction(SIGSEGV, &sa, NULL);
	pin(0);
	tap_require(pthread_create(&t, NULL, storer, NULL) == 0);
	usleep(20000);
	tap_require(mprotect((void *)page, SIZE, PROT_READ) == 0);
	atomic_store(&protected_now, 1);
	pthread_join(t, NULL);
	tap_ok(atomic_load(&faults) == 1,
	       "the storing thread faulted after mprotect(PROT_READ)");
	tap_ok(atomic_load(&late_stores) == 0,
	       "no store succeeded after mprotect returned (%d did)",
	       atomic_load(&late_stores));
	munmap((void *)page, SIZE);
	close(fd);
	unlink("/dev/morsel/tlb2");
}

int main(void)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		tap_fatal("needs 2 CPUs");
	punch_and_refill();
	mprotect_race();
	return tap_done();
}
