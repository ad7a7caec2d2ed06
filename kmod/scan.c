// SPDX-License-Identifier: GPL-2.0
/*
 * The layout of an object, read from its leaves: which pages hold data,
 * which the object owns and which were written since the last clean
 * (MORSEL_IOC_SCAN, and cleaning them for the next incremental save),
 * SEEK_DATA/SEEK_HOLE, and the count of visible pages.
 *
 * Readers of a child's leaves hold its replacement lock shared, so a leaf
 * being replaced (cow.c) counts as present, never as a hole.
 */
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "morsel.h"

/* Pages present in the object's view, owned or borrowed (m->lock held). */
unsigned long morsel_visible_pages(struct morsel *m)
{
	loff_t size = i_size_read(&m->vfs_inode), off;
	unsigned long pages = 0;
	pte_t *table;
	int i;

	lockdep_assert_held(&m->lock);
	morsel_replacements_read_lock(m);	/* a leaf being replaced counts */
	for (off = 0; off < size; off += PMD_SIZE) {
		if (m->level == MORSEL_LEVEL_PUD &&
		    !morsel_pmd_table(m, off, false)) {
			off = ALIGN_DOWN(off, PUD_SIZE) + PUD_SIZE - PMD_SIZE;
			continue;
		}
		table = morsel_pte_table(m, off, false);
		for (i = 0; table && i < PTRS_PER_PTE; i++)
			pages += morsel_leaf_has_data(ptep_get(table + i));
		cond_resched();
	}
	morsel_replacements_read_unlock(m);
	return pages;
}

