/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * gmem user API: shared CPU/accelerator virtual memory.
 *
 * Memory that devices attached through gmem may use is mapped with
 *
 *	mmap(NULL, len, PROT_READ | PROT_WRITE,
 *	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_PEER_SHARED, -1, 0);
 *
 * Errors: EINVAL with a file, MAP_SHARED or MAP_GROWSDOWN; ENODEV when the
 * gmem module is not loaded; EOPNOTSUPP on a kernel built without gmem.
 * Older kernels ignore the flag: check VmFlags "ps" in /proc/self/smaps.
 */
#ifndef _UAPI_LINUX_GMEM_H
#define _UAPI_LINUX_GMEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#ifndef MAP_PEER_SHARED
#define MAP_PEER_SHARED		0x200000
#endif

/*
 * Hints: /dev/gmem (gmem.ko), the one interface for every device.
 *
 * GMEM_IOC_ADVISE applies advice to [addr, addr + len) of the caller's
 * address space, as madvise() does, for a device: the names and meanings
 * are CUDA's cudaMemAdvise()/cudaMemPrefetchAsync() ones.  Devices are
 * named by their gmem id (gmem_npu_info.dev_id for an NPU) and the host by
 * GMEM_DEV_HOST (CUDA's cudaCpuDeviceId).  The range must be page aligned,
 * mapped, and reachable by devices (MAP_PEER_SHARED, or any mapping once a
 * device context is in system-allocator mode).  A device argument names a
 * device this process has attached (opened).  Attributes are kept per page
 * range until set otherwise or unmapped; device-resident data moves or is
 * pinned by whole 2 MiB blocks.
 *
 * Errors: EINVAL (alignment, unknown advice or flags, reserved fields,
 * GMEM_DEV_HOST where a device is needed), EFAULT (a hole), EACCES (not
 * reachable by devices), ENODEV (no such device attached to this process),
 * ENOMEM (PIN over the limits: one process may pin gmem.ko's
 * pin_limit_pct percent of a device's memory, all together pin_total_pct;
 * PREFETCH: the device's memory is full of pinned data),
 * EINTR (a signal stopped a PREFETCH, PIN or ACCESSED_BY mapping midway:
 * what moved stays).  A call failing with the first four changes nothing.
 */
#define GMEM_DEV_HOST		(-1)	/* the CPU's memory */
#define GMEM_DEV_NONE		(-2)	/* no (single) preferred location */

#define GMEM_ADV_SET_PREFERRED_LOCATION	1 /* keep pages on dev (or host) */
#define GMEM_ADV_UNSET_PREFERRED_LOCATION 2
#define GMEM_ADV_SET_READ_MOSTLY	3 /* devices read copies; dev unused */
#define GMEM_ADV_UNSET_READ_MOSTLY	4
#define GMEM_ADV_SET_ACCESSED_BY	5 /* in place; access counters migrate */
#define GMEM_ADV_UNSET_ACCESSED_BY	6
#define GMEM_ADV_PIN			7 /* migrate to dev, never evicted */
#define GMEM_ADV_UNPIN			8
#define GMEM_ADV_PREFETCH		9 /* migrate to dev (or host) now */
#define GMEM_ADV_DISCARD		10 /* contents no longer needed: zeros */
#define GMEM_ADV_MAX			GMEM_ADV_DISCARD

struct gmem_advise {
	__u64 addr;
	__u64 len;
	__u32 advice;		/* GMEM_ADV_* */
	__s32 dev;		/* gmem device id or GMEM_DEV_HOST */
	__u64 reserved;		/* must be 0 */
};

/*
 * GMEM_IOC_GET_ATTRS: the attributes of [addr, addr + len), as
 * cudaMemRangeGetAttributes() reports them: a preferred location only if
 * every page has the same one (else GMEM_DEV_NONE), read-mostly only if
 * every page is, and the devices every page is accessed by or pinned to,
 * as bit masks of gmem device ids.
 */
