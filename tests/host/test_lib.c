#define _GNU_SOURCE
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Host unit tests of libmorsel's pure functions (no module needed):
 * size parsing and formatting, level names, path resolution, and the
 * sparse copy-in logic against a plain file standing in for a morsel.
 * Built with ASan/UBSan by the Makefile.
 */
#include "tap.h"
#include "libmorsel.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct ok_case {
	const char *s;
	uint64_t want;
};

static const struct ok_case ok_cases[] = {
	{ "0", 0 },
	{ "4096", 4096 },
	{ "8192", 8192 },
	{ "4k", 4096 },
	{ "4K", 4096 },
	{ "4KiB", 4096 },
	{ "12k", 12288 },
	{ "2M", 2ULL << 20 },
	{ "2m", 2ULL << 20 },
	{ "2MiB", 2ULL << 20 },
	{ "1G", 1ULL << 30 },
	{ "1g", 1ULL << 30 },
	{ "64G", 64ULL << 30 },
	{ "512G", 512ULL << 30 },
	{ "1T", 1ULL << 40 },
	{ "0k", 0 },
	{ "000004096", 4096 },
	{ "16777215T", 16777215ULL << 40 },		/* largest with T */
	{ "18446744073709547520", UINT64_MAX - 4095 },
	{ "1", 1 },			/* sizes are in bytes */
	{ "4095", 4095 },
	{ "4097", 4097 },
	{ "1k", 1024 },
	{ "2k", 2048 },
	{ "6k", 6144 },
	{ "18446744073709551615", UINT64_MAX },		/* largest at all */
};

static const char *const bad_cases[] = {
	NULL,			/* no string */
	"",			/* empty */
	"k",			/* suffix only */
	"G",
	" 4096",		/* leading space */
	"4096 ",		/* trailing space */
	"4096\n",
	"+4096",		/* sign */
	"-4096",
	"0x1000",		/* hex */
	"4.0k",			/* fraction */
	"4kk",			/* double suffix */
	"4kB",			/* only "iB" may follow a suffix */
	"4ki",
	"4KIB",
	"4iB",			/* "iB" without a suffix */
	"4b",
	"4096B",
	"4x",			/* unknown suffix */
	"4P",			/* unsupported suffix */
	"4 k",
	"abc",
	"18446744073709551616",	/* UINT64_MAX + 1: overflows */
	"99999999999999999999999",
	"16777216T",		/* 2^64: overflows after the shift */
	"17179869184G",		/* 2^64 via G */
	"18014398509481984k",	/* 2^64 via k */
};

