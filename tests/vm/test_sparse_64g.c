#define _GNU_SOURCE
/*
 * A 64 GiB sparse morsel mapped whole: one page touched in each GiB gives
 * 64 PUD links, 64 data pages and one PMD + one PTE table per GiB; another
 * process links the same tables; MORSEL_IOC_MAP over all 64 GiB links
 * without allocating; munmap and unlink give everything back.
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/sparse_64g"
#define SIZE (64 * GiB)
#define NG 64

/* Where in GiB @g the test page lives: a different spot in each. */
static unsigned long spot(unsigned long g)
{
	return g * GiB + (g * 37 % 512) * 2 * MiB + (g % 512) * 4096;
}

int main(void)
{
	long morsels0 = total("morsels"), data0 = total("data_pages");
	long tables0 = total("table_pages"), links0 = total("links");
	struct morsel_stat s0, s;
	struct morsel_map m;
	unsigned long g, bad;
	unsigned char *p;
	int fd, st;
	pid_t pid;

	fd = open(PATH, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(fd >= 0 && ftruncate(fd, SIZE) == 0);
	s0 = mstat(fd);
	tap_ok(s0.level == MORSEL_LEVEL_PUD && s0.data_pages == 0 &&
	       s0.table_pages <= 1, "64 GiB: level 3, empty (%llu tables)",
	       s0.table_pages);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	tap_ok(((uintptr_t)p & (GiB - 1)) == 0, "mapped at a 1 GiB boundary");
	for (g = 0; g < NG; g++)
		p[spot(g)] = (unsigned char)(g + 1);
	s = mstat(fd);
	tap_ok(s.links == NG, "one page in each GiB: %llu links", s.links);
	tap_ok(s.data_pages == NG, "  %llu data pages", s.data_pages);
	tap_ok(s.table_pages == 1 + 2 * NG,
	       "  %llu table pages (1 PUD + 64 PMD + 64 PTE)", s.table_pages);
	bad = 0;
	for (g = 0; g < NG; g++) {
		unsigned char c = 0;

		if (p[spot(g)] != (unsigned char)(g + 1) ||
		    pread(fd, &c, 1, spot(g)) != 1 || c != (unsigned char)(g + 1))
			bad++;
	}
	tap_ok(!bad, "data reads back through the mapping and read()");

	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		unsigned char *q = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd,
					0);
		if (q == MAP_FAILED)
			_exit(1);
		for (g = 0; g < NG; g++)
			if (q[spot(g)] != (unsigned char)(g + 1))
				_exit(2);
		/* Read-only mappings link 2 MiB twins: 64 more. */
		_exit(mstat(fd).links == 2 * NG ? 0 : 3);
	}
	tap_require(waitpid(pid, &st, 0) == pid);
	tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "another process reads every GiB through 64 read-only links "
	       "(status %#x)", st);
	s = mstat(fd);
	/* The read-only mapper linked 2 MiB read-only twins: 64 of them. */
	tap_ok(s.links == NG && s.table_pages == 1 + 3 * NG &&
	       s.data_pages == NG,
	       "after it exits: 64 links, 64 read-only twin tables kept");

	tap_ok(munmap(p, SIZE) == 0 && mstat(fd).links == 0 &&
	       mstat(fd).mappers == 0, "munmap: no link, no mapper");
	tap_ok(mstat(fd).table_pages == 1 + 3 * NG &&
	       mstat(fd).data_pages == NG, "  the object keeps its tables and data");

	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED);
	memset(&m, 0, sizeof(m));
	m.argsz = sizeof(m);
	m.addr = (uintptr_t)p;
	m.length = SIZE;
	st = ioctl(fd, MORSEL_IOC_MAP, &m);
	s = mstat(fd);
	tap_ok(st == 0 && m.linked == NG && m.pages == 0 && s.links == NG &&
	       s.data_pages == NG && s.table_pages == 1 + 3 * NG,
	       "MORSEL_IOC_MAP of 64 GiB: 64 links, nothing allocated "
	       "(linked %llu)", m.linked);
	{
		struct rusage r0, r1;

		bad = 0;
		getrusage(RUSAGE_SELF, &r0);
		getrusage(RUSAGE_SELF, &r0);
		for (g = 0; g < NG; g++)
			bad += p[spot(g)] != (unsigned char)(g + 1);
		getrusage(RUSAGE_SELF, &r1);
		tap_ok(!bad && r1.ru_minflt == r0.ru_minflt,
		       "  then every page reads without a fault (%ld faults)",
		       r1.ru_minflt - r0.ru_minflt);
	}
	munmap(p, SIZE);
	close(fd);
	tap_ok(unlink(PATH) == 0, "unlink");
	tap_ok(total("morsels") == morsels0 && total("data_pages") == data0 &&
	       total("table_pages") == tables0 && total("links") == links0,
	       "totals back to baseline");
	return tap_done();
}
