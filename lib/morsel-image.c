#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * morsel-image: encode, decode and check images (lib/morsel-image.h,
 * docs/image-format.md).  The decoders treat every byte of the file as
 * hostile: each field is range checked before it is used in arithmetic,
 * nothing is allocated before the file is known to hold it, and every
 * rejection says where the damage is.
 */
#include "morsel-image.h"
#include "crc32c.h"
#include "full-io.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef unsigned long long ull;		/* for printf */

/* Header block: byte offsets of the fields. */
enum {
	H_MAGIC = 0,
	H_VERSION = 8,
	H_FLAGS = 12,
	H_PAGE_SHIFT = 16,
	H_LEVEL = 20,
	H_OBJECT_SIZE = 24,
	H_RANGE_START = 32,
	H_RANGE_LENGTH = 40,
	H_NR_RECORDS = 48,
	H_INDEX_OFFSET = 56,
	H_DATA_OFFSET = 64,
	H_DATA_PAGES = 72,
	H_PRESENT_PAGES = 80,
	H_IMAGE_ID = 88,
	H_PARENT_ID = 104,
	H_BASE_FP = 120,
	H_CONTENT_FP = 128,
	H_OBJECT_ID = 136,
	H_CLEAN_GEN = 144,
	H_CREATED_NS = 152,
	H_INDEX_CRC = 160,
	H_HEADER_CRC = 164,
	H_RESERVED = 168,
};

/* Record: byte offsets of the fields. */
enum {
	R_SPAN = 0,
	R_DATA_OFFSET = 8,
	R_NR_STORED = 16,
	R_DATA_CRC = 20,
	R_FLAGS = 24,
	R_CRC = 28,
	R_PRESENT = 32,
	R_STORED = 96,
	R_RESERVED = 160,
};

#define MAX_LEVEL	3
#define VERIFY_CHUNK	(8u << 20)	/* bytes read at once by mimg_verify */

/* ------------------------------------------------------------ helpers */

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* First byte of @p[0..n) that is not zero, or n. */
static size_t first_nonzero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && !p[i]; i++)
		;
	return i;
}

int mimg_set_error(struct mimg_error *err, int ret, uint64_t offset,
		   const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->offset = offset;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return ret;
}

ssize_t mimg_read_full(int fd, void *buf, size_t len, uint64_t off)
{
	return mp_pread_full(fd, buf, len, off);
}

unsigned int mimg_popcount(const uint64_t map[MIMG_BITMAP_WORDS])
{
	unsigned int n = 0;
	int i;

	for (i = 0; i < MIMG_BITMAP_WORDS; i++)
		n += (unsigned int)__builtin_popcountll(map[i]);
	return n;
}

/* First bit set in @map, or MIMG_SPAN_PAGES. */
static unsigned int first_bit(const uint64_t map[MIMG_BITMAP_WORDS])
{
	int i;

	for (i = 0; i < MIMG_BITMAP_WORDS; i++)
		if (map[i])
			return (unsigned int)(i * 64 + __builtin_ctzll(map[i]));
	return MIMG_SPAN_PAGES;
}

/* @out = bits [lo, hi) set, the others clear (lo <= hi <= 512). */
static void bit_window(uint64_t out[MIMG_BITMAP_WORDS], unsigned int lo,
		       unsigned int hi)
{
	unsigned int i;

	for (i = 0; i < MIMG_BITMAP_WORDS; i++) {
		unsigned int a = i * 64, b = a + 64;
		uint64_t m = ~0ull;

		if (hi <= a || lo >= b) {
			out[i] = 0;
			continue;
		}
		if (lo > a)
			m &= ~0ull << (lo - a);
		if (hi < b)
			m &= ~0ull >> (b - hi);
		out[i] = m;
	}
}

/* ------------------------------------------------------------- crc32c */

/* The public names of the crc32c engine (lib/crc32c.c). */
uint32_t mimg_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return mp_crc32c(crc, buf, len);
}

uint32_t mimg_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	return mp_crc32c_sw(crc, buf, len);
}

uint32_t mimg_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return mp_crc32c_hw(crc, buf, len);
}

