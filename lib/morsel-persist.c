#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Persistence: saving morsels into images and loading images into morsels
 * (docs/persistence.md; the format is lib/morsel-image.[ch]).
 *
 * This file owns the policy: which pages an image stores (all present
 * pages, the pages dirty since the last save, or a child's own pages),
 * the chain rules (an increment names its parent image and the object's
 * clean generation; a delta names its base by fingerprint), how a page of
 * a chain is resolved, and the crash-consistent write (temporary file,
 * fsync, rename, fsync of the directory).
 *
 * Data is read from a read-only mapping of the object (one copy, into the
 * image file's page cache) and written back with pwrite() (the kernel
 * allocates the frames).  Which pages exist comes from MORSEL_IOC_SCAN.
 */
#include "libmorsel.h"
#include "full-io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define SPAN_PAGES	MIMG_SPAN_PAGES
#define PAGE		MIMG_PAGE_SIZE

/* "@path: " before the message already in @err. */
static void prefix_error(struct mimg_error *err, const char *path)
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

/* ------------------------------------------------------------- bitmaps */

/* Bits [pos, pos + 64) of @map (@nbits long); bits outside it read 0. */
static uint64_t bits64(const uint64_t *map, uint64_t nbits, int64_t pos)
{
	uint64_t lo, hi, v;
	int64_t w;
	int sh;

	if (pos >= (int64_t)nbits || pos <= -64)
		return 0;
	w = pos >= 0 ? pos / 64 : -1;
	sh = (int)(pos - w * 64);
	lo = w >= 0 ? map[w] : 0;
	hi = (uint64_t)(w + 1) * 64 < nbits ? map[w + 1] : 0;
	v = sh ? lo >> sh | hi << (64 - sh) : lo;
	if (pos + 64 > (int64_t)nbits)
		v &= ~0ull >> (pos + 64 - (int64_t)nbits);
	if (pos < 0)
		v &= ~0ull << -pos;
	return v;
}

/* The 512 bits of span @span, from a range bitmap starting at page @first. */
static void span_bits(const uint64_t *map, uint64_t nbits, uint64_t first,
		      uint64_t span, uint64_t out[MIMG_BITMAP_WORDS])
{
	int64_t pos = (int64_t)(span * SPAN_PAGES) - (int64_t)first;
	int w;

	/* The common case: whole words inside the range, copied as they are. */
	if (map && pos >= 0 && !(pos % 64) &&
	    (uint64_t)pos + SPAN_PAGES <= nbits) {
		memcpy(out, map + pos / 64, MIMG_BITMAP_WORDS * 8);
		return;
	}
	for (w = 0; w < MIMG_BITMAP_WORDS; w++)
		out[w] = map ? bits64(map, nbits, pos + 64 * w) : 0;
}

static bool bits_empty(const uint64_t m[MIMG_BITMAP_WORDS])
{
	int w;

	for (w = 0; w < MIMG_BITMAP_WORDS; w++)
		if (m[w])
			return false;
	return true;
}

/*
 * The first bit of a 512-bit span bitmap at or after @from that equals
 * @set, or SPAN_PAGES: runs of pages are found a word at a time.
 */
static unsigned int next_bit(const uint64_t m[MIMG_BITMAP_WORDS],
			     unsigned int from, bool set)
{
	unsigned int w = from / 64;
	uint64_t v;

	if (from >= SPAN_PAGES)
		return SPAN_PAGES;
	v = (set ? m[w] : ~m[w]) & (~0ull << (from % 64));
	while (!v) {
		if (++w == MIMG_BITMAP_WORDS)
			return SPAN_PAGES;
		v = set ? m[w] : ~m[w];
	}
	return w * 64 + (unsigned int)__builtin_ctzll(v);
}

/* ------------------------------------------------------------------ I/O */

static int fsync_dir_of(const char *path)
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

static void progress(const struct morsel_progress *p, uint64_t done,
		     uint64_t total)
{
	if (p && p->fn)
		p->fn(done, total, p->arg);
}

/* ---------------------------------------------------------- I/O buffers */

#define BATCH_BYTES	(2u << 20)	/* one span's data */
_Static_assert(BATCH_BYTES >= MIMG_SPAN_SIZE, "a buffer holds a span");

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

static void *buf_get(void)
{
	void *p = NULL;

	pthread_mutex_lock(&buf_lock);
	if (buf_cached)
		p = buf_cache[--buf_cached];
	pthread_mutex_unlock(&buf_lock);
	return p ? p : aligned_alloc(PAGE, BATCH_BYTES);
}

static void buf_put(void *p)
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

/* ------------------------------------------------------- helper threads */

/*
 * A thread that runs one job at a time for the saving thread: the writer
 * thread and the crc thread of an image writer.  The caller sets up the
 * job while the thread is idle (after helper_wait()) and hands it over
 * with helper_submit(); @run does it, returning 0 or -errno, and the
 * first error is kept.  Without a thread (@ok false) jobs run inline.
 */
struct helper {
	pthread_t thr;
	bool ok;
	pthread_mutex_t mu;	/* protects @pending, @quit and @err */
	pthread_cond_t cv;
	bool pending, quit;
	int err;
	int (*run)(void *arg);
	void *arg;
};

static void *helper_main(void *arg)
{
	struct helper *h = arg;
	int ret;

	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->pending && !h->quit)
			pthread_cond_wait(&h->cv, &h->mu);
		if (!h->pending)
			break;
		pthread_mutex_unlock(&h->mu);
		ret = h->run(h->arg);
		pthread_mutex_lock(&h->mu);
		if (ret && !h->err)
			h->err = ret;
		h->pending = false;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* Start @h running @run(@arg) for each job; without a thread, inline. */
static void helper_start(struct helper *h, int (*run)(void *), void *arg)
{
	h->run = run;
	h->arg = arg;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	h->ok = !pthread_create(&h->thr, NULL, helper_main, h);
}

static void helper_submit(struct helper *h)
{
	int ret;

	if (!h->ok) {
		ret = h->run(h->arg);
		if (ret && !h->err)
			h->err = ret;
		return;
	}
	pthread_mutex_lock(&h->mu);
	h->pending = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* Wait until @h is idle; its first error, or 0. */
static int helper_wait(struct helper *h)
{
	int ret;

	if (!h->ok)
		return h->err;
	pthread_mutex_lock(&h->mu);
	while (h->pending)
		pthread_cond_wait(&h->cv, &h->mu);
	ret = h->err;
	pthread_mutex_unlock(&h->mu);
	return ret;
}

/* Let the thread end once idle (helper_join() waits for it). */
static void helper_stop(struct helper *h)
{
	if (!h->ok)
		return;
	pthread_mutex_lock(&h->mu);
	h->quit = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* End @h; a never-started one (all zero, or run inline) is fine too. */
static void helper_join(struct helper *h)
{
	if (h->run) {
		helper_stop(h);
		if (h->ok)
			pthread_join(h->thr, NULL);
		pthread_mutex_destroy(&h->mu);
		pthread_cond_destroy(&h->cv);
	}
	memset(h, 0, sizeof(*h));
}

/* --------------------------------------------------------- image writer */

/*
 * An image being written: a temporary file next to @path, data first, then
 * the index and the header; committed by fsync + rename + fsync(dir), so
 * an interrupted save leaves the previous image at @path untouched.
 */
struct writer {
	int fd;
	int dfd;		/* the same file opened O_DIRECT, or -1 */
	char *path, *tmp;
	struct mimg_header h;
	uint8_t *meta;		/* header, index, padding: data_offset bytes */
	uint8_t *index;		/* in @meta */
	uint64_t next;		/* records added */
	uint64_t pos;		/* file offset of the next data page */
	uint64_t fp;		/* content fingerprint so far */
	bool full;		/* stored == present: fingerprint it */
	/*
	 * Record data is copied here first (writer_reserve()), checksummed
	 * there, and written BATCH_BYTES at a time: the crc is of the bytes
	 * written even while the object changes, and a sparse object's many
	 * one-page records, contiguous in the file, go out in one pwrite().
	 * The buffers are page aligned and every batch starts on a page of
	 * the file: they are written with O_DIRECT (@dfd) where the file
	 * system has it, so the device reads them without a copy into the
	 * page cache, and the final fsync() has little left to write.
	 */
	uint8_t *batch;		/* the buffer being filled: bufs[cur] */
	uint64_t batch_len;	/* bytes pending, ending at @pos */
	uint8_t *bufs[2];
	int cur;
	/*
	 * A filled buffer is written by a second thread (@writer) while the
	 * next one is copied and checksummed (two CPUs: the copy and crc32c
	 * overlap the kernel's copy into the page cache); the job is @job_*.
	 */
	struct helper writer;
	const uint8_t *job_buf;
	uint64_t job_len, job_at;
	/*
	 * Saves add records with writer_defer(): their data is in the batch,
	 * their crc32c not computed yet.  @pend[i] becomes record
	 * @pend_first + i; writer_settle() computes the crcs (part of them
	 * on the crc thread, a second CPU: under emulation the crc is most
	 * of a save) and encodes the records, before the batch is written.
	 */
	struct mimg_record *pend;
	const uint8_t **pend_data;
	unsigned int npend;
	uint64_t pend_first;
	/* The crc thread's job: crcs of pend[c_first, c_end). */
	struct helper crc;
	unsigned int c_first, c_end;
};

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

/* CPUs this thread may run on (its affinity, which cpusets narrow). */
static int usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		return (int)sysconf(_SC_NPROCESSORS_ONLN);
	return CPU_COUNT(&set);
}

/* The crcs of pending records [@first, @end). */
static void crc_pending(struct writer *w, unsigned int first, unsigned int end)
{
	struct mimg_record *r;

	for (; first < end; first++) {
		r = &w->pend[first];
		r->data_crc = r->nr_stored ?
			      mimg_crc32c(0, w->pend_data[first],
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

/*
 * Make @w ready for writer_defer(); with a crc thread if @bytes of data
 * are to come and there is a second CPU for it.
 */
static int writer_defer_init(struct writer *w, uint64_t bytes,
			     struct mimg_error *err)
{
	w->pend = calloc(PEND_MAX, sizeof(*w->pend));
	w->pend_data = calloc(PEND_MAX, sizeof(*w->pend_data));
	if (!w->pend || !w->pend_data)
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	if (bytes >= BATCH_BYTES && usable_cpus() >= 2)
		helper_start(&w->crc, crc_job, w);
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
		helper_submit(&w->crc);
	}
	crc_pending(w, 0, split);
	if (split < w->npend)
		helper_wait(&w->crc);
	for (i = 0; i < w->npend; i++)
		writer_encode(w, &w->pend[i], w->pend_first + i);
	w->npend = 0;
}

static int writer_open(struct writer *w, const char *path,
		       const struct mimg_header *h, struct mimg_error *err)
{
	size_t len = strlen(path);
	int ret;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->dfd = -1;
	w->h = *h;
	w->h.version = MIMG_VERSION;
	w->h.index_offset = MIMG_HEADER_SIZE;
	w->h.data_offset = (MIMG_HEADER_SIZE + h->nr_records *
			    MIMG_RECORD_SIZE + PAGE - 1) / PAGE * PAGE;
	w->h.data_pages = 0;
	w->h.present_pages = 0;
	if (getrandom(w->h.image_id, sizeof(w->h.image_id), 0) !=
	    sizeof(w->h.image_id))
		return mimg_set_error(err, -errno ? -errno : -EIO, 0, "getrandom: %s",
			    strerror(errno));
	w->h.image_id[0] |= 1;	/* never all zero */
	w->full = !(h->flags & (MIMG_F_INCREMENT | MIMG_F_DELTA));
	w->fp = mimg_fingerprint_init(h->object_size);
	w->pos = w->h.data_offset;
	w->path = strdup(path);
	w->tmp = malloc(len + 16);
	/* Header, index and padding: one page-aligned block before the data. */
	w->meta = aligned_alloc(PAGE, w->h.data_offset);
	if (w->meta)
		memset(w->meta, 0, w->h.data_offset);
	w->index = w->meta ? w->meta + MIMG_HEADER_SIZE : NULL;
	w->bufs[0] = buf_get();
	w->bufs[1] = buf_get();
	w->batch = w->bufs[0];
	if (!w->path || !w->tmp || !w->index || !w->bufs[0] || !w->bufs[1])
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");
	helper_start(&w->writer, write_job, w);
	snprintf(w->tmp, len + 16, "%s.tmp-XXXXXX", path);
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		ret = -errno;
		free(w->tmp);
		w->tmp = NULL;
		return mimg_set_error(err, ret, 0, "cannot create %s.tmp-*: %s", path,
			    strerror(-ret));
	}
	w->dfd = open(w->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC);
	return 0;
}

/* Hand the filled buffer to the writer thread (or write it here). */
static int writer_flush(struct writer *w, struct mimg_error *err)
{
	uint64_t at = w->pos - w->batch_len;
	int ret;

	writer_settle(w);	/* the index before the batch can go */
	if (!w->batch_len)
		return 0;
	ret = helper_wait(&w->writer);	/* the other buffer is free again */
	if (!ret) {
		w->job_buf = w->batch;
		w->job_len = w->batch_len;
		w->job_at = at;
		helper_submit(&w->writer);
		w->cur ^= 1;
		w->batch = w->bufs[w->cur];
		if (!w->writer.ok)	/* written inline: its error now */
			ret = helper_wait(&w->writer);
	}
	w->batch_len = 0;
	if (ret)
		return mimg_set_error(err, ret, at, "writing %s: %s", w->tmp,
				      strerror(-ret));
	return 0;
}

/* Room for @len bytes (<= one span) of the next record's data. */
static uint8_t *writer_reserve(struct writer *w, uint64_t len,
			       struct mimg_error *err)
{
	if (w->batch_len + len > BATCH_BYTES && writer_flush(w, err))
		return NULL;
	return w->batch + w->batch_len;
}

/*
 * Fill @r for span @span, whose stored pages were put at writer_reserve(),
 * as the next record of @w, and count it in @w (its crc comes later).
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

/*
 * Append one record whose stored pages were put at writer_reserve(),
 * with @crc their crc32c.
 */
static int writer_add(struct writer *w, uint64_t span,
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

/*
 * Like writer_add(), for the data @data put at writer_reserve(): its crc
 * is computed by writer_settle(), before the batch is written.
 */
static int writer_defer(struct writer *w, uint64_t span,
			const uint64_t present[MIMG_BITMAP_WORDS],
			const uint64_t stored[MIMG_BITMAP_WORDS],
			const uint8_t *data, struct mimg_error *err)
{
	int ret;

	if (!w->pend)
		return mimg_set_error(err, -EINVAL, 0,
				      "internal: writer_defer_init() not called");
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

static int writer_commit(struct writer *w, struct mimg_header *out,
			 struct mimg_error *err)
{
	uint64_t ilen = w->h.nr_records * MIMG_RECORD_SIZE;
	int ret, wret;

	ret = writer_flush(w, err);
	if (!ret && w->next != w->h.nr_records)
		ret = mimg_set_error(err, -EINVAL, 0, "internal: %llu of %llu records",
			    (unsigned long long)w->next,
			    (unsigned long long)w->h.nr_records);
	if (!ret) {
		w->h.index_crc = mimg_crc32c(0, w->index, ilen);
		if (w->full)
			w->h.content_fingerprint = w->fp;
		mimg_encode_header(&w->h, w->meta);
		/*
		 * Like the data, straight to the disk (fsync() then only
		 * commits), and while the writer thread writes the last batch.
		 */
		ret = write_batch(w, w->meta, w->h.data_offset, 0);
		if (ret)
			mimg_set_error(err, ret, 0, "writing %s: %s", w->tmp,
				       strerror(-ret));
	}
	wret = helper_wait(&w->writer);
	helper_stop(&w->writer);	/* it ends while we sync */
	if (!ret && wret)
		ret = mimg_set_error(err, wret, 0, "writing %s: %s", w->tmp,
				     strerror(-wret));
	if (ret)
		return ret;
	/* Size exactly: a re-used tmp name must not keep a longer tail. */
	if (ftruncate(w->fd, (off_t)w->pos) || fsync(w->fd))
		return mimg_set_error(err, -errno, 0, "syncing %s: %s", w->tmp,
			    strerror(errno));
	if (rename(w->tmp, w->path))
		return mimg_set_error(err, -errno, 0, "renaming %s to %s: %s", w->tmp,
			    w->path, strerror(errno));
	free(w->tmp);
	w->tmp = NULL;	/* committed: nothing to remove */
	ret = fsync_dir_of(w->path);
	if (ret)
		return mimg_set_error(err, ret, 0, "syncing the directory of %s: %s",
			    w->path, strerror(-ret));
	if (out)
		*out = w->h;
	return 0;
}

/* Free @w; an uncommitted temporary file is removed. */
static void writer_close(struct writer *w)
{
	helper_join(&w->writer);
	helper_join(&w->crc);
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
	buf_put(w->bufs[0]);
	buf_put(w->bufs[1]);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->dfd = -1;
}

/* ---------------------------------------------------------- fingerprint */

/*
 * Where a save or fingerprint reads the object's pages: a mapping of it
 * from page @first (fast, for objects the saver may map writable), else
 * pread() of @fd (frozen bases, children, read-only descriptors: mapping
 * those read-only would make a read-only twin of every table touched, and
 * in a child own every borrowed table).
 */
struct source {
	const uint8_t *map;
	int fd;
	uint64_t first;
};

/* Copy the pages of @stored in span @span to @dst, in page order. */
static int fetch_pages(const struct source *src, uint64_t span,
		       const uint64_t *stored, uint8_t *dst)
{
	unsigned int i, j;
	uint64_t pg, len;
	ssize_t n;

	for (i = next_bit(stored, 0, true); i < SPAN_PAGES;
	     i = next_bit(stored, j, true)) {
		j = next_bit(stored, i, false);
		pg = span * SPAN_PAGES + i;
		len = (uint64_t)(j - i) * PAGE;
		if (src->map) {
			memcpy(dst, src->map + (pg - src->first) * PAGE, len);
		} else {
			n = mp_pread_full(src->fd, dst, len, pg * PAGE);
			if (n < 0)
				return (int)n;
			/* shrank: the rest reads 0 */
			memset(dst + n, 0, len - (uint64_t)n);
		}
		dst += len;
	}
	return 0;
}

/*
 * Walk the spans of [@first, @first + @npages) that have present pages;
 * @fn gets each span's present bitmap and the part @stored of it.
 */
typedef int (*span_fn)(void *ctx, uint64_t span, const uint64_t *present,
		       const uint64_t *stored);

static int walk_spans(uint64_t first, uint64_t npages,
		      const uint64_t *present_map, const uint64_t *stored_map,
		      span_fn fn, void *ctx, const struct morsel_progress *pr,
		      uint64_t total)
{
	uint64_t span, last = (first + npages - 1) / SPAN_PAGES, done = 0;
	uint64_t present[MIMG_BITMAP_WORDS], stored[MIMG_BITMAP_WORDS];
	int ret;

	if (!npages)
		return 0;
	for (span = first / SPAN_PAGES; span <= last; span++) {
		span_bits(present_map, npages, first, span, present);
		if (bits_empty(present))
			continue;
		span_bits(stored_map, npages, first, span, stored);
		ret = fn(ctx, span, present, stored);
		if (ret)
			return ret;
		done += (uint64_t)mimg_popcount(stored) * PAGE;
		progress(pr, done, total);
	}
	return 0;
}

struct scan_result {
	uint64_t *present, *owned, *dirty;
	uint64_t npages, first;
	struct morsel_scan s;
};

static void scan_free(struct scan_result *r)
{
	free(r->present);
	free(r->owned);
	free(r->dirty);
	memset(r, 0, sizeof(*r));
}

/* Which bitmaps besides present a scan_range() caller needs. */
#define WANT_OWNED	(1u << 0)
#define WANT_DIRTY	(1u << 1)

static int scan_range(int fd, uint64_t start, uint64_t length,
		      unsigned int flags, uint64_t gen, unsigned int want,
		      struct scan_result *r)
{
	size_t words = (length / PAGE + 63) / 64;

	memset(r, 0, sizeof(*r));
	r->first = start / PAGE;
	r->npages = length / PAGE;
	/* A bitmap is 2 MiB per 64 GiB: fault in only those used. */
	r->present = calloc(words ? words : 1, 8);
	if (want & WANT_OWNED)
		r->owned = calloc(words ? words : 1, 8);
	if (want & WANT_DIRTY)
		r->dirty = calloc(words ? words : 1, 8);
	if (!r->present || (!r->owned && (want & WANT_OWNED)) ||
	    (!r->dirty && (want & WANT_DIRTY))) {
		scan_free(r);
		return -ENOMEM;
	}
	if (!length) {		/* an empty object: nothing to scan */
		r->s.gen = gen;
		return 0;
	}
	return morsel_scan(fd, start, length, flags, gen, r->present, r->owned,
			   r->dirty, &r->s);
}

/*
 * The source for reading [@start, +@length) of @fd: a writable mapping
 * when the object may be mapped so (not frozen, not a child, fd opened
 * read-write; it links the object's own tables as pages are touched, and
 * nothing is written through it), else pread().  While mapped the object
 * cannot shrink (EBUSY), so a size checked after mapping holds.
 */
static int source_open(struct source *src, int fd,
		       const struct morsel_stat *st, uint64_t start,
		       uint64_t length)
{
	struct morsel_stat now;
	void *map;

	src->map = NULL;
	src->fd = fd;
	src->first = start / PAGE;
	if ((st->state & MORSEL_STATE_FROZEN) || st->parent ||
	    (fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR)
		return 0;
	map = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   (off_t)start);
	if (map == MAP_FAILED)
		return 0;	/* pread() then */
	if (morsel_stat(fd, &now) || now.size < start + length) {
		munmap(map, length);
		return -EAGAIN;	/* shrank since the scan */
	}
	src->map = map;
	return 0;
}

static void source_close(struct source *src, uint64_t length)
{
	if (src->map)
		munmap((void *)src->map, length);
	src->map = NULL;
}

struct fp_ctx {
	struct source src;
	uint8_t *buf;
	uint64_t fp;
};

static int fp_span(void *ctx, uint64_t span, const uint64_t *present,
		   const uint64_t *stored)
{
	struct fp_ctx *c = ctx;
	int ret = fetch_pages(&c->src, span, stored, c->buf);

	if (ret)
		return ret;
	c->fp = mimg_fingerprint_add(c->fp, span, present,
				     mimg_crc32c(0, c->buf,
						 (size_t)mimg_popcount(stored) *
						 PAGE));
	return 0;
}

int morsel_fingerprint(int fd, uint64_t *fp, const struct morsel_progress *pr)
{
	struct morsel_stat st;
	struct scan_result r;
	struct fp_ctx c;
	uint64_t len;
	int ret;

	ret = morsel_stat(fd, &st);
	if (ret)
		return ret;
	*fp = mimg_fingerprint_init(st.size);
	len = (st.size + PAGE - 1) / PAGE * PAGE;
	if (!len)
		return 0;
	ret = scan_range(fd, 0, len, 0, 0, 0, &r);
	c.fp = *fp;
	c.buf = buf_get();
	if (!ret && !c.buf)
		ret = -ENOMEM;
	if (!ret)
		ret = source_open(&c.src, fd, &st, 0, len);
	if (!ret) {
		ret = walk_spans(0, len / PAGE, r.present, r.present, fp_span,
				 &c, pr, r.s.present_pages * PAGE);
		source_close(&c.src, len);
	}
	if (!ret)
		*fp = c.fp;
	buf_put(c.buf);
	scan_free(&r);
	return ret;
}

/* ----------------------------------------------------------------- save */

/* What save_span() and compact_span() write into. */
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
	uint8_t *dst = writer_reserve(c->w, len, c->err);
	int ret;

	if (!dst)
		return -EIO;
	/* Checksum the copy, not the object: writers may be at work. */
	ret = fetch_pages(&c->src, span, stored, dst);
	if (ret)
		return mimg_set_error(c->err, ret, 0, "reading the object: %s",
				      strerror(-ret));
	return writer_defer(c->w, span, present, stored, dst, c->err);
}

static uint64_t count_spans(const uint64_t *present, uint64_t npages,
			    uint64_t first)
{
	uint64_t span, last = (first + npages - 1) / SPAN_PAGES, n = 0;
	uint64_t bits[MIMG_BITMAP_WORDS];

	if (!npages)
		return 0;

	for (span = first / SPAN_PAGES; span <= last; span++) {
		span_bits(present, npages, first, span, bits);
		n += !bits_empty(bits);
	}
	return n;
}

/*
 * May an image of [@start, +@length) of an object of @size follow @parent?
 * The same range, or both the whole object (whose size may have changed).
 */
static bool same_range(const struct mimg_header *parent, uint64_t start,
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
			prefix_error(err, path);
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

/* Is @base_fd the frozen base @fd was split from? */
static int check_base(int fd, int base_fd, struct mimg_error *err)
{
	struct morsel_stat st, bst;
	struct stat sb;
	int ret;

	ret = morsel_stat(fd, &st);
	if (!ret)
		ret = morsel_stat(base_fd, &bst);
	if (ret)
		return mimg_set_error(err, ret, 0, "MORSEL_IOC_STAT: %s", strerror(-ret));
	if (fstat(base_fd, &sb))
		return mimg_set_error(err, -errno, 0, "fstat: %s", strerror(errno));
	if (!st.parent || st.parent != (uint64_t)sb.st_ino)
		return mimg_set_error(err, -EINVAL, 0,
			    "the base given is not this object's parent");
	if (!(bst.state & MORSEL_STATE_FROZEN))
		return mimg_set_error(err, -EINVAL, 0, "the base is not frozen");
	return 0;
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
		if (!same_range(&parent, start, length, st.size)) {
			ret = mimg_set_error(err, -EINVAL, 0, "%s covers another range",
				   o->parent);
			goto out;
		}
		flags |= MIMG_F_INCREMENT;
		memcpy(h.parent_id, parent.image_id, 16);
		ret = scan_range(fd, start, length,
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
		ret = delta ? check_base(fd, o->base_fd, err) : 0;
		if (ret)
			goto out;
		ret = scan_range(fd, start, length, MORSEL_SCAN_CLEAN, 0, want,
				 &r);
		if (ret == -EBADF) {
			scan_free(&r);
			ret = scan_range(fd, start, length, 0, 0, want, &r);
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
	h.nr_records = count_spans(r.present, r.npages, r.first);
	total = 0;
	for (uint64_t i = 0; i < (r.npages + 63) / 64; i++)
		total += __builtin_popcountll(stored[i]);
	ret = writer_open(&w, path, &h, err);
	if (!ret)
		ret = writer_defer_init(&w, total * PAGE, err);
	if (ret)
		goto out;
	ret = source_open(&ctx.src, fd, &st, start, length);
	if (ret) {
		mimg_set_error(err, ret, 0, "the object shrank during the save; "
			       "save again");
		goto out;
	}
	ctx.w = &w;
	ctx.err = err;
	ret = walk_spans(r.first, r.npages, r.present, stored, save_span,
			 &ctx, o ? &o->progress : NULL, total * PAGE);
	if (!ret)	/* the last batch is written while we unmap */
		ret = writer_flush(&w, err);
	source_close(&ctx.src, length);
	if (!ret)
		ret = writer_commit(&w, out, err);
out:
	writer_close(&w);
	scan_free(&r);
	return ret;
}

/* ---------------------------------------------------------------- chain */

struct chain {
	unsigned int n;
	struct mimg_reader *r;		/* r[0] root ... r[n - 1] newest */
	int *fds;
	int *dfds;			/* O_DIRECT twins of fds, or -1 */
};

static void chain_close(struct chain *c)
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
static int chain_open(struct chain *c, const char *const *paths,
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
			prefix_error(err, paths[i]);
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
		if (!same_range(p, h->range_start, h->range_length,
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
static void chain_read_direct(struct chain *c, const char *const *paths)
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

static bool chain_direct(const struct chain *c, unsigned int i)
{
	return c->dfds && c->dfds[i] >= 0;
}

/*
 * Resolve the chain span by span (the spans of the newest image: its
 * present pages are the chain's).  For each, @fn gets the present bitmap,
 * the pages supplied by some image (their data in page order in @data,
 * every run checked against its crc) and the pages left to the base.
 *
 * Spans are independent, so up to @threads threads resolve them, each
 * taking the next few records of the newest image (about CLAIM_BYTES of
 * data) in turn; @fn must then be safe to call from several threads at
 * once and in any order.  An error stops the claiming; the one reported
 * is that of the lowest record that failed, as one thread would have.
 *
 * @batch, if not NULL, is offered the records a thread took, from the
 * first it has not done: it may put the data of some leading ones in
 * place itself (load's MORSEL_IOC_FILL) and returns how many (0: none,
 * read the next the usual way), or -errno with *@failed the record at
 * fault; *@bytes: the data bytes it handled.
 */
typedef int (*resolve_fn)(void *ctx, uint64_t span, const uint64_t *present,
			  const uint64_t *supplied, const uint64_t *from_base,
			  const uint8_t *data, uint32_t crc,
			  struct mimg_error *err);
typedef int (*batch_fn)(void *ctx, const struct mimg_reader *r,
			uint64_t first, uint64_t n, uint64_t *bytes,
			uint64_t *failed, struct mimg_error *err);

struct resolve_job {
	struct chain *c;
	resolve_fn fn;
	batch_fn batch;
	void *ctx;
	bool need_crc;
	const struct morsel_progress *pr;
	pthread_mutex_t lock;		/* protects what follows */
	uint64_t next;			/* first record nobody took */
	uint64_t done, total;		/* data bytes, for @pr */
	uint64_t failed;		/* lowest record that failed */
	int ret;
	struct mimg_error err;
};

/* The record of @span in @r, or NULL; *@cursor only moves forward. */
static const struct mimg_record *record_of_span(const struct mimg_reader *r,
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
 * Ask the kernel to read the newest image ahead of us (up to READ_AHEAD
 * bytes past @at), so the disk works while we check and copy.  Only a
 * hint, and only for the page cache: O_DIRECT reads are not cached.
 */
#define READ_AHEAD	(32u << 20)

static void read_ahead(const struct mimg_reader *r, uint64_t at,
		       uint64_t *done)
{
	uint64_t end = at + READ_AHEAD;

	if (end > r->file_size)
		end = r->file_size;
	if (*done >= end || (*done > at && *done - at > READ_AHEAD / 2))
		return;
	if (*done < at)
		*done = at;
	readahead(r->fd, (off64_t)*done, (size_t)(end - *done));
	*done = end;
}

/*
 * Small records (a sparse object has many one-page ones, contiguous in the
 * file) are read through a window of the newest image: one pread() for
 * the small records of a batch instead of one each.  Larger ones are read
 * directly.
 */
#define WINDOW_SMALL	(256u << 10)

struct window {
	uint8_t *buf;			/* BATCH_BYTES, page aligned */
	uint64_t at, len;		/* file range held */
	uint64_t end;			/* where the batch's data ends */
};

static int read_record(const struct mimg_reader *r, uint64_t i, void *dst,
		       struct window *win, struct mimg_error *err)
{
	const struct mimg_record *rec = &r->records[i];
	uint64_t n = (uint64_t)rec->nr_stored * PAGE, off = rec->data_offset;
	uint64_t want;
	uint32_t crc;
	ssize_t got;

	if (!win || n >= WINDOW_SMALL)
		return mimg_read_data(r, i, dst, err);
	if (off < win->at || off + n > win->at + win->len) {
		/* The batch's data from here, at most a buffer full. */
		want = win->end > off + n ? win->end - off : n;
		if (want > BATCH_BYTES)
			want = BATCH_BYTES;
		win->at = off;
		win->len = 0;
		got = mp_pread_full(r->fd, win->buf, want, off);
		if (got < 0)
			return mimg_set_error(err, (int)got, off, "reading the "
					      "image: %s", strerror((int)-got));
		win->len = (uint64_t)got;
		if (win->len < n)
			return mimg_set_error(err, -EINVAL, off + win->len,
					      "image truncated: data of record "
					      "%llu ends at %llu",
					      (unsigned long long)i,
					      (unsigned long long)(off + n));
	}
	memcpy(dst, win->buf + (off - win->at), n);
	crc = mimg_crc32c(0, dst, n);
	if (crc != rec->data_crc)
		return mimg_data_crc_error(err, i, rec, crc);
	return 0;
}

/* What one thread needs to resolve spans. */
struct resolver {
	uint8_t *buf, *tmp;		/* a span each: BATCH_BYTES */
	uint64_t *cursor;		/* per image, see record_of_span() */
	uint64_t ra;			/* read_ahead() so far */
	struct window win;
};

static int resolver_init(struct resolver *rs, unsigned int n)
{
	rs->buf = buf_get();
	rs->tmp = buf_get();
	rs->win.buf = buf_get();
	rs->cursor = calloc(n, sizeof(*rs->cursor));
	rs->ra = 0;
	rs->win.at = 0;
	rs->win.len = 0;
	rs->win.end = 0;
	return rs->buf && rs->tmp && rs->win.buf && rs->cursor ? 0 : -ENOMEM;
}

static void resolver_free(struct resolver *rs)
{
	buf_put(rs->buf);
	buf_put(rs->tmp);
	buf_put(rs->win.buf);
	free(rs->cursor);
}

/* Resolve record @i of the newest image; *@bytes: data bytes read. */
static int resolve_record(struct resolve_job *job, struct resolver *rs,
			  uint64_t i, uint64_t *bytes, struct mimg_error *err)
{
	struct chain *c = job->c;
	const struct mimg_reader *last = &c->r[c->n - 1];
	const struct mimg_record *lr = &last->records[i], *rec;
	uint64_t need[MIMG_BITMAP_WORDS], take[MIMG_BITMAP_WORDS];
	uint64_t supplied[MIMG_BITMAP_WORDS];
	bool direct = false, base_ok = c->r[0].h.flags & MIMG_F_DELTA;
	unsigned int k, pg, w, pos;
	uint8_t *buf = rs->buf;
	uint32_t crc;
	int ret;

	if (!chain_direct(c, c->n - 1))
		read_ahead(last, lr->data_offset, &rs->ra);
	memcpy(need, lr->present, sizeof(need));
	memset(supplied, 0, sizeof(supplied));
	for (k = c->n; k-- > 0 && !bits_empty(need);) {
		const struct mimg_reader *r = &c->r[k];

		rec = record_of_span(r, &rs->cursor[k], lr->span);
		if (!rec)
			continue;
		for (w = 0; w < MIMG_BITMAP_WORDS; w++)
			take[w] = need[w] & rec->stored[w];
		if (bits_empty(take))
			continue;
		*bytes += (uint64_t)rec->nr_stored * PAGE;
		/* The newest image stores the whole span: read it in. */
		if (k == c->n - 1 && !memcmp(take, need, sizeof(take)) &&
		    !memcmp(rec->stored, need, sizeof(need))) {
			ret = read_record(r, rs->cursor[k], buf, &rs->win,
					  err);
			if (ret)
				return ret;
			memcpy(supplied, need, sizeof(supplied));
			memset(need, 0, sizeof(need));
			direct = true;
			break;
		}
		ret = read_record(r, rs->cursor[k], rs->tmp,
				  k == c->n - 1 ? &rs->win : NULL, err);
		if (ret)
			return ret;
		/* Place the taken pages at their page index in @buf. */
		for (pg = 0, pos = 0; pg < SPAN_PAGES; pg++) {
			if (!mimg_test(rec->stored, pg))
				continue;
			if (mimg_test(take, pg))
				memcpy(buf + (size_t)pg * PAGE,
				       rs->tmp + (size_t)pos * PAGE, PAGE);
			pos++;
		}
		for (w = 0; w < MIMG_BITMAP_WORDS; w++) {
			supplied[w] |= take[w];
			need[w] &= ~take[w];
		}
	}
	if (!bits_empty(need) && !base_ok) {
		for (pg = 0; !mimg_test(need, pg); pg++)
			;
		return mimg_set_error(err, -EINVAL, MIMG_HEADER_SIZE +
				      i * MIMG_RECORD_SIZE, "broken chain: "
				      "page at offset %llu is present but no "
				      "image of the chain stores it",
				      (unsigned long long)((lr->span *
							    SPAN_PAGES + pg) *
							   PAGE));
	}
	if (!direct) {
		/* Compact the supplied pages into page order. */
		for (pg = 0, pos = 0; pg < SPAN_PAGES; pg++)
			if (mimg_test(supplied, pg)) {
				if (pos != pg)
					memmove(buf + (size_t)pos * PAGE,
						buf + (size_t)pg * PAGE, PAGE);
				pos++;
			}
	}
	if (direct)
		crc = lr->data_crc;	/* checked */
	else
		crc = job->need_crc ? mimg_crc32c(0, buf, (size_t)
				mimg_popcount(supplied) * PAGE) : 0;
	return job->fn(job->ctx, lr->span, lr->present, supplied, need, buf,
		       crc, err);
}

#define CLAIM_BYTES	(1u << 20)

/*
 * Take the next records of the newest image: about CLAIM_BYTES of data,
 * at least one record.  Returns how many (0: none left, or an error
 * stopped the job); *@end: where the last one's data ends in the file.
 */
static uint64_t claim_records(struct resolve_job *job, uint64_t *first,
			      uint64_t *end)
{
	const struct mimg_reader *last = &job->c->r[job->c->n - 1];
	uint64_t i, bytes = 0, n;
	const struct mimg_record *rec;

	pthread_mutex_lock(&job->lock);
	*first = i = job->next;
	if (job->failed == UINT64_MAX) {
		while (i < last->h.nr_records) {
			rec = &last->records[i];
			n = (uint64_t)rec->nr_stored * PAGE;
			if (i > *first && bytes + n > CLAIM_BYTES)
				break;
			bytes += n;
			*end = rec->data_offset + n;
			i++;
		}
	}
	job->next = i;
	pthread_mutex_unlock(&job->lock);
	return i - *first;
}

static void *resolve_worker(void *arg)
{
	struct resolve_job *job = arg;
	const struct mimg_reader *last = &job->c->r[job->c->n - 1];
	uint64_t first, end = 0, n, i, bytes, at;
	struct mimg_error err;
	struct resolver rs;
	int ret = resolver_init(&rs, job->c->n), k;

	if (ret) {
		pthread_mutex_lock(&job->lock);
		if (job->failed == UINT64_MAX) {
			job->failed = job->next;
			job->ret = mimg_set_error(&job->err, ret, 0,
						  "out of memory");
		}
		pthread_mutex_unlock(&job->lock);
	}
	while (!ret && (n = claim_records(job, &first, &end))) {
		rs.win.end = end;
		for (i = first; i < first + n; i += k) {
			memset(&err, 0, sizeof(err));
			bytes = 0;
			at = i;
			k = job->batch ? job->batch(job->ctx, last, i,
						    first + n - i, &bytes, &at,
						    &err) : 0;
			ret = k < 0 ? k : 0;
			if (!k) {
				ret = resolve_record(job, &rs, i, &bytes,
						     &err);
				k = 1;
			}
			pthread_mutex_lock(&job->lock);
			if (ret && at < job->failed) {
				job->failed = at;
				job->ret = ret;
				job->err = err;
			}
			job->done += bytes;
			if (!ret)
				progress(job->pr, job->done, job->total);
			pthread_mutex_unlock(&job->lock);
			if (ret)
				break;
		}
	}
	resolver_free(&rs);
	return NULL;
}

/* Threads worth running: one per CPU, at most 4. */
static unsigned int resolve_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 4 ? 4 : (unsigned int)n;
}

static int chain_resolve(struct chain *c, resolve_fn fn, batch_fn batch,
			 void *ctx, bool need_crc, unsigned int threads,
			 const struct morsel_progress *pr,
			 struct mimg_error *err)
{
	struct resolve_job job = {
		.c = c, .fn = fn, .batch = batch, .ctx = ctx,
		.need_crc = need_crc, .pr = pr, .failed = UINT64_MAX,
	};
	pthread_t thr[4];
	unsigned int k, started = 0;

	pthread_mutex_init(&job.lock, NULL);
	for (k = 0; k < c->n; k++)
		job.total += c->r[k].h.data_pages * PAGE;
	if (threads > 4)
		threads = 4;
	for (k = 1; k < threads; k++)
		if (!pthread_create(&thr[started], NULL, resolve_worker, &job))
			started++;
	resolve_worker(&job);
	for (k = 0; k < started; k++)
		pthread_join(thr[k], NULL);
	pthread_mutex_destroy(&job.lock);
	if (job.ret && err)
		*err = job.err;
	return job.ret;
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
		for (k = c->n; k-- > 0 && !bits_empty(need);) {
			rec = record_of_span(&c->r[k], &cursor[k], lr->span);
			if (!rec)
				continue;
			for (w = 0; w < MIMG_BITMAP_WORDS; w++)
				need[w] &= ~rec->stored[w];
		}
		if (bits_empty(need))
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
	ret = chain_open(&c, paths, n, err);
	if (!ret)
		ret = chain_check(&c, err);
	for (i = 0; !ret && i < n; i++) {
		ret = mimg_verify(&c.r[i], pr ? pr->fn : NULL,
				  pr ? pr->arg : NULL, err);
		if (ret)
			prefix_error(err, paths[i]);
	}
	if (!ret && last)
		*last = c.r[n - 1].h;
	chain_close(&c);
	return ret;
}

/* ------------------------------------------------------------- compact */

static int compact_span(void *ctx, uint64_t span, const uint64_t *present,
			const uint64_t *supplied, const uint64_t *from_base,
			const uint8_t *data, uint32_t crc,
			struct mimg_error *err)
{
	struct writer_ctx *c = ctx;
	uint64_t len = (uint64_t)mimg_popcount(supplied) * PAGE;
	uint8_t *dst = writer_reserve(c->w, len, err);

	(void)from_base;
	if (!dst)
		return -EIO;
	memcpy(dst, data, len);
	return writer_add(c->w, span, present, supplied, crc, err);
}

int morsel_image_compact(const char *const *paths, unsigned int n,
			 const char *out_path, const struct morsel_progress *pr,
			 struct mimg_header *out, struct mimg_error *err)
{
	const struct mimg_header *root, *newest;
	struct writer_ctx ctx;
	struct mimg_header h;
	struct writer w;
	struct chain c;
	int ret;

	memset(&w, 0, sizeof(w));
	w.fd = -1;
	w.dfd = -1;
	if (err)
		memset(err, 0, sizeof(*err));
	ret = chain_open(&c, paths, n, err);
	if (ret)
		goto out;
	root = &c.r[0].h;
	newest = &c.r[n - 1].h;
	h = *newest;		/* size, range, object id, clean_gen */
	h.flags = root->flags & MIMG_F_DELTA;
	h.base_fingerprint = root->base_fingerprint;
	memset(h.parent_id, 0, sizeof(h.parent_id));
	h.content_fingerprint = 0;
	ret = writer_open(&w, out_path, &h, err);
	if (ret)
		goto out;
	ctx.w = &w;
	ctx.err = err;
	/* One thread: the writer takes the spans in order. */
	ret = chain_resolve(&c, compact_span, NULL, &ctx, true, 1, pr, err);
	if (!ret)
		ret = writer_commit(&w, out, err);
out:
	writer_close(&w);
	chain_close(&c);
	return ret;
}

/* ----------------------------------------------------------------- load */

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
		for (pg = next_bit(rec->stored, 0, true); pg < SPAN_PAGES;
		     pg = next_bit(rec->stored, pg + 1, true))
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
	ret = chain_open(&c, paths, n, err);
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
			ret = check_base(fd, o->base_fd, err);
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
	chain_read_direct(&c, paths);
	ret = punch_gaps(&ctx, &c.r[n - 1], err);
	if (!ret)
		ret = chain_resolve(&c, load_span, load_batch, &ctx, false,
				    resolve_threads(), o ? &o->progress : NULL,
				    err);
	if (!ret && out)
		*out = *newest;
out:
	chain_close(&c);
	if (ret) {
		if (fd >= 0)
			close(fd);
		if (created)
			unlink(path);
		return ret;
	}
	return fd;
}
