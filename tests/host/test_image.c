#define _GNU_SOURCE
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Host tests of the image format (lib/morsel-image.[ch]): crc32c vectors
 * and the agreement of its two engines, the fingerprint, valid images of
 * every kind (empty, full and sparse, increment, delta, a partial range,
 * data larger than mimg_verify's read chunk), then damage: every byte of
 * the header block (all under header_crc), records, data, truncation,
 * trailing bytes, reserved bytes, and one case per validation rule of
 * docs/image-format.md, each checked for its errno, the offset it reports
 * and its message.  Images live in memfds.
 * Built with ASan/UBSan by the Makefile.
 */
#include "tap.h"
#include "morsel-image.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef unsigned long long ull;

#define PAGE		MIMG_PAGE_SIZE
#define SPAN		MIMG_SPAN_SIZE
#define MAXREC		16

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static void setbits(uint64_t *map, unsigned int lo, unsigned int hi)
{
	for (unsigned int b = lo; b < hi; b++)
		mimg_set(map, b);
}

/* Page @page of span @span: its own bytes, so misplaced data shows. */
static void fill_page(uint8_t *p, uint64_t span, unsigned int page)
{
	uint64_t x = (span * MIMG_SPAN_PAGES + page) * 0x2545f4914f6cdd1dull
		     + 1;

	for (unsigned int i = 0; i < PAGE; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

/* ---------------------------------------------------- building images */

/*
 * An image under construction: img_init(), img_add() per record, then
 * img_finish() derives every count, offset and crc.  Tests then break one
 * field of h or r[] on purpose and img_write() encodes it as it is (with
 * valid record and header crcs), so that exactly one rule is violated.
 */
struct img {
	struct mimg_header h;
	unsigned int n;
	struct mimg_record r[MAXREC];
	uint8_t *data;		/* the stored pages, record after record */
	size_t data_len;
	bool keep_index_crc;	/* img_write: do not recompute h.index_crc */
	uint8_t pad_byte;	/* img_write: first padding byte */
};

static void img_init(struct img *m, uint32_t flags, uint64_t size,
		     uint64_t start, uint64_t length)
{
	memset(m, 0, sizeof(*m));
	m->h.version = MIMG_VERSION;
	m->h.flags = flags;
	m->h.level = 2;
	m->h.object_size = size;
	m->h.range_start = start;
	m->h.range_length = length;
	for (int i = 0; i < 16; i++)
		m->h.image_id[i] = (uint8_t)(0xa0 + i);
	if (flags & MIMG_F_INCREMENT)
		for (int i = 0; i < 16; i++)
			m->h.parent_id[i] = (uint8_t)(0x50 + i);
	if (flags & MIMG_F_DELTA)
		m->h.base_fingerprint = 0x0123456789abcdefull;
	m->h.object_id = 77;
	m->h.clean_gen = 5;
	m->h.created_ns = 1700000000123456789ull;
}

static void img_add(struct img *m, uint64_t span,
		    const uint64_t present[MIMG_BITMAP_WORDS],
		    const uint64_t stored[MIMG_BITMAP_WORDS])
{
	struct mimg_record *r;

	tap_require(m->n < MAXREC);
	r = &m->r[m->n++];
	memset(r, 0, sizeof(*r));
	r->span = span;
	memcpy(r->present, present, sizeof(r->present));
	memcpy(r->stored, stored ? stored : present, sizeof(r->stored));
}

static void img_finish(struct img *m)
{
	bool full = !(m->h.flags & MIMG_F_KNOWN);
	uint64_t fp = mimg_fingerprint_init(m->h.object_size), pos;

	m->h.nr_records = m->n;
	m->h.index_offset = MIMG_HEADER_SIZE;
	m->h.data_offset = (MIMG_HEADER_SIZE + m->n * MIMG_RECORD_SIZE +
			    PAGE - 1) / PAGE * PAGE;
	m->h.data_pages = m->h.present_pages = 0;
	free(m->data);
	m->data = NULL;
	m->data_len = 0;
	pos = m->h.data_offset;
	for (unsigned int i = 0; i < m->n; i++) {
		struct mimg_record *r = &m->r[i];
		size_t at = m->data_len;

		r->data_offset = pos;
		r->nr_stored = mimg_popcount(r->stored);
		m->data_len += (size_t)r->nr_stored * PAGE;
		m->data = realloc(m->data, m->data_len ? m->data_len : 1);
		tap_require(m->data);
		for (unsigned int b = 0; b < MIMG_SPAN_PAGES; b++)
			if (mimg_test(r->stored, b)) {
				fill_page(m->data + at, r->span, b);
				at += PAGE;
			}
		r->data_crc = r->nr_stored ?
			mimg_crc32c(0, m->data + m->data_len -
				    (size_t)r->nr_stored * PAGE,
				    (size_t)r->nr_stored * PAGE) : 0;
		pos += (uint64_t)r->nr_stored * PAGE;
		m->h.data_pages += r->nr_stored;
		m->h.present_pages += mimg_popcount(r->present);
		fp = mimg_fingerprint_add(fp, r->span, r->present, r->data_crc);
	}
	m->h.content_fingerprint = full ? fp : 0;
}

static void img_free(struct img *m)
{
	free(m->data);
	m->data = NULL;
}

static void pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	tap_require(pwrite(fd, buf, len, (off_t)off) == (ssize_t)len);
}

static void pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	tap_require(pread(fd, buf, len, (off_t)off) == (ssize_t)len);
}

/* Encode @m as it stands into a new memfd. */
static int img_write(struct img *m)
{
	size_t ilen = m->n * MIMG_RECORD_SIZE;
	uint64_t data_at = (MIMG_HEADER_SIZE + ilen + PAGE - 1) / PAGE * PAGE;
	uint8_t block[MIMG_HEADER_SIZE];
	uint8_t *index = calloc(1, data_at - MIMG_HEADER_SIZE);
	int fd = memfd_create("image", MFD_CLOEXEC);

	tap_require(fd >= 0 && index);
	for (unsigned int i = 0; i < m->n; i++)
		mimg_encode_record(&m->r[i], index + i * MIMG_RECORD_SIZE);
	if (!m->keep_index_crc)
		m->h.index_crc = mimg_crc32c(0, index, ilen);
	if (m->pad_byte)
		index[ilen] = m->pad_byte;
	mimg_encode_header(&m->h, block);
	pwrite_all(fd, block, sizeof(block), 0);
	if (data_at > MIMG_HEADER_SIZE)
		pwrite_all(fd, index, data_at - MIMG_HEADER_SIZE,
			   MIMG_HEADER_SIZE);
	if (m->data_len)
		pwrite_all(fd, m->data, m->data_len, data_at);
	free(index);
	return fd;
}

static uint64_t file_size(int fd)
{
	struct stat st;

	tap_require(!fstat(fd, &st));
	return (uint64_t)st.st_size;
}

/* Recompute the header crc of the image in @fd. */
static void fix_header_crc(int fd)
{
	uint8_t b[MIMG_HEADER_SIZE];

	pread_all(fd, b, sizeof(b), 0);
	wr32(b + 164, 0);
	wr32(b + 164, mimg_crc32c(0, b, MIMG_HEADER_CRC_LEN));
	pwrite_all(fd, b, sizeof(b), 0);
}

static void patch_header32(int fd, unsigned int off, uint32_t v)
{
	uint8_t b[4];

	wr32(b, v);
	pwrite_all(fd, b, 4, off);
	fix_header_crc(fd);
}

/*
 * Set byte @off of record @i to @v and make every crc right again (the
 * record's, the index's, the header's).
 */
static void patch_record_byte(int fd, uint64_t i, unsigned int off, uint8_t v)
{
	uint8_t h[MIMG_HEADER_SIZE], *index;
	uint64_t n;

	pread_all(fd, h, sizeof(h), 0);
	n = h[48] | (uint64_t)h[49] << 8;	/* nr_records, small here */
	index = malloc(n * MIMG_RECORD_SIZE);
	tap_require(index && i < n);
	pread_all(fd, index, n * MIMG_RECORD_SIZE, MIMG_HEADER_SIZE);
	index[i * MIMG_RECORD_SIZE + off] = v;
	wr32(index + i * MIMG_RECORD_SIZE + 28, 0);
	wr32(index + i * MIMG_RECORD_SIZE + 28,
	     mimg_crc32c(0, index + i * MIMG_RECORD_SIZE, MIMG_RECORD_SIZE));
	pwrite_all(fd, index, n * MIMG_RECORD_SIZE, MIMG_HEADER_SIZE);
	wr32(h + 160, mimg_crc32c(0, index, n * MIMG_RECORD_SIZE));
	pwrite_all(fd, h, sizeof(h), 0);
	fix_header_crc(fd);
	free(index);
}

static void flip(int fd, uint64_t off, uint8_t mask)
{
	uint8_t c;

	pread_all(fd, &c, 1, off);
	c ^= mask;
	pwrite_all(fd, &c, 1, off);
}

static const char *errname(int ret)
{
	switch (ret) {
	case 0:		return "success";
	case -EINVAL:	return "-EINVAL";
	case -EBADMSG:	return "-EBADMSG";
	case -EBADF:	return "-EBADF";
	case -EISDIR:	return "-EISDIR";
	case -ENOMEM:	return "-ENOMEM";
	default:	return "another error";
	}
}

/* Is the rejection the one we want?  Says why not. */
static bool is_error(int ret, const struct mimg_error *e, int want,
		     uint64_t off, const char *msg)
{
	bool ok = ret == want && e->offset == off && strstr(e->msg, msg);

	if (!ok)
		tap_diag("got %s (%d) at offset %llu: \"%s\"; want %s at %llu "
			 "with \"%s\"", errname(ret), ret, (ull)e->offset,
			 e->msg, errname(want), (ull)off, msg);
	return ok;
}

/* mimg_open() of @fd must fail with @want at @off, with @msg. */
static void open_fails(int fd, int want, uint64_t off, const char *msg,
		       const char *what)
{
	struct mimg_reader r;
	struct mimg_error e;
	int ret;

	memset(&e, 0, sizeof(e));
	ret = mimg_open(fd, &r, &e);
	tap_ok(is_error(ret, &e, want, off, msg) && !r.records,
	       "%s: open fails with %s at offset %llu (\"%s\")", what,
	       errname(want), (ull)off, msg);
	mimg_close(&r);
}

/* Build, break with @mut, write and expect mimg_open() to say @msg. */
static void img_open_fails(struct img *m, int want, uint64_t off,
			   const char *msg, const char *what)
{
	int fd = img_write(m);

	open_fails(fd, want, off, msg, what);
	close(fd);
}

/* Open and verify; returns the reader (records freed by the caller). */
static bool open_verify(int fd, struct mimg_reader *r, struct mimg_error *e)
{
	int ret;

	memset(e, 0, sizeof(*e));
	ret = mimg_open(fd, r, e);
	if (ret) {
		tap_diag("mimg_open: %d at %llu: %s", ret, (ull)e->offset,
			 e->msg);
		return false;
	}
	ret = mimg_verify(r, NULL, NULL, e);
	if (ret)
		tap_diag("mimg_verify: %d at %llu: %s", ret, (ull)e->offset,
			 e->msg);
	return !ret;
}

static bool headers_equal(const struct mimg_header *a,
			  const struct mimg_header *b)
{
	return a->version == b->version && a->flags == b->flags &&
	       a->object_size == b->object_size && a->level == b->level &&
	       a->range_start == b->range_start &&
	       a->range_length == b->range_length &&
	       a->nr_records == b->nr_records &&
	       a->index_offset == b->index_offset &&
	       a->data_offset == b->data_offset &&
	       a->data_pages == b->data_pages &&
	       a->present_pages == b->present_pages &&
	       !memcmp(a->image_id, b->image_id, 16) &&
	       !memcmp(a->parent_id, b->parent_id, 16) &&
	       a->base_fingerprint == b->base_fingerprint &&
	       a->content_fingerprint == b->content_fingerprint &&
	       a->object_id == b->object_id && a->clean_gen == b->clean_gen &&
	       a->created_ns == b->created_ns && a->index_crc == b->index_crc;
}

static bool records_equal(const struct mimg_record *a,
			  const struct mimg_record *b)
{
	return a->span == b->span && a->data_offset == b->data_offset &&
	       a->nr_stored == b->nr_stored && a->data_crc == b->data_crc &&
	       !memcmp(a->present, b->present, sizeof(a->present)) &&
	       !memcmp(a->stored, b->stored, sizeof(a->stored));
}

/* ---------------------------------------------------------------- crc */

/* Bit at a time, straight from the definition: the reference. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? crc >> 1 ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

static void test_crc(void)
{
	static const char check[] = "123456789";
	uint8_t v[4][32], *buf;
	size_t size = 3 * 65536 + 64;
	bool ok;
	int i, bad;

	tap_diag("crc32c: SSE4.2 %s", mimg_crc32c_hw_available() ?
		 "available, hardware path tested" :
		 "missing, both paths are the table");
	tap_ok(mimg_crc32c_sw(0, check, 9) == 0xe3069283,
	       "crc32c table: \"123456789\" gives 0xe3069283");
	tap_ok(mimg_crc32c_hw(0, check, 9) == 0xe3069283,
	       "crc32c hardware: \"123456789\" gives 0xe3069283");
	tap_ok(mimg_crc32c(0, check, 9) == 0xe3069283,
	       "mimg_crc32c: \"123456789\" gives 0xe3069283");

	/* RFC 3720 B.4 (iSCSI) */
	for (i = 0; i < 32; i++) {
		v[0][i] = 0;
		v[1][i] = 0xff;
		v[2][i] = (uint8_t)i;
		v[3][i] = (uint8_t)(31 - i);
	}
	ok = mimg_crc32c(0, v[0], 32) == 0x8a9136aa &&
	     mimg_crc32c(0, v[1], 32) == 0x62a8ab43 &&
	     mimg_crc32c(0, v[2], 32) == 0x46dd794e &&
	     mimg_crc32c(0, v[3], 32) == 0x113fdb5c &&
	     mimg_crc32c_sw(0, v[0], 32) == 0x8a9136aa &&
	     mimg_crc32c_sw(0, v[1], 32) == 0x62a8ab43 &&
	     mimg_crc32c_sw(0, v[2], 32) == 0x46dd794e &&
	     mimg_crc32c_sw(0, v[3], 32) == 0x113fdb5c;
	tap_ok(ok, "crc32c: the four 32-byte vectors of RFC 3720 B.4, both "
	       "engines");
	tap_ok(mimg_crc32c(0, NULL, 0) == 0 &&
	       mimg_crc32c(0x12345678, check, 0) == 0x12345678 &&
	       mimg_crc32c_sw(0xdeadbeef, NULL, 0) == 0xdeadbeef,
	       "crc32c of nothing: the crc given, both engines");

	buf = malloc(size);
	tap_require(buf);
	for (size_t k = 0; k < size; k++)
		buf[k] = (uint8_t)rnd();

	bad = 0;
	for (i = 0; i < 300; i++) {
		size_t off = rnd() % 16, len = rnd() % 20000;

		if (i < 32)
			len = (size_t)i;
		if (mimg_crc32c_sw(0, buf + off, len) !=
		    crc_ref(0, buf + off, len))
			bad++;
	}
	tap_ok(!bad, "crc32c table = bit-by-bit reference on 300 buffers "
	       "(lengths 0..20000, offsets 0..15): %d differ", bad);

	bad = 0;
	for (i = 0; i < 3000; i++) {
		size_t off = rnd() % 64, len;

		switch (i % 4) {
		case 0: len = rnd() % 64; break;
		case 1: len = rnd() % 8192; break;
		/* near multiples of 256 (the 3-way loop takes 3 x 256) */
		case 2: len = 256 * (1 + rnd() % 200) + rnd() % 17 - 8; break;
		default: len = rnd() % (size - 64); break;
		}
		if (mimg_crc32c_hw(0x5a5a5a5a, buf + off, len) !=
		    mimg_crc32c_sw(0x5a5a5a5a, buf + off, len))
			bad++;
	}
	tap_ok(!bad, "crc32c hardware = table on 3000 random buffers of odd "
	       "lengths and alignments: %d differ", bad);

	bad = 0;
	for (i = 0; i < 200; i++) {
		size_t len = rnd() % 40000, cut = len ? rnd() % len : 0;
		uint32_t whole = mimg_crc32c(0, buf + 3, len);

		if (mimg_crc32c(mimg_crc32c(0, buf + 3, cut), buf + 3 + cut,
				len - cut) != whole ||
		    mimg_crc32c_sw(mimg_crc32c_hw(0, buf + 3, cut),
				   buf + 3 + cut, len - cut) != whole)
			bad++;
	}
	tap_ok(!bad, "crc32c chains: crc(crc(0, a), b) = crc(0, ab) on 200 "
	       "random cuts, also across engines: %d differ", bad);

	/* the whole buffer: every hardware loop of a big input */
	tap_ok(mimg_crc32c_hw(0, buf, size) == crc_ref(0, buf, size),
	       "crc32c hardware = bit-by-bit reference on %zu bytes", size);
	free(buf);
}

