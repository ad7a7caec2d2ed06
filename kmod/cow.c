// SPDX-License-Identifier: GPL-2.0
/*
 * Copy-on-write: frozen bases and split children.
 *
 * This file owns MORSEL_IOC_FREEZE (write-protect every leaf, refuse
 * stores from then on), MORSEL_IOC_SPLIT (a child whose root is a copy of
 * its base's, so every table and frame below is borrowed), the ownership
 * test, and replacing a borrowed leaf (or the zero page) by a frame of the
 * child's own without anyone seeing the hole in between (morsel_replace_leaf()).
 *
 * Ownership is decided from the tables alone: an entry of a child that
 * equals its base's entry at the same offset (same table page, or same
 * frame) is borrowed, anything else is owned.  The base is frozen and its
 * entries only go from none to present, so the test is stable and needs
 * no reference counts and no reverse map.  Before a child changes a table
 * it owns a copy of it (pgtable.c); before it writes a borrowed frame it
 * copies the page (leaf.c, then morsel_replace_leaf()).
 */
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/namei.h>

#include "morsel.h"

/*
 * The parent, if it covers @off (comparing with it means something).  A
 * table covers a whole granule: a parent has the table of every granule
 * that starts inside its size, also past the size (the rest of its last
 * granule), so callers asking about a table pass the granule's start,
 * morsel_parent_covering_table().  (Only asking about @off itself, a
 * child grown past its base took the base's last PTE table for its own
 * and wrote frames into it: the operation fuzzer's first module bug.)
 */
struct morsel *morsel_parent_covering(struct morsel *m, loff_t off)
{
	struct morsel *p = m->parent;

	return p && off < i_size_read(&p->vfs_inode) ? p : NULL;
}

struct morsel *morsel_parent_covering_table(struct morsel *m, loff_t off,
					    unsigned long span)
{
	return morsel_parent_covering(m, ALIGN_DOWN(off, span));
}

bool morsel_pmd_table_borrowed(struct morsel *m, loff_t off, pmd_t *table)
{
	struct morsel *p = morsel_parent_covering_table(m, off, PUD_SIZE);

	return p && morsel_pmd_table(p, off, false) == table;
}

bool morsel_pte_table_borrowed(struct morsel *m, loff_t off, pte_t *table)
{
	struct morsel *p = morsel_parent_covering_table(m, off, PMD_SIZE);

	return p && morsel_pte_table(p, off, false) == table;
}

/*
 * The parent's PTE table of @off's chunk, or NULL, for a walk over a
 * table of ours that compares each leaf with the parent's (one lookup per
 * table, not per leaf).  *@their_end, if asked for, is the first page
 * past the parent's size: only leaves below it can be borrowed
 * (morsel_leaf_borrowed()).
 */
pte_t *morsel_parent_pte_table(struct morsel *m, loff_t off,
			       pgoff_t *their_end)
{
	struct morsel *p = morsel_parent_covering_table(m, off, PMD_SIZE);

	if (their_end)
		*their_end = p ? DIV_ROUND_UP(i_size_read(&p->vfs_inode),
					      PAGE_SIZE) : 0;
	return p ? morsel_pte_table(p, off, false) : NULL;
}

/*
 * Is @pte, a present leaf of ours at page @index, the parent's frame?
 * @theirs and @their_end are what morsel_parent_pte_table() gave for
 * @index's chunk: a walk over a whole table looks them up once.
 */
bool morsel_leaf_in_parent(pte_t pte, pgoff_t index, pte_t *theirs,
			   pgoff_t their_end)
{
	pte_t their_pte;

	if (!theirs || index >= their_end)
		return false;
	their_pte = ptep_get(theirs + (index & (PTRS_PER_PTE - 1)));
	return pte_present(their_pte) && pte_pfn(their_pte) == pte_pfn(pte);
}

/* Is @pte, our leaf at the page-aligned @off, the parent's frame? */
bool morsel_leaf_borrowed(struct morsel *m, loff_t off, pte_t pte)
{
	pgoff_t their_end;
	pte_t *theirs;

	if (!m->parent || !pte_present(pte))
		return false;
	theirs = morsel_parent_pte_table(m, off, &their_end);
	return morsel_leaf_in_parent(pte, off >> PAGE_SHIFT, theirs,
				     their_end);
}

