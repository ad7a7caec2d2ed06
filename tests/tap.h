/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal TAP helpers for morsel tests, in the spirit of kselftest.h.
 *
 *   tap_plan(3);
 *   tap_ok(cond, "what this checks");
 *   tap_errno(call, EINVAL, "ftruncate to 4097 bytes");   // call is -1/errno
 *   return tap_done();
 *
 * Every failing check prints the condition, file and line, and errno.
 * tap_fatal() bails out of the whole test (TAP "Bail out!").
 */
#ifndef MORSEL_TAP_H
#define MORSEL_TAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_planned, tap_run, tap_failed;

static inline void tap_plan(int n)
{
	tap_planned = n;
	printf("TAP version 13\n1..%d\n", n);
	fflush(stdout);
}

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

#define tap_fatal(...) do {						\
	printf("Bail out! %s:%d: ", __FILE__, __LINE__);		\
	printf(__VA_ARGS__);						\
	printf(" (errno %d: %s)\n", errno, strerror(errno));		\
	fflush(stdout);							\
	exit(1);							\
} while (0)

/* Check a setup step that the rest of the test depends on. */
#define tap_require(cond, ...) do {					\
	if (!(cond))							\
		tap_fatal("required: %s", #cond);			\
} while (0)

static inline int tap_done(void)
{
	if (tap_planned && tap_run != tap_planned) {
		printf("# planned %d tests but ran %d\n", tap_planned, tap_run);
		return 1;
	}
	printf("# %d passed, %d failed\n", tap_run - tap_failed, tap_failed);
	return tap_failed ? 1 : 0;
}

#endif /* MORSEL_TAP_H */
