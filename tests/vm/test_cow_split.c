#define _GNU_SOURCE
/*
 * MORSEL_IOC_SPLIT: argument errors, an unfrozen base (EINVAL),
 * MORSEL_SPLIT_CLOEXEC; then for bases of every root level (16 KiB: PTE,
 * 64 MiB filled: PMD, 3 GiB sparse: PUD) a child has the base's size,
 * level and contents; reading it (read() and a linked mapping) copies
 * nothing; the first write to a page (through the mapping and through
 * pwrite) copies that one page (data_pages +1, borrowed_pages -1), writing
 * it again copies nothing; a child's writes are invisible to the base and
 * to a sibling; STAT parent/children; linkat names a child and reopening
 * the name shows the child's data.
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

#define BASE "/dev/morsel/cow_split_base"
#define NAMED "/dev/morsel/cow_split_child"

static struct morsel_split sp_arg(void)
{
	struct morsel_split s;

	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	s.fd = -1;
	return s;
}

static int page_zero(const void *p)
{
	const uint64_t *w = p;

	for (unsigned i = 0; i < PG / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

static uint64_t pbuf[PG / 8];

static int pwrite_page(int fd, unsigned tag, unsigned long off)
{
	fill_page(pbuf, tag, off);
	return pwrite(fd, pbuf, PG, off) == (ssize_t)PG ? 0 : -1;
}

static int pread_ok(int fd, unsigned tag, unsigned long off)
{
	return pread(fd, pbuf, PG, off) == (ssize_t)PG && page_ok(pbuf, tag, off);
}

/* ---------------------------------------------------------------- errors */

static void errors(struct totals base)
{
	struct morsel_split s;
	struct stat st;
	int fd, c, c2;

	fd = open(BASE, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, 1 * MiB) == 0 &&
		    pwrite_page(fd, 1, 0) == 0);
	tap_errno(split_flags(fd, 0), EINVAL, "SPLIT of a base that is not frozen: EINVAL");
	tap_require(freeze(fd) == 0);
	s = sp_arg();
	s.flags = 1U << 1;
	tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &s), EINVAL, "SPLIT flags bit 1: EINVAL");
	s = sp_arg();
	s.flags = 1U << 31;
	tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &s), EINVAL, "SPLIT flags bit 31: EINVAL");
	s = sp_arg();
	s.argsz = 0;
	tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &s), EINVAL, "SPLIT argsz 0: EINVAL");
	s = sp_arg();
	s.argsz = sizeof(s) - 8;
	tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &s), EINVAL, "SPLIT argsz too small: EINVAL");
	{
		struct { struct morsel_split s; uint64_t tail[4]; } big;

		memset(&big, 0, sizeof(big));
		big.s = sp_arg();
		big.s.argsz = sizeof(big);
		big.tail[0] = 1;
		tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &big), E2BIG,
			  "SPLIT larger argsz, first unknown byte set: E2BIG");
		big.tail[0] = 0;
		big.tail[3] = 1ULL << 63;
		tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &big), E2BIG,
			  "SPLIT larger argsz, last unknown byte set: E2BIG");
		big.tail[3] = 0;
		big.s.argsz = MORSEL_SPLIT_SIZE_VER0 - 4;
		tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &big), EINVAL,
			  "SPLIT argsz below its first size: EINVAL");
	}
	s = sp_arg();
	s.__pad = 1;
	tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, &s), EINVAL, "SPLIT __pad set: EINVAL");
	tap_errno(ioctl(fd, MORSEL_IOC_SPLIT, NULL), EFAULT, "SPLIT NULL pointer: EFAULT");
	tap_ok(mstat(fd).children == 0 && total("morsels") == base.v[T_MORSELS] + 1,
	       "failed SPLIT calls create nothing (children %llu, morsels %ld)",
	       mstat(fd).children, total("morsels"));

	c = split_flags(fd, MORSEL_SPLIT_CLOEXEC);
	tap_ok(c >= 0 && (fcntl(c, F_GETFD) & FD_CLOEXEC),
	       "MORSEL_SPLIT_CLOEXEC: the child's fd has FD_CLOEXEC");
	c2 = split_flags(fd, 0);
	tap_ok(c2 >= 0 && !(fcntl(c2, F_GETFD) & FD_CLOEXEC),
	       "flags 0: the child's fd has no FD_CLOEXEC");
	tap_ok((fcntl(c2, F_GETFL) & O_ACCMODE) == O_RDWR,
	       "the child's fd is O_RDWR");
	if (fstat(c2, &st))
		memset(&st, 0xff, sizeof(st));
	tap_ok(st.st_nlink == 0 && S_ISREG(st.st_mode) &&
	       st.st_ino != ino(fd) && ino(c) != st.st_ino,
	       "the child is an unnamed regular file with its own inode (nlink %lu)",
	       (unsigned long)st.st_nlink);
	tap_errno(split_flags(c2, 0), EINVAL, "SPLIT of a child that is not frozen: EINVAL");
	tap_ok(mstat(fd).children == 2, "two splits: base children 2 (%llu)",
	       mstat(fd).children);
	close(c);
	close(c2);
	tap_ok(mstat(fd).children == 0,
	       "closing the unnamed children: base children 0 (%llu)",
	       mstat(fd).children);
	close(fd);
	unlink(BASE);
	tap_ok(totals_back(base), "errors: module totals back to the baseline");
}

