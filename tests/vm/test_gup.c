#define _GNU_SOURCE
/*
 * The kernel reaches morsel memory through GUP as it reaches tmpfs memory
 * (issue 12, docs/gup.md):
 *  - shared futexes: the same word of the same object has the same key in
 *    every process, at any address, through links and through pages mapped
 *    one by one, in a read-only mapping, in a copy-on-write child (where
 *    get_futex_key()'s GUP for write copies the page first);
 *    wait and wake, requeue between two words;
 *  - O_DIRECT write from, and read into, morsel mappings (ext4 on the
 *    suite's disk at /mnt/disk), also into a child (copied first), and a
 *    read into memory cleaned by SCAN shows up as dirty;
 *  - vmsplice: pages in a pipe keep their data after a punch and after the
 *    object is gone, and nothing leaks; a frame held often enough to look
 *    pinned (folio_maybe_dma_pinned()) stays dirty for SCAN, and FREEZE
 *    gives the object a copy of it, so the holder cannot change frozen
 *    contents;
 *  - MAP_POPULATE and MADV_POPULATE_WRITE link the range at once;
 * Writable long-term pins are in test_longterm_pin, process-shared
 * pthread objects in test_pshared.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include "libmorsel.h"
#include "vm.h"

#define OBJ	"/dev/morsel/gup"
#define SIZE	(4 * MiB)
#define DISK	"/mnt/disk"

static long futex(void *uaddr, int op, uint32_t val, void *uaddr2,
		  uint32_t val3)
{
	return syscall(SYS_futex, uaddr, op, val, NULL, uaddr2, val3);
}

/*
 * A child process waits on the word at @woff of its own mapping of @fd
 * (a new mmap: a different address from ours, page by page if
 * @child_pages, read-only if @child_ro); we wake it through @wake.  A wake
 * that reports one waiter woke it: the two keys are the same.  Returns the
 * number woken (1 is right) and the child's status through @st.
 */
static int wake_across(int fd, volatile uint32_t *wake, long woff,
		       int child_pages, int child_ro, int touch, int *st)
{
	int prot = child_ro ? PROT_READ : PROT_READ | PROT_WRITE;
	long i, woke = 0;
	pid_t pid;

	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		/* 64 KiB cannot link: pages one by one; else 4 MiB linked. */
		long len = child_pages ? 64 * KiB : SIZE;
		long off = child_pages ? woff & ~(64 * KiB - 1) : 0;
		char *q = mmap(NULL, len, prot, MAP_SHARED, fd, off);

		if (q == MAP_FAILED)
			_exit(10);
		if ((void *)q == (void *)wake)
			_exit(11);	/* must be another address */
		if (touch)	/* a store to the word's page, as glibc makes */
			q[(woff - off) ^ 64] = 1;
		/* Woken (0), or the word changed under us (EAGAIN). */
		if (futex(q + (woff - off), FUTEX_WAIT, 0, NULL, 0) != 0)
			_exit(12);
		_exit(0);
	}
	if (touch)
		((volatile char *)wake)[64] = 1;
	for (i = 0; i < 20000 && woke == 0; i++) {
		woke = futex((void *)wake, FUTEX_WAKE, 1, NULL, 0);
		if (woke == 0)
			usleep(1000);
	}
	*st = wait_status(pid);
	return (int)woke;
}

