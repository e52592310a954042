/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gmem: one virtual address space shared by the CPU and accelerators.
 *
 * Two interfaces live here:
 *
 *  - the core-MM hook, built into the kernel (mm/gmem/gmem_hook.c), through
 *    which mmap(MAP_PEER_SHARED) reaches gmem.ko;
 *  - the driver interface exported by gmem.ko: a device driver fills in a
 *    struct gmem_dev_ops and registers a device.  Rust drivers use the same
 *    operations through the GmemDevOps trait (mm/gmem/gmem_dev.rs).
 *
 * See Documentation/mm/gmem.rst.
 */
#ifndef _LINUX_GMEM_H
#define _LINUX_GMEM_H

#include <linux/errno.h>
#include <linux/types.h>
#include <uapi/linux/gmem.h>

struct file;
struct mm_struct;
struct module;
struct vm_area_struct;

/**
 * struct gmem_mm_hooks - what core MM calls in gmem.ko
 * @owner: module providing the hooks; pinned for the duration of a call
 * @peer_shared_mapped: a MAP_PEER_SHARED mapping of @len bytes at @start was
 *	created in @mm.  Called with mmap_lock held for write.  An error undoes
 *	the mapping and is returned by mmap().
 */
struct gmem_mm_hooks {
	struct module *owner;
	int (*peer_shared_mapped)(struct mm_struct *mm, unsigned long start,
				  unsigned long len);
};

#ifdef CONFIG_GMEM_HOOK
int gmem_peer_shared_check(struct file *file, unsigned long flags);
int gmem_peer_shared_mapped(struct mm_struct *mm, unsigned long start,
			    unsigned long len);
int gmem_register_mm_hooks(const struct gmem_mm_hooks *hooks);
void gmem_unregister_mm_hooks(const struct gmem_mm_hooks *hooks);
int gmem_discard(struct mm_struct *mm, unsigned long start, size_t len);
int gmem_wrprotect(struct mm_struct *mm, unsigned long start,
		   unsigned long end);
bool gmem_vma_device_reachable(struct vm_area_struct *vma);
unsigned long gmem_split_anon_folio(struct vm_area_struct *vma,
				    unsigned long hmm_pfn);
#else
static inline int gmem_peer_shared_check(struct file *file,
					 unsigned long flags)
{
	return -EOPNOTSUPP;
}

static inline int gmem_peer_shared_mapped(struct mm_struct *mm,
					  unsigned long start,
					  unsigned long len)
{
	return -EOPNOTSUPP;
}
#endif

/* Device capabilities, reported at registration. */
#define GMEM_DEV_CAP_REPLAYABLE		(1U << 0) /* faults pause and retry */
#define GMEM_DEV_CAP_DEVMEM		(1U << 1) /* has its own memory */
#define GMEM_DEV_CAP_COPY_ENGINE	(1U << 2) /* can copy host<->device */
#define GMEM_DEV_CAP_ALL		(GMEM_DEV_CAP_REPLAYABLE | \
					 GMEM_DEV_CAP_DEVMEM | \
					 GMEM_DEV_CAP_COPY_ENGINE)

/*
 * In the pfn arrays gmem hands to @map: a page of the device's own memory,
 * by index (0 = first page given to gmem_dev_add_memory()), not a host pfn.
 */
#define GMEM_PFN_DEVMEM			(1UL << 63)
/* In @copy_to_dev source arrays: no source, fill the page with zeros. */
#define GMEM_PFN_NONE			(~0UL)

/* Protection of a device mapping. */
#define GMEM_PROT_READ			(1U << 0)
#define GMEM_PROT_WRITE			(1U << 1)

/* A device known to gmem; opaque to drivers. */
struct gmem_dev;

/**
 * struct gmem_dev_clock - a device's own account of its work
 * @ns: device time so far, in ns: what its work (jobs, copies) took on the
 *	device, advancing as the device works, not with wall time
 * @to_dev_bytes: bytes over the host link towards the device (in-place
 *	reads, copies in)
 * @to_host_bytes: bytes over the link the other way
 * @local_bytes: bytes read or written in the device's own memory
 */
