// SPDX-License-Identifier: GPL-2.0
/*
 * The page-table subtree that is a morsel's state: its tables.
 *
 * This file owns the object's own tables: charging them (with the frames)
 * to the mount's size= and the object's memcg, allocating them as the
 * kernel's page-table code would (same ptdesc constructors, same split
 * locks, so a linked table is an ordinary table to every core-mm walker),
 * walking to the table that covers an offset (making it, or copying a
 * borrowed one, when the caller will change it), read-only twins, the
 * shared hole table, freeing the tables a punch empties, re-rooting on
 * resize, and freeing everything.
 *
 * Layout: byte offset @off of the object lives at
 *   PUD root: root[pud_index] -> PMD table[pmd_index] -> PTE table[pte_index]
 *   PMD root: root[pmd_index] -> PTE table[pte_index]
 *   PTE root: root[pte_index]
 * where the indices are taken from @off exactly as from a virtual address.
 * Upper entries are encoded like the kernel's own (_PAGE_TABLE); leaf
 * entries are leaf.c's.
 *
 * Invariants:
 *  - a PTE table may have a read-only twin (m->twins, by 2 MiB chunk): the
 *    same frames with RW clear, made when a read-only mapping links that
 *    chunk.  The twin is written only together with its primary, under
 *    the primary's lock and then its own, so both always hold the same
 *    frames;
 *  - a chunk without a PTE table reads as zeros, and may be linked to the
 *    hole table; when it gets a table, those links go first
 *    (forget_hole_links());
 *  - a table is written only by the object that owns it (cow.c decides
 *    ownership); tables a process links are always owned by the linked
 *    object, or are the hole table;
 *  - tables are freed only while no link can point at them: after the
 *    range was unmapped (punch, shrink) with m->lock held exclusively, so
 *    no fault links them again, or when the object is gone; the pages go
 *    back after an RCU grace period (GUP-fast walks them locklessly).
 */
#include <linux/highmem.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <asm/pgalloc.h>
#include <asm/tlbflush.h>

#include "morsel.h"

int morsel_level_for_size(loff_t size)
{
	if (size == 0)
		return MORSEL_LEVEL_NONE;
	if (size <= PMD_SIZE)
		return MORSEL_LEVEL_PTE;
	if (size <= PUD_SIZE)
		return MORSEL_LEVEL_PMD;
	return MORSEL_LEVEL_PUD;
}

spinlock_t *morsel_table_lock(void *table)
{
	return ptlock_ptr(virt_to_ptdesc(table));
}

/*
 * Frames and tables alike count against the mount's size= (sbi->max_pages):
 * page tables are memory an unprivileged user makes the kernel hold, and a
 * sparse object can need a table per data page (docs/security.md).
 */
bool morsel_charge_pages(struct morsel_sb *sbi, unsigned long nr)
{
	bool ok;

	spin_lock(&sbi->lock);
	ok = !sbi->max_pages || sbi->used_pages + nr <= sbi->max_pages;
	if (ok)
		sbi->used_pages += nr;
	spin_unlock(&sbi->lock);
	return ok;
}

void morsel_uncharge_pages(struct morsel_sb *sbi, unsigned long nr)
{
	spin_lock(&sbi->lock);
	sbi->used_pages -= nr;
	spin_unlock(&sbi->lock);
}

/*
 * A table charged to the object's mount and memcg; zeroed unless the
 * caller fills it all.  ERR_PTR(-ENOSPC) when the mount is full,
 * ERR_PTR(-ENOMEM) when memory is.
 */
static void *alloc_table_filled(struct morsel *m, int level, bool zero)
{
	struct mem_cgroup *old;
	struct ptdesc *pt;
	bool ok = true;

	if (!morsel_charge_pages(m->sbi, 1))
		return ERR_PTR(-ENOSPC);
	old = set_active_memcg(m->memcg);
	pt = pagetable_alloc(GFP_KERNEL_ACCOUNT | (zero ? __GFP_ZERO : 0), 0);
	set_active_memcg(old);
	if (!pt)
		goto fail;
	if (level == MORSEL_LEVEL_PTE)
		ok = pagetable_pte_ctor(pt);
	else if (level == MORSEL_LEVEL_PMD)
		ok = pagetable_pmd_ctor(pt);
	else
		pagetable_pud_ctor(pt);
	if (!ok) {
		pagetable_free(pt);
		goto fail;
	}
	atomic_long_inc(&m->table_pages);
	atomic_long_inc(&morsel_totals.table_pages);
	return ptdesc_address(pt);
fail:
	morsel_uncharge_pages(m->sbi, 1);
	return ERR_PTR(-ENOMEM);
}

