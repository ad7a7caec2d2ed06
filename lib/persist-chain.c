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

/* The first image of a chain: a full image or a delta. */
static int check_root(const struct mimg_header *h, const char *path,
		      struct mimg_error *err)
{
	if (h->flags & MIMG_F_INCREMENT)
		return mimg_set_error(err, -EINVAL, 0, "%s is an increment: "
				      "give the chain from its full (or delta) "
				      "image on", path);
	return 0;
}

/* Does @h (at @path) follow @p (at @ppath) in a chain? */
static int check_link(const struct mimg_header *p, const char *ppath,
		      const struct mimg_header *h, const char *path,
		      struct mimg_error *err)
{
	if (!(h->flags & MIMG_F_INCREMENT) ||
	    !ids_equal(h->parent_id, p->image_id))
		return mimg_set_error(err, -EINVAL, 0, "%s does not follow %s "
				      "in a chain", path, ppath);
	if (!mp_same_range(p, h->range_start, h->range_length, h->object_size))
		return mimg_set_error(err, -EINVAL, 0, "%s covers another "
				      "range than %s", path, ppath);
	return 0;
}

/* Open image @i of the chain and check it, and its link to image @i - 1. */
static int open_image(struct chain *c, const char *const *paths,
		      unsigned int i, struct mimg_error *err)
{
	int ret;

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
	if (!i)
		return check_root(&c->r[0].h, paths[0], err);
	return check_link(&c->r[i - 1].h, paths[i - 1], &c->r[i].h, paths[i],
			  err);
}

int mp_chain_open(struct chain *c, const char *const *paths, unsigned int n,
		  struct mimg_error *err)
{
	unsigned int i;
	int ret;

	memset(c, 0, sizeof(*c));
	if (!n)
		return mimg_set_error(err, -EINVAL, 0, "no image given");
	c->r = calloc(n, sizeof(*c->r));
	c->fds = malloc(n * sizeof(*c->fds));
	if (!c->r || !c->fds) {
		mp_chain_close(c);
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	}
	c->n = n;
	for (i = 0; i < n; i++)
		c->fds[i] = -1;
	for (i = 0; i < n; i++) {
		ret = open_image(c, paths, i, err);
		if (ret)
			return ret;
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

int mp_broken_chain_error(struct mimg_error *err, uint64_t i, uint64_t span,
			  const uint64_t missing[MIMG_BITMAP_WORDS])
{
	uint64_t page = span * SPAN_PAGES + mp_next_bit(missing, 0, true);

	return mimg_set_error(err, -EINVAL,
			      MIMG_HEADER_SIZE + i * MIMG_RECORD_SIZE,
			      "broken chain: page at offset %llu is present "
			      "but no image of the chain stores it",
			      (unsigned long long)(page * PAGE));
}

/*
 * @missing: the present pages of @lr, a record of the newest image, that
 * no image of the chain stores.
 */
static void pages_stored_nowhere(const struct chain *c,
				 const struct mimg_record *lr,
				 uint64_t *cursor,
				 uint64_t missing[MIMG_BITMAP_WORDS])
{
	const struct mimg_record *rec;
	unsigned int k, w;

	memcpy(missing, lr->present, sizeof(lr->present));
	for (k = c->n; k-- > 0 && !mp_bits_empty(missing);) {
		rec = mp_record_of_span(&c->r[k], &cursor[k], lr->span);
		if (!rec)
			continue;
		for (w = 0; w < MIMG_BITMAP_WORDS; w++)
			missing[w] &= ~rec->stored[w];
	}
}

/*
 * Without reading data: does every present page of the newest image have
 * an image that stores it (or, for a delta chain, may it be the base's)?
 */
static int chain_check(const struct chain *c, struct mimg_error *err)
{
	const struct mimg_reader *last = &c->r[c->n - 1];
	uint64_t missing[MIMG_BITMAP_WORDS], *cursor, i;
	int ret = 0;

	if (c->r[0].h.flags & MIMG_F_DELTA)
		return 0;
	cursor = calloc(c->n, sizeof(*cursor));
	if (!cursor)
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	for (i = 0; i < last->h.nr_records; i++) {
		pages_stored_nowhere(c, &last->records[i], cursor, missing);
		if (!mp_bits_empty(missing)) {
			ret = mp_broken_chain_error(err, i,
						    last->records[i].span,
						    missing);
			break;
		}
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
	if (ret)
		goto out;
	ret = chain_check(&c, err);
	if (ret)
		goto out;
	for (i = 0; i < n; i++) {
		ret = mimg_verify(&c.r[i], pr ? pr->fn : NULL,
				  pr ? pr->arg : NULL, err);
		if (ret) {
			mp_prefix_error(err, paths[i]);
			goto out;
		}
	}
	if (last)
		*last = c.r[n - 1].h;
out:
	mp_chain_close(&c);
	return ret;
}
