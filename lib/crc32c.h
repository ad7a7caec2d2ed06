/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crc32c: the CRC32C (Castagnoli) engine of libmorsel (lib/crc32c.c), for
 * the image format and the persistence code.  Its public names are the
 * mimg_crc32c*() of morsel-image.h.  Two engines: tables (slicing by 8)
 * and the SSE4.2 crc32 instruction; mp_crc32c() times both once and uses
 * the faster (MORSEL_CRC32C=hw|sw in the environment forces one: under
 * emulation the instruction is the slower).
 */
#ifndef MORSEL_CRC32C_H
#define MORSEL_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* crc32c(0, "123456789", 9) = 0xe3069283; crcs chain over buffers. */
uint32_t mp_crc32c(uint32_t crc, const void *buf, size_t len);

/* The two engines, for tests and benchmarks; see mimg_crc32c_hw(). */
uint32_t mp_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t mp_crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool mp_crc32c_hw_available(void);

#endif /* MORSEL_CRC32C_H */
