// SPDX-License-Identifier: GPL-2.0
/*
 * Filling holes of an object from a file (MORSEL_IOC_FILL).
 *
 * This file owns the fast way in for data that already sits in a file,
 * such as a saved image (lib/persist-load.c loads with it): frames are
 * allocated without zeroing, the file is read straight into them (with
 * O_DIRECT the device writes them: no page cache, no copy by the CPU),
 * the crc32c of each run the caller names is computed and compared, and
 * only then are the frames put into the holes they were read for.  No
 * frame is reachable before it holds the file's bytes: after a short read
 * or a wrong crc nothing is installed and every frame is given back.  The
 * pages read are consecutive in the file and go to any pages of the object
 * (a list), so many small records of an image cost one read.
 *
 * Locking: the read runs with no lock of the object held (the file may be
 * slow, or a morsel itself).  m->lock is taken shared only to install;
 * the checks that matter (frozen, size) are made again under it, as a
 * freeze or a resize takes it exclusively.
 */
#include <linux/bio.h>
#include <linux/crc32.h>
#include <linux/file.h>
#include <linux/fsnotify.h>
#include <linux/highmem.h>
#include <linux/slab.h>
#include <linux/uio.h>

#include "morsel.h"

struct fill_frames {
	unsigned int nr;			/* frames allocated */
	u64 index[MORSEL_FILL_MAX_PAGES];	/* object page of each */
	struct morsel_fill_run runs[MORSEL_FILL_MAX_PAGES];
	struct page *page[MORSEL_FILL_MAX_PAGES];	/* NULL once installed */
	struct bio_vec bv[MORSEL_FILL_MAX_PAGES];
};

static int check_fill_args(const struct morsel_fill *arg)
{
	bool crc = arg->flags & MORSEL_FILL_CRC;

	if (arg->flags & ~MORSEL_FILL_FLAGS)
		return -EINVAL;
	if (!arg->nr_pages || arg->nr_pages > MORSEL_FILL_MAX_PAGES)
		return -EINVAL;
	if (crc ? !arg->nr_runs || arg->nr_runs > arg->nr_pages || !arg->runs
		: arg->nr_runs || arg->runs)
		return -EINVAL;
	if (arg->file_offset > (u64)LLONG_MAX - MORSEL_FILL_MAX_PAGES * PAGE_SIZE)
		return -EINVAL;
	return 0;
}

/* Copy in the page list and the runs, and check them. */
static int copy_fill_lists(const struct morsel_fill *arg,
			   struct fill_frames *f)
{
	u64 sum = 0;
	unsigned int i;

	if (copy_from_user(f->index, u64_to_user_ptr(arg->pages),
			   arg->nr_pages * sizeof(f->index[0])))
		return -EFAULT;
	for (i = 0; i < arg->nr_pages; i++)
		if (f->index[i] >= MORSEL_MAX_SIZE >> PAGE_SHIFT ||
		    (i && f->index[i] <= f->index[i - 1]))
			return -EINVAL;
	if (!arg->nr_runs)
		return 0;
	if (copy_from_user(f->runs, u64_to_user_ptr(arg->runs),
			   arg->nr_runs * sizeof(f->runs[0])))
		return -EFAULT;
	for (i = 0; i < arg->nr_runs; i++) {
		if (!f->runs[i].nr_pages)
			return -EINVAL;
		sum += f->runs[i].nr_pages;
	}
	return sum == arg->nr_pages ? 0 : -EINVAL;
}

/* Is the last (highest) page of the list inside the object's size? */
static bool pages_inside_size(struct morsel *m, const struct morsel_fill *arg,
			      const struct fill_frames *f)
{
	loff_t size = round_up(i_size_read(&m->vfs_inode), PAGE_SIZE);

	return (f->index[arg->nr_pages - 1] + 1) << PAGE_SHIFT <= size;
}

static void drop_frames(struct morsel *m, struct fill_frames *f)
{
	unsigned int i;

	for (i = 0; i < f->nr; i++)
		if (f->page[i])
			morsel_discard_frame(m, f->page[i]);
}

static int alloc_frames(struct morsel *m, struct fill_frames *f,
			unsigned int nr)
{
	struct page *page;

	for (f->nr = 0; f->nr < nr;) {
		page = morsel_alloc_frame(m, false);
		if (IS_ERR(page))
			return PTR_ERR(page);
		f->page[f->nr] = page;
		bvec_set_page(&f->bv[f->nr], page, PAGE_SIZE, 0);
		f->nr++;
		if (fatal_signal_pending(current))
			return -EINTR;
	}
	return 0;
}

