#define _GNU_SOURCE
/*
 * Lifetimes of frozen bases and their children.
 * - Child destroyed first, then the base; a child kept alive only by its
 *   mapping.
 * - Base unlinked and closed first while children live: the children still
 *   read its data, its frames stay counted in /sys/kernel/morsel/data_pages
 *   until the last child goes; a named child outlives everything.
 * - A child of a child: freeze the child, split a grandchild, which reads
 *   base and child data and writes privately; base and child go first.
 * - 3000 split / write / (map, store, name) / destroy cycles on a 2 MiB
 *   base: module totals back to the baseline.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/morsel.h>
#include "vm.h"

#define BASE "/dev/morsel/cow_life_base"
#define NAMED "/dev/morsel/cow_life_child"
#define CYCLES 3000

/* Wait (RCU-deferred frees) until total @name is @want; 1 if it got there. */
static int total_is(const char *name, long want)
{
	for (int tries = 0; tries < 40; tries++) {
		if (total(name) == want)
			return 1;
		usleep(50000);
	}
	tap_diag("%s: %ld, want %ld", name, total(name), want);
	return 0;
}

static uint64_t buf[PG / 8];

static int pg_is(int fd, unsigned long pg, unsigned tag)
{
	return pread(fd, buf, PG, pg * PG) == (ssize_t)PG &&
	       page_ok(buf, tag, pg * PG);
}

static int wpage(int fd, unsigned long pg, unsigned tag)
{
	fill_page(buf, tag, pg * PG);
	return pwrite(fd, buf, PG, pg * PG) == (ssize_t)PG;
}

/* Pages [0, @n) of @fd show tag @tag, except @skip1, @skip2 showing @stag. */
static int all_is(int fd, unsigned long n, unsigned tag, unsigned long skip1,
		  unsigned long skip2, unsigned stag)
{
	for (unsigned long pg = 0; pg < n; pg++)
		if (!pg_is(fd, pg, pg == skip1 || pg == skip2 ? stag : tag))
			return 0;
	return 1;
}

static void child_first(struct totals base)
{
	long m0 = total("morsels"), d0;
	uint64_t *m;
	int fd = mkbase(BASE, 256), c;

	d0 = total("data_pages");
	c = split(fd);
	tap_require(c >= 0 && wpage(c, 3, 2) && wpage(c, 200, 2));
	tap_require(mstat(fd).children == 1 && total("data_pages") == d0 + 2);
	close(c);
	tap_ok(mstat(fd).children == 0 && total_is("morsels", m0 + 1) &&
	       total_is("data_pages", d0) && all_is(fd, 256, 1, ~0UL, ~0UL, 0),
	       "child destroyed first: its 2 pages freed, base intact, children 0");

	c = split(fd);
	tap_require(c >= 0);
	m = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
	tap_require(m != MAP_FAILED);
	fill_page(m + 5 * PG / 8, 2, 5 * PG);
	close(c);
	tap_ok(total("morsels") == m0 + 2 && mstat(fd).children == 1 &&
	       page_ok(m + 5 * PG / 8, 2, 5 * PG) && page_ok(m + 6 * PG / 8, 1, 6 * PG),
	       "a child whose fd is closed lives while mapped");
	munmap(m, MiB);
	tap_ok(total_is("morsels", m0 + 1) && mstat(fd).children == 0 &&
	       total_is("data_pages", d0),
	       "munmap destroys it (children %llu)", mstat(fd).children);
	close(fd);
	unlink(BASE);
	tap_ok(totals_back(base), "then the base: module totals back to the baseline");
}

