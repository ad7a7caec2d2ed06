#define _GNU_SOURCE
/*
 * Pressure (issue 13, item 4, in part):
 *  - 500 processes map the same morsel at once, each through its own
 *    mmap (links to the same tables), store to their own word, see every
 *    other process's word, and exit; the mapper, link and data counters
 *    come back to where they were;
 *  - a soak of 10,000 cycles of create, map, store, freeze, split, store
 *    in the child, punch, unmap and destroy: the module's counters end at
 *    their baseline and the free memory is back within 8 MiB (slab caches
 *    may keep a little).
 */
#include <linux/falloc.h>
#include "vm.h"

#define PROCS	500
#define CYCLES	10000

static long mem_available_kib(void)
{
	char line[128];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static void many_mappers(void)
{
	struct totals t0 = totals();
	int fd = mkobj("/dev/morsel/many", 4 * MiB), go[2], ready[2], i, bad;
	volatile long *p;
	pid_t pids[PROCS];
	char c;

	tap_require(pipe(go) == 0 && pipe(ready) == 0);
	for (i = 0; i < PROCS; i++) {
		pids[i] = fork();
		tap_require(pids[i] >= 0, "fork %d", i);
		if (pids[i] == 0) {
			volatile long *q = mmap(NULL, 4 * MiB,
						PROT_READ | PROT_WRITE,
						MAP_SHARED, fd, 0);
			int j, seen = 0;

			close(go[1]);
			if (q == MAP_FAILED)
				_exit(1);
			q[i * 8] = i + 1;	/* one cache line each */
			if (write(ready[1], "r", 1) != 1 ||
			    read(go[0], &c, 1) != 0)	/* EOF: all are ready */
				_exit(2);
			for (j = 0; j < PROCS; j++)
				seen += q[j * 8] == j + 1;
			_exit(seen == PROCS ? 0 : 3);
		}
	}
	close(go[0]);
	close(ready[1]);
	for (i = 0; i < PROCS; i++)
		tap_require(read(ready[0], &c, 1) == 1, "child %d ready", i);
	tap_ok(mstat(fd).mappers == PROCS,
	       "%d processes map one morsel at once (%llu mappers, %llu links)",
	       PROCS, mstat(fd).mappers, mstat(fd).links);
	close(go[1]);	/* go */
	for (i = 0, bad = 0; i < PROCS; i++) {
		int st = wait_status(pids[i]);

		bad += !CHILD_OK(st);
	}
	tap_ok(bad == 0, "  each saw every other's store (%d failed)", bad);
	p = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	tap_ok(p != MAP_FAILED && p[(PROCS - 1) * 8] == PROCS,
	       "  and the data stays in the object");
	munmap((void *)p, 4 * MiB);
	close(ready[0]);
	close(fd);
	unlink("/dev/morsel/many");
	tap_ok(totals_back(t0), "  every counter is back at its baseline");
}

static void soak(void)
{
	long avail0 = mem_available_kib(), avail;
	struct totals t0 = totals();
	unsigned char *p, *c;
	int i, fd, cfd, bad = 0;

	for (i = 0; i < CYCLES && !bad; i++) {
		fd = open("/dev/morsel/soak", O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, 4 * MiB)) {
			bad = 1;
			break;
		}
		p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			bad = 2;
			break;
		}
		p[i % 1024 * 4096] = (unsigned char)i;
		p[2 * MiB + 5] = 1;
		munmap(p, 4 * MiB);
		if (freeze(fd) || (cfd = split(fd)) < 0) {
			bad = 3;
			break;
		}
		c = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
		if (c == MAP_FAILED || c[i % 1024 * 4096] != (unsigned char)i) {
			bad = 4;
			break;
		}
		c[2 * MiB + 5] = 2;
		if (fallocate(cfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      0, 4 * MiB))
			bad = 5;
		munmap(c, 4 * MiB);
		close(cfd);
		close(fd);
		unlink("/dev/morsel/soak");
	}
	tap_ok(!bad && i == CYCLES,
	       "%d cycles of create, map, store, freeze, split, store, punch, destroy (stopped at %d, step %d)",
	       CYCLES, i, bad);
	tap_ok(totals_back(t0), "  every counter is back at its baseline");
	avail = mem_available_kib();
	tap_ok(avail0 - avail < 8192,
	       "  free memory back within 8 MiB (%ld KiB before, %ld after)",
	       avail0, avail);
}

int main(void)
{
	watchdog(1500);
	phase = "many mappers";
	many_mappers();
	phase = "soak";
	soak();
	return tap_done();
}
