// SPDX-License-Identifier: GPL-2.0
/*
 * Links between morsel tables and process page tables.
 *
 * A link is one entry of a process page table that points at a table of a
 * morsel: a PMD entry pointing at one of its PTE tables (2 MiB), or a PUD
 * entry pointing at one of its PMD tables (1 GiB).  This file owns making
 * and removing links, the per-address-space record of them, and the TLB
 * flushes that removing them needs.
 *
 * The core mm must never zap or free a morsel table as if it were its own.
 * Every core-mm path that tears down page tables (munmap, mremap, exit,
 * unmap_mapping_range) first calls mmu_notifier_invalidate_range_start()
 * or ->release(), and the notifier here removes the links in that range
 * before the walk starts.  mprotect and VMA splits are covered by VMA
 * callbacks in fault.c (zap_page_range_single(), morsel_unlink_straddling()).
 */
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <asm/tlbflush.h>

#include "morsel.h"

/*
 * Links of one address space.  One per mm that maps any morsel, found with
 * mmu_notifier_get_locked(); each morsel VMA holds a reference.
 */
struct morsel_mm {
	/*
	 * @lock protects @links, @invalidating and @dead, and is held across
	 * writing or clearing a link entry (outside the entry's own lock), so
	 * a record exists exactly while its entry links the table.
	 */
	spinlock_t lock;
	struct rb_root links;		/* struct morsel_link, by @start */
	int invalidating;		/* open invalidate_range_start()s */
	bool dead;			/* ->release() ran: no new links */
	/*
	 * Not first: container_of() in morsel_mm_get() then has work to do
	 * after mmu_notifier_get_locked(), so that call is no tail call and
	 * its failures keep morsel_mm_get()'s frame (make failnth-sites).
	 */
	struct mmu_notifier mn;
};

struct morsel_link {
	struct rb_node node;
	struct list_head gone;		/* on a private list while removed */
	unsigned long start, end;	/* virtual range the entry covers */
	unsigned long table_pfn;	/* the morsel table it points at */
	enum morsel_link_level level;
	struct morsel *m;
};

static struct kmem_cache *morsel_link_cache;

static void flush_this_cpu(void *unused)
{
	__flush_tlb_all();
}

/*
 * Flush every TLB and paging-structure cache on every CPU.  Linked tables
 * are shared by address spaces the kernel does not know are related, so
 * the kernel's per-mm flush tracking cannot help; a full flush also drops
 * stale entries of address spaces a CPU is not running right now (PCID).
 */
void morsel_flush_tlb(void)
{
	on_each_cpu(flush_this_cpu, NULL, 1);
}

struct mm_flush {
	struct mm_struct *mm;
	unsigned long addr;		/* one page, or 0: everything */
};

/*
 * A CPU that holds @f->mm only lazily (an idle or kernel thread borrowed
 * it) leaves it, as the core mm's flush_tlb_func() does: it stops walking
 * the mm's tables, drops out of mm_cpumask() so that later flushes do not
 * interrupt it again, and flushes when it runs the mm next (the
 * generation moved).  A CPU running it flushes the page, or everything.
 */
static void flush_mm_this_cpu(void *arg)
{
	const struct mm_flush *f = arg;

	if (!current->mm && current->active_mm == f->mm)
		leave_mm();
	else if (f->addr)
		asm volatile("invlpg (%0)" : : "r" (f->addr) : "memory");
	else
		__flush_tlb_all();
}

/*
 * Flush what CPUs may still cache of @mm's translations after its paging
 * structures changed (a link removed): the CPUs in mm_cpumask(@mm) that
 * run it get a full flush, those that hold it lazily leave it (see
 * flush_mm_this_cpu()); bumping the mm's TLB generation first makes a CPU
 * that ran it earlier, and may keep entries under its PCID, flush when it
 * switches back (switch_mm_irqs_off() compares the generation).  This is
 * the protocol of flush_tlb_mm_range(), which modules cannot call; the
 * bump is inc_mm_tlb_gen() (hidden from modules by #ifndef MODULE), and
 * its full barrier orders our table writes before the read of the mask,
 * as that function's comment requires.
 */
