// SPDX-License-Identifier: GPL-2.0
/*
 * The model-checked operation fuzzer (issue 13, item 2).
 *
 * Several worker processes (--workers, 4) run random operations drawn from
 * the whole interface: create, open, unlink, rename, ftruncate, fallocate
 * (allocate, punch, zero range), read, write, mmap, munmap, mremap,
 * mprotect, madvise, stores and loads through mappings (by the process,
 * and by the kernel for it: process_vm_readv/writev, /proc/self/mem), fork (children use
 * inherited mappings and exit), exit without munmap, shared futexes between
 * a worker and its child, O_DIRECT between an ext4 file and morsel
 * mappings, and the MAP, FREEZE, SPLIT, SCAN and FILL ioctls, save
 * (full, incremental, delta) and load.  Each worker owns its objects: a
 * morsel file on /dev/morsel/opfuzz/wN and a twin file on tmpfs
 * (/tmp/opfuzz/wN), the reference model.  Every operation is applied to
 * both (where morselfs differs from tmpfs on purpose, the documented
 * behaviour is encoded instead, with the doc line cited) and the results
 * are compared: return values and errno, sizes, the bytes of the touched
 * range read back, the bytes seen through mappings, and at the end of
 * every epoch each object whole.  Every worker also splits one frozen base
 * shared by all of them.
 *
 * Reproducible: every op is (kind, slot, four random words) drawn from a
 * per-worker, per-epoch PRNG derived from --seed; ops interpret the words
 * against the current state, so any subsequence is still a valid program.
 * A worker resets its state every --epoch-ops ops, so a failing sequence
 * is at most one epoch long.  On a divergence the program prints the seed,
 * the message and the epoch's op log, then shrinks the log with delta
 * debugging (each trial replays a subsequence in a fresh directory, one
 * process) and prints the smallest sequence that still diverges in the
 * same kind of op, as a --ops argument and as a --replay file.
 *
 *   test_opfuzz [--seed S] [--secs 30] [--workers 4] [--epoch-ops 1500]
 *               [--min-secs 120] [--progress 60] [--kcov] [--trace]
 *               [--avoid-k1] [--no-selftest] [--tight]
 *   test_opfuzz --replay FILE      (lines "op KIND SLOT R0 R1 R2 R3")
 *   test_opfuzz --ops 'KIND SLOT R0 R1 R2 R3; ...'
 *   test_opfuzz --seed S --worker W --epoch E   (regenerate one epoch)
 *
 * Besides the twin, every op is followed by an accounting check (STAT's
 * data_pages equals the pages SCAN reports owned) and runs under a 300 s
 * alarm (a hung op is a divergence).  Before the run, a self-test
 * corrupts the model after every pwrite: the fuzzer must diverge and the
 * minimiser shrink the log to create+write (--no-selftest skips it).
 * Module bug K1 (below) is fixed; --avoid-k1 keeps its ops out, to run
 * against an older module.
 *
 * make test runs it for 30 s in each paging mode (60 s in all), and as
 * test_opfuzz_tight (--tight, below) as long again;
 * `make fuzz-ops FUZZ_OPS_SECS=14400` is the long mode; with --kcov (the
 * debug kernel, scripts/opfuzz-kcov.sh) every worker traces its own
 * syscalls and the module PCs reached are printed as "KCOV-PC" lines.
 * Per-kind op counts are printed at the end of every run.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <linux/falloc.h>
#include <linux/futex.h>
#include <linux/kcov.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include "crc32c.h"
#include "libmorsel.h"
#include "vm.h"

#define MDIR	"/dev/morsel/opfuzz"
#define TDIR	"/tmp/opfuzz"
#define DISK	"/mnt/disk"

#define NSLOT	8
#define NMAP	4
#define WIN	(4 * MiB)	/* ops on big objects stay in two windows */
#define SMALL	(2 * WIN)	/* objects up to this are compared whole */
#define TRACK	(16 * MiB)	/* pages tracked for SCAN's dirty check */
#define CHAIN	3		/* images in a save chain */
#define DFILE	(4 * MiB)	/* the O_DIRECT file per worker */
#define FSRC	(1 * MiB)	/* the FILL source per worker */
#define SHARED_SIZE (3 * MiB + 5000)
#define MAXW	16
#define MAXOPS	100000

/* ------------------------------------------------------------ op kinds */

#define KINDS(X) \
	X(create, 6) X(close, 2) X(open, 4) X(unlink, 2) X(rename, 3) \
	X(truncate, 5) X(falloc, 3) X(punch, 4) X(zero, 3) X(read, 6) \
	X(write, 10) X(mmap, 7) X(munmap, 3) X(mremap, 3) X(mprotect, 3) \
	X(madvise, 4) X(mapread, 6) X(mapwrite, 8) X(fork, 3) X(exit, 2) \
	X(iocmap, 3) X(freeze, 2) X(split, 3) X(scan, 3) X(fill, 3) \
	X(save, 3) X(load, 2) X(futex, 2) X(odirect, 4) X(verify, 2) \
	X(xattr, 2) X(seek, 2) X(remote, 4) \
	X(squeeze, 4)

#define AS_ENUM(n, w) K_##n,
enum { KINDS(AS_ENUM) NK };
#define AS_NAME(n, w) #n,
static const char *const kname[NK] = { KINDS(AS_NAME) };
#define AS_W(n, w) w,
static const int kweight[NK] = { KINDS(AS_W) };
static int kw[NK];		/* the weights of this run: set_weights() */

struct op {
	int kind, slot;
	uint64_t r[4];
};

/* --------------------------------------------------------------- state */

struct map {
	unsigned char *addr;
	long long off, len;
	int prot;
	int plain;	/* made writable by mmap() of a plain object */
};

struct slot {
	int used, fd, tfd, basefd;	/* basefd: a child's base, or -1 */
	int child, frozen, named;
	long long cap;		/* a child's size limit (known bug K1), or -1 */
	char name[32];
	struct map m[NMAP];
	int nm;
	int chain_n, chain_delta, chain_stale;	/* save chain */
	uint64_t written[TRACK / PG / 64];	/* pages stored since a clean */
};

/* What workers share with the parent (MAP_SHARED anonymous). */
struct shared {
	long long count[MAXW][NK], skip[MAXW][NK];
	long long ops[MAXW], epochs[MAXW];
	int diverged[MAXW], fail_epoch[MAXW], fail_index[MAXW];
	int fail_kind[MAXW];
	long long kcov_lost[MAXW];
	long long nospace[MAXW];	/* --tight: calls that ran out of space */
	long long nospace_ops[MAXW][NK];	/* --tight: ops that met it */
	int stop;		/* a worker diverged: everyone stops */
	char msg[MAXW][768];
};

static struct shared *sh;
static int me;				/* worker index */
static char mdir[96], tdir[96];		/* this worker's directories */
static struct slot S[NSLOT];
static int name_seq;
static int have_disk;
static int dfd = -1, dfd_direct = -1;	/* O_DIRECT file on the disk */
static unsigned char *dmodel;		/* its contents */
static int fsrc = -1;			/* FILL's source */
static int shared_fd = -1, shared_tfd = -1;
static unsigned char *b1, *b2, *b3;	/* 4 MiB work buffers, aligned */
static char msgbuf[768];
static int quiet;			/* no per-op diagnostics (minimiser) */
static volatile pid_t cur_child;	/* a fork op's child, while it runs */
static int hung_op;			/* an op hung: skip the teardown */
static int trace;			/* --trace: print every op first */
/*
 * Module bug K1 (found by this fuzzer, 2026-12-05; fixed the same day,
 * cow.c morsel_parent_covering_table(), regression test
 * test_cow_grow_tail): a copy-on-write child that grew past its frozen
 * base's size and stored into the part of the base's last PTE table past
 * that size took the new frames into the base's table: SCAN showed them
 * as borrowed, STAT's data_pages counted them, and destroying the child
 * warned (pgtable.c morsel_destroy: data_pages != 0), destroying the
 * base freed them again (list corruption, panic).  With --avoid-k1 a
 * child is never grown past its base's size (for an older module).
 */
static int known_bugs = 1;
/*
 * --tight: each worker's objects live on a morselfs mount of its own with
 * TIGHT_SIZE (pages and objects), and op squeeze fills it to 0-7 free
 * pages or empties
 * its filler, so growing ops meet ENOSPC, faults SIGBUS, writes stop
 * short (semantics.md, "Mounts": size=).  What a call that ran out of
 * space must leave is checked instead of the twin's result: nothing
 * changed (truncate, fallocate, FILL, SPLIT, a write that failed), the
 * bytes it reached (a short write), or per byte either the old or the
 * new value (a store or punch stopped part way); a load through a
 * mapping may raise SIGBUS only on a page that holds no frame.  The
 * processes of fork, exit and futex report a store that raised SIGBUS by
 * their exit status, and the parent takes what the store left (per byte
 * old or new); O_DIRECT that stopped short took exactly the bytes it
 * reports and per byte old or new after them, on the disk as in the
 * object; a load that ran out of space leaves no object.  Every such
 * acceptance also checks that it could happen: the object lives on the
 * full mount (children of the shared base do not), a stopped store or
 * load left a page there without a frame of its own (a hole, or a
 * child's borrowed page; never on a frozen object's load), MAP failed
 * only with POPULATE, a create, split or load failed only with no object
 * or too few pages free; and at the end of each epoch the emptied mount
 * must show every object and page free again.  Saves never run out
 * (they write elsewhere).  xattrs have a limit of their own.
 */
#ifndef OPFUZZ_TIGHT
#define OPFUZZ_TIGHT 0	/* test_opfuzz_tight.c: 1 */
#endif
static int tight = OPFUZZ_TIGHT;
static int squeeze_fd = -1;	/* --tight: the worker's filler file */
#define TIGHT_ROOT	"/tmp/opfuzz-tight"
/*
 * Space and objects: NSLOT slots and the filler would make 9 objects, and
 * bases kept alive by their children more, so creating one meets
 * nr_morsels's ENOSPC too.
 */
#define TIGHT_SIZE	"size=48m,nr_morsels=8"
/* Self-test: the model is corrupted on purpose after every pwrite. */
static int inject;
static int quick_selftest_off;	/* --no-selftest */

/* ----------------------------------------------------------------- rng */

static uint64_t sm64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t epoch_seed(uint64_t seed, int w, long long e)
{
	uint64_t s = seed ^ ((uint64_t)w << 40) ^ ((uint64_t)e * 0x2545f4914f6cdd1dULL);

	sm64(&s);
	return sm64(&s);
}

static void pattern(unsigned char *p, long long n, uint64_t r)
{
	uint64_t s = r, v = 0;

	for (long long i = 0; i < n; i++) {
		if (!(i & 7))
			v = sm64(&s);
		p[i] = (unsigned char)(v >> (8 * (i & 7)));
	}
}

/* -------------------------------------------------------------- report */

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msgbuf, sizeof(msgbuf), fmt, ap);
	va_end(ap);
	return -1;
}

#define SKIP 1

static long long roundup_pg(long long x)
{
	return (x + PG - 1) & ~(PG - 1);
}

static long long mn(long long a, long long b)
{
	return a < b ? a : b;
}

static long long mx(long long a, long long b)
{
	return a > b ? a : b;
}

/* ------------------------------------------------------------- helpers */

static long long fsize(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_size;
}

static void mpath(char *b, size_t n, const char *name)
{
	snprintf(b, n, "%s/%s", mdir, name);
}

static void tpath(char *b, size_t n, const char *name)
{
	snprintf(b, n, "%s/%s", tdir, name);
}

/* Both calls' results agree: same value, or both -1 with the same errno. */
static int same(long rm, int em, long rt, int et)
{
	if (rm != rt)
		return 0;
	return rm != -1 || em == et;
}

/* --tight: the object's call failed for want of space. */
static int op_nospace;		/* the current op did, at least once */
static int same_fs(int fd, const char *dir);

static void count_nospace(void)
{
	op_nospace = 1;
	if (sh)
		sh->nospace[me]++;
}

/*
 * --tight and @s (NULL: an object being made here) lives on the worker's
 * full mount.  Children of the shared base live on /dev/morsel, which
 * never fills: running out of space there is a bug like any other.
 */
static int slot_tight(struct slot *s)
{
	return tight && (!s || same_fs(s->fd, mdir));
}

static int enospc(struct slot *s, long r, int e)
{
	if (!(r == -1 && e == ENOSPC && slot_tight(s)))
		return 0;
	count_nospace();
	return 1;
}

/* --tight: a write of @len the object took only part of, or none of. */
static int write_stopped(struct slot *s, long rm, int em, long long len)
{
	if (!(rm < len && (rm >= 0 || em == ENOSPC) && slot_tight(s)))
		return 0;
	count_nospace();
	return 1;
}

/*
 * --tight: an access to [off, off + n) of @s (below its size) stopped
 * for want of space: some page there still has no frame of its own.  A
 * store needs a frame of the object's own (a child copies a borrowed
 * one); a load only a hole: a plain object fills it with a frame, a
 * child puts the zero page into a table of its own, which it may have
 * to copy or make (semantics.md, "Mounts"); a frozen object's tables are
 * final and it reads holes as the zero page without either.  0 if so,
 * else a divergence.
 */
static int stop_needed_frame(struct slot *s, long long off, long long n,
			     int store, const char *what)
{
	long long end = mn(off + n, fsize(s->tfd));

	if (!slot_tight(s))
		return fail("%s: slot %d ran out of space on a mount without a limit",
			    what, (int)(s - S));
	if (!store && s->frozen)
		return fail("%s: slot %d (frozen) stopped for want of space on a load",
			    what, (int)(s - S));
	for (long long pg = off / PG; pg * PG < end; pg++) {
		uint64_t pres = 0, own = 0;

		if (morsel_scan(s->fd, (uint64_t)pg * PG, PG, 0, 0, &pres, &own,
				NULL, NULL))
			return fail("%s: SCAN of slot %d: %s", what, (int)(s - S),
				    strerror(errno));
		if (!((store && s->child ? own : pres) & 1))
			return 0;
	}
	return fail("%s: slot %d stopped for want of space, but every page of [%lld, %lld) holds a frame of its own",
		    what, (int)(s - S), off, end);
}

static const char *res(long r, int e)
{
	static char b[2][64];
	static int i;

	i ^= 1;
	if (r == -1)
		snprintf(b[i], sizeof(b[i]), "-1 (%s)", strerrorname_np(e) ? strerrorname_np(e) : "?");
	else
		snprintf(b[i], sizeof(b[i]), "%ld", r);
	return b[i];
}

static void mark(struct slot *s, long long off, long long len)
{
	if (len <= 0)
		return;
	for (long long p = off / PG; p <= (off + len - 1) / PG && p < TRACK / PG; p++)
		s->written[p / 64] |= 1ULL << (p % 64);
}

/* pread all of @n at @off; short at EOF. */
static long long full_pread(int fd, unsigned char *b, long long n, long long off)
{
	long long got = 0;

	while (got < n) {
		ssize_t r = pread(fd, b + got, n - got, off + got);

		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += r;
	}
	return got;
}

/* The bytes [off, off + len) of morsel and twin agree (len <= 4 MiB). */
static int cmp_range(struct slot *s, long long off, long long len, const char *what)
{
	long long a, b;

	if (len <= 0)
		return 0;
	len = mn(len, 4 * MiB);
	a = full_pread(s->fd, b1, len, off);
	b = full_pread(s->tfd, b2, len, off);
	if (a != b)
		return fail("%s: slot %d pread(%lld, %lld): morsel %lld, tmpfs %lld",
			    what, (int)(s - S), off, len, a, b);
	for (long long i = 0; i < a; i++)
		if (b1[i] != b2[i])
			return fail("%s: slot %d bytes differ at %lld: morsel 0x%02x tmpfs 0x%02x",
				    what, (int)(s - S), off + i, b1[i], b2[i]);
	return 0;
}

static int cmp_size(struct slot *s, const char *what)
{
	long long a = fsize(s->fd), b = fsize(s->tfd);
	struct morsel_stat st;

	if (a != b)
		return fail("%s: slot %d size: morsel %lld, tmpfs %lld", what,
			    (int)(s - S), a, b);
	if (stat_of(s->fd, &st) || (long long)st.size != a)
		return fail("%s: slot %d MORSEL_IOC_STAT size %llu, st_size %lld",
			    what, (int)(s - S), (unsigned long long)st.size, a);
	return 0;
}

/* The whole object (small), or its two windows (big). */
static int cmp_all(struct slot *s, const char *what)
{
	long long size;

	if (cmp_size(s, what))
		return -1;
	size = fsize(s->tfd);
	if (size <= SMALL) {
		for (long long o = 0; o < size; o += 4 * MiB)
			if (cmp_range(s, o, mn(4 * MiB, size - o), what))
				return -1;
		return 0;
	}
	if (cmp_range(s, 0, WIN, what) || cmp_range(s, size - WIN, WIN, what))
		return -1;
	return 0;
}

/* Copy file @src to a new file @dst, holes kept (SEEK_DATA). */
static int copy_sparse(int src, const char *dst)
{
	long long size = fsize(src), off = 0;
	int d = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (d < 0 || ftruncate(d, size))
		return fail("copy to %s: %s", dst, strerror(errno));
	while (off < size) {
		long long data = lseek(src, off, SEEK_DATA), hole, n;

		if (data < 0)
			break;
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0)
			hole = size;
		for (off = data; off < hole; off += n) {
			n = full_pread(src, b3, mn(4 * MiB, hole - off), off);
			if (n <= 0 || pwrite(d, b3, n, off) != n) {
				close(d);
				return fail("copy to %s at %lld", dst, off);
			}
		}
	}
	return d;
}

