// SPDX-License-Identifier: GPL-2.0
/*
 * The VMA side of morsels: mmap, placement, page faults, VMA callbacks and
 * eager mapping.
 *
 * A fault decides, from the VMA alone, how the faulting address reaches
 * the object:
 *  - a 1 GiB granule a writable VMA covers whole (start and file offset
 *    aligned) links one of the object's PMD tables from the process PUD
 *    entry (->huge_fault(PUD_ORDER)).  Not for read-only VMAs: RW clear
 *    in the PUD entry stops the CPU, but follow_pfnmap() (KVM) judges by
 *    the leaf alone, so the leaves themselves must be read-only;
 *  - a 2 MiB granule the VMA covers whole links one PTE table from the
 *    process PMD entry (->huge_fault(PMD_ORDER), or ->fault when
 *    ->huge_fault is not called: MADV_NOHUGEPAGE, PR_SET_THP_DISABLE).  A PMD entry must stay
 *    writable (pmd_bad()), so read-only VMAs link the table's read-only
 *    twin, which holds the same frames with RW clear;
 *  - anything else (a granule cut by the VMA's ends) maps the page alone
 *    into the process's own PTE table, with the VMA's protection.
 * Below a link, missing leaves are populated in the object's own tables.
 */
#include <linux/mman.h>
#include <linux/pgtable.h>
#include <linux/sched/mm.h>
#include <linux/uaccess.h>

#include "morsel.h"

static const struct vm_operations_struct morsel_vm_ops;
static const struct vm_operations_struct morsel_plain_vm_ops;

/*
 * A VMA without write notification (morsel_plain_vm_ops): a writable
 * mapping of a plain object, which takes writable long-term pins.  Its
 * stores never come back to the module: its vm_page_prot is writable,
 * and a store to a read-only leaf is made writable by the core mm itself
 * (do_wp_page(), wp_page_reuse()), which marks the frame dirty.
 */
static bool vma_is_plain(struct vm_area_struct *vma)
{
	return vma->vm_ops == &morsel_plain_vm_ops;
}

static bool morsel_vma_is_ours(struct vm_area_struct *vma)
{
	return vma->vm_ops == &morsel_vm_ops || vma_is_plain(vma);
}

static struct morsel *vma_morsel(struct vm_area_struct *vma)
{
	return MORSEL(file_inode(vma->vm_file));
}

/* The object offset that @addr of @vma maps. */
static loff_t vma_offset(struct vm_area_struct *vma, unsigned long addr)
{
	return ((loff_t)vma->vm_pgoff << PAGE_SHIFT) + (addr - vma->vm_start);
}

static bool offset_matches_address(unsigned long addr, unsigned long pgoff,
				   unsigned long span)
{
	return IS_ALIGNED(addr - (pgoff << PAGE_SHIFT), span);
}

/* Does @vma cover the whole @span-aligned granule of @addr, aligned? */
static bool vma_covers_granule(struct vm_area_struct *vma, unsigned long addr,
			       unsigned long span)
{
	unsigned long start = ALIGN_DOWN(addr, span);

	return start >= vma->vm_start && vma->vm_end - start >= span &&
	       IS_ALIGNED(vma_offset(vma, start), span);
}

static vm_fault_t errno_to_fault(int err)
{
	return err == -ENOMEM ? VM_FAULT_OOM : VM_FAULT_SIGBUS;
}

/*
 * A table to link could not be had.  Without room on the mount (ENOSPC)
 * the granule is mapped page by page instead, into the process's own
 * tables: reading data that exists never fails for want of space.
 */
static vm_fault_t no_table_to_link(void *err)
{
	return PTR_ERR(err) == -ENOSPC ? VM_FAULT_FALLBACK :
	       errno_to_fault(PTR_ERR(err));
}

/* Populate the leaf of @off; the fault's address reaches it by a link. */
/*
 * A store through a mapping changes the file: its first store to a page
 * (a hole, a page borrowed from a base or cleaned by a save: the faults
 * that reach us) updates mtime and ctime, as write() does.  Later stores
 * to a page whose leaf is writable take no fault and change no time.
 */
static void note_store(struct vm_fault *vmf)
{
	if (vmf->flags & FAULT_FLAG_WRITE)
		file_update_time(vmf->vma->vm_file);
}

static vm_fault_t fill_linked_leaf(struct vm_fault *vmf, struct morsel *m,
				   loff_t off)
{
	struct page *page;

	lockdep_assert_held_read(&m->lock);
	page = morsel_fault_frame(m, off >> PAGE_SHIFT);
	if (IS_ERR(page))
		return errno_to_fault(PTR_ERR(page));
	return VM_FAULT_NOPAGE;
}