static void base_first(struct totals base)
{
	long m0 = total("morsels"), d0;
	int fd = mkbase(BASE, 1024), c, c2, n;
	ino_t bino;
	struct stat st;
	uint64_t *m;

	d0 = total("data_pages");		/* includes the base's 1024 */
	tap_require(fstat(fd, &st) == 0);
	bino = st.st_ino;
	c = split(fd);
	tap_require(c >= 0 && wpage(c, 5, 2));
	tap_ok(unlink(BASE) == 0 && close(fd) == 0,
	       "unlink and close the base while a child lives");
	tap_ok(total("morsels") == m0 + 2 && total("data_pages") == d0 + 1,
	       "  the base still exists: morsels %+ld, data_pages %+ld (base 1024 + 1)",
	       total("morsels") - m0, total("data_pages") - (d0 - 1024));
	tap_ok(all_is(c, 1024, 1, 5, ~0UL, 2),
	       "  read() of the child shows all the base's data and its own page");
	m = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
	tap_require(m != MAP_FAILED);
	fill_page(m + 900 * PG / 8, 2, 900 * PG);
	tap_ok(page_ok(m + 1000 * PG / 8, 1, 1000 * PG) && page_ok(m + 5 * PG / 8, 2, 5 * PG) &&
	       mstat(c).data_pages == 2 && mstat(c).borrowed_pages == 1022,
	       "  its mapping reads the base's data; a store still copies (data %llu)",
	       mstat(c).data_pages);
	tap_ok(mstat(c).parent == bino, "  STAT parent is still the base's inode");
	munmap(m, 4 * MiB);
	close(c);
	tap_ok(total_is("morsels", m0) && total_is("data_pages", d0 - 1024),
	       "closing the last child frees the base's 1024 frames too");

	/* Two children: the base goes with the second. */
	fd = mkbase(BASE, 1024);
	c = split(fd);
	c2 = split(fd);
	tap_require(c >= 0 && c2 >= 0 && wpage(c2, 7, 3));
	unlink(BASE);
	close(fd);
	close(c);
	tap_ok(total_is("morsels", m0 + 2) && total_is("data_pages", d0 + 1) &&
	       all_is(c2, 1024, 1, 7, ~0UL, 3),
	       "two children, base unlinked: after the first child goes the base's "
	       "frames stay, the second reads them");
	close(c2);
	tap_ok(total_is("morsels", m0) && total_is("data_pages", d0 - 1024),
	       "  the second child takes the base with it");

	/* A named child outlives everything. */
	fd = mkbase(BASE, 1024);
	c = split(fd);
	tap_require(c >= 0 && wpage(c, 9, 2));
	{
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", c);
		tap_require(linkat(AT_FDCWD, proc, AT_FDCWD, NAMED, AT_SYMLINK_FOLLOW) == 0);
	}
	close(c);
	unlink(BASE);
	close(fd);
	n = open(NAMED, O_RDONLY);
	tap_ok(n >= 0 && all_is(n, 1024, 1, 9, ~0UL, 2) && total("morsels") == m0 + 2,
	       "a named child, every fd and the base's name gone: reopened by name "
	       "it reads base and own data");
	close(n);
	unlink(NAMED);
	tap_ok(totals_back(base), "unlinking it frees child and base: totals at baseline");
}

/* The grandchild: its own pages 10 and 30, the child's 20, the base's rest. */
static int g_ok(int g)
{
	for (unsigned long pg = 0; pg < 512; pg++)
		if (!pg_is(g, pg, pg == 10 || pg == 30 ? 3 : pg == 20 ? 2 : 1))
			return 0;
	return 1;
}