struct gmem_dev_clock {
	u64 ns;
	u64 to_dev_bytes;
	u64 to_host_bytes;
	u64 local_bytes;
};

/**
 * struct gmem_dev_ops - the device MMU, as gmem drives it
 * @ctx_create: create the device's context (its page table) for address
 *	space @mm and return it in @ctx.  May sleep.
 * @ctx_destroy: tear down a context; no other op runs on it concurrently
 *	or afterwards.  May sleep.
 * @prepare: optional; allocate what mapping [@start, @end) will need (page
 *	table levels).  Called before @map without gmem locks; may sleep.
 * @map: map @npages pages at device virtual address @va (page aligned)
 *	with @prot (GMEM_PROT_*); @pfns holds host pfns, or GMEM_PFN_DEVMEM |
 *	index for pages of the device's own memory.  Must not
 *	allocate memory that can enter reclaim: invalidations run from reclaim
 *	and take the lock @map is called under.  -EAGAIN (something @prepare
 *	set up is gone again) makes gmem retry the fault.
 * @invalidate: remove every mapping in [@start, @end) and flush the device
 *	TLB before returning.  Must not sleep: it runs from mmu notifiers.
 *	The device maps nothing but what @map gave it, so gmem skips the call
 *	for a context that has nothing mapped in the range.
 * @copy_to_dev: device memory only (GMEM_DEV_CAP_DEVMEM): copy @npages
 *	host pages (@src_pfns, or GMEM_PFN_NONE for zeros) into device pages
 *	(@dst_idx), with the device's copy engine, from device faults and
 *	prefetch.  Must not fail; may sleep.  @npages may be 0.
 * @copy_from_dev: the other way, device pages @src_idx to host @dst_pfns,
 *	from CPU faults and eviction: it must not take any lock held around
 *	device faults, or CPU and device faults could livelock.
 * @read_clock: optional; fill in @clk.  gmem times thrashing on @clk->ns,
 *	so that a device behind a slow host (or a simulated one) meets the
 *	policy it would on hardware, and shows it in debugfs gmem/devices.
 *	Without it gmem times thrashing in wall time.  @clk->ns must never go
 *	back.  Called often, from faults and eviction, sometimes under gmem's
 *	page-table lock (like @map) and its device registry's lock (debugfs):
 *	must be cheap, must not sleep and must not call into gmem.
 *
 * @drvdata is the pointer given to gmem_dev_register().  gmem calls @map
 * and @invalidate under the address space's page-table lock, so they are
 * serialised against each other for all contexts of one address space.
 *
 * A context is created by gmem_ctx_attach() (for example when a process
 * opens the device) and destroyed by gmem_ctx_detach(), or earlier by
 * gmem_dev_unregister(), after which gmem_ctx_drvctx() must not be used.
 * gmem_dev_fault() resolves a device fault: it returns the number of pages
 * it mapped around @addr, or -EFAULT (no mapping), -EPERM (write to
 * read-only memory), -EACCES (outside the context's policy, or memory no
 * device may reach: VM_IO, VM_PFNMAP, memfd_secret), -ESRCH (the address
 * space is exiting), -ENODEV (context torn down or device going away),
 * -EAGAIN.
 *
 * gmem_dev_fault_batch() resolves @n faults of one context at once, as a
 * device with a fault buffer reports them (at most GMEM_FAULT_BATCH_MAX):
 * it sorts them by 2 MiB block, serves each block once (a write fault
 * serving the reads of its block too) and sets each entry's @result to 0
 * or to the error gmem_dev_fault() would have returned.  It returns the
 * number of faults served after removing duplicates, or -EINVAL (@n is 0
 * or too large, unknown flags: no entry is looked at) or -ENODEV (the
 * context was torn down: no entry is resolved).  Faults of one block
 * coming from many threads of the device cost one fault.  May sleep.
 *
 * gmem_dev_notify_access() is a device's access-counter notification: the
 * device has read or written the block around @addr in host memory, in
 * place, more than its threshold (as the access counters of NVIDIA GPUs
 * since Volta report).  gmem migrates the block to the device's memory if
 * the context may migrate (not GMEM_PLACE_HOST), the range's hints allow
 * it (no preferred location elsewhere, not read-mostly; accessed-by does
 * not prevent it), the block is not held back for thrashing and the
 * device has free memory for it (it never evicts for a notification), and
 * the block can move (anonymous, not watched by userfaultfd, no KSM pages).
 * It returns the pages moved, 0 if the block stays (mapped as before), or
 * the errors of gmem_dev_fault().  The notification is advice: the device
 * goes on either way.  May sleep.
 *
 * gmem_dev_notify_use() is the same for the device's own memory: the device
 * has used the block around @addr there a lot since it last said so.  A
 * resident block faults no more, so nothing else tells gmem it is in use:
 * the block's memory becomes the most recently used in eviction order, and
 * stays ahead of blocks used once (see Documentation/mm/gmem.rst, "Access
 * counters").  Returns 0, or -ENODEV, -ESRCH.  Does not sleep on anything
 * but gmem's locks.
 *
 * gmem_prefetch() moves [@start, @end) (page aligned, and nothing around
 * it) into the context's device memory and maps it there, taking pages
 * another device holds too, or with GMEM_PREFETCH_TO_HOST brings the
 * context's device pages in it home.  GMEM_PREFETCH_NO_PEER moves only
 * the range's pages in host memory (as HMM drivers migrate system memory)
 * and then maps what is present, faulting nothing in: a driver
 * prefetching ahead of its jobs need not take a peer's working set.  Pages
 * that cannot move (shared or page-cache pages, hugetlb, KSM) stay where
 * they are.  Returns 0, or -EINVAL (bad
 * range or flags), -EFAULT (a hole or a page no access may read),
 * -EACCES, -ENOMEM, -EINTR, -ENODEV, -ESRCH; what moved before an error
 * stays moved.  May sleep.
 *
 * gmem_snapshot() reports, in one GMEM_PAGE_* byte per page of
 * [@start, @end), where each page is and how the device could map it now,
 * as hmm_range_fault() sees it without faulting anything: present or not,
 * writable, the zero page, a huge CPU mapping, in this device's memory
 * (another device's pages read as not present), or GMEM_PAGE_ERROR for
 * holes, PROT_NONE and memory the context's policy or gmem's rules keep
 * from devices.  Like a fault, it covers the VMAs it looks at with gmem
 * regions (their notifiers).  Returns 0 or -EINVAL, -EINTR, -ENODEV,
 * -ESRCH, -ENOMEM, -EAGAIN (invalidations kept overtaking it).  May sleep.
 *
 * gmem_dev_evict() moves the pages of the device's memory back to host
 * memory now, whoever maps them (as unregistration does, but the device
 * stays), once: best effort, not a barrier.  Pages being faulted or
 * migrated at that moment, pinned memory and read duplicates (copies,
 * dropped with their mappings by the next invalidation) stay, and faults
 * running meanwhile may take memory again.  Returns the number of pages
 * moved, or -ENODEV, -EINVAL (no device memory), -EINTR.  May sleep.
 *
 * gmem_dev_unregister() first waits for the gmem calls in flight on the
 * device (faults, prefetches, hints from /dev/gmem; new ones get -ENODEV),
 * then tears the contexts down and moves the pages in device memory back
 * to host memory, calling copy_from_dev.  So the driver keeps its ops and
 * storage until it returns, does not call it while one of its own faults
 * waits for that call, and does not attach contexts concurrently with it.
 */