bool mimg_crc32c_hw_available(void)
{
	return mp_crc32c_hw_available();
}

/* -------------------------------------------------------- fingerprint */

#define FNV_BASIS	0xcbf29ce484222325ull
#define FNV_PRIME	0x100000001b3ull

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= FNV_PRIME;
	}
	return h;
}

uint64_t mimg_fingerprint_init(uint64_t object_size)
{
	uint8_t b[8];

	put64(b, object_size);
	return fnv(FNV_BASIS, b, sizeof(b));
}

uint64_t mimg_fingerprint_add(uint64_t fp, uint64_t span,
			      const uint64_t present[MIMG_BITMAP_WORDS],
			      uint32_t data_crc)
{
	uint8_t b[8 + 8 * MIMG_BITMAP_WORDS + 4];
	int i;

	put64(b, span);
	for (i = 0; i < MIMG_BITMAP_WORDS; i++)
		put64(b + 8 + 8 * i, present[i]);
	put32(b + 8 + 8 * MIMG_BITMAP_WORDS, data_crc);
	return fnv(fp, b, sizeof(b));
}

/* ------------------------------------------------------------- header */

/* crc32c of @len bytes at @b, the 4-byte crc field at @at taken as zero. */
static uint32_t crc_with_zero_field(const uint8_t *b, size_t at, size_t len)
{
	static const uint8_t zero[4];
	uint32_t c;

	c = mp_crc32c(0, b, at);
	c = mp_crc32c(c, zero, sizeof(zero));
	return mp_crc32c(c, b + at + 4, len - at - 4);
}

/*
 * crc32c of the whole header block (MIMG_HEADER_CRC_LEN = 4096 bytes),
 * header_crc taken as zero.
 */
static uint32_t header_crc(const uint8_t *b)
{
	return crc_with_zero_field(b, H_HEADER_CRC, MIMG_HEADER_CRC_LEN);
}

void mimg_encode_header(const struct mimg_header *h,
			uint8_t out[MIMG_HEADER_SIZE])
{
	memset(out, 0, MIMG_HEADER_SIZE);
	memcpy(out + H_MAGIC, MIMG_MAGIC, 8);
	put32(out + H_VERSION, h->version);
	put32(out + H_FLAGS, h->flags);
	put32(out + H_PAGE_SHIFT, MIMG_PAGE_SHIFT);
	put32(out + H_LEVEL, h->level);
	put64(out + H_OBJECT_SIZE, h->object_size);
	put64(out + H_RANGE_START, h->range_start);
	put64(out + H_RANGE_LENGTH, h->range_length);
	put64(out + H_NR_RECORDS, h->nr_records);
	put64(out + H_INDEX_OFFSET, h->index_offset);
	put64(out + H_DATA_OFFSET, h->data_offset);
	put64(out + H_DATA_PAGES, h->data_pages);
	put64(out + H_PRESENT_PAGES, h->present_pages);
	memcpy(out + H_IMAGE_ID, h->image_id, 16);
	memcpy(out + H_PARENT_ID, h->parent_id, 16);
	put64(out + H_BASE_FP, h->base_fingerprint);
	put64(out + H_CONTENT_FP, h->content_fingerprint);
	put64(out + H_OBJECT_ID, h->object_id);
	put64(out + H_CLEAN_GEN, h->clean_gen);
	put64(out + H_CREATED_NS, h->created_ns);
	put32(out + H_INDEX_CRC, h->index_crc);
	put32(out + H_HEADER_CRC, header_crc(out));
}

static uint64_t round_page(uint64_t v)	/* v <= MIMG_MAX_SIZE: no overflow */
{
	return (v + MIMG_PAGE_SIZE - 1) & ~(uint64_t)(MIMG_PAGE_SIZE - 1);
}

/* Number of 2 MiB spans that [start, start + len) touches (no overflow). */
static uint64_t spans_touched(uint64_t start, uint64_t len)
{
	if (!len)
		return 0;
	return (start + len - 1) / MIMG_SPAN_SIZE - start / MIMG_SPAN_SIZE + 1;
}