static vm_fault_t link_result(struct morsel *m, int err)
{
	if (err == -EBUSY) {	/* a leaf is being replaced: wait for it */
		down_read(&m->replace_sem);
		up_read(&m->replace_sem);
		return VM_FAULT_NOPAGE;
	}
	if (!err || err == -EAGAIN)	/* -EAGAIN: the access faults again */
		return VM_FAULT_NOPAGE;
	if (err == -EEXIST)
		return VM_FAULT_FALLBACK;
	return errno_to_fault(err);
}

/*
 * Does vmf->pmd point at a PTE table of the object (a link, or below a
 * PUD link)?  If not, the faulting entry is in the process's own table.
 */
static bool fault_in_object_table(struct vm_fault *vmf, struct morsel *m,
				  loff_t off)
{
	pmd_t pmd = pmdp_get_lockless(vmf->pmd);

	if (!pmd_present(pmd) || pmd_leaf(pmd))
		return false;	/* no table below: nothing to look up */
	return pmd_links_table(pmd, morsel_pte_table(m, off, false)) ||
	       pmd_links_table(pmd, xa_load(&m->twins, off >> PMD_SHIFT));
}

/*
 * Below a PUD link, vmf->pmd points into one of the object's PMD tables,
 * which a shrink or a punch may have unlinked and freed while this fault
 * slept on m->lock (the core computed vmf->pmd before calling us).  The
 * process's own PUD entry, which only its owner's page-table code
 * changes, tells whether it still links the table holding vmf->pmd; if
 * not, the fault must not look at vmf->pmd and is retried.  The caller
 * holds m->lock, so a table still linked now stays until it returns.
 */
static bool fault_table_gone(struct vm_fault *vmf)
{
	pud_t pud;

	if (!vmf->pmd || !vmf->pud)
		return false;
	pud = pudp_get(vmf->pud);
	return !pud_present(pud) || pud_leaf(pud) ||
	       pud_pfn(pud) != PHYS_PFN(__pa((unsigned long)vmf->pmd & PAGE_MASK));
}

/* Is vmf->pmd an entry of the object's own PMD table, linked by PUD? */
static bool fault_below_pud_link(struct vm_fault *vmf, struct morsel *m,
				 loff_t off)
{
	pud_t pud = pudp_get(vmf->pud);
	pmd_t *table;

	if (!pud_present(pud) || pud_leaf(pud))
		return false;
	table = morsel_pmd_table(m, off, false);
	return table && pud_pfn(pud) == PHYS_PFN(__pa(table));
}

/* Past the page that holds the last byte?  That page is mapped whole. */
static bool fault_beyond_eof(struct vm_fault *vmf, loff_t off)
{
	return (off & PAGE_MASK) >= i_size_read(file_inode(vmf->vma->vm_file));
}

/*
 * A link gives user access to every leaf below it whatever the VMA says,
 * so a VMA without read access (PROT_NONE, which GUP with FOLL_FORCE,
 * /proc/PID/mem, faults in on its owner's behalf) maps page by page,
 * with its own protection.
 */
static bool vma_may_link(struct vm_area_struct *vma)
{
	return vma->vm_flags & VM_READ;
}

static vm_fault_t fault_pud(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct morsel_mm *mmm = vma->vm_private_data;
	struct morsel *m = vma_morsel(vma);
	loff_t off = vma_offset(vma, vmf->address);
	pmd_t *table;

	lockdep_assert_held_read(&m->lock);
	if (fault_beyond_eof(vmf, off))
		return VM_FAULT_SIGBUS;
	/* A frozen object links PTE tables (the hole table for holes). */
	if (!mmm || !vma_may_link(vma) || !(vma->vm_flags & VM_WRITE) ||
	    READ_ONCE(m->frozen) ||
	    m->level < MORSEL_LEVEL_PMD ||
	    !vma_covers_granule(vma, vmf->address, PUD_SIZE))
		return VM_FAULT_FALLBACK;
	table = morsel_pmd_table(m, off, true);
	if (IS_ERR_OR_NULL(table))
		return table ? no_table_to_link(table) : VM_FAULT_FALLBACK;
	return link_result(m, morsel_link(mmm, m, MORSEL_LINK_PUD, vmf->pud,
					  ALIGN_DOWN(vmf->address, PUD_SIZE),
					  table, ALIGN_DOWN(off, PUD_SIZE)));
}

