// SPDX-License-Identifier: GPL-2.0
/*
 * Extended attributes of morselfs inodes, in the user. and trusted.
 * namespaces, kept in memory as tmpfs keeps them.
 *
 * This file owns the per-inode list of attributes and its limit.  The VFS
 * checks the rights before we are called (user.: the inode's read or
 * write permission, regular files and directories only; trusted.:
 * CAP_SYS_ADMIN).  Each inode may hold MORSEL_XATTR_SPACE bytes of names
 * and values (ENOSPC past it); the memory is charged to the caller's
 * memcg.  Set and remove run under inode_lock (the VFS takes it); the
 * list is also read by get and list, which do not take it: @xattr_lock
 * guards it.
 */
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/xattr.h>

#include "morsel.h"

/* Names and values of one inode, in bytes (tmpfs: 128 KiB per mount). */
#define MORSEL_XATTR_SPACE	(64 * 1024)

struct morsel_xattr {
	struct list_head node;
	size_t size;			/* of @value */
	char *name;			/* full name, with its prefix */
	char value[];
};

static size_t xattr_space(const char *name, size_t size)
{
	return sizeof(struct morsel_xattr) + strlen(name) + 1 + size;
}

static struct morsel_xattr *find_xattr(struct morsel *m, const char *name)
{
	struct morsel_xattr *x;

	list_for_each_entry(x, &m->xattrs, node)
		if (!strcmp(x->name, name))
			return x;
	return NULL;
}

static int morsel_xattr_get(const struct xattr_handler *handler,
			    struct dentry *unused, struct inode *inode,
			    const char *name, void *buffer, size_t size)
{
	struct morsel *m = MORSEL(inode);
	struct morsel_xattr *x;
	int ret;

	name = xattr_full_name(handler, name);
	spin_lock(&m->xattr_lock);
	x = find_xattr(m, name);
	if (!x)
		ret = -ENODATA;
	else if (!buffer)
		ret = x->size;		/* the size it needs */
	else if (size < x->size)
		ret = -ERANGE;
	else
		ret = x->size;
	if (x && buffer && ret >= 0)
		memcpy(buffer, x->value, x->size);
	spin_unlock(&m->xattr_lock);
	return ret;
}

/* A new attribute @name = @value, or NULL (ENOMEM). */
static struct morsel_xattr *new_xattr(const char *name, const void *value,
				      size_t size)
{
	struct morsel_xattr *x = kmalloc(sizeof(*x) + size, GFP_KERNEL_ACCOUNT);

	if (!x)
		return NULL;
	x->name = kstrdup(name, GFP_KERNEL_ACCOUNT);
	if (!x->name) {
		kfree(x);
		return NULL;
	}
	x->size = size;
	memcpy(x->value, value, size);
	return x;
}

static void free_xattr(struct morsel_xattr *x)
{
	if (x) {
		kfree(x->name);
		kfree(x);
	}
}

/* Set (@value), or remove (NULL), the attribute @name of @inode. */
static int morsel_xattr_set(const struct xattr_handler *handler,
			    struct mnt_idmap *idmap, struct dentry *unused,
			    struct inode *inode, const char *name,
			    const void *value, size_t size, int flags)
{
	struct morsel *m = MORSEL(inode);
	struct morsel_xattr *new = NULL, *old;
	size_t used;
	int err = 0;

	lockdep_assert_held_write(&inode->i_rwsem);
	name = xattr_full_name(handler, name);
	if (value) {
		new = new_xattr(name, value, size);
		if (!new)
			return -ENOMEM;
	}
	spin_lock(&m->xattr_lock);
	old = find_xattr(m, name);
	used = m->xattr_bytes - (old ? xattr_space(old->name, old->size) : 0);
	if (old && (flags & XATTR_CREATE))
		err = -EEXIST;
	else if (!old && ((flags & XATTR_REPLACE) || !value))
		err = -ENODATA;
	else if (new && used + xattr_space(name, size) > MORSEL_XATTR_SPACE)
		err = -ENOSPC;
	if (!err) {
		if (old)
			list_del(&old->node);
		if (new)
			list_add_tail(&new->node, &m->xattrs);
		m->xattr_bytes = used + (new ? xattr_space(name, size) : 0);
	}
	spin_unlock(&m->xattr_lock);
	if (err) {
		free_xattr(new);
		return err;
	}
	free_xattr(old);
	inode_set_ctime_current(inode);
	return 0;
}

/* The names of @dentry's attributes, each NUL terminated, into @buffer. */
ssize_t morsel_listxattr(struct dentry *dentry, char *buffer, size_t size)
{
	struct morsel *m = MORSEL(d_inode(dentry));
	bool trusted = capable(CAP_SYS_ADMIN);
	struct morsel_xattr *x;
	ssize_t used = 0;
	size_t len;

	spin_lock(&m->xattr_lock);
	list_for_each_entry(x, &m->xattrs, node) {
		/* As the VFS shows trusted. names: to CAP_SYS_ADMIN only. */
		if (!trusted && !strncmp(x->name, XATTR_TRUSTED_PREFIX,
					 XATTR_TRUSTED_PREFIX_LEN))
			continue;
		len = strlen(x->name) + 1;
		if (buffer) {
			if (used + len > size) {
				used = -ERANGE;
				break;
			}
			memcpy(buffer + used, x->name, len);
		}
		used += len;
	}
	spin_unlock(&m->xattr_lock);
	return used;
}

/* Free every attribute of @m (the inode is going). */
void morsel_free_xattrs(struct morsel *m)
{
	struct morsel_xattr *x, *next;

	list_for_each_entry_safe(x, next, &m->xattrs, node)
		free_xattr(x);
	INIT_LIST_HEAD(&m->xattrs);
	m->xattr_bytes = 0;
}

static const struct xattr_handler morsel_user_xattr = {
	.prefix = XATTR_USER_PREFIX,
	.get = morsel_xattr_get,
	.set = morsel_xattr_set,
};

static const struct xattr_handler morsel_trusted_xattr = {
	.prefix = XATTR_TRUSTED_PREFIX,
	.get = morsel_xattr_get,
	.set = morsel_xattr_set,
};

const struct xattr_handler * const morsel_xattr_handlers[] = {
	&morsel_user_xattr,
	&morsel_trusted_xattr,
	NULL,
};
