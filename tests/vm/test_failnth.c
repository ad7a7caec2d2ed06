#define _GNU_SOURCE
/*
 * Allocation failures, walked one at a time (issue 13, item 3).  On a
 * kernel with fault injection (the debug kernel of make test-debug; the
 * stock kernel has none: skipped), /proc/thread-self/fail-nth makes the
 * N-th allocation (slab or page) of this thread fail.  For each operation
 * below, N runs from 1 until the operation makes fewer than N
 * allocations: every allocation it makes, in the module or in the kernel
 * paths around it, fails once.  After each run the operation must have
 * succeeded or failed with an errno (no crash, no hang), and the module's
 * counters must be back at their baseline once it cleaned up; vm/run
 * fails the run on any kernel report (KASAN, lockdep, a WARNING, a leak
 * found by kmemleak).  min-order is set to 0: by default fail_page_alloc
 * leaves single pages alone, so no frame or table page would ever fail.
 *
 * The operations (walks[] below) are chosen so that, together, they fail
 * every allocation site of kmod/ a user can reach (scripts/alloc-sites.sh
 * lists them; docs/debug-kernel.md has the table): create/write/punch/
 * shrink, mmap with MORSEL_IOC_MAP populate, freeze/split/copy, SCAN and
 * xattrs, save/load, a mapping made page by page, a read-only mapping
 * (twin and hole tables), fork of a mapped process, mappings of a
 * copy-on-write child (PUD and PMD relinks, shrink below the root), resize
 * while mapped, a shrink of a child below its roots, a PUD-linked
 * mapping, FILL, a freeze of io_uring-pinned
 * pages (their copies), a second mount.  "test_failnth --once" runs each
 * once without injection, on any kernel: that the operations themselves
 * work.
 *
 * Which allocation sites of the module a walk failed (make failnth-sites,
 * scripts/failnth-sites.sh): with "morsel_failnth_sites" on the kernel
 * command line, every injected failure prints its stack (the fault
 * attributes' verbose=2), and after each run this program reads it back
 * from /dev/kmsg and logs one line (a kernel log record, see print_sites())
 *   failnth-site: PHASE n=N err=ERRNO KIND CALLEE FRAME...
 * KIND: slab or page (which attribute failed), or "silent" (a __GFP_NOWARN
 * allocation: no stack); CALLEE: the kernel function the innermost morsel
 * frame called (or "-"), FRAMEs: the morsel frames, innermost first ("-":
 * none, the allocation was the kernel's own).  The host maps the frames
 * to lines of kmod/ with the debug module's symbols.
 */
#include <sys/mount.h>
#include <sys/rseq.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <linux/io_uring.h>
#include <linux/magic.h>
#include "libmorsel.h"
#include "vm.h"

#define OBJ	"/dev/morsel/failnth"
#define SRC	"/tmp/failnth.src"
#define MNT	"/tmp/failnth-mnt"

static int fail_nth_fd = -1;
static int kmsg_fd = -1;	/* sites mode: /dev/kmsg, non-blocking */
static FILE *sites_out;		/* sites mode: the walk's lines so far */

/* Skip what the kernel log holds so far. */
static void kmsg_drain(void)
{
	char rec[2048];

	for (;;) {
		ssize_t r = read(kmsg_fd, rec, sizeof(rec));

		if (r <= 0 && !(r < 0 && errno == EPIPE))
			return;
	}
}

/*
 * The stacks of the failures injected in run @n of the phase (one with
 * fail-nth, all of one call with make-it-fail): one line each.
 */
