/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interfaces of the morsel module: what its files share.
 *
 * A morsel is a regular file of morselfs whose contents are a subtree of
 * x86-64 page tables: a PTE table (up to 2 MiB), a PMD table of PTE tables
 * (up to 1 GiB) or a PUD table of PMD tables (up to 512 GiB).  Mapping the
 * file links whole tables of that subtree into the process page tables.
 * Which file owns what: docs/design.md, "Layout", and each file's header.
 *
 * Lock order, outermost first (in the manner of mm/rmap.c):
 *
 * inode_lock (write, resize, fallocate, FREEZE, SCAN with CLEAN)
 *   mmap_lock, or the VMA lock (a fault: of ours, or of a user copy)
 *     m->lock (rwsem)
 *       m->replace_sem (rwsem; children only: morsel_replacements_*())
 *         m->hole_sem (rwsem; pgtable.c, forget_hole_links())
 *           mapping->i_mmap_rwsem (unmap_mapping_range(): punch, freeze,
 *                                 clean, replacements, hole links)
 *             mmu notifier SRCU, then mmm->lock (link.c)
 *               the process's pud_lock()/pmd_lock()
 *       an object table's split lock (morsel_table_lock())
 *         its twin's split lock (SINGLE_DEPTH_NESTING)
 *       m->root_lock
 *       mmm->lock (morsel_link(), from a fault under m->lock shared,
 *                  and m->hole_sem shared for a hole link)
 *         the process's pud_lock()/pmd_lock()
 *
 * Never the other way round: in particular nothing waits for replace_sem
 * while it holds hole_sem (fault_pmd() drops it before link_result()).
 *
 * Taken alone: sbi->lock (size= and nr_morsels= counters),
 * morsel_list_lock (debugfs list), mmm->lock from the notifier.
 * Syscalls that copy from or to user memory drop m->lock first (the memory
 * may be a mapping of the same object: its fault takes m->lock), holding
 * a reference on the frame instead.
 */
#ifndef _MORSEL_INTERNAL_H
#define _MORSEL_INTERNAL_H

#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/rbtree.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <uapi/linux/morsel.h>

/* Per-mount state and limits (mount options). */
struct morsel_sb {
	spinlock_t lock;		/* protects the counters below */
	unsigned long max_pages;	/* size=, in data pages; 0: none */
	unsigned long used_pages;
	unsigned long max_morsels;	/* nr_morsels=; 0: no limit */
	unsigned long nr_morsels;
	umode_t mode;			/* mode= of the root directory */
	kuid_t uid;
	kgid_t gid;
};

/*
 * One memory object.  The subtree below @root is the object's state; no
 * other per-page metadata exists.
 *
 * Locking:
 *  - @lock (rwsem) is taken exclusively to change @level/@root (resize)
 *    and to free frames (punch hole, truncate); it is taken shared to look
 *    up or populate entries from syscalls and from the page-by-page fault
 *    path.  Faults through a linked table never take it: while a morsel is
 *    mapped its tables are never freed or re-rooted.
 *  - entries of a PTE or PMD table are written under that table's split
 *    page-table lock (ptlock_ptr of its ptdesc), the same lock the core mm
 *    takes when it walks a linked table;
 *  - entries of a PUD root and the @root pointer under @root_lock.
 */