int mimg_decode_header(const uint8_t in[MIMG_HEADER_SIZE], uint64_t file_size,
		       struct mimg_header *out, struct mimg_error *err)
{
	struct mimg_header h;
	uint32_t page_shift, stored, computed;
	uint64_t obj_end, max_records, want, end;
	size_t bad;

	if (memcmp(in + H_MAGIC, MIMG_MAGIC, 8))
		return mimg_set_error(err, -EINVAL, 0, "not a morsel image (bad magic)");
	memset(&h, 0, sizeof(h));
	h.version = get32(in + H_VERSION);
	if (h.version != MIMG_VERSION)
		return mimg_set_error(err, -EINVAL, 0, "image format version %u, this "
			    "reader knows version %u", h.version,
			    MIMG_VERSION);
	stored = get32(in + H_HEADER_CRC);
	computed = header_crc(in);
	if (stored != computed)
		return mimg_set_error(err, -EBADMSG, 0, "header: crc32c mismatch "
			    "(stored 0x%08x, computed 0x%08x)", stored,
			    computed);
	bad = first_nonzero(in + H_RESERVED, MIMG_HEADER_SIZE - H_RESERVED);
	if (bad < MIMG_HEADER_SIZE - H_RESERVED)
		return mimg_set_error(err, -EINVAL, 0, "reserved header bytes set (newer "
			    "format?): byte %zu is 0x%02x", H_RESERVED + bad,
			    in[H_RESERVED + bad]);

	h.flags = get32(in + H_FLAGS);
	page_shift = get32(in + H_PAGE_SHIFT);
	h.level = get32(in + H_LEVEL);
	h.object_size = get64(in + H_OBJECT_SIZE);
	h.range_start = get64(in + H_RANGE_START);
	h.range_length = get64(in + H_RANGE_LENGTH);
	h.nr_records = get64(in + H_NR_RECORDS);
	h.index_offset = get64(in + H_INDEX_OFFSET);
	h.data_offset = get64(in + H_DATA_OFFSET);
	h.data_pages = get64(in + H_DATA_PAGES);
	h.present_pages = get64(in + H_PRESENT_PAGES);
	memcpy(h.image_id, in + H_IMAGE_ID, 16);
	memcpy(h.parent_id, in + H_PARENT_ID, 16);
	h.base_fingerprint = get64(in + H_BASE_FP);
	h.content_fingerprint = get64(in + H_CONTENT_FP);
	h.object_id = get64(in + H_OBJECT_ID);
	h.clean_gen = get64(in + H_CLEAN_GEN);
	h.created_ns = get64(in + H_CREATED_NS);
	h.index_crc = get32(in + H_INDEX_CRC);

