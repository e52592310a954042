// SPDX-License-Identifier: GPL-2.0
/*
 * gmem's trace events (gmem_trace.h), recorded for its Rust code, which
 * cannot expand the tracepoint macros: each wrapper is one trace_*() call.
 * While an event is off, its wrapper costs a call and a static branch.
 */
#include "gmem_glue.h"

#define CREATE_TRACE_POINTS
#include "gmem_trace.h"

void gmem_trace_fault(u32 dev, unsigned long addr, bool write,
		      unsigned long pages, int ret)
{
	trace_gmem_fault(dev, addr, write, pages, ret);
}

void gmem_trace_migrate(u32 dev, unsigned long start, unsigned long end,
			unsigned long pages, bool to_dev, u32 cause)
{
	trace_gmem_migrate(dev, start, end, pages, to_dev, cause);
}

void gmem_trace_evict(u32 dev, unsigned long start, unsigned long end,
		      unsigned long pages)
{
	trace_gmem_evict(dev, start, end, pages);
}

void gmem_trace_thrash_hold(u32 dev, unsigned long start, unsigned long end)
{
	trace_gmem_thrash_hold(dev, start, end, (end - start) >> PAGE_SHIFT);
}

void gmem_trace_dup(u32 dev, unsigned long start, unsigned long end,
		    unsigned long pages)
{
	trace_gmem_dup(dev, start, end, pages);
}

void gmem_trace_dup_collapse(u32 dev, unsigned long start, unsigned long end,
			     unsigned long pages)
{
	trace_gmem_dup_collapse(dev, start, end, pages);
}

void gmem_trace_drop(u32 dev, unsigned long start, unsigned long end,
		     unsigned long pages)
{
	trace_gmem_drop(dev, start, end, pages);
}

void gmem_trace_invalidate(unsigned long start, unsigned long end, u32 event)
{
	trace_gmem_invalidate(start, end, event);
}