struct morsel {
	struct rw_semaphore lock;
	spinlock_t root_lock;		/* see above */
	int level;			/* MORSEL_LEVEL_* */
	void *root;			/* root table, NULL while empty */
	bool frozen;			/* contents never change again */
	/*
	 * The frozen base this object was split from (a reference on its
	 * inode), or NULL.  An entry of ours that equals the parent's entry
	 * at the same offset is borrowed; every other entry is owned.
	 */
	struct morsel *parent;
	atomic_t children;
	/* A sequence count over the leaves: see morsel_leaf_gen_*() below. */
	atomic_t leaf_gen;
	/*
	 * Replacing a present leaf of a child (copy-on-write, or a frame for
	 * the zero page): morsel_replace_leaf() holds @replace_sem for writing from
	 * before the core mm may zap the old leaf through links until the new
	 * one is in, so meanwhile the leaf can read none.  Whoever would take
	 * a none leaf of a child for a hole waits for it (read_leaf(); SCAN,
	 * SEEK_DATA and usage counts take it for reading), and punching takes
	 * it for writing.  Order: m->lock, then @replace_sem.  @repl says,
	 * for the notifier (link.c), which leaf the task @repl.task replaces;
	 * written under @replace_sem for writing.
	 */
	struct rw_semaphore replace_sem;
	struct morsel_replacement {
		struct task_struct *task;	/* NULL: none running */
		pgoff_t index;
		unsigned long table_pfn;	/* PTE table of the leaf */
		unsigned long twin_pfn;		/* its read-only twin, or 0 */
		unsigned long pmd_table_pfn;	/* PMD table above, or 0 */
		unsigned long count;		/* replacements so far */
		unsigned long direct;		/* of those, without the core zap */
	} repl;
	u64 id;				/* random, non-zero, for images */
	/*
	 * Dirty tracking: MORSEL_SCAN_CLEAN scans so far.  Written under
	 * inode_lock (which also keeps write() out of a clean), read locklessly.
	 */
	u64 clean_gen;
	atomic_long_t data_pages;
	atomic_long_t table_pages;
	atomic_long_t links;
	/*
	 * Links of our PMD tables from process PUD entries: counted before
	 * the entry is written and after it is gone and flushed, so a table
	 * change that finds none needs no flush (own_pte_table()).
	 */
	atomic_long_t pud_links;
	/*
	 * Links of the shared hole table standing for chunks of ours without
	 * a table: counted before the chunk is checked (morsel_link()), and
	 * after the link is gone and flushed.  A chunk that gets a table
	 * while any exist is unmapped (forget_hole_links()).
	 */
	atomic_long_t hole_links;
	/*
	 * Held for writing by whoever gives a chunk a PTE table, from before
	 * the table can be seen until the hole links of the chunk are gone;
	 * for reading by linkers of the hole table (fault_pmd()), and
	 * waited for by whoever puts a frame into a table while hole links
	 * exist (morsel_install_leaf()).  Order: m->lock, replace_sem, then
	 * @hole_sem, then i_mmap_rwsem.
	 */
	struct rw_semaphore hole_sem;
	atomic_t mappers;
	/*
	 * VMAs of ours without write notification (fault.c,
	 * morsel_plain_vm_ops): made writable by mmap() of an object that is
	 * neither frozen nor a child, and their fork and split copies.  They
	 * take writable long-term pins; a store through them never reaches
	 * the module, so a freeze refuses (EBUSY) while any exists.  Raised
	 * by mmap() under @lock shared (a freeze holds it exclusively) and by
	 * ->open() only while the VMA it copies holds a count.
	 */
	atomic_t plain_mappers;
	struct xarray twins;		/* read-only twins of PTE tables */
	struct mem_cgroup *memcg;	/* charged for frames and tables */
	struct morsel_sb *sbi;
	struct list_head node;		/* on morsel_list, for debugfs */
	/* Extended attributes (xattr.c): the list and its bytes. */
	spinlock_t xattr_lock;
	struct list_head xattrs;
	size_t xattr_bytes;
	struct inode vfs_inode;
};

/* Indices of offset @off in the object's tables, as of a virtual address. */
#define MORSEL_PTE_INDEX(off)	(((off) >> PAGE_SHIFT) & (PTRS_PER_PTE - 1))
#define MORSEL_PMD_INDEX(off)	(((off) >> PMD_SHIFT) & (PTRS_PER_PMD - 1))
#define MORSEL_PUD_INDEX(off)	(((off) >> PUD_SHIFT) & (PTRS_PER_PUD - 1))

/*
 * Does the process entry @pmd point at the page table holding @table (a
 * table, or any entry in it)?  NULL: no.
 */
static inline bool pmd_links_table(pmd_t pmd, const void *table)
{
	return table && pmd_present(pmd) && !pmd_leaf(pmd) &&
	       pmd_pfn(pmd) == PHYS_PFN(__pa((unsigned long)table & PAGE_MASK));
}

