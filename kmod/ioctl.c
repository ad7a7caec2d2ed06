// SPDX-License-Identifier: GPL-2.0
/*
 * The ioctls of a morsel: argument copying, rights, dispatch, and STAT.
 *
 * This file owns the conventions every ioctl follows (the uAPI header has
 * them for users):
 *  - the argument is one struct whose first u32, argsz, is its size as the
 *    caller knows it; morsel_copy_arg() takes it in with
 *    copy_struct_from_user() after checking argsz against the first
 *    published size, and morsel_return_arg() writes back no more than the
 *    caller's size.  A struct can grow at its end: old callers get zero
 *    for what they do not know, new callers E2BIG for what the module
 *    does not know;
 *  - each handler then checks its flags and rules (EINVAL), and the
 *    rights of the descriptor (morsel_check_rights(), EBADF);
 *  - the handlers live with what they operate on: MAP in fault.c, FILL in
 *    fill.c, FREEZE and SPLIT with copy-on-write, SCAN with the dirty scan.
 */
#include <linux/fs.h>
#include <linux/uaccess.h>

#include "morsel.h"

/*
 * What the descriptor of an ioctl must have been opened for (the rights
 * table in docs/semantics.md): reading to reveal or copy contents (SPLIT,
 * SCAN, MAP, FILL's report of holes), writing to change contents or state
 * (FREEZE, FILL, SCAN's clean).  As for read(2) and write(2), the open
 * mode is what counts, and a descriptor without it gets EBADF.
 */
int morsel_check_rights(struct file *file, fmode_t need)
{
	return (file->f_mode & need) == need ? 0 : -EBADF;
}

/*
 * Copy in the argument at @ua->ptr into @karg, the module's struct of
 * @ksize bytes, first published as @minsz bytes; @ua->size becomes the
 * caller's argsz.  EINVAL below @minsz; E2BIG above a page, or when the
 * caller's struct is larger and sets bytes the module does not know;
 * EFAULT.
 */
int morsel_copy_arg(void *karg, size_t ksize, size_t minsz,
		    struct morsel_uarg *ua)
{
	u32 usize;

	if (get_user(usize, (u32 __user *)ua->ptr))
		return -EFAULT;
	if (usize < minsz)
		return -EINVAL;
	/* As openat2() and clone3(): a struct never grows past a page. */
	if (usize > PAGE_SIZE)
		return -E2BIG;
	ua->size = usize;
	return copy_struct_from_user(karg, ksize, ua->ptr, usize);
}

/* Write @karg back, as much of it as the caller's struct holds. */
int morsel_return_arg(const struct morsel_uarg *ua, const void *karg,
		      size_t ksize)
{
	if (copy_to_user(ua->ptr, karg, min_t(size_t, ksize, ua->size)))
		return -EFAULT;
	return 0;
}

static long morsel_ioctl_stat(struct file *file, struct morsel_stat *st,
			      const struct morsel_uarg *ua)
{
	struct morsel *m = MORSEL(file_inode(file));

	if (st->flags)
		return -EINVAL;
	down_read(&m->lock);
	st->size = i_size_read(&m->vfs_inode);
	st->level = m->level;
	st->state = m->frozen ? MORSEL_STATE_FROZEN : 0;
	st->data_pages = atomic_long_read(&m->data_pages);
	st->borrowed_pages = m->parent ?
		morsel_visible_pages(m) - st->data_pages : 0;
	up_read(&m->lock);
	st->table_pages = atomic_long_read(&m->table_pages);
	st->links = atomic_long_read(&m->links);
	st->mappers = atomic_read(&m->mappers);
	st->parent = m->parent ? m->parent->vfs_inode.i_ino : 0;
	st->children = atomic_read(&m->children);
	st->id = m->id;
	st->clean_gen = READ_ONCE(m->clean_gen);
	return morsel_return_arg(ua, st, sizeof(*st));
}

/* Copy the argument in as a struct @type, then call @handler with it. */
#define MORSEL_CALL(handler, type, ver0) ({				\
	type karg;							\
	long __err = morsel_copy_arg(&karg, sizeof(karg), ver0, &ua);	\
									\
	__err ?: handler(file, &karg, &ua);				\
})

long morsel_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct morsel_uarg ua = { .ptr = (void __user *)arg };

	switch (cmd) {
	case MORSEL_IOC_STAT:
		return MORSEL_CALL(morsel_ioctl_stat, struct morsel_stat,
				   MORSEL_STAT_SIZE_VER0);
	case MORSEL_IOC_MAP:
		return MORSEL_CALL(morsel_ioctl_map, struct morsel_map,
				   MORSEL_MAP_SIZE_VER0);
	case MORSEL_IOC_FREEZE:
		return MORSEL_CALL(morsel_ioctl_freeze, struct morsel_freeze,
				   MORSEL_FREEZE_SIZE_VER0);
	case MORSEL_IOC_SPLIT:
		return MORSEL_CALL(morsel_ioctl_split, struct morsel_split,
				   MORSEL_SPLIT_SIZE_VER0);
	case MORSEL_IOC_SCAN:
		return MORSEL_CALL(morsel_ioctl_scan, struct morsel_scan,
				   MORSEL_SCAN_SIZE_VER0);
	case MORSEL_IOC_FILL:
		return MORSEL_CALL(morsel_ioctl_fill, struct morsel_fill,
				   MORSEL_FILL_SIZE_VER0);
	}
	return -ENOTTY;
}