	if (h.flags & ~MIMG_F_KNOWN)
		return mimg_set_error(err, -EINVAL, 0, "header: unknown flags 0x%x "
			    "(newer format?)", h.flags & ~MIMG_F_KNOWN);
	if ((h.flags & MIMG_F_INCREMENT) && (h.flags & MIMG_F_DELTA))
		return mimg_set_error(err, -EINVAL, 0, "header: INCREMENT and DELTA both "
			    "set: a delta is the root of its chain, increments "
			    "on it carry only INCREMENT");
	if (page_shift != MIMG_PAGE_SHIFT)
		return mimg_set_error(err, -EINVAL, 0, "header: page_shift %u, only %u "
			    "is supported", page_shift, MIMG_PAGE_SHIFT);
	if (h.level > MAX_LEVEL)
		return mimg_set_error(err, -EINVAL, 0, "header: level %u out of range "
			    "(0..%u)", h.level, MAX_LEVEL);
	if (h.object_size > MIMG_MAX_SIZE)
		return mimg_set_error(err, -EINVAL, 0, "header: object size %llu above "
			    "the limit of %llu bytes", (ull)h.object_size,
			    (ull)MIMG_MAX_SIZE);
	if (h.range_start % MIMG_PAGE_SIZE || h.range_length % MIMG_PAGE_SIZE)
		return mimg_set_error(err, -EINVAL, 0, "header: range start %llu length "
			    "%llu not page aligned", (ull)h.range_start,
			    (ull)h.range_length);
	obj_end = round_page(h.object_size);
	if (h.range_start > obj_end || h.range_length > obj_end - h.range_start)
		return mimg_set_error(err, -EINVAL, 0, "header: range start %llu length "
			    "%llu goes beyond the object (%llu bytes)",
			    (ull)h.range_start, (ull)h.range_length,
			    (ull)h.object_size);
	if (h.index_offset != MIMG_HEADER_SIZE)
		return mimg_set_error(err, -EINVAL, 0, "header: index_offset %llu, "
			    "expected %u", (ull)h.index_offset,
			    MIMG_HEADER_SIZE);
	max_records = spans_touched(h.range_start, h.range_length);
	if (h.nr_records > max_records)
		return mimg_set_error(err, -EINVAL, 0, "header: %llu records, but the "
			    "range touches only %llu spans of 2 MiB",
			    (ull)h.nr_records, (ull)max_records);
	/* nr_records <= 2^18 + 1 here: no overflow */
	want = round_page(MIMG_HEADER_SIZE + h.nr_records * MIMG_RECORD_SIZE);
	if (h.data_offset != want)
		return mimg_set_error(err, -EINVAL, 0, "header: data_offset %llu, "
			    "expected %llu for %llu records",
			    (ull)h.data_offset, (ull)want, (ull)h.nr_records);
	if (h.present_pages > h.range_length / MIMG_PAGE_SIZE)
		return mimg_set_error(err, -EINVAL, 0, "header: present_pages %llu, but "
			    "the range has only %llu pages",
			    (ull)h.present_pages,
			    (ull)(h.range_length / MIMG_PAGE_SIZE));
	if (h.data_pages > h.present_pages)
		return mimg_set_error(err, -EINVAL, 0, "header: data_pages %llu above "
			    "present_pages %llu", (ull)h.data_pages,
			    (ull)h.present_pages);
	if (all_zero(h.image_id, 16))
		return mimg_set_error(err, -EINVAL, 0, "header: image_id is zero");
	if (!(h.flags & MIMG_F_INCREMENT) != all_zero(h.parent_id, 16))
		return mimg_set_error(err, -EINVAL, 0, h.flags & MIMG_F_INCREMENT ?
			    "header: increment without a parent_id" :
			    "header: parent_id set, but not an increment");
	if (!(h.flags & MIMG_F_DELTA) != !h.base_fingerprint)
		return mimg_set_error(err, -EINVAL, 0, h.flags & MIMG_F_DELTA ?
			    "header: delta without a base_fingerprint" :
			    "header: base_fingerprint set, but not a delta");
	/* data_pages <= 2^27, data_offset < 2^26: no overflow */
	end = h.data_offset + h.data_pages * MIMG_PAGE_SIZE;
	if (file_size < end)
		return mimg_set_error(err, -EINVAL, end, "truncated: the file has %llu "
			    "bytes, the image %llu", (ull)file_size, (ull)end);
	if (file_size > end)
		return mimg_set_error(err, -EINVAL, end, "trailing bytes: the file has "
			    "%llu bytes, the image ends at %llu",
			    (ull)file_size, (ull)end);
	*out = h;
	return 0;
}

/* ------------------------------------------------------------- record */

static uint32_t record_crc(const uint8_t *b)
{
	return crc_with_zero_field(b, R_CRC, MIMG_RECORD_SIZE);
}

void mimg_encode_record(const struct mimg_record *r,
			uint8_t out[MIMG_RECORD_SIZE])
{
	int i;

	memset(out, 0, MIMG_RECORD_SIZE);
	put64(out + R_SPAN, r->span);
	put64(out + R_DATA_OFFSET, r->data_offset);
	put32(out + R_NR_STORED, r->nr_stored);
	put32(out + R_DATA_CRC, r->data_crc);
	for (i = 0; i < MIMG_BITMAP_WORDS; i++) {
		put64(out + R_PRESENT + 8 * i, r->present[i]);
		put64(out + R_STORED + 8 * i, r->stored[i]);
	}
	put32(out + R_CRC, record_crc(out));
}

