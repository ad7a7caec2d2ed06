#define _GNU_SOURCE
/*
 * Byte-exact sizes and the rest of what file systems promise (issue 14).
 * What this checks:
 *  - a 6-byte write makes a 6-byte file whose bytes read back and whose
 *    end is at 6; ftruncate takes any size up to the maximum; the root
 *    level follows the size in bytes; write() past the end extends to its
 *    last byte; O_APPEND appends at the exact end; statx and st_blocks;
 *  - bytes past the end of the last page read as zero after every way of
 *    growing (truncate up, write past the end, fallocate), even when a
 *    mapping stored garbage past the end first, and a shrink-then-grow
 *    never brings cut bytes back; the same in a copy-on-write child whose
 *    base had such garbage (the child copies the page to zero it);
 *  - a mapping: the partial last page is mapped whole and linkable, the
 *    page after it raises SIGBUS;
 *  - SEEK_HOLE at the end gives the exact size; SCAN covers the last
 *    partial page; an image saved and loaded keeps the exact size;
 *  - fallocate: zero range (also keeping the size), collapse and insert
 *    range refused with EOPNOTSUPP;
 *  - extended attributes in user. and trusted.: set, get, list, replace,
 *    remove, XATTR_CREATE/REPLACE, ENODATA, ERANGE, the per-inode limit
 *    (ENOSPC), trusted. refused to an unprivileged user, on directories;
 *  - fsync, fdatasync and sync succeed (memory: nothing to write);
 *    O_DIRECT opens work and are coherent with a mapping;
 *  - rename(NOREPLACE, EXCHANGE, WHITEOUT refused), link, unlink, rmdir
 *    of a non-empty directory;
 *  - mtime moves on write() and on a store through a mapping into a hole.
 */
#include <linux/falloc.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include "libmorsel.h"
#include "vm.h"

#define DIR "/dev/morsel/sz"

static char path_buf[128];

static const char *P(const char *name)
{
	snprintf(path_buf, sizeof(path_buf), DIR "/%s", name);
	return path_buf;
}

static int make(const char *name)
{
	return open(P(name), O_RDWR | O_CREAT | O_TRUNC, 0644);
}

/* Are @len bytes at @off of @fd all @v (read())? */
static int bytes_are(int fd, off_t off, size_t len, int v)
{
	static unsigned char buf[1 << 16];
	size_t i;

	if (len > sizeof(buf) || pread(fd, buf, len, off) != (ssize_t)len)
		return 0;
	for (i = 0; i < len; i++)
		if (buf[i] != (unsigned char)v)
			return 0;
	return 1;
}

/* Store @len bytes of @v at @off through a shared mapping of its page. */
static int store_mapped(int fd, off_t off, size_t len, int v)
{
	off_t page = off & ~(PG - 1);
	char *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, page);

	if (p == MAP_FAILED)
		return -1;
	memset(p + (off - page), v, len);
	munmap(p, PG);
	return 0;
}

/* Does the mapping of @fd's page at @off show @len zero bytes at @off? */
static int mapped_zero(int fd, off_t off, size_t len)
{
	off_t page = off & ~(PG - 1);
	char *p = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, page);
	size_t i;
	int zero = 1;

	if (p == MAP_FAILED)
		return 0;
	for (i = 0; i < len; i++)
		zero &= p[off - page + i] == 0;
	munmap(p, PG);
	return zero;
}

