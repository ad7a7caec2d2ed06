// SPDX-License-Identifier: GPL-2.0
/*
 * The page-table subtree that is a morsel's state.
 *
 * This file owns the object's own tables: allocating them as the kernel's
 * page-table code would (same ptdesc constructors, same split locks, so a
 * linked table is an ordinary table to every core-mm walker), finding and
 * populating leaf entries, punching holes, resizing (re-rooting when the
 * root level changes) and freeing everything.
 *
 * Layout: byte offset @off of the object lives at
 *   PUD root: root[pud_index] -> PMD table[pmd_index] -> PTE table[pte_index]
 *   PMD root: root[pmd_index] -> PTE table[pte_index]
 *   PTE root: root[pte_index]
 * where the indices are taken from @off exactly as from a virtual address.
 * Upper entries are encoded like the kernel's own (_PAGE_TABLE), leaf
 * entries are special, writable, non-executable PTEs.  The leaf entry is
 * the only record that a frame belongs to the object.
 *
 * A PTE table may have a read-only twin (m->twins, by 2 MiB chunk): the
 * same frames with RW clear, made when a read-only mapping links that
 * chunk.  The twin is written only together with its primary, under the
 * primary's lock and then its own, so both always hold the same frames.
 */
#include <linux/highmem.h>
#include <linux/memcontrol.h>
#include <linux/sched/mm.h>
#include <asm/pgalloc.h>
#include <asm/tlbflush.h>

#include "morsel.h"

#define MORSEL_PTE_INDEX(off)	(((off) >> PAGE_SHIFT) & (PTRS_PER_PTE - 1))
#define MORSEL_PMD_INDEX(off)	(((off) >> PMD_SHIFT) & (PTRS_PER_PMD - 1))
#define MORSEL_PUD_INDEX(off)	(((off) >> PUD_SHIFT) & (PTRS_PER_PUD - 1))

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

static spinlock_t *table_lock(void *table)
{
	return ptlock_ptr(virt_to_ptdesc(table));
}

static void *alloc_table(struct morsel *m, int level)
{
	struct mem_cgroup *old = set_active_memcg(m->memcg);
	struct ptdesc *pt = pagetable_alloc(GFP_KERNEL_ACCOUNT | __GFP_ZERO, 0);
	bool ok = true;

	set_active_memcg(old);
	if (!pt)
		return NULL;
	if (level == MORSEL_LEVEL_PTE)
		ok = pagetable_pte_ctor(pt);
	else if (level == MORSEL_LEVEL_PMD)
		ok = pagetable_pmd_ctor(pt);
	else
		pagetable_pud_ctor(pt);
	if (!ok) {
		pagetable_free(pt);
		return NULL;
	}
	atomic_long_inc(&m->table_pages);
	atomic_long_inc(&morsel_totals.table_pages);
	return ptdesc_address(pt);
}

static void free_table(struct morsel *m, void *table, int level)
{
	struct ptdesc *pt = virt_to_ptdesc(table);

	if (level == MORSEL_LEVEL_PTE)
		pagetable_pte_dtor(pt);
	else if (level == MORSEL_LEVEL_PMD)
		pagetable_pmd_dtor(pt);
	else
		pagetable_pud_dtor(pt);
	pagetable_free(pt);
	atomic_long_dec(&m->table_pages);
	atomic_long_dec(&morsel_totals.table_pages);
}

static bool charge_frame(struct morsel_sb *sbi)
{
	bool ok;

	spin_lock(&sbi->lock);
	ok = !sbi->max_pages || sbi->used_pages < sbi->max_pages;
	if (ok)
		sbi->used_pages++;
	spin_unlock(&sbi->lock);
	return ok;
}

static void uncharge_frame(struct morsel_sb *sbi)
{
	spin_lock(&sbi->lock);
	sbi->used_pages--;
	spin_unlock(&sbi->lock);
}

/* A zeroed frame charged to the object's memcg and mount, or ERR_PTR. */
static struct page *alloc_frame(struct morsel *m)
{
	struct mem_cgroup *old;
	struct page *page;

	if (!charge_frame(m->sbi))
		return ERR_PTR(-ENOSPC);
	old = set_active_memcg(m->memcg);
	page = alloc_page(GFP_HIGHUSER | __GFP_ZERO | __GFP_ACCOUNT);
	set_active_memcg(old);
	if (!page) {
		uncharge_frame(m->sbi);
		return ERR_PTR(-ENOMEM);
	}
	return page;
}

/* Drop the object's reference on a frame it no longer maps. */
void morsel_free_frame(struct morsel *m, struct page *page)
{
	put_page(page);
	uncharge_frame(m->sbi);
	atomic_long_dec(&m->data_pages);
	atomic_long_dec(&morsel_totals.data_pages);
}