/* Fill every frame from @src at @pos; bytes read, short at end of file. */
static ssize_t read_into_frames(struct file *src, struct fill_frames *f,
				loff_t pos)
{
	size_t len = (size_t)f->nr * PAGE_SIZE;
	struct iov_iter iter;
	ssize_t done = 0, n;

	iov_iter_bvec(&iter, ITER_DEST, f->bv, f->nr, len);
	while (iov_iter_count(&iter)) {
		n = vfs_iter_read(src, &iter, &pos, 0);
		if (n < 0)
			return n;	/* an error, not a short file */
		if (!n)
			break;
		done += n;
		if (fatal_signal_pending(current))
			return -EINTR;
	}
	return done;
}

/* crc32c of frames [@first, @first + @nr). */
static u32 crc_of_frames(struct fill_frames *f, unsigned int first,
			 unsigned int nr)
{
	u32 crc = ~0U;
	unsigned int i;
	void *p;

	for (i = first; i < first + nr; i++) {
		p = kmap_local_page(f->page[i]);
		crc = __crc32c_le(crc, p, PAGE_SIZE);
		kunmap_local(p);
		cond_resched();
	}
	return ~crc;
}

/* With runs: 0 if each crc matches, else -EBADMSG and the first bad one. */
static int check_runs(struct morsel_fill *arg, struct fill_frames *f)
{
	unsigned int r, first = 0;
	u32 crc;

	if (!arg->nr_runs) {
		arg->crc = crc_of_frames(f, 0, f->nr);
		return 0;
	}
	for (r = 0; r < arg->nr_runs; r++) {
		crc = crc_of_frames(f, first, f->runs[r].nr_pages);
		if (crc != f->runs[r].crc) {
			arg->bad_run = r;
			arg->crc = crc;
			return -EBADMSG;
		}
		first += f->runs[r].nr_pages;
	}
	return 0;
}

/* Put the frames, in order, into the listed pages that are holes. */
static int install_frames(struct morsel *m, struct morsel_fill *arg,
			  struct fill_frames *f)
{
	unsigned int i;
	int ret = 0;

	down_read(&m->lock);
	if (READ_ONCE(m->frozen))
		ret = -EPERM;
	else if (!pages_inside_size(m, arg, f))
		ret = -ENXIO;	/* shrunk while we read */
	for (i = 0; !ret && i < f->nr; i++) {
		ret = morsel_fill_hole(m, f->index[i], f->page[i]);
		if (ret > 0) {
			f->page[i] = NULL;
			arg->filled++;
			ret = 0;
		}
	}
	up_read(&m->lock);
	return ret;
}

long morsel_ioctl_fill(struct file *file, struct morsel_fill *uarg,
		       const struct morsel_uarg *ua)
{
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);
	struct morsel_fill arg = *uarg;
	struct fill_frames *f;
	struct file *src;
	ssize_t n;
	long err;

	err = check_fill_args(&arg);
	if (err)
		return err;
	/* It changes the contents, and @filled tells which pages were holes. */
	err = morsel_check_rights(file, FMODE_READ | FMODE_WRITE);
	if (err)
		return err;
	if (m->parent)
		return -EINVAL;	/* a hole of a child may hide a base page */
	if (READ_ONCE(m->frozen))
		return -EPERM;
	f = kvmalloc(sizeof(*f), GFP_KERNEL_ACCOUNT);
	if (!f)
		return -ENOMEM;
	f->nr = 0;
	err = copy_fill_lists(&arg, f);
	if (!err && !pages_inside_size(m, &arg, f))
		err = -EINVAL;
	if (err)
		goto out_free;
	inode_lock(inode);
	err = file_remove_privs(file);
	inode_unlock(inode);
	if (err)
		goto out_free;
	src = fget(arg.fd);
	if (!src) {
		err = -EBADF;
		goto out_free;
	}
	if (!(src->f_mode & FMODE_READ)) {
		err = -EBADF;
		goto out_put;
	}
	arg.filled = 0;
	arg.read = 0;
	arg.bad_run = 0;
	arg.crc = 0;
	err = alloc_frames(m, f, arg.nr_pages);
	if (err)
		goto out_drop;
	n = read_into_frames(src, f, arg.file_offset);
	if (n < 0) {
		err = n;
		goto out_drop;
	}
	arg.read = n;
	if (n < (ssize_t)f->nr * PAGE_SIZE)
		err = -ENODATA;
	if (!err)
		err = check_runs(&arg, f);
	if (!err)
		err = install_frames(m, &arg, f);
	if (arg.filled) {
		/* Like write(): timestamps, and watchers see a change. */
		file_update_time(file);
		fsnotify_modify(file);
	}
	/* filled, read, bad_run and crc, whatever happened after the read */
	if (morsel_return_arg(ua, &arg, sizeof(arg)))
		err = err ?: -EFAULT;
out_drop:
	drop_frames(m, f);
out_put:
	fput(src);
out_free:
	kvfree(f);
	return err;
}
