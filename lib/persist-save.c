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

static uint64_t round_up_page(uint64_t v)
{
	return (v + PAGE - 1) / PAGE * PAGE;
}

/* Open @path read-only, with O_DIRECT where the file system has it. */
static int open_maybe_direct(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);

	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void stop_direct_io(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
}

/*
 * The first @size bytes of @fd, at most HEAD_READ, into a new buffer
 * *@buf; *@have: how many came.  Whole pages for O_DIRECT (a short read at
 * the end is fine), through the page cache if the file system refuses.
 */
static int read_head(int fd, const char *path, uint64_t size, uint8_t **buf,
		     uint64_t *have, struct mimg_error *err)
{
	uint64_t want = size < HEAD_READ ? size : HEAD_READ;
	uint64_t cap = round_up_page(want);
	ssize_t n;

	*buf = aligned_alloc(PAGE, cap > PAGE ? cap : PAGE);
	if (!*buf)
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	n = mp_pread_full(fd, *buf, cap, 0);
	if (n == -EINVAL) {	/* the file system refuses O_DIRECT */
		stop_direct_io(fd);
		n = mp_pread_full(fd, *buf, want, 0);
	}
	if (n < 0)
		return mimg_set_error(err, (int)n, 0, "%s: %s", path,
				      strerror((int)-n));
	*have = (uint64_t)n;
	return 0;
}

static int index_damaged(struct mimg_error *err, const char *path)
{
	return mimg_set_error(err, -EBADMSG, MIMG_HEADER_SIZE, "%s: the index "
			      "is damaged (crc32c mismatch)", path);
}

/*
 * Check the crc of the index that follows the header in *@buf (@have
 * bytes of the file); an index longer than that is read on, buffered.
 */
static int check_index(int fd, const char *path, const struct mimg_header *h,
		       uint8_t **buf, uint64_t have, struct mimg_error *err)
{
	uint64_t ilen = h->nr_records * MIMG_RECORD_SIZE;
	uint64_t need = MIMG_HEADER_SIZE + ilen;
	uint8_t *more;
	ssize_t n;

	if (need > have) {
		stop_direct_io(fd);
		more = realloc(*buf, need);
		if (!more)
			return mimg_set_error(err, -ENOMEM, 0, "out of memory");
		*buf = more;
		n = mp_pread_full(fd, more + have, need - have, have);
		if (n < 0)
			return mimg_set_error(err, (int)n, have, "%s: %s", path,
					      strerror((int)-n));
		if ((uint64_t)n != need - have)
			return index_damaged(err, path);	/* short */
	}
	if (mp_crc32c(0, *buf + MIMG_HEADER_SIZE, ilen) != h->index_crc)
		return index_damaged(err, path);
	return 0;
}

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
	uint8_t *buf = NULL;
	uint64_t have = 0;
	struct stat st;
	int fd, ret;

	fd = open_maybe_direct(path);
	if (fd < 0)
		return mimg_set_error(err, fd, 0, "%s: %s", path,
				      strerror(-fd));
	if (fstat(fd, &st)) {
		ret = mimg_set_error(err, -errno, 0, "%s: %s", path,
				     strerror(errno));
		goto out;
	}
	ret = read_head(fd, path, (uint64_t)st.st_size, &buf, &have, err);
	if (ret)
		goto out;
	if (have < MIMG_HEADER_SIZE) {
		ret = mimg_set_error(err, -EINVAL, have, "%s: not a morsel "
				     "image (%llu bytes)", path,
				     (unsigned long long)have);
		goto out;
	}
	ret = mimg_decode_header(buf, (uint64_t)st.st_size, h, err);
	if (ret) {
		mp_prefix_error(err, path);
		goto out;
	}
	ret = check_index(fd, path, h, &buf, have, err);
out:
	free(buf);
	close(fd);
	return ret;
}