static void *alloc_table(struct morsel *m, int level)
{
	return alloc_table_filled(m, level, true);
}

/*
 * A table that was linked may still be walked after its last link went
 * and was flushed: a fault of another thread that read the link before
 * holds RCU while it maps the table (pte_offset_map_lock()).  So the page,
 * and its split lock, go after a grace period, as the core mm frees its
 * own tables (tlb_remove_table()).  Tables freed while nobody maps the
 * object would not need it; one rule is simpler.
 */
static void free_pte_table_rcu(struct rcu_head *head)
{
	struct ptdesc *pt = container_of(head, struct ptdesc, pt_rcu_head);

	pagetable_pte_dtor(pt);
	pagetable_free(pt);
}

static void free_pmd_table_rcu(struct rcu_head *head)
{
	struct ptdesc *pt = container_of(head, struct ptdesc, pt_rcu_head);

	pagetable_pmd_dtor(pt);
	pagetable_free(pt);
}

static void free_pud_table_rcu(struct rcu_head *head)
{
	struct ptdesc *pt = container_of(head, struct ptdesc, pt_rcu_head);

	pagetable_pud_dtor(pt);
	pagetable_free(pt);
}

static void free_table(struct morsel *m, void *table, int level)
{
	struct ptdesc *pt = virt_to_ptdesc(table);

	if (level == MORSEL_LEVEL_PTE)
		call_rcu(&pt->pt_rcu_head, free_pte_table_rcu);
	else if (level == MORSEL_LEVEL_PMD)
		call_rcu(&pt->pt_rcu_head, free_pmd_table_rcu);
	else
		call_rcu(&pt->pt_rcu_head, free_pud_table_rcu);
	morsel_uncharge_pages(m->sbi, 1);
	atomic_long_dec(&m->table_pages);
	atomic_long_dec(&morsel_totals.table_pages);
}

pte_t *morsel_twin_of(struct morsel *m, pgoff_t index)
{
	return xa_load(&m->twins, index >> (PMD_SHIFT - PAGE_SHIFT));
}

/* Copy entry @index of the primary table @table into @twin. */
void morsel_mirror_leaf(pte_t *table, pte_t *twin, pgoff_t index, pte_t pte)
{
	spinlock_t *ptl = morsel_table_lock(twin);	/* of the twin */
	pte_t *ptep = twin + (index & (PTRS_PER_PTE - 1));

	lockdep_assert_held(morsel_table_lock(table));
	spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
	if (pte_present(pte))
		set_pte(ptep, morsel_read_only_leaf(pte));
	else
		pte_clear(&init_mm, 0, ptep);
	spin_unlock(ptl);
}

/* Free a PTE table of chunk @chunk and its twin; their leaves are gone. */
static void free_pte_table(struct morsel *m, pte_t *table, unsigned long chunk)
{
	pte_t *twin = xa_erase(&m->twins, chunk);

	if (twin)
		free_table(m, twin, MORSEL_LEVEL_PTE);
	free_table(m, table, MORSEL_LEVEL_PTE);
}

/* A new table of ours holding the same entries as @src, or ERR_PTR. */
void *morsel_copy_table(struct morsel *m, void *src, int level)
{
	u64 *dst = alloc_table_filled(m, level, false);	/* every entry */
	int i;

	if (IS_ERR(dst))
		return dst;
	for (i = 0; i < PTRS_PER_PTE; i++)
		dst[i] = READ_ONCE(((u64 *)src)[i]);
	return dst;
}

/*
 * A frozen object's table entries never change again: its children
 * compare their entries with them to tell borrowed from owned (cow.c), so
 * a copy or a new table there would make a grandchild take its base's
 * table for its own.  Paths that would make one get EPERM.
 */
static bool tables_are_final(struct morsel *m)
{
	return READ_ONCE(m->frozen);
}

/*
 * The chunk of @off just got a PTE table where it had none: drop every
 * link of the hole table that stood for it (they show zeros, and what is
 * written into the new table must be seen).  The caller holds
 * m->hole_sem for writing from before the table could be seen: linkers
 * of the hole table hold it for reading, and whoever puts a frame into a
 * table waits for it (morsel_install_leaf()), so nothing is written into
 * the table before the links are gone.  unmap_mapping_range() runs the
 * notifiers of every mapper (ours unlinks), as a punch does.
 */
static void forget_hole_links(struct morsel *m, loff_t off)
{
	lockdep_assert_held_write(&m->hole_sem);
	smp_mb();	/* our entry, then the count */
	if (atomic_long_read(&m->hole_links))
		unmap_mapping_range(m->vfs_inode.i_mapping,
				    ALIGN_DOWN(off, PMD_SIZE), PMD_SIZE, 1);
}

