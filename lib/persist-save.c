#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-save: morsel_save().  It owns the policy of what an image
 * stores: every present page (a full save, which starts a chain and
 * cleans the dirty state if it may), the pages dirty since the parent
 * image (an increment, refused with ESTALE if a save it did not see
 * cleaned the object), or a child's own pages against its base's
 * fingerprint (a delta).
 */
#include "persist-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

/* What save_span() writes into, and from. */
struct writer_ctx {
	struct writer *w;
	struct source src;	/* save_span() only */
	struct mimg_error *err;
};

static int save_span(void *ctx, uint64_t span, const uint64_t *present,
		     const uint64_t *stored)
{
	struct writer_ctx *c = ctx;
	uint64_t len = (uint64_t)mimg_popcount(stored) * PAGE;
	uint8_t *dst = mp_writer_reserve(c->w, len, c->err);
	int ret;

	if (!dst)
		return -EIO;
	/* Checksum the copy, not the object: writers may be at work. */
	ret = mp_fetch_pages(&c->src, span, stored, dst);
	if (ret)
		return mimg_set_error(c->err, ret, 0, "reading the object: %s",
				      strerror(-ret));
	return mp_writer_defer(c->w, span, present, stored, dst, c->err);
}

/* read_header() reads this much at once: the index of a 2.6 GiB object. */
#define HEAD_READ	(256u << 10)

/*
 * The header of the image at @path, checked (magic, crc, fields, file
 * size), and the crc of its index.  An increment needs no more of its
 * parent; the records and the data are checked when the chain is loaded
 * or verified.  The image was written past the page cache, so this reads
 * from the disk: one O_DIRECT read for both where the index is not large
 * (through the page cache where the file system has no O_DIRECT).
 */
static int read_header(const char *path, struct mimg_header *h,
		       struct mimg_error *err)
{
	uint64_t ilen = 0, have = 0, need, cap;
	uint8_t *buf = NULL, *more;
	struct stat st;
	ssize_t n = 0;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mimg_set_error(err, -errno, 0, "%s: %s", path,
				      strerror(errno));
	if (fstat(fd, &st))
		ret = mimg_set_error(err, -errno, 0, "%s: %s", path,
				     strerror(errno));
	if (!ret) {
		have = (uint64_t)st.st_size < HEAD_READ ?
		       (uint64_t)st.st_size : HEAD_READ;
		cap = (have + PAGE - 1) / PAGE * PAGE;
		buf = aligned_alloc(PAGE, cap > PAGE ? cap : PAGE);
		if (!buf)
			ret = mimg_set_error(err, -ENOMEM, 0, "out of memory");
	}
	if (!ret) {
		/* Whole pages for O_DIRECT: a short read at the end is fine. */
		n = mp_pread_full(fd, buf, (have + PAGE - 1) / PAGE * PAGE, 0);
		if (n == -EINVAL) {	/* the file system refuses O_DIRECT */
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
			n = mp_pread_full(fd, buf, have, 0);
		}
		if (n < 0)
			ret = mimg_set_error(err, (int)n, 0, "%s: %s", path,
					     strerror((int)-n));
		else if (n < (ssize_t)MIMG_HEADER_SIZE)
			ret = mimg_set_error(err, -EINVAL, (uint64_t)n, "%s: "
					     "not a morsel image (%zd bytes)",
					     path, n);
		else if ((ret = mimg_decode_header(buf, (uint64_t)st.st_size,
						   h, err)))
			mp_prefix_error(err, path);
		have = n > 0 ? (uint64_t)n : 0;
	}
	if (!ret) {
		ilen = h->nr_records * MIMG_RECORD_SIZE;
		need = MIMG_HEADER_SIZE + ilen;
		if (need > have) {	/* a large index: the rest, buffered */
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
			more = realloc(buf, need);
			if (!more) {
				ret = mimg_set_error(err, -ENOMEM, 0,
						     "out of memory");
			} else {
				buf = more;
				n = mp_pread_full(fd, buf + have, need - have,
						  have);
				if (n < 0)
					ret = mimg_set_error(err, (int)n, have,
							     "%s: %s", path,
							     strerror((int)-n));
				else if (n != (ssize_t)(need - have))
					need = 0;	/* short: damaged */
			}
		}
		if (!ret && (!need ||
			     mimg_crc32c(0, buf + MIMG_HEADER_SIZE, ilen) !=
			     h->index_crc))
			ret = mimg_set_error(err, -EBADMSG, MIMG_HEADER_SIZE,
					     "%s: the index is damaged (crc32c "
					     "mismatch)", path);
	}
	free(buf);
	close(fd);
	return ret;
}

int morsel_save(int fd, const char *path, const struct morsel_save_opts *o,
		struct mimg_header *out, struct mimg_error *err)
{
	struct mimg_header parent;
	struct morsel_stat st;
	struct mimg_header h;
	struct scan_result r = { 0 };
	struct writer_ctx ctx;
	struct writer w;
	uint64_t start, length, rsize, *stored, total;
	unsigned int flags = 0;
	int ret;

