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
 *  - the links go with munmap; the object's hole links counter is back
 *    to zero (every module total back, checked by the suite).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "tap.h"
#include "vmtest.h"

#define CHUNK (2 * MiB)
#define NCHUNKS 64		/* 128 MiB objects */
#define RACE_CHUNKS 256
#define ROUNDS 3

static int freeze(int fd)
{
	struct morsel_freeze f = { .argsz = sizeof(f) };

	return ioctl(fd, MORSEL_IOC_FREEZE, &f);
}

static int split(int fd)
{
	struct morsel_split s = { .argsz = sizeof(s) };

	return ioctl(fd, MORSEL_IOC_SPLIT, &s) ? -1 : s.fd;
}

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

int main(void)
{
	int fd, base, child;

	tap_plan(13);

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
	child = split(base);
	tap_require(child >= 0, "split");
	holes_cost_nothing(child, "copy-on-write child");
	writes_are_seen(child, "copy-on-write child");
	close(child);
	close(base);
	unlink("/dev/morsel/ht_base");

	race();
	return tap_done();
}