static pte_t morsel_leaf(struct page *page)
{
	return pte_mkspecial(pfn_pte(page_to_pfn(page), PAGE_SHARED));
}

static pte_t read_only_leaf(pte_t pte)
{
	return pte_mkspecial(pfn_pte(pte_pfn(pte), PAGE_READONLY));
}

static pte_t *twin_of(struct morsel *m, pgoff_t index)
{
	return xa_load(&m->twins, index >> (PMD_SHIFT - PAGE_SHIFT));
}

/* Copy entry @index of a primary table into @twin; primary lock held. */
static void mirror_leaf(pte_t *twin, pgoff_t index, pte_t pte)
{
	spinlock_t *ptl = table_lock(twin);	/* of the twin */
	pte_t *ptep = twin + (index & (PTRS_PER_PTE - 1));

	spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
	if (pte_present(pte))
		set_pte(ptep, read_only_leaf(pte));
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

/*
 * The root table, allocated on first use.  Lock-free readers pair their
 * acquire with the release that publishes a root after it was zeroed and
 * constructed.
 */
static void *get_root(struct morsel *m, bool alloc)
{
	void *root = smp_load_acquire(&m->root);	/* pairs, see above */

	if (root || !alloc || m->level == MORSEL_LEVEL_NONE)
		return root;
	root = alloc_table(m, m->level);
	if (!root)
		return NULL;
	spin_lock(&m->root_lock);
	if (!m->root) {
		smp_store_release(&m->root, root);	/* see get_root() */
		root = NULL;
	}
	spin_unlock(&m->root_lock);
	if (root)
		free_table(m, root, m->level);
	return m->root;
}

/*
 * The PMD table covering the 1 GiB chunk of @off, allocated on demand.
 * NULL for a PTE-rooted object, or when absent and !@alloc, or on ENOMEM.
 */
pmd_t *morsel_pmd_table(struct morsel *m, loff_t off, bool alloc)
{
	pud_t *pudp, pud;
	pmd_t *table;

	if (m->level == MORSEL_LEVEL_PMD)
		return get_root(m, alloc);
	if (m->level != MORSEL_LEVEL_PUD)
		return NULL;
	pudp = get_root(m, alloc);
	if (!pudp)
		return NULL;
	pudp += MORSEL_PUD_INDEX(off);
	pud = pudp_get(pudp);
	if (pud_present(pud))
		return (pmd_t *)pud_pgtable(pud);
	if (!alloc)
		return NULL;
	table = alloc_table(m, MORSEL_LEVEL_PMD);
	if (!table)
		return NULL;
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

/* The PTE table covering the 2 MiB chunk of @off, allocated on demand. */
pte_t *morsel_pte_table(struct morsel *m, loff_t off, bool alloc)
{
	spinlock_t *ptl;	/* of the PMD table that gets the entry */
	pmd_t *pmdp, pmd;
	pte_t *table;

	if (m->level == MORSEL_LEVEL_PTE)
		return get_root(m, alloc);
	pmdp = morsel_pmd_table(m, off, alloc);
	if (!pmdp)
		return NULL;
	pmdp += MORSEL_PMD_INDEX(off);
	pmd = pmdp_get(pmdp);
	if (pmd_present(pmd))
		return (pte_t *)pmd_page_vaddr(pmd);
	if (!alloc)
		return NULL;
	table = alloc_table(m, MORSEL_LEVEL_PTE);
	if (!table)
		return NULL;
	ptl = table_lock(pmdp);
	spin_lock(ptl);
	if (pmd_none(pmdp_get(pmdp))) {
		set_pmd(pmdp, __pmd(__pa(table) | _PAGE_TABLE));
		table = NULL;
	}
	spin_unlock(ptl);
	if (table)
		free_table(m, table, MORSEL_LEVEL_PTE);
	return (pte_t *)pmd_page_vaddr(pmdp_get(pmdp));
}

/*
 * The read-only twin of the PTE table covering @off, made on first use.
 * NULL on ENOMEM.
 */
pte_t *morsel_ro_pte_table(struct morsel *m, loff_t off)
{
	unsigned long chunk = off >> PMD_SHIFT;
	pte_t *table, *twin, *found;
	spinlock_t *ptl;	/* of the primary table */
	int i;

	table = morsel_pte_table(m, off, true);
	if (!table)
		return NULL;
	found = xa_load(&m->twins, chunk);
	if (found)
		return found;
	if (xa_reserve(&m->twins, chunk, GFP_KERNEL))
		return NULL;
	twin = alloc_table(m, MORSEL_LEVEL_PTE);
	if (!twin)
		return NULL;
	ptl = table_lock(table);
	spin_lock(ptl);
	found = xa_load(&m->twins, chunk);
	if (!found) {
		/* Not visible yet: nobody else can walk or write it. */
		for (i = 0; i < PTRS_PER_PTE; i++)
			if (pte_present(ptep_get(table + i)))
				set_pte(twin + i,
					read_only_leaf(ptep_get(table + i)));
		/* The slot is reserved: storing allocates nothing. */
		if (!xa_err(xa_store(&m->twins, chunk, twin, GFP_NOWAIT))) {
			found = twin;
			twin = NULL;
		}
	}
	spin_unlock(ptl);
	if (twin)
		free_table(m, twin, MORSEL_LEVEL_PTE);
	return found;
}

/*
 * The frame at page @index: NULL for a hole when !@alloc, ERR_PTR on
 * failure.  The caller keeps the frame from being freed (m->lock shared,
 * or the object is mapped and the frame only reaches a linked table).
 */
struct page *morsel_frame(struct morsel *m, pgoff_t index, bool alloc)
{
	loff_t off = (loff_t)index << PAGE_SHIFT;
	spinlock_t *ptl;	/* of the PTE table */
	struct page *page;
	pte_t *ptep, pte;

	ptep = morsel_pte_table(m, off, alloc);
	if (!ptep)
		return alloc ? ERR_PTR(-ENOMEM) : NULL;
	ptep += MORSEL_PTE_INDEX(off);
	pte = ptep_get(ptep);
	if (pte_present(pte))
		return pte_page(pte);
	if (!alloc)
		return NULL;
	page = alloc_frame(m);
	if (IS_ERR(page))
		return page;
	ptl = table_lock(ptep);
	spin_lock(ptl);
	if (pte_none(ptep_get(ptep))) {
		pte_t *twin = twin_of(m, index);

		set_pte(ptep, morsel_leaf(page));
		if (twin)
			mirror_leaf(twin, index, ptep_get(ptep));
		atomic_long_inc(&m->data_pages);
		atomic_long_inc(&morsel_totals.data_pages);
		page = NULL;
	}
	pte = ptep_get(ptep);
	spin_unlock(ptl);
	if (page) {
		put_page(page);
		uncharge_frame(m->sbi);
	}
	return pte_page(pte);
}

/*
 * Like morsel_frame(), with a reference the caller drops by put_page().
 * The size is checked under m->lock: a caller that read it before may
 * race with a shrink, and past the size the root may no longer cover
 * @index at all.
 */
struct page *morsel_get_frame(struct morsel *m, pgoff_t index, bool alloc)
{
	struct page *page;

	down_read(&m->lock);
	if ((loff_t)index << PAGE_SHIFT >= i_size_read(&m->vfs_inode))
		page = alloc ? ERR_PTR(-ENXIO) : NULL;
	else
		page = morsel_frame(m, index, alloc);
	if (!IS_ERR_OR_NULL(page))
		get_page(page);
	up_read(&m->lock);
	return page;
}

/* Allocate every frame of pages [@first, @end). */
int morsel_populate(struct morsel *m, pgoff_t first, pgoff_t end)
{
	struct page *page;
	int err = 0;

	down_read(&m->lock);
	end = min_t(pgoff_t, end, i_size_read(&m->vfs_inode) >> PAGE_SHIFT);
	for (; first < end; first++) {
		page = morsel_frame(m, first, true);
		if (IS_ERR(page)) {
			err = PTR_ERR(page);
			break;
		}
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		if (!(first & (PTRS_PER_PTE - 1)))
			cond_resched();
	}
	up_read(&m->lock);
	return err;
}

/* Clear the leaves of pages [@first, @end) of one PTE table and twin. */
static void clear_leaves(struct morsel *m, pte_t *table, pgoff_t first,
			 pgoff_t end, struct list_head *frames)
{
	spinlock_t *ptl = table_lock(table);
	pgoff_t i;
	pte_t *twin;
	pte_t pte;

	spin_lock(ptl);
	twin = twin_of(m, first);
	for (i = first; i < end; i++) {
		pte = ptep_get_and_clear(&init_mm, 0,
					 table + (i & (PTRS_PER_PTE - 1)));
		if (!pte_present(pte))
			continue;
		if (twin)
			mirror_leaf(twin, i, __pte(0));
		list_add(&pte_page(pte)->lru, frames);
	}
	spin_unlock(ptl);
}

static void free_frames(struct morsel *m, struct list_head *frames)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, frames, lru) {
		list_del(&page->lru);
		morsel_free_frame(m, page);
	}
}

