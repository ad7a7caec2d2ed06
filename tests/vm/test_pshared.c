#define _GNU_SOURCE
/*
 * Process-shared pthread objects in a morsel (issue 12): two processes
 * that map the object at different addresses, one through links (4 MiB,
 * aligned) and one page by page (a 64 KiB mapping), contend on a mutex, a
 * priority-inheritance mutex and an rwlock, hand a condition variable and
 * two semaphores back and forth, meet at a barrier, and find a robust
 * mutex whose owner died.  Every counter must come out exact, and glibc
 * must never see an unexpected futex error (it aborts on one: "The futex
 * facility returned an unexpected error code").  The same program runs on
 * a tmpfs file first, as the reference that the test itself is right.
 */
#include <pthread.h>
#include <semaphore.h>
#include "vm.h"

#define SIZE	(4 * MiB)
#define AT	(3 * PG)	/* the shared struct: inside both mappings */
#define ROUNDS	500
#define LOCKS	10000

struct shared {
	pthread_mutex_t mutex, pi, robust;
	pthread_rwlock_t rw;
	pthread_cond_t cond;
	pthread_barrier_t barrier;
	sem_t to_a, to_b;
	long counter, pi_counter, rw_counter, turn, handoffs, met;
};

static void init_shared(struct shared *s)
{
	pthread_mutexattr_t ma;
	pthread_rwlockattr_t ra;
	pthread_condattr_t ca;
	pthread_barrierattr_t ba;

	memset(s, 0, sizeof(*s));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	tap_require(pthread_mutex_init(&s->mutex, &ma) == 0);
	pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT);
	tap_require(pthread_mutex_init(&s->pi, &ma) == 0);
	pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_NONE);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	tap_require(pthread_mutex_init(&s->robust, &ma) == 0);
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setpshared(&ra, PTHREAD_PROCESS_SHARED);
	tap_require(pthread_rwlock_init(&s->rw, &ra) == 0);
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	tap_require(pthread_cond_init(&s->cond, &ca) == 0);
	pthread_barrierattr_init(&ba);
	pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
	tap_require(pthread_barrier_init(&s->barrier, &ba, 2) == 0);
	tap_require(sem_init(&s->to_a, 1, 0) == 0 && sem_init(&s->to_b, 1, 0) == 0);
}

/* One side's work; @me is 0 (a) or 1 (b).  Returns 0 or a failure code. */
static int work(struct shared *s, int me)
{
	int i;

	for (i = 0; i < LOCKS; i++) {
		if (pthread_mutex_lock(&s->mutex))
			return 1;
		s->counter++;
		pthread_mutex_unlock(&s->mutex);
	}
	for (i = 0; i < LOCKS / 4; i++) {
		if (pthread_mutex_lock(&s->pi))
			return 2;
		s->pi_counter++;
		pthread_mutex_unlock(&s->pi);
		if (pthread_rwlock_wrlock(&s->rw))
			return 3;
		s->rw_counter++;
		pthread_rwlock_unlock(&s->rw);
		if (pthread_rwlock_rdlock(&s->rw))
			return 3;
		pthread_rwlock_unlock(&s->rw);
	}
	for (i = 0; i < ROUNDS; i++) {
		pthread_mutex_lock(&s->mutex);
		while (s->turn != me)
			pthread_cond_wait(&s->cond, &s->mutex);
		s->turn = !me;
		s->handoffs++;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->mutex);
	}
	for (i = 0; i < ROUNDS; i++) {
		if (me == 0) {
			sem_post(&s->to_b);
			if (sem_wait(&s->to_a))
				return 4;
		} else {
			if (sem_wait(&s->to_b))
				return 4;
			sem_post(&s->to_a);
		}
	}
	for (i = 0; i < ROUNDS; i++) {
		int r = pthread_barrier_wait(&s->barrier);

		if (r && r != PTHREAD_BARRIER_SERIAL_THREAD)
			return 5;
		if (r == PTHREAD_BARRIER_SERIAL_THREAD)
			__atomic_add_fetch(&s->met, 1, __ATOMIC_SEQ_CST);
	}
	return 0;
}

/*
 * Run both sides on the file @path: a maps all of it, b (a forked child)
 * maps its first 64 KiB anew.  Reports under @name.
 */
static void run(const char *name, const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), st, r;
	struct shared *s;
	char *a;
	pid_t pid;

	tap_require(fd >= 0 && ftruncate(fd, SIZE) == 0);
	a = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(a != MAP_FAILED);
	s = (struct shared *)(a + AT);
	init_shared(s);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		char *b = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE,
			       MAP_SHARED, fd, 0);

		if (b == MAP_FAILED || b == a)
			_exit(9);
		_exit(work((struct shared *)(b + AT), 1));
	}
	r = work(s, 0);
	st = wait_status(pid);
	tap_ok(r == 0 && CHILD_OK(st), "%s: both sides ran (%d, status %#x)",
	       name, r, st);
	tap_ok(s->counter == 2 * LOCKS, "%s: mutex: %ld of %d increments",
	       name, s->counter, 2 * LOCKS);
	tap_ok(s->pi_counter == LOCKS / 2 && s->rw_counter == LOCKS / 2,
	       "%s: PI mutex %ld, rwlock %ld of %d increments", name,
	       s->pi_counter, s->rw_counter, LOCKS / 2);
	tap_ok(s->handoffs == 2 * ROUNDS && s->met == ROUNDS,
	       "%s: condvar %ld of %d handoffs, barrier %ld of %d rounds",
	       name, s->handoffs, 2 * ROUNDS, s->met, ROUNDS);

	/* A robust mutex whose owner dies holding it. */
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		char *b = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE,
			       MAP_SHARED, fd, 0);

		if (b == MAP_FAILED)
			_exit(9);
		_exit(pthread_mutex_lock(&((struct shared *)(b + AT))->robust));
	}
	st = wait_status(pid);
	r = pthread_mutex_lock(&s->robust);
	tap_ok(CHILD_OK(st) && r == EOWNERDEAD &&
	       pthread_mutex_consistent(&s->robust) == 0 &&
	       pthread_mutex_unlock(&s->robust) == 0,
	       "%s: robust mutex: the dead owner's lock comes back EOWNERDEAD (%d)",
	       name, r);
	munmap(a, SIZE);
	close(fd);
	unlink(path);
}

int main(void)
{
	watchdog(900);
	phase = "tmpfs";
	run("tmpfs", "/tmp/pshared");
	phase = "morsel";
	run("morsel", "/dev/morsel/pshared");
	return tap_done();
}
