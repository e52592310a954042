// SPDX-License-Identifier: GPL-2.0
/*
 * gmem core-MM hook: the built-in half of gmem.
 *
 * mmap(MAP_PEER_SHARED) is validated here and reported to gmem.ko through
 * the hooks gmem.ko registers when it loads.  A call into the hooks holds a
 * reference on their module, so gmem.ko cannot go away under a call; gmem.ko
 * takes its own references for what outlives a call (address spaces,
 * devices).
 */
#include <linux/gmem.h>
#include <linux/hmm.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/pagewalk.h>
#include <linux/rcupdate.h>
#include <linux/rmap.h>
#include <linux/secretmem.h>
#include <linux/spinlock.h>

/* mm/internal.h: folio_anon_vma() */
#include "internal.h"

static const struct gmem_mm_hooks __rcu *gmem_hooks;
static DEFINE_SPINLOCK(gmem_hooks_lock);

/**
 * gmem_peer_shared_check - may mmap() create a MAP_PEER_SHARED mapping?
 * @file: the file being mapped, NULL for anonymous memory
 * @flags: the MAP_* flags of the request
 *
 * Return: 0 if so; -EINVAL for anything but a private anonymous mapping of
 * base pages (MAP_HUGETLB and MAP_GROWSDOWN included); -ENODEV if gmem.ko
 * is not loaded.
 */
int gmem_peer_shared_check(struct file *file, unsigned long flags)
{
	if (file || (flags & MAP_TYPE) != MAP_PRIVATE ||
	    (flags & (MAP_GROWSDOWN | MAP_HUGETLB)))
		return -EINVAL;
	if (!rcu_access_pointer(gmem_hooks))
		return -ENODEV;
	return 0;
}

/**
 * gmem_peer_shared_mapped - tell gmem about a new MAP_PEER_SHARED mapping
 * @mm: the address space, with mmap_lock held for write
 * @start: start of the new mapping
 * @len: its length in bytes, page aligned
 *
 * Return: 0, -ENODEV if gmem.ko went away since gmem_peer_shared_check(),
 * or gmem's error.
 */
int gmem_peer_shared_mapped(struct mm_struct *mm, unsigned long start,
			    unsigned long len)
{
	const struct gmem_mm_hooks *hooks;
	int ret;

	mmap_assert_write_locked(mm);

	rcu_read_lock();
	hooks = rcu_dereference(gmem_hooks);
	if (hooks && !try_module_get(hooks->owner))
		hooks = NULL;
	rcu_read_unlock();
	if (!hooks)
		return -ENODEV;

	ret = hooks->peer_shared_mapped(mm, start, len);
	module_put(hooks->owner);
	return ret;
}

/**
 * gmem_discard - drop the contents of a range (GMEM_ADV_DISCARD)
 * @mm: the address space, with a users reference; mmap_lock not held
 * @start: page-aligned start
 * @len: page-aligned length
 *
 * The range reads as zeros afterwards, wherever its pages were: host pages
 * and device-private entries alike are zapped, as MADV_DONTNEED does, and
 * device mappings go through the mmu notifiers.
 *
 * Return: 0; -EFAULT if part of the range is not mapped, -EINVAL if part of
 * it is locked or not ordinary memory; nothing is discarded then.
 */
int gmem_discard(struct mm_struct *mm, unsigned long start, size_t len)
{
	unsigned long addr, end = start + len;
	struct vm_area_struct *vma;
	int ret = 0;

	mmap_read_lock(mm);
	for (addr = start; addr < end; addr = vma->vm_end) {
		vma = vma_lookup(mm, addr);
		if (!vma) {
			ret = -EFAULT;
			goto out;
		}
		if (vma->vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) {
			ret = -EINVAL;
			goto out;
		}
	}
	for (addr = start; addr < end; addr = vma->vm_end) {
		vma = vma_lookup(mm, addr);
		zap_page_range_single(vma, addr, min(end, vma->vm_end) - addr,
				      NULL);
	}
out:
	mmap_read_unlock(mm);
	return ret;
}
EXPORT_SYMBOL_GPL(gmem_discard);

/*
 * The pages gmem_wrprotect() must change: present anonymous ones that are
 * writable, or read-only but exclusive (after mprotect(), or back from a
 * device through a read-only device-private entry), because the write
 * fault handler reuses an exclusive page without looking at its
 * references, and so without a copy or an mmu notifier invalidation.
 */