/*
 * The root table, allocated on first use (NULL for an object of size 0,
 * ERR_PTR if it could not be had).  Lock-free readers pair their acquire
 * with the release that publishes a root after it was zeroed and
 * constructed.
 */
static void *get_root(struct morsel *m, bool alloc)
{
	void *root = smp_load_acquire(&m->root);	/* pairs, see above */

	if (root || !alloc || m->level == MORSEL_LEVEL_NONE)
		return root;
	if (tables_are_final(m))
		return ERR_PTR(-EPERM);
	root = alloc_table(m, m->level);
	if (IS_ERR(root))
		return root;
	down_write(&m->hole_sem);	/* a PTE root: forget_hole_links() */
	spin_lock(&m->root_lock);
	if (!m->root) {
		smp_store_release(&m->root, root);	/* see get_root() */
		root = NULL;
	}
	spin_unlock(&m->root_lock);
	if (!root && m->level == MORSEL_LEVEL_PTE)
		forget_hole_links(m, 0);
	up_write(&m->hole_sem);
	if (root)
		free_table(m, root, m->level);
	return m->root;
}

/*
 * Replace the borrowed PMD table @old at @pudp by a copy we own; the
 * table there afterwards, or ERR_PTR.  A PUD root is never linked into a
 * process, so nothing can cache walks through @pudp: no flush.
 */
static pmd_t *own_pmd_table(struct morsel *m, pud_t *pudp, pmd_t *old)
{
	pmd_t *copy = morsel_copy_table(m, old, MORSEL_LEVEL_PMD);
	pud_t pud;

	if (IS_ERR(copy))
		return copy;
	spin_lock(&m->root_lock);
	pud = pudp_get(pudp);
	if (pud_present(pud) && (pmd_t *)pud_pgtable(pud) == old) {
		set_pud(pudp, __pud(__pa(copy) | _PAGE_TABLE));
		copy = NULL;
	}
	pud = pudp_get(pudp);
	spin_unlock(&m->root_lock);
	if (copy)
		free_table(m, copy, MORSEL_LEVEL_PMD);
	return pud_present(pud) ? (pmd_t *)pud_pgtable(pud) : NULL;
}

/*
 * Replace the borrowed PTE table @old at @pmdp by a copy we own; the
 * table there afterwards, or ERR_PTR.  Our PMD table may be linked into
 * processes (PUD links): then flush, so no CPU keeps walking through
 * @old.  Without PUD links no CPU walks our PMD table (PMD links point
 * below it): a link made after our entry changed counts itself first
 * (morsel_link()), so the barrier here makes either its walks see the
 * copy or us see its count.
 */
static pte_t *own_pte_table(struct morsel *m, pmd_t *pmdp, pte_t *old)
{
	pte_t *copy = morsel_copy_table(m, old, MORSEL_LEVEL_PTE);
	spinlock_t *ptl = morsel_table_lock(pmdp);	/* of our PMD table */
	pmd_t pmd;

	if (IS_ERR(copy))
		return copy;
	spin_lock(ptl);
	pmd = pmdp_get(pmdp);
	if (pmd_present(pmd) && (pte_t *)pmd_page_vaddr(pmd) == old) {
		set_pmd(pmdp, __pmd(__pa(copy) | _PAGE_TABLE));
		copy = NULL;
	}
	pmd = pmdp_get(pmdp);
	spin_unlock(ptl);
	if (copy) {
		free_table(m, copy, MORSEL_LEVEL_PTE);
	} else {
		smp_mb();	/* our entry, then the count: morsel_link() */
		if (atomic_long_read(&m->pud_links))
			morsel_flush_tlb();
	}
	return pmd_present(pmd) ? (pte_t *)pmd_page_vaddr(pmd) : NULL;
}

/*
 * Does a PTE or PMD root cover @off?  It spans 2 MiB or 1 GiB, and the
 * table index of @off at the root's level is taken modulo 512, so an
 * offset past the span would name another chunk's slot.  Callers check
 * the size first; this keeps one that missed (a size that shrank while it
 * waited for m->lock) from reaching another chunk's tables and frames.
 * Past the span there is no table: NULL, or ERR_PTR(-ENXIO) to @alloc.
 */
static bool root_covers(struct morsel *m, loff_t off)
{
	return off < (m->level == MORSEL_LEVEL_PTE ? PMD_SIZE : PUD_SIZE);
}

static void *past_root(bool alloc)
{
	return alloc ? ERR_PTR(-ENXIO) : NULL;
}

