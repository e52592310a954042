// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_dmirror: the kernel's HMM test device (lib/test_hmm.c) on gmem.
 *
 * It offers test_hmm's user interface (lib/test_hmm_uapi.h, the devices
 * /dev/hmm_dmirror0 and 1), so that tools/testing/selftests/mm/hmm-tests
 * runs against it unmodified, but does none of the memory management
 * itself: gmem resolves its faults (gmem_dev_fault()), migrates
 * (gmem_prefetch()), evicts, invalidates and snapshots.  What is left here
 * is a device: a page table, memory, and the copies an MMU and a copy
 * engine would do.  Documentation/mm/gmem.rst, "Writing a driver", walks
 * through it.
 *
 * The device's page table is an XArray per address space, indexed by
 * virtual page number, each entry a host pfn or an index into the device's
 * memory, with its protection.  Its XArray lock is the device's MMU lock:
 * gmem's @invalidate takes it, and every access the device makes to a
 * page it found in its table is made under it, so no page is touched
 * after an invalidation returned (and core MM freed or moved it).
 */

#include <linux/gmem.h>
#include <linux/highmem.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/xarray.h>

#include "test_hmm_uapi.h"

#define DMIRROR_NDEVICES	2

/* A page-table entry: a host pfn or a device page index, and its access. */
#define DPTE_WRITE		1UL
#define DPTE_DEVMEM		2UL
#define DPTE_SHIFT		2

static unsigned int dram_mib = 64;
module_param(dram_mib, uint, 0444);
MODULE_PARM_DESC(dram_mib, "Memory of each device, in MiB (default 64)");

/* One device: its memory and its character device. */
struct dmirror_device {
	struct gmem_dev *gdev;
	struct miscdevice misc;
	char name[16];
	void *mem;		/* dram_mib MiB, device page i at i * PAGE_SIZE */
	unsigned long npages;
};

/* An open file: the calling process's address space on one device. */
struct dmirror {
	struct dmirror_device *mdev;
	struct gmem_ctx *ctx;
	struct xarray *pt;	/* the context's page table (ctx_create) */
};

static struct dmirror_device dmirror_devices[DMIRROR_NDEVICES];

static void *dmirror_devpage(struct dmirror_device *mdev, unsigned long idx)
{
	return mdev->mem + idx * PAGE_SIZE;
}

/* ---- the device MMU, as gmem drives it (struct gmem_dev_ops) ---- */

static int dmirror_ctx_create(void *drvdata, struct mm_struct *mm, void **ctx)
{
	struct xarray *pt = kmalloc(sizeof(*pt), GFP_KERNEL);

	if (!pt)
		return -ENOMEM;
	xa_init(pt);
	*ctx = pt;
	return 0;
}

static void dmirror_ctx_destroy(void *drvdata, void *ctx)
{
	xa_destroy(ctx);
	kfree(ctx);
}

/* Reserves the entries @map will fill: it must not allocate. */
static int dmirror_prepare(void *drvdata, void *ctx, unsigned long start,
			   unsigned long end)
{
	unsigned long i;
	int ret;

	for (i = start >> PAGE_SHIFT; i < end >> PAGE_SHIFT; i++) {
		ret = xa_reserve(ctx, i, GFP_KERNEL);
		if (ret)
			return ret;
	}
	return 0;
}

static int dmirror_map(void *drvdata, void *ctx, unsigned long va,
		       const unsigned long *pfns, unsigned long npages,
		       unsigned int prot)
{
	unsigned long flags = prot & GMEM_PROT_WRITE ? DPTE_WRITE : 0;
	struct xarray *pt = ctx;
	unsigned long i;
	void *old;

	xa_lock(pt);
	for (i = 0; i < npages; i++) {
		unsigned long pte = pfns[i] << DPTE_SHIFT | flags;

		if (pfns[i] & GMEM_PFN_DEVMEM)
			pte = (pfns[i] & ~GMEM_PFN_DEVMEM) << DPTE_SHIFT |
			      flags | DPTE_DEVMEM;
		/* Reserved by @prepare unless invalidated since: no allocation. */
		old = __xa_store(pt, (va >> PAGE_SHIFT) + i, xa_mk_value(pte),
				 GFP_NOWAIT);
		if (xa_is_err(old)) {
			xa_unlock(pt);
			return -EAGAIN;
		}
	}
	xa_unlock(pt);
	return 0;
}