/* vmf->pmd is empty: fill it in the object, link it, or fall back. */
static vm_fault_t fault_pmd(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct morsel_mm *mmm = vma->vm_private_data;
	struct morsel *m = vma_morsel(vma);
	loff_t off = vma_offset(vma, vmf->address);
	pte_t *table;
	bool hole;
	int err;

	lockdep_assert_held_read(&m->lock);
	if (fault_beyond_eof(vmf, off))
		return VM_FAULT_SIGBUS;
	if (fault_below_pud_link(vmf, m, off))
		return fill_linked_leaf(vmf, m, off);
	if (!mmm || !vma_may_link(vma) ||
	    !vma_covers_granule(vma, vmf->address, PMD_SIZE))
		return VM_FAULT_FALLBACK;
	/* A frozen object's leaves are read-only in every VMA. */
	if ((vma->vm_flags & VM_WRITE) && !READ_ONCE(m->frozen))
		table = morsel_pte_table(m, off, true);
	else
		table = morsel_ro_pte_table(m, off);
	if (IS_ERR_OR_NULL(table))
		return table ? no_table_to_link(table) : VM_FAULT_FALLBACK;
	/*
	 * A hole link is made under hole_sem: see forget_hole_links().  It
	 * is dropped before link_result() may wait on replace_sem: a
	 * replacement holds that for writing while it takes hole_sem
	 * (morsel_install_leaf()), and a writer queued on hole_sem between
	 * the two would close the circle (session-7 review, a hang under
	 * GUP and resize traffic on four CPUs).
	 */
	hole = table == morsel_hole_table();
	if (hole)
		down_read(&m->hole_sem);
	err = morsel_link(mmm, m, MORSEL_LINK_PMD, vmf->pmd,
			  ALIGN_DOWN(vmf->address, PMD_SIZE), table,
			  ALIGN_DOWN(off, PMD_SIZE));
	if (hole)
		up_read(&m->hole_sem);
	return link_result(m, err);
}

/*
 * The fault entry points (->huge_fault, ->fault, ->page_mkwrite and
 * ->pfn_mkwrite) hold m->lock shared throughout: the size, the root and
 * every table they look at stay as they are (a resize, a freeze or a
 * punch that frees tables holds it exclusively), and a freeze is never
 * halfway under them.
 */
static vm_fault_t morsel_huge_fault(struct vm_fault *vmf, unsigned int order)
{
	struct morsel *m = vma_morsel(vmf->vma);
	vm_fault_t ret = VM_FAULT_FALLBACK;

	down_read(&m->lock);
	if (order == PUD_ORDER)
		ret = fault_pud(vmf);
	else if (order == PMD_ORDER && fault_table_gone(vmf))
		ret = VM_FAULT_NOPAGE;
	else if (order == PMD_ORDER && pmd_none(pmdp_get_lockless(vmf->pmd)))
		ret = fault_pmd(vmf);
	up_read(&m->lock);
	if (ret == VM_FAULT_NOPAGE)
		note_store(vmf);
	return ret;
}

/*
 * Read m->leaf_gen, even: while odd a replacement runs
 * (morsel_replace_leaf()), and we sleep on replace_sem until it is over.
 */
static int morsel_leaf_gen_read(struct morsel *m)
{
	int gen;

	while ((gen = atomic_read_acquire(&m->leaf_gen)) & 1) {
		down_read(&m->replace_sem);
		up_read(&m->replace_sem);
	}
	return gen;
}

struct zero_entry {
	struct mm_struct *mm;
	pgprot_t prot;
};

static int set_zero_entry(pte_t *ptep, unsigned long addr, void *data)
{
	struct zero_entry *z = data;

	if (pte_none(ptep_get(ptep)))
		set_pte_at(z->mm, addr, ptep,
			   pte_mkspecial(pfn_pte(my_zero_pfn(addr), z->prot)));
	return 0;
}

/*
 * Map the zero page read-only at @addr, a special entry as
 * vmf_insert_pfn_prot() would make: the core inserts the zero page into a
 * VM_MIXEDMAP VMA only if it can never be writable (vm_insert_page()
 * refuses it otherwise, vmf_insert_pfn_prot() BUGs on a real page there),
 * and a store here must come back through ->pfn_mkwrite to get a frame.
 * Under the PTE lock (apply_to_page_range() takes it); an entry some other
 * fault made meanwhile stays.
 */
static vm_fault_t map_zero_page(struct vm_area_struct *vma, unsigned long addr)
{
	struct zero_entry z = {
		.mm = vma->vm_mm,
		.prot = vm_get_page_prot(vma->vm_flags & ~VM_WRITE),
	};
	int err;

	err = apply_to_page_range(vma->vm_mm, addr & PAGE_MASK, PAGE_SIZE,
				  set_zero_entry, &z);
	return err ? errno_to_fault(err) : VM_FAULT_NOPAGE;
}

static int make_entry_writable(pte_t *ptep, unsigned long addr, void *data)
{
	struct vm_area_struct *vma = data;
	pte_t pte = ptep_get(ptep);

	/* Still the entry we inserted (the caller holds m->lock shared). */
	if (pte_present(pte) && !pte_write(pte))
		set_pte_at(vma->vm_mm, addr, ptep,
			   pte_mkdirty(pte_mkwrite_novma(pte)));
	return 0;
}

