// SPDX-License-Identifier: GPL-2.0
/*
 * Saving morsels to images and loading them back (libmorsel, issue 4):
 * round trips of sparse and dense objects at every root level, byte
 * ranges, chains of increments and their compaction, copy-on-write
 * deltas against their base, loads over an existing object, and damaged
 * images (a flipped bit in header, index or data; a truncated file)
 * rejected with the offset of the damage and without changing anything.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "libmorsel.h"
#include "vm.h"

#define DIR_ "/tmp/img"

static char buf[PG], want[PG];

/* Page @pg of generation @gen: recognisable, never all zero. */
static void pattern(char *p, unsigned long pg, unsigned int gen)
{
	unsigned long i;

	for (i = 0; i < PG; i += 8) {
		uint64_t v = (pg * 0x9e3779b97f4a7c15ull) ^ (i << 32) ^ gen ^ 1;

		memcpy(p + i, &v, 8);
	}
}

static void put(int fd, unsigned long pg, unsigned int gen)
{
	pattern(buf, pg, gen);
	tap_require(pwrite(fd, buf, PG, pg * PG) == (ssize_t)PG);
}

static void punch(int fd, unsigned long pg, unsigned long n)
{
	tap_require(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      pg * PG, n * PG) == 0);
}

/* Do @a and @b hold the same pages, holes at the same places? */
static int same(int a, int b)
{
	struct morsel_stat sa, sb;
	off_t off = 0, da, db;

	if (morsel_stat(a, &sa) || morsel_stat(b, &sb) || sa.size != sb.size)
		return 0;
	for (;;) {
		da = lseek(a, off, SEEK_DATA);
		db = lseek(b, off, SEEK_DATA);
		if (da != db)
			return tap_diag("data at %lld vs %lld", (long long)da,
					(long long)db), 0;
		if (da < 0)
			return 1;
		if (pread(a, buf, PG, da) != (ssize_t)PG ||
		    pread(b, want, PG, da) != (ssize_t)PG ||
		    memcmp(buf, want, PG))
			return tap_diag("page at %lld differs", (long long)da), 0;
		off = da + PG;
		if ((uint64_t)off >= sa.size)
			return 1;
	}
}

static int create(const char *name, uint64_t size)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "/dev/morsel/%s", name);
	unlink(path);
	fd = morsel_create(path, size, 0600);
	if (fd < 0)
		tap_fatal("create %s", name);
	return fd;
}

static void rm(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "/dev/morsel/%s", name);
	unlink(path);
}

static long long file_size(const char *p)
{
	struct stat st;

	return stat(p, &st) ? -1 : (long long)st.st_size;
}

static int save(int fd, const char *img, const char *parent,
		struct mimg_header *h)
{
	struct morsel_save_opts o = { .base_fd = -1, .parent = parent };
	struct mimg_error err;
	int ret = morsel_save(fd, img, &o, h, &err);

	if (ret)
		tap_diag("save %s: %s", img, err.msg);
	return ret;
}

static int load(const char *const *imgs, unsigned int n, const char *name,
		int base_fd, unsigned int flags, struct mimg_error *err)
{
	struct morsel_load_opts o = { .base_fd = base_fd, .flags = flags };
	struct mimg_error e;

	if (!err)
		err = &e;
	rm(flags & MORSEL_LOAD_OVER ? "-" : name);
	return morsel_load(imgs, n, name, &o, NULL, err);
}

/*
 * Does the chain @imgs load into a new object @name equal to @fd?  The
 * loaded object is removed again.
 */
static bool loads_equal(int fd, const char *const *imgs, unsigned int n,
			const char *name)
{
	int back = load(imgs, n, name, -1, 0, NULL);
	bool ok = back >= 0 && same(fd, back);

	if (back >= 0)
		close(back);
	rm(name);
	return ok;
}