/*
 * m->leaf_gen is a sequence count (a seqcount_t in all but the type, whose
 * writer API wants preemption off, while a replacement sleeps in
 * unmap_mapping_range(); and its readers would spin, while ours sleep on
 * replace_sem):
 *  - odd while a present leaf is being replaced by another frame
 *    (copy-on-write, morsel_replace_leaf(), which holds replace_sem for
 *    writing): morsel_leaf_gen_begin()/_end(), full barriers inside;
 *  - moved by two by a clean (MORSEL_SCAN_CLEAN), as
 *    write_seqcount_invalidate() does: morsel_leaf_gen_invalidate();
 *  - readers: the page-by-page fault path, which inserts a frame into a
 *    table the object does not own, reads an even value with
 *    morsel_leaf_gen_read() (sleeping on replace_sem while odd) and after
 *    its insert asks morsel_leaf_gen_moved(); morsel_link() and
 *    morsel_install_leaf() refuse while morsel_leaf_gen_replacing().
 */
static inline void morsel_leaf_gen_begin(atomic_t *gen)
{
	atomic_inc(gen);		/* odd */
	smp_mb__after_atomic();		/* then every translation's check */
}

static inline void morsel_leaf_gen_end(atomic_t *gen)
{
	smp_mb__before_atomic();	/* the new leaf, then the even value */
	atomic_inc(gen);
}

static inline void morsel_leaf_gen_invalidate(atomic_t *gen)
{
	smp_mb__before_atomic();	/* the cleaned leaves, then the count */
	atomic_add(2, gen);		/* stays even */
}

static inline bool morsel_leaf_gen_replacing(atomic_t *gen)
{
	return atomic_read(gen) & 1;
}

/* Has @gen moved since morsel_leaf_gen_read() gave @seen? */
static inline bool morsel_leaf_gen_moved(atomic_t *gen, int seen)
{
	smp_mb();	/* our insert, then the count: pairs with _begin() */
	return atomic_read(gen) != seen;
}

static inline struct morsel *MORSEL(struct inode *inode)
{
	return container_of(inode, struct morsel, vfs_inode);
}

/* Module-wide usage figures, exported under /sys/kernel/morsel. */
struct morsel_totals {
	atomic_long_t morsels;
	atomic_long_t data_pages;
	atomic_long_t table_pages;
	atomic_long_t links;
	atomic_long_t mappers;
	atomic_long_t address_spaces;
};

extern struct morsel_totals morsel_totals;

extern struct list_head morsel_list;
extern spinlock_t morsel_list_lock;

/* One batch of MORSEL_IOC_SCAN: bitmaps of up to MORSEL_SCAN_BATCH pages. */
#define MORSEL_SCAN_BATCH	(64 * PTRS_PER_PTE)
struct morsel_scan_batch {
	unsigned long present[MORSEL_SCAN_BATCH / BITS_PER_LONG];
	unsigned long owned[MORSEL_SCAN_BATCH / BITS_PER_LONG];
	unsigned long dirty[MORSEL_SCAN_BATCH / BITS_PER_LONG];
	unsigned long present_pages;
	unsigned long dirty_pages;
	bool cleaned;			/* some leaf was cleaned */
};

/* The caller's copy of an ioctl argument (ioctl.c). */
struct morsel_uarg {
	void __user *ptr;	/* the caller's struct */
	u32 size;		/* its argsz */
};

/* pgtable.c: the object's tables */
int morsel_level_for_size(loff_t size);
spinlock_t *morsel_table_lock(void *table);
bool morsel_charge_pages(struct morsel_sb *sbi, unsigned long nr);
void morsel_uncharge_pages(struct morsel_sb *sbi, unsigned long nr);
void *morsel_copy_table(struct morsel *m, void *src, int level);
pmd_t *morsel_pmd_table(struct morsel *m, loff_t off, bool alloc);
pte_t *morsel_pte_table(struct morsel *m, loff_t off, bool alloc);
pte_t *morsel_twin_of(struct morsel *m, pgoff_t index);
void morsel_mirror_leaf(pte_t *table, pte_t *twin, pgoff_t index,
			pte_t pte);
