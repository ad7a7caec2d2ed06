/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * morsel-image: the on-disk image format of saved morsels (version 1).
 *
 * docs/image-format.md is the normative description; this header is its
 * C binding.  Everything here works on plain files and buffers: no kernel
 * module is needed, so the host tests and the fuzzer exercise exactly the
 * code that morselctl uses.
 *
 * An image is a header block, an index of records (one per 2 MiB span of
 * the object that holds at least one present page, in increasing order)
 * and the data: the stored pages of every record, record after record.
 *
 * Functions return 0 or a negative errno; on failure with a struct
 * mimg_error they fill it with the file offset of the damage and a message.
 */
#ifndef MORSEL_IMAGE_H
#define MORSEL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIMG_MAGIC		"MORSELIM"	/* 8 bytes, no NUL */
#define MIMG_VERSION		1
#define MIMG_PAGE_SIZE		4096u
#define MIMG_PAGE_SHIFT		12
#define MIMG_SPAN_PAGES		512u		/* pages per record */
#define MIMG_SPAN_SIZE		(2ull << 20)	/* bytes per record */
#define MIMG_HEADER_SIZE	4096u		/* the header block */
#define MIMG_HEADER_CRC_LEN	4096u		/* header_crc covers it all */
#define MIMG_RECORD_SIZE	192u
#define MIMG_BITMAP_WORDS	8		/* 512 bits */
#define MIMG_MAX_SIZE		(1ull << 39)	/* largest object: 512 GiB */

/* Header flags. */
#define MIMG_F_INCREMENT	(1u << 0)	/* pages not stored: parent image */
#define MIMG_F_DELTA		(1u << 1)	/* pages not stored: the base */
#define MIMG_F_KNOWN		(MIMG_F_INCREMENT | MIMG_F_DELTA)

/* Decoded header (host byte order).  See docs/image-format.md. */
struct mimg_header {
	uint32_t version;
	uint32_t flags;			/* MIMG_F_* */
	uint64_t object_size;		/* bytes */
	uint32_t level;			/* MORSEL_LEVEL_* at save time */
	uint64_t range_start;		/* bytes, page aligned */
	uint64_t range_length;		/* bytes, page aligned */
	uint64_t nr_records;
	uint64_t index_offset;		/* = MIMG_HEADER_SIZE */
	uint64_t data_offset;		/* first data page, 4096 aligned */
	uint64_t data_pages;		/* pages stored in this image */
	uint64_t present_pages;		/* pages present in the object */
	uint8_t image_id[16];		/* random, names this image */
	uint8_t parent_id[16];		/* INCREMENT: parent's image_id */
	uint64_t base_fingerprint;	/* DELTA: fingerprint of the base */
	uint64_t content_fingerprint;	/* full images: of this content */
	uint64_t object_id;		/* morsel_stat.id at save time */
	uint64_t clean_gen;		/* morsel_stat.clean_gen after save */
	uint64_t created_ns;		/* CLOCK_REALTIME of the save */
	uint32_t index_crc;		/* crc32c of all encoded records */
};

/* Decoded record: one 2 MiB span (host byte order). */
struct mimg_record {
	uint64_t span;			/* byte offset / MIMG_SPAN_SIZE */
	uint64_t data_offset;		/* file offset of its first stored page */
	uint32_t nr_stored;		/* popcount(stored) */
	uint32_t data_crc;		/* crc32c of its stored pages */
	uint64_t present[MIMG_BITMAP_WORDS];	/* page exists in the object */
	uint64_t stored[MIMG_BITMAP_WORDS];	/* its data is in this image */
};

struct mimg_error {
	uint64_t offset;		/* file offset of the damage */
	char msg[200];
};

/*
 * Fill @err (may be NULL) with @offset and a message; returns @ret.  For
 * code that reports image errors the same way (lib/persist-*.c).
 */
__attribute__((format(printf, 4, 5)))
int mimg_set_error(struct mimg_error *err, int ret, uint64_t offset,
		   const char *fmt, ...);

/* CRC32C (Castagnoli), as iSCSI/ext4: crc32c(0, "123456789", 9) = 0xe3069283. */
uint32_t mimg_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * For tests and benchmarks: the two engines behind mimg_crc32c(), which
 * callers use instead.  mimg_crc32c_hw() falls back to the table when the
 * CPU has no SSE4.2; mimg_crc32c_hw_available() says which one it runs.
 */