struct gmem_range_attrs {
	__u64 addr;		/* in */
	__u64 len;		/* in */
	__s32 preferred_location;	/* out: dev id, HOST or NONE */
	__u32 read_mostly;	/* out: 0 or 1 */
	__u64 accessed_by;	/* out: bit n = device n */
	__u64 pinned;		/* out: bit n = device n */
	__u64 reserved;		/* must be 0 */
};

/*
 * GMEM_IOC_DEV_INFO: the registered device with the lowest gmem id at or
 * above @id, whether or not this process has attached it; ENODEV when there
 * is none.  Enumerate with @id = 0, then the id returned plus one.
 */
#define GMEM_DEV_NAME_LEN	32

struct gmem_dev_info {
	__u32 id;		/* in: first id to look at; out: the device's */
	__u32 caps;		/* out: GMEM_DEV_CAP_* (the NPU's below) */
	__u64 mem_bytes;	/* out: device memory given to gmem, or 0 */
	char name[GMEM_DEV_NAME_LEN];	/* out: NUL-terminated */
	__u64 reserved;		/* must be 0 */
};

#define GMEM_IOC_MAGIC		'G'
#define GMEM_IOC_ADVISE		_IOW(GMEM_IOC_MAGIC, 1, struct gmem_advise)
#define GMEM_IOC_GET_ATTRS	_IOWR(GMEM_IOC_MAGIC, 2, struct gmem_range_attrs)
#define GMEM_IOC_DEV_INFO	_IOWR(GMEM_IOC_MAGIC, 3, struct gmem_dev_info)

/* gmem device ids are below this (bit masks above). */
#define GMEM_MAX_DEVICES	64

/*
 * The simulated NPU (gmem_npu.ko): /dev/gmem_npuN.
 *
 * Opening the device attaches the caller's address space to that NPU; the
 * file descriptor belongs to that address space: in another process (a
 * forked child, a receiver of the fd) every ioctl fails with EBADF, as with
 * KFD, and the child opens the device itself.  Jobs run on
 * virtual addresses of that address space, asynchronously, in submission
 * order per file; jobs of different files may run at once (up to
 * gmem_npu.ko's engines, default 4), like the streams of a GPU.  A job that touches memory it may not ends with a
 * negative errno status and the faulting address, and the NPU goes on.
 *
 * Every structure has a fixed size and explicit padding; reserved fields
 * and unknown flags must be zero (EINVAL otherwise).  A failed ioctl
 * changes nothing: a SUBMIT whose seqno cannot be written back (EFAULT)
 * queues no job, and a WAIT that cannot write its report (EFAULT) keeps
 * it for the next WAIT.  SUBMIT fails with EAGAIN while the file's jobs
 * not yet completed hold gmem_npu.ko's max_queued_mib MiB of job length
 * (a file with none pending takes any job), and with EBUSY at 1024 jobs
 * not yet waited for.  After the device was unplugged
 * (debugfs gmem_npu/npuN/present) open() and every ioctl but WAIT and
 * INFO fail with ENODEV, and its jobs end with status -ENODEV.
 */

/* Job operations; element types are little-endian unsigned integers. */
#define GMEM_NPU_OP_FILL	1	/* dst[len bytes] = value (u8 pattern) */
#define GMEM_NPU_OP_COPY	2	/* dst[len] = src[len] (bytes) */
#define GMEM_NPU_OP_ADD		3	/* dst[i] = src[i] + src2[i], u32, len bytes */
#define GMEM_NPU_OP_REDUCE_SUM	4	/* result = sum of u32 src[len bytes] */
#define GMEM_NPU_OP_ATOMIC_INC	5	/* *(u64 *)dst += 1, value times, atomic */
#define GMEM_NPU_OP_TOUCH	6	/* one u64 per page of dst[len]: read */
					/* (sum in result) or, with */
					/* GMEM_NPU_JOB_WRITE, write value */
#define GMEM_NPU_OP_GATHER	7	/* result = sum of u32 of value chunks */
					/* of src2 bytes, each a random chunk */
					/* of src[len]; dst seeds (see below) */
#define GMEM_NPU_OP_MAX		GMEM_NPU_OP_GATHER

