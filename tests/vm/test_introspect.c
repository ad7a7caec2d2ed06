#define _GNU_SOURCE
/*
 * Kernel walkers that read a process's page tables must cope with linked
 * morsel tables: smaps, pagemap, numa_maps, mincore, msync, mlock and
 * userfaultfd registration.  The harness fails the run on any kernel
 * warning; here each call must give a sane answer or a clean error.
 */
#include <fcntl.h>
#include <linux/morsel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm.h"

#define SIZE (1UL << 30)

static long slurp(const char *path)
{
	char buf[4096];
	long total = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	close(fd);
	return n < 0 ? -1 : total;
}

int main(void)
{
	struct morsel_map mm = { .argsz = sizeof(mm) };
	unsigned char vec[512];
	uint64_t entry;
	char *p, *q;
	int fd, pm;

	fd = open("/dev/morsel/introspect", O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0);
	tap_require(ftruncate(fd, SIZE) == 0);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	q = mmap(NULL, 4UL << 20, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED && q != MAP_FAILED);
	mm.addr = (uintptr_t)p;
	mm.length = SIZE;
	tap_require(ioctl(fd, MORSEL_IOC_MAP, &mm) == 0);
	p[0] = 1;
	p[SIZE - 1] = 2;
	tap_require(q[0] == 1);

	tap_ok(slurp("/proc/self/smaps") > 0, "/proc/self/smaps reads");
	tap_ok(slurp("/proc/self/numa_maps") >= 0 || errno == ENOENT,
	       "/proc/self/numa_maps reads (or is absent)");
	pm = open("/proc/self/pagemap", O_RDONLY);
	tap_require(pm >= 0);
	tap_ok(pread(pm, &entry, sizeof(entry),
		     ((uintptr_t)p / 4096) * sizeof(entry)) == sizeof(entry),
	       "pagemap entry of a linked page reads (0x%llx)",
	       (unsigned long long)entry);
	close(pm);
	tap_ok(mincore(p, sizeof(vec) * 4096, vec) == 0 || errno == ENOMEM,
	       "mincore answers");
	tap_ok(msync(p, SIZE, MS_SYNC) == 0, "msync(MS_SYNC) succeeds");
	tap_ok(mlock(p, 4UL << 20) == 0 || errno == ENOMEM || errno == EPERM ||
	       errno == EAGAIN, "mlock answers");
	munlock(p, 4UL << 20);
	tap_ok(p[0] == 1 && p[SIZE - 1] == 2 && q[0] == 1,
	       "data intact after the walkers");
	tap_ok(munmap(p, SIZE) == 0 && munmap(q, 4UL << 20) == 0,
	       "munmap both mappings");
	close(fd);
	tap_ok(unlink("/dev/morsel/introspect") == 0, "unlink");
	return tap_done();
}
