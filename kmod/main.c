// SPDX-License-Identifier: GPL-2.0
/*
 * Module entry points and the usage figures.
 *
 * /sys/kernel/morsel/ holds module-wide totals, one number a file; the
 * test harness checks that each is back to zero once every morselfs mount
 * is gone.  /sys/kernel/debug/morsel/objects lists every object with its
 * own figures (MORSEL_IOC_STAT gives the same for one open file), and how
 * many leaves a copy-on-write replaced, in all and without the core mm's
 * zap (morsel_replace_leaf()).
 */
#include <linux/debugfs.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/sysfs.h>

#include "morsel.h"

struct morsel_totals morsel_totals;

static struct kobject *morsel_kobj;
static struct dentry *morsel_debugfs;

#define MORSEL_TOTAL_ATTR(name)						\
static ssize_t name##_show(struct kobject *kobj,			\
			   struct kobj_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%ld\n",					\
			  atomic_long_read(&morsel_totals.name));	\
}									\
static struct kobj_attribute name##_attr = __ATTR_RO(name)

MORSEL_TOTAL_ATTR(morsels);
MORSEL_TOTAL_ATTR(data_pages);
MORSEL_TOTAL_ATTR(table_pages);
MORSEL_TOTAL_ATTR(links);
MORSEL_TOTAL_ATTR(mappers);

static struct attribute *morsel_total_attrs[] = {
	&morsels_attr.attr,
	&data_pages_attr.attr,
	&table_pages_attr.attr,
	&links_attr.attr,
	&mappers_attr.attr,
	NULL,
};

static const struct attribute_group morsel_total_group = {
	.attrs = morsel_total_attrs,
};

static int objects_show(struct seq_file *s, void *unused)
{
	struct morsel *m;

	seq_puts(s, "ino size level data_pages table_pages links mappers replaced replaced_direct\n");
	spin_lock(&morsel_list_lock);
	list_for_each_entry(m, &morsel_list, node)
		seq_printf(s, "%lu %lld %d %ld %ld %ld %d %lu %lu\n",
			   m->vfs_inode.i_ino, i_size_read(&m->vfs_inode),
			   READ_ONCE(m->level),
			   atomic_long_read(&m->data_pages),
			   atomic_long_read(&m->table_pages),
			   atomic_long_read(&m->links),
			   atomic_read(&m->mappers),
			   READ_ONCE(m->repl.count),
			   READ_ONCE(m->repl.direct));
	spin_unlock(&morsel_list_lock);
	seq_printf(s, "# address_spaces %ld\n",
		   atomic_long_read(&morsel_totals.address_spaces));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(objects);

int morsel_stats_init(void)
{
	int err;

	morsel_kobj = kobject_create_and_add("morsel", kernel_kobj);
	if (!morsel_kobj)
		return -ENOMEM;
	err = sysfs_create_group(morsel_kobj, &morsel_total_group);
	if (err) {
		kobject_put(morsel_kobj);
		return err;
	}
	morsel_debugfs = debugfs_create_dir("morsel", NULL);
	debugfs_create_file("objects", 0400, morsel_debugfs, NULL,
			    &objects_fops);
	return 0;
}

void morsel_stats_exit(void)
{
	debugfs_remove_recursive(morsel_debugfs);
	kobject_put(morsel_kobj);
}

static int __init morsel_init(void)
{
	int err;

	err = morsel_hole_table_init();
	if (err)
		return err;
	err = morsel_link_init();
	if (err)
		goto out_hole;
	err = morsel_stats_init();
	if (err)
		goto out_link;
	err = morselfs_init();
	if (err)
		goto out_stats;
	return 0;
out_stats:
	morsel_stats_exit();
out_link:
	morsel_link_exit();
out_hole:
	morsel_hole_table_exit();
	return err;
}

static void __exit morsel_exit(void)
{
	morselfs_exit();
	morsel_stats_exit();
	morsel_link_exit();
	morsel_hole_table_exit();
	WARN(atomic_long_read(&morsel_totals.address_spaces),
	     "morsel: %ld address-space records leaked\n",
	     atomic_long_read(&morsel_totals.address_spaces));
}

module_init(morsel_init);
module_exit(morsel_exit);
MODULE_DESCRIPTION("morsel: memory objects that are page-table subtrees");
MODULE_LICENSE("GPL");