/*
 * The replacement lock of a child (m->replace_sem; nothing in other
 * objects, whose leaves are never replaced).  Held for reading, a leaf is
 * never none for a moment: a leaf being replaced (morsel_replace_leaf(),
 * which holds it for writing) counts as present, never as a hole.  Held
 * for writing, no replacement can put a frame back into a hole being
 * punched.
 */
void morsel_replacements_read_lock(struct morsel *m)
{
	if (m->parent)
		down_read(&m->replace_sem);
}

void morsel_replacements_read_unlock(struct morsel *m)
{
	if (m->parent)
		up_read(&m->replace_sem);
}

void morsel_replacements_write_lock(struct morsel *m)
{
	if (m->parent)
		down_write(&m->replace_sem);
}

void morsel_replacements_write_unlock(struct morsel *m)
{
	if (m->parent)
		up_write(&m->replace_sem);
}

static unsigned long table_pfn(void *table)
{
	return table ? PHYS_PFN(__pa((unsigned long)table & PAGE_MASK)) : 0;
}

/*
 * Clear the leaf *@ptep of page @index, still @old, and its twin's: the
 * first half of a replacement.  Only we clear it: the core mm's zap must
 * never reach through a link to a leaf it did not make (it would drop a
 * reference and a mapcount that the leaf never took).  Was it @old?
 */
static bool clear_replaced_leaf(struct morsel *m, pte_t *ptep, pgoff_t index,
				pte_t old)
{
	spinlock_t *ptl = morsel_table_lock(ptep);
	bool cleared = false;
	pte_t *twin;

	spin_lock(ptl);
	if (morsel_same_frame(ptep_get(ptep), old)) {
		pte_clear(&init_mm, 0, ptep);
		twin = morsel_twin_of(m, index);
		if (twin)
			morsel_mirror_leaf(ptep, twin, index, __pte(0));
		cleared = true;
	}
	spin_unlock(ptl);
	return cleared;
}

/*
 * Replace the present leaf *@ptep of page @index of a child, still @old
 * (a frame borrowed from the base, or the zero page), by @page.  Every
 * translation of the old frame must go first: the leaf itself (and its
 * twin's), which we clear, TLB entries made through links, process
 * entries made page by page and secondary MMUs such as KVM (which only the
 * core mm's notifiers reach).  unmap_mapping_range() does the last three:
 * our notifier (link.c) sees from m->repl that the invalidation is this
 * one and, instead of removing the link, flushes the one page in that
 * address space (the core mm finds the leaf none and flushes nothing);
 * the core zaps the page-by-page entries, which took their own reference.
 * When the store fault @vmf (NULL for other writers) walks through this
 * very table and that is the old frame's only mapping
 * (morsel_sole_translation()), the same is done for that one page of that
 * one mm (zap_page_range_single(): its notifiers, ours among them, which
 * flushes the page) rather than for every mapping of the file; and when
 * no secondary MMU can hold the page either (morsel_fault_mm_alone()),
 * flushing the page is all there is to do.
 * The new leaf goes in after.
 * m->leaf_gen is odd meanwhile: a page-by-page fault waits for an even
 * value before its lookup and, if the value moved by its insert, waits
 * for it to be even again and removes the entry it inserted unless the
 * leaf still maps that frame (fault_one_page()), so the old frame is
 * never left mapped.
 * Returns false if the leaf changed meanwhile: the caller looks again.
 */