static void report_site(int n, int err)
{
	char rec[2048], frames[896] = "", kind[16] = "silent", callee[128] = "-";
	char last[128] = "-";
	int injected = 0, done = 0, nframes = 0, lines = 0;

	for (;;) {
		ssize_t r = read(kmsg_fd, rec, sizeof(rec) - 1);
		int header = 0;
		char *msg, *e, *p;

		if (r < 0 && errno == EPIPE)
			continue;	/* overwritten records: go on */
		if (r > 0) {
			rec[r] = 0;
			msg = strchr(rec, ';');
			if (!msg)
				continue;
			msg++;
			e = strchr(msg, '\n');
			if (e)
				*e = 0;
			header = strstr(msg, "FAULT_INJECTION: forcing a failure") != NULL;
		}
		/* The end of the log or the next failure: the line so far. */
		if ((r <= 0 || header) && injected) {
			fprintf(sites_out, "failnth-site: %s n=%d err=%d %s %s%s\n",
				phase, n, err, kind, callee, nframes ? frames : " -");
			lines++;
		}
		if (r <= 0)
			break;
		if (header) {
			injected = 1;
			done = nframes = 0;
			frames[0] = 0;
			snprintf(callee, sizeof(callee), "-");
			snprintf(last, sizeof(last), "-");
			snprintf(kind, sizeof(kind), "%s",
				 strstr(msg, "fail_page_alloc") ? "page" : "slab");
			continue;
		}
		if (!injected || done)
			continue;
		if (strstr(msg, "</TASK>")) {
			done = 1;
			continue;
		}
		/* " func+0x1a/0x200 [morsel]"; "? ..." frames are guesses. */
		if (msg[0] != ' ' || msg[1] == '?' || msg[1] == ' ' || msg[1] == '<')
			continue;
		p = strstr(msg, " [morsel]");
		if (!p) {
			if (!nframes)
				snprintf(last, sizeof(last), "%.*s",
					 (int)strcspn(msg + 1, "+ "), msg + 1);
			continue;
		}
		if (!nframes++)
			snprintf(callee, sizeof(callee), "%s", last);
		if (strlen(frames) + (p - msg) + 2 < sizeof(frames))
			snprintf(frames + strlen(frames),
				 sizeof(frames) - strlen(frames), " %.*s",
				 (int)(p - msg - 1), msg + 1);
	}
	if (!lines)	/* a __GFP_NOWARN allocation: no stack */
		fprintf(sites_out, "failnth-site: %s n=%d err=%d silent - -\n",
			phase, n, err);
}

/*
 * The walk's lines, once it is done, as kernel log records (level 4, so
 * the console shows them): the console prints a record whole, while a
 * line on stdout can be cut by a record the console is still catching
 * up on (session 10: d_make_root()'s failure in the mount walk was lost
 * that way, its line split by the Mem-Info of an earlier failure).
 * Without /dev/kmsg for writing, stdout.
 */
static int kmsg_out_fd = -1;

static void print_sites(void)
{
	char line[1280], rec[1300];

	rewind(sites_out);
	while (fgets(line, sizeof(line), sites_out)) {
		int len = snprintf(rec, sizeof(rec), "<4>%s", line);

		if (kmsg_out_fd < 0 || write(kmsg_out_fd, rec, len) != len)
			fputs(line, stdout);
	}
	fflush(stdout);
	rewind(sites_out);
	if (ftruncate(fileno(sites_out), 0))
		tap_diag("cannot empty the sites file");
}

static int set_fail_nth(unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	return pwrite(fail_nth_fd, buf, len, 0) == len ? 0 : -1;
}

/* Was the injected failure still pending (the operation made fewer)? */
static int fail_nth_pending(void)
{
	char buf[16] = "";

	if (pread(fail_nth_fd, buf, sizeof(buf) - 1, 0) <= 0)
		return 0;
	return atoi(buf) != 0;
}

#define ERR(x)	((x) < 0 ? -errno : 0)

/* The step of an operation that returned its error, for the report. */
static const char *step;

/*
 * A write of more than a page may stop early when an allocation fails
 * after its first page went in: a short count, which is legal and clean,
 * and no errno (session 9: a stale EINVAL was taken for its error).
 */
#define SHORT_WRITE	1

static int write_all(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t w = pwrite(fd, buf, n, off);

	if (w < 0)
		return -errno;
	return (size_t)w == n ? 0 : SHORT_WRITE;
}

static int op_create_write(void)
{
	int fd, err = 0;
	char buf[8192];

	step = "open O_CREAT";
	fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -errno;
	memset(buf, 'w', sizeof(buf));
	step = "ftruncate 4 MiB";
	err = ERR(ftruncate(fd, 4 * MiB));
	if (!err && (step = "pwrite at 0"))
		err = write_all(fd, buf, sizeof(buf), 0);
	if (!err && (step = "pwrite at 3 MiB + 5"))
		err = write_all(fd, buf, sizeof(buf), 3 * MiB + 5);
	if (!err && (step = "punch"))
		err = ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    0, 4096));
	if (!err && (step = "ftruncate 1 MiB"))
		err = ERR(ftruncate(fd, 1 * MiB));
	close(fd);
	unlink(OBJ);
	return err;
}

static int op_map(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err;
	struct morsel_map m;
	void *p;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 4 * MiB + 8192));
	p = err ? MAP_FAILED : mmap(NULL, 4 * MiB + 8192, PROT_READ | PROT_WRITE,
				     MAP_SHARED, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		memset(&m, 0, sizeof(m));
		m.argsz = sizeof(m);
		m.addr = (uintptr_t)p;
		m.length = 4 * MiB + 8192;
		m.flags = MORSEL_MAP_POPULATE;
		err = ERR(ioctl(fd, MORSEL_IOC_MAP, &m));
	}
	if (p != MAP_FAILED)
		munmap(p, 4 * MiB + 8192);
	close(fd);
	unlink(OBJ);
	return err;
}

