/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * morsel: memory objects that are page-table subtrees.
 *
 * A morsel is a regular file in a morselfs mount.  Its contents live in a
 * subtree of x86-64 page tables owned by the object; mmap(MAP_SHARED) links
 * that subtree into the caller's page tables instead of copying entries.
 *
 * Extensible arguments.  Every ioctl takes one struct whose first field,
 * @argsz, is the size of that struct as the caller was built with, and
 * command numbers carry no size (_IO), so a struct can grow at its end
 * without a new command:
 *  - @argsz below the struct's first published size (MORSEL_*_SIZE_VER0)
 *    is EINVAL;
 *  - a caller built with an older, smaller struct gets the fields it does
 *    not know as zero (their defaults);
 *  - a caller built with a newer, larger struct is served if every byte
 *    past the kernel's struct is zero, else E2BIG (it asked for something
 *    this kernel cannot do); @argsz above 4096 is E2BIG;
 *  - output is written up to the smaller of @argsz and the kernel's size.
 * This is copy_struct_from_user(), as openat2(), clone3() and iommufd use
 * it.  Unknown flags are EINVAL; a field documented "must be 0" is EINVAL
 * when set.
 *
 * This convention replaced, once, in session 6 (issue 11), the first one
 * (size in the command number, @argsz equal to it, reserved arrays):
 * binaries built against the old header get ENOTTY.
 */
#ifndef _UAPI_LINUX_MORSEL_H
#define _UAPI_LINUX_MORSEL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define MORSELFS_MAGIC		0x6d6f7273	/* "mors" */

/* Granules a mapping links at, and the largest object. */
#define MORSEL_PTE_SPAN		(1ULL << 21)	/* one PTE table: 2 MiB */
#define MORSEL_PMD_SPAN		(1ULL << 30)	/* one PMD table: 1 GiB */
#define MORSEL_MAX_SIZE		(1ULL << 39)	/* one PUD table: 512 GiB */

/* Root levels reported by MORSEL_IOC_STAT. */
#define MORSEL_LEVEL_NONE	0	/* size 0: no table yet */
#define MORSEL_LEVEL_PTE	1	/* root is a PTE table (<= 2 MiB) */
#define MORSEL_LEVEL_PMD	2	/* root is a PMD table (<= 1 GiB) */
#define MORSEL_LEVEL_PUD	3	/* root is a PUD table (<= 512 GiB) */

/* MORSEL_IOC_STAT state bits */
#define MORSEL_STATE_FROZEN	(1U << 0)	/* contents never change */

/**
 * struct morsel_stat - usage figures of one morsel (MORSEL_IOC_STAT)
 * @argsz:       in: sizeof(struct morsel_stat) as the caller knows it
 * @flags:       in: must be 0
 * @size:        out: size in bytes
 * @level:       out: MORSEL_LEVEL_* of the root table
 * @state:       out: MORSEL_STATE_* bits
 * @data_pages:  out: 4 KiB data frames the object owns
 * @table_pages: out: page-table pages the object owns
 * @links:       out: table links currently present in address spaces
 * @mappers:     out: VMAs currently mapping the object
 * @parent:      out: inode number of the base this child was split from,
 *               0 for an object that is not a child
 * @children:    out: children split from this object that still exist
 * @borrowed_pages: out: pages a child reads from its base (not owned)
 * @id:          out: a random non-zero number naming this object for as
 *               long as it exists (images record it: an incremental save
 *               refuses a different object)
 * @clean_gen:   out: the dirty-tracking generation: how many
 *               MORSEL_SCAN_CLEAN scans this object has seen
 *
 * Output fields are ignored on input.
 */
struct morsel_stat {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 size;
	__u32 level;
	__u32 state;
	__aligned_u64 data_pages;
	__aligned_u64 table_pages;
	__aligned_u64 links;
	__aligned_u64 mappers;
	__aligned_u64 parent;
	__aligned_u64 children;
	__aligned_u64 borrowed_pages;
	__aligned_u64 id;
	__aligned_u64 clean_gen;
};

/* MORSEL_IOC_MAP flags */
#define MORSEL_MAP_POPULATE	(1U << 0)	/* allocate every frame first */
#define MORSEL_MAP_FLAGS	(MORSEL_MAP_POPULATE)

/**
 * struct morsel_map - link an existing mapping eagerly (MORSEL_IOC_MAP)
 * @argsz:    in: sizeof(struct morsel_map)
 * @flags:    in: MORSEL_MAP_*
 * @addr:     in: start of a range of the caller's mappings of this file,
 *            page aligned
 * @length:   in: length of the range, page aligned, non-zero
 * @linked:   out: table links made by this call
 * @pages:    out: pages mapped one by one (parts of the range that do not
 *            cover a whole 2 MiB granule, or read-only 2 MiB granules)
 *
 * After success every populated page of the range is accessible without a
 * further page fault.  The range must lie entirely inside VMAs that map the
 * same morsel (EINVAL otherwise) and allow reading (EACCES otherwise); the
 * descriptor must be open for reading (EBADF otherwise).
 */