static void futexes(void)
{
	int fd = mkobj(OBJ, SIZE), st = -1, n, cfd;
	volatile uint32_t *p, *ro;
	uint32_t *w1, *w2;
	long i, woke;
	pid_t pid;

	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	memset((void *)p, 0, SIZE);
	tap_require(links(fd) > 0);

	n = wake_across(fd, p + 1024, 4096, 0, 0, 0, &st);
	tap_ok(n == 1 && CHILD_OK(st),
	       "FUTEX_WAKE through a link wakes a waiter in another process's link (woke %d, status %#x)",
	       n, st);
	n = wake_across(fd, p + (MiB + 8) / 4, MiB + 8, 1, 0, 0, &st);
	tap_ok(n == 1 && CHILD_OK(st),
	       "... and a waiter in a page-by-page mapping at another address (woke %d, status %#x)",
	       n, st);
	n = wake_across(fd, p + (2 * MiB + 64) / 4, 2 * MiB + 64, 0, 1, 0, &st);
	tap_ok(n == 1 && CHILD_OK(st),
	       "... and a waiter in a read-only mapping (woke %d, status %#x)",
	       n, st);

	/* Page by page on our side: a 64 KiB mapping of the same words. */
	ro = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		  3 * MiB);
	tap_require(ro != MAP_FAILED);
	n = wake_across(fd, ro + 16, 3 * MiB + 64, 0, 0, 0, &st);
	tap_ok(n == 1 && CHILD_OK(st),
	       "FUTEX_WAKE through a page-by-page mapping wakes a waiter in a link (woke %d, status %#x)",
	       n, st);
	munmap((void *)ro, 64 * KiB);

	/* Requeue: a waiter on w1 moved to w2, then woken there. */
	w1 = (uint32_t *)p + 4096;
	w2 = (uint32_t *)p + 8192;
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		char *q = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			       fd, 0);

		if (q == MAP_FAILED)
			_exit(10);
		_exit(futex(q + 4096 * 4, FUTEX_WAIT, 0, NULL, 0) == 0 ? 0 : 12);
	}
	woke = 0;
	for (i = 0; i < 20000 && woke == 0; i++) {
		/* wake none, requeue one to w2, if *w1 is still 0 */
		woke = syscall(SYS_futex, w1, FUTEX_CMP_REQUEUE, 0,
			       (void *)1L, w2, 0);
		if (woke == 0)
			usleep(1000);
	}
	n = (int)futex(w2, FUTEX_WAKE, 1, NULL, 0);
	st = wait_status(pid);
	tap_ok(woke == 1 && n == 1 && CHILD_OK(st),
	       "FUTEX_CMP_REQUEUE moves a waiter of another process between words (requeued %ld, woke %d, status %#x)",
	       woke, n, st);

	/* A copy-on-write child mapped writable in both processes. */
	munmap((void *)p, SIZE);
	tap_require(freeze(fd) == 0);
	cfd = split(fd);
	tap_require(cfd >= 0);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	tap_require(p != MAP_FAILED);
	n = wake_across(cfd, p + 2048, 8192, 0, 0, 0, &st);
	tap_ok(n == 1 && CHILD_OK(st) && mstat(cfd).data_pages == 1,
	       "a child object: waiter and waker on a page neither stored to (woke %d, status %#x)",
	       n, st);
	tap_ok(mstat(cfd).data_pages == 1,
	       "  get_futex_key() asks GUP for write first: the page was copied, both keyed on the copy (%llu copies)",
	       mstat(cfd).data_pages);
	n = wake_across(cfd, p + 4096, 16384, 1, 0, 1, &st);
	tap_ok(n == 1 && CHILD_OK(st) && mstat(cfd).data_pages == 2,
	       "  and on a page both stored to first, the waiter page by page (woke %d, status %#x, %llu copies)",
	       n, st, mstat(cfd).data_pages);
	munmap((void *)p, SIZE);
	close(cfd);
	close(fd);
	unlink(OBJ);
}

static int disk_mounted(void)
{
	char line[512];
	FILE *f = fopen("/proc/mounts", "r");
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, " " DISK " ext4 ") != NULL;
	fclose(f);
	return found;
}

static unsigned char pat(long off)
{
	return (unsigned char)((off >> 12) * 7 + (off & 0xff) + 1);
}

