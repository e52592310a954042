/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Trace events of gmem.ko (system "gmem"), recorded through the wrappers
 * in gmem_trace.c, which the Rust code calls (gmem_trace.rs).
 *
 * Addresses are user virtual addresses of the address space concerned;
 * "dev" is the gmem device id.  A migration's pages are those that moved.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM gmem

#if !defined(_GMEM_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _GMEM_TRACE_H

#include <linux/mmu_notifier.h>
#include <linux/tracepoint.h>

/* Why a migration ran; gmem_trace.rs's Cause has the same values. */
#define GMEM_CAUSE_FAULT	0	/* a device fault, by the policy */
#define GMEM_CAUSE_PREFETCH	1	/* prefetch or pin, to a device or home */
#define GMEM_CAUSE_EVICTION	2	/* room for another block */
#define GMEM_CAUSE_CPU_FAULT	3	/* a CPU access (or another device's) */
#define GMEM_CAUSE_DEVICE_WRITE	4	/* a device write to a shared page */
#define GMEM_CAUSE_COUNTER	5	/* a device's access counter */

#define show_gmem_cause(c)						\
	__print_symbolic(c,						\
			 { GMEM_CAUSE_FAULT, "fault" },			\
			 { GMEM_CAUSE_PREFETCH, "prefetch" },		\
			 { GMEM_CAUSE_EVICTION, "eviction" },		\
			 { GMEM_CAUSE_CPU_FAULT, "cpu_fault" },		\
			 { GMEM_CAUSE_DEVICE_WRITE, "device_write" },	\
			 { GMEM_CAUSE_COUNTER, "counter" })

/* For user-space decoders of the format (perf, trace-cmd). */
TRACE_DEFINE_ENUM(MMU_NOTIFY_UNMAP);
TRACE_DEFINE_ENUM(MMU_NOTIFY_CLEAR);
TRACE_DEFINE_ENUM(MMU_NOTIFY_PROTECTION_VMA);
TRACE_DEFINE_ENUM(MMU_NOTIFY_PROTECTION_PAGE);
TRACE_DEFINE_ENUM(MMU_NOTIFY_SOFT_DIRTY);
TRACE_DEFINE_ENUM(MMU_NOTIFY_RELEASE);
TRACE_DEFINE_ENUM(MMU_NOTIFY_MIGRATE);
TRACE_DEFINE_ENUM(MMU_NOTIFY_EXCLUSIVE);

#define show_mmu_event(e)						\
	__print_symbolic(e,						\
			 { MMU_NOTIFY_UNMAP, "unmap" },			\
			 { MMU_NOTIFY_CLEAR, "clear" },			\
			 { MMU_NOTIFY_PROTECTION_VMA, "protection_vma" },	\
			 { MMU_NOTIFY_PROTECTION_PAGE, "protection_page" },	\
			 { MMU_NOTIFY_SOFT_DIRTY, "soft_dirty" },	\
			 { MMU_NOTIFY_RELEASE, "release" },		\
			 { MMU_NOTIFY_MIGRATE, "migrate" },		\
			 { MMU_NOTIFY_EXCLUSIVE, "exclusive" })

TRACE_EVENT(gmem_fault,
	TP_PROTO(u32 dev, unsigned long addr, bool write, unsigned long pages,
		 int ret),
	TP_ARGS(dev, addr, write, pages, ret),
	TP_STRUCT__entry(
		__field(u32, dev)
		__field(unsigned long, addr)
		__field(bool, write)
		__field(unsigned long, pages)
		__field(int, ret)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->addr = addr;
		__entry->write = write;
		__entry->pages = pages;
		__entry->ret = ret;
	),
	TP_printk("dev=%u addr=%#lx %s pages=%lu ret=%d", __entry->dev,
		  __entry->addr, __entry->write ? "write" : "read",
		  __entry->pages, __entry->ret)
);

TRACE_EVENT(gmem_migrate,
	TP_PROTO(u32 dev, unsigned long start, unsigned long end,
		 unsigned long pages, bool to_dev, u32 cause),
	TP_ARGS(dev, start, end, pages, to_dev, cause),
	TP_STRUCT__entry(
		__field(u32, dev)
		__field(unsigned long, start)
		__field(unsigned long, end)
		__field(unsigned long, pages)
		__field(bool, to_dev)
		__field(u32, cause)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->start = start;
		__entry->end = end;
		__entry->pages = pages;
		__entry->to_dev = to_dev;
		__entry->cause = cause;
	),
	TP_printk("dev=%u %s start=%#lx end=%#lx pages=%lu cause=%s",
		  __entry->dev, __entry->to_dev ? "to_dev" : "to_host",
		  __entry->start, __entry->end, __entry->pages,
		  show_gmem_cause(__entry->cause))
);

DECLARE_EVENT_CLASS(gmem_block,
	TP_PROTO(u32 dev, unsigned long start, unsigned long end,
		 unsigned long pages),
	TP_ARGS(dev, start, end, pages),
	TP_STRUCT__entry(
		__field(u32, dev)
		__field(unsigned long, start)
		__field(unsigned long, end)
		__field(unsigned long, pages)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->start = start;
		__entry->end = end;
		__entry->pages = pages;
	),
	TP_printk("dev=%u start=%#lx end=%#lx pages=%lu", __entry->dev,
		  __entry->start, __entry->end, __entry->pages)
);

/* A chunk of device memory evicted: its block's pages went home. */
DEFINE_EVENT(gmem_block, gmem_evict,
	TP_PROTO(u32 dev, unsigned long start, unsigned long end,
		 unsigned long pages),
	TP_ARGS(dev, start, end, pages));

/* A block held in host memory instead of migrating (thrashing). */
DEFINE_EVENT(gmem_block, gmem_thrash_hold,
	TP_PROTO(u32 dev, unsigned long start, unsigned long end,
		 unsigned long pages),
	TP_ARGS(dev, start, end, pages));

/* Read-only copies of a read-mostly range made in device memory. */
DEFINE_EVENT(gmem_block, gmem_dup,
	TP_PROTO(u32 dev, unsigned long start, unsigned long end,
		 unsigned long pages),
	TP_ARGS(dev, start, end, pages));

/* Copies of a range dropped (a write, an invalidation, eviction). */
DEFINE_EVENT(gmem_block, gmem_dup_collapse,
	TP_PROTO(u32 dev, unsigned long start, unsigned long end,
		 unsigned long pages),
	TP_ARGS(dev, start, end, pages));

/*
 * Device pages were freed with their data (munmap, exit, discard): the
 * data did not move.  Pages emptied by a migration are not reported here.
 */
DEFINE_EVENT(gmem_block, gmem_drop,
	TP_PROTO(u32 dev, unsigned long start, unsigned long end,
		 unsigned long pages),
	TP_ARGS(dev, start, end, pages));

/* Core MM invalidates a range that devices may map. */
TRACE_EVENT(gmem_invalidate,
	TP_PROTO(unsigned long start, unsigned long end, u32 event),
	TP_ARGS(start, end, event),
	TP_STRUCT__entry(
		__field(unsigned long, start)
		__field(unsigned long, end)
		__field(u32, event)
	),
	TP_fast_assign(
		__entry->start = start;
		__entry->end = end;
		__entry->event = event;
	),
	TP_printk("start=%#lx end=%#lx event=%s", __entry->start,
		  __entry->end, show_mmu_event(__entry->event))
);

#endif /* _GMEM_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE gmem_trace
#include <trace/define_trace.h>
