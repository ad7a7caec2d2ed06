#define _GNU_SOURCE
/*
 * Holes in copy-on-write children.  Base: 4 MiB, pages 0..511 and 512,
 * 600, 700, 1023 populated, frozen.
 * - Punching a whole page of a child hides the base's page (reads zero,
 *   SEEK_DATA skips it, the base is unchanged); punching an owned page
 *   frees it; a partial punch of a borrowed page copies it and zeroes only
 *   the range; a punched 2 MiB range leaves no data for SEEK_DATA.
 * - Punching a page of a mapped, linked child: every reader sees zeros at
 *   once, and a later store gets a zeroed frame (not the base's data).
 * - ftruncate of a child (unmapped): shrinking frees only the pages it owns
 *   (base intact), growing back shows zeros where the base has data;
 *   growing past the base's size; shrinking to another root level.
 * - SEEK_DATA/SEEK_HOLE on a child see borrowed pages (same answers as the
 *   base) plus its own; write() into a hole of the child allocates one
 *   owned, otherwise zero page; a read through a mapping of a hole maps
 *   the shared zero page read-only and allocates nothing.
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
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define BASE "/dev/morsel/cow_holes_base"
#define SIZE (4 * MiB)
#define PUNCH (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)

static const unsigned long extra[] = { 512, 600, 700, 1023 };
#define NBASE (512 + 4)		/* populated pages of the base */

/* split(), bailing out if it fails. */
static int must_split(int fd)
{
	int c = split(fd);

	if (c < 0)
		tap_fatal("MORSEL_IOC_SPLIT");
	return c;
}

static int zero(const volatile void *p, unsigned long len)
{
	const volatile unsigned char *c = p;

	for (unsigned long i = 0; i < len; i++)
		if (c[i])
			return 0;
	return 1;
}

static uint64_t buf[PG / 8];

/* Page @pg of @fd holds tag @tag (0: zeros). */
static int pg_is(int fd, unsigned long pg, unsigned tag)
{
	if (pread(fd, buf, PG, pg * PG) != (ssize_t)PG)
		return 0;
	return tag ? page_ok(buf, tag, pg * PG) : zero(buf, PG);
}

static int wpage(int fd, unsigned long pg, unsigned tag)
{
	fill_page(buf, tag, pg * PG);
	return pwrite(fd, buf, PG, pg * PG) == (ssize_t)PG;
}

/* Every page the base populated still shows tag 1, except @skip. */
static int base_shows(int fd, unsigned long skip1, unsigned long skip2)
{
	for (unsigned long pg = 0; pg < 512; pg++)
		if (pg != skip1 && pg != skip2 && !pg_is(fd, pg, 1))
			return 0;
	for (int i = 0; i < 4; i++)
		if (extra[i] != skip1 && extra[i] != skip2 && !pg_is(fd, extra[i], 1))
			return 0;
	return 1;
}

static int base_intact(int fd)
{
	struct morsel_stat s = mstat(fd);

	return s.size == SIZE && s.data_pages == NBASE && base_shows(fd, ~0UL, ~0UL) &&
	       pg_is(fd, 650, 0) && pg_is(fd, 800, 0);
}

static long sdata(int fd, unsigned long off)
{
	return lseek(fd, off, SEEK_DATA);
}

static long shole(int fd, unsigned long off)
{
	return lseek(fd, off, SEEK_HOLE);
}

