#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-load: morsel_load(), a chain into a new morsel (created, or
 * split from the base of a delta) or over an existing one: holes punched,
 * whole records filled by the kernel (MORSEL_IOC_FILL) into a new object,
 * the rest written with pwrite().
 */
#include "persist-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct load_ctx {
	int fd;
	bool punch;		/* it may hold pages the chain has not */
	bool fill;		/* a new object: MORSEL_IOC_FILL may fill it */
	uint64_t lo, hi;	/* the images' range, in pages */
};

static int punch(const struct load_ctx *c, uint64_t first, uint64_t end,
		 struct mimg_error *err)
{
	/* Only inside the images' range: a range load keeps the rest. */
	first = first > c->lo ? first : c->lo;
	end = end < c->hi ? end : c->hi;
	if (!c->punch || first >= end)
		return 0;
	if (fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(first * PAGE), (off_t)((end - first) * PAGE)))
		return mimg_set_error(err, -errno, 0, "punching a hole: %s",
				      strerror(errno));
	return 0;
}

/*
 * Spans without a record in the newest image have no page in the chain:
 * holes, made before the spans with records are loaded (in any order).
 */
static int punch_gaps(const struct load_ctx *c, const struct mimg_reader *last,
		      struct mimg_error *err)
{
	uint64_t next = c->lo, i, base;
	int ret;

	for (i = 0; i < last->h.nr_records; i++) {
		base = last->records[i].span * SPAN_PAGES;
		ret = punch(c, next, base, err);
		if (ret)
			return ret;
		next = base + SPAN_PAGES;
	}
	return punch(c, next, c->hi, err);
}

/* The end of the run of pages from @i that agree on present and supplied. */
static unsigned int run_end(const uint64_t *present, const uint64_t *supplied,
			    unsigned int i)
{
	bool in = mimg_test(present, i), sup = mimg_test(supplied, i);
	unsigned int j;

	for (j = i + 1; j < SPAN_PAGES && mimg_test(present, j) == in &&
	     mimg_test(supplied, j) == sup; j++)
		;
	return j;
}

/*
 * Span @span into the object: pages absent from the chain punched, the
 * supplied ones (@data, in page order) written; the rest is the base's.
 */