/*
 * The PMD table covering the 1 GiB chunk of @off.  Without @alloc: the
 * table, or NULL when absent (or the object is PTE-rooted).  With @alloc
 * the table is made, or copied from the base, so that it is one we own
 * and may change: ERR_PTR(-ENOSPC or -ENOMEM) if that fails, or -ENXIO
 * past a PMD root's span (root_covers()); NULL still for a PTE-rooted
 * object.
 */
pmd_t *morsel_pmd_table(struct morsel *m, loff_t off, bool alloc)
{
	pud_t *pudp, pud;
	pmd_t *table;

	if (m->level == MORSEL_LEVEL_PMD)
		return root_covers(m, off) ? get_root(m, alloc) :
					     past_root(alloc);
	if (m->level != MORSEL_LEVEL_PUD)
		return NULL;
	pudp = get_root(m, alloc);
	if (IS_ERR_OR_NULL(pudp))
		return (pmd_t *)pudp;
	pudp += MORSEL_PUD_INDEX(off);
	pud = pudp_get(pudp);
	if (pud_present(pud)) {
		table = (pmd_t *)pud_pgtable(pud);
		if (!alloc || !morsel_pmd_table_borrowed(m, off, table))
			return table;
		if (tables_are_final(m))
			return ERR_PTR(-EPERM);
		return own_pmd_table(m, pudp, table);
	}
	if (!alloc)
		return NULL;
	if (tables_are_final(m))
		return ERR_PTR(-EPERM);
	table = alloc_table(m, MORSEL_LEVEL_PMD);
	if (IS_ERR(table))
		return table;
	spin_lock(&m->root_lock);
	if (pud_none(pudp_get(pudp))) {
		set_pud(pudp, __pud(__pa(table) | _PAGE_TABLE));
		table = NULL;
	}
	spin_unlock(&m->root_lock);
	if (table)
		free_table(m, table, MORSEL_LEVEL_PMD);
	return (pmd_t *)pud_pgtable(pudp_get(pudp));
}

/*
 * The PTE table covering the 2 MiB chunk of @off.  Without @alloc: the
 * table or NULL.  With @alloc the table (and the PMD table above it) is
 * one we own: the caller may change it; ERR_PTR if it could not be had
 * (-ENXIO past the root's span, root_covers()), NULL only for an object
 * of size 0.
 */
pte_t *morsel_pte_table(struct morsel *m, loff_t off, bool alloc)
{
	spinlock_t *ptl;	/* of the PMD table that gets the entry */
	pmd_t *pmdp, pmd;
	pte_t *table;

	if (m->level == MORSEL_LEVEL_PTE)
		return root_covers(m, off) ? get_root(m, alloc) :
					     past_root(alloc);
	pmdp = morsel_pmd_table(m, off, alloc);
	if (IS_ERR_OR_NULL(pmdp))
		return (pte_t *)pmdp;
	pmdp += MORSEL_PMD_INDEX(off);
	pmd = pmdp_get(pmdp);
	if (pmd_present(pmd)) {
		table = (pte_t *)pmd_page_vaddr(pmd);
		if (!alloc || !morsel_pte_table_borrowed(m, off, table))
			return table;
		if (tables_are_final(m))
			return ERR_PTR(-EPERM);
		return own_pte_table(m, pmdp, table);
	}
	if (!alloc)
		return NULL;
	if (tables_are_final(m))
		return ERR_PTR(-EPERM);
	table = alloc_table(m, MORSEL_LEVEL_PTE);
	if (IS_ERR(table))
		return table;
	ptl = morsel_table_lock(pmdp);
	down_write(&m->hole_sem);	/* see forget_hole_links() */
	spin_lock(ptl);
	if (pmd_none(pmdp_get(pmdp))) {
		set_pmd(pmdp, __pmd(__pa(table) | _PAGE_TABLE));
		table = NULL;
	}
	spin_unlock(ptl);
	if (!table)
		forget_hole_links(m, off);
	up_write(&m->hole_sem);
	if (table)
		free_table(m, table, MORSEL_LEVEL_PTE);
	return (pte_t *)pmd_page_vaddr(pmdp_get(pmdp));
}

/*
 * A PTE table of ours whose 512 leaves are the zero page, read-only: what
 * a read-only mapping of a frozen object links where the object has no
 * table (holes stay holes there for good).  Made once at module load,
 * shared by every object and never written again, so reading holes costs
 * no memory per read.  Never one of an object's own tables.
 */
static pte_t *hole_table;

int morsel_hole_table_init(void)
{
	struct ptdesc *pt = pagetable_alloc(GFP_KERNEL, 0);
	int i;

	if (!pt)
		return -ENOMEM;
	if (!pagetable_pte_ctor(pt)) {
		pagetable_free(pt);
		return -ENOMEM;
	}
	hole_table = ptdesc_address(pt);
	for (i = 0; i < PTRS_PER_PTE; i++)
		set_pte(hole_table + i, pte_mkspecial(pfn_pte(my_zero_pfn(0),
							      PAGE_READONLY)));
	return 0;
}