static struct page *gmem_wrprotect_target(struct vm_area_struct *vma,
					  unsigned long addr, pte_t pte)
{
	struct page *page;

	if (!pte_present(pte))
		return NULL;
	page = vm_normal_page(vma, addr, pte);
	if (!page || !folio_test_anon(page_folio(page)))
		return NULL;
	if (!pte_write(pte) && !PageAnonExclusive(page))
		return NULL;
	return page;
}

static int gmem_wrprotect_scan_pte(pte_t *ptep, unsigned long addr,
				   unsigned long next, struct mm_walk *walk)
{
	if (!gmem_wrprotect_target(walk->vma, addr, ptep_get(ptep)))
		return 0;
	*(bool *)walk->private = true;
	return 1;	/* found one: stop the walk */
}

static int gmem_wrprotect_pmd(pmd_t *pmd, unsigned long addr,
			      unsigned long next, struct mm_walk *walk)
{
	/* A huge mapping may be writable or exclusive: the PTE pass splits it. */
	if (!pmd_trans_huge(pmdp_get(pmd)))
		return 0;
	*(bool *)walk->private = true;
	return 1;
}

static int gmem_wrprotect_pte(pte_t *ptep, unsigned long addr,
			      unsigned long next, struct mm_walk *walk)
{
	struct vm_area_struct *vma = walk->vma;
	pte_t pte = ptep_get(ptep);
	struct page *page = gmem_wrprotect_target(vma, addr, pte);
	struct folio *folio;

	if (!page)
		return 0;
	folio = page_folio(page);
	/*
	 * As KSM's write_protect_page(): clear and flush the PTE first, so
	 * that GUP-fast either sees the old PTE or none, then mark the page
	 * maybe shared; a pinned page cannot be, and stays as it was.
	 */
	pte = ptep_clear_flush(vma, addr, ptep);
	if (folio_try_share_anon_rmap_pte(folio, page)) {
		/* Still exclusive: a write would reuse it silently. */
		set_pte_at(vma->vm_mm, addr, ptep, pte);
		*(bool *)walk->private = true;
		return 0;
	}
	set_pte_at(vma->vm_mm, addr, ptep, pte_wrprotect(pte));
	return 0;
}

static const struct mm_walk_ops gmem_wrprotect_scan_ops = {
	.pmd_entry = gmem_wrprotect_pmd,
	.pte_entry = gmem_wrprotect_scan_pte,
	.walk_lock = PGWALK_RDLOCK,
};

static const struct mm_walk_ops gmem_wrprotect_ops = {
	.pte_entry = gmem_wrprotect_pte,
	.walk_lock = PGWALK_RDLOCK,
};

/**
 * gmem_wrprotect - make the next CPU write to a range visible
 * @mm: the address space, with mmap_lock held (read is enough)
 * @start: page-aligned start
 * @end: page-aligned end
 *
 * Write-protects the present anonymous pages of the range and marks them
 * maybe shared, as fork() and KSM do, so that a CPU write fault on one
 * that someone else holds a reference on copies it (wp_page_copy()), with
 * an mmu notifier invalidation, rather than silently making it writable
 * again.  gmem's read duplication relies on this to learn of writes; it
 * takes its references first, so that no write can reuse a page after
 * this returns.  A range with nothing to change is left alone, without
 * an invalidation, so that the copies other devices made of it stay.
 *
 * Return: 0; -EBUSY if a page could not be shared (pinned for DMA, it
 * stays exclusive, and writes to it would not be seen); or the page walk's
 * error.
 */
int gmem_wrprotect(struct mm_struct *mm, unsigned long start,
		   unsigned long end)
{
	struct mmu_notifier_range range;
	bool needed = false, pinned = false;
	int ret;

	mmap_assert_locked(mm);
	ret = walk_page_range(mm, start, end, &gmem_wrprotect_scan_ops,
			      &needed);
	if (ret < 0)
		return ret;
	if (!needed)
		return 0;
	mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_PAGE, 0, mm,
				start, end);
	mmu_notifier_invalidate_range_start(&range);
	ret = walk_page_range(mm, start, end, &gmem_wrprotect_ops, &pinned);
	mmu_notifier_invalidate_range_end(&range);
	if (!ret && pinned)
		ret = -EBUSY;
	return ret;
}
EXPORT_SYMBOL_GPL(gmem_wrprotect);

/**
 * gmem_vma_device_reachable - may a device map the pages of @vma?
 * @vma: the VMA, with its mm's mmap_lock held
 *
 * Not raw pfn mappings (VM_IO, VM_PFNMAP, VM_MIXEDMAP: pages without a
 * struct page, or MMIO), and not memfd_secret() memory, whose pages are
 * removed from the kernel's direct map so that no one but its process
 * reads them.  Built in because vma_is_secretmem() is not exported.
 *
 * Return: true if gmem may give the VMA's pages to a device.
 */