/* -------------------------------------------------------- fingerprint */

static void test_fingerprint(void)
{
	uint64_t p1[MIMG_BITMAP_WORDS] = { 1 };
	uint64_t p2[MIMG_BITMAP_WORDS] = { 0x8000000000000001ull, 0, 0, 0,
					   0, 0, 0, 1ull << 63 };
	uint64_t fp;

	/*
	 * Expected values computed by hand with a separate FNV-1a (Python:
	 * h ^= byte; h = h * 0x100000001b3 mod 2^64, from 0xcbf29ce484222325)
	 * over the little-endian encodings.
	 */
	fp = mimg_fingerprint_init(4096);
	tap_ok(fp == 0x53a03f8d0add0c15ull,
	       "fingerprint of a 4 KiB object, no record: 0x53a03f8d0add0c15 "
	       "(got 0x%016llx)", (ull)fp);
	tap_ok(mimg_fingerprint_init(0) == 0xa8c7f832281a39c5ull,
	       "fingerprint of an empty object: 0xa8c7f832281a39c5");
	fp = mimg_fingerprint_add(fp, 0, p1, 0xe3069283);
	tap_ok(fp == 0x046604df41d3844eull,
	       "fingerprint after span 0, page 0 present, crc 0xe3069283: "
	       "0x046604df41d3844e (got 0x%016llx)", (ull)fp);
	fp = mimg_fingerprint_add(fp, 5, p2, 0x12345678);
	tap_ok(fp == 0x8087b1a5428e960aull,
	       "fingerprint after span 5, pages 0, 63 and 511, crc 0x12345678: "
	       "0x8087b1a5428e960a (got 0x%016llx)", (ull)fp);
}

