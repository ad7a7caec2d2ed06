#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-object: reading a morsel for an image: which pages exist, are
 * owned or dirty (MORSEL_IOC_SCAN), where their data is read from (a
 * mapping or pread()), the walk over its spans, the content fingerprint
 * (morsel_fingerprint()) and the check that a base is a child's frozen
 * parent.
 */
#include "persist-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * Did the object shrink below the page where a read of the runs @remote
 * stopped, @got bytes in?  Only then may the rest read as zeros.
 */
static bool shrank_before(const struct source *src,
			  const struct iovec *remote, size_t got)
{
	const uint8_t *at;
	struct morsel_stat now;

	while (got >= remote->iov_len) {
		got -= remote->iov_len;
		remote++;
	}
	at = (const uint8_t *)remote->iov_base + got / PAGE * PAGE;
	return !morsel_stat(src->fd, &now) &&
	       (uint64_t)(at - src->map) / PAGE + src->first >=
	       (now.size + PAGE - 1) / PAGE;
}

/*
 * The runs of @stored in span @span, copied from our own mapping into
 * @dst without touching the mapping ourselves: the object may shrink
 * under it (a mapped object can, as a tmpfs file can), and a load past
 * the end would be SIGBUS in the caller's process.  process_vm_readv()
 * goes through GUP, which stops there instead.  One call per span, not
 * per run: an increment's pages are scattered (1 % of a GiB: 2600 runs
 * in 512 spans, a tenth of the copy's time under QEMU).  Past a shrink
 * the rest reads 0: the runs go up, so every later one is past the end.
 */
static int fetch_from_mapping(const struct source *src, uint64_t span,
			      const uint64_t *stored, uint8_t *dst)
{
	struct iovec remote[SPAN_PAGES / 2 + 1];
	struct iovec local = { .iov_base = dst, .iov_len = 0 };
	unsigned int i, j, n = 0;
	uint64_t pg;
	ssize_t got;

	for (i = mp_next_bit(stored, 0, true); i < SPAN_PAGES;
	     i = mp_next_bit(stored, j, true)) {
		j = mp_next_bit(stored, i, false);
		pg = span * SPAN_PAGES + i;
		remote[n].iov_base = (void *)(src->map + (pg - src->first) * PAGE);
		remote[n].iov_len = (size_t)(j - i) * PAGE;
		local.iov_len += remote[n].iov_len;
		n++;
	}
	if (!n)
		return 0;
	got = process_vm_readv(getpid(), &local, 1, remote, n, 0);
	if (got < 0) {
		if (errno != EFAULT)
			return -errno;
		got = 0;
	}
	if ((size_t)got == local.iov_len)
		return 0;
	/* GUP says EFAULT for any failure (no memory too): did it shrink? */
	if (!shrank_before(src, remote, (size_t)got))
		return -EIO;
	memset(dst + got, 0, local.iov_len - (size_t)got);
	return 0;
}

int mp_fetch_pages(const struct source *src, uint64_t span,
		   const uint64_t *stored, uint8_t *dst)
{
	unsigned int i, j;
	uint64_t pg, len;
	ssize_t n;

	if (src->map)
		return fetch_from_mapping(src, span, stored, dst);
	for (i = mp_next_bit(stored, 0, true); i < SPAN_PAGES;
	     i = mp_next_bit(stored, j, true)) {
		j = mp_next_bit(stored, i, false);
		pg = span * SPAN_PAGES + i;
		len = (uint64_t)(j - i) * PAGE;
		n = mp_pread_full(src->fd, dst, len, pg * PAGE);
		if (n < 0)
			return (int)n;
		/* shrank: the rest reads 0 */
		memset(dst + n, 0, len - (uint64_t)n);
		dst += len;
	}
	return 0;
}

int mp_walk_spans(uint64_t first, uint64_t npages,
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
		mp_span_bits(present_map, npages, first, span, present);
		if (mp_bits_empty(present))
			continue;
		mp_span_bits(stored_map, npages, first, span, stored);
		ret = fn(ctx, span, present, stored);
		if (ret)
			return ret;
		done += (uint64_t)mimg_popcount(stored) * PAGE;
		mp_report_progress(pr, done, total);
	}
	return 0;
}

void mp_scan_free(struct scan_result *r)
{
	free(r->present);
	free(r->owned);
	free(r->dirty);
	memset(r, 0, sizeof(*r));
}

