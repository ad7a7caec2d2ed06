#define _GNU_SOURCE
/*
 * Random resizes on a full mount (session 9, the failed-grow bug of
 * docs/security.md (7)).  As user 1000 on a morselfs mount of size=6M,
 * one object mapped 4 GiB at a 1 GiB boundary (so granules link by PMD
 * and by PUD) takes 4000 random steps: ftruncate to sizes around every
 * root-level boundary (0 .. 2 GiB + 4095), fallocate with and without
 * KEEP_SIZE, punch, pwrite, a store through the mapping, MORSEL_IOC_MAP
 * of the whole mapping, a filler file leaving 0-4 pages free (so grows
 * and copies meet ENOSPC, also between two new root levels), emptying
 * the filler, and up to three generations of freeze + split (the child
 * then takes the object's place).  After every step:
 *  - STAT's size is the file's, and its root level the one the size
 *    implies (a failed two-level grow once left it one too high);
 *  - bytes read through the mapping below the size are the file's bytes
 *    (or SIGBUS when a frame could not be had);
 *  - an access at or past the page-aligned size raises SIGBUS;
 *  - a truncate, fallocate, punch or pwrite that failed left the size
 *    as it was (a fallocate that grew the object shrinks it back).
 * The seed of each run is printed; `test_resize_enospc SEED...` replays.
 * The module before the fix fails the first seed at step 416.
 */
#include <stdint.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <time.h>
#include "vm.h"

#define MNT "/tmp/resize-enospc"
#define USER 1000
#define MAPLEN (4 * GiB)
#define STEPS 4000

static long filled;
static int filler;
static unsigned long long rs, seed;
static unsigned long long rnd(void)
{
	rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs;
}

static long free_blocks(void)
{
	struct statfs sf;

	tap_require(statfs(MNT, &sf) == 0, "statfs");
	return (long)sf.f_bavail;
}

static void fill_to(long want)
{
	static char page[4096];

	memset(page, 0x67, sizeof(page));
	if (free_blocks() < want) {
		long drop = want - free_blocks();
		filled = filled > drop ? filled - drop : 0;
		ftruncate(filler, filled * 4096);
	}
	while (free_blocks() > want) {
		if (pwrite(filler, page, 4096, filled * 4096) != 4096)
			break;
		filled++;
	}
}

static int lvl_for(long long s)
{
	if (s == 0) return MORSEL_LEVEL_NONE;
	if (s <= 2 * MiB) return MORSEL_LEVEL_PTE;
	if (s <= GiB) return MORSEL_LEVEL_PMD;
	return MORSEL_LEVEL_PUD;
}

static const long long sizes[] = { 0, 100, 4096, MiB, MiB + 4096 + 17,
	2 * MiB, 2 * MiB + 4096, 3 * MiB, 512 * MiB, GiB, GiB + 4096,
	GiB + 2 * MiB + 5, 2 * GiB, 2 * GiB + 4095 };
#define NS (sizeof(sizes) / sizeof(sizes[0]))

static long long pick_off(long long lim)
{
	static const long long hot[] = { 0, 4096, MiB - 4096, 2 * MiB - 4096,
		2 * MiB, GiB - 4096, GiB, GiB + 2 * MiB, 2 * GiB - 4096, 2 * GiB };
	if (rnd() & 1)
		return hot[rnd() % 10] % (lim ? lim : 1);
	return (long long)(rnd() % (lim ? lim : 1)) & ~4095LL;
}

static volatile unsigned char *p;
static int fd, gen, bad, nbig, nenospc, nfalloc;
static const char *lastop = "";

static void remap(void)
{
	if (p)
		munmap((void *)p, MAPLEN);
	p = free_range(MAPLEN, GiB);
	tap_require(mmap_notified((void *)p, MAPLEN, MAP_SHARED | MAP_FIXED, fd, 0) == p,
		    "mmap");
}

static void check(int it)
{
	struct morsel_stat st = mstat(fd);
	long long sz = size_of(fd), end = (sz + 4095) & ~4095LL;
	int i;

	if ((long long)st.size != sz || st.level != (unsigned)lvl_for(sz)) {
		tap_ok(0, "it %d after %s: size %lld level %u (stat size %llu)",
		       it, lastop, sz, st.level, (unsigned long long)st.size);
		bad++;
	}
	for (i = 0; i < 8; i++) {
		long long o = i < 4 ? pick_off(MAPLEN) : pick_off(sz);
		unsigned char v, w = 0;
		int s = try_read(p + o, &v);

		if (o < sz) {
			if (s == SIGBUS) continue;
			if (s || pread(fd, &w, 1, o) != 1 || v != w) {
				tap_ok(0, "it %d after %s: off %lld < size %lld: sig %d v %d file %d",
				       it, lastop, o, sz, s, v, w);
				bad++;
			}
		} else if (o >= end && s != SIGBUS) {
			tap_ok(0, "it %d after %s: off %lld past size %lld: sig %d v %d",
			       it, lastop, o, sz, s, v);
			bad++;
		}
	}
}