/* ------------------------------------------------------------ geometry */

/* An offset to operate at: anywhere in a small object, else a window. */
static long long pick_off(long long size, uint64_t r)
{
	long long base = 0, span = size;

	if (size > SMALL) {
		span = WIN;
		base = (r & 1) ? 0 : size - WIN;
	}
	return base + (long long)((r >> 1) % (uint64_t)(span + PG / 2 + 1));
}

static long long pick_len(uint64_t r)
{
	uint64_t v = r >> 3;

	switch (r & 7) {
	case 0: case 1: return 1 + v % 64;
	case 2: case 3: return 1 + v % (3 * PG);
	case 4: case 5: return PG * (1 + v % 4);
	case 6: return 1 + v % (256 * KiB);
	default: return 1 + v % (2 * MiB);
	}
}

static long long pick_size(uint64_t r)
{
	uint64_t v = r >> 4;

	switch (r % 16) {
	case 0: return 0;
	case 1: return GiB + (long long)(v % (4 * MiB));	/* PUD root */
	case 2: case 3: return 2 * MiB - PG + (long long)(v % (2 * PG));
	case 4: return (long long)(v % (8 * MiB)) & ~(PG - 1);
	default: return (long long)(v % (6 * MiB));
	}
}

/* A used slot from @r (the op's own slot if used). */
static struct slot *used_slot(int i)
{
	return i >= 0 && i < NSLOT && S[i].used ? &S[i] : NULL;
}

static int free_slot(uint64_t r)
{
	for (int k = 0; k < NSLOT; k++) {
		int i = (int)((r + k) % NSLOT);

		if (!S[i].used)
			return i;
	}
	return -1;
}

static struct map *pick_map(struct slot *s, uint64_t r)
{
	return s->nm ? &s->m[r % s->nm] : NULL;
}

/* File bytes of @m inside the size: [*lo, *hi). */
static void map_span(struct slot *s, struct map *m, long long *lo, long long *hi)
{
	long long size = fsize(s->tfd);

	*lo = m->off;
	*hi = mx(m->off, mn(m->off + m->len, size));
}

/* A sub-range of [lo, hi) from @r, at most @max bytes. */
static void sub(long long lo, long long hi, uint64_t r, long long max,
		long long *o, long long *n)
{
	long long span = hi - lo;

	if (span <= 0) {
		*o = lo;
		*n = 0;
		return;
	}
	*o = lo + (long long)(r % (uint64_t)span);
	*n = 1 + (long long)((r >> 32) % (uint64_t)mn(max, hi - *o));
}

static int probe_copy(void *dst, const void *src, size_t n)
{
	probe_sig = 0;
	if (sigsetjmp(probe_jb, 1) == 0) {
		memcpy(dst, src, n);
		return 0;
	}
	return probe_sig;
}

/* Does page @pg of @s's object hold a frame (its own or its base's)? */
static int page_present(struct slot *s, long long pg)
{
	uint64_t bit = 0;

	if (morsel_scan(s->fd, (uint64_t)pg * PG, PG, 0, 0, &bit, NULL, NULL, NULL))
		return -1;
	return bit & 1;
}

/*
 * --tight: a load through a mapping raised SIGBUS: allowed only on a page
 * without a frame, where the load needed one the mount could not give.
 */
static int sigbus_needed_frame(struct slot *s, long long at, const char *what)
{
	count_nospace();
	return stop_needed_frame(s, at, 1, 0, what);
}

/*
 * --tight: [o, o + n) through mapping @m page by page: each page reads
 * as the twin's bytes, or raises SIGBUS where it has no frame.
 */
static int map_read_pages(struct slot *s, struct map *m, long long o, long long n,
			  const char *what)
{
	for (long long a = o, e; a < o + n; a = e) {
		int sig;

		e = mn(o + n, (a / PG + 1) * PG);
		sig = probe_copy(b1, m->addr + (a - m->off), e - a);
		if (sig == SIGBUS) {
			if (sigbus_needed_frame(s, a, what))
				return -1;
			continue;
		}
		if (sig)
			return fail("%s: slot %d reading file offset %lld through a mapping: signal %d",
				    what, (int)(s - S), a, sig);
		if (full_pread(s->tfd, b2, e - a, a) != e - a)
			return fail("%s: twin pread", what);
		for (long long i = 0; i < e - a; i++)
			if (b1[i] != b2[i])
				return fail("%s: slot %d mapping byte %lld: morsel 0x%02x tmpfs 0x%02x",
					    what, (int)(s - S), a + i, b1[i], b2[i]);
	}
	return 0;
}

/*
 * --tight: a call that ran out of space part way stored some of @want
 * (NULL: zeros) into [off, off + n) and not the rest: each byte of the
 * object there (below the size) is the twin's or @want's.  The twin then
 * takes the object's bytes, and the pages that changed count as written.
 */
static int absorb(struct slot *s, const unsigned char *want, long long off,
		  long long n, const char *what)
{
	n = mn(mn(n, 4 * MiB), fsize(s->tfd) - off);
	if (n <= 0)
		return 0;
	if (full_pread(s->fd, b1, n, off) != n || full_pread(s->tfd, b2, n, off) != n)
		return fail("%s: pread to absorb a partial store", what);
	for (long long i = 0; i < n; i++) {
		if (b1[i] == b2[i])
			continue;
		if (b1[i] != (want ? want[i] : 0))
			return fail("%s (stopped for want of space): slot %d byte %lld is 0x%02x, neither the old 0x%02x nor the new 0x%02x",
				    what, (int)(s - S), off + i, b1[i], b2[i], want ? want[i] : 0);
		mark(s, off + i, 1);
	}
	if (pwrite(s->tfd, b1, n, off) != n)
		return fail("%s: twin pwrite", what);
	return 0;
}

/*
 * --tight: a store of @want into [off, off + n) stopped for want of space
 * (SIGBUS, or I/O that stopped short): it could (stop_needed_frame()),
 * and what it left is per byte old or new (absorb()).
 */
static int store_stopped(struct slot *s, const unsigned char *want,
			 long long off, long long n, const char *what)
{
	if (stop_needed_frame(s, off, n, 1, what))
		return -1;
	return absorb(s, want, off, n, what);
}

/*
 * Read [o, o + n) of the file through mapping @m and compare with the
 * twin; then the bytes past the size in the last page (zero: semantics.md,
 * "Objects": bytes of the last page past the size read as zero through a
 * mapping) and, if the mapping reaches past that page, SIGBUS there
 * (semantics.md, "Beyond the end of the object an access raises SIGBUS").
 */
static int map_check(struct slot *s, struct map *m, long long o, long long n,
		     const char *what)
{
	long long size = fsize(s->tfd), end = m->off + m->len;
	unsigned char v;
	int sig;

	n = mn(n, 4 * MiB);
	if (n > 0) {
		sig = probe_copy(b1, m->addr + (o - m->off), n);
		if (sig == SIGBUS && tight) {
			if (map_read_pages(s, m, o, n, what))
				return -1;
			n = 0;
		} else if (sig)
			return fail("%s: slot %d reading [%lld, +%lld) through a mapping at file %lld: signal %d",
				    what, (int)(s - S), o, n, m->off, sig);
		if (full_pread(s->tfd, b2, n, o) != n)
			return fail("%s: twin pread", what);
		for (long long i = 0; i < n; i++)
			if (b1[i] != b2[i])
				return fail("%s: slot %d mapping (file offset %lld, %s) byte %lld: morsel 0x%02x tmpfs 0x%02x",
					    what, (int)(s - S), m->off,
					    m->prot & PROT_WRITE ? "rw" : "ro",
					    o + i, b1[i], b2[i]);
	}
	if (size % PG && size >= m->off && size < end) {
		long long t = mn(roundup_pg(size), end) - size;

		sig = probe_copy(b1, m->addr + (size - m->off), t);
		if (sig == SIGBUS && tight) {
			if (sigbus_needed_frame(s, size, what))
				return -1;
			t = 0;
		} else if (sig)
			return fail("%s: slot %d tail of the last page [%lld, +%lld) through a mapping: signal %d",
				    what, (int)(s - S), size, t, sig);
		for (long long i = 0; i < t; i++)
			if (b1[i])
				return fail("%s: slot %d byte %lld past the size %lld reads 0x%02x through a mapping",
					    what, (int)(s - S), size + i, size, b1[i]);
	}
	if (roundup_pg(size) < end) {
		long long at = mx(roundup_pg(size), m->off);

		sig = try_read(m->addr + (at - m->off), &v);
		if (sig != SIGBUS)
			return fail("%s: slot %d load at %lld past the size %lld through a mapping: signal %d, want SIGBUS",
				    what, (int)(s - S), at, size, sig);
	}
	return 0;
}

/* ---------------------------------------------------------- slot setup */

static void drop_map(struct slot *s, int i)
{
	s->m[i] = s->m[--s->nm];
}

static void chain_path(char *b, size_t n, struct slot *s, int k)
{
	snprintf(b, n, "%s/opfuzz-w%d-s%d-%d.img", have_disk ? DISK : TDIR, me,
		 (int)(s - S), k);
}

static void snap_path(char *b, size_t n, struct slot *s)
{
	snprintf(b, n, "%s/snap%d", tdir, (int)(s - S));
}

static void chain_drop(struct slot *s)
{
	char p[160];

	for (int k = 0; k < s->chain_n; k++) {
		chain_path(p, sizeof(p), s, k);
		unlink(p);
	}
	snap_path(p, sizeof(p), s);
	unlink(p);
	s->chain_n = 0;
	s->chain_stale = 0;
}

static void slot_close(struct slot *s)
{
	char p[160];

	while (s->nm) {
		munmap(s->m[0].addr, s->m[0].len);
		drop_map(s, 0);
	}
	close(s->fd);
	close(s->tfd);
	if (s->basefd >= 0)
		close(s->basefd);
	if (s->named) {
		mpath(p, sizeof(p), s->name);
		unlink(p);
		tpath(p, sizeof(p), s->name);
		unlink(p);
	}
	chain_drop(s);
	memset(s, 0, sizeof(*s));
}

static void slot_init(struct slot *s, int fd, int tfd, const char *name)
{
	memset(s, 0, sizeof(*s));
	s->used = 1;
	s->cap = -1;
	s->fd = fd;
	s->tfd = tfd;
	s->basefd = -1;
	if (name) {
		snprintf(s->name, sizeof(s->name), "%s", name);
		s->named = 1;
	}
}

/* A child (K1 avoided) cannot reach past @end: clip; 0 if nothing is left. */
static long long k1_clip(struct slot *s, long long off, long long len)
{
	if (known_bugs || s->cap < 0 || off + len <= s->cap)
		return len;
	return mx(0, s->cap - off);
}

/* ------------------------------------------------------------- the ops */

/*
 * A store of @n bytes at @off that reached the object: apply it to the
 * twin, count the pages written, and compare the object with the twin
 * there.
 */
static int model_store(struct slot *s, const void *buf, long long off,
		       long long n, const char *what)
{
	if (pwrite(s->tfd, buf, n, off) != n)
		return fail("twin pwrite");
	mark(s, off, n);
	return cmp_range(s, off, n, what) ? -1 : 0;
}

/*
 * --tight: an ENOSPC of a call that makes an object is right only with no
 * object left (nr_morsels=) or fewer than @pages pages free (size=).
 */
static int out_of_room(long long pages, const char *what)
{
	struct statfs sf;

	if (statfs(mdir, &sf))
		return fail("%s: statfs %s: %s", what, mdir, strerror(errno));
	if (sf.f_ffree && (long long)sf.f_bavail >= pages)
		return fail("%s: ENOSPC while statfs shows %llu of %llu objects and %llu pages free (it needs at most %lld)",
			    what, (unsigned long long)sf.f_ffree,
			    (unsigned long long)sf.f_files,
			    (unsigned long long)sf.f_bavail, pages);
	return 0;
}

static int objects_exhausted(const char *what)
{
	return out_of_room(0, what);
}

static int op_create(struct op *o)
{
	int i = free_slot(o->r[0]), fd, tfd, em, et;
	char name[32], p[160], q[160];
	long long size = pick_size(o->r[1]);

	if (o->slot >= 0 && o->slot < NSLOT && !S[o->slot].used)
		i = o->slot;	/* a replayed log: the slot it had */
	if (i < 0)
		return SKIP;
	if (o->r[2] % 6 == 0) {		/* O_TMPFILE: unnamed from the start */
		fd = open(mdir, O_TMPFILE | O_RDWR, 0600);
		em = errno;
		tfd = open(tdir, O_TMPFILE | O_RDWR, 0600);
		et = errno;
		if (fd < 0 && tfd >= 0 && enospc(NULL, fd, em)) {	/* nr_morsels */
			close(tfd);
			return objects_exhausted("create (O_TMPFILE)");
		}
		if (fd < 0 || tfd < 0) {
			if (fd >= 0)
				close(fd);
			if (tfd >= 0)
				close(tfd);
			return fail("create: O_TMPFILE: morsel %s, tmpfs %s",
				    res(fd < 0 ? -1 : 0, em), res(tfd < 0 ? -1 : 0, et));
		}
		slot_init(&S[i], fd, tfd, NULL);
	} else {
		snprintf(name, sizeof(name), "n%d", name_seq++);
		mpath(p, sizeof(p), name);
		tpath(q, sizeof(q), name);
		fd = open(p, O_RDWR | O_CREAT | O_EXCL, 0600);
		em = errno;
		tfd = open(q, O_RDWR | O_CREAT | O_EXCL, 0600);
		et = errno;
		if (fd < 0 && tfd >= 0 && enospc(NULL, fd, em)) {	/* nr_morsels */
			close(tfd);
			unlink(q);
			if (!access(p, F_OK) || errno != ENOENT)
				return fail("create %s failed with ENOSPC and left it behind",
					    name);
			return objects_exhausted("create");
		}
		if (fd < 0 || tfd < 0) {
			if (fd >= 0)
				close(fd);
			if (tfd >= 0)
				close(tfd);
			return fail("create %s: morsel %s, tmpfs %s", name,
				    res(fd < 0 ? -1 : 0, em), res(tfd < 0 ? -1 : 0, et));
		}
		slot_init(&S[i], fd, tfd, name);
	}
	o->slot = i;
	errno = 0;
	if (ftruncate(fd, size) != 0 && !enospc(&S[i], -1, errno))
		return fail("create: ftruncate(%lld): %s", size, strerror(errno));
	if (fsize(fd) == size && ftruncate(tfd, size) != 0)
		return fail("create: twin ftruncate(%lld): %s", size, strerror(errno));
	return cmp_size(&S[i], "create");
}

static int op_close(struct op *o)
{
	struct slot *s = used_slot(o->slot);

	if (!s)
		return SKIP;
	if (o->r[0] % 2 && cmp_all(s, "close"))
		return -1;
	slot_close(s);
	return 0;
}

/*
 * open: a second descriptor (by name, or /proc/self/fd for an unnamed
 * object) with random flags, one read or write through it, close.
 * Rights: semantics.md "Rights" (EBADF as read(2)/write(2)); a frozen
 * object refuses write and O_TRUNC with EPERM ("Copy-on-write").
 */
