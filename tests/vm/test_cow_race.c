// SPDX-License-Identifier: GPL-2.0
/*
 * A page-by-page fault that races with the copy of its own page must not
 * keep the old frame.  The fault looks the leaf up and inserts it into the
 * process's own PTE table; if the copy's unmap_mapping_range() ran between
 * the two, nothing else removes that entry (fault_one_page()).  Thread W
 * (CPU 1) stores the first word of page j through a linked mapping of a
 * child, which copies the page, while the main thread (CPU 0) touches page
 * j for the first time through a mapping that starts one page in (so it
 * cannot link: every page is faulted in on its own), each with a delay
 * that differs from round to round so that the two meet at every point.
 * Once both are done, the main thread must read W's value through its
 * mapping.  Also: every page is copied once, the totals come back.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include "vm.h"

#define BASE	"/dev/morsel/cowrace-base"
#define PAGES	512UL		/* 2 MiB: one PTE table */
#define VIEW	256UL		/* pages of the page-by-page view */
#define CHILDREN 16

static volatile uint64_t *writer_map;
static atomic_ulong go, written;

static void spin(unsigned long n)
{
	for (volatile unsigned long i = 0; i < n; i++)
		;
}

static void *writer(void *arg)
{
	(void)arg;
	pin(1);
	for (unsigned long j = 1; j < VIEW; j++) {
		while (atomic_load(&go) < j)
			;
		spin((j * 13) % 97);
		writer_map[j * PG / 8] = word(2, j * PG);
		atomic_store(&written, j);
	}
	return NULL;
}

int main(void)
{
	unsigned long stale = 0, rounds = 0, copies = 0, first = 0;
	struct totals base_totals;
	int fd;

	watchdog(120);
	base_totals = totals();
	fd = mkbase(BASE, PAGES);
	pin(0);
	for (int k = 0; k < CHILDREN; k++) {
		volatile char *view;
		pthread_t tid;
		int c = split(fd);

		tap_require(c >= 0);
		writer_map = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE,
				  MAP_SHARED, c, 0);
		tap_require(writer_map != MAP_FAILED &&
			    link_all(c, (void *)writer_map, PAGES * PG) == 0);
		view = mmap(NULL, (VIEW - 1) * PG, PROT_READ, MAP_SHARED, c, PG);
		tap_require(view != MAP_FAILED);
		atomic_store(&go, 0);
		atomic_store(&written, 0);
		tap_require(pthread_create(&tid, NULL, writer, NULL) == 0);
		for (unsigned long j = 1; j < VIEW; j++) {
			const volatile uint64_t *w;

			w = (const volatile uint64_t *)(view + (j - 1) * PG);
			atomic_store(&go, j);
			spin((j * 29 + k * 7) % 97);
			(void)w[0];		/* the first touch: a fault */
			while (atomic_load(&written) < j)
				;
			if (w[0] != word(2, j * PG) && stale++ == 0)
				first = k * VIEW + j;
			rounds++;
		}
		pthread_join(tid, NULL);
		copies += mstat(c).data_pages;
		munmap((void *)view, (VIEW - 1) * PG);
		munmap((void *)writer_map, PAGES * PG);
		close(c);
	}
	tap_ok(stale == 0,
	       "a fault racing with the copy of its page never keeps the old frame "
	       "(%lu of %lu rounds stale, first %lu)", stale, rounds, first);
	tap_ok(copies == rounds, "every page copied once (%lu copies, %lu rounds)",
	       copies, rounds);
	close(fd);
	unlink(BASE);
	tap_ok(totals_back(base_totals), "module totals back to the baseline");
	return tap_done();
}
