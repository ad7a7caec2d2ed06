#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-writer: writing one image.  Record data is copied into
 * batches, checksummed (partly on a crc thread) and written by a writer
 * thread with O_DIRECT where possible, while the next batch fills; the
 * index and header go last, then fsync, rename over the image and fsync
 * of the directory: the crash-consistent commit of docs/persistence.md.
 */
#include "persist-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>

#define PEND_MAX	512	/* records with data in a batch: at most 512 */

/*
 * Write one batch of data at @at: with O_DIRECT if we can (a file system
 * may still refuse a request: then through the page cache, whose
 * writeback starts at once so the final fsync() waits for little).
 */
static int write_batch(struct writer *w, const uint8_t *buf, uint64_t len,
		       uint64_t at)
{
	int ret = -EINVAL;

	if (w->dfd >= 0)
		ret = mp_pwrite_full(w->dfd, buf, len, at);
	if (ret == -EINVAL) {
		ret = mp_pwrite_full(w->fd, buf, len, at);
		if (!ret)
			sync_file_range(w->fd, (off_t)at, (off_t)len,
					SYNC_FILE_RANGE_WRITE);
	}
	return ret;
}

/* The writer thread's job: the handed-over buffer, at its offset. */
static int write_job(void *arg)
{
	struct writer *w = arg;

	return write_batch(w, w->job_buf, w->job_len, w->job_at);
}

/* The crcs of pending records [@first, @end). */
static void crc_pending(struct writer *w, unsigned int first, unsigned int end)
{
	struct mimg_record *r;

	for (; first < end; first++) {
		r = &w->pend[first];
		r->data_crc = r->nr_stored ?
			      mp_crc32c(0, w->pend_data[first],
					  (size_t)r->nr_stored * PAGE) : 0;
	}
}

/* The crc thread's job. */
static int crc_job(void *arg)
{
	struct writer *w = arg;

	crc_pending(w, w->c_first, w->c_end);
	return 0;
}

int mp_writer_defer_init(struct writer *w, uint64_t bytes,
			 struct mimg_error *err)
{
	w->pend = calloc(PEND_MAX, sizeof(*w->pend));
	w->pend_data = calloc(PEND_MAX, sizeof(*w->pend_data));
	if (!w->pend || !w->pend_data)
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	if (bytes >= BATCH_BYTES && mp_usable_cpus() >= 2)
		mp_helper_start(&w->crc, crc_job, w);
	return 0;
}

/* Record @r, complete with its crc, as record @i of the index. */
static void writer_encode(struct writer *w, const struct mimg_record *r,
			  uint64_t i)
{
	mimg_encode_record(r, w->index + i * MIMG_RECORD_SIZE);
	if (w->full)	/* records come in order */
		w->fp = mimg_fingerprint_add(w->fp, r->span, r->present,
					     r->data_crc);
}

/*
 * Checksum and encode the pending records: the later ones (about half
 * the bytes) on the crc thread, the others here.
 */
static void writer_settle(struct writer *w)
{
	uint64_t bytes = 0, half = 0;
	unsigned int i, split = w->npend;

	if (!w->npend)
		return;
	if (w->crc.ok) {
		for (i = 0; i < w->npend; i++)
			bytes += w->pend[i].nr_stored;
		for (split = 0; split < w->npend && half * 2 < bytes; split++)
			half += w->pend[split].nr_stored;
	}
	if (split < w->npend) {
		w->c_first = split;
		w->c_end = w->npend;
		mp_helper_submit(&w->crc);
	}
	crc_pending(w, 0, split);
	if (split < w->npend)
		mp_helper_wait(&w->crc);
	for (i = 0; i < w->npend; i++)
		writer_encode(w, &w->pend[i], w->pend_first + i);
	w->npend = 0;
}

/* @h, completed by what the writer knows now, and a new image_id. */
static int start_header(struct writer *w, const struct mimg_header *h,
			struct mimg_error *err)
{
	w->h = *h;
	w->h.version = MIMG_VERSION;
	w->h.index_offset = MIMG_HEADER_SIZE;
	w->h.data_offset = (MIMG_HEADER_SIZE + h->nr_records *
			    MIMG_RECORD_SIZE + PAGE - 1) / PAGE * PAGE;
	w->h.data_pages = 0;
	w->h.present_pages = 0;
	if (getrandom(w->h.image_id, sizeof(w->h.image_id), 0) !=
	    sizeof(w->h.image_id))
		return mimg_set_error(err, -errno ? -errno : -EIO, 0,
				      "getrandom: %s", strerror(errno));
	w->h.image_id[0] |= 1;	/* never all zero */
	w->full = !(h->flags & (MIMG_F_INCREMENT | MIMG_F_DELTA));
	w->fp = mimg_fingerprint_init(h->object_size);
	w->pos = w->h.data_offset;
	return 0;
}