static int op_open(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	static const int acc[] = { O_RDONLY, O_WRONLY, O_RDWR };
	int flags = acc[o->r[0] % 3], fm, ft, em, et, ret = 0;
	char p[160], q[160];
	long long off, len;
	long rm, rt;

	if (!s)
		return SKIP;
	if (o->r[0] & 8)
		flags |= O_APPEND;
	if (o->r[0] & 16)
		flags |= O_DIRECT;
	if ((o->r[0] & 32) && (flags & O_ACCMODE) != O_RDONLY && (o->r[0] & 64))
		flags |= O_TRUNC;
	if (s->named) {
		mpath(p, sizeof(p), s->name);
		tpath(q, sizeof(q), s->name);
	} else {
		snprintf(p, sizeof(p), "/proc/self/fd/%d", s->fd);
		snprintf(q, sizeof(q), "/proc/self/fd/%d", s->tfd);
	}
	errno = 0;
	fm = open(p, flags);
	em = errno;
	if (s->frozen && (flags & O_TRUNC) && fsize(s->tfd)) {
		if (fm >= 0 || em != EPERM) {
			if (fm >= 0)
				close(fm);
			return fail("open O_TRUNC of a frozen object: %s, want EPERM",
				    res(fm < 0 ? -1 : 0, em));
		}
		return 0;
	}
	errno = 0;
	ft = open(q, flags);
	et = errno;
	if (!same(fm < 0 ? -1 : 0, em, ft < 0 ? -1 : 0, et)) {
		ret = fail("open flags %#x: morsel %s, tmpfs %s", flags,
			   res(fm < 0 ? -1 : 0, em), res(ft < 0 ? -1 : 0, et));
		goto out;
	}
	if (fm < 0)
		return 0;
	off = pick_off(fsize(s->tfd), o->r[1]);
	len = pick_len(o->r[2]);
	if (flags & O_DIRECT) {		/* aligned, as O_DIRECT users do */
		off &= ~(PG - 1);
		len = roundup_pg(len);
	}
	len = mn(len, 4 * MiB);
	if (o->r[3] & 1) {
		errno = 0;
		rm = pread(fm, b1, len, off);
		em = errno;
		errno = 0;
		rt = pread(ft, b2, len, off);
		et = errno;
		if (!same(rm, em, rt, et))
			ret = fail("open(%#x)+pread(%lld, %lld): morsel %s, tmpfs %s",
				   flags, off, len, res(rm, em), res(rt, et));
		else if (rm > 0 && memcmp(b1, b2, rm))
			ret = fail("open(%#x)+pread(%lld, %lld): contents differ",
				   flags, off, len);
	} else {
		len = k1_clip(s, (flags & O_APPEND) ? fsize(s->tfd) : off, len);
		if (!len)
			goto out;
		pattern(b3, len, o->r[3]);
		if (!(flags & O_APPEND)) {
			lseek(fm, off, SEEK_SET);
			lseek(ft, off, SEEK_SET);
		}
		errno = 0;
		rm = write(fm, b3, len);
		em = errno;
		if (s->frozen && (flags & O_ACCMODE) != O_RDONLY) {
			if (rm != -1 || em != EPERM)
				ret = fail("write to a frozen object (open %#x): %s, want EPERM",
					   flags, res(rm, em));
			goto out;
		}
		errno = 0;
		if (write_stopped(s, rm, em, len)) {
			errno = ENOSPC;
			rt = rm > 0 ? write(ft, b3, rm) : -1;
		} else {
			rt = write(ft, b3, len);
		}
		et = errno;
		if (!same(rm, em, rt, et))
			ret = fail("open(%#x)+write(at %lld, %lld): morsel %s, tmpfs %s",
				   flags, off, len, res(rm, em), res(rt, et));
		else if (rm < 0)
			ret = cmp_size(s, "open+write (failed)");
		else if (rm > 0) {
			long long at = lseek(ft, 0, SEEK_CUR) - rm;

			mark(s, at, rm);
			ret = cmp_size(s, "open+write");
			if (!ret)
				ret = cmp_range(s, at, rm, "open+write");
		}
	}
out:
	if (fm >= 0)
		close(fm);
	if (ft >= 0)
		close(ft);
	if (!ret && (flags & O_TRUNC))
		ret = cmp_size(s, "open O_TRUNC");
	return ret;
}

static int op_unlink(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	char p[160], q[160];
	int rm, rt, em, et;

	if (!s || !s->named)
		return SKIP;
	mpath(p, sizeof(p), s->name);
	tpath(q, sizeof(q), s->name);
	rm = unlink(p);
	em = errno;
	rt = unlink(q);
	et = errno;
	s->named = 0;
	if (!same(rm, em, rt, et))
		return fail("unlink %s: morsel %s, tmpfs %s", s->name,
			    res(rm, em), res(rt, et));
	return cmp_all(s, "unlink");	/* still open: contents stay */
}

/* rename to a new name, over another object, NOREPLACE or EXCHANGE. */
static int op_rename(struct op *o)
{
	struct slot *s = used_slot(o->slot), *t = used_slot((int)(o->r[1] % NSLOT));
	char from_m[160], from_t[160], to_m[160], to_t[160], nn[32];
	unsigned flags = 0;
	int rm, rt, em, et;

	if (!s || !s->named)
		return SKIP;
	if (t == s || (t && !t->named))
		t = NULL;
	if (t && o->r[0] % 3 == 1)
		flags = RENAME_EXCHANGE;
	else if (t && o->r[0] % 3 == 2)
		flags = RENAME_NOREPLACE;
	if (t)
		snprintf(nn, sizeof(nn), "%s", t->name);
	else
		snprintf(nn, sizeof(nn), "n%d", name_seq++);
	mpath(from_m, sizeof(from_m), s->name);
	tpath(from_t, sizeof(from_t), s->name);
	mpath(to_m, sizeof(to_m), nn);
	tpath(to_t, sizeof(to_t), nn);
	rm = renameat2(AT_FDCWD, from_m, AT_FDCWD, to_m, flags);
	em = errno;
	rt = renameat2(AT_FDCWD, from_t, AT_FDCWD, to_t, flags);
	et = errno;
	if (!same(rm, em, rt, et))
		return fail("rename %s -> %s flags %#x: morsel %s, tmpfs %s",
			    s->name, nn, flags, res(rm, em), res(rt, et));
	if (rm)
		return 0;
	if (flags == RENAME_EXCHANGE) {
		snprintf(t->name, sizeof(t->name), "%s", s->name);
	} else if (t) {
		t->named = 0;		/* replaced: its object is unnamed now */
	}
	snprintf(s->name, sizeof(s->name), "%s", nn);
	return 0;
}

/* frozen: semantics.md "Copy-on-write": write, truncate, fallocate EPERM. */
static int frozen_refuses(struct slot *s, long r, int e, const char *what)
{
	if (r != -1 || e != EPERM)
		return fail("%s on frozen slot %d: %s, want EPERM", what,
			    (int)(s - S), res(r, e));
	return cmp_all(s, what);
}

static int op_truncate(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	long long size = pick_size(o->r[0]);
	int rm, rt, em, et;

	if (!s)
		return SKIP;
	if (o->r[1] % 4 == 0)		/* near the current size */
		size = mx(0, fsize(s->tfd) + (long long)((o->r[1] >> 8) % (2 * PG)) - PG);
	if (!known_bugs && s->cap >= 0)
		size = mn(size, s->cap);
	errno = 0;
	rm = ftruncate(s->fd, size);
	em = errno;
	/* A frozen object's size never changes; the same size is no change. */
	if (s->frozen && size != fsize(s->tfd))
		return frozen_refuses(s, rm, em, "ftruncate");
	if (enospc(s, rm, em)) {	/* --tight: nothing changed, checked below */
		rt = rm;
		et = em;
	} else {
		rt = ftruncate(s->tfd, size);
		et = errno;
	}
	if (!same(rm, em, rt, et))
		return fail("ftruncate(slot %d, %lld): morsel %s, tmpfs %s",
			    o->slot, size, res(rm, em), res(rt, et));
	if (cmp_size(s, "ftruncate"))
		return -1;
	return cmp_range(s, mx(0, size - 2 * PG), 4 * PG, "ftruncate");
}