int mimg_decode_record(const uint8_t in[MIMG_RECORD_SIZE],
		       const struct mimg_header *h, uint64_t i, uint64_t at,
		       const struct mimg_record *prev, struct mimg_record *out,
		       struct mimg_error *err)
{
	struct mimg_record r;
	uint64_t window[MIMG_BITMAP_WORDS], outside[MIMG_BITMAP_WORDS];
	uint64_t base, lo, hi, obj_end, range_end, want, end, data_end;
	uint32_t stored, computed, flags;
	unsigned int n, bit;
	int w;

	stored = get32(in + R_CRC);
	computed = record_crc(in);
	if (stored != computed)
		return mimg_set_error(err, -EBADMSG, at, "record %llu: crc32c mismatch "
			    "(stored 0x%08x, computed 0x%08x)", (ull)i, stored,
			    computed);
	flags = get32(in + R_FLAGS);
	if (flags)
		return mimg_set_error(err, -EINVAL, at, "record %llu: unknown flags "
			    "0x%x (newer format?)", (ull)i, flags);
	if (!all_zero(in + R_RESERVED, MIMG_RECORD_SIZE - R_RESERVED))
		return mimg_set_error(err, -EINVAL, at, "record %llu: reserved bytes set "
			    "(newer format?)", (ull)i);

	memset(&r, 0, sizeof(r));
	r.span = get64(in + R_SPAN);
	r.data_offset = get64(in + R_DATA_OFFSET);
	r.nr_stored = get32(in + R_NR_STORED);
	r.data_crc = get32(in + R_DATA_CRC);
	for (w = 0; w < MIMG_BITMAP_WORDS; w++) {
		r.present[w] = get64(in + R_PRESENT + 8 * w);
		r.stored[w] = get64(in + R_STORED + 8 * w);
		outside[w] = r.stored[w] & ~r.present[w];
	}

	if (!mimg_popcount(r.present))
		return mimg_set_error(err, -EINVAL, at, "record %llu: no page present",
			    (ull)i);
	bit = first_bit(outside);
	if (bit < MIMG_SPAN_PAGES)
		return mimg_set_error(err, -EINVAL, at, "record %llu: stored page %u is "
			    "not present", (ull)i, bit);
	n = mimg_popcount(r.stored);
	if (r.nr_stored != n)
		return mimg_set_error(err, -EINVAL, at, "record %llu: nr_stored %u, but "
			    "%u pages are marked stored", (ull)i, r.nr_stored,
			    n);
	if (!n && r.data_crc)
		return mimg_set_error(err, -EINVAL, at, "record %llu: data_crc 0x%08x "
			    "but no page stored", (ull)i, r.data_crc);
	if (!(h->flags & MIMG_F_KNOWN)) {
		for (w = 0; w < MIMG_BITMAP_WORDS; w++)
			outside[w] = r.present[w] & ~r.stored[w];
		bit = first_bit(outside);
		if (bit < MIMG_SPAN_PAGES)
			return mimg_set_error(err, -EINVAL, at, "record %llu: page %u is "
				    "present but not stored, in a full image",
				    (ull)i, bit);
	}

	/* Present pages inside the range and the object. */
	obj_end = round_page(h->object_size < MIMG_MAX_SIZE ?
			     h->object_size : MIMG_MAX_SIZE);
	range_end = h->range_start + h->range_length;
	if (range_end > obj_end || range_end < h->range_start)
		range_end = obj_end;	/* header not validated: stay safe */
	if (r.span >= MIMG_MAX_SIZE / MIMG_SPAN_SIZE)
		return mimg_set_error(err, -EINVAL, at, "record %llu: span %llu is beyond "
			    "the largest object", (ull)i, (ull)r.span);
	base = r.span * MIMG_SPAN_SIZE;
	lo = h->range_start > base ? h->range_start : base;
	hi = range_end < base + MIMG_SPAN_SIZE ? range_end :
	     base + MIMG_SPAN_SIZE;
	if (hi > lo)
		bit_window(window, (unsigned int)((lo - base) / MIMG_PAGE_SIZE),
			   (unsigned int)((hi - base + MIMG_PAGE_SIZE - 1) /
					  MIMG_PAGE_SIZE));
	else
		memset(window, 0, sizeof(window));
	for (w = 0; w < MIMG_BITMAP_WORDS; w++)
		outside[w] = r.present[w] & ~window[w];
	bit = first_bit(outside);
	if (bit < MIMG_SPAN_PAGES) {
		uint64_t off = base + (uint64_t)bit * MIMG_PAGE_SIZE;

		if (off >= obj_end)
			return mimg_set_error(err, -EINVAL, at, "record %llu: present page "
				    "%u (byte %llu) is beyond the end of the "
				    "object (%llu bytes)", (ull)i, bit,
				    (ull)off, (ull)h->object_size);
		return mimg_set_error(err, -EINVAL, at, "record %llu: present page %u "
			    "(byte %llu) is outside the range [%llu, %llu)",
			    (ull)i, bit, (ull)off, (ull)h->range_start,
			    (ull)range_end);
	}

