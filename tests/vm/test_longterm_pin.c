#define _GNU_SOURCE
/*
 * Writable long-term pins (issue 12, item 2; docs/gup.md, decision 10).
 * A writable mapping of a plain object (neither frozen nor a child) has
 * no write notification, so the core mm lets FOLL_LONGTERM | FOLL_WRITE
 * pin it: io_uring fixed buffers are the user here.  Checked:
 *  - registering a linked mapping and a mapping made page by page works,
 *    as on shmem;
 *  - a READ_FIXED into the registered buffer lands in the object (the
 *    mapping and read() see it), and SCAN reports those pages dirty even
 *    when a CLEAN ran while they were pinned and the unpin did not mark
 *    them (io_uring never does): the regression this test was written
 *    for; a WRITE_FIXED sends the object's bytes;
 *  - stores through a plain mapping after a CLEAN are dirty again, linked
 *    (the core makes the leaf writable) and page by page;
 *  - FREEZE fails with EBUSY while such a mapping exists (also after
 *    mprotect(PROT_READ), in a fork child, after a VMA split and an
 *    mremap), and works once it is gone, pins or not: a READ_FIXED after
 *    the freeze does not change the frozen contents;
 *  - a truncate and the object's removal leave pinned frames alive
 *    (WRITE_FIXED still sends the old bytes) and nothing leaks after the
 *    unregister;
 *  - where the pin is refused, it is EFAULT: a mapping made read-only and
 *    then mprotect()ed writable, and a copy-on-write child's mapping.
 */
#include <liburing.h>
#include "libmorsel.h"
#include "vm.h"

#define OBJ	"/dev/morsel/ltpin"
#define SRC	"/tmp/ltpin.src"
#define DST	"/tmp/ltpin.dst"
#define SIZE	(4 * MiB)

static unsigned char pat(long off, int gen)
{
	return (unsigned char)((off >> 12) * 7 + (off & 0xff) + 1 + gen * 13);
}

/* A ring with @buf[0..@len) registered; -errno from the register. */
static int ring_with(struct io_uring *r, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int err;

	tap_require(io_uring_queue_init(8, r, 0) == 0, "io_uring_queue_init");
	err = io_uring_register_buffers(r, &iov, 1);
	if (err)
		io_uring_queue_exit(r);
	return err;
}

/*
 * Unregister first: that unpins now, where tearing the ring down alone
 * leaves it to a worker that may run after the next step.
 */
static void ring_done(struct io_uring *r)
{
	tap_require(io_uring_unregister_buffers(r) == 0, "unregister");
	io_uring_queue_exit(r);
}

/* One READ_FIXED (@write 0) or WRITE_FIXED: the completion's result. */
static int fixed_io(struct io_uring *r, int write, int fd, void *buf,
		    unsigned len, off_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	struct io_uring_cqe *cqe;
	int res;

	tap_require(sqe != NULL, "an SQE");
	if (write)
		io_uring_prep_write_fixed(sqe, fd, buf, len, off, 0);
	else
		io_uring_prep_read_fixed(sqe, fd, buf, len, off, 0);
	tap_require(io_uring_submit(r) == 1, "submit");
	tap_require(io_uring_wait_cqe(r, &cqe) == 0, "wait for the CQE");
	res = cqe->res;
	io_uring_cqe_seen(r, cqe);
	return res;
}

static int file_of(const char *path, long len, int gen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	unsigned char *b = malloc(len);
	long i;

	tap_require(fd >= 0 && b != NULL, "%s", path);
	for (i = 0; i < len; i++)
		b[i] = pat(i, gen);
	tap_require(pwrite(fd, b, len, 0) == len, "fill %s", path);
	free(b);
	return fd;
}

static long bad_bytes(const unsigned char *p, long len, int gen)
{
	long i, bad = 0;

	for (i = 0; i < len; i++)
		bad += p[i] != pat(i, gen);
	return bad;
}

static void *map(int fd, size_t len, int prot, off_t off)
{
	void *p = mmap(NULL, len, prot, MAP_SHARED, fd, off);

	tap_require(p != MAP_FAILED, "mmap %zu bytes", len);
	return p;
}

/* SCAN without cleaning: the dirty bitmap of the whole object. */
static unsigned long long scan_dirty(int fd, uint64_t *bits, unsigned flags)
{
	struct morsel_scan sc;

	memset(bits, 0, SIZE / PG / 8);
	tap_require(morsel_scan(fd, 0, SIZE, flags, 0, NULL, NULL, bits,
				&sc) == 0, "SCAN");
	return sc.dirty_pages;
}

static int bits_set(const uint64_t *bits, long first, long n)
{
	long i;

	for (i = first; i < first + n; i++)
		if (!(bits[i / 64] >> (i % 64) & 1))
			return 0;
	return 1;
}