void morsel_hole_table_exit(void)
{
	struct ptdesc *pt = virt_to_ptdesc(hole_table);

	pagetable_pte_dtor(pt);
	pagetable_free(pt);
}

pte_t *morsel_hole_table(void)
{
	return hole_table;
}

/*
 * The table a read-only mapping links for the 2 MiB chunk of @off, NULL
 * if the chunk must be mapped page by page, or ERR_PTR.  The caller holds
 * m->lock shared: a freeze (exclusive) is not halfway.
 *  - A chunk without a table reads as zeros: the shared hole table, whose
 *    links are dropped when the chunk gets a table (forget_hole_links());
 *    not for a chunk that ends past the size, where an access must raise
 *    SIGBUS and every leaf of the hole table is present.
 *  - A frozen object's leaves are read-only for good, so a table it owns
 *    serves as it is.  A table it borrows cannot be linked (a process
 *    links only tables of the object it maps) nor copied (its tables are
 *    final): page by page.
 *  - Other objects link a read-only twin of the table: the same frames
 *    with RW clear, made on first use.
 */
pte_t *morsel_ro_pte_table(struct morsel *m, loff_t off)
{
	unsigned long chunk = off >> PMD_SHIFT;
	pte_t *table, *twin, *found;
	spinlock_t *ptl;	/* of the primary table */
	int i;

	lockdep_assert_held(&m->lock);
	table = morsel_pte_table(m, off, false);
	if (!table) {
		if (ALIGN_DOWN(off, PMD_SIZE) + PMD_SIZE >
		    i_size_read(&m->vfs_inode))
			return NULL;
		return hole_table;
	}
	if (READ_ONCE(m->frozen))
		return morsel_pte_table_borrowed(m, off, table) ? NULL : table;
	table = morsel_pte_table(m, off, true);
	if (IS_ERR_OR_NULL(table))
		return table ?: ERR_PTR(-ENXIO);
	found = xa_load(&m->twins, chunk);
	if (found)
		return found;
	if (xa_reserve(&m->twins, chunk, GFP_KERNEL_ACCOUNT))
		return ERR_PTR(-ENOMEM);
	twin = alloc_table(m, MORSEL_LEVEL_PTE);
	if (IS_ERR(twin)) {
		xa_release(&m->twins, chunk);
		return twin;
	}
	ptl = morsel_table_lock(table);
	spin_lock(ptl);
	found = xa_load(&m->twins, chunk);
	if (!found) {
		/* Not visible yet: nobody else can walk or write it. */
		for (i = 0; i < PTRS_PER_PTE; i++)
			if (pte_present(ptep_get(table + i)))
				set_pte(twin + i,
					morsel_read_only_leaf(ptep_get(table + i)));
		/* The slot is reserved: storing allocates nothing. */
		if (!xa_err(xa_store(&m->twins, chunk, twin, GFP_NOWAIT))) {
			found = twin;
			twin = NULL;
		}
	}
	spin_unlock(ptl);
	if (twin)
		free_table(m, twin, MORSEL_LEVEL_PTE);
	return found ?: ERR_PTR(-ENOMEM);
}

/* Free the (emptied) root table. */
static void free_root(struct morsel *m)
{
	if (!m->root)
		return;
	if (m->level == MORSEL_LEVEL_PTE)
		free_pte_table(m, m->root, 0);
	else
		free_table(m, m->root, m->level);
	m->root = NULL;
}

static bool table_empty(const void *table)
{
	return !memchr_inv(table, 0, PAGE_SIZE);
}

/*
 * Free the PTE table of @off's chunk (and its twin) if we own it and it
 * holds no entry; clear our entry that pointed at it.
 */
static void free_pte_table_if_empty(struct morsel *m, loff_t off)
{
	pte_t *table = morsel_pte_table(m, off, false);
	spinlock_t *ptl;	/* of our PMD table */
	pmd_t *pmdp;

	if (!table || !table_empty(table) || morsel_pte_table_borrowed(m, off, table))
		return;
	if (m->level == MORSEL_LEVEL_PTE) {
		free_root(m);
		return;
	}
	pmdp = morsel_pmd_table(m, off, false) + MORSEL_PMD_INDEX(off);
	ptl = morsel_table_lock(pmdp);
	spin_lock(ptl);
	pmd_clear(pmdp);
	spin_unlock(ptl);
	free_pte_table(m, table, off >> PMD_SHIFT);
}