/* One morsel_save() call. */
struct save {
	int fd;
	const struct morsel_save_opts *o;	/* may be NULL */
	struct morsel_stat st;
	struct mimg_header h;		/* of the image to write */
	struct scan_result r;
	const uint64_t *stored;		/* what it stores: a bitmap of @r */
	struct mimg_error *err;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The object, the range (@o's, default: the whole object) and the options
 * checked; the header's fields that say what was saved, and when.
 */
static int save_begin(struct save *s)
{
	const struct morsel_save_opts *o = s->o;
	uint64_t start, length, rsize;
	int ret;

	ret = morsel_stat(s->fd, &s->st);
	if (ret)
		return mimg_set_error(s->err, ret, 0, "MORSEL_IOC_STAT: %s "
				      "(not a morsel?)", strerror(-ret));
	start = o ? o->start : 0;
	rsize = round_up_page(s->st.size);
	length = o && o->length ? o->length : rsize > start ? rsize - start : 0;
	if (start % PAGE || length % PAGE || start > rsize ||
	    length > rsize - start || (!length && (start || s->st.size)))
		return mimg_set_error(s->err, -EINVAL, 0, "range %llu+%llu: "
				      "must be page aligned, non-empty and "
				      "inside the object (%llu bytes)",
				      (unsigned long long)start,
				      (unsigned long long)length,
				      (unsigned long long)s->st.size);
	if (o && (o->flags & ~MORSEL_SAVE_FLAGS))
		return mimg_set_error(s->err, -EINVAL, 0, "unknown save flags");
	if (o && o->parent && (o->flags & MORSEL_SAVE_DELTA))
		return mimg_set_error(s->err, -EINVAL, 0, "a delta starts a "
				      "chain; an increment of a delta chain "
				      "needs only its parent");
	s->h.object_size = s->st.size;
	s->h.level = s->st.level;
	s->h.range_start = start;
	s->h.range_length = length;
	s->h.object_id = s->st.id;
	s->h.created_ns = now_ns();
	return 0;
}

/* Scan the range, cleaning it if we may; @want: WANT_* bitmaps. */
static int scan_to_start_chain(struct save *s, unsigned int want)
{
	uint64_t start = s->h.range_start, length = s->h.range_length;
	int ret;

	ret = mp_scan_range(s->fd, start, length, MORSEL_SCAN_CLEAN, 0, want,
			    &s->r);
	if (ret != -EBADF)
		return ret;
	/*
	 * Not open for writing: a scan that does not clean.  A later
	 * increment then stores a superset: still right.
	 */
	mp_scan_free(&s->r);
	return mp_scan_range(s->fd, start, length, 0, 0, want, &s->r);
}

/* A full image: every present page; it starts a chain. */
static int scan_for_full(struct save *s)
{
	int ret = scan_to_start_chain(s, 0);

	s->stored = s->r.present;
	return ret;
}

/*
 * A delta: the pages the child owns, and the base's fingerprint.  A wrong
 * base must fail before a clean breaks a chain.
 */
static int scan_for_delta(struct save *s)
{
	int ret;

	ret = mp_check_base(s->fd, s->o->base_fd, s->err);
	if (ret)
		return ret;
	ret = scan_to_start_chain(s, WANT_OWNED);
	if (ret)
		return mimg_set_error(s->err, ret, 0, "scan: %s",
				      strerror(-ret));
	s->h.flags = MIMG_F_DELTA;
	s->stored = s->r.owned;
	ret = morsel_fingerprint(s->o->base_fd, &s->h.base_fingerprint, NULL);
	if (!s->h.base_fingerprint)
		s->h.base_fingerprint = 1;	/* never 0 */
	return ret;
}

/*
 * An increment: the pages written since the parent image was saved, if
 * it is of this object and range and no other clean came in between.
 */
static int scan_for_increment(struct save *s)
{
	const char *parent_path = s->o->parent;
	struct mimg_header parent;
	int ret;

	ret = read_header(parent_path, &parent, s->err);
	if (ret)
		return ret;
	if (parent.object_id != s->st.id)
		return mimg_set_error(s->err, -EINVAL, 0, "%s was saved from "
				      "another object (or before a reload): "
				      "do a full save", parent_path);
	if (!mp_same_range(&parent, s->h.range_start, s->h.range_length,
			   s->st.size))
		return mimg_set_error(s->err, -EINVAL, 0, "%s covers another "
				      "range", parent_path);
	s->h.flags = MIMG_F_INCREMENT;
	memcpy(s->h.parent_id, parent.image_id, sizeof(s->h.parent_id));
	ret = mp_scan_range(s->fd, s->h.range_start, s->h.range_length,
			    MORSEL_SCAN_CLEAN | MORSEL_SCAN_IF_GEN,
			    parent.clean_gen, WANT_DIRTY, &s->r);
	if (ret == -ESTALE)
		return mimg_set_error(s->err, ret, 0, "the object was cleaned "
				      "since %s was saved (a save was "
				      "interrupted, or another chain saved "
				      "it): start a new chain with a full "
				      "save", parent_path);
	s->stored = s->r.dirty;
	return ret;
}

/* Which pages to store, as the kind of image asks. */
static int scan_the_object(struct save *s)
{
	const struct morsel_save_opts *o = s->o;
	int ret;

	if (o && o->parent)
		ret = scan_for_increment(s);
	else if (o && (o->flags & MORSEL_SAVE_DELTA))
		ret = scan_for_delta(s);
	else
		ret = scan_for_full(s);
	if (ret && s->err && !s->err->msg[0])
		mimg_set_error(s->err, ret, 0, "MORSEL_IOC_SCAN: %s",
			       strerror(-ret));
	if (ret)
		return ret;
	s->h.clean_gen = s->r.s.gen;
	s->h.nr_records = mp_count_spans(s->r.present, s->r.npages,
					 s->r.first);
	return 0;
}

static uint64_t stored_bytes(const struct save *s)
{
	uint64_t i, pages = 0;

	for (i = 0; i < (s->r.npages + 63) / 64; i++)
		pages += (uint64_t)__builtin_popcountll(s->stored[i]);
	return pages * PAGE;
}

/*
 * Copy the stored pages into @w, span by span; the last batch is written
 * while we unmap.
 */
static int copy_stored_pages(struct save *s, struct writer *w,
			     uint64_t bytes)
{
	struct writer_ctx ctx = { .w = w, .err = s->err };
	uint64_t length = s->h.range_length;
	int ret;

	ret = mp_source_open(&ctx.src, s->fd, &s->st, s->h.range_start,
			     length);
	if (ret)
		return mimg_set_error(s->err, ret, 0, "the object shrank "
				      "during the save; save again");
	ret = mp_walk_spans(s->r.first, s->r.npages, s->r.present, s->stored,
			    save_span, &ctx, s->o ? &s->o->progress : NULL,
			    bytes);
	if (ret)
		goto out;
	ret = mp_writer_flush(w, s->err);
out:
	mp_source_close(&ctx.src, length);
	return ret;
}

static int write_image(struct save *s, const char *path,
		       struct mimg_header *out)
{
	struct writer w = WRITER_INIT;
	uint64_t bytes = stored_bytes(s);
	int ret;

	ret = mp_writer_open(&w, path, &s->h, s->err);
	if (ret)
		goto out;
	ret = mp_writer_defer_init(&w, bytes, s->err);
	if (ret)
		goto out;
	ret = copy_stored_pages(s, &w, bytes);
	if (ret)
		goto out;
	ret = mp_writer_commit(&w, out, s->err);
out:
	mp_writer_close(&w);
	return ret;
}

int morsel_save(int fd, const char *path, const struct morsel_save_opts *o,
		struct mimg_header *out, struct mimg_error *err)
{
	struct save s = { .fd = fd, .o = o, .err = err };
	int ret;

	if (err)
		memset(err, 0, sizeof(*err));
	ret = save_begin(&s);
	if (ret)
		return ret;
	ret = scan_the_object(&s);
	if (ret)
		goto out;
	ret = write_image(&s, path, out);
out:
	mp_scan_free(&s.r);
	return ret;
}