static int op_split(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), cfd = -1, err;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 4 * MiB));
	if (!err && pwrite(fd, "base", 4, 2 * MiB) != 4)
		err = -errno;
	if (!err)
		err = ERR(freeze(fd));
	if (!err) {
		cfd = split(fd);
		err = ERR(cfd);
	}
	if (!err && pwrite(cfd, "kid", 3, 2 * MiB) != 3)
		err = -errno;
	if (!err)
		err = ERR(fallocate(cfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    0, 4096));
	if (cfd >= 0)
		close(cfd);
	close(fd);
	unlink(OBJ);
	return err;
}

static int op_scan_xattr(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err;
	struct morsel_scan sc;
	char v[8];

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 8 * MiB));
	if (!err && pwrite(fd, "s", 1, 5 * MiB) != 1)
		err = -errno;
	if (!err)
		err = morsel_scan(fd, 0, 8 * MiB, MORSEL_SCAN_CLEAN, 0, NULL,
				  NULL, NULL, &sc);
	if (!err)
		err = ERR(fsetxattr(fd, "user.k", "value", 5, 0));
	if (!err && fgetxattr(fd, "user.k", v, sizeof(v)) != 5)
		err = -errno;
	close(fd);
	unlink(OBJ);
	return err;
}

static int op_save_load(void)
{
	const char *paths[] = { "/tmp/failnth.img" };
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err, lfd;
	struct mimg_error e;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 4 * MiB));
	if (!err && pwrite(fd, "saved", 5, 1 * MiB) != 5)
		err = -errno;
	if (!err)
		err = morsel_save(fd, paths[0], NULL, NULL, &e);
	close(fd);
	unlink(OBJ);
	if (!err) {
		lfd = morsel_load(paths, 1, OBJ, NULL, NULL, &e);
		err = lfd < 0 ? lfd : 0;
		if (lfd >= 0)
			close(lfd);
		unlink(OBJ);
	}
	unlink(paths[0]);
	return err;
}

/*
 * The errors a failed allocation may cause: its own, or the next step's
 * when it hit the operation's own clean-up (EEXIST: an unlink between a
 * save and the load of the same name failed).
 */
/*
 * A 2 MiB-aligned address no earlier run used: the process has no page
 * table there yet, so mapping a page by itself must allocate one.
 */
static void *fresh_address(void)
{
	static unsigned long k;

	return (void *)(0x500000000000UL + (k++ % 8192) * (1UL << 30));
}

/*
 * A mapping of three pages: no 2 MiB granule, so page by page; then the
 * same of the object frozen, where a hole maps the zero page.
 */
static int op_pages(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err;
	volatile char *p;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 4 * MiB));
	p = err ? MAP_FAILED : mmap(fresh_address(), 3 * PG, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		(void)p[0];		/* a hole: a new frame (plain mapping) */
		p[PG] = 1;		/* a new frame */
		p[0] = 2;		/* the zero page replaced */
		if (p[PG] != 1 || p[0] != 2)
			err = -EILSEQ;	/* a wrong result */
		munmap((void *)p, 3 * PG);
	}
	/* Frozen, a hole reads as the zero page, mapped by itself. */
	if (!err)
		err = ERR(freeze(fd));
	p = err ? MAP_FAILED : mmap(fresh_address(), 3 * PG, PROT_READ,
				     MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		if (p[2 * PG] != 0 || p[PG] != 1)
			err = -EILSEQ;
		munmap((void *)p, 3 * PG);
	}
	close(fd);
	unlink(OBJ);
	return err;
}

/* MORSEL_IOC_MAP: link what exists (@flags 0), or allocate all first. */
static int map_range(int fd, void *p, size_t len, unsigned int flags)
{
	struct morsel_map m;

	memset(&m, 0, sizeof(m));
	m.argsz = sizeof(m);
	m.addr = (uintptr_t)p;
	m.length = len;
	m.flags = flags;
	return ERR(ioctl(fd, MORSEL_IOC_MAP, &m));
}

/*
 * A read-only mapping of an object that is not frozen: a read-only twin of
 * its table where it has one, the shared hole table where it has none.
 */
static int op_ro_map(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err;
	volatile char *p;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 4 * MiB));
	if (!err && (pwrite(fd, "t", 1, 5) != 1 || pwrite(fd, "u", 1, 2 * MiB + 9) != 1))
		err = -errno;
	p = err ? MAP_FAILED : mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		err = map_range(fd, (void *)p, 4 * MiB, 0);
		if (!err && (p[5] != 't' || p[2 * MiB + 9] != 'u' || p[3 * MiB] != 0))
			err = -EILSEQ;
		munmap((void *)p, 4 * MiB);
	}
	close(fd);
	unlink(OBJ);
	return err;
}

