#define _GNU_SOURCE
/*
 * Contents without mapping under concurrency: read() racing with a shrink
 * that re-roots the object, with punching, and with writes must only ever
 * see bytes that were at that offset (the old data or zeros), never the
 * data of another offset; SEEK_DATA racing with resizes stays sane; the
 * totals come back to their baseline.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define RUN_SECONDS 3

static atomic_int stop;
static int fd_a, fd_b;
static atomic_long bad_a, reads_a, bad_b, reads_b, bad_seek, resizes, punches;
static atomic_long first_bad_a = -1, first_bad_b = -1;

/* A: 4 MiB <-> 2 MiB (level 2 <-> 1); chunk 0 holds 0x11, chunk 1 0x33. */
static void *resizer(void *arg)
{
	static unsigned char buf[2 * MiB];

	(void)arg;
	memset(buf, 0x33, sizeof(buf));
	while (!stop) {
		if (ftruncate(fd_a, 2 * MiB) || ftruncate(fd_a, 4 * MiB) ||
		    pwrite(fd_a, buf, sizeof(buf), 2 * MiB) != sizeof(buf))
			atomic_fetch_add(&bad_a, 1000000);
		atomic_fetch_add(&resizes, 1);
	}
	return NULL;
}

static void *reader_a(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	unsigned char buf[PG];
	ssize_t n, i;

	while (!stop) {
		long long page = 512 + rand_r(&seed) % 512;

		n = pread(fd_a, buf, PG, page * PG);
		for (i = 0; i < n; i++)
			if (buf[i] != 0 && buf[i] != 0x33) {
				if (atomic_fetch_add(&bad_a, 1) == 0)
					first_bad_a = page << 8 | buf[i];
				break;
			}
		atomic_fetch_add(&reads_a, 1);
	}
	return NULL;
}

static void *seeker(void *arg)
{
	(void)arg;
	while (!stop) {
		off_t d = lseek(fd_a, 0, SEEK_DATA), h;

		/* Chunk 0 is always fully populated. */
		if (d != 0)
			atomic_fetch_add(&bad_seek, 1);
		h = lseek(fd_a, 0, SEEK_HOLE);
		if (h < 2 * MiB || h > 4 * MiB)
			atomic_fetch_add(&bad_seek, 1);
	}
	return NULL;
}

/* B: 2 MiB, page i holds byte (i % 250) + 1 or is a hole. */
static void *puncher(void *arg)
{
	static unsigned char buf[2 * MiB];
	unsigned seed = 7;
	long long i;

	(void)arg;
	for (i = 0; i < 512; i++)
		memset(buf + i * PG, (int)(i % 250) + 1, PG);
	while (!stop) {
		long long first = rand_r(&seed) % 512, n = 1 + rand_r(&seed) % 64;

		if (first + n > 512)
			n = 512 - first;
		if (fallocate(fd_b, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      first * PG, n * PG) ||
		    pwrite(fd_b, buf + first * PG, n * PG, first * PG) != n * PG)
			atomic_fetch_add(&bad_b, 1000000);
		atomic_fetch_add(&punches, 1);
	}
	return NULL;
}

static void *reader_b(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	static __thread unsigned char buf[64 * PG];
	ssize_t n, i;

	while (!stop) {
		long long first = rand_r(&seed) % 448;

		n = pread(fd_b, buf, 64 * PG, first * PG);
		for (i = 0; i < n; i++) {
			unsigned char want = (unsigned char)((first + i / PG) % 250 + 1);

			if (buf[i] != 0 && buf[i] != want) {
				if (atomic_fetch_add(&bad_b, 1) == 0)
					first_bad_b = (first + i / PG) << 8 | buf[i];
				break;
			}
		}
		atomic_fetch_add(&reads_b, 1);
	}
	return NULL;
}

int main(void)
{
	static unsigned char buf[2 * MiB];
	long base_m = total("morsels"), base_d = total("data_pages");
	long base_t = total("table_pages");
	pthread_t th[8];
	int i, n = 0;

	fd_a = open("/dev/morsel/cr_a", O_RDWR | O_CREAT | O_EXCL, 0600);
	fd_b = open("/dev/morsel/cr_b", O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd_a >= 0 && fd_b >= 0, "create");
	memset(buf, 0x11, sizeof(buf));
	tap_require(ftruncate(fd_a, 4 * MiB) == 0 &&
		    pwrite(fd_a, buf, 2 * MiB, 0) == 2 * MiB, "a");
	for (i = 0; i < 512; i++)
		memset(buf + i * PG, i % 250 + 1, PG);
	tap_require(pwrite(fd_b, buf, 2 * MiB, 0) == 2 * MiB, "b");

	pthread_create(&th[n++], NULL, resizer, NULL);
	pthread_create(&th[n++], NULL, reader_a, (void *)1);
	pthread_create(&th[n++], NULL, reader_a, (void *)2);
	pthread_create(&th[n++], NULL, seeker, NULL);
	pthread_create(&th[n++], NULL, puncher, NULL);
	pthread_create(&th[n++], NULL, reader_b, (void *)3);
	pthread_create(&th[n++], NULL, reader_b, (void *)4);
	/* At least RUN_SECONDS; on a slow kernel until the race has run. */
	sleep(RUN_SECONDS);
	for (i = 0; i < 20 * RUN_SECONDS &&
	     (atomic_load(&reads_a) <= 100 || atomic_load(&resizes) <= 10); i++)
		sleep(1);
	stop = 1;
	for (i = 0; i < n; i++)
		pthread_join(th[i], NULL);

	tap_ok(bad_a == 0,
	       "read racing with 4 MiB <-> 2 MiB re-rooting sees only old data or zeros (%ld bad of %ld reads over %ld resizes; first: page %ld byte 0x%lx)",
	       (long)bad_a, (long)reads_a, (long)resizes, (long)(first_bad_a >> 8),
	       (long)(first_bad_a & 0xff));
	tap_ok(reads_a > 100 && resizes > 10, "the race ran (%ld reads, %ld resizes)",
	       (long)reads_a, (long)resizes);
	tap_ok(bad_seek == 0, "SEEK_DATA/SEEK_HOLE racing with resizes stay sane (%ld bad)",
	       (long)bad_seek);
	tap_ok(bad_b == 0,
	       "read racing with punch+rewrite sees only the page's own data or zeros (%ld bad of %ld reads; first: page %ld byte 0x%lx)",
	       (long)bad_b, (long)reads_b, (long)(first_bad_b >> 8),
	       (long)(first_bad_b & 0xff));
	tap_ok(reads_b > 100 && punches > 10, "the race ran (%ld reads, %ld punches)",
	       (long)reads_b, (long)punches);
	close(fd_a);
	close(fd_b);
	unlink("/dev/morsel/cr_a");
	unlink("/dev/morsel/cr_b");
	tap_ok(total("morsels") == base_m && total("data_pages") == base_d &&
	       total("table_pages") == base_t, "totals back to the baseline");
	return tap_done();
}