/*
 * Map a frame: vm_insert_page() takes the reference, rmap and rss that
 * the core's zap gives back.  It maps with vm_page_prot, which write
 * notification keeps read-only in a writable VMA; a frame whose leaf is
 * writable (ours, dirty, not frozen) is then made writable here at once,
 * so that a mapping populated by MORSEL_IOC_MAP stores without a fault.
 * Any other first store comes back through ->page_mkwrite, which makes a
 * frame we own writable and copies one that is not ours to write.  (A
 * VMA without write notification maps writable at once: fault_one_page()
 * counted the frame as written.)  A clean that runs later waits for
 * m->lock, which the caller holds, before its unmap removes the entry.
 */
static vm_fault_t map_frame(struct vm_area_struct *vma, struct morsel *m,
			    unsigned long addr, loff_t off, struct page *page)
{
	int err = vm_insert_page(vma, addr & PAGE_MASK, page);

	if (err == -EBUSY)	/* another fault mapped it */
		return VM_FAULT_NOPAGE;
	if (err)
		return errno_to_fault(err);
	if ((vma->vm_flags & VM_WRITE) && morsel_frame_writable(m, off, page))
		apply_to_existing_page_range(vma->vm_mm, addr & PAGE_MASK,
					     PAGE_SIZE, make_entry_writable, vma);
	return VM_FAULT_NOPAGE;
}

/* Map one page into the process's own PTE table. */
static vm_fault_t fault_one_page(struct vm_fault *vmf, struct morsel *m,
				 loff_t off)
{
	struct vm_area_struct *vma = vmf->vma;
	struct page *page;
	vm_fault_t ret;
	int gen;

	/* Shared (the caller): no punch between lookup and insert. */
	lockdep_assert_held_read(&m->lock);
	gen = morsel_leaf_gen_read(m);
	/* A frozen hole stays one: map the zero page, record nothing. */
	if (READ_ONCE(m->frozen))
		page = morsel_find_frame(m, off >> PAGE_SHIFT) ?: ZERO_PAGE(0);
	/*
	 * A writable VMA without write notification maps the page writable
	 * whatever the access (vm_page_prot), and no later store comes back
	 * to us: count the page as written now, so a scan never misses it.
	 */
	else if (vma_is_plain(vma) && (vma->vm_flags & VM_WRITE))
		page = morsel_writable_frame(m, off >> PAGE_SHIFT, NULL);
	else
		page = morsel_fault_frame(m, off >> PAGE_SHIFT);
	if (IS_ERR(page)) {
		ret = errno_to_fault(PTR_ERR(page));
	} else {
		if (is_zero_pfn(page_to_pfn(page)))
			ret = map_zero_page(vma, vmf->address);
		else
			ret = map_frame(vma, m, vmf->address, off, page);
		/*
		 * A copy-on-write that replaced the leaf after our lookup may
		 * have run its unmap_mapping_range() before our insert: then
		 * nothing would remove the stale entry.  Once replacements
		 * that ran meanwhile are over, the leaf tells whether one of
		 * them was ours; removing the entry only then (not whenever
		 * any leaf of the object was replaced) keeps a stream of
		 * copies elsewhere from making this fault retry forever.
		 */
		if (morsel_leaf_gen_moved(&m->leaf_gen, gen)) {
			morsel_leaf_gen_read(m);
			if (!morsel_leaf_maps(m, off >> PAGE_SHIFT, page))
				zap_page_range_single(vma,
						      vmf->address & PAGE_MASK,
						      PAGE_SIZE, NULL);
		}
	}
	return ret;
}

/*
 * A store to a read-only entry of a writable shared mapping: a frame
 * borrowed from the base (copy it now), a frame cleaned by a save (make it
 * dirty again), a frame we own mapped page by page (mapped read-only, see
 * map_frame()), or a frozen object (refuse).  ->page_mkwrite for entries
 * of frames, ->pfn_mkwrite for the zero page (a special entry).
 */
