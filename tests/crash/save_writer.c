// SPDX-License-Identifier: GPL-2.0
/*
 * Crash test, guest side: a save loop that the host kills at a random
 * moment (tests/crash/crash-loop.sh).  Runs with the disk at DIR.
 *
 * A 16 MiB morsel of 4096 pages; generation g stamps the pages p with
 * p % 4 == g % 4 (so saves are partial and increments mean something).
 * Page p then holds (last generation <= g that stamped it, p), and that
 * whole state is a function of g alone, which save_checker verifies.
 *
 * Each round continues from DIR/full.img if it exists (loaded into a new
 * object), starts a new chain DIR/chain/c-0.img (full) and then, per
 * generation: an increment c-K.img, and every fourth generation a full
 * save over DIR/full.img.  After each save returns (fsync, rename, fsync
 * of the directory) it prints "DURABLE full G" or "DURABLE chain G K":
 * from then on that state must survive a power cut.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "libmorsel.h"
#include "crash.h"

static void die(const char *what, const struct mimg_error *err, int ret)
{
	printf("WRITER-ERROR %s: %s (%s)\n", what, err ? err->msg : "",
	       strerror(-ret));
	exit(1);
}

static void stamp(int fd, uint64_t g)
{
	static char page[CRASH_PAGE];
	uint64_t p;

	for (p = g % 4; p < CRASH_PAGES; p += 4) {
		crash_fill(page, g, p);
		if (pwrite(fd, page, CRASH_PAGE, p * CRASH_PAGE) != CRASH_PAGE)
			die("pwrite", NULL, -errno);
	}
}

/* Remove the previous round's chain (its checker has seen it). */
static void clear_chain(const char *dir)
{
	char path[512];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/chain", dir);
	mkdir(path, 0700);
	d = opendir(path);
	if (!d)
		die("opendir chain", NULL, -errno);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/chain/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	crash_sync_dir(dir, "chain");
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/mnt/disk";
	char full[512], img[512], parent[512];
	struct morsel_save_opts o = { .base_fd = -1 };
	struct mimg_error err;
	struct mimg_header h;
	uint64_t g = 0, k;
	int fd, ret;

	snprintf(full, sizeof(full), "%s/full.img", dir);
	unlink("/dev/morsel/crash");
	if (access(full, F_OK) == 0) {
		const char *imgs[] = { full };
		struct morsel_load_opts lo = { .base_fd = -1 };

		fd = morsel_load(imgs, 1, "/dev/morsel/crash", &lo, NULL, &err);
		if (fd < 0)
			die("load full.img", &err, fd);
		g = crash_generation(fd);
		if (!g)
			die("full.img holds no generation", NULL, -EINVAL);
	} else {
		fd = morsel_create("/dev/morsel/crash", CRASH_PAGES * CRASH_PAGE,
				   0600);
		if (fd < 0)
			die("create", NULL, fd);
	}
	clear_chain(dir);
	printf("WRITER start at generation %llu\n", (unsigned long long)g);
	fflush(stdout);
	for (k = 0;; k++) {
		g++;
		stamp(fd, g);
		snprintf(img, sizeof(img), "%s/chain/c-%llu.img", dir,
			 (unsigned long long)k);
		o.parent = k ? parent : NULL;
		ret = morsel_save(fd, img, &o, &h, &err);
		if (ret)
			die("save chain", &err, ret);
		printf("DURABLE chain %llu %llu\n", (unsigned long long)g,
		       (unsigned long long)k);
		fflush(stdout);
		snprintf(parent, sizeof(parent), "%s", img);
		if (g % 4 == 0) {
			/* A full save clears too: the chain must not see it. */
			struct morsel_save_opts ro = { .base_fd = -1 };
			int rfd = open("/dev/morsel/crash", O_RDONLY);

			ret = rfd < 0 ? -errno :
			      morsel_save(rfd, full, &ro, &h, &err);
			if (rfd >= 0)
				close(rfd);
			if (ret)
				die("save full", &err, ret);
			printf("DURABLE full %llu\n", (unsigned long long)g);
			fflush(stdout);
		}
	}
	return 0;
}
