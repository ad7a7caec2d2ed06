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
 *
 * Copy-on-write: a child split from a frozen base starts with a copy of the
 * base's root, so every table and frame below is the base's.  An entry of
 * the child that equals the base's entry at the same offset is borrowed;
 * anything else is owned (the base never changes, so the test is stable).
 * Before the child changes a table it owns a copy of it (own_*_table());
 * before it writes a borrowed frame it copies the page (morsel_frame()).
 * Tables a process links are always owned by the linked object.
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

/*
 * Frames and tables alike count against the mount's size= (sbi->max_pages):
 * page tables are memory an unprivileged user makes the kernel hold, and a
 * sparse object can need a table per data page (docs/security.md).
 */
static bool charge_pages(struct morsel_sb *sbi, unsigned long nr)
{
	bool ok;

	spin_lock(&sbi->lock);
	ok = !sbi->max_pages || sbi->used_pages + nr <= sbi->max_pages;
	if (ok)
		sbi->used_pages += nr;
	spin_unlock(&sbi->lock);
	return ok;
}

static void uncharge_pages(struct morsel_sb *sbi, unsigned long nr)
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

	if (!charge_pages(m->sbi, 1))
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
	uncharge_pages(m->sbi, 1);
	return ERR_PTR(-ENOMEM);
}

static void *alloc_table(struct morsel *m, int level)
{
	return alloc_table_filled(m, level, true);
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
	uncharge_pages(m->sbi, 1);
	atomic_long_dec(&m->table_pages);
	atomic_long_dec(&morsel_totals.table_pages);
}

/*
 * A frame charged to the object's memcg and mount, or ERR_PTR.  Zeroed
 * unless @zero is false: then the caller writes all of it before anyone
 * can see it (morsel_fill_hole()) or gives it back (morsel_drop_frame()).
 */
struct page *morsel_alloc_frame(struct morsel *m, bool zero)
{
	gfp_t gfp = GFP_HIGHUSER | __GFP_ACCOUNT | (zero ? __GFP_ZERO : 0);
	struct mem_cgroup *old;
	struct page *page;

	if (!charge_pages(m->sbi, 1))
		return ERR_PTR(-ENOSPC);
	old = set_active_memcg(m->memcg);
	page = alloc_page(gfp);
	set_active_memcg(old);
	if (!page) {
		uncharge_pages(m->sbi, 1);
		return ERR_PTR(-ENOMEM);
	}
	return page;
}

/* Give back a frame of morsel_alloc_frame() that was never installed. */
void morsel_drop_frame(struct morsel *m, struct page *page)
{
	put_page(page);
	uncharge_pages(m->sbi, 1);
}

/* Drop the object's reference on a frame it no longer maps. */
void morsel_free_frame(struct morsel *m, struct page *page)
{
	put_page(page);
	uncharge_pages(m->sbi, 1);
	atomic_long_dec(&m->data_pages);
	atomic_long_dec(&morsel_totals.data_pages);
}

/* A leaf entry for @page; read-only once @m is frozen. */
static pte_t morsel_leaf(struct morsel *m, struct page *page)
{
	pgprot_t prot = READ_ONCE(m->frozen) ? PAGE_READONLY : PAGE_SHARED;

	return pte_mkspecial(pfn_pte(page_to_pfn(page), prot));
}

static pte_t read_only_leaf(pte_t pte)
{
	return pte_mkspecial(pfn_pte(pte_pfn(pte), PAGE_READONLY));
}

static pte_t zero_leaf(void)
{
	return pte_mkspecial(pfn_pte(my_zero_pfn(0), PAGE_READONLY));
}

