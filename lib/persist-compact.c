#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-compact: morsel_image_compact(), a chain written as one image
 * (with the newest image's object id and clean generation, so increments
 * can continue on it).
 */
#include "persist-internal.h"

#include <errno.h>
#include <string.h>

/* Append span @span, resolved from the chain, to the writer @ctx. */
static int compact_span(void *ctx, uint64_t span, const uint64_t *present,
			const uint64_t *supplied, const uint64_t *from_base,
			const uint8_t *data, uint32_t crc,
			struct mimg_error *err)
{
	struct writer *w = ctx;
	uint64_t len = (uint64_t)mimg_popcount(supplied) * PAGE;
	uint8_t *dst = mp_writer_reserve(w, len, err);

	(void)from_base;
	if (!dst)
		return -EIO;
	memcpy(dst, data, len);
	return mp_writer_add(w, span, present, supplied, crc, err);
}

int morsel_image_compact(const char *const *paths, unsigned int n,
			 const char *out_path, const struct morsel_progress *pr,
			 struct mimg_header *out, struct mimg_error *err)
{
	const struct mimg_header *root, *newest;
	struct mimg_header h;
	struct writer w;
	struct chain c;
	int ret;

	memset(&w, 0, sizeof(w));
	w.fd = -1;
	w.dfd = -1;
	if (err)
		memset(err, 0, sizeof(*err));
	ret = mp_chain_open(&c, paths, n, err);
	if (ret)
		goto out;
	root = &c.r[0].h;
	newest = &c.r[n - 1].h;
	h = *newest;		/* size, range, object id, clean_gen */
	h.flags = root->flags & MIMG_F_DELTA;
	h.base_fingerprint = root->base_fingerprint;
	memset(h.parent_id, 0, sizeof(h.parent_id));
	h.content_fingerprint = 0;
	ret = mp_writer_open(&w, out_path, &h, err);
	if (ret)
		goto out;
	/* One thread: the writer takes the spans in order. */
	ret = mp_chain_resolve(&c, compact_span, NULL, &w, true, 1, pr, err);
	if (!ret)
		ret = mp_writer_commit(&w, out, err);
out:
	mp_writer_close(&w);
	mp_chain_close(&c);
	return ret;
}
