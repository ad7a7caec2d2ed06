#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-io: what saves and loads share for their I/O: the page-aligned
 * buffers of BATCH_BYTES kept between calls (morsel_persist_trim() frees
 * them), the fsync of an image's directory, and the small helpers for
 * error messages and progress reports.
 */
#include "persist-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void mp_prefix_error(struct mimg_error *err, const char *path)
{
	char m[sizeof(err->msg)];
	size_t n;

	if (!err)
		return;
	n = strlen(path);
	if (n + 2 >= sizeof(m))
		return;
	memcpy(m, path, n);
	memcpy(m + n, ": ", 2);
	memcpy(m + n + 2, err->msg, sizeof(m) - n - 2);
	m[sizeof(m) - 1] = 0;
	memcpy(err->msg, m, sizeof(m));
}

int mp_fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

void mp_report_progress(const struct morsel_progress *p, uint64_t done,
			uint64_t total)
{
	if (p && p->fn)
		p->fn(done, total, p->arg);
}

/*
 * Saves and loads copy through page-aligned buffers of BATCH_BYTES.  A
 * fresh buffer costs a page fault and a zeroed page per 4 KiB the first
 * time it is touched: for a small incremental save, about as much as the
 * save itself.  So buffers are kept between calls, at most BUF_CACHE_MAX
 * of them (16 MiB); morsel_persist_trim() gives them back.
 */
#define BUF_CACHE_MAX	8

static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;
static void *buf_cache[BUF_CACHE_MAX];	/* under buf_lock */
static unsigned int buf_cached;		/* under buf_lock */

void *mp_buf_get(void)
{
	void *p = NULL;

	pthread_mutex_lock(&buf_lock);
	if (buf_cached)
		p = buf_cache[--buf_cached];
	pthread_mutex_unlock(&buf_lock);
	return p ? p : aligned_alloc(PAGE, BATCH_BYTES);
}

void mp_buf_put(void *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&buf_lock);
	if (buf_cached < BUF_CACHE_MAX) {
		buf_cache[buf_cached++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&buf_lock);
	free(p);
}

void morsel_persist_trim(void)
{
	pthread_mutex_lock(&buf_lock);
	while (buf_cached)
		free(buf_cache[--buf_cached]);
	pthread_mutex_unlock(&buf_lock);
}
