// SPDX-License-Identifier: GPL-2.0
/*
 * The file operations of a morsel that reach it without mapping it: read,
 * write, lseek, fallocate, truncate and stat, and the copy routine ptrace
 * and /proc/PID/mem use.
 *
 * Sizes are in bytes, as on tmpfs; frames stay whole pages.  The bytes
 * of the last page past the size read as zero, whatever a mapping stored
 * there: every change of size zeroes them in the page that keeps data
 * (morsel_set_size()).  A mapped object changes size as a tmpfs file
 * does: growth shows in every mapping at once, a shrink unmaps what lies
 * past the new end first (access there is SIGBUS).  inode_lock
 * serializes size changes, writes, freezes and cleans.
 */
#include <linux/fs.h>
#include <linux/falloc.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/uio.h>

#include "morsel.h"

/* Resize under inode_lock, mapped or not; a frozen object: EPERM. */
int morsel_resize(struct morsel *m, loff_t size)
{
	int err = 0;

	lockdep_assert_held_write(&m->vfs_inode.i_rwsem);
	if (size < 0)
		return -EINVAL;
	if (size > MORSEL_MAX_SIZE)
		return -EFBIG;
	down_write(&m->lock);
	if (size != i_size_read(&m->vfs_inode)) {
		if (m->frozen)
			err = -EPERM;
		else
			err = morsel_set_size(m, size);
	}
	up_write(&m->lock);
	return err;
}

/*
 * Grow from @old to @size so that morsel_resize() back to @old cannot fail
 * (write() and fallocate() give back what they could not use, and a
 * failed call must leave the size as it was): a child first owns the
 * tables a cut at @old would copy (morsel_own_for_undo()).
 */
static int morsel_grow_undoable(struct morsel *m, loff_t old, loff_t size)
{
	int err;

	lockdep_assert_held_write(&m->vfs_inode.i_rwsem);
	down_write(&m->lock);
	err = m->frozen ? -EPERM : morsel_own_for_undo(m, old);
	up_write(&m->lock);
	return err ?: morsel_resize(m, size);
}

static int morsel_setattr(struct mnt_idmap *idmap, struct dentry *dentry,
			  struct iattr *attr)
{
	struct inode *inode = d_inode(dentry);
	int err;

	err = setattr_prepare(idmap, dentry, attr);
	if (err)
		return err;
	if (attr->ia_valid & ATTR_SIZE) {
		err = morsel_resize(MORSEL(inode), attr->ia_size);
		if (err)
			return err;
	}
	setattr_copy(idmap, inode, attr);
	return 0;
}

static int morsel_getattr(struct mnt_idmap *idmap, const struct path *path,
			  struct kstat *stat, u32 request_mask,
			  unsigned int query_flags)
{
	struct inode *inode = d_inode(path->dentry);

	generic_fillattr(idmap, request_mask, inode, stat);
	stat->blocks = atomic_long_read(&MORSEL(inode)->data_pages) <<
		       (PAGE_SHIFT - 9);
	return 0;
}

const struct inode_operations morsel_file_iops = {
	.setattr = morsel_setattr,
	.getattr = morsel_getattr,
	.listxattr = morsel_listxattr,
};

/*
 * Copy between @buf and the object at @off, page by page, holding a
 * reference on each frame so a concurrent punch cannot free it under the
 * copy.  Reads of holes give zeros; writes populate.  Returns bytes copied.
 */
ssize_t morsel_access_kernel(struct morsel *m, loff_t off, void *buf,
			     size_t len, bool write)
{
	loff_t size = i_size_read(&m->vfs_inode);
	size_t done = 0, n, in_page;
	struct page *page;

	if (off >= size)
		return 0;
	len = min_t(loff_t, len, size - off);
	while (done < len) {
		in_page = offset_in_page(off);
		n = min(PAGE_SIZE - in_page, len - done);
		page = write ? morsel_get_frame_to_write(m, off >> PAGE_SHIFT) :
			       morsel_get_frame_to_read(m, off >> PAGE_SHIFT);
		if (IS_ERR(page))
			return done ? done : PTR_ERR(page);
		if (write) {
			memcpy_to_page(page, in_page, buf + done, n);
			/* A clean may have run since: be dirty again. */
			put_page(page);
			page = morsel_get_frame_to_write(m, off >> PAGE_SHIFT);
			if (IS_ERR(page))
				return done ? done : PTR_ERR(page);
		} else if (page) {
			memcpy_from_page(buf + done, page, in_page, n);
		} else {
			memset(buf + done, 0, n);
		}
		if (page)
			put_page(page);
		done += n;
		off += n;
	}
	return done;
}

