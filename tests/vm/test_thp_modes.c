#define _GNU_SOURCE
/*
 * Mapping under each transparent_hugepage/enabled mode (never, madvise,
 * always): a 1 GiB object and a 2 MiB object map and share data under all
 * of them.  A whole GiB is one PUD link under "madvise" (morsel VMAs have
 * VM_HUGEPAGE) and "always"; under "never" the core mm does not call
 * ->huge_fault for a VM_MIXEDMAP VMA (only VM_PFNMAP ones bypass the
 * tunables), so each 2 MiB granule is linked by its own PMD entry, as in
 * MADV_NOHUGEPAGE VMAs and PR_SET_THP_DISABLE processes (docs/gup.md).
 * The original mode is restored at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/thp_modes"
#define THP "/sys/kernel/mm/transparent_hugepage/enabled"

static char orig_mode[32] = "always";

static int set_mode(const char *mode)
{
	int fd = open(THP, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, mode, strlen(mode));
	close(fd);
	return n == (ssize_t)strlen(mode) ? 0 : -1;
}

static int mode_is(const char *mode)
{
	char buf[128] = "", want[40];
	int fd = open(THP, O_RDONLY);

	if (fd < 0)
		return 0;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	close(fd);
	snprintf(want, sizeof(want), "[%s]", mode);
	return strstr(buf, want) != NULL;
}

static void restore(void)
{
	set_mode(orig_mode);
}

/* Map @size, store one byte per 2 MiB, return the links made. */
static long use(unsigned long size, int advice, int prot, const char *mode,
		const char *what)
{
	unsigned char *p, *w;
	unsigned long off, bad = 0;
	long links;
	int fd, st;
	pid_t pid;

	fd = mkobj(PATH, size);
	w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	p = prot == (PROT_READ | PROT_WRITE) ? w :
	    mmap(NULL, size, prot, MAP_SHARED, fd, 0);
	tap_require(w != MAP_FAILED && p != MAP_FAILED);
	if (advice >= 0)
		tap_require(madvise(p, size, advice) == 0);
	for (off = 0; off < size; off += 2 * MiB)
		w[off + (off >> 21) % 4096] = (unsigned char)((off >> 21) | 1);
	if (p != w) {
		munmap(w, size);	/* count only p's links */
		w = NULL;
	}
	for (off = 0; off < size; off += 2 * MiB)
		bad += p[off + (off >> 21) % 4096] !=
		       (unsigned char)((off >> 21) | 1);
	links = (long)mstat(fd).links;
	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (q == MAP_FAILED)
			_exit(1);
		for (off = 0; off < size; off += 2 * MiB)
			if (q[off + (off >> 21) % 4096] !=
			    (unsigned char)((off >> 21) | 1))
				_exit(2);
		q[size - 1] = 0x5e;
		_exit(0);
	}
	st = -1;
	waitpid(pid, &st, 0);
	tap_ok(!bad && st == 0 && p[size - 1] == 0x5e,
	       "%s: %s maps, data shared with another process", mode, what);
	munmap(p, size);
	close(fd);
	unlink(PATH);
	return links;
}

int main(void)
{
	static const char *modes[] = { "never", "madvise", "always" };
	unsigned i;
	long l;

	for (i = 0; i < 3; i++)
		if (mode_is(modes[i]))
			snprintf(orig_mode, sizeof(orig_mode), "%s", modes[i]);
	atexit(restore);
	for (i = 0; i < 3; i++) {
		const char *mode = modes[i];
		/* "never": no ->huge_fault for VM_MIXEDMAP, so PMD links */
		long pud_links = strcmp(mode, "never") ? 1 : 512;

		tap_ok(set_mode(mode) == 0 && mode_is(mode), "set %s", mode);
		l = use(GiB, -1, PROT_READ | PROT_WRITE, mode, "1 GiB RW");
		tap_ok(l == pud_links, "%s: 1 GiB RW: %s (%ld)", mode,
		       pud_links == 1 ? "one PUD link" : "512 PMD links", l);
		l = use(GiB, -1, PROT_READ, mode, "1 GiB RO");
		/* Read-only: 2 MiB twin links, never a PUD link. */
		tap_ok(l == 512, "%s: 1 GiB RO: 512 read-only twin links (%ld)",
		       mode, l);
		l = use(GiB, MADV_NOHUGEPAGE, PROT_READ | PROT_WRITE, mode,
			"1 GiB RW NOHUGEPAGE");
		tap_ok(l == 512, "%s: 1 GiB NOHUGEPAGE: %ld PMD links", mode, l);
		l = use(GiB, MADV_HUGEPAGE, PROT_READ | PROT_WRITE, mode,
			"1 GiB RW HUGEPAGE");
		tap_ok(l == pud_links, "%s: 1 GiB HUGEPAGE: %s (%ld)", mode,
		       pud_links == 1 ? "one PUD link" : "512 PMD links", l);
		l = use(2 * MiB, -1, PROT_READ | PROT_WRITE, mode, "2 MiB RW");
		tap_ok(l == 1, "%s: 2 MiB: one PMD link (%ld)", mode, l);
	}
	{
		pid_t pid = fork();
		int st = -1;

		tap_require(pid >= 0);
		if (pid == 0) {
			if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
				_exit(1);
			/* The child's own TAP lines must not reach stdout. */
			if (!freopen("/dev/null", "w", stdout))
				_exit(3);
			_exit(use(GiB, -1, PROT_READ | PROT_WRITE, "always",
				  "1 GiB RW THP_DISABLE") == 512 ? 0 : 2);
		}
		waitpid(pid, &st, 0);
		tap_ok(st == 0, "PR_SET_THP_DISABLE: 1 GiB maps with 512 PMD "
		       "links (status %#x)", st);
	}
	restore();
	tap_ok(mode_is(orig_mode), "mode restored to %s", orig_mode);
	return tap_done();
}
