#define _GNU_SOURCE
/*
 * Holes read through a read-only mapping cost no memory: a 2 MiB chunk
 * without a page table links the module's one shared table of zero-page
 * leaves (the hole table).  What this checks:
 *  - reading every chunk of a sparse plain object, of a copy-on-write
 *    child and of a frozen object through read-only mappings allocates no
 *    table and no frame (STAT table_pages and data_pages stay);
 *  - such a link never hides data: once write() into the chunk returns,
 *    or a store through another (writable) mapping in another process
 *    is done, the read-only mapping shows the new bytes;
 *  - the same under a race: one thread maps, reads and unmaps chunks
 *    read-only while another writes them; a chunk whose write has
 *    returned must never read as zero;
 *  - the same when the unmap that drops the hole links is slow (5000
 *    read-only mappings): a store through another process's writable
 *    mapping, made while write() is still dropping them, is seen by a
 *    reader as soon as it is done (regression, session 6 review);
 *  - no hole link past the end: a read-only mapping of a chunk that ends
 *    past the size raises SIGBUS there, as any mapping does;
 *  - the links go with munmap; the object's hole links counter is back
 *    to zero (every module total back, checked by the suite).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "vm.h"

#define CHUNK (2 * MiB)
#define NCHUNKS 64		/* 128 MiB objects */
#define RACE_CHUNKS 256
#define ROUNDS 3

/* Read one byte of every chunk; how many were not zero. */
static int read_chunks(volatile unsigned char *p, int n)
{
	int i, nz = 0;

	for (i = 0; i < n; i++)
		nz += p[(unsigned long)i * CHUNK + 4096 + 7] != 0;
	return nz;
}

/* Holes of @fd (size NCHUNKS * CHUNK) read read-only: no memory. */
static void holes_cost_nothing(int fd, const char *what)
{
	struct morsel_stat before = mstat(fd), after;
	volatile unsigned char *p;
	int nz;

	p = mmap(NULL, NCHUNKS * CHUNK, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	nz = read_chunks(p, NCHUNKS);
	after = mstat(fd);
	tap_ok(nz == 0 && after.table_pages == before.table_pages &&
	       after.data_pages == before.data_pages &&
	       after.links == NCHUNKS,
	       "%s: %d chunks of holes read through %llu links: tables %llu -> %llu, data %llu -> %llu",
	       what, NCHUNKS, (unsigned long long)after.links,
	       (unsigned long long)before.table_pages,
	       (unsigned long long)after.table_pages,
	       (unsigned long long)before.data_pages,
	       (unsigned long long)after.data_pages);
	munmap((void *)p, NCHUNKS * CHUNK);
	tap_ok(mstat(fd).links == 0, "%s: munmap removes the links", what);
}

/* A read-only mapping of holes sees what write() and a store put there. */
static void writes_are_seen(int fd, const char *what)
{
	volatile unsigned char *p;
	unsigned char v = 0x5c;
	pid_t pid;
	int st;

	p = mmap(NULL, NCHUNKS * CHUNK, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	tap_require(read_chunks(p, NCHUNKS) == 0, "holes");
	tap_ok(pwrite(fd, &v, 1, 10 * CHUNK + 4096 + 7) == 1 &&
	       p[10 * CHUNK + 4096 + 7] == 0x5c && mstat(fd).table_pages > 0,
	       "%s: write() into a hole chunk: the read-only mapping shows it", what);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		volatile unsigned char *w = mmap(NULL, NCHUNKS * CHUNK,
						 PROT_READ | PROT_WRITE,
						 MAP_SHARED, fd, 0);

		if (w == MAP_FAILED)
			_exit(2);
		w[20 * CHUNK + 4096 + 7] = 0x6d;
		_exit(0);
	}
	st = wait_status(pid);
	tap_ok(CHILD_OK(st) && p[20 * CHUNK + 4096 + 7] == 0x6d,
	       "%s: a store by another process into a hole chunk is seen", what);
	tap_ok(read_chunks(p, NCHUNKS) == 2,
	       "%s: the other %d chunks still read zero", what, NCHUNKS - 2);
	munmap((void *)p, NCHUNKS * CHUNK);
}

/* ------------------------------------------------------------- the race */

static int race_fd;
static atomic_int written[RACE_CHUNKS];
static atomic_int stale, reads;

/*
 * Map the object read-only, touch every chunk (linking the hole table
 * where it has none), then read every chunk again, while the main thread
 * writes them one by one: a chunk whose write() had returned before a
 * read must show the byte.
 */
static void *reader(void *arg)
{
	volatile unsigned char *p;
	int round, c, was;

	(void)arg;
	for (round = 0; round < ROUNDS * 4; round++) {
		p = mmap(NULL, RACE_CHUNKS * CHUNK, PROT_READ, MAP_SHARED,
			 race_fd, 0);
		if (p == MAP_FAILED)
			continue;
		for (c = 0; c < RACE_CHUNKS; c++)
			(void)p[(unsigned long)c * CHUNK + 777];
		for (c = 0; c < RACE_CHUNKS; c++) {
			was = atomic_load(&written[c]);
			if (was && p[(unsigned long)c * CHUNK + 777] !=
			    (unsigned char)(c | 1))
				atomic_fetch_add(&stale, 1);
			atomic_fetch_add(&reads, 1);
		}
		munmap((void *)p, RACE_CHUNKS * CHUNK);
	}
	return NULL;
}

static void race(void)
{
	pthread_t t;
	int c;

	race_fd = mkobj("/dev/morsel/ht_race", RACE_CHUNKS * CHUNK);
	tap_require(pthread_create(&t, NULL, reader, NULL) == 0, "thread");
	for (c = 0; c < RACE_CHUNKS; c++) {
		unsigned char v = c | 1;

		usleep(c % 7 * 200);
		tap_require(pwrite(race_fd, &v, 1, (off_t)c * CHUNK + 777) == 1,
			    "pwrite");
		atomic_store(&written[c], 1);
	}
	pthread_join(t, NULL);
	tap_ok(atomic_load(&stale) == 0,
	       "race: %d read-only map+read of chunks while they were written: %d stale zeros",
	       atomic_load(&reads), atomic_load(&stale));
	close(race_fd);
	unlink("/dev/morsel/ht_race");
}

/*
 * The writer W (first in i_mmap), NFILL read-only mappings with hole links,
 * then the reader R; write() of another page of the chunk makes the table
 * and drops the hole links, slowly; W stores meanwhile, then R reads.
 */
#define NFILL 5000

struct slow {
	atomic_int ready, go, stored, verdict;	/* verdict: 1 fresh, 2 stale */
};

static void slow_unmap(void)
{
	struct slow *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fd = mkobj("/dev/morsel/ht_slow", 4 * MiB), i;
	pid_t w, f, r;
	char c = 0x11;

	tap_require(sh != MAP_FAILED && pwrite(fd, &c, 1, 2 * MiB) == 1, "setup");
	fflush(stdout);
	w = fork();
	if (w == 0) {
		volatile char *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);

		if (p == MAP_FAILED)
			_exit(2);
		atomic_fetch_add(&sh->ready, 1);
		while (!atomic_load(&sh->go))
			;
		usleep(2000);	/* write() has made the table by now */
		p[7 * 4096] = (char)0xab;
		atomic_store(&sh->stored, 1);
		_exit(0);
	}
	while (atomic_load(&sh->ready) < 1)
		usleep(1000);
	f = fork();
	if (f == 0) {
		for (i = 0; i < NFILL; i++) {
			volatile char *p = mmap(NULL, CHUNK, PROT_READ,
						MAP_SHARED, fd, 0);

			if (p == MAP_FAILED)
				_exit(2);
			(void)p[0];
		}
		atomic_fetch_add(&sh->ready, 1);
		pause();
		_exit(0);
	}
	while (atomic_load(&sh->ready) < 2)
		usleep(1000);
	r = fork();
	if (r == 0) {
		volatile char *p = mmap(NULL, CHUNK, PROT_READ, MAP_SHARED, fd, 0);

		if (p == MAP_FAILED)
			_exit(2);
		(void)p[7 * 4096];
		atomic_fetch_add(&sh->ready, 1);
		while (!atomic_load(&sh->stored))
			;
		atomic_store(&sh->verdict, p[7 * 4096] == (char)0xab ? 1 : 2);
		_exit(0);
	}
	while (atomic_load(&sh->ready) < 3)
		usleep(1000);
	atomic_store(&sh->go, 1);
	tap_require(pwrite(fd, &c, 1, 5 * 4096) == 1, "write");
	wait_status(r);
	wait_status(w);
	kill(f, SIGKILL);
	wait_status(f);
	tap_ok(atomic_load(&sh->verdict) == 1,
	       "slow unmap of %d hole links: a store made meanwhile is seen by a read-only mapping (%s)",
	       NFILL, atomic_load(&sh->verdict) == 1 ? "fresh" :
	       atomic_load(&sh->verdict) == 2 ? "stale zero" : "no verdict");
	munmap(sh, 4096);
	close(fd);
	unlink("/dev/morsel/ht_slow");
}