/* Save and load objects of each root level, sparse and dense. */
static void round_trips(void)
{
	static const struct {
		const char *what;
		uint64_t size;
		unsigned long pages[8];
	} cases[] = {
		{ "PTE level, 1 MiB", 1 * MiB, { 0, 1, 255 } },
		{ "PMD level, 64 MiB", 64 * MiB, { 0, 511, 512, 9000, 16383 } },
		{ "PUD level, 64 GiB sparse", 64 * GiB,
		  { 0, 262144, 262145, 5000000, 16777215 } },
		{ "an empty 4 GiB object", 4 * GiB, { 0 } },
	};
	struct mimg_header h;
	unsigned int c, i;
	int fd, ret;

	for (c = 0; c < 4; c++) {
		const char *img = DIR_ "/rt.img";
		const char *imgs[] = { img };

		fd = create("rt", cases[c].size);
		for (i = 0; c != 3 && i < 8 && (i == 0 || cases[c].pages[i]);
		     i++)
			put(fd, cases[c].pages[i], 1);
		ret = save(fd, img, NULL, &h);
		tap_ok(ret == 0 &&
		       h.present_pages == (c == 3 ? 0 : c == 0 ? 3 : 5) &&
		       h.object_size == cases[c].size,
		       "%s: saved (%llu pages)", cases[c].what,
		       (unsigned long long)h.present_pages);
		tap_ok(loads_equal(fd, imgs, 1, "rt-back"),
		       "%s: loads back equal", cases[c].what);
		if (c == 2)
			tap_ok(file_size(img) <= (long long)(4096 + 5 * 192 +
							     4096 + 5 * PG),
			       "64 GiB sparse with 5 pages: a %lld-byte image",
			       file_size(img));
		close(fd);
		rm("rt");
	}

	/* Dense: 32 MiB, every page. */
	fd = create("dense", 32 * MiB);
	for (i = 0; i < 32 * MiB / PG; i++)
		put(fd, i, 2);
	tap_ok(save(fd, DIR_ "/dense.img", NULL, &h) == 0 &&
	       h.data_pages == 8192 && h.nr_records == 16,
	       "dense 32 MiB: 8192 pages in 16 records");
	{
		const char *imgs[] = { DIR_ "/dense.img" };

		tap_ok(loads_equal(fd, imgs, 1, "dense-back"),
		       "dense 32 MiB: loads back equal");
	}
	close(fd);
	rm("dense");
}

static void ranges(void)
{
	const char *imgs[] = { DIR_ "/range.img" };
	struct morsel_save_opts o = { .base_fd = -1 };
	struct mimg_error err;
	struct mimg_header h;
	int fd, back;
	unsigned long i;

	fd = create("rg", 16 * MiB);
	for (i = 0; i < 4096; i += 3)
		put(fd, i, 3);
	o.start = 2 * MiB + 8 * PG;
	o.length = 4 * MiB;
	tap_ok(morsel_save(fd, imgs[0], &o, &h, &err) == 0 &&
	       h.range_start == o.start && h.range_length == o.length,
	       "a byte range is saved");
	o.start = 100;
	tap_ok(morsel_save(fd, imgs[0], &o, &h, &err) == -EINVAL &&
	       err.msg[0], "an unaligned range is refused: %s", err.msg);
	o.start = 0;
	o.length = 32 * MiB;
	tap_ok(morsel_save(fd, imgs[0], &o, &h, &err) == -EINVAL,
	       "a range past the end is refused");
	/* Load the range over a copy whose pages all differ. */
	back = create("rg-back", 16 * MiB);
	for (i = 0; i < 4096; i++)
		put(back, i, 4);
	tap_ok(load(imgs, 1, "rg-back", -1, MORSEL_LOAD_OVER, &err) >= 0,
	       "the range loads over an existing object");
	{
		int ok = 1;

		for (i = 0; i < 4096 && ok; i++) {
			int in = i >= 520 && i < 520 + 1024;

			if (pread(back, buf, PG, i * PG) != (ssize_t)PG)
				ok = 0;
			if (in && i % 3 == 0)
				pattern(want, i, 3);
			else if (in)
				memset(want, 0, PG);	/* a hole in the range */
			else
				pattern(want, i, 4);	/* outside: untouched */
			if (memcmp(buf, want, PG)) {
				tap_diag("page %lu wrong", i);
				ok = 0;
			}
		}
		tap_ok(ok, "inside the range the image's pages and holes, "
		       "outside it the object's own pages");
	}
	close(back);
	rm("rg-back");
	close(fd);
	rm("rg");
}