/* Job flags. */
#define GMEM_NPU_JOB_WRITE	(1U << 0)	/* TOUCH writes instead of reads */

/*
 * The NPU's MMU translates 47-bit virtual addresses: a job operand must lie
 * below 1 << 47 (EINVAL otherwise).
 */
#define GMEM_NPU_VA_BITS	47

/* Longest job, in bytes of any operand. */
#define GMEM_NPU_JOB_MAX_LEN	(1ULL << 32)

struct gmem_npu_job {
	__u32 op;		/* GMEM_NPU_OP_* */
	__u32 flags;		/* GMEM_NPU_JOB_* */
	__u64 dst;		/* device (= CPU) virtual addresses; */
	__u64 src;		/* GATHER: dst seeds, src2 is a size */
	__u64 src2;
	__u64 len;		/* bytes; alignment as the element size */
	__u64 value;		/* FILL byte, ATOMIC_INC count, TOUCH value, */
				/* GATHER chunks */
};

/*
 * GATHER reads value chunks (1 to 1 << 24) of src2 bytes (a power of two,
 * 4 bytes to 2 MiB; src aligned to it, len a multiple of it), chunk k
 * (from 0) at src + gmem_npu_gather_offset(job, k): a splitmix64 sequence
 * seeded by dst, so that the caller knows every address the job reads.
 * Each chunk counts at least a page: value * max(src2, page size) counts
 * against max_queued_mib as len does for the other operations, and may
 * not pass GMEM_NPU_JOB_MAX_LEN.
 */
static inline __u64 gmem_npu_gather_offset(const struct gmem_npu_job *job,
					   __u64 k)
{
	__u64 z = job->dst + (k + 1) * 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z % (job->len / job->src2) * job->src2;
}

struct gmem_npu_submit {
	struct gmem_npu_job job;	/* in */
	__u64 seqno;			/* out: identifies the job */
};

struct gmem_npu_wait {
	__u64 seqno;		/* in: job to wait for */
	__s64 timeout_ns;	/* in: < 0 waits forever, 0 only polls */
	__s32 status;		/* out: 0 or -errno (EFAULT: no mapping; */
				/* EPERM: write to read-only; EACCES: outside */
				/* the policy; ESRCH: address space gone; */
				/* ECANCELED: file closed; ENODEV: device */
				/* unplugged; ENOMEM, EAGAIN) */
	__u32 pad;		/* must be 0 */
	__u64 fault_addr;	/* out: faulting address if status < 0 */
	__u64 result;		/* out: REDUCE_SUM and TOUCH (read) result */
	__u64 faults;		/* out: times the job stalled on faults */
	__u64 device_ns;	/* out: the job's modelled device time */
	__u64 wall_ns;		/* out: its run time on this machine */
};

/* Address-space policy of this file descriptor's context. */
#define GMEM_NPU_MODE_PEER_SHARED	0 /* MAP_PEER_SHARED regions only */
#define GMEM_NPU_MODE_SYSTEM		1 /* any anonymous or file mapping */

struct gmem_npu_mode {
	__u32 mode;		/* GMEM_NPU_MODE_* */
	__u32 pad;		/* must be 0 */
};

/*
 * Device memory.  Each NPU has dram_mib MiB of its own memory (module
 * parameter).  By default a page the NPU touches migrates to it (and back
 * to host memory when the CPU touches it); GMEM_NPU_PLACE_HOST keeps this
 * context's accesses in place in host memory instead.  When the NPU's
 * memory is full, the least recently used 2 MiB blocks go back to host
 * memory to make room; a job needing room on an NPU whose memory is all
 * pinned (GMEM_ADV_PIN) fails with ENOMEM.  Hints on /dev/gmem override
 * the placement for their ranges.
 */
#define GMEM_NPU_PLACE_MIGRATE	0	/* migrate on device touch (default) */
#define GMEM_NPU_PLACE_HOST	1	/* never migrate for this context */

struct gmem_npu_placement {
	__u32 placement;	/* GMEM_NPU_PLACE_* */
	__u32 pad;		/* must be 0 */
};

