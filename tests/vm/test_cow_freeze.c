#define _GNU_SOURCE
/*
 * MORSEL_IOC_FREEZE: argument errors (EINVAL, EFAULT), a file opened
 * read-only (EBADF), STAT state; after freezing, write/pwrite/ftruncate/
 * fallocate (punch too) fail with EPERM, mmap(PROT_WRITE) with EPERM,
 * mprotect adding PROT_WRITE with EACCES, PROT_READ mappings work.  A
 * mapping made writable by mmap() (no write notification: it may hold
 * writable long-term pins) makes FREEZE fail with EBUSY until it goes;
 * writable mappings with write notification (mapped read-only, then
 * mprotect()ed writable) made before the freeze (linked by PMD and PUD
 * entries and page by page, here and in another process that keeps
 * storing) raise SIGSEGV on the next store while the data stays intact.
 * Freezing twice succeeds.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/cow_freeze"
#define PATH_BIG "/dev/morsel/cow_freeze_big"
#define SIZE (4 * MiB)
#define NPAGES (SIZE / PG)
#define BPAGE (NPAGES - 1)	/* the page the other process keeps storing to */

static struct morsel_freeze fz_arg(void)
{
	struct morsel_freeze f;

	memset(&f, 0, sizeof(f));
	f.argsz = sizeof(f);
	return f;
}

/* pread pages [first, end) and compare. */
static int file_ok(int fd, unsigned tag, unsigned long first, unsigned long end)
{
	static uint64_t buf[PG / 8];

	for (unsigned long pg = first; pg < end; pg++)
		if (pread(fd, buf, PG, pg * PG) != (ssize_t)PG ||
		    !page_ok(buf, tag, pg * PG))
			return 0;
	return 1;
}

static sigjmp_buf jb;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jb, 1);
}

/* 1 if a store of @v to @a raised SIGSEGV (and left *@a as it was). */
static int store_faults(volatile uint64_t *a, uint64_t v)
{
	uint64_t old = *a;

	if (sigsetjmp(jb, 1))
		return *a == old;
	*a = v;
	return 0;
}

struct shared {
	atomic_int ready;	/* B: mapped, linked and storing */
	atomic_int frozen;	/* parent: freeze has returned */
	atomic_long late;	/* B: stores that succeeded after the freeze */
};

/*
 * The other process: maps the object writable (linked) and a part of a
 * granule page by page, keeps storing into BPAGE until the freeze, then
 * every store must fault.  Exit 0: both stores after the freeze faulted.
 */
static int other(int fd, struct shared *sh)
{
	volatile uint64_t *b, *pp;
	uint64_t n = 0;
	int r;

	pin(1);
	b = mmap_notified(NULL, SIZE, MAP_SHARED, fd, 0);
	pp = mmap_notified(NULL, 64 * KiB, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED || pp == MAP_FAILED)
		return 10;
	if (!page_ok((void *)b, 1, 0) || !page_ok((void *)pp, 1, 0))
		return 11;
	if (sigsetjmp(jb, 1) == 0) {
		for (;;) {
			int after = atomic_load(&sh->frozen);

			b[BPAGE * PG / 8] = ++n;
			if (!atomic_load(&sh->ready))
				atomic_store(&sh->ready, 1);
			/* Bounded: a missing write-protect fails, not hangs. */
			if (after && atomic_fetch_add(&sh->late, 1) > 100000)
				return 12;
		}
	}
	/*
	 * Faulted (possibly while FREEZE was still running); once it has
	 * returned, the page-by-page mapping must fault too.
	 */
	while (!atomic_load(&sh->frozen))
		sched_yield();
	r = 0;
	if (!store_faults(&pp[1], 0x77))
		r |= 1;
	if (!page_ok((void *)pp, 1, 0))
		r |= 2;
	return r;
}