struct gmem_dev_ops {
	int (*ctx_create)(void *drvdata, struct mm_struct *mm, void **ctx);
	void (*ctx_destroy)(void *drvdata, void *ctx);
	int (*prepare)(void *drvdata, void *ctx, unsigned long start,
		       unsigned long end);
	int (*map)(void *drvdata, void *ctx, unsigned long va,
		   const unsigned long *pfns, unsigned long npages,
		   unsigned int prot);
	void (*invalidate)(void *drvdata, void *ctx, unsigned long start,
			   unsigned long end);
	void (*copy_to_dev)(void *drvdata, const unsigned long *dst_idx,
			    const unsigned long *src_pfns, unsigned long npages);
	void (*copy_from_dev)(void *drvdata, const unsigned long *dst_pfns,
			      const unsigned long *src_idx,
			      unsigned long npages);
	void (*read_clock)(void *drvdata, struct gmem_dev_clock *clk);
};

int gmem_dev_register(const struct gmem_dev_ops *ops, void *drvdata,
		      const char *name, u32 caps, struct gmem_dev **devp);
void gmem_dev_unregister(struct gmem_dev *dev);
u32 gmem_dev_id(const struct gmem_dev *dev);

/* A device's view of one address space; opaque to drivers. */
struct gmem_ctx;