/* The search of morsel_seek_data(); a SEEK_DATA ends at @end too. */
static loff_t seek_leaves(struct morsel *m, loff_t off, loff_t end,
			  int whence)
{
	loff_t size = i_size_read(&m->vfs_inode);
	bool want_data = whence == SEEK_DATA;
	loff_t stop = want_data ? min(size, end) : size;
	pte_t *table;
	loff_t next;

	if (off < 0 || off >= size)
		return -ENXIO;
	while (off < stop) {
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
		for (; off < next && off < stop;
		     off = ALIGN_DOWN(off, PAGE_SIZE) + PAGE_SIZE) {
			bool data = morsel_leaf_has_data(ptep_get(table +
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
	lockdep_assert_held(&m->lock);
	morsel_replacements_read_lock(m);	/* a leaf being replaced has data */
	off = seek_leaves(m, off, LLONG_MAX, whence);
	morsel_replacements_read_unlock(m);
	return off;
}

/*
 * The first populated page in [@off, @end), or -ENXIO: SEEK_DATA that
 * looks no further than @end.  Caller holds m->lock shared.
 */
loff_t morsel_next_data(struct morsel *m, loff_t off, loff_t end)
{
	lockdep_assert_held(&m->lock);
	morsel_replacements_read_lock(m);
	off = seek_leaves(m, off, end, SEEK_DATA);
	morsel_replacements_read_unlock(m);
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
 * Was the owned frame of leaf *@ptep (still @pte) written since the last
 * clean?  The leaf says so for stores through mappings, write() and FILL
 * (morsel_leaf_dirty()).  Writers through GUP that mark the page dirty
 * when done (unpin_user_pages_dirty_lock(), set_page_dirty_lock()) set
 * PG_dirty (our a_ops->dirty_folio is noop_dirty_folio()), and a frame
 * that may be pinned can be written at any moment (a device, O_DIRECT,
 * an io_uring fixed buffer): it counts as written until unpinned.  With
 * @clean, the leaf and PG_dirty start over, except for a frame that may
 * be pinned: what the holder writes after this clean may come with an
 * unpin that marks nothing (io_uring unpins its fixed buffers with
 * unpin_user_page()), so it stays dirty for the scan after the unpin.
 * The table's lock is held.
 */
static bool frame_written(pte_t *ptep, pte_t pte, bool clean)
{
	struct folio *folio = page_folio(pte_page(pte));
	bool written;

	if (folio_maybe_dma_pinned(folio))
		return true;
	if (!clean)
		return morsel_leaf_dirty(pte) || folio_test_dirty(folio);
	/* A leaf neither writable nor D stays so: we hold its table's lock. */
	written = morsel_leaf_dirty(pte) && morsel_clean_leaf(ptep);
	/*
	 * Test PG_dirty before clearing it: an increment scans every leaf,
	 * and under emulation an atomic on each frame of a GiB was most of
	 * the scan.  A PG_dirty set after the test stays for the next scan.
	 */
	if (folio_test_dirty(folio))
		written |= folio_test_clear_dirty(folio);
	/*
	 * Nothing cleared, nothing lost: a pin to write needs a writable
	 * leaf (GUP-fast), or a fault that makes ours dirty under the table
	 * lock we hold, so a pin that comes now shows in the next scan.
	 */
	if (!written)
		return false;
	/*
	 * A pin taken meanwhile: GUP's slow path through a page mapped one
	 * by one pins under the process's PTE lock, not ours, then sets
	 * PG_dirty, which we may just have cleared; GUP-fast pins, then
	 * checks that the leaf did not change.  Both clears above are
	 * fully ordered, so either the pin shows now or the other side
	 * sees the clean (its PG_dirty stays, or GUP-fast backs off).
	 */
	smp_mb();
	if (folio_maybe_dma_pinned(folio)) {
		folio_set_dirty(folio);
		return true;
	}
	return written;
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
	spinlock_t *ptl = morsel_table_lock(table);
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
			if (!morsel_leaf_has_data(pte))
				continue;
			present |= mask;
			if (theirs &&
			    morsel_same_frame(ptep_get(theirs + (ptep - table)), pte))
				continue;
			owned |= mask;
			if (frame_written(ptep, pte, clean)) {
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
	pte_t *table, *theirs;
	loff_t off;

	lockdep_assert_held(&m->lock);
	if (clean)
		lockdep_assert_held_write(&m->vfs_inode.i_rwsem);
	end = min(end, size);
	morsel_replacements_read_lock(m);	/* a leaf being replaced is present */
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
		theirs = morsel_parent_pte_table(m, off, NULL);
		scan_leaves(table, theirs, index, next, first, clean, b);
		cond_resched();
	}
	morsel_replacements_read_unlock(m);
}

static int copy_scan_bits(u64 uaddr, u64 first_page,
			  const unsigned long *bits, unsigned long words)
{
	void __user *dst;

	if (!uaddr)
		return 0;
	dst = u64_to_user_ptr(uaddr + first_page / 8);
	return copy_to_user(dst, bits, words * sizeof(long)) ? -EFAULT : 0;
}

/* Report (and with MORSEL_SCAN_CLEAN, clean) the pages of a range. */
long morsel_ioctl_scan(struct file *file, struct morsel_scan *uscan,
		       const struct morsel_uarg *ua)
{
	struct inode *inode = file_inode(file);
	struct morsel *m = MORSEL(inode);
	struct morsel_scan_batch *b;
	struct morsel_scan arg = *uscan;
	u64 pages, done, n, words;
	bool clean, cleaned = false;
	long err = 0;

	if (arg.flags & ~MORSEL_SCAN_FLAGS)
		return -EINVAL;
	clean = arg.flags & MORSEL_SCAN_CLEAN;
	if ((arg.flags & MORSEL_SCAN_IF_GEN) && !clean)
		return -EINVAL;
	if (!arg.length || !PAGE_ALIGNED(arg.start) ||
	    !PAGE_ALIGNED(arg.length) || arg.start > MORSEL_MAX_SIZE ||
	    arg.length > MORSEL_MAX_SIZE - arg.start)
		return -EINVAL;
	/* Which pages hold data is about the contents; cleaning changes state. */
	err = morsel_check_rights(file, FMODE_READ |
				  (clean ? FMODE_WRITE : 0));
	if (err)
		return err;
	b = kvmalloc(sizeof(*b), GFP_KERNEL_ACCOUNT);
	if (!b)
		return -ENOMEM;
	if (clean) {
		err = inode_lock_killable(inode);
		if (err)
			goto out_free;
	}
	if (arg.start + arg.length >
	    round_up(i_size_read(inode), PAGE_SIZE)) {
		err = -EINVAL;
		goto out_unlock;
	}
	if (clean) {
		if ((arg.flags & MORSEL_SCAN_IF_GEN) &&
		    arg.gen != m->clean_gen) {
			err = -ESTALE;
			goto out_unlock;
		}
		WRITE_ONCE(m->clean_gen, m->clean_gen + 1);
		/*
		 * Zap entries made page by page now, before cleaning: the
		 * zap moves their D bits into PG_dirty (folio_mark_dirty()),
		 * which, done after the clean, would report those pages
		 * written again next time.  The unmap after the clean still
		 * removes entries made writable meanwhile.
		 */
		unmap_mapping_range(inode->i_mapping, arg.start, arg.length, 1);
	}
	arg.present_pages = 0;
	arg.dirty_pages = 0;
	pages = arg.length >> PAGE_SHIFT;
	for (done = 0; done < pages; done += n) {
		n = min_t(u64, pages - done, MORSEL_SCAN_BATCH);
		words = DIV_ROUND_UP(n, BITS_PER_LONG);
		memset(b, 0, sizeof(*b));
		down_read(&m->lock);
		morsel_scan(m, (arg.start >> PAGE_SHIFT) + done,
			    (arg.start >> PAGE_SHIFT) + done + n, clean, b);
		up_read(&m->lock);
		cleaned |= b->cleaned;
		arg.present_pages += b->present_pages;
		arg.dirty_pages += b->dirty_pages;
		/* Outside m->lock: the bitmaps may be in a mapping of @m. */
		err = copy_scan_bits(arg.present, done, b->present, words) ?:
		      copy_scan_bits(arg.owned, done, b->owned, words) ?:
		      copy_scan_bits(arg.dirty, done, b->dirty, words);
		if (!err && fatal_signal_pending(current))
			err = -EINTR;
		if (err)
			break;
	}
	if (cleaned) {
		/*
		 * Every translation that still allows a store without a fault
		 * must go: links (our notifier unlinks and flushes), pages
		 * mapped one by one, secondary MMUs.  A page-by-page fault
		 * holds m->lock shared from reading the leaf to inserting its
		 * PTE: waiting for the lock once makes sure one that saw a
		 * leaf still writable has inserted, so the unmap removes it
		 * (such a fault sees leaf_gen move but the same frame, so it
		 * keeps the PTE for this unmap to remove).
		 */
		morsel_leaf_gen_invalidate(&m->leaf_gen);
		down_write(&m->lock);
		up_write(&m->lock);
		unmap_mapping_range(inode->i_mapping, arg.start, arg.length, 1);
	}
	arg.gen = READ_ONCE(m->clean_gen);
	if (!err)
		err = morsel_return_arg(ua, &arg, sizeof(arg));
out_unlock:
	if (clean)
		inode_unlock(inode);
out_free:
	kvfree(b);
	return err;
}
