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
 * memory, with its access.  Its XArray lock is the device's MMU lock:
 * gmem's @invalidate takes it, and every access the device makes to a
 * page it found in its table is made under it, so no page is touched
 * after an invalidation returned (and core MM freed or moved it).
 */

#include <linux/gmem.h>
#include <linux/highmem.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/xarray.h>

#include "test_hmm_uapi.h"

/* A page-table entry: a host pfn or a device page index, and its access. */
#define DPTE_WRITE		1UL
#define DPTE_DEVMEM		2UL
#define DPTE_SHIFT		2

static unsigned int dram_mib = 64;
module_param(dram_mib, uint, 0444);
MODULE_PARM_DESC(dram_mib, "Memory of each device, in MiB (default 64)");

/* One device: its memory (page i at mem + i * PAGE_SIZE) and its file. */
struct dmirror_device {
	struct gmem_dev *gdev;
	struct miscdevice misc;
	char name[16];
	void *mem;
};

/*
 * An open file: the opener's address space on one device.  The context
 * holds the mm_struct (its address cannot be reused while it lives).
 */
struct dmirror {
	struct dmirror_device *mdev;
	struct mm_struct *mm;
	struct gmem_ctx *ctx;	/* its driver context: the page table */
};

static struct dmirror_device dmirror_devices[2];
/*
 * Set once every device and file is there: a file opened earlier could
 * outlive a failed init, and the module's code.  (open()'s own put of the
 * module after a refused open still races with the module's freeing, as
 * for any module whose init fails after registering a file.)
 */
static bool dmirror_ready;

/* ---- the device MMU, as gmem drives it (struct gmem_dev_ops) ---- */

static int dmirror_ctx_create(void *drvdata, struct mm_struct *mm, void **ctx)
{
	*ctx = kmalloc(sizeof(struct xarray), GFP_KERNEL);
	if (!*ctx)
		return -ENOMEM;
	xa_init(*ctx);
	return 0;
}

static void dmirror_ctx_destroy(void *drvdata, void *ctx)
{
	xa_destroy(ctx);
	kfree(ctx);
}

/*
 * Allocates the XArray nodes @map will fill (it must not reclaim): a
 * reserved entry in each keeps a node, of XA_CHUNK_SIZE entries, alive.
 */
static int dmirror_prepare(void *drvdata, void *ctx, unsigned long start,
			   unsigned long end)
{
	unsigned long i;
	int ret = 0;

	for (i = start >> PAGE_SHIFT; i < end >> PAGE_SHIFT && !ret;
	     i = (i | (XA_CHUNK_SIZE - 1)) + 1)
		ret = xa_reserve(ctx, i, GFP_KERNEL);
	return ret;
}

static int dmirror_map(void *drvdata, void *ctx, unsigned long va,
		       const unsigned long *pfns, unsigned long npages,
		       unsigned int prot)
{
	unsigned long i, pte, flags = prot & GMEM_PROT_WRITE ? DPTE_WRITE : 0;
	XA_STATE(xas, ctx, va >> PAGE_SHIFT);

	xas_lock(&xas);
	for (i = 0; i < npages && !xas_error(&xas); i++, xas_next(&xas)) {
		pte = (pfns[i] & ~GMEM_PFN_DEVMEM) << DPTE_SHIFT | flags |
		      (pfns[i] & GMEM_PFN_DEVMEM ? DPTE_DEVMEM : 0);
		/* A node @prepare allocated, or GFP_NOWAIT if one went. */
		xas_store(&xas, xa_mk_value(pte));
	}
	xas_unlock(&xas);
	return xas_error(&xas) ? -EAGAIN : 0;
}

static void dmirror_invalidate(void *drvdata, void *ctx, unsigned long start,
			       unsigned long end)
{
	XA_STATE(xas, ctx, start >> PAGE_SHIFT);
	void *entry;

	xas_lock(&xas);
	xas_for_each(&xas, entry, (end >> PAGE_SHIFT) - 1)
		xas_store(&xas, NULL);
	xas_unlock(&xas);
}

