// SPDX-License-Identifier: GPL-2.0
/*
 * Smoke test: objects of 4 KiB to 1 GiB (x8 each step) are written through
 * a mapping, read back by a forked child through its own mapping and the
 * inherited one, read with pread, linked whole with MORSEL_IOC_MAP and
 * unmapped; STAT after each step goes to the log.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/morsel.h>
#include "vm.h"

static void st(int fd)
{
	struct morsel_stat s = mstat(fd);

	tap_diag("size=%llu level=%u data=%llu tables=%llu links=%llu mappers=%llu",
		 s.size, s.level, s.data_pages, s.table_pages, s.links,
		 s.mappers);
}

/* Every page (every MiB above 64 MiB) of @p holds its page number + 1. */
static unsigned long step(unsigned long sz)
{
	return sz > (64 << 20) ? (1 << 20) : 4096;
}

int main(void)
{
	for (unsigned long sz = 4096; sz <= (4UL << 30); sz *= 8) {
		int fd = open("/dev/morsel/a", O_RDWR | O_CREAT | O_TRUNC, 0600);
		struct morsel_map mm = { .argsz = sizeof(mm) };
		int status, map_ok;
		char *p, c;
		pid_t pid;

		tap_require(fd >= 0);
		tap_require(ftruncate(fd, sz) == 0);
		p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		tap_require(p != MAP_FAILED);
		tap_diag("sz=%lu p=%p", sz, (void *)p);
		for (unsigned long i = 0; i < sz; i += step(sz))
			p[i] = (char)(i >> 12) + 1;
		st(fd);
		pid = fork();
		if (pid == 0) {
			char *q = mmap(NULL, sz, PROT_READ | PROT_WRITE,
				       MAP_SHARED, fd, 0);

			tap_require(q != MAP_FAILED);
			for (unsigned long i = 0; i < sz; i += step(sz))
				tap_require(q[i] == (char)((i >> 12) + 1));
			q[0] = 'X';
			/* inherited mapping */
			tap_require(p[0] == 'X');
			_exit(0);
		}
		tap_require(pid > 0);
		waitpid(pid, &status, 0);
		tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		       "%lu bytes: a child reads every page through its own mapping and stores through it, the inherited mapping sees the store",
		       sz);
		tap_ok(p[0] == 'X' && pread(fd, &c, 1, 0) == 1 && c == 'X',
		       "%lu bytes: the parent's mapping and pread see the child's store",
		       sz);
		mm.addr = (unsigned long)p;
		mm.length = sz;
		map_ok = ioctl(fd, MORSEL_IOC_MAP, &mm) == 0;
		tap_ok(map_ok, "%lu bytes: MORSEL_IOC_MAP of the whole mapping", sz);
		tap_diag("eager linked=%llu pages=%llu", mm.linked, mm.pages);
		st(fd);
		tap_ok(munmap(p, sz) == 0, "%lu bytes: munmap", sz);
		st(fd);
		close(fd);
		unlink("/dev/morsel/a");
	}
	return tap_done();
}
