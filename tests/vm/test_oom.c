#define _GNU_SOURCE
/*
 * The OOM killer meets processes that hold links (issue 13, item 4): in a
 * memory cgroup limited to 64 MiB,
 *  - a process stores to every page of a 256 MiB morsel it maps: its
 *    frames are charged to the cgroup, so the cgroup runs out and the
 *    process is killed (SIGKILL) in the middle of its faults;
 *  - a process that maps a morsel (links) fills anonymous memory until it
 *    is killed;
 * after each, the object's mappers and links are back to zero, what was
 * stored is still there, and unlinking the object gives the cgroup its
 * charge back.  vm/run fails the run on any kernel BUG or WARNING (the
 * OOM report itself is neither).
 */
#include <sys/mount.h>
#include "vm.h"

#define CG	"/sys/fs/cgroup"
#define OOM_CG	CG "/morsel-oom"
#define OBJ	"/dev/morsel/oom"

static void join_cgroup(void)
{
	char pid[32];

	snprintf(pid, sizeof(pid), "%d", getpid());
	if (write_file(OOM_CG "/cgroup.procs", pid))
		_exit(90);
}

/* Run @fn in a child in the limited cgroup; its wait status. */
static int in_cgroup(void (*fn)(void))
{
	pid_t pid = fork();

	tap_require(pid >= 0);
	if (pid == 0) {
		join_cgroup();
		fn();
		_exit(0);
	}
	return wait_status(pid);
}

static void store_to_morsel(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600);
	volatile unsigned char *p;
	long off;

	if (fd < 0 || ftruncate(fd, 256 * MiB))
		_exit(91);
	p = mmap(NULL, 256 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		_exit(92);
	for (off = 0; off < 256 * MiB; off += 4096)
		p[off] = 'o';
	_exit(93);	/* 256 MiB fitted in a 64 MiB cgroup? */
}

static void fill_anon(void)
{
	int fd = open(OBJ, O_RDWR);
	volatile unsigned char *p, *a;
	long off;

	if (fd < 0)
		_exit(94);
	p = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || p[0] != 'o')
		_exit(95);
	p[4096] = 'q';
	a = mmap(NULL, 512 * MiB, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (a == MAP_FAILED)
		_exit(96);
	for (off = 0; off < 512 * MiB; off += 4096)
		a[off] = 1;
	_exit(97);
}

int main(void)
{
	long before, charged;
	unsigned char c = 0;
	int st, fd;

	watchdog(600);
	mkdir(CG, 0755);
	if (access(CG "/cgroup.procs", F_OK))
		tap_require(mount("none", CG, "cgroup2", 0, NULL) == 0);
	tap_require(write_file(CG "/cgroup.subtree_control", "+memory") == 0);
	rmdir(OOM_CG);
	tap_require(mkdir(OOM_CG, 0755) == 0);
	tap_require(write_file(OOM_CG "/memory.max", "67108864") == 0 &&
		    write_file(OOM_CG "/memory.swap.max", "0") == 0);
	before = read_long_file(OOM_CG "/memory.current");

	st = in_cgroup(store_to_morsel);
	tap_ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
	       "stores to a morsel past the cgroup's 64 MiB: the OOM killer kills the process (status %#x)",
	       st);
	fd = open(OBJ, O_RDWR);
	tap_require(fd >= 0);
	for (st = 0; st < 50 && mstat(fd).mappers; st++)
		usleep(100000);
	tap_ok(mstat(fd).mappers == 0 && mstat(fd).links == 0,
	       "  its mapping and links are gone (%llu mappers, %llu links)",
	       mstat(fd).mappers, mstat(fd).links);
	charged = read_long_file(OOM_CG "/memory.current");
	tap_ok(pread(fd, &c, 1, 0) == 1 && c == 'o' &&
	       mstat(fd).data_pages > 1000 && charged > 32 * MiB,
	       "  what it stored stays, charged to the cgroup (%llu pages, %ld KiB)",
	       mstat(fd).data_pages, charged >> 10);

	/*
	 * The cgroup is full of the object's frames: give it room for the
	 * next process's own page tables and link records, or the OOM
	 * killer may take it before its store, not during its anon fill.
	 */
	{
		char max[32];

		snprintf(max, sizeof(max), "%lld",
			 read_long_file(OOM_CG "/memory.current") + 16 * MiB);
		tap_require(write_file(OOM_CG "/memory.max", max) == 0);
	}
	st = in_cgroup(fill_anon);
	tap_ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
	       "a process holding links fills anonymous memory: killed (status %#x)",
	       st);
	c = 0;
	/*
	 * The killed task's address space may be torn down by its last
	 * user a moment after the wait returns (an OOM victim's mm is
	 * also held by the reaper): give it up to 5 s.
	 */
	for (st = 0; st < 50 && mstat(fd).mappers; st++)
		usleep(100000);
	tap_diag("mappers gone after %d ms", st * 100);
	tap_ok(pread(fd, &c, 1, 4096) == 1 && mstat(fd).mappers == 0 &&
	       mstat(fd).links == 0 && c == 'q',
	       "  its links are gone, its store stays (%llu mappers, %llu links, '%c')",
	       mstat(fd).mappers, mstat(fd).links, c ? c : '0');
	close(fd);
	unlink(OBJ);
	tap_ok(read_long_file(OOM_CG "/memory.current") - before < 8 * MiB,
	       "unlinking the object gives the cgroup its charge back (%ld KiB)",
	       read_long_file(OOM_CG "/memory.current") >> 10);
	tap_ok(total("mappers") == 0 && total("links") == 0,
	       "module-wide: no mapper, no link left");
	rmdir(OOM_CG);
	return tap_done();
}