static int load_span(void *ctx, uint64_t span, const uint64_t *present,
		     const uint64_t *supplied, const uint64_t *from_base,
		     const uint8_t *data, uint32_t crc, struct mimg_error *err)
{
	struct load_ctx *c = ctx;
	uint64_t base = span * SPAN_PAGES;
	unsigned int i, j, pos = 0;
	int ret = 0;

	(void)from_base;
	(void)crc;
	for (i = 0; i < SPAN_PAGES; i = j) {
		j = run_end(present, supplied, i);
		if (!mimg_test(present, i)) {
			ret = punch(c, base + i, base + j, err);
		} else if (mimg_test(supplied, i)) {
			ret = mp_pwrite_full(c->fd, data + (size_t)pos * PAGE,
					     (size_t)(j - i) * PAGE,
					     (base + i) * PAGE);
			if (ret)
				mimg_set_error(err, ret, 0, "writing the "
					       "object: %s", strerror(-ret));
			pos += j - i;
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* A MORSEL_IOC_FILL request put together from whole records. */
struct fill_request {
	struct morsel_fill_run runs[MORSEL_FILL_MAX_PAGES];
	uint64_t pages[MORSEL_FILL_MAX_PAGES];
	unsigned int np, nr;		/* pages, runs */
	uint64_t end;			/* where the last run's data ends */
};

/*
 * May @rec join @q: it stores its span whole, its pages fit, and its data
 * follows the data of the records before it in the file?
 */
static bool joins_request(const struct fill_request *q,
			  const struct mimg_record *rec)
{
	return rec->nr_stored &&
	       !memcmp(rec->stored, rec->present, sizeof(rec->stored)) &&
	       q->np + rec->nr_stored <= MORSEL_FILL_MAX_PAGES &&
	       (!q->nr || rec->data_offset == q->end);
}

static void add_to_request(struct fill_request *q,
			   const struct mimg_record *rec)
{
	unsigned int pg;

	for (pg = mp_next_bit(rec->stored, 0, true); pg < SPAN_PAGES;
	     pg = mp_next_bit(rec->stored, pg + 1, true))
		q->pages[q->np++] = rec->span * SPAN_PAGES + pg;
	q->runs[q->nr].nr_pages = rec->nr_stored;
	q->runs[q->nr].crc = rec->data_crc;
	q->nr++;
	q->end = rec->data_offset + (uint64_t)rec->nr_stored * PAGE;
}

/*
 * What went wrong in the fill @f of @q, which began with record @first of
 * @r; *@failed: the record at fault.
 */
static int fill_failed(const struct mimg_reader *r, uint64_t first,
		       const struct fill_request *q,
		       const struct morsel_fill *f, int ret,
		       uint64_t *failed, struct mimg_error *err)
{
	uint64_t at;

	*failed = first;
	if (ret == -EBADMSG && f->bad_run < q->nr) {
		*failed = first + f->bad_run;
		return mimg_data_crc_error(err, *failed,
					   &r->records[*failed], f->crc);
	}
	if (ret == -ENODATA) {
		at = f->file_offset + f->read;
		while (*failed + 1 < first + q->nr &&
		       r->records[*failed + 1].data_offset <= at)
			(*failed)++;
		return mimg_set_error(err, -EINVAL, at, "image truncated: data "
				      "of record %llu ends at %llu",
				      (unsigned long long)*failed,
				      (unsigned long long)q->end);
	}
	if (ret)
		return mimg_set_error(err, ret, f->file_offset, "loading "
				      "record %llu: %s",
				      (unsigned long long)first,
				      strerror(-ret));
	return mimg_set_error(err, -EBUSY, 0, "the object changed while it "
			      "was loaded (near offset %llu)",
			      (unsigned long long)(q->pages[0] * PAGE));
}

/*
 * Records of the newest image that store their span whole (every present
 * page), into a new object: the kernel reads the data of as many as are
 * consecutive in the file (up to MORSEL_FILL_MAX_PAGES pages) straight
 * into new frames, checks each record's crc before anyone can see them,
 * and fills the holes (MORSEL_IOC_FILL).  One request for many one-page
 * records of a sparse object, no page cache, no copy, no zeroing.
 */
static int load_batch(void *ctx, const struct mimg_reader *r, uint64_t first,
		      uint64_t n, uint64_t *bytes, uint64_t *failed,
		      struct mimg_error *err)
{
	struct load_ctx *c = ctx;
	struct fill_request q;
	struct morsel_fill f;
	uint64_t i;
	int ret;

	if (!c->fill)
		return 0;
	q.np = q.nr = 0;
	q.end = 0;
	for (i = first; i < first + n && joins_request(&q, &r->records[i]);
	     i++)
		add_to_request(&q, &r->records[i]);
	if (!q.nr)
		return 0;
	memset(&f, 0, sizeof(f));
	f.flags = MORSEL_FILL_CRC;
	f.nr_pages = q.np;
	f.file_offset = r->records[first].data_offset;
	f.pages = (uintptr_t)q.pages;
	f.runs = (uintptr_t)q.runs;
	f.nr_runs = q.nr;
	ret = morsel_fill(c->fd, r->fd, &f);
	/*
	 * A module without it, or a file system whose direct I/O refuses
	 * reading into kernel pages: the usual way, which checks the same.
	 */
	if (ret == -ENOTTY || ret == -EINVAL || ret == -EOPNOTSUPP)
		return 0;
	if (ret || f.filled != q.np)
		return fill_failed(r, first, &q, &f, ret, failed, err);
	*bytes = (uint64_t)q.np * PAGE;
	return (int)q.nr;
}

/* One morsel_load() call. */
struct load {
	const char *const *paths;
	unsigned int n;
	const struct morsel_load_opts *o;	/* may be NULL */
	char path[4096];		/* of the object */
	struct chain c;
	bool over;			/* into the existing object */
	bool delta;			/* the chain starts with a delta */
	bool created;			/* ours: removed on error */
	int fd;				/* the object, or -1 */
	struct mimg_error *err;
};

static const struct mimg_header *newest_header(const struct load *l)
{
	return &l->c.r[l->n - 1].h;
}

static int base_failed(struct mimg_error *err, int ret)
{
	return mimg_set_error(err, ret, 0, "base: %s", strerror(-ret));
}

static int wrong_base(struct mimg_error *err, const char *path,
		      uint64_t want, uint64_t fp)
{
	/* 120: the offset of base_fingerprint in the header */
	return mimg_set_error(err, -EINVAL, 120, "wrong base: %s was saved "
			      "against a base with fingerprint %016llx, this "
			      "one has %016llx", path, (unsigned long long)want,
			      (unsigned long long)fp);
}

/* The base given for a delta chain: frozen, with the right fingerprint. */
static int check_delta_base(const struct load *l)
{
	const struct mimg_header *root = &l->c.r[0].h;
	struct morsel_stat st;
	uint64_t fp;
	int ret;

	if (!l->o || l->o->base_fd < 0)
		return mimg_set_error(l->err, -EINVAL, 0, "%s is a delta: give "
				      "its base (a frozen morsel)",
				      l->paths[0]);
	ret = morsel_stat(l->o->base_fd, &st);
	if (ret)
		return base_failed(l->err, ret);
	if (!(st.state & MORSEL_STATE_FROZEN))
		return mimg_set_error(l->err, -EINVAL, 0,
				      "the base is not frozen");
	ret = morsel_fingerprint(l->o->base_fd, &fp, NULL);
	if (ret)
		return base_failed(l->err, ret);
	if (fp != root->base_fingerprint &&
	    !(root->base_fingerprint == 1 && !fp))
		return wrong_base(l->err, l->paths[0], root->base_fingerprint,
				  fp);
	return 0;
}

/* The existing object, once every image has proved intact. */
static int open_existing(struct load *l)
{
	int ret;

	ret = morsel_image_verify(l->paths, l->n, NULL, NULL, l->err);
	if (ret)
		return ret;
	l->fd = morsel_open(l->path, O_RDWR);
	if (l->fd < 0)
		return mimg_set_error(l->err, l->fd, 0, "%s: %s", l->path,
				      strerror(-l->fd));
	return 0;
}

static int split_from_base(struct load *l)
{
	l->fd = morsel_split(l->o->base_fd, l->path);
	if (l->fd < 0)
		return mimg_set_error(l->err, l->fd, 0, "splitting %s from the "
				      "base: %s", l->path, strerror(-l->fd));
	l->created = true;
	return 0;
}

static int create_new(struct load *l)
{
	mode_t mode = l->o && l->o->mode ? l->o->mode : 0600;

	l->fd = morsel_create(l->path, 0, mode);
	if (l->fd < 0)
		return mimg_set_error(l->err, l->fd, 0, "creating %s: %s",
				      l->path, strerror(-l->fd));
	l->created = true;
	return 0;
}

/*
 * The object to load into: the existing one, a new child of the base for
 * a delta chain, or a new object.
 */
static int open_target(struct load *l)
{
	if (l->over && l->delta)
		/* Its borrowed pages would have to become the base's again. */
		return mimg_set_error(l->err, -EINVAL, 0, "a delta chain loads "
				      "into a new child of its base, not over "
				      "an object");
	if (l->over)
		return open_existing(l);
	if (l->delta)
		return split_from_base(l);
	return create_new(l);
}

static bool covers_whole_object(const struct mimg_header *h)
{
	return !h->range_start && h->range_length ==
	       (h->object_size + PAGE - 1) / PAGE * PAGE;
}

/*
 * A new object, or one under a whole-object image, gets the image's size;
 * an object under a range image is grown to hold the range.
 */
static int size_target(const struct load *l)
{
	const struct mimg_header *newest = newest_header(l);
	uint64_t end = newest->range_start + newest->range_length;
	struct morsel_stat st;
	int ret;

	ret = morsel_stat(l->fd, &st);
	if (ret)
		return ret;
	if (!l->over || covers_whole_object(newest)) {
		if (st.size != newest->object_size &&
		    ftruncate(l->fd, (off_t)newest->object_size))
			return mimg_set_error(l->err, -errno, 0, "sizing %s to "
					      "%llu bytes: %s", l->path,
					      (unsigned long long)
					      newest->object_size,
					      strerror(errno));
		return 0;
	}
	if (st.size < end && ftruncate(l->fd, (off_t)end))
		return mimg_set_error(l->err, -errno, 0, "sizing %s: %s",
				      l->path, strerror(errno));
	return 0;
}

/* Holes first, then the spans of the newest image, in threads. */
static int load_chain(struct load *l)
{
	const struct mimg_header *newest = newest_header(l);
	struct load_ctx ctx = {
		.fd = l->fd,
		.punch = l->over || l->delta,
		.fill = l->created && !l->delta,
		.lo = newest->range_start / PAGE,
		.hi = (newest->range_start + newest->range_length) / PAGE,
	};
	int ret;

	mp_chain_read_direct(&l->c, l->paths);
	ret = punch_gaps(&ctx, &l->c.r[l->n - 1], l->err);
	if (ret)
		return ret;
	return mp_chain_resolve(&l->c, load_span, load_batch, &ctx, false,
				mp_resolve_threads(),
				l->o ? &l->o->progress : NULL, l->err);
}

int morsel_load(const char *const *paths, unsigned int n, const char *name,
		const struct morsel_load_opts *o, struct mimg_header *out,
		struct mimg_error *err)
{
	struct load l = {
		.paths = paths, .n = n, .o = o, .fd = -1, .err = err,
		.over = o && (o->flags & MORSEL_LOAD_OVER),
	};
	int ret;

	if (err)
		memset(err, 0, sizeof(*err));
	if (o && (o->flags & ~MORSEL_LOAD_FLAGS))
		return mimg_set_error(err, -EINVAL, 0, "unknown load flags");
	ret = morsel_path(name, l.path, sizeof(l.path));
	if (ret)
		return mimg_set_error(err, ret, 0, "bad name %s", name);
	ret = mp_chain_open(&l.c, paths, n, err);
	if (ret)
		goto out;
	l.delta = l.c.r[0].h.flags & MIMG_F_DELTA;
	if (l.delta) {
		ret = check_delta_base(&l);
		if (ret)
			goto out;
	}
	ret = open_target(&l);
	if (ret)
		goto out;
	ret = size_target(&l);
	if (ret)
		goto out;
	ret = load_chain(&l);
	if (ret)
		goto out;
	/* Whole pages were written: the last one may have grown the size. */
	ret = size_target(&l);
	if (ret)
		goto out;
	if (out)
		*out = *newest_header(&l);
out:
	mp_chain_close(&l.c);
	if (!ret)
		return l.fd;
	if (l.fd >= 0)
		close(l.fd);
	if (l.created)
		unlink(l.path);
	return ret;
}