int mp_scan_range(int fd, uint64_t start, uint64_t length,
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
		mp_scan_free(r);
		return -ENOMEM;
	}
	if (!length) {		/* an empty object: nothing to scan */
		struct morsel_stat st;
		int ret = morsel_stat(fd, &st);

		/*
		 * Nothing is cleaned, so the chain goes on from the object's
		 * clean_gen as it is (not @gen, which is 0 for a save that
		 * starts a chain: its image would record 0, and the next
		 * increment fail with ESTALE after any earlier clean).
		 */
		if (ret)
			return ret;
		if ((flags & MORSEL_SCAN_IF_GEN) && st.clean_gen != gen)
			return -ESTALE;
		r->s.gen = st.clean_gen;
		return 0;
	}
	return morsel_scan(fd, start, length, flags, gen, r->present, r->owned,
			   r->dirty, &r->s);
}

/*
 * The source for reading [@start, +@length) of @fd: a writable mapping
 * when the object may be mapped so (not frozen, not a child, fd opened
 * read-write; it links the object's own tables as pages are touched, and
 * nothing is written through it), else pread().  The object may still
 * shrink: reads stop at its end either way (fetch_from_mapping()).
 */
int mp_source_open(struct source *src, int fd,
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
	/* The last page of an object is whole in the range. */
	if (morsel_stat(fd, &now) ||
	    (now.size + PAGE - 1) / PAGE * PAGE < start + length) {
		munmap(map, length);
		return -EAGAIN;	/* shrank since the scan */
	}
	src->map = map;
	return 0;
}

void mp_source_close(struct source *src, uint64_t length)
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
	int ret = mp_fetch_pages(&c->src, span, stored, c->buf);

	if (ret)
		return ret;
	c->fp = mimg_fingerprint_add(c->fp, span, present,
				     mp_crc32c(0, c->buf,
						 (size_t)mimg_popcount(stored) *
						 PAGE));
	return 0;
}

/*
 * Fingerprint the pages of [0, @len) of @fd, which the scan @r found,
 * starting from *@fp.
 */
static int fingerprint_pages(int fd, const struct morsel_stat *st,
			     const struct scan_result *r, uint64_t len,
			     uint64_t *fp, const struct morsel_progress *pr)
{
	struct fp_ctx c = { .fp = *fp };
	int ret;

	c.buf = mp_buf_get();
	if (!c.buf)
		return -ENOMEM;
	ret = mp_source_open(&c.src, fd, st, 0, len);
	if (ret)
		goto out;
	ret = mp_walk_spans(0, len / PAGE, r->present, r->present, fp_span,
			    &c, pr, r->s.present_pages * PAGE);
	mp_source_close(&c.src, len);
	if (ret)
		goto out;
	*fp = c.fp;
out:
	mp_buf_put(c.buf);
	return ret;
}

int morsel_fingerprint(int fd, uint64_t *fp, const struct morsel_progress *pr)
{
	struct morsel_stat st;
	struct scan_result r;
	uint64_t len;
	int ret;

	ret = morsel_stat(fd, &st);
	if (ret)
		return ret;
	*fp = mimg_fingerprint_init(st.size);
	len = (st.size + PAGE - 1) / PAGE * PAGE;
	if (!len)
		return 0;
	ret = mp_scan_range(fd, 0, len, 0, 0, 0, &r);
	if (ret)
		goto out;
	ret = fingerprint_pages(fd, &st, &r, len, fp, pr);
out:
	mp_scan_free(&r);
	return ret;
}

static int stat_failed(struct mimg_error *err, int ret)
{
	return mimg_set_error(err, ret, 0, "MORSEL_IOC_STAT: %s",
			      strerror(-ret));
}

int mp_check_base(int fd, int base_fd, struct mimg_error *err)
{
	struct morsel_stat st, bst;
	struct stat sb;
	int ret;

	ret = morsel_stat(fd, &st);
	if (ret)
		return stat_failed(err, ret);
	ret = morsel_stat(base_fd, &bst);
	if (ret)
		return stat_failed(err, ret);
	if (fstat(base_fd, &sb))
		return mimg_set_error(err, -errno, 0, "fstat: %s",
				      strerror(errno));
	if (!st.parent || st.parent != (uint64_t)sb.st_ino)
		return mimg_set_error(err, -EINVAL, 0, "the base given is not "
				      "this object's parent");
	if (!(bst.state & MORSEL_STATE_FROZEN))
		return mimg_set_error(err, -EINVAL, 0,
				      "the base is not frozen");
	return 0;
}