/* fork() of a process with a linked mapping: the child's link record. */
static int op_fork(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err, st;
	volatile char *p;
	pid_t pid;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 4 * MiB));
	p = err ? MAP_FAILED : mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE,
				     MAP_SHARED, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		p[7] = 'f';
		pid = fork();
		if (pid == 0)
			_exit(p[7] == 'f' && (p[2 * MiB] = 'c') == 'c' ? 0 : 1);
		if (pid < 0) {
			err = -errno;
		} else if ((st = wait_status(pid)) < 0) {
			err = -errno;
		} else if (!CHILD_OK(st) || p[2 * MiB] != 'c') {
			tap_diag("fork: child status %#x, parent reads %#x", st,
				 p[2 * MiB]);
			err = -EILSEQ;
		}
		munmap((void *)p, 4 * MiB);
	}
	close(fd);
	unlink(OBJ);
	return err;
}

/*
 * A copy-on-write child of a 2 GiB base that never wrote, shrunk to
 * 1 MiB: each level's root gives way to the table under it, which is
 * the base's, so it is copied first.
 */
static int op_shrink_child(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), cfd = -1, err;
	char b[2];

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 2 * GiB));
	if (!err && (pwrite(fd, "s0", 2, 0) != 2 || pwrite(fd, "s1", 2, 1 * GiB + 7) != 2))
		err = -errno;
	if (!err)
		err = ERR(freeze(fd));
	if (!err) {
		cfd = split(fd);
		err = ERR(cfd);
	}
	if (!err)
		err = ERR(ftruncate(cfd, 1 * MiB));
	if (!err && (pread(cfd, b, 2, 0) != 2 || b[0] != 's' || b[1] != '0'))
		err = -EILSEQ;
	if (cfd >= 0)
		close(cfd);
	close(fd);
	unlink(OBJ);
	return err;
}

/* Resize while mapped: a root one and two levels up, and back down. */
static int op_resize_mapped(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err;
	volatile char *p;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 1 * MiB));
	p = err ? MAP_FAILED : mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE,
				     MAP_SHARED, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		p[9] = 'r';
		err = ERR(ftruncate(fd, 64 * MiB));
		if (!err)
			err = ERR(ftruncate(fd, 2 * GiB));
		if (!err && pwrite(fd, "far", 3, 2 * GiB - 4096) != 3)
			err = -errno;
		if (!err)
			err = ERR(ftruncate(fd, 1 * MiB));
		if (!err && p[9] != 'r')
			err = -EILSEQ;
		munmap((void *)p, 1 * MiB);
	}
	close(fd);
	unlink(OBJ);
	return err;
}

/* A 1 GiB mapping of a 1 GiB object, linked eagerly: one PUD link. */
static int op_map_pud(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err;
	volatile char *p;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 1 * GiB));
	if (!err && pwrite(fd, "pud", 3, 3 * MiB) != 3)
		err = -errno;
	p = err ? MAP_FAILED : mmap(NULL, 1 * GiB, PROT_READ | PROT_WRITE,
				     MAP_SHARED, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		err = map_range(fd, (void *)p, 1 * GiB, 0);
		if (!err && p[3 * MiB] != 'p')
			err = -EILSEQ;
		munmap((void *)p, 1 * GiB);
	}
	close(fd);
	unlink(OBJ);
	return err;
}

/*
 * Mappings of a copy-on-write child of a 2 GiB base, a 1 GiB one (PUD
 * links) and a 4 MiB window (PMD links): a store copies the base's frame
 * and the tables above it, and the fault links again.  Then the child
 * shrinks below its root's reach: the borrowed table under the root is
 * copied to become the root.
 */
static int op_cow_map(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), cfd = -1, err;
	volatile char *p;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 2 * GiB));
	if (!err && (pwrite(fd, "base", 4, 3 * MiB) != 4 ||
		     pwrite(fd, "b2", 2, 5 * MiB) != 2 || pwrite(fd, "b0", 2, 0) != 2))
		err = -errno;
	if (!err)
		err = ERR(freeze(fd));
	if (!err) {
		cfd = split(fd);
		err = ERR(cfd);
	}
	p = err ? MAP_FAILED : mmap(NULL, 1 * GiB, PROT_READ | PROT_WRITE,
				     MAP_SHARED, cfd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		err = map_range(cfd, (void *)p, 1 * GiB, 0);
		if (!err) {
			p[3 * MiB] = 'k';
			if (p[3 * MiB] != 'k' || p[3 * MiB + 1] != 'a')
				err = -EILSEQ;
		}
		munmap((void *)p, 1 * GiB);
	}
	p = err ? MAP_FAILED : mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE,
				     MAP_SHARED, cfd, 4 * MiB);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		err = map_range(cfd, (void *)p, 4 * MiB, 0);
		if (!err) {
			p[1 * MiB] = 'k';
			if (p[1 * MiB] != 'k' || p[1 * MiB + 1] != '2')
				err = -EILSEQ;
		}
		munmap((void *)p, 4 * MiB);
	}
	if (!err)
		err = ERR(ftruncate(cfd, 1 * MiB));
	if (cfd >= 0)
		close(cfd);
	close(fd);
	unlink(OBJ);
	return err;
}

