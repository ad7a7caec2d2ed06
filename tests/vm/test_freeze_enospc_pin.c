#define _GNU_SOURCE
/*
 * A FREEZE that fails for want of room (ENOSPC) must not change the
 * object (session-8 review of the long-term pin change).  A freeze gives
 * the object copies of frames that may be pinned; it used to allocate
 * and swap them one at a time and undo only its flag on failure, so an
 * io_uring fixed buffer registered on the object was silently detached
 * from pages of an object that stayed writable: a READ_FIXED afterwards
 * no longer reached them.  Now every copy is allocated before the first
 * swap.  Here, as uid 1000 on a size=4M mount, a 256-page buffer is
 * registered and unmapped, the mount is filled, and freezes race with a
 * thread taking every page that comes free; after each try a READ_FIXED
 * through the buffer must reach every page of the object whenever the
 * freeze failed.  60 tries (the bug showed within about 10).
 */
#include <fcntl.h>
#include <liburing.h>
#include <sys/mount.h>
#include <pthread.h>
#include "libmorsel.h"
#include "vm.h"

#define DIR	"/tmp/freeze-enospc"
#define OBJ	DIR "/o"
#define FILLER	DIR "/filler"
#define SRC	"/tmp/freeze-enospc.src"
#define NPG	256
#define LEN	(NPG * PG)

static unsigned char pat(long off, int gen)
{
	return (unsigned char)((off >> 12) * 7 + (off & 0xff) + 1 + gen * 13);
}

static int fixed_read(struct io_uring *r, int fd, void *buf, unsigned len)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	struct io_uring_cqe *cqe;
	int res;

	tap_require(sqe != NULL, "an SQE");
	io_uring_prep_read_fixed(sqe, fd, buf, len, 0, 0);
	tap_require(io_uring_submit(r) == 1, "submit");
	tap_require(io_uring_wait_cqe(r, &cqe) == 0, "wait");
	res = cqe->res;
	io_uring_cqe_seen(r, cqe);
	return res;
}

static int src_file(int gen)
{
	int fd = open(SRC, O_RDWR | O_CREAT | O_TRUNC, 0600);
	static unsigned char b[LEN];

	for (long i = 0; i < LEN; i++)
		b[i] = pat(i, gen);
	tap_require(fd >= 0 && pwrite(fd, b, LEN, 0) == LEN, "src");
	return fd;
}

/* Pages of the object (read()) that do not hold generation @gen. */
static int stale_pages(int fd, int gen)
{
	static unsigned char b[LEN];
	int stale = 0;

	tap_require(pread(fd, b, LEN, 0) == LEN, "pread");
	for (long pg = 0; pg < NPG; pg++)
		for (long i = pg * PG; i < (pg + 1) * PG; i++)
			if (b[i] != pat(i, gen)) {
				stale++;
				break;
			}
	return stale;
}

static volatile int racing;
static int ff;

/* After a delay, take every page that comes free. */
static int delay_us;
static void *racer(void *arg)
{
	unsigned char page[PG];
	long off = 40 * MiB / PG;

	(void)arg;
	memset(page, 0x33, PG);
	if (delay_us)
		usleep(delay_us);
	while (racing)
		if (pwrite(ff, page, PG, off * PG) == PG)
			off++;
	return NULL;
}

/* One try: 1 if a failed FREEZE left the pin detached. */
static int attempt(int n)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), src, r2, e, st;
	unsigned char *p, page[PG];
	struct io_uring r;
	struct iovec iov;
	pthread_t th;
	long filled = 0;

	tap_require(fd >= 0 && ftruncate(fd, LEN) == 0, "object");
	p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	memset(p, 0x11, LEN);
	tap_require(io_uring_queue_init(8, &r, 0) == 0, "ring");
	iov.iov_base = p;
	iov.iov_len = LEN;
	e = io_uring_register_buffers(&r, &iov, 1);
	tap_require(e == 0, "register (%d)", e);
	src = src_file(1);
	tap_require(fixed_read(&r, src, p, LEN) == LEN && stale_pages(fd, 1) == 0,
		    "READ_FIXED through the pin reaches the object");
	close(src);
	munmap(p, LEN);	/* a freeze needs that; the pin stays */

	ff = open(FILLER, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(ff >= 0 && ftruncate(ff, 64 * MiB) == 0, "filler");
	memset(page, 0x22, PG);
	while (pwrite(ff, page, PG, filled * PG) == PG)
		filled++;
	tap_require(errno == ENOSPC, "fill to ENOSPC (%ld pages)", filled);
	tap_require(fallocate(ff, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      0, PG) == 0, "one page free");
	delay_us = (n % 10) * 40;
	racing = 1;
	tap_require(pthread_create(&th, NULL, racer, NULL) == 0);
	r2 = freeze(fd);
	e = errno;
	racing = 0;
	pthread_join(th, NULL);
	st = mstat(fd).state & MORSEL_STATE_FROZEN;
	src = src_file(3);
	tap_require(fixed_read(&r, src, p, LEN) == LEN, "READ_FIXED");
	close(src);
	r2 = r2 ? -e : 0;
	e = stale_pages(fd, 3);
	if (n < 12 || (r2 && e))
		tap_diag("try %d: freeze %d, frozen %d, %d of %d pages detached",
			 n, r2, !!st, e, NPG);
	io_uring_unregister_buffers(&r);
	io_uring_queue_exit(&r);
	close(ff);
	unlink(FILLER);
	close(fd);
	unlink(OBJ);
	if (r2 == -ENOSPC && !st && e) {
		tap_ok(0, "a FREEZE that failed (ENOSPC, not frozen) detached %d of %d pinned pages: READ_FIXED no longer reaches the object", e, NPG);
		return 1;
	}
	return 0;
}

static void as_user(void)
{
	int n;

	for (n = 0; n < 60; n++)
		if (attempt(n))
			return;
	tap_ok(1, "no partial failed freeze in %d tries", n);
}

int main(void)
{
	watchdog(200);
	probe_init();
	mkdir(DIR, 0777);
	tap_require(mount("none", DIR, "morselfs", 0, "size=4M") == 0, "mount");
	chmod(DIR, 01777);
	tap_run_as(1000, 1000, as_user);
	umount(DIR);
	return tap_done();
}
