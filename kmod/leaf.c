// SPDX-License-Identifier: GPL-2.0
/*
 * Frames and leaf entries: what lies at each page of an object.
 *
 * This file owns the leaf entries of the object's PTE tables and the
 * frames they point at: their encoding, charging frames, finding the
 * frame at a page for what the caller means to do with it (the
 * morsel_*_frame() family: look up, fault, populate, write), putting frames
 * into holes, dirty tracking in the leaves, and punching holes.
 *
 * Invariants:
 *  - a leaf is an ordinary (not special), non-executable PTE, so GUP and
 *    vm_normal_page() find the frame: writable while the object owns the
 *    frame, is not frozen and the page is dirty (cleaning makes it
 *    read-only, so the next store marks it dirty again); the zero page,
 *    special and read-only, for a hole read through a mapping of a frozen
 *    object or a child.  The leaf entry is the only record that a frame
 *    belongs to the object; the frame's ->mapping and ->index say which
 *    object and page owns it (shared futex keys, docs/gup.md), set before
 *    its leaf is, cleared before the object drops its reference;
 *  - a frame is a refcounted page: the object holds one reference, GUP
 *    and entries made page by page their own, and the last put frees it,
 *    so a pinned frame outlives a punch or the object;
 *  - leaves change under their table's split lock, and the twin's after
 *    it (morsel_mirror_leaf());
 *  - a frame is freed only after every translation of it is gone
 *    (unmap_mapping_range() before morsel_free_frames()).
 */
#include <linux/highmem.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <asm/tlbflush.h>

#include "morsel.h"

/*
 * A frame charged to the object's memcg and mount, or ERR_PTR.  It is
 * an ordinary page, never on an LRU: reclaim, migration and KSM leave it
 * alone.  Zeroed
 * unless @zero is false: then the caller writes all of it before anyone
 * can see it (morsel_fill_hole()) or gives it back (morsel_discard_frame()).
 */
struct page *morsel_alloc_frame(struct morsel *m, bool zero)
{
	gfp_t gfp = GFP_HIGHUSER | __GFP_ACCOUNT | (zero ? __GFP_ZERO : 0);
	struct mem_cgroup *old;
	struct page *page;

	if (!morsel_charge_pages(m->sbi, 1))
		return ERR_PTR(-ENOSPC);
	old = set_active_memcg(m->memcg);
	page = alloc_page(gfp);
	set_active_memcg(old);
	if (!page) {
		morsel_uncharge_pages(m->sbi, 1);
		return ERR_PTR(-ENOMEM);
	}
	return page;
}

/* Name @page as page @index of @m (shared futex keys, docs/gup.md). */
void morsel_name_frame(struct morsel *m, struct page *page, pgoff_t index)
{
	page->index = index;
	WRITE_ONCE(page->mapping, m->vfs_inode.i_mapping);
	/*
	 * Before GUP-fast can find the page by a leaf: pairs with the
	 * address dependency of its reads (leaf, then page, then ->mapping).
	 */
	smp_wmb();
}

/*
 * Give back a frame of morsel_alloc_frame() that is not (or no longer)
 * counted as the object's data.  A pin may keep the page past this: it is
 * then nobody's (no ->mapping), as a truncated page-cache page is.
 */
void morsel_discard_frame(struct morsel *m, struct page *page)
{
	WRITE_ONCE(page->mapping, NULL);
	put_page(page);
	morsel_uncharge_pages(m->sbi, 1);
}

/* Drop the object's reference on a frame it no longer maps. */
void morsel_release_frame(struct morsel *m, struct page *page)
{
	morsel_discard_frame(m, page);
	atomic_long_dec(&m->data_pages);
	atomic_long_dec(&morsel_totals.data_pages);
}

/* A leaf entry for @page; read-only once @m is frozen. */
static pte_t morsel_leaf(struct morsel *m, struct page *page)
{
	pgprot_t prot = READ_ONCE(m->frozen) ? PAGE_READONLY : PAGE_SHARED;

	return pfn_pte(page_to_pfn(page), prot);
}

pte_t morsel_read_only_leaf(pte_t pte)
{
	pte_t ro = pfn_pte(pte_pfn(pte), PAGE_READONLY);

	return is_zero_pfn(pte_pfn(pte)) ? pte_mkspecial(ro) : ro;
}