/*
 * Remove pages [@first, @end) from the object and from every mapper.
 * Caller holds m->lock exclusively.  Tables stay: a linked table must not
 * go away under a mapper.
 */
void morsel_punch(struct morsel *m, pgoff_t first, pgoff_t end)
{
	pgoff_t index = first, chunk_end;
	LIST_HEAD(frames);
	pte_t *table;

	lockdep_assert_held_write(&m->lock);
	for (; index < end; index = chunk_end) {
		chunk_end = min_t(pgoff_t, end,
				  (index | (PTRS_PER_PTE - 1)) + 1);
		table = morsel_pte_table(m, (loff_t)index << PAGE_SHIFT, false);
		if (table)
			clear_leaves(m, table, index, chunk_end, &frames);
		cond_resched();
	}
	if (list_empty(&frames))
		return;
	/* Pages mapped one by one live in the mappers' own tables. */
	if (READ_ONCE(m->pfn_mapped))
		unmap_mapping_range(m->vfs_inode.i_mapping,
				    (loff_t)first << PAGE_SHIFT,
				    (loff_t)(end - first) << PAGE_SHIFT, 1);
	/* Linked mappers may still cache the cleared leaves. */
	morsel_flush_tlb();
	free_frames(m, &frames);
}

/*
 * Free every frame at offset >= @from below @table (level @level, first
 * offset @base) and every table that lies entirely at or beyond @from.
 * Only for an object nobody maps.
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

		clear_leaves(m, table, first,
			     (base >> PAGE_SHIFT) + PTRS_PER_PTE, &frames);
		free_frames(m, &frames);
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

static int grow_root(struct morsel *m)
{
	int level = m->level + 1;
	void *root;

	if (!m->root) {
		m->level = level;
		return 0;
	}
	root = alloc_table(m, level);
	if (!root)
		return -ENOMEM;
	if (level == MORSEL_LEVEL_PMD)
		set_pmd((pmd_t *)root, __pmd(__pa(m->root) | _PAGE_TABLE));
	else
		set_pud((pud_t *)root, __pud(__pa(m->root) | _PAGE_TABLE));
	m->level = level;
	smp_store_release(&m->root, root);	/* see get_root() */
	return 0;
}

