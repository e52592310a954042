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
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/spinlock.h>

static const struct gmem_mm_hooks __rcu *gmem_hooks;
static DEFINE_SPINLOCK(gmem_hooks_lock);

/**
 * gmem_peer_shared_check - may mmap() create a MAP_PEER_SHARED mapping?
 * @file: the file being mapped, NULL for anonymous memory
 * @flags: the MAP_* flags of the request
 *
 * Return: 0 if so; -EINVAL for anything but a private anonymous mapping;
 * -ENODEV if gmem.ko is not loaded.
 */
int gmem_peer_shared_check(struct file *file, unsigned long flags)
{
	if (file || (flags & MAP_TYPE) != MAP_PRIVATE ||
	    (flags & MAP_GROWSDOWN))
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
