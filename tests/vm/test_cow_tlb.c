#define _GNU_SOURCE
/*
 * TLB coherence of copy-on-write.  Process A, pinned to CPU 0, maps a child
 * (linked with MORSEL_IOC_MAP) and keeps reading a page through its link;
 * process B, pinned to CPU 1, writes that page of the child for the first
 * time (a copy) through its own mapping, or with pwrite().  Once B says it
 * is done, A must read the new value at once: a stale translation would
 * still reach the base's frame.  Cases:
 *  - 2 MiB child, A writable mapping (one PMD link to the child's PTE
 *    table), B stores: each round replaces one PTE;
 *  - the same with A read-only (the read-only twin of the table);
 *  - the same with B using pwrite();
 *  - 1 GiB child, A and B writable (one PUD link each to the child's PMD
 *    table), B stores into a new 2 MiB chunk each round: the child's
 *    borrowed PTE table is replaced by its own copy (a PMD entry changes
 *    under A's PUD link);
 *  - the same with A read-only (linked per 2 MiB to read-only twins);
 *  - A and B threads of one process sharing one writable mapping, 2 MiB
 *    and 1 GiB: the copy's only translation is the faulting mapping's, so
 *    the module clears the leaf and flushes the page itself instead of
 *    going through unmap_mapping_range(), and must reach A's CPU.
 * A also checks that the next page, still borrowed, keeps the base's data.
 * Last, one thread alone: it reads a page on CPU 0, moves to CPU 1 and
 * writes it there (CPU 0, idle, holds the address space lazily and is
 * made to leave it), moves back and must read its own store: CPU 0 must
 * flush when it runs the address space again.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <linux/morsel.h>
#include "vm.h"

#define BASE "/dev/morsel/cow_tlb_base"

struct shared {
	atomic_int ready;	/* A: mapped and linked */
	atomic_int reading;	/* A: has read the page of round N-1 */
	atomic_int step;	/* B: wrote the page of round N-1 */
	atomic_int seen;	/* A: checked round N-1 */
	atomic_int wrong;	/* A: new page not seen, or neighbour changed */
	atomic_int first_wrong;
};

struct tcase {
	const char *name;
	unsigned long size;
	unsigned long stride;	/* distance between the pages of two rounds */
	int rounds;
	int a_prot;		/* A's mapping */
	int b_pwrite;		/* B writes with pwrite() instead of storing */
	int want_links;		/* links of the child with A and B linked, or 0 */
	int threads;		/* A and B: threads sharing B's mapping */
};

struct reader {
	const struct tcase *t;
	struct shared *sh;
	volatile uint64_t *a;
};

/* A: check each round's page before and after B's first write. */
static void read_rounds(const struct tcase *t, struct shared *sh,
			volatile uint64_t *a)
{
	for (int r = 0; r < t->rounds; r++) {
		unsigned long off = r * t->stride;
		int bad = 0;

		if (a[off / 8] != word(1, off))
			bad = 1;	/* must be the base's before B wrote */
		atomic_store(&sh->reading, r + 1);
		while (atomic_load(&sh->step) < r + 1)
			(void)a[off / 8];	/* keep the translation hot */
		if (a[off / 8] != word(0x77, off))
			bad = 1;
		if (off + PG < t->size && a[(off + PG) / 8] != word(1, off + PG))
			bad = 1;
		if (bad && atomic_fetch_add(&sh->wrong, 1) == 0)
			atomic_store(&sh->first_wrong, r);
		atomic_store(&sh->seen, r + 1);
	}
}

static void *reader_thread(void *arg)
{
	struct reader *rd = arg;

	pin(0);
	atomic_store(&rd->sh->ready, 1);
	read_rounds(rd->t, rd->sh, rd->a);
	return NULL;
}

