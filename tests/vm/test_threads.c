#define _GNU_SOURCE
/*
 * Races between faults and address-space changes: two threads store to and
 * load from random pages of a 256 MiB mapping while a third unmaps/remaps
 * (MAP_FIXED), mprotects, mremaps, eagerly maps, punches it and forks.  Faulting
 * threads take SIGSEGV while the range is unmapped or read-only and carry
 * on (siglongjmp).  Nothing may crash or warn, every load after a store
 * sees the store (or zero after a punch), and the totals return to their
 * baseline.  argv[1]: seconds to run (default 3).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/threads"
#define SIZE (256 * MiB)
#define NFAULT 2

static int fd;
static unsigned char *base, *scratch;
static atomic_int stop;
static atomic_long nops[9];
static atomic_long all_stores;	/* progress, read while running */
static atomic_int fork_failures;

static __thread sigjmp_buf fault_jb;
static __thread volatile sig_atomic_t in_probe;

static void fault_handler(int sig)
{
	if (!in_probe) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	siglongjmp(fault_jb, sig);
}

struct faulter {
	pthread_t th;
	int id;
	long stores, loads, faults, bus, mismatches;
};

static void *faulter_main(void *arg)
{
	struct faulter *f = arg;
	unsigned seed = 12345 + f->id;
	volatile unsigned char *p;
	unsigned char v, got;
	int sig;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned long page = rand_r(&seed) % (SIZE / 4096);

		p = base + page * 4096 + f->id;
		v = (unsigned char)(rand_r(&seed) | 1);
		in_probe = 1;
		sig = sigsetjmp(fault_jb, 1);
		if (sig == 0) {
			*p = v;
			f->stores++;
			atomic_fetch_add_explicit(&all_stores, 1,
						  memory_order_relaxed);
			got = *p;
			f->loads++;
			/* A punch may zero it in between. */
			if (got != v && got != 0)
				f->mismatches++;
		} else if (sig == SIGBUS) {
			f->bus++;
		} else {
			f->faults++;
		}
		in_probe = 0;
	}
	return NULL;
}

static void remap_all(void)
{
	void *r = mmap(base, SIZE, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, fd, 0);

	if (r != base)
		tap_fatal("remap at %p", (void *)base);
}

static void *mutator_main(void *arg)
{
	unsigned seed = 777;

	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int op = rand_r(&seed) % 9;
		unsigned long a = (rand_r(&seed) % (SIZE / 4096)) * 4096;
		unsigned long l = ((rand_r(&seed) % 1024) + 1) * 4096;
		unsigned long g = (rand_r(&seed) % (SIZE / (2 * MiB))) * 2 * MiB;

		if (a + l > SIZE)
			l = SIZE - a;
		switch (op) {
		case 0:		/* munmap everything, map again */
			munmap(base, SIZE);
			usleep(100);
			remap_all();
			break;
		case 1:		/* replace in place */
			remap_all();
			break;
		case 2:		/* whole range read-only, then back */
			mprotect(base, SIZE, PROT_READ);
			usleep(100);
			mprotect(base, SIZE, PROT_READ | PROT_WRITE);
			break;
		case 3:		/* a random piece read-only or none */
			mprotect(base + a, l, rand_r(&seed) & 1 ? PROT_READ
								 : PROT_NONE);
			usleep(50);
			mprotect(base + a, l, PROT_READ | PROT_WRITE);
			break;
		case 4:		/* unmap a random piece, map it again */
			munmap(base + a, l);
			usleep(50);
			if (mmap(base + a, l, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_FIXED, fd, a) != base + a)
				tap_fatal("remap piece");
			break;
		case 5: {	/* eager map of a random range */
			struct morsel_map m;

			memset(&m, 0, sizeof(m));
			m.argsz = sizeof(m);
			m.addr = (uintptr_t)(base + a);
			m.length = l;
			ioctl(fd, MORSEL_IOC_MAP, &m);
			break;
		}
		case 6:		/* move a granule away and back */
			if (mremap(base + g, 2 * MiB, 2 * MiB,
				   MREMAP_MAYMOVE | MREMAP_FIXED, scratch) !=
			    scratch)
				break;
			usleep(50);
			if (mremap(scratch, 2 * MiB, 2 * MiB,
				   MREMAP_MAYMOVE | MREMAP_FIXED, base + g) !=
			    base + g)
				tap_fatal("mremap back");
			if (mmap(scratch, 2 * MiB, PROT_NONE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
				 0) != scratch)
				tap_fatal("scratch");
			break;
		case 7:		/* punch a random piece */
			fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  a, l);
			break;
		case 8: {	/* fork while the others fault */
			pid_t pid = fork();
			int st;

			if (pid == 0) {
				for (int k = 0; k < 64; k++)
					base[(rand_r(&seed) % (SIZE / 4096)) *
					     4096 + 7] = 1;
				_exit(0);
			}
			if (pid < 0 || waitpid(pid, &st, 0) != pid ||
			    !WIFEXITED(st) || WEXITSTATUS(st))
				atomic_fetch_add(&fork_failures, 1);
			break;
		}
		}
		atomic_fetch_add(&nops[op], 1);
	}
	return NULL;
}