static void dmirror_invalidate(void *drvdata, void *ctx, unsigned long start,
			       unsigned long end)
{
	struct xarray *pt = ctx;
	unsigned long i;
	void *entry;

	xa_lock(pt);
	xa_for_each_range(pt, i, entry, start >> PAGE_SHIFT,
			  (end >> PAGE_SHIFT) - 1)
		__xa_erase(pt, i);
	xa_unlock(pt);
}

static void dmirror_copy_to_dev(void *drvdata, const unsigned long *dst_idx,
				const unsigned long *src_pfns,
				unsigned long npages)
{
	struct dmirror_device *mdev = drvdata;
	unsigned long i;

	for (i = 0; i < npages; i++) {
		void *dst = dmirror_devpage(mdev, dst_idx[i]);

		if (src_pfns[i] == GMEM_PFN_NONE)
			memset(dst, 0, PAGE_SIZE);
		else
			memcpy_from_page(dst, pfn_to_page(src_pfns[i]), 0,
					 PAGE_SIZE);
	}
}

static void dmirror_copy_from_dev(void *drvdata, const unsigned long *dst_pfns,
				  const unsigned long *src_idx,
				  unsigned long npages)
{
	struct dmirror_device *mdev = drvdata;
	unsigned long i;

	for (i = 0; i < npages; i++)
		memcpy_to_page(pfn_to_page(dst_pfns[i]), 0,
			       dmirror_devpage(mdev, src_idx[i]), PAGE_SIZE);
}

static const struct gmem_dev_ops dmirror_ops = {
	.ctx_create	= dmirror_ctx_create,
	.ctx_destroy	= dmirror_ctx_destroy,
	.prepare	= dmirror_prepare,
	.map		= dmirror_map,
	.invalidate	= dmirror_invalidate,
	.copy_to_dev	= dmirror_copy_to_dev,
	.copy_from_dev	= dmirror_copy_from_dev,
};

/* ---- the device's accesses: READ and WRITE ---- */

/*
 * Copies pages [@start, @end) between the device's view and @buf, as far
 * as its page table maps them (writable, for @write; in its own memory,
 * for @local), under its MMU lock.  Returns the pages done; fewer than
 * asked if one is not mapped so.
 */
static unsigned long dmirror_access(struct dmirror *dmirror,
				    unsigned long start, unsigned long end,
				    void *buf, bool write, bool local)
{
	unsigned long i, n = 0;

	xa_lock(dmirror->pt);
	for (i = start >> PAGE_SHIFT; i < end >> PAGE_SHIFT; i++, n++) {
		void *entry = xa_load(dmirror->pt, i);
		unsigned long pte, pfn;
		void *page;

		if (!xa_is_value(entry))
			break;
		pte = xa_to_value(entry);
		if ((write && !(pte & DPTE_WRITE)) ||
		    (local && !(pte & DPTE_DEVMEM)))
			break;
		pfn = pte >> DPTE_SHIFT;
		if (pte & DPTE_DEVMEM)
			page = dmirror_devpage(dmirror->mdev, pfn);
		else
			page = kmap_local_pfn(pfn);
		if (write)
			memcpy(page, buf + n * PAGE_SIZE, PAGE_SIZE);
		else
			memcpy(buf + n * PAGE_SIZE, page, PAGE_SIZE);
		if (!(pte & DPTE_DEVMEM))
			kunmap_local(page);
	}
	xa_unlock(dmirror->pt);
	return n;
}

/*
 * One round of device faults: every page of [@start, @end) the device's
 * table lacks (or has read-only, for @write) is faulted through gmem,
 * which maps the block around it.
 */