static vm_fault_t morsel_mkwrite(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct morsel *m = vma_morsel(vma);
	loff_t off = vma_offset(vma, vmf->address);
	struct page *page;
	vm_fault_t ret;
	bool linked;

	/*
	 * Shared for the whole store: a freeze (exclusive) is then either
	 * over, and we refuse, or not begun, and cannot begin before our
	 * copy is in place.  Without it, a copy (or a new table) made for a
	 * store that saw the object unfrozen could land in a frozen object
	 * that has children, whose ownership test would then take their
	 * base's tables for their own (session-6 review).  Waiting for the
	 * lock also waits out a freeze still removing writable
	 * translations, so no store lands once one has seen the freeze.
	 */
	down_read(&m->lock);
	if (fault_table_gone(vmf)) {
		ret = VM_FAULT_NOPAGE;
		goto out;
	}
	/*
	 * The size under the lock: a shrink that held it while we waited
	 * may have cut the page off (session-12 review: a store that
	 * checked before the lock reached past the new size, where a
	 * smaller root's slot belongs to another chunk).
	 */
	if (fault_beyond_eof(vmf, off)) {
		ret = VM_FAULT_SIGBUS;
		goto out;
	}
	if (READ_ONCE(m->frozen)) {
		ret = VM_FAULT_SIGSEGV;
		goto out;
	}
	linked = fault_in_object_table(vmf, m, off);
	page = morsel_writable_frame(m, off >> PAGE_SHIFT, linked ? vmf : NULL);
	if (IS_ERR(page)) {
		ret = PTR_ERR(page) == -EPERM ? VM_FAULT_SIGSEGV :
		      errno_to_fault(PTR_ERR(page));
	} else if (linked) {
		/*
		 * The new leaf is in place and the link stays: a copy clears
		 * the old leaf itself and only flushes it (link.c,
		 * replacing_below()).  A link that an unlink racing with us
		 * removed (MADV_DONTNEED under mmap_lock shared) is made
		 * again by the next access's fault, as any other.
		 */
		ret = VM_FAULT_NOPAGE;
	} else if (pte_pfn(vmf->orig_pte) == page_to_pfn(page)) {
		/*
		 * The process's own PTE maps the frame we own: let the core
		 * mm make it writable (it locks the frame and checks that
		 * ->mapping is still set: not punched meanwhile).
		 */
		ret = 0;
	} else {
		/*
		 * It still maps the frame we copied from (a racing copy has
		 * not zapped it yet): it must never become writable.  Zap
		 * it; the access faults again and maps ours.
		 */
		zap_page_range_single(vma, vmf->address & PAGE_MASK, PAGE_SIZE,
				      NULL);
		ret = VM_FAULT_NOPAGE;
	}
out:
	up_read(&m->lock);
	if (!(ret & VM_FAULT_ERROR))
		note_store(vmf);
	return ret;
}

/*
 * Fault-around maps nothing: a fault that misses goes on to ->fault.
 * Having ->map_pages is what lets the core mm call ->fault and
 * ->page_mkwrite/->pfn_mkwrite under the per-VMA lock rather than drop
 * it and retry the whole fault under mmap_lock (vmf_can_call_fault() in mm/memory.c: the
 * vm_ops that have ->map_pages are those audited not to need mmap_lock).
 * Ours do not: they hold m->lock, write process entries under the core's
 * own locks (pmd_lock(), pud_lock(), the PTE lock) and keep their link
 * records under mmm->lock, and ->huge_fault, which the core always calls
 * under the VMA lock, runs the same paths.  The retry doubled the cost of
 * a first store to a borrowed page.  Called under rcu_read_lock().
 */
static vm_fault_t morsel_map_pages(struct vm_fault *vmf, pgoff_t start,
				   pgoff_t end)
{
	return 0;
}

static vm_fault_t fault_locked(struct vm_fault *vmf, struct morsel *m)
{
	loff_t off = vma_offset(vmf->vma, vmf->address);
	pmd_t pmd = pmdp_get_lockless(vmf->pmd);
	vm_fault_t ret;

	if (fault_beyond_eof(vmf, off))
		return VM_FAULT_SIGBUS;
	if (pmd_none(pmd)) {
		ret = fault_pmd(vmf);
		if (ret != VM_FAULT_FALLBACK)
			return ret;
		/* Somebody filled the entry meanwhile: look again. */
		if (!pmd_none(pmdp_get_lockless(vmf->pmd)))
			return VM_FAULT_NOPAGE;
	} else if (fault_in_object_table(vmf, m, off)) {
		return fill_linked_leaf(vmf, m, off);
	} else if (WARN_ON_ONCE(pmd_links_table(pmd, morsel_hole_table()))) {
		return VM_FAULT_SIGBUS;	/* every leaf is present there */
	}
	return fault_one_page(vmf, m, off);
}

static vm_fault_t morsel_fault(struct vm_fault *vmf)
{
	struct morsel *m = vma_morsel(vmf->vma);
	vm_fault_t ret;

	down_read(&m->lock);	/* see morsel_huge_fault() */
	ret = fault_table_gone(vmf) ? VM_FAULT_NOPAGE : fault_locked(vmf, m);
	up_read(&m->lock);
	if (!(ret & VM_FAULT_ERROR))
		note_store(vmf);
	return ret;
}

/*
 * A new VMA of @m.  The full barrier orders the count before any access
 * through the VMA can make a translation; pairs with morsel_replace_leaf()
 * (morsel_sole_translation()).
 */
static void count_mapper(struct morsel *m)
{
	atomic_inc(&m->mappers);
	smp_mb__after_atomic();	/* the count, then translations */
	atomic_long_inc(&morsel_totals.mappers);
}