static void increments(void)
{
	const char *chain[] = { DIR_ "/c0.img", DIR_ "/c1.img", DIR_ "/c2.img" };
	struct mimg_error err;
	struct mimg_header h0, h1, h2;
	int fd, other, ret;
	unsigned long i;

	fd = create("inc", 1 * GiB);
	for (i = 0; i < 262144; i += 16)
		put(fd, i, 5);				/* 16384 pages */
	tap_ok(save(fd, chain[0], NULL, &h0) == 0 && h0.data_pages == 16384,
	       "full save: 16384 pages");
	for (i = 0; i < 262144; i += 1024)
		put(fd, i, 6);				/* rewrite 256 */
	put(fd, 7, 6);					/* a new page */
	ret = save(fd, chain[1], chain[0], &h1);
	tap_ok(ret == 0 &&
	       h1.data_pages == 257 && (h1.flags & MIMG_F_INCREMENT),
	       "increment 1 stores the 257 written pages (%llu)",
	       (unsigned long long)h1.data_pages);
	punch(fd, 0, 64);				/* 4 pages go */
	put(fd, 3, 7);
	tap_ok(save(fd, chain[2], chain[1], &h2) == 0 && h2.data_pages == 1,
	       "increment 2 stores 1 page; the holes are in its bitmaps");
	tap_ok(file_size(chain[2]) < file_size(chain[0]) / 20,
	       "increment 2 is small (%lld bytes vs %lld)",
	       file_size(chain[2]), file_size(chain[0]));
	tap_ok(loads_equal(fd, chain, 3, "inc-back"),
	       "the chain of 3 loads equal");
	tap_ok(load(chain + 1, 2, "inc-back", -1, 0, &err) < 0 && err.msg[0],
	       "a chain without its full image is refused: %s", err.msg);
	{
		const char *bad[] = { chain[0], chain[2] };

		tap_ok(load(bad, 2, "inc-back", -1, 0, &err) < 0,
		       "a chain with a gap is refused: %s", err.msg);
	}
	tap_ok(morsel_image_compact(chain, 3, DIR_ "/cc.img", NULL, &h0,
				    &err) == 0 &&
	       !(h0.flags & MIMG_F_INCREMENT), "the chain compacts");
	{
		const char *one[] = { DIR_ "/cc.img" };

		tap_ok(loads_equal(fd, one, 1, "inc-back"),
		       "the compacted image loads equal");
	}
	/* An increment may follow the compacted image too. */
	put(fd, 9, 8);
	tap_ok(save(fd, DIR_ "/c3.img", DIR_ "/cc.img", &h1) == 0 &&
	       h1.data_pages == 1, "an increment on the compacted image");
	/* Somebody else's clean breaks the chain: ESTALE. */
	tap_require(save(fd, DIR_ "/other.img", NULL, &h1) == 0);
	put(fd, 10, 8);
	tap_ok(save(fd, DIR_ "/c4.img", DIR_ "/c3.img", &h1) == -ESTALE,
	       "after a save the chain did not see: ESTALE");
	tap_ok(file_size(DIR_ "/c4.img") < 0,
	       "and no image was written");
	other = create("inc-other", 1 * GiB);
	put(other, 1, 1);
	tap_ok(save(other, DIR_ "/c5.img", DIR_ "/other.img", &h1) == -EINVAL,
	       "an increment of another object's image: EINVAL");
	close(other);
	rm("inc-other");
	close(fd);
	rm("inc");
}