static void errors_before(int fd, int rfd)
{
	uint64_t w0 = word(1, 0);
	struct morsel_freeze f;

	tap_ok(mstat(fd).state == 0, "state 0 before freezing");
	f = fz_arg();
	tap_errno(ioctl(rfd, MORSEL_IOC_FREEZE, &f), EBADF,
		  "FREEZE through an O_RDONLY fd: EBADF");
	f = fz_arg();
	f.argsz = 0;
	tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, &f), EINVAL, "FREEZE argsz 0: EINVAL");
	f = fz_arg();
	f.argsz = sizeof(f) - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, &f), EINVAL,
		  "FREEZE argsz too small: EINVAL");
	{
		struct { struct morsel_freeze f; uint64_t tail[2]; } big;

		memset(&big, 0, sizeof(big));
		big.f = fz_arg();
		big.f.argsz = sizeof(big);
		big.tail[1] = 1;
		tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, &big), E2BIG,
			  "FREEZE with a larger argsz and a byte the module does not know set: E2BIG");
	}
	f = fz_arg();
	f.flags = 1;
	tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, &f), EINVAL, "FREEZE flags 1: EINVAL");
	f = fz_arg();
	f.flags = 1U << 31;
	tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, &f), EINVAL,
		  "FREEZE flags bit 31: EINVAL");
	f = fz_arg();
	f.argsz = MORSEL_FREEZE_SIZE_VER0 - 1;
	tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, &f), EINVAL,
		  "FREEZE argsz one below its first size: EINVAL");
	f = fz_arg();
	f.argsz = 4;
	tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, &f), EINVAL,
		  "FREEZE argsz 4 (argsz alone): EINVAL");
	tap_errno(ioctl(fd, MORSEL_IOC_FREEZE, NULL), EFAULT,
		  "FREEZE NULL pointer: EFAULT");
	tap_ok(mstat(fd).state == 0 && pwrite(fd, &w0, 8, 0) == 8,
	       "failed FREEZE calls leave the object unfrozen (state %u)",
	       mstat(fd).state);
}

