// SPDX-License-Identifier: GPL-2.0
/*
 * morselfs: the filesystem whose regular files are morsels.
 *
 * This file owns mounting (options and limits), inodes and directories,
 * and the file operations that reach an object without mapping it: read,
 * write, lseek with SEEK_DATA/SEEK_HOLE, fallocate, truncate, stat and the
 * ioctls.  Names, owners, modes and hard links are the VFS's, through the
 * simple_* helpers, as in ramfs.
 *
 * Sizes are whole pages.  ftruncate() to a size that is not a multiple of
 * 4 KiB fails with EINVAL; a write() past the end extends the object to
 * the next page boundary.  Changing the size of a mapped object fails with
 * EBUSY: its tables may be linked into address spaces.
 */
#include <linux/file.h>
#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/statfs.h>
#include <linux/uio.h>
#include <linux/falloc.h>

#include "morsel.h"

LIST_HEAD(morsel_list);
DEFINE_SPINLOCK(morsel_list_lock);

static struct kmem_cache *morsel_inode_cache;
static const struct super_operations morselfs_ops;
static const struct inode_operations morselfs_dir_iops;
static const struct inode_operations morsel_file_iops;
static const struct file_operations morsel_fops;

static const struct address_space_operations morsel_aops = {
	.dirty_folio = noop_dirty_folio,
};

static bool reserve_morsel(struct morsel_sb *sbi)
{
	bool ok;

	spin_lock(&sbi->lock);
	ok = !sbi->max_morsels || sbi->nr_morsels < sbi->max_morsels;
	if (ok)
		sbi->nr_morsels++;
	spin_unlock(&sbi->lock);
	return ok;
}

static void release_morsel(struct morsel_sb *sbi)
{
	spin_lock(&sbi->lock);
	sbi->nr_morsels--;
	spin_unlock(&sbi->lock);
}

static struct inode *morselfs_get_inode(struct super_block *sb,
					const struct inode *dir, umode_t mode)
{
	struct morsel_sb *sbi = sb->s_fs_info;
	struct inode *inode;
	struct morsel *m;

	if (!S_ISREG(mode) && !S_ISDIR(mode))
		return ERR_PTR(-EPERM);
	if (S_ISREG(mode) && !reserve_morsel(sbi))
		return ERR_PTR(-ENOSPC);
	inode = new_inode(sb);
	if (!inode) {
		if (S_ISREG(mode))
			release_morsel(sbi);
		return ERR_PTR(-ENOMEM);
	}
	inode->i_ino = get_next_ino();
	inode_init_owner(&nop_mnt_idmap, inode, dir, mode);
	simple_inode_init_ts(inode);
	if (S_ISDIR(mode)) {
		inode->i_op = &morselfs_dir_iops;
		inode->i_fop = &simple_dir_operations;
		inc_nlink(inode);
		return inode;
	}
	m = MORSEL(inode);
	inode->i_op = &morsel_file_iops;
	inode->i_fop = &morsel_fops;
	inode->i_mapping->a_ops = &morsel_aops;
	mapping_set_unevictable(inode->i_mapping);
	m->memcg = get_mem_cgroup_from_mm(current->mm);
	spin_lock(&morsel_list_lock);
	list_add_tail(&m->node, &morsel_list);
	spin_unlock(&morsel_list_lock);
	atomic_long_inc(&morsel_totals.morsels);
	return inode;
}

static int morselfs_mknod(struct inode *dir, struct dentry *dentry,
			  umode_t mode)
{
	struct inode *inode = morselfs_get_inode(dir->i_sb, dir, mode);

	if (IS_ERR(inode))
		return PTR_ERR(inode);
	d_instantiate(dentry, inode);
	dget(dentry);	/* pinned in the dcache, as in ramfs */
	inode_set_mtime_to_ts(dir, inode_set_ctime_current(dir));
	return 0;
}

static int morselfs_create(struct mnt_idmap *idmap, struct inode *dir,
			   struct dentry *dentry, umode_t mode, bool excl)
{
	return morselfs_mknod(dir, dentry, (mode & ~S_IFMT) | S_IFREG);
}

