#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmorsel: see libmorsel.h.  Every function returns 0 (or an fd) or a
 * negative errno; errno is saved around cleanup calls so the value returned
 * is the one of the call that failed.
 */
#include "libmorsel.h"
#include "full-io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK	(1U << 20)	/* bytes per read/write in copies */

static uint64_t round_up_page(uint64_t v)
{
	return (v + MORSEL_PAGE_SIZE - 1) & ~(MORSEL_PAGE_SIZE - 1);
}

const char *morsel_dir(void)
{
	const char *d = getenv("MORSEL_DIR");

	return d && *d ? d : MORSEL_DIR;
}

int morsel_path(const char *name, char *buf, size_t len)
{
	const char *dir;
	size_t dl;
	int n;

	if (!name || !*name || !buf)
		return -EINVAL;
	if (name[0] == '/')
		n = snprintf(buf, len, "%s", name);
	else {
		dir = morsel_dir();
		dl = strlen(dir);
		while (dl > 1 && dir[dl - 1] == '/')
			dl--;
		n = snprintf(buf, len, "%.*s/%s", (int)dl, dir, name);
	}
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

int morsel_create(const char *path, uint64_t size, mode_t mode)
{
	char p[4096];
	int fd, ret, err;

	ret = morsel_path(path, p, sizeof(p));
	if (ret)
		return ret;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (size && ftruncate(fd, (off_t)size)) {
		err = errno;
		unlink(p);
		close(fd);
		return -err;
	}
	return fd;
}

int morsel_open(const char *path, int flags)
{
	char p[4096];
	int fd, ret;

	ret = morsel_path(path, p, sizeof(p));
	if (ret)
		return ret;
	fd = open(p, flags | O_CLOEXEC, 0666);
	return fd < 0 ? -errno : fd;
}

int morsel_stat(int fd, struct morsel_stat *st)
{
	if (!st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->argsz = sizeof(*st);
	return ioctl(fd, MORSEL_IOC_STAT, st) ? -errno : 0;
}

int morsel_freeze(int fd)
{
	struct morsel_freeze f;

	memset(&f, 0, sizeof(f));
	f.argsz = sizeof(f);
	return ioctl(fd, MORSEL_IOC_FREEZE, &f) ? -errno : 0;
}

int morsel_scan(int fd, uint64_t start, uint64_t length, unsigned int flags,
		uint64_t gen, uint64_t *present, uint64_t *owned,
		uint64_t *dirty, struct morsel_scan *out)
{
	struct morsel_scan s;

	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	s.flags = flags;
	s.start = start;
	s.length = length;
	s.present = (uintptr_t)present;
	s.owned = (uintptr_t)owned;
	s.dirty = (uintptr_t)dirty;
	s.gen = gen;
	if (ioctl(fd, MORSEL_IOC_SCAN, &s))
		return -errno;
	if (out)
		*out = s;
	return 0;
}

int morsel_fill(int fd, int src_fd, struct morsel_fill *f)
{
	f->argsz = sizeof(*f);
	f->fd = src_fd;
	return ioctl(fd, MORSEL_IOC_FILL, f) ? -errno : 0;
}

int morsel_split(int fd, const char *name)
{
	char path[4096], self[64];
	struct morsel_split s;
	int ret;

	memset(&s, 0, sizeof(s));
	s.argsz = sizeof(s);
	s.flags = MORSEL_SPLIT_CLOEXEC;
	if (ioctl(fd, MORSEL_IOC_SPLIT, &s))
		return -errno;
	if (!name)
		return s.fd;
	ret = morsel_path(name, path, sizeof(path));
	if (!ret) {
		/* An unnamed file gets a name through /proc (no capability). */
		snprintf(self, sizeof(self), "/proc/self/fd/%d", s.fd);
		if (linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW))
			ret = -errno;
	}
	if (ret) {
		close(s.fd);
		return ret;
	}
	return s.fd;
}

int morsel_link_range(int fd, void *addr, uint64_t len, unsigned int flags,
		      struct morsel_map *out)
{
	struct morsel_map m;

	memset(&m, 0, sizeof(m));
	m.argsz = sizeof(m);
	m.flags = flags;
	m.addr = (uintptr_t)addr;
	m.length = len;
	if (ioctl(fd, MORSEL_IOC_MAP, &m))
		return -errno;
	if (out)
		*out = m;
	return 0;
}

int morsel_map(int fd, uint64_t size, int prot, unsigned int flags,
	       void **addr)
{
	struct morsel_stat st;
	void *p;
	int ret, err;

	if (!addr || (flags & ~(MORSEL_MAP_EAGER | MORSEL_MAP_FLAGS)))
		return -EINVAL;
	if (!size) {
		ret = morsel_stat(fd, &st);
		if (ret)
			return ret;
		size = st.size;
		if (!size)
			return -EINVAL;
	}
	if (size > (uint64_t)SIZE_MAX - MORSEL_PAGE_SIZE)
		return -EINVAL;
	size = round_up_page(size);
	p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (flags & (MORSEL_MAP_EAGER | MORSEL_MAP_FLAGS)) {
		ret = morsel_link_range(fd, p, size, flags & MORSEL_MAP_FLAGS,
					NULL);
		if (ret) {
			err = errno;
			munmap(p, size);
			errno = err;
			return ret;
		}
	}
	*addr = p;
	return 0;
}

int morsel_unmap(void *addr, uint64_t size)
{
	if (size > (uint64_t)SIZE_MAX)
		return -EINVAL;
	return munmap(addr, (size_t)size) ? -errno : 0;
}

int morsel_size_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned int shift = 0;
	const char *p = s;

	if (!s || !out || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned int d = (unsigned int)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	switch (*p) {
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	case 't': case 'T':
		shift = 40;
		break;
	case '\0':
		break;
	default:
		return -EINVAL;
	}
	if (shift) {
		p++;
		if (p[0] == 'i' && p[1] == 'B')	/* "4KiB" */
			p += 2;
	}
	if (*p)
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	v <<= shift;
	*out = v;
	return 0;
}

char *morsel_size_format(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	int i;

	if (!buf || !len)
		return buf;
	for (i = 5; i >= 0; i--) {
		uint64_t unit = 1ULL << (10 * (i + 1));

		if (bytes < unit)
			continue;
		if (bytes % unit == 0)
			snprintf(buf, len, "%llu%c",
				 (unsigned long long)(bytes / unit), units[i]);
		else
			snprintf(buf, len, "%.1f%c",
				 (double)bytes / (double)unit, units[i]);
		return buf;
	}
	snprintf(buf, len, "%llu", (unsigned long long)bytes);
	return buf;
}

const char *morsel_level_name(unsigned int level)
{
	switch (level) {
	case MORSEL_LEVEL_NONE:
		return "none";
	case MORSEL_LEVEL_PTE:
		return "pte";
	case MORSEL_LEVEL_PMD:
		return "pmd";
	case MORSEL_LEVEL_PUD:
		return "pud";
	}
	return "unknown";
}

static int all_zero(const char *p, size_t n)
{
	return !n || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/*
 * Write @len bytes of @buf, which belong at file offset @off, leaving out
 * every whole or partial page (by absolute page boundaries) that is all
 * zeros: the morsel reads holes as zeros and was emptied beforehand.
 */
static int write_sparse(int fd, const char *buf, size_t len, off_t off)
{
	size_t i = 0, run = 0;
	int ret;

	while (i < len) {
		uint64_t pos = (uint64_t)off + i;
		size_t n = MORSEL_PAGE_SIZE - (pos & (MORSEL_PAGE_SIZE - 1));

		if (n > len - i)
			n = len - i;
		if (all_zero(buf + i, n)) {
			if (i > run) {
				ret = mp_pwrite_full(fd, buf + run, i - run,
						     (uint64_t)off + run);
				if (ret)
					return ret;
			}
			run = i + n;
		}
		i += n;
	}
	if (len > run)
		return mp_pwrite_full(fd, buf + run, len - run,
				      (uint64_t)off + run);
	return 0;
}

/* Copy [@start, @end) of regular file @src into @fd at the same offsets. */
static int copy_range(int fd, int src, off_t start, off_t end, char *buf)
{
	off_t pos = start;
	ssize_t n;
	int ret;

	while (pos < end) {
		size_t want = COPY_CHUNK;

		if ((off_t)want > end - pos)
			want = (size_t)(end - pos);
		n = mp_pread_full(src, buf, want, (uint64_t)pos);
		if (n < 0)
			return (int)n;
		if (n == 0)	/* the source shrank under us */
			break;
		ret = write_sparse(fd, buf, (size_t)n, pos);
		if (ret)
			return ret;
		pos += n;
	}
	return 0;
}

static int copy_in_regular(int fd, int src, off_t size, char *buf)
{
	off_t off = 0, data, hole;
	int ret;

	if (ftruncate(fd, 0))
		return -errno;
	if (ftruncate(fd, size))	/* sizes are in bytes */
		return -errno;
	while (off < size) {
		data = lseek(src, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)	/* only a hole is left */
				break;
			if (errno != EINVAL && errno != EOPNOTSUPP)
				return -errno;
			data = off;	/* no SEEK_DATA: all of it is data */
			hole = size;
		} else {
			hole = lseek(src, data, SEEK_HOLE);
			if (hole < 0 || hole > size)
				hole = size;
		}
		if (data >= size)
			break;
		ret = copy_range(fd, src, data, hole, buf);
		if (ret)
			return ret;
		off = hole;
	}
	return 0;
}

static int copy_in_stream(int fd, int src, char *buf)
{
	uint64_t total = 0;
	ssize_t have;
	int ret;

	if (ftruncate(fd, 0))
		return -errno;
	for (;;) {
		/* Whole chunks, so page boundaries stay aligned. */
		have = mp_read_full(src, buf, COPY_CHUNK);
		if (have < 0)
			return (int)have;
		if (!have)
			break;
		ret = write_sparse(fd, buf, (size_t)have, (off_t)total);
		if (ret)
			return ret;
		total += (uint64_t)have;
		if ((size_t)have < COPY_CHUNK)
			break;
	}
	/* Trailing zero pages were skipped: size the object explicitly. */
	if (ftruncate(fd, (off_t)total))
		return -errno;
	return 0;
}

int morsel_copy_in(int fd, int src_fd)
{
	struct stat st;
	char *buf;
	int ret;

	if (fstat(src_fd, &st))
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	buf = malloc(COPY_CHUNK);
	if (!buf)
		return -ENOMEM;
	if (S_ISREG(st.st_mode))
		ret = copy_in_regular(fd, src_fd, st.st_size, buf);
	else
		ret = copy_in_stream(fd, src_fd, buf);
	free(buf);
	return ret;
}

int morsel_copy_out(int fd, int dst_fd)
{
	uint64_t off = 0;
	char *buf;
	ssize_t n;
	int ret;

	buf = malloc(COPY_CHUNK);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		n = mp_pread_full(fd, buf, COPY_CHUNK, off);
		ret = n < 0 ? (int)n : 0;
		if (n <= 0)
			break;
		ret = mp_write_full(dst_fd, buf, (size_t)n);
		if (ret)
			break;
		off += (uint64_t)n;
	}
	free(buf);
	return ret;
}

static int read_u64_file(const char *dir, const char *name, uint64_t *out)
{
	char path[512], buf[64], *end;
	unsigned long long v;
	ssize_t n;
	int fd, err;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = '\0';
	if (buf[0] < '0' || buf[0] > '9')	/* negative or garbage */
		return -EIO;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || (*end && *end != '\n'))
		return -EIO;
	*out = v;
	return 0;
}

int morsel_totals(struct morsel_totals_u *t)
{
	struct morsel_totals_u v;
	const char *dir = MORSEL_SYSFS_DIR;
	int ret;

	if (!t)
		return -EINVAL;
	if ((ret = read_u64_file(dir, "morsels", &v.morsels)) ||
	    (ret = read_u64_file(dir, "data_pages", &v.data_pages)) ||
	    (ret = read_u64_file(dir, "table_pages", &v.table_pages)) ||
	    (ret = read_u64_file(dir, "links", &v.links)) ||
	    (ret = read_u64_file(dir, "mappers", &v.mappers)))
		return ret;
	*t = v;
	return 0;
}
