#define _GNU_SOURCE
/*
 * Usage figures: MORSEL_IOC_STAT (size, level, data_pages, table_pages,
 * links, mappers), the module totals in /sys/kernel/morsel and the
 * per-object lines of /sys/kernel/debug/morsel/objects agree with each
 * other, move as objects are created, written, mapped, touched, forked,
 * unmapped, punched and freed, and return to their baseline.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

/* Do the totals differ from @base by exactly the given deltas? */
static int moved(struct totals base, long m, long d, long t, long l, long mp)
{
	struct totals now = totals();
	long want[T_N] = { m, d, t, l, mp };
	int i, ok = 1;

	for (i = 0; i < T_N; i++)
		if (now.v[i] - base.v[i] != want[i]) {
			tap_diag("%s moved by %ld, want %ld", tnames[i],
				 now.v[i] - base.v[i], want[i]);
			ok = 0;
		}
	return ok;
}

/* STAT equals the given figures? */
static int stat_is(int fd, long long size, int level, long long data,
		   long long tables, long long links, long long mappers)
{
	struct morsel_stat s;

	if (stat_of(fd, &s))
		return 0;
	if ((long long)s.size == size && (int)s.level == level &&
	    (long long)s.data_pages == data && (long long)s.table_pages == tables &&
	    (long long)s.links == links && (long long)s.mappers == mappers)
		return 1;
	tap_diag("STAT size %llu level %u data %llu tables %llu links %llu mappers %llu",
		 (unsigned long long)s.size, s.level,
		 (unsigned long long)s.data_pages,
		 (unsigned long long)s.table_pages, (unsigned long long)s.links,
		 (unsigned long long)s.mappers);
	return 0;
}

/* debugfs line of @fd's inode agrees with STAT? */
static int dbg_agrees(int fd)
{
	struct morsel_stat s;
	struct stat st;
	long long f[6];

	if (fstat(fd, &st) || stat_of(fd, &s) || !object_figures(st.st_ino, f, 6))
		return 0;
	if (f[0] == (long long)s.size && f[1] == s.level &&
	    f[2] == (long long)s.data_pages && f[3] == (long long)s.table_pages &&
	    f[4] == (long long)s.links && f[5] == (long long)s.mappers)
		return 1;
	tap_diag("debugfs: %lld %lld %lld %lld %lld %lld", f[0], f[1], f[2], f[3],
		 f[4], f[5]);
	return 0;
}

static long address_spaces(void)
{
	char *p;

	if (read_objects() < 0)
		return -1;
	p = strstr(objects_text, "# address_spaces ");
	return p ? atol(p + strlen("# address_spaces ")) : -1;
}

static long long blocks_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_blocks;
}