/* ------------------------------------------------------ valid images */

/*
 * The full sparse image most damage tests start from: an object of
 * 64 MiB + 100 bytes (its last page partial) with records in spans 0, 3,
 * 17 and 32 (the last one, holding only that partial page).
 */
static void img_sparse(struct img *m, uint32_t flags)
{
	uint64_t p[MIMG_BITMAP_WORDS], s[MIMG_BITMAP_WORDS];
	uint64_t size = (64ull << 20) + 100;

	img_init(m, flags, size, 0, (size + PAGE - 1) / PAGE * PAGE);
	memset(p, 0, sizeof(p));
	memset(s, 0, sizeof(s));
	mimg_set(p, 0);
	mimg_set(p, 1);
	mimg_set(p, 511);
	mimg_set(s, 1);
	img_add(m, 0, p, flags ? s : NULL);

	memset(p, 0, sizeof(p));
	memset(s, 0, sizeof(s));
	setbits(p, 5, 71);
	setbits(s, 10, 20);
	setbits(s, 64, 66);
	img_add(m, 3, p, flags ? s : NULL);

	memset(p, 0, sizeof(p));
	memset(s, 0, sizeof(s));
	setbits(p, 100, 300);
	img_add(m, 17, p, flags ? s : NULL);	/* increment: nothing stored */

	memset(p, 0, sizeof(p));
	memset(s, 0, sizeof(s));
	mimg_set(p, 0);
	mimg_set(s, 0);
	img_add(m, 32, p, s);
	img_finish(m);
}

