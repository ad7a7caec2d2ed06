#define _GNU_SOURCE
/*
 * /proc and ptrace views of morsel mappings: /proc/PID/maps shows the file
 * path, smaps the mixedmap/dontdump flags; ptrace PEEKDATA/POKEDATA,
 * /proc/PID/mem and process_vm_readv/writev read and write (through GUP;
 * write only where the mapping is writable).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/morsel.h>
#include "vm.h"

#define PATH "/dev/morsel/proc_test"

/* The maps line (and smaps VmFlags) of the mapping starting at @addr. */
static int maps_line(const char *file, void *addr, char *line, size_t len,
		     char *vmflags, size_t flen)
{
	char want[32], buf[512];
	int found = 0;
	FILE *f;

	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	f = fopen(file, "r");
	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f)) {
		if (!found && strncmp(buf, want, strlen(want)) == 0) {
			snprintf(line, len, "%s", buf);
			found = 1;
			if (!vmflags)
				break;
		} else if (found && vmflags && strncmp(buf, "VmFlags:", 8) == 0) {
			snprintf(vmflags, flen, "%s", buf);
			break;
		}
	}
	fclose(f);
	return found;
}

static void maps(void)
{
	char line[512] = "", fl[512] = "";
	unsigned char *p, *r;
	int fd;

	fd = mkobj(PATH, 4 * MiB);
	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	r = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, fd, 2 * MiB);
	tap_require(p != MAP_FAILED && r != MAP_FAILED);
	p[0] = 1;
	tap_ok(maps_line("/proc/self/maps", p, line, sizeof(line), NULL, 0) &&
	       strstr(line, " " PATH), "/proc/self/maps shows the path");
	tap_diag("%.*s", (int)strcspn(line, "\n"), line);
	tap_ok(strstr(line, " rw-s ") != NULL, "  as rw-s");
	tap_ok(maps_line("/proc/self/maps", r, line, sizeof(line), NULL, 0) &&
	       strstr(line, " r--s 00200000 ") && strstr(line, " " PATH),
	       "read-only mapping at offset 2 MiB: r--s 00200000 and the path");
	tap_ok(maps_line("/proc/self/smaps", p, line, sizeof(line), fl,
			 sizeof(fl)) && strstr(fl, " mm") && strstr(fl, " dd") &&
	       !strstr(fl, " io") && !strstr(fl, " pf"),
	       "smaps VmFlags has mm and dd, not io or pf (VM_MIXEDMAP)");
	tap_diag("%.*s", (int)strcspn(fl, "\n"), fl);
	munmap(p, 4 * MiB);
	munmap(r, 2 * MiB);
	close(fd);
	unlink(PATH);
}

