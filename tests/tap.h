/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal TAP 13 helpers for morsel tests, in the spirit of kselftest.h.
 *
 *   tap_ok(cond, "what this checks");
 *   tap_errno(call, EINVAL, "ftruncate to 4097 bytes");   // call is -1/errno
 *   tap_skip("O_DIRECT: %s on /tmp", strerror(errno));    // a check not run
 *   return tap_done();                                    // prints 1..N
 *
 * The header is printed before main().  The harness counts the checks:
 * tap_done() prints the plan after the results (valid TAP 13), so tests
 * do not count by hand.  A test that knows its count may still call
 * tap_plan(N) first; tap_done() then checks it.
 * Every failing check prints the condition, file and line, and errno.
 * tap_fatal() bails out of the whole test (TAP "Bail out!", exit 1);
 * tap_require(cond, fmt, ...) bails out with its message unless @cond
 * holds.  A test program that cannot run here calls tap_skip_all(reason)
 * before any check: "1..0 # SKIP reason" and kselftest's KSFT_SKIP exit
 * code, 4.  A program that exits after checks without tap_done() (a
 * return from main before it, an exit() of the main process) exits 1:
 * it did not finish.
 */
#ifndef MORSEL_TAP_H
#define MORSEL_TAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KSFT_PASS	0
#define KSFT_FAIL	1
#define KSFT_SKIP	4

static int tap_planned, tap_run, tap_failed, tap_skipped;
static pid_t tap_pid;		/* the process that prints the plan */
static int tap_finished;	/* tap_done() or tap_skip_all() ran */

/*
 * Exiting after checks but without the plan: the test did not finish,
 * whatever the status.  (Before any check, a program keeps its own exit
 * status: a usage error, say.)
 */
static void tap_atexit(void)
{
	if (tap_finished || getpid() != tap_pid || (!tap_run && !tap_planned))
		return;
	printf("# exited after %d checks without tap_done(): not finished\n",
	       tap_run);
	fflush(stdout);
	_exit(KSFT_FAIL);
}

/*
 * Before main(), in the program's first process: the header, and
 * line-buffered stdout even into a pipe (the suite runner reads the
 * output through one): no output lost in a crash, none duplicated by a
 * fork() with a full buffer.  Children inherit tap_pid: their exit()
 * is theirs to judge.
 */
__attribute__((constructor)) static void tap_init(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	tap_pid = getpid();
	atexit(tap_atexit);
	printf("TAP version 13\n");
	fflush(stdout);
}

/* Optional: a count known in advance, printed first and checked at the end. */
static inline void tap_plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline void tap_diag(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static inline void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline int tap_result(int ok, const char *file, int line,
			     const char *expr, int err, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static inline int tap_result(int ok, const char *file, int line,
			     const char *expr, int err, const char *fmt, ...)
{
	va_list ap;

	tap_run++;
	if (!ok)
		tap_failed++;
	printf("%sok %d - ", ok ? "" : "not ", tap_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
		printf("#   failed: %s at %s:%d (errno %d: %s)\n", expr, file,
		       line, err, strerror(err));
	fflush(stdout);
	return ok;
}

#define tap_ok(cond, ...) \
	tap_result(!!(cond), __FILE__, __LINE__, #cond, errno, __VA_ARGS__)

/* @call must fail with -1 and errno @want. */
#define tap_errno(call, want, ...) ({					\
	errno = 0;							\
	long __r = (long)(call);					\
	int __e = errno;						\
	if (!(__r == -1 && __e == (want)))				\
		printf("#   got %ld errno %d (%s), want -1 errno %d (%s)\n",\
		       __r, __e, strerror(__e), (want), strerror(want));\
	tap_result(__r == -1 && __e == (want), __FILE__, __LINE__,	\
		   #call " fails with " #want, __e, __VA_ARGS__);	\
})

/* A check that cannot run here: "ok N # SKIP what and why". */
static inline void tap_skip(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static inline void tap_skip(const char *fmt, ...)
{
	va_list ap;

	tap_run++;
	tap_skipped++;
	printf("ok %d # SKIP ", tap_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* The whole program cannot run here; call it before any check. */
static inline void tap_skip_all(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
static inline void tap_skip_all(const char *fmt, ...)
{
	va_list ap;

	if (tap_run || tap_planned) {
		printf("Bail out! tap_skip_all() after %d checks\n", tap_run);
		fflush(stdout);
		tap_finished = 1;
		exit(KSFT_FAIL);
	}
	tap_finished = 1;
	printf("1..0 # SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(KSFT_SKIP);
}

#define tap_fatal(...) do {						\
	int __fe = errno;						\
	printf("Bail out! %s:%d: ", __FILE__, __LINE__);		\
	printf(__VA_ARGS__);						\
	printf(" (errno %d: %s)\n", __fe, strerror(__fe));		\
	fflush(stdout);							\
	tap_finished = 1;	/* the Bail out! says it all */		\
	exit(KSFT_FAIL);						\
} while (0)

/*
 * Check a setup step that the rest of the test depends on: bail out
 * unless @cond holds, naming the condition and the optional message
 * (printf format and arguments).
 */
#define tap_require(cond, ...) do {					\
	if (!(cond)) {							\
		int __re = errno;					\
		printf("Bail out! %s:%d: required: %s",		\
		       __FILE__, __LINE__, #cond);			\
		__VA_OPT__(printf(": "); printf(__VA_ARGS__);)		\
		printf(" (errno %d: %s)\n", __re, strerror(__re));	\
		fflush(stdout);						\
		tap_finished = 1;					\
		exit(KSFT_FAIL);					\
	}								\
} while (0)

/*
 * The end: the plan (unless tap_plan() printed it first) and the totals;
 * the exit status for main().  No check at all is a failure.
 */
static inline int tap_done(void)
{
	tap_finished = 1;
	if (!tap_planned)
		printf("1..%d\n", tap_run);
	if (tap_skipped)
		printf("# %d passed (%d skipped), %d failed\n",
		       tap_run - tap_failed, tap_skipped, tap_failed);
	else
		printf("# %d passed, %d failed\n", tap_run - tap_failed,
		       tap_failed);
	if (tap_planned && tap_run != tap_planned) {
		printf("# planned %d tests but ran %d\n", tap_planned, tap_run);
		fflush(stdout);
		return KSFT_FAIL;
	}
	if (!tap_run) {
		printf("# no checks ran\n");
		fflush(stdout);
		return KSFT_FAIL;
	}
	fflush(stdout);
	return tap_failed ? KSFT_FAIL : KSFT_PASS;
}

#endif /* MORSEL_TAP_H */