	memset(&ctx, 0, sizeof(ctx));
	memset(&w, 0, sizeof(w));
	w.fd = -1;
	w.dfd = -1;
	if (err)
		memset(err, 0, sizeof(*err));
	ret = morsel_stat(fd, &st);
	if (ret)
		return mimg_set_error(err, ret, 0, "MORSEL_IOC_STAT: %s (not a morsel?)",
			    strerror(-ret));
	start = o ? o->start : 0;
	rsize = (st.size + PAGE - 1) / PAGE * PAGE;
	length = o && o->length ? o->length : rsize > start ? rsize - start : 0;
	if (start % PAGE || length % PAGE || start > rsize ||
	    length > rsize - start || (!length && (start || st.size)))
		return mimg_set_error(err, -EINVAL, 0,
			    "range %llu+%llu: must be page aligned, non-empty "
			    "and inside the object (%llu bytes)",
			    (unsigned long long)start,
			    (unsigned long long)length,
			    (unsigned long long)st.size);
	if (o && (o->flags & ~MORSEL_SAVE_FLAGS))
		return mimg_set_error(err, -EINVAL, 0, "unknown save flags");
	if (o && o->parent && (o->flags & MORSEL_SAVE_DELTA))
		return mimg_set_error(err, -EINVAL, 0, "a delta starts a chain; an "
			    "increment of a delta chain needs only its parent");
	memset(&h, 0, sizeof(h));
	h.object_size = st.size;
	h.level = st.level;
	h.range_start = start;
	h.range_length = length;
	h.object_id = st.id;
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		h.created_ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	}

	if (o && o->parent) {
		ret = read_header(o->parent, &parent, err);
		if (ret)
			goto out;
		if (parent.object_id != st.id) {
			ret = mimg_set_error(err, -EINVAL, 0, "%s was saved from another "
				   "object (or before a reload): do a full save",
				   o->parent);
			goto out;
		}
		if (!mp_same_range(&parent, start, length, st.size)) {
			ret = mimg_set_error(err, -EINVAL, 0, "%s covers another range",
				   o->parent);
			goto out;
		}
		flags |= MIMG_F_INCREMENT;
		memcpy(h.parent_id, parent.image_id, 16);
		ret = mp_scan_range(fd, start, length,
				    MORSEL_SCAN_CLEAN | MORSEL_SCAN_IF_GEN,
				    parent.clean_gen, WANT_DIRTY, &r);
		if (ret == -ESTALE) {
			ret = mimg_set_error(err, ret, 0, "the object was cleaned since %s "
				   "was saved (a save was interrupted, or another "
				   "chain saved it): start a new chain with a "
				   "full save", o->parent);
			goto out;
		}
		stored = r.dirty;
	} else {
		/*
		 * Start of a chain: clean if we may write, else a read-only
		 * scan (a later increment then stores a superset: still right).
		 */
		bool delta = o && (o->flags & MORSEL_SAVE_DELTA);
		unsigned int want = delta ? WANT_OWNED : 0;

		/* A wrong base must fail before a clean breaks a chain. */
		ret = delta ? mp_check_base(fd, o->base_fd, err) : 0;
		if (ret)
			goto out;
		ret = mp_scan_range(fd, start, length, MORSEL_SCAN_CLEAN, 0, want,
				    &r);
		if (ret == -EBADF) {
			mp_scan_free(&r);
			ret = mp_scan_range(fd, start, length, 0, 0, want, &r);
		}
		if (delta) {
			if (ret && err && !err->msg[0])
				mimg_set_error(err, ret, 0, "scan: %s", strerror(-ret));
			if (ret)
				goto out;
			flags |= MIMG_F_DELTA;
			ret = morsel_fingerprint(o->base_fd,
						 &h.base_fingerprint, NULL);
			if (!ret && !h.base_fingerprint)
				h.base_fingerprint = 1;	/* never 0 */
			stored = r.owned;
		} else {
			stored = r.present;
		}
	}
	if (ret) {
		if (err && !err->msg[0])
			mimg_set_error(err, ret, 0, "MORSEL_IOC_SCAN: %s", strerror(-ret));
		goto out;
	}
	h.flags = flags;
	h.clean_gen = r.s.gen;
	h.nr_records = mp_count_spans(r.present, r.npages, r.first);
	total = 0;
	for (uint64_t i = 0; i < (r.npages + 63) / 64; i++)
		total += __builtin_popcountll(stored[i]);
	ret = mp_writer_open(&w, path, &h, err);
	if (!ret)
		ret = mp_writer_defer_init(&w, total * PAGE, err);
	if (ret)
		goto out;
	ret = mp_source_open(&ctx.src, fd, &st, start, length);
	if (ret) {
		mimg_set_error(err, ret, 0, "the object shrank during the save; "
			       "save again");
		goto out;
	}
	ctx.w = &w;
	ctx.err = err;
	ret = mp_walk_spans(r.first, r.npages, r.present, stored, save_span,
			    &ctx, o ? &o->progress : NULL, total * PAGE);
	if (!ret)	/* the last batch is written while we unmap */
		ret = mp_writer_flush(&w, err);
	mp_source_close(&ctx.src, length);
	if (!ret)
		ret = mp_writer_commit(&w, out, err);
out:
	mp_writer_close(&w);
	mp_scan_free(&r);
	return ret;
}
