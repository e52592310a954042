// SPDX-License-Identifier: GPL-2.0
/*
 * Exports of gmem.ko.  The functions are written in Rust (gmem_core.rs) as
 * extern "C" with the prototypes of <linux/gmem.h>; Rust cannot emit
 * EXPORT_SYMBOL in 6.12, so the export table entries are made here.
 */
#include <linux/export.h>
#include <linux/gmem.h>

#include "gmem_glue.h"

EXPORT_SYMBOL_GPL(gmem_dev_register);
EXPORT_SYMBOL_GPL(gmem_dev_unregister);
EXPORT_SYMBOL_GPL(gmem_dev_id);
EXPORT_SYMBOL_GPL(gmem_ctx_attach);
EXPORT_SYMBOL_GPL(gmem_ctx_detach);
EXPORT_SYMBOL_GPL(gmem_ctx_drvctx);
EXPORT_SYMBOL_GPL(gmem_ctx_set_policy);
EXPORT_SYMBOL_GPL(gmem_dev_fault);
EXPORT_SYMBOL_GPL(gmem_dev_fault_batch);
EXPORT_SYMBOL_GPL(gmem_dev_notify_access);
EXPORT_SYMBOL_GPL(gmem_dev_notify_use);
EXPORT_SYMBOL_GPL(gmem_ctx_set_placement);
EXPORT_SYMBOL_GPL(gmem_dev_add_memory);
EXPORT_SYMBOL_GPL(gmem_prefetch);
EXPORT_SYMBOL_GPL(gmem_snapshot);
EXPORT_SYMBOL_GPL(gmem_dev_evict);

/*
 * Page references for gmem's read duplicates (gmem_fault.rs), taken here
 * because the helpers are static inline.
 */
#include <linux/mm.h>

void gmem_put_pfns(const unsigned long *pfns, unsigned long n)
{
	while (n--)
		folio_put(page_folio(pfn_to_page(pfns[n])));
}

/*
 * A reference on the folio of each page (a tail page of a THP has no count
 * of its own), or on none if one is being freed or split.
 */
bool gmem_get_pfns(const unsigned long *pfns, unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++) {
		struct page *page = pfn_to_page(pfns[i]);
		struct folio *folio = page_folio(page);

		if (!folio_try_get(folio))
			break;
		/* Split meanwhile: the reference is on the wrong folio (GUP). */
		if (unlikely(page_folio(page) != folio)) {
			folio_put(folio);
			break;
		}
	}
	if (i == n)
		return true;
	gmem_put_pfns(pfns, i);
	return false;
}

/*
 * Device-memory pages (gmem_devmem.rs): the pagemap of a page, which
 * finds its pool as container_of() without a global table, and whether a
 * pfn is device memory of any kind.
 */
#include <linux/memory_hotplug.h>
#include <linux/memremap.h>

struct dev_pagemap *gmem_page_pgmap(struct page *page)
{
	return page->pgmap;
}

bool gmem_pfn_is_zone_device(unsigned long pfn)
{
	return is_zone_device_page(pfn_to_page(pfn));
}

/*
 * Whether host page @pfn is a KSM page, which gmem_fault.rs leaves in host
 * memory.  @pfn was collected for migration (referenced and locked), or
 * only looked at (it may have been freed or offlined since: the answer
 * then only decides whether a block is tried).
 */
bool gmem_pfn_is_ksm(unsigned long pfn)
{
	struct page *page = pfn_to_online_page(pfn);

	/* Offlined since it was looked at: not to be collected either. */
	return !page || folio_test_ksm(page_folio(page));
}

bool gmem_pfn_is_anon(unsigned long pfn)
{
	struct page *page = pfn_to_online_page(pfn);

	return page && folio_test_anon(page_folio(page));
}

/*
 * Layout facts of C structures that the Rust code reads through bindgen's
 * view of them.  gmem checks the two agree before it does anything (see
 * gmem_core.rs: check_layouts), because a silent mismatch would corrupt
 * memory: one was seen for struct task_struct with this toolchain.
 */
#include <linux/fs.h>
#include <linux/hmm.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/miscdevice.h>
#include <linux/mm_types.h>
#include <linux/mmu_notifier.h>
#include <linux/moduleparam.h>
#include <linux/poll.h>
#include <linux/seq_file.h>

