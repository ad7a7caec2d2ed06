#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-bitmap: the range bitmaps of MORSEL_IOC_SCAN (one bit per page
 * of a range that need not start on a span) cut into the 512-bit span
 * bitmaps of the image format, and searched a word at a time.
 */
#include "persist-internal.h"

#include <string.h>

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

void mp_span_bits(const uint64_t *map, uint64_t nbits, uint64_t first,
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

bool mp_bits_empty(const uint64_t m[MIMG_BITMAP_WORDS])
{
	int w;

	for (w = 0; w < MIMG_BITMAP_WORDS; w++)
		if (m[w])
			return false;
	return true;
}

unsigned int mp_next_bit(const uint64_t m[MIMG_BITMAP_WORDS],
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

uint64_t mp_count_spans(const uint64_t *present, uint64_t npages,
			uint64_t first)
{
	uint64_t span, last = (first + npages - 1) / SPAN_PAGES, n = 0;
	uint64_t bits[MIMG_BITMAP_WORDS];

	if (!npages)
		return 0;

	for (span = first / SPAN_PAGES; span <= last; span++) {
		mp_span_bits(present, npages, first, span, bits);
		n += !mp_bits_empty(bits);
	}
	return n;
}