/*
 * MORSEL_IOC_FILL of two pages of the file @src (opened with @oflags) into
 * holes of a new object; page @check must then read the source's 'F's.
 */
static int fill_two_pages(const char *src_path, int oflags, long check)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), src, err;
	uint64_t pages[2] = { 3, 700 };
	struct morsel_fill f;
	char buf[PG];

	if (fd < 0)
		return -errno;
	src = open(src_path, oflags);
	err = src < 0 ? -errno : ERR(ftruncate(fd, 4 * MiB));
	if (!err) {
		memset(&f, 0, sizeof(f));
		f.fd = src;
		f.nr_pages = 2;
		f.pages = (uintptr_t)pages;
		err = morsel_fill(fd, src, &f);
	}
	if (!err && (pread(fd, buf, PG, check * PG) != PG || buf[0] != 'F' ||
		     buf[PG - 1] != 'F'))
		err = -EILSEQ;
	if (src >= 0)
		close(src);
	close(fd);
	unlink(OBJ);
	return err;
}

/* MORSEL_IOC_FILL: two pages of a file in /tmp (page cache) into holes. */
static int op_fill(void)
{
	return fill_two_pages(SRC, O_RDONLY, 700);
}

/*
 * The same from a file on a block device, opened O_DIRECT (the way the
 * loader gives spans to FILL): vfs_iter_read() then allocates (the
 * direct I/O's own state), which a source in /tmp's page cache does not.
 * Only with the suite's disk at /mnt/disk.
 */
#define DISK_SRC	"/mnt/disk/failnth.src"

static int disk_available(void)
{
	struct statfs sf;

	return statfs("/mnt/disk", &sf) == 0 && sf.f_type == EXT4_SUPER_MAGIC;
}

static int op_fill_disk(void)
{
	return fill_two_pages(DISK_SRC, O_RDONLY | O_DIRECT, 3);
}

/* The pages of a plain object pinned (io_uring fixed buffer), then frozen. */
static int op_pin_freeze(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), ring = -1, err;
	struct io_uring_params up;
	struct iovec iov;
	char *p;

	if (fd < 0)
		return -errno;
	err = ERR(ftruncate(fd, 4 * MiB));
	p = err ? MAP_FAILED : mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
				     MAP_SHARED, fd, 0);
	if (!err && p == MAP_FAILED)
		err = -errno;
	if (!err) {
		memset(p, 'p', 2 * PG);
		memset(&up, 0, sizeof(up));
		ring = syscall(__NR_io_uring_setup, 4, &up);
		err = ERR(ring);
		iov.iov_base = p;
		iov.iov_len = 2 * PG;
		if (!err)
			err = ERR(syscall(__NR_io_uring_register, ring,
					  IORING_REGISTER_BUFFERS, &iov, 1));
		munmap(p, 2 * PG);
	}
	if (!err)
		err = ERR(freeze(fd));
	if (ring >= 0)
		close(ring);
	close(fd);
	unlink(OBJ);
	return err;
}

/* A second mount of morselfs: a directory, a file, an O_TMPFILE. */
static int op_mount(void)
{
	int err, fd;

	err = ERR(mount("none", MNT, "morselfs", 0, "size=8M,mode=0755"));
	if (!err) {
		err = ERR(mkdir(MNT "/d", 0700));
		fd = err ? -1 : open(MNT "/d/f", O_RDWR | O_CREAT, 0600);
		if (!err && fd < 0)
			err = -errno;
		if (fd >= 0 && pwrite(fd, "m", 1, 0) != 1 && !err)
			err = -errno;
		if (fd >= 0)
			close(fd);
		fd = err ? -1 : open(MNT, O_RDWR | O_TMPFILE, 0600);
		if (!err && fd < 0)
			err = -errno;
		if (fd >= 0)
			close(fd);
		unlink(MNT "/d/f");
		rmdir(MNT "/d");
		if (umount(MNT) && !err)
			err = -errno;
	}
	return err;
}

