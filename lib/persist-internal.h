/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-internal.h: what the files of the persistence code share
 * (docs/persistence.md; the public side is in libmorsel.h, the format in
 * morsel-image.h).  One file per concern:
 *
 *   persist-io.c       kept I/O buffers, directory fsync, error prefixes,
 *                      progress reports
 *   persist-bitmap.c   the range bitmaps of MORSEL_IOC_SCAN, cut into spans
 *   persist-threads.c  helper threads (one job at a time), CPU counts
 *   persist-writer.c   writing one image: batches, crcs, commit
 *   persist-object.c   reading a morsel: scan, source, span walk,
 *                      fingerprint, the base of a child
 *   persist-save.c     morsel_save(): full, incremental, delta
 *   persist-chain.c    opening and checking chains, morsel_image_verify()
 *   persist-resolve.c  resolving a chain span by span, in threads
 *   persist-compact.c  morsel_image_compact()
 *   persist-load.c     morsel_load()
 *
 * Functions here are external symbols of the static libmorsel.a but no
 * public API: their names start with mp_ ("morsel private").  Like the
 * public ones they return 0 or -errno, and those taking a struct
 * mimg_error fill it on failure.
 */
#ifndef MORSEL_PERSIST_INTERNAL_H
#define MORSEL_PERSIST_INTERNAL_H

#include "libmorsel.h"
#include "morsel-image.h"
#include "crc32c.h"
#include "full-io.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SPAN_PAGES	MIMG_SPAN_PAGES
#define PAGE		MIMG_PAGE_SIZE

/* ------------------------------------------------------- persist-io.c */

/*
 * Saves and loads copy through page-aligned buffers of BATCH_BYTES, kept
 * between calls (morsel_persist_trim() frees them).
 */
#define BATCH_BYTES	(2u << 20)	/* one span's data */
_Static_assert(BATCH_BYTES >= MIMG_SPAN_SIZE, "a buffer holds a span");

void *mp_buf_get(void);		/* NULL: out of memory */
void mp_buf_put(void *buf);	/* NULL is fine */

/* "@path: " before the message already in @err. */
void mp_prefix_error(struct mimg_error *err, const char *path);

int mp_fsync_dir_of(const char *path);

/* Call @p's function, if there is one. */
void mp_report_progress(const struct morsel_progress *p, uint64_t done,
			uint64_t total);

/* --------------------------------------------------- persist-bitmap.c */

/* The 512 bits of span @span, from a range bitmap starting at page @first. */
void mp_span_bits(const uint64_t *map, uint64_t nbits, uint64_t first,
		  uint64_t span, uint64_t out[MIMG_BITMAP_WORDS]);

bool mp_bits_empty(const uint64_t m[MIMG_BITMAP_WORDS]);

/*
 * The first bit of a 512-bit span bitmap at or after @from that equals
 * @set, or SPAN_PAGES: runs of pages are found a word at a time.
 */
unsigned int mp_next_bit(const uint64_t m[MIMG_BITMAP_WORDS],
			 unsigned int from, bool set);

/* Spans of the range bitmap @present (from page @first) with a bit set. */
uint64_t mp_count_spans(const uint64_t *present, uint64_t npages,
			uint64_t first);

/* -------------------------------------------------- persist-threads.c */

/*
 * A thread that runs one job at a time for the saving thread: the writer
 * thread and the crc thread of an image writer.  The caller sets up the
 * job while the thread is idle (after mp_helper_wait()) and hands it over
 * with mp_helper_submit(); @run does it, returning 0 or -errno, and the
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

/* Start @h running @run(@arg) for each job; without a thread, inline. */
void mp_helper_start(struct helper *h, int (*run)(void *), void *arg);
void mp_helper_submit(struct helper *h);
/* Wait until @h is idle; its first error, or 0. */
int mp_helper_wait(struct helper *h);
/* Let the thread end once idle (mp_helper_join() waits for it). */
void mp_helper_stop(struct helper *h);
/* End @h; a never-started one (all zero, or run inline) is fine too. */
void mp_helper_join(struct helper *h);

/* CPUs this thread may run on (its affinity, which cpusets narrow). */
int mp_usable_cpus(void);
/* Threads worth resolving a chain with: one per CPU, at most 4. */
unsigned int mp_resolve_threads(void);

/* --------------------------------------------------- persist-writer.c */

/*
 * An image being written: a temporary file next to @path, data first, then
 * the index and the header; committed by fsync + rename + fsync(dir), so
 * an interrupted save leaves the previous image at @path untouched.
 * Declared as WRITER_INIT, it may go to mp_writer_close() at any point.
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
	 * Record data is copied here first (mp_writer_reserve()), checksummed
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
	 * Saves add records with mp_writer_defer(): their data is in the
	 * batch, their crc32c not computed yet.  @pend[i] becomes record
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

#define WRITER_INIT	{ .fd = -1, .dfd = -1 }

/*
 * Start the image @path with the header fields of @h that the caller
 * decides (flags, sizes, range, ids, nr_records); the writer fills in the
 * rest as records come.
 */
int mp_writer_open(struct writer *w, const char *path,
		   const struct mimg_header *h, struct mimg_error *err);
/*
 * Make @w ready for mp_writer_defer(); with a crc thread if @bytes of
 * data are to come and there is a second CPU for it.
 */
int mp_writer_defer_init(struct writer *w, uint64_t bytes,
			 struct mimg_error *err);
/* Room for @len bytes (<= one span) of the next record's data. */
uint8_t *mp_writer_reserve(struct writer *w, uint64_t len,
			   struct mimg_error *err);