static void morsel_vma_open(struct vm_area_struct *vma)
{
	struct morsel_mm *mmm = morsel_mm_get(vma->vm_mm);
	struct morsel *m = vma_morsel(vma);

	/*
	 * A split half or a fork child.  Without a link record (ENOMEM, or
	 * EINTR: registering a notifier takes mm_take_all_locks(), which a
	 * pending signal interrupts) the VMA never links: it maps page by
	 * page.
	 */
	vma->vm_private_data = IS_ERR(mmm) ? NULL : mmm;
	/*
	 * fork() copies the page tables of a VM_MIXEDMAP VMA unless it has
	 * VM_WIPEONFORK; copied leaf entries would outlive every link rule.
	 * MADV_KEEPONFORK can clear the flag, so set it again here: dup_mmap()
	 * calls ->open() before it decides whether to copy.
	 */
	if (!(vma->vm_flags & VM_WIPEONFORK))
		vm_flags_set(vma, VM_WIPEONFORK);
	/* The VMA we copy holds a count: no freeze can pass meanwhile. */
	if (vma_is_plain(vma))
		atomic_inc(&m->plain_mappers);
	count_mapper(m);
}

static void morsel_vma_close(struct vm_area_struct *vma)
{
	struct morsel *m = vma_morsel(vma);

	if (vma->vm_private_data)
		morsel_mm_put(vma->vm_private_data);
	if (vma_is_plain(vma))
		atomic_dec(&m->plain_mappers);
	atomic_dec(&m->mappers);
	atomic_long_dec(&morsel_totals.mappers);
}

/* A link never spans two VMAs: drop the one a split would cut. */
static int morsel_vma_may_split(struct vm_area_struct *vma, unsigned long addr)
{
	vma_start_write(vma);
	if (vma->vm_private_data)
		morsel_unlink_straddling(vma->vm_private_data, addr);
	return 0;
}

static int morsel_vma_mremap(struct vm_area_struct *vma)
{
	/* The links went with the old range; refuse an unlinkable place. */
	if (!offset_matches_address(vma->vm_start, vma->vm_pgoff, PMD_SIZE))
		return -EINVAL;
	return 0;
}

/*
 * change_protection() would rewrite leaf entries every mapper shares, and
 * cannot be told to stop at a link.  Remove the links first; the VMA is
 * write-locked so no fault can link again before the change is done, and
 * later faults link with the new protection.
 */
static int morsel_vma_mprotect(struct vm_area_struct *vma, unsigned long start,
			       unsigned long end, unsigned long newflags)
{
	if ((newflags & VM_WRITE) && READ_ONCE(vma_morsel(vma)->frozen))
		return -EACCES;
	vma_start_write(vma);
	/*
	 * The zap runs the notifiers: ours removes the links, and secondary
	 * MMUs (KVM) drop what they took with the old protection.  It also
	 * zaps pages mapped one by one.
	 */
	zap_page_range_single(vma, start, end - start, NULL);
	return 0;
}

/*
 * ptrace and /proc/PID/mem when GUP fails (a store through a mapping of
 * an object frozen since it was made): copy directly, with the same rules.
 */
static int morsel_vma_access(struct vm_area_struct *vma, unsigned long addr,
			     void *buf, int len, int write)
{
	if (write && !(vma->vm_flags & VM_WRITE))
		return -EACCES;
	/* A mapping made before the freeze keeps VM_WRITE. */
	if (write && READ_ONCE(vma_morsel(vma)->frozen))
		return -EPERM;
	len = min_t(unsigned long, len, vma->vm_end - addr);
	return morsel_access_kernel(vma_morsel(vma), vma_offset(vma, addr),
				    buf, len, write);
}

static const struct vm_operations_struct morsel_vm_ops = {
	.open = morsel_vma_open,
	.close = morsel_vma_close,
	.may_split = morsel_vma_may_split,
	.mremap = morsel_vma_mremap,
	.mprotect = morsel_vma_mprotect,
	.fault = morsel_fault,
	.huge_fault = morsel_huge_fault,
	.map_pages = morsel_map_pages,
	.page_mkwrite = morsel_mkwrite,
	.pfn_mkwrite = morsel_mkwrite,
	.access = morsel_vma_access,
};

/*
 * The same without ->page_mkwrite and ->pfn_mkwrite, for writable mappings
 * of a plain object (neither frozen nor a child): the core mm then needs
 * no write notification (vma_needs_dirty_tracking() is false: no mkwrite
 * hook, no writeback), so writable FOLL_LONGTERM pins (io_uring fixed
 * buffers, VFIO, RDMA) are allowed.  Nothing here needs the hooks: a
 * plain object has no borrowed frame to copy and never a zero-page leaf
 * (a hole read through a mapping gets a frame, hole_reads_zero_page()),
 * a store to a leaf a scan cleaned is made writable and dirty by
 * do_wp_page() (PG_dirty, which a scan counts), pages mapped one by one
 * are counted written when mapped (fault_one_page()), and a freeze
 * refuses while such a VMA exists (morsel_freeze()).
 */
static const struct vm_operations_struct morsel_plain_vm_ops = {
	.open = morsel_vma_open,
	.close = morsel_vma_close,
	.may_split = morsel_vma_may_split,
	.mremap = morsel_vma_mremap,
	.mprotect = morsel_vma_mprotect,
	.fault = morsel_fault,
	.huge_fault = morsel_huge_fault,
	.map_pages = morsel_map_pages,
	.access = morsel_vma_access,
};

