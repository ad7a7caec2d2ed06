#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * full-io: the loops that retry short reads and writes and EINTR, once for
 * the whole library (lib/full-io.h): the image reader, saves and loads,
 * and the copies of morsel_copy_in()/morsel_copy_out().
 */
#include "full-io.h"

#include <errno.h>
#include <stdbool.h>
#include <unistd.h>

#define IO_MAX		(1u << 30)	/* bytes per call */
#define AT_POSITION	(-1)		/* offset: the file position */

/* One read() or pread() (@off >= 0) of at most IO_MAX bytes. */
static ssize_t read_once(int fd, void *buf, size_t len, int64_t off)
{
	if (len > IO_MAX)
		len = IO_MAX;
	return off == AT_POSITION ? read(fd, buf, len) :
				    pread(fd, buf, len, (off_t)off);
}

static ssize_t write_once(int fd, const void *buf, size_t len, int64_t off)
{
	if (len > IO_MAX)
		len = IO_MAX;
	return off == AT_POSITION ? write(fd, buf, len) :
				    pwrite(fd, buf, len, (off_t)off);
}

static int64_t advance(int64_t off, size_t done)
{
	return off == AT_POSITION ? off : off + (int64_t)done;
}

static ssize_t read_until_done(int fd, void *buf, size_t len, int64_t off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = read_once(fd, (char *)buf + done, len - done,
			      advance(off, done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;	/* end of file */
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int write_until_done(int fd, const void *buf, size_t len, int64_t off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write_once(fd, (const char *)buf + done, len - done,
			       advance(off, done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Can [@off, @off + @len) be addressed by off_t? */
static bool range_fits(uint64_t off, size_t len)
{
	return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

ssize_t mp_read_full(int fd, void *buf, size_t len)
{
	return read_until_done(fd, buf, len, AT_POSITION);
}

ssize_t mp_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	if (!range_fits(off, len))
		return -EINVAL;
	return read_until_done(fd, buf, len, (int64_t)off);
}

int mp_write_full(int fd, const void *buf, size_t len)
{
	return write_until_done(fd, buf, len, AT_POSITION);
}

int mp_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	if (!range_fits(off, len))
		return -EINVAL;
	return write_until_done(fd, buf, len, (int64_t)off);
}
