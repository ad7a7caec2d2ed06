/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * full-io: whole reads and writes (lib/full-io.c), the library's one set.
 *
 * read(2) and write(2) may move fewer bytes than asked (a signal, a pipe,
 * the 2 GiB limit of one call) or fail with EINTR; these loop until all of
 * @len moved, the file ended (reads) or a real error came.  The p-variants
 * work at a file offset, the others at the file position (pipes, ttys).
 *
 * Library-internal: mp_ ("morsel private") names are external symbols of
 * libmorsel.a that no public header declares.
 */
#ifndef MORSEL_FULL_IO_H
#define MORSEL_FULL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes read: less than @len only at end of file; or -errno. */
ssize_t mp_read_full(int fd, void *buf, size_t len);
ssize_t mp_pread_full(int fd, void *buf, size_t len, uint64_t off);

/* 0 once all of @len is written; -errno, or -EIO if nothing could be. */
int mp_write_full(int fd, const void *buf, size_t len);
int mp_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

#endif /* MORSEL_FULL_IO_H */