static int do_falloc(struct op *o, int mode, const char *what)
{
	struct slot *s = used_slot(o->slot);
	long long off, len, size;
	int rm, rt, em, et;

	if (!s)
		return SKIP;
	size = fsize(s->tfd);
	off = pick_off(size, o->r[0]);
	len = mn(pick_len(o->r[1]), 4 * MiB);
	if (o->r[2] & 1)
		mode |= FALLOC_FL_KEEP_SIZE;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && !(len = k1_clip(s, off, len)))
		return SKIP;
	errno = 0;
	rm = fallocate(s->fd, mode, off, len);
	em = errno;
	if (s->frozen)
		return frozen_refuses(s, rm, em, what);
	/*
	 * --tight: the size stays; an allocation changed no byte, a punch or
	 * zeroing that stopped part way zeroed some of the range.
	 */
	if (enospc(s, rm, em)) {
		if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) &&
		    absorb(s, NULL, off, mn(len, mx(0, size - off)), what))
			return -1;
		if (cmp_size(s, what))
			return -1;
		return cmp_range(s, mx(0, off - PG), mn(len + 2 * PG, 4 * MiB), what);
	}
	errno = 0;
	if (mode & FALLOC_FL_ZERO_RANGE) {
		/*
		 * tmpfs has no ZERO_RANGE; morselfs "punches the range and
		 * allocates it again, zeroed" (semantics.md, "Objects"): the
		 * twin is punched and, without KEEP_SIZE, extended.
		 */
		rt = fallocate(s->tfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
		if (!rt && !(mode & FALLOC_FL_KEEP_SIZE))
			rt = fallocate(s->tfd, 0, off, len);
	} else {
		rt = fallocate(s->tfd, mode, off, len);
	}
	et = errno;
	if (!same(rm, em, rt, et))
		return fail("%s(slot %d, mode %#x, %lld, %lld): morsel %s, tmpfs %s",
			    what, o->slot, mode, off, len, res(rm, em), res(rt, et));
	/*
	 * Only bytes below the old size change (those past it read as zero
	 * already): a page whose zeroed part lay past the end need not be
	 * dirty (found by this fuzzer in 4-level paging: a model error).
	 */
	if (!rm && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
		mark(s, off, mn(len, mx(0, size - off)));
	if (cmp_size(s, what))
		return -1;
	return cmp_range(s, mx(0, off - PG), mn(len + 2 * PG, 4 * MiB), what);
}

static int op_falloc(struct op *o)
{
	return do_falloc(o, 0, "fallocate");
}

static int op_punch(struct op *o)
{
	struct op p = *o;

	p.r[2] |= 1;		/* PUNCH_HOLE needs KEEP_SIZE */
	return do_falloc(&p, FALLOC_FL_PUNCH_HOLE, "punch");
}

static int op_zero(struct op *o)
{
	return do_falloc(o, FALLOC_FL_ZERO_RANGE, "zero-range");
}

static int op_read(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	long long off, len;
	long rm, rt;
	int em, et;

	if (!s)
		return SKIP;
	off = pick_off(fsize(s->tfd), o->r[0]);
	len = mn(pick_len(o->r[1]), 4 * MiB);
	if (o->r[2] & 1) {		/* read() at the position */
		lseek(s->fd, off, SEEK_SET);
		lseek(s->tfd, off, SEEK_SET);
		rm = read(s->fd, b1, len);
		em = errno;
		rt = read(s->tfd, b2, len);
		et = errno;
		if (same(rm, em, rt, et) && lseek(s->fd, 0, SEEK_CUR) != lseek(s->tfd, 0, SEEK_CUR))
			return fail("read: positions differ");
	} else {
		rm = pread(s->fd, b1, len, off);
		em = errno;
		rt = pread(s->tfd, b2, len, off);
		et = errno;
	}
	if (!same(rm, em, rt, et))
		return fail("read(slot %d, %lld, %lld): morsel %s, tmpfs %s",
			    o->slot, off, len, res(rm, em), res(rt, et));
	for (long i = 0; i < rm; i++)
		if (b1[i] != b2[i])
			return fail("read(slot %d, %lld, %lld): byte %lld: morsel 0x%02x tmpfs 0x%02x",
				    o->slot, off, len, off + i, b1[i], b2[i]);
	return 0;
}

static int op_write(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	long long off, len;
	long rm, rt;
	int em, et;

	if (!s)
		return SKIP;
	off = pick_off(fsize(s->tfd), o->r[0]);
	if (o->r[2] % 16 == 0)		/* past the end: a hole in between */
		off = fsize(s->tfd) + (long long)((o->r[2] >> 8) % (3 * MiB));
	len = mn(pick_len(o->r[1]), 4 * MiB);
	if (!(len = k1_clip(s, off, len)))
		return SKIP;
	pattern(b3, len, o->r[3]);
	errno = 0;
	rm = pwrite(s->fd, b3, len, off);
	em = errno;
	if (s->frozen)
		return frozen_refuses(s, rm, em, "pwrite");
	errno = 0;
	if (write_stopped(s, rm, em, len)) {	/* --tight: what it took */
		errno = ENOSPC;
		rt = rm > 0 ? pwrite(s->tfd, b3, rm, off) : -1;
	} else {
		rt = pwrite(s->tfd, b3, len, off);
	}
	et = errno;
	if (!same(rm, em, rt, et))
		return fail("pwrite(slot %d, %lld, %lld): morsel %s, tmpfs %s",
			    o->slot, off, len, res(rm, em), res(rt, et));
	if (rm > 0)
		mark(s, off, rm);
	if (rm > 0 && inject) {
		unsigned char c;

		if (pread(s->tfd, &c, 1, off) == 1) {
			c ^= 0xff;
			if (pwrite(s->tfd, &c, 1, off) != 1)
				return fail("inject");
		}
	}
	if (cmp_size(s, "pwrite"))
		return -1;
	return cmp_range(s, mx(0, off - 64), len + 128, "pwrite");
}

/*
 * mmap: only MAP_SHARED, no PROT_EXEC; a frozen object refuses
 * PROT_WRITE with EPERM (semantics.md "Copy-on-write"); addresses are
 * picked by the kernel (2 MiB congruent with the offset, "Mapping").
 */
static int op_mmap(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	long long size, off, len;
	int prot, flags = MAP_SHARED;
	struct map *m;
	void *a;

	if (!s || s->nm == NMAP)
		return SKIP;
	size = fsize(s->tfd);
	off = pick_off(mx(size, PG), o->r[0]);
	off &= (o->r[1] & 1) ? ~(2 * MiB - 1) : ~(PG - 1);
	len = PG * (1 + (long long)((o->r[1] >> 1) % 1024));
	if (o->r[1] & 2)		/* up to the end */
		len = mx(PG, roundup_pg(size) - off);
	len = mn(len, WIN + 2 * MiB);
	prot = (o->r[2] % 3) ? PROT_READ | PROT_WRITE : PROT_READ;
	if (s->frozen && (prot & PROT_WRITE) && o->r[2] % 4)
		prot = PROT_READ;
	if (o->r[2] & 8)
		flags |= MAP_POPULATE;
	errno = 0;
	a = mmap(NULL, len, prot, flags, s->fd, off);
	if (s->frozen && (prot & PROT_WRITE)) {
		if (a != MAP_FAILED) {
			munmap(a, len);
			return fail("mmap(PROT_WRITE) of a frozen object succeeded, want EPERM");
		}
		if (errno != EPERM)
			return fail("mmap(PROT_WRITE) of a frozen object: %s, want EPERM",
				    strerror(errno));
		return 0;
	}
	if (a == MAP_FAILED)
		return fail("mmap(slot %d, off %lld, len %lld, prot %d, flags %#x): %s",
			    o->slot, off, len, prot, flags, strerror(errno));
	if (((uintptr_t)a - off) % (2 * MiB))
		return fail("mmap at %p for offset %lld: not congruent modulo 2 MiB", a, off);
	m = &s->m[s->nm++];
	m->addr = a;
	m->off = off;
	m->len = len;
	m->prot = prot;
	/*
	 * Made writable by mmap() of an object neither frozen nor a child:
	 * no write notification, and FREEZE fails with EBUSY while it exists,
	 * also after mprotect() (semantics.md, "Copy-on-write").
	 */
	m->plain = (prot & PROT_WRITE) && !s->frozen && !s->child;
	{
		long long lo, hi, co, cn;

		map_span(s, m, &lo, &hi);
		sub(lo, hi, o->r[3], 64 * KiB, &co, &cn);
		return map_check(s, m, co, cn, "mmap");
	}
}

static int op_munmap(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m;
	long long k;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	k = PG * (long long)(1 + (o->r[1] >> 2) % (uint64_t)(m->len / PG));
	if (k >= m->len || o->r[1] % 3 == 0) {
		if (munmap(m->addr, m->len))
			return fail("munmap: %s", strerror(errno));
		drop_map(s, (int)(m - s->m));
		return 0;
	}
	if (o->r[1] % 3 == 1) {		/* the head */
		if (munmap(m->addr, k))
			return fail("munmap head: %s", strerror(errno));
		m->addr += k;
		m->off += k;
	} else {			/* the tail */
		if (munmap(m->addr + m->len - k, k))
			return fail("munmap tail: %s", strerror(errno));
	}
	m->len -= k;
	{
		long long lo, hi, co, cn;

		map_span(s, m, &lo, &hi);
		sub(lo, hi, o->r[2], 256 * KiB, &co, &cn);
		return map_check(s, m, co, cn, "munmap (the rest)");
	}
}

/*
 * mremap: a move keeping the offset's congruence works; one breaking it
 * fails with EINVAL, growing with EFAULT (semantics.md, "Address-space
 * operations"); shrinking is a munmap of the tail.
 */
static int op_mremap(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m;
	unsigned char *to;
	void *r;
	long long lo, hi, co, cn;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	switch (o->r[1] % 6) {
	case 0:			/* wrong congruence */
		to = free_range(m->len + 4 * MiB, 2 * MiB) + m->off % (2 * MiB) + PG;
		r = mremap(m->addr, m->len, m->len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		if (r != MAP_FAILED || errno != EINVAL)
			return fail("mremap to a non-congruent address: %s, want EINVAL",
				    r == MAP_FAILED ? strerror(errno) : "moved");
		break;
	case 1:			/* grow */
		r = mremap(m->addr, m->len, m->len + PG, MREMAP_MAYMOVE);
		if (r != MAP_FAILED || errno != EFAULT) {
			if (r != MAP_FAILED) {
				m->addr = r;
				m->len += PG;
			}
			return fail("mremap growing a mapping: %s, want EFAULT",
				    r == MAP_FAILED ? strerror(errno) : "grew");
		}
		break;
	case 2:			/* shrink */
		if (m->len <= PG)
			return SKIP;
		r = mremap(m->addr, m->len, m->len - PG, 0);
		if (r != m->addr)
			return fail("mremap shrinking by a page: %s",
				    r == MAP_FAILED ? strerror(errno) : "moved");
		m->len -= PG;
		break;
	default:		/* move */
		to = free_range(m->len + 2 * MiB, 2 * MiB) + m->off % (2 * MiB);
		r = mremap(m->addr, m->len, m->len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		if (r != to)
			return fail("mremap move of %lld bytes (offset %lld): %s",
				    m->len, m->off, r == MAP_FAILED ? strerror(errno) : "elsewhere");
		m->addr = to;
		break;
	}
	map_span(s, m, &lo, &hi);
	sub(lo, hi, o->r[2], 512 * KiB, &co, &cn);
	return map_check(s, m, co, cn, "mremap");
}

/*
 * mprotect: adding PROT_WRITE on a frozen object fails with EACCES
 * (semantics.md "Copy-on-write"); a store through a read-only mapping
 * raises SIGSEGV ("Mapping").
 */
static int op_mprotect(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m;
	long long lo, hi, co, cn;
	int want, r;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	want = (m->prot & PROT_WRITE) ? PROT_READ : PROT_READ | PROT_WRITE;
	errno = 0;
	r = mprotect(m->addr, m->len, want);
	if ((want & PROT_WRITE) && s->frozen) {
		if (r != -1 || errno != EACCES)
			return fail("mprotect(PROT_WRITE) on a frozen object: %s, want EACCES",
				    res(r, errno));
		return 0;
	}
	if (r)
		return fail("mprotect(%d) of slot %d: %s", want, o->slot, strerror(errno));
	m->prot = want;
	map_span(s, m, &lo, &hi);
	if (!(want & PROT_WRITE) && hi > lo) {
		unsigned char *p = m->addr + (lo - m->off);
		int sig = try_write(p, 0x5a);

		if (sig != SIGSEGV)
			return fail("store through a mapping made read-only: signal %d, want SIGSEGV", sig);
	}
	sub(lo, hi, o->r[2], 512 * KiB, &co, &cn);
	return map_check(s, m, co, cn, "mprotect");
}

/*
 * madvise: DONTNEED keeps the data; REMOVE punches (needs a writable
 * mapping, EACCES otherwise, as on tmpfs; EPERM on a frozen object);
 * POPULATE_READ/WRITE fill; COLD/PAGEOUT do nothing (semantics.md,
 * "Address-space operations").
 */
static int op_madvise(struct op *o)
{
	static const int adv[] = { MADV_DONTNEED, MADV_REMOVE, MADV_POPULATE_READ,
				   MADV_POPULATE_WRITE, MADV_COLD, MADV_PAGEOUT,
				   MADV_DONTNEED };
	struct slot *s = used_slot(o->slot);
	struct map *m;
	long long lo, hi, a, n, co, cn;
	int advice = adv[o->r[1] % 7], r, e;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	map_span(s, m, &lo, &hi);
	a = m->off + PG * (long long)((o->r[2] % (uint64_t)(m->len / PG)));
	n = PG * (long long)(1 + (o->r[2] >> 32) % (uint64_t)((m->off + m->len - a) / PG));
	if (advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE) {
		/* Populating past the size would SIGBUS: inside it only. */
		n = mn(n, roundup_pg(hi) - a);
		if (n <= 0)
			return SKIP;
		if (advice == MADV_POPULATE_WRITE && (!(m->prot & PROT_WRITE) || s->frozen))
			advice = MADV_POPULATE_READ;
	}
	errno = 0;
	r = madvise(m->addr + (a - m->off), n, advice);
	e = errno;
	if (advice == MADV_REMOVE) {
		/*
		 * Every mapping comes from an O_RDWR descriptor (VM_MAYWRITE:
		 * the punch works through a read-only one, as on tmpfs); a
		 * frozen object refuses: EPERM from fallocate, or EACCES for
		 * a mapping made after the freeze (no VM_MAYWRITE).
		 */
		if (!s->frozen && enospc(s, r, e)) {	/* a child's copy */
			if (absorb(s, NULL, a, mn(a + n, fsize(s->tfd)) - a, "madvise(REMOVE)"))
				return -1;
		} else if (s->frozen ? (r != -1 || (e != EPERM && e != EACCES)) : r != 0)
			return fail("madvise(REMOVE) of slot %d (%s%s): %s, want %s",
				    o->slot, m->prot & PROT_WRITE ? "rw" : "ro",
				    s->frozen ? ", frozen" : "", res(r, e),
				    s->frozen ? "EPERM or EACCES" : "0");
		if (!r) {
			long long size = fsize(s->tfd), pe = mn(a + n, size);

			if (pe > a) {
				if (fallocate(s->tfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, a, pe - a))
					return fail("twin punch: %s", strerror(errno));
				mark(s, a, pe - a);
			}
		}
	} else if (r && tight && e == EFAULT &&
		   (advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE)) {
		count_nospace();	/* a frame it could not have: no byte changes */
		if (stop_needed_frame(s, a, n, advice == MADV_POPULATE_WRITE,
				      "madvise(POPULATE)"))
			return -1;
	} else if (r) {
		return fail("madvise(%d) of slot %d [%lld, +%lld): %s", advice,
			    o->slot, a, n, strerror(e));
	}
	if (cmp_size(s, "madvise"))
		return -1;
	sub(mx(lo, a), mn(hi, a + n), o->r[3], 512 * KiB, &co, &cn);
	return map_check(s, m, co, cn, "madvise");
}

static int op_mapread(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m;
	long long lo, hi, co, cn;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	map_span(s, m, &lo, &hi);
	sub(lo, hi, o->r[1], (o->r[2] & 1) ? 4 * MiB : 8 * KiB, &co, &cn);
	return map_check(s, m, co, cn, "mapread");
}

/*
 * Stores through a mapping: a read-only mapping and a mapping of an
 * object frozen since raise SIGSEGV and change nothing (semantics.md,
 * "Mapping" and "Copy-on-write": "Mappings that exist are
 * write-protected in the tables of every mapper at freeze time").
 */
static int op_mapwrite(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m;
	long long lo, hi, co, cn;
	int sig;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	map_span(s, m, &lo, &hi);
	sub(lo, hi, o->r[1], (o->r[2] & 1) ? 2 * MiB : 8 * KiB, &co, &cn);
	if (cn <= 0)
		return SKIP;
	pattern(b3, cn, o->r[3]);
	sig = probe_copy(m->addr + (co - m->off), b3, cn);
	if (!(m->prot & PROT_WRITE) || s->frozen) {
		if (sig != SIGSEGV)
			return fail("store to a %s mapping: signal %d, want SIGSEGV",
				    s->frozen ? "frozen object's" : "read-only", sig);
		return map_check(s, m, co, cn, "mapwrite (refused)");
	}
	if (sig == SIGBUS && tight) {	/* a page it had no frame for */
		count_nospace();
		if (store_stopped(s, b3, co, cn, "mapwrite (SIGBUS)"))
			return -1;
		return map_check(s, m, co, cn, "mapwrite (SIGBUS)");
	}
	if (sig)
		return fail("store of %lld bytes at %lld through a mapping of slot %d: signal %d",
			    cn, co, o->slot, sig);
	if (model_store(s, b3, co, cn, "mapwrite (read back)"))
		return -1;
	return map_check(s, m, co, cn, "mapwrite");
}

/*
 * Loads and stores through a mapping by the kernel on the process's
 * behalf (GUP, semantics.md "Memory the kernel can use"):
 * process_vm_readv/writev on ourselves, or /proc/self/mem, whose
 * FOLL_FORCE still never writes a shared mapping that is not writable.
 * A read-only mapping or a frozen object's: the write fails (EFAULT;
 * /proc/PID/mem says EIO) and changes nothing.
 */
static int op_remote(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	int procmem = o->r[2] & 2, store = o->r[2] & 4, refused;
	struct map *m;
	long long lo, hi, co, cn;
	ssize_t r;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	map_span(s, m, &lo, &hi);
	sub(lo, hi, o->r[1], (o->r[2] & 1) ? 2 * MiB : 8 * KiB, &co, &cn);
	if (cn <= 0)
		return SKIP;
	refused = store && (!(m->prot & PROT_WRITE) || s->frozen);
	if (store)
		pattern(b3, cn, o->r[3]);
	errno = 0;
	if (procmem) {
		int mfd = open("/proc/self/mem", store ? O_RDWR : O_RDONLY);

		if (mfd < 0)
			return fail("open /proc/self/mem: %s", strerror(errno));
		r = store ? pwrite(mfd, b3, cn, (off_t)(uintptr_t)(m->addr + (co - m->off))) :
			    pread(mfd, b1, cn, (off_t)(uintptr_t)(m->addr + (co - m->off)));
		close(mfd);
	} else {
		struct iovec local = { store ? b3 : b1, (size_t)cn };
		struct iovec remote = { m->addr + (co - m->off), (size_t)cn };

		r = store ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0) :
			    process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	}
	if (refused) {
		if (r != -1 || errno != (procmem ? EIO : EFAULT))
			return fail("%s store of %lld bytes to a %s mapping: %s, want %s",
				    procmem ? "/proc/self/mem" : "process_vm_writev", cn,
				    s->frozen ? "frozen object's" : "read-only",
				    res((long)r, errno), procmem ? "EIO" : "EFAULT");
		return map_check(s, m, co, cn, "remote store (refused)");
	}
	/*
	 * --tight: the kernel stops at the first page it cannot have a
	 * frame for (a hole; for a store, also a page a child must copy):
	 * a short count, or the call's error if that was the first page.
	 */
	if (r != cn && tight && (r >= 0 || errno == (procmem ? EIO : EFAULT))) {
		long long got = r > 0 ? r : 0;

		count_nospace();
		if (stop_needed_frame(s, co + got, cn - got, store,
				      store ? "remote store (stopped)" : "remote load (stopped)"))
			return -1;
		if (store)
			return absorb(s, b3, co, cn, "remote store") ? -1 :
			       map_check(s, m, co, cn, "remote store (stopped)");
		if (page_present(s, (co + got) / PG))
			return fail("%s load of %lld bytes at %lld stopped after %lld at a page with a frame",
				    procmem ? "/proc/self/mem" : "process_vm_readv",
				    cn, co, got);
		if (full_pread(s->tfd, b2, got, co) != got || memcmp(b1, b2, got))
			return fail("remote load (stopped): the bytes before the stop differ");
		return map_check(s, m, co, cn, "remote load (stopped)");
	}
	if (r != cn)
		return fail("%s %s of %lld bytes at %lld through a mapping of slot %d: %s",
			    procmem ? "/proc/self/mem" : "process_vm",
			    store ? "store" : "load", cn, co, o->slot,
			    res((long)r, errno));
	if (store) {
		if (model_store(s, b3, co, cn, "remote store (read back)"))
			return -1;
	} else {
		if (full_pread(s->tfd, b2, cn, co) != cn)
			return fail("remote load: twin pread");
		for (long long i = 0; i < cn; i++)
			if (b1[i] != b2[i])
				return fail("%s load: slot %d byte %lld: morsel 0x%02x tmpfs 0x%02x",
					    procmem ? "/proc/self/mem" : "process_vm_readv",
					    o->slot, co + i, b1[i], b2[i]);
	}
	return map_check(s, m, co, cn, store ? "remote store" : "remote load");
}

/*
 * fork: the child inherits every mapping (semantics.md, "Address-space
 * operations": no entries copied, the child links on first touch),
 * checks a range through one against the twin, stores through another
 * and exits without munmap; the parent applies the store to the twin.
 */
/*
 * --tight: a child process's store through a mapping raised SIGBUS (a
 * page the mount had no frame for) and it exited with status 12: it
 * stored part of its bytes.
 */
static int child_stored_part(int st)
{
	if (!(tight && st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 12))
		return 0;
	count_nospace();
	return 1;
}

/*
 * In a child process: store @n bytes of @src at @dst; exit with 12 if it
 * raised SIGBUS under --tight (child_stored_part()), @code on any other
 * signal.
 */
static void child_store(void *dst, const void *src, long long n, int code)
{
	int sig = probe_copy(dst, src, n);

	if (sig == SIGBUS && tight)
		_exit(12);	/* a page it had no frame for */
	if (sig)
		_exit(code);
}

static int op_fork(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m, *w = NULL;
	long long lo, hi, co, cn, wo = 0, wn = 0;
	pid_t pid;
	int st;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	map_span(s, m, &lo, &hi);
	sub(lo, hi, o->r[1], 256 * KiB, &co, &cn);
	if (!s->frozen)
		for (int k = 0; k < s->nm; k++)
			if (s->m[(o->r[2] + k) % s->nm].prot & PROT_WRITE) {
				w = &s->m[(o->r[2] + k) % s->nm];
				break;
			}
	if (w) {
		long long wl, wh;

		map_span(s, w, &wl, &wh);
		sub(wl, wh, o->r[3], 64 * KiB, &wo, &wn);
		pattern(b3, wn, o->r[3] ^ 0x55);
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return fail("fork: %s", strerror(errno));
	cur_child = pid;
	if (pid == 0) {
		if (map_check(s, m, co, cn, "fork child")) {
			printf("# child: %s\n", msgbuf);
			_exit(10);
		}
		if (wn > 0)	/* w is NULL without a writable mapping */
			child_store(w->addr + (wo - w->off), b3, wn, 11);
		_exit(0);
	}
	st = wait_status(pid);
	cur_child = 0;
	if (child_stored_part(st)) {
		if (store_stopped(s, b3, wo, wn, "fork (child's store, SIGBUS)"))
			return -1;
		return map_check(s, w, wo, wn, "fork (child's store, SIGBUS)");
	}
	if (!CHILD_OK(st))
		return fail("fork child of slot %d: status %#x (10: mismatch, 11: store faulted)",
			    o->slot, st);
	if (wn > 0) {
		if (model_store(s, b3, wo, wn, "fork (child's store)"))
			return -1;
		return map_check(s, w, wo, wn, "fork (child's store)");
	}
	return 0;
}

/* exit: a child maps the object itself, links it, stores, exits mapped. */
static int op_exit(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	long long size, len, wo = 0, wn = 0;
	pid_t pid;
	int st;

	if (!s || s->frozen)
		return SKIP;
	size = fsize(s->tfd);
	len = mn(roundup_pg(size), WIN);
	if (len <= 0)
		return SKIP;
	sub(0, mn(size, len), o->r[0], 128 * KiB, &wo, &wn);
	pattern(b3, wn, o->r[1]);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return fail("fork: %s", strerror(errno));
	cur_child = pid;
	if (pid == 0) {
		unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
					MAP_SHARED, s->fd, 0);
		struct morsel_map mm;

		if (p == MAP_FAILED)
			_exit(10);
		memset(&mm, 0, sizeof(mm));
		mm.argsz = sizeof(mm);
		mm.addr = (uintptr_t)p;
		mm.length = len;
		mm.flags = (o->r[2] & 1) ? MORSEL_MAP_POPULATE : 0;
		if ((o->r[2] & 2) && ioctl(s->fd, MORSEL_IOC_MAP, &mm))
			_exit(tight && errno == ENOSPC &&
			      (mm.flags & MORSEL_MAP_POPULATE) ? 13 : 11);
		if (wn > 0)
			child_store(p + wo, b3, wn, 14);
		_exit(0);		/* no munmap: exit removes the links */
	}
	st = wait_status(pid);
	cur_child = 0;
	if (child_stored_part(st)) {
		if (store_stopped(s, b3, wo, wn, "exit (child's store, SIGBUS)"))
			return -1;
		return cmp_range(s, wo, wn, "exit (child's store, SIGBUS)");
	}
	if (tight && st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 13) {
		/* MAP_POPULATE ran out of space: it stored nothing */
		if (!slot_tight(s))
			return fail("exit: MAP_POPULATE of slot %d failed with ENOSPC on a mount without a limit",
				    o->slot);
		count_nospace();
		return cmp_range(s, wo, wn, "exit (MAP: ENOSPC)");
	}
	if (!CHILD_OK(st))
		return fail("exit child of slot %d: status %#x (10 mmap, 11 MAP, 12/14 store: SIGBUS/other signal)",
			    o->slot, st);
	if (wn > 0) {
		if (pwrite(s->tfd, b3, wn, wo) != wn)
			return fail("twin pwrite");
		mark(s, wo, wn);
	}
	return cmp_range(s, wo, wn, "exit (child's store)");
}

/* MORSEL_IOC_MAP of part of a mapping (semantics.md, "Mapping"). */
static int op_iocmap(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct morsel_map mm;
	struct map *m;
	long long lo, hi, a, n, co, cn;
	int r;

	if (!s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	map_span(s, m, &lo, &hi);
	/* Inside the size: past it there is nothing to link. */
	hi = roundup_pg(hi);
	if (hi <= lo)
		return SKIP;
	a = lo + PG * (long long)(o->r[1] % (uint64_t)((hi - lo) / PG));
	n = PG * (long long)(1 + (o->r[1] >> 32) % (uint64_t)((hi - a) / PG));
	if (o->r[2] & 4) {
		a = lo;
		n = hi - lo;
	}
	memset(&mm, 0, sizeof(mm));
	mm.argsz = sizeof(mm);
	mm.addr = (uintptr_t)(m->addr + (a - m->off));
	mm.length = n;
	mm.flags = (o->r[2] & 1) ? MORSEL_MAP_POPULATE : 0;
	errno = 0;
	r = ioctl(s->fd, MORSEL_IOC_MAP, &mm);
	/* semantics.md, "Mounts": only POPULATE may run out of space */
	if (r && !((mm.flags & MORSEL_MAP_POPULATE) && !s->frozen &&
		   enospc(s, r, errno)))
		return fail("MORSEL_IOC_MAP(slot %d, [%lld, +%lld), flags %u, %s): %s",
			    o->slot, a, n, mm.flags,
			    m->prot & PROT_WRITE ? "rw" : "ro", strerror(errno));
	sub(a, mn(a + n, fsize(s->tfd)), o->r[3], 512 * KiB, &co, &cn);
	return map_check(s, m, co, cn, "MORSEL_IOC_MAP");
}

/*
 * Has @s's object a mapping made writable by mmap() while it was plain,
 * through any slot of this worker that holds the same object?
 */
static int plain_mapped(struct slot *s)
{
	struct stat a, b;
	int k, j;

	if (fstat(s->fd, &a))
		return 0;
	for (k = 0; k < NSLOT; k++) {
		if (!S[k].used || fstat(S[k].fd, &b) || b.st_ino != a.st_ino ||
		    b.st_dev != a.st_dev)
			continue;
		for (j = 0; j < S[k].nm; j++)
			if (S[k].m[j].plain)
				return 1;
	}
	return 0;
}

static int op_freeze(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	int r;

	if (!s)
		return SKIP;
	if (!s->frozen && plain_mapped(s)) {
		if (freeze(s->fd) == 0)
			return fail("MORSEL_IOC_FREEZE(slot %d) with a mapping made writable by mmap(): succeeded, want EBUSY",
				    o->slot);
		if (errno != EBUSY)
			return fail("MORSEL_IOC_FREEZE(slot %d) with a mapping made writable by mmap(): %s, want EBUSY",
				    o->slot, strerror(errno));
		if (mstat(s->fd).state & MORSEL_STATE_FROZEN)
			return fail("a FREEZE that failed with EBUSY left the object frozen");
		return cmp_all(s, "freeze (EBUSY)");
	}
	errno = 0;
	r = freeze(s->fd);
	if (r && enospc(s, -1, errno)) {
		if (mstat(s->fd).state & MORSEL_STATE_FROZEN)
			return fail("a FREEZE that failed with ENOSPC left the object frozen");
		return cmp_all(s, "freeze (ENOSPC)");
	}
	if (r)
		return fail("MORSEL_IOC_FREEZE(slot %d): %s", o->slot, strerror(errno));
	if (!(mstat(s->fd).state & MORSEL_STATE_FROZEN))
		return fail("frozen object's STAT state lacks FROZEN");
	s->frozen = 1;		/* "Freezing is permanent" */
	return cmp_all(s, "freeze");
}

static int same_fs(int fd, const char *dir)
{
	struct stat a, b;

	return !fstat(fd, &a) && !stat(dir, &b) && a.st_dev == b.st_dev;
}

/*
 * SPLIT: a child of a frozen base is a copy of the base's contents at
 * freeze time (semantics.md, "Copy-on-write"); the twin is a copy of the
 * base's twin.  An unfrozen base: EINVAL.  The base is the slot's object
 * or the frozen base all workers share.
 */
static int op_split(struct op *o)
{
	struct slot *s = used_slot(o->slot), *c;
	int use_shared = o->r[0] % 3 == 0 || !s, i = free_slot(o->r[1]);
	int bfd, btfd, cfd, tfd;
	char name[32], p[160], q[160];

	if (i < 0)
		return SKIP;
	bfd = use_shared ? shared_fd : s->fd;
	btfd = use_shared ? shared_tfd : s->tfd;
	errno = 0;
	cfd = split(bfd);
	if (!use_shared && !s->frozen) {
		if (cfd >= 0) {
			close(cfd);
			return fail("SPLIT of an unfrozen object succeeded, want EINVAL");
		}
		if (errno != EINVAL)
			return fail("SPLIT of an unfrozen object: %s, want EINVAL", strerror(errno));
		return 0;
	}
	if (cfd < 0 && !use_shared && enospc(s, -1, errno)) {
		/* a child takes an object and a copy of its base's root */
		if (out_of_room(2, "SPLIT"))
			return -1;
		return cmp_all(s, "SPLIT (ENOSPC)");
	}
	if (cfd < 0)
		return fail("SPLIT(%s): %s", use_shared ? "shared base" : "slot", strerror(errno));
	snprintf(name, sizeof(name), "n%d", name_seq++);
	tpath(q, sizeof(q), name);
	tfd = copy_sparse(btfd, q);
	if (tfd < 0) {
		close(cfd);
		return -1;
	}
	c = &S[i];
	/*
	 * Named with linkat, if the child lives in this worker's directory's
	 * file system (--tight: a child of the shared base, or of a child of
	 * it, lives in /dev/morsel's).
	 */
	if (o->r[2] % 4 && same_fs(cfd, mdir)) {
		char fdp[64];

		snprintf(fdp, sizeof(fdp), "/proc/self/fd/%d", cfd);
		mpath(p, sizeof(p), name);
		if (linkat(AT_FDCWD, fdp, AT_FDCWD, p, AT_SYMLINK_FOLLOW)) {
			close(cfd);
			close(tfd);
			unlink(q);
			return fail("linkat of a split child: %s", strerror(errno));
		}
		slot_init(c, cfd, tfd, name);
	} else {
		unlink(q);
		slot_init(c, cfd, tfd, NULL);
	}
	c->child = 1;
	c->cap = fsize(btfd);
	c->basefd = dup(bfd);
	{
		struct morsel_stat st = mstat(cfd);

		if (!st.parent || (st.state & MORSEL_STATE_FROZEN))
			return fail("split child: STAT parent %llu state %u",
				    (unsigned long long)st.parent, st.state);
	}
	return cmp_all(c, "split");
}

/*
 * SCAN: every page whose model bytes are not zero is present; every page
 * stored to since the last clean (write, mapping, O_DIRECT, FILL, futex,
 * a partial punch's zeroing) that is present is dirty (semantics.md,
 * "Memory the rest of the kernel uses": "SCAN reports as written every
 * page written through such a hold"; uapi: "a later store to the page,
 * by any means ... makes it dirty again").  With CLEAN the model's
 * written set is emptied and an incremental save on the chain must fail
 * with ESTALE (uapi, MORSEL_SCAN_IF_GEN).
 */
static int op_scan(struct op *o)
{
	static uint64_t present[TRACK / PG / 64], dirty[TRACK / PG / 64];
	struct slot *s = used_slot(o->slot);
	struct morsel_scan out;
	long long size, len, start = 0;
	unsigned flags = 0;
	int r;

	if (!s)
		return SKIP;
	size = fsize(s->tfd);
	len = mn(roundup_pg(size), TRACK);
	if (len <= 0)
		return SKIP;
	if ((o->r[0] & 1) && !s->frozen)
		flags |= MORSEL_SCAN_CLEAN;
	memset(present, 0xa5, sizeof(present));
	memset(dirty, 0xa5, sizeof(dirty));
	r = morsel_scan(s->fd, start, len, flags, 0, present, NULL, dirty, &out);
	if (r)
		return fail("MORSEL_IOC_SCAN(slot %d, %lld bytes, flags %u): %s",
			    o->slot, len, flags, strerror(-r));
	for (long long p = 0; p < len / PG; p++) {
		int pres = present[p / 64] >> (p % 64) & 1;
		int dirt = dirty[p / 64] >> (p % 64) & 1;
		long long n = mn(PG, size - p * PG);
		int nz = 0;

		if (full_pread(s->tfd, b2, n, p * PG) != n)
			return fail("twin pread");
		for (long long i = 0; i < n && !nz; i++)
			nz = b2[i] != 0;
		if (nz && !pres)
			return fail("SCAN of slot %d: page %lld holds data but is not present",
				    o->slot, p);
		if (pres && (s->written[p / 64] >> (p % 64) & 1) && !dirt && !s->frozen)
			return fail("SCAN of slot %d: page %lld was stored to since the last clean but is not dirty",
				    o->slot, p);
	}
	if (flags & MORSEL_SCAN_CLEAN) {
		memset(s->written, 0, sizeof(s->written));
		if (s->chain_n)
			s->chain_stale = 1;
	}
	return 0;
}

/*
 * FILL: pages that are holes (SCAN's present bitmap just before) get the
 * source's bytes, others keep theirs; frozen objects EPERM, children
 * EINVAL, a bad crc EBADMSG and a short file ENODATA with nothing
 * installed (semantics.md, "Mapping": MORSEL_IOC_FILL).  Only pages wholly
 * inside the size, so no byte past the size is written.
 */
static int op_fill(struct op *o)
{
	static uint64_t present[TRACK / PG / 64];
	struct slot *s = used_slot(o->slot);
	struct morsel_fill f;
	struct morsel_fill_run runs[16];
	uint64_t pages[16];
	long long size, whole, first, src_off;
	unsigned nr, holes = 0, nruns = 0;
	int r, want = 0, bad_crc = 0, short_src = 0;

	if (!s)
		return SKIP;
	size = fsize(s->tfd);
	whole = mn(size / PG, TRACK / PG);
	if (whole <= 0)
		return SKIP;
	nr = 1 + (unsigned)(o->r[0] % 16);
	if (nr > whole)
		nr = (unsigned)whole;
	{
		long long stride = 1 + (long long)(o->r[1] % 3);

		while (nr > 1 && (nr - 1) * stride >= whole)
			nr--;
		first = (long long)((o->r[0] >> 8) % (uint64_t)(whole - (nr - 1) * stride));
		for (unsigned k = 0; k < nr; k++)
			pages[k] = (uint64_t)(first + k * stride);
	}
	src_off = PG * (long long)((o->r[2] % (FSRC / PG)));
	if (src_off + nr * PG > FSRC) {
		if (o->r[2] & 1)
			short_src = 1;
		else
			src_off = FSRC - nr * PG;
	}
	memset(&f, 0, sizeof(f));
	f.nr_pages = nr;
	f.file_offset = src_off;
	f.pages = (uintptr_t)pages;
	if (o->r[3] & 1) {
		unsigned k = 0;

		f.flags = MORSEL_FILL_CRC;
		while (k < nr && !short_src) {
			unsigned n = 1 + (unsigned)((o->r[3] >> (4 + nruns)) % 3);

			if (k + n > nr)
				n = nr - k;
			if (full_pread(fsrc, b1, n * PG, src_off + k * PG) != n * PG)
				return fail("fill source pread");
			runs[nruns].nr_pages = n;
			runs[nruns].crc = mp_crc32c(0, b1, n * PG);
			nruns++;
			k += n;
		}
		if (short_src) {
			runs[0].nr_pages = nr;
			runs[0].crc = 0;
			nruns = 1;
		}
		if ((o->r[3] & 6) == 6 && !short_src) {
			runs[nruns - 1].crc ^= 1;
			bad_crc = 1;
		}
		f.runs = (uintptr_t)runs;
		f.nr_runs = nruns;
	}
	if (morsel_scan(s->fd, 0, whole * PG, 0, 0, present, NULL, NULL, NULL))
		return fail("scan before FILL failed");
	for (unsigned k = 0; k < nr; k++)
		holes += !(present[pages[k] / 64] >> (pages[k] % 64) & 1);
	if (s->child)
		want = EINVAL;		/* checked before the freeze (kmod/fill.c) */
	else if (s->frozen)
		want = EPERM;
	else if (short_src)
		want = ENODATA;
	else if (bad_crc)
		want = EBADMSG;
	r = morsel_fill(s->fd, fsrc, &f);
	/* --tight: the charge comes before the read (status.md, open item 4). */
	if ((want == ENODATA || want == EBADMSG) && enospc(s, -1, -r))
		want = ENOSPC;
	if (want) {
		if (r != -want)
			return fail("FILL(slot %d%s%s%s%s): %s, want %s", o->slot,
				    s->frozen ? ", frozen" : "", s->child ? ", child" : "",
				    short_src ? ", short source" : "",
				    bad_crc ? ", bad crc" : "", r ? strerror(-r) : "0",
				    strerrorname_np(want));
		return cmp_all(s, "FILL (refused)");
	}
	if (r && enospc(s, -1, -r))	/* charged up front: nothing installed */
		return cmp_all(s, "FILL (ENOSPC)");
	if (r)
		return fail("FILL(slot %d, %u pages from %lld): %s", o->slot, nr,
			    src_off, strerror(-r));
	if (f.filled != holes)
		return fail("FILL(slot %d): filled %u, but %u of the %u pages were holes",
			    o->slot, f.filled, holes, nr);
	for (unsigned k = 0; k < nr; k++) {
		if (present[pages[k] / 64] >> (pages[k] % 64) & 1)
			continue;
		if (full_pread(fsrc, b1, PG, src_off + k * PG) != PG ||
		    pwrite(s->tfd, b1, PG, (long long)pages[k] * PG) != PG)
			return fail("twin fill");
		mark(s, (long long)pages[k] * PG, PG);
	}
	for (unsigned k = 0; k < nr; k++)
		if (cmp_range(s, (long long)pages[k] * PG, PG, "FILL"))
			return -1;
	return cmp_size(s, "FILL");
}

/*
 * save: full, incremental on the slot's chain (ESTALE after a CLEAN the
 * chain did not see: uapi MORSEL_SCAN_IF_GEN, lib morsel_save()), or a
 * child's delta against its base.  The twin's bytes at that moment are
 * kept (snap) for load.  A save cleans (persistence.md): the model's
 * written set is emptied.
 */
static int op_save(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct morsel_save_opts so;
	struct mimg_error err;
	char p[160], parent[160], sp[160];
	int r, incr, snap;

	if (!s)
		return SKIP;
	memset(&so, 0, sizeof(so));
	so.base_fd = -1;
	incr = s->chain_n > 0 && s->chain_n < CHAIN && o->r[0] % 3;
	if (!incr)
		chain_drop(s);
	if (incr) {
		chain_path(parent, sizeof(parent), s, s->chain_n - 1);
		so.parent = parent;
	} else if (s->child && s->basefd >= 0 && (o->r[0] & 4)) {
		so.flags = MORSEL_SAVE_DELTA;
		so.base_fd = s->basefd;
	}
	chain_path(p, sizeof(p), s, s->chain_n);
	memset(&err, 0, sizeof(err));
	r = morsel_save(s->fd, p, &so, NULL, &err);
	if (incr && s->chain_stale) {
		if (r != -ESTALE)
			return fail("incremental save after a SCAN_CLEAN: %s, want ESTALE",
				    r ? strerror(-r) : "0");
		chain_drop(s);
		return 0;
	}
	if (r)
		return fail("morsel_save(slot %d, %s%s): %s: %s", o->slot,
			    incr ? "incremental" : "full",
			    so.flags ? ", delta" : "", strerror(-r), err.msg);
	if (!incr)
		s->chain_delta = so.flags != 0;
	s->chain_n++;
	memset(s->written, 0, sizeof(s->written));
	snap_path(sp, sizeof(sp), s);
	unlink(sp);
	snap = copy_sparse(s->tfd, sp);
	if (snap < 0)
		return -1;
	close(snap);
	return 0;
}

/*
 * load: the chain into a new object (a child of the base for a delta):
 * it equals the twin's bytes at the last save (persistence.md).
 */
static int op_load(struct op *o)
{
	struct slot *s = used_slot(o->slot), *c;
	struct morsel_load_opts lo;
	struct mimg_error err;
	char paths[CHAIN][160], name[32], p[160], q[160], sp[160];
	const char *pp[CHAIN];
	int i = free_slot(o->r[0]), fd, tfd;

	if (!s || !s->chain_n || i < 0)
		return SKIP;
	for (int k = 0; k < s->chain_n; k++) {
		chain_path(paths[k], sizeof(paths[k]), s, k);
		pp[k] = paths[k];
	}
	snprintf(name, sizeof(name), "n%d", name_seq++);
	mpath(p, sizeof(p), name);
	tpath(q, sizeof(q), name);
	memset(&lo, 0, sizeof(lo));
	lo.base_fd = s->chain_delta ? s->basefd : -1;
	/* --tight: a delta's base may live on another mount (op_split) */
	if (lo.base_fd >= 0 && !same_fs(lo.base_fd, mdir))
		return SKIP;
	memset(&err, 0, sizeof(err));
	fd = morsel_load(pp, s->chain_n, p, &lo, NULL, &err);
	if (fd < 0 && enospc(NULL, -1, -fd)) {
		struct stat sb;
		long long size;

		snap_path(sp, sizeof(sp), s);	/* the twin at the last save */
		size = stat(sp, &sb) ? fsize(s->tfd) : (long long)sb.st_size;

		/* persistence.md: a new object is removed on any error */
		if (!access(p, F_OK) || errno != ENOENT)
			return fail("morsel_load ran out of space and left %s behind",
				    p);
		/* its frames, a table per 2 MiB, the tables above */
		return out_of_room(roundup_pg(size) / PG + size / (2 * MiB) + 4,
				   "morsel_load");
	}
	if (fd < 0)
		return fail("morsel_load(slot %d's chain of %d%s): %s: %s", o->slot,
			    s->chain_n, s->chain_delta ? ", delta" : "",
			    strerror(-fd), err.msg);
	snap_path(sp, sizeof(sp), s);
	{
		int sfd = open(sp, O_RDONLY);

		if (sfd < 0)
			return fail("no snapshot %s", sp);
		tfd = copy_sparse(sfd, q);
		close(sfd);
	}
	if (tfd < 0) {
		close(fd);
		unlink(p);
		return -1;
	}
	c = &S[i];
	slot_init(c, fd, tfd, name);
	if (s->chain_delta) {
		c->child = 1;
		c->cap = fsize(s->basefd);
		c->basefd = dup(s->basefd);
	}
	return cmp_all(c, "load");
}

static long futex(uint32_t *w, int op, uint32_t v, const struct timespec *t)
{
	return syscall(SYS_futex, w, op, v, t, NULL, 0);
}

/*
 * Shared futex between the worker and a child: the child maps the object
 * itself (another address) and waits on a word; the worker's FUTEX_WAKE
 * through its own mapping must find it (semantics.md, "Memory the rest of
 * the kernel uses": the key is (object, page index)).  A child object's
 * read-only mapping keys on the base's frame (gup.md, "Differences from
 * tmpfs that remain"): the child process maps children writable.
 */
static int op_futex(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m = NULL;
	long long lo, hi, at, poff;
	uint32_t *w, zero = 0, one = 1;
	int woke = 0, st, cprot, sig;
	pid_t pid;

	if (!s || s->frozen)
		return SKIP;
	for (int k = 0; k < s->nm; k++)
		if (s->m[(o->r[0] + k) % s->nm].prot & PROT_WRITE) {
			m = &s->m[(o->r[0] + k) % s->nm];
			break;
		}
	if (!m)
		return SKIP;
	map_span(s, m, &lo, &hi);
	if (hi - lo < 4)
		return SKIP;
	at = (lo + (long long)(o->r[1] % (uint64_t)(hi - lo - 3))) & ~3LL;
	if (at < lo)
		at += 4;
	if (at + 4 > hi)
		return SKIP;
	w = (uint32_t *)(m->addr + (at - m->off));
	sig = probe_copy(w, &zero, 4);
	if (sig == SIGBUS && tight) {	/* a page it had no frame for */
		count_nospace();
		if (store_stopped(s, NULL, at, 4, "futex word store (SIGBUS)"))
			return -1;
		return map_check(s, m, at, 4, "futex word store (SIGBUS)");
	}
	if (sig)
		return fail("futex word store at file offset %lld of slot %d: signal %d",
			    at, o->slot, sig);
	if (pwrite(s->tfd, &zero, 4, at) != 4)
		return fail("twin pwrite");
	mark(s, at, 4);
	poff = at & ~(PG - 1);
	cprot = (s->child || (o->r[2] & 1)) ? PROT_READ | PROT_WRITE : PROT_READ;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return fail("fork: %s", strerror(errno));
	cur_child = pid;
	if (pid == 0) {
		unsigned char *p = mmap(NULL, PG, cprot, MAP_SHARED, s->fd, poff);
		volatile uint32_t *cw;
		struct timespec t = { 10, 0 };

		if (p == MAP_FAILED)
			_exit(10);
		cw = (volatile uint32_t *)(p + (at - poff));
		while (*cw == 0)
			if (futex((uint32_t *)cw, FUTEX_WAIT, 0, &t) && errno == ETIMEDOUT)
				_exit(11);
		_exit(0);
	}
	for (int tries = 0; tries < 500 && !woke; tries++) {
		long n = futex(w, FUTEX_WAKE, 1, NULL);

		if (n < 0) {
			kill(pid, SIGKILL);
			wait_status(pid);
			return fail("FUTEX_WAKE: %s", strerror(errno));
		}
		woke = n == 1;
		if (!woke)
			usleep(10000);
	}
	/* The page holds our frame now: this store cannot need one. */
	sig = probe_copy(w, &one, 4);
	futex(w, FUTEX_WAKE, 1, NULL);
	if (!woke || sig)
		kill(pid, SIGKILL);
	st = wait_status(pid);
	cur_child = 0;
	if (sig)
		return fail("futex: the second store to the word at file offset %lld of slot %d: signal %d",
			    at, o->slot, sig);
	if (pwrite(s->tfd, &one, 4, at) != 4)
		return fail("twin pwrite");
	if (!woke)
		return fail("futex: no FUTEX_WAKE at file offset %lld of slot %d (%s%s mapping in the child) found the waiting child in 5 s",
			    at, o->slot, s->child ? "child object, " : "",
			    cprot & PROT_WRITE ? "rw" : "ro");
	if (!CHILD_OK(st))
		return fail("futex child: status %#x (10 mmap, 11 timed out)", st);
	return map_check(s, m, at, 4, "futex");
}

/*
 * O_DIRECT between the ext4 file and morsel mappings (semantics.md, "Memory
 * the rest of the kernel uses"): a write from a mapping puts the mapping's
 * bytes on the disk; a read into a writable mapping (a child's copies the
 * pages first) puts the disk's bytes into the object.  Whole pages inside
 * the size only.
 */
/*
 * --tight: I/O through a mapping stopped at a page it could not have a
 * frame for (a hole to fill, a page to copy: GUP fails with EFAULT where
 * the fault would raise SIGBUS): a short count, or EFAULT before the
 * first byte.
 */
static int gup_stopped(long r, int e)
{
	if (!(tight && (r >= 0 || e == EFAULT)))
		return 0;
	count_nospace();
	return 1;
}

/*
 * --tight: an O_DIRECT write from mapping [a, a + n) of @s to the disk at
 * @doff stopped after @r bytes (-1: before the first): the disk has the
 * object's bytes there, and after it per byte the old or the object's.
 * Reading left the object as it was.
 */
static int odirect_write_stopped(struct slot *s, struct map *m, long long a,
				 long long n, long long doff, long r)
{
	if (full_pread(s->tfd, b2, n, a) != n)
		return fail("twin pread");
	if (full_pread(dfd_direct, b1, n, doff) != n)
		return fail("O_DIRECT read back: %s", strerror(errno));
	for (long long i = 0; i < n; i++) {
		if (b1[i] == b2[i] || (i >= r && b1[i] == dmodel[doff + i]))
			continue;
		return fail("O_DIRECT write from slot %d's mapping (file %lld) stopped after %ld bytes: disk byte %lld is 0x%02x, object's 0x%02x, before 0x%02x",
			    (int)(s - S), a, r, doff + i, b1[i], b2[i], dmodel[doff + i]);
	}
	memcpy(dmodel + doff, b1, n);
	return map_check(s, m, a, n, "O_DIRECT write (stopped)");
}

static int op_odirect(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	struct map *m;
	long long lo, hi, a, n, doff;
	long r;

	if (!have_disk || !s || !(m = pick_map(s, o->r[0])))
		return SKIP;
	map_span(s, m, &lo, &hi);
	hi &= ~(PG - 1);		/* whole pages inside the size */
	if (hi <= lo)
		return SKIP;
	a = lo + PG * (long long)(o->r[1] % (uint64_t)((hi - lo) / PG));
	n = PG * (long long)(1 + (o->r[1] >> 32) % (uint64_t)mn(64, (hi - a) / PG));
	doff = PG * (long long)(o->r[2] % (uint64_t)((DFILE - n) / PG + 1));
	if (o->r[3] & 1) {		/* mapping -> disk */
		r = pwrite(dfd_direct, m->addr + (a - m->off), n, doff);
		if (r != n && gup_stopped(r, errno))
			return stop_needed_frame(s, a + mx(r, 0), n - mx(r, 0), 0,
						 "O_DIRECT write from a mapping (stopped)") ? -1 :
			       odirect_write_stopped(s, m, a, n, doff, r);
		if (r != n)
			return fail("O_DIRECT write of %lld bytes from a mapping of slot %d: %s",
				    n, o->slot, res(r, errno));
		if (full_pread(s->tfd, dmodel + doff, n, a) != n)
			return fail("twin pread");
		if (full_pread(dfd_direct, b1, n, doff) != n)
			return fail("O_DIRECT read back: %s", strerror(errno));
		for (long long i = 0; i < n; i++)
			if (b1[i] != dmodel[doff + i])
				return fail("O_DIRECT write from slot %d's mapping (file %lld): disk byte %lld is 0x%02x, object's 0x%02x",
					    o->slot, a, doff + i, b1[i], dmodel[doff + i]);
		return 0;
	}
	if (!(m->prot & PROT_WRITE) || s->frozen) {
		/* GUP for writing fails: EFAULT, and nothing changes. */
		r = pread(dfd_direct, m->addr + (a - m->off), n, doff);
		if (r != -1 || errno != EFAULT)
			return fail("O_DIRECT read into a %s mapping: %s, want EFAULT",
				    s->frozen ? "frozen object's" : "read-only", res(r, errno));
		return map_check(s, m, a, n, "O_DIRECT read (refused)");
	}
	r = pread(dfd_direct, m->addr + (a - m->off), n, doff);
	if (r != n && gup_stopped(r, errno)) {
		/* exactly the bytes it reports, then per byte old or new */
		if (r > 0 && model_store(s, dmodel + doff, a, r,
					 "O_DIRECT read (stopped short)"))
			return -1;
		r = mx(r, 0);
		if (store_stopped(s, dmodel + doff + r, a + r, n - r,
				  "O_DIRECT read into a mapping (stopped)"))
			return -1;
		return map_check(s, m, a, n, "O_DIRECT read (stopped)");
	}
	if (r != n)
		return fail("O_DIRECT read of %lld bytes into a mapping of slot %d: %s",
			    n, o->slot, res(r, errno));
	if (model_store(s, dmodel + doff, a, n, "O_DIRECT read"))
		return -1;
	return map_check(s, m, a, n, "O_DIRECT read");
}

/*
 * Extended attributes in the user. namespace (semantics.md, "Objects":
 * kept in memory, as tmpfs does): set (plain, CREATE, REPLACE), get,
 * remove; results and values as on the twin.  Small values: the limits
 * differ (64 KiB per inode here) and are not exercised.
 */
static int op_xattr(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	char name[32], vm[256], vt[256];
	static const int fl[] = { 0, XATTR_CREATE, XATTR_REPLACE };
	long rm, rt;
	int em, et, act = (int)(o->r[1] % 5);
	size_t len = 1 + o->r[2] % 200;

	if (!s)
		return SKIP;
	snprintf(name, sizeof(name), "user.k%d", (int)(o->r[0] % 4));
	errno = 0;
	switch (act) {
	case 0:
		pattern((unsigned char *)vm, len, o->r[3]);
		rm = fsetxattr(s->fd, name, vm, len, fl[o->r[3] % 3]);
		em = errno;
		errno = 0;
		rt = fsetxattr(s->tfd, name, vm, len, fl[o->r[3] % 3]);
		et = errno;
		break;
	case 1:
	case 2:
		rm = fgetxattr(s->fd, name, vm, sizeof(vm));
		em = errno;
		errno = 0;
		rt = fgetxattr(s->tfd, name, vt, sizeof(vt));
		et = errno;
		if (same(rm, em, rt, et) && rm > 0 && memcmp(vm, vt, rm))
			return fail("fgetxattr(slot %d, %s): values differ", o->slot, name);
		break;
	case 4:		/* the names, as sets (order may differ) */
		rm = flistxattr(s->fd, vm, sizeof(vm));
		em = errno;
		errno = 0;
		rt = flistxattr(s->tfd, vt, sizeof(vt));
		et = errno;
		if (same(rm, em, rt, et) && rm > 0)
			for (char *q = vm; q < vm + rm; q += strlen(q) + 1)
				if (!memmem(vt, rt, q, strlen(q) + 1))
					return fail("flistxattr(slot %d): %s only on morselfs", o->slot, q);
		break;
	default:
		rm = fremovexattr(s->fd, name);
		em = errno;
		errno = 0;
		rt = fremovexattr(s->tfd, name);
		et = errno;
		break;
	}
	if (!same(rm, em, rt, et))
		return fail("xattr %d (slot %d, %s): morsel %s, tmpfs %s", act,
			    o->slot, name, res(rm, em), res(rt, et));
	return 0;
}

/*
 * SEEK_DATA/SEEK_HOLE at page granularity (semantics.md, "Objects"): both
 * fail with ENXIO at or past the size, as on tmpfs; below it no byte of
 * the model that is not zero lies in what they call a hole (SEEK_DATA
 * skips only zeros, SEEK_HOLE stops at the size at the latest); and
 * fstatfs reports morselfs.
 */
static int op_seek(struct op *o)
{
	struct slot *s = used_slot(o->slot);
	long long size, off, r, z;
	int whence = (o->r[1] & 1) ? SEEK_HOLE : SEEK_DATA;
	struct statfs sf;

	if (!s)
		return SKIP;
	if (fstatfs(s->fd, &sf) || sf.f_type != MORSELFS_MAGIC)
		return fail("fstatfs: type %#lx", (unsigned long)sf.f_type);
	size = fsize(s->tfd);
	off = pick_off(size, o->r[0]);
	errno = 0;
	r = lseek(s->fd, off, whence);
	if (off >= size) {
		if (r != -1 || errno != ENXIO)
			return fail("lseek(%lld, %s) at or past the size %lld: %s, want ENXIO",
				    off, whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE",
				    size, res(r, errno));
		return 0;
	}
	if (whence == SEEK_HOLE) {
		if (r < off || r > size)
			return fail("SEEK_HOLE from %lld: %s (size %lld)", off, res(r, errno), size);
		return 0;
	}
	z = r == -1 && errno == ENXIO ? size : r;
	if (z < off || z > size)
		return fail("SEEK_DATA from %lld: %s (size %lld)", off, res(r, errno), size);
	/* [off, z) must read as zeros in the model (at most 4 MiB looked at) */
	for (long long at = off; at < z && at < off + 4 * MiB; at += 4 * MiB) {
		long long n = mn(z - at, 4 * MiB);

		if (full_pread(s->tfd, b2, n, at) != n)
			return fail("twin pread");
		for (long long i = 0; i < n; i++)
			if (b2[i])
				return fail("SEEK_DATA from %lld of slot %d skips to %lld past data at %lld",
					    off, o->slot, z, at + i);
	}
	return 0;
}

static int op_verify(struct op *o)
{
	struct slot *s = used_slot(o->slot);

	if (!s)
		return SKIP;
	if (cmp_all(s, "verify"))
		return -1;
	for (int k = 0; k < s->nm; k++) {
		long long lo, hi;

		map_span(s, &s->m[k], &lo, &hi);
		if (map_check(s, &s->m[k], lo, mn(hi - lo, 4 * MiB), "verify"))
			return -1;
	}
	return 0;
}

/*
 * Accounting: MORSEL_IOC_STAT's data_pages ("4 KiB data frames the object
 * owns", uapi) equals the pages SCAN reports owned, after every op.
 */
#define ACCT_MAX (2 * GiB)
static int acct_check(struct slot *s, const char *what)
{
	static uint64_t owned[ACCT_MAX / PG / 64];
	struct morsel_stat st;
	long long size = fsize(s->tfd), len = roundup_pg(size), n = 0;
	int r;

	if (!len || len > ACCT_MAX)
		return 0;
	r = morsel_scan(s->fd, 0, len, 0, 0, NULL, owned, NULL, NULL);
	if (r)
		return fail("%s: accounting scan of slot %d: %s", what,
			    (int)(s - S), strerror(-r));
	for (long long w = 0; w < (len / PG + 63) / 64; w++)
		n += __builtin_popcountll(owned[w]);
	if (stat_of(s->fd, &st))
		return fail("%s: MORSEL_IOC_STAT: %s", what, strerror(errno));
	if ((long long)st.data_pages != n)
		return fail("%s: slot %d: STAT data_pages %lld, but SCAN finds %lld owned pages",
			    what, (int)(s - S), (long long)st.data_pages, n);
	return 0;
}

/*
 * --tight: fill the worker's mount until at most 0-7 pages are free, or
 * (one time in two) empty the filler.  The filler is no slot: nothing
 * reads its bytes.  Not --tight: never drawn (weight 0).
 */
static int op_squeeze(struct op *o)
{
	long want = (long)(o->r[1] % 8);
	struct statfs sf;
	char p[160];

	if (!tight)
		return SKIP;
	if (squeeze_fd < 0) {
		mpath(p, sizeof(p), "squeeze");
		squeeze_fd = open(p, O_RDWR | O_CREAT, 0600);
		if (squeeze_fd < 0 && enospc(NULL, -1, errno))
			return 0;	/* nr_morsels: no filler for now */
		if (squeeze_fd < 0)
			return fail("squeeze: open %s: %s", p, strerror(errno));
	}
	if (o->r[0] % 2 == 0)
		return ftruncate(squeeze_fd, 0) ? fail("squeeze: empty: %s", strerror(errno)) : 0;
	for (int tries = 0; tries < 64; tries++) {
		long long n;

		if (fstatfs(squeeze_fd, &sf))
			return fail("squeeze: statfs: %s", strerror(errno));
		if ((long)sf.f_bavail <= want)
			break;
		n = mn(((long long)sf.f_bavail - want) * PG, 4 * MiB);
		memset(b3, 0x5a, n);
		if (pwrite(squeeze_fd, b3, n, roundup_pg(fsize(squeeze_fd))) <= 0)
			break;	/* the tables took the rest */
	}
	return 0;
}

/* The weights: squeeze only with --tight. */
static void set_weights(void)
{
	memcpy(kw, kweight, sizeof(kw));
	if (!tight)
		kw[K_squeeze] = 0;
}

typedef int (*op_fn)(struct op *);
#define AS_FN(n, w) op_##n,
static const op_fn ops[NK] = { KINDS(AS_FN) };

/* ---------------------------------------------------------- generation */

static struct op gen_op(uint64_t *rng)
{
	static int wsum;
	struct op o;
	uint64_t v;
	int nused = 0, pick;

	if (!wsum)
		for (int k = 0; k < NK; k++)
			wsum += kw[k];
	v = sm64(rng) % (uint64_t)wsum;
	for (o.kind = 0; v >= (uint64_t)kw[o.kind]; o.kind++)
		v -= kw[o.kind];
	for (int k = 0; k < NSLOT; k++)
		nused += S[k].used;
	if (!nused)
		o.kind = K_create;
	pick = (int)(sm64(rng) % (uint64_t)(nused ? nused : 1));
	o.slot = 0;
	for (int k = 0; k < NSLOT; k++)
		if (S[k].used && pick-- == 0)
			o.slot = k;
	for (int k = 0; k < 4; k++)
		o.r[k] = sm64(rng);
	return o;
}

/* ------------------------------------------------------ worker plumbing */

static int rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (unlink(p) && errno == EISDIR)
			rm_rf(p);
	}
	closedir(d);
	return rmdir(dir);
}

static void close_all(void)
{
	for (int k = 0; k < NSLOT; k++)
		if (S[k].used)
			slot_close(&S[k]);
}

/* A fresh worker: directories, O_DIRECT file, FILL source. */
static void worker_setup(const char *tag)
{
	char p[160];

	snprintf(mdir, sizeof(mdir), "%s/%s", tight ? TIGHT_ROOT : MDIR, tag);
	snprintf(tdir, sizeof(tdir), TDIR "/%s", tag);
	if (tight)
		umount(mdir);
	rm_rf(mdir);
	rm_rf(tdir);
	if (mkdir(mdir, 0700) || mkdir(tdir, 0700))
		tap_fatal("mkdir %s, %s", mdir, tdir);
	if (tight && mount("none", mdir, "morselfs", 0, TIGHT_SIZE ",mode=0700"))
		tap_fatal("mount morselfs %s on %s: %s", TIGHT_SIZE, mdir, strerror(errno));
	squeeze_fd = -1;
	memset(S, 0, sizeof(S));
	name_seq = 0;
	snprintf(p, sizeof(p), "%s/fillsrc", tdir);
	fsrc = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(fsrc >= 0);
	pattern(b3, FSRC, 0xf111);
	tap_require(pwrite(fsrc, b3, FSRC, 0) == FSRC);
	if (have_disk) {
		snprintf(p, sizeof(p), DISK "/opfuzz-%s.dat", tag);
		dfd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
		dfd_direct = open(p, O_RDWR | O_DIRECT);
		tap_require(dfd >= 0 && dfd_direct >= 0, "%s", p);
		pattern(dmodel, DFILE, 0xd15c);
		tap_require(pwrite(dfd, dmodel, DFILE, 0) == DFILE && fsync(dfd) == 0);
	}
}

/*
 * --tight: with every object of the worker's mount gone, its statfs shows
 * every object and every page free again: no call that failed for want
 * of space kept a reservation (nr_morsels=) or a charge (size=).  Frees
 * are synchronous (tables too are uncharged when unhooked); a short retry
 * covers a final fput still on its way.  0, or -1 with msgbuf set.
 */
static int mount_empty_again(void)
{
	struct statfs sf;

	for (int tries = 0; tries < 20; tries++) {
		if (statfs(mdir, &sf))
			return fail("teardown: statfs %s: %s", mdir, strerror(errno));
		if (sf.f_ffree == sf.f_files && sf.f_bavail == sf.f_blocks)
			return 0;
		usleep(100000);
	}
	return fail("teardown: the emptied mount %s still holds %llu objects and %llu pages (statfs)",
		    mdir, (unsigned long long)(sf.f_files - sf.f_ffree),
		    (unsigned long long)(sf.f_blocks - sf.f_bavail));
}

static int worker_teardown(const char *tag)
{
	char p[160];
	int ret = 0;

	close_all();
	close(fsrc);
	if (have_disk) {
		close(dfd);
		close(dfd_direct);
		snprintf(p, sizeof(p), DISK "/opfuzz-%s.dat", tag);
		unlink(p);
	}
	if (squeeze_fd >= 0)
		close(squeeze_fd);
	squeeze_fd = -1;
	rm_rf(mdir);	/* a mount point: its files, then the mount */
	if (tight && !hung_op)
		ret = mount_empty_again();
	if (tight && (umount(mdir) || rmdir(mdir)))
		tap_fatal("umount %s: %s", mdir, strerror(errno));
	rm_rf(tdir);
	return ret;
}

/* End of an epoch: everything compared whole, through every mapping. */
static int epoch_check(void)
{
	struct op o;

	memset(&o, 0, sizeof(o));
	for (int k = 0; k < NSLOT; k++) {
		if (!S[k].used)
			continue;
		o.slot = k;
		if (op_verify(&o) < 0)
			return -1;
	}
	return 0;
}

static void op_str(const struct op *o, char *b, size_t n)
{
	snprintf(b, n, "%s %d %llu %llu %llu %llu", kname[o->kind], o->slot,
		 (unsigned long long)o->r[0], (unsigned long long)o->r[1],
		 (unsigned long long)o->r[2], (unsigned long long)o->r[3]);
}

/* ----------------------------------------------------------------- kcov */

#define KCOV_WORDS (4UL << 20)	/* 32 MiB: a save traces millions of PCs */
static unsigned long *kcov_area;
static int kcov_fd = -1;
#define PCSET (1UL << 18)
static unsigned long *pcset;		/* open addressing, 0: empty */
static size_t npcs;

static void kcov_start(void)
{
	kcov_fd = open("/sys/kernel/debug/kcov", O_RDWR);
	tap_require(kcov_fd >= 0, "open /sys/kernel/debug/kcov (a KCOV kernel?)");
	tap_require(ioctl(kcov_fd, KCOV_INIT_TRACE, KCOV_WORDS) == 0);
	kcov_area = mmap(NULL, KCOV_WORDS * sizeof(long), PROT_READ | PROT_WRITE,
			 MAP_SHARED, kcov_fd, 0);
	tap_require(kcov_area != MAP_FAILED);
	pcset = calloc(PCSET, sizeof(*pcset));
	tap_require(pcset);
	tap_require(ioctl(kcov_fd, KCOV_ENABLE, KCOV_TRACE_PC) == 0);
	__atomic_store_n(&kcov_area[0], 0, __ATOMIC_RELAXED);
}

static void pc_add(unsigned long pc)
{
	size_t h = (pc * 0x9e3779b97f4a7c15UL) >> 46;

	while (pcset[h] && pcset[h] != pc)
		h = (h + 1) & (PCSET - 1);
	if (!pcset[h] && npcs < PCSET / 2) {
		pcset[h] = pc;
		npcs++;
	}
}

/* Module PCs (module space: above the kernel image) into the set. */
static void kcov_collect(void)
{
	unsigned long n;

	if (!kcov_area)
		return;
	n = __atomic_load_n(&kcov_area[0], __ATOMIC_RELAXED);
	if (n >= KCOV_WORDS - 1 && sh)
		sh->kcov_lost[me]++;
	n = n < KCOV_WORDS - 1 ? n : KCOV_WORDS - 1;
	for (unsigned long i = 0; i < n; i++)
		if (kcov_area[i + 1] >= 0xffffffffa0000000UL)
			pc_add(kcov_area[i + 1]);
	__atomic_store_n(&kcov_area[0], 0, __ATOMIC_RELAXED);
}

static void kcov_finish(void)
{
	char p[128];
	FILE *f;

	if (!kcov_area)
		return;
	kcov_collect();
	ioctl(kcov_fd, KCOV_DISABLE, 0);
	snprintf(p, sizeof(p), TDIR "/kcov-w%d", me);
	f = fopen(p, "w");
	if (!f)
		return;
	for (size_t k = 0; k < PCSET; k++)
		if (pcset[k])
			fprintf(f, "%lx\n", pcset[k]);
	fclose(f);
}

/* ------------------------------------------------------------- running */

/*
 * Run @ops (or, with @ops NULL, generate from @rng until @deadline or
 * @limit ops) in the current worker state; @log records what ran.
 * Returns the index of the op that diverged, or -1.
 */
/*
 * An op that takes longer than OP_TIMEOUT seconds hung (a lost wake-up, a
 * fault that never completes): it counts as a divergence of that op, with
 * what its child (if any) was doing, and the worker skips its teardown.
 */
#define OP_TIMEOUT 300
static sigjmp_buf op_jb;
static volatile sig_atomic_t op_armed;
static struct op cur_op;

static void op_alarm(int sig)
{
	(void)sig;
	if (op_armed)
		siglongjmp(op_jb, 1);
	_exit(1);
}

static void proc_line(pid_t pid, const char *what, char *out, size_t n)
{
	char p[64];
	int fd;
	ssize_t r;

	snprintf(p, sizeof(p), "/proc/%d/%s", (int)pid, what);
	fd = open(p, O_RDONLY);
	out[0] = 0;
	if (fd < 0)
		return;
	r = read(fd, out, n - 1);
	close(fd);
	out[r > 0 ? r : 0] = 0;
	for (char *c = out; *c; c++)
		if (*c == '\n')
			*c = '|';
}

static int op_hung(void)
{
	char st[200] = "", wchan[64] = "", stack[300] = "";
	pid_t c = cur_child;

	hung_op = 1;
	if (c > 0) {
		proc_line(c, "stat", st, sizeof(st));
		proc_line(c, "wchan", wchan, sizeof(wchan));
		proc_line(c, "stack", stack, sizeof(stack));
		kill(c, SIGKILL);
		waitpid(c, NULL, 0);
		cur_child = 0;
	}
	return fail("%s op hung for %d s; child %d: stat [%.60s] wchan [%s] stack [%s]",
		    kname[cur_op.kind], OP_TIMEOUT, (int)c, st, wchan, stack);
}

/* cur_op, with the timeout: its result. */
static __attribute__((noinline)) int run_one(void)
{
	if (sigsetjmp(op_jb, 1)) {
		op_armed = 0;
		return op_hung();
	}
	op_armed = 1;
	op_nospace = 0;
	alarm(OP_TIMEOUT);
	{
		int r = ops[cur_op.kind](&cur_op);

		alarm(0);
		op_armed = 0;
		if (op_nospace && sh)
			sh->nospace_ops[me][cur_op.kind]++;
		return r;
	}
}

static long run_ops(struct op *list, long nlist, uint64_t *rng, double deadline,
		    long limit, struct op *log, long *nlog)
{
	struct timeval tv;

	signal(SIGALRM, op_alarm);

	for (long i = 0; list ? i < nlist : i < limit; i++) {
		struct op o;
		int r;

		if (!list) {
			if (sh && sh->stop)
				break;
			gettimeofday(&tv, NULL);
			if (tv.tv_sec + tv.tv_usec / 1e6 >= deadline)
				break;
		}
		o = list ? list[i] : gen_op(rng);
		if (log)
			log[(*nlog)++] = o;
		phase = kname[o.kind];
		msgbuf[0] = 0;
		if (trace) {
			char b[160];

			op_str(&o, b, sizeof(b));
			printf("# w%d trace op %s\n", me, b);
		}
		cur_op = o;
		r = run_one();
		o = cur_op;
		if (r >= 0 && o.slot >= 0 && o.slot < NSLOT && S[o.slot].used &&
		    acct_check(&S[o.slot], kname[o.kind]))
			r = -1;
		if (log)
			log[*nlog - 1] = o;	/* create fills in its slot */
		kcov_collect();
		if (sh) {
			if (r == SKIP)
				sh->skip[me][o.kind]++;
			else
				sh->count[me][o.kind]++;
			sh->ops[me]++;
		}
		if (r < 0)
			return i;
	}
	return -1;
}

static void save_log(const char *path, const struct op *log, long n)
{
	FILE *f = fopen(path, "w");
	char b[160];

	if (!f)
		return;
	for (long i = 0; i < n; i++) {
		op_str(&log[i], b, sizeof(b));
		fprintf(f, "op %s\n", b);
	}
	fclose(f);
}

static double now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

static void alloc_bufs(void)
{
	b1 = aligned_alloc(PG, 4 * MiB);
	b2 = aligned_alloc(PG, 4 * MiB);
	b3 = aligned_alloc(PG, 4 * MiB);
	dmodel = aligned_alloc(PG, DFILE);
	tap_require(b1 && b2 && b3 && dmodel);
}

static void open_shared(void)
{
	shared_fd = open(MDIR "/shared", O_RDONLY);
	shared_tfd = open(TDIR "/shared", O_RDONLY);
	tap_require(shared_fd >= 0 && shared_tfd >= 0, "the shared base");
}

static struct op *wlog;

static void worker(int w, uint64_t seed, double deadline, long epoch_ops,
		   int kcov)
{
	char tag[16], p[160];

	me = w;
	snprintf(tag, sizeof(tag), "w%d", w);
	alloc_bufs();
	probe_init();
	wlog = malloc(sizeof(*wlog) * (epoch_ops + 1));
	tap_require(wlog);
	if (kcov)
		kcov_start();
	for (long long e = 0; now() < deadline && !sh->stop; e++) {
		uint64_t rng = epoch_seed(seed, w, e);
		long nlog = 0, bad;

		worker_setup(tag);
		bad = run_ops(NULL, 0, &rng, deadline, epoch_ops, wlog, &nlog);
		if (bad < 0 && epoch_check() < 0)
			bad = nlog;		/* the epoch's final check */
		sh->epochs[w] = e + 1;
		if (bad >= 0) {
			sh->stop = 1;
			sh->diverged[w] = 1;
			sh->fail_epoch[w] = (int)e;
			sh->fail_index[w] = (int)bad;
			sh->fail_kind[w] = bad < nlog ? wlog[bad].kind : K_verify;
			snprintf(sh->msg[w], sizeof(sh->msg[w]), "%s", msgbuf);
			if (bad == nlog)	/* a verify of everything, as an op */
				for (int k = 0; k < NSLOT; k++)
					if (S[k].used && nlog < epoch_ops + 1)
						wlog[nlog++] = (struct op){ K_verify, k, { 0, 0, 0, 0 } };
			snprintf(p, sizeof(p), TDIR "/fail-w%d.ops", w);
			save_log(p, wlog, bad < nlog ? mn(bad + 1, nlog) : nlog);
			if (!hung_op)
				worker_teardown(tag);
			break;
		}
		if (worker_teardown(tag)) {	/* --tight: something kept */
			printf("# worker %d, epoch %lld, after its %ld ops: %s (not minimised)\n",
			       w, e, nlog, msgbuf);
			save_log(TDIR "/fail-teardown.ops", wlog, nlog);
			sh->stop = 1;
			sh->diverged[w] = 2;
			snprintf(sh->msg[w], sizeof(sh->msg[w]), "%s", msgbuf);
			break;
		}
	}
	kcov_finish();
	_exit(sh->diverged[w] ? 3 : 0);
}

/* ----------------------------------------------------------- replaying */

static long parse_ops(const char *text, struct op *out, long max)
{
	char *copy = strdup(text), *save = NULL, *tok;
	long n = 0;

	tap_require(copy);
	for (tok = strtok_r(copy, ";\n", &save); tok && n < max;
	     tok = strtok_r(NULL, ";\n", &save)) {
		char kind[32];
		unsigned long long r[4];
		int slot, k;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		if (!strncmp(tok, "op ", 3))
			tok += 3;
		if (!*tok || *tok == '#')
			continue;
		if (sscanf(tok, "%31s %d %llu %llu %llu %llu", kind, &slot, &r[0],
			   &r[1], &r[2], &r[3]) != 6)
			tap_fatal("bad op: '%s'", tok);
		for (k = 0; k < NK && strcmp(kname[k], kind); k++)
			;
		if (k == NK)
			tap_fatal("unknown op kind '%s'", kind);
		out[n].kind = k;
		out[n].slot = slot;
		for (int j = 0; j < 4; j++)
			out[n].r[j] = r[j];
		n++;
	}
	free(copy);
	return n;
}

/*
 * Replay @list in a fresh directory in a child process: 1 if it diverges
 * in an op of kind @kind (any kind: -1), 0 if not.  The message goes to
 * @msg.
 */
static int trial(const struct op *list, long n, int kind, char *msg, size_t msz)
{
	int pfd[2], st;
	pid_t pid;
	char b[1024] = "";
	ssize_t got;

	tap_require(pipe(pfd) == 0);
	fflush(stdout);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		struct op *copy = malloc(sizeof(*copy) * (n + 1));
		long bad;
		int hit;

		close(pfd[0]);
		me = MAXW - 1;
		sh = NULL;
		quiet = 1;
		worker_setup("min");
		memcpy(copy, list, sizeof(*copy) * n);
		bad = run_ops(copy, n, NULL, 0, 0, NULL, NULL);
		hit = bad >= 0 && (kind < 0 || copy[bad].kind == kind);
		if (bad >= 0) {
			char ob[160];

			op_str(&copy[bad], ob, sizeof(ob));
			snprintf(b, sizeof(b), "op %ld (%s): %s", bad, ob, msgbuf);
			if (write(pfd[1], b, strlen(b)) < 0)
				_exit(2);
		}
		if (!hung_op)
			worker_teardown("min");
		_exit(hit ? 3 : 0);
	}
	close(pfd[1]);
	got = read(pfd[0], b, sizeof(b) - 1);
	b[got > 0 ? got : 0] = 0;
	close(pfd[0]);
	st = wait_status(pid);
	if (msg)
		snprintf(msg, msz, "%s", b);
	return WIFEXITED(st) && WEXITSTATUS(st) == 3;
}