static void flush_mm_tlb(struct mm_struct *mm)
{
	struct mm_flush f = { .mm = mm };

	atomic64_inc_return(&mm->context.tlb_gen);
	on_each_cpu_mask(mm_cpumask(mm), flush_mm_this_cpu, &f, true);
}

/*
 * The core's per-CPU lazy-TLB flag: exported to modules
 * (EXPORT_PER_CPU_SYMBOL(cpu_tlbstate_shared) in arch/x86/mm/tlb.c) but
 * declared, with its struct, only under #ifndef MODULE in
 * asm/tlbflush.h.  In 6.12 the struct is one bool (see
 * docs/kernel-facts.md, "Skipping lazy CPUs").
 */
struct morsel_tlb_state_shared {
	bool is_lazy;
};

DECLARE_PER_CPU_SHARED_ALIGNED(struct morsel_tlb_state_shared,
			       cpu_tlbstate_shared);

/*
 * Does @cpu need the IPI of a one-page flush?  Not if it holds its mm
 * lazily (it runs no user code): returning to the mm it flushes, since
 * the generation moved (switch_mm_irqs_off() writes is_lazy false, then
 * a full barrier, then reads the generation; we bump the generation, a
 * full barrier, then read is_lazy: one of the two sees the other).  The
 * core's should_flush_tlb() skips lazy CPUs for every flush that frees
 * no page tables; a changed leaf frees none.  It saves a copy-on-write
 * the IPI to an idle CPU, which must wake and answer before the store
 * goes on.
 */
static bool cpu_uses_mm_now(int cpu, void *unused)
{
	smp_rmb();	/* as should_flush_tlb() */
	return !per_cpu(cpu_tlbstate_shared.is_lazy, cpu);
}

/*
 * Flush what CPUs may cache of one page @addr of @mm whose leaf changed
 * (the paging structures above it did not).  As flush_mm_tlb(), with
 * INVLPG instead of a full flush, and lazy CPUs left alone
 * (cpu_uses_mm_now()): a CPU in the mask that runs another address space
 * invalidates an address of that one, which is harmless, and flushes
 * ours when it switches back (the generation moved).  With page-table
 * isolation the user half has its own PCID, which INVLPG in the kernel
 * does not reach, and a Xen PV guest cannot use INVLPG: there the full
 * flush it is.
 */
void morsel_flush_mm_page(struct mm_struct *mm, unsigned long addr)
{
	struct mm_flush f = { .mm = mm, .addr = addr };

	if (boot_cpu_has(X86_FEATURE_PTI) ||
	    cpu_feature_enabled(X86_FEATURE_XENPV)) {
		flush_mm_tlb(mm);
		return;
	}
	atomic64_inc_return(&mm->context.tlb_gen);	/* full barrier */
	on_each_cpu_cond_mask(cpu_uses_mm_now, flush_mm_this_cpu, &f, true,
			      mm_cpumask(mm));
}

/*
 * The head of mm->notifier_subscriptions, a struct private to
 * mm/mmu_notifier.c (struct mmu_notifier_subscriptions): in 6.12 its
 * first members are the list of notifiers and has_itree, which goes true
 * for good when the first interval notifier (HMM mirrors, RDMA ODP, GPU
 * userptr) registers, under mm_take_all_locks(), so never under a fault.
 */
struct mn_subscriptions_head {
	struct hlist_head list;
	bool has_itree;
};

/*
 * Is ours the only mmu notifier of @mmm's mm, and no interval notifier
 * either?  Then no secondary MMU holds translations of it.  What is read
 * is our own hlist node and the two first members above; the answer
 * fails safe if the head moved (our node's back pointer would not be it)
 * or if has_itree's byte is anything but 0.  A registration takes
 * mmap_lock for writing and every VMA lock, so none completes while a
 * fault holds one; an unregistration only makes "not alone" "alone",
 * after its user dropped its translations.
 */