int morsel_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct morsel *m = MORSEL(file_inode(file));
	struct morsel_mm *mmm;
	bool frozen, plain;

	/*
	 * Private (copy-on-write) mappings are not supported.  VM_MAYSHARE:
	 * do_mmap() clears VM_SHARED for a file not open for writing.
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	/* Leaf entries are shared and never executable. */
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	if (!offset_matches_address(vma->vm_start, vma->vm_pgoff, PMD_SIZE))
		return -EINVAL;
	/* Without a link record (see morsel_vma_open) map page by page. */
	mmm = morsel_mm_get(vma->vm_mm);
	if (IS_ERR(mmm))
		mmm = NULL;
	/*
	 * Shared m->lock: a freeze (exclusive) is over or not begun, and a
	 * resize checking mappers sees this one.  Only the decision is made
	 * under it: vm_flags_mod() write-locks the VMA, and faults take
	 * m->lock inside the VMA lock (the new VMA cannot be locked by
	 * anyone yet, but lockdep would learn the inverse order).
	 */
	down_read(&m->lock);
	frozen = m->frozen;
	/* A frozen object: no writable mapping, now or by mprotect. */
	if (frozen && (vma->vm_flags & VM_WRITE)) {
		up_read(&m->lock);
		if (mmm)
			morsel_mm_put(mmm);
		return -EPERM;
	}
	/*
	 * A writable mapping of a plain object goes without write
	 * notification (morsel_plain_vm_ops), counted before a freeze can
	 * look; one made read-only keeps it, so a later mprotect(PROT_WRITE)
	 * cannot take a freeze by surprise (->mprotect refuses it once the
	 * object is frozen, also if that happens right after this unlock).
	 */
	plain = !frozen && !m->parent && (vma->vm_flags & VM_WRITE);
	if (plain)
		atomic_inc(&m->plain_mappers);
	count_mapper(m);
	up_read(&m->lock);
	/*
	 * VM_MIXEDMAP, not VM_PFNMAP: GUP works on our frames (docs/gup.md),
	 * and KSM, khugepaged, NUMA balancing, mlock and userfaultfd still
	 * keep out (VM_SPECIAL).
	 */
	vm_flags_mod(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP |
		     VM_WIPEONFORK | VM_HUGEPAGE,
		     VM_MAYEXEC | (frozen ? VM_MAYWRITE : 0));
	vma->vm_ops = plain ? &morsel_plain_vm_ops : &morsel_vm_ops;
	vma->vm_private_data = mmm;
	return 0;
}

/*
 * Place mappings so that address and file offset agree modulo the link
 * granule: 1 GiB for mappings of 1 GiB or more, 2 MiB otherwise.
 */
unsigned long morsel_get_unmapped_area(struct file *file, unsigned long addr,
				       unsigned long len, unsigned long pgoff,
				       unsigned long flags)
{
	unsigned long off = pgoff << PAGE_SHIFT;
	unsigned long align, ret;

	if (len > TASK_SIZE)
		return -ENOMEM;
	if (flags & MAP_FIXED)
		return offset_matches_address(addr, pgoff, PMD_SIZE) ?
			addr : -EINVAL;
	if (addr && offset_matches_address(addr, pgoff, PMD_SIZE)) {
		ret = mm_get_unmapped_area(current->mm, NULL, addr, len, 0,
					   flags);
		if (ret == addr)
			return ret;
	}
	align = len >= PUD_SIZE ? PUD_SIZE : PMD_SIZE;
	for (;;) {
		if (len + align < len)
			return -ENOMEM;
		ret = mm_get_unmapped_area(current->mm, NULL, 0, len + align,
					   0, flags);
		if (!IS_ERR_VALUE(ret))
			return ret + ((off - ret) & (align - 1));
		if (align == PMD_SIZE)
			return ret;
		align = PMD_SIZE;
	}
}

/* Does @addr start a granule this VMA links rather than maps by page? */
static bool address_links(struct vm_area_struct *vma, struct morsel *m,
			  unsigned long addr)
{
	if (m->level >= MORSEL_LEVEL_PMD &&
	    vma_covers_granule(vma, addr, PUD_SIZE))
		return true;
	return vma_covers_granule(vma, addr, PMD_SIZE);
}

static int fault_in(struct vm_area_struct *vma, unsigned long addr)
{
	vm_fault_t ret = handle_mm_fault(vma, addr, 0, NULL);

	return ret & VM_FAULT_ERROR ? vm_fault_to_errno(ret, 0) ?: -EFAULT : 0;
}

/*
 * The first address after @addr, a hole, whose page holds data, or @limit
 * if none below it does: absent tables are skipped whole, and the search
 * stops at @limit.
 */