/* ddmin over @list: the smallest subsequence found that still fails. */
static long minimise(struct op *list, long n, int kind, double deadline)
{
	struct op *cand = malloc(sizeof(*cand) * (n + 1));
	long gran = 2;

	tap_require(cand);
	while (n >= 2 && now() < deadline) {
		long chunk = (n + gran - 1) / gran, removed = 0;

		for (long start = 0; start < n && now() < deadline; start += chunk) {
			long m = 0;

			for (long i = 0; i < n; i++)
				if (i < start || i >= start + chunk)
					cand[m++] = list[i];
			if (m < n && trial(cand, m, kind, NULL, 0)) {
				memcpy(list, cand, sizeof(*cand) * m);
				n = m;
				removed = 1;
				gran = gran > 2 ? gran - 1 : 2;
				break;
			}
		}
		if (!removed) {
			if (gran >= n)
				break;
			gran = mn(n, gran * 2);
		}
	}
	free(cand);
	return n;
}

static void print_ops(const char *prefix, const struct op *l, long n)
{
	char b[160];

	for (long i = 0; i < n; i++) {
		op_str(&l[i], b, sizeof(b));
		printf("# %s op %s\n", prefix, b);
	}
}

static void print_ops_arg(const struct op *l, long n)
{
	char b[160];

	printf("# replay with: test_opfuzz%s --ops '", tight ? " --tight" : "");
	for (long i = 0; i < n; i++) {
		op_str(&l[i], b, sizeof(b));
		printf("%s%s", i ? "; " : "", b);
	}
	printf("'\n");
}

