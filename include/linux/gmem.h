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

struct file;
struct mm_struct;
struct module;

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

/* Protection of a device mapping. */
#define GMEM_PROT_READ			(1U << 0)
#define GMEM_PROT_WRITE			(1U << 1)

/* A device known to gmem; opaque to drivers. */
struct gmem_dev;

/**
 * struct gmem_dev_ops - the device MMU, as gmem drives it
 * @ctx_create: create the device's context (its page table) for address
 *	space @mm and return it in @ctx.  May sleep.
 * @ctx_destroy: tear down a context; no other op runs on it concurrently
 *	or afterwards.  May sleep.
 * @map: map @npages host pages, whose pfns are in @pfns, at device virtual
 *	address @va (page aligned) with @prot (GMEM_PROT_*).  May sleep.
 * @invalidate: remove every mapping in [@start, @end) and flush the device
 *	TLB before returning.  Must not sleep: it runs from mmu notifiers.
 *
 * @drvdata is the pointer given to gmem_dev_register().  gmem serialises
 * @map and @invalidate of one context against each other.
 */
struct gmem_dev_ops {
	int (*ctx_create)(void *drvdata, struct mm_struct *mm, void **ctx);
	void (*ctx_destroy)(void *drvdata, void *ctx);
	int (*map)(void *drvdata, void *ctx, unsigned long va,
		   const unsigned long *pfns, unsigned long npages,
		   unsigned int prot);
	void (*invalidate)(void *drvdata, void *ctx, unsigned long start,
			   unsigned long end);
};

int gmem_dev_register(const struct gmem_dev_ops *ops, void *drvdata,
		      const char *name, u32 caps, struct gmem_dev **devp);
void gmem_dev_unregister(struct gmem_dev *dev);
u32 gmem_dev_id(const struct gmem_dev *dev);

#endif /* _LINUX_GMEM_H */