/*
 * kvmalloc() of more than a page tries kmalloc() quietly, then vmalloc():
 * one failure never makes it return NULL.  So one call of SCAN and one of
 * FILL with every slab and page allocation of this task failing
 * (make-it-fail, probability 100): their kvmalloc() sites' error paths.
 */
static int make_it_fail_fd = -1;

/*
 * On: the attributes fail every allocation of a task marked make-it-fail
 * (task-filter, probability 100, no limit on times: fail-nth left it at
 * 0), then this thread is marked; off: unmarked through the descriptor
 * opened before (opening one would need memory), then probability 0.
 */
static int all_fail(int on)
{
	static const char *const attrs[] = { "failslab", "fail_page_alloc" };
	char path[128];
	int i, err = 0;

	if (on) {
		make_it_fail_fd = open("/proc/thread-self/make-it-fail", O_WRONLY);
		if (make_it_fail_fd < 0)
			return -1;
		for (i = 0; i < 2; i++) {
			snprintf(path, sizeof(path), "/sys/kernel/debug/%s/task-filter", attrs[i]);
			err |= write_file(path, "Y");
			snprintf(path, sizeof(path), "/sys/kernel/debug/%s/times", attrs[i]);
			err |= write_file(path, "-1");
			snprintf(path, sizeof(path), "/sys/kernel/debug/%s/probability", attrs[i]);
			err |= write_file(path, "100");
		}
		if (!err && pwrite(make_it_fail_fd, "1", 1, 0) != 1)
			err = -1;
		return err;
	}
	if (make_it_fail_fd >= 0) {
		err |= pwrite(make_it_fail_fd, "0", 1, 0) != 1;
		close(make_it_fail_fd);
		make_it_fail_fd = -1;
	}
	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/sys/kernel/debug/%s/probability", attrs[i]);
		err |= write_file(path, "0");
	}
	return err;
}

static int op_kvmalloc_all_fail(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), src, err, e1, e2, e3;
	uint64_t pages[1] = { 3 };
	volatile char *ro = MAP_FAILED;
	struct morsel_scan sc;
	struct morsel_fill f;

	if (fd < 0)
		return -errno;
	src = open(SRC, O_RDONLY);
	err = src < 0 ? -errno : ERR(ftruncate(fd, 4 * MiB));
	/*
	 * And xa_reserve() of a read-only twin: its node allocation, too,
	 * is tried quietly first.  Chunk 0, a hole, is linked beforehand
	 * (the shared hole table: no twin), so the process's own tables
	 * exist for chunk 1, and chunk 1's twin is the object's first: a
	 * reservation in an empty array needs a node (once the first
	 * reservation made one, later ones below 64 need none).
	 */
	if (!err && pwrite(fd, "u", 1, 2 * MiB + 9) != 1)
		err = -errno;
	if (!err) {
		ro = mmap(NULL, 4 * MiB, PROT_READ, MAP_SHARED, fd, 0);
		if (ro == MAP_FAILED || ro[5] != 0)
			err = -EILSEQ;
	}
	if (!err) {
		memset(&f, 0, sizeof(f));
		f.nr_pages = 1;
		f.pages = (uintptr_t)pages;
		if (all_fail(1)) {
			all_fail(0);
			err = -EIO;
		} else {
			e1 = morsel_scan(fd, 0, 4 * MiB, MORSEL_SCAN_CLEAN, 0,
					 NULL, NULL, NULL, &sc);
			e2 = morsel_fill(fd, src, &f);
			e3 = map_range(fd, (void *)(ro + 2 * MiB), 2 * MiB, 0);
			err = all_fail(0) ? -EIO : 0;
			if (!err && (e1 >= 0 || e2 >= 0 || e3 >= 0)) {
				tap_diag("all failing: SCAN %d, FILL %d, MAP %d", e1, e2, e3);
				err = -EILSEQ;
			}
			if (!err && ro[2 * MiB + 9] != 'u')
				err = -EILSEQ;
		}
	}
	if (ro != MAP_FAILED)
		munmap((void *)ro, 4 * MiB);
	if (src >= 0)
		close(src);
	close(fd);
	unlink(OBJ);
	return err;
}

static int clean_errno(int err)
{
	return err == 0 || err == SHORT_WRITE || err == -ENOMEM || err == -ENOSPC || err == -EFAULT ||
	       err == -EINTR || err == -EAGAIN || err == -EIO || err == -EEXIST ||
	       err == -EBUSY;
}

