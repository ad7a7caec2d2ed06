// SPDX-License-Identifier: GPL-2.0
/*
 * Filling holes of an object from a file (MORSEL_IOC_FILL).
 *
 * This file owns the fast way in for data that already sits in a file,
 * such as a saved image (lib/morsel-persist.c loads with it): frames are
 * allocated without zeroing, the file is read straight into them (with
 * O_DIRECT the device writes them: no page cache, no copy by the CPU),
 * the crc32c of what was read is computed and, if asked, compared, and
 * only then are the frames put into the holes they were read for.  No
 * frame is reachable before it holds the file's bytes: after a short read
 * or a wrong crc nothing is installed and every frame is given back.
 *
 * Locking: the read runs with no lock of the object held (the file may be
 * slow, or a morsel itself).  m->lock is taken shared only to install;
 * the checks that matter (frozen, size) are made again under it, as a
 * freeze or a resize takes it exclusively.
 */
#include <linux/bio.h>
#include <linux/bitmap.h>
#include <linux/crc32.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/slab.h>
#include <linux/uio.h>

#include "morsel.h"

struct fill_frames {
	unsigned int nr;			/* frames allocated */
	struct page *page[MORSEL_FILL_MAX_PAGES];	/* NULL once installed */
	struct bio_vec bv[MORSEL_FILL_MAX_PAGES];
};

static int check_fill_args(const struct morsel_fill *arg)
{
	unsigned long last;

	if (arg->argsz != sizeof(*arg) || arg->flags & ~MORSEL_FILL_FLAGS ||
	    memchr_inv(arg->reserved, 0, sizeof(arg->reserved)))
		return -EINVAL;
	if (!arg->nr_pages || arg->nr_pages > MORSEL_FILL_MAX_PAGES ||
	    !PAGE_ALIGNED(arg->offset) || arg->offset > MORSEL_MAX_SIZE)
		return -EINVAL;
	if (arg->file_offset > (u64)LLONG_MAX - MORSEL_FILL_MAX_PAGES * PAGE_SIZE)
		return -EINVAL;
	last = find_last_bit((const unsigned long *)arg->map,
			     MORSEL_FILL_MAX_PAGES);
	if (last >= arg->nr_pages)	/* no bit, or one past the window */
		return -EINVAL;
	if (arg->offset + ((u64)last + 1) * PAGE_SIZE > MORSEL_MAX_SIZE)
		return -EINVAL;
	return 0;
}

/* Is every marked page of the window inside the object's size? */
static bool window_inside_size(struct morsel *m, const struct morsel_fill *arg)
{
	unsigned long last = find_last_bit((const unsigned long *)arg->map,
					   MORSEL_FILL_MAX_PAGES);

	return arg->offset + ((u64)last + 1) * PAGE_SIZE <=
	       round_up(i_size_read(&m->vfs_inode), PAGE_SIZE);
}

static void drop_frames(struct morsel *m, struct fill_frames *f)
{
	unsigned int i;

	for (i = 0; i < f->nr; i++)
		if (f->page[i])
			morsel_drop_frame(m, f->page[i]);
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
			return done ? done : n;
		if (!n)
			break;
		done += n;
		if (fatal_signal_pending(current))
			return -EINTR;
	}
	return done;
}

static u32 crc_of_frames(struct fill_frames *f)
{
	u32 crc = ~0U;
	unsigned int i;
	void *p;

	for (i = 0; i < f->nr; i++) {
		p = kmap_local_page(f->page[i]);
		crc = __crc32c_le(crc, p, PAGE_SIZE);
		kunmap_local(p);
		cond_resched();
	}
	return ~crc;
}

/* Put the frames, in order, into the marked holes of the window. */
static int install_frames(struct morsel *m, struct morsel_fill *arg,
			  struct fill_frames *f)
{
	pgoff_t first = arg->offset >> PAGE_SHIFT;
	unsigned int i = 0;
	unsigned long bit;
	int ret = 0;

	down_read(&m->lock);
	if (READ_ONCE(m->frozen))
		ret = -EPERM;
	else if (!window_inside_size(m, arg))
		ret = -ENXIO;	/* shrunk while we read */
	for_each_set_bit(bit, (const unsigned long *)arg->map, arg->nr_pages) {
		if (ret)
			break;
		ret = morsel_fill_hole(m, first + bit, f->page[i]);
		if (ret > 0) {
			f->page[i] = NULL;
			arg->filled++;
			ret = 0;
		}
		i++;
	}
	up_read(&m->lock);
	return ret;
}

long morsel_ioctl_fill(struct file *file, struct morsel_fill __user *uarg)
{
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);
	struct fill_frames *f;
	struct morsel_fill arg;
	struct file *src;
	ssize_t n;
	long err;
	u32 want;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	want = arg.crc;
	err = check_fill_args(&arg);
	if (err)
		return err;
	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (m->parent)
		return -EINVAL;	/* a hole of a child may hide a base page */
	if (READ_ONCE(m->frozen))
		return -EPERM;
	if (!window_inside_size(m, &arg))
		return -EINVAL;
	inode_lock(inode);
	err = file_remove_privs(file);
	inode_unlock(inode);
	if (err)
		return err;
	src = fget(arg.fd);
	if (!src)
		return -EBADF;
	f = kvmalloc(sizeof(*f), GFP_KERNEL);
	if (!f) {
		err = -ENOMEM;
		goto out_put;
	}
	arg.filled = 0;
	arg.read = 0;
	err = alloc_frames(m, f, bitmap_weight((const unsigned long *)arg.map,
					       arg.nr_pages));
	if (err)
		goto out_drop;
	n = read_into_frames(src, f, arg.file_offset);
	if (n < 0) {
		err = n;
		goto out_drop;
	}
	arg.read = n;
	if (n < (ssize_t)f->nr * PAGE_SIZE) {
		err = -ENODATA;
		goto out_report;
	}
	arg.crc = crc_of_frames(f);
	if ((arg.flags & MORSEL_FILL_CRC) && arg.crc != want) {
		err = -EBADMSG;
		goto out_report;
	}
	err = install_frames(m, &arg, f);
	if (arg.filled)
		file_update_time(file);
out_report:
	if (copy_to_user(&uarg->crc, &arg.crc, sizeof(arg.crc)) ||
	    copy_to_user(&uarg->filled, &arg.filled, sizeof(arg.filled)) ||
	    copy_to_user(&uarg->read, &arg.read, sizeof(arg.read)))
		err = err ?: -EFAULT;
out_drop:
	drop_frames(m, f);
	kvfree(f);
out_put:
	fput(src);
	return err;
}
