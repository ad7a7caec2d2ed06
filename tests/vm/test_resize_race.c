#define _GNU_SOURCE
/*
 * Resizes of a mapped object, and of a mapped copy-on-write child, racing
 * everything that reaches its memory: stores and loads through linked,
 * read-only (twin) and page-by-page mappings, process_vm_readv/writev,
 * /proc/self/mem, vmsplice, MADV_POPULATE_WRITE and MADV_DONTNEED, as an
 * unprivileged user (session-7 review).  SIGBUS past the end is expected;
 * every resize must succeed, nothing may hang and the kernel log must stay
 * clean.  On four CPUs this hung within seconds when a fault held hole_sem
 * while it waited for a replacement that waited for hole_sem
 * (fault_pmd()); scripts/test.sh also runs it alone on four CPUs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include "vm.h"

#define DIR	"/dev/morsel/resize-race"
#define BIG	(1 * GiB)

static atomic_int quit;
static int fd;
static unsigned char *rw, *ro, *pp;
static __thread sigjmp_buf tjb;

static void on_sig(int sig)
{
	(void)sig;
	siglongjmp(tjb, 1);
}

static void *toucher(void *arg)
{
	long id = (long)arg;
	volatile unsigned long n = id * 7919;

	while (!atomic_load(&quit)) {
		long off = (long)((n = n * 6364136223846793005ULL + 1) >> 20) % BIG;

		off &= ~(PG - 1);
		if (sigsetjmp(tjb, 1))
			continue;
		switch (n % 4) {
		case 0: rw[off] = (unsigned char)n; break;
		case 1: (void)*(volatile unsigned char *)(ro + off); break;
		case 2: pp[off % (64 * KiB)] = 1; break;
		case 3: (void)*(volatile unsigned char *)(rw + off); break;
		}
	}
	return NULL;
}

static void *gupper(void *arg)
{
	int mem = open("/proc/self/mem", O_RDWR), pfd[2];
	unsigned long n = (long)arg;
	char buf[2 * PG];

	(void)!pipe(pfd);
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	fcntl(pfd[1], F_SETFL, O_NONBLOCK);
	while (!atomic_load(&quit)) {
		long off = (long)((n = n * 6364136223846793005ULL + 1) >> 20) % BIG;
		struct iovec l = { buf, sizeof(buf) }, r = { rw + (off & ~(PG - 1)), sizeof(buf) };

		switch (n % 6) {
		case 0: (void)!process_vm_readv(getpid(), &l, 1, &r, 1, 0); break;
		case 1: (void)!process_vm_writev(getpid(), &l, 1, &r, 1, 0); break;
		case 2: (void)!pwrite(mem, buf, sizeof(buf), (uintptr_t)r.iov_base); break;
		case 3: (void)!madvise((void *)((uintptr_t)r.iov_base & ~(2 * MiB - 1)),
				      2 * MiB, MADV_POPULATE_WRITE); break;
		case 4: (void)!vmsplice(pfd[1], &r, 1, SPLICE_F_NONBLOCK);
			(void)!read(pfd[0], buf, sizeof(buf)); break;
		case 5: (void)!madvise((void *)((uintptr_t)r.iov_base & ~(2 * MiB - 1)),
				      2 * MiB, MADV_DONTNEED); break;
		}
	}
	close(mem);
	return NULL;
}

static void run(const char *what)
{
	pthread_t t[6];
	struct sigaction sa = { .sa_handler = on_sig, .sa_flags = SA_NODEFER };
	long sizes[] = { BIG, 3 * MiB + 100, 2 * MiB, 5000, 0, 700 * MiB, 4 * MiB, BIG };
	int i, errs = 0;

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	rw = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ro = mmap(NULL, BIG, PROT_READ, MAP_SHARED, fd, 0);
	pp = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(rw != MAP_FAILED && ro != MAP_FAILED && pp != MAP_FAILED, "maps");
	atomic_store(&quit, 0);
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, toucher, (void *)(long)i);
	for (i = 4; i < 6; i++)
		pthread_create(&t[i], NULL, gupper, (void *)(long)i);
	for (int round = 0; round < 400; round++)
		errs += ftruncate(fd, sizes[round % 8]) != 0;
	errs += ftruncate(fd, BIG) != 0;
	atomic_store(&quit, 1);
	for (i = 0; i < 6; i++)
		pthread_join(t[i], NULL);
	munmap(rw, BIG);
	munmap(ro, BIG);
	munmap(pp, 64 * KiB);
	tap_ok(!errs, "%s: 400 resizes under traffic (%d errors)", what, errs);
}

static void as_user(void)
{
	char page[PG];
	int base, child;

	fd = mkobj(DIR "/r", BIG);
	run("plain object");
	close(fd);
	unlink(DIR "/r");

	base = mkobj(DIR "/base", BIG);
	memset(page, 'b', PG);
	for (long off = 0; off < BIG; off += 3 * MiB + PG)
		tap_require(pwrite(base, page, PG, off) == PG, "base");
	tap_require(freeze(base) == 0, "freeze");
	child = split(base);
	tap_require(child >= 0, "split");
	fd = child;
	run("child");
	close(child);
	close(base);
	unlink(DIR "/base");
}

int main(void)
{
	mkdir(DIR, 0755);
	tap_require(chown(DIR, 1000, 1000) == 0, "chown");
	watchdog(280);
	tap_run_as(1000, 1000, as_user);
	rmdir(DIR);
	return tap_done();
}