/* A chunk that ends past the size is not linked to the hole table. */
static void past_the_end(void)
{
	int fd = mkobj("/dev/morsel/ht_eof", 3 * MiB), frozen;
	unsigned char v = 1;
	volatile unsigned char *p;
	struct morsel_freeze fz = { .argsz = sizeof(fz) };

	probe_init();
	p = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	tap_ok(try_read(p + 2 * MiB + 8192, &v) == 0 && v == 0 &&
	       try_read(p + 3 * MiB + 4096, &v) == SIGBUS &&
	       try_read(p + 4096, &v) == 0 && try_read(p + 3 * MiB, &v) == SIGBUS,
	       "read-only mapping of a 3 MiB object: holes read zero, past the end SIGBUS");
	munmap((void *)p, 4 * MiB);
	frozen = ioctl(fd, MORSEL_IOC_FREEZE, &fz);
	p = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(!frozen && p != MAP_FAILED, "frozen mmap");
	tap_ok(try_read(p + 2 * MiB + 8192, &v) == 0 && v == 0 &&
	       try_read(p + 3 * MiB + 4096, &v) == SIGBUS,
	       "the same frozen: holes read zero, past the end SIGBUS");
	munmap((void *)p, 4 * MiB);
	close(fd);
	unlink("/dev/morsel/ht_eof");
}

int main(void)
{
	int fd, base, child;

	fd = mkobj("/dev/morsel/ht_plain", NCHUNKS * CHUNK);
	holes_cost_nothing(fd, "plain object");
	writes_are_seen(fd, "plain object");
	close(fd);
	unlink("/dev/morsel/ht_plain");

	/* Data only past the chunks read: they are holes of the child too. */
	base = mkobj("/dev/morsel/ht_base", (NCHUNKS + 1) * CHUNK);
	tap_require(pwrite(base, "b", 1, NCHUNKS * CHUNK) == 1 &&
		    freeze(base) == 0, "base");
	holes_cost_nothing(base, "frozen object");
	child = split_flags(base, 0);
	tap_require(child >= 0, "split");
	holes_cost_nothing(child, "copy-on-write child");
	writes_are_seen(child, "copy-on-write child");
	close(child);
	close(base);
	unlink("/dev/morsel/ht_base");

	race();
	slow_unmap();
	past_the_end();
	return tap_done();
}
