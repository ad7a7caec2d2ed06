#define _GNU_SOURCE
/*
 * Owners and modes of morsels are ordinary: chmod/chown work, a non-root
 * user is refused what the mode bits refuse, an O_RDONLY file cannot be
 * mapped PROT_WRITE (EACCES) but can be mapped PROT_READ, a store into
 * such a mapping raises SIGSEGV, and the sticky root directory protects
 * other users' files.
 */
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/morsel.h>
#include "vm.h"

#define SECRET "/dev/morsel/rt_secret"
#define PUB "/dev/morsel/rt_pub"
#define SUID "/dev/morsel/rt_suid"
#define OWN "/dev/morsel/rt_own"
#define USER 1000
#define GROUP 1000

static int make(const char *path, mode_t mode, int v)
{
	char buf[4096];
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL, mode);
	if (fd < 0)
		return -1;
	memset(buf, v, sizeof(buf));
	if (ftruncate(fd, 2 * MiB) || pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf)) {
		close(fd);
		return -1;
	}
	close(fd);
	return chmod(path, mode);	/* not masked by the umask */
}

/* Did a store at @p kill a child with SIGSEGV? */
static int store_segv(volatile char *p)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		*p = 1;
		_exit(0);
	}
	waitpid(pid, &status, 0);
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

static void as_user(void)
{
	struct morsel_stat s = { .argsz = sizeof(s) };
	struct stat st;
	char *p;
	char c;
	int fd;

	tap_ok(getuid() == USER && geteuid() == USER && getegid() == GROUP,
	       "child runs as %d:%d", USER, GROUP);
	tap_errno(open(SECRET, O_RDONLY), EACCES,
		  "user: O_RDONLY open of a 0600 root file EACCES");
	tap_errno(open(SECRET, O_RDWR), EACCES,
		  "user: O_RDWR open of a 0600 root file EACCES");
	tap_errno(open(PUB, O_RDWR), EACCES,
		  "user: O_RDWR open of a 0644 root file EACCES");
	tap_errno(truncate(PUB, 4096), EACCES,
		  "user: truncate() of a 0644 root file EACCES");
	fd = open(PUB, O_RDONLY);
	tap_ok(fd >= 0 && pread(fd, &c, 1, 100) == 1 && c == 0x77,
	       "user: O_RDONLY open of a 0644 root file and read work");
	tap_ok(ioctl(fd, MORSEL_IOC_STAT, &s) == 0 && s.size == 2 * MiB,
	       "user: MORSEL_IOC_STAT on an O_RDONLY fd works");
	tap_errno(pwrite(fd, "x", 1, 0), EBADF, "user: write to an O_RDONLY fd EBADF");
	tap_errno(fallocate(fd, 0, 0, 4096), EBADF,
		  "user: fallocate on an O_RDONLY fd EBADF");
	tap_errno((long)mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
		  EACCES, "user: mmap PROT_WRITE MAP_SHARED of an O_RDONLY fd EACCES");
	p = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, fd, 0);
	tap_ok(p != MAP_FAILED && p[100] == 0x77 && p[8192] == 0,
	       "user: mmap PROT_READ of an O_RDONLY fd works and reads the data");
	if (p != MAP_FAILED) {
		tap_errno(mprotect(p, 2 * MiB, PROT_READ | PROT_WRITE), EACCES,
			  "user: mprotect to PROT_WRITE of an O_RDONLY mapping EACCES");
		tap_ok(store_segv(p + 100) && p[100] == 0x77,
		       "user: a store into the read-only mapping raises SIGSEGV, data unchanged");
		munmap(p, 2 * MiB);
	} else {
		tap_ok(0, "user: mprotect to PROT_WRITE of an O_RDONLY mapping EACCES (no mapping)");
		tap_ok(0, "user: a store into the read-only mapping raises SIGSEGV (no mapping)");
	}
	close(fd);

	tap_errno(chmod(PUB, 0666), EPERM, "user: chmod of a root file EPERM");
	tap_errno(chown(PUB, USER, GROUP), EPERM, "user: chown of a root file EPERM");
	tap_errno(unlink(PUB), EPERM,
		  "user: unlink of a root file in the sticky root directory EPERM");
	tap_errno(rename(PUB, "/dev/morsel/rt_x"), EPERM,
		  "user: rename of a root file in the sticky root directory EPERM");

	/* Writable by group. */
	fd = open(SECRET "g", O_RDWR);
	tap_ok(fd >= 0 && pwrite(fd, "g", 1, 0) == 1,
	       "user: O_RDWR open and write of a 0660 root:%d file work", GROUP);
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_ok(p != MAP_FAILED && (p[1] = 'h', p[0] == 'g'),
	       "user: PROT_WRITE mapping of the group-writable file works");
	munmap(p, 2 * MiB);
	close(fd);

	/* Writing a setuid file drops the setuid bit. */
	fd = open(SUID, O_RDWR);
	tap_ok(fd >= 0 && pwrite(fd, "s", 1, 0) == 1 && fstat(fd, &st) == 0 &&
	       !(st.st_mode & S_ISUID),
	       "user: write to a 06777 root file clears S_ISUID (mode now %o)",
	       st.st_mode & 07777);
	close(fd);

	/* Own files. */
	fd = open(OWN, O_RDWR | O_CREAT | O_EXCL, 0644);
	tap_ok(fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == USER &&
	       st.st_gid == GROUP, "user: file created in the 1777 root is owned by %d:%d",
	       USER, GROUP);
	tap_ok(ftruncate(fd, 4096) == 0 && pwrite(fd, "o", 1, 0) == 1 &&
	       fchmod(fd, 0600) == 0 && fstat(fd, &st) == 0 &&
	       (st.st_mode & 07777) == 0600,
	       "user: ftruncate, write and fchmod of an own file work");
	tap_errno(fchown(fd, 0, 0), EPERM, "user: chown of an own file to root EPERM");
	close(fd);
}