/*
 * The names, the block of header, index and padding before the data (one
 * page-aligned buffer), and the two data buffers.
 */
static int allocate_buffers(struct writer *w, const char *path,
			    struct mimg_error *err)
{
	w->path = strdup(path);
	w->tmp = malloc(strlen(path) + 16);
	w->meta = aligned_alloc(PAGE, w->h.data_offset);
	if (w->meta)
		memset(w->meta, 0, w->h.data_offset);
	w->index = w->meta ? w->meta + MIMG_HEADER_SIZE : NULL;
	w->bufs[0] = mp_buf_get();
	w->bufs[1] = mp_buf_get();
	w->batch = w->bufs[0];
	if (!w->path || !w->tmp || !w->index || !w->bufs[0] || !w->bufs[1])
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	return 0;
}

/* The temporary file next to @path, and its O_DIRECT twin if possible. */
static int create_temp_file(struct writer *w, const char *path,
			    struct mimg_error *err)
{
	int ret;

	snprintf(w->tmp, strlen(path) + 16, "%s.tmp-XXXXXX", path);
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		ret = -errno;
		free(w->tmp);
		w->tmp = NULL;
		return mimg_set_error(err, ret, 0, "cannot create %s.tmp-*: %s",
				      path, strerror(-ret));
	}
	w->dfd = open(w->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC);
	return 0;
}

int mp_writer_open(struct writer *w, const char *path,
		   const struct mimg_header *h, struct mimg_error *err)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->dfd = -1;
	ret = start_header(w, h, err);
	if (ret)
		return ret;
	ret = allocate_buffers(w, path, err);
	if (ret)
		return ret;
	mp_helper_start(&w->writer, write_job, w);
	return create_temp_file(w, path, err);
}

static int write_failed(const struct writer *w, struct mimg_error *err,
			int ret, uint64_t at)
{
	return mimg_set_error(err, ret, at, "writing %s: %s", w->tmp,
			      strerror(-ret));
}

/* Give the batch to the writer thread; fill the other buffer next. */
static void hand_over_batch(struct writer *w, uint64_t at)
{
	w->job_buf = w->batch;
	w->job_len = w->batch_len;
	w->job_at = at;
	mp_helper_submit(&w->writer);
	w->cur ^= 1;
	w->batch = w->bufs[w->cur];
}

int mp_writer_flush(struct writer *w, struct mimg_error *err)
{
	uint64_t at = w->pos - w->batch_len;
	int ret;

	writer_settle(w);	/* the index before the batch can go */
	if (!w->batch_len)
		return 0;
	/* Once the thread is idle, the other buffer is free again. */
	ret = mp_helper_wait(&w->writer);
	if (ret)
		goto out;
	hand_over_batch(w, at);
	if (!w->writer.ok)	/* written inline: its error now */
		ret = mp_helper_wait(&w->writer);
out:
	w->batch_len = 0;
	if (ret)
		return write_failed(w, err, ret, at);
	return 0;
}

uint8_t *mp_writer_reserve(struct writer *w, uint64_t len,
			   struct mimg_error *err)
{
	if (w->batch_len + len > BATCH_BYTES && mp_writer_flush(w, err))
		return NULL;
	return w->batch + w->batch_len;
}

/*
 * Fill @r for span @span, whose stored pages were put at
 * mp_writer_reserve(), as the next record of @w, and count it in @w (its
 * crc comes later).
 */
static int writer_next_record(struct writer *w, uint64_t span,
			      const uint64_t present[MIMG_BITMAP_WORDS],
			      const uint64_t stored[MIMG_BITMAP_WORDS],
			      struct mimg_record *r, struct mimg_error *err)
{
	if (w->next >= w->h.nr_records)
		return mimg_set_error(err, -EINVAL, 0,
				      "internal: too many records");
	memset(r, 0, sizeof(*r));
	r->span = span;
	r->data_offset = w->pos;
	r->nr_stored = mimg_popcount(stored);
	memcpy(r->present, present, sizeof(r->present));
	memcpy(r->stored, stored, sizeof(r->stored));
	w->batch_len += (uint64_t)r->nr_stored * PAGE;
	w->next++;
	w->pos += (uint64_t)r->nr_stored * PAGE;
	w->h.data_pages += r->nr_stored;
	w->h.present_pages += mimg_popcount(present);
	return 0;
}

