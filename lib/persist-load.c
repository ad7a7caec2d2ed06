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
	bool punch;		/* the target may hold pages the chain has not */
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
	for (i = 0; !ret && i < SPAN_PAGES; i = j) {
		bool in = mimg_test(present, i), sup = mimg_test(supplied, i);

		for (j = i + 1; j < SPAN_PAGES && mimg_test(present, j) == in &&
		     mimg_test(supplied, j) == sup; j++)
			;
		if (!in) {
			ret = punch(c, base + i, base + j, err);
		} else if (sup) {
			ret = mp_pwrite_full(c->fd, data + (size_t)pos * PAGE,
					     (size_t)(j - i) * PAGE,
					     (base + i) * PAGE);
			if (ret)
				mimg_set_error(err, ret, 0, "writing the object: "
					       "%s", strerror(-ret));
			pos += j - i;
		}
	}
	return ret;
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
	struct morsel_fill_run runs[MORSEL_FILL_MAX_PAGES];
	uint64_t pages[MORSEL_FILL_MAX_PAGES], i, end = 0, at;
	const struct mimg_record *rec;
	struct load_ctx *c = ctx;
	unsigned int np = 0, nr = 0, pg;
	struct morsel_fill f;
	int ret;

	if (!c->fill)
		return 0;
	for (i = first; i < first + n; i++) {
		rec = &r->records[i];
		if (!rec->nr_stored ||
		    memcmp(rec->stored, rec->present, sizeof(rec->stored)) ||
		    np + rec->nr_stored > MORSEL_FILL_MAX_PAGES ||
		    (nr && rec->data_offset != end))
			break;
		for (pg = mp_next_bit(rec->stored, 0, true); pg < SPAN_PAGES;
		     pg = mp_next_bit(rec->stored, pg + 1, true))
			pages[np++] = rec->span * SPAN_PAGES + pg;
		runs[nr].nr_pages = rec->nr_stored;
		runs[nr].crc = rec->data_crc;
		nr++;
		end = rec->data_offset + (uint64_t)rec->nr_stored * PAGE;
	}
	if (!nr)
		return 0;
	memset(&f, 0, sizeof(f));
	f.flags = MORSEL_FILL_CRC;
	f.nr_pages = np;
	f.file_offset = r->records[first].data_offset;
	f.pages = (uintptr_t)pages;
	f.runs = (uintptr_t)runs;
	f.nr_runs = nr;
	ret = morsel_fill(c->fd, r->fd, &f);
	/*
	 * A module without it, or a file system whose direct I/O refuses
	 * reading into kernel pages: the usual way, which checks the same.
	 */
	if (ret == -ENOTTY || ret == -EINVAL || ret == -EOPNOTSUPP)
		return 0;
	*failed = first;
	if (ret == -EBADMSG && f.bad_run < nr) {
		*failed = first + f.bad_run;
		return mimg_data_crc_error(err, *failed,
					   &r->records[*failed], f.crc);
	}
	if (ret == -ENODATA) {
		at = f.file_offset + f.read;
		while (*failed + 1 < first + nr &&
		       r->records[*failed + 1].data_offset <= at)
			(*failed)++;
		return mimg_set_error(err, -EINVAL, at, "image truncated: data "
				      "of record %llu ends at %llu",
				      (unsigned long long)*failed,
				      (unsigned long long)end);
	}
	if (ret)
		return mimg_set_error(err, ret, f.file_offset, "loading record "
				      "%llu: %s", (unsigned long long)first,
				      strerror(-ret));
	if (f.filled != np)
		return mimg_set_error(err, -EBUSY, 0, "the object changed while "
				      "it was loaded (near offset %llu)",
				      (unsigned long long)(pages[0] * PAGE));
	*bytes = (uint64_t)np * PAGE;
	return (int)nr;
}

int morsel_load(const char *const *paths, unsigned int n, const char *name,
		const struct morsel_load_opts *o, struct mimg_header *out,
		struct mimg_error *err)
{
	const struct mimg_header *root, *newest;
	struct morsel_stat st;
	struct load_ctx ctx;
	struct chain c;
	bool created = false, over = o && (o->flags & MORSEL_LOAD_OVER);
	uint64_t fp, end;
	char path[4096];
	int fd = -1, ret;