/* 4 MiB object, three mappings here and two in another process. */
static void mapped_freeze(struct totals base)
{
	struct sigaction sa = { .sa_handler = on_segv };
	volatile uint64_t *p, *q, *r;
	struct morsel_freeze fz;
	struct shared *sh;
	int fd, rfd, st;
	uint64_t *buf;
	pid_t pid;
	char c;

	sigaction(SIGSEGV, &sa, NULL);
	fd = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, SIZE) == 0);
	rfd = open(PATH, O_RDONLY);
	tap_require(rfd >= 0);
	sh = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		  -1, 0);
	/* p: whole object (two PMD links); q: [1 MiB, 4 MiB) (page by page,
	 * then one link); r: PROT_READ. */
	p = mmap_notified(NULL, SIZE, MAP_SHARED, fd, 0);
	q = mmap_notified(NULL, 3 * MiB, MAP_SHARED, fd, 1 * MiB);
	r = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(sh != MAP_FAILED && p != MAP_FAILED && q != MAP_FAILED &&
		    r != MAP_FAILED);
	for (unsigned long pg = 0; pg < NPAGES; pg++)
		fill_page((void *)(p + pg * PG / 8), 1, pg * PG);
	tap_require(page_ok((void *)q, 1, 1 * MiB) &&
		    page_ok((void *)(q + 2 * MiB / 8), 1, 3 * MiB));

	errors_before(fd, rfd);

	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0)
		_exit(other(fd, sh));
	pin(0);
	phase = "waiting for the other process to map and store";
	while (!atomic_load(&sh->ready)) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			tap_fatal("the other process exited early (status %#x)", st);
		sched_yield();
	}
	usleep(20000);
	/* Keep our own writable translations hot. */
	p[1] = word(1, 8);
	q[1] = word(1, 1 * MiB + 8);
	q[2 * MiB / 8 + 1] = word(1, 3 * MiB + 8);

	phase = "FREEZE with a mapping made writable by mmap()";
	{
		void *w = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE,
			       MAP_SHARED, fd, 0);
		int r1, e1;

		tap_require(w != MAP_FAILED);
		r1 = freeze(fd);
		e1 = errno;
		tap_ok(r1 == -1 && e1 == EBUSY && mstat(fd).state == 0,
		       "FREEZE while a mapping made writable by mmap() exists: EBUSY, not frozen (%s)",
		       strerror(e1));
		munmap(w, 2 * MiB);
	}
	phase = "FREEZE while another process stores";
	tap_ok(freeze(fd) == 0, "FREEZE of a mapped 4 MiB object (5 writable mappings)");
	phase = "after FREEZE";
	atomic_store(&sh->frozen, 1);
	tap_ok(mstat(fd).state == MORSEL_STATE_FROZEN &&
	       mstat(rfd).state == MORSEL_STATE_FROZEN,
	       "STAT state is MORSEL_STATE_FROZEN (through both fds)");
	tap_ok(store_faults(&p[2], 1), "store through a PMD-linked pre-freeze mapping: SIGSEGV");
	tap_ok(store_faults(&q[2], 1),
	       "store through a page-by-page pre-freeze mapping: SIGSEGV");
	tap_ok(store_faults(&q[2 * MiB / 8 + 2], 1),
	       "store through the linked part of that mapping: SIGSEGV");
	tap_ok(store_faults(&p[(SIZE - PG) / 8 - 1], 1),
	       "store to the last page before the one the other process used: SIGSEGV");
	st = -1;
	phase = "waiting for the other process";
	waitpid(pid, &st, 0);
	phase = "after the other process";
	tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && atomic_load(&sh->late) == 0,
	       "other process storing in a loop: next store after FREEZE faults, "
	       "its page-by-page mapping too (status %#x, late stores %ld)",
	       st, atomic_load(&sh->late));
	tap_ok(file_ok(fd, 1, 0, BPAGE) && page_ok((void *)p, 1, 0) &&
	       page_ok((void *)(q + 1 * MiB / 8), 1, 2 * MiB) &&
	       page_ok((void *)(r + 3 * MiB / 8), 1, 3 * MiB),
	       "data intact after the faulting stores (read, and 3 mappings)");
	tap_ok(p[BPAGE * PG / 8] == r[BPAGE * PG / 8],
	       "the other process's last value is seen by every mapping");
	tap_ok(mprotect((void *)p, SIZE, PROT_READ) == 0,
	       "mprotect(PROT_READ) of a pre-freeze mapping works");
	tap_errno(mprotect((void *)p, SIZE, PROT_READ | PROT_WRITE), EACCES,
		  "mprotect adding PROT_WRITE back: EACCES");
	tap_errno(mprotect((void *)r, 2 * MiB, PROT_READ | PROT_WRITE), EACCES,
		  "mprotect(PROT_WRITE) on a PROT_READ mapping of a frozen object: EACCES");
	tap_ok(freeze(fd) == 0 && mstat(fd).state == MORSEL_STATE_FROZEN,
	       "freezing again succeeds and keeps it frozen");
	fz = fz_arg();
	tap_errno(ioctl(rfd, MORSEL_IOC_FREEZE, &fz), EBADF, "FREEZE of a frozen object through an O_RDONLY fd: EBADF");
	munmap((void *)p, SIZE);
	munmap((void *)q, 3 * MiB);
	munmap((void *)r, SIZE);
	tap_ok(mstat(fd).mappers == 0 && mstat(fd).links == 0,
	       "every mapping gone (mappers %llu, links %llu)",
	       mstat(fd).mappers, mstat(fd).links);

	/* Contents calls, unmapped (so nothing is EBUSY). */
	buf = malloc(PG);
	tap_require(buf);
	memset(buf, 0x5a, PG);
	tap_errno(write(fd, buf, 16), EPERM, "write(): EPERM");
	tap_errno(pwrite(fd, buf, PG, 5 * PG), EPERM, "pwrite of a whole page: EPERM");
	tap_errno(pwrite(fd, buf, 1, SIZE - 1), EPERM, "pwrite of the last byte: EPERM");
	tap_errno(pwrite(fd, buf, 16, SIZE), EPERM, "pwrite past the end: EPERM");
	tap_errno(ftruncate(fd, SIZE + 2 * MiB), EPERM, "ftruncate larger: EPERM");
	tap_errno(ftruncate(fd, 1 * MiB), EPERM, "ftruncate smaller: EPERM");
	tap_errno(ftruncate(fd, 0), EPERM, "ftruncate to 0: EPERM");
	tap_errno(fallocate(fd, 0, 0, SIZE + 4 * MiB), EPERM, "fallocate(0): EPERM");
	tap_errno(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, PG), EPERM,
		  "fallocate(KEEP_SIZE): EPERM");
	tap_errno(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * MiB),
		  EPERM, "fallocate(PUNCH_HOLE) of whole pages: EPERM");
	tap_errno(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 200),
		  EPERM, "fallocate(PUNCH_HOLE) inside a page: EPERM");
	tap_ok(mstat(fd).size == SIZE && mstat(fd).data_pages == NPAGES &&
	       file_ok(fd, 1, 0, BPAGE) && read(rfd, &c, 1) == 1,
	       "size, pages and data unchanged by the refused calls");

	/* Mapping after the freeze. */
	tap_errno(mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED ? -1 : 0,
		  EPERM, "mmap(PROT_READ|PROT_WRITE, MAP_SHARED) of a frozen object: EPERM");
	tap_errno(mmap(NULL, PG, PROT_WRITE, MAP_SHARED, fd, PG) == MAP_FAILED ? -1 : 0,
		  EPERM, "mmap(PROT_WRITE) of one page: EPERM");
	{
		int fd2 = open(PATH, O_RDWR);

		tap_require(fd2 >= 0);
		tap_errno(mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0) == MAP_FAILED ? -1 : 0,
			  EPERM, "mmap(PROT_WRITE) through an fd opened after the freeze: EPERM");
		tap_errno(write(fd2, buf, 1), EPERM, "write() through that fd: EPERM");
		close(fd2);
	}
	r = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
	tap_ok(r != MAP_FAILED, "mmap(PROT_READ) of a frozen object works");
	tap_require(r != MAP_FAILED);
	{
		struct morsel_map m;
		int ok = 1;

		memset(&m, 0, sizeof(m));
		m.argsz = sizeof(m);
		m.addr = (uintptr_t)r;
		m.length = SIZE;
		tap_ok(ioctl(fd, MORSEL_IOC_MAP, &m) == 0,
		       "MORSEL_IOC_MAP of the read-only mapping works");
		for (unsigned long pg = 0; pg < BPAGE; pg++)
			ok &= page_ok((void *)(r + pg * PG / 8), 1, pg * PG);
		tap_ok(ok && mstat(fd).data_pages == NPAGES,
		       "the read-only mapping shows the frozen data");
	}
	tap_ok(store_faults(&r[8], 1), "store through it: SIGSEGV");
	tap_errno(mprotect((void *)r, SIZE, PROT_READ | PROT_WRITE), EACCES,
		  "mprotect(PROT_WRITE) of it: EACCES");
	munmap((void *)r, SIZE);
	free(buf);
	close(rfd);
	tap_ok(unlink(PATH) == 0, "a frozen object can be unlinked");
	close(fd);
	munmap(sh, PG);
	tap_ok(totals_back(base), "4 MiB case: module totals back to the baseline");
}