static void punch_unmapped(int fd)
{
	long d0 = total("data_pages");
	struct morsel_stat s;
	int c = must_split(fd);

	tap_ok(fallocate(c, PUNCH, 10 * PG, PG) == 0,
	       "punch a whole borrowed page of a child");
	tap_ok(pg_is(c, 10, 0) && pg_is(fd, 10, 1) && pg_is(c, 9, 1) && pg_is(c, 11, 1),
	       "  the child reads zeros there, the base its data, neighbours intact");
	s = mstat(c);
	tap_ok(s.data_pages == 0 && s.borrowed_pages == NBASE - 1 &&
	       total("data_pages") == d0,
	       "  nothing allocated or freed (child data %llu, borrowed %llu)",
	       s.data_pages, s.borrowed_pages);
	tap_ok(shole(c, 0) == 10 * PG && sdata(c, 10 * PG) == 11 * PG,
	       "  SEEK_HOLE finds it (%ld), SEEK_DATA skips it (%ld)",
	       shole(c, 0), sdata(c, 10 * PG));
	tap_ok(shole(fd, 0) == 513 * PG && sdata(fd, 10 * PG) == 10 * PG,
	       "  the base's SEEK_HOLE/SEEK_DATA do not see it");

	tap_ok(wpage(c, 20, 0x11) && mstat(c).data_pages == 1 &&
	       fallocate(c, PUNCH, 20 * PG, PG) == 0 && mstat(c).data_pages == 0 &&
	       mstat(c).borrowed_pages == NBASE - 2 && pg_is(c, 20, 0) &&
	       pg_is(fd, 20, 1) && total("data_pages") == d0,
	       "punch a page the child owns: freed, reads zeros, base's page intact");

	tap_ok(fallocate(c, PUNCH, 30 * PG + 100, 200) == 0 &&
	       mstat(c).data_pages == 1 && mstat(c).borrowed_pages == NBASE - 3,
	       "partial punch of a borrowed page copies it (data %llu)",
	       mstat(c).data_pages);
	{
		int ok = pread(c, buf, PG, 30 * PG) == (ssize_t)PG &&
			 zero((char *)buf + 100, 200);

		for (unsigned i = 0; ok && i < PG / 8; i++)
			if (i * 8 + 8 <= 100 || i * 8 >= 300)
				ok = buf[i] == word(1, 30 * PG + 8 * i);
		tap_ok(ok && pg_is(fd, 30, 1),
		       "  only the punched bytes are zero, the base's page intact");
	}

	tap_ok(fallocate(c, PUNCH, 2 * MiB, 2 * MiB) == 0 &&
	       sdata(c, 2 * MiB) == -1 && errno == ENXIO && shole(c, 2 * MiB) == 2 * MiB,
	       "punch [2 MiB, 4 MiB) of the child: SEEK_DATA from 2 MiB is ENXIO");
	s = mstat(c);
	tap_ok(pg_is(c, 512, 0) && pg_is(c, 600, 0) && pg_is(c, 1023, 0) &&
	       s.data_pages == 1 && s.borrowed_pages == NBASE - 7 &&
	       base_intact(fd),
	       "  zeros there, child data %llu borrowed %llu, base intact",
	       s.data_pages, s.borrowed_pages);
	close(c);
	tap_ok(total("data_pages") == d0, "closing the child frees its one page");
}

static void punch_mapped(int fd)
{
	struct morsel_map mm;
	volatile uint64_t *m, *r;
	unsigned long d;
	int c = must_split(fd);

	m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
	r = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, c, 0);
	tap_require(m != MAP_FAILED && r != MAP_FAILED);
	memset(&mm, 0, sizeof(mm));
	mm.argsz = sizeof(mm);
	mm.addr = (uintptr_t)m;
	mm.length = SIZE;
	tap_require(ioctl(c, MORSEL_IOC_MAP, &mm) == 0);
	tap_require(page_ok(m + 40 * PG / 8, 1, 40 * PG) &&
		    page_ok(r + 40 * PG / 8, 1, 40 * PG));
	d = mstat(c).data_pages;
	tap_ok(fallocate(c, PUNCH, 40 * PG, PG) == 0 && zero(m + 40 * PG / 8, PG) &&
	       zero(r + 40 * PG / 8, PG) && page_ok(m + 41 * PG / 8, 1, 41 * PG),
	       "punch a borrowed page of a linked child: both mappings read zeros at once");
	m[40 * PG / 8 + 3] = 0xabcd;
	tap_ok(mstat(c).data_pages == d + 1 && r[40 * PG / 8 + 3] == 0xabcd &&
	       zero(m + 40 * PG / 8, 24) && zero(m + 40 * PG / 8 + 4, PG - 32),
	       "  a store there gets a zeroed frame, not the base's page");
	m[41 * PG / 8] = 0x1234;
	tap_ok(mstat(c).data_pages == d + 2 && fallocate(c, PUNCH, 41 * PG, PG) == 0 &&
	       mstat(c).data_pages == d + 1 && zero(r + 41 * PG / 8, PG),
	       "punch a page the child copied through the mapping: freed, zeros");
	tap_ok(pg_is(fd, 40, 1) && pg_is(fd, 41, 1) && base_intact(fd),
	       "  the base still has both pages");
	munmap((void *)m, SIZE);
	munmap((void *)r, SIZE);
	close(c);
}