static bool no_secondary_mmu(struct morsel_mm *mmm)
{
	struct mn_subscriptions_head *head =
		(void *)READ_ONCE(mmm->mn.mm->notifier_subscriptions);
	struct hlist_node *node = &mmm->mn.hlist;

	return head && !READ_ONCE(node->next) &&
	       (void *)READ_ONCE(node->pprev) == &head->list.first &&
	       !READ_ONCE(*(u8 *)&head->has_itree);
}

bool morsel_fault_mm_alone(struct vm_fault *vmf)
{
	struct morsel_mm *mmm = vmf->vma->vm_private_data;

	return mmm && no_secondary_mmu(mmm);
}

/*
 * Can a copy-on-write of a leaf that the store fault @vmf reached through
 * a link of @m skip unmap_mapping_range() (a walk of every mapping of the
 * file) and invalidate this one address space alone?  Only if no other
 * translation of the old frame can exist elsewhere: @m has one mapping
 * (this VMA; it maps the page once, through the link).  Secondary MMUs of
 * this mm (KVM, HMM mirrors, which since the VMA is VM_MIXEDMAP may hold
 * our frames) are still told: the caller runs the mm's notifiers.  It
 * made m->leaf_gen odd and issued a full barrier before asking: a
 * mapping made meanwhile counts itself first (count_mapper() in fault.c),
 * so it either shows here or its faults see the odd value and wait
 * (morsel_link(), fault_one_page()).
 */
bool morsel_sole_translation(struct morsel *m, struct vm_fault *vmf)
{
	return vmf->vma->vm_private_data && atomic_read(&m->mappers) == 1;
}

/*
 * Is [@start, @end) the page that the current task is replacing in the
 * table @l links (morsel_replace_leaf() in cow.c)?  Then the link stays:
 * the replacement clears the old leaf itself, and this invalidation is
 * for what else translates it (secondary MMUs, the TLB).  @l is stable
 * under mmm->lock; m->repl, as the current task is the one that wrote it.
 */
static bool replacing_below(struct morsel_link *l, unsigned long start,
			    unsigned long end)
{
	struct morsel_replacement *r = &l->m->repl;
	unsigned long page = (start - l->start) >> PAGE_SHIFT;

	if (READ_ONCE(r->task) != current || end - start != PAGE_SIZE ||
	    start < l->start || end > l->end)
		return false;
	if (l->level == MORSEL_LINK_PUD)
		return l->table_pfn == r->pmd_table_pfn &&
		       page == (r->index & (PTRS_PER_PMD * PTRS_PER_PTE - 1));
	return (l->table_pfn == r->table_pfn ||
		l->table_pfn == r->twin_pfn) &&
	       page == (r->index & (PTRS_PER_PTE - 1));
}

static struct morsel_link *first_link_ending_after(struct morsel_mm *mmm,
						   unsigned long addr)
{
	struct rb_node *n = mmm->links.rb_node;
	struct morsel_link *best = NULL, *l;

	while (n) {
		l = rb_entry(n, struct morsel_link, node);
		if (l->end > addr) {
			best = l;
			n = n->rb_left;
		} else {
			n = n->rb_right;
		}
	}
	return best;
}

static bool insert_link(struct morsel_mm *mmm, struct morsel_link *new)
{
	struct rb_node **p = &mmm->links.rb_node, *parent = NULL;
	struct morsel_link *l;

	while (*p) {
		parent = *p;
		l = rb_entry(parent, struct morsel_link, node);
		if (new->end <= l->start)
			p = &parent->rb_left;
		else if (new->start >= l->end)
			p = &parent->rb_right;
		else
			return false;
	}
	rb_link_node(&new->node, parent, p);
	rb_insert_color(&new->node, &mmm->links);
	return true;
}

