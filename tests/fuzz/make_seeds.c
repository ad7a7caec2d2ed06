/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Writes the seed corpus of the image fuzzer into the directory given:
 * small valid images of every kind (empty, full and sparse, increment,
 * delta, a partial range, an object of 512 GiB), each with the harness's
 * mode byte in front (0: take the file as it is; 7: repair every crc).
 */
#define _GNU_SOURCE
#include "morsel-image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE	MIMG_PAGE_SIZE
#define MAXREC	8

struct seed {
	struct mimg_header h;
	unsigned int n;
	struct mimg_record r[MAXREC];
};

static void seed_init(struct seed *s, uint32_t flags, uint64_t size,
		      uint64_t start, uint64_t length)
{
	memset(s, 0, sizeof(*s));
	s->h.version = MIMG_VERSION;
	s->h.flags = flags;
	s->h.level = 1;
	s->h.object_size = size;
	s->h.range_start = start;
	s->h.range_length = length;
	memset(s->h.image_id, 0x11, 16);
	if (flags & MIMG_F_INCREMENT)
		memset(s->h.parent_id, 0x22, 16);
	if (flags & MIMG_F_DELTA)
		s->h.base_fingerprint = 0xfeedfacecafef00dull;
	s->h.object_id = 3;
	s->h.clean_gen = 9;
}

/* A record with pages [plo, phi) present and [slo, shi) stored. */
static void seed_add(struct seed *s, uint64_t span, unsigned int plo,
		     unsigned int phi, unsigned int slo, unsigned int shi)
{
	struct mimg_record *r = &s->r[s->n++];
	unsigned int b;

	memset(r, 0, sizeof(*r));
	r->span = span;
	for (b = plo; b < phi; b++)
		mimg_set(r->present, b);
	for (b = slo; b < shi; b++)
		mimg_set(r->stored, b);
}

static int seed_write(struct seed *s, const char *dir, const char *name)
{
	uint64_t ilen = s->n * MIMG_RECORD_SIZE, pos, fp;
	size_t len, at;
	uint8_t *f;
	char path[4096];
	unsigned int i, mode;
	FILE *out;

	s->h.nr_records = s->n;
	s->h.index_offset = MIMG_HEADER_SIZE;
	s->h.data_offset = (MIMG_HEADER_SIZE + ilen + PAGE - 1) / PAGE * PAGE;
	s->h.data_pages = s->h.present_pages = 0;
	for (i = 0; i < s->n; i++) {
		s->h.data_pages += mimg_popcount(s->r[i].stored);
		s->h.present_pages += mimg_popcount(s->r[i].present);
	}
	len = s->h.data_offset + s->h.data_pages * PAGE;
	f = calloc(1, len);
	if (!f)
		return -ENOMEM;
	pos = s->h.data_offset;
	fp = mimg_fingerprint_init(s->h.object_size);
	for (i = 0; i < s->n; i++) {
		struct mimg_record *r = &s->r[i];

		r->data_offset = pos;
		r->nr_stored = mimg_popcount(r->stored);
		for (at = 0; at < (size_t)r->nr_stored * PAGE; at++)
			f[pos + at] = (uint8_t)(at * 31 + i * 7 + at / PAGE);
		r->data_crc = r->nr_stored ? mimg_crc32c(0, f + pos,
				(size_t)r->nr_stored * PAGE) : 0;
		pos += (uint64_t)r->nr_stored * PAGE;
		mimg_encode_record(r, f + MIMG_HEADER_SIZE +
				   i * MIMG_RECORD_SIZE);
		fp = mimg_fingerprint_add(fp, r->span, r->present, r->data_crc);
	}
	if (!(s->h.flags & MIMG_F_KNOWN))
		s->h.content_fingerprint = fp;
	s->h.index_crc = mimg_crc32c(0, f + MIMG_HEADER_SIZE, ilen);
	mimg_encode_header(&s->h, f);

	for (mode = 0; mode < 8; mode += 7) {
		snprintf(path, sizeof(path), "%s/%s-%u", dir, name, mode);
		out = fopen(path, "wb");
		if (!out || fputc((int)mode, out) == EOF ||
		    fwrite(f, 1, len, out) != len || fclose(out)) {
			perror(path);
			free(f);
			return -EIO;
		}
	}
	free(f);
	return 0;
}

int main(int argc, char **argv)
{
	struct seed s;
	int ret = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	seed_init(&s, 0, 1 << 20, 0, 1 << 20);
	ret |= seed_write(&s, argv[1], "empty");

	seed_init(&s, 0, (8 << 20) + 100, 0, (8 << 20) + PAGE);
	seed_add(&s, 0, 0, 2, 0, 2);
	seed_add(&s, 2, 510, 512, 510, 512);
	seed_add(&s, 4, 0, 1, 0, 1);		/* the partial last page */
	ret |= seed_write(&s, argv[1], "full");

	seed_init(&s, MIMG_F_INCREMENT, 6 << 20, 0, 6 << 20);
	seed_add(&s, 0, 0, 512, 3, 4);
	seed_add(&s, 1, 7, 9, 0, 0);		/* nothing stored */
	seed_add(&s, 2, 100, 200, 150, 152);
	ret |= seed_write(&s, argv[1], "increment");

	seed_init(&s, MIMG_F_DELTA, 4 << 20, 0, 4 << 20);
	seed_add(&s, 0, 0, 64, 60, 61);
	seed_add(&s, 1, 0, 512, 0, 0);
	ret |= seed_write(&s, argv[1], "delta");

	/* a range starting and ending inside spans */
	seed_init(&s, 0, 16 << 20, (2 << 20) + 8 * PAGE, 3 << 20);
	seed_add(&s, 1, 8, 9, 8, 9);
	seed_add(&s, 2, 255, 264, 255, 264);
	ret |= seed_write(&s, argv[1], "range");

	/*
	 * The largest object, pages at both ends, nearly nothing stored: an
	 * increment (an image may not carry both INCREMENT and DELTA).
	 */
	seed_init(&s, MIMG_F_INCREMENT, MIMG_MAX_SIZE, 0, MIMG_MAX_SIZE);
	seed_add(&s, 0, 0, 1, 0, 1);
	seed_add(&s, MIMG_MAX_SIZE / MIMG_SPAN_SIZE - 1, 511, 512, 0, 0);
	ret |= seed_write(&s, argv[1], "huge");
	return ret ? 1 : 0;
}