	/* Order, and data placed right after the previous record's. */
	if (prev && r.span <= prev->span)
		return mimg_set_error(err, -EINVAL, at, "record %llu: span %llu does not "
			    "follow span %llu of the record before", (ull)i,
			    (ull)r.span, (ull)prev->span);
	if (!prev)
		want = h->data_offset;
	else if (__builtin_add_overflow(prev->data_offset,
					(uint64_t)prev->nr_stored *
					MIMG_PAGE_SIZE, &want))
		want = UINT64_MAX;
	if (r.data_offset != want)
		return mimg_set_error(err, -EINVAL, at, "record %llu: data_offset %llu, "
			    "expected %llu", (ull)i, (ull)r.data_offset,
			    (ull)want);
	/* header fields unchecked when called alone: saturate, no wrap */
	if (__builtin_add_overflow(r.data_offset,
				   (uint64_t)n * MIMG_PAGE_SIZE, &end))
		end = UINT64_MAX;
	if (h->data_pages > UINT64_MAX / MIMG_PAGE_SIZE ||
	    __builtin_add_overflow(h->data_offset,
				   h->data_pages * MIMG_PAGE_SIZE, &data_end))
		data_end = UINT64_MAX;
	if (end > data_end)
		return mimg_set_error(err, -EINVAL, at, "record %llu: its data at "
			    "offset %llu..%llu runs past the end of the "
			    "image's data (%llu)", (ull)i, (ull)r.data_offset,
			    (ull)end, (ull)data_end);
	*out = r;
	return 0;
}

/* ------------------------------------------------------------- reader */