static void sizes(void)
{
	struct statx sx;
	struct stat st;
	char buf[16] = { 0 };
	int fd = make("hello"), afd;

	tap_ok(fd >= 0 && write(fd, "hello\n", 6) == 6 && fstat(fd, &st) == 0 &&
	       st.st_size == 6 && st.st_blocks == 8,
	       "a 6-byte write makes a 6-byte file (st_blocks 8: one page)");
	tap_ok(pread(fd, buf, sizeof(buf), 0) == 6 && !memcmp(buf, "hello\n", 6) &&
	       pread(fd, buf, 1, 6) == 0 && lseek(fd, 0, SEEK_END) == 6,
	       "its bytes read back, read at 6 is the end, SEEK_END is 6");
	tap_ok(ftruncate(fd, 4097) == 0 && size_of(fd) == 4097 &&
	       mstat(fd).level == MORSEL_LEVEL_PTE && bytes_are(fd, 6, 4091, 0),
	       "ftruncate to 4097: size 4097, level 1, the grown bytes zero");
	tap_ok(ftruncate(fd, 100000) == 0 && size_of(fd) == 100000 &&
	       ftruncate(fd, 2 * MiB + 1) == 0 && size_of(fd) == 2 * MiB + 1 &&
	       mstat(fd).level == MORSEL_LEVEL_PMD &&
	       ftruncate(fd, 1 * GiB + 5) == 0 &&
	       mstat(fd).level == MORSEL_LEVEL_PUD && size_of(fd) == 1 * GiB + 5,
	       "100000, 2 MiB + 1 (level 2), 1 GiB + 5 (level 3): exact sizes");
	tap_ok(ftruncate(fd, 1) == 0 && size_of(fd) == 1 && bytes_are(fd, 0, 1, 'h') &&
	       mstat(fd).level == MORSEL_LEVEL_PTE,
	       "back to 1 byte: level 1, the byte kept");
	tap_errno(ftruncate(fd, 512 * GiB + 1), EFBIG, "512 GiB + 1: EFBIG");
	tap_ok(ftruncate(fd, 512 * GiB) == 0 && ftruncate(fd, 0) == 0,
	       "512 GiB exactly, then 0");
	tap_ok(pwrite(fd, "abc", 3, 10) == 3 && size_of(fd) == 13 &&
	       bytes_are(fd, 0, 10, 0),
	       "write of 3 bytes at 10: size 13, the gap zero");
	afd = open(P("hello"), O_WRONLY | O_APPEND);
	tap_ok(afd >= 0 && write(afd, "XY", 2) == 2 && size_of(fd) == 15 &&
	       pread(fd, buf, 2, 13) == 2 && !memcmp(buf, "XY", 2),
	       "O_APPEND writes at the exact end (15)");
	close(afd);
	tap_ok(statx(fd, "", AT_EMPTY_PATH, STATX_SIZE | STATX_BLOCKS, &sx) == 0 &&
	       sx.stx_size == 15 && sx.stx_blocks == 8,
	       "statx: size 15, 8 blocks");
	close(fd);
}

static void post_eof(void)
{
	int fd = make("eof"), base, child;
	char page[4096];

	memset(page, 0x5a, sizeof(page));
	tap_require(fd >= 0 && pwrite(fd, page, 100, 0) == 100, "eof");
	tap_ok(store_mapped(fd, 100, 3996, 0xee) == 0 && size_of(fd) == 100 &&
	       pread(fd, page, 200, 0) == 100,
	       "a store through a mapping past the end changes neither size nor read()");
	tap_ok(ftruncate(fd, 8192) == 0 && bytes_are(fd, 100, 8092, 0) &&
	       mapped_zero(fd, 100, 3996),
	       "truncate up: the bytes past the old end read zero (read and mapping)");
	tap_ok(store_mapped(fd, 8000, 192, 0xee) == 0 && ftruncate(fd, 7000) == 0 &&
	       ftruncate(fd, 8192) == 0 && bytes_are(fd, 7000, 1192, 0),
	       "shrink then grow: the cut bytes never come back");
	tap_ok(ftruncate(fd, 5000) == 0 &&
	       store_mapped(fd, 5000, 100, 0xee) == 0 &&
	       pwrite(fd, "w", 1, 6000) == 1 && bytes_are(fd, 5000, 1000, 0),
	       "write past the end: the gap reads zero despite mapped garbage");
	tap_ok(store_mapped(fd, 6001, 50, 0xee) == 0 &&
	       fallocate(fd, 0, 0, 7000) == 0 && size_of(fd) == 7000 &&
	       bytes_are(fd, 6001, 999, 0),
	       "fallocate past the end: the grown bytes read zero");
	close(fd);

	/* A child of a base with garbage past its end. */
	base = make("eof_base");
	tap_require(base >= 0 && pwrite(base, page, 100, 0) == 100 &&
		    store_mapped(base, 200, 100, 0xee) == 0 && freeze(base) == 0,
		    "base");
	child = split(base);
	tap_ok(child >= 0 && size_of(child) == 100 && ftruncate(child, 8192) == 0 &&
	       bytes_are(child, 100, 8092, 0) && bytes_are(child, 0, 100, 0x5a) &&
	       size_of(base) == 100 && data_of(child) == 1,
	       "a child grown over its base's garbage reads zero there (it copied the page)");
	close(child);
	close(base);
}