/* The failing epoch of a worker: shrink it and print what is left. */
static void report_divergence(int w, uint64_t seed, double min_secs)
{
	static struct op list[MAXOPS];
	char p[160], msg[1024];
	long n;
	FILE *f;
	char *text;
	size_t cap = 0;
	ssize_t len;

	printf("# DIVERGENCE in worker %d, seed %llu, epoch %d, op %d (%s): %s\n",
	       w, (unsigned long long)seed, sh->fail_epoch[w], sh->fail_index[w],
	       kname[sh->fail_kind[w]], sh->msg[w]);
	printf("# regenerate: test_opfuzz --seed %llu --worker %d --epoch %d\n",
	       (unsigned long long)seed, w, sh->fail_epoch[w]);
	snprintf(p, sizeof(p), TDIR "/fail-w%d.ops", w);
	f = fopen(p, "r");
	if (!f) {
		printf("# no op log %s\n", p);
		return;
	}
	text = NULL;
	len = getdelim(&text, &cap, 0, f);
	fclose(f);
	n = len > 0 ? parse_ops(text, list, MAXOPS) : 0;
	free(text);
	printf("# the epoch's %ld ops:\n", n);
	print_ops("log", list, n);
	if (!trial(list, n, sh->fail_kind[w], msg, sizeof(msg))) {
		printf("# replayed alone, the log does not diverge in a %s op (%s): another worker or timing was needed; not minimised\n",
		       kname[sh->fail_kind[w]], msg[0] ? msg : "no divergence");
		return;
	}
	printf("# replayed alone it diverges again: %s\n", msg);
	n = minimise(list, n, sh->fail_kind[w], now() + min_secs);
	trial(list, n, sh->fail_kind[w], msg, sizeof(msg));
	printf("# minimised to %ld ops (%s):\n", n, msg);
	print_ops("min", list, n);
	print_ops_arg(list, n);
	snprintf(p, sizeof(p), TDIR "/min-w%d.ops", w);
	save_log(p, list, n);
}