/* Fail each allocation of @op once; report. */
static void walk(const char *name, int (*op)(void))
{
	struct totals t0 = totals();
	int n, err, errors = 0, unclean = 0, leaks = 0, first_bad = 0;

	for (n = 1; n < 5000; n++) {
		if (kmsg_fd >= 0)
			kmsg_drain();
		tap_require(set_fail_nth(n) == 0, "fail-nth %d", n);
		err = op();
		if (fail_nth_pending()) {
			set_fail_nth(0);
			break;
		}
		if (kmsg_fd >= 0)
			report_site(n, err);
		/*
		 * The failure may have hit the operation's own clean-up (an
		 * unlink that found no memory): clean up again, without
		 * injection, before judging what is left.
		 */
		unlink(OBJ);
		unlink("/tmp/failnth.img");
		unlink(MNT "/d/f");
		rmdir(MNT "/d");
		umount(MNT);
		errors += err != 0;
		if (!clean_errno(err)) {
			tap_diag("%s: failing allocation %d made %s return %d",
				 name, n, step ? step : "it", err);
			if (!unclean++)
				first_bad = err;
		}
		step = NULL;
		if (!totals_back(t0) && !leaks++)
			tap_diag("%s: counters not back after failing allocation %d",
				 name, n);
	}
	if (kmsg_fd >= 0)
		print_sites();
	tap_ok(n > 1 && n < 5000 && !unclean && !leaks,
	       "%s: each of its %d allocations failed once: %d runs returned an error, %d an unexpected one (first %d), %d left counters behind",
	       name, n - 1, errors, unclean, first_bad, leaks);
	tap_ok(op() == 0, "%s: and it works again after", name);
}

static int sites_mode(void)
{
	char cmdline[4096] = "";
	int fd = open("/proc/cmdline", O_RDONLY);

	if (fd >= 0) {
		if (read(fd, cmdline, sizeof(cmdline) - 1) < 0)
			cmdline[0] = 0;
		close(fd);
	}
	return strstr(cmdline, "morsel_failnth_sites") != NULL;
}

/* The walks, in order. */
static const struct {
	const char *phase, *what;
	int (*op)(void);
} walks[] = {
	{ "create/write", "create, truncate, write, punch, shrink", op_create_write },
	{ "map", "mmap and MORSEL_IOC_MAP with POPULATE", op_map },
	{ "split", "freeze, split, copy-on-write, punch in the child", op_split },
	{ "scan/xattr", "SCAN with CLEAN, user xattrs", op_scan_xattr },
	{ "save/load", "morsel_save and morsel_load", op_save_load },
	{ "pages", "mappings made page by page: read a hole, store; frozen: the zero page", op_pages },
	{ "ro-map", "read-only mapping of a plain object, MAP (twin and hole tables)", op_ro_map },
	{ "fork", "fork of a process with a linked mapping, the child stores", op_fork },
	{ "cow-map", "mappings of a copy-on-write child (PUD and PMD links), stores, shrink", op_cow_map },
	{ "shrink-child", "a copy-on-write child that never wrote, shrunk below its roots", op_shrink_child },
	{ "resize", "resize while mapped: 1 MiB, 64 MiB, 2 GiB, a write at its end, 1 MiB", op_resize_mapped },
	{ "map-pud", "1 GiB mapping of a 1 GiB object, MAP (a PUD link)", op_map_pud },
	{ "fill", "MORSEL_IOC_FILL of two pages into holes", op_fill },
	{ "fill-disk", "the same from a file on the disk, O_DIRECT", op_fill_disk },
	{ "pin-freeze", "freeze of an object whose pages an io_uring buffer pins", op_pin_freeze },
	{ "mount", "a second morselfs mount: mkdir, create, write, O_TMPFILE, umount", op_mount },
};