struct prog {
	uint64_t calls, last, total;
	bool monotonic;
};

static void on_progress(uint64_t done, uint64_t total, void *arg)
{
	struct prog *p = arg;

	if (p->calls && (done < p->last || total != p->total))
		p->monotonic = false;
	p->calls++;
	p->last = done;
	p->total = total;
}

/* Every record's data as read back = the data written. */
static bool data_matches(const struct mimg_reader *r, const struct img *m)
{
	struct mimg_error e;
	size_t at = 0;
	bool ok = true;
	uint8_t *buf = malloc(MIMG_SPAN_PAGES * PAGE);

	tap_require(buf);
	for (uint64_t i = 0; i < r->h.nr_records; i++) {
		size_t len = (size_t)r->records[i].nr_stored * PAGE;

		if (mimg_read_data(r, i, buf, &e) ||
		    memcmp(buf, m->data + at, len)) {
			tap_diag("record %llu: data differs or %s", (ull)i,
				 e.msg);
			ok = false;
		}
		at += len;
	}
	free(buf);
	return ok;
}

static void test_valid(void)
{
	uint64_t p[MIMG_BITMAP_WORDS], s[MIMG_BITMAP_WORDS];
	struct mimg_reader r;
	struct mimg_error e;
	struct prog pr;
	struct img m;
	bool ok;
	int fd;

	memset(&r, 0, sizeof(r));
	/* empty: no record, no data; the file is the header block alone */
	img_init(&m, 0, 1 << 20, 0, 1 << 20);
	img_finish(&m);
	fd = img_write(&m);
	memset(&pr, 0, sizeof(pr));
	pr.monotonic = true;
	ok = file_size(fd) == MIMG_HEADER_SIZE && !mimg_open(fd, &r, &e) &&
	     !mimg_verify(&r, on_progress, &pr, &e);
	tap_ok(ok && r.h.nr_records == 0 && pr.calls == 1 && pr.total == 0,
	       "empty image (4096 bytes, 0 records): opens and verifies, "
	       "progress called once with 0 of 0");
	mimg_close(&r);
	close(fd);

	img_init(&m, 0, 0, 0, 0);
	img_finish(&m);
	fd = img_write(&m);
	tap_ok(open_verify(fd, &r, &e),
	       "image of an object of size 0: opens and verifies");
	mimg_close(&r);
	close(fd);

	/* full, sparse, object size not page aligned */
	img_sparse(&m, 0);
	fd = img_write(&m);
	tap_ok(open_verify(fd, &r, &e), "full sparse image (4 records, "
	       "object of 64 MiB + 100 bytes): opens and verifies");
	tap_ok(headers_equal(&r.h, &m.h), "full sparse image: every header "
	       "field decodes to the value encoded");
	ok = r.h.nr_records == m.n;
	for (unsigned int i = 0; ok && i < m.n; i++)
		ok = records_equal(&r.records[i], &m.r[i]);
	tap_ok(ok, "full sparse image: every record decodes to the record "
	       "encoded");
	tap_ok(data_matches(&r, &m), "full sparse image: mimg_read_data "
	       "returns each record's pages");
	tap_ok(r.h.content_fingerprint == m.h.content_fingerprint &&
	       r.h.content_fingerprint != 0 && r.h.data_pages == 270 &&
	       r.h.present_pages == 270,
	       "full sparse image: 270 pages present and stored, fingerprint "
	       "kept");
	mimg_close(&r);
	tap_ok(r.records == NULL, "mimg_close leaves no records behind");
	mimg_close(&r);		/* twice: harmless (ASan would tell) */
	close(fd);
	img_free(&m);

	/* increment: a subset stored, one record with nothing stored */
	img_sparse(&m, MIMG_F_INCREMENT);
	fd = img_write(&m);
	tap_ok(open_verify(fd, &r, &e) && r.h.data_pages == 14 &&
	       r.h.present_pages == 270 && r.records[2].nr_stored == 0 &&
	       (r.h.flags & MIMG_F_INCREMENT),
	       "increment (14 of 270 pages stored, a record with none): "
	       "opens and verifies");
	tap_ok(data_matches(&r, &m), "increment: mimg_read_data returns "
	       "each record's pages, nothing for an empty record");
	mimg_close(&r);
	close(fd);
	img_free(&m);

	/* delta */
	img_sparse(&m, MIMG_F_DELTA);
	fd = img_write(&m);
	tap_ok(open_verify(fd, &r, &e) &&
	       r.h.base_fingerprint == 0x0123456789abcdefull &&
	       (r.h.flags & MIMG_F_DELTA) && data_matches(&r, &m),
	       "delta (base fingerprint set, 14 pages own): opens, verifies, "
	       "reads back");
	mimg_close(&r);
	close(fd);
	img_free(&m);

	/* a range that starts and ends inside spans */
	img_init(&m, 0, 16 << 20, SPAN + 8 * PAGE, 3 * SPAN);
	memset(p, 0, sizeof(p));
	setbits(p, 8, 512);
	img_add(&m, 1, p, NULL);
	memset(p, 0, sizeof(p));
	setbits(p, 0, 8);
	img_add(&m, 4, p, NULL);
	img_finish(&m);
	fd = img_write(&m);
	tap_ok(open_verify(fd, &r, &e), "image of a range [2 MiB + 32 KiB, "
	       "+6 MiB) with pages at both of its ends: opens and verifies");
	mimg_close(&r);
	close(fd);
	img_free(&m);

	/* more data than a verify chunk (8 MiB), a record across it */
	img_init(&m, 0, 16 << 20, 0, 16 << 20);
	memset(p, 0, sizeof(p));
	mimg_set(p, 7);
	img_add(&m, 0, p, NULL);
	memset(p, 0, sizeof(p));
	setbits(p, 0, 512);
	for (int k = 1; k <= 5; k++)
		img_add(&m, (uint64_t)k, p, NULL);
	img_finish(&m);
	fd = img_write(&m);
	memset(&pr, 0, sizeof(pr));
	pr.monotonic = true;
	ok = !mimg_open(fd, &r, &e) && !mimg_verify(&r, on_progress, &pr, &e);
	tap_ok(ok, "10 MiB of data in 6 records: opens and verifies");
	tap_ok(pr.calls >= 3 && pr.monotonic && pr.last == pr.total &&
	       pr.total == m.data_len,
	       "progress: %llu calls, never backwards, ends at %llu of %zu",
	       (ull)pr.calls, (ull)pr.last, m.data_len);
	mimg_close(&r);
	/* record 4 holds bytes 6 MiB + 4 KiB .. 8 MiB + 4 KiB of the data */
	flip(fd, m.r[4].data_offset + SPAN - 100, 0x10);
	memset(&e, 0, sizeof(e));
	ok = !mimg_open(fd, &r, &e) &&
	     is_error(mimg_verify(&r, NULL, NULL, &e), &e, -EBADMSG,
		      m.r[4].data_offset, "data of record 4");
	tap_ok(ok, "a byte of record 4 flipped after the 8 MiB chunk "
	       "boundary: verify fails with -EBADMSG at its data offset");
	mimg_close(&r);
	flip(fd, m.r[4].data_offset + SPAN - 100, 0x10);
	flip(fd, m.r[5].data_offset + SPAN - 1, 0x01);
	ok = !mimg_open(fd, &r, &e) &&
	     is_error(mimg_verify(&r, NULL, NULL, &e), &e, -EBADMSG,
		      m.r[5].data_offset, "data of record 5");
	tap_ok(ok, "last byte of the image flipped: verify fails with "
	       "-EBADMSG at the data offset of record 5");
	mimg_close(&r);
	close(fd);
	img_free(&m);

	/* the encoders produce exactly what decoders take, standalone */
	{
		uint8_t blk[MIMG_HEADER_SIZE], rb[MIMG_RECORD_SIZE];
		struct mimg_header h;
		struct mimg_record rec;

		img_sparse(&m, MIMG_F_INCREMENT);
		mimg_encode_header(&m.h, blk);
		ok = !mimg_decode_header(blk, m.h.data_offset +
					 m.h.data_pages * PAGE, &h, &e) &&
		     headers_equal(&h, &m.h);
		tap_ok(ok, "mimg_decode_header(mimg_encode_header(h)) = h");
		/* header_crc: the whole block, spelt out without the macro */
		{
			uint32_t crc = rd32(blk + 164);

			wr32(blk + 164, 0);
			tap_ok(MIMG_HEADER_CRC_LEN == MIMG_HEADER_SIZE &&
			       crc == mimg_crc32c(0, blk, 4096),
			       "header_crc = crc32c of all 4096 bytes of the "
			       "block, bytes 164..167 as zero");
		}
		mimg_encode_record(&m.r[1], rb);
		ok = !mimg_decode_record(rb, &m.h, 1, 4096 + 192, &m.r[0],
					 &rec, &e) &&
		     records_equal(&rec, &m.r[1]);
		tap_ok(ok, "mimg_decode_record(mimg_encode_record(r)) = r");
		memset(s, 0, sizeof(s));
		tap_ok(mimg_popcount(m.r[1].present) == 66 &&
		       mimg_popcount(s) == 0, "mimg_popcount counts 66 and 0");
		img_free(&m);
	}
}