static void mapping(void)
{
	int fd = make("map");
	volatile unsigned char *p;
	unsigned char v;
	struct morsel_map m = { .argsz = sizeof(m) };

	tap_require(fd >= 0 && ftruncate(fd, 2 * MiB + 100) == 0, "map");
	p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED, "mmap");
	probe_init();
	tap_ok(try_write(p + 2 * MiB + 50, 7) == 0 &&
	       try_write(p + 2 * MiB + 4000, 9) == 0 &&
	       try_read(p + 2 * MiB + 4096, &v) == SIGBUS &&
	       try_read(p + 3 * MiB, &v) == SIGBUS,
	       "the partial last page is mapped whole; the page after it raises SIGBUS");
	tap_ok(bytes_are(fd, 2 * MiB + 50, 1, 7) && size_of(fd) == 2 * MiB + 100,
	       "a store inside the size is seen by read(); the size stays");
	m.addr = (uintptr_t)p;
	m.length = 4 * MiB;
	tap_ok(ioctl(fd, MORSEL_IOC_MAP, &m) == 0 && links(fd) == 2,
	       "both granules are linked, the last one partial (links %lu)",
	       links(fd));
	munmap((void *)p, 4 * MiB);
	close(fd);
}

static void layout(void)
{
	uint64_t present[2] = { 0 };
	struct morsel_scan s = { .argsz = sizeof(s) };
	struct mimg_error err;
	const char *img = "/tmp/sz.img";
	int fd = make("layout"), back;
	char buf[64];

	tap_require(fd >= 0 && pwrite(fd, "tail", 4, 3 * PG + 10) == 4, "layout");
	tap_ok(size_of(fd) == 3 * PG + 14 && lseek(fd, 0, SEEK_DATA) == 3 * PG &&
	       lseek(fd, 3 * PG, SEEK_HOLE) == 3 * PG + 14,
	       "SEEK_DATA finds the last page, SEEK_HOLE after it is the exact size");
	s.length = 4 * PG;
	s.present = (uintptr_t)present;
	tap_ok(ioctl(fd, MORSEL_IOC_SCAN, &s) == 0 && present[0] == 8,
	       "SCAN covers the partial last page (bits %#llx)",
	       (unsigned long long)present[0]);
	tap_ok(morsel_save(fd, img, &(struct morsel_save_opts){ .base_fd = -1 },
			   NULL, &err) == 0,
	       "an object of %lld bytes saves (%s)", 3 * PG + 14, err.msg);
	back = morsel_load((const char *[]){ img }, 1, P("layout2"),
			   &(struct morsel_load_opts){ .base_fd = -1 }, NULL, &err);
	tap_ok(back >= 0 && size_of(back) == 3 * PG + 14 &&
	       pread(back, buf, 4, 3 * PG + 10) == 4 && !memcmp(buf, "tail", 4),
	       "and loads back with its exact size (%lld)", size_of(back));
	close(back);
	unlink(img);
	close(fd);
}

static void fallocate_modes(void)
{
	int fd = make("falloc");
	char page[4096];

	memset(page, 0x33, sizeof(page));
	tap_require(fd >= 0 && pwrite(fd, page, 4096, 0) == 4096 &&
		    pwrite(fd, page, 4096, 4096) == 4096, "falloc");
	tap_ok(fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 5000) == 0 &&
	       bytes_are(fd, 0, 100, 0x33) && bytes_are(fd, 100, 5000, 0) &&
	       bytes_are(fd, 5100, 8192 - 5100, 0x33) && data_of(fd) == 2,
	       "zero range inside: zeros there, the rest kept, pages allocated");
	tap_ok(fallocate(fd, FALLOC_FL_ZERO_RANGE, 8000, 4000) == 0 &&
	       size_of(fd) == 12000 && bytes_are(fd, 8000, 4000, 0),
	       "zero range past the end extends to its end (12000)");
	tap_ok(fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 11000, 9000) == 0 &&
	       size_of(fd) == 12000,
	       "zero range with KEEP_SIZE keeps the size");
	tap_errno(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), EOPNOTSUPP,
		  "collapse range: EOPNOTSUPP");
	tap_errno(fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, 4096), EOPNOTSUPP,
		  "insert range: EOPNOTSUPP");
	close(fd);
}