struct morsel_map {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 addr;
	__aligned_u64 length;
	__aligned_u64 linked;
	__aligned_u64 pages;
};

/**
 * struct morsel_freeze - make an object's contents permanent (MORSEL_IOC_FREEZE)
 * @argsz:    in: sizeof(struct morsel_freeze)
 * @flags:    in: must be 0
 *
 * From then on nothing changes the contents: write(), truncate and
 * fallocate fail with EPERM, mmap(PROT_WRITE) with EPERM, mprotect adding
 * PROT_WRITE with EACCES, and a store through a mapping made before (whose
 * leaf entries are write-protected in every mapper) raises SIGSEGV.
 * Freezing a frozen object succeeds and does nothing.  Needs a file opened
 * for writing (EBADF otherwise).
 */
struct morsel_freeze {
	__u32 argsz;
	__u32 flags;
};

/* MORSEL_IOC_SPLIT flags */
#define MORSEL_SPLIT_CLOEXEC	(1U << 0)	/* O_CLOEXEC on the new fd */
#define MORSEL_SPLIT_FLAGS	(MORSEL_SPLIT_CLOEXEC)

/**
 * struct morsel_split - create a copy-on-write child (MORSEL_IOC_SPLIT)
 * @argsz:    in: sizeof(struct morsel_split)
 * @flags:    in: MORSEL_SPLIT_*
 * @fd:       out: an O_RDWR descriptor of the new, unnamed child; give it a
 *            name with linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)
 * @__pad:    must be 0 (keeps the struct a multiple of 8 bytes)
 *
 * The base (the ioctl's file) must be frozen (EINVAL otherwise) and open
 * for reading (EBADF otherwise).  The child has the base's size and
 * contents and shares its frames and tables; the first write to a page
 * copies that page into a frame the child owns.  The base lives while a
 * child does.  The child is created in the base's directory (needs write
 * and search permission there, as O_TMPFILE), owned by the caller, with
 * the base's group and the base's permission bits less the umask.
 */
struct morsel_split {
	__u32 argsz;
	__u32 flags;
	__s32 fd;
	__u32 __pad;
};

/* MORSEL_IOC_SCAN flags */
#define MORSEL_SCAN_CLEAN	(1U << 0)	/* mark the dirty pages clean */
#define MORSEL_SCAN_IF_GEN	(1U << 1)	/* only if clean_gen == @gen */
#define MORSEL_SCAN_FLAGS	(MORSEL_SCAN_CLEAN | MORSEL_SCAN_IF_GEN)

/**
 * struct morsel_scan - which pages exist, are owned, are dirty (MORSEL_IOC_SCAN)
 * @argsz:    in: sizeof(struct morsel_scan)
 * @flags:    in: MORSEL_SCAN_*
 * @start:    in: first byte, page aligned
 * @length:   in: bytes, page aligned, non-zero; start + length must not
 *            pass the size rounded up to a page (EINVAL)
 * @present:  in: user address of a bitmap, or 0: page holds data (owned,
 *            or borrowed from the base)
 * @owned:    in: bitmap address or 0: the object owns the page's frame
 * @dirty:    in: bitmap address or 0: owned and written since the last
 *            MORSEL_SCAN_CLEAN that covered it (or never cleaned); a page
 *            a writable mapping made by mmap() maps alone (not linked)
 *            counts as written from its first access, and a page that
 *            may be pinned for DMA counts as written until unpinned
 * @gen:      in: with MORSEL_SCAN_IF_GEN, the clean_gen the caller
 *            expects; out: clean_gen after the call
 * @present_pages: out: bits set in @present
 * @dirty_pages:   out: bits set in @dirty
 *
 * Each bitmap has one bit per page of the range, page start/4096 + 64*w + b
 * in bit b of the w-th __u64, and is written whole (bits past the range
 * and pages past a size that shrank meanwhile are 0).
 *
 * The file must be open for reading (EBADF otherwise): the bitmaps tell
 * which pages hold data.
 *
 * With MORSEL_SCAN_CLEAN (file open for writing too, EBADF otherwise) every
 * dirty page of the range is reported and marked clean in one step, and
 * clean_gen is incremented: a later store to the page, by any means (a
 * mapping, write(), ptrace, a device or guest mapping the object), makes
 * it dirty again.  With MORSEL_SCAN_IF_GEN the call fails with ESTALE
 * unless clean_gen equals @gen, so a chain of incremental saves detects a
 * clean it did not see.  If a CLEAN call fails after it started (EFAULT,
 * EINTR) some pages may have been cleaned unreported; clean_gen has moved
 * all the same, so the next IF_GEN call fails with ESTALE.
 */