const unsigned long gmem_c_layout[] = {
	offsetof(struct vm_area_struct, vm_start),
	offsetof(struct vm_area_struct, vm_end),
	offsetof(struct vm_area_struct, vm_flags),
	offsetof(struct mmu_notifier_range, start),
	offsetof(struct mmu_notifier_range, end),
	offsetof(struct mmu_notifier_range, flags),
	offsetof(struct mmu_notifier_range, event),
	sizeof(struct hmm_range),
	sizeof(struct mmu_notifier),
	sizeof(struct mmu_interval_notifier),
	sizeof(struct work_struct),
	sizeof(struct mutex),
	offsetof(struct seq_file, private),
	offsetof(struct inode, i_private),
	offsetof(struct file, private_data),
	sizeof(struct miscdevice),
	sizeof(struct file_operations),
	offsetof(struct file_operations, unlocked_ioctl),
	offsetof(struct file_operations, poll),
	sizeof(struct wait_queue_head),
	sizeof(struct kernel_param),
	offsetof(struct kernel_param, arg),
	offsetof(struct hmm_range, hmm_pfns),
	offsetof(struct hmm_range, default_flags),
	offsetof(struct hmm_range, dev_private_owner),
	offsetof(struct miscdevice, fops),
	offsetof(struct miscdevice, mode),
	offsetof(struct file_operations, open),
	offsetof(struct file_operations, release),
	offsetof(struct poll_table_struct, _qproc),
	sizeof(struct mmu_notifier_ops),
	offsetof(struct mmu_notifier_ops, alloc_notifier),
	offsetof(struct mmu_notifier_ops, free_notifier),
	sizeof(struct mmu_interval_notifier_ops),
	sizeof(struct gmem_dev_ops),
	offsetof(struct gmem_dev_ops, invalidate),
	sizeof(struct gmem_mm_hooks),
	sizeof(struct gmem_npu_wait),
	sizeof(struct gmem_npu_info),
	offsetof(struct vm_area_struct, vm_ops),
	offsetof(struct dev_pagemap, type),
	offsetof(struct dev_pagemap, ops),
	offsetof(struct dev_pagemap, owner),
	offsetof(struct dev_pagemap, nr_range),
	offsetof(struct dev_pagemap, range),
	sizeof(struct dev_pagemap_ops),
	sizeof(struct migrate_vma),
	offsetof(struct migrate_vma, fault_page),
	offsetof(struct vm_fault, address),
	offsetof(struct vm_fault, page),
	sizeof(struct gmem_npu_prefetch),
	offsetof(struct vm_area_struct, vm_mm),
	offsetof(struct vm_fault, vma),
	sizeof(struct gmem_advise),
	sizeof(struct gmem_range_attrs),
	offsetof(struct mmu_notifier_range, mm),
	sizeof(struct gmem_dev_info),
	offsetof(struct gmem_dev_info, name),
};

/*
 * Read by gmem.ko only; gmem_npu.ko's structures (miscdevice, file
 * operations, module parameters, poll tables, the NPU uapi) are checked
 * here too, and it cannot load without gmem.ko.
 */

/*
 * Whether userfaultfd watches @vma (any mode), for gmem_mm.rs: a device
 * fault there must wait for the handler as a CPU fault would.
 */
#include <linux/userfaultfd_k.h>

bool gmem_vma_uffd_armed(struct vm_area_struct *vma)
{
	return userfaultfd_armed(vma);
}

/*
 * Whether a protection change (MMU_NOTIFY_PROTECTION_VMA) over
 * [@start, @end) leaves a device's access as it was, for gmem_vma.rs: the
 * VMA still allows reading and writing and no userfaultfd write-protects
 * it.  mprotect() updates vm_flags before it changes the PTEs, so a
 * downgrade is seen here; what remains is NUMA balancing's hinting scan
 * (change_prot_numa), which moves no page and would otherwise drop every
 * device mapping and read copy of a task once a scan period.  Every sender
 * of that event holds the mmap lock.  A read-only VMA still loses its
 * device mappings to a scan: flags cannot tell it from a downgrade.
 */
bool gmem_prot_change_keeps_access(struct mm_struct *mm, unsigned long start,
				   unsigned long end)
{
	struct vm_area_struct *vma;

	mmap_assert_locked(mm);
	vma = vma_lookup(mm, start);
	return vma && end <= vma->vm_end &&
	       (vma->vm_flags & (VM_READ | VM_WRITE)) == (VM_READ | VM_WRITE) &&
	       !userfaultfd_wp(vma);
}

/*
 * A page for user data coming back from a device, as a CPU fault would
 * allocate it (movable, charged when the migration moves the device page's
 * charge to it): for @vma at @addr, under its NUMA policy, or with @vma
 * NULL (eviction, which does not know the mapping, run by whichever task
 * needed room) on this CPU's node, not under that task's policy or cpuset.
 */
#include <linux/gfp.h>

struct page *gmem_alloc_host_page(struct vm_area_struct *vma,
				  unsigned long addr, bool nofail)
{
	gfp_t gfp = GFP_HIGHUSER_MOVABLE | (nofail ? __GFP_NOFAIL : 0);

	if (vma)
		return alloc_page_vma(gfp, vma, addr);
	return alloc_pages_node(numa_node_id(), gfp & ~__GFP_HARDWALL, 0);
}

/*
 * The GMEM_PAGE_* state of one hmm_range_fault() result, for
 * gmem_snapshot(): device-private pages are only reported valid for the
 * device asking (its pgmap owner), so they are its own.
 */
u8 gmem_hmm_pfn_state(unsigned long hmm_pfn)
{
	unsigned int order;
	struct page *page;
	u8 state;

	if (hmm_pfn & HMM_PFN_ERROR)
		return GMEM_PAGE_ERROR;
	if (!(hmm_pfn & HMM_PFN_VALID))
		return GMEM_PAGE_NONE;
	state = hmm_pfn & HMM_PFN_WRITE ? GMEM_PAGE_WRITE : GMEM_PAGE_READ;
	page = hmm_pfn_to_page(hmm_pfn);
	if (is_device_private_page(page))
		state |= GMEM_PAGE_DEVMEM;
	else if (is_zero_pfn(page_to_pfn(page)))
		state |= GMEM_PAGE_ZERO;
	order = hmm_pfn_to_map_order(hmm_pfn);
	if (order + PAGE_SHIFT == PMD_SHIFT)
		state |= GMEM_PAGE_PMD;
	else if (order + PAGE_SHIFT == PUD_SHIFT)
		state |= GMEM_PAGE_PUD;
	return state;
}