static void xattrs_user_side(void)
{
	tap_errno(setxattr(P("xa"), "trusted.t", "v", 1, 0), EPERM,
		  "an unprivileged user cannot set trusted. attributes");
	tap_ok(setxattr(P("xa_user"), "user.mine", "m", 1, 0) == 0,
	       "an unprivileged user sets user. attributes on its own file");
}

static void xattrs(void)
{
	char buf[256], big[4096];
	ssize_t n;
	int fd = make("xa"), i, err = 0;

	tap_require(fd >= 0, "xa");
	tap_ok(setxattr(P("xa"), "user.color", "blue", 4, 0) == 0 &&
	       getxattr(P("xa"), "user.color", buf, sizeof(buf)) == 4 &&
	       !memcmp(buf, "blue", 4) &&
	       getxattr(P("xa"), "user.color", NULL, 0) == 4,
	       "user. set and get (and the size query)");
	tap_ok(setxattr(P("xa"), "trusted.t", "x", 1, 0) == 0 &&
	       (n = listxattr(P("xa"), buf, sizeof(buf))) == 21 &&
	       !memcmp(buf, "user.color\0trusted.t\0", 21),
	       "trusted. as root; listxattr lists both");
	tap_errno(setxattr(P("xa"), "user.color", "red", 3, XATTR_CREATE), EEXIST,
		  "XATTR_CREATE of an existing name: EEXIST");
	tap_errno(setxattr(P("xa"), "user.none", "red", 3, XATTR_REPLACE), ENODATA,
		  "XATTR_REPLACE of a missing name: ENODATA");
	tap_errno(getxattr(P("xa"), "user.color", buf, 2), ERANGE,
		  "a buffer too small: ERANGE");
	tap_ok(setxattr(P("xa"), "user.color", "green", 5, XATTR_REPLACE) == 0 &&
	       getxattr(P("xa"), "user.color", buf, sizeof(buf)) == 5 &&
	       removexattr(P("xa"), "user.color") == 0,
	       "replace and remove");
	tap_errno(getxattr(P("xa"), "user.color", buf, sizeof(buf)), ENODATA,
		  "a removed name: ENODATA");
	memset(big, 'b', sizeof(big));
	for (i = 0; i < 64 && !err; i++) {
		snprintf(buf, sizeof(buf), "user.big%d", i);
		if (setxattr(P("xa"), buf, big, sizeof(big), 0))
			err = errno;
	}
	tap_ok(err == ENOSPC && i > 10,
	       "the per-inode space ends with ENOSPC (after %d of 4 KiB)", i - 1);
	tap_ok(mkdir(P("xadir"), 0755) == 0 &&
	       setxattr(P("xadir"), "user.d", "1", 1, 0) == 0 &&
	       getxattr(P("xadir"), "user.d", buf, sizeof(buf)) == 1,
	       "attributes on a directory");
	close(fd);
	fd = open(P("xa_user"), O_RDWR | O_CREAT, 0644);
	tap_require(fd >= 0 && fchown(fd, 1000, 1000) == 0, "xa_user");
	close(fd);
	tap_run_as(1000, 1000, xattrs_user_side);
}