/* The same for the PMD table of @off's 1 GiB chunk. */
static void free_pmd_table_if_empty(struct morsel *m, loff_t off)
{
	pmd_t *table = morsel_pmd_table(m, off, false);
	pud_t *pudp;

	if (!table || !table_empty(table) || morsel_pmd_table_borrowed(m, off, table))
		return;
	if (m->level == MORSEL_LEVEL_PMD) {
		free_root(m);
		return;
	}
	pudp = (pud_t *)m->root + MORSEL_PUD_INDEX(off);
	spin_lock(&m->root_lock);
	pud_clear(pudp);
	spin_unlock(&m->root_lock);
	free_table(m, table, MORSEL_LEVEL_PMD);
	if (table_empty(m->root))
		free_root(m);
}

/*
 * After a punch of pages [@first, @end): free the tables of the range
 * that hold nothing any more, up to the root, so that punching gives
 * back all the memory that writing took (docs/security.md).  No link may
 * point at them: either nobody maps the object, or @unlinked says the
 * range was unmapped (every link overlapping it removed and flushed,
 * unmap_mapping_range()), and with m->lock held exclusively no fault can
 * link again meanwhile (every fault path holds it shared).  A walker that
 * read a link before it went is waited for by free_table()'s grace
 * period.
 */
void morsel_free_empty_tables(struct morsel *m, pgoff_t first, pgoff_t end,
			      bool unlinked)
{
	loff_t off = ALIGN_DOWN((loff_t)first << PAGE_SHIFT, PMD_SIZE);
	loff_t stop = (loff_t)end << PAGE_SHIFT;

	lockdep_assert_held_write(&m->lock);
	if (!unlinked && atomic_read(&m->mappers))
		return;
	for (; off < stop && m->root; off += PMD_SIZE) {
		if (m->level == MORSEL_LEVEL_PUD &&
		    !morsel_pmd_table(m, off, false)) {
			off = ALIGN_DOWN(off, PUD_SIZE) + PUD_SIZE - PMD_SIZE;
			continue;
		}
		free_pte_table_if_empty(m, off);
		if (m->level == MORSEL_LEVEL_PUD &&
		    (IS_ALIGNED(off + PMD_SIZE, PUD_SIZE) ||
		     off + PMD_SIZE >= stop))
			free_pmd_table_if_empty(m, off);
		cond_resched();
	}
	if (m->level == MORSEL_LEVEL_PMD)
		free_pmd_table_if_empty(m, 0);
}

/*
 * Does @m still own a frame?  Frames are counted where they are installed
 * and released (leaf.c), so once the count is zero every leaf left is
 * borrowed, the zero page or none, and a PTE table that goes whole needs
 * no look at its leaves: destroying a child that wrote one page of a
 * large base clears one table, not every leaf of every table.
 */
static bool frames_left(struct morsel *m)
{
	return atomic_long_read(&m->data_pages) != 0;
}

/*
 * Free every frame at offset >= @from below @table (level @level, first
 * offset @base) and every table that lies entirely at or beyond @from.
 * Only once nothing translates the range any more: the object is gone, or
 * morsel_set_size() unmapped it under m->lock held exclusively.
 */
static void free_subtree(struct morsel *m, void *table, int level,
			 loff_t base, loff_t from)
{
	loff_t span, child;
	void *lower;
	int i;

	if (level == MORSEL_LEVEL_PTE) {
		LIST_HEAD(frames);
		pgoff_t first = max(base, from) >> PAGE_SHIFT;

		morsel_clear_leaves(m, table, first,
				    (base >> PAGE_SHIFT) + PTRS_PER_PTE, &frames);
		morsel_free_frames(m, &frames);
		return;
	}
	span = level == MORSEL_LEVEL_PMD ? PMD_SIZE : PUD_SIZE;
	for (i = 0; i < PTRS_PER_PMD; i++) {
		child = base + i * span;
		if (child + span <= from)
			continue;
		if (level == MORSEL_LEVEL_PMD) {
			pmd_t *pmdp = (pmd_t *)table + i;

			if (!pmd_present(pmdp_get(pmdp)))
				continue;
			lower = (void *)pmd_page_vaddr(pmdp_get(pmdp));
			if (morsel_pte_table_borrowed(m, child, lower)) {
				if (child >= from) {
					pmd_clear(pmdp);
					continue;
				}
				/* owned before: own_tables_for_shrink() */
				lower = own_pte_table(m, pmdp, lower);
				if (IS_ERR_OR_NULL(lower))
					continue;
			}
			if (child < from || frames_left(m))
				free_subtree(m, lower, level - 1, child, from);
			if (child >= from) {
				pmd_clear(pmdp);
				free_pte_table(m, lower, child >> PMD_SHIFT);
			}
		} else {
			pud_t *pudp = (pud_t *)table + i;

			if (!pud_present(pudp_get(pudp)))
				continue;
			lower = pud_pgtable(pudp_get(pudp));
			if (morsel_pmd_table_borrowed(m, child, lower)) {
				if (child >= from) {
					pud_clear(pudp);
					continue;
				}
				lower = own_pmd_table(m, pudp, lower);
				if (IS_ERR_OR_NULL(lower))
					continue;
			}
			free_subtree(m, lower, level - 1, child, from);
			if (child >= from) {
				pud_clear(pudp);
				free_table(m, lower, level - 1);
			}
		}
		cond_resched();
	}
}