/* -------------------------------------------------------------- damage */

static void test_damage(void)
{
	uint8_t blk[MIMG_HEADER_SIZE], orig;
	struct mimg_reader r;
	struct mimg_error e;
	struct img m;
	uint64_t end;
	int fd, bad, ret;
	bool ok;

	img_sparse(&m, MIMG_F_INCREMENT);
	fd = img_write(&m);
	end = file_size(fd);
	tap_require(open_verify(fd, &r, &e));
	mimg_close(&r);

	/*
	 * Every byte of the header block, flipped one at a time: all of it is
	 * under header_crc, so past the magic (0..7) and the version (8..11),
	 * which are checked before the crc, each flip is a crc mismatch.
	 */
	bad = 0;
	for (unsigned int b = 0; b < MIMG_HEADER_SIZE; b++) {
		int want = b < 12 ? -EINVAL : -EBADMSG;
		const char *msg = b < 8 ? "not a morsel image (bad magic)" :
				  b < 12 ? "image format version" :
				  "header: crc32c mismatch";

		pread_all(fd, &orig, 1, b);
		for (unsigned int bit = 0; bit < 8; bit += 3) {
			uint8_t c = orig ^ (uint8_t)(1u << bit);

			pwrite_all(fd, &c, 1, b);
			memset(&e, 0, sizeof(e));
			ret = mimg_open(fd, &r, &e);
			if (ret != want || e.offset != 0 ||
			    !strstr(e.msg, msg) || r.records) {
				if (bad++ < 5)
					tap_diag("byte %u bit %u: %d at %llu "
						 "\"%s\"", b, bit, ret,
						 (ull)e.offset, e.msg);
			}
			mimg_close(&r);
		}
		pwrite_all(fd, &orig, 1, b);
	}
	tap_ok(!bad, "each of bits 0, 3, 6 of each header byte 0..4095 "
	       "flipped: open fails at offset 0, bytes 12..4095 with -EBADMSG "
	       "\"header: crc32c mismatch\" (%d wrong)", bad);
	tap_require(open_verify(fd, &r, &e));
	mimg_close(&r);
	flip(fd, MIMG_HEADER_SIZE - 1, 0x01);
	open_fails(fd, -EBADMSG, 0, "header: crc32c mismatch",
		   "last header byte (4095) flipped");
	flip(fd, MIMG_HEADER_SIZE - 1, 0x01);

	/*
	 * Reserved header bytes set with the crc right (a later format's
	 * writer): "newer format?", which only a matching crc reaches.
	 */
	bad = 0;
	for (unsigned int b = 168; b < MIMG_HEADER_SIZE; b += 97) {
		flip(fd, b, 0x80);
		fix_header_crc(fd);
		memset(&e, 0, sizeof(e));
		ret = mimg_open(fd, &r, &e);
		if (!is_error(ret, &e, -EINVAL, 0, "reserved header bytes set "
			      "(newer format?)"))
			bad++;
		mimg_close(&r);
		flip(fd, b, 0x80);
		fix_header_crc(fd);
	}
	tap_ok(!bad, "header bytes 168..4095 (every 97th) set, header crc "
	       "right: open fails with \"reserved header bytes set (newer "
	       "format?)\" (%d wrong)", bad);
	flip(fd, MIMG_HEADER_SIZE - 1, 0x01);
	fix_header_crc(fd);
	open_fails(fd, -EINVAL, 0, "reserved header bytes set (newer format?): "
		   "byte 4095 is 0x01", "last header byte (4095) set, header "
		   "crc right");
	flip(fd, MIMG_HEADER_SIZE - 1, 0x01);
	fix_header_crc(fd);
	pread_all(fd, blk, sizeof(blk), 0);
	blk[200] = 1;
	pwrite_all(fd, blk, sizeof(blk), 0);
	fix_header_crc(fd);
	open_fails(fd, -EINVAL, 0, "reserved header bytes set (newer format?)",
		   "header byte 200 set, header crc right");
	blk[200] = 0;
	pwrite_all(fd, blk, sizeof(blk), 0);
	fix_header_crc(fd);
	tap_require(open_verify(fd, &r, &e));
	mimg_close(&r);

	/* a record */
	flip(fd, MIMG_HEADER_SIZE + MIMG_RECORD_SIZE + 40, 0x04);
	open_fails(fd, -EBADMSG, MIMG_HEADER_SIZE + MIMG_RECORD_SIZE,
		   "record 1: crc32c mismatch", "a bit of record 1's present "
		   "bitmap flipped");
	flip(fd, MIMG_HEADER_SIZE + MIMG_RECORD_SIZE + 40, 0x04);
	flip(fd, MIMG_HEADER_SIZE + 3 * MIMG_RECORD_SIZE + 29, 0x40);
	open_fails(fd, -EBADMSG, MIMG_HEADER_SIZE + 3 * MIMG_RECORD_SIZE,
		   "record 3: crc32c mismatch", "a bit of record 3's crc "
		   "flipped");
	flip(fd, MIMG_HEADER_SIZE + 3 * MIMG_RECORD_SIZE + 29, 0x40);

	/* the index crc alone */
	pread_all(fd, blk, sizeof(blk), 0);
	wr32(blk + 160, rd32(blk + 160) ^ 1);
	pwrite_all(fd, blk, sizeof(blk), 0);
	fix_header_crc(fd);
	open_fails(fd, -EBADMSG, MIMG_HEADER_SIZE, "index: crc32c mismatch",
		   "index_crc off by one bit, header crc right");
	wr32(blk + 160, rd32(blk + 160) ^ 1);
	pwrite_all(fd, blk, sizeof(blk), 0);
	fix_header_crc(fd);

	/* data */
	flip(fd, m.r[1].data_offset + 5 * PAGE + 123, 0x20);
	memset(&e, 0, sizeof(e));
	ok = !mimg_open(fd, &r, &e);
	ok = ok && is_error(mimg_verify(&r, NULL, NULL, &e), &e, -EBADMSG,
			    m.r[1].data_offset, "data of record 1 (pages at "
			    "offset");
	tap_ok(ok, "a bit of record 1's 6th page flipped: open succeeds, "
	       "verify fails with -EBADMSG at its data offset %llu (\"%s\")",
	       (ull)m.r[1].data_offset, e.msg);
	{
		uint8_t *buf = malloc(MIMG_SPAN_PAGES * PAGE);

		tap_require(buf);
		ok = is_error(mimg_read_data(&r, 1, buf, &e), &e, -EBADMSG,
			      m.r[1].data_offset, "crc32c mismatch (stored 0x")
		     && !mimg_read_data(&r, 0, buf, &e) &&
		     !mimg_read_data(&r, 3, buf, &e);
		tap_ok(ok, "mimg_read_data: record 1 fails with -EBADMSG at its "
		       "offset, records 0 and 3 read fine");
		ok = is_error(mimg_read_data(&r, 4, buf, &e), &e, -EINVAL, 0,
			      "record 4 does not exist");
		tap_ok(ok, "mimg_read_data of record 4 of 4: -EINVAL");
		free(buf);
	}
	mimg_close(&r);
	flip(fd, m.r[1].data_offset + 5 * PAGE + 123, 0x20);

	/* size */
	tap_require(!ftruncate(fd, (off_t)end - 1));
	open_fails(fd, -EINVAL, end, "truncated", "image short of 1 byte");
	tap_require(!ftruncate(fd, (off_t)end - PAGE));
	open_fails(fd, -EINVAL, end, "truncated", "image short of a page");
	tap_require(!ftruncate(fd, (off_t)end + 1));
	open_fails(fd, -EINVAL, end, "trailing bytes", "a byte appended");
	tap_require(!ftruncate(fd, MIMG_HEADER_SIZE - 1));
	open_fails(fd, -EINVAL, MIMG_HEADER_SIZE, "less than the 4096-byte "
		   "header", "file of 4095 bytes");
	tap_require(!ftruncate(fd, 0));
	open_fails(fd, -EINVAL, 0, "not a morsel image (empty file)",
		   "empty file");
	close(fd);
	img_free(&m);
}

