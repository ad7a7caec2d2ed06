// SPDX-License-Identifier: GPL-2.0
/*
 * Crash test, guest side, after a reboot: every image save_writer left on
 * the disk is intact and holds one consistent generation, never older
 * than what the writer had reported durable before it was killed.
 *
 *   save_checker DIR FULL_G CHAIN_G CHAIN_K
 *
 * FULL_G: the last "DURABLE full G" the killed writer printed (0: none);
 * CHAIN_G, CHAIN_K: its last "DURABLE chain G K" (CHAIN_K -1: none).
 * The image written after the last report may exist too (the kill hit
 * between rename and print): then it must be exactly one newer.
 * TAP output; exit status 0 only if every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "libmorsel.h"
#include "crash.h"
#include "tap.h"

/* Is the loaded object exactly the state of its newest generation? */
static int consistent(int fd, uint64_t *gen)
{
	static char page[CRASH_PAGE], want[CRASH_PAGE];
	uint64_t g = crash_generation(fd), p, e;

	*gen = g;
	for (p = 0; p < CRASH_PAGES; p++) {
		if (pread(fd, page, CRASH_PAGE, p * CRASH_PAGE) != CRASH_PAGE)
			return tap_diag("read page %llu: %s",
					(unsigned long long)p,
					strerror(errno)), 0;
		e = crash_expected(g, p);
		if (e)
			crash_fill(want, e, p);
		else
			memset(want, 0, CRASH_PAGE);
		if (memcmp(page, want, CRASH_PAGE)) {
			uint64_t seen;

			memcpy(&seen, page, 8);
			return tap_diag("page %llu holds generation %llu, state "
					"%llu needs %llu: a mix",
					(unsigned long long)p,
					(unsigned long long)seen,
					(unsigned long long)g,
					(unsigned long long)e), 0;
		}
	}
	return 1;
}

static int load_and_check(const char *const *imgs, unsigned int n,
			  uint64_t *gen, const char *what)
{
	struct morsel_load_opts lo = { .base_fd = -1 };
	struct mimg_error err;
	int fd, ok;

	if (morsel_image_verify(imgs, n, NULL, NULL, &err)) {
		tap_diag("%s: verify: %s (offset %llu)", what, err.msg,
			 (unsigned long long)err.offset);
		return 0;
	}
	unlink("/dev/morsel/check");
	fd = morsel_load(imgs, n, "/dev/morsel/check", &lo, NULL, &err);
	if (fd < 0) {
		tap_diag("%s: load: %s", what, err.msg);
		return 0;
	}
	ok = consistent(fd, gen);
	close(fd);
	unlink("/dev/morsel/check");
	return ok;
}

int main(int argc, char **argv)
{
	static char paths[1024][128];
	const char *imgs[1024];
	const char *dir;
	long long full_g, chain_g, chain_k;
	struct stat st;
	uint64_t g;
	unsigned int n;
	int ok;

	if (argc != 5) {
		fprintf(stderr, "usage: save_checker DIR FULL_G CHAIN_G CHAIN_K\n");
		return 2;
	}
	dir = argv[1];
	full_g = atoll(argv[2]);
	chain_g = atoll(argv[3]);
	chain_k = atoll(argv[4]);

	snprintf(paths[0], sizeof(paths[0]), "%s/full.img", dir);
	imgs[0] = paths[0];
	if (stat(paths[0], &st)) {
		tap_ok(full_g == 0, "no full.img, and none was reported "
		       "durable (last: %lld)", full_g);
		tap_skip("full.img: nothing to check");
	} else {
		ok = load_and_check(imgs, 1, &g, "full.img");
		tap_ok(ok, "full.img verifies and holds one consistent "
		       "generation (%llu)", (unsigned long long)g);
		tap_ok(ok && (long long)g >= full_g && g % 4 == 0 &&
		       (long long)g <= (full_g ? full_g + 4 : 4),
		       "full.img is the last durable full save or the one "
		       "after (%llu, reported %lld)", (unsigned long long)g,
		       full_g);
	}

	for (n = 0; n < 1024; n++) {
		snprintf(paths[n], sizeof(paths[n]), "%s/chain/c-%u.img", dir,
			 n);
		if (stat(paths[n], &st))
			break;
		imgs[n] = paths[n];
	}
	if (!n) {
		tap_ok(chain_k < 0, "no chain, and none was reported durable");
		tap_skip("chain: nothing to check");
	} else {
		ok = load_and_check(imgs, n, &g, "chain");
		tap_ok(ok, "the chain of %u images verifies, loads and holds "
		       "one consistent generation (%llu)", n,
		       (unsigned long long)g);
		tap_ok(ok && (long long)n - 1 >= chain_k &&
		       (long long)n - 1 <= chain_k + 1 &&
		       (long long)g >= chain_g,
		       "the chain ends at the last durable increment or the "
		       "one after (%u images, generation %llu; reported K=%lld "
		       "G=%lld)", n, (unsigned long long)g, chain_k, chain_g);
	}
	return tap_done();
}