static void as_owner(void)
{
	char *p;
	int fd;

	fd = open(SECRET, O_RDWR);
	tap_ok(fd >= 0, "after chown to the user: O_RDWR open works");
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_ok(p != MAP_FAILED && p[10] == 0x55 && (p[11] = 'U', 1),
	       "after chown: PROT_WRITE mapping works and sees the data");
	munmap(p, 2 * MiB);
	tap_errno(open(OWN, O_RDWR), EACCES,
		  "user: after root's chmod 0000 of an own file, open EACCES");
	tap_ok(chmod(OWN, 0600) == 0 && unlink(OWN) == 0,
	       "user: the owner can chmod and unlink its own file");
	close(fd);
}

int main(void)
{
	long base = total("morsels"), data = total("data_pages");
	struct stat st;
	char c;

	tap_require(make(SECRET, 0600, 0x55) == 0, "secret");
	tap_require(make(SECRET "g", 0660, 0x66) == 0, "secret g");
	tap_require(make(PUB, 0644, 0x77) == 0, "pub");
	tap_require(make(SUID, 06777, 0x88) == 0, "suid");
	tap_ok(chown(SECRET "g", 0, GROUP) == 0 && stat(SECRET "g", &st) == 0 &&
	       st.st_uid == 0 && st.st_gid == GROUP,
	       "root: chown of the group to %d", GROUP);
	tap_ok(stat(SUID, &st) == 0 && (st.st_mode & 07777) == 06777,
	       "root: chmod 06777 sets setuid and setgid");

	tap_run_as(USER, GROUP, as_user);

	tap_ok(stat(SECRET "g", &st) == 0 && (st.st_mode & 07777) == 0660,
	       "root: group file still 0660");
	tap_ok(stat(OWN, &st) == 0 && chmod(OWN, 0) == 0 &&
	       stat(OWN, &st) == 0 && (st.st_mode & 07777) == 0,
	       "root: chmod 0000 of the user's file");
	tap_ok(chown(SECRET, USER, GROUP) == 0 && stat(SECRET, &st) == 0 &&
	       st.st_uid == USER && st.st_gid == GROUP,
	       "root: chown of a file to %d:%d", USER, GROUP);
	tap_ok(chmod(SECRET, 0640) == 0 && stat(SECRET, &st) == 0 &&
	       (st.st_mode & 07777) == 0640 && st.st_size == 2 * MiB,
	       "root: chmod 0640 keeps the size");

	tap_run_as(USER, GROUP, as_owner);

	{
		int fd = open(SECRET, O_RDONLY);

		tap_ok(fd >= 0 && pread(fd, &c, 1, 11) == 1 && c == 'U',
		       "root sees the user's store through the mapping");
		close(fd);
	}
	unlink(SECRET);
	unlink(SECRET "g");
	unlink(PUB);
	unlink(SUID);
	unlink(OWN);
	tap_ok(total("morsels") == base && total("data_pages") == data,
	       "every object freed");
	return tap_done();
}
