#define _GNU_SOURCE
/*
 * Faults on morsel mappings are served under the per-VMA lock, once
 * (issue 13, item 5; docs/kernel-facts.md, "Rules and the tests that keep
 * them": rule V1).  6.12's vmf_can_call_fault() makes a fault taken under
 * the VMA lock return VM_FAULT_RETRY before ->fault, ->page_mkwrite or
 * ->pfn_mkwrite unless the VMA has ->map_pages, and the whole fault runs
 * again under mmap_lock; the module has an empty ->map_pages
 * (fault.c, morsel_map_pages()) so that its handlers, which need no
 * mmap_lock, run at once.  A retried fault is not counted in ru_minflt,
 * so this test records calls of handle_mm_fault() itself with a kprobe
 * event (tracefs) filtered on the test's addresses, with their flags: a
 * call without FAULT_FLAG_VMA_LOCK is the retry under mmap_lock, and
 * there must be none.  (A first store to a borrowed page takes three
 * calls, all under the VMA lock: the copy drops the entry it faulted
 * on.)  Cases, in mappings that cannot
 * link (one page off the granule: pages mapped one by one):
 *  - the first load of each of 64 pages of an object (->fault);
 *  - after a CLEAN scan, a load of each (->fault) and then a store
 *    (->page_mkwrite where the mapping has write notification; a plain
 *    object's mapping made writable by mmap() has none and may store
 *    without a fault: then only "no retry" is checked);
 *  - the first store to each of 64 pages borrowed by a copy-on-write
 *    child (->fault for write: a copy).
 * Skipped where the kernel has no kprobe events.
 */
#include <sys/mount.h>

#include "vm.h"

#define TRACE "/sys/kernel/tracing"
#define NPAGES 64

/*
 * Live text patching races under QEMU's TCG (docs/kernel-facts.md: an
 * "int3" oops, seen once here when enabling the event also turned on the
 * scheduler tracepoints that record command names): patch as little as
 * possible.  record-cmd off, so enabling the event patches only the probe
 * on handle_mm_fault(); the event is enabled once for the whole test and
 * each case only changes its filter.
 */
static int probe_setup(void)
{
	write_file(TRACE "/events/morsel_t/enable", "0");
	write_file(TRACE "/kprobe_events", "-:morsel_t/hmf");
	if (write_file(TRACE "/options/record-cmd", "0") ||
	    write_file(TRACE "/kprobe_events",
		       "p:morsel_t/hmf handle_mm_fault addr=%si:x64 flags=%dx:x32") ||
	    write_file(TRACE "/events/morsel_t/hmf/filter", "addr == 0") ||
	    write_file(TRACE "/events/morsel_t/hmf/enable", "1"))
		return -1;
	return 0;
}

static void probe_teardown(void)
{
	write_file(TRACE "/events/morsel_t/hmf/enable", "0");
	write_file(TRACE "/kprobe_events", "-:morsel_t/hmf");
	write_file(TRACE "/options/record-cmd", "1");
}

