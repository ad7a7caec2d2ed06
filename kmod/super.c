// SPDX-License-Identifier: GPL-2.0
/*
 * morselfs: the filesystem whose regular files are morsels.
 *
 * This file owns mounting (options and limits), the superblock, inodes and
 * directories, and the list of objects (debugfs).  Names, owners, modes and
 * hard links are the VFS's, through the simple_* helpers, as in ramfs.
 * The operations on a morsel's file are in file.c, its ioctls in ioctl.c.
 */
#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/random.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/statfs.h>

#include "morsel.h"

LIST_HEAD(morsel_list);
DEFINE_SPINLOCK(morsel_list_lock);

static struct kmem_cache *morsel_inode_cache;
static const struct super_operations morselfs_ops;
static const struct inode_operations morselfs_dir_iops;

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
	.listxattr = morsel_listxattr,
};

/* Superblock */

static struct inode *morselfs_alloc_inode(struct super_block *sb)
{
	struct morsel *m = alloc_inode_sb(sb, morsel_inode_cache, GFP_KERNEL);

	if (!m)
		return NULL;
	init_rwsem(&m->lock);
	init_rwsem(&m->replace_sem);
	init_rwsem(&m->hole_sem);
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
	atomic_set(&m->plain_mappers, 0);
	m->memcg = NULL;
	m->sbi = sb->s_fs_info;
	INIT_LIST_HEAD(&m->node);
	spin_lock_init(&m->xattr_lock);
	INIT_LIST_HEAD(&m->xattrs);
	m->xattr_bytes = 0;
	return &m->vfs_inode;
}

static void morselfs_free_inode(struct inode *inode)
{
	kmem_cache_free(morsel_inode_cache, MORSEL(inode));
}

static void morselfs_evict_inode(struct inode *inode)
{
	struct morsel *m = MORSEL(inode);

	morsel_free_xattrs(m);
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
	sb->s_xattr = morsel_xattr_handlers;
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
