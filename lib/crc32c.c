#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crc32c: the CRC32C engine behind mp_crc32c() (lib/crc32c.h).  It owns
 * the tables, the SSE4.2 path with its three interleaved streams, and the
 * one-time choice between the two (timed, or MORSEL_CRC32C=hw|sw).  Used
 * by the image format (morsel-image.c) and the persistence code.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_HW_CRC 1
#else
#define HAVE_HW_CRC 0
#endif

/* A little-endian word at @p, on any host (one load on x86). */
static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/*
 * CRC32C, reflected polynomial 0x82f63b78.  The engines below work on the
 * raw register (no inversion); mp_crc32c() adds the customary ~ on the
 * way in and out, so crcs chain: crc(crc(0, a), b) == crc(0, a b).
 */
#define CRC32C_POLY	0x82f63b78u

/* Slicing by 8: crc_table[k][b] is byte b followed by k zero bytes. */
static uint32_t crc_table[8][256];

#if HAVE_HW_CRC
/*
 * The hardware path runs three independent crcs over three adjacent
 * blocks of HW_BLOCK bytes (the crc32 instruction has a latency of 3
 * cycles and a throughput of 1), then joins them: the register after
 * "A B" is shift(register after A) ^ (register of B from 0), where shift
 * advances a register over HW_BLOCK zero bytes, a linear map that
 * shift_table applies a byte at a time.
 */
#define HW_BLOCK	256u	/* 3 x 256: the fastest out of cache here */
static uint32_t shift_table[4][256];
static bool hw_ok;
static bool use_hw;	/* hw_ok, and faster here (see hw_is_faster()) */
static uint32_t crc_hw_raw(uint32_t crc, const uint8_t *p, size_t len);
#endif

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static uint32_t crc_sw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = crc >> 8 ^ crc_table[0][(crc ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w = get_le64(p) ^ crc;

		crc = crc_table[7][w & 0xff] ^
		      crc_table[6][(w >> 8) & 0xff] ^
		      crc_table[5][(w >> 16) & 0xff] ^
		      crc_table[4][(w >> 24) & 0xff] ^
		      crc_table[3][(w >> 32) & 0xff] ^
		      crc_table[2][(w >> 40) & 0xff] ^
		      crc_table[1][(w >> 48) & 0xff] ^
		      crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc >> 8 ^ crc_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if HAVE_HW_CRC
static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Is the crc32 instruction faster than the tables on this CPU?  On real
 * hardware by an order of magnitude; under emulation (QEMU TCG runs the
 * instruction a bit at a time) slower by as much, and the test VMs are
 * emulated.  Best of three 64 KiB runs each; MORSEL_CRC32C=hw|sw decides
 * instead.
 */
static bool hw_is_faster(void)
{
	static uint8_t buf[64 << 10];
	const char *force = getenv("MORSEL_CRC32C");
	double hw = 1e9, sw = 1e9, t;
	volatile uint32_t sink = 0;
	size_t i;
	int r;

	if (force && !strcmp(force, "hw"))
		return true;
	if (force && !strcmp(force, "sw"))
		return false;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 9));
	for (r = 0; r < 3; r++) {
		t = seconds();
		sink ^= crc_hw_raw(0, buf, sizeof(buf));
		t = seconds() - t;
		hw = t < hw ? t : hw;
		t = seconds();
		sink ^= crc_sw_raw(0, buf, sizeof(buf));
		t = seconds() - t;
		sw = t < sw ? t : sw;
	}
	(void)sink;
	return hw <= sw;
}
#endif

/* crc_table: slicing by 8 for the reflected polynomial. */
static void table_init(void)
{
	unsigned int i, k;

	for (i = 0; i < 256; i++) {
		uint32_t c = i;

		for (k = 0; k < 8; k++)
			c = c & 1 ? c >> 1 ^ CRC32C_POLY : c >> 1;
		crc_table[0][i] = c;
	}
	for (k = 1; k < 8; k++)
		for (i = 0; i < 256; i++)
			crc_table[k][i] = crc_table[k - 1][i] >> 8 ^
				crc_table[0][crc_table[k - 1][i] & 0xff];
}

#if HAVE_HW_CRC
/* shift_table (from crc_table), and whether to use the instruction. */
static void hw_init(void)
{
	static const uint8_t zero[HW_BLOCK];
	uint32_t col[32];
	unsigned int i, j, k;

	/* col[k]: where register bit k lands after HW_BLOCK zeros */
	for (k = 0; k < 32; k++)
		col[k] = crc_sw_raw(1u << k, zero, HW_BLOCK);
	for (j = 0; j < 4; j++)
		for (i = 0; i < 256; i++) {
			uint32_t v = 0;

			for (k = 0; k < 8; k++)
				if (i >> k & 1)
					v ^= col[j * 8 + k];
			shift_table[j][i] = v;
		}
	__builtin_cpu_init();	/* we may run before its constructor */
	hw_ok = __builtin_cpu_supports("sse4.2");
	use_hw = hw_ok && hw_is_faster();
}
#endif

static void crc_init(void)
{
	table_init();
#if HAVE_HW_CRC
	hw_init();
#endif
}

#if HAVE_HW_CRC
static uint32_t crc_shift(uint32_t c)
{
	return shift_table[0][c & 0xff] ^ shift_table[1][(c >> 8) & 0xff] ^
	       shift_table[2][(c >> 16) & 0xff] ^ shift_table[3][c >> 24];
}

static uint64_t load64(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, 8);	/* x86 is little-endian */
	return w;
}

__attribute__((target("sse4.2")))
static uint32_t crc_hw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 3 * HW_BLOCK) {
		uint64_t a = c, b = 0, d = 0;
		size_t i;

		for (i = 0; i < HW_BLOCK; i += 8) {
			a = _mm_crc32_u64(a, load64(p + i));
			b = _mm_crc32_u64(b, load64(p + HW_BLOCK + i));
			d = _mm_crc32_u64(d, load64(p + 2 * HW_BLOCK + i));
		}
		c = crc_shift(crc_shift((uint32_t)a) ^ (uint32_t)b) ^
		    (uint32_t)d;
		p += 3 * HW_BLOCK;
		len -= 3 * HW_BLOCK;
	}
	while (len >= 8) {
		c = _mm_crc32_u64(c, load64(p));
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

/*
 * The two engines, for the host test (which checks that they agree) and
 * benchmarks.  Callers use mp_crc32c().
 */
uint32_t mp_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return ~crc_sw_raw(~crc, buf, len);
}

bool mp_crc32c_hw_available(void)
{
	pthread_once(&crc_once, crc_init);
#if HAVE_HW_CRC
	return hw_ok;
#else
	return false;
#endif
}

uint32_t mp_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
#if HAVE_HW_CRC
	if (hw_ok)
		return ~crc_hw_raw(~crc, buf, len);
#endif
	return ~crc_sw_raw(~crc, buf, len);
}

uint32_t mp_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
#if HAVE_HW_CRC
	if (use_hw)
		return ~crc_hw_raw(~crc, buf, len);
#endif
	return ~crc_sw_raw(~crc, buf, len);
}
