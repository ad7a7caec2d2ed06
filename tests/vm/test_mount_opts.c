#define _GNU_SOURCE
/*
 * morselfs mount options: size= (data limit, k/m/g suffixes, ENOSPC for
 * write/fallocate and SIGBUS for a fault past it), nr_morsels= (ENOSPC on
 * create past it), mode=/uid=/gid= of the root directory, shown in
 * /proc/mounts and statfs; remount changes the limits but not below current
 * use (EINVAL); unknown options and malformed values fail the mount with
 * EINVAL and a message in the kernel log.
 */
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define DIR_A "/tmp/mo_a"
#define DIR_B "/tmp/mo_b"

/* The /proc/mounts line of @dir, or "" */
static const char *mount_line(const char *dir)
{
	static char buf[65536], line[1024];
	char key[256], *p, *e;
	ssize_t n;
	int fd;

	line[0] = 0;
	fd = open("/proc/mounts", O_RDONLY);
	if (fd < 0)
		return line;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return line;
	buf[n] = 0;
	snprintf(key, sizeof(key), " %s ", dir);
	p = strstr(buf, key);
	if (!p)
		return line;
	while (p > buf && p[-1] != '\n')
		p--;
	e = strchr(p, '\n');
	if (!e)
		e = p + strlen(p);
	snprintf(line, sizeof(line), "%.*s", (int)(e - p), p);
	return line;
}

static int has_opt(const char *line, const char *opt)
{
	char key[128];

	snprintf(key, sizeof(key), ",%s", opt);
	return strstr(line, key) != NULL &&
	       (strstr(line, key)[strlen(key)] == ',' ||
		strstr(line, key)[strlen(key)] == ' ');
}

static int klog_has(const char *s)
{
	static char buf[1 << 20];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof(buf) - 1);

	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, s) != NULL;
}

static int try_mount(const char *opts)
{
	return mount("none", DIR_B, "morselfs", 0, opts);
}

static long long blocks_for(const char *opts)
{
	struct statfs sf;
	long long r;

	if (try_mount(opts))
		return -1;
	r = statfs(DIR_B, &sf) ? -2 : (long long)sf.f_blocks;
	umount(DIR_B);
	return r;
}

static void cleanup(void)
{
	umount2(DIR_A, MNT_DETACH);
	umount2(DIR_B, MNT_DETACH);
	rmdir(DIR_A);
	rmdir(DIR_B);
}

static int remount(const char *opts)
{
	return mount("none", DIR_A, "morselfs", MS_REMOUNT, opts);
}

static long long fsval(int which)
{
	struct statfs sf;

	if (statfs(DIR_A, &sf))
		return -1;
	switch (which) {
	case 0: return sf.f_blocks;
	case 1: return sf.f_bfree;
	case 2: return sf.f_files;
	case 3: return sf.f_ffree;
	}
	return sf.f_bavail;
}
#define BLOCKS fsval(0)
#define BFREE fsval(1)
#define FILES fsval(2)
#define FFREE fsval(3)
#define BAVAIL fsval(4)

