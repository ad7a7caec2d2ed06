#define _GNU_SOURCE
/*
 * Core walkers over morsel mappings whose leaves are struct pages (issue
 * 12, item 5; docs/gup.md "Core paths that reach a linked table"): smaps,
 * smaps_rollup, pagemap, clear_refs 1-4 (4 is soft-dirty), MADV_COLD,
 * MADV_PAGEOUT and mincore run over a linked mapping, a page-by-page one
 * and a copy-on-write child's mapping.  After each: every byte of the
 * object is as written, the counters did not move, a store still lands
 * and is seen by another mapper, and a store after a clean is still
 * reported dirty (a walker that write-protected a shared leaf behind our
 * back would show there).  vm/run fails the run on any kernel report.
 */
#include "libmorsel.h"
#include "vm.h"

#define SIZE	(4 * MiB)
#define NPG	(SIZE / PG)

static unsigned char pat(long off, int gen)
{
	return (unsigned char)((off >> 12) * 13 + gen + 1);
}

static void fill(unsigned char *p, int gen)
{
	long off;

	for (off = 0; off < SIZE; off += PG)
		memset(p + off, pat(off, gen), PG);
}

static long bad_pages(int fd, int gen)
{
	static unsigned char buf[PG];
	long off, bad = 0;

	for (off = 0; off < SIZE; off += PG) {
		if (pread(fd, buf, PG, off) != PG || buf[0] != pat(off, gen) ||
		    buf[PG - 1] != pat(off, gen))
			bad++;
	}
	return bad;
}

static int read_all(const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	close(fd);
	return n == 0 ? 0 : -1;
}

/* Read pagemap entries of [@p, @p + @len): present bits counted. */
static long pagemap_present(void *p, long len)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e;
	long i, present = 0;

	if (fd < 0)
		return -1;
	for (i = 0; i < len / PG; i++) {
		if (pread(fd, &e, 8, ((uintptr_t)p / PG + i) * 8) != 8) {
			present = -1;
			break;
		}
		present += (e >> 63) & 1;
	}
	close(fd);
	return present;
}

static int run_walker(int w, void *p, long len)
{
	unsigned char vec[NPG];

	switch (w) {
	case 0: return read_all("/proc/self/smaps");
	case 1: return read_all("/proc/self/smaps_rollup");
	case 2: return pagemap_present(p, len) < 0 ? -1 : 0;
	case 3: return write_file("/proc/self/clear_refs", "1");
	case 4: return write_file("/proc/self/clear_refs", "3");
	case 5: return write_file("/proc/self/clear_refs", "4");
	case 6: return madvise(p, len, MADV_COLD);
	case 7: return madvise(p, len, MADV_PAGEOUT);
	default: return mincore(p, len, vec);
	}
}

static const char *const walkers[] = {
	"smaps", "smaps_rollup", "pagemap", "clear_refs 1", "clear_refs 3",
	"clear_refs 4 (soft-dirty)", "MADV_COLD", "MADV_PAGEOUT", "mincore",
};

static void one(int w, int fd, unsigned char *linked, unsigned char *pages,
		unsigned char *other, int *gen)
{
	struct morsel_stat before = mstat(fd), after;
	struct morsel_scan sc;
	uint64_t dirty[NPG / 64];
	int r;

	r = run_walker(w, linked, SIZE);
	r |= run_walker(w, pages, 64 * KiB);
	after = mstat(fd);
	tap_ok(r == 0 && bad_pages(fd, *gen) == 0 &&
	       after.data_pages == before.data_pages &&
	       after.table_pages == before.table_pages,
	       "%s: ran; contents and counters unchanged (%llu/%llu data, %llu/%llu tables)",
	       walkers[w], after.data_pages, before.data_pages,
	       after.table_pages, before.table_pages);
	/* Clean, walk again, store: the store must be dirty and shared. */
	tap_require(morsel_scan(fd, 0, SIZE, MORSEL_SCAN_CLEAN, 0, NULL, NULL,
				NULL, &sc) == 0);
	run_walker(w, linked, SIZE);
	linked[5 * PG + 9] = (unsigned char)(w + 100);
	pages[2 * PG + 9] = (unsigned char)(w + 100);
	memset(dirty, 0, sizeof(dirty));
	tap_ok(morsel_scan(fd, 0, SIZE, 0, 0, NULL, NULL, dirty, &sc) == 0 &&
	       sc.dirty_pages == 2 && dirty[0] == ((1ULL << 5) | (1ULL << 2)) &&
	       other[5 * PG + 9] == w + 100 && other[2 * PG + 9] == w + 100,
	       "%s: stores after it land, are shared and are dirty (%llu dirty)",
	       walkers[w], (unsigned long long)sc.dirty_pages);
	/* Put the pattern back for the next walker. */
	linked[5 * PG + 9] = pat(5 * PG, *gen);
	pages[2 * PG + 9] = pat(2 * PG, *gen);
}

static void walk_all(const char *what, int fd)
{
	unsigned char *linked, *pages, *other;
	int gen = 0, w;

	linked = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pages = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	other = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(linked != MAP_FAILED && pages != MAP_FAILED &&
		    other != MAP_FAILED);
	(void)*(volatile unsigned char *)other;
	(void)*(volatile unsigned char *)linked;
	(void)*(volatile unsigned char *)(linked + 2 * MiB);
	(void)*(volatile unsigned char *)(pages + PG);
	tap_ok(links(fd) == 3, "%s: mapped, %lu links (2 writable, 1 read-only)",
	       what, links(fd));
	tap_diag("%s", what);
	for (w = 0; w < (int)(sizeof(walkers) / sizeof(walkers[0])); w++)
		one(w, fd, linked, pages, other, &gen);
	munmap(linked, SIZE);
	munmap(pages, 64 * KiB);
	munmap(other, SIZE);
}

int main(void)
{
	long data0 = total("data_pages");
	unsigned char *p;
	int fd, cfd;

	watchdog(900);
	fd = mkobj("/dev/morsel/walkers", SIZE);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	fill(p, 0);
	munmap(p, SIZE);
	walk_all("a plain object", fd);

	tap_require(freeze(fd) == 0);
	cfd = split(fd);
	tap_require(cfd >= 0);
	walk_all("a copy-on-write child", cfd);
	tap_ok(bad_pages(fd, 0) == 0, "the frozen base never changed");
	close(cfd);
	close(fd);
	unlink("/dev/morsel/walkers");
	tap_ok(total("data_pages") == data0, "no data page left over (%ld)",
	       total("data_pages") - data0);
	return tap_done();
}