uint32_t mimg_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t mimg_crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool mimg_crc32c_hw_available(void);

/* Encode @h into a whole header block, computing header_crc. */
void mimg_encode_header(const struct mimg_header *h,
			uint8_t out[MIMG_HEADER_SIZE]);
/*
 * Decode and validate a header block read from a file of @file_size bytes:
 * magic, version, crc (of the whole block), reserved bytes zero, known
 * flags (not both INCREMENT and DELTA), sizes, offsets and counts
 * consistent with each other and with @file_size.
 */
int mimg_decode_header(const uint8_t in[MIMG_HEADER_SIZE], uint64_t file_size,
		       struct mimg_header *h, struct mimg_error *err);

/* Encode one record, computing its record_crc. */
void mimg_encode_record(const struct mimg_record *r,
			uint8_t out[MIMG_RECORD_SIZE]);
/*
 * Decode and validate record number @i (found at file offset @at) of the
 * image described by @h: crc, reserved zero, stored a subset of present,
 * present pages inside the range and the object, nr_stored equal to the
 * popcount, and (with @prev, the record before, or NULL for the first)
 * spans strictly increasing and data placed right after @prev's.
 */
int mimg_decode_record(const uint8_t in[MIMG_RECORD_SIZE],
		       const struct mimg_header *h, uint64_t i, uint64_t at,
		       const struct mimg_record *prev, struct mimg_record *r,
		       struct mimg_error *err);

/*
 * Content fingerprint (not cryptographic): FNV-1a 64 over le64(object
 * size), then for each record in order le64(span), the present bitmap as
 * 64 little-endian bytes and le32(crc32c of the present pages' data).
 * Feed records with mimg_fingerprint_add() after mimg_fingerprint_init().
 */
uint64_t mimg_fingerprint_init(uint64_t object_size);
uint64_t mimg_fingerprint_add(uint64_t fp, uint64_t span,
			      const uint64_t present[MIMG_BITMAP_WORDS],
			      uint32_t data_crc);

/* An open image: header and index read and validated, data not yet. */
struct mimg_reader {
	int fd;
	uint64_t file_size;
	struct mimg_header h;
	struct mimg_record *records;	/* h.nr_records of them */
};

/*
 * Read and validate the header and every record of the image open on
 * @fd (header crc, index crc, each record).  Does not read the data.
 */
int mimg_open(int fd, struct mimg_reader *r, struct mimg_error *err);
void mimg_close(struct mimg_reader *r);	/* frees records, not the fd */

/*
 * Read record @i's stored pages into @buf (nr_stored * 4096 bytes) and
 * check data_crc.
 */
int mimg_read_data(const struct mimg_reader *r, uint64_t i, void *buf,
		   struct mimg_error *err);

/*
 * pread() all of @len bytes at @off, across EINTR and short reads.
 * Returns the bytes read (less than @len only at end of file) or -errno.
 */
ssize_t mimg_read_full(int fd, void *buf, size_t len, uint64_t off);

/*
 * Report that the data of record @i (@rec) read as crc32c @computed, not
 * its data_crc: -EBADMSG at the record's data offset.
 */
int mimg_data_crc_error(struct mimg_error *err, uint64_t i,
			const struct mimg_record *rec, uint32_t computed);

/*
 * Check every data run of the image; @progress (may be NULL) is called
 * with bytes checked so far and the total.
 */
int mimg_verify(const struct mimg_reader *r,
		void (*progress)(uint64_t done, uint64_t total, void *arg),
		void *arg, struct mimg_error *err);

/* Helpers on 512-bit bitmaps. */
static inline bool mimg_test(const uint64_t *map, unsigned int bit)
{
	return map[bit / 64] >> (bit % 64) & 1;
}

static inline void mimg_set(uint64_t *map, unsigned int bit)
{
	map[bit / 64] |= 1ull << (bit % 64);
}

unsigned int mimg_popcount(const uint64_t map[MIMG_BITMAP_WORDS]);

#ifdef __cplusplus
}
#endif

#endif /* MORSEL_IMAGE_H */