int main(void)
{
	long base_morsels = total("morsels"), base_data = total("data_pages");
	long base_tables = total("table_pages");
	const char *line;
	struct statfs sf;
	struct stat st;
	int a, b, c, e, status;
	char buf[8192];
	pid_t pid;

	atexit(cleanup);
	mkdir(DIR_A, 0755);
	mkdir(DIR_B, 0755);

	/* The default mount made by the harness. */
	tap_ok(stat("/dev/morsel", &st) == 0 && (st.st_mode & 07777) == 01777 &&
	       st.st_uid == 0 && st.st_gid == 0,
	       "default mount: root directory 1777 root:root");
	/* Default size limit: half of RAM, in pages, as tmpfs. */
	long half = sysconf(_SC_PHYS_PAGES) / 2;

	tap_ok(statfs("/dev/morsel", &sf) == 0 && sf.f_type == MORSELFS_MAGIC &&
	       sf.f_bsize == 4096 && (long)sf.f_blocks == half && sf.f_files == 0,
	       "default mount: statfs magic, 4 KiB blocks, half of RAM (%ld pages, got %lld), no file limit",
	       half, (long long)sf.f_blocks);
	line = mount_line("/dev/morsel");
	tap_ok(strstr(line, " morselfs ") && strstr(line, "size=") &&
	       !strstr(line, "nr_morsels=") && !strstr(line, "mode="),
	       "default mount: /proc/mounts shows the default size only [%s]", line);

	tap_ok(mount("none", DIR_A, "morselfs", 0,
		     "size=1m,nr_morsels=2,mode=0700,uid=1000,gid=1000") == 0,
	       "mount with size=1m,nr_morsels=2,mode=0700,uid=1000,gid=1000");
	tap_ok(stat(DIR_A, &st) == 0 && S_ISDIR(st.st_mode) &&
	       (st.st_mode & 07777) == 0700 && st.st_uid == 1000 && st.st_gid == 1000,
	       "root directory: mode 0700 (got %o), owner 1000:1000 (got %d:%d)",
	       st.st_mode & 07777, (int)st.st_uid, (int)st.st_gid);
	tap_ok(statfs(DIR_A, &sf) == 0 && sf.f_type == MORSELFS_MAGIC &&
	       sf.f_blocks == 256 && sf.f_bfree == 256 && sf.f_bavail == 256,
	       "statfs: f_blocks = f_bfree = f_bavail = 256 (got %lld %lld %lld)",
	       (long long)sf.f_blocks, (long long)sf.f_bfree, (long long)sf.f_bavail);
	tap_ok(sf.f_files == 2 && sf.f_ffree == 2, "statfs: f_files = f_ffree = 2");
	line = mount_line(DIR_A);
	tap_ok(strstr(line, "none " DIR_A " morselfs ") != NULL,
	       "/proc/mounts has the mount [%s]", line);
	tap_ok(has_opt(line, "size=1024k") && has_opt(line, "nr_morsels=2") &&
	       has_opt(line, "mode=700") && has_opt(line, "uid=1000") &&
	       has_opt(line, "gid=1000"),
	       "/proc/mounts shows size=1024k,nr_morsels=2,mode=700,uid=1000,gid=1000");

	/* nr_morsels */
	a = open(DIR_A "/a", O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_ok(a >= 0 && FFREE == 1, "first file: f_ffree 1");
	b = open(DIR_A "/b", O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_ok(b >= 0 && FFREE == 0, "second file: f_ffree 0");
	tap_require(a >= 0 && b >= 0, "two files");
	tap_errno(open(DIR_A "/c", O_RDWR | O_CREAT | O_EXCL, 0600), ENOSPC,
		  "third file with nr_morsels=2: ENOSPC");
	tap_errno(open(DIR_A, O_TMPFILE | O_RDWR, 0600), ENOSPC,
		  "O_TMPFILE with nr_morsels=2 reached: ENOSPC");
	tap_errno(mknod(DIR_A "/c", S_IFREG | 0600, 0), ENOSPC,
		  "mknod(S_IFREG) with nr_morsels=2 reached: ENOSPC");
	tap_ok(access(DIR_A "/c", F_OK) == -1 && total("morsels") == base_morsels + 2,
	       "refused creates leave no name and no object");
	tap_ok(mkdir(DIR_A "/d", 0755) == 0 && rmdir(DIR_A "/d") == 0,
	       "directories do not count against nr_morsels");

	/* size=: data frames and page tables count together. */
	memset(buf, 0x61, sizeof(buf));
	{
		long long n = 0;

		while (n < 1 * MiB && pwrite(a, buf, PG, n) == PG)
			n += PG;
		tap_ok(n == 1 * MiB - PG && tables_of(a) == 1 && BFREE == 0 &&
		       BAVAIL == 0,
		       "255 pages and their page table fill 1 MiB: f_bfree 0 (wrote %lld)", n);
	}
	tap_errno(pwrite(a, "x", 1, 1 * MiB - PG), ENOSPC,
		  "write past the size limit: ENOSPC");
	tap_ok(size_of(a) == 1 * MiB - PG, "the refused write gave the size back");
	tap_errno(fallocate(b, 0, 0, PG), ENOSPC, "fallocate past the size limit: ENOSPC");
	tap_ok(size_of(b) == 0 || size_of(b) == PG,
	       "b: size after the refused fallocate is 0 or 4096 (got %lld)", size_of(b));
	tap_ok(ftruncate(b, 1 * GiB) == 0 && size_of(b) == 1 * GiB,
	       "ftruncate of b to 1 GiB works (sparse, no data)");
	tap_ok(pread(b, buf, 4096, 512 * MiB) == 4096 && buf[0] == 0 && buf[4095] == 0,
	       "reading holes at the limit works");
	tap_errno(fallocate(b, FALLOC_FL_KEEP_SIZE, 0, PG), ENOSPC,
		  "fallocate KEEP_SIZE past the size limit: ENOSPC");
	tap_errno(pwrite(b, "x", 1, 4096), ENOSPC, "write into a hole past the limit: ENOSPC");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		volatile char *p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE,
					MAP_SHARED, b, 0);

		if (p == MAP_FAILED)
			_exit(2);
		p[4096] = 1;
		_exit(0);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
	       "a store that needs a frame past the limit raises SIGBUS (status 0x%x)",
	       status);
	tap_ok(fallocate(a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 512 * KiB) == 0 &&
	       BFREE == 128, "punching 512 KiB of a gives back 128 blocks");
	tap_ok(fallocate(b, 0, 0, 512 * KiB - 2 * PG) == 0 && BFREE == 0 &&
	       tables_of(b) == 2,
	       "then 126 pages and their 2 tables can be allocated in b");
	tap_ok(ftruncate(b, 4 * KiB) == 0 && BFREE == 126 && tables_of(b) == 1,
	       "shrinking b to 4 KiB gives back its frames and the PMD root");
	tap_ok(fallocate(a, 0, 0, 125 * PG) == 0 && BFREE == 1,
	       "refilling a leaves one free block");
	tap_ok(pwrite(b, buf, 8192, PG) == PG && size_of(b) == 2 * PG && BFREE == 0,
	       "an extending 2-page write with 1 free block: short (4096), size 8 KiB");

	/* Remount. */
	tap_ok(remount("size=2m") == 0, "remount size=2m");
	tap_ok(BLOCKS == 512, "statfs f_blocks 512 after remount (got %lld)", BLOCKS);
	line = mount_line(DIR_A);
	tap_ok(has_opt(line, "size=2048k") && has_opt(line, "nr_morsels=2") &&
	       has_opt(line, "mode=700"),
	       "/proc/mounts after remount: size=2048k, other options kept [%s]", line);
	tap_ok(fallocate(b, 0, 0, 1 * MiB) == 0 && size_of(b) == 1 * MiB,
	       "with the raised limit 1 MiB more can be allocated");
	{
		long long used = BLOCKS - BFREE;

		tap_ok(used == 510, "usage now 510 blocks (got %lld)", used);
		tap_errno(remount("size=1m"), EINVAL, "remount below current usage: EINVAL");
		tap_ok(BLOCKS == 512, "failed remount left f_blocks at 512");
		tap_errno(remount("size=2036k"), EINVAL,
			  "remount to 509 blocks, one below usage: EINVAL");
		tap_ok(remount("size=2040k") == 0 && BLOCKS == 510 && BFREE == 0,
		       "remount to exactly the usage (510 blocks) works");
		tap_errno(pwrite(a, "x", 1, 127 * PG), ENOSPC, "and the next frame: ENOSPC");
	}
	tap_errno(remount("nr_morsels=1"), EINVAL, "remount nr_morsels below the 2 files: EINVAL");
	tap_ok(FILES == 2, "failed remount left f_files at 2");
	tap_ok(remount("nr_morsels=3") == 0 && FILES == 3 && FFREE == 1,
	       "remount nr_morsels=3: f_files 3, f_ffree 1");
	c = open(DIR_A "/c", O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_ok(c >= 0, "a third file can now be created");
	tap_errno(open(DIR_A "/e", O_RDWR | O_CREAT | O_EXCL, 0600), ENOSPC,
		  "a fourth: ENOSPC");
	tap_errno(remount("bogus_opt=1"), EINVAL, "remount with an unknown option: EINVAL");
	tap_ok(remount("size=0,nr_morsels=0") == 0 && BLOCKS == 0 && FILES == 0,
	       "remount size=0,nr_morsels=0 removes the limits");
	line = mount_line(DIR_A);
	tap_ok(!strstr(line, "size=") && !strstr(line, "nr_morsels=") &&
	       has_opt(line, "mode=700"),
	       "/proc/mounts without limits [%s]", line);
	e = open(DIR_A "/e", O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_ok(fallocate(c, 0, 0, 4 * MiB) == 0 && e >= 0,
	       "without limits: 4 MiB more and a fourth file work");
	close(e);

	/* uid=1000 owns the root directory: user 1000 may create in it. */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int fd;

		if (setgroups(0, NULL) || setgid(1000) || setuid(1000))
			_exit(2);
		fd = open(DIR_A "/u", O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd < 0 || fstat(fd, &st) || st.st_uid != 1000)
			_exit(3);
		_exit(unlink(DIR_A "/u") ? 4 : 0);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "user 1000 creates and unlinks a file in its 0700 root (status 0x%x)",
	       status);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(1001) || setuid(1001))
			_exit(2);
		_exit(open(DIR_A "/v", O_RDWR | O_CREAT, 0600) == -1 &&
		      errno == EACCES ? 0 : 3);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "user 1001 cannot create in the 0700 root of 1000: EACCES");

	/* Malformed and unknown options. */
	tap_errno(try_mount("bogus_opt=1"), EINVAL, "mount with an unknown option: EINVAL");
	tap_ok(klog_has("bogus_opt"), "the unknown option is named in the kernel log");
	tap_errno(try_mount("size=abc"), EINVAL, "size=abc: EINVAL");
	tap_ok(klog_has("size=abc"), "the bad size is named in the kernel log");
	tap_errno(try_mount("size=1x"), EINVAL, "size=1x: EINVAL");
	tap_errno(try_mount("size="), EINVAL, "size= (empty): EINVAL");
	tap_errno(try_mount("size=-1"), EINVAL, "size=-1: EINVAL");
	tap_errno(try_mount("size=18446744073709551615"), EINVAL,
		  "size=2^64-1 (rounds up past the limit): EINVAL, not unlimited");
	tap_errno(try_mount("nr_morsels=two"), EINVAL, "nr_morsels=two: EINVAL");
	tap_errno(try_mount("mode=999"), EINVAL, "mode=999 (not octal): EINVAL");
	tap_errno(try_mount("uid=abc"), EINVAL, "uid=abc: EINVAL");
	tap_errno(try_mount("uid=4294967295"), EINVAL, "uid=4294967295 (invalid id): EINVAL");
	tap_errno(try_mount("gid=-5"), EINVAL, "gid=-5: EINVAL");
	tap_ok(!strstr(mount_line(DIR_B), "morselfs"), "no failed mount is left behind");

	/* Suffixes and rounding. */
	tap_ok(blocks_for("size=4k") == 1, "size=4k: 1 block");
	tap_ok(blocks_for("size=3m") == 768, "size=3m: 768 blocks");
	tap_ok(blocks_for("size=2g") == 524288, "size=2g: 524288 blocks");
	tap_ok(blocks_for("size=12345") == 4, "size=12345: rounded up to 4 blocks");
	tap_ok(blocks_for("size=0") == 0, "size=0: no limit");
	tap_ok(try_mount("size=12345,mode=1777") == 0 &&
	       has_opt(mount_line(DIR_B), "size=16k") &&
	       !has_opt(mount_line(DIR_B), "mode=1777") && umount(DIR_B) == 0,
	       "size=12345 shows as size=16k; the default mode is not shown");

	/* Unmount frees everything. */
	close(a);
	close(b);
	close(c);
	tap_ok(total("morsels") == base_morsels + 4, "4 objects live before umount");
	tap_ok(umount(DIR_A) == 0, "umount with files (closed) in it");
	tap_ok(total("morsels") == base_morsels && total("data_pages") == base_data &&
	       total("table_pages") == base_tables,
	       "umount freed every object, frame and table");
	tap_ok(!strstr(mount_line(DIR_A), "morselfs"), "mount gone from /proc/mounts");
	return tap_done();
}