int mp_writer_add(struct writer *w, uint64_t span,
		  const uint64_t present[MIMG_BITMAP_WORDS],
		  const uint64_t stored[MIMG_BITMAP_WORDS], uint32_t crc,
		  struct mimg_error *err)
{
	struct mimg_record r;
	int ret;

	writer_settle(w);	/* records stay in order, for the fingerprint */
	ret = writer_next_record(w, span, present, stored, &r, err);
	if (ret)
		return ret;
	r.data_crc = r.nr_stored ? crc : 0;
	writer_encode(w, &r, w->next - 1);
	return 0;
}

int mp_writer_defer(struct writer *w, uint64_t span,
		    const uint64_t present[MIMG_BITMAP_WORDS],
		    const uint64_t stored[MIMG_BITMAP_WORDS],
		    const uint8_t *data, struct mimg_error *err)
{
	int ret;

	if (!w->pend)
		return mimg_set_error(err, -EINVAL, 0, "internal: "
				      "mp_writer_defer_init() not called");
	if (w->npend == PEND_MAX)
		writer_settle(w);
	if (!w->npend)
		w->pend_first = w->next;
	ret = writer_next_record(w, span, present, stored,
				 &w->pend[w->npend], err);
	if (!ret)
		w->pend_data[w->npend++] = data;
	return ret;
}

/*
 * The index crc, the fingerprint and the header, written straight to the
 * disk like the data (fsync() then only commits) while the writer thread
 * writes the last batch.
 */
static int write_metadata(struct writer *w, struct mimg_error *err)
{
	uint64_t ilen = w->h.nr_records * MIMG_RECORD_SIZE;
	int ret;

	if (w->next != w->h.nr_records)
		return mimg_set_error(err, -EINVAL, 0, "internal: %llu of %llu "
				      "records", (unsigned long long)w->next,
				      (unsigned long long)w->h.nr_records);
	w->h.index_crc = mp_crc32c(0, w->index, ilen);
	if (w->full)
		w->h.content_fingerprint = w->fp;
	mimg_encode_header(&w->h, w->meta);
	ret = write_batch(w, w->meta, w->h.data_offset, 0);
	if (ret)
		return write_failed(w, err, ret, 0);
	return 0;
}

/* The temporary file synced, then renamed over the image, durably. */
static int rename_into_place(struct writer *w, struct mimg_error *err)
{
	int ret;

	/* Size exactly: a re-used tmp name must not keep a longer tail. */
	if (ftruncate(w->fd, (off_t)w->pos) || fsync(w->fd))
		return mimg_set_error(err, -errno, 0, "syncing %s: %s", w->tmp,
				      strerror(errno));
	if (rename(w->tmp, w->path))
		return mimg_set_error(err, -errno, 0, "renaming %s to %s: %s",
				      w->tmp, w->path, strerror(errno));
	free(w->tmp);
	w->tmp = NULL;	/* committed: nothing to remove */
	ret = mp_fsync_dir_of(w->path);
	if (ret)
		return mimg_set_error(err, ret, 0, "syncing the directory of "
				      "%s: %s", w->path, strerror(-ret));
	return 0;
}

int mp_writer_commit(struct writer *w, struct mimg_header *out,
		     struct mimg_error *err)
{
	int ret, wret;

	ret = mp_writer_flush(w, err);
	if (ret)
		goto stop_writer;
	ret = write_metadata(w, err);
stop_writer:
	wret = mp_helper_wait(&w->writer);
	mp_helper_stop(&w->writer);	/* it ends while we sync */
	if (ret)
		return ret;
	if (wret)
		return write_failed(w, err, wret, 0);
	ret = rename_into_place(w, err);
	if (ret)
		return ret;
	if (out)
		*out = w->h;
	return 0;
}

void mp_writer_close(struct writer *w)
{
	mp_helper_join(&w->writer);
	mp_helper_join(&w->crc);
	free(w->pend);
	free(w->pend_data);
	if (w->fd >= 0)
		close(w->fd);
	if (w->dfd >= 0)
		close(w->dfd);
	if (w->tmp)
		unlink(w->tmp);
	free(w->tmp);
	free(w->path);
	free(w->meta);
	mp_buf_put(w->bufs[0]);
	mp_buf_put(w->bufs[1]);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->dfd = -1;
}
