// SPDX-License-Identifier: GPL-2.0
/*
 * While a copy-on-write replaces a leaf of a child (replace_leaf()), the
 * core mm zaps the old leaf through the links before the copy goes in, so
 * for a moment the leaf reads none.  Nobody may take that for a hole.
 * One thread stores the first word of every page of a linked child (each
 * store copies a page) while others, at the same time, read the pages
 * with pread(), through a second mapping that is linked, through a third
 * one that maps page by page (unaligned, so it cannot link), look for
 * holes with SEEK_HOLE, and scan with MORSEL_IOC_SCAN.  None may ever see
 * zeros instead of the base's data, a hole, or a page missing; afterwards
 * the readers' mappings (linked while copies ran) show every store; every
 * page is copied once; the totals come back.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include "libmorsel.h"
#include "vm.h"

#define BASE	"/dev/morsel/cowrep-base"
#define PAGES	2048UL		/* 8 MiB: four PTE tables */
#define ROUNDS	4

static int child;
static uint64_t *writer_map, *reader_map;
static volatile char *paged_map;	/* starts one page in: no links */
static atomic_int stop;
static atomic_long bad_pread, bad_map, bad_paged, bad_seek, bad_scan;
static atomic_long bad_stale;

/* Words 1.. of a page: the base's, whether or not the copy is done. */
static int rest_ok(const volatile uint64_t *w, unsigned long off)
{
	for (unsigned int i = 1; i < PG / 8; i++)
		if (w[i] != word(1, off + 8 * i))
			return 0;
	return 1;
}

static void *writer(void *arg)
{
	(void)arg;
	for (unsigned long i = 0; i < PAGES; i++)
		writer_map[i * PG / 8] = word(2, i * PG);
	return NULL;
}

static void *preader(void *arg)
{
	static uint64_t buf[PG / 8];

	(void)arg;
	while (!atomic_load(&stop))
		for (unsigned long i = 0; i < PAGES; i += 7)
			if (pread(child, buf, PG, i * PG) != (ssize_t)PG ||
			    !rest_ok(buf, i * PG))
				atomic_fetch_add(&bad_pread, 1);
	return NULL;
}

static void *map_reader(void *arg)
{
	const volatile uint64_t *w;

	(void)arg;
	while (!atomic_load(&stop))
		for (unsigned long i = 0; i < PAGES; i += 5) {
			if (!rest_ok(reader_map + i * PG / 8, i * PG))
				atomic_fetch_add(&bad_map, 1);
			if (i && !rest_ok((const volatile uint64_t *)
					  (paged_map + (i - 1) * PG), i * PG))
				atomic_fetch_add(&bad_paged, 1);
		}
	/*
	 * Links this thread made while copies ran must not keep an old
	 * frame in its TLB: every store must show here now.
	 */
	for (unsigned long i = 0; i < PAGES; i++) {
		if (reader_map[i * PG / 8] != word(2, i * PG))
			atomic_fetch_add(&bad_stale, 1);
		w = (const volatile uint64_t *)(paged_map + (i - 1) * PG);
		if (i && w[0] != word(2, i * PG))
			atomic_fetch_add(&bad_stale, 1);
	}
	return NULL;
}

static void *prober(void *arg)
{
	static uint64_t present[PAGES / 64];

	(void)arg;
	while (!atomic_load(&stop)) {
		if (lseek(child, 0, SEEK_HOLE) != (off_t)(PAGES * PG))
			atomic_fetch_add(&bad_seek, 1);
		memset(present, 0, sizeof(present));
		if (morsel_scan(child, 0, PAGES * PG, 0, 0, present, NULL,
				NULL, NULL))
			atomic_fetch_add(&bad_scan, 1);
		for (unsigned long w = 0; w < PAGES / 64; w++)
			if (present[w] != ~0ULL)
				atomic_fetch_add(&bad_scan, 1);
	}
	return NULL;
}

int main(void)
{
	pthread_t w, t[3];
	struct totals base_totals;
	int base, ok_once = 1, ok_data = 1;
	struct morsel_stat st;

	watchdog(240);
	unlink(BASE);
	base_totals = totals();
	base = mkbase(BASE, PAGES);
	for (int round = 0; round < ROUNDS; round++) {
		phase = "split and map";
		child = split(base);
		tap_require(child >= 0);
		writer_map = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE,
				  MAP_SHARED, child, 0);
		reader_map = mmap(NULL, PAGES * PG, PROT_READ, MAP_SHARED,
				  child, 0);
		paged_map = mmap(NULL, (PAGES - 1) * PG, PROT_READ,
				 MAP_SHARED, child, PG);
		tap_require(writer_map != MAP_FAILED &&
			    reader_map != MAP_FAILED &&
			    paged_map != MAP_FAILED);
		tap_require(link_all(child, writer_map, PAGES * PG) == 0);
		atomic_store(&stop, 0);
		phase = "copy-on-write under readers";
		pthread_create(&t[0], NULL, preader, NULL);
		pthread_create(&t[1], NULL, map_reader, NULL);
		pthread_create(&t[2], NULL, prober, NULL);
		pthread_create(&w, NULL, writer, NULL);
		pthread_join(w, NULL);
		atomic_store(&stop, 1);
		for (int i = 0; i < 3; i++)
			pthread_join(t[i], NULL);
		st = mstat(child);
		ok_once &= st.data_pages == PAGES;
		for (unsigned long i = 0; i < PAGES; i++)
			ok_data &= writer_map[i * PG / 8] == word(2, i * PG) &&
				   rest_ok(writer_map + i * PG / 8, i * PG);
		munmap(writer_map, PAGES * PG);
		munmap(reader_map, PAGES * PG);
		munmap((void *)paged_map, (PAGES - 1) * PG);
		close(child);
	}
	tap_ok(ok_once, "every page copied once (%d rounds of %lu pages)",
	       ROUNDS, PAGES);
	tap_ok(ok_data, "the child holds its stores over the base's data");
	tap_ok(!atomic_load(&bad_pread),
	       "pread() never saw zeros for base data (%ld bad)",
	       atomic_load(&bad_pread));
	tap_ok(!atomic_load(&bad_map),
	       "a second linked mapping never did (%ld bad)",
	       atomic_load(&bad_map));
	tap_ok(!atomic_load(&bad_paged),
	       "a page-by-page mapping never did (%ld bad)",
	       atomic_load(&bad_paged));
	tap_ok(!atomic_load(&bad_stale),
	       "after the copies, both read mappings see every store (%ld stale)",
	       atomic_load(&bad_stale));
	tap_ok(!atomic_load(&bad_seek),
	       "SEEK_HOLE never found a hole (%ld bad)",
	       atomic_load(&bad_seek));
	tap_ok(!atomic_load(&bad_scan),
	       "MORSEL_IOC_SCAN always saw every page present (%ld bad)",
	       atomic_load(&bad_scan));
	close(base);
	unlink(BASE);
	phase = "totals";
	tap_ok(totals_back(base_totals), "module totals back to before");
	return tap_done();
}