static void dmirror_copy_to_dev(void *drvdata, const unsigned long *dst_idx,
				const unsigned long *src_pfns,
				unsigned long npages)
{
	struct dmirror_device *mdev = drvdata;
	unsigned long i;

	for (i = 0; i < npages; i++) {
		void *dst = mdev->mem + dst_idx[i] * PAGE_SIZE;

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
			       mdev->mem + src_idx[i] * PAGE_SIZE, PAGE_SIZE);
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

/* ---- the device's accesses ---- */

/*
 * Copies pages [@start, @end) between the device's view and @buf as far
 * as its page table maps them (writable, for @write; in its own memory,
 * for @local), under its MMU lock.  Returns the pages done.
 */
static unsigned long dmirror_access(struct dmirror *dmirror,
				    unsigned long start, unsigned long end,
				    void *buf, bool write, bool local)
{
	XA_STATE(xas, gmem_ctx_drvctx(dmirror->ctx), start >> PAGE_SHIFT);
	unsigned long n;

	xas_lock(&xas);
	for (n = 0; n < (end - start) >> PAGE_SHIFT; n++) {
		void *entry = n ? xas_next(&xas) : xas_load(&xas), *page;
		unsigned long pte = xa_to_value(entry);

		if (!xa_is_value(entry) || (write && !(pte & DPTE_WRITE)) ||
		    (local && !(pte & DPTE_DEVMEM)))
			break;
		page = pte & DPTE_DEVMEM ?
		       dmirror->mdev->mem + (pte >> DPTE_SHIFT) * PAGE_SIZE :
		       kmap_local_pfn(pte >> DPTE_SHIFT);
		if (write)
			memcpy(page, buf + n * PAGE_SIZE, PAGE_SIZE);
		else
			memcpy(buf + n * PAGE_SIZE, page, PAGE_SIZE);
		if (!(pte & DPTE_DEVMEM))
			kunmap_local(page);
		if (n % XA_CHUNK_SIZE == XA_CHUNK_SIZE - 1) {
			/* Lets invalidations (and the scheduler) in. */
			xas_pause(&xas);
			xas_unlock(&xas);
			cond_resched();
			xas_lock(&xas);
		}
	}
	xas_unlock(&xas);
	return n;
}

/*
 * One pass of device faults: every page of [@start, @end) the device's
 * table lacks (or has read-only, for @write) is faulted through gmem,
 * which maps the block around it.
 */
static int dmirror_fault(struct dmirror *dmirror, unsigned long start,
			 unsigned long end, bool write)
{
	unsigned long addr;
	long ret;

	for (addr = start; addr < end; addr += PAGE_SIZE) {
		void *entry = xa_load(gmem_ctx_drvctx(dmirror->ctx),
				      addr >> PAGE_SHIFT);

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
		      void *buf, bool write)
{
	unsigned long size = cmd->npages * PAGE_SIZE;
	unsigned long start = cmd->addr, end = start + size;
	int ret;

	if (write && copy_from_user(buf, u64_to_user_ptr(cmd->ptr), size))
		return -EFAULT;
	for (;;) {
		cmd->cpages += dmirror_access(dmirror, start, end,
					      buf + (start - cmd->addr), write,
					      false);
		start = cmd->addr + cmd->cpages * PAGE_SIZE;
		if (start >= end)
			break;
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = dmirror_fault(dmirror, start, end, write);
		if (ret)
			return ret;
		cmd->faults++;
	}
	return !write && copy_to_user(u64_to_user_ptr(cmd->ptr), buf, size) ?
	       -EFAULT : 0;
}

/* ---- migration, snapshot and eviction: asked of gmem ---- */

/*
 * MIGRATE_TO_DEV: the range's pages in host memory move into the device's
 * memory and are mapped there; the call returns what the device reads
 * there, without faulting.  A page that is not in the device's memory
 * then (shared or page-cache memory, or another device's) fails it with
 * -ENOENT, as test_hmm does.
 */
static int dmirror_migrate_to_dev(struct dmirror *dmirror,
				  struct hmm_dmirror_cmd *cmd, void *buf)
{
	unsigned long size = cmd->npages * PAGE_SIZE;
	int ret = gmem_prefetch(dmirror->ctx, cmd->addr, cmd->addr + size,
				GMEM_PREFETCH_NO_PEER);

	if (ret)
		return ret == -EFAULT ? -EINVAL : ret;
	cmd->cpages = dmirror_access(dmirror, cmd->addr, cmd->addr + size,
				     buf, false, true);
	return cmd->cpages < cmd->npages ? -ENOENT :
	       copy_to_user(u64_to_user_ptr(cmd->ptr), buf, size) ? -EFAULT : 0;
}

/* Each page's GMEM_PAGE_* state into @state; returns those on the device. */
static long dmirror_states(struct dmirror *dmirror,
			   struct hmm_dmirror_cmd *cmd, u8 *state)
{
	unsigned long i, local = 0;
	int ret = gmem_snapshot(dmirror->ctx, cmd->addr,
				cmd->addr + cmd->npages * PAGE_SIZE, state);

	for (i = 0; i < cmd->npages && !ret; i++)
		local += !!(state[i] & GMEM_PAGE_DEVMEM);
	return ret ? ret : local;
}

/* MIGRATE_TO_SYS: the device's pages in the range go home; cpages moved. */
static int dmirror_migrate_to_sys(struct dmirror *dmirror,
				  struct hmm_dmirror_cmd *cmd, u8 *state)
{
	long before = dmirror_states(dmirror, cmd, state), after = before;

	if (before >= 0)
		after = gmem_prefetch(dmirror->ctx, cmd->addr,
				      cmd->addr + cmd->npages * PAGE_SIZE,
				      GMEM_PREFETCH_TO_HOST) ?:
			dmirror_states(dmirror, cmd, state);
	if (after < 0)
		return after == -EFAULT ? -EINVAL : after;
	cmd->cpages = before - min(before, after);
	return 0;
}

/* test_hmm's snapshot bits for gmem's page states. */
static const u8 dmirror_prot[][2] = {
	{ GMEM_PAGE_READ, HMM_DMIRROR_PROT_READ },
	{ GMEM_PAGE_WRITE, HMM_DMIRROR_PROT_WRITE },
	{ GMEM_PAGE_ZERO, HMM_DMIRROR_PROT_ZERO },
	{ GMEM_PAGE_PMD, HMM_DMIRROR_PROT_PMD },
	{ GMEM_PAGE_PUD, HMM_DMIRROR_PROT_PUD },
	{ GMEM_PAGE_DEVMEM, HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL },
};

/* SNAPSHOT: the states, in test_hmm's encoding. */
static int dmirror_snapshot(struct dmirror *dmirror,
			    struct hmm_dmirror_cmd *cmd, u8 *state)
{
	long ret = dmirror_states(dmirror, cmd, state);
	unsigned long i;

	if (ret < 0)
		return ret;
	for (i = 0; i < cmd->npages; i++) {
		u8 s = state[i], p = 0, b;

		for (b = 0; b < ARRAY_SIZE(dmirror_prot); b++)
			p |= s & dmirror_prot[b][0] ? dmirror_prot[b][1] : 0;
		state[i] = s & GMEM_PAGE_ERROR ? HMM_DMIRROR_PROT_ERROR : p;
	}
	cmd->cpages = cmd->npages;
	return copy_to_user(u64_to_user_ptr(cmd->ptr), state, cmd->npages) ?
	       -EFAULT : 0;
}

/* ---- the character device ---- */

static int dmirror_open(struct inode *inode, struct file *file)
{
	struct dmirror *dmirror;
	int ret;

	/* Pairs with dmirror_init()'s release: the devices are complete. */
	if (!smp_load_acquire(&dmirror_ready))
		return -ENODEV;
	dmirror = kzalloc(sizeof(*dmirror), GFP_KERNEL);
	if (!dmirror)
		return -ENOMEM;
	dmirror->mdev = container_of(file->private_data,
				     struct dmirror_device, misc);
	dmirror->mm = current->mm;
	ret = gmem_ctx_attach(dmirror->mdev->gdev, current->mm, &dmirror->ctx);
	if (!ret) {
		/* A mirror of any mapping, as HMM's; faults map in place. */
		ret = gmem_ctx_set_policy(dmirror->ctx, GMEM_POLICY_SYSTEM) ?:
		      gmem_ctx_set_placement(dmirror->ctx, GMEM_PLACE_HOST);
		if (ret)
			gmem_ctx_detach(dmirror->ctx);
	}
	if (ret) {
		kfree(dmirror);
		return ret;
	}
	file->private_data = dmirror;
	return 0;
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
	int ret = 0;

	for (addr = vma->vm_start; addr < vma->vm_end && !ret; addr += PAGE_SIZE) {
		struct page *page;

		if (fatal_signal_pending(current))
			return -EINTR;
		page = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
		if (!page)
			return -ENOMEM;
		ret = vm_insert_page(vma, addr, page);
		put_page(page);
	}
	return ret;
}

static long dmirror_ioctl(struct file *file, unsigned int command,
			  unsigned long arg)
{
	struct dmirror *dmirror = file->private_data;
	struct hmm_dmirror_cmd cmd;
	unsigned long size = 0;
	void *buf;
	long ret;

	/* Another process's (fork, fd passing) sees none of the opener's. */
	if (current->mm != dmirror->mm)
		return -EBADF;
	if (copy_from_user(&cmd, (void __user *)arg, sizeof(cmd)))
		return -EFAULT;
	if (cmd.addr & ~PAGE_MASK || !cmd.npages ||
	    cmd.npages > (ULONG_MAX - cmd.addr) >> PAGE_SHIFT)
		return -EINVAL;
	cmd.cpages = cmd.faults = 0;
	/* What the device reads or writes, or a state per page. */
	switch (command) {
	case HMM_DMIRROR_SNAPSHOT:
	case HMM_DMIRROR_MIGRATE_TO_SYS:
		size = cmd.npages;
		break;
	case HMM_DMIRROR_READ:
	case HMM_DMIRROR_WRITE:
	case HMM_DMIRROR_MIGRATE_TO_DEV:
		size = cmd.npages * PAGE_SIZE;
		break;
	case HMM_DMIRROR_RELEASE:
		break;
	default:
		return -EINVAL;
	}
	/* Small pages: huge vmalloc pages cost compaction for no gain here. */
	buf = size ? __vmalloc(size, GFP_KERNEL_ACCOUNT | __GFP_NOWARN |
				     __GFP_RETRY_MAYFAIL) : NULL;
	if (size && !buf)
		return -ENOMEM;
	switch (command) {
	case HMM_DMIRROR_READ:
	case HMM_DMIRROR_WRITE:
		ret = dmirror_rw(dmirror, &cmd, buf,
				 command == HMM_DMIRROR_WRITE);
		break;
	case HMM_DMIRROR_MIGRATE_TO_DEV:
		ret = dmirror_migrate_to_dev(dmirror, &cmd, buf);
		break;
	case HMM_DMIRROR_MIGRATE_TO_SYS:
		ret = dmirror_migrate_to_sys(dmirror, &cmd, buf);
		break;
	case HMM_DMIRROR_SNAPSHOT:
		ret = dmirror_snapshot(dmirror, &cmd, buf);
		break;
	case HMM_DMIRROR_RELEASE:
		ret = min(gmem_dev_evict(dmirror->mdev->gdev), 0L);
		break;
	}
	vfree(buf);
	/* The results only on success, as test_hmm. */
	return ret ?: copy_to_user((void __user *)arg, &cmd, sizeof(cmd)) ?
	       -EFAULT : 0;
}

static const struct file_operations dmirror_fops = {
	.owner		= THIS_MODULE,
	.open		= dmirror_open,
	.release	= dmirror_release,
	.mmap		= dmirror_mmap,
	.unlocked_ioctl	= dmirror_ioctl,
};

/* ---- the devices ---- */

/* The user interface goes first: no call reaches a device going away. */
static void dmirror_device_remove(struct dmirror_device *mdev)
{
	if (!IS_ERR_OR_NULL(mdev->misc.this_device))
		misc_deregister(&mdev->misc);
	if (mdev->gdev)
		gmem_dev_unregister(mdev->gdev);
	vfree(mdev->mem);
}

static int dmirror_device_add(struct dmirror_device *mdev, int id)
{
	unsigned long size = (unsigned long)dram_mib << 20;

	mdev->mem = vzalloc(size);
	if (!mdev->mem)
		return -ENOMEM;
	snprintf(mdev->name, sizeof(mdev->name), "hmm_dmirror%d", id);
	mdev->misc = (struct miscdevice){ .minor = MISC_DYNAMIC_MINOR,
		.name = mdev->name, .fops = &dmirror_fops };
	/* Sets mdev->gdev only on success. */
	return gmem_dev_register(&dmirror_ops, mdev, mdev->name,
				 GMEM_DEV_CAP_DEVMEM | GMEM_DEV_CAP_COPY_ENGINE,
				 &mdev->gdev) ?:
	       gmem_dev_add_memory(mdev->gdev, size);
}

static void dmirror_exit(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(dmirror_devices); i++)
		dmirror_device_remove(&dmirror_devices[i]);
}

static int __init dmirror_init(void)
{
	int i, ret = 0;

	for (i = 0; i < ARRAY_SIZE(dmirror_devices) && !ret; i++)
		ret = dmirror_device_add(&dmirror_devices[i], i);
	/* The files last: none opens before every device is complete. */
	for (i = 0; i < ARRAY_SIZE(dmirror_devices) && !ret; i++)
		ret = misc_register(&dmirror_devices[i].misc);
	if (ret)
		dmirror_exit();
	/* Publishes the devices to dmirror_open()'s acquire. */
	smp_store_release(&dmirror_ready, !ret);
	return ret;
}

module_init(dmirror_init);
module_exit(dmirror_exit);
MODULE_DESCRIPTION("The HMM test device (test_hmm's interface) on gmem");
MODULE_LICENSE("GPL");
