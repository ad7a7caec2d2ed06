#define _GNU_SOURCE
/*
 * Core dumps: a process with morsel mappings dumps core normally, and the
 * morsel mappings are left out of the dump (VM_DONTDUMP|VM_IO: the data
 * is in the file, and a dump must never walk another object's tables).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vm.h"

#define SIZE (64UL << 20)

int main(void)
{
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	char core[64], pattern[] = "/tmp/core.%p";
	struct stat st;
	int fd, status;
	pid_t pid;

	fd = open("/proc/sys/kernel/core_pattern", O_WRONLY);
	tap_require(fd >= 0 && write(fd, pattern, strlen(pattern)) > 0);
	close(fd);
	fd = open("/dev/morsel/core", O_RDWR | O_CREAT | O_EXCL, 0600);
	tap_require(fd >= 0 && ftruncate(fd, SIZE) == 0);

	pid = fork();
	tap_require(pid >= 0);
	if (pid == 0) {
		char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			       fd, 0);

		if (p == MAP_FAILED || setrlimit(RLIMIT_CORE, &unlimited))
			_exit(2);
		memset(p, 0x5a, SIZE);	/* 64 MiB of populated pages */
		abort();
	}
	tap_require(waitpid(pid, &status, 0) == pid);
	tap_ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT &&
	       WCOREDUMP(status),
	       "a process with a 64 MiB morsel mapping dumps core (status %#x)",
	       status);
	snprintf(core, sizeof(core), "/tmp/core.%d", pid);
	tap_ok(stat(core, &st) == 0, "the core file %s exists", core);
	tap_ok(st.st_size > 0 && st.st_size < (off_t)(SIZE / 4),
	       "the morsel mapping is not in it (%lld bytes for 64 MiB mapped)",
	       (long long)st.st_size);
	unlink(core);
	close(fd);
	tap_ok(unlink("/dev/morsel/core") == 0, "unlink");
	return tap_done();
}