pte_t *morsel_ro_pte_table(struct morsel *m, loff_t off);
int morsel_hole_table_init(void);
void morsel_hole_table_exit(void);
pte_t *morsel_hole_table(void);
void morsel_free_empty_tables(struct morsel *m, pgoff_t first, pgoff_t end,
			      bool unlinked);
int morsel_set_size(struct morsel *m, loff_t size);
int morsel_own_for_undo(struct morsel *m, loff_t size);
void morsel_destroy(struct morsel *m);

/*
 * Leaf tests, inline: a scan asks them of every leaf of the object, and
 * under emulation a call and return per leaf cost more than the test.
 */

/* A leaf that holds data: a hole read through a mapping does not. */
static inline bool morsel_leaf_has_data(pte_t pte)
{
	return pte_present(pte) && !is_zero_pfn(pte_pfn(pte));
}

static inline bool morsel_same_frame(pte_t a, pte_t b)
{
	if (!pte_present(a) || !pte_present(b))
		return pte_present(a) == pte_present(b);
	return pte_pfn(a) == pte_pfn(b);
}

/*
 * Dirty tracking, for incremental saves.  An owned leaf is dirty while it
 * is writable or has D set.  Cleaning (morsel_scan()) clears both, so the
 * next store by any writer (the CPU through a link, a page mapped one by
 * one, write(), ptrace, a secondary MMU such as KVM, which all come through
 * morsel_writable_frame()) first makes the leaf writable and dirty
 * again.  Through a mapping without write notification (fault.c,
 * morsel_plain_vm_ops) the core does it instead (do_wp_page(), which
 * also sets PG_dirty), and a page such a mapping maps alone is counted
 * written when mapped.  Borrowed leaves are the base's: never dirty,
 * never cleaned.
 */
static inline bool morsel_leaf_dirty(pte_t pte)
{
	return pte_write(pte) || pte_dirty(pte);
}

/* leaf.c: frames and leaf entries */
struct page *morsel_alloc_frame(struct morsel *m, bool zero);
void morsel_name_frame(struct morsel *m, struct page *page, pgoff_t index);
void morsel_discard_frame(struct morsel *m, struct page *page);
void morsel_release_frame(struct morsel *m, struct page *page);
void morsel_free_frames(struct morsel *m, struct list_head *frames);
pte_t morsel_read_only_leaf(pte_t pte);
bool morsel_clean_leaf(pte_t *ptep);
bool morsel_install_leaf(struct morsel *m, pte_t *ptep, pgoff_t index,
			 pte_t old, struct page *page);
unsigned long morsel_clear_leaves(struct morsel *m, pte_t *table,
				  pgoff_t first, pgoff_t end,
				  struct list_head *frames);
struct page *morsel_find_frame(struct morsel *m, pgoff_t index);
struct page *morsel_fault_frame(struct morsel *m, pgoff_t index);
struct page *morsel_writable_frame(struct morsel *m, pgoff_t index,
				   struct vm_fault *vmf);
struct page *morsel_get_frame_to_read(struct morsel *m, pgoff_t index);
struct page *morsel_get_frame_to_write(struct morsel *m, pgoff_t index);
int morsel_fill_hole(struct morsel *m, pgoff_t index, struct page *page);
bool morsel_frame_writable(struct morsel *m, loff_t off, struct page *page);
bool morsel_leaf_maps(struct morsel *m, pgoff_t index, struct page *page);
struct page *morsel_frame_for_tail(struct morsel *m, loff_t at);
int morsel_populate(struct morsel *m, pgoff_t first, pgoff_t end);
int morsel_punch(struct morsel *m, pgoff_t first, pgoff_t end);

/* cow.c: copy-on-write */
struct morsel *morsel_parent_covering(struct morsel *m, loff_t off);
struct morsel *morsel_parent_covering_table(struct morsel *m, loff_t off,
					    unsigned long span);
bool morsel_pmd_table_borrowed(struct morsel *m, loff_t off, pmd_t *table);
bool morsel_pte_table_borrowed(struct morsel *m, loff_t off, pte_t *table);
pte_t *morsel_parent_pte_table(struct morsel *m, loff_t off,
			       pgoff_t *their_end);
bool morsel_leaf_in_parent(pte_t pte, pgoff_t index, pte_t *theirs,
			   pgoff_t their_end);