bool morsel_replace_leaf(struct morsel *m, pte_t *ptep, pgoff_t index,
			 pte_t old, struct page *page, struct vm_fault *vmf)
{
	loff_t off = (loff_t)index << PAGE_SHIFT;
	bool replaced = false, direct;

	down_write(&m->replace_sem);
	if (!morsel_same_frame(ptep_get(ptep), old))
		goto out;
	m->repl.index = index;
	m->repl.table_pfn = table_pfn(ptep);
	m->repl.twin_pfn = table_pfn(morsel_twin_of(m, index));
	m->repl.pmd_table_pfn = m->level >= MORSEL_LEVEL_PMD ?
				table_pfn(morsel_pmd_table(m, off, false)) : 0;
	WRITE_ONCE(m->repl.task, current);
	morsel_leaf_gen_begin(&m->leaf_gen);	/* pairs with fault_one_page() */
	/* The fault's address translates through the table of @ptep. */
	direct = vmf && pmd_links_table(pmdp_get_lockless(vmf->pmd), ptep) &&
		 morsel_sole_translation(m, vmf);
	if (clear_replaced_leaf(m, ptep, index, old)) {
		if (direct && morsel_fault_mm_alone(vmf))
			morsel_flush_mm_page(vmf->vma->vm_mm,
					     vmf->address & PAGE_MASK);
		else if (direct)
			zap_page_range_single(vmf->vma,
					      vmf->address & PAGE_MASK,
					      PAGE_SIZE, NULL);
		else
			unmap_mapping_range(m->vfs_inode.i_mapping, off,
					    PAGE_SIZE, 1);
		replaced = morsel_install_leaf(m, ptep, index, __pte(0), page);
	}
	if (replaced) {
		WRITE_ONCE(m->repl.count, m->repl.count + 1);
		WRITE_ONCE(m->repl.direct, m->repl.direct + direct);
	}
	WRITE_ONCE(m->repl.task, NULL);
	morsel_leaf_gen_end(&m->leaf_gen);
out:
	up_write(&m->replace_sem);
	return replaced;
}

/*
 * Write-protect every leaf of one PTE table we own.  A writable leaf is
 * dirty (see morsel_leaf_dirty()): it keeps D, so a save still sees it.
 */
static void wrprotect_leaves(pte_t *table)
{
	spinlock_t *ptl = morsel_table_lock(table);
	pte_t pte;
	int i;

	spin_lock(ptl);
	for (i = 0; i < PTRS_PER_PTE; i++) {
		pte = ptep_get(table + i);
		if (pte_write(pte))
			set_pte(table + i, pte_mkdirty(pte_wrprotect(pte)));
	}
	spin_unlock(ptl);
}

/*
 * The copies a freeze gives the object for frames that may be pinned
 * (copy_pinned_frames()), all allocated before the first one replaces a
 * frame: a freeze that fails for want of room must leave every pinned
 * frame in the object, or a holder's later writes would miss an object
 * that stays writable (session-8 review).  Frames on @frames are ours
 * alone, linked through page->lru.
 */
struct pinned_copies {
	struct list_head frames;
	unsigned long wanted;
};

/*
 * Apply @fn to every PTE table @m owns (not those borrowed from a base),
 * with the offset it starts at; stop at the first nonzero result and
 * return it.
 */
static int walk_owned_pte_tables(struct morsel *m,
				 int (*fn)(struct morsel *m, pte_t *table,
					   loff_t off, void *arg),
				 void *arg)
{
	loff_t size = i_size_read(&m->vfs_inode), off;
	pte_t *table;
	int err;

	for (off = 0; off < size; off += PMD_SIZE) {
		if (m->level == MORSEL_LEVEL_PUD &&
		    !morsel_pmd_table(m, off, false)) {
			off = ALIGN_DOWN(off, PUD_SIZE) + PUD_SIZE - PMD_SIZE;
			continue;
		}
		table = morsel_pte_table(m, off, false);
		if (table && !morsel_pte_table_borrowed(m, off, table)) {
			err = fn(m, table, off, arg);
			if (err)
				return err;
		}
		cond_resched();
	}
	return 0;
}

static int wrprotect_table(struct morsel *m, pte_t *table, loff_t off,
			   void *arg)
{
	wrprotect_leaves(table);
	return 0;
}

/* Is the frame of @pte, a leaf of @m, ours and maybe pinned? */
static bool leaf_maybe_pinned(struct morsel *m, pte_t pte)
{
	struct folio *folio;

	if (!morsel_leaf_has_data(pte))
		return false;
	folio = page_folio(pte_page(pte));
	return folio->mapping == m->vfs_inode.i_mapping &&
	       folio_maybe_dma_pinned(folio);
}

