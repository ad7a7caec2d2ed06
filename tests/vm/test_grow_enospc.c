#define _GNU_SOURCE
/*
 * A grow that fails for want of space changes nothing (session-9 review).
 * Growing an object from 2 MiB or less to more than 1 GiB adds two root
 * levels (PTE -> PMD -> PUD).  The module used to add them one by one, so
 * on a full mount the first could go in and the second fail with ENOSPC:
 * the object kept its old size under a root one level too high.  A later
 * resize that stayed small then dropped that level as if growing, without
 * the unmapping a shrink does, and freed a root table a process still
 * linked (a use-after-free of a page table, from user space); in a
 * copy-on-write child the same drop copied a table it borrowed.
 * What this checks, as user 1000 on a mount of size=2M:
 *  - a grow from 1 MiB to 2 GiB with one free page (the middle level's
 *    table fits, the top one does not) and with none: ENOSPC, and size,
 *    root level and table count are as before;
 *  - the object then maps and links as before (2 GiB mapping, a 1 GiB
 *    aligned one), grows to 1 MiB + 4 KiB while linked, and every byte
 *    reads right through the mapping afterwards;
 *  - a base left by such a failed grow, frozen and split: the child grows
 *    a little and reads its base's bytes;
 *  - with room, the same grow to 2 GiB works (PUD root) and shrinks back;
 *  - a write past the end with 0-6 pages free: failed before its first
 *    byte, size, level and tables are as before; short, the file ends at
 *    its last byte written;
 *  - with no page free, MORSEL_IOC_MAP of a read-only mapping (linking
 *    needs read-only twins) succeeds and maps the data page by page, and
 *    of a writable one links the granules that have tables and counts
 *    them as links;
 *  - the same write and a growing fallocate on a copy-on-write child
 *    (whose undo needs copies of the base's tables): a failure leaves
 *    size and level as before; a truncate to 0 works on a full mount.
 * The kernel log must stay clean (vm/run fails the run on any report).
 */
#include <stdint.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include "vm.h"

#define MNT "/tmp/grow"
#define USER 1000

static long filled;	/* pages the filler holds */

static long free_blocks(void)
{
	struct statfs sf;

	tap_require(statfs(MNT, &sf) == 0, "statfs %s", MNT);
	return (long)sf.f_bavail;
}

/* Store pages into @f until exactly @want pages of the mount are free. */
static void fill_to(int f, long want)
{
	static char page[4096];

	memset(page, 'f', sizeof(page));
	while (free_blocks() > want) {
		tap_require(pwrite(f, page, sizeof(page), filled * 4096) == 4096,
			    "filler page %ld", filled);
		filled++;
	}
	tap_require(free_blocks() == want, "%ld pages free, want %ld",
		    free_blocks(), want);
}

static void empty_filler(int f)
{
	tap_require(ftruncate(f, 0) == 0 && ftruncate(f, 2 * MiB) == 0,
		    "empty the filler");
	filled = 0;
}

/* One failed grow of @fd (1 MiB, data at 0) with @room pages free. */
static void grow_fails(int fd, int filler, long room, const char *what)
{
	struct morsel_stat before, after;
	int r, e;

	fill_to(filler, room);
	before = mstat(fd);
	r = ftruncate(fd, 2 * GiB);
	e = errno;
	after = mstat(fd);
	tap_ok(r == -1 && e == ENOSPC, "%s: grow 1 MiB -> 2 GiB: ENOSPC (%s)",
	       what, r ? strerror(e) : "it worked");
	tap_ok(after.size == before.size && after.level == before.level &&
	       after.table_pages == before.table_pages,
	       "%s: size %llu, level %u, tables %llu as before (%llu, %u, %llu)",
	       what, (unsigned long long)after.size, after.level,
	       (unsigned long long)after.table_pages,
	       (unsigned long long)before.size, before.level,
	       (unsigned long long)before.table_pages);
	empty_filler(filler);
}

/*
 * Writes of 4146 bytes past the end of @fd (1 MiB) with @room pages free,
 * each needing one or two new root levels, a table and two frames: one
 * that fails before its first byte leaves size, level and tables as they
 * were; one that stops short ends the file at its last byte written.
 * (The module used to leave the size at the offset the failed write
 * began at.)
 */