static ssize_t morsel_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct inode *inode = file_inode(iocb->ki_filp);
	loff_t pos = iocb->ki_pos, size = i_size_read(inode);
	struct morsel *m = MORSEL(inode);
	size_t n, copied;
	ssize_t done = 0;
	struct page *page;

	while (iov_iter_count(to) && pos < size) {
		n = min3(PAGE_SIZE - offset_in_page(pos), iov_iter_count(to),
			 (size_t)(size - pos));
		page = morsel_get_frame_to_read(m, pos >> PAGE_SHIFT);
		if (page) {
			copied = copy_page_to_iter(page, offset_in_page(pos),
						   n, to);
			put_page(page);
		} else {
			copied = iov_iter_zero(n, to);
		}
		done += copied;
		pos += copied;
		if (copied < n) {
			if (!done)
				done = -EFAULT;
			break;
		}
		if (fatal_signal_pending(current))
			break;
		cond_resched();
	}
	iocb->ki_pos = pos;
	file_accessed(iocb->ki_filp);
	return done;
}

/*
 * A whole page written over a hole of an object that is not a child: copy
 * into a new frame first and put it into the hole after, as FILL does, so
 * the frame is never zeroed (under TCG zeroing costs most of a copy).
 * Returns the bytes taken from @from, 0 if the page is no hole (or no
 * frame could be had: the usual path then reports it), or -errno.  The
 * caller holds inode_lock: no resize, clean or freeze meanwhile.
 */
static ssize_t write_hole_page(struct morsel *m, pgoff_t index,
			       struct iov_iter *from)
{
	struct page *page, *there;
	size_t copied;
	int ret;

	lockdep_assert_held_write(&m->vfs_inode.i_rwsem);
	if (m->parent)
		return 0;	/* a hole of a child may hide a base page */
	page = morsel_get_frame_to_read(m, index);
	if (page) {
		put_page(page);
		return 0;
	}
	page = morsel_alloc_frame(m, false);
	if (IS_ERR(page))
		return 0;
	copied = copy_page_from_iter(page, 0, PAGE_SIZE, from);
	if (!copied) {
		morsel_discard_frame(m, page);
		return -EFAULT;
	}
	if (copied < PAGE_SIZE)		/* the rest of a hole reads zeros */
		memzero_page(page, copied, PAGE_SIZE - copied);
	down_read(&m->lock);
	ret = morsel_fill_hole(m, index, page);
	up_read(&m->lock);
	if (ret > 0)
		return copied;
	/* Filled meanwhile (a fault through a mapping): write over that. */
	there = morsel_get_frame_to_write(m, index);
	if (IS_ERR(there)) {
		morsel_discard_frame(m, page);
		return PTR_ERR(there);
	}
	memcpy_page(there, 0, page, 0, copied);
	put_page(there);
	morsel_discard_frame(m, page);
	return copied;
}

static ssize_t morsel_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct file *file = iocb->ki_filp;
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);
	loff_t old_size, pos, end;
	size_t n, copied;
	struct page *page;
	ssize_t done = 0;
	ssize_t ret;

	inode_lock(inode);
	ret = generic_write_checks(iocb, from);
	if (ret <= 0)
		goto out;
	ret = file_remove_privs(file);
	if (ret)
		goto out;
	ret = file_update_time(file);
	if (ret)
		goto out;
	if (m->frozen) {
		ret = -EPERM;
		goto out;
	}
	pos = iocb->ki_pos;
	end = pos + iov_iter_count(from);
	old_size = i_size_read(inode);
	if (end > old_size) {
		ret = morsel_grow_undoable(m, old_size, end);
		if (ret)
			goto out;
	}
	while (iov_iter_count(from)) {
		n = min_t(size_t, PAGE_SIZE - offset_in_page(pos),
			  iov_iter_count(from));
		copied = 0;
		if (n == PAGE_SIZE) {
			ret = write_hole_page(m, pos >> PAGE_SHIFT, from);
			if (ret < 0)
				break;
			copied = ret;
		}
		if (!copied) {
			page = morsel_get_frame_to_write(m, pos >> PAGE_SHIFT);
			if (IS_ERR(page)) {
				ret = PTR_ERR(page);
				break;
			}
			copied = copy_page_from_iter(page, offset_in_page(pos),
						     n, from);
			put_page(page);
		}
		ret = 0;
		done += copied;
		pos += copied;
		if (copied < n) {
			ret = -EFAULT;
			break;
		}
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		cond_resched();
	}
	/*
	 * Give back what a short write did not use: the size ends with the
	 * last byte written, or stays as it was when none was (pos is then
	 * still where the write began, which may lie past the old end).
	 */
	if (end > old_size && pos < end)
		morsel_resize(m, done ? max_t(loff_t, old_size, pos) : old_size);
	iocb->ki_pos = pos;
	if (done)
		ret = done;