/*
 * Append one record whose stored pages were put at mp_writer_reserve(),
 * with @crc their crc32c.
 */
int mp_writer_add(struct writer *w, uint64_t span,
		  const uint64_t present[MIMG_BITMAP_WORDS],
		  const uint64_t stored[MIMG_BITMAP_WORDS], uint32_t crc,
		  struct mimg_error *err);
/*
 * Like mp_writer_add(), for the data @data put at mp_writer_reserve(): its
 * crc is computed before the batch is written.
 */
int mp_writer_defer(struct writer *w, uint64_t span,
		    const uint64_t present[MIMG_BITMAP_WORDS],
		    const uint64_t stored[MIMG_BITMAP_WORDS],
		    const uint8_t *data, struct mimg_error *err);
/* Hand the filled buffer to the writer thread (or write it here). */
int mp_writer_flush(struct writer *w, struct mimg_error *err);
/* Write index and header, sync, rename into place; @out: the header. */
int mp_writer_commit(struct writer *w, struct mimg_header *out,
		     struct mimg_error *err);
/* Free @w; an uncommitted temporary file is removed. */
void mp_writer_close(struct writer *w);

/* --------------------------------------------------- persist-object.c */

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

/*
 * The source for reading [@start, +@length) of @fd (whose stat is @st);
 * -EAGAIN if the object shrank since it was scanned.
 */
int mp_source_open(struct source *src, int fd, const struct morsel_stat *st,
		   uint64_t start, uint64_t length);
void mp_source_close(struct source *src, uint64_t length);

/* Copy the pages of @stored in span @span to @dst, in page order. */
int mp_fetch_pages(const struct source *src, uint64_t span,
		   const uint64_t *stored, uint8_t *dst);

/* The bitmaps of one MORSEL_IOC_SCAN of a range, one bit per page. */
struct scan_result {
	uint64_t *present, *owned, *dirty;
	uint64_t npages, first;
	struct morsel_scan s;
};

/* Which bitmaps besides present a mp_scan_range() caller needs. */
#define WANT_OWNED	(1u << 0)
#define WANT_DIRTY	(1u << 1)

int mp_scan_range(int fd, uint64_t start, uint64_t length,
		  unsigned int flags, uint64_t gen, unsigned int want,
		  struct scan_result *r);
void mp_scan_free(struct scan_result *r);

/*
 * Walk the spans of [@first, @first + @npages) that have present pages;
 * @fn gets each span's present bitmap and the part @stored of it.
 * @pr hears of the stored bytes done, out of @total.
 */
typedef int (*span_fn)(void *ctx, uint64_t span, const uint64_t *present,
		       const uint64_t *stored);

int mp_walk_spans(uint64_t first, uint64_t npages,
		  const uint64_t *present_map, const uint64_t *stored_map,
		  span_fn fn, void *ctx, const struct morsel_progress *pr,
		  uint64_t total);

/* Is @base_fd the frozen base @fd was split from? */
int mp_check_base(int fd, int base_fd, struct mimg_error *err);

/* ---------------------------------------------------- persist-chain.c */

/* Images of a chain: r[0] the root (full or delta), then increments. */
struct chain {
	unsigned int n;
	struct mimg_reader *r;		/* r[0] root ... r[n - 1] newest */
	int *fds;
	int *dfds;			/* O_DIRECT twins of fds, or -1 */
};

/*
 * Open and check @n images: a root, then increments, each on the last.
 * On failure too, @c is for mp_chain_close().
 */
int mp_chain_open(struct chain *c, const char *const *paths, unsigned int n,
		  struct mimg_error *err);
void mp_chain_close(struct chain *c);
/* Read the chain's data with O_DIRECT where the file system allows it. */
void mp_chain_read_direct(struct chain *c, const char *const *paths);
bool mp_chain_direct(const struct chain *c, unsigned int i);

/*
 * May an image of [@start, +@length) of an object of @size follow @parent?
 * The same range, or both the whole object (whose size may have changed).
 */
bool mp_same_range(const struct mimg_header *parent, uint64_t start,
		   uint64_t length, uint64_t size);

/* The record of @span in @r, or NULL; *@cursor only moves forward. */
const struct mimg_record *mp_record_of_span(const struct mimg_reader *r,
					    uint64_t *cursor, uint64_t span);

/*
 * Record @i of the newest image (of span @span) has the present pages
 * @missing that no image of the chain stores: -EINVAL, "broken chain".
 */
int mp_broken_chain_error(struct mimg_error *err, uint64_t i, uint64_t span,
			  const uint64_t missing[MIMG_BITMAP_WORDS]);

/* -------------------------------------------------- persist-resolve.c */

/*
 * Resolve the chain span by span (the spans of the newest image: its
 * present pages are the chain's).  For each, @fn gets the present bitmap,
 * the pages supplied by some image (their data in page order in @data,
 * every run checked against its crc) and the pages left to the base;
 * @crc is the crc32c of @data if @need_crc (or the newest image stored
 * the span whole), else 0.
 *
 * Spans are independent, so up to @threads threads resolve them, each
 * taking the next few records of the newest image in turn; @fn must then
 * be safe to call from several threads at once and in any order.  An
 * error stops the claiming; the one reported is that of the lowest record
 * that failed, as one thread would have.
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

int mp_chain_resolve(struct chain *c, resolve_fn fn, batch_fn batch,
		     void *ctx, bool need_crc, unsigned int threads,
		     const struct morsel_progress *pr, struct mimg_error *err);

#endif /* MORSEL_PERSIST_INTERNAL_H */