/* @s for a test description: quoted, control characters escaped. */
static const char *show(const char *s)
{
	static char buf[128];
	size_t n = 0;

	if (!s)
		return "NULL";
	buf[n++] = '"';
	for (; *s && n < sizeof(buf) - 6; s++) {
		if (*s == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else {
			buf[n++] = *s;
		}
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

static void test_size_parse(void)
{
	size_t i;

	for (i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		uint64_t v = 12345;
		int ret = morsel_size_parse(ok_cases[i].s, &v);

		if (!tap_ok(ret == 0 && v == ok_cases[i].want,
			    "size_parse(\"%s\") = %llu", ok_cases[i].s,
			    (unsigned long long)ok_cases[i].want))
			tap_diag("got ret %d value %llu", ret,
				 (unsigned long long)v);
	}
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		uint64_t v = 12345;
		int ret = morsel_size_parse(bad_cases[i], &v);

		if (!tap_ok(ret == -EINVAL && v == 12345,
			    "size_parse(%s) fails with -EINVAL, output untouched",
			    show(bad_cases[i])))
			tap_diag("got ret %d value %llu", ret,
				 (unsigned long long)v);
	}
	tap_ok(morsel_size_parse("4096", NULL) == -EINVAL,
	       "size_parse with NULL output fails with -EINVAL");
}

static void test_size_format(void)
{
	char buf[32];

	tap_ok(!strcmp(morsel_size_format(0, buf, sizeof(buf)), "0"),
	       "size_format(0) = \"0\"");
	tap_ok(!strcmp(morsel_size_format(4096, buf, sizeof(buf)), "4K"),
	       "size_format(4096) = \"4K\"");
	tap_ok(!strcmp(morsel_size_format(2ULL << 20, buf, sizeof(buf)), "2M"),
	       "size_format(2 MiB) = \"2M\"");
	tap_ok(!strcmp(morsel_size_format(64ULL << 30, buf, sizeof(buf)),
		       "64G"), "size_format(64 GiB) = \"64G\"");
	tap_ok(!strcmp(morsel_size_format(3ULL << 29, buf, sizeof(buf)),
		       "1.5G"), "size_format(1.5 GiB) = \"1.5G\"");
	tap_ok(!strcmp(morsel_size_format(1ULL << 40, buf, sizeof(buf)), "1T"),
	       "size_format(1 TiB) = \"1T\"");
	tap_ok(!strcmp(morsel_size_format(100, buf, sizeof(buf)), "100"),
	       "size_format(100) = \"100\"");
	tap_ok(!strcmp(morsel_size_format(UINT64_MAX, buf, sizeof(buf)),
		       "16.0E"), "size_format(UINT64_MAX) = \"16.0E\"");
	tap_ok(!strcmp(morsel_size_format(1ULL << 30, buf, 2), "1"),
	       "size_format truncates to the buffer");
}

static void test_level_name(void)
{
	tap_ok(!strcmp(morsel_level_name(MORSEL_LEVEL_NONE), "none"),
	       "level 0 is \"none\"");
	tap_ok(!strcmp(morsel_level_name(MORSEL_LEVEL_PTE), "pte"),
	       "level 1 is \"pte\"");
	tap_ok(!strcmp(morsel_level_name(MORSEL_LEVEL_PMD), "pmd"),
	       "level 2 is \"pmd\"");
	tap_ok(!strcmp(morsel_level_name(MORSEL_LEVEL_PUD), "pud"),
	       "level 3 is \"pud\"");
	tap_ok(!strcmp(morsel_level_name(4), "unknown"), "level 4 is \"unknown\"");
	tap_ok(!strcmp(morsel_level_name(~0U), "unknown"),
	       "level ~0 is \"unknown\"");
}

static void test_path(void)
{
	char buf[64];

	unsetenv("MORSEL_DIR");
	tap_ok(!strcmp(morsel_dir(), MORSEL_DIR), "default dir is /dev/morsel");
	tap_ok(morsel_path("foo", buf, sizeof(buf)) == 0 &&
	       !strcmp(buf, "/dev/morsel/foo"), "relative name under /dev/morsel");
	tap_ok(morsel_path("/tmp/x", buf, sizeof(buf)) == 0 &&
	       !strcmp(buf, "/tmp/x"), "absolute name kept");
	setenv("MORSEL_DIR", "/mnt/m/", 1);
	tap_ok(morsel_path("a/b", buf, sizeof(buf)) == 0 &&
	       !strcmp(buf, "/mnt/m/a/b"), "MORSEL_DIR honoured, one slash");
	setenv("MORSEL_DIR", "", 1);
	tap_ok(!strcmp(morsel_dir(), MORSEL_DIR), "empty MORSEL_DIR ignored");
	unsetenv("MORSEL_DIR");
	tap_ok(morsel_path("", buf, sizeof(buf)) == -EINVAL, "empty name: -EINVAL");
	tap_ok(morsel_path(NULL, buf, sizeof(buf)) == -EINVAL, "NULL name: -EINVAL");
	tap_ok(morsel_path("0123456789", buf, 20) == -ENAMETOOLONG,
	       "too long for the buffer: -ENAMETOOLONG");
}

/*
 * morsel_copy_in() on a tmpfs/ext4 file standing in for the morsel: the
 * data ends up at the same offsets, zero pages stay holes where the
 * filesystem supports them, and the size is the source's, in bytes.
 */
static void test_copy_in(void)
{
	char src_name[] = "/tmp/test_lib.srcXXXXXX";
	char dst_name[] = "/tmp/test_lib.dstXXXXXX";
	static char page[4096], got[4096];
	const off_t far = 10 * 4096 + 100;	/* after a hole, unaligned */
	struct stat st;
	int src, dst, ok = 1;
	off_t off;

	src = mkstemp(src_name);
	dst = mkstemp(dst_name);
	tap_require(src >= 0 && dst >= 0);
	unlink(src_name);
	unlink(dst_name);
	memset(page, 'A', sizeof(page));
	tap_require(pwrite(src, page, sizeof(page), 0) == (ssize_t)sizeof(page));
	tap_require(pwrite(src, "tail", 4, far) == 4);
	/* stale data in the destination must go */
	memset(page, 'Z', sizeof(page));
	tap_require(pwrite(dst, page, sizeof(page), 5 * 4096) == 4096);
	tap_require(pwrite(dst, page, sizeof(page), 20 * 4096) == 4096);

	tap_ok(morsel_copy_in(dst, src) == 0, "copy_in of a sparse file");
	tap_ok(fstat(dst, &st) == 0 && st.st_size == far + 4,
	       "destination sized to the source exactly (%lld)",
	       (long long)st.st_size);
	for (off = 0; off < 11 * 4096; off += 4096) {
		ssize_t want = off == 10 * 4096 ? 104 : 4096;

		if (pread(dst, got, sizeof(got), off) != want) {
			ok = 0;
			break;
		}
		memset(page, 0, sizeof(page));
		if (off == 0)
			memset(page, 'A', sizeof(page));
		if (off == 10 * 4096)
			memcpy(page + 100, "tail", 4);
		if (memcmp(got, page, (size_t)want)) {
			tap_diag("mismatch in page %lld", (long long)(off / 4096));
			ok = 0;
		}
	}
	tap_ok(ok, "contents equal, holes read as zeros, stale data gone");

	{
		int d = open("/tmp", O_RDONLY | O_DIRECTORY);

		tap_ok(morsel_copy_in(dst, d) == -EISDIR,
		       "copy_in from a directory: -EISDIR");
		close(d);
	}
	tap_ok(morsel_copy_in(dst, -1) == -EBADF, "copy_in from a bad fd: -EBADF");
	close(src);
	close(dst);
}

/* Byte @i of the stream test_copy_streams() sends: page 300 is zeros. */
static char stream_byte(size_t i)
{
	return i / 4096 == 300 ? 0 : (char)('a' + i % 23);
}

/* Write @len stream bytes to @fd in pieces of 4097: reads come up short. */
static void send_stream(int fd, size_t len)
{
	static char piece[4097];
	size_t at, i, n;

	for (at = 0; at < len; at += n) {
		n = len - at < sizeof(piece) ? len - at : sizeof(piece);
		for (i = 0; i < n; i++)
			piece[i] = stream_byte(at + i);
		if (write(fd, piece, n) != (ssize_t)n)
			_exit(1);
	}
}

/*
 * The stream paths of morsel_copy_in() and morsel_copy_out() (pipes): the
 * library's full reads gather whole 1 MiB chunks from short pipe reads,
 * and its full writes push everything through a pipe.
 */
static void test_copy_streams(void)
{
	char dst_name[] = "/tmp/test_lib.pipeXXXXXX";
	const size_t len = (3u << 20) + 5;	/* 3 chunks and a bit */
	static char got[4096];
	size_t at, i, n;
	int p[2], dst, status, ok = 1;
	struct stat st;
	pid_t pid;

	dst = mkstemp(dst_name);
	tap_require(dst >= 0 && pipe(p) == 0);
	unlink(dst_name);
	pid = fork();
	tap_require(pid >= 0);
	if (!pid) {
		close(p[0]);
		send_stream(p[1], len);
		_exit(0);
	}
	close(p[1]);
	tap_ok(morsel_copy_in(dst, p[0]) == 0,
	       "copy_in from a pipe written in pieces of 4097 bytes");
	close(p[0]);
	waitpid(pid, &status, 0);
	for (at = 0; ok && at < len; at += n) {
		n = len - at < sizeof(got) ? len - at : sizeof(got);
		ok = pread(dst, got, n, (off_t)at) == (ssize_t)n;
		for (i = 0; ok && i < n; i++)
			ok = got[i] == stream_byte(at + i);
	}
	tap_ok(ok && fstat(dst, &st) == 0 && (uint64_t)st.st_size == len,
	       "contents equal across the 1 MiB chunks, size exact");

	tap_require(pipe(p) == 0);
	pid = fork();
	tap_require(pid >= 0);
	if (!pid) {
		close(p[0]);
		_exit(morsel_copy_out(dst, p[1]) ? 1 : 0);
	}
	close(p[1]);
	for (at = 0, ok = 1; ok; at += (size_t)n) {
		ssize_t r = read(p[0], got, 1000);

		if (r <= 0)
			break;
		n = (size_t)r;
		for (i = 0; ok && i < n; i++)
			ok = got[i] == (at + i < len ? stream_byte(at + i) : 0);
	}
	waitpid(pid, &status, 0);
	tap_ok(ok && at == len && WIFEXITED(status) &&
	       !WEXITSTATUS(status), "copy_out into a pipe gives it all back");
	close(p[0]);
	close(dst);
}

static void test_misc(void)
{
	void *p = NULL;

	tap_ok(morsel_stat(-1, NULL) == -EINVAL, "stat with NULL: -EINVAL");
	tap_ok(morsel_map(-1, 4096, 0, 1U << 5, &p) == -EINVAL,
	       "map with unknown flags: -EINVAL");
	tap_ok(morsel_map(-1, 4096, 0, 0, NULL) == -EINVAL,
	       "map with NULL addr: -EINVAL");
	tap_ok(morsel_map(-1, 4096, PROT_READ, 0, &p) == -EBADF,
	       "map of a bad fd: -EBADF");
	tap_ok(morsel_totals(NULL) == -EINVAL, "totals with NULL: -EINVAL");
}

int main(void)
{
	test_size_parse();
	test_size_format();
	test_level_name();
	test_path();
	test_copy_in();
	test_copy_streams();
	test_misc();
	return tap_done();
}
