/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tap_run_as(): run a part of a VM test as an unprivileged user, in a
 * child process, continuing the parent's TAP numbering.
 */
#ifndef MORSEL_TESTS_VM_RUN_AS_H
#define MORSEL_TESTS_VM_RUN_AS_H

#include <grp.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include "tap.h"

/*
 * Run @fn as @uid:@gid (no supplementary groups) in a child process,
 * continuing the TAP numbering; the child's counts come back through a
 * pipe.  A child that dies without reporting bails the whole test out.
 */
static inline void tap_run_as(uid_t uid, gid_t gid, void (*fn)(void))
{
	int pfd[2], r[2], status;
	ssize_t n;
	pid_t pid;

	tap_require(pipe(pfd) == 0, "pipe");
	fflush(stdout);
	pid = fork();
	tap_require(pid >= 0, "fork");
	if (pid == 0) {
		close(pfd[0]);
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			tap_fatal("cannot become %d:%d", (int)uid, (int)gid);
		fn();
		r[0] = tap_run;
		r[1] = tap_failed;
		if (write(pfd[1], r, sizeof(r)) != sizeof(r))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	n = read(pfd[0], r, sizeof(r));
	close(pfd[0]);
	waitpid(pid, &status, 0);
	if (n != sizeof(r))
		tap_fatal("unprivileged child died (status 0x%x)", status);
	tap_run = r[0];
	tap_failed = r[1];
}

#endif /* MORSEL_TESTS_VM_RUN_AS_H */