int mimg_open(int fd, struct mimg_reader *r, struct mimg_error *err)
{
	uint8_t block[MIMG_HEADER_SIZE];
	uint8_t *index = NULL;
	uint64_t ilen, len, i, stored, present;
	struct stat st;
	ssize_t n;
	int ret;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	if (fstat(fd, &st))
		return mimg_set_error(err, -errno, 0, "fstat: %s", strerror(errno));
	if (st.st_size < 0)
		return mimg_set_error(err, -EINVAL, 0, "negative file size");
	r->file_size = (uint64_t)st.st_size;

	n = mimg_read_full(fd, block, sizeof(block), 0);
	if (n < 0)
		return mimg_set_error(err, (int)n, 0, "reading the header: %s",
			    strerror((int)-n));
	if (n < 8 || memcmp(block, MIMG_MAGIC, 8))
		return mimg_set_error(err, -EINVAL, 0, n ? "not a morsel image (bad "
			    "magic)" : "not a morsel image (empty file)");
	if ((size_t)n < sizeof(block))
		return mimg_set_error(err, -EINVAL, MIMG_HEADER_SIZE, "truncated: the "
			    "file has %zd bytes, less than the %u-byte header",
			    n, MIMG_HEADER_SIZE);
	ret = mimg_decode_header(block, r->file_size, &r->h, err);
	if (ret)
		return ret;

	/*
	 * The index and the zero padding after it, all in the file (the
	 * header said data_offset <= file size): at most 48 MiB.
	 */
	ilen = r->h.nr_records * MIMG_RECORD_SIZE;
	len = r->h.data_offset - MIMG_HEADER_SIZE;
	index = malloc(len ? len : 1);
	if (r->h.nr_records)
		r->records = malloc(r->h.nr_records * sizeof(*r->records));
	if (!index || (r->h.nr_records && !r->records)) {
		ret = mimg_set_error(err, -ENOMEM, MIMG_HEADER_SIZE, "out of memory for "
			   "an index of %llu records", (ull)r->h.nr_records);
		goto out;
	}
	n = mimg_read_full(fd, index, len, MIMG_HEADER_SIZE);
	if (n < 0) {
		ret = mimg_set_error(err, (int)n, MIMG_HEADER_SIZE, "reading the index: "
			   "%s", strerror((int)-n));
		goto out;
	}
	if ((uint64_t)n < len) {
		ret = mimg_set_error(err, -EINVAL, r->h.data_offset, "truncated: the "
			   "file ends at %llu, inside the index",
			   (ull)(MIMG_HEADER_SIZE + n));
		goto out;
	}
	if (mp_crc32c(0, index, ilen) != r->h.index_crc) {
		/* Name the damaged record if its own crc says so. */
		for (i = 0; i < r->h.nr_records; i++) {
			const uint8_t *b = index + i * MIMG_RECORD_SIZE;

			if (get32(b + R_CRC) != record_crc(b))
				break;
		}
		if (i < r->h.nr_records)
			ret = mimg_decode_record(index + i * MIMG_RECORD_SIZE,
						 &r->h, i, MIMG_HEADER_SIZE +
						 i * MIMG_RECORD_SIZE, NULL,
						 &r->records[0], err);
		else
			ret = mimg_set_error(err, -EBADMSG, MIMG_HEADER_SIZE, "index: "
				   "crc32c mismatch (stored 0x%08x, computed "
				   "0x%08x)", r->h.index_crc,
				   mp_crc32c(0, index, ilen));
		goto out;
	}
	stored = present = 0;
	for (i = 0; i < r->h.nr_records; i++) {
		ret = mimg_decode_record(index + i * MIMG_RECORD_SIZE, &r->h,
					 i, MIMG_HEADER_SIZE +
					 i * MIMG_RECORD_SIZE,
					 i ? &r->records[i - 1] : NULL,
					 &r->records[i], err);
		if (ret)
			goto out;
		stored += r->records[i].nr_stored;
		present += mimg_popcount(r->records[i].present);
	}
	if (!all_zero(index + ilen, len - ilen)) {
		ret = mimg_set_error(err, -EINVAL, MIMG_HEADER_SIZE + ilen, "padding "
			   "after the index is not zero (byte %llu)",
			   (ull)(MIMG_HEADER_SIZE + ilen +
				 first_nonzero(index + ilen, len - ilen)));
		goto out;
	}
	if (stored != r->h.data_pages) {
		ret = mimg_set_error(err, -EINVAL, 0, "header: data_pages %llu, but the "
			   "records store %llu pages", (ull)r->h.data_pages,
			   (ull)stored);
		goto out;
	}
	if (present != r->h.present_pages) {
		ret = mimg_set_error(err, -EINVAL, 0, "header: present_pages %llu, but "
			   "the records have %llu present pages",
			   (ull)r->h.present_pages, (ull)present);
		goto out;
	}
	ret = 0;
out:
	free(index);
	if (ret) {
		free(r->records);
		r->records = NULL;
	}
	return ret;
}

void mimg_close(struct mimg_reader *r)
{
	if (!r)
		return;
	free(r->records);
	r->records = NULL;
}

int mimg_data_crc_error(struct mimg_error *err, uint64_t i,
			const struct mimg_record *rec, uint32_t computed)
{
	return mimg_set_error(err, -EBADMSG, rec->data_offset, "data of record %llu "
		    "(pages at offset %llu..%llu): crc32c mismatch (stored "
		    "0x%08x, computed 0x%08x)", (ull)i, (ull)rec->data_offset,
		    (ull)(rec->data_offset + (uint64_t)rec->nr_stored *
			  MIMG_PAGE_SIZE), rec->data_crc, computed);
}

