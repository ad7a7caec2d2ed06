/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmorsel: a thin user-space library for morselfs / morsel.ko.
 *
 * In the style of liburing: every function returns 0 (or a non-negative
 * value such as a file descriptor) on success and a negative errno on
 * failure.  errno itself is not part of the interface (it may be clobbered).
 *
 *   int fd = morsel_create("demo", 2ULL << 30, 0600);   // /dev/morsel/demo
 *   void *p;
 *   int ret = morsel_map(fd, 0, PROT_READ | PROT_WRITE,
 *                        MORSEL_MAP_EAGER | MORSEL_MAP_POPULATE, &p);
 *   if (ret < 0)
 *           fprintf(stderr, "map: %s\n", strerror(-ret));
 *
 * Names: a path without a leading '/' is relative to the morselfs mount,
 * MORSEL_DIR ("/dev/morsel") unless the environment variable MORSEL_DIR
 * names another directory.
 */
#ifndef LIBMORSEL_H
#define LIBMORSEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/morsel.h>
#include "morsel-image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MORSEL_DIR		"/dev/morsel"
#define MORSEL_SYSFS_DIR	"/sys/kernel/morsel"
#define MORSEL_PAGE_SIZE	4096ULL

/*
 * morsel_map() flags.  MORSEL_MAP_POPULATE (uapi) is passed to
 * MORSEL_IOC_MAP and implies MORSEL_MAP_EAGER.
 */
#define MORSEL_MAP_EAGER	(1U << 16)	/* MORSEL_IOC_MAP the whole range */

/* Module-wide totals from /sys/kernel/morsel/ (see docs/semantics.md). */
struct morsel_totals_u {
	uint64_t morsels;
	uint64_t data_pages;
	uint64_t table_pages;
	uint64_t links;
	uint64_t mappers;
};

/* The morselfs directory: $MORSEL_DIR if set and non-empty, else MORSEL_DIR. */
const char *morsel_dir(void);

/*
 * Resolve @name (absolute, or relative to morsel_dir()) into @buf.
 * Returns 0, -EINVAL for an empty name, -ENAMETOOLONG if @len is too small.
 */
int morsel_path(const char *name, char *buf, size_t len);

/*
 * Create a new morsel of @size bytes with @mode.
 * Fails with -EEXIST if it exists.  Returns an O_RDWR|O_CLOEXEC fd or -errno.
 * If sizing fails the new file is removed again.
 */
int morsel_create(const char *path, uint64_t size, mode_t mode);

/* open(2) a morsel by name (O_CLOEXEC added).  Returns fd or -errno. */
int morsel_open(const char *path, int flags);

/* MORSEL_IOC_STAT.  @st is cleared and argsz set by the library. */
int morsel_stat(int fd, struct morsel_stat *st);

/*
 * mmap(MAP_SHARED) @size bytes of @fd from offset 0 (@size 0: the whole
 * object) with @prot; with MORSEL_MAP_EAGER or MORSEL_MAP_POPULATE in
 * @flags, then link the whole mapping at once (MORSEL_IOC_MAP).  On success
 * *@addr is the mapping; on failure nothing stays mapped.  -EINVAL for
 * unknown flags or a size-0 object.
 */
int morsel_map(int fd, uint64_t size, int prot, unsigned int flags,
	       void **addr);

/*
 * MORSEL_IOC_MAP on [@addr, @addr + @len) of the caller's mappings of @fd.
 * @flags: MORSEL_MAP_*.  @out (may be NULL) receives linked/pages counts.
 */
int morsel_link_range(int fd, void *addr, uint64_t len, unsigned int flags,
		      struct morsel_map *out);

/* munmap(2).  Returns 0 or -errno. */
int morsel_unmap(void *addr, uint64_t size);

/*
 * Parse a size: decimal digits with an optional binary suffix k, m, g, t
 * (either case; "4096", "4k", "2M", "1G", "64G", "100000"): sizes are in
 * bytes.  No sign, spaces, hex, fractions or extra characters.  Returns 0
 * and sets *@out, or -EINVAL (garbage, overflow); *@out is untouched on
 * error.
 */
int morsel_size_parse(const char *s, uint64_t *out);

/*
 * Format @bytes for humans into @buf: exact binary units when the value is
 * a whole multiple ("4K", "2M", "64G"), otherwise one decimal ("1.5G") or
 * plain bytes below 1 KiB.  Returns @buf.
 */
char *morsel_size_format(uint64_t bytes, char *buf, size_t len);

/* "none", "pte", "pmd", "pud" for MORSEL_LEVEL_*, "unknown" otherwise. */
const char *morsel_level_name(unsigned int level);

/*
 * Replace the contents of morsel @fd with those of @src_fd.  A regular
 * source is copied sparsely (SEEK_DATA/SEEK_HOLE, and all-zero pages are
 * skipped too): the morsel gets the source's size, in bytes,
 * and only pages with data get frames.  Any other source (pipe, tty) is
 * streamed to its end.  Fails with -EBUSY while the morsel is mapped.
 */
int morsel_copy_in(int fd, int src_fd);

/* Write the whole contents of morsel @fd (holes as zeros) to @dst_fd. */
int morsel_copy_out(int fd, int dst_fd);