static void deltas(void)
{
	const char *d[] = { DIR_ "/d0.img", DIR_ "/d1.img" };
	struct morsel_save_opts o = { .base_fd = -1 };
	struct mimg_error err;
	struct mimg_header h;
	int base, child, back, other, ret;
	unsigned long i;

	base = create("dbase", 256 * MiB);
	for (i = 0; i < 65536; i += 2)
		put(base, i, 9);
	tap_require(morsel_freeze(base) == 0);
	child = morsel_split(base, "/dev/morsel/dchild");
	tap_require(child >= 0);
	put(child, 0, 10);
	put(child, 1, 10);		/* over a hole of the base */
	punch(child, 100, 50);		/* hides 25 base pages */
	o.base_fd = base;
	o.flags = MORSEL_SAVE_DELTA;
	ret = morsel_save(child, d[0], &o, &h, &err);
	tap_ok(ret == 0 &&
	       (h.flags & MIMG_F_DELTA) && h.data_pages == 2,
	       "a child's delta stores its 2 own pages (%llu)",
	       (unsigned long long)h.data_pages);
	back = load(d, 1, "dback", base, 0, &err);
	tap_ok(back >= 0 && same(child, back),
	       "the delta loads against its base equal to the child");
	if (back >= 0) {
		struct morsel_stat st;

		ret = morsel_stat(back, &st);
		tap_ok(ret == 0 && st.data_pages == 2 &&
		       st.borrowed_pages == 32768 - 1 - 25,
		       "the loaded child owns 2 pages and borrows the rest "
		       "(%llu borrowed)", (unsigned long long)st.borrowed_pages);
		close(back);
	}
	rm("dback");
	tap_ok(load(d, 1, "dback", -1, 0, &err) < 0 && err.msg[0],
	       "a delta without a base is refused: %s", err.msg);
	other = create("dother", 256 * MiB);
	for (i = 0; i < 65536; i += 2)
		put(other, i, 9);
	put(other, 2, 11);		/* one page differs */
	tap_require(morsel_freeze(other) == 0);
	tap_ok(load(d, 1, "dback", other, 0, &err) < 0 &&
	       strstr(err.msg, "wrong base"),
	       "a delta against a different base is refused: %s", err.msg);
	tap_ok(file_size("/dev/morsel/dback") < 0,
	       "and no object was left behind");
	close(other);
	rm("dother");
	put(child, 4, 12);
	o.parent = d[0];
	o.flags = 0;
	tap_ok(morsel_save(child, d[1], &o, &h, &err) == 0 &&
	       h.data_pages == 1, "an increment on the delta stores 1 page");
	back = load(d, 2, "dback", base, 0, &err);
	tap_ok(back >= 0 && same(child, back),
	       "delta + increment load against the base equal");
	tap_ok(load(d, 2, "dback", base, MORSEL_LOAD_OVER, &err) == -EINVAL &&
	       strstr(err.msg, "new child"),
	       "a delta does not load over an object: %s", err.msg);
	if (back >= 0)
		close(back);
	rm("dback");
	close(child);
	rm("dchild");
	close(base);
	rm("dbase");
}

/* Saves while a thread keeps storing: every image must still verify. */
static volatile int stop_writer;

static void *busy_writer(void *arg)
{
	volatile unsigned char *p = arg;
	unsigned long i = 0;

	while (!stop_writer) {
		p[(i * 4099) % (8 * MiB)]++;
		i++;
	}
	return NULL;
}

static void under_writes(void)
{
	const char *imgs[] = { DIR_ "/busy.img" };
	struct mimg_header h;
	struct mimg_error err;
	unsigned char *p;
	pthread_t t;
	int fd, i, bad = 0;

	fd = create("busy", 8 * MiB);
	p = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	memset(p, 1, 8 * MiB);
	pthread_create(&t, NULL, busy_writer, p);
	for (i = 0; i < 5; i++) {
		if (save(fd, imgs[0], NULL, &h) ||
		    morsel_image_verify(imgs, 1, NULL, NULL, &err)) {
			tap_diag("round %d: %s", i, err.msg);
			bad++;
		}
	}
	stop_writer = 1;
	pthread_join(t, NULL);
	tap_ok(!bad, "5 saves while a thread stores all over the object: "
	       "every image verifies (checksums of what was written)");
	munmap(p, 8 * MiB);
	close(fd);
	rm("busy");
}