/* B: on CPU 1, with its mapping of child @c (linked), or none for pwrite. */
static volatile uint64_t *writer_mapping(const struct tcase *t, int c)
{
	void *b;

	pin(1);
	if (t->b_pwrite)
		return NULL;
	b = mmap(NULL, t->size, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
	tap_require(b != MAP_FAILED && link_all(c, b, t->size) == 0);
	return b;
}

static void run(const struct tcase *t, struct shared *sh)
{
	volatile uint64_t *b = NULL;
	struct reader rd;
	int fd, c, st;
	pthread_t tid;
	pid_t pid = 0;

	fd = open(BASE, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, t->size) == 0);
	for (int r = 0; r <= t->rounds; r++) {
		unsigned long off = r * t->stride;

		for (unsigned long o = off; o < off + 2 * PG && o < t->size; o += PG) {
			uint64_t v = word(1, o);

			tap_require(pwrite(fd, &v, 8, o) == 8);
		}
	}
	tap_require(freeze(fd) == 0);
	c = split(fd);
	tap_require(c >= 0);
	memset(sh, 0, sizeof(*sh));
	if (t->threads) {
		b = writer_mapping(t, c);
		rd = (struct reader){ t, sh, b };
		tap_require(pthread_create(&tid, NULL, reader_thread, &rd) == 0);
	} else {
		pid = fork();
		tap_require(pid >= 0);
		if (pid == 0) {	/* A: reader process on CPU 0 */
			volatile uint64_t *a;

			pin(0);
			a = mmap(NULL, t->size, t->a_prot, MAP_SHARED, c, 0);
			if (a == MAP_FAILED || link_all(c, (void *)a, t->size))
				_exit(2);
			atomic_store(&sh->ready, 1);
			read_rounds(t, sh, a);
			_exit(0);
		}
		b = writer_mapping(t, c);
	}
	while (!atomic_load(&sh->ready))
		sched_yield();
	if (t->want_links)
		tap_ok(mstat(c).links == (unsigned long long)t->want_links,
		       "%s: the child is linked by %d entries (links %llu)",
		       t->name, t->want_links, mstat(c).links);
	for (int r = 0; r < t->rounds; r++) {
		unsigned long off = r * t->stride;
		uint64_t v = word(0x77, off);

		while (atomic_load(&sh->reading) < r + 1)
			sched_yield();
		if (t->b_pwrite) {
			if (pwrite(c, &v, 8, off) != 8)
				tap_fatal("pwrite in round %d", r);
		} else {
			b[off / 8] = v;
		}
		atomic_store(&sh->step, r + 1);
		while (atomic_load(&sh->seen) < r + 1)
			sched_yield();
	}
	st = -1;
	if (t->threads)
		st = pthread_join(tid, NULL) ? -1 : 0;
	else
		waitpid(pid, &st, 0);
	tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "%s: reader ran %d rounds (status %#x)", t->name, t->rounds, st);
	tap_ok(atomic_load(&sh->wrong) == 0,
	       "%s: A sees every first write at once, neighbours unchanged "
	       "(%d wrong rounds, first %d)", t->name, atomic_load(&sh->wrong),
	       atomic_load(&sh->wrong) ? atomic_load(&sh->first_wrong) : -1);
	{
		uint64_t v0 = 0, v1 = 0;

		tap_ok(mstat(c).data_pages == (unsigned long long)t->rounds &&
		       pread(fd, &v0, 8, 0) == 8 && v0 == word(1, 0) &&
		       pread(fd, &v1, 8, (t->rounds - 1) * t->stride) == 8 &&
		       v1 == word(1, (t->rounds - 1) * t->stride),
		       "%s: the child copied %d pages (data %llu), the base is unchanged",
		       t->name, t->rounds, mstat(c).data_pages);
	}
	{
		long long all = -1, direct = -1;
		int want = t->threads ? t->rounds : 0;
		int got = replacements(c, &all, &direct);

		tap_ok(got && all == t->rounds && direct == want,
		       "%s: %d copies, %d without the core mm's zap "
		       "(replaced %lld, direct %lld)", t->name, t->rounds, want,
		       all, direct);
	}
	if (b)
		munmap((void *)b, t->size);
	close(c);
	close(fd);
	unlink(BASE);
}

/*
 * The thread reads each page on CPU 0 (a translation there), writes it
 * for the first time on CPU 1 and reads it on CPU 0 again.
 */
static void migrating_writer(void)
{
	enum { ROUNDS = 100 };
	volatile uint64_t *p;
	int fd, c, wrong = 0, first = -1, got;
	long long all = -1, direct = -1;

	fd = open(BASE, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, 2 * MiB) == 0);
	for (unsigned long off = 0; off < ROUNDS * PG; off += PG) {
		uint64_t v = word(1, off);

		tap_require(pwrite(fd, &v, 8, off) == 8);
	}
	tap_require(freeze(fd) == 0);
	c = split(fd);
	tap_require(c >= 0);
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
	tap_require(p != MAP_FAILED && link_all(c, (void *)p, 2 * MiB) == 0);
	for (int r = 0; r < ROUNDS; r++) {
		unsigned long off = r * PG;
		int bad;

		pin(0);
		bad = p[off / 8] != word(1, off);
		pin(1);
		p[off / 8] = word(0x77, off);
		pin(0);
		bad |= p[off / 8] != word(0x77, off);
		if (bad && wrong++ == 0)
			first = r;
	}
	tap_ok(wrong == 0 && mstat(c).data_pages == ROUNDS,
	       "one thread: a copy made on CPU 1 is what it reads back on CPU 0 "
	       "(%d wrong rounds, first %d, data %llu)", wrong, first,
	       mstat(c).data_pages);
	got = replacements(c, &all, &direct);
	tap_ok(got && all == ROUNDS && direct == ROUNDS,
	       "one thread: every copy without the core mm's zap (replaced %lld, direct %lld)",
	       all, direct);
	munmap((void *)p, 2 * MiB);
	close(c);
	close(fd);
	unlink(BASE);
}

int main(void)
{
	static const struct tcase cases[] = {
		{ "2 MiB, A writable, B stores", 2 * MiB, PG, 200,
		  PROT_READ | PROT_WRITE, 0, 0, 0 },
		{ "2 MiB, A read-only twin, B stores", 2 * MiB, PG, 200,
		  PROT_READ, 0, 0, 0 },
		{ "2 MiB, A writable, B pwrite()", 2 * MiB, PG, 200,
		  PROT_READ | PROT_WRITE, 1, 0, 0 },
		{ "1 GiB PUD-linked, B stores into a new 2 MiB chunk",
		  GiB, 2 * MiB, 128, PROT_READ | PROT_WRITE, 0, 2, 0 },
		{ "1 GiB, A read-only (2 MiB twins), B stores into a new 2 MiB chunk",
		  GiB, 2 * MiB, 128, PROT_READ, 0, 0, 0 },
		{ "threads, one 2 MiB mapping, B stores", 2 * MiB, PG, 200,
		  PROT_READ | PROT_WRITE, 0, 0, 1 },
		{ "threads, one 1 GiB PUD-linked mapping, B stores into a new 2 MiB chunk",
		  GiB, 2 * MiB, 128, PROT_READ | PROT_WRITE, 0, 1, 1 },
	};
	struct shared *sh = mmap(NULL, PG, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct totals base;

	tap_require(sh != MAP_FAILED);
	watchdog(150);
	base = totals();
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run(&cases[i], sh);
	migrating_writer();
	tap_ok(totals_back(base), "module totals back to the baseline");
	munmap(sh, PG);
	return tap_done();
}