static long all_ops(void)
{
	long ops = 0;
	int i;

	for (i = 0; i < 9; i++)
		ops += atomic_load(&nops[i]);
	return ops;
}

static int enough_progress(void)
{
	return atomic_load(&all_stores) > 1000 && all_ops() > 50;
}

int main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 3;
	long links0 = total("links"), mappers0 = total("mappers");
	long data0 = total("data_pages"), tables0 = total("table_pages");
	struct faulter f[NFAULT];
	long stores = 0, faults = 0, bus = 0, mism = 0, ops = 0;
	struct sigaction sa;
	pthread_t mut;
	int i;

	fd = open(PATH, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(fd >= 0 && ftruncate(fd, SIZE) == 0);
	base = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(base != MAP_FAILED);
	scratch = mmap(NULL, 4 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	tap_require(scratch != MAP_FAILED);
	munmap(scratch, 4 * MiB);
	scratch = (unsigned char *)(((uintptr_t)scratch + 2 * MiB - 1) &
				    ~(2 * MiB - 1));
	tap_require(mmap(scratch, 2 * MiB, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    scratch);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fault_handler;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);

	for (i = 0; i < NFAULT; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].id = i;
		tap_require(pthread_create(&f[i].th, NULL, faulter_main,
					   &f[i]) == 0);
	}
	tap_require(pthread_create(&mut, NULL, mutator_main, NULL) == 0);
	/*
	 * Run at least @secs, and on a slow kernel (KASAN, lockdep) on until
	 * the race has had the minimum it needs to mean anything, within a
	 * generous bound: progress is counted, not timed.
	 */
	sleep(secs);
	for (i = 0; i < 20 * secs && !enough_progress(); i++)
		sleep(1);
	atomic_store(&stop, 1);
	pthread_join(mut, NULL);
	for (i = 0; i < NFAULT; i++) {
		pthread_join(f[i].th, NULL);
		stores += f[i].stores;
		faults += f[i].faults;
		bus += f[i].bus;
		mism += f[i].mismatches;
	}
	for (i = 0; i < 9; i++)
		ops += nops[i];
	tap_diag("%ld stores, %ld SIGSEGV, %ld SIGBUS, %ld mismatches; %ld "
		 "mutations (unmap %ld replace %ld mprot %ld mprot-piece %ld "
		 "unmap-piece %ld ioc-map %ld mremap %ld punch %ld fork %ld)",
		 stores, faults, bus, mism, ops, (long)nops[0], (long)nops[1],
		 (long)nops[2], (long)nops[3], (long)nops[4], (long)nops[5],
		 (long)nops[6], (long)nops[7], (long)nops[8]);
	tap_ok(stores > 1000 && ops > 50,
	       "faulting threads and mutator made progress");
	tap_ok(mism == 0, "every load after a store saw it (or a punch)");
	tap_ok(bus == 0, "no SIGBUS inside the object");
	tap_ok(fork_failures == 0, "children forked meanwhile stored and "
	       "exited cleanly (%d failures)", (int)fork_failures);
	{
		struct morsel_stat s = mstat(fd);
		unsigned long off, bad = 0;
		unsigned char c;

		tap_ok(s.mappers >= 1, "mapping still there (%llu VMAs, %llu "
		       "links, %llu data pages)", s.mappers, s.links,
		       s.data_pages);
		for (off = 0; off < SIZE; off += 4 * MiB + 4096)
			if (pread(fd, &c, 1, off) != 1 || c != base[off])
				bad++;
		tap_ok(!bad, "mapping and read() agree afterwards");
	}
	munmap(base, SIZE);
	munmap(scratch, 2 * MiB);
	close(fd);
	unlink(PATH);
	tap_ok(total("links") == links0 && total("mappers") == mappers0 &&
	       total("data_pages") == data0 && total("table_pages") == tables0,
	       "totals back to baseline (links %ld mappers %ld data %ld "
	       "tables %ld)", total("links") - links0,
	       total("mappers") - mappers0, total("data_pages") - data0,
	       total("table_pages") - tables0);
	return tap_done();
}