	if (err)
		memset(err, 0, sizeof(*err));
	if (o && (o->flags & ~MORSEL_LOAD_FLAGS))
		return mimg_set_error(err, -EINVAL, 0, "unknown load flags");
	ret = morsel_path(name, path, sizeof(path));
	if (ret)
		return mimg_set_error(err, ret, 0, "bad name %s", name);
	ret = mp_chain_open(&c, paths, n, err);
	if (ret)
		goto out;
	root = &c.r[0].h;
	newest = &c.r[n - 1].h;
	if (root->flags & MIMG_F_DELTA) {
		if (!o || o->base_fd < 0) {
			ret = mimg_set_error(err, -EINVAL, 0, "%s is a delta: give its "
				   "base (a frozen morsel)", paths[0]);
			goto out;
		}
		ret = morsel_stat(o->base_fd, &st);
		if (!ret && !(st.state & MORSEL_STATE_FROZEN))
			ret = mimg_set_error(err, -EINVAL, 0, "the base is not frozen");
		if (!ret)
			ret = morsel_fingerprint(o->base_fd, &fp, NULL);
		if (!ret && fp != root->base_fingerprint &&
		    !(root->base_fingerprint == 1 && !fp))
			ret = mimg_set_error(err, -EINVAL, 120, "wrong base: %s was saved "
				   "against a base with fingerprint %016llx, this "
				   "one has %016llx", paths[0],
				   (unsigned long long)root->base_fingerprint,
				   (unsigned long long)fp);
		if (ret) {
			if (err && !err->msg[0])
				mimg_set_error(err, ret, 0, "base: %s", strerror(-ret));
			goto out;
		}
	}
	if (over && (root->flags & MIMG_F_DELTA)) {
		/* Its borrowed pages would have to become the base's again. */
		ret = mimg_set_error(err, -EINVAL, 0, "a delta chain loads into a new "
			   "child of its base, not over an object");
		goto out;
	}
	if (over) {
		/* Nothing may change before every image has proved intact. */
		ret = morsel_image_verify(paths, n, NULL, NULL, err);
		if (ret)
			goto out;
		fd = morsel_open(path, O_RDWR);
		if (fd < 0) {
			ret = mimg_set_error(err, fd, 0, "%s: %s", path, strerror(-fd));
			goto out;
		}
		if (root->flags & MIMG_F_DELTA) {
			ret = mp_check_base(fd, o->base_fd, err);
			if (ret)
				goto out;
		}
	} else if (root->flags & MIMG_F_DELTA) {
		fd = morsel_split(o->base_fd, path);
		if (fd < 0) {
			ret = mimg_set_error(err, fd, 0, "splitting %s from the base: %s",
				   path, strerror(-fd));
			goto out;
		}
		created = true;
	} else {
		fd = morsel_create(path, 0, o && o->mode ? o->mode : 0600);
		if (fd < 0) {
			ret = mimg_set_error(err, fd, 0, "creating %s: %s", path,
				   strerror(-fd));
			goto out;
		}
		created = true;
	}
	ret = morsel_stat(fd, &st);
	if (ret)
		goto out;
	end = newest->range_start + newest->range_length;
	if (!over || (!newest->range_start && newest->range_length ==
		      (newest->object_size + PAGE - 1) / PAGE * PAGE)) {
		/* A new object, or a whole-object image: its size. */
		if (st.size != newest->object_size &&
		    ftruncate(fd, (off_t)newest->object_size))
			ret = mimg_set_error(err, -errno, 0, "sizing %s to %llu "
					     "bytes: %s", path,
					     (unsigned long long)
					     newest->object_size,
					     strerror(errno));
	} else if (st.size < end && ftruncate(fd, (off_t)end)) {
		/* A range loads over an object at least that long. */
		ret = mimg_set_error(err, -errno, 0, "sizing %s: %s", path,
				     strerror(errno));
	}
	if (ret)
		goto out;
	ctx.fd = fd;
	ctx.punch = over || (root->flags & MIMG_F_DELTA);
	ctx.fill = created && !(root->flags & MIMG_F_DELTA);
	ctx.lo = newest->range_start / PAGE;
	ctx.hi = end / PAGE;
	mp_chain_read_direct(&c, paths);
	ret = punch_gaps(&ctx, &c.r[n - 1], err);
	if (!ret)
		ret = mp_chain_resolve(&c, load_span, load_batch, &ctx, false,
				       mp_resolve_threads(), o ? &o->progress : NULL,
				       err);
	if (!ret && out)
		*out = *newest;
out:
	mp_chain_close(&c);
	if (ret) {
		if (fd >= 0)
			close(fd);
		if (created)
			unlink(path);
		return ret;
	}
	return fd;
}