static void grandchild(struct totals base)
{
	long m0 = total("morsels"), d0;
	int fd = mkbase(BASE, 512), c, g;
	struct morsel_stat s;
	uint64_t *m;

	d0 = total("data_pages");
	c = split(fd);
	tap_require(c >= 0 && wpage(c, 10, 2) && wpage(c, 20, 2));
	tap_ok(freeze(c) == 0 && mstat(c).state == MORSEL_STATE_FROZEN,
	       "a child with 2 own pages can be frozen");
	tap_errno(pwrite(c, buf, 8, 0), EPERM, "  pwrite to the frozen child: EPERM");
	g = split(c);
	tap_require(g >= 0);
	s = mstat(g);
	tap_ok(s.parent == ino(c) && mstat(c).parent == ino(fd) &&
	       mstat(c).children == 1 && mstat(fd).children == 1 &&
	       s.size == 2 * MiB && s.state == 0,
	       "SPLIT of the frozen child: the grandchild's parent is the child, "
	       "one child each");
	tap_ok(all_is(g, 512, 1, 10, 20, 2),
	       "  the grandchild reads the child's 2 pages and the base's others");
	tap_ok(s.data_pages == 0 && s.borrowed_pages == 512,
	       "  it owns nothing and borrows 512 pages (data %llu, borrowed %llu)",
	       s.data_pages, s.borrowed_pages);
	m = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
	tap_require(m != MAP_FAILED);
	fill_page(m + 10 * PG / 8, 3, 10 * PG);
	fill_page(m + 30 * PG / 8, 3, 30 * PG);
	tap_ok(mstat(g).data_pages == 2 && pg_is(g, 10, 3) && pg_is(g, 30, 3) &&
	       pg_is(c, 10, 2) && pg_is(c, 30, 1) && pg_is(fd, 10, 1) && pg_is(fd, 30, 1),
	       "  its stores (over a child page and a base page) are private");
	tap_ok(all_is(c, 512, 1, 10, 20, 2) && mstat(c).data_pages == 2 &&
	       all_is(fd, 512, 1, ~0UL, ~0UL, 0) && total("data_pages") == d0 + 4,
	       "  child and base intact, module data_pages = 512 + 2 + 2");
	close(c);
	close(fd);
	unlink(BASE);
	tap_ok(g_ok(g) &&
	       page_ok(m + 20 * PG / 8, 2, 20 * PG) && page_ok(m + 500 * PG / 8, 1, 500 * PG),
	       "base and child closed and unlinked: the grandchild still reads all");
	tap_ok(total("morsels") == m0 + 3 && total("data_pages") == d0 + 4,
	       "  all three objects still exist (morsels %+ld)", total("morsels") - m0);
	munmap(m, 2 * MiB);
	close(g);
	tap_ok(totals_back(base), "closing the grandchild frees all three");
}

static void cycles(struct totals base)
{
	int fd = mkbase(BASE, 512), errors = 0, first = -1;
	long d0 = total("data_pages");
	char proc[64];

	for (int i = 0; i < CYCLES; i++) {
		int c = split(fd), ok = c >= 0;
		unsigned long p1 = (i * 7) % 512, p2 = (i * 13 + 5) % 512, p3 = (i * 31 + 1) % 512;
		uint64_t v = word(0x30, i), r = 0;

		ok = ok && pwrite(c, &v, 8, p1 * PG) == 8 && pwrite(c, &v, 8, p2 * PG + 8) == 8 &&
		     pwrite(c, &v, 8, p3 * PG + 16) == 8;
		ok = ok && pread(c, &r, 8, p1 * PG) == 8 && r == v;
		if (ok && i % 8 == 0) {
			uint64_t *m = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE,
					   MAP_SHARED, c, 0);

			ok = m != MAP_FAILED;
			if (ok) {
				unsigned long q1 = i % 512, q2 = (i + 256) % 512;

				m[q1 * PG / 8 + 100] = v;
				m[q2 * PG / 8 + 101] = v;
				ok = m[p1 * PG / 8] == v &&
				     pread(c, &r, 8, q2 * PG + 808) == 8 && r == v;
				munmap(m, 2 * MiB);
			}
		}
		if (ok && i % 16 == 0) {
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", c);
			ok = linkat(AT_FDCWD, proc, AT_FDCWD, NAMED, AT_SYMLINK_FOLLOW) == 0 &&
			     unlink(NAMED) == 0;
		}
		if (c >= 0)
			close(c);
		if (!ok && !errors++)
			first = i;
	}
	tap_ok(errors == 0, "%d split/write/destroy cycles (every 8th mapped, every "
	       "16th named): %d failed, first %d (errno %d)", CYCLES, errors, first, errno);
	tap_ok(mstat(fd).children == 0 && mstat(fd).data_pages == 512 &&
	       all_is(fd, 512, 1, ~0UL, ~0UL, 0) && total_is("data_pages", d0),
	       "  base: no children, its 512 pages intact, module data_pages back");
	close(fd);
	unlink(BASE);
	tap_ok(totals_back(base), "  module totals back to the baseline");
}

int main(void)
{
	struct totals base;

	watchdog(150);
	base = totals();
	child_first(base);
	base_first(base);
	grandchild(base);
	cycles(base);
	return tap_done();
}