/* The process entry of @l, if the upper levels above it still exist. */
static void clear_link_entry(struct mm_struct *mm, struct morsel_link *l)
{
	pgd_t *pgd = pgd_offset(mm, l->start);
	spinlock_t *ptl;	/* of the process entry */
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;

	if (!pgd_present(pgdp_get(pgd)))
		goto missing;
	p4d = p4d_offset(pgd, l->start);
	if (!p4d_present(p4dp_get(p4d)))
		goto missing;
	pud = pud_offset(p4d, l->start);
	if (l->level == MORSEL_LINK_PUD) {
		ptl = pud_lock(mm, pud);
		if (pud_present(pudp_get(pud)) &&
		    pud_pfn(pudp_get(pud)) == l->table_pfn)
			pud_clear(pud);
		else
			WARN_ONCE(1, "morsel: PUD link at %lx changed\n",
				  l->start);
		spin_unlock(ptl);
		return;
	}
	if (!pud_present(pudp_get(pud)) || pud_leaf(pudp_get(pud)))
		goto missing;
	pmd = pmd_offset(pud, l->start);
	ptl = pmd_lock(mm, pmd);
	if (pmd_present(pmdp_get(pmd)) && !pmd_leaf(pmdp_get(pmd)) &&
	    pmd_pfn(pmdp_get(pmd)) == l->table_pfn)
		pmd_clear(pmd);
	else
		WARN_ONCE(1, "morsel: PMD link at %lx changed\n", l->start);
	spin_unlock(ptl);
	return;
missing:
	WARN_ONCE(1, "morsel: tables above link at %lx are gone\n", l->start);
}

/* Is @l a link of the shared hole table (pgtable.c)? */
static bool links_hole_table(const struct morsel_link *l)
{
	return l->table_pfn == PHYS_PFN(__pa(morsel_hole_table()));
}

/*
 * A link record is memory the address space makes the kernel hold, as a
 * page table is: it is charged to the mm's page-table bytes (VmPTE in
 * /proc/PID/status, and what the OOM killer weighs) from the link until
 * it is gone, as well as to the memory cgroup of the task that made it.
 */
static void charge_link(struct mm_struct *mm, long sign)
{
	atomic_long_add(sign * (long)sizeof(struct morsel_link),
			&mm->pgtables_bytes);
}

static void drop_links(struct morsel_mm *mmm, struct list_head *gone)
{
	struct morsel_link *l, *next;

	list_for_each_entry_safe(l, next, gone, gone) {
		if (l->level == MORSEL_LINK_PUD)	/* gone and flushed */
			atomic_long_dec(&l->m->pud_links);
		if (links_hole_table(l))
			atomic_long_dec(&l->m->hole_links);
		atomic_long_dec(&l->m->links);
		atomic_long_dec(&morsel_totals.links);
		charge_link(mmm->mn.mm, -1);
		kmem_cache_free(morsel_link_cache, l);
	}
}

/* Remove links overlapping [@start, @end); caller holds mmm->lock. */
static void unlink_locked(struct morsel_mm *mmm, unsigned long start,
			  unsigned long end, struct list_head *gone)
{
	struct morsel_link *l = first_link_ending_after(mmm, start);
	struct rb_node *next;

	lockdep_assert_held(&mmm->lock);
	while (l && l->start < end) {
		next = rb_next(&l->node);
		clear_link_entry(mmm->mn.mm, l);
		rb_erase(&l->node, &mmm->links);
		list_add(&l->gone, gone);
		l = next ? rb_entry(next, struct morsel_link, node) : NULL;
	}
}

static void unlink_and_flush(struct morsel_mm *mmm, unsigned long start,
			     unsigned long end, bool invalidate_begins)
{
	LIST_HEAD(gone);

	spin_lock(&mmm->lock);
	if (invalidate_begins)
		mmm->invalidating++;
	unlink_locked(mmm, start, end, &gone);
	spin_unlock(&mmm->lock);
	if (list_empty(&gone))
		return;
	flush_mm_tlb(mmm->mn.mm);
	drop_links(mmm, &gone);
}

/* Remove the link that @addr falls strictly inside, if any. */
void morsel_unlink_straddling(struct morsel_mm *mmm, unsigned long addr)
{
	struct morsel_link *l;
	unsigned long start;
	bool found;

	spin_lock(&mmm->lock);
	l = first_link_ending_after(mmm, addr);
	found = l && l->start < addr;
	start = found ? l->start : 0;
	spin_unlock(&mmm->lock);
	if (found)
		unlink_and_flush(mmm, start, start + 1, false);
}

