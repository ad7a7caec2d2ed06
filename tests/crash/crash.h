/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The state the crash test saves (save_writer.c) and checks
 * (save_checker.c): page p of generation g holds the stamp of the last
 * generation j <= g with j % 4 == p % 4, so every consistent state is a
 * function of its generation alone.
 */
#ifndef MORSEL_TESTS_CRASH_H
#define MORSEL_TESTS_CRASH_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CRASH_PAGE	4096
#define CRASH_PAGES	4096ULL		/* 16 MiB */

static inline uint64_t crash_word(uint64_t g, uint64_t p, uint64_t i)
{
	uint64_t v = (g * 0x9e3779b97f4a7c15ULL) ^ (p << 20) ^ i;

	v ^= v >> 31;
	return v * 0xbf58476d1ce4e5b9ULL;
}

/* Page @p as generation @g stamps it: g, p, then pattern words. */
static inline void crash_fill(char *page, uint64_t g, uint64_t p)
{
	uint64_t i, w;

	memcpy(page, &g, 8);
	memcpy(page + 8, &p, 8);
	for (i = 2; i < CRASH_PAGE / 8; i++) {
		w = crash_word(g, p, i);
		memcpy(page + 8 * i, &w, 8);
	}
}

/* The generation whose stamp page @p shows in state @g (0: none yet). */
static inline uint64_t crash_expected(uint64_t g, uint64_t p)
{
	uint64_t back = (g + 4 - p % 4) % 4;

	return g >= back && g - back > 0 ? g - back : 0;
}

/* The newest stamp in the object: its generation (0 if none). */
static inline uint64_t crash_generation(int fd)
{
	uint64_t p, g, best = 0;

	for (p = 0; p < 4 && p < CRASH_PAGES; p++)
		if (pread(fd, &g, 8, p * CRASH_PAGE) == 8 && g > best)
			best = g;
	return best;
}

static inline void crash_sync_dir(const char *dir, const char *sub)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

#endif /* MORSEL_TESTS_CRASH_H */
