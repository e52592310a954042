/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C helpers of gmem.ko (gmem_glue.c), called from its Rust code, which
 * declares them again as extern "C" (gmem_devmem.rs, gmem_mm.rs,
 * gmem_core.rs, gmem_fault.rs).  Not an interface for drivers:
 * <linux/gmem.h> is.
 */
#ifndef _MM_GMEM_GLUE_H
#define _MM_GMEM_GLUE_H

#include <linux/types.h>

struct dev_pagemap;
struct mm_struct;
struct page;
struct vm_area_struct;

void gmem_put_pfns(const unsigned long *pfns, unsigned long n);
bool gmem_get_pfns(const unsigned long *pfns, unsigned long n);
struct dev_pagemap *gmem_page_pgmap(struct page *page);
bool gmem_pfn_is_zone_device(unsigned long pfn);
bool gmem_pfn_is_ksm(unsigned long pfn);
bool gmem_pfn_is_anon(unsigned long pfn);
bool gmem_vma_uffd_armed(struct vm_area_struct *vma);
bool gmem_prot_change_keeps_access(struct mm_struct *mm, unsigned long start,
				   unsigned long end);
struct page *gmem_alloc_host_page(struct vm_area_struct *vma,
				  unsigned long addr, bool nofail);
u8 gmem_hmm_pfn_state(unsigned long hmm_pfn);

/* gmem_trace.c: see gmem_trace.h. */
void gmem_trace_fault(u32 dev, unsigned long addr, bool write,
		      unsigned long pages, int ret);
void gmem_trace_migrate(u32 dev, unsigned long start, unsigned long end,
			unsigned long pages, bool to_dev, u32 cause);
void gmem_trace_evict(u32 dev, unsigned long start, unsigned long end,
		      unsigned long pages);
void gmem_trace_thrash_hold(u32 dev, unsigned long start, unsigned long end);
void gmem_trace_dup(u32 dev, unsigned long start, unsigned long end,
		    unsigned long pages);
void gmem_trace_dup_collapse(u32 dev, unsigned long start, unsigned long end,
			     unsigned long pages);
void gmem_trace_drop(u32 dev, unsigned long start, unsigned long end,
		     unsigned long pages);
void gmem_trace_invalidate(unsigned long start, unsigned long end, u32 event);

extern const unsigned long gmem_c_layout[];

#endif /* _MM_GMEM_GLUE_H */