/* ---------------------------------------------------------------- levels */

struct level {
	const char *name;
	unsigned long size;
	unsigned level;
	int dense;			/* every page populated */
	unsigned long offs[16];		/* else these pages */
	int n;
	unsigned long hole;		/* a hole of the base, or ~0 */
};

static unsigned long pg_at(const struct level *l, int i)
{
	return l->dense ? (unsigned long)(i * PG) : l->offs[i];
}

static int npg(const struct level *l)
{
	return l->dense ? (int)(l->size / PG) : l->n;
}

/* Every populated page of @l shows @tag except the ones in @skip. */
static int map_shows(const struct level *l, const uint64_t *m, unsigned tag,
		     unsigned long skip1, unsigned long skip2)
{
	for (int i = 0; i < npg(l); i++) {
		unsigned long off = pg_at(l, i);

		if (off == skip1 || off == skip2)
			continue;
		if (!page_ok(m + off / 8, tag, off))
			return 0;
	}
	return 1;
}

static int file_shows(const struct level *l, int fd, unsigned tag,
		      unsigned long skip1, unsigned long skip2)
{
	for (int i = 0; i < npg(l); i++) {
		unsigned long off = pg_at(l, i);

		if (off == skip1 || off == skip2)
			continue;
		if (!pread_ok(fd, tag, off))
			return 0;
	}
	return 1;
}

