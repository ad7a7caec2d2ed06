#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-chain: a chain of images (a full or delta image, then
 * increments, each naming its parent): opening and checking it, the chain
 * rules shared with saves, and morsel_image_verify().
 */
#include "persist-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * May an image of [@start, +@length) of an object of @size follow @parent?
 * The same range, or both the whole object (whose size may have changed).
 */
bool mp_same_range(const struct mimg_header *parent, uint64_t start,
		   uint64_t length, uint64_t size)
{
	uint64_t psize = (parent->object_size + PAGE - 1) / PAGE * PAGE;

	if (parent->range_start == start && parent->range_length == length)
		return true;
	return !parent->range_start && parent->range_length == psize &&
	       !start && length == (size + PAGE - 1) / PAGE * PAGE;
}

static bool ids_equal(const uint8_t *a, const uint8_t *b)
{
	return !memcmp(a, b, 16);
}

void mp_chain_close(struct chain *c)
{
	unsigned int i;

	for (i = 0; c->r && i < c->n; i++) {
		mimg_close(&c->r[i]);
		if (c->fds[i] >= 0)
			close(c->fds[i]);
		if (c->dfds && c->dfds[i] >= 0)
			close(c->dfds[i]);
	}
	free(c->r);
	free(c->fds);
	free(c->dfds);
	memset(c, 0, sizeof(*c));
}

/* Open and check @n images: a root, then increments, each on the last. */
int mp_chain_open(struct chain *c, const char *const *paths,
		  unsigned int n, struct mimg_error *err)
{
	const struct mimg_header *h, *p;
	unsigned int i;
	int ret;

	memset(c, 0, sizeof(*c));
	if (!n)
		return mimg_set_error(err, -EINVAL, 0, "no image given");
	c->r = calloc(n, sizeof(*c->r));
	c->fds = malloc(n * sizeof(*c->fds));
	if (!c->r || !c->fds) {
		free(c->r);
		free(c->fds);
		c->r = NULL;
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	}
	for (i = 0; i < n; i++)
		c->fds[i] = -1;
	c->n = n;
	for (i = 0; i < n; i++) {
		c->r[i].fd = -1;
		c->fds[i] = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (c->fds[i] < 0)
			return mimg_set_error(err, -errno, 0, "%s: %s", paths[i],
				    strerror(errno));
		ret = mimg_open(c->fds[i], &c->r[i], err);
		if (ret) {
			mp_prefix_error(err, paths[i]);
			return ret;
		}
		h = &c->r[i].h;
		if (!i && (h->flags & MIMG_F_INCREMENT))
			return mimg_set_error(err, -EINVAL, 0, "%s is an increment: give "
				    "the chain from its full (or delta) image "
				    "on", paths[i]);
		if (!i)
			continue;
		p = &c->r[i - 1].h;
		if (!(h->flags & MIMG_F_INCREMENT) ||
		    !ids_equal(h->parent_id, p->image_id))
			return mimg_set_error(err, -EINVAL, 0, "%s does not follow %s in "
				    "a chain", paths[i], paths[i - 1]);
		if (!mp_same_range(p, h->range_start, h->range_length,
				   h->object_size))
			return mimg_set_error(err, -EINVAL, 0, "%s covers another range "
				    "than %s", paths[i], paths[i - 1]);
	}
	return 0;
}

/*
 * Read the chain's data with O_DIRECT where the file system allows it: the
 * device then writes into our buffers (or, through MORSEL_IOC_FILL, into
 * the object's new frames) without a copy in the page cache, and a load
 * does not leave the images cached.  Every data run is page aligned in
 * the file (image-format.md), as O_DIRECT wants; a file system that
 * refuses it is read through the page cache as before.  Only data reads
 * use these descriptors: every buffer they read into is page aligned.
 */
void mp_chain_read_direct(struct chain *c, const char *const *paths)
{
	void *probe = aligned_alloc(PAGE, PAGE);
	unsigned int i;
	int fd;

	c->dfds = malloc(c->n * sizeof(*c->dfds));
	if (!probe || !c->dfds) {
		free(probe);
		return;		/* c->dfds NULL: buffered */
	}
	for (i = 0; i < c->n; i++) {
		c->dfds[i] = -1;
		fd = open(paths[i], O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (pread(fd, probe, PAGE, 0) != (ssize_t)PAGE) {
			close(fd);
			continue;
		}
		c->dfds[i] = fd;
		c->r[i].fd = fd;
	}
	free(probe);
}

bool mp_chain_direct(const struct chain *c, unsigned int i)
{
	return c->dfds && c->dfds[i] >= 0;
}

/* The record of @span in @r, or NULL; *@cursor only moves forward. */
const struct mimg_record *mp_record_of_span(const struct mimg_reader *r,
					    uint64_t *cursor,
					    uint64_t span)
{
	while (*cursor < r->h.nr_records && r->records[*cursor].span < span)
		(*cursor)++;
	if (*cursor >= r->h.nr_records || r->records[*cursor].span != span)
		return NULL;
	return &r->records[*cursor];
}

/*
 * Without reading data: does every present page of the newest image have
 * an image that stores it (or, for a delta chain, may it be the base's)?
 */
static int chain_check(const struct chain *c, struct mimg_error *err)
{
	const struct mimg_reader *last = &c->r[c->n - 1];
	uint64_t need[MIMG_BITMAP_WORDS], *cursor, i;
	const struct mimg_record *lr, *rec;
	unsigned int k, w, pg;
	int ret = 0;

	if (c->r[0].h.flags & MIMG_F_DELTA)
		return 0;
	cursor = calloc(c->n, sizeof(*cursor));
	if (!cursor)
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	for (i = 0; i < last->h.nr_records && !ret; i++) {
		lr = &last->records[i];
		memcpy(need, lr->present, sizeof(need));
		for (k = c->n; k-- > 0 && !mp_bits_empty(need);) {
			rec = mp_record_of_span(&c->r[k], &cursor[k], lr->span);
			if (!rec)
				continue;
			for (w = 0; w < MIMG_BITMAP_WORDS; w++)
				need[w] &= ~rec->stored[w];
		}
		if (mp_bits_empty(need))
			continue;
		for (pg = 0; !mimg_test(need, pg); pg++)
			;
		ret = mimg_set_error(err, -EINVAL, MIMG_HEADER_SIZE + i * MIMG_RECORD_SIZE,
			   "broken chain: page at offset %llu is present but no "
			   "image of the chain stores it",
			   (unsigned long long)((lr->span * SPAN_PAGES + pg) *
						PAGE));
	}
	free(cursor);
	return ret;
}

int morsel_image_verify(const char *const *paths, unsigned int n,
			const struct morsel_progress *pr,
			struct mimg_header *last, struct mimg_error *err)
{
	struct chain c;
	unsigned int i;
	int ret;

	if (err)
		memset(err, 0, sizeof(*err));
	ret = mp_chain_open(&c, paths, n, err);
	if (!ret)
		ret = chain_check(&c, err);
	for (i = 0; !ret && i < n; i++) {
		ret = mimg_verify(&c.r[i], pr ? pr->fn : NULL,
				  pr ? pr->arg : NULL, err);
		if (ret)
			mp_prefix_error(err, paths[i]);
	}
	if (!ret && last)
		*last = c.r[n - 1].h;
	mp_chain_close(&c);
	return ret;
}