static void as_user(void)
{
	int it, r;
	char buf[8192];

	probe_init();
	filler = mkobj(MNT "/filler", 0);
	fd = mkobj(MNT "/o", MiB);
	remap();
	for (it = 0; it < STEPS && bad < 5; it++) {
		long long sz = size_of(fd), o, l;
		unsigned op = rnd() % 12;

		r = 0;
		memset(buf, 'a' + it % 26, sizeof(buf));
		switch (op) {
		case 0: case 1: case 2:
			lastop = "truncate";
			{ long long ns = sizes[rnd() % NS];
			r = ftruncate(fd, ns);
			if (r && errno == ENOSPC && lvl_for(ns) > lvl_for(sz) + 1) nbig++;
			if (r && errno == ENOSPC) nenospc++; }
			break;
		case 3:
			lastop = "fallocate";
			o = pick_off(2 * GiB); l = 4096 * (1 + rnd() % 4);
			{ int keep = rnd() & 1;
			r = fallocate(fd, keep ? FALLOC_FL_KEEP_SIZE : 0, o, l);
			if (r && !keep && o + l > sz) nfalloc++; }
			break;
		case 4:
			lastop = "pwrite";
			o = pick_off(2 * GiB) + rnd() % 4096;
			r = pwrite(fd, buf, 1 + rnd() % 8192, o);
			break;
		case 5:
			lastop = "store";
			if (sz)
				try_write(p + pick_off(sz), 'A' + it % 26);
			break;
		case 6:
			lastop = "link";
			r = link_all(fd, (void *)p, rnd() & 1 ? MAPLEN : 2 * GiB);
			break;
		case 7: case 8:
			lastop = "fill";
			fill_to(rnd() % 5);
			break;
		case 9:
			lastop = "punch";
			o = pick_off(sz + 1); l = 4096 * (1 + rnd() % 600);
			r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, o, l);
			break;
		case 10:
			lastop = "empty filler";
			filled = 0; ftruncate(filler, 0);
			break;
		case 11:
			if (gen >= 3 || rnd() % 4)
				break;
			lastop = "freeze+split";
			if (freeze(fd) == 0) {
				int c = split(fd);
				if (c < 0) {
					filled = 0; ftruncate(filler, 0);
					c = split(fd);
				}
				tap_require(c >= 0, "split: %s", strerror(errno));
				{
					close(fd);
					fd = c;
					gen++;
					tap_diag("it %d: child gen %d size %lld", it, gen, size_of(fd));
				}
				remap();
			}
			break;
		}
		/* A call that failed changed no size (semantics.md). */
		if (r < 0 && size_of(fd) != sz) {
			tap_ok(0, "it %d: failed %s (%s) changed the size %lld to %lld",
			       it, lastop, strerror(errno), sz, size_of(fd));
			bad++;
		}
		check(it);
	}
	tap_diag("truncate ENOSPC %d, two-level grows %d, failed growing fallocates %d",
		 nenospc, nbig, nfalloc);
	tap_ok(bad == 0, "seed %llu: %d steps, size and level always agree, the mapping shows the file (%d bad)",
	       seed, it, bad);
	munmap((void *)p, MAPLEN);
	close(fd);
	close(filler);
	unlink(MNT "/o");
	unlink(MNT "/filler");
}

int main(int argc, char **argv)
{
	static const unsigned long long seeds[] = { 1, 88172645463325252ULL };
	int i, n = argc > 1 ? argc - 1 : 2;

	watchdog(280);
	mkdir(MNT, 0755);
	tap_require(mount("none", MNT, "morselfs", 0,
			  "size=6M,uid=1000,gid=1000,mode=0777") == 0,
		    "mount morselfs size=6M: %s", strerror(errno));
	for (i = 0; i < n; i++) {
		seed = argc > 1 ? strtoull(argv[i + 1], NULL, 0) : seeds[i];
		rs = seed;
		filled = 0;
		p = NULL;
		gen = bad = nbig = nenospc = nfalloc = 0;
		tap_diag("seed %llu", seed);
		tap_run_as(USER, USER, as_user);
	}
	tap_ok(umount(MNT) == 0, "unmounted: nothing left behind");
	rmdir(MNT);
	return tap_done();
}