static void shrink_root(struct morsel *m)
{
	void *root = m->root;

	if (root) {
		m->root = first_child(root, m->level);
		free_table(m, root, m->level);
	}
	m->level--;
}

/*
 * Change the size, re-rooting the subtree when the root level changes.
 * Caller holds m->lock exclusively and has checked that nobody maps the
 * object, so no table of it is linked anywhere.
 */
int morsel_set_size(struct morsel *m, loff_t size)
{
	int level = morsel_level_for_size(size);
	int err;

	lockdep_assert_held_write(&m->lock);
	if (size < i_size_read(&m->vfs_inode) && m->root)
		free_subtree(m, m->root, m->level, 0, size);
	if (level == MORSEL_LEVEL_NONE) {
		free_root(m);
		m->level = MORSEL_LEVEL_NONE;
	}
	if (m->level == MORSEL_LEVEL_NONE && level != MORSEL_LEVEL_NONE)
		m->level = level;
	while (m->level > level)
		shrink_root(m);
	while (m->level < level) {
		err = grow_root(m);
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

/*
 * SEEK_DATA / SEEK_HOLE: the first populated (or unpopulated) page at or
 * after @off, skipping absent tables whole.  Caller holds m->lock shared.
 */
loff_t morsel_seek_data(struct morsel *m, loff_t off, int whence)
{
	loff_t size = i_size_read(&m->vfs_inode);
	bool want_data = whence == SEEK_DATA;
	pte_t *table;
	loff_t next;

	if (off < 0 || off >= size)
		return -ENXIO;
	while (off < size) {
		if (m->level == MORSEL_LEVEL_PUD &&
		    !morsel_pmd_table(m, off, false)) {
			next = ALIGN_DOWN(off, PUD_SIZE) + PUD_SIZE;
			if (!want_data)
				return off;
			off = next;
			continue;
		}
		table = morsel_pte_table(m, off, false);
		next = ALIGN_DOWN(off, PMD_SIZE) + PMD_SIZE;
		if (!table) {
			if (!want_data)
				return off;
			off = next;
			continue;
		}
		for (; off < next && off < size;
		     off = ALIGN_DOWN(off, PAGE_SIZE) + PAGE_SIZE) {
			bool data = pte_present(ptep_get(table +
						MORSEL_PTE_INDEX(off)));

			if (data == want_data)
				return off;
		}
		cond_resched();
	}
	return want_data ? -ENXIO : size;
}