static int dmirror_fault(struct dmirror *dmirror, unsigned long start,
			 unsigned long end, bool write)
{
	unsigned long addr;
	long ret;

	for (addr = start; addr < end; addr += PAGE_SIZE) {
		void *entry = xa_load(dmirror->pt, addr >> PAGE_SHIFT);

		if (xa_is_value(entry) &&
		    (!write || xa_to_value(entry) & DPTE_WRITE))
			continue;
		ret = gmem_dev_fault(dmirror->ctx, addr,
				     write ? GMEM_FAULT_WRITE : 0);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* READ and WRITE: the device accesses the range, faulting what it lacks. */
static int dmirror_rw(struct dmirror *dmirror, struct hmm_dmirror_cmd *cmd,
		      bool write)
{
	unsigned long size = cmd->npages << PAGE_SHIFT;
	unsigned long start = cmd->addr, end = start + size;
	void *buf;
	int ret = 0;

	buf = kvmalloc(size, GFP_KERNEL | __GFP_NOWARN);
	if (!buf)
		return -ENOMEM;
	if (write && copy_from_user(buf, u64_to_user_ptr(cmd->ptr), size)) {
		ret = -EFAULT;
		goto out;
	}
	for (;;) {
		cmd->cpages += dmirror_access(dmirror, start, end,
					      buf + (start - cmd->addr), write,
					      false);
		start = cmd->addr + (cmd->cpages << PAGE_SHIFT);
		if (start >= end)
			break;
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		ret = dmirror_fault(dmirror, start, end, write);
		if (ret)
			break;
		cmd->faults++;
	}
	if (!ret && !write && copy_to_user(u64_to_user_ptr(cmd->ptr), buf, size))
		ret = -EFAULT;
out:
	kvfree(buf);
	return ret;
}

/* ---- migration, snapshot and eviction: asked of gmem ---- */

/* Each page's GMEM_PAGE_* state into @state (npages bytes, kvmalloc'ed). */
static int dmirror_states(struct dmirror *dmirror, struct hmm_dmirror_cmd *cmd,
			  u8 **state)
{
	int ret;

	*state = kvmalloc(cmd->npages, GFP_KERNEL | __GFP_NOWARN);
	if (!*state)
		return -ENOMEM;
	ret = gmem_snapshot(dmirror->ctx, cmd->addr,
			    cmd->addr + (cmd->npages << PAGE_SHIFT), *state);
	if (ret)
		kvfree(*state);
	return ret;
}

static unsigned long dmirror_count_local(const u8 *state, unsigned long n)
{
	unsigned long i, local = 0;

	for (i = 0; i < n; i++)
		local += !!(state[i] & GMEM_PAGE_DEVMEM);
	return local;
}

/*
 * MIGRATE_TO_DEV: the range's pages in host memory move into the device's
 * memory and are mapped there; the call returns what the device reads
 * there, without faulting.  A page that is not in the device's memory
 * then (shared or page-cache memory, or another device's) fails it with
 * -ENOENT, as test_hmm does.
 */
static int dmirror_migrate_to_dev(struct dmirror *dmirror,
				  struct hmm_dmirror_cmd *cmd)
{
	unsigned long size = cmd->npages << PAGE_SHIFT;
	unsigned long n;
	void *buf;
	int ret;

	ret = gmem_prefetch(dmirror->ctx, cmd->addr, cmd->addr + size,
			    GMEM_PREFETCH_NO_PEER);
	if (ret)
		return ret == -EFAULT ? -EINVAL : ret;
	buf = kvmalloc(size, GFP_KERNEL | __GFP_NOWARN);
	if (!buf)
		return -ENOMEM;
	n = dmirror_access(dmirror, cmd->addr, cmd->addr + size, buf, false,
			   true);
	if (n < cmd->npages)
		ret = -ENOENT;
	else if (copy_to_user(u64_to_user_ptr(cmd->ptr), buf, size))
		ret = -EFAULT;
	cmd->cpages = n;
	kvfree(buf);
	return ret;
}

/* MIGRATE_TO_SYS: the device's pages in the range go home; cpages moved. */
static int dmirror_migrate_to_sys(struct dmirror *dmirror,
				  struct hmm_dmirror_cmd *cmd)
{
	unsigned long end = cmd->addr + (cmd->npages << PAGE_SHIFT);
	unsigned long before;
	u8 *state;
	int ret;

	ret = dmirror_states(dmirror, cmd, &state);
	if (ret)
		return ret;
	before = dmirror_count_local(state, cmd->npages);
	ret = gmem_prefetch(dmirror->ctx, cmd->addr, end, GMEM_PREFETCH_TO_HOST);
	if (ret == -EFAULT)
		ret = -EINVAL;
	if (!ret)
		ret = gmem_snapshot(dmirror->ctx, cmd->addr, end, state);
	if (!ret)
		cmd->cpages = before - min(before, dmirror_count_local(state, cmd->npages));
	kvfree(state);
	return ret;
}

/* test_hmm's snapshot encoding of a GMEM_PAGE_* state. */
static u8 dmirror_prot(u8 state)
{
	u8 prot;

	if (state & GMEM_PAGE_ERROR)
		return HMM_DMIRROR_PROT_ERROR;
	if (state == GMEM_PAGE_NONE)
		return HMM_DMIRROR_PROT_NONE;
	prot = state & GMEM_PAGE_WRITE ? HMM_DMIRROR_PROT_WRITE :
					 HMM_DMIRROR_PROT_READ;
	if (state & GMEM_PAGE_DEVMEM)
		prot |= HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL;
	else if (state & GMEM_PAGE_ZERO)
		prot |= HMM_DMIRROR_PROT_ZERO;
	if (state & GMEM_PAGE_PMD)
		prot |= HMM_DMIRROR_PROT_PMD;
	else if (state & GMEM_PAGE_PUD)
		prot |= HMM_DMIRROR_PROT_PUD;
	return prot;
}

static int dmirror_snapshot(struct dmirror *dmirror,
			    struct hmm_dmirror_cmd *cmd)
{
	unsigned long i;
	u8 *state;
	int ret;

	ret = dmirror_states(dmirror, cmd, &state);
	if (ret)
		return ret;
	for (i = 0; i < cmd->npages; i++)
		state[i] = dmirror_prot(state[i]);
	if (copy_to_user(u64_to_user_ptr(cmd->ptr), state, cmd->npages))
		ret = -EFAULT;
	else
		cmd->cpages = cmd->npages;
	kvfree(state);
	return ret;
}

/* ---- the character device ---- */

static int dmirror_open(struct inode *inode, struct file *file)
{
	struct dmirror_device *mdev = container_of(file->private_data,
						   struct dmirror_device, misc);
	struct dmirror *dmirror;
	int ret;

	dmirror = kzalloc(sizeof(*dmirror), GFP_KERNEL);
	if (!dmirror)
		return -ENOMEM;
	dmirror->mdev = mdev;
	ret = gmem_ctx_attach(mdev->gdev, current->mm, &dmirror->ctx);
	if (ret)
		goto free;
	/* A mirror of the whole address space, as HMM's; faults in place. */
	ret = gmem_ctx_set_policy(dmirror->ctx, GMEM_POLICY_SYSTEM);
	if (!ret)
		ret = gmem_ctx_set_placement(dmirror->ctx, GMEM_PLACE_HOST);
	if (ret)
		goto detach;
	dmirror->pt = gmem_ctx_drvctx(dmirror->ctx);
	file->private_data = dmirror;
	return 0;
detach:
	gmem_ctx_detach(dmirror->ctx);
free:
	kfree(dmirror);
	return ret;
}

static int dmirror_release(struct inode *inode, struct file *file)
{
	struct dmirror *dmirror = file->private_data;

	gmem_ctx_detach(dmirror->ctx);
	kfree(dmirror);
	return 0;
}

/* The device's own pages mapped by the CPU: zeroed, inserted now. */
static int dmirror_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long addr;
	int ret;

	for (addr = vma->vm_start; addr < vma->vm_end; addr += PAGE_SIZE) {
		struct page *page = alloc_page(GFP_KERNEL | __GFP_ZERO);

		if (!page)
			return -ENOMEM;
		ret = vm_insert_page(vma, addr, page);
		put_page(page);
		if (ret)
			return ret;
	}
	return 0;
}

static long dmirror_ioctl(struct file *file, unsigned int command,
			  unsigned long arg)
{
	struct dmirror *dmirror = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct hmm_dmirror_cmd cmd;
	long ret;

	if (copy_from_user(&cmd, uarg, sizeof(cmd)))
		return -EFAULT;
	if (cmd.addr & ~PAGE_MASK || !cmd.npages ||
	    cmd.npages > (ULONG_MAX - cmd.addr) >> PAGE_SHIFT)
		return -EINVAL;
	cmd.cpages = 0;
	cmd.faults = 0;

	switch (command) {
	case HMM_DMIRROR_READ:
		ret = dmirror_rw(dmirror, &cmd, false);
		break;
	case HMM_DMIRROR_WRITE:
		ret = dmirror_rw(dmirror, &cmd, true);
		break;
	case HMM_DMIRROR_MIGRATE_TO_DEV:
		ret = dmirror_migrate_to_dev(dmirror, &cmd);
		break;
	case HMM_DMIRROR_MIGRATE_TO_SYS:
		ret = dmirror_migrate_to_sys(dmirror, &cmd);
		break;
	case HMM_DMIRROR_SNAPSHOT:
		ret = dmirror_snapshot(dmirror, &cmd);
		break;
	case HMM_DMIRROR_RELEASE:
		ret = gmem_dev_evict(dmirror->mdev->gdev);
		ret = ret < 0 ? ret : 0;
		break;
	default:
		return -EINVAL;
	}
	if (ret)
		return ret;
	return copy_to_user(uarg, &cmd, sizeof(cmd)) ? -EFAULT : 0;
}

static const struct file_operations dmirror_fops = {
	.owner		= THIS_MODULE,
	.open		= dmirror_open,
	.release	= dmirror_release,
	.mmap		= dmirror_mmap,
	.unlocked_ioctl	= dmirror_ioctl,
	.llseek		= default_llseek,
};

/* ---- the devices ---- */

static void dmirror_device_remove(struct dmirror_device *mdev)
{
	if (mdev->misc.name)
		misc_deregister(&mdev->misc);
	if (mdev->gdev)
		gmem_dev_unregister(mdev->gdev);
	vfree(mdev->mem);
	memset(mdev, 0, sizeof(*mdev));
}

static int dmirror_device_add(struct dmirror_device *mdev, int id)
{
	int ret;

	mdev->npages = (unsigned long)dram_mib << (20 - PAGE_SHIFT);
	mdev->mem = vzalloc(mdev->npages << PAGE_SHIFT);
	if (!mdev->mem)
		return -ENOMEM;
	snprintf(mdev->name, sizeof(mdev->name), "hmm_dmirror%d", id);
	ret = gmem_dev_register(&dmirror_ops, mdev, mdev->name,
				GMEM_DEV_CAP_DEVMEM | GMEM_DEV_CAP_COPY_ENGINE,
				&mdev->gdev);
	if (ret) {
		mdev->gdev = NULL;
		goto err;
	}
	ret = gmem_dev_add_memory(mdev->gdev, mdev->npages << PAGE_SHIFT);
	if (ret)
		goto err;
	mdev->misc.minor = MISC_DYNAMIC_MINOR;
	mdev->misc.name = mdev->name;
	mdev->misc.fops = &dmirror_fops;
	ret = misc_register(&mdev->misc);
	if (ret) {
		mdev->misc.name = NULL;
		goto err;
	}
	return 0;
err:
	dmirror_device_remove(mdev);
	return ret;
}

static void __exit dmirror_exit(void)
{
	int i;

	for (i = DMIRROR_NDEVICES - 1; i >= 0; i--)
		dmirror_device_remove(&dmirror_devices[i]);
}

static int __init dmirror_init(void)
{
	int i, ret;

	if (!dram_mib || dram_mib > 4096)
		return -EINVAL;
	for (i = 0; i < DMIRROR_NDEVICES; i++) {
		ret = dmirror_device_add(&dmirror_devices[i], i);
		if (ret) {
			while (--i >= 0)
				dmirror_device_remove(&dmirror_devices[i]);
			return ret;
		}
	}
	return 0;
}

module_init(dmirror_init);
module_exit(dmirror_exit);
MODULE_DESCRIPTION("The HMM test device (test_hmm's interface) on gmem");
MODULE_LICENSE("GPL");