/* The table that entry 0 of @root points to, or NULL. */
static void *first_child(void *root, int level)
{
	if (level == MORSEL_LEVEL_PMD) {
		pmd_t pmd = pmdp_get((pmd_t *)root);

		return pmd_present(pmd) ? (void *)pmd_page_vaddr(pmd) : NULL;
	}
	if (level == MORSEL_LEVEL_PUD) {
		pud_t pud = pudp_get((pud_t *)root);

		return pud_present(pud) ? (void *)pud_pgtable(pud) : NULL;
	}
	return NULL;
}

/*
 * Raise the root to @level, all or nothing: every new table is had before
 * any goes in, so a grow that fails (ENOSPC, ENOMEM) leaves the level as
 * it was.  A level left between the two would no longer be the one the
 * size implies, and the next resize would drop a root level without the
 * unmapping a shrink does first (session-9 review: a PUD link left on a
 * freed PMD root).  The new tables hold only entry 0; m->lock is held
 * exclusively, so nothing links them before they are in place.
 */
static int grow_root(struct morsel *m, int level)
{
	void *new[MORSEL_LEVEL_PUD] = { NULL };
	int from = m->level, l;

	if (!m->root) {
		m->level = level;
		return 0;
	}
	for (l = from + 1; l <= level; l++) {
		new[l - 1] = alloc_table(m, l);
		if (IS_ERR(new[l - 1])) {
			int err = PTR_ERR(new[l - 1]);

			while (--l > from)
				free_table(m, new[l - 1], l);
			return err;
		}
	}
	for (l = from + 1; l <= level; l++) {
		if (l == MORSEL_LEVEL_PMD)
			set_pmd((pmd_t *)new[l - 1],
				__pmd(__pa(m->root) | _PAGE_TABLE));
		else
			set_pud((pud_t *)new[l - 1],
				__pud(__pa(m->root) | _PAGE_TABLE));
		m->level = l;
		smp_store_release(&m->root, new[l - 1]);	/* see get_root() */
	}
	return 0;
}

static int shrink_root(struct morsel *m)
{
	void *root = m->root, *lower;

	if (root) {
		lower = first_child(root, m->level);
		/*
		 * The new root must be ours.  own_tables_for_shrink() made
		 * it so before anything was freed; this copy is a fallback
		 * no known path takes (a failed grow once left a level that
		 * did: grow_root()), and the warning a tripwire for the
		 * tests (test_resize_enospc walks resizes on a full mount).
		 */
		if (lower && WARN_ON_ONCE(m->level == MORSEL_LEVEL_PMD ?
					  morsel_pte_table_borrowed(m, 0, lower) :
					  morsel_pmd_table_borrowed(m, 0, lower))) {
			lower = morsel_copy_table(m, lower, m->level - 1);
			if (IS_ERR(lower))
				return PTR_ERR(lower);
		}
		m->root = lower;
		free_table(m, root, m->level);
	}
	m->level--;
	return 0;
}

/* In a child, a copy of the PTE (PMD) table covering @off if it borrows it. */
static int own_pte_table_if_borrowed(struct morsel *m, loff_t off)
{
	void *table = morsel_pte_table(m, off, false);

	if (!table || !morsel_pte_table_borrowed(m, off, table))
		return 0;
	return PTR_ERR_OR_ZERO(morsel_pte_table(m, off, true));
}

static int own_pmd_table_if_borrowed(struct morsel *m, loff_t off)
{
	void *table = morsel_pmd_table(m, off, false);

	if (!table || !morsel_pmd_table_borrowed(m, off, table))
		return 0;
	return PTR_ERR_OR_ZERO(morsel_pmd_table(m, off, true));
}

/*
 * In a child, copy the borrowed tables that a shrink to @size changes
 * (those straddling @size) or makes the root on the way down (at offset
 * 0: the PMD table when the root drops from PUD, the PTE table only when
 * it drops to PTE), before it frees anything: then a truncate that fails
 * for want of space (ENOSPC) has changed nothing, and one that starts
 * cannot fail halfway.  A shrink to 0 keeps no table: it copies nothing.
 */
