#define _GNU_SOURCE
/*
 * Names of morsels are ordinary: unlink, rename, link, mkdir/rmdir,
 * O_TMPFILE.  An unlinked morsel lives while open or mapped and then frees
 * every frame and table.  Only regular files and directories can be
 * created: mknod of devices, fifos, sockets and symlinks fail with EPERM.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/morsel.h>
#include "vm.h"

#define D "/dev/morsel/nm"

/* Same objects, data pages and tables? */
static int same(struct totals a, struct totals b)
{
	return a.v[T_MORSELS] == b.v[T_MORSELS] && a.v[T_DATA] == b.v[T_DATA] &&
	       a.v[T_TABLES] == b.v[T_TABLES];
}

/* Create @path with @pages pages, each page filled with byte @v. */
static int make(const char *path, int pages, int v)
{
	char buf[4096];
	int fd, i;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return -1;
	memset(buf, v, sizeof(buf));
	for (i = 0; i < pages; i++)
		if (write(fd, buf, sizeof(buf)) != sizeof(buf)) {
			close(fd);
			return -1;
		}
	return fd;
}

static int byte_at(int fd, off_t off)
{
	unsigned char c;

	if (pread(fd, &c, 1, off) != 1)
		return -1;
	return c;
}

static int byte_of(const char *path, off_t off)
{
	int fd = open(path, O_RDONLY), v;

	if (fd < 0)
		return -1;
	v = byte_at(fd, off);
	close(fd);
	return v;
}

static int in_dir(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int found = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (!strcmp(e->d_name, name))
			found = 1;
	closedir(d);
	return found;
}