/* --------------------------------------------------- one case per rule */

static void test_header_rules(void)
{
	struct img m;
	int fd;

#define CASE(flags, mutate, want, off, msg, what) do {			\
		img_sparse(&m, flags);					\
		mutate;							\
		img_open_fails(&m, want, off, msg, what);		\
		img_free(&m);						\
	} while (0)

	img_sparse(&m, 0);
	fd = img_write(&m);
	pwrite_all(fd, "MORSELIN", 8, 0);
	fix_header_crc(fd);
	open_fails(fd, -EINVAL, 0, "not a morsel image (bad magic)",
		   "magic \"MORSELIN\"");
	close(fd);
	fd = img_write(&m);
	patch_header32(fd, 16, 13);
	open_fails(fd, -EINVAL, 0, "page_shift 13", "page_shift 13");
	close(fd);
	img_free(&m);

	CASE(0, m.h.version = 2, -EINVAL, 0, "image format version 2",
	     "version 2");
	CASE(0, m.h.flags = 1u << 2, -EINVAL, 0, "unknown flags 0x4 (newer "
	     "format?)", "flag bit 2");
	CASE(MIMG_F_INCREMENT | MIMG_F_DELTA, (void)0, -EINVAL, 0,
	     "header: INCREMENT and DELTA both set: a delta is the root of "
	     "its chain, increments on it carry only INCREMENT",
	     "INCREMENT and DELTA both set (parent_id and base_fingerprint "
	     "right for each)");
	CASE(0, m.h.level = 4, -EINVAL, 0, "level 4 out of range",
	     "level 4");
	CASE(0, m.h.object_size = MIMG_MAX_SIZE + 1, -EINVAL, 0,
	     "object size 549755813889 above the limit", "object of 512 GiB "
	     "+ 1 byte");
	CASE(0, m.h.range_start = 100, -EINVAL, 0, "not page aligned",
	     "range_start 100");
	CASE(0, m.h.range_length -= 2048, -EINVAL, 0, "not page aligned",
	     "range_length not a multiple of 4096");
	CASE(0, m.h.range_length += PAGE, -EINVAL, 0, "goes beyond the object",
	     "range one page longer than the object");
	CASE(0, (m.h.range_start = UINT64_MAX - PAGE + 1,
		 m.h.range_length = 2 * PAGE), -EINVAL, 0,
	     "goes beyond the object", "range_start + range_length wraps "
	     "around 2^64");
	CASE(0, m.h.index_offset = 8192, -EINVAL, 0, "index_offset 8192",
	     "index_offset 8192");
	CASE(0, (m.h.range_length = 3 * SPAN, m.h.nr_records = 4), -EINVAL,
	     0, "4 records, but the range touches only 3 spans",
	     "4 records for a range of 3 spans");
	CASE(0, m.h.nr_records = UINT64_MAX / 192 + 2, -EINVAL, 0,
	     "records, but the range touches only 33 spans",
	     "nr_records near 2^64 / 192 (overflow bait)");
	CASE(0, m.h.data_offset += PAGE, -EINVAL, 0, "data_offset 12288, "
	     "expected 8192", "data_offset a page late");
	CASE(MIMG_F_INCREMENT, m.h.data_pages = m.h.present_pages + 1,
	     -EINVAL, 0, "data_pages 271 above present_pages 270",
	     "data_pages above present_pages");
	CASE(0, (m.h.range_length = 64 * PAGE, m.h.nr_records = 1,
		 m.h.present_pages = 65), -EINVAL, 0,
	     "present_pages 65, but the range has only 64 pages",
	     "present_pages above the pages of the range");
	CASE(0, memset(m.h.image_id, 0, 16), -EINVAL, 0, "image_id is zero",
	     "image_id zero");
	CASE(MIMG_F_INCREMENT, memset(m.h.parent_id, 0, 16), -EINVAL, 0,
	     "increment without a parent_id", "INCREMENT, parent_id zero");
	CASE(0, m.h.parent_id[15] = 1, -EINVAL, 0, "parent_id set, but not "
	     "an increment", "parent_id set in a full image");
	CASE(MIMG_F_DELTA, m.h.base_fingerprint = 0, -EINVAL, 0,
	     "delta without a base_fingerprint", "DELTA, base_fingerprint 0");
	CASE(MIMG_F_INCREMENT, m.h.base_fingerprint = 9, -EINVAL, 0,
	     "base_fingerprint set, but not a delta",
	     "base_fingerprint set in an increment");
	/* the sums over the records */
	CASE(MIMG_F_INCREMENT, (m.h.data_pages++, m.data_len += PAGE,
				m.data = realloc(m.data, m.data_len),
				memset(m.data + m.data_len - PAGE, 0, PAGE)),
	     -EINVAL, 0, "data_pages 15, but the records store 14 pages",
	     "data_pages one more than the records store (file size right)");
	CASE(MIMG_F_INCREMENT, m.h.present_pages--, -EINVAL, 0,
	     "present_pages 269, but the records have 270 present pages",
	     "present_pages one less than the records have");
	CASE(0, m.pad_byte = 0x11, -EINVAL, 4096 + 4 * 192,
	     "padding after the index is not zero",
	     "a byte of the padding after the index set");