out:
	inode_unlock(inode);
	if (ret > 0)
		ret = generic_write_sync(iocb, ret);
	return ret;
}

static loff_t morsel_llseek(struct file *file, loff_t offset, int whence)
{
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return generic_file_llseek_size(file, offset, whence,
						MORSEL_MAX_SIZE,
						i_size_read(inode));
	down_read(&m->lock);
	offset = morsel_seek_data(m, offset, whence);
	up_read(&m->lock);
	if (offset < 0)
		return offset;
	return vfs_setpos(file, offset, MORSEL_MAX_SIZE);
}

/*
 * Zero [@start, @end) inside one page, if that page is populated (in a
 * child, a borrowed page is copied first).
 */
static int zero_partial_page(struct morsel *m, loff_t start, loff_t end)
{
	pgoff_t index = start >> PAGE_SHIFT;
	struct page *page = morsel_get_frame_to_read(m, index);

	if (!page)
		return 0;
	put_page(page);
	page = morsel_get_frame_to_write(m, index);
	if (IS_ERR(page))
		return PTR_ERR(page);
	memzero_page(page, offset_in_page(start), end - start);
	put_page(page);
	return 0;
}

static int punch_hole(struct morsel *m, loff_t start, loff_t end)
{
	loff_t first = PAGE_ALIGN(start), last = ALIGN_DOWN(end, PAGE_SIZE);
	int err = 0;

	if (first > last)		/* inside one page */
		return zero_partial_page(m, start, end);
	if (start < first)
		err = zero_partial_page(m, start, first);
	if (!err && last < end)
		err = zero_partial_page(m, last, end);
	if (!err && first < last) {
		down_write(&m->lock);
		err = morsel_punch(m, first >> PAGE_SHIFT, last >> PAGE_SHIFT);
		up_write(&m->lock);
	}
	return err;
}

static long morsel_fallocate(struct file *file, int mode, loff_t offset,
			     loff_t len)
{
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);
	loff_t end = offset + len, size;
	long err = 0;

	/* Collapse and insert range move data: not supported (EOPNOTSUPP). */
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
		     FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	inode_lock(inode);
	size = i_size_read(inode);
	if (m->frozen) {
		err = -EPERM;
	} else if (mode & FALLOC_FL_PUNCH_HOLE) {
		/* Frames end with the page of the last byte: as tmpfs. */
		if (offset < size)
			err = punch_hole(m, offset, min(end, PAGE_ALIGN(size)));
	} else {
		loff_t old_size = size;

		if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size) {
			err = morsel_grow_undoable(m, old_size, end);
			size = i_size_read(inode);
		}
		/* Zero range: a hole, then allocated again like mode 0. */
		if (!err && (mode & FALLOC_FL_ZERO_RANGE) && offset < old_size)
			err = punch_hole(m, offset, min(end, old_size));
		/* Frames exist only below the size. */
		if (!err && offset < size)
			err = morsel_populate(m, offset >> PAGE_SHIFT,
					      DIV_ROUND_UP(min(end, size),
							   PAGE_SIZE));
		/* A failed call leaves the size as it was. */
		if (err && size != old_size)
			morsel_resize(m, old_size);
	}
	if (!err)
		inode_set_mtime_to_ts(inode, inode_set_ctime_current(inode));
	inode_unlock(inode);
	return err;
}

/*
 * O_DIRECT is accepted, as tmpfs does: there is no page cache to bypass,
 * so direct I/O is the ordinary copy and coherent with every mapping.
 */
static int morsel_open(struct inode *inode, struct file *file)
{
	file->f_mode |= FMODE_CAN_ODIRECT;
	return generic_file_open(inode, file);
}

const struct file_operations morsel_fops = {
	.owner = THIS_MODULE,
	.open = morsel_open,
	.read_iter = morsel_read_iter,
	.write_iter = morsel_write_iter,
	.llseek = morsel_llseek,
	.mmap = morsel_mmap,
	.get_unmapped_area = morsel_get_unmapped_area,
	.fallocate = morsel_fallocate,
	.unlocked_ioctl = morsel_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.fsync = noop_fsync,
	.splice_read = copy_splice_read,
	.splice_write = iter_file_splice_write,
};