static void o_direct(void)
{
	struct morsel_scan sc;
	unsigned char *p, *c, *buf;
	int fd, ffd, cfd, bad;
	long off, len = 3 * MiB;
	uint64_t dirty[SIZE / PG / 64];

	if (!disk_mounted()) {
		tap_skip("O_DIRECT: no ext4 disk at " DISK);
		return;
	}
	fd = mkobj(OBJ, SIZE);
	/* It outlives the freeze below: with write notification. */
	p = mmap_notified(NULL, SIZE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (off = 0; off < SIZE; off++)
		p[off] = pat(off);
	ffd = open(DISK "/odirect", O_RDWR | O_CREAT | O_TRUNC | O_DIRECT,
		   0600);
	tap_require(ffd >= 0);
	/* From 512 KiB: the I/O spans a cut granule's pages and a link. */
	tap_ok(pwrite(ffd, p + 512 * KiB, len, 0) == len,
	       "O_DIRECT write of 3 MiB from a morsel mapping");
	buf = malloc(len);
	tap_require(buf != NULL);
	close(ffd);
	ffd = open(DISK "/odirect", O_RDONLY);
	tap_require(ffd >= 0 && pread(ffd, buf, len, 0) == len);
	for (bad = 0, off = 0; off < len; off++)
		bad += buf[off] != pat(off + 512 * KiB);
	tap_ok(bad == 0, "  the file holds exactly those bytes (%d bad)", bad);
	close(ffd);

	/* Clean, then O_DIRECT read into pages 0..255 of the object. */
	tap_require(morsel_scan(fd, 0, SIZE, MORSEL_SCAN_CLEAN, 0, NULL, NULL,
				NULL, &sc) == 0);
	ffd = open(DISK "/odirect", O_RDONLY | O_DIRECT);
	tap_require(ffd >= 0);
	tap_ok(pread(ffd, p, MiB, 0) == MiB,
	       "O_DIRECT read of 1 MiB into a morsel mapping");
	tap_ok(memcmp(p, buf, MiB) == 0, "  the mapping holds the file's bytes");
	tap_ok(pread(fd, buf + len - MiB, MiB, 0) == MiB &&
	       memcmp(buf + len - MiB, buf, MiB) == 0,
	       "  and read() of the object too");
	memset(dirty, 0, sizeof(dirty));
	tap_ok(morsel_scan(fd, 0, SIZE, 0, 0, NULL, NULL, dirty, &sc) == 0 &&
	       sc.dirty_pages == MiB / PG && dirty[0] == ~0ULL &&
	       dirty[MiB / PG / 64] == 0,
	       "  SCAN: exactly the 256 pages read into are dirty (%llu)",
	       (unsigned long long)sc.dirty_pages);

	/* Into a copy-on-write child: the base keeps its bytes. */
	tap_require(freeze(fd) == 0);
	cfd = split(fd);
	tap_require(cfd >= 0);
	c = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	tap_require(c != MAP_FAILED);
	tap_ok(pread(ffd, c + 2 * MiB, MiB, MiB) == MiB &&
	       memcmp(c + 2 * MiB, buf + MiB, MiB) == 0,
	       "O_DIRECT read into a child's mapping lands in the child");
	for (bad = 0, off = 2 * MiB; off < 3 * MiB; off++)
		bad += p[off] != pat(off);
	tap_ok(bad == 0 && mstat(cfd).data_pages == MiB / PG,
	       "  the base is unchanged (%d bad) and the child owns 256 copies (%llu)",
	       bad, mstat(cfd).data_pages);
	munmap(c, SIZE);
	close(cfd);
	close(ffd);
	unlink(DISK "/odirect");
	free(buf);
	munmap(p, SIZE);
	close(fd);
	unlink(OBJ);
}

static void vmsplice_keeps_frames(void)
{
	long data0 = total("data_pages");
	unsigned char *p, got[3 * 4096];
	struct iovec iov;
	int fd, pfd[2], ok;
	ssize_t n;

	fd = mkobj(OBJ, SIZE);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED && pipe(pfd) == 0);
	memset(p, 'v', 3 * 4096);
	memset(p + MiB, 'w', 4096);
	iov.iov_base = p;
	iov.iov_len = 3 * 4096;
	tap_ok(vmsplice(pfd[1], &iov, 1, 0) == 3 * 4096,
	       "vmsplice of 3 pages of a morsel mapping into a pipe");
	tap_ok(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			 3 * 4096) == 0 && mstat(fd).data_pages == 1,
	       "  a punch takes them from the object (%llu data pages left)",
	       mstat(fd).data_pages);
	n = read(pfd[0], got, sizeof(got));
	ok = n == 3 * 4096 && got[0] == 'v' && got[n - 1] == 'v';
	tap_ok(ok && p[0] == 0,
	       "  the pipe still reads their bytes; the mapping reads zeros");

	/* A truncate past a held page. */
	memset(p + 2 * MiB, 't', 4096);
	iov.iov_base = p + 2 * MiB;
	iov.iov_len = 4096;
	tap_ok(vmsplice(pfd[1], &iov, 1, 0) == 4096 &&
	       ftruncate(fd, 2 * MiB) == 0 && read(pfd[0], got, 4096) == 4096 &&
	       got[0] == 't' && got[4095] == 't',
	       "a page held in a pipe keeps its bytes after a truncate below it");
	tap_require(ftruncate(fd, SIZE) == 0);

	iov.iov_base = p + MiB;
	iov.iov_len = 4096;
	tap_ok(vmsplice(pfd[1], &iov, 1, 0) == 4096, "vmsplice of another page");
	munmap(p, SIZE);
	close(fd);
	unlink(OBJ);
	tap_ok(total("data_pages") == data0,
	       "  the object is gone, its pages with it (%ld data pages)",
	       total("data_pages") - data0);
	n = read(pfd[0], got, 4096);
	tap_ok(n == 4096 && got[0] == 'w' && got[4095] == 'w',
	       "  and the pipe still reads that page's bytes");
	close(pfd[0]);
	close(pfd[1]);
}