static int count_pinned_frames(struct morsel *m, pte_t *table, loff_t off,
			       void *arg)
{
	struct pinned_copies *pc = arg;
	int i;

	for (i = 0; i < PTRS_PER_PTE; i++)
		if (leaf_maybe_pinned(m, ptep_get(table + i)))
			pc->wanted++;
	return 0;
}

static void put_unused_copies(struct morsel *m, struct pinned_copies *pc)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, &pc->frames, lru) {
		list_del(&page->lru);
		morsel_discard_frame(m, page);
	}
}

/* Allocate @pc->wanted frames, or none (-ENOSPC, -ENOMEM). */
static int reserve_copies(struct morsel *m, struct pinned_copies *pc)
{
	unsigned long n;
	struct page *page;

	for (n = 0; n < pc->wanted; n++) {
		page = morsel_alloc_frame(m, false);
		if (IS_ERR(page)) {
			put_unused_copies(m, pc);
			return PTR_ERR(page);
		}
		list_add(&page->lru, &pc->frames);
		cond_resched();
	}
	return 0;
}

/*
 * Give the object a copy of each frame of @table (at @off) that it owns
 * and that may be pinned (folio_maybe_dma_pinned(): a device, an O_DIRECT
 * read in flight, or just many references): whoever holds the old frame
 * keeps it, and what they write there after the freeze never reaches the
 * frozen contents, as a write through a pin to a truncated page never
 * reaches the file.  Nothing translates the leaves now (the caller
 * unmapped the object, holding m->lock exclusively), so a leaf and its
 * twin change under their locks alone.  The copies come from @arg, counted
 * and allocated before (reserve_copies()); a frame that looks pinned only
 * since then holds a pin taken after the unmap, which cannot write (no
 * writable translation is left, and faults refuse a frozen object), so
 * it stays when the copies run out.  Cannot fail.
 */
static int copy_pinned_frames(struct morsel *m, pte_t *table, loff_t off,
			      void *arg)
{
	spinlock_t *ptl = morsel_table_lock(table);
	struct pinned_copies *pc = arg;
	struct page *old, *copy;
	pgoff_t index;
	pte_t pte, leaf;
	pte_t *twin;
	bool done;
	int i;

	for (i = 0; i < PTRS_PER_PTE; i++) {
		pte = ptep_get(table + i);
		if (!leaf_maybe_pinned(m, pte))
			continue;
		copy = list_first_entry_or_null(&pc->frames, struct page, lru);
		if (!copy)
			return 0;
		list_del(&copy->lru);
		old = pte_page(pte);
		copy_highpage(copy, old);
		index = (off >> PAGE_SHIFT) + i;
		/*
		 * Dirty whatever the old leaf said: a frame that may be pinned
		 * counts as written (scan.c, frame_written()), and its PG_dirty
		 * stays with the old frame, so only D can carry that to the
		 * next scan (session-13 review).
		 */
		leaf = pte_mkdirty(pfn_pte(page_to_pfn(copy), PAGE_READONLY));
		spin_lock(ptl);
		done = morsel_same_frame(ptep_get(table + i), pte);
		if (done) {
			morsel_name_frame(m, copy, index);
			set_pte(table + i, leaf);
			twin = morsel_twin_of(m, index);
			if (twin)
				morsel_mirror_leaf(table, twin, index, leaf);
		}
		spin_unlock(ptl);
		/* The old frame leaves the object: the same count, new page. */
		morsel_discard_frame(m, done ? old : copy);
	}
	return 0;
}