static void writes_past_end(int fd, int filler, long room)
{
	static const long long offs[] = { 3 * MiB, 49 * MiB + 1050, GiB + 4096 };
	static char buf[4146];

	memset(buf, 'w', sizeof(buf));
	for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		struct morsel_stat before, after;
		long long want;
		ssize_t r;
		int e;

		fill_to(filler, room);
		before = mstat(fd);
		r = pwrite(fd, buf, sizeof(buf), offs[i]);
		e = errno;
		after = mstat(fd);
		want = r > 0 ? offs[i] + r : (long long)before.size;
		tap_ok((r > 0 || e == ENOSPC) && (long long)after.size == want &&
		       (r > 0 || (after.level == before.level &&
				  after.table_pages == before.table_pages)),
		       "%ld pages free, write at %lld: %zd (%s), size %llu (want %lld), level %u, tables %llu (before %u, %llu)",
		       room, offs[i], r, r < 0 ? strerror(e) : "-",
		       (unsigned long long)after.size, want, after.level,
		       (unsigned long long)after.table_pages, before.level,
		       (unsigned long long)before.table_pages);
		tap_require(ftruncate(fd, MiB) == 0, "back to 1 MiB");
		empty_filler(filler);
	}
}

/*
 * A copy-on-write child (of a 3 MiB base with data at 0 and 2 MiB) with
 * 0-4 pages free: a write past its end (good buffer, or one that faults:
 * EFAULT) or a growing fallocate that fails leaves the size, level and
 * (for the write) nothing else changed, also across a new root level;
 * the undo of the grow cannot fail (session 10 review: giving back the
 * grow needed copies of the base's tables, ENOSPC, and the child kept
 * the grown size).  Then, still full, a truncate of the child to 0
 * works: it keeps no table, so it copies none.
 */
static void child_undo(int filler)
{
	static const long long offs[] = { 3 * MiB + 8192, GiB + 4096 };
	static char buf[4096];

	memset(buf, 'w', sizeof(buf));
	for (long room = 0; room <= 4; room++)
		for (int k = 0; k < 6; k++) {
			long long off = offs[k % 2];
			struct morsel_stat before, after;
			int base, c, e;
			long r;

			base = mkobj(MNT "/cbase", 3 * MiB);
			tap_require(pwrite(base, "data", 4, 0) == 4 &&
				    pwrite(base, "data", 4, 2 * MiB) == 4 &&
				    freeze(base) == 0 && (c = split(base)) >= 0,
				    "base, frozen, a child");
			fill_to(filler, room);
			before = mstat(c);
			errno = 0;
			if (k >= 4)
				r = fallocate(c, 0, off, 8192);
			else
				r = pwrite(c, k >= 2 ? (const void *)16 : buf, sizeof(buf), off);
			e = errno;
			after = mstat(c);
			tap_ok(r > 0 ? (long long)after.size == off + r :
			       r == 0 ? (long long)after.size == off + 8192 :
			       after.size == before.size && after.level == before.level,
			       "child, %ld free, %s at %lld: %ld (%s), size %llu -> %llu, level %u -> %u",
			       room, k >= 4 ? "fallocate" : k >= 2 ? "write from a bad buffer" : "write",
			       off, r, r < 0 ? strerror(e) : "-",
			       (unsigned long long)before.size, (unsigned long long)after.size,
			       before.level, after.level);
			if (room == 0 && k == 0) {
				r = ftruncate(c, 0);
				tap_ok(r == 0 && mstat(c).size == 0,
				       "child, no page free: truncate to 0 (%s)", r ? strerror(errno) : "ok");
			}
			close(c);
			close(base);
			unlink(MNT "/cbase");
			empty_filler(filler);
		}
}

/*
 * "data" at 4 KiB into each 2 MiB granule of @fd (@len bytes) from
 * granule @first on, @fd mapped @prot at a 2 MiB boundary, the mount
 * filled, then MORSEL_IOC_MAP of it all: the mapping; *@r 0 or the
 * errno, the counts in *@mm.
 */