/* Is @addr covered by a link?  If so, *@end is where that link ends. */
bool morsel_linked_at(struct morsel_mm *mmm, unsigned long addr,
		      unsigned long *end)
{
	struct morsel_link *l;
	bool found;

	spin_lock(&mmm->lock);
	l = first_link_ending_after(mmm, addr);
	found = l && l->start <= addr;
	if (found)
		*end = l->end;
	spin_unlock(&mmm->lock);
	return found;
}

/*
 * Make the process entry @entry (a pmd_t * or pud_t * of mmm's mm) point
 * at @table of @m, or at the hole table for @m's chunk at @off.  @start is
 * the first address the entry covers, @off the object offset it maps.
 * Returns 0, -EAGAIN while an invalidation is running or the hole got a
 * table meanwhile (the caller lets the access fault again), -EEXIST if
 * the entry is no longer empty.
 */
int morsel_link(struct morsel_mm *mmm, struct morsel *m,
		enum morsel_link_level level, void *entry,
		unsigned long start, void *table, loff_t off)
{
	bool hole = table == morsel_hole_table();

	struct mm_struct *mm = mmm->mn.mm;
	struct morsel_link *l;
	spinlock_t *ptl;	/* of the process entry */
	int err = 0;

	l = kmem_cache_alloc(morsel_link_cache, GFP_KERNEL_ACCOUNT);
	if (!l)
		return -ENOMEM;
	l->start = start;
	l->end = start + (level == MORSEL_LINK_PUD ? PUD_SIZE : PMD_SIZE);
	l->table_pfn = PHYS_PFN(__pa(table));
	l->level = level;
	l->m = m;

	spin_lock(&mmm->lock);
	if (mmm->dead || mmm->invalidating) {
		err = -EAGAIN;
		goto out;
	}
	/*
	 * A leaf of @m is being replaced (morsel_replace_leaf()): its invalidation
	 * may have passed this mm already and would not flush a link made
	 * now.  Its notifier takes this lock after making leaf_gen odd, so
	 * an even value here means the notifier will still find this link.
	 */
	if (morsel_leaf_gen_replacing(&m->leaf_gen)) {
		err = -EBUSY;
		goto out;
	}
	/*
	 * The hole table stands for a chunk of @m without a table: it must
	 * not stay linked once the chunk has one.  The caller holds
	 * m->hole_sem for reading; whoever gives a chunk a table holds it
	 * for writing from before its entry can be seen until it has read
	 * the count and unmapped the chunk (forget_hole_links()).  So the
	 * count made here is seen there, or the table is seen here.
	 */
	if (hole) {
		lockdep_assert_held_read(&m->hole_sem);
		atomic_long_inc(&m->hole_links);
		smp_mb__after_atomic();	/* count, then the object's entry */
		if (morsel_pte_table(m, off, false)) {
			err = -EAGAIN;
			goto out;
		}
	}
	if (level == MORSEL_LINK_PUD) {
		pud_t *pud = entry;

		ptl = pud_lock(mm, pud);
		if (!pud_none(pudp_get(pud))) {
			err = -EEXIST;
		} else if (!insert_link(mmm, l)) {
			err = -EEXIST;
		} else {
			/*
			 * Counted before any CPU can walk through the entry;
			 * pairs with the barrier in own_pte_table().
			 */
			atomic_long_inc(&m->pud_links);
			smp_mb__after_atomic();	/* count, then entry */
			set_pud(pud, __pud(__pa(table) | _PAGE_TABLE));
		}
	} else {
		pmd_t *pmd = entry;

		/* pmd_bad() accepts exactly a writable table entry. */
		ptl = pmd_lock(mm, pmd);
		if (!pmd_none(pmdp_get(pmd)))
			err = -EEXIST;
		else if (!insert_link(mmm, l))
			err = -EEXIST;
		else
			set_pmd(pmd, __pmd(__pa(table) | _PAGE_TABLE));
	}
	spin_unlock(ptl);
out:
	spin_unlock(&mmm->lock);
	if (err) {
		if (hole)
			atomic_long_dec(&m->hole_links);
		kmem_cache_free(morsel_link_cache, l);
		return err;
	}
	atomic_long_inc(&m->links);
	atomic_long_inc(&morsel_totals.links);
	charge_link(mm, 1);
	return 0;
}