int main(void)
{
	const char *path = "/dev/morsel/us_a";
	struct totals base, t;
	struct stat st;
	char *p, *p2, *r;
	long as0;
	int fd, i;

	base = totals();
	for (i = 0; i < T_N; i++)
		if (base.v[i] < 0)
			break;
	tap_ok(i == T_N, "/sys/kernel/morsel/{morsels,data_pages,table_pages,links,mappers} read as numbers");
	tap_ok(read_objects() > 0 &&
	       !strncmp(objects_text, "ino size level data_pages table_pages "
			"links mappers replaced replaced_direct\n", 77),
	       "debugfs objects starts with its header line");
	as0 = address_spaces();
	tap_ok(as0 >= 0, "debugfs objects ends with # address_spaces (%ld)", as0);

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && fstat(fd, &st) == 0, "create");
	tap_ok(moved(base, 1, 0, 0, 0, 0), "create: morsels +1");
	tap_ok(stat_is(fd, 0, 0, 0, 0, 0, 0) && dbg_agrees(fd),
	       "new object: STAT and debugfs all zero");

	tap_require(ftruncate(fd, 4 * MiB) == 0, "4M");
	pwrite(fd, "a", 1, 0);
	pwrite(fd, "b", 1, PG);
	pwrite(fd, "c", 1, 100 * PG);
	pwrite(fd, "d", 1, 3 * MiB);
	tap_ok(stat_is(fd, 4 * MiB, 2, 4, 3, 0, 0) && dbg_agrees(fd),
	       "4 pages written in 2 chunks: data 4, tables 3 (PMD + 2 PTE)");
	tap_ok(moved(base, 1, 4, 3, 0, 0), "module totals: +4 data, +3 tables");
	tap_ok(blocks_of(fd) == 32, "st_blocks 32 = 4 pages * 8");

	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	tap_ok(stat_is(fd, 4 * MiB, 2, 4, 3, 0, 1) && dbg_agrees(fd) &&
	       moved(base, 1, 4, 3, 0, 1), "mmap: mappers 1, no links yet");
	tap_ok(address_spaces() == as0 + 1, "mmap: one more address space recorded");
	tap_ok(p[0] == 'a' && stat_is(fd, 4 * MiB, 2, 4, 3, 1, 1) &&
	       moved(base, 1, 4, 3, 1, 1), "touching chunk 0: links 1");
	tap_ok(p[3 * MiB] == 'd' && stat_is(fd, 4 * MiB, 2, 4, 3, 2, 1) &&
	       dbg_agrees(fd) && moved(base, 1, 4, 3, 2, 1),
	       "touching chunk 1: links 2");
	p[5 * PG] = 'e';
	tap_ok(stat_is(fd, 4 * MiB, 2, 5, 3, 2, 1) && moved(base, 1, 5, 3, 2, 1),
	       "a store into a hole through a link: data 5, no new link");

	p2 = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p2 != MAP_FAILED, "mmap 2");
	tap_ok(p2[PG] == 'b' && p2[3 * MiB] == 'd' &&
	       stat_is(fd, 4 * MiB, 2, 5, 3, 4, 2) && moved(base, 1, 5, 3, 4, 2),
	       "second mapping touched in both chunks: links 4, mappers 2");
	tap_ok(address_spaces() == as0 + 1, "same process: still one address space");

	/* fork: the child's VMAs count, its links only after it touches. */
	{
		int pfd[2], status;
		struct morsel_stat cs[2];
		pid_t pid;

		tap_require(pipe(pfd) == 0, "pipe");
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			stat_of(fd, &cs[0]);
			(void)*(volatile char *)p;
			stat_of(fd, &cs[1]);
			_exit(write(pfd[1], cs, sizeof(cs)) == sizeof(cs) ? 0 : 1);
		}
		close(pfd[1]);
		memset(cs, 0, sizeof(cs));
		tap_ok(read(pfd[0], cs, sizeof(cs)) == sizeof(cs) &&
		       cs[0].mappers == 4 && cs[0].links == 4,
		       "fork child: mappers 4 (2 inherited VMAs), links 4 (nothing copied) (got %llu %llu)",
		       (unsigned long long)cs[0].mappers, (unsigned long long)cs[0].links);
		tap_ok(cs[1].links == 5, "child touches chunk 0: links 5 (got %llu)",
		       (unsigned long long)cs[1].links);
		waitpid(pid, &status, 0);
		close(pfd[0]);
		tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
		       stat_is(fd, 4 * MiB, 2, 5, 3, 4, 2) && moved(base, 1, 5, 3, 4, 2),
		       "child exit: back to links 4, mappers 2");
	}

	tap_ok(munmap(p2, 4 * MiB) == 0 && stat_is(fd, 4 * MiB, 2, 5, 3, 2, 1) &&
	       moved(base, 1, 5, 3, 2, 1), "munmap of the second mapping: links 2, mappers 1");
	tap_ok(munmap(p + 2 * MiB, 2 * MiB) == 0 && stat_is(fd, 4 * MiB, 2, 5, 3, 1, 1) &&
	       dbg_agrees(fd), "munmap of the upper half: links 1");
	tap_ok(munmap(p, 2 * MiB) == 0 && stat_is(fd, 4 * MiB, 2, 5, 3, 0, 0) &&
	       moved(base, 1, 5, 3, 0, 0), "munmap of the rest: no links, no mappers");

	/* Read-only mappings link read-only twins of the PTE tables. */
	r = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	tap_require(r != MAP_FAILED, "mmap ro");
	tap_ok(r[0] == 'a' && r[3 * MiB] == 'd' && stat_is(fd, 4 * MiB, 2, 5, 5, 2, 1) &&
	       moved(base, 1, 5, 5, 2, 1) && dbg_agrees(fd),
	       "read-only mapping read in both chunks: 2 links to 2 new read-only twin tables");
	munmap(r, 4 * MiB);
	tap_ok(stat_is(fd, 4 * MiB, 2, 5, 5, 0, 0),
	       "munmap of the read-only mapping: no links, twins stay with their tables");

	/* Punch and shrink. */
	tap_ok(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * MiB) == 0 &&
	       stat_is(fd, 4 * MiB, 2, 1, 3, 0, 0) && moved(base, 1, 1, 3, 0, 0) &&
	       dbg_agrees(fd) && blocks_of(fd) == 8,
	       "punch of chunk 0, unmapped: data 1, its emptied table and twin freed (3 left), st_blocks 8");
	tap_ok(ftruncate(fd, 2 * MiB) == 0 && stat_is(fd, 2 * MiB, 1, 0, 0, 0, 0) &&
	       moved(base, 1, 0, 0, 0, 0) && dbg_agrees(fd),
	       "shrink to 2 MiB: level 1, data 0, no table (chunk 0 had none left)");

	/* A PUD link. */
	tap_require(ftruncate(fd, 2 * GiB) == 0, "2G");
	p = mmap(NULL, 2 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap 2G");
	tap_ok(((uintptr_t)p & (GiB - 1)) == 0, "2 GiB mapping placed 1 GiB aligned");
	p[GiB + 5 * MiB] = 'x';
	tap_ok(stat_is(fd, 2 * GiB, 3, 1, 3, 1, 1) && moved(base, 1, 1, 3, 1, 1) &&
	       dbg_agrees(fd),
	       "store at 1G+5M of a 2 GiB mapping: one PUD link; 3 tables (PUD, PMD, PTE)");
	p[0] = 'y';
	tap_ok(stat_is(fd, 2 * GiB, 3, 2, 5, 2, 1) && moved(base, 1, 2, 5, 2, 1),
	       "store at 0: a second PUD link, 5 tables (another PMD and PTE)");
	tap_ok(mprotect(p, 2 * GiB, PROT_READ) == 0 && stat_is(fd, 2 * GiB, 3, 2, 5, 0, 1),
	       "mprotect removes the links");
	/* Read-only: 2 MiB twins, never PUD links. */
	tap_ok(p[0] == 'y' && p[GiB + 5 * MiB] == 'x' &&
	       stat_is(fd, 2 * GiB, 3, 2, 7, 2, 1),
	       "read-only reads link two 2 MiB twins, both new");
	munmap(p, 2 * GiB);
	tap_ok(stat_is(fd, 2 * GiB, 3, 2, 7, 0, 0) && moved(base, 1, 2, 7, 0, 0),
	       "munmap: no links, no mappers");

	/* Unlink and close. */
	tap_ok(unlink(path) == 0 && moved(base, 1, 2, 7, 0, 0) && dbg_agrees(fd),
	       "unlinked while open: still listed and counted");
	close(fd);
	tap_ok(moved(base, 0, 0, 0, 0, 0), "close: every total back to its baseline");
	{
		long long f[6];

		tap_ok(!object_figures(st.st_ino, f, 6), "close: the object's debugfs line is gone");
	}

	/* Many objects: one line each. */
	{
		int fds[20], n = 0, lines = 0;
		char *q;

		for (i = 0; i < 20; i++) {
			char name[64];

			snprintf(name, sizeof(name), "/dev/morsel/us_m%d", i);
			fds[i] = open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
			if (fds[i] >= 0 && ftruncate(fds[i], (i + 1) * PG) == 0 &&
			    pwrite(fds[i], "z", 1, i * PG) == 1)
				n++;
		}
		t = totals();
		read_objects();
		for (q = strchr(objects_text, '\n'); q && q[1]; q = strchr(q + 1, '\n'))
			if (q[1] != '#')
				lines++;
		tap_ok(n == 20 && t.v[T_MORSELS] == base.v[T_MORSELS] + 20 &&
		       lines == t.v[T_MORSELS],
		       "20 objects: morsels +20, one debugfs line per object (%d lines)",
		       lines);
		tap_ok(moved(base, 20, 20, 20, 0, 0), "20 one-page objects: +20 data, +20 tables");
		for (i = 0; i < 20; i++) {
			char name[64];

			snprintf(name, sizeof(name), "/dev/morsel/us_m%d", i);
			close(fds[i]);
			unlink(name);
		}
		tap_ok(moved(base, 0, 0, 0, 0, 0), "all 20 freed: totals at baseline");
	}
	/* Records of exited children are freed after an SRCU grace period. */
	for (i = 0; i < 200 && address_spaces() > as0 + 1; i++)
		usleep(10000);
	tap_ok(address_spaces() <= as0 + 1,
	       "address_spaces not growing (%ld, baseline %ld)", address_spaces(), as0);
	return tap_done();
}