static void takes_pins_and_tracks_them(void)
{
	uint64_t dirty[SIZE / PG / 64];
	int fd = mkobj(OBJ, SIZE), src = file_of(SRC, MiB, 1), dst, err;
	unsigned char *p, *small, *shm, *back = malloc(MiB);
	struct io_uring r, rs;

	tap_require(back != NULL);
	p = map(fd, SIZE, PROT_READ | PROT_WRITE, 0);
	memset(p, 0x5a, SIZE);
	shm = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tap_require(shm != MAP_FAILED);
	err = ring_with(&rs, shm, 2 * MiB);
	if (err == -ENOSYS || err == -EPERM) {
		tap_skip("io_uring fixed buffers unavailable here (%d)", err);
		munmap(shm, 2 * MiB);
		goto out;
	}
	tap_ok(err == 0, "shmem takes io_uring fixed buffers (%d)", err);
	if (!err)
		ring_done(&rs);
	munmap(shm, 2 * MiB);

	err = ring_with(&r, p, SIZE);
	tap_ok(err == 0 && links(fd) > 0,
	       "a writable linked morsel mapping takes them too (%d, %lu links)",
	       err, links(fd));
	if (err)
		goto out;
	/* Pinned now: a CLEAN reports them, and must not forget them. */
	scan_dirty(fd, dirty, MORSEL_SCAN_CLEAN);
	tap_ok(fixed_io(&r, 0, src, p + MiB, MiB, 0) == MiB,
	       "READ_FIXED of 1 MiB into the registered morsel buffer");
	tap_ok(bad_bytes(p + MiB, MiB, 1) == 0,
	       "  the mapping shows the file's bytes");
	tap_ok(pread(fd, back, MiB, MiB) == MiB && bad_bytes(back, MiB, 1) == 0,
	       "  and read() of the object too");
	dst = open(DST, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(dst >= 0);
	tap_ok(fixed_io(&r, 1, dst, p + MiB, MiB, 0) == MiB &&
	       pread(dst, back, MiB, 0) == MiB && bad_bytes(back, MiB, 1) == 0,
	       "WRITE_FIXED from the object sends its bytes");
	close(dst);
	unlink(DST);
	err = freeze(fd) ? errno : 0;
	tap_ok(err == EBUSY, "FREEZE while a writable mapping exists: EBUSY (%s)",
	       strerror(err));
	ring_done(&r);	/* unpins, without marking dirty */
	scan_dirty(fd, dirty, 0);
	tap_ok(bits_set(dirty, MiB / PG, MiB / PG),
	       "after the unpin, SCAN still reports the 256 pages written through the pin since the CLEAN");

	/* Stores after a CLEAN, through a link and through a 64 KiB map. */
	scan_dirty(fd, dirty, MORSEL_SCAN_CLEAN);
	small = map(fd, 64 * KiB, PROT_READ | PROT_WRITE, 3 * MiB);
	tap_ok(scan_dirty(fd, dirty, 0) == 0, "a CLEAN leaves nothing dirty");
	p[7 * PG] = 1;
	small[PG] = 2;
	tap_ok(scan_dirty(fd, dirty, 0) == 2 && bits_set(dirty, 7, 1) &&
	       bits_set(dirty, 3 * MiB / PG + 1, 1),
	       "stores through a linked and a page-by-page plain mapping are dirty again");
	err = ring_with(&r, small, 64 * KiB);
	tap_ok(err == 0, "a page-by-page mapping takes a writable pin (%d)", err);
	if (!err)
		ring_done(&r);
	munmap(small, 64 * KiB);
out:
	munmap(p, SIZE);
	close(src);
	unlink(SRC);
	close(fd);
	unlink(OBJ);
	free(back);
}

/* A freeze with pins alive but no plain mapping: the pin keeps writing elsewhere. */
static void freeze_after_unmap(void)
{
	int fd = mkobj(OBJ, SIZE), src = file_of(SRC, MiB, 2), err;
	unsigned char *p = map(fd, SIZE, PROT_READ | PROT_WRITE, 0);
	unsigned char *back = malloc(MiB);
	struct io_uring r;
	long i, bad = 0;

	tap_require(back != NULL);
	memset(p, 0x33, SIZE);
	err = ring_with(&r, p, SIZE);
	tap_require(err == 0, "register (%d)", err);
	munmap(p, SIZE);
	tap_ok(freeze(fd) == 0, "FREEZE once the mapping is gone, pins or not");
	tap_ok(fixed_io(&r, 0, src, p, MiB, 0) == MiB,
	       "  a READ_FIXED after the freeze completes");
	tap_require(pread(fd, back, MiB, 0) == MiB);
	for (i = 0; i < MiB; i++)
		bad += back[i] != 0x33;
	tap_ok(bad == 0, "  and the frozen contents did not change (%ld bad)", bad);
	ring_done(&r);
	close(src);
	unlink(SRC);
	close(fd);
	unlink(OBJ);
	free(back);
}

static void pinned_frames_outlive_the_object(void)
{
	long data0 = total("data_pages");
	int fd = mkobj(OBJ, SIZE), dst, err;
	unsigned char *p = map(fd, SIZE, PROT_READ | PROT_WRITE, 0);
	unsigned char *back = malloc(MiB);
	struct io_uring r;
	long i;

	tap_require(back != NULL);
	for (i = 0; i < MiB; i++)
		p[i] = pat(i, 3);
	err = ring_with(&r, p, MiB);
	tap_require(err == 0, "register (%d)", err);
	munmap(p, SIZE);
	tap_require(ftruncate(fd, 0) == 0);
	close(fd);
	unlink(OBJ);
	tap_ok(total("data_pages") == data0,
	       "truncate and unlink: the object lets go of its frames (%ld, %ld)",
	       total("data_pages"), data0);
	dst = open(DST, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(dst >= 0);
	tap_ok(fixed_io(&r, 1, dst, p, MiB, 0) == MiB &&
	       pread(dst, back, MiB, 0) == MiB && bad_bytes(back, MiB, 3) == 0,
	       "  the pinned frames live on: WRITE_FIXED sends the old bytes");
	ring_done(&r);
	close(dst);
	unlink(DST);
	free(back);
}

static void refused_where_notified(void)
{
	int fd = mkobj(OBJ, SIZE), cfd, err;
	unsigned char *p, *c;
	struct io_uring r;

	p = map(fd, SIZE, PROT_READ, 0);
	tap_require(mprotect(p, SIZE, PROT_READ | PROT_WRITE) == 0);
	p[0] = 1;
	err = ring_with(&r, p, SIZE);
	tap_ok(err == -EFAULT,
	       "a mapping made read-only, then mprotect()ed writable: EFAULT (%d)",
	       err);
	if (!err)
		ring_done(&r);
	tap_ok(freeze(fd) == 0,
	       "  it keeps write notification: FREEZE works while it exists");
	tap_ok(try_write(p, 2) == SIGSEGV, "  and its stores then fault");
	munmap(p, SIZE);
	cfd = split(fd);
	tap_require(cfd >= 0);
	c = map(cfd, SIZE, PROT_READ | PROT_WRITE, 0);
	err = ring_with(&r, c, SIZE);
	tap_ok(err == -EFAULT, "a copy-on-write child's mapping: EFAULT (%d)",
	       err);
	if (!err)
		ring_done(&r);
	munmap(c, SIZE);
	close(cfd);
	close(fd);
	unlink(OBJ);
}

/* The count of plain mappings follows every copy and split of the VMA. */
static void freeze_waits_for_every_copy(void)
{
	int fd = mkobj(OBJ, 8 * MiB), pfd[2], st;
	unsigned char *p, *q;
	char c;
	pid_t pid;

	p = map(fd, 8 * MiB, PROT_READ | PROT_WRITE, 0);
	tap_require(mprotect(p, 8 * MiB, PROT_READ) == 0);
	tap_ok(freeze(fd) == -1 && errno == EBUSY,
	       "FREEZE with a writable mapping mprotect()ed read-only: EBUSY");
	tap_require(pipe(pfd) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		close(pfd[1]);
		_exit(read(pfd[0], &c, 1) == 0 ? 0 : 1);
	}
	close(pfd[0]);
	/* A split: two VMAs, then an mremap of one of them. */
	tap_require(munmap(p + 2 * MiB, 2 * MiB) == 0);
	q = mremap(p + 4 * MiB, 4 * MiB, 4 * MiB, MREMAP_MAYMOVE);
	tap_require(q != MAP_FAILED, "mremap");
	tap_require(munmap(p, 2 * MiB) == 0 && munmap(q, 4 * MiB) == 0);
	tap_ok(freeze(fd) == -1 && errno == EBUSY,
	       "  ours gone (split and moved first), a fork child's copy still holds it: EBUSY");
	close(pfd[1]);
	st = wait_status(pid);
	tap_ok(CHILD_OK(st) && freeze(fd) == 0,
	       "  the child gone: FREEZE works (count back to zero)");
	tap_ok(mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) ==
	       MAP_FAILED && errno == EPERM,
	       "  and a frozen object refuses writable mappings (EPERM)");
	close(fd);
	unlink(OBJ);
}

int main(void)
{
	watchdog(300);
	probe_init();
	phase = "pins";
	takes_pins_and_tracks_them();
	phase = "freeze after unmap";
	freeze_after_unmap();
	phase = "outlive";
	pinned_frames_outlive_the_object();
	phase = "refused";
	refused_where_notified();
	phase = "copies";
	freeze_waits_for_every_copy();
	return tap_done();
}
