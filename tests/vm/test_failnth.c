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
 * found by kmemleak).
 */
#include <sys/xattr.h>
#include "libmorsel.h"
#include "vm.h"

#define OBJ	"/dev/morsel/failnth"

static int fail_nth_fd = -1;

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

static int op_create_write(void)
{
	int fd = open(OBJ, O_RDWR | O_CREAT | O_TRUNC, 0600), err = 0;
	char buf[8192];

	if (fd < 0)
		return -errno;
	memset(buf, 'w', sizeof(buf));
	err = ERR(ftruncate(fd, 4 * MiB));
	if (!err && pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		err = -errno;
	if (!err && pwrite(fd, buf, sizeof(buf), 3 * MiB + 5) != (ssize_t)sizeof(buf))
		err = -errno;
	if (!err)
		err = ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    0, 4096));
	if (!err)
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
static int clean_errno(int err)
{
	return err == 0 || err == -ENOMEM || err == -ENOSPC || err == -EFAULT ||
	       err == -EINTR || err == -EAGAIN || err == -EIO || err == -EEXIST;
}

/* Fail each allocation of @op once; report. */
static void walk(const char *name, int (*op)(void))
{
	struct totals t0 = totals();
	int n, err, errors = 0, unclean = 0, leaks = 0, first_bad = 0;

	for (n = 1; n < 5000; n++) {
		tap_require(set_fail_nth(n) == 0, "fail-nth %d", n);
		err = op();
		if (fail_nth_pending()) {
			set_fail_nth(0);
			break;
		}
		/*
		 * The failure may have hit the operation's own clean-up (an
		 * unlink that found no memory): clean up again, without
		 * injection, before judging what is left.
		 */
		unlink(OBJ);
		unlink("/tmp/failnth.img");
		errors += err != 0;
		if (!clean_errno(err) && !unclean++)
			first_bad = err;
		if (!totals_back(t0) && !leaks++)
			tap_diag("%s: counters not back after failing allocation %d",
				 name, n);
	}
	tap_ok(n > 1 && n < 5000 && !unclean && !leaks,
	       "%s: each of its %d allocations failed once: %d runs returned an error, %d an unexpected one (first %d), %d left counters behind",
	       name, n - 1, errors, unclean, first_bad, leaks);
	tap_ok(op() == 0, "%s: and it works again after", name);
}

int main(void)
{
	fail_nth_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	if (fail_nth_fd < 0 || access("/sys/kernel/debug/failslab", F_OK))
		tap_skip_all("no fault injection in this kernel (make test-debug has it)");
	/* Quiet, and every allocation counts (also sleeping, highmem ones). */
	tap_require(write_file("/sys/kernel/debug/failslab/verbose", "0") == 0 &&
		    write_file("/sys/kernel/debug/failslab/ignore-gfp-wait", "N") == 0 &&
		    write_file("/sys/kernel/debug/fail_page_alloc/verbose", "0") == 0 &&
		    write_file("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N") == 0 &&
		    write_file("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N") == 0,
		    "fault injection settings");
	watchdog(1700);
	phase = "create/write";
	walk("create, truncate, write, punch, shrink", op_create_write);
	phase = "map";
	walk("mmap and MORSEL_IOC_MAP with POPULATE", op_map);
	phase = "split";
	walk("freeze, split, copy-on-write, punch in the child", op_split);
	phase = "scan/xattr";
	walk("SCAN with CLEAN, user xattrs", op_scan_xattr);
	phase = "save/load";
	walk("morsel_save and morsel_load", op_save_load);
	return tap_done();
}