static void truncate_child(int fd)
{
	long d0 = total("data_pages");
	struct morsel_stat s;
	int c = must_split(fd);

	tap_require(wpage(c, 100, 0x11) && wpage(c, 800, 0x11) && wpage(c, 600, 0x11));
	tap_require(mstat(c).data_pages == 3 && total("data_pages") == d0 + 3);
	tap_ok(ftruncate(c, 2 * MiB) == 0, "shrink a child from 4 MiB to 2 MiB");
	s = mstat(c);
	tap_ok(s.size == 2 * MiB && s.level == MORSEL_LEVEL_PTE && s.data_pages == 1 &&
	       s.borrowed_pages == 511,
	       "  size %llu level %u, owns 1 page (data %llu), borrows 511 (%llu)",
	       s.size, s.level, s.data_pages, s.borrowed_pages);
	tap_ok(total("data_pages") == d0 + 1,
	       "  only the 2 owned pages past 2 MiB were freed (module data %+ld)",
	       total("data_pages") - d0);
	tap_ok(base_intact(fd), "  the base keeps its size, pages and data");
	tap_ok(pg_is(c, 100, 0x11) && pg_is(c, 0, 1) && pg_is(c, 511, 1),
	       "  the child keeps its page and the borrowed ones below 2 MiB");
	tap_ok(ftruncate(c, SIZE) == 0 && pg_is(c, 512, 0) && pg_is(c, 600, 0) &&
	       pg_is(c, 700, 0) && pg_is(c, 1023, 0) && pg_is(c, 800, 0) &&
	       sdata(c, 2 * MiB) == -1 && mstat(c).borrowed_pages == 511,
	       "grow it back to 4 MiB: zeros above 2 MiB, not the base's pages");
	tap_ok(ftruncate(c, 0) == 0 && mstat(c).data_pages == 0 &&
	       mstat(c).borrowed_pages == 0 && ftruncate(c, 1 * MiB) == 0 &&
	       pg_is(c, 0, 0) && pg_is(c, 100, 0) && sdata(c, 0) == -1,
	       "truncate to 0 and grow to 1 MiB: all zeros, nothing owned or borrowed");
	tap_ok(base_intact(fd) && total("data_pages") == d0,
	       "  the base is intact, the module holds only the base's pages");
	close(c);

	c = must_split(fd);
	tap_ok(ftruncate(c, 2 * SIZE) == 0 && mstat(c).borrowed_pages == NBASE &&
	       mstat(c).level == MORSEL_LEVEL_PMD && pg_is(c, 1023, 1) &&
	       pg_is(c, 1024, 0) && pg_is(c, 2047, 0) && sdata(c, 1024 * PG) == -1 &&
	       wpage(c, 1500, 0x11) && mstat(c).data_pages == 1,
	       "grow a child past the base's size: new pages are holes, old ones borrowed");
	tap_ok(ftruncate(c, 16 * KiB) == 0 && mstat(c).level == MORSEL_LEVEL_PTE &&
	       mstat(c).data_pages == 0 && mstat(c).borrowed_pages == 4 &&
	       pg_is(c, 0, 1) && pg_is(c, 3, 1) && base_intact(fd) &&
	       total("data_pages") == d0,
	       "shrink it to 16 KiB (PTE root): 4 borrowed pages, the base intact");
	close(c);
}