static int morselfs_mkdir(struct mnt_idmap *idmap, struct inode *dir,
			  struct dentry *dentry, umode_t mode)
{
	int err = morselfs_mknod(dir, dentry, (mode & ~S_IFMT) | S_IFDIR);

	if (!err)
		inc_nlink(dir);
	return err;
}

/* O_TMPFILE: a morsel without a name, gone with its last user. */
static int morselfs_tmpfile(struct mnt_idmap *idmap, struct inode *dir,
			    struct file *file, umode_t mode)
{
	struct inode *inode;

	inode = morselfs_get_inode(dir->i_sb, dir, (mode & ~S_IFMT) | S_IFREG);
	if (IS_ERR(inode))
		return PTR_ERR(inode);
	d_tmpfile(file, inode);
	return finish_open_simple(file, 0);
}

static const struct inode_operations morselfs_dir_iops = {
	.create = morselfs_create,
	.lookup = simple_lookup,
	.link = simple_link,
	.unlink = simple_unlink,
	.mkdir = morselfs_mkdir,
	.rmdir = simple_rmdir,
	.rename = simple_rename,
	.tmpfile = morselfs_tmpfile,
};

/* Resize under inode_lock; EBUSY while anybody maps the object. */
static int morsel_resize(struct morsel *m, loff_t size)
{
	int err = 0;

	if (!PAGE_ALIGNED(size))
		return -EINVAL;
	if (size > MORSEL_MAX_SIZE)
		return -EFBIG;
	down_write(&m->lock);
	if (size != i_size_read(&m->vfs_inode)) {
		if (m->frozen)
			err = -EPERM;
		else if (atomic_read(&m->mappers))
			err = -EBUSY;
		else
			err = morsel_set_size(m, size);
	}
	up_write(&m->lock);
	return err;
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

static const struct inode_operations morsel_file_iops = {
	.setattr = morsel_setattr,
	.getattr = morsel_getattr,
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
		page = morsel_get_frame(m, off >> PAGE_SHIFT,
					write ? MORSEL_WRITE : MORSEL_LOOKUP);
		if (IS_ERR(page))
			return done ? done : PTR_ERR(page);
		if (write) {
			memcpy_to_page(page, in_page, buf + done, n);
			/* A clean may have run since: be dirty again. */
			put_page(page);
			page = morsel_get_frame(m, off >> PAGE_SHIFT,
						MORSEL_WRITE);
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
		page = morsel_get_frame(m, pos >> PAGE_SHIFT, MORSEL_LOOKUP);
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

	if (m->parent)
		return 0;	/* a hole of a child may hide a base page */
	page = morsel_get_frame(m, index, MORSEL_LOOKUP);
	if (page) {
		put_page(page);
		return 0;
	}
	page = morsel_alloc_frame(m, false);
	if (IS_ERR(page))
		return 0;
	copied = copy_page_from_iter(page, 0, PAGE_SIZE, from);
	if (!copied) {
		morsel_drop_frame(m, page);
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
	there = morsel_get_frame(m, index, MORSEL_WRITE);
	if (IS_ERR(there)) {
		morsel_drop_frame(m, page);
		return PTR_ERR(there);
	}
	memcpy_page(there, 0, page, 0, copied);
	put_page(there);
	morsel_drop_frame(m, page);
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
		ret = morsel_resize(m, PAGE_ALIGN(end));
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
			page = morsel_get_frame(m, pos >> PAGE_SHIFT,
						MORSEL_WRITE);
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
	/* Give back what a short write did not use. */
	if (end > old_size && PAGE_ALIGN(pos) < PAGE_ALIGN(end))
		morsel_resize(m, max_t(loff_t, old_size, PAGE_ALIGN(pos)));
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
	struct page *page = morsel_get_frame(m, index, MORSEL_LOOKUP);

	if (!page)
		return 0;
	put_page(page);
	page = morsel_get_frame(m, index, MORSEL_WRITE);
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

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))
		return -EOPNOTSUPP;
	inode_lock(inode);
	size = i_size_read(inode);
	if (m->frozen) {
		err = -EPERM;
	} else if (mode & FALLOC_FL_PUNCH_HOLE) {
		if (offset < size)
			err = punch_hole(m, offset, min(end, size));
	} else {
		loff_t old_size = size;

		if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size) {
			err = morsel_resize(m, PAGE_ALIGN(end));
			size = i_size_read(inode);
		}
		/* Frames exist only below the size. */
		if (!err && offset < size)
			err = morsel_populate(m, offset >> PAGE_SHIFT,
					      PAGE_ALIGN(min(end, size)) >>
					      PAGE_SHIFT);
		/* A failed call leaves the size as it was. */
		if (err && size != old_size)
			morsel_resize(m, old_size);
	}
	if (!err)
		inode_set_mtime_to_ts(inode, inode_set_ctime_current(inode));
	inode_unlock(inode);
	return err;
}