/* A leaf that holds data: a hole read through a mapping does not. */
static bool leaf_has_data(pte_t pte)
{
	return pte_present(pte) && !is_zero_pfn(pte_pfn(pte));
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

/* The parent, if it covers @off (comparing with it means something). */
static struct morsel *parent_covering(struct morsel *m, loff_t off)
{
	struct morsel *p = m->parent;

	return p && off < i_size_read(&p->vfs_inode) ? p : NULL;
}

static bool pmd_table_borrowed(struct morsel *m, loff_t off, pmd_t *table)
{
	struct morsel *p = parent_covering(m, off);

	return p && morsel_pmd_table(p, off, false) == table;
}

static bool pte_table_borrowed(struct morsel *m, loff_t off, pte_t *table)
{
	struct morsel *p = parent_covering(m, off);

	return p && morsel_pte_table(p, off, false) == table;
}

/* Is @pte, our leaf at @off, the parent's frame? */
static bool leaf_borrowed(struct morsel *m, loff_t off, pte_t pte)
{
	struct morsel *p = parent_covering(m, off);
	pte_t *table;
	pte_t theirs;

	if (!p || !pte_present(pte))
		return false;
	table = morsel_pte_table(p, off, false);
	if (!table)
		return false;
	theirs = ptep_get(table + MORSEL_PTE_INDEX(off));
	return pte_present(theirs) && pte_pfn(theirs) == pte_pfn(pte);
}

/* Is @page the parent's frame at @off (whatever our leaf says now)? */
bool morsel_frame_borrowed(struct morsel *m, loff_t off, struct page *page)
{
	return leaf_borrowed(m, off, pfn_pte(page_to_pfn(page), PAGE_READONLY));
}

/* A new table of ours holding the same entries as @src, or ERR_PTR. */
static void *copy_table(struct morsel *m, void *src, int level)
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
 * The chunk of @off just got a PTE table where it had none: drop every
 * link of the hole table that stood for it (they show zeros, and what is
 * written into the new table must be seen).  The entry was written
 * before; the barrier orders it before the count, pairing with
 * morsel_link(), which counts before it looks.  unmap_mapping_range()
 * runs the notifiers of every mapper (ours unlinks), as a punch does.
 */
static void forget_hole_links(struct morsel *m, loff_t off)
{
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
	root = alloc_table(m, m->level);
	if (IS_ERR(root))
		return root;
	spin_lock(&m->root_lock);
	if (!m->root) {
		smp_store_release(&m->root, root);	/* see get_root() */
		root = NULL;
	}
	spin_unlock(&m->root_lock);
	if (root)
		free_table(m, root, m->level);
	else if (m->level == MORSEL_LEVEL_PTE)
		forget_hole_links(m, 0);
	return m->root;
}

/*
 * Replace the borrowed PMD table @old at @pudp by a copy we own; the
 * table there afterwards, or ERR_PTR.  A PUD root is never linked into a
 * process, so nothing can cache walks through @pudp: no flush.
 */
static pmd_t *own_pmd_table(struct morsel *m, pud_t *pudp, pmd_t *old)
{
	pmd_t *copy = copy_table(m, old, MORSEL_LEVEL_PMD);
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
	pte_t *copy = copy_table(m, old, MORSEL_LEVEL_PTE);
	spinlock_t *ptl = table_lock(pmdp);	/* of our PMD table */
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
 * The PMD table covering the 1 GiB chunk of @off.  Without @alloc: the
 * table, or NULL when absent (or the object is PTE-rooted).  With @alloc
 * the table is made, or copied from the base, so that it is one we own
 * and may change: ERR_PTR(-ENOSPC or -ENOMEM) if that fails; NULL still
 * for a PTE-rooted object.
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
	if (IS_ERR_OR_NULL(pudp))
		return (pmd_t *)pudp;
	pudp += MORSEL_PUD_INDEX(off);
	pud = pudp_get(pudp);
	if (pud_present(pud)) {
		table = (pmd_t *)pud_pgtable(pud);
		if (!alloc || !pmd_table_borrowed(m, off, table))
			return table;
		return own_pmd_table(m, pudp, table);
	}
	if (!alloc)
		return NULL;
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
 * one we own: the caller may change it; ERR_PTR if it could not be had,
 * NULL only for an object of size 0.
 */
pte_t *morsel_pte_table(struct morsel *m, loff_t off, bool alloc)
{
	spinlock_t *ptl;	/* of the PMD table that gets the entry */
	pmd_t *pmdp, pmd;
	pte_t *table;

	if (m->level == MORSEL_LEVEL_PTE)
		return get_root(m, alloc);
	pmdp = morsel_pmd_table(m, off, alloc);
	if (IS_ERR_OR_NULL(pmdp))
		return (pte_t *)pmdp;
	pmdp += MORSEL_PMD_INDEX(off);
	pmd = pmdp_get(pmdp);
	if (pmd_present(pmd)) {
		table = (pte_t *)pmd_page_vaddr(pmd);
		if (!alloc || !pte_table_borrowed(m, off, table))
			return table;
		return own_pte_table(m, pmdp, table);
	}
	if (!alloc)
		return NULL;
	table = alloc_table(m, MORSEL_LEVEL_PTE);
	if (IS_ERR(table))
		return table;
	ptl = table_lock(pmdp);
	spin_lock(ptl);
	if (pmd_none(pmdp_get(pmdp))) {
		set_pmd(pmdp, __pmd(__pa(table) | _PAGE_TABLE));
		table = NULL;
	}
	spin_unlock(ptl);
	if (table)
		free_table(m, table, MORSEL_LEVEL_PTE);
	else
		forget_hole_links(m, off);
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
 * The table a read-only mapping links for the 2 MiB chunk of @off, or
 * ERR_PTR.  A chunk without a table reads as zeros: the shared hole
 * table, whose links are dropped when the chunk gets a table
 * (forget_hole_links()).  A frozen object's leaves are read-only for
 * good, so a table it owns serves as it is (a borrowed one is copied
 * first: a process links only tables of the object it maps); a freeze
 * still running (it holds m->lock while it write-protects) is waited for
 * first.  Other objects link a read-only twin of the table: the same
 * frames with RW clear, made on first use.
 */
pte_t *morsel_ro_pte_table(struct morsel *m, loff_t off)
{
	unsigned long chunk = off >> PMD_SHIFT;
	pte_t *table, *twin, *found;
	spinlock_t *ptl;	/* of the primary table */
	int i;

	if (READ_ONCE(m->frozen)) {
		down_read(&m->lock);
		up_read(&m->lock);
	}
	table = morsel_pte_table(m, off, false);
	if (!table)
		return hole_table;
	if (READ_ONCE(m->frozen) && !pte_table_borrowed(m, off, table))
		return table;
	table = morsel_pte_table(m, off, true);
	if (READ_ONCE(m->frozen))
		return table ?: ERR_PTR(-ENXIO);
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
	return found ?: ERR_PTR(-ENOMEM);
}

static bool same_frame(pte_t a, pte_t b)
{
	if (!pte_present(a) || !pte_present(b))
		return pte_present(a) == pte_present(b);
	return pte_pfn(a) == pte_pfn(b);
}

enum leaf_kind {
	LEAF_NONE,		/* a hole */
	LEAF_ZERO,		/* a hole read through a mapping: zero page */
	LEAF_BORROWED,		/* the parent's frame */
	LEAF_OWNED,		/* a frame of ours */
};

static enum leaf_kind leaf_kind(struct morsel *m, loff_t off, pte_t pte)
{
	if (!pte_present(pte))
		return LEAF_NONE;
	if (is_zero_pfn(pte_pfn(pte)))
		return LEAF_ZERO;
	return leaf_borrowed(m, off, pte) ? LEAF_BORROWED : LEAF_OWNED;
}

/* Does a leaf of kind @k do for @intent as it is? */
static bool leaf_serves(enum leaf_kind k, enum morsel_intent intent)
{
	switch (intent) {
	case MORSEL_FAULT:
		return k != LEAF_NONE;
	case MORSEL_WRITE:
		return k == LEAF_OWNED;
	default:
		return k == LEAF_BORROWED || k == LEAF_OWNED;
	}
}

/*
 * A read fault on a hole of an object whose frames are never written in
 * place (frozen, or a child, which copies on write) maps the zero page
 * read-only instead of allocating.
 */
static bool hole_reads_zero_page(struct morsel *m, enum morsel_intent intent)
{
	return intent == MORSEL_FAULT && (READ_ONCE(m->frozen) || m->parent);
}

/*
 * Dirty tracking, for incremental saves.  An owned leaf is dirty while it
 * is writable or has D set.  Cleaning (morsel_scan()) clears both, so the
 * next store by any writer (the CPU through a link, a page mapped one by
 * one, write(), ptrace, a secondary MMU such as KVM, which all come through
 * morsel_frame(MORSEL_WRITE)) first makes the leaf writable and dirty
 * again.  Borrowed leaves are the base's: never dirty, never cleaned.
 */
static bool leaf_dirty(pte_t pte)
{
	return pte_write(pte) || pte_dirty(pte);
}

/* Make the owned leaf *@ptep, still @pte, writable and dirty again. */
static void mark_leaf_written(struct morsel *m, pte_t *ptep, pte_t pte)
{
	spinlock_t *ptl = table_lock(ptep);

	spin_lock(ptl);
	/* A freeze sets m->frozen before it takes this lock to wrprotect. */
	if (!READ_ONCE(m->frozen) && same_frame(ptep_get(ptep), pte))
		set_pte(ptep, pte_mkdirty(pte_mkwrite_novma(ptep_get(ptep))));
	spin_unlock(ptl);
}

/* Clean the owned leaf *@ptep; was it dirty?  Its table's lock is held. */
static bool clean_leaf(pte_t *ptep)
{
	pte_t old = ptep_get(ptep);

	/* The CPU may set D under us: a cmpxchg keeps that store seen. */
	do {
		if (!leaf_dirty(old))
			return false;
	} while (!try_cmpxchg(&ptep->pte, &old.pte,
			      pte_mkclean(pte_wrprotect(old)).pte));
	return true;
}

/* A leaf that serves @intent as it is; a store makes it dirty first. */
static struct page *served_frame(struct morsel *m, pte_t *ptep, pte_t pte,
				 enum morsel_intent intent)
{
	if (intent == MORSEL_WRITE && !pte_write(pte) && !READ_ONCE(m->frozen))
		mark_leaf_written(m, ptep, pte);
	return pte_page(pte);
}

/*
 * Make leaf *@ptep of page @index map @page (a frame of ours, or the zero
 * page) if it still is @old; was it?  Replacing a present leaf is
 * replace_leaf()'s.  While one runs in a child (leaf_gen odd), its leaf
 * may read none between the zap and the copy: nobody else may fill that
 * "hole", so no other task fills any then; it waits (read_leaf()).  The
 * zap takes this lock after leaf_gen went odd, so the test holds.
 */
static bool filling_blocked(struct morsel *m, pte_t old)
{
	return m->parent && !pte_present(old) &&
	       (atomic_read(&m->leaf_gen) & 1) &&
	       READ_ONCE(m->repl.task) != current;
}

static bool install_leaf(struct morsel *m, pte_t *ptep, pgoff_t index,
			 pte_t old, struct page *page)
{
	spinlock_t *ptl = table_lock(ptep);
	bool zero = is_zero_pfn(page_to_pfn(page));
	bool installed = false;
	pte_t *twin;

	spin_lock(ptl);
	if (same_frame(ptep_get(ptep), old) && !filling_blocked(m, old)) {
		/* morsel_leaf() reads m->frozen under the lock: see freeze */
		set_pte(ptep, zero ? zero_leaf() : morsel_leaf(m, page));
		twin = twin_of(m, index);
		if (twin)
			mirror_leaf(twin, index, ptep_get(ptep));
		if (!zero) {
			atomic_long_inc(&m->data_pages);
			atomic_long_inc(&morsel_totals.data_pages);
		}
		installed = true;
	}
	spin_unlock(ptl);
	return installed;
}

/*
 * The leaf *@ptep.  A leaf of a child being replaced reads none for a
 * moment (replace_leaf()): a none leaf of a child is read again once no
 * replacement runs, so a hole this reports is a hole.
 */
static pte_t read_leaf(struct morsel *m, pte_t *ptep)
{
	pte_t pte = ptep_get(ptep);

	if (pte_none(pte) && m->parent) {
		down_read(&m->replace_sem);
		pte = ptep_get(ptep);
		up_read(&m->replace_sem);
	}
	return pte;
}

static unsigned long table_pfn(void *table)
{
	return table ? PHYS_PFN(__pa((unsigned long)table & PAGE_MASK)) : 0;
}

/*
 * Clear the leaf *@ptep, still @old, that the store fault @vmf reached
 * through a link, and flush that page in the faulting address space: all
 * that unmap_mapping_range() would do when morsel_sole_translation().
 */
static void clear_leaf_in_fault_mm(pte_t *ptep, pte_t old,
				   struct vm_fault *vmf)
{
	spinlock_t *ptl = table_lock(ptep);
	bool cleared = false;

	spin_lock(ptl);
	if (same_frame(ptep_get(ptep), old)) {
		pte_clear(vmf->vma->vm_mm, vmf->address, ptep);
		cleared = true;
	}
	spin_unlock(ptl);
	if (cleared)
		morsel_flush_mm_page(vmf->vma->vm_mm, vmf->address & PAGE_MASK);
}

/*
 * Replace the present leaf *@ptep of page @index of a child, still @old
 * (a frame borrowed from the base, or the zero page), by @page.  Every
 * translation of the old frame must go first: process entries made page
 * by page, secondary MMUs such as KVM (which only the core mm's notifiers
 * reach) and TLB entries made through links.  unmap_mapping_range() does
 * all of it; our notifier (link.c) sees from m->repl that the invalidation
 * is this one and, instead of removing the link, flushes the one page in
 * that address space, and the core mm zaps the old leaf through the link
 * (a special entry: no page is touched).  When the store fault @vmf (NULL
 * for other writers) walks through this very table and that is the old
 * frame's only translation (morsel_sole_translation()), clearing the leaf
 * and flushing that page is the same work done directly.  The new leaf
 * goes in after.
 * m->leaf_gen is odd meanwhile: a page-by-page fault waits for an even
 * value before its lookup and, if the value moved by its insert, waits
 * for it to be even again and removes the entry it inserted unless the
 * leaf still maps that frame (fault_one_page()), so the old frame is
 * never left mapped.
 * Returns false if the leaf changed meanwhile: the caller looks again.
 */
static bool replace_leaf(struct morsel *m, pte_t *ptep, pgoff_t index,
			 pte_t old, struct page *page, struct vm_fault *vmf)
{
	loff_t off = (loff_t)index << PAGE_SHIFT;
	bool replaced = false, direct;
	pte_t now;

	down_write(&m->replace_sem);
	if (!same_frame(ptep_get(ptep), old))
		goto out;
	m->repl.index = index;
	m->repl.table_pfn = table_pfn(ptep);
	m->repl.twin_pfn = table_pfn(twin_of(m, index));
	m->repl.pmd_table_pfn = m->level >= MORSEL_LEVEL_PMD ?
				table_pfn(morsel_pmd_table(m, off, false)) : 0;
	WRITE_ONCE(m->repl.task, current);
	atomic_inc(&m->leaf_gen);	/* odd */
	smp_mb__after_atomic();		/* pairs with fault_one_page() */
	/* The fault's address translates through the table of @ptep. */
	direct = vmf && pmd_links_table(pmdp_get_lockless(vmf->pmd), ptep) &&
		 morsel_sole_translation(m, vmf);
	if (direct)
		clear_leaf_in_fault_mm(ptep, old, vmf);
	else
		unmap_mapping_range(m->vfs_inode.i_mapping, off, PAGE_SIZE, 1);
	/* Zapped through a link (none), or nobody linked it (still @old). */
	now = ptep_get(ptep);
	replaced = install_leaf(m, ptep, index, pte_none(now) ? now : old,
				page);
	if (replaced) {
		WRITE_ONCE(m->repl.count, m->repl.count + 1);
		WRITE_ONCE(m->repl.direct, m->repl.direct + direct);
	}
	WRITE_ONCE(m->repl.task, NULL);
	smp_mb__before_atomic();	/* the new leaf before the even value */
	atomic_inc(&m->leaf_gen);	/* even */
out:
	up_write(&m->replace_sem);
	return replaced;
}

static struct page *frame_for(struct morsel *m, pgoff_t index,
			      enum morsel_intent intent, struct vm_fault *vmf)
{
	loff_t off = (loff_t)index << PAGE_SHIFT;
	struct page *page;
	enum leaf_kind k;
	pte_t *ptep;
	pte_t pte;

	/* Even an owned frame: a frozen object's contents never change. */
	if (intent == MORSEL_WRITE && READ_ONCE(m->frozen))
		return ERR_PTR(-EPERM);
again:
	ptep = morsel_pte_table(m, off, false);
	if (ptep) {
		ptep += MORSEL_PTE_INDEX(off);
		pte = read_leaf(m, ptep);
		if (leaf_serves(leaf_kind(m, off, pte), intent))
			return served_frame(m, ptep, pte, intent);
	}
	if (intent == MORSEL_LOOKUP)
		return NULL;
	if (intent == MORSEL_WRITE && READ_ONCE(m->frozen))
		return ERR_PTR(-EPERM);
	ptep = morsel_pte_table(m, off, true);
	if (IS_ERR_OR_NULL(ptep))
		return ptep ? ERR_CAST(ptep) : ERR_PTR(-ENXIO);
	ptep += MORSEL_PTE_INDEX(off);
	pte = read_leaf(m, ptep);
	k = leaf_kind(m, off, pte);
	if (leaf_serves(k, intent))
		return served_frame(m, ptep, pte, intent);
	if (k == LEAF_NONE && hole_reads_zero_page(m, intent)) {
		page = ZERO_PAGE(0);
	} else {
		/* A copy overwrites all of the frame: no need to zero it. */
		page = morsel_alloc_frame(m, k != LEAF_BORROWED);
		if (IS_ERR(page))
			return page;
		if (k == LEAF_BORROWED)	/* the base's: never changes */
			copy_highpage(page, pte_page(pte));
	}
	if (k == LEAF_NONE ? !install_leaf(m, ptep, index, pte, page) :
	    !replace_leaf(m, ptep, index, pte, page, vmf)) {
		/* somebody else filled or copied it */
		if (!is_zero_pfn(page_to_pfn(page)))
			morsel_drop_frame(m, page);
		goto again;
	}
	return page;
}

/*
 * The frame at page @index, for @intent: NULL for a hole (LOOKUP only),
 * ERR_PTR on failure.  WRITE on a borrowed or zero-page leaf installs a
 * private frame (copy-on-write, replace_leaf()); so does POPULATE on a
 * zero-page leaf.  The caller keeps the frame from being freed (m->lock
 * shared, or the object is mapped and the frame only reaches a linked
 * table).
 */
struct page *morsel_frame(struct morsel *m, pgoff_t index,
			  enum morsel_intent intent)
{
	return frame_for(m, index, intent, NULL);
}

/*
 * morsel_frame(MORSEL_WRITE) for the store fault @vmf, which reached the
 * leaf through a link of @m (so the process entry is ours to replace).
 */
struct page *morsel_frame_for_store(struct morsel *m, pgoff_t index,
				    struct vm_fault *vmf)
{
	return frame_for(m, index, MORSEL_WRITE, vmf);
}

/*
 * Like morsel_frame(), with a reference the caller drops by put_page().
 * The size is checked under m->lock: a caller that read it before may
 * race with a shrink, and past the size the root may no longer cover
 * @index at all.
 */
struct page *morsel_get_frame(struct morsel *m, pgoff_t index,
			      enum morsel_intent intent)
{
	struct page *page;

	down_read(&m->lock);
	if ((loff_t)index << PAGE_SHIFT >= i_size_read(&m->vfs_inode))
		page = intent == MORSEL_LOOKUP ? NULL : ERR_PTR(-ENXIO);
	else
		page = morsel_frame(m, index, intent);
	if (!IS_ERR_OR_NULL(page))
		get_page(page);
	up_read(&m->lock);
	return page;
}

/*
 * Put @page, a frame of morsel_alloc_frame() that holds its data already,
 * at page @index if that page is a hole.  The caller holds m->lock shared
 * and has checked that @m is neither frozen nor a child and that @index
 * is inside the size.  Returns 1 if it did, 0 if the page is not a hole
 * (the frame is still the caller's), -ENOSPC or -ENOMEM if a table was needed
 * and could not be had.
 * A hole has no translation anywhere: no flush.
 */
int morsel_fill_hole(struct morsel *m, pgoff_t index, struct page *page)
{
	loff_t off = (loff_t)index << PAGE_SHIFT;
	pte_t *ptep = morsel_pte_table(m, off, true);

	if (IS_ERR_OR_NULL(ptep))
		return ptep ? PTR_ERR(ptep) : -ENXIO;
	ptep += MORSEL_PTE_INDEX(off);
	return install_leaf(m, ptep, index, __pte(0), page);
}

/* Does the leaf of page @index map @page now?  Not if a hole, or none. */
bool morsel_leaf_maps(struct morsel *m, pgoff_t index, struct page *page)
{
	loff_t off = (loff_t)index << PAGE_SHIFT;
	pte_t *ptep = morsel_pte_table(m, off, false);
	pte_t pte;

	if (!ptep)
		return false;
	pte = ptep_get(ptep + MORSEL_PTE_INDEX(off));
	return pte_present(pte) && pte_pfn(pte) == page_to_pfn(page);
}

/* Allocate every frame of pages [@first, @end). */
int morsel_populate(struct morsel *m, pgoff_t first, pgoff_t end)
{
	struct page *page;
	int err = 0;

	down_read(&m->lock);
	end = min_t(pgoff_t, end, i_size_read(&m->vfs_inode) >> PAGE_SHIFT);
	/* A frozen object gets no new frames: its holes read as zero. */
	if (READ_ONCE(m->frozen))
		end = first;
	for (; first < end; first++) {
		page = morsel_frame(m, first, MORSEL_POPULATE);
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

/*
 * Clear the leaves of pages [@first, @end) of one PTE table we own, and of
 * its twin.  Owned frames go on @frames; borrowed ones stay the base's.
 * Returns the number of leaves cleared.
 */
static unsigned long clear_leaves(struct morsel *m, pte_t *table,
				  pgoff_t first, pgoff_t end,
				  struct list_head *frames)
{
	spinlock_t *ptl = table_lock(table);
	unsigned long cleared = 0;
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
		cleared++;
		if (twin)
			mirror_leaf(twin, i, __pte(0));
		if (leaf_kind(m, (loff_t)i << PAGE_SHIFT, pte) == LEAF_OWNED)
			list_add(&pte_page(pte)->lru, frames);
	}
	spin_unlock(ptl);
	return cleared;
}

/*
 * Drop our link to the borrowed PTE table of @off's chunk (a whole
 * punch): 1 if done, 0 if the entry changed meanwhile, or -errno (the PMD
 * table above had to be copied).
 */
static int unhook_borrowed_pte_table(struct morsel *m, loff_t off,
				     pte_t *table)
{
	pmd_t *pmdp = morsel_pmd_table(m, off, true);
	spinlock_t *ptl;	/* of our PMD table */
	int done = 0;
	pmd_t pmd;

	if (IS_ERR_OR_NULL(pmdp))
		return PTR_ERR_OR_ZERO(pmdp);
	pmdp += MORSEL_PMD_INDEX(off);
	ptl = table_lock(pmdp);
	spin_lock(ptl);
	pmd = pmdp_get(pmdp);
	if (pmd_present(pmd) && (pte_t *)pmd_page_vaddr(pmd) == table) {
		pmd_clear(pmdp);
		done = 1;
	}
	spin_unlock(ptl);
	return done;
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

	if (!table || !table_empty(table) || pte_table_borrowed(m, off, table))
		return;
	if (m->level == MORSEL_LEVEL_PTE) {
		free_root(m);
		return;
	}
	pmdp = morsel_pmd_table(m, off, false) + MORSEL_PMD_INDEX(off);
	ptl = table_lock(pmdp);
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

	if (!table || !table_empty(table) || pmd_table_borrowed(m, off, table))
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
 * back all the memory that writing took (docs/security.md).  Only while
 * nobody maps the object: then no link can point at a table (m->lock
 * held exclusively keeps new mappings out, morsel_mmap()), and nothing
 * else reads the tables without m->lock.  Tables emptied while the
 * object is mapped stay, charged, until a later punch or truncate of
 * their range when it is not.
 */
static void free_empty_tables(struct morsel *m, pgoff_t first, pgoff_t end)
{
	loff_t off = ALIGN_DOWN((loff_t)first << PAGE_SHIFT, PMD_SIZE);
	loff_t stop = (loff_t)end << PAGE_SHIFT;

	lockdep_assert_held_write(&m->lock);
	if (atomic_read(&m->mappers))
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
 * Caller holds m->lock exclusively.  Tables we own stay: a linked table
 * must not go away under a mapper.  In a child, a whole borrowed PTE table
 * in the range is unhooked; a partly punched one is copied first.
 */
static int punch_leaves(struct morsel *m, pgoff_t first, pgoff_t end)
{
	pgoff_t index = first, chunk_end;
	unsigned long cleared = 0;
	LIST_HEAD(frames);
	pte_t *table;
	loff_t off;
	int err = 0;

	lockdep_assert_held_write(&m->lock);
	for (; index < end; index = chunk_end) {
		chunk_end = min_t(pgoff_t, end,
				  (index | (PTRS_PER_PTE - 1)) + 1);
		off = (loff_t)index << PAGE_SHIFT;
		table = morsel_pte_table(m, off, false);
		if (table && pte_table_borrowed(m, off, table)) {
			if (!(index & (PTRS_PER_PTE - 1)) &&
			    chunk_end - index == PTRS_PER_PTE) {
				err = unhook_borrowed_pte_table(m, off, table);
				if (err < 0)
					break;
				cleared += err;
				err = 0;
				continue;
			}
			table = morsel_pte_table(m, off, true);
			if (IS_ERR(table)) {
				err = PTR_ERR(table);
				break;
			}
		}
		if (table)
			cleared += clear_leaves(m, table, index, chunk_end,
						&frames);
		cond_resched();
	}
	if (cleared) {
		/*
		 * Before the frames go, every translation to them must:
		 * mappers' links (our notifier removes them and flushes every
		 * TLB), pages mapped one by one, and secondary MMUs (KVM
		 * reaches our frames via follow_pfnmap and drops them only on
		 * the core mm's notifiers).
		 */
		unmap_mapping_range(m->vfs_inode.i_mapping,
				    (loff_t)first << PAGE_SHIFT,
				    (loff_t)(end - first) << PAGE_SHIFT, 1);
		free_frames(m, &frames);
	}
	free_empty_tables(m, first, end);
	return err;
}

/*
 * In a child: keep replacements (replace_leaf()) out, to read leaves that
 * are never none for a moment (shared), or so that none can put a frame
 * back into a hole being punched (@exclusive).  Nothing in other objects.
 */
static void wait_replacements(struct morsel *m, bool exclusive)
{
	if (!m->parent)
		return;
	if (exclusive)
		down_write(&m->replace_sem);
	else
		down_read(&m->replace_sem);
}

static void allow_replacements(struct morsel *m, bool exclusive)
{
	if (!m->parent)
		return;
	if (exclusive)
		up_write(&m->replace_sem);
	else
		up_read(&m->replace_sem);
}

int morsel_punch(struct morsel *m, pgoff_t first, pgoff_t end)
{
	int err;

	wait_replacements(m, true);
	err = punch_leaves(m, first, end);
	allow_replacements(m, true);
	return err;
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
			if (pte_table_borrowed(m, child, lower)) {
				if (child >= from) {
					pmd_clear(pmdp);
					continue;
				}
				/* owned before: own_tables_for_shrink() */
				lower = own_pte_table(m, pmdp, lower);
				if (IS_ERR_OR_NULL(lower))
					continue;
			}
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
			if (pmd_table_borrowed(m, child, lower)) {
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

static int grow_root(struct morsel *m)
{
	int level = m->level + 1;
	void *root;

	if (!m->root) {
		m->level = level;
		return 0;
	}
	root = alloc_table(m, level);
	if (IS_ERR(root))
		return PTR_ERR(root);
	if (level == MORSEL_LEVEL_PMD)
		set_pmd((pmd_t *)root, __pmd(__pa(m->root) | _PAGE_TABLE));
	else
		set_pud((pud_t *)root, __pud(__pa(m->root) | _PAGE_TABLE));
	m->level = level;
	smp_store_release(&m->root, root);	/* see get_root() */
	return 0;
}

static int shrink_root(struct morsel *m)
{
	void *root = m->root, *lower;

	if (root) {
		lower = first_child(root, m->level);
		/* The new root must be ours. */
		if (lower && (m->level == MORSEL_LEVEL_PMD ?
			      pte_table_borrowed(m, 0, lower) :
			      pmd_table_borrowed(m, 0, lower))) {
			/* owned before: own_tables_for_shrink() */
			lower = copy_table(m, lower, m->level - 1);
			if (IS_ERR(lower))
				return PTR_ERR(lower);
		}
		m->root = lower;
		free_table(m, root, m->level);
	}
	m->level--;
	return 0;
}

/*
 * In a child, copy the borrowed tables that a shrink to @size changes
 * (those straddling @size) or makes the root (those at offset 0), before
 * it frees anything: then a truncate that fails for want of space
 * (ENOSPC) has changed nothing, and one that starts cannot fail halfway.
 */
static int own_tables_for_shrink(struct morsel *m, loff_t size)
{
	int level = morsel_level_for_size(size);
	void *table;
	int i;

	if (!m->parent || !m->root)
		return 0;
	for (i = 0; i < 2; i++) {
		loff_t off = i ? 0 : size;

		if (i && level >= m->level)
			break;
		table = morsel_pte_table(m, off, false);
		if (table && pte_table_borrowed(m, off, table) &&
		    (i || !IS_ALIGNED(size, PMD_SIZE))) {
			table = morsel_pte_table(m, off, true);
			if (IS_ERR(table))
				return PTR_ERR(table);
		}
		table = morsel_pmd_table(m, off, false);
		if (table && pmd_table_borrowed(m, off, table) &&
		    (i || !IS_ALIGNED(size, PUD_SIZE))) {
			table = morsel_pmd_table(m, off, true);
			if (IS_ERR(table))
				return PTR_ERR(table);
		}
	}
	return 0;
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
	if (size < i_size_read(&m->vfs_inode) && m->root) {
		err = own_tables_for_shrink(m, size);
		if (err)
			return err;
		free_subtree(m, m->root, m->level, 0, size);
	}
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
 * Write-protect every leaf of one PTE table we own.  A writable leaf is
 * dirty (see leaf_dirty()): it keeps D, so a save still sees it.
 */
static void wrprotect_leaves(pte_t *table)
{
	spinlock_t *ptl = table_lock(table);
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
 * Make the contents permanent.  Caller holds inode_lock and m->lock
 * exclusively (no write(), truncate or punch can run).  Leaves installed
 * later read m->frozen under their table's lock, after this walk set it,
 * so they are read-only too.  Stores through mappings made before now
 * fault, and ->pfn_mkwrite refuses them.
 */
int morsel_freeze(struct morsel *m)
{
	loff_t size = i_size_read(&m->vfs_inode), off;
	pte_t *table;

	lockdep_assert_held_write(&m->lock);
	if (m->frozen)
		return 0;
	WRITE_ONCE(m->frozen, true);
	for (off = 0; off < size; off += PMD_SIZE) {
		if (m->level == MORSEL_LEVEL_PUD &&
		    !morsel_pmd_table(m, off, false)) {
			off = ALIGN_DOWN(off, PUD_SIZE) + PUD_SIZE - PMD_SIZE;
			continue;
		}
		table = morsel_pte_table(m, off, false);
		if (table && !pte_table_borrowed(m, off, table))
			wrprotect_leaves(table);
		cond_resched();
	}
	/*
	 * Drop every translation that may still allow a store: links (they
	 * come back read-only; removing them flushes every TLB), pages mapped
	 * one by one, secondary MMUs.  As in morsel_punch(), this reaches
	 * every cached translation: no flush of our own is needed.
	 */
	unmap_mapping_range(m->vfs_inode.i_mapping, 0, 0, 1);
	return 0;
}

/*
 * Make @child, a new empty object, a copy-on-write child of the frozen
 * @base: the same size and level, and a copy of the base's root, so every
 * table and frame below is borrowed.  At most 512 entries are copied.
 */
int morsel_adopt(struct morsel *child, struct morsel *base)
{
	void *root = smp_load_acquire(&base->root);	/* see get_root() */
	int err = 0;

	down_write(&child->lock);
	child->level = base->level;
	if (root) {
		child->root = copy_table(child, root, base->level);
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
	return err;
}

/* Pages present in the object's view, owned or borrowed (m->lock held). */
unsigned long morsel_visible_pages(struct morsel *m)
{
	loff_t size = i_size_read(&m->vfs_inode), off;
	unsigned long pages = 0;
	pte_t *table;
	int i;

	wait_replacements(m, false);	/* a leaf being replaced counts */
	for (off = 0; off < size; off += PMD_SIZE) {
		if (m->level == MORSEL_LEVEL_PUD &&
		    !morsel_pmd_table(m, off, false)) {
			off = ALIGN_DOWN(off, PUD_SIZE) + PUD_SIZE - PMD_SIZE;
			continue;
		}
		table = morsel_pte_table(m, off, false);
		for (i = 0; table && i < PTRS_PER_PTE; i++)
			pages += leaf_has_data(ptep_get(table + i));
		cond_resched();
	}
	allow_replacements(m, false);
	return pages;
}

static loff_t seek_leaves(struct morsel *m, loff_t off, int whence)
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
			bool data = leaf_has_data(ptep_get(table +
						MORSEL_PTE_INDEX(off)));

			if (data == want_data)
				return off;
		}
		cond_resched();
	}
	return want_data ? -ENXIO : size;
}

/*
 * SEEK_DATA / SEEK_HOLE: the first populated (or unpopulated) page at or
 * after @off, skipping absent tables whole.  Caller holds m->lock shared.
 */
loff_t morsel_seek_data(struct morsel *m, loff_t off, int whence)
{
	wait_replacements(m, false);	/* a leaf being replaced has data */
	off = seek_leaves(m, off, whence);
	allow_replacements(m, false);
	return off;
}

/* Add one word of scan bits (@word of the batch's bitmaps) to @b. */
static void add_scan_word(struct morsel_scan_batch *b, unsigned long word,
			  unsigned long present, unsigned long owned,
			  unsigned long dirty)
{
	b->present[word] |= present;
	b->owned[word] |= owned;
	b->dirty[word] |= dirty;
	b->present_pages += hweight_long(present);
	b->dirty_pages += hweight_long(dirty);
}

/*
 * Leaves of pages [@first, @end) of one PTE table into @b (bit 0 is page
 * @origin).  @theirs is the parent's table of the same chunk, or NULL: a
 * leaf equal to the parent's is borrowed (a whole borrowed table is the
 * parent's table itself, where every leaf is).  The bits of a word are
 * gathered in registers: an incremental save scans every leaf of the
 * object, and under emulation each memory access counts.
 */
static void scan_leaves(pte_t *table, pte_t *theirs, pgoff_t first,
			pgoff_t end, pgoff_t origin, bool clean,
			struct morsel_scan_batch *b)
{
	unsigned long present, owned, dirty, mask;
	spinlock_t *ptl = table_lock(table);
	pgoff_t i, stop;
	pte_t *ptep;
	pte_t pte;

	spin_lock(ptl);
	for (i = first; i < end; ) {
		/* The pages of one word of the batch's bitmaps. */
		stop = min(end, i + BITS_PER_LONG - (i - origin) % BITS_PER_LONG);
		mask = BIT((i - origin) % BITS_PER_LONG);
		present = 0;
		owned = 0;
		dirty = 0;
		ptep = table + (i & (PTRS_PER_PTE - 1));
		for (; i < stop; i++, ptep++, mask <<= 1) {
			pte = ptep_get(ptep);
			if (!leaf_has_data(pte))
				continue;
			present |= mask;
			if (theirs &&
			    same_frame(ptep_get(theirs + (ptep - table)), pte))
				continue;
			owned |= mask;
			if (leaf_dirty(pte) && (!clean || clean_leaf(ptep))) {
				dirty |= mask;
				b->cleaned |= clean;
			}
		}
		add_scan_word(b, (stop - 1 - origin) / BITS_PER_LONG, present,
			      owned, dirty);
	}
	spin_unlock(ptl);
}

/*
 * Fill @b for pages [@first, @end) (at most MORSEL_SCAN_BATCH), cleaning
 * the dirty ones if @clean; bits of @b must be zero.  Caller holds m->lock
 * shared (tables stay), and inode_lock to clean (no write() meanwhile).
 * The caller flushes the translations of cleaned leaves.
 */
void morsel_scan(struct morsel *m, pgoff_t first, pgoff_t end, bool clean,
		 struct morsel_scan_batch *b)
{
	pgoff_t size = DIV_ROUND_UP(i_size_read(&m->vfs_inode), PAGE_SIZE);
	pgoff_t index, next;
	struct morsel *p;
	pte_t *table, *theirs;
	loff_t off;

	end = min(end, size);
	wait_replacements(m, false);	/* a leaf being replaced is present */
	for (index = first; index < end; index = next) {
		off = (loff_t)index << PAGE_SHIFT;
		next = min_t(pgoff_t, end, (index | (PTRS_PER_PTE - 1)) + 1);
		if (m->level == MORSEL_LEVEL_PUD &&
		    !morsel_pmd_table(m, off, false)) {
			next = min_t(pgoff_t, end, ALIGN(index + 1, PTRS_PER_PMD *
							 PTRS_PER_PTE));
			continue;
		}
		table = morsel_pte_table(m, off, false);
		if (!table)
			continue;
		p = parent_covering(m, off);
		theirs = p ? morsel_pte_table(p, off, false) : NULL;
		scan_leaves(table, theirs, index, next, first, clean, b);
		cond_resched();
	}
	allow_replacements(m, false);
}

/* Is @page our leaf at @off, and writable (not clean, not borrowed)? */
bool morsel_frame_writable(struct morsel *m, loff_t off, struct page *page)
{
	pte_t *table = morsel_pte_table(m, off, false);
	pte_t pte;

	if (!table)
		return false;
	pte = ptep_get(table + MORSEL_PTE_INDEX(off));
	return pte_present(pte) && pte_pfn(pte) == page_to_pfn(page) &&
	       pte_write(pte);
}