static int own_tables_for_shrink(struct morsel *m, loff_t size)
{
	int level = morsel_level_for_size(size);
	int err = 0;

	if (!m->parent || !m->root || level == MORSEL_LEVEL_NONE)
		return 0;
	if (!IS_ALIGNED(size, PMD_SIZE))
		err = own_pte_table_if_borrowed(m, size);
	if (!err && !IS_ALIGNED(size, PUD_SIZE))
		err = own_pmd_table_if_borrowed(m, size);
	if (err || level >= m->level)
		return err;
	err = own_pmd_table_if_borrowed(m, 0);
	if (!err && level == MORSEL_LEVEL_PTE)
		err = own_pte_table_if_borrowed(m, 0);
	return err;
}

/*
 * Before a grow from @size that may be undone (write() and fallocate()
 * give back what they could not use): own now what a cut back to @size
 * would copy, the tables of a child that straddle its end, so the undo
 * cannot fail for want of space.  The grow keeps the tables at offset 0
 * the child's own (the old root goes under the new one), and it owns the
 * page of the last byte (morsel_frame_for_tail()).  Caller holds m->lock
 * exclusively.
 */
int morsel_own_for_undo(struct morsel *m, loff_t size)
{
	lockdep_assert_held_write(&m->lock);
	return own_tables_for_shrink(m, PAGE_ALIGN(size));
}

/*
 * Change the size (in bytes), re-rooting the subtree when the root level
 * changes.  Frames and tables past the last page go.  The bytes past the
 * size in the page that keeps the last byte are zeroed: when growing, a
 * mapping may have stored past the old end (the page is mapped whole),
 * and that must not show; when shrinking, the cut bytes must not come
 * back if the object grows again.  Everything that can fail (copies in a
 * child) happens before anything is freed or zeroed.  Caller holds
 * m->lock exclusively: no fault runs, so nothing links or maps anew.
 *
 * Mapped, growing needs nothing more: new levels go above the old root,
 * and every table a link points at stays where it is.  Shrinking first
 * unmaps from the new end (page-aligned: the page of the last byte stays
 * mapped whole): our notifier removes every link that reaches past it
 * (a link covers its whole granule, so one straddling the end goes too,
 * and so does a PUD link to a root that is about to be replaced) and
 * flushes; pages mapped one by one and secondary MMUs go the usual way.
 * Then no translation reaches a frame or table that is freed; a pinned
 * frame lives on until its last put.
 */
int morsel_set_size(struct morsel *m, loff_t size)
{
	loff_t old = i_size_read(&m->vfs_inode), keep;
	int level = morsel_level_for_size(size);
	struct page *tail;
	bool cut;
	int err;

	lockdep_assert_held_write(&m->lock);
	/*
	 * A cut: the size goes down, or the root level does (which a grow
	 * never leaves behind, grow_root(); checked anyway, since dropping
	 * a root level that is still linked frees a linked table).
	 */
	cut = size < old || (m->root && level < m->level);
	keep = PAGE_ALIGN(min(size, old));
	if (cut && m->root) {
		err = own_tables_for_shrink(m, keep);
		if (err)
			return err;
	}
	tail = morsel_frame_for_tail(m, min(size, old));
	if (IS_ERR(tail))
		return PTR_ERR(tail);
	if (tail)
		memzero_page(tail, offset_in_page(min(size, old)),
			     PAGE_SIZE - offset_in_page(min(size, old)));
	if (cut)
		unmap_mapping_range(m->vfs_inode.i_mapping, keep, 0, 1);
	if (cut && m->root)
		free_subtree(m, m->root, m->level, 0, keep);
	if (level == MORSEL_LEVEL_NONE) {
		free_root(m);
		m->level = MORSEL_LEVEL_NONE;
	}
	if (m->level == MORSEL_LEVEL_NONE && level != MORSEL_LEVEL_NONE)
		m->level = level;
	while (m->level > level) {
		err = shrink_root(m);
		if (err)
			return err;
	}
	if (m->level < level) {
		err = grow_root(m, level);
		if (err)
			return err;
	}
	i_size_write(&m->vfs_inode, size);
	return 0;
}

/* Free every frame and table: the object is gone. */
void morsel_destroy(struct morsel *m)
{
	if (m->root) {
		free_subtree(m, m->root, m->level, 0, 0);
		free_root(m);
	}
	xa_destroy(&m->twins);
	WARN_ON_ONCE(atomic_long_read(&m->data_pages));
	WARN_ON_ONCE(atomic_long_read(&m->table_pages));
}