long morsel_ioctl_freeze(struct file *file, struct morsel_freeze *arg,
			 const struct morsel_uarg *ua)
{
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);
	int err;

	if (arg->flags)
		return -EINVAL;
	err = morsel_check_rights(file, FMODE_WRITE);
	if (err)
		return err;
	inode_lock(inode);
	down_write(&m->lock);
	err = morsel_freeze(m);
	up_write(&m->lock);
	inode_unlock(inode);
	return err;
}

/*
 * A child is never more open than its base: its permission bits are the
 * base's (less the caller's umask, as for any new file, and never setuid,
 * setgid or sticky) and its group is the base's, so whoever may read it
 * through group or other bits could read the base the same way.  Its
 * owner is the caller, who could read the base: splitting needs that.
 */
static void restrict_child(struct inode *child, const struct inode *base)
{
	inode_lock(child);
	child->i_gid = base->i_gid;
	inode_unlock(child);
}

/*
 * A new unnamed child of the frozen base @file, made like an O_TMPFILE in
 * the base's directory, returned as a descriptor.  Its contents are the
 * base's: reading the base is needed (EBADF on a descriptor not open for
 * reading).
 */
long morsel_ioctl_split(struct file *file, struct morsel_split *arg,
			const struct morsel_uarg *ua)
{
	struct morsel *base = MORSEL(file_inode(file));
	struct file *child;
	struct path dir;
	int fd, err;

	if (arg->flags & ~MORSEL_SPLIT_FLAGS || arg->__pad)
		return -EINVAL;
	err = morsel_check_rights(file, FMODE_READ);
	if (err)
		return err;
	if (!READ_ONCE(base->frozen))
		return -EINVAL;
	dir.mnt = file->f_path.mnt;
	dir.dentry = dget_parent(file->f_path.dentry);
	child = kernel_tmpfile_open(file_mnt_idmap(file), &dir,
				    S_IFREG | (base->vfs_inode.i_mode & 0777),
				    O_RDWR | O_LARGEFILE, current_cred());
	dput(dir.dentry);
	if (IS_ERR(child))
		return PTR_ERR(child);
	restrict_child(file_inode(child), &base->vfs_inode);
	err = morsel_adopt(MORSEL(file_inode(child)), base);
	if (err)
		goto out_child;
	fd = get_unused_fd_flags(arg->flags & MORSEL_SPLIT_CLOEXEC ?
				 O_CLOEXEC : 0);
	if (fd < 0) {
		err = fd;
		goto out_child;
	}
	arg->fd = fd;
	err = morsel_return_arg(ua, arg, sizeof(*arg));
	if (err) {
		put_unused_fd(fd);
		goto out_child;
	}
	fd_install(fd, child);
	return 0;
out_child:
	fput(child);
	return err;
}

static int copy_scan_bits(u64 uaddr, u64 first_page,
			  const unsigned long *bits, unsigned long words)
{
	void __user *dst;

	if (!uaddr)
		return 0;
	dst = u64_to_user_ptr(uaddr + first_page / 8);
	return copy_to_user(dst, bits, words * sizeof(long)) ? -EFAULT : 0;
}