static volatile unsigned char *map_full(int fd, long first, long len, int prot,
					int filler, struct morsel_map *mm, int *r)
{
	unsigned char *p = free_range(len, 2 * MiB);

	for (long g = first; g < len / (2 * MiB); g++)
		tap_require(pwrite(fd, "data", 4, g * 2 * MiB + 4096) == 4, "data");
	tap_require(mmap(p, len, prot, MAP_SHARED | MAP_FIXED, fd, 0) == p,
		    "mmap %ld MiB", len >> 20);
	fill_to(filler, 0);
	*r = link_counted(fd, p, len, mm) ? errno : 0;
	return p;
}

/*
 * MORSEL_IOC_MAP of a writable mapping with no page free whose first
 * granule is a hole without a table (linking it needs one): MAP links
 * the three granules that have tables all the same, and says so
 * (linked 3, pages 0; session 10 review: counted as pages).
 */
static void map_counts_when_full(int filler)
{
	struct morsel_map mm;
	volatile unsigned char *p;
	int fd, r;

	fd = mkobj(MNT "/gran", 8 * MiB);
	p = map_full(fd, 1, 8 * MiB, PROT_READ | PROT_WRITE, filler, &mm, &r);
	tap_ok(r == 0 && mm.linked == 3 && mm.pages == 0 && links(fd) == 3,
	       "no page free, granule 0 without a table: MAP %s, linked %llu, pages %llu, links %lu",
	       r ? strerror(r) : "ok", (unsigned long long)mm.linked,
	       (unsigned long long)mm.pages, links(fd));
	munmap((void *)p, 8 * MiB);
	close(fd);
	unlink(MNT "/gran");
	empty_filler(filler);
}

/*
 * MORSEL_IOC_MAP of a read-only mapping with no page free: linking needs
 * a read-only twin of each PTE table, which does not fit, so each granule
 * maps page by page; the first page of each is a hole.  The call
 * succeeds (it used to fail with EFAULT: the fault it made to link
 * mapped that hole alone and found no frame for it), the data reads
 * right, and a load of the hole raises SIGBUS (no frame) or reads zero.
 */
static void map_when_full(int filler)
{
	struct morsel_map mm;
	unsigned char v = 0xff;
	volatile unsigned char *p;
	int fd, r, sig, ok = 1;

	fd = mkobj(MNT "/holes", 4 * MiB);
	p = map_full(fd, 0, 4 * MiB, PROT_READ, filler, &mm, &r);
	tap_ok(r == 0, "no page free: MAP of a read-only mapping whose granules begin with a hole: %s (linked %llu, pages %llu)",
	       r ? strerror(r) : "ok", (unsigned long long)mm.linked,
	       (unsigned long long)mm.pages);
	for (long g = 0; g < 2; g++)
		ok &= !memcmp((const void *)(p + g * 2 * MiB + 4096), "data", 4);
	tap_ok(ok, "no page free: the data reads right through the mapping");
	sig = try_read(p, &v);
	tap_ok(sig == SIGBUS || (sig == 0 && v == 0),
	       "no page free: a load of the hole raises SIGBUS or reads zero (signal %d, 0x%02x)",
	       sig, v);
	munmap((void *)p, 4 * MiB);
	close(fd);
	unlink(MNT "/holes");
	empty_filler(filler);
}

/* Every byte of the first 64 KiB and of the page at 1 MiB - 4 KiB. */
static int reads_right(const volatile char *p)
{
	for (unsigned long i = 0; i < 64 * 1024; i++)
		if (p[i] != (char)('a' + i % 23))
			return 0;
	for (unsigned long i = MiB - 4096; i < MiB; i++)
		if (p[i] != 'z')
			return 0;
	return 1;
}

static void put_data(int fd)
{
	static char buf[64 * 1024], z[4096];

	for (unsigned long i = 0; i < sizeof(buf); i++)
		buf[i] = (char)('a' + i % 23);
	memset(z, 'z', sizeof(z));
	tap_require(pwrite(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) &&
		    pwrite(fd, z, sizeof(z), MiB - 4096) == (ssize_t)sizeof(z),
		    "data");
}