static void seek_and_write(int fd)
{
	static const unsigned long offs[] = {
		0, 100 * PG, 511 * PG, 512 * PG, 513 * PG, 599 * PG, 600 * PG,
		601 * PG, 650 * PG, 700 * PG, 701 * PG, 1022 * PG, 1023 * PG,
		SIZE - 1,
	};
	volatile unsigned char *m;
	char msg[100];
	int c = must_split(fd), same = 1;
	struct morsel_stat s;

	for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		same &= sdata(c, offs[i]) == sdata(fd, offs[i]);
		same &= shole(c, offs[i]) == shole(fd, offs[i]);
	}
	tap_ok(same, "SEEK_DATA/SEEK_HOLE of a fresh child equal the base's at 14 offsets");
	tap_ok(sdata(c, 0) == 0 && shole(c, 0) == 513 * PG && sdata(c, 2 * MiB) == 2 * MiB &&
	       shole(c, 2 * MiB) == 2 * MiB + PG && sdata(c, 513 * PG) == 600 * PG &&
	       sdata(c, 701 * PG) == 1023 * PG && shole(c, 1023 * PG) == SIZE,
	       "  they see the borrowed pages (0..511, 512, 600, 700, 1023)");

	memset(msg, 'w', sizeof(msg));
	tap_ok(lseek(c, 650 * PG + 50, SEEK_SET) == 650 * PG + 50 &&
	       write(c, msg, sizeof(msg)) == sizeof(msg),
	       "write() 100 bytes into a hole of the child");
	s = mstat(c);
	tap_ok(s.data_pages == 1 && s.borrowed_pages == NBASE,
	       "  allocates one owned page (data %llu, borrowed %llu)",
	       s.data_pages, s.borrowed_pages);
	{
		int ok = pread(c, buf, PG, 650 * PG) == (ssize_t)PG &&
			 zero(buf, 50) && zero((char *)buf + 150, PG - 150);

		for (int i = 50; ok && i < 150; i++)
			ok = ((char *)buf)[i] == 'w';
		tap_ok(ok, "  the page holds the bytes written and zeros");
	}
	tap_ok(sdata(c, 601 * PG) == 650 * PG && shole(c, 650 * PG) == 651 * PG &&
	       sdata(fd, 601 * PG) == 700 * PG && pg_is(fd, 650, 0),
	       "  SEEK_DATA of the child finds it, the base still has a hole");

	m = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, c, 0);
	tap_require(m != MAP_FAILED);
	{
		unsigned char z = m[800 * PG + 7], b = m[600 * PG];
		struct morsel_stat s2 = mstat(c);

		tap_ok(z == 0 && b == (word(1, 600 * PG) & 0xff) &&
		       s2.borrowed_pages == NBASE && pg_is(fd, 800, 0) &&
		       sdata(fd, 701 * PG) == 1023 * PG,
		       "a read through a mapping of a hole of the child reads zero, "
		       "the base stays a hole (borrowed %llu)", s2.borrowed_pages);
		tap_ok(s2.data_pages == 1,
		       "  and allocates nothing: a child maps the zero page for a "
		       "hole read (semantics.md, Mapping) (data %llu, want 1)",
		       s2.data_pages);
	}
	{
		volatile unsigned char *w = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
						 MAP_SHARED, c, 0);
		unsigned long d;

		tap_require(w != MAP_FAILED);
		(void)w[801 * PG];
		d = mstat(c).data_pages;
		w[801 * PG + 9] = 0x42;
		tap_ok(m[801 * PG + 9] == 0x42 && zero(w + 801 * PG, 9) &&
		       zero(w + 801 * PG + 10, PG - 10) && pg_is(fd, 801, 0) &&
		       mstat(c).data_pages <= d + 1 && mstat(c).data_pages >= 2,
		       "a store after a read of a hole through a writable mapping: "
		       "an owned zeroed page, seen by the read-only mapping (data %llu)",
		       mstat(c).data_pages);
		munmap((void *)w, SIZE);
	}
	munmap((void *)m, SIZE);
	close(c);
}

int main(void)
{
	struct totals base;
	int fd;

	watchdog(150);
	base = totals();
	fd = open(BASE, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, SIZE) == 0);
	for (unsigned long pg = 0; pg < 512; pg++)
		tap_require(wpage(fd, pg, 1));
	for (int i = 0; i < 4; i++)
		tap_require(wpage(fd, extra[i], 1));
	tap_require(freeze(fd) == 0 && mstat(fd).data_pages == NBASE);

	punch_unmapped(fd);
	punch_mapped(fd);
	truncate_child(fd);
	seek_and_write(fd);

	close(fd);
	unlink(BASE);
	tap_ok(totals_back(base), "module totals back to the baseline");
	return tap_done();
}