/* MORSEL_IOC_FREEZE: make @fd's contents permanent (fd open for writing). */
int morsel_freeze(int fd);

/*
 * MORSEL_IOC_SPLIT: a new copy-on-write child of the frozen base @fd.
 * Returns the child's O_RDWR|O_CLOEXEC descriptor or -errno.  With @name
 * non-NULL the child is also given that name (see morsel_path()).
 */
int morsel_split(int fd, const char *name);

/*
 * MORSEL_IOC_SCAN over [@start, @start + @length) of @fd: fills the
 * bitmaps that are non-NULL (one bit per page, see the uapi header; each
 * needs (length / 4096 + 63) / 64 words) and @out (may be NULL) with the
 * counts and the new clean_gen.  @flags: MORSEL_SCAN_*; @gen is the
 * expected clean_gen for MORSEL_SCAN_IF_GEN.
 */
int morsel_scan(int fd, uint64_t start, uint64_t length, unsigned int flags,
		uint64_t gen, uint64_t *present, uint64_t *owned,
		uint64_t *dirty, struct morsel_scan *out);

/*
 * MORSEL_IOC_FILL: read @f->nr_pages consecutive pages of @src_fd from
 * @f->file_offset into the holes at the pages listed in @f->pages, with
 * @f->runs' crcs checked first under MORSEL_FILL_CRC (see the uapi
 * header).  Sets argsz and fd; @f gets filled, read, bad_run and crc back
 * even on failure.  Returns 0 or -errno.
 */
int morsel_fill(int fd, int src_fd, struct morsel_fill *f);

/* ---------------------------------------------------------------------
 * Persistence (lib/persist-*.c, docs/persistence.md): images on disk
 * in the format of lib/morsel-image.h.  These functions also fill @err
 * (may be NULL) with a message and, for a damaged image, the file offset
 * of the damage.
 */
struct morsel_progress {
	void (*fn)(uint64_t done, uint64_t total, void *arg);	/* or NULL */
	void *arg;
};

/* morsel_save() flags */
#define MORSEL_SAVE_DELTA	(1U << 0)	/* a child: only its own pages */
#define MORSEL_SAVE_FLAGS	(MORSEL_SAVE_DELTA)

struct morsel_save_opts {
	uint64_t start;		/* byte range, page aligned ... */
	uint64_t length;	/* ... 0: to the end of the object */
	const char *parent;	/* incremental: the chain's newest image */
	int base_fd;		/* MORSEL_SAVE_DELTA: the child's frozen base */
	unsigned int flags;	/* MORSEL_SAVE_* */
	struct morsel_progress progress;
};

/*
 * Save morsel @fd into the image @path, atomically (a temporary file,
 * fsync, rename, fsync of the directory: an interrupted save leaves the
 * previous @path intact).  With @o->parent, an increment holding only the
 * pages written since that image was saved (EINVAL if it was saved from
 * another object or range, ESTALE if a save it did not see cleaned the
 * object since).  With MORSEL_SAVE_DELTA, a child's own pages and the
 * fingerprint of its base.  @out (may be NULL) gets the header written.
 */
int morsel_save(int fd, const char *path, const struct morsel_save_opts *o,
		struct mimg_header *out, struct mimg_error *err);

/* morsel_load() flags */
#define MORSEL_LOAD_OVER	(1U << 0)	/* into the existing object */
#define MORSEL_LOAD_FLAGS	(MORSEL_LOAD_OVER)

struct morsel_load_opts {
	int base_fd;		/* the chain starts with a delta: its base */
	unsigned int flags;	/* MORSEL_LOAD_* */
	mode_t mode;		/* of a new object; 0: 0600 */
	struct morsel_progress progress;
};

/*
 * Load the chain @paths[0..@n) (a full or delta image, then increments in
 * order) into a new morsel @name (a child of @o->base_fd for a delta), or
 * over the existing one with MORSEL_LOAD_OVER (every image is verified
 * before anything changes).  Every data run is checked before use; a new
 * object is removed again on failure.  Returns an O_RDWR fd or -errno.
 */
int morsel_load(const char *const *paths, unsigned int n, const char *name,
		const struct morsel_load_opts *o, struct mimg_header *out,
		struct mimg_error *err);

/* Check every checksum of the chain @paths[0..@n) and its links. */
int morsel_image_verify(const char *const *paths, unsigned int n,
			const struct morsel_progress *pr,
			struct mimg_header *last, struct mimg_error *err);

/* Write the chain @paths[0..@n) as one image @out_path (atomically). */
int morsel_image_compact(const char *const *paths, unsigned int n,
			 const char *out_path, const struct morsel_progress *pr,
			 struct mimg_header *out, struct mimg_error *err);

/* The content fingerprint of morsel @fd, as a full image of it records. */
int morsel_fingerprint(int fd, uint64_t *fp, const struct morsel_progress *pr);

/*
 * Saves and loads keep up to 16 MiB of I/O buffers between calls (a fresh
 * buffer costs a zeroed page per 4 KiB on first use); this frees them.
 */
void morsel_persist_trim(void);

/* Read the module-wide totals from MORSEL_SYSFS_DIR. */
int morsel_totals(struct morsel_totals_u *t);

#ifdef __cplusplus
}
#endif

#endif /* LIBMORSEL_H */