static void level_case(const struct level *l, struct totals base)
{
	unsigned long n = npg(l), p0 = pg_at(l, 0), p1 = pg_at(l, n - 1);
	long data0;
	struct morsel_stat s;
	struct morsel_map mm;
	uint64_t *m1, *m2;
	char proc[64];
	int fd, c1, c2, nf;

	fd = open(BASE, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, l->size) == 0);
	for (unsigned long i = 0; i < n; i++)
		tap_require(pwrite_page(fd, 1, pg_at(l, i)) == 0);
	tap_require(freeze(fd) == 0);
	data0 = total("data_pages");

	c1 = split_flags(fd, MORSEL_SPLIT_CLOEXEC);
	tap_ok(c1 >= 0, "%s: SPLIT of the frozen base gives fd %d", l->name, c1);
	tap_require(c1 >= 0);
	s = mstat(c1);
	tap_ok(s.size == l->size && s.level == l->level && s.state == 0 &&
	       s.data_pages == 0 && s.borrowed_pages == n && s.parent == ino(fd) &&
	       s.children == 0,
	       "%s: child: size %llu level %u state %u data %llu borrowed %llu "
	       "parent %s", l->name, s.size, s.level, s.state, s.data_pages,
	       s.borrowed_pages, s.parent == ino(fd) ? "= base ino" : "WRONG");
	c2 = split_flags(fd, MORSEL_SPLIT_CLOEXEC);
	tap_require(c2 >= 0);
	s = mstat(fd);
	tap_ok(s.children == 2 && s.parent == 0 && s.borrowed_pages == 0 &&
	       s.data_pages == n && s.state == MORSEL_STATE_FROZEN,
	       "%s: base after two splits: children %llu, data %llu, borrowed %llu",
	       l->name, s.children, s.data_pages, s.borrowed_pages);

	/* Reads never copy. */
	tap_ok(file_shows(l, c1, 1, ~0UL, ~0UL) &&
	       (l->hole == ~0UL || (pread(c1, pbuf, PG, l->hole) == (ssize_t)PG &&
				    page_zero(pbuf))),
	       "%s: read() of the child returns the base's %lu pages%s", l->name,
	       n, l->hole == ~0UL ? "" : " and zeros in a hole");
	s = mstat(c1);
	tap_ok(s.data_pages == 0 && s.borrowed_pages == n &&
	       total("data_pages") == data0,
	       "%s: reading copies nothing (child data %llu, borrowed %llu)",
	       l->name, s.data_pages, s.borrowed_pages);
	m1 = mmap(NULL, l->size, PROT_READ | PROT_WRITE, MAP_SHARED, c1, 0);
	tap_require(m1 != MAP_FAILED);
	memset(&mm, 0, sizeof(mm));
	mm.argsz = sizeof(mm);
	mm.addr = (uintptr_t)m1;
	mm.length = l->size;
	tap_require(ioctl(c1, MORSEL_IOC_MAP, &mm) == 0);
	tap_ok(map_shows(l, m1, 1, ~0UL, ~0UL),
	       "%s: the child's writable mapping (MORSEL_IOC_MAP) shows the base's data",
	       l->name);
	s = mstat(c1);
	tap_ok(s.data_pages == 0 && s.borrowed_pages == n &&
	       total("data_pages") == data0,
	       "%s: reading every page through it copies nothing (data %llu, "
	       "borrowed %llu)", l->name, s.data_pages, s.borrowed_pages);

	/* The first write to a page copies it, once. */
	m1[p0 / 8 + 1] = word(0x11, p0 + 8);
	s = mstat(c1);
	tap_ok(s.data_pages == 1 && s.borrowed_pages == n - 1 &&
	       m1[p0 / 8 + 1] == word(0x11, p0 + 8) && m1[p0 / 8] == word(1, p0) &&
	       m1[p0 / 8 + 511] == word(1, p0 + 4088),
	       "%s: first store to a page: data 1, borrowed %llu, the rest of the "
	       "page is the base's", l->name, s.borrowed_pages);
	fill_page(m1 + p0 / 8, 0x11, p0);
	s = mstat(c1);
	tap_ok(s.data_pages == 1 && s.borrowed_pages == n - 1 &&
	       total("data_pages") == data0 + 1,
	       "%s: writing that page again copies nothing (data %llu)",
	       l->name, s.data_pages);
	tap_ok(pread_ok(fd, 1, p0) && pread_ok(c2, 1, p0) &&
	       mstat(c2).data_pages == 0 && pread_ok(c1, 0x11, p0),
	       "%s: the store is seen by read() of the child, not by the base "
	       "or the sibling", l->name);
	tap_ok(pwrite_page(c1, 0x11, p1) == 0 && mstat(c1).data_pages == 2 &&
	       mstat(c1).borrowed_pages == n - 2 && page_ok(m1 + p1 / 8, 0x11, p1) &&
	       pread_ok(fd, 1, p1) && pread_ok(c2, 1, p1),
	       "%s: pwrite into another page copies it (data %llu), the mapping "
	       "sees it, base and sibling do not", l->name, mstat(c1).data_pages);

	/* The sibling writes the same pages. */
	m2 = mmap(NULL, l->size, PROT_READ | PROT_WRITE, MAP_SHARED, c2, 0);
	tap_require(m2 != MAP_FAILED);
	fill_page(m2 + p1 / 8, 0x22, p1);
	tap_ok(mstat(c2).data_pages == 1 && page_ok(m1 + p1 / 8, 0x11, p1) &&
	       pread_ok(fd, 1, p1) && pread_ok(c2, 0x22, p1),
	       "%s: the sibling's store (fault, not linked) is its own", l->name);
	tap_ok(pwrite_page(c2, 0x22, p0) == 0 && mstat(c2).data_pages == 2 &&
	       page_ok(m2 + p0 / 8, 0x22, p0) && page_ok(m1 + p0 / 8, 0x11, p0) &&
	       pread_ok(fd, 1, p0),
	       "%s: the sibling's pwrite is its own too", l->name);
	tap_ok(map_shows(l, m1, 1, p0, p1) && map_shows(l, m2, 1, p0, p1) &&
	       file_shows(l, fd, 1, ~0UL, ~0UL),
	       "%s: every other page still shows the base's data (2 children, "
	       "base)", l->name);
	tap_ok(total("data_pages") == data0 + 4 && mstat(fd).data_pages == n,
	       "%s: module data_pages = base + 4 copies (%ld)", l->name,
	       total("data_pages") - data0);

	/* A name for c1. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", c1);
	nf = -1;
	if (linkat(AT_FDCWD, proc, AT_FDCWD, NAMED, AT_SYMLINK_FOLLOW) == 0)
		nf = open(NAMED, O_RDWR);
	tap_ok(nf >= 0 && ino(nf) == ino(c1) && pread_ok(nf, 0x11, p0) &&
	       pread_ok(nf, 1, pg_at(l, n / 2)) && mstat(nf).parent == ino(fd),
	       "%s: linkat names the child; reopened by name it shows the "
	       "child's data", l->name);

	munmap(m1, l->size);
	munmap(m2, l->size);
	close(c2);
	close(c1);
	tap_ok(mstat(fd).children == 1 && total("data_pages") == data0 + 2,
	       "%s: the unnamed sibling is gone with its 2 pages, the named "
	       "child lives (children %llu)", l->name, mstat(fd).children);
	if (nf >= 0)
		close(nf);
	unlink(NAMED);
	tap_ok(mstat(fd).children == 0 && total("data_pages") == data0,
	       "%s: unlinking the named child frees it (children %llu)",
	       l->name, mstat(fd).children);
	close(fd);
	unlink(BASE);
	tap_ok(totals_back(base), "%s: module totals back to the baseline", l->name);
}

int main(void)
{
	static const struct level small = {
		"16 KiB", 16 * KiB, MORSEL_LEVEL_PTE, 1, { 0 }, 0, ~0UL,
	};
	static const struct level mid = {
		"64 MiB", 64 * MiB, MORSEL_LEVEL_PMD, 1, { 0 }, 0, ~0UL,
	};
	static const struct level big = {
		"3 GiB sparse", 3 * GiB, MORSEL_LEVEL_PUD, 0,
		{ 0, 2 * PG, 300 * MiB, 1 * GiB, GiB + 2 * MiB + PG,
		  GiB + 512 * MiB, 2 * GiB + 4 * PG, 2 * GiB + 700 * MiB,
		  3 * GiB - PG },
		9, 5 * MiB,
	};
	struct totals base;

	watchdog(150);
	base = totals();
	errors(base);
	level_case(&small, base);
	level_case(&mid, base);
	level_case(&big, base);
	return tap_done();
}