#undef CASE
}

static void test_record_rules(void)
{
	uint64_t p[MIMG_BITMAP_WORDS];
	struct img m;
	int fd;

#define REC(i)	(MIMG_HEADER_SIZE + (i) * MIMG_RECORD_SIZE)
#define CASE(flags, mutate, want, off, msg, what) do {			\
		img_sparse(&m, flags);					\
		mutate;							\
		img_open_fails(&m, want, off, msg, what);		\
		img_free(&m);						\
	} while (0)

	/* raw fields the struct does not carry */
	img_sparse(&m, 0);
	fd = img_write(&m);
	patch_record_byte(fd, 2, 24, 0x01);
	open_fails(fd, -EINVAL, REC(2), "record 2: unknown flags 0x1 (newer "
		   "format?)", "record 2 flags 1, crcs right");
	close(fd);
	fd = img_write(&m);
	patch_record_byte(fd, 1, 191, 0x80);
	open_fails(fd, -EINVAL, REC(1), "record 1: reserved bytes set (newer "
		   "format?)", "record 1 last reserved byte set, crcs right");
	close(fd);
	img_free(&m);

	CASE(MIMG_F_INCREMENT, (memset(m.r[2].present, 0, 64),
				memset(m.r[2].stored, 0, 64)),
	     -EINVAL, REC(2), "record 2: no page present",
	     "record 2 with no page present");
	CASE(MIMG_F_INCREMENT, mimg_set(m.r[3].stored, 17), -EINVAL, REC(3),
	     "record 3: stored page 17 is not present",
	     "record 3 stores page 17, which is not present");
	CASE(0, m.r[1].nr_stored++, -EINVAL, REC(1),
	     "record 1: nr_stored 67, but 66 pages are marked stored",
	     "record 1 nr_stored one too many");
	CASE(MIMG_F_INCREMENT, m.r[2].data_crc = 0x1234, -EINVAL, REC(2),
	     "record 2: data_crc 0x00001234 but no page stored",
	     "record 2 stores nothing but has a data_crc");
	CASE(0, mimg_set(m.r[1].present, 300), -EINVAL, REC(1),
	     "record 1: page 300 is present but not stored, in a full image",
	     "full image, record 1 page 300 present, not stored");
	CASE(0, mimg_set(m.r[3].present, 1), -EINVAL, REC(3),
	     "record 3: page 1 is present but not stored",
	     "full image, last record: an extra present page");
	CASE(MIMG_F_INCREMENT, mimg_set(m.r[3].present, 1), -EINVAL, REC(3),
	     "record 3: present page 1 (byte 67112960) is beyond the end of "
	     "the object (67108964 bytes)",
	     "present page past the object's last (partial) page");
	/* a range starting 6 pages into span 3: page 5 is one below it */
	img_init(&m, MIMG_F_INCREMENT, (64ull << 20) + 100, 3 * SPAN + 6 * PAGE,
		 15 * SPAN);
	memset(p, 0, sizeof(p));
	setbits(p, 5, 71);
	img_add(&m, 3, p, p);
	img_finish(&m);
	img_open_fails(&m, -EINVAL, REC(0), "record 0: present page 5 (byte "
		       "6311936) is outside the range [6316032, 37773312)",
		       "present page one below range_start");
	img_free(&m);
	CASE(MIMG_F_INCREMENT, m.h.range_length = 32 * SPAN,
	     -EINVAL, REC(3), "record 3: present page 0 (byte 67108864) is "
	     "outside the range [0, 67108864)",
	     "present page one past the range's end (inside the object)");
	CASE(MIMG_F_INCREMENT, (m.r[3].span = MIMG_MAX_SIZE / SPAN,
				m.h.object_size = MIMG_MAX_SIZE,
				m.h.range_length = MIMG_MAX_SIZE),
	     -EINVAL, REC(3), "record 3: span 262144 is beyond the largest "
	     "object", "span 2^18 (at 512 GiB)");
	CASE(MIMG_F_INCREMENT, m.r[2].span = 3, -EINVAL, REC(2),
	     "record 2: span 3 does not follow span 3",
	     "records 1 and 2 for the same span");
	CASE(MIMG_F_INCREMENT, (m.r[1].span = 20, img_finish(&m)), -EINVAL,
	     REC(2), "record 2: span 17 does not follow span 20",
	     "spans 20 then 17");
	CASE(MIMG_F_INCREMENT, m.r[0].data_offset += PAGE, -EINVAL, REC(0),
	     "record 0: data_offset 12288, expected 8192",
	     "record 0 data a page after the index");
	CASE(MIMG_F_INCREMENT, m.r[3].data_offset -= PAGE, -EINVAL, REC(3),
	     "record 3: data_offset", "record 3 data overlapping record 1's");
	CASE(MIMG_F_INCREMENT, (m.h.data_pages--, m.data_len -= PAGE),
	     -EINVAL, REC(3), "record 3: its data at offset 61440..65536 runs "
	     "past the end of the image's data (61440)",
	     "data_pages one short (file size to match): the last record's "
	     "data runs past the end");