/* A chain may follow the object through resizes (whole-object saves). */
static void resized_chain(void)
{
	const char *chain[] = { DIR_ "/r0.img", DIR_ "/r1.img", DIR_ "/r2.img" };
	struct mimg_header h;
	int fd;

	fd = create("rsz", 8 * MiB);
	put(fd, 1, 20);
	put(fd, 1500, 20);
	tap_require(save(fd, chain[0], NULL, &h) == 0);
	tap_require(ftruncate(fd, 16 * MiB) == 0);
	put(fd, 3000, 21);
	tap_ok(save(fd, chain[1], chain[0], &h) == 0 &&
	       h.object_size == 16 * MiB,
	       "an increment after the object grew");
	tap_require(ftruncate(fd, 4 * MiB) == 0);	/* drops 1500, 3000 */
	put(fd, 2, 22);
	tap_ok(save(fd, chain[2], chain[1], &h) == 0 &&
	       h.object_size == 4 * MiB && h.present_pages == 2,
	       "an increment after it shrank");
	tap_ok(loads_equal(fd, chain, 3, "rsz-back"),
	       "the chain loads equal, at the last size");
	close(fd);
	rm("rsz");
}

static void flip(const char *path, long long off, int bit)
{
	int fd = open(path, O_RDWR);
	unsigned char c;

	tap_require(fd >= 0 && pread(fd, &c, 1, off) == 1);
	c ^= 1 << bit;
	tap_require(pwrite(fd, &c, 1, off) == 1);
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	static char b[1 << 16];
	int in = open(from, O_RDONLY), out;
	ssize_t n;

	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	tap_require(in >= 0 && out >= 0);
	while ((n = read(in, b, sizeof(b))) > 0)
		tap_require(write(out, b, n) == n);
	close(in);
	close(out);
}

static void damage(void)
{
	const char *good = DIR_ "/good.img", *bad = DIR_ "/bad.img";
	const char *imgs[] = { bad };
	struct mimg_error err;
	struct mimg_header h;
	long long size;
	int fd, ret;

	fd = create("dmg", 8 * MiB);
	for (unsigned long i = 0; i < 2048; i += 5)
		put(fd, i, 13);
	tap_require(save(fd, good, NULL, &h) == 0);
	size = file_size(good);
	static const struct {
		const char *what;
		long long off;
		long long want;		/* damage offset reported, -1: any */
	} cases[] = {
		{ "a bit in the header's size", 24, 0 },
		{ "a bit in the magic", 0, 0 },
		{ "a bit in a record's bitmap", 4096 + 192 + 40, 4096 + 192 },
		{ "a bit in the data", -2, -1 },
	};
	for (unsigned int c = 0; c < 4; c++) {
		long long off = cases[c].off == -2 ? size - 100 : cases[c].off;

		copy_file(good, bad);
		flip(bad, off, 3);
		uint64_t at;

		ret = morsel_image_verify(imgs, 1, NULL, NULL, &err);
		tap_ok(ret < 0 &&
		       (cases[c].want < 0 || (long long)err.offset ==
			cases[c].want), "verify: %s is found at offset %llu: %s",
		       cases[c].what, (unsigned long long)err.offset, err.msg);
		at = err.offset;
		tap_ok(load(imgs, 1, "dmg-back", -1, 0, &err) < 0 &&
		       file_size("/dev/morsel/dmg-back") < 0 && err.offset == at,
		       "load: %s is refused at the same offset (%llu), nothing "
		       "created", cases[c].what,
		       (unsigned long long)err.offset);
	}
	copy_file(good, bad);
	tap_require(truncate(bad, size - 1) == 0);
	tap_ok(morsel_image_verify(imgs, 1, NULL, NULL, &err) < 0,
	       "a truncated image is refused: %s", err.msg);
	/* A damaged image loaded over an object changes nothing. */
	copy_file(good, bad);
	flip(bad, size - 100, 0);
	{
		int back = create("dmg-over", 8 * MiB);

		put(back, 0, 14);
		tap_ok(load(imgs, 1, "dmg-over", -1, MORSEL_LOAD_OVER, &err) <
		       0, "a damaged image does not load over an object");
		pread(back, buf, PG, 0);
		pattern(want, 0, 14);
		tap_ok(!memcmp(buf, want, PG), "which keeps its contents");
		close(back);
		rm("dmg-over");
	}
	close(fd);
	rm("dmg");
}