/*
 * Make the contents permanent.  Caller holds inode_lock and m->lock
 * exclusively (no write(), truncate or punch can run, no mmap() can
 * choose its operations).  Leaves installed later read m->frozen under
 * their table's lock, after this walk set it, so they are read-only too.
 * Stores through mappings made before now fault, and ->page_mkwrite
 * refuses them.  A mapping without write notification (made writable,
 * fault.c) would take stores the module never sees: while one exists the
 * freeze fails with EBUSY, as F_SEAL_WRITE does on a memfd with a
 * writable mapping.  A frame that may be pinned is
 * replaced by a copy (copy_pinned_frames()); the copies are allocated
 * first, and if there is no room or memory for all of them nothing is
 * replaced and the freeze is undone (the flag only: leaves keep D, so a
 * store makes them writable again through ->page_mkwrite and they stay
 * dirty), and a split that waited for m->lock sees it undone
 * (morsel_adopt()).
 */
int morsel_freeze(struct morsel *m)
{
	struct pinned_copies pc = {
		.frames = LIST_HEAD_INIT(pc.frames),
	};
	int err;

	lockdep_assert_held_write(&m->vfs_inode.i_rwsem);
	lockdep_assert_held_write(&m->lock);
	if (m->frozen)
		return 0;
	if (atomic_read(&m->plain_mappers))
		return -EBUSY;
	WRITE_ONCE(m->frozen, true);
	walk_owned_pte_tables(m, wrprotect_table, NULL);
	/*
	 * Drop every translation that may still allow a store: links (they
	 * come back read-only; removing them flushes every TLB), pages mapped
	 * one by one, secondary MMUs.  As in morsel_punch(), this reaches
	 * every cached translation: no flush of our own is needed.  GUP-fast
	 * walks with interrupts off, so the flush IPIs also waited for any
	 * that saw a leaf still writable: its pin shows below.  Later pins
	 * are read-only (->page_mkwrite refuses the rest).
	 */
	unmap_mapping_range(m->vfs_inode.i_mapping, 0, 0, 1);
	walk_owned_pte_tables(m, count_pinned_frames, &pc);
	err = reserve_copies(m, &pc);
	if (err) {
		WRITE_ONCE(m->frozen, false);
		return err;
	}
	walk_owned_pte_tables(m, copy_pinned_frames, &pc);
	put_unused_copies(m, &pc);
	return 0;
}

/*
 * Make @child, a new empty object, a copy-on-write child of the frozen
 * @base: the same size and level, and a copy of the base's root, so every
 * table and frame below is borrowed.  At most 512 entries are copied.
 */
int morsel_adopt(struct morsel *child, struct morsel *base)
{
	void *root;
	int err = 0;

	/*
	 * The freeze of @base holds its lock exclusively until every leaf is
	 * write-protected: borrow nothing before.  @child is new and seen
	 * by nobody yet; its lock nests inside the base's.
	 */
	down_read(&base->lock);
	/*
	 * The caller saw the base frozen without its lock: a freeze that
	 * failed (ENOMEM) undoes the flag before it drops the lock.
	 */
	if (!base->frozen) {
		up_read(&base->lock);
		return -EINVAL;
	}
	root = smp_load_acquire(&base->root);	/* see get_root() */
	down_write_nested(&child->lock, SINGLE_DEPTH_NESTING);
	child->level = base->level;
	if (root) {
		child->root = morsel_copy_table(child, root, base->level);
		if (IS_ERR(child->root)) {
			err = PTR_ERR(child->root);
			child->root = NULL;
		}
	}
	if (!err) {
		ihold(&base->vfs_inode);
		child->parent = base;
		atomic_inc(&base->children);
		i_size_write(&child->vfs_inode, i_size_read(&base->vfs_inode));
	}
	up_write(&child->lock);
	up_read(&base->lock);
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
 * setgid or sticky), and whoever may read it through its group or other
 * bits could read the base the same way.  Its owner is the caller, who
 * could read the base: splitting needs that.  Its group is the base's if
 * the caller belongs to it (or may chown); else the caller's own, whose
 * members get no more than the base gives everyone (its other bits).
 */
static void restrict_child(struct inode *child, const struct inode *base)
{
	umode_t everyone = (base->i_mode & 0007) << 3;

	inode_lock(child);
	if (in_group_p(base->i_gid) || capable(CAP_CHOWN))
		child->i_gid = base->i_gid;
	else
		child->i_mode &= ~(0070 & ~everyone);
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