static void file_system(void)
{
	struct timespec t0;
	struct stat st;
	char page[4096];
	char *p;
	int fd = make("fs"), d;

	/* Sized first: a mapped object cannot change size (yet). */
	tap_ok(fd >= 0 && ftruncate(fd, PG) == 0 && pwrite(fd, "x", 1, 0) == 1 &&
	       fsync(fd) == 0 &&
	       fdatasync(fd) == 0 && syncfs(fd) == 0,
	       "fsync, fdatasync and syncfs succeed");
	d = open(P("fs"), O_RDWR | O_DIRECT);
	tap_diag("O_DIRECT open: %d (%s)", d, d < 0 ? strerror(errno) : "ok");
	p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	memset(page, 0x44, sizeof(page));
	tap_ok(d >= 0 && p != MAP_FAILED && pwrite(d, page, 4096, 0) == 4096 &&
	       p[100] == 0x44 && (p[200] = 0x55, pread(d, page, 4096, 0) == 4096) &&
	       page[200] == 0x55,
	       "an O_DIRECT open works, coherent with a mapping both ways");
	if (p != MAP_FAILED)
		munmap(p, PG);
	close(d);

	fstat(fd, &st);
	t0 = st.st_mtim;
	usleep(20000);
	tap_ok(pwrite(fd, "y", 1, 1) == 1 && fstat(fd, &st) == 0 &&
	       (st.st_mtim.tv_sec != t0.tv_sec || st.st_mtim.tv_nsec != t0.tv_nsec),
	       "write() moves mtime");
	t0 = st.st_mtim;
	tap_require(ftruncate(fd, 4 * PG) == 0, "grow");
	fstat(fd, &st);
	t0 = st.st_mtim;
	usleep(20000);
	p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_ok(p != MAP_FAILED && (p[3 * PG] = 1, fstat(fd, &st) == 0) &&
	       (st.st_mtim.tv_sec != t0.tv_sec || st.st_mtim.tv_nsec != t0.tv_nsec),
	       "a store through a mapping into a hole moves mtime");
	if (p != MAP_FAILED)
		munmap(p, 4 * PG);
	close(fd);

	/* Names. */
	tap_ok(close(open(P("n1"), O_CREAT | O_RDWR, 0600)) == 0 &&
	       close(open(P("n2"), O_CREAT | O_RDWR, 0600)) == 0,
	       "two names");
	tap_errno(renameat2(AT_FDCWD, P("n1"), AT_FDCWD, DIR "/n2", RENAME_NOREPLACE),
		  EEXIST, "RENAME_NOREPLACE over an existing name: EEXIST");
	tap_ok(renameat2(AT_FDCWD, DIR "/n1", AT_FDCWD, DIR "/n2", RENAME_EXCHANGE) == 0,
	       "RENAME_EXCHANGE swaps two names");
	tap_errno(renameat2(AT_FDCWD, DIR "/n1", AT_FDCWD, DIR "/n3", RENAME_WHITEOUT),
		  EINVAL, "RENAME_WHITEOUT: EINVAL");
	tap_ok(link(DIR "/n1", DIR "/n4") == 0 && stat(DIR "/n4", &st) == 0 &&
	       st.st_nlink == 2 && unlink(DIR "/n4") == 0,
	       "link makes a second name (nlink 2); unlink removes it");
	tap_ok(mkdir(DIR "/dd", 0755) == 0 &&
	       close(open(DIR "/dd/f", O_CREAT | O_RDWR, 0600)) == 0,
	       "a directory with a file");
	tap_errno(rmdir(DIR "/dd"), ENOTEMPTY, "rmdir of a non-empty directory: ENOTEMPTY");
	tap_errno(link(DIR "/dd", DIR "/dd2"), EPERM, "link of a directory: EPERM");
	tap_ok(unlink(DIR "/dd/f") == 0 && rmdir(DIR "/dd") == 0, "emptied, it goes");
}

int main(void)
{
	long morsels = total("morsels");
	const char *names[] = { "hello", "eof", "eof_base", "map", "layout",
				"layout2", "falloc", "xa", "xa_user", "fs", "n1",
				"n2" };
	unsigned int i;

	mkdir(DIR, 01777);
	sizes();
	post_eof();
	mapping();
	layout();
	fallocate_modes();
	xattrs();
	file_system();
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(P(names[i]));
	rmdir(P("xadir"));
	tap_ok(rmdir(DIR) == 0 && total("morsels") == morsels,
	       "every object is gone (morsels %ld, %ld before)",
	       total("morsels"), morsels);
	return tap_done();
}