/*
 * Hold @page's frame with more than GUP_PIN_COUNTING_BIAS (1024) page
 * references: pipes full of vmsplice()d copies of it.  For an order-0 page
 * that is what folio_maybe_dma_pinned() counts as pinned, the state a
 * device's long-term pin leaves (test_longterm_pin takes real ones, on
 * mappings without write notification, which a freeze refuses to meet).
 */
#define PIPES	5
static int hold_many(unsigned char *page, int pfd[PIPES][2])
{
	struct iovec iov[256];
	int i, j;

	for (j = 0; j < 256; j++) {
		iov[j].iov_base = page;
		iov[j].iov_len = 4096;
	}
	for (i = 0; i < PIPES; i++) {
		if (pipe(pfd[i]) || fcntl(pfd[i][1], F_SETPIPE_SZ, 1 << 20) < 0 ||
		    vmsplice(pfd[i][1], iov, 256, 0) != 256 * 4096)
			return -1;
	}
	return 0;
}

static void frozen_while_held(void)
{
	int fd = mkobj(OBJ, SIZE), pfd[PIPES][2], i, held;
	struct morsel_scan sc;
	unsigned char *p;

	/* It outlives the freeze below: with write notification. */
	p = mmap_notified(NULL, SIZE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	memset(p, 'h', 2 * 4096);
	tap_require(morsel_scan(fd, 0, SIZE, MORSEL_SCAN_CLEAN, 0, NULL, NULL,
				NULL, &sc) == 0);
	held = hold_many(p + 4096, pfd) == 0;
	tap_ok(held, "1280 page references to one frame through vmsplice");
	{
		unsigned long long d1 = ~0ULL, d2 = ~0ULL;

		if (!morsel_scan(fd, 0, SIZE, MORSEL_SCAN_CLEAN, 0, NULL, NULL,
				 NULL, &sc))
			d1 = sc.dirty_pages;
		if (!morsel_scan(fd, 0, SIZE, 0, 0, NULL, NULL, NULL, &sc))
			d2 = sc.dirty_pages;
		tap_ok(d1 == 1 && d2 == 1,
		       "  SCAN counts that frame as written while it may be pinned, even after CLEAN (%llu, %llu)",
		       d1, d2);
	}
	{
		long data = (long)mstat(fd).data_pages;
		unsigned long long d = ~0ULL;
		unsigned char got[4096];

		tap_ok(freeze(fd) == 0 && (mstat(fd).state & MORSEL_STATE_FROZEN) &&
		       (long)mstat(fd).data_pages == data,
		       "  FREEZE works: the held frame is replaced by a copy (%llu data pages)",
		       mstat(fd).data_pages);
		if (!morsel_scan(fd, 0, SIZE, MORSEL_SCAN_CLEAN, 0, NULL, NULL,
				 NULL, &sc) &&
		    !morsel_scan(fd, 0, SIZE, 0, 0, NULL, NULL, NULL, &sc))
			d = sc.dirty_pages;
		tap_ok(d == 0 && p[4096] == 'h' && p[8191] == 'h',
		       "  the copy holds the bytes and is not pinned: clean after CLEAN (%llu dirty)",
		       d);
		tap_ok(read(pfd[0][0], got, 4096) == 4096 && got[0] == 'h',
		       "  the pipes still hold the old frame");
		tap_ok(try_write(p + 4096, 'x') == SIGSEGV,
		       "  and the frozen object stays read-only");
	}
	for (i = 0; i < PIPES; i++) {
		close(pfd[i][0]);
		close(pfd[i][1]);
	}
	munmap(p, SIZE);
	close(fd);
	unlink(OBJ);
}

static volatile int racing;

static void *freezer(void *arg)
{
	int fd = *(int *)arg;

	while (racing)
		if (freeze(fd) == 0 || errno != ENOSPC)
			break;
	return NULL;
}

/*
 * A freeze that must copy a held frame on a full mount fails (ENOSPC) and
 * undoes itself; a split racing with it must never see the object as
 * frozen (session-7 review: the split's child would borrow frames the
 * base then frees).
 */
static void failed_freeze_vs_split(void)
{
	const char *dir = "/tmp/gup-small";
	int fd, pfd[PIPES][2], i, splits = 0, tries;
	unsigned char *p;
	pthread_t th;
	char path[64];

	mkdir(dir, 0700);
	tap_require(mount("none", dir, "morselfs", 0, "size=1M") == 0);
	snprintf(path, sizeof(path), "%s/o", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	tap_require(fd >= 0 && ftruncate(fd, MiB) == 0);
	/* It outlives the freezes: with write notification. */
	p = mmap_notified(NULL, MiB, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	/* Fill the mount: frames and the one table use up size=. */
	for (i = 0; i < 256 && try_write(p + i * 4096, 'f') == 0; i++)
		;
	tap_require(hold_many(p, pfd) == 0);
	{
		int r = freeze(fd), e = errno;

		tap_ok(r == -1 && e == ENOSPC &&
		       !(mstat(fd).state & MORSEL_STATE_FROZEN),
		       "a freeze that must copy a held frame on a full mount: ENOSPC, not frozen (%s)",
		       strerror(e));
	}
	racing = 1;
	tap_require(pthread_create(&th, NULL, freezer, &fd) == 0);
	for (tries = 0; tries < 3000; tries++) {
		int c = split(fd);

		if (c >= 0) {
			splits++;
			close(c);
		}
	}
	racing = 0;
	pthread_join(th, NULL);
	tap_ok(splits == 0 && !(mstat(fd).state & MORSEL_STATE_FROZEN),
	       "  3000 splits racing with such freezes: none succeeds (%d)", splits);
	for (i = 0; i < PIPES; i++) {
		close(pfd[i][0]);
		close(pfd[i][1]);
	}
	munmap(p, MiB);
	close(fd);
	unlink(path);
	tap_ok(umount(dir) == 0, "  the small mount goes away cleanly");
	rmdir(dir);
}

/* A child's page held in a pipe, then copied on write in the child. */
static void held_across_copy(void)
{
	int fd = mkobj(OBJ, SIZE), cfd, pfd[2];
	unsigned char *c, got[4096];
	struct iovec iov;

	tap_require(pwrite(fd, "base", 4, 8192) == 4 && freeze(fd) == 0);
	cfd = split(fd);
	tap_require(cfd >= 0 && pipe(pfd) == 0);
	c = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	tap_require(c != MAP_FAILED);
	iov.iov_base = c + 8192;
	iov.iov_len = 4096;
	tap_ok(vmsplice(pfd[1], &iov, 1, 0) == 4096,
	       "vmsplice of a child's page it borrows from its base");
	memcpy(c + 8192, "copy", 4);
	tap_ok(mstat(cfd).data_pages == 1 && read(pfd[0], got, 4096) == 4096 &&
	       !memcmp(got, "base", 4) && !memcmp(c + 8192, "copy", 4),
	       "  a store copies the page; the pipe keeps the base's bytes");
	iov.iov_base = c + 8192;
	tap_ok(vmsplice(pfd[1], &iov, 1, 0) == 4096 &&
	       fallocate(cfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192,
			 4096) == 0 &&
	       read(pfd[0], got, 4096) == 4096 && !memcmp(got, "copy", 4) &&
	       c[8192] == 0,
	       "  the copy held in a pipe outlives a punch of it in the child (a hole now)");
	close(pfd[0]);
	close(pfd[1]);
	munmap(c, SIZE);
	close(cfd);
	close(fd);
	unlink(OBJ);
}

static void populate(void)
{
	unsigned char *p;
	int fd = mkobj(OBJ, SIZE);

	tap_require(pwrite(fd, "x", 1, 3 * MiB) == 1);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		 fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(links(fd) == 2 && mstat(fd).data_pages == SIZE / PG,
	       "MAP_POPULATE links both granules and fills them (%lu links, %llu data)",
	       links(fd), mstat(fd).data_pages);
	tap_ok(p[3 * MiB] == 'x', "  with the object's data");
	munmap(p, SIZE);
	close(fd);
	unlink(OBJ);
}

/*
 * /proc/self/mem reads a PROT_NONE mapping (GUP with FOLL_FORCE faults it
 * in); the CPU still may not: the fault must not have linked a table,
 * whose leaves are user-readable whatever the VMA says (session-7 review).
 */
static void prot_none_stays_none(void)
{
	int fd = mkobj(OBJ, 2 * MiB), mem = open("/proc/self/mem", O_RDONLY);
	unsigned char *p, v = 0;
	char c = 0;

	tap_require(mem >= 0 && pwrite(fd, "s", 1, 4096) == 1);
	p = mmap(NULL, 2 * MiB, PROT_NONE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(try_read(p + 4096, &v) == SIGSEGV, "a PROT_NONE mapping: a load is SIGSEGV");
	tap_ok(pread(mem, &c, 1, (off_t)(uintptr_t)(p + 4096)) == 1 && c == 's',
	       "  /proc/self/mem reads it");
	tap_ok(try_read(p + 4096, &v) == SIGSEGV && links(fd) == 0,
	       "  and a load is still SIGSEGV: nothing was linked (%lu links)",
	       links(fd));
	munmap(p, 2 * MiB);
	close(mem);
	close(fd);
	unlink(OBJ);
}

int main(void)
{
	long data0 = total("data_pages");

	watchdog(600);
	phase = "futexes";
	futexes();
	phase = "O_DIRECT";
	o_direct();
	phase = "vmsplice";
	vmsplice_keeps_frames();
	phase = "held across copy";
	held_across_copy();
	phase = "held frames";
	probe_init();
	frozen_while_held();
	phase = "failed freeze vs split";
	failed_freeze_vs_split();
	phase = "PROT_NONE";
	prot_none_stays_none();
	phase = "populate";
	populate();
	tap_ok(total("data_pages") == data0, "no data page left over (%ld)",
	       total("data_pages") - data0);
	return tap_done();
}