int mimg_read_data(const struct mimg_reader *r, uint64_t i, void *buf,
		   struct mimg_error *err)
{
	const struct mimg_record *rec;
	uint32_t crc;
	size_t len;
	ssize_t n;

	if (!r->records || i >= r->h.nr_records)
		return mimg_set_error(err, -EINVAL, 0, "record %llu does not exist "
			    "(the image has %llu)", (ull)i,
			    (ull)(r->records ? r->h.nr_records : 0));
	rec = &r->records[i];
	if (!rec->nr_stored)
		return 0;
	len = (size_t)rec->nr_stored * MIMG_PAGE_SIZE;
	n = mimg_read_full(r->fd, buf, len, rec->data_offset);
	if (n < 0)
		return mimg_set_error(err, (int)n, rec->data_offset, "reading the data "
			    "of record %llu at offset %llu: %s", (ull)i,
			    (ull)rec->data_offset, strerror((int)-n));
	if ((size_t)n < len)
		return mimg_set_error(err, -EINVAL, rec->data_offset + len, "truncated: "
			    "the file ends at %llu, inside the data of record "
			    "%llu", (ull)(rec->data_offset + (uint64_t)n),
			    (ull)i);
	crc = mp_crc32c(0, buf, len);
	if (crc != rec->data_crc)
		return mimg_data_crc_error(err, i, rec, crc);
	return 0;
}

int mimg_verify(const struct mimg_reader *r,
		void (*progress)(uint64_t done, uint64_t total, void *arg),
		void *arg, struct mimg_error *err)
{
	uint64_t total, pos, i, left;
	uint8_t *buf = NULL;
	uint32_t crc = 0;
	size_t size;
	int ret = 0;

	if (r->h.nr_records && !r->records)
		return mimg_set_error(err, -EINVAL, 0, "image not open");
	total = r->h.data_pages * MIMG_PAGE_SIZE;
	if (progress)
		progress(0, total, arg);
	if (!total)
		return 0;
	size = total < VERIFY_CHUNK ? (size_t)total : VERIFY_CHUNK;
	buf = malloc(size);
	if (!buf)
		return mimg_set_error(err, -ENOMEM, 0, "out of memory");

	/*
	 * The data of the records follow each other without a gap (checked
	 * by mimg_open), so read it front to back in chunks and run each
	 * record's crc across the chunk boundaries.
	 */
	i = 0;
	left = 0;		/* bytes of record i still to checksum */
	for (pos = r->h.data_offset; pos < r->h.data_offset + total;) {
		size_t want = r->h.data_offset + total - pos < size ?
			      (size_t)(r->h.data_offset + total - pos) : size;
		const uint8_t *p = buf;
		ssize_t n = mimg_read_full(r->fd, buf, want, pos);

		if (n < 0) {
			ret = mimg_set_error(err, (int)n, pos, "reading the data at "
				   "offset %llu: %s", (ull)pos,
				   strerror((int)-n));
			goto out;
		}
		if ((size_t)n < want) {
			ret = mimg_set_error(err, -EINVAL, r->h.data_offset + total,
				   "truncated: the file ends at %llu, inside "
				   "the data", (ull)(pos + (uint64_t)n));
			goto out;
		}
		while (want) {
			size_t t;

			while (!left) {	/* next record with data */
				if (i >= r->h.nr_records) {
					ret = mimg_set_error(err, -EINVAL, pos, "data "
						   "beyond the last record");
					goto out;
				}
				left = (uint64_t)r->records[i].nr_stored *
				       MIMG_PAGE_SIZE;
				crc = 0;
				if (!left)
					i++;
			}
			t = want < left ? want : (size_t)left;
			crc = mp_crc32c(crc, p, t);
			p += t;
			pos += t;
			want -= t;
			left -= t;
			if (!left) {
				if (crc != r->records[i].data_crc) {
					ret = mimg_data_crc_error(
						err, i, &r->records[i], crc);
					goto out;
				}
				i++;
			}
		}
		if (progress)
			progress(pos - r->h.data_offset, total, arg);
	}
out:
	free(buf);
	return ret;
}