/* What the walks need around them: the FILL source, the mount point. */
static void setup(void)
{
	char fill[2 * 4096];
	int fd;

	memset(fill, 'F', sizeof(fill));
	fd = open(SRC, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_require(fd >= 0 && pwrite(fd, fill, sizeof(fill), 0) == (ssize_t)sizeof(fill),
		    "fill source %s", SRC);
	close(fd);
	tap_require(mkdir(MNT, 0700) == 0 || errno == EEXIST, "mkdir %s", MNT);
	if (disk_available()) {
		fd = open(DISK_SRC, O_RDWR | O_CREAT | O_TRUNC, 0600);
		tap_require(fd >= 0 && pwrite(fd, fill, sizeof(fill), 0) == (ssize_t)sizeof(fill) &&
			    fsync(fd) == 0, "fill source %s", DISK_SRC);
		close(fd);
	}
}

static void teardown(void)
{
	unlink(SRC);
	unlink(DISK_SRC);
	rmdir(MNT);
}

int main(int argc, char **argv)
{
	unsigned int i, round;

	const char *verbose = "0";

	/* op_fork() waits for its child: do not leave it to be reaped. */
	signal(SIGCHLD, SIG_DFL);
	/*
	 * After fork() the parent's pages are copy-on-write, and the kernel
	 * updates the rseq area on the way back to user space: a failure
	 * injected into that copy is SIGSEGV (rseq cannot report an error).
	 * The kernel's own behaviour, not the module's: leave rseq off.
	 * The kernel wants the length glibc registered, the size of its
	 * area (32 in glibc 2.36), not __rseq_size (20, the features it
	 * uses): with that alone the call fails with EINVAL and rseq stays
	 * on (session 9: a SIGSEGV in the fork walk, __put_user_8 from
	 * __rseq_handle_notify_resume after clone()).
	 */
	if (__rseq_size) {
		void *area = (char *)__builtin_thread_pointer() + __rseq_offset;

		tap_require(syscall(__NR_rseq, area, __rseq_size,
				    RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0 ||
			    syscall(__NR_rseq, area, 32, RSEQ_FLAG_UNREGISTER,
				    RSEQ_SIG) == 0,
			    "rseq unregistered (%s)", strerror(errno));
	}
	/* --once: each operation once, no injection (any kernel). */
	if (argc > 1 && !strcmp(argv[1], "--once")) {
		setup();
		for (i = 0; i < sizeof(walks) / sizeof(walks[0]); i++) {
			struct totals t0 = totals();
			int err;

			phase = walks[i].phase;
			if (walks[i].op == op_fill_disk && !disk_available()) {
				tap_skip("%s: no ext4 disk at /mnt/disk", walks[i].what);
				continue;
			}
			err = walks[i].op();
			tap_ok(err == 0 && totals_back(t0), "%s: %d", walks[i].what, err);
		}
		teardown();
		return tap_done();
	}
	fail_nth_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	if (fail_nth_fd < 0 || access("/sys/kernel/debug/failslab", F_OK))
		tap_skip_all("no fault injection in this kernel (make test-debug has it)");
	if (sites_mode()) {
		/* Every failure prints its stack; this program reads it. */
		verbose = "2";
		kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
		sites_out = tmpfile();
		tap_require(kmsg_fd >= 0 && sites_out, "open /dev/kmsg, a temporary file");
		/*
		 * Writers of /dev/kmsg get 10 lines per 5 s unless it is on
		 * (the newline is part of what the sysctl accepts).
		 */
		tap_require(write_file("/proc/sys/kernel/printk_devkmsg", "on\n") == 0 &&
			    (kmsg_out_fd = open("/dev/kmsg", O_WRONLY)) >= 0,
			    "/dev/kmsg for writing, unlimited");
		tap_diag("sites mode: each injected failure's stack is reported");
	}
	/*
	 * Quiet, and every allocation counts: also sleeping, highmem and
	 * single-page ones (min-order is 1 by default: no frame or table
	 * page of the module would fail).
	 */
	tap_require(write_file("/sys/kernel/debug/failslab/verbose", verbose) == 0 &&
		    write_file("/sys/kernel/debug/failslab/ignore-gfp-wait", "N") == 0 &&
		    write_file("/sys/kernel/debug/fail_page_alloc/verbose", verbose) == 0 &&
		    write_file("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N") == 0 &&
		    write_file("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N") == 0 &&
		    write_file("/sys/kernel/debug/fail_page_alloc/min-order", "0") == 0,
		    "fault injection settings");
	watchdog(3500);
	setup();
	/*
	 * Sites mode walks each operation twice: the allocations a call
	 * makes are not the same from run to run (a slab that needs a new
	 * page asks for it, __GFP_NOWARN and silent, at a different place),
	 * so one walk can step over a site (session 10: the mount walk's
	 * kmemdup() in one run, present in the next).
	 */
	for (round = 0; round < (kmsg_fd >= 0 ? 2 : 1); round++)
		for (i = 0; i < sizeof(walks) / sizeof(walks[0]); i++) {
			phase = walks[i].phase;
			if (walks[i].op == op_fill_disk && !disk_available()) {
				tap_skip("%s: no ext4 disk at /mnt/disk", walks[i].what);
				tap_skip("%s: and it works again after", walks[i].what);
				continue;
			}
			walk(walks[i].what, walks[i].op);
		}
	/* kvmalloc()'s and xa_reserve()'s NULL: every allocation of a call fails. */
	phase = "kvmalloc";
	if (kmsg_fd >= 0)
		kmsg_drain();
	{
		int err = op_kvmalloc_all_fail();

		if (kmsg_fd >= 0) {
			report_site(1, err);
			print_sites();
		}
		tap_ok(err == 0, "SCAN, FILL and a twin's MAP with every allocation failing: each fails, nothing else (%d)", err);
	}
	teardown();
	return tap_done();
}