/* ---------------------------------------------------------------- main */

static int disk_mounted(void)
{
	struct statfs sf;

	return !statfs(DISK, &sf) && sf.f_type == 0xEF53;
}

static void make_shared(void)
{
	int fd = open(MDIR "/shared", O_RDWR | O_CREAT | O_EXCL, 0644);
	int tfd = open(TDIR "/shared", O_RDWR | O_CREAT | O_EXCL, 0644);

	tap_require(fd >= 0 && tfd >= 0, "shared base");
	pattern(b3, SHARED_SIZE, 0x5a5a);
	tap_require(pwrite(fd, b3, SHARED_SIZE, 0) == SHARED_SIZE &&
		    pwrite(tfd, b3, SHARED_SIZE, 0) == SHARED_SIZE);
	/* A hole in the middle: children borrow holes too. */
	tap_require(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MiB, 3 * PG) == 0 &&
		    fallocate(tfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MiB, 3 * PG) == 0);
	tap_require(freeze(fd) == 0);
	close(fd);
	close(tfd);
}

static void print_counts(int workers)
{
	long long tot = 0, sk = 0, ns = 0;

	printf("# op counts (run / not applicable%s) per kind:\n",
	       tight ? " / ran out of space" : "");
	for (int k = 0; k < NK; k++) {
		long long c = 0, s = 0, n = 0;

		for (int w = 0; w < workers; w++) {
			c += sh->count[w][k];
			s += sh->skip[w][k];
			n += sh->nospace_ops[w][k];
		}
		tot += c;
		sk += s;
		ns += n;
		if (tight)
			printf("#   %-9s %9lld %7lld %7lld\n", kname[k], c, s, n);
		else
			printf("#   %-9s %9lld %7lld\n", kname[k], c, s);
	}
	if (tight)
		printf("#   %-9s %9lld %7lld %7lld\n", "total", tot, sk, ns);
	else
		printf("#   %-9s %9lld %7lld\n", "total", tot, sk);
}

