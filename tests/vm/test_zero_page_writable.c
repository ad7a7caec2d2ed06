#define _GNU_SOURCE
/*
 * A hole read through a *writable* mapping that maps page by page
 * (issue 13, item 5; docs/kernel-facts.md, "Rules and the tests that keep
 * them": rule Z1).  A read fault on a hole of a copy-on-write child, or of
 * a frozen object, maps the zero page rather than allocate a frame; in a
 * writable VM_MIXEDMAP VMA the core refuses that (vm_insert_page() fails,
 * vmf_insert_mixed() gives SIGBUS, vmf_insert_pfn_prot() BUGs), so the
 * module writes a read-only special entry itself (fault.c,
 * map_zero_page()).  The linked paths use the hole table instead, so the
 * mappings here start one page into the object (no granule can link).
 * Checks:
 *  - a child: reading holes through a writable mapping gives zeros (no
 *    SIGBUS) and allocates no frame; a store there then works, lands in
 *    the child only, and reads back through the mapping and pread();
 *  - a frozen object with a writable mapping made before the freeze (made
 *    read-only by mmap() and writable by mprotect(): one writable by
 *    mmap() makes FREEZE fail with EBUSY): reading a hole gives zero, a
 *    store raises SIGSEGV and changes nothing.
 */
#include "vm.h"

#define BASE "/dev/morsel/zpw_base"
#define SIZE (4 * MiB)
#define HOLE (5 * PG)		/* file offsets of holes: 5, 6, ... pages */

int main(void)
{
	unsigned char *p, v = 0xff;
	long long d0;
	int fd, cfd, i, ok;

	probe_init();
	fd = mkobj(BASE, SIZE);
	tap_require(pwrite(fd, "base", 4, 0) == 4);
	tap_require(freeze(fd) == 0);
	cfd = split(fd);
	tap_require(cfd >= 0);

	p = mmap(NULL, SIZE - PG, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, PG);
	tap_require(p != MAP_FAILED);
	d0 = data_of(cfd);
	ok = 1;
	for (i = 0; i < 8; i++)
		if (try_read(p + HOLE - PG + i * PG + 17, &v) || v != 0)
			ok = 0;
	tap_ok(ok, "child, writable mapping, page by page: holes read as zero (no SIGBUS)");
	tap_ok(data_of(cfd) == d0 && links(cfd) == 0,
	       "  and cost no frame (data pages %lld -> %lld), no link",
	       d0, data_of(cfd));
	tap_ok(try_write(p + HOLE - PG + 17, 0x3c) == 0 &&
	       p[HOLE - PG + 17] == 0x3c,
	       "a store into a hole read before works and reads back");
	tap_ok(pread(cfd, &v, 1, HOLE + 17) == 1 && v == 0x3c &&
	       pread(fd, &v, 1, HOLE + 17) == 1 && v == 0,
	       "  it is the child's, the base still reads zero");
	tap_ok(data_of(cfd) == d0 + 1, "  one frame allocated for it");
	munmap(p, SIZE - PG);
	close(cfd);

	/* a writable mapping made before the freeze of a plain object */
	unlink(BASE);
	close(fd);
	fd = mkobj(BASE, SIZE);
	tap_require(pwrite(fd, "plain", 5, 0) == 5);
	/* writable by mprotect(): a mapping writable by mmap() stops FREEZE */
	p = mmap(NULL, SIZE - PG, PROT_READ, MAP_SHARED, fd, PG);
	tap_require(p != MAP_FAILED &&
		    mprotect(p, SIZE - PG, PROT_READ | PROT_WRITE) == 0);
	tap_require(freeze(fd) == 0);
	v = 0xff;
	tap_ok(try_read(p + HOLE - PG + 9, &v) == 0 && v == 0,
	       "frozen, writable mapping from before the freeze: a hole reads zero");
	tap_ok(try_write(p + HOLE - PG + 9, 0x44) == SIGSEGV,
	       "  a store there raises SIGSEGV");
	tap_ok(pread(fd, &v, 1, HOLE + 9) == 1 && v == 0 && data_of(fd) == 1,
	       "  and changes nothing (one data page, the hole reads zero)");
	munmap(p, SIZE - PG);
	close(fd);
	unlink(BASE);
	return tap_done();
}