struct morsel_scan {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 start;
	__aligned_u64 length;
	__aligned_u64 present;
	__aligned_u64 owned;
	__aligned_u64 dirty;
	__aligned_u64 gen;
	__aligned_u64 present_pages;
	__aligned_u64 dirty_pages;
};

/* MORSEL_IOC_FILL */
#define MORSEL_FILL_CRC		(1U << 0)	/* check every run's crc */
#define MORSEL_FILL_FLAGS	(MORSEL_FILL_CRC)
#define MORSEL_FILL_MAX_PAGES	512		/* 2 MiB per call */

/**
 * struct morsel_fill_run - one run of consecutive pages of a FILL request
 * @nr_pages: pages in the run, at least 1
 * @crc:      crc32c (~0 in and out) of the run's bytes as they should read
 */
struct morsel_fill_run {
	__u32 nr_pages;
	__u32 crc;
};

/**
 * struct morsel_fill - fill holes with a file's bytes (MORSEL_IOC_FILL)
 * @argsz:       in: sizeof(struct morsel_fill)
 * @flags:       in: MORSEL_FILL_*
 * @fd:          in: a file open for reading: the data source
 * @nr_pages:    in: pages to read, 1..MORSEL_FILL_MAX_PAGES
 * @file_offset: in: where they start in @fd (consecutive in the file)
 * @pages:       in: user address of @nr_pages __u64 page indices of the
 *               object (byte offset / 4096), strictly increasing, each
 *               inside the object's size: where the pages go, in order
 * @runs:        in: with MORSEL_FILL_CRC, user address of @nr_runs
 *               struct morsel_fill_run, whose nr_pages (each >= 1) add up
 *               to @nr_pages; else 0
 * @nr_runs:     in: with MORSEL_FILL_CRC, 1..@nr_pages; else 0
 * @filled:      out: pages put into holes
 * @read:        out: bytes read from @fd
 * @bad_run:     out: with EBADMSG, the first run whose crc differs
 * @crc:         out: with EBADMSG, that run's crc32c as read; else the
 *               crc32c (the usual one: ~0 in and out) of all bytes read
 *
 * Reads @nr_pages pages from @fd at @file_offset into new frames and puts
 * each at its page of @pages if that page is a hole; a page that is not a
 * hole when the data is ready keeps what it has (@filled says how many
 * were holes).  With @fd opened O_DIRECT the device writes the new frames
 * directly: no page cache, no copy, no zeroing.  The object's file must
 * be open for reading and writing (EBADF; @filled tells which pages were
 * holes), @fd for reading (EBADF); frozen objects (EPERM) and copy-on-write
 * children (EINVAL: use write()) are refused.  Nothing is installed when
 * the file ends early (ENODATA, @read says where) or, with
 * MORSEL_FILL_CRC, when a run's crc differs (EBADMSG).  Frames are
 * charged like any other.
 */
struct morsel_fill {
	__u32 argsz;
	__u32 flags;
	__s32 fd;
	__u32 nr_pages;
	__aligned_u64 file_offset;
	__aligned_u64 pages;
	__aligned_u64 runs;
	__u32 nr_runs;
	__u32 filled;
	__aligned_u64 read;
	__u32 bad_run;
	__u32 crc;
};

/* First published sizes: a smaller @argsz is EINVAL. */
#define MORSEL_STAT_SIZE_VER0	96
#define MORSEL_MAP_SIZE_VER0	40
#define MORSEL_FREEZE_SIZE_VER0	8
#define MORSEL_SPLIT_SIZE_VER0	16
#define MORSEL_SCAN_SIZE_VER0	72
#define MORSEL_FILL_SIZE_VER0	64

#define MORSEL_IOC_MAGIC	0xBA
#define MORSEL_IOC_BASE		0x10	/* sized numbers (0x01-0x06) retired */
#define MORSEL_IOC_STAT		_IO(MORSEL_IOC_MAGIC, MORSEL_IOC_BASE + 0)
#define MORSEL_IOC_MAP		_IO(MORSEL_IOC_MAGIC, MORSEL_IOC_BASE + 1)
#define MORSEL_IOC_FREEZE	_IO(MORSEL_IOC_MAGIC, MORSEL_IOC_BASE + 2)
#define MORSEL_IOC_SPLIT	_IO(MORSEL_IOC_MAGIC, MORSEL_IOC_BASE + 3)
#define MORSEL_IOC_SCAN		_IO(MORSEL_IOC_MAGIC, MORSEL_IOC_BASE + 4)
#define MORSEL_IOC_FILL		_IO(MORSEL_IOC_MAGIC, MORSEL_IOC_BASE + 5)

#endif /* _UAPI_LINUX_MORSEL_H */