bool morsel_leaf_borrowed(struct morsel *m, loff_t off, pte_t pte);
void morsel_replacements_read_lock(struct morsel *m);
void morsel_replacements_read_unlock(struct morsel *m);
void morsel_replacements_write_lock(struct morsel *m);
void morsel_replacements_write_unlock(struct morsel *m);
bool morsel_replace_leaf(struct morsel *m, pte_t *ptep, pgoff_t index,
			 pte_t old, struct page *page, struct vm_fault *vmf);
int morsel_freeze(struct morsel *m);
int morsel_adopt(struct morsel *child, struct morsel *base);
long morsel_ioctl_freeze(struct file *file, struct morsel_freeze *arg,
			 const struct morsel_uarg *ua);
long morsel_ioctl_split(struct file *file, struct morsel_split *arg,
			const struct morsel_uarg *ua);

/* scan.c: layout from the leaves */
unsigned long morsel_visible_pages(struct morsel *m);
loff_t morsel_seek_data(struct morsel *m, loff_t off, int whence);
loff_t morsel_next_data(struct morsel *m, loff_t off, loff_t end);
void morsel_scan(struct morsel *m, pgoff_t first, pgoff_t end, bool clean,
		 struct morsel_scan_batch *b);
long morsel_ioctl_scan(struct file *file, struct morsel_scan *arg,
		       const struct morsel_uarg *ua);

/* link.c */
enum morsel_link_level {
	MORSEL_LINK_PMD,	/* a PTE table linked from a process PMD entry */
	MORSEL_LINK_PUD,	/* a PMD table linked from a process PUD entry */
};

struct morsel_mm;

struct morsel_mm *morsel_mm_get(struct mm_struct *mm);
void morsel_mm_put(struct morsel_mm *mmm);
int morsel_link(struct morsel_mm *mmm, struct morsel *m,
		enum morsel_link_level level, void *entry,
		unsigned long start, void *table, loff_t off);
void morsel_unlink_straddling(struct morsel_mm *mmm, unsigned long addr);
bool morsel_linked_at(struct morsel_mm *mmm, unsigned long addr,
		      unsigned long *end);
void morsel_flush_tlb(void);
void morsel_flush_mm_page(struct mm_struct *mm, unsigned long addr);
bool morsel_fault_mm_alone(struct vm_fault *vmf);
bool morsel_sole_translation(struct morsel *m, struct vm_fault *vmf);
int morsel_link_init(void);
void morsel_link_exit(void);

/* fault.c */
int morsel_mmap(struct file *file, struct vm_area_struct *vma);
unsigned long morsel_get_unmapped_area(struct file *file, unsigned long addr,
				       unsigned long len, unsigned long pgoff,
				       unsigned long flags);
long morsel_ioctl_map(struct file *file, struct morsel_map *arg,
		      const struct morsel_uarg *ua);

/* super.c: the filesystem */
int morselfs_init(void);
void morselfs_exit(void);

/* file.c: file operations */
extern const struct file_operations morsel_fops;
extern const struct inode_operations morsel_file_iops;
int morsel_resize(struct morsel *m, loff_t size);
ssize_t morsel_access_kernel(struct morsel *m, loff_t off, void *buf,
			     size_t len, bool write);

/* fill.c */
long morsel_ioctl_fill(struct file *file, struct morsel_fill *arg,
		       const struct morsel_uarg *ua);

/* xattr.c: extended attributes */
extern const struct xattr_handler * const morsel_xattr_handlers[];
ssize_t morsel_listxattr(struct dentry *dentry, char *buffer, size_t size);
void morsel_free_xattrs(struct morsel *m);

/* ioctl.c */
int morsel_check_rights(struct file *file, fmode_t need);
int morsel_copy_arg(void *karg, size_t ksize, size_t minsz,
		    struct morsel_uarg *ua);
int morsel_return_arg(const struct morsel_uarg *ua, const void *karg,
		      size_t ksize);
long morsel_ioctl(struct file *file, unsigned int cmd, unsigned long arg);

/* main.c */
int morsel_stats_init(void);
void morsel_stats_exit(void);

#endif /* _MORSEL_INTERNAL_H */