/*
 * ramfs has no O_DIRECT: saves and loads fall back to the page cache
 * (and FILL reads the image through it).  Same results.
 */
static void without_direct_io(void)
{
	const char *dir = "/tmp/img-ramfs", *img = "/tmp/img-ramfs/r.img";
	const char *imgs[] = { img };
	struct mimg_header h;
	int fd, dio;

	mkdir(dir, 0700);
	if (mount("none", dir, "ramfs", 0, NULL)) {
		tap_ok(0, "mount ramfs: %s", strerror(errno));
		return;
	}
	fd = create("nodio", 64 * MiB);
	for (unsigned long i = 0; i < 16384; i += 3)
		put(fd, i, 21);
	punch(fd, 600, 40);
	dio = open(dir, O_RDONLY | O_DIRECT | O_TMPFILE, 0600);
	tap_ok(dio < 0, "ramfs refuses O_DIRECT (%s)",
	       dio < 0 ? strerror(errno) : "accepted");
	if (dio >= 0)
		close(dio);
	tap_ok(save(fd, img, NULL, &h) == 0, "a save to ramfs works");
	tap_ok(loads_equal(fd, imgs, 1, "nodio-back"),
	       "and loads back equal through the page cache");
	close(fd);
	rm("nodio");
	unlink(img);
	umount(dir);
	rmdir(dir);
}

/*
 * A chain that starts while the object is empty (found by test_opfuzz):
 * the full save of an empty object recorded clean_gen 0 instead of the
 * object's, so after any earlier CLEAN the next increment failed with
 * ESTALE.  It must record the object's clean_gen and go on.
 */
static void empty_then_increment(void)
{
	const char *imgs[] = { DIR_ "/empty-full.img", DIR_ "/empty-inc.img" };
	struct morsel_save_opts o = { .base_fd = -1 };
	struct mimg_error err;
	struct mimg_header h;
	int fd, back, r;

	fd = create("empty", 0);
	tap_require(ftruncate(fd, PG) == 0 &&
		    morsel_scan(fd, 0, PG, MORSEL_SCAN_CLEAN, 0, NULL, NULL,
				NULL, NULL) == 0 && ftruncate(fd, 0) == 0);
	r = morsel_save(fd, imgs[0], &o, &h, &err);
	tap_ok(r == 0 && h.clean_gen == 1,
	       "a full save of an empty object after a CLEAN records its clean_gen (%d, %llu)",
	       r, (unsigned long long)h.clean_gen);
	put(fd, 3, 5);
	o.parent = imgs[0];
	r = morsel_save(fd, imgs[1], &o, &h, &err);
	tap_ok(r == 0, "  and the next increment goes on from it (%d: %s)", r,
	       r ? err.msg : "");
	back = load(imgs, 2, "empty-back", -1, 0, &err);
	pattern(want, 3, 5);
	tap_ok(back >= 0 && pread(back, buf, PG, 3 * PG) == (ssize_t)PG &&
	       !memcmp(buf, want, PG),
	       "  the chain loads back the page written after it");
	if (back >= 0)
		close(back);
	close(fd);
	rm("empty");
	rm("empty-back");
}

int main(void)
{
	mkdir(DIR_, 0700);
	empty_then_increment();
	round_trips();
	ranges();
	increments();
	deltas();
	resized_chain();
	under_writes();
	damage();
	without_direct_io();
	return tap_done();
}