static int
morsel_mn_invalidate_range_start(struct mmu_notifier *mn,
				 const struct mmu_notifier_range *range)
{
	struct morsel_mm *mmm = container_of(mn, struct morsel_mm, mn);
	struct morsel_link *l;
	bool keep;

	spin_lock(&mmm->lock);
	l = first_link_ending_after(mmm, range->start);
	keep = l && replacing_below(l, range->start, range->end);
	if (keep)
		mmm->invalidating++;
	spin_unlock(&mmm->lock);
	if (keep) {
		/*
		 * The replacement cleared the shared leaf itself: the core
		 * mm's zap finds it none and flushes nothing here.
		 */
		morsel_flush_mm_page(mmm->mn.mm, range->start);
		return 0;
	}
	unlink_and_flush(mmm, range->start, range->end, true);
	return 0;
}

static void
morsel_mn_invalidate_range_end(struct mmu_notifier *mn,
			       const struct mmu_notifier_range *range)
{
	struct morsel_mm *mmm = container_of(mn, struct morsel_mm, mn);

	spin_lock(&mmm->lock);
	mmm->invalidating--;
	spin_unlock(&mmm->lock);
}

/* The address space is going away: exit_mmap() calls this first. */
static void morsel_mn_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct morsel_mm *mmm = container_of(mn, struct morsel_mm, mn);
	LIST_HEAD(gone);

	spin_lock(&mmm->lock);
	mmm->dead = true;
	unlink_locked(mmm, 0, ULONG_MAX, &gone);
	spin_unlock(&mmm->lock);
	if (list_empty(&gone))
		return;
	flush_mm_tlb(mmm->mn.mm);
	drop_links(mmm, &gone);
}

static struct mmu_notifier *morsel_mn_alloc(struct mm_struct *mm)
{
	struct morsel_mm *mmm = kzalloc(sizeof(*mmm), GFP_KERNEL_ACCOUNT);

	if (!mmm)
		return ERR_PTR(-ENOMEM);
	spin_lock_init(&mmm->lock);
	mmm->links = RB_ROOT;
	atomic_long_inc(&morsel_totals.address_spaces);
	return &mmm->mn;
}

static void morsel_mn_free(struct mmu_notifier *mn)
{
	struct morsel_mm *mmm = container_of(mn, struct morsel_mm, mn);

	WARN_ON_ONCE(!RB_EMPTY_ROOT(&mmm->links));
	atomic_long_dec(&morsel_totals.address_spaces);
	kfree(mmm);
}

static const struct mmu_notifier_ops morsel_mn_ops = {
	.invalidate_range_start = morsel_mn_invalidate_range_start,
	.invalidate_range_end = morsel_mn_invalidate_range_end,
	.release = morsel_mn_release,
	.alloc_notifier = morsel_mn_alloc,
	.free_notifier = morsel_mn_free,
};

/* A reference on the link record of @mm; mmap_lock held for writing. */
struct morsel_mm *morsel_mm_get(struct mm_struct *mm)
{
	struct mmu_notifier *mn;

	mmap_assert_write_locked(mm);
	mn = mmu_notifier_get_locked(&morsel_mn_ops, mm);
	if (IS_ERR(mn))
		return ERR_CAST(mn);
	return container_of(mn, struct morsel_mm, mn);
}

void morsel_mm_put(struct morsel_mm *mmm)
{
	mmu_notifier_put(&mmm->mn);
}

int morsel_link_init(void)
{
	morsel_link_cache = KMEM_CACHE(morsel_link, SLAB_ACCOUNT);
	return morsel_link_cache ? 0 : -ENOMEM;
}

void morsel_link_exit(void)
{
	/* Wait for notifiers put by the last VMAs to be freed. */
	mmu_notifier_synchronize();
	kmem_cache_destroy(morsel_link_cache);
}