/*
 * Explicit migration of [addr, addr + len), page aligned, synchronous: to
 * this NPU's memory, by whole 2 MiB blocks (clipped to each mapping) as far
 * as it has room, also mapping them into the NPU; or, with
 * GMEM_NPU_PREFETCH_TO_HOST, exactly that range back to host memory.
 * Errors: EINVAL (alignment, flags), EFAULT (a hole or PROT_NONE), EACCES
 * (outside the policy), ENOMEM, EINTR (a signal; what moved stays).
 */
#define GMEM_NPU_PREFETCH_TO_HOST	(1U << 0)

struct gmem_npu_prefetch {
	__u64 addr;
	__u64 len;
	__u32 flags;		/* GMEM_NPU_PREFETCH_* */
	__u32 pad;		/* must be 0 */
};

struct gmem_npu_info {
	__u32 dev_id;		/* gmem device id */
	__u32 npu_index;	/* N of /dev/gmem_npuN */
	__u32 caps;		/* GMEM_DEV_CAP_* */
	__u32 tlb_entries;
	__u64 jobs_done;	/* this device, all contexts */
	__u64 faults;		/* faults put in the fault buffer */
	__u64 tlb_misses;
	__u64 invalidations;	/* invalidate calls from gmem */
	/* The device model (see below); bytes count both jobs and copies. */
	__u32 dev_gbps;		/* device memory bandwidth, GB/s */
	__u32 link_gbps;	/* host link bandwidth per direction, GB/s */
	__u64 fault_ns;		/* cost of taking and replaying one fault */
	__u64 clock_ns;		/* the device clock */
	__u64 link_to_dev_bytes;	/* over the link, host to device */
	__u64 link_to_host_bytes;	/* over the link, device to host */
	__u64 local_bytes;	/* read or written in device memory */
};

/*
 * The device model.  Each NPU has a clock (ns) that its work advances as a
 * device behind a host link would spend it, not as this machine does:
 * device memory at dev_gbps, host memory in place and the copy engine
 * (migration, eviction) at link_gbps per direction, and fault_ns per
 * device fault.  WAIT reports a job's share (device_ns: its accesses, its
 * faults and the copies they caused) beside its wall time.  Defaults are
 * the module parameters dev_gbps, link_gbps and fault_us; debugfs
 * gmem_npu/npuN/model overrides them per device.
 *
 * WAIT and INFO also accept the shorter structures of binaries built before
 * these fields (48 bytes each): they get the fields they know.
 */
#define GMEM_NPU_WAIT_SIZE_V1	48
#define GMEM_NPU_INFO_SIZE_V1	48

#define GMEM_NPU_IOC_MAGIC	'N'
#define GMEM_NPU_IOC_SUBMIT	_IOWR(GMEM_NPU_IOC_MAGIC, 1, struct gmem_npu_submit)
#define GMEM_NPU_IOC_WAIT	_IOWR(GMEM_NPU_IOC_MAGIC, 2, struct gmem_npu_wait)
#define GMEM_NPU_IOC_SET_MODE	_IOW(GMEM_NPU_IOC_MAGIC, 3, struct gmem_npu_mode)
#define GMEM_NPU_IOC_INFO	_IOR(GMEM_NPU_IOC_MAGIC, 4, struct gmem_npu_info)
#define GMEM_NPU_IOC_PREFETCH	_IOW(GMEM_NPU_IOC_MAGIC, 5, struct gmem_npu_prefetch)
#define GMEM_NPU_IOC_SET_PLACEMENT \
	_IOW(GMEM_NPU_IOC_MAGIC, 6, struct gmem_npu_placement)

/* Capabilities reported in gmem_npu_info.caps (same as <linux/gmem.h>). */
#define GMEM_NPU_CAP_REPLAYABLE	(1U << 0)	/* faults pause and replay */
#define GMEM_NPU_CAP_DEVMEM	(1U << 1)	/* has its own memory */
#define GMEM_NPU_CAP_COPY_ENGINE (1U << 2)	/* copies host<->device */

#endif /* _UAPI_LINUX_GMEM_H */