/* Which memory a context may reach. */
#define GMEM_POLICY_PEER_SHARED		0 /* MAP_PEER_SHARED regions only */
#define GMEM_POLICY_SYSTEM		1 /* any mapping, as HMM mirroring */

/* Access of a device fault. */
#define GMEM_FAULT_WRITE		(1U << 0)

int gmem_ctx_attach(struct gmem_dev *dev, struct mm_struct *mm,
		    struct gmem_ctx **ctxp);
void gmem_ctx_detach(struct gmem_ctx *ctx);
void *gmem_ctx_drvctx(struct gmem_ctx *ctx);
int gmem_ctx_set_policy(struct gmem_ctx *ctx, u32 policy);

/* Where a context's device faults put pages. */
#define GMEM_PLACE_MIGRATE		0 /* to device memory (default) */
#define GMEM_PLACE_HOST			1 /* in place, never migrate */

int gmem_ctx_set_placement(struct gmem_ctx *ctx, u32 placement);
int gmem_dev_add_memory(struct gmem_dev *dev, unsigned long size);
long gmem_dev_evict(struct gmem_dev *dev);

/* gmem_prefetch() flags. */
#define GMEM_PREFETCH_TO_HOST		(1U << 0) /* to host memory */
#define GMEM_PREFETCH_NO_PEER		(1U << 1) /* host pages only, no faults */

int gmem_prefetch(struct gmem_ctx *ctx, unsigned long start,
		  unsigned long end, unsigned int flags);

/* Per-page states of gmem_snapshot(). */
#define GMEM_PAGE_NONE			0	  /* not present */
#define GMEM_PAGE_READ			(1U << 0) /* present, read-only */
#define GMEM_PAGE_WRITE			(1U << 1) /* present, writable */
#define GMEM_PAGE_ZERO			(1U << 2) /* the shared zero page */
#define GMEM_PAGE_PMD			(1U << 3) /* CPU maps it by a PMD */
#define GMEM_PAGE_PUD			(1U << 4) /* CPU maps it by a PUD */
#define GMEM_PAGE_DEVMEM		(1U << 5) /* in this device's memory */
#define GMEM_PAGE_ERROR			(1U << 7) /* no device may map it */

int gmem_snapshot(struct gmem_ctx *ctx, unsigned long start,
		  unsigned long end, u8 *state);
long gmem_dev_fault(struct gmem_ctx *ctx, unsigned long addr,
		    unsigned int flags);

/* One fault of a device's fault buffer, for gmem_dev_fault_batch(). */
struct gmem_fault_entry {
	unsigned long addr;
	unsigned int flags;	/* GMEM_FAULT_* */
	int result;		/* out: 0 resolved, or -errno */
};

/* Entries one gmem_dev_fault_batch() takes, at most. */
#define GMEM_FAULT_BATCH_MAX		256

long gmem_dev_fault_batch(struct gmem_ctx *ctx,
			  struct gmem_fault_entry *faults, unsigned int n);
long gmem_dev_notify_access(struct gmem_ctx *ctx, unsigned long addr);
long gmem_dev_notify_use(struct gmem_ctx *ctx, unsigned long addr);

#endif /* _LINUX_GMEM_H */