/* Report (and with MORSEL_SCAN_CLEAN, clean) the pages of a range. */
long morsel_ioctl_scan(struct file *file, struct morsel_scan *uscan,
		       const struct morsel_uarg *ua)
{
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);
	struct morsel_scan_batch *b;
	struct morsel_scan arg = *uscan;
	u64 pages, done, n, words;
	bool clean, cleaned = false;
	long err = 0;

	if (arg.flags & ~MORSEL_SCAN_FLAGS)
		return -EINVAL;
	clean = arg.flags & MORSEL_SCAN_CLEAN;
	if ((arg.flags & MORSEL_SCAN_IF_GEN) && !clean)
		return -EINVAL;
	if (!arg.length || !PAGE_ALIGNED(arg.start) ||
	    !PAGE_ALIGNED(arg.length) || arg.start > MORSEL_MAX_SIZE ||
	    arg.length > MORSEL_MAX_SIZE - arg.start)
		return -EINVAL;
	/* Which pages hold data is about the contents; cleaning changes state. */
	err = morsel_check_rights(file, FMODE_READ |
				  (clean ? FMODE_WRITE : 0));
	if (err)
		return err;
	b = kvmalloc(sizeof(*b), GFP_KERNEL_ACCOUNT);
	if (!b)
		return -ENOMEM;
	if (clean) {
		err = inode_lock_killable(inode);
		if (err)
			goto out_free;
	}
	if (arg.start + arg.length >
	    round_up(i_size_read(inode), PAGE_SIZE)) {
		err = -EINVAL;
		goto out_unlock;
	}
	if (clean) {
		if ((arg.flags & MORSEL_SCAN_IF_GEN) &&
		    arg.gen != m->clean_gen) {
			err = -ESTALE;
			goto out_unlock;
		}
		WRITE_ONCE(m->clean_gen, m->clean_gen + 1);
	}
	arg.present_pages = 0;
	arg.dirty_pages = 0;
	pages = arg.length >> PAGE_SHIFT;
	for (done = 0; done < pages; done += n) {
		n = min_t(u64, pages - done, MORSEL_SCAN_BATCH);
		words = DIV_ROUND_UP(n, BITS_PER_LONG);
		memset(b, 0, sizeof(*b));
		down_read(&m->lock);
		morsel_scan(m, (arg.start >> PAGE_SHIFT) + done,
			    (arg.start >> PAGE_SHIFT) + done + n, clean, b);
		up_read(&m->lock);
		cleaned |= b->cleaned;
		arg.present_pages += b->present_pages;
		arg.dirty_pages += b->dirty_pages;
		/* Outside m->lock: the bitmaps may be in a mapping of @m. */
		err = copy_scan_bits(arg.present, done, b->present, words) ?:
		      copy_scan_bits(arg.owned, done, b->owned, words) ?:
		      copy_scan_bits(arg.dirty, done, b->dirty, words);
		if (!err && fatal_signal_pending(current))
			err = -EINTR;
		if (err)
			break;
	}
	if (cleaned) {
		/*
		 * Every translation that still allows a store without a fault
		 * must go: links (our notifier unlinks and flushes), pages
		 * mapped one by one, secondary MMUs.  A page-by-page fault
		 * holds m->lock shared from reading the leaf to inserting its
		 * PTE: waiting for the lock once makes sure one that saw a
		 * leaf still writable has inserted, so the unmap removes it
		 * (such a fault sees leaf_gen move but the same frame, so it
		 * keeps the PTE for this unmap to remove).
		 */
		smp_mb__before_atomic();
		atomic_add(2, &m->leaf_gen);	/* stays even: replace_leaf() */
		down_write(&m->lock);
		up_write(&m->lock);
		unmap_mapping_range(inode->i_mapping, arg.start, arg.length, 1);
	}
	arg.gen = READ_ONCE(m->clean_gen);
	if (!err)
		err = morsel_return_arg(ua, &arg, sizeof(arg));
