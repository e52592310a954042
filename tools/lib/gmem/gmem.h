/* SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause */
/*
 * libgmem: memory shared between the CPU and gmem devices, in CUDA's
 * vocabulary (cudaMallocManaged, cudaMemAdvise, cudaMemPrefetchAsync,
 * cudaMemRangeGetAttribute(s), cudaGetDeviceCount/Properties).
 *
 * Every call returns a gmemError_t; gmemGetErrorString() names it.  A call
 * that fails changes nothing, except where the kernel says otherwise
 * (gmemErrorInterrupted: a signal stopped a prefetch or pin midway, what
 * moved stays).  Thread-safe: the only shared state is the descriptor of
 * /dev/gmem, opened on first use (close-on-exec) and kept; the errno of
 * the last failure is kept per thread.
 *
 * Devices are named by their gmem id (gmemDeviceProp.id, and the dev_id an
 * NPU reports), the host by gmemCpuDeviceId.  Advice naming a device takes
 * effect only for a device this process has attached (opened its driver's
 * file): otherwise gmemErrorInvalidDevice.
 *
 * Link with -lgmem (pkg-config gmem).  See Documentation/mm/gmem.rst,
 * "libgmem".
 */
#ifndef _GMEM_LIB_H
#define _GMEM_LIB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GMEM_LIB_VERSION_MAJOR	1
#define GMEM_LIB_VERSION_MINOR	0

typedef enum gmemError {
	gmemSuccess = 0,
	gmemErrorInvalidValue,		/* EINVAL: argument, alignment, advice */
	gmemErrorMemoryAllocation,	/* ENOMEM */
	gmemErrorNoDevice,		/* /dev/gmem missing: gmem not loaded */
	gmemErrorInvalidDevice,		/* ENODEV: no such (attached) device */
	gmemErrorNotMapped,		/* EFAULT: a hole in the range */
	gmemErrorNotShared,		/* EACCES: not reachable by devices */
	gmemErrorInterrupted,		/* EINTR: stopped midway, see above */
	gmemErrorNotSupported,		/* EOPNOTSUPP, ENOTTY: kernel too old */
	gmemErrorPermission,		/* EPERM: /dev/gmem not accessible */
	gmemErrorUnknown,		/* any other errno: see gmemGetLastErrno */
} gmemError_t;

/* The host, as a device argument (CUDA's cudaCpuDeviceId). */
#define gmemCpuDeviceId		(-1)
/* No device: a mixed or unset preferred location, an unused slot. */
#define gmemInvalidDeviceId	(-2)

/* Alignment of what gmemMallocShared returns: one fault and migration block. */
#define GMEM_SHARED_ALIGN	(2UL << 20)

typedef enum gmemMemoryAdvise {
	gmemMemAdviseSetReadMostly = 1,
	gmemMemAdviseUnsetReadMostly = 2,
	gmemMemAdviseSetPreferredLocation = 3,
	gmemMemAdviseUnsetPreferredLocation = 4,
	gmemMemAdviseSetAccessedBy = 5,
	gmemMemAdviseUnsetAccessedBy = 6,
	/* gmem's own: keep in the device's memory, never evicted. */
	gmemMemAdvisePin = 7,
	gmemMemAdviseUnpin = 8,
	/*
	 * gmem's own: the contents are no longer needed (read as zeros).
	 * Whole pages only: a range not page aligned is gmemErrorInvalidValue.
	 */
	gmemMemAdviseDiscard = 9,
} gmemMemoryAdvise;

typedef enum gmemMemRangeAttribute {
	/* int: 1 if every page of the range is read-mostly. */
	gmemMemRangeAttributeReadMostly = 1,
	/* int: the device every page prefers, or gmemInvalidDeviceId. */
	gmemMemRangeAttributePreferredLocation = 2,
	/* int[]: devices every page is accessed by, gmemInvalidDeviceId after. */
	gmemMemRangeAttributeAccessedBy = 3,
	/* int[]: gmem's own: devices every page is pinned to, as above. */
	gmemMemRangeAttributePinnedTo = 4,
} gmemMemRangeAttribute;

typedef struct gmemDeviceProp {
	int id;				/* gmem device id */
	char name[32];			/* driver's name, NUL-terminated */
	size_t totalGlobalMem;		/* bytes of device memory, 0 if none */
	unsigned int replayableFaults;	/* faults pause the device and replay */
	unsigned int hasDeviceMemory;
	unsigned int hasCopyEngine;
} gmemDeviceProp;

const char *gmemGetErrorString(gmemError_t error);
const char *gmemGetErrorName(gmemError_t error);
/* errno of this thread's last failed call (0 if none): the detail. */
int gmemGetLastErrno(void);

/* Number of gmem devices registered now (attached or not). */
gmemError_t gmemGetDeviceCount(int *count);
/* Ids of up to @max devices, ascending, into @ids; how many in *@count. */
gmemError_t gmemGetDevices(int *ids, int max, int *count);
gmemError_t gmemGetDeviceProperties(gmemDeviceProp *prop, int device);

/*
 * @size bytes (rounded up to pages) of memory every device may reach,
 * GMEM_SHARED_ALIGN-aligned, zero-filled, in host memory until a device
 * touches it.  Free with gmemFree(ptr, size); gmemFree(NULL, ...) does
 * nothing.
 */
gmemError_t gmemMallocShared(void **ptr, size_t size);
gmemError_t gmemFree(void *ptr, size_t size);

/*
 * Advice for [ptr, ptr + count), widened to the pages it touches (but see
 * gmemMemAdviseDiscard), for @device where the advice names one.
 */
gmemError_t gmemMemAdvise(const void *ptr, size_t count,
			  gmemMemoryAdvise advice, int device);
/*
 * Moves [ptr, ptr + count) to @device's memory (by whole 2 MiB blocks, as
 * far as it has room), or to host memory with gmemCpuDeviceId.  Returns
 * when the data is there.
 */
gmemError_t gmemMemPrefetch(const void *ptr, size_t count, int device);

/*
 * The range's attribute @attribute into @data (@dataSize bytes: one int,
 * or an int array for the device lists), as cudaMemRangeGetAttribute().
 * @ptr and @count need not be page aligned: the pages they touch count.
 */
gmemError_t gmemMemRangeGetAttribute(void *data, size_t dataSize,
				     gmemMemRangeAttribute attribute,
				     const void *ptr, size_t count);
gmemError_t gmemMemRangeGetAttributes(void **data, size_t *dataSizes,
				      const gmemMemRangeAttribute *attributes,
				      size_t numAttributes,
				      const void *ptr, size_t count);

#ifdef __cplusplus
}
#endif

#endif /* _GMEM_LIB_H */
