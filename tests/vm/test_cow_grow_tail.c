#define _GNU_SOURCE
/*
 * A copy-on-write child grown past its frozen base's size writes into
 * the rest of the base's last table (issue 13: the operation fuzzer's
 * first module bug).  A table covers a whole granule, so the base owns
 * its last PTE table (and, above 1 GiB, its last PMD table) past its
 * size too; the child used to judge ownership by the written offset
 * alone, took that table for its own and put its frames into the base's
 * table: SCAN showed them as borrowed, STAT counted them, destroying the
 * child warned about data pages left and could free a frame twice.
 * Checked here, for a PTE table (base of 3 MiB + 5000 bytes) and a PMD
 * table (base of 1 GiB + 5000 bytes, sparse), by pwrite() and by a store
 * through a mapping: the child's data_pages equal the pages SCAN calls
 * owned, the base's contents, pages and tables do not change, the
 * child's writes read back, and destroying the child leaves the base
 * whole (vm/run fails on the old WARNING).
 */
#include "libmorsel.h"
#include "vm.h"

#define BASE	"/dev/morsel/grow-tail-base"

/* Pages SCAN reports as owned in [0, size of @fd). */
static long long owned_pages(int fd)
{
	long long len = (size_of(fd) + PG - 1) & ~(PG - 1), n = 0, w;
	uint64_t *owned = calloc(len / PG / 64 + 1, 8);
	struct morsel_scan sc;

	tap_require(owned != NULL);
	tap_require(morsel_scan(fd, 0, len, 0, 0, NULL, owned, NULL, &sc) == 0,
		    "SCAN");
	for (w = 0; w < len / PG / 64 + 1; w++)
		n += __builtin_popcountll(owned[w]);
	free(owned);
	return n;
}

static void grow_past(const char *what, long long base_data_at,
		      long long base_size, long long write_at, int by_store)
{
	char buf[8236], back[8236], tail[PG];
	long long bdata, btables;
	int b, c, ok;

	memset(buf, 0x5a, sizeof(buf));
	b = open(BASE, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(b >= 0 && pwrite(b, buf, PG, base_data_at) == PG &&
		    ftruncate(b, base_size) == 0 && freeze(b) == 0);
	bdata = data_of(b);
	btables = tables_of(b);
	c = split(b);
	tap_require(c >= 0);
	if (by_store) {
		long long len = (write_at + sizeof(buf) + 2 * MiB) & ~(2 * MiB - 1);
		unsigned char *p;

		tap_require(ftruncate(c, write_at + sizeof(buf)) == 0);
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
		tap_require(p != MAP_FAILED, "mmap the child");
		memcpy(p + write_at, buf, sizeof(buf));
		munmap(p, len);
	} else {
		tap_require(pwrite(c, buf, sizeof(buf), write_at) ==
			    (ssize_t)sizeof(buf));
	}
	ok = pread(c, back, sizeof(back), write_at) == (ssize_t)sizeof(back) &&
	     !memcmp(back, buf, sizeof(buf));
	tap_ok(ok && data_of(c) == owned_pages(c) && data_of(c) >= 3,
	       "%s: the child owns what it wrote past the base's size (STAT %lld, SCAN owned %lld)",
	       what, data_of(c), owned_pages(c));
	tap_ok(data_of(b) == bdata && tables_of(b) == btables &&
	       owned_pages(b) == bdata,
	       "%s:   the base's pages and tables are unchanged (%lld/%lld pages, %lld/%lld tables)",
	       what, data_of(b), bdata, tables_of(b), btables);
	close(c);
	tap_ok(pread(b, back, PG, base_data_at) == PG && !memcmp(back, buf, PG) &&
	       data_of(b) == bdata,
	       "%s:   the child gone, the base reads its data", what);
	/* The base's last page past its end still reads zero in a child. */
	c = split(b);
	tap_require(c >= 0 && ftruncate(c, base_size + 2 * PG) == 0);
	memset(tail, 1, sizeof(tail));
	{
		long long n = PG - base_size % PG, i, nonzero = 0;

		ok = pread(c, tail, n, base_size) == (ssize_t)n;
		for (i = 0; i < n; i++)
			nonzero += tail[i] != 0;
		tap_ok(ok && nonzero == 0,
		       "%s:   past the base's end its last page reads zeros (%lld not)",
		       what, nonzero);
	}
	close(c);
	close(b);
	unlink(BASE);
}

int main(void)
{
	watchdog(300);
	/* PTE table: the base ends inside chunk 1, [2 MiB, 4 MiB). */
	grow_past("pwrite, PTE table", 3 * MiB, 3 * MiB + 5000, 3756782, 0);
	grow_past("store, PTE table", 3 * MiB, 3 * MiB + 5000, 3756782, 1);
	/* PMD table: the base ends inside GiB 1; the child writes 600 MiB on. */
	grow_past("pwrite, PMD table", GiB, GiB + 5000, GiB + 600 * MiB + 1234,
		  0);
	grow_past("store, PMD table", GiB, GiB + 5000, GiB + 600 * MiB + 1234,
		  1);
	return tap_done();
}