bool gmem_vma_device_reachable(struct vm_area_struct *vma)
{
	mmap_assert_locked(vma->vm_mm);
	if (vma->vm_flags & (VM_IO | VM_PFNMAP | VM_MIXEDMAP))
		return false;
	return !vma_is_secretmem(vma);
}
EXPORT_SYMBOL_GPL(gmem_vma_device_reachable);

/**
 * gmem_split_anon_folio - split a large folio of @vma's before a migration
 * @vma: the VMA about to be migrated from, with its mm's mmap_lock held
 * @hmm_pfn: an entry hmm_range_fault() filled for it: a page mapped there
 *	(which may have been freed, split or reused since), or not
 *
 * migrate_vma_setup() splits a transparent huge page mapped by a PMD but
 * collects no page of a large folio mapped by PTEs (mTHP): memory in one
 * would never move to a device.  Split first, its pages move one by one.
 * The folio is taken speculatively, as GUP-fast does, and checked again
 * under its lock; only an anonymous folio of @vma's anon_vma tree (its
 * process and those it forked) is split.  Best effort: a folio that is
 * locked or pinned stays whole.  Built in because split_folio() is not
 * exported.
 *
 * Return: the entries from @hmm_pfn on that the caller may skip: the rest of the
 * folio (tried once, split or not), or 1.
 */
unsigned long gmem_split_anon_folio(struct vm_area_struct *vma,
				    unsigned long hmm_pfn)
{
	struct anon_vma *mine = READ_ONCE(vma->anon_vma), *its;
	struct page *page;
	struct folio *folio;
	unsigned long nr;
	bool same;

	mmap_assert_locked(vma->vm_mm);
	/* Not mapped, or by a PMD: migrate_vma_setup() splits that itself. */
	if (!mine || !(hmm_pfn & HMM_PFN_VALID) ||
	    hmm_pfn_to_map_order(hmm_pfn))
		return 1;
	page = pfn_to_online_page(hmm_pfn & ~HMM_PFN_FLAGS);
	if (!page || !PageCompound(page))
		return 1;
	folio = page_folio(page);
	if (!folio_try_get(folio))
		return 1;
	if (folio != page_folio(page) || !folio_test_large(folio) ||
	    !folio_test_anon(folio) || folio_test_ksm(folio) ||
	    folio_test_hugetlb(folio)) {
		folio_put(folio);
		return 1;
	}
	nr = folio_nr_pages(folio) - folio_page_idx(folio, page);
	if (folio_trylock(folio)) {
		/* anon_vmas are freed by RCU: ->root can be read. */
		rcu_read_lock();
		its = folio_anon_vma(folio);
		same = its && its->root == mine->root;
		rcu_read_unlock();
		/* Split by someone else since it was looked at? */
		if (same && folio_test_large(folio))
			split_folio(folio);
		folio_unlock(folio);
	}
	folio_put(folio);
	return nr;
}
EXPORT_SYMBOL_GPL(gmem_split_anon_folio);

/**
 * gmem_register_mm_hooks - install gmem.ko's hooks
 * @hooks: the hooks; must stay valid until unregistered
 *
 * Return: 0, or -EBUSY if hooks are already installed.
 */
int gmem_register_mm_hooks(const struct gmem_mm_hooks *hooks)
{
	int ret = 0;

	spin_lock(&gmem_hooks_lock);
	if (rcu_access_pointer(gmem_hooks))
		ret = -EBUSY;
	else
		rcu_assign_pointer(gmem_hooks, hooks);
	spin_unlock(&gmem_hooks_lock);
	return ret;
}
EXPORT_SYMBOL_GPL(gmem_register_mm_hooks);

/**
 * gmem_unregister_mm_hooks - remove gmem.ko's hooks
 * @hooks: the hooks given to gmem_register_mm_hooks()
 *
 * On return no new call can start; calls in flight hold a reference on
 * @hooks->owner, so a module unregistering from its exit path has none.
 */
void gmem_unregister_mm_hooks(const struct gmem_mm_hooks *hooks)
{
	spin_lock(&gmem_hooks_lock);
	if (rcu_access_pointer(gmem_hooks) == hooks)
		RCU_INIT_POINTER(gmem_hooks, NULL);
	spin_unlock(&gmem_hooks_lock);
	synchronize_rcu();
}
EXPORT_SYMBOL_GPL(gmem_unregister_mm_hooks);
