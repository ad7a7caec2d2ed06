#define _GNU_SOURCE
/*
 * A frozen object's table entries never change (regression, session 6
 * review): a frozen child C1 of a root-owned base, mapped read-only by an
 * unprivileged user, used to copy the base's table it borrowed; a
 * grandchild G split from C1 before that then took the base's table for
 * its own, and writing, punching or closing G wrote, cleared or freed the
 * base's page table (a use-after-free of a page table).  What this checks,
 * as uid 1000 with only read access to the base:
 *  - reading C1 through a read-only mapping (page by page, since C1
 *    borrows the chunk) gives the base's data and copies no table;
 *  - a write, a punch and a close of G leave the base and C1 intact and
 *    G holds only what it wrote;
 *  - the same with a grandchild split after the mapping, and with C1
 *    mapped read-write before it was frozen;
 *  - the base is whole afterwards: SEEK_DATA, its bytes, its table count.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define BASE "/dev/morsel/gc_base"
#define USER 1000

/* Does page @pg of @fd start with @text? */
static int page_says(int fd, int pg, const char *text)
{
	char buf[64] = { 0 };

	return pread(fd, buf, strlen(text), (off_t)pg * PG) ==
	       (ssize_t)strlen(text) && !memcmp(buf, text, strlen(text));
}

static int base_is_whole(int b)
{
	return page_says(b, 0, "base-page-0") && page_says(b, 1, "base-page-1") &&
	       page_says(b, 768, "base-page-768") && lseek(b, 0, SEEK_DATA) == 0 &&
	       tables_of(b) == 3 && data_of(b) == 3;
}

/* Write, punch and close grandchild @g of @c1; base @b and @c1 stay. */
static void abuse_grandchild(int b, int c1, int g, const char *how)
{
	tap_ok(pwrite(g, "grandchild", 10, 0) == 10 && page_says(g, 0, "grandchild") &&
	       page_says(b, 0, "base-page-0") && page_says(c1, 0, "base-page-0"),
	       "%s: a write to the grandchild stays in it", how);
	tap_ok(fallocate(g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PG, PG) == 0 &&
	       !page_says(g, 1, "base-page-1") && page_says(b, 1, "base-page-1") &&
	       page_says(c1, 1, "base-page-1"),
	       "%s: a punch of the grandchild stays in it", how);
	close(g);
	tap_ok(base_is_whole(b) && page_says(c1, 0, "base-page-0") &&
	       page_says(c1, 768, "base-page-768"),
	       "%s: closing the grandchild leaves the base whole (tables %lld)",
	       how, tables_of(b));
}

static void as_user(void)
{
	int b = open(BASE, O_RDONLY), c1, g;
	volatile char *p;
	long long t;

	tap_require(b >= 0, "open base");
	c1 = split_flags(b, 0);
	tap_require(c1 >= 0 && freeze(c1) == 0, "C1");
	g = split_flags(c1, 0);
	tap_require(g >= 0, "G");
	t = tables_of(c1);
	p = mmap(NULL, 4 * 1024 * 1024, PROT_READ, MAP_SHARED, c1, 0);
	tap_require(p != MAP_FAILED, "mmap C1");
	tap_ok(p[0] == 'b' && p[3 * 1024 * 1024] == 'b' && p[PG + 5] == 'p' &&
	       p[2 * PG] == 0 && tables_of(c1) == t,
	       "a read-only mapping of the frozen child reads the base's data, copies no table (%lld -> %lld)",
	       t, tables_of(c1));
	abuse_grandchild(b, c1, g, "grandchild split before the mapping");
	g = split_flags(c1, 0);
	tap_require(g >= 0, "G2");
	abuse_grandchild(b, c1, g, "grandchild split after the mapping");
	munmap((void *)p, 4 * 1024 * 1024);
	close(c1);
	tap_ok(base_is_whole(b), "the base is whole after everything");
	close(b);
}

/* C1 mapped read-write before its freeze keeps VM_WRITE: no copies then. */
static void writable_before_freeze(void)
{
	int b = open(BASE, O_RDONLY), c1, g;
	volatile char *p;
	long long t;

	tap_require(b >= 0, "open base");
	c1 = split_flags(b, 0);
	tap_require(c1 >= 0, "C1");
	p = mmap(NULL, 4 * 1024 * 1024, PROT_READ | PROT_WRITE, MAP_SHARED, c1, 0);
	tap_require(p != MAP_FAILED, "mmap C1 rw");
	tap_require(freeze(c1) == 0, "freeze C1");
	g = split_flags(c1, 0);
	tap_require(g >= 0, "G");
	t = tables_of(c1);
	tap_ok(p[0] == 'b' && p[3 * 1024 * 1024] == 'b' && tables_of(c1) == t,
	       "a mapping made writable before the freeze reads without copying a table");
	abuse_grandchild(b, c1, g, "after a writable mapping of the frozen child");
	munmap((void *)p, 4 * 1024 * 1024);
	close(c1);
	close(b);
}

int main(void)
{
	long base_morsels = total("morsels");
	int fd;

	fd = open(BASE, O_RDWR | O_CREAT | O_EXCL, 0644);
	tap_require(fd >= 0 && ftruncate(fd, 4 * 1024 * 1024) == 0 &&
		    pwrite(fd, "base-page-0", 11, 0) == 11 &&
		    pwrite(fd, "base-page-1", 11, PG) == 11 &&
		    pwrite(fd, "base-page-768", 13, 768 * PG) == 13 &&
		    freeze(fd) == 0 && fchmod(fd, 0644) == 0, "base");
	close(fd);
	tap_run_as(USER, USER, as_user);
	tap_run_as(USER, USER, writable_before_freeze);
	unlink(BASE);
	tap_ok(total("morsels") == base_morsels, "every object is gone");
	return tap_done();
}
