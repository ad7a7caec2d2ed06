#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-resolve: resolving a chain span by span for loads and
 * compaction: for each span of the newest image, which image stores each
 * present page, its data read (through a window for small records) and
 * checked; up to four threads claim records in turn.
 */
#include "persist-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One mp_chain_resolve(), shared by its threads. */
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
	crc = mp_crc32c(0, dst, n);
	if (crc != rec->data_crc)
		return mimg_data_crc_error(err, i, rec, crc);
	return 0;
}

/* What one thread needs to resolve spans. */
struct resolver {
	uint8_t *buf, *tmp;		/* a span each: BATCH_BYTES */
	uint64_t *cursor;		/* per image, see mp_record_of_span() */
	uint64_t ra;			/* read_ahead() so far */
	struct window win;
};

static int resolver_init(struct resolver *rs, unsigned int n)
{
	rs->buf = mp_buf_get();
	rs->tmp = mp_buf_get();
	rs->win.buf = mp_buf_get();
	rs->cursor = calloc(n, sizeof(*rs->cursor));
	rs->ra = 0;
	rs->win.at = 0;
	rs->win.len = 0;
	rs->win.end = 0;
	return rs->buf && rs->tmp && rs->win.buf && rs->cursor ? 0 : -ENOMEM;
}

static void resolver_free(struct resolver *rs)
{
	mp_buf_put(rs->buf);
	mp_buf_put(rs->tmp);
	mp_buf_put(rs->win.buf);
	free(rs->cursor);
}

/* The pages of one span, as resolve_record() gathers them into rs->buf. */
struct span_pages {
	uint64_t need[MIMG_BITMAP_WORDS];	/* present, not found yet */
	uint64_t supplied[MIMG_BITMAP_WORDS];	/* found in some image */
	bool whole;	/* the newest image stores the span whole: the data
			 * is in page order, its crc checked */
};

/* The pages @take of a record's data @data, put at their page index. */
static void place_taken_pages(uint8_t *buf, const uint8_t *data,
			      const uint64_t *stored, const uint64_t *take)
{
	unsigned int pg, pos;

	for (pg = 0, pos = 0; pg < SPAN_PAGES; pg++) {
		if (!mimg_test(stored, pg))
			continue;
		if (mimg_test(take, pg))
			memcpy(buf + (size_t)pg * PAGE,
			       data + (size_t)pos * PAGE, PAGE);
		pos++;
	}
}

/* The pages @supplied, each at its page index in @buf, into page order. */
static void pack_pages(uint8_t *buf, const uint64_t *supplied)
{
	unsigned int pg, pos;

	for (pg = 0, pos = 0; pg < SPAN_PAGES; pg++) {
		if (!mimg_test(supplied, pg))
			continue;
		if (pos != pg)
			memmove(buf + (size_t)pos * PAGE,
				buf + (size_t)pg * PAGE, PAGE);
		pos++;
	}
}

/*
 * Take from image @k of the chain the pages of span @span that @sp still
 * needs and it stores; *@bytes: the data bytes read.
 */
static int take_pages_from(const struct chain *c, unsigned int k,
			   struct resolver *rs, uint64_t span,
			   struct span_pages *sp, uint64_t *bytes,
			   struct mimg_error *err)
{
	const struct mimg_reader *r = &c->r[k];
	const struct mimg_record *rec;
	uint64_t take[MIMG_BITMAP_WORDS];
	bool newest = k == c->n - 1;
	unsigned int w;
	int ret;

	rec = mp_record_of_span(r, &rs->cursor[k], span);
	if (!rec)
		return 0;
	for (w = 0; w < MIMG_BITMAP_WORDS; w++)
		take[w] = sp->need[w] & rec->stored[w];
	if (mp_bits_empty(take))
		return 0;
	*bytes += (uint64_t)rec->nr_stored * PAGE;
	if (newest && !memcmp(take, sp->need, sizeof(take)) &&
	    !memcmp(rec->stored, sp->need, sizeof(sp->need))) {
		/* The newest image stores the whole span: read it in. */
		ret = read_record(r, rs->cursor[k], rs->buf, &rs->win, err);
		if (ret)
			return ret;
		memcpy(sp->supplied, sp->need, sizeof(sp->supplied));
		memset(sp->need, 0, sizeof(sp->need));
		sp->whole = true;
		return 0;
	}
	ret = read_record(r, rs->cursor[k], rs->tmp, newest ? &rs->win : NULL,
			  err);
	if (ret)
		return ret;
	place_taken_pages(rs->buf, rs->tmp, rec->stored, take);
	for (w = 0; w < MIMG_BITMAP_WORDS; w++) {
		sp->supplied[w] |= take[w];
		sp->need[w] &= ~take[w];
	}
	return 0;
}