/* 1 GiB object linked by one PUD entry, sparse. */
static void pud_freeze(struct totals base)
{
	phase = "1 GiB case";
	volatile uint64_t *p;
	int fd, ok = 1;

	fd = open(PATH_BIG, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, GiB) == 0);
	p = mmap_notified(NULL, GiB, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	for (unsigned long off = 0; off < GiB; off += 128 * MiB)
		fill_page((void *)(p + off / 8), 2, off);
	tap_ok(mstat(fd).links == 1 && mstat(fd).data_pages == 8,
	       "1 GiB sparse: one PUD link, 8 pages (links %llu)", mstat(fd).links);
	tap_ok(freeze(fd) == 0, "FREEZE of the PUD-linked object");
	tap_ok(store_faults(&p[0], 3) && store_faults(&p[(512 * MiB + 8) / 8], 3),
	       "stores through the PUD link to populated pages: SIGSEGV");
	tap_ok(store_faults(&p[(700 * MiB) / 8], 3) && mstat(fd).data_pages == 8,
	       "store to a hole through the PUD link: SIGSEGV, nothing allocated");
	for (unsigned long off = 0; off < GiB; off += 128 * MiB)
		ok &= page_ok((void *)(p + off / 8), 2, off);
	tap_ok(ok && file_ok(fd, 2, 0, 1), "1 GiB: data intact");
	munmap((void *)p, GiB);
	close(fd);
	unlink(PATH_BIG);
	tap_ok(totals_back(base), "1 GiB case: module totals back to the baseline");
}

int main(void)
{
	struct totals base;

	watchdog(150);
	base = totals();
	mapped_freeze(base);
	pud_freeze(base);
	return tap_done();
}