static pte_t zero_leaf(void)
{
	return pte_mkspecial(pfn_pte(my_zero_pfn(0), PAGE_READONLY));
}

/* What a caller of frame_for() means to do with the frame. */
enum morsel_intent {
	MORSEL_LOOKUP,		/* read: a hole stays a hole */
	MORSEL_FAULT,		/* read fault: fill a hole, maybe with the zero page */
	MORSEL_POPULATE,	/* fill a hole with a zeroed frame of ours */
	MORSEL_WRITE,		/* write: the frame must be owned (copy it) */
};

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
	return morsel_leaf_borrowed(m, off, pte) ? LEAF_BORROWED : LEAF_OWNED;
}

/*
 * leaf_kind() == LEAF_OWNED for a present leaf @pte of page @index, given
 * the parent's table of its chunk and the end of the parent's pages
 * (morsel_parent_pte_table()): what a walk over a whole table asks.
 */
static bool leaf_owned_beside(pte_t pte, pgoff_t index, pte_t *theirs,
			      pgoff_t their_end)
{
	return !is_zero_pfn(pte_pfn(pte)) &&
	       !morsel_leaf_in_parent(pte, index, theirs, their_end);
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

/* Make the owned leaf *@ptep, still @pte, writable and dirty again. */
static void mark_leaf_written(struct morsel *m, pte_t *ptep, pte_t pte)
{
	spinlock_t *ptl = morsel_table_lock(ptep);

	spin_lock(ptl);
	/* A freeze sets m->frozen before it takes this lock to wrprotect. */
	if (!READ_ONCE(m->frozen) && morsel_same_frame(ptep_get(ptep), pte))
		set_pte(ptep, pte_mkdirty(pte_mkwrite_novma(ptep_get(ptep))));
	spin_unlock(ptl);
}

/* Clean the owned leaf *@ptep; was it dirty?  Its table's lock is held. */
bool morsel_clean_leaf(pte_t *ptep)
{
	pte_t old = ptep_get(ptep);

	lockdep_assert_held(morsel_table_lock(ptep));
	/* The CPU may set D under us: a cmpxchg keeps that store seen. */
	do {
		if (!morsel_leaf_dirty(old))
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
 * morsel_replace_leaf()'s.  While one runs in a child (leaf_gen odd), its leaf
 * may read none between the zap and the copy: nobody else may fill that
 * "hole", so no other task fills any then; it waits (read_leaf()).  The
 * zap takes this lock after leaf_gen went odd, so the test holds.
 */
static bool filling_blocked(struct morsel *m, pte_t old)
{
	return m->parent && !pte_present(old) &&
	       morsel_leaf_gen_replacing(&m->leaf_gen) &&
	       READ_ONCE(m->repl.task) != current;
}

bool morsel_install_leaf(struct morsel *m, pte_t *ptep, pgoff_t index,
			 pte_t old, struct page *page)
{
	spinlock_t *ptl = morsel_table_lock(ptep);
	bool zero = is_zero_pfn(page_to_pfn(page));
	bool installed = false;
	pte_t *twin;

	/*
	 * The table may be new, and its chunk still linked to the hole table
	 * elsewhere while its maker drops those links (it holds hole_sem
	 * for writing meanwhile, forget_hole_links()): wait for that, so
	 * that nothing put here hides behind a hole link.  No hole link of
	 * the object at all: nothing to wait for (the barrier orders the
	 * table we found before the count, as morsel_link() orders its
	 * count before its look at the table).
	 */
	smp_mb();
	if (atomic_long_read(&m->hole_links)) {
		down_read(&m->hole_sem);
		up_read(&m->hole_sem);
	}
	spin_lock(ptl);
	if (morsel_same_frame(ptep_get(ptep), old) && !filling_blocked(m, old)) {
		if (!zero)
			morsel_name_frame(m, page, index);
		/* morsel_leaf() reads m->frozen under the lock: see freeze */
		set_pte(ptep, zero ? zero_leaf() : morsel_leaf(m, page));
		twin = morsel_twin_of(m, index);
		if (twin)
			morsel_mirror_leaf(ptep, twin, index, ptep_get(ptep));
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
 * moment (morsel_replace_leaf()): a none leaf of a child is read again once no
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
	if (READ_ONCE(m->frozen)) {
		if (intent == MORSEL_WRITE)
			return ERR_PTR(-EPERM);
		/*
		 * Its tables are final (pgtable.c): a hole without a table
		 * of its own stays one.  A fault below a link made while a
		 * freeze ran faults again until the freeze removes the link.
		 */
		if (!ptep || morsel_pte_table_borrowed(m, off,
						       ptep - MORSEL_PTE_INDEX(off)))
			return intent == MORSEL_FAULT ? ZERO_PAGE(0) : NULL;
	}
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
	if (k == LEAF_NONE ? !morsel_install_leaf(m, ptep, index, pte, page) :
	    !morsel_replace_leaf(m, ptep, index, pte, page, vmf)) {
		/* somebody else filled or copied it */
		if (!is_zero_pfn(page_to_pfn(page)))
			morsel_discard_frame(m, page);
		goto again;
	}
	return page;
}

/*
 * The frame at a page, for what the caller means to do with it.  None of
 * these takes a reference: the caller keeps the frame from being freed
 * (m->lock shared, or the object is mapped and the frame reaches only a
 * linked table); morsel_get_frame_to_*() below do take one.
 */

/* The frame holding page @index's data; NULL for a hole.  Allocates nothing. */
struct page *morsel_find_frame(struct morsel *m, pgoff_t index)
{
	return frame_for(m, index, MORSEL_LOOKUP, NULL);
}

/*
 * The frame a read through a mapping maps at page @index: a hole gets a
 * zeroed frame, or the zero page read-only where frames are never written
 * in place (frozen objects, children).  ERR_PTR on failure.
 */
struct page *morsel_fault_frame(struct morsel *m, pgoff_t index)
{
	return frame_for(m, index, MORSEL_FAULT, NULL);
}

/*
 * The frame a store to page @index goes to: owned (a borrowed or zero-page
 * leaf is replaced by a copy first, morsel_replace_leaf()) and dirty.
 * @vmf is the store fault when it reached the leaf through a link of @m
 * (so the process entry is ours to replace), else NULL.  ERR_PTR(-EPERM)
 * for a frozen object.
 */
struct page *morsel_writable_frame(struct morsel *m, pgoff_t index,
				   struct vm_fault *vmf)
{
	return frame_for(m, index, MORSEL_WRITE, vmf);
}

/*
 * The same for syscalls, with a reference the caller drops by put_page().
 * The size is checked under m->lock: a caller that read it before may
 * race with a shrink, and past the size the root may no longer cover
 * @index at all.
 */
static struct page *get_frame(struct morsel *m, pgoff_t index,
			      enum morsel_intent intent)
{
	struct page *page;

	down_read(&m->lock);
	if ((loff_t)index << PAGE_SHIFT >= i_size_read(&m->vfs_inode))
		page = intent == MORSEL_LOOKUP ? NULL : ERR_PTR(-ENXIO);
	else
		page = frame_for(m, index, intent, NULL);
	if (!IS_ERR_OR_NULL(page))
		get_page(page);
	up_read(&m->lock);
	return page;
}

/* morsel_find_frame(), referenced: NULL for a hole or past the size. */
struct page *morsel_get_frame_to_read(struct morsel *m, pgoff_t index)
{
	return get_frame(m, index, MORSEL_LOOKUP);
}

/* morsel_writable_frame(), referenced: ERR_PTR(-ENXIO) past the size. */
struct page *morsel_get_frame_to_write(struct morsel *m, pgoff_t index)
{
	return get_frame(m, index, MORSEL_WRITE);
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
	pte_t *ptep;

	lockdep_assert_held(&m->lock);
	ptep = morsel_pte_table(m, off, true);
	if (IS_ERR_OR_NULL(ptep))
		return ptep ? PTR_ERR(ptep) : -ENXIO;
	ptep += MORSEL_PTE_INDEX(off);
	return morsel_install_leaf(m, ptep, index, __pte(0), page);
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

static bool tail_is_zero(struct page *page, unsigned int from)
{
	void *p = kmap_local_page(page);
	bool zero = !memchr_inv(p + from, 0, PAGE_SIZE - from);

	kunmap_local(p);
	return zero;
}

/*
 * The frame of the page holding byte @at, ready to have [@at, end of the
 * page) zeroed: NULL if that needs nothing (@at starts a page, the page is
 * a hole, or those bytes are zero already: a borrowed page is not copied
 * for nothing), else the owned, writable frame, or ERR_PTR (a child's
 * copy may find no room).  Caller holds m->lock exclusively and nobody
 * maps the object (morsel_set_size()).
 */
struct page *morsel_frame_for_tail(struct morsel *m, loff_t at)
{
	unsigned int from = offset_in_page(at);
	struct page *page;

	lockdep_assert_held_write(&m->lock);
	if (!from)
		return NULL;
	page = frame_for(m, at >> PAGE_SHIFT, MORSEL_LOOKUP, NULL);
	if (!page || tail_is_zero(page, from))
		return NULL;
	return frame_for(m, at >> PAGE_SHIFT, MORSEL_WRITE, NULL);
}

/* Allocate every frame of pages [@first, @end). */
int morsel_populate(struct morsel *m, pgoff_t first, pgoff_t end)
{
	struct page *page;
	int err = 0;

	down_read(&m->lock);
	end = min_t(pgoff_t, end,
		    DIV_ROUND_UP(i_size_read(&m->vfs_inode), PAGE_SIZE));
	/* A frozen object gets no new frames: its holes read as zero. */
	if (READ_ONCE(m->frozen))
		end = first;
	for (; first < end; first++) {
		page = frame_for(m, first, MORSEL_POPULATE, NULL);
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
 * A frame that the tables say we own carries our ->mapping
 * (morsel_name_frame()) until we release it.  Anything else would be a
 * frame of another object taken for ours, which we must not free: warn
 * and leave it (the leak counters then fail the run) rather than free a
 * base's frame or count data_pages down for a frame we never counted.
 */
static bool frame_is_ours(struct morsel *m, struct page *page)
{
	return !WARN_ON_ONCE(READ_ONCE(page->mapping) !=
			     m->vfs_inode.i_mapping);
}

/*
 * Clear the leaves of pages [@first, @end) of one PTE table we own, and of
 * its twin.  Owned frames go on @frames; borrowed ones stay the base's.
 * Returns the number of leaves cleared.
 */
unsigned long morsel_clear_leaves(struct morsel *m, pte_t *table,
				  pgoff_t first, pgoff_t end,
				  struct list_head *frames)
{
	spinlock_t *ptl = morsel_table_lock(table);
	unsigned long cleared = 0;
	pgoff_t their_end;
	pte_t *theirs = morsel_parent_pte_table(m, (loff_t)first << PAGE_SHIFT,
						&their_end);
	pgoff_t i;
	pte_t *twin;
	pte_t pte;

	spin_lock(ptl);
	twin = morsel_twin_of(m, first);
	for (i = first; i < end; i++) {
		pte = ptep_get_and_clear(&init_mm, 0,
					 table + (i & (PTRS_PER_PTE - 1)));
		if (!pte_present(pte))
			continue;
		cleared++;
		if (twin)
			morsel_mirror_leaf(table, twin, i, __pte(0));
		if (leaf_owned_beside(pte, i, theirs, their_end) &&
		    frame_is_ours(m, pte_page(pte)))
			list_add(&pte_page(pte)->lru, frames);
	}
	spin_unlock(ptl);
	return cleared;
}

void morsel_free_frames(struct morsel *m, struct list_head *frames)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, frames, lru) {
		list_del(&page->lru);
		morsel_release_frame(m, page);
	}
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
	ptl = morsel_table_lock(pmdp);
	spin_lock(ptl);
	pmd = pmdp_get(pmdp);
	if (pmd_present(pmd) && (pte_t *)pmd_page_vaddr(pmd) == table) {
		pmd_clear(pmdp);
		done = 1;
	}
	spin_unlock(ptl);
	return done;
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
		if (table && morsel_pte_table_borrowed(m, off, table)) {
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
			cleared += morsel_clear_leaves(m, table, index, chunk_end,
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
		morsel_free_frames(m, &frames);
	}
	morsel_free_empty_tables(m, first, end, cleared);
	return err;
}

int morsel_punch(struct morsel *m, pgoff_t first, pgoff_t end)
{
	int err;

	morsel_replacements_write_lock(m);
	err = punch_leaves(m, first, end);
	morsel_replacements_write_unlock(m);
	return err;
}

/*
 * Is @page our leaf at @off, and writable?  A writable leaf is owned, not
 * frozen, and dirty (not cleaned since its last store).
 */
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