/*
 * Self-test of the checker and the minimiser: with the model corrupted on
 * purpose after every pwrite, a generated sequence must diverge in a
 * pwrite and shrink to at most 3 ops (create, write).
 */
static void selftest(uint64_t seed, double budget)
{
	static struct op list[400];
	char p[160], msg[1024] = "";
	long n = 0, m = 0;
	double t0 = now();
	int st, hit = 0, disk = have_disk;
	pid_t pid;

	snprintf(p, sizeof(p), TDIR "/selftest.ops");
	inject = 1;
	have_disk = 0;		/* trials set up faster without the disk file */
	fflush(stdout);
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		uint64_t rng = epoch_seed(seed, MAXW - 2, 0);
		long nlog = 0, bad;

		me = MAXW - 2;
		sh = NULL;
		worker_setup("self");
		bad = run_ops(NULL, 0, &rng, 1e18, 400, list, &nlog);
		save_log(p, list, bad >= 0 ? bad + 1 : nlog);
		worker_teardown("self");
		_exit(bad >= 0 && list[bad].kind == K_write ? 3 : 0);
	}
	st = wait_status(pid);
	{
		FILE *f = fopen(p, "r");
		char *text = NULL;
		size_t cap = 0;

		if (f && getdelim(&text, &cap, 0, f) > 0)
			n = parse_ops(text, list, 400);
		if (f)
			fclose(f);
		free(text);
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 3 && n > 0) {
		m = minimise(list, n, K_write, now() + budget);
		hit = trial(list, m, K_write, msg, sizeof(msg));
	}
	inject = 0;
	have_disk = disk;
	tap_ok(hit && m <= 3,
	       "self-test: with the model corrupted after each pwrite, op %ld diverges and the minimiser shrinks the %ld ops to %ld in %.1f s (%s)",
	       n - 1, n, m, now() - t0, msg);
	if (hit)
		print_ops("selftest", list, m);
	unlink(p);
}

static void usage(void)
{
	printf("usage: test_opfuzz [--seed S] [--secs N] [--workers N] [--epoch-ops N]\n"
	       "                   [--min-secs N] [--progress N] [--kcov] [--trace] [--avoid-k1]\n"
	       "                   [--no-selftest] [--tight]\n"
	       "       test_opfuzz --replay FILE | --ops 'KIND SLOT R0 R1 R2 R3; ...'\n"
	       "       test_opfuzz --seed S --worker W --epoch E\n");
	exit(2);
}

/* Replay @list; if it diverges, shrink it as a worker's failure would be. */
static int replay_main(struct op *list, long n, double min_secs)
{
	char msg[1024];
	long bad = -1;
	int hit;

	printf("# replaying %ld ops in one process\n", n);
	hit = trial(list, n, -1, msg, sizeof(msg));
	tap_ok(!hit, "replay of %ld ops: no divergence%s%s", n, hit ? ": " : "", msg);
	if (hit && sscanf(msg, "op %ld", &bad) == 1 && bad >= 0 && bad < n) {
		int kind = list[bad].kind;

		n = minimise(list, bad + 1, kind, now() + min_secs);
		trial(list, n, kind, msg, sizeof(msg));
		printf("# minimised to %ld ops (%s):\n", n, msg);
		print_ops("min", list, n);
		print_ops_arg(list, n);
	}
	return tap_done();
}

int main(int argc, char **argv)
{
	uint64_t seed = (uint64_t)time(NULL) * 1000003ULL ^ (uint64_t)getpid();
	double secs = 30, min_secs = 120, progress = 60, t0, deadline, next;
	long epoch_ops = 1500;
	int workers = 4, kcov = 0, regen_w = -1, regen_e = -1, seed_given = 0;
	const char *replay = NULL, *opstr = NULL;
	struct totals base;
	pid_t pids[MAXW];
	int failed_w = -1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--kcov")) {
			kcov = 1;
			continue;
		}
		if (!strcmp(a, "--no-selftest")) {
			quick_selftest_off = 1;
			continue;
		}
		if (!strcmp(a, "--avoid-k1")) {
			known_bugs = 0;
			continue;
		}
		if (!strcmp(a, "--trace")) {
			trace = 1;
			continue;
		}
		if (!strcmp(a, "--tight")) {
			tight = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0), seed_given = 1;
		else if (!strcmp(a, "--secs"))
			secs = atof(v);
		else if (!strcmp(a, "--workers"))
			workers = atoi(v);
		else if (!strcmp(a, "--epoch-ops"))
			epoch_ops = atol(v);
		else if (!strcmp(a, "--min-secs"))
			min_secs = atof(v);
		else if (!strcmp(a, "--progress"))
			progress = atof(v);
		else if (!strcmp(a, "--replay"))
			replay = v;
		else if (!strcmp(a, "--ops"))
			opstr = v;
		else if (!strcmp(a, "--worker"))
			regen_w = atoi(v);
		else if (!strcmp(a, "--epoch"))
			regen_e = atoi(v);
		else
			usage();
	}
	if (workers < 1 || workers > MAXW - 1 || epoch_ops < 1 || epoch_ops > MAXOPS - NSLOT - 1)
		usage();
	if (access("/sys/kernel/morsel/morsels", R_OK))
		tap_skip_all("no morsel module");
	setvbuf(stdout, NULL, _IOLBF, 0);
	base = totals();
	alloc_bufs();
	have_disk = disk_mounted();
	rm_rf(MDIR);
	rm_rf(TDIR);
	tap_require(mkdir(MDIR, 0755) == 0 && mkdir(TDIR, 0755) == 0);
	set_weights();
	if (tight) {
		rm_rf(TIGHT_ROOT);
		tap_require(mkdir(TIGHT_ROOT, 0755) == 0, "mkdir %s", TIGHT_ROOT);
		printf("# --tight: each worker on a morselfs mount of %s, op squeeze fills it with pages\n",
		       TIGHT_SIZE);
	}
	make_shared();
	open_shared();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tap_require(sh != MAP_FAILED);
	probe_init();
	if (!known_bugs)
		printf("# module bug K1 avoided (--avoid-k1): children never grow past their base's size\n");
	printf("# opfuzz: seed %llu, %d workers, %.0f s, epochs of %ld ops, O_DIRECT disk: %s\n",
	       (unsigned long long)seed, workers, secs, epoch_ops,
	       have_disk ? DISK : "none (odirect ops not applicable)");

	if (replay || opstr || regen_w >= 0) {
		static struct op list[MAXOPS];
		long n = 0;
		int rc;

		if (replay) {
			FILE *f = fopen(replay, "r");
			char *text = NULL;
			size_t cap = 0;

			tap_require(f, "%s", replay);
			if (getdelim(&text, &cap, 0, f) > 0)
				n = parse_ops(text, list, MAXOPS);
			fclose(f);
			free(text);
		} else if (opstr) {
			n = parse_ops(opstr, list, MAXOPS);
		} else {
			/* Regenerate: the epoch as the worker would have drawn it. */
			uint64_t rng = epoch_seed(seed, regen_w, regen_e);
			long nlog = 0, bad;

			tap_require(seed_given && regen_e >= 0, "--worker needs --seed and --epoch");
			me = regen_w;
			worker_setup("regen");
			bad = run_ops(NULL, 0, &rng, 1e18, epoch_ops, list, &nlog);
			worker_teardown("regen");
			printf("# regenerated %ld ops%s%s\n", nlog,
			       bad >= 0 ? " (diverged): " : "", bad >= 0 ? msgbuf : "");
			print_ops("log", list, nlog);
			n = nlog;
		}
		rc = replay_main(list, n, min_secs);
		close(shared_fd);
		close(shared_tfd);
		rm_rf(MDIR);
		rm_rf(TDIR);
		return rc;
	}

	if (!quick_selftest_off)
		selftest(seed, 150);
	t0 = now();
	deadline = t0 + secs;
	for (int w = 0; w < workers; w++) {
		fflush(stdout);
		pids[w] = fork();
		tap_require(pids[w] >= 0);
		if (pids[w] == 0)
			worker(w, seed, deadline, epoch_ops, kcov);
	}
	next = t0 + progress;
	for (int left = workers; left > 0;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);

		if (p > 0) {
			for (int w = 0; w < workers; w++)
				if (pids[w] == p) {
					pids[w] = 0;
					if (!WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3)) {
						printf("# worker %d died: status %#x (phase unknown)\n", w, st);
						sh->diverged[w] = 2;
					}
				}
			left--;
			continue;
		}
		usleep(200000);
		if (now() >= next) {
			long long tot = 0;

			for (int w = 0; w < workers; w++)
				tot += sh->ops[w];
			printf("# progress: %.0f s, %lld ops", now() - t0, tot);
			for (int w = 0; w < workers; w++)
				printf(", w%d %lld (epoch %lld)", w, sh->ops[w], sh->epochs[w]);
			printf("\n");
			next += progress;
		}
		for (int w = 0; w < workers; w++)
			if (pids[w] > 0 && sh->diverged[w] && now() > deadline + 60) {
				kill(pids[w], SIGKILL);
			}
	}
	printf("# ran %.0f s\n", now() - t0);
	print_counts(workers);
	if (tight) {
		long long n = 0;

		for (int w = 0; w < workers; w++)
			n += sh->nospace[w];
		printf("# --tight: %lld out-of-space outcomes (failed calls, short writes, stores and page loads that raised SIGBUS)\n", n);
	}

	for (int w = 0; w < workers; w++) {
		tap_ok(!sh->diverged[w],
		       "worker %d: %lld ops in %lld epochs, every result as the model (tmpfs twin) says",
		       w, sh->ops[w], sh->epochs[w]);
		if (sh->diverged[w] == 1 && failed_w < 0)
			failed_w = w;
	}
	for (int w = 0; w < workers; w++)
		if (sh->diverged[w] == 1 && w != failed_w)
			printf("# also worker %d, epoch %d, op %d (%s): %s\n", w,
			       sh->fail_epoch[w], sh->fail_index[w],
			       kname[sh->fail_kind[w]], sh->msg[w]);
	if (failed_w >= 0)
		report_divergence(failed_w, seed, min_secs);
	if (secs >= 20 && failed_w < 0) {
		int missing = 0;

		for (int k = 0; k < NK; k++) {
			long long c = 0;

			for (int w = 0; w < workers; w++)
				c += sh->count[w][k];
			if (!c && kw[k] && !(k == K_odirect && !have_disk)) {
				printf("# op kind %s never ran\n", kname[k]);
				missing++;
			}
		}
		{
			long long all = 0;

			for (int w = 0; w < workers; w++)
				all += sh->ops[w];
			/* A slow host: a rare kind may not come up in a short run. */
			if (missing && all < 3000)
				tap_skip("every op kind ran at least once: %d never did in only %lld ops",
					 missing, all);
			else
				tap_ok(!missing, "every op kind ran at least once (%d never did, %lld ops)",
				       missing, all);
		}
	}
	if (kcov) {
		char p[400], line[64];

		for (int w = 0; w < workers; w++) {
			FILE *f;

			snprintf(p, sizeof(p), TDIR "/kcov-w%d", w);
			f = fopen(p, "r");
			if (!f)
				continue;
			while (fgets(line, sizeof(line), f))
				printf("KCOV-PC %s", line);
			fclose(f);
			if (sh->kcov_lost[w])
				printf("# kcov: worker %d overflowed its buffer %lld times\n",
				       w, sh->kcov_lost[w]);
		}
		{
			DIR *d = opendir("/sys/module/morsel/sections");
			struct dirent *e;

			while (d && (e = readdir(d))) {
				unsigned long a;
				FILE *f;

				if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, "..")))
					continue;
				snprintf(p, sizeof(p), "/sys/module/morsel/sections/%s", e->d_name);
				f = fopen(p, "r");
				if (f && fscanf(f, "%lx", &a) == 1)
					printf("KCOV-SECTION %s %lx\n", e->d_name, a);
				if (f)
					fclose(f);
			}
			if (d)
				closedir(d);
		}
	}
	close(shared_fd);
	close(shared_tfd);
	rm_rf(MDIR);
	rm_rf(TDIR);
	if (tight)
		rmdir(TIGHT_ROOT);
	tap_ok(totals_back(base), "module totals back to where they were");
	return tap_done();
}