static unsigned long next_data_below(struct vm_area_struct *vma,
				     struct morsel *m, unsigned long addr,
				     unsigned long limit)
{
	loff_t off = vma_offset(vma, addr) + PAGE_SIZE, data;

	addr += PAGE_SIZE;
	if (addr >= limit)
		return limit;
	down_read(&m->lock);
	data = morsel_next_data(m, off, off + (limit - addr));
	up_read(&m->lock);
	if (data < 0 || data - off >= limit - addr)
		return limit;
	return addr + (data - off);
}

/* Link or map [@addr, @end) of one VMA; mmap_lock held for reading. */
static int map_vma_range(struct vm_area_struct *vma, unsigned long addr,
			 unsigned long end, struct morsel_map *arg)
{
	struct morsel_mm *mmm = vma->vm_private_data;
	struct morsel *m = vma_morsel(vma);
	loff_t size = i_size_read(&m->vfs_inode);
	loff_t off = vma_offset(vma, addr);
	unsigned long next, no_link = addr;	/* linking not tried below */
	struct page *page;
	int err;

	mmap_assert_locked(vma->vm_mm);
	if (off >= size)
		return 0;
	end = min_t(unsigned long, end, addr + PAGE_ALIGN(size - off));
	if (arg->flags & MORSEL_MAP_POPULATE) {
		err = morsel_populate(m, off >> PAGE_SHIFT,
				      vma_offset(vma, end) >> PAGE_SHIFT);
		if (err)
			return err;
	}
	while (addr < end) {
		if (fatal_signal_pending(current))
			return -EINTR;
		if (morsel_linked_at(mmm, addr, &next)) {
			addr = next;
			continue;
		}
		if (addr >= no_link && address_links(vma, m, addr)) {
			if (!fault_in(vma, addr) &&
			    morsel_linked_at(mmm, addr, &next)) {
				arg->linked++;
				addr = next;
				continue;
			}
			/*
			 * Not linked: no room for a table or a read-only twin
			 * (the fault then mapped the page alone, and a hole
			 * there needed a frame: SIGBUS on a full mount).  The
			 * rest of the range is mapped page by page below, as
			 * faults would map it, without a fault per granule or
			 * per hole; faults link it later, when there is room.
			 */
			no_link = end;
		}
		/* Map populated pages one by one; holes stay holes. */
		page = morsel_get_frame_to_read(m, vma_offset(vma, addr) >>
						   PAGE_SHIFT);
		if (page) {
			put_page(page);
			err = fault_in(vma, addr);
			if (err)
				return err;
			/* Where its table exists the fault links after all. */
			if (morsel_linked_at(mmm, addr, &next)) {
				arg->linked++;
				addr = next;
				continue;
			}
			arg->pages++;
		} else {
			/*
			 * A hole: on to the next page with data, within the
			 * rest of the range if linking failed there, else
			 * within this 2 MiB (the next may link).
			 */
			addr = next_data_below(vma, m, addr, addr < no_link ?
					       min(no_link, end) :
					       min(end, ALIGN_DOWN(addr, PMD_SIZE) +
							PMD_SIZE));
			continue;
		}
		addr += PAGE_SIZE;
		cond_resched();
	}
	return 0;
}

long morsel_ioctl_map(struct file *file, struct morsel_map *uarg,
		      const struct morsel_uarg *ua)
{
	struct inode *inode = file_inode(file);
	struct mm_struct *mm = current->mm;
	struct morsel_map arg = *uarg;
	struct vm_area_struct *vma;
	unsigned long addr, end;
	int err = 0;

	if (arg.flags & ~MORSEL_MAP_FLAGS)
		return -EINVAL;
	if (!arg.length || !PAGE_ALIGNED(arg.addr) ||
	    !PAGE_ALIGNED(arg.length) || arg.addr + arg.length < arg.addr ||
	    arg.addr + arg.length > TASK_SIZE)
		return -EINVAL;
	/* It makes the contents reachable, as read() would. */
	err = morsel_check_rights(file, FMODE_READ);
	if (err)
		return err;
	arg.linked = 0;
	arg.pages = 0;
	if (mmap_read_lock_killable(mm))
		return -EINTR;
	for (addr = arg.addr, end = arg.addr + arg.length; addr < end;
	     addr = vma->vm_end) {
		vma = vma_lookup(mm, addr);
		if (!vma || !morsel_vma_is_ours(vma) ||
		    file_inode(vma->vm_file) != inode) {
			err = -EINVAL;
			break;
		}
		if (!(vma->vm_flags & VM_READ)) {
			err = -EACCES;
			break;
		}
		if (!vma->vm_private_data) {
			err = -ENOMEM;
			break;
		}
		err = map_vma_range(vma, addr, min(end, vma->vm_end), &arg);
		if (err)
			break;
	}
	mmap_read_unlock(mm);
	return morsel_return_arg(ua, &arg, sizeof(arg)) ?: err;
}