/* A 2 GiB shared mapping of @fd whose start is 1 GiB aligned. */
static volatile char *map_aligned(int fd, int prot, void **base)
{
	char *p = mmap(NULL, 3 * GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
		       MAP_NORESERVE, -1, 0);
	char *a;

	tap_require(p != MAP_FAILED, "reserve 3 GiB of address space");
	a = (char *)(((uintptr_t)p + GiB - 1) & ~(uintptr_t)(GiB - 1));
	tap_require(mmap(a, 2 * GiB, prot, MAP_SHARED | MAP_FIXED, fd, 0) == a,
		    "mmap 2 GiB at %p", (void *)a);
	*base = p;
	return a;
}

static void as_user(void)
{
	struct morsel_stat st;
	int filler, b, base, c, r;
	unsigned int lvl;
	volatile char *p;
	void *res;

	probe_init();
	filler = mkobj(MNT "/filler", 2 * MiB);

	/* A plain object: failed grows, then mapped, linked, grown. */
	b = mkobj(MNT "/b", MiB);
	put_data(b);
	grow_fails(b, filler, 1, "plain, one page free");
	grow_fails(b, filler, 0, "plain, no page free");
	for (long room = 0; room <= 6; room++)
		writes_past_end(b, filler, room);
	map_when_full(filler);
	map_counts_when_full(filler);
	child_undo(filler);
	p = map_aligned(b, PROT_READ | PROT_WRITE, &res);
	tap_ok(reads_right(p), "plain: the mapping reads the data");
	st = mstat(b);
	tap_diag("plain: level %u, %llu links", st.level,
		 (unsigned long long)st.links);
	tap_ok(ftruncate(b, MiB + 4096) == 0, "plain: grows to 1 MiB + 4 KiB while linked");
	tap_ok(reads_right(p) && p[MiB] == 0 && p[MiB + 4095] == 0,
	       "plain: every byte reads right through the mapping after the grow");
	p[MiB + 1] = 'q';
	lvl = mstat(b).level;
	tap_ok(lvl == MORSEL_LEVEL_PTE, "plain: root level PTE (%u)", lvl);
	munmap(res, 3 * GiB);

	/* A base left by a failed grow, frozen and split. */
	base = mkobj(MNT "/base", MiB);
	put_data(base);
	grow_fails(base, filler, 1, "base, one page free");
	tap_ok(freeze(base) == 0, "base: frozen");
	c = split(base);
	tap_require(c >= 0, "split: %s", strerror(errno));
	tap_ok(ftruncate(c, MiB + 4096) == 0, "child: grows to 1 MiB + 4 KiB");
	p = map_aligned(c, PROT_READ, &res);
	tap_ok(reads_right(p) && p[MiB] == 0, "child: reads its base's bytes, zeros past them");
	munmap(res, 3 * GiB);
	tap_ok(ftruncate(c, 8192) == 0 && mstat(c).level == MORSEL_LEVEL_PTE,
	       "child: shrinks to 8 KiB");
	close(c);

	/* With room the same grow works, and shrinks back. */
	r = ftruncate(b, 2 * GiB);
	lvl = mstat(b).level;
	tap_ok(r == 0 && lvl == MORSEL_LEVEL_PUD, "with room: grows to 2 GiB (level %u)", lvl);
	p = map_aligned(b, PROT_READ | PROT_WRITE, &res);
	tap_ok(reads_right(p) && p[MiB + 1] == 'q' && p[GiB + 5] == 0,
	       "with room: the data reads right through a 1 GiB aligned mapping");
	r = ftruncate(b, MiB);
	lvl = mstat(b).level;
	tap_ok(r == 0 && lvl == MORSEL_LEVEL_PTE,
	       "with room: shrinks back to 1 MiB while mapped (level %u)", lvl);
	tap_ok(reads_right(p), "with room: and still reads right");
	munmap(res, 3 * GiB);

	close(b);
	close(base);
	close(filler);
	unlink(MNT "/b");
	unlink(MNT "/base");
	unlink(MNT "/filler");
}

int main(void)
{
	watchdog(240);
	mkdir(MNT, 0755);
	tap_require(mount("none", MNT, "morselfs", 0,
			  "size=2M,uid=1000,gid=1000,mode=0777") == 0,
		    "mount morselfs size=2M: %s", strerror(errno));
	tap_run_as(USER, USER, as_user);
	tap_ok(umount(MNT) == 0, "unmounted: nothing left behind");
	rmdir(MNT);
	return tap_done();
}