/* The crc32c that goes with the span's data @buf to the job's function. */
static uint32_t span_crc(const struct resolve_job *job,
			 const struct mimg_record *lr,
			 const struct span_pages *sp, const uint8_t *buf)
{
	if (sp->whole)
		return lr->data_crc;	/* checked */
	if (!job->need_crc)
		return 0;
	return mp_crc32c(0, buf, (size_t)mimg_popcount(sp->supplied) * PAGE);
}

/*
 * Resolve record @i of the newest image: its pages from the newest image
 * that stores each, then to the job's function; *@bytes: data bytes read.
 */
static int resolve_record(struct resolve_job *job, struct resolver *rs,
			  uint64_t i, uint64_t *bytes, struct mimg_error *err)
{
	const struct chain *c = job->c;
	const struct mimg_reader *last = &c->r[c->n - 1];
	const struct mimg_record *lr = &last->records[i];
	struct span_pages sp = { .whole = false };
	unsigned int k;
	int ret;

	if (!mp_chain_direct(c, c->n - 1))
		read_ahead(last, lr->data_offset, &rs->ra);
	memcpy(sp.need, lr->present, sizeof(sp.need));
	for (k = c->n; k-- > 0 && !mp_bits_empty(sp.need);) {
		ret = take_pages_from(c, k, rs, lr->span, &sp, bytes, err);
		if (ret)
			return ret;
	}
	if (!mp_bits_empty(sp.need) && !(c->r[0].h.flags & MIMG_F_DELTA))
		return mp_broken_chain_error(err, i, lr->span, sp.need);
	if (!sp.whole)
		pack_pages(rs->buf, sp.supplied);
	return job->fn(job->ctx, lr->span, lr->present, sp.supplied, sp.need,
		       rs->buf, span_crc(job, lr, &sp, rs->buf), err);
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

/*
 * What came of records from @at on: the lowest failure is the job's;
 * @bytes more of the data are done.
 */
static void record_outcome(struct resolve_job *job, int ret, uint64_t at,
			   uint64_t bytes, const struct mimg_error *err)
{
	pthread_mutex_lock(&job->lock);
	if (ret && at < job->failed) {
		job->failed = at;
		job->ret = ret;
		job->err = *err;
	}
	job->done += bytes;
	if (!ret)
		mp_report_progress(job->pr, job->done, job->total);
	pthread_mutex_unlock(&job->lock);
}

/* A thread without its buffers fails the job where nobody took records. */
static void record_out_of_memory(struct resolve_job *job)
{
	pthread_mutex_lock(&job->lock);
	if (job->failed == UINT64_MAX) {
		job->failed = job->next;
		job->ret = mimg_set_error(&job->err, -ENOMEM, 0,
					  "out of memory");
	}
	pthread_mutex_unlock(&job->lock);
}

/*
 * Resolve the @n records claimed from @first on: as many as the job's
 * batch function takes at once, the others one by one.
 */
static int resolve_claimed(struct resolve_job *job, struct resolver *rs,
			   uint64_t first, uint64_t n)
{
	const struct mimg_reader *last = &job->c->r[job->c->n - 1];
	struct mimg_error err;
	uint64_t i, bytes, at;
	int k, ret;

	for (i = first; i < first + n; i += (uint64_t)k) {
		memset(&err, 0, sizeof(err));
		bytes = 0;
		at = i;
		k = job->batch ? job->batch(job->ctx, last, i, first + n - i,
					    &bytes, &at, &err) : 0;
		ret = k < 0 ? k : 0;
		if (!k) {
			ret = resolve_record(job, rs, i, &bytes, &err);
			k = 1;
		}
		record_outcome(job, ret, at, bytes, &err);
		if (ret)
			return ret;
	}
	return 0;
}

static void *resolve_worker(void *arg)
{
	struct resolve_job *job = arg;
	uint64_t first, end = 0, n;
	struct resolver rs;

	if (resolver_init(&rs, job->c->n)) {
		record_out_of_memory(job);
		goto out;
	}
	while ((n = claim_records(job, &first, &end))) {
		rs.win.end = end;
		if (resolve_claimed(job, &rs, first, n))
			break;
	}
out:
	resolver_free(&rs);
	return NULL;
}

int mp_chain_resolve(struct chain *c, resolve_fn fn, batch_fn batch,
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