int main(void)
{
	struct totals t0, t1;
	struct stat st, st2;
	int fd, fd2;
	char *p;

	t0 = totals();

	tap_ok(mkdir(D, 0755) == 0, "mkdir " D);
	tap_ok(stat(D, &st) == 0 && S_ISDIR(st.st_mode) &&
	       (st.st_mode & 07777) == 0755 && st.st_nlink == 2,
	       "new directory: S_IFDIR, mode 0755, 2 links");
	tap_ok(same(totals(), t0), "a directory is not a morsel (totals unchanged)");
	tap_errno(mkdir(D, 0755), EEXIST, "mkdir of an existing name: EEXIST");

	/* Unlink while open. */
	fd = make(D "/a", 8, 0xa1);
	tap_require(fd >= 0, "make a");
	t1 = totals();
	tap_ok(t1.v[T_MORSELS] == t0.v[T_MORSELS] + 1 && t1.v[T_DATA] == t0.v[T_DATA] + 8,
	       "8-page object: +1 morsel, +8 data pages");
	tap_ok(unlink(D "/a") == 0 && access(D "/a", F_OK) == -1 && errno == ENOENT,
	       "unlink while open: the name is gone");
	tap_ok(fstat(fd, &st) == 0 && st.st_nlink == 0 && st.st_size == 8 * 4096,
	       "unlinked open object: nlink 0, size kept");
	tap_ok(byte_at(fd, 7 * 4096 + 5) == 0xa1 && pwrite(fd, "z", 1, 0) == 1 &&
	       byte_at(fd, 0) == 'z', "unlinked open object: read and write work");
	tap_ok(same(totals(), t1), "unlinked open object: frames still held");
	close(fd);
	tap_ok(same(totals(), t0), "close of the last fd frees object, frames and tables");

	/* Unlink while mapped, fd closed. */
	fd = make(D "/m", 512, 0xb2);
	tap_require(fd >= 0, "make m");
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	close(fd);
	tap_ok(unlink(D "/m") == 0 && p[4096 * 100] == (char)0xb2,
	       "unlinked and closed but mapped: data readable");
	p[0] = 1;
	tap_ok(total("morsels") == t0.v[T_MORSELS] + 1 &&
	       total("data_pages") == t0.v[T_DATA] + 512,
	       "unlinked, closed, mapped: object and frames live");
	munmap(p, 2 * MiB);
	tap_ok(same(totals(), t0), "munmap of the last mapping frees everything");

	/* A new object under the name of an unlinked, still open one. */
	fd = make(D "/r", 1, 0x01);
	tap_require(fd >= 0, "make r");
	unlink(D "/r");
	fd2 = make(D "/r", 1, 0x02);
	tap_ok(fd2 >= 0 && byte_at(fd, 0) == 1 && byte_at(fd2, 0) == 2 &&
	       total("morsels") == t0.v[T_MORSELS] + 2,
	       "re-created name is a new object; the unlinked one keeps its data");
	close(fd);
	close(fd2);
	unlink(D "/r");
	tap_ok(same(totals(), t0), "both freed");

	/* Rename. */
	fd = make(D "/a", 2, 0xa1);
	tap_require(fd >= 0, "make a");
	fstat(fd, &st);
	close(fd);
	tap_ok(rename(D "/a", D "/b") == 0 && access(D "/a", F_OK) == -1 &&
	       byte_of(D "/b", 4096) == 0xa1 && stat(D "/b", &st2) == 0 &&
	       st2.st_ino == st.st_ino,
	       "rename a -> b: same inode, data kept, old name gone");
	fd = make(D "/c", 3, 0xc3);
	tap_require(fd >= 0, "make c");
	close(fd);
	t1 = totals();
	tap_errno(renameat2(AT_FDCWD, D "/b", AT_FDCWD, D "/c", RENAME_NOREPLACE),
		  EEXIST, "rename NOREPLACE onto an existing file: EEXIST");
	tap_ok(renameat2(AT_FDCWD, D "/b", AT_FDCWD, D "/c", RENAME_EXCHANGE) == 0 &&
	       byte_of(D "/b", 0) == 0xc3 && byte_of(D "/c", 0) == 0xa1,
	       "rename EXCHANGE swaps the two objects");
	tap_ok(same(totals(), t1), "exchange frees nothing");
	tap_ok(rename(D "/b", D "/c") == 0 && byte_of(D "/c", 0) == 0xc3 &&
	       total("morsels") == t1.v[T_MORSELS] - 1 &&
	       total("data_pages") == t1.v[T_DATA] - 2,
	       "rename over an existing file frees the replaced object's frames");
	tap_ok(mkdir(D "/sub", 0700) == 0 &&
	       rename(D "/c", D "/sub/c") == 0 && byte_of(D "/sub/c", 4096) == 0xc3,
	       "rename into a subdirectory keeps the data");
	tap_errno(rmdir(D "/sub"), ENOTEMPTY, "rmdir of a non-empty directory: ENOTEMPTY");
	tap_errno(unlink(D "/sub"), EISDIR, "unlink of a directory: EISDIR");
	tap_errno(rmdir(D "/sub/c"), ENOTDIR, "rmdir of a file: ENOTDIR");
	tap_ok(in_dir(D "/sub", "c") == 1 && in_dir(D, "c") == 0 && in_dir(D, "sub") == 1,
	       "readdir shows the names where they are");
	tap_ok(unlink(D "/sub/c") == 0 && rmdir(D "/sub") == 0,
	       "unlink and rmdir of the emptied directory");
	tap_ok(same(totals(), t0), "all renamed objects freed");

	/* Hard links. */
	fd = make(D "/h", 4, 0xd4);
	tap_require(fd >= 0, "make h");
	tap_ok(link(D "/h", D "/h2") == 0 && stat(D "/h2", &st) == 0 &&
	       st.st_nlink == 2 && byte_of(D "/h2", 3 * 4096) == 0xd4,
	       "link h -> h2: nlink 2, data visible through the new name");
	tap_ok(pwrite(fd, "Q", 1, 10) == 1 && byte_of(D "/h2", 10) == 'Q',
	       "a write through one name shows through the other");
	close(fd);
	tap_ok(unlink(D "/h") == 0 && stat(D "/h2", &st) == 0 && st.st_nlink == 1 &&
	       total("morsels") == t0.v[T_MORSELS] + 1,
	       "unlink of one name: the object lives on with nlink 1");
	tap_ok(unlink(D "/h2") == 0 && same(totals(), t0),
	       "unlink of the last name frees it");
	tap_errno(link(D, D "/dirlink"), EPERM, "hard link to a directory: EPERM");

	/* Only regular files and directories. */
	tap_errno(mknod(D "/chr", S_IFCHR | 0600, makedev(1, 3)), EPERM,
		  "mknod of a character device: EPERM");
	tap_errno(mknod(D "/blk", S_IFBLK | 0600, makedev(7, 0)), EPERM,
		  "mknod of a block device: EPERM");
	tap_errno(mkfifo(D "/fifo", 0600), EPERM, "mkfifo: EPERM");
	tap_errno(mknod(D "/sock", S_IFSOCK | 0600, 0), EPERM,
		  "mknod of a socket: EPERM");
	tap_errno(symlink("/tmp", D "/sym"), EPERM, "symlink: EPERM");
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		strcpy(sa.sun_path, D "/sock2");
		tap_errno(bind(s, (struct sockaddr *)&sa, sizeof(sa)), EPERM,
			  "bind of a unix socket on morselfs: EPERM");
		close(s);
	}
	tap_ok(in_dir(D, "chr") == 0 && in_dir(D, "fifo") == 0 &&
	       in_dir(D, "sym") == 0 && in_dir(D, "sock2") == 0 &&
	       same(totals(), t0), "refused creations leave no name and no object");
	tap_ok(mknod(D "/reg", S_IFREG | 0600, 0) == 0 && stat(D "/reg", &st) == 0 &&
	       S_ISREG(st.st_mode) && total("morsels") == t0.v[T_MORSELS] + 1,
	       "mknod(S_IFREG) creates a morsel");
	unlink(D "/reg");

	/* O_TMPFILE. */
	fd = open(D, O_TMPFILE | O_RDWR, 0600);
	tap_ok(fd >= 0 && total("morsels") == t0.v[T_MORSELS] + 1,
	       "O_TMPFILE creates an unnamed morsel");
	tap_ok(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0 &&
	       st.st_size == 0, "O_TMPFILE object: regular, nlink 0, size 0");
	{
		struct morsel_stat ms = { .argsz = sizeof(ms) };

		tap_ok(ftruncate(fd, 4 * MiB) == 0 && pwrite(fd, "t", 1, 3 * MiB) == 1 &&
		       ioctl(fd, MORSEL_IOC_STAT, &ms) == 0 &&
		       ms.level == MORSEL_LEVEL_PMD && ms.data_pages == 1,
		       "O_TMPFILE object: ftruncate, write, STAT work");
	}
	tap_ok(in_dir(D, ".") == 1 && in_dir(D, "..") == 1,
	       "O_TMPFILE adds no name (only . and ..)");
	close(fd);
	tap_ok(same(totals(), t0), "closing an O_TMPFILE object frees it");

	fd = open(D, O_TMPFILE | O_RDWR, 0600);
	tap_require(fd >= 0, "tmpfile");
	pwrite(fd, "L", 1, 0);
	{
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		tap_ok(linkat(AT_FDCWD, proc, AT_FDCWD, D "/linked",
			      AT_SYMLINK_FOLLOW) == 0 &&
		       byte_of(D "/linked", 0) == 'L' && stat(D "/linked", &st) == 0 &&
		       st.st_nlink == 1,
		       "linkat of an O_TMPFILE object gives it a name with the data");
	}
	close(fd);
	tap_ok(total("morsels") == t0.v[T_MORSELS] + 1,
	       "the linked tmpfile lives after close");
	unlink(D "/linked");
	fd = open(D, O_TMPFILE | O_RDWR | O_EXCL, 0600);
	{
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		tap_errno(linkat(AT_FDCWD, proc, AT_FDCWD, D "/linked2",
				 AT_SYMLINK_FOLLOW), ENOENT,
			  "O_TMPFILE|O_EXCL object cannot be linked: ENOENT");
	}
	close(fd);
	tap_errno(open(D "/nofile", O_RDWR), ENOENT, "open of a missing name: ENOENT");
	tap_errno(open(D, O_RDWR), EISDIR, "open of a directory for writing: EISDIR");

	tap_ok(rmdir(D) == 0, "rmdir of the emptied test directory");
	tap_ok(same(totals(), t0), "totals back to the baseline");
	return tap_done();
}