static void trace_and_mem(void)
{
	unsigned long size = 4 * MiB;
	unsigned char *p, *r, *e;
	char path[64], buf[16];
	long word, v;
	int fd, st, mfd;
	struct iovec lio, rio;
	pid_t pid;

	fd = mkobj(PATH, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	r = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	/* 4 MiB mapping of which the object covers only the first 4 MiB... */
	e = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 4 * MiB);			/* ...entirely past the end */
	tap_require(p != MAP_FAILED && r != MAP_FAILED && e != MAP_FAILED);
	memcpy(p + 3 * MiB, "morsel!!", 8);
	memcpy(&word, "morsel!!", 8);

	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		if (ptrace(PTRACE_TRACEME, 0, 0, 0))
			_exit(1);
		raise(SIGSTOP);
		/* The tracer poked "POKED!!!" at +1 MiB + 8. */
		_exit(memcmp(p + 1 * MiB + 8, "POKED!!!", 8) == 0 &&
		      memcmp(r + 1 * MiB + 8, "POKED!!!", 8) == 0 ? 0 : 2);
	}
	tap_require(waitpid(pid, &st, 0) == pid && WIFSTOPPED(st));
	errno = 0;
	v = ptrace(PTRACE_PEEKDATA, pid, p + 3 * MiB, 0);
	tap_ok(errno == 0 && v == word,
	       "PEEKDATA of the child's untouched mapping reads the data");
	errno = 0;
	v = ptrace(PTRACE_PEEKDATA, pid, r + 3 * MiB, 0);
	tap_ok(errno == 0 && v == word, "PEEKDATA of a PROT_READ mapping too");
	memcpy(&word, "POKED!!!", 8);
	tap_ok(ptrace(PTRACE_POKEDATA, pid, p + 1 * MiB + 8, word) == 0 &&
	       memcmp(p + 1 * MiB + 8, "POKED!!!", 8) == 0,
	       "POKEDATA into the writable mapping: seen by this process");
	memcpy(&word, "nope!!!!", 8);
	tap_ok(ptrace(PTRACE_POKEDATA, pid, r + 2 * MiB, word) == -1 &&
	       p[2 * MiB] == 0, "POKEDATA into a PROT_READ mapping fails (%s)",
	       strerror(errno));
	errno = 0;
	v = ptrace(PTRACE_PEEKDATA, pid, e, 0);
	tap_ok(v == -1 && errno == EIO, "PEEKDATA past the end fails with EIO");

	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	mfd = open(path, O_RDWR);
	tap_require(mfd >= 0);
	tap_ok(pread(mfd, buf, 8, (off_t)(uintptr_t)(p + 3 * MiB)) == 8 &&
	       memcmp(buf, "morsel!!", 8) == 0, "/proc/PID/mem pread works");
	tap_ok(pwrite(mfd, "memwrite", 8, (off_t)(uintptr_t)(p + 3 * MiB + 64)) == 8 &&
	       memcmp(p + 3 * MiB + 64, "memwrite", 8) == 0,
	       "/proc/PID/mem pwrite into the writable mapping works");
	tap_errno(pwrite(mfd, "memwrite", 8, (off_t)(uintptr_t)(r + 3 * MiB + 128)),
		  EIO, "/proc/PID/mem pwrite into a PROT_READ mapping: EIO");
	tap_ok(p[3 * MiB + 128] == 0, "  and wrote nothing");
	close(mfd);

	lio.iov_base = buf;
	lio.iov_len = 8;
	rio.iov_base = p + 3 * MiB;
	rio.iov_len = 8;
	memset(buf, 0, sizeof(buf));
	tap_ok(process_vm_readv(pid, &lio, 1, &rio, 1, 0) == 8 &&
	       memcmp(buf, "morsel!!", 8) == 0,
	       "process_vm_readv of the other process's mapping reads it");
	memcpy(buf, "vmwrite!", 8);
	rio.iov_base = p + 3 * MiB + 256;
	tap_ok(process_vm_writev(pid, &lio, 1, &rio, 1, 0) == 8 &&
	       memcmp(p + 3 * MiB + 256, "vmwrite!", 8) == 0,
	       "process_vm_writev into its mapping: seen here");
	rio.iov_base = r + 3 * MiB + 512;
	tap_errno(process_vm_writev(pid, &lio, 1, &rio, 1, 0), EFAULT,
		  "process_vm_writev into a PROT_READ mapping: EFAULT");
	memset(buf, 0, sizeof(buf));
	rio.iov_base = r + 3 * MiB;
	tap_ok(process_vm_readv(getpid(), &lio, 1, &rio, 1, 0) == 8 &&
	       memcmp(buf, "morsel!!", 8) == 0,
	       "process_vm_readv of its own read-only mapping reads it");

	tap_require(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
	tap_require(waitpid(pid, &st, 0) == pid);
	tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "the traced child sees the poked data in both mappings");

	mfd = open("/proc/self/mem", O_RDWR);
	tap_require(mfd >= 0);
	tap_ok(pwrite(mfd, "selfmem!", 8, (off_t)(uintptr_t)(p + 5)) == 8 &&
	       memcmp(p + 5, "selfmem!", 8) == 0 &&
	       pread(mfd, buf, 8, (off_t)(uintptr_t)(r + 5)) == 8 &&
	       memcmp(buf, "selfmem!", 8) == 0,
	       "/proc/self/mem writes and reads the mappings");
	close(mfd);

	munmap(p, size);
	munmap(r, size);
	munmap(e, 2 * MiB);
	tap_ok(mstat(fd).links == 0 && mstat(fd).mappers == 0, "unmapped");
	close(fd);
	unlink(PATH);
}

int main(void)
{
	maps();
	trace_and_mem();
	return tap_done();
}
