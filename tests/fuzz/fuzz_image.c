#define _GNU_SOURCE
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * libFuzzer harness of the image reader (lib/morsel-image.c): whatever the
 * file holds, mimg_open(), mimg_read_data() and mimg_verify() must return
 * an error or succeed: no crash, no leak, no hang, no undefined behaviour
 * (built with -fsanitize=fuzzer,address,undefined; see `make fuzz`).
 *
 * Input: one mode byte, then the image file.  Random bytes almost never
 * carry right checksums, so the mode byte can make the harness repair them
 * before the reader sees the file, to let mutations reach the structural
 * checks behind them:
 *   bit 0  header_crc          bit 1  every record_crc and index_crc
 *   bit 2  every data_crc      bit 3  also call mimg_decode_record() on
 *                                     the first record with a raw,
 *                                     unvalidated header
 * Seeds (tests/fuzz/make_seeds.c) are valid images of every kind.
 */
#include "morsel-image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

/* Make the checksums the mode asks for right, as a writer would. */
static void repair(uint8_t *f, size_t n, unsigned int mode)
{
	uint64_t nr, i;

	if (n < MIMG_HEADER_SIZE)
		return;
	nr = rd64(f + 48);
	if (nr > (n - MIMG_HEADER_SIZE) / MIMG_RECORD_SIZE)
		nr = (n - MIMG_HEADER_SIZE) / MIMG_RECORD_SIZE;
	for (i = 0; i < nr; i++) {
		uint8_t *r = f + MIMG_HEADER_SIZE + i * MIMG_RECORD_SIZE;
		uint64_t off = rd64(r + 8), cnt = rd32(r + 16);

		if ((mode & 4) && off <= n && cnt <= (n - off) / MIMG_PAGE_SIZE)
			wr32(r + 20, cnt ? mimg_crc32c(0, f + off,
				cnt * MIMG_PAGE_SIZE) : 0);
		if (mode & 2) {
			wr32(r + 28, 0);
			wr32(r + 28, mimg_crc32c(0, r, MIMG_RECORD_SIZE));
		}
	}
	if (mode & 2)
		wr32(f + 160, mimg_crc32c(0, f + MIMG_HEADER_SIZE,
					  nr * MIMG_RECORD_SIZE));
	if (mode & 1) {
		wr32(f + 164, 0);
		wr32(f + 164, mimg_crc32c(0, f, MIMG_HEADER_CRC_LEN));
	}
}

/* The decoders alone, with a header nobody validated. */
static void raw_record(const uint8_t *f, size_t n)
{
	struct mimg_header h;
	struct mimg_record prev, r;
	struct mimg_error e;

	if (n < MIMG_HEADER_SIZE + 2 * MIMG_RECORD_SIZE)
		return;
	memset(&h, 0, sizeof(h));
	h.flags = rd32(f + 12);
	h.object_size = rd64(f + 24);
	h.range_start = rd64(f + 32);
	h.range_length = rd64(f + 40);
	h.nr_records = rd64(f + 48);
	h.data_offset = rd64(f + 64);
	h.data_pages = rd64(f + 72);
	if (!mimg_decode_record(f + MIMG_HEADER_SIZE, &h, 0, MIMG_HEADER_SIZE,
				NULL, &prev, &e))
		mimg_decode_record(f + MIMG_HEADER_SIZE + MIMG_RECORD_SIZE, &h,
				   1, MIMG_HEADER_SIZE + MIMG_RECORD_SIZE,
				   &prev, &r, &e);
}

static void progress(uint64_t done, uint64_t total, void *arg)
{
	if (done > total)
		abort();	/* progress never runs past its total */
	*(uint64_t *)arg = done;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static uint8_t *buf;
	struct mimg_reader r;
	struct mimg_error e;
	uint64_t i, done = 0;
	unsigned int mode;
	uint8_t *f;

	if (fd < 0) {
		fd = memfd_create("fuzz-image", MFD_CLOEXEC);
		buf = malloc((size_t)MIMG_SPAN_PAGES * MIMG_PAGE_SIZE);
		if (fd < 0 || !buf)
			abort();
	}
	if (!size)
		return 0;
	mode = data[0];
	f = malloc(size - 1 ? size - 1 : 1);
	if (!f)
		abort();
	memcpy(f, data + 1, size - 1);
	repair(f, size - 1, mode);
	if (mode & 8)
		raw_record(f, size - 1);
	if (ftruncate(fd, 0) ||
	    (size > 1 && pwrite(fd, f, size - 1, 0) != (ssize_t)(size - 1)))
		abort();
	free(f);

	e.msg[0] = 0;
	if (mimg_open(fd, &r, &e) == 0) {
		/* an accepted image is consistent: its data fits the file */
		for (i = 0; i < r.h.nr_records; i++) {
			if (r.records[i].data_offset +
			    (uint64_t)r.records[i].nr_stored * MIMG_PAGE_SIZE >
			    r.file_size)
				abort();
			mimg_read_data(&r, i, buf, &e);
		}
		if (!mimg_verify(&r, progress, &done, &e) &&
		    done != r.h.data_pages * MIMG_PAGE_SIZE)
			abort();
		mimg_close(&r);
	} else if (r.records || !e.msg[0]) {
		abort();	/* a rejection frees and explains */
	}
	return 0;
}