/* Record calls for [@p, @p + @len) from now on, in an empty buffer. */
static int tracing_on(void *p, unsigned long len)
{
	char buf[256];
	uintptr_t a = (uintptr_t)p;
	int fd;

	snprintf(buf, sizeof(buf), "addr >= 0x%lx && addr < 0x%lx",
		 (unsigned long)a, (unsigned long)(a + len));
	if (write_file(TRACE "/events/morsel_t/hmf/filter", buf))
		return -1;
	fd = open(TRACE "/trace", O_WRONLY | O_TRUNC);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

#define FAULT_FLAG_VMA_LOCK_BIT 0x1000	/* 1 << 12 in 6.12's enum fault_flag */

/*
 * handle_mm_fault() calls recorded since tracing_on(): all of them in
 * *@all, those made without FAULT_FLAG_VMA_LOCK (under mmap_lock) returned.
 * Tracing stops.
 */
static long tracing_off(long *all)
{
	static char text[1 << 20];
	long n = 0, got = 0, locked = 0;
	unsigned int flags;
	ssize_t r;
	char *s;
	int fd;

	*all = -1;
	write_file(TRACE "/events/morsel_t/hmf/filter", "addr == 0");
	fd = open(TRACE "/trace", O_RDONLY);
	if (fd < 0)
		return -1;
	while ((r = read(fd, text + got, sizeof(text) - 1 - got)) > 0)
		got += r;
	close(fd);
	text[got] = 0;
	for (s = text; (s = strstr(s, " hmf: ")); s++) {
		char *f = strstr(s, "flags=");

		if (!f || sscanf(f, "flags=%x", &flags) != 1)
			return -1;
		n++;
		if (!(flags & FAULT_FLAG_VMA_LOCK_BIT) && locked++ < 4)
			tap_diag("under mmap_lock: %.60s", s + 1);
	}
	*all = n;
	return locked;
}

static int scan_clean(int fd, unsigned long size)
{
	static uint64_t bits[3][64];	/* 4096 pages */
	struct morsel_scan s;

	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	s.length = size;
	s.flags = MORSEL_SCAN_CLEAN;
	s.present = (uintptr_t)bits[0];
	s.owned = (uintptr_t)bits[1];
	s.dirty = (uintptr_t)bits[2];
	return ioctl(fd, MORSEL_IOC_SCAN, &s);
}

/*
 * Access every page of [p, p + NPAGES pages) once and check the calls:
 * at least one per page, none without the VMA lock.
 */
static void check(const char *what, volatile unsigned char *p, int store,
		  int must_fault)
{
	long all, locked;
	int i;

	if (tracing_on((void *)p, NPAGES * PG))
		tap_fatal("%s: cannot trace handle_mm_fault()", what);
	for (i = 0; i < NPAGES; i++) {
		if (store)
			p[i * PG] = (unsigned char)(i + 7);
		else
			(void)p[i * PG];
	}
	locked = tracing_off(&all);
	tap_ok((all >= NPAGES || !must_fault) && locked == 0,
	       "%s: %ld handle_mm_fault() calls for %d accesses, %ld of them under mmap_lock (a retry)",
	       what, all, NPAGES, locked);
}

int main(void)
{
	unsigned long size = 4 * MiB;
	unsigned char *p, *c;
	int fd, cfd, i;
	long all;

	if (access(TRACE "/kprobe_events", W_OK))
		mount("nodev", TRACE, "tracefs", 0, NULL);
	if (access(TRACE "/kprobe_events", W_OK))
		tap_skip_all("no kprobe events in tracefs");
	watchdog(120);

	fd = mkobj("/dev/morsel/vma_lock", size);
	for (i = 0; i < NPAGES; i++)
		tap_require(pwrite(fd, "x", 1, PG + i * PG) == 1);
	p = mmap(NULL, size - PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PG);
	tap_require(p != MAP_FAILED);
	phase = "loads";
	atexit(probe_teardown);		/* also when a check bails out */
	if (probe_setup() || tracing_on(p, PG) || tracing_off(&all) < 0) {
		tap_skip_all("cannot set a kprobe on handle_mm_fault()");
	}
	check("first loads, pages one by one (->fault)", p, 0, 1);
	tap_require(links(fd) == 0, "the mapping did not link");
	phase = "stores after clean";
	tap_require(scan_clean(fd, size) == 0, "SCAN with CLEAN");
	check("loads after CLEAN (->fault)", p, 0, 1);
	check("then stores (->page_mkwrite, if the mapping has write notification)",
	      p, 1, 0);
	munmap(p, size - PG);

	phase = "child stores";
	tap_require(freeze(fd) == 0);
	cfd = split(fd);
	tap_require(cfd >= 0);
	c = mmap(NULL, size - PG, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, PG);
	tap_require(c != MAP_FAILED);
	check("first stores to borrowed pages of a child (copies)", c, 1, 1);
	for (i = 0; i < NPAGES; i++)
		if (c[i * PG] != (unsigned char)(i + 7))
			break;
	tap_ok(i == NPAGES, "the child's pages hold the stores");
	munmap(c, size - PG);
	close(cfd);
	close(fd);
	unlink("/dev/morsel/vma_lock");
	return tap_done();
}