out_unlock:
	if (clean)
		inode_unlock(inode);
out_free:
	kvfree(b);
	return err;
}

static const struct file_operations morsel_fops = {
	.owner = THIS_MODULE,
	.open = generic_file_open,
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

/* Superblock */

static struct inode *morselfs_alloc_inode(struct super_block *sb)
{
	struct morsel *m = alloc_inode_sb(sb, morsel_inode_cache, GFP_KERNEL);

	if (!m)
		return NULL;
	init_rwsem(&m->lock);
	init_rwsem(&m->replace_sem);
	m->repl.task = NULL;
	m->repl.count = 0;
	m->repl.direct = 0;
	spin_lock_init(&m->root_lock);
	m->level = MORSEL_LEVEL_NONE;
	m->root = NULL;
	xa_init_flags(&m->twins, XA_FLAGS_ACCOUNT);
	m->frozen = false;
	m->parent = NULL;
	atomic_set(&m->children, 0);
	atomic_set(&m->leaf_gen, 0);
	do {
		m->id = get_random_u64();
	} while (!m->id);
	m->clean_gen = 0;
	atomic_long_set(&m->data_pages, 0);
	atomic_long_set(&m->table_pages, 0);
	atomic_long_set(&m->links, 0);
	atomic_long_set(&m->pud_links, 0);
	atomic_long_set(&m->hole_links, 0);
	atomic_set(&m->mappers, 0);
	m->memcg = NULL;
	m->sbi = sb->s_fs_info;
	INIT_LIST_HEAD(&m->node);
	return &m->vfs_inode;
}

static void morselfs_free_inode(struct inode *inode)
{
	kmem_cache_free(morsel_inode_cache, MORSEL(inode));
}

static void morselfs_evict_inode(struct inode *inode)
{
	struct morsel *m = MORSEL(inode);

	truncate_inode_pages_final(&inode->i_data);
	if (S_ISREG(inode->i_mode)) {
		/* Every link holds the object: none can be left. */
		WARN_ON_ONCE(atomic_long_read(&m->links) ||
			     atomic_long_read(&m->pud_links));
		morsel_destroy(m);
		if (m->parent) {
			/* Our borrowed entries are gone: the base may go. */
			atomic_dec(&m->parent->children);
			iput(&m->parent->vfs_inode);
		}
		mem_cgroup_put(m->memcg);
		spin_lock(&morsel_list_lock);
		list_del(&m->node);
		spin_unlock(&morsel_list_lock);
		release_morsel(m->sbi);
		atomic_long_dec(&morsel_totals.morsels);
	}
	clear_inode(inode);
}

static int morselfs_statfs(struct dentry *dentry, struct kstatfs *buf)
{
	struct morsel_sb *sbi = dentry->d_sb->s_fs_info;

	buf->f_type = MORSELFS_MAGIC;
	buf->f_bsize = PAGE_SIZE;
	buf->f_namelen = NAME_MAX;
	spin_lock(&sbi->lock);
	if (sbi->max_pages) {
		buf->f_blocks = sbi->max_pages;
		buf->f_bavail = sbi->max_pages - sbi->used_pages;
		buf->f_bfree = buf->f_bavail;
	}
	if (sbi->max_morsels) {
		buf->f_files = sbi->max_morsels;
		buf->f_ffree = sbi->max_morsels - sbi->nr_morsels;
	}
	spin_unlock(&sbi->lock);
	return 0;
}

static int morselfs_show_options(struct seq_file *m, struct dentry *root)
{
	struct morsel_sb *sbi = root->d_sb->s_fs_info;

	if (sbi->max_pages)
		seq_printf(m, ",size=%luk", sbi->max_pages << (PAGE_SHIFT - 10));
	if (sbi->max_morsels)
		seq_printf(m, ",nr_morsels=%lu", sbi->max_morsels);
	if (sbi->mode != 01777)
		seq_printf(m, ",mode=%03o", sbi->mode);
	if (!uid_eq(sbi->uid, GLOBAL_ROOT_UID))
		seq_printf(m, ",uid=%u",
			   from_kuid_munged(&init_user_ns, sbi->uid));
	if (!gid_eq(sbi->gid, GLOBAL_ROOT_GID))
		seq_printf(m, ",gid=%u",
			   from_kgid_munged(&init_user_ns, sbi->gid));
	return 0;
}

static const struct super_operations morselfs_ops = {
	.alloc_inode = morselfs_alloc_inode,
	.free_inode = morselfs_free_inode,
	.evict_inode = morselfs_evict_inode,
	.drop_inode = generic_delete_inode,
	.statfs = morselfs_statfs,
	.show_options = morselfs_show_options,
};

/* Mounting */

enum { OPT_SIZE, OPT_NR_MORSELS, OPT_MODE, OPT_UID, OPT_GID };

static const struct fs_parameter_spec morselfs_params[] = {
	fsparam_string("size", OPT_SIZE),
	fsparam_string("nr_morsels", OPT_NR_MORSELS),
	fsparam_u32oct("mode", OPT_MODE),
	fsparam_u32("uid", OPT_UID),
	fsparam_u32("gid", OPT_GID),
	{}
};

struct morselfs_context {
	struct morsel_sb opts;
	unsigned int seen;		/* bit per Opt_* given */
};

static int parse_count(struct fs_context *fc, struct fs_parameter *param,
		       unsigned long *out, unsigned long unit)
{
	unsigned long long v;
	char *rest;

	v = memparse(param->string, &rest);
	if (*rest || rest == param->string)
		return invalfc(fc, "%s=%s: expected a number with an optional k, m or g suffix",
			       param->key, param->string);
	/* Rounding up must not wrap to 0, which would mean "no limit". */
	if (v > ULONG_MAX - (unit - 1))
		return invalfc(fc, "%s=%s: too large", param->key,
			       param->string);
	*out = DIV_ROUND_UP_ULL(v, unit);
	return 0;
}

static int morselfs_parse_param(struct fs_context *fc,
				struct fs_parameter *param)
{
	struct morselfs_context *ctx = fc->fs_private;
	struct fs_parse_result result;
	int opt, err = 0;
	kuid_t uid;
	kgid_t gid;

	opt = fs_parse(fc, morselfs_params, param, &result);
	if (opt < 0)
		return opt;
	switch (opt) {
	case OPT_SIZE:
		err = parse_count(fc, param, &ctx->opts.max_pages, PAGE_SIZE);
		break;
	case OPT_NR_MORSELS:
		err = parse_count(fc, param, &ctx->opts.max_morsels, 1);
		break;
	case OPT_MODE:
		ctx->opts.mode = result.uint_32 & 07777;
		break;
	case OPT_UID:
		uid = make_kuid(current_user_ns(), result.uint_32);
		if (!uid_valid(uid))
			return invalfc(fc, "uid=%u: not mapped in this user namespace",
				       result.uint_32);
		ctx->opts.uid = uid;
		break;
	case OPT_GID:
		gid = make_kgid(current_user_ns(), result.uint_32);
		if (!gid_valid(gid))
			return invalfc(fc, "gid=%u: not mapped in this user namespace",
				       result.uint_32);
		ctx->opts.gid = gid;
		break;
	}
	if (!err)
		ctx->seen |= 1U << opt;
	return err;
}

static int morselfs_fill_super(struct super_block *sb, struct fs_context *fc)
{
	struct morselfs_context *ctx = fc->fs_private;
	struct morsel_sb *sbi;
	struct inode *inode;

	sbi = kmemdup(&ctx->opts, sizeof(*sbi), GFP_KERNEL);
	if (!sbi)
		return -ENOMEM;
	spin_lock_init(&sbi->lock);
	sb->s_fs_info = sbi;
	sb->s_maxbytes = MORSEL_MAX_SIZE;
	sb->s_blocksize = PAGE_SIZE;
	sb->s_blocksize_bits = PAGE_SHIFT;
	sb->s_magic = MORSELFS_MAGIC;
	sb->s_op = &morselfs_ops;
	sb->s_time_gran = 1;

	inode = morselfs_get_inode(sb, NULL, S_IFDIR | sbi->mode);
	if (IS_ERR(inode))
		return PTR_ERR(inode);
	inode->i_uid = sbi->uid;
	inode->i_gid = sbi->gid;
	sb->s_root = d_make_root(inode);
	return sb->s_root ? 0 : -ENOMEM;
}

static int morselfs_get_tree(struct fs_context *fc)
{
	return get_tree_nodev(fc, morselfs_fill_super);
}

/* Remount: the limits may change, not below what is in use. */
static int morselfs_reconfigure(struct fs_context *fc)
{
	struct morselfs_context *ctx = fc->fs_private;
	struct morsel_sb *sbi = fc->root->d_sb->s_fs_info;
	int err = 0;

	spin_lock(&sbi->lock);
	if ((ctx->seen & BIT(OPT_SIZE)) && ctx->opts.max_pages &&
	    ctx->opts.max_pages < sbi->used_pages)
		err = -EBUSY;
	else if ((ctx->seen & BIT(OPT_NR_MORSELS)) && ctx->opts.max_morsels &&
		 ctx->opts.max_morsels < sbi->nr_morsels)
		err = -EBUSY;
	if (!err && (ctx->seen & BIT(OPT_SIZE)))
		sbi->max_pages = ctx->opts.max_pages;
	if (!err && (ctx->seen & BIT(OPT_NR_MORSELS)))
		sbi->max_morsels = ctx->opts.max_morsels;
	spin_unlock(&sbi->lock);
	if (err)
		return invalfc(fc, "limit below current usage");
	return 0;
}

static void morselfs_free_fc(struct fs_context *fc)
{
	kfree(fc->fs_private);
}

static const struct fs_context_operations morselfs_context_ops = {
	.parse_param = morselfs_parse_param,
	.get_tree = morselfs_get_tree,
	.reconfigure = morselfs_reconfigure,
	.free = morselfs_free_fc,
};

static int morselfs_init_fs_context(struct fs_context *fc)
{
	struct morselfs_context *ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	/*
	 * As tmpfs: by default at most half of RAM.  Frames belong to no
	 * process, so the OOM killer cannot free them by killing one.
	 */
	ctx->opts.max_pages = totalram_pages() / 2;
	ctx->opts.mode = 01777;
	ctx->opts.uid = current_fsuid();
	ctx->opts.gid = current_fsgid();
	fc->fs_private = ctx;
	fc->ops = &morselfs_context_ops;
	return 0;
}

static void morselfs_kill_sb(struct super_block *sb)
{
	struct morsel_sb *sbi = sb->s_fs_info;

	kill_litter_super(sb);
	kfree(sbi);
}

static struct file_system_type morselfs_type = {
	.owner = THIS_MODULE,
	.name = "morselfs",
	.init_fs_context = morselfs_init_fs_context,
	.parameters = morselfs_params,
	.kill_sb = morselfs_kill_sb,
};
MODULE_ALIAS_FS("morselfs");

static void morsel_inode_init_once(void *p)
{
	struct morsel *m = p;

	inode_init_once(&m->vfs_inode);
}

int morselfs_init(void)
{
	int err;

	morsel_inode_cache = kmem_cache_create("morsel_inode",
					       sizeof(struct morsel), 0,
					       SLAB_RECLAIM_ACCOUNT |
					       SLAB_ACCOUNT,
					       morsel_inode_init_once);
	if (!morsel_inode_cache)
		return -ENOMEM;
	err = register_filesystem(&morselfs_type);
	if (err)
		kmem_cache_destroy(morsel_inode_cache);
	return err;
}

void morselfs_exit(void)
{
	unregister_filesystem(&morselfs_type);
	rcu_barrier();	/* inodes are freed after a grace period */
	kmem_cache_destroy(morsel_inode_cache);
}