#undef CASE
#undef REC
}

/* ------------------------------------------------------------------ api */

static void test_api(void)
{
	struct mimg_reader r;
	struct mimg_error e;
	struct img m;
	int fd, ret;

	memset(&e, 0, sizeof(e));
	ret = mimg_open(-1, &r, &e);
	tap_ok(ret == -EBADF && e.msg[0] && !r.records,
	       "mimg_open(-1): -EBADF with a message (\"%s\")", e.msg);
	mimg_close(&r);
	tap_ok(mimg_open(-1, &r, NULL) == -EBADF,
	       "mimg_open with err NULL: fails without crashing");
	mimg_close(&r);

	fd = open("/tmp", O_RDONLY | O_DIRECTORY);
	tap_require(fd >= 0);
	memset(&e, 0, sizeof(e));
	ret = mimg_open(fd, &r, &e);
	tap_ok(ret == -EISDIR, "mimg_open of a directory: the read's "
	       "-EISDIR (\"%s\")", e.msg);
	mimg_close(&r);
	close(fd);

	/* the file shrinks between open and the data reads */
	img_sparse(&m, 0);
	fd = img_write(&m);
	tap_require(!mimg_open(fd, &r, &e));
	tap_require(!ftruncate(fd, (off_t)m.r[3].data_offset));
	{
		uint8_t *buf = malloc(PAGE);

		tap_require(buf);
		ret = mimg_read_data(&r, 3, buf, &e);
		tap_ok(is_error(ret, &e, -EINVAL, m.r[3].data_offset + PAGE,
				"truncated"), "file truncated after open: "
		       "mimg_read_data says truncated at the expected end");
		free(buf);
	}
	ret = mimg_verify(&r, NULL, NULL, &e);
	tap_ok(is_error(ret, &e, -EINVAL, m.r[3].data_offset + PAGE,
			"truncated"), "file truncated after open: "
	       "mimg_verify says truncated at the expected end");
	mimg_close(&r);
	close(fd);

	/* decode_header sees the size it is told */
	{
		uint8_t blk[MIMG_HEADER_SIZE];
		struct mimg_header h;

		mimg_encode_header(&m.h, blk);
		ret = mimg_decode_header(blk, m.h.data_offset, &h, &e);
		tap_ok(is_error(ret, &e, -EINVAL, m.h.data_offset +
				m.h.data_pages * PAGE, "truncated"),
		       "mimg_decode_header with a file size short of the data: "
		       "truncated");
	}
	img_free(&m);
}

int main(void)
{
	test_crc();
	test_fingerprint();
	test_valid();
	test_damage();
	test_header_rules();
	test_record_rules();
	test_api();
	return tap_done();
}
