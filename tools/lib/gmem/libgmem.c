// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause
/*
 * libgmem: gmem.h's CUDA-style calls over mmap(MAP_PEER_SHARED) and the
 * ioctls of /dev/gmem (<linux/gmem.h>).
 *
 * The only shared state is the descriptor of /dev/gmem, opened on first
 * need and kept for the life of the process: the file carries no state
 * (each ioctl acts on the caller's address space), so one descriptor
 * serves every thread, and a forked child too.  Besides it, each thread
 * keeps the errno of its last failure.  Nothing is printed: a library
 * must not write to a program's stderr.
 *
 * Built with -fvisibility=hidden: only what GMEM_API marks is exported.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/gmem.h>

#include "gmem.h"

#define GMEM_API		__attribute__((visibility("default")))

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

/*
 * Device capabilities in gmem_dev_info.caps are the kernel's
 * GMEM_DEV_CAP_* (<linux/gmem.h> of the kernel tree, not exported); the
 * uapi header spells the same bits GMEM_NPU_CAP_*.
 */
#define DEV_CAP_REPLAYABLE	GMEM_NPU_CAP_REPLAYABLE
#define DEV_CAP_DEVMEM		GMEM_NPU_CAP_DEVMEM
#define DEV_CAP_COPY_ENGINE	GMEM_NPU_CAP_COPY_ENGINE

/* The library passes device ids and locations through unchanged. */
_Static_assert(gmemCpuDeviceId == GMEM_DEV_HOST, "host id");
_Static_assert(gmemInvalidDeviceId == GMEM_DEV_NONE, "no-device id");
_Static_assert(sizeof(((gmemDeviceProp *)0)->name) == GMEM_DEV_NAME_LEN,
	       "device name length");

/* /dev/gmem, or -1 until a call first needs it. */
static int gmem_fd = -1;

static __thread int last_errno;

static gmemError_t error_of(int err)
{
	switch (err) {
	case EINVAL:
		return gmemErrorInvalidValue;
	case ENOMEM:
		return gmemErrorMemoryAllocation;
	case ENODEV:
		return gmemErrorInvalidDevice;
	case EFAULT:
		return gmemErrorNotMapped;
	case EACCES:
		return gmemErrorNotShared;
	case EINTR:
		return gmemErrorInterrupted;
	case EOPNOTSUPP:
	case ENOTTY:
		return gmemErrorNotSupported;
	case EPERM:
		return gmemErrorPermission;
	default:
		return gmemErrorUnknown;
	}
}

/* A failure with errno @err, reported as @error. */
static gmemError_t fail_as(gmemError_t error, int err)
{
	last_errno = err;
	return error;
}

/* A failure with errno @err, reported as what it usually means. */
static gmemError_t fail(int err)
{
	return fail_as(error_of(err), err);
}

/*
 * The descriptor of /dev/gmem into *@fd, opened on the first call.  Two
 * threads may both open it: the compare-exchange keeps the first one
 * stored, and the loser closes its own, so the process holds one.
 */
static gmemError_t get_fd(int *fd)
{
	int expected = -1;
	int new_fd = __atomic_load_n(&gmem_fd, __ATOMIC_ACQUIRE);

	if (new_fd >= 0) {
		*fd = new_fd;
		return gmemSuccess;
	}
	new_fd = open("/dev/gmem", O_RDWR | O_CLOEXEC);
	if (new_fd < 0) {
		switch (errno) {
		case ENOENT:
		case ENXIO:
		case ENODEV:
			/* No node, or a stale one: gmem.ko is not loaded. */
			return fail_as(gmemErrorNoDevice, errno);
		case EACCES:
		case EPERM:
			return fail_as(gmemErrorPermission, errno);
		default:
			return fail(errno);
		}
	}
	if (!__atomic_compare_exchange_n(&gmem_fd, &expected, new_fd, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		close(new_fd);
		new_fd = expected;
	}
	*fd = new_fd;
	return gmemSuccess;
}

/*
 * @cmd on /dev/gmem.  Only queries are restarted after a signal: they
 * change nothing, whereas an interrupted PREFETCH or PIN has moved part of
 * its range, which gmemErrorInterrupted tells the caller.
 */
static gmemError_t gmem_ioctl(unsigned long cmd, void *arg, bool restart)
{
	gmemError_t e;
	int fd;

	e = get_fd(&fd);
	if (e)
		return e;
	while (ioctl(fd, cmd, arg))
		if (errno != EINTR || !restart)
			return fail(errno);
	return gmemSuccess;
}

static size_t page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

/*
 * [@ptr, @ptr + @count) widened to the pages it touches, which is what
 * the kernel takes: *@addr and *@len.  EINVAL if it is empty or reaches
 * the last page of the address space (the end would wrap).
 */
static gmemError_t page_range(const void *ptr, size_t count, __u64 *addr,
			      __u64 *len)
{
	uintptr_t mask = page_size() - 1, start = (uintptr_t)ptr, last;

	if (!ptr || !count || __builtin_add_overflow(start, count - 1, &last) ||
	    (last | mask) == UINTPTR_MAX)
		return fail(EINVAL);
	*addr = start & ~mask;
	*len = (last | mask) + 1 - (start & ~mask);
	return gmemSuccess;
}

/* @size rounded up to whole pages into *@len; false if that overflows. */
static bool page_round(size_t size, size_t *len)
{
	size_t mask = page_size() - 1;

	if (__builtin_add_overflow(size, mask, len))
		return false;
	*len &= ~mask;
	return true;
}

GMEM_API const char *gmemGetErrorString(gmemError_t error)
{
	static const char *const strings[] = {
		[gmemSuccess] = "no error",
		[gmemErrorInvalidValue] = "invalid argument",
		[gmemErrorMemoryAllocation] = "out of memory",
		[gmemErrorNoDevice] =
			"gmem is not available (no /dev/gmem: gmem.ko not loaded)",
		[gmemErrorInvalidDevice] =
			"no such device, or not attached by this process",
		[gmemErrorNotMapped] = "address range not entirely mapped",
		[gmemErrorNotShared] =
			"memory not reachable by devices (not MAP_PEER_SHARED)",
		[gmemErrorInterrupted] =
			"interrupted by a signal: part of the range may have moved",
		[gmemErrorNotSupported] = "operation not supported by this kernel",
		[gmemErrorPermission] = "permission denied",
		[gmemErrorUnknown] = "unknown error (see gmemGetLastErrno())",
	};

	if ((unsigned int)error < ARRAY_SIZE(strings) && strings[error])
		return strings[error];
	return "unrecognized error code";
}

GMEM_API const char *gmemGetErrorName(gmemError_t error)
{
	static const char *const names[] = {
		[gmemSuccess] = "gmemSuccess",
		[gmemErrorInvalidValue] = "gmemErrorInvalidValue",
		[gmemErrorMemoryAllocation] = "gmemErrorMemoryAllocation",
		[gmemErrorNoDevice] = "gmemErrorNoDevice",
		[gmemErrorInvalidDevice] = "gmemErrorInvalidDevice",
		[gmemErrorNotMapped] = "gmemErrorNotMapped",
		[gmemErrorNotShared] = "gmemErrorNotShared",
		[gmemErrorInterrupted] = "gmemErrorInterrupted",
		[gmemErrorNotSupported] = "gmemErrorNotSupported",
		[gmemErrorPermission] = "gmemErrorPermission",
		[gmemErrorUnknown] = "gmemErrorUnknown",
	};

	if ((unsigned int)error < ARRAY_SIZE(names) && names[error])
		return names[error];
	return "gmemErrorUnrecognized";
}

GMEM_API int gmemGetLastErrno(void)
{
	return last_errno;
}

/*
 * The ids of the first @max registered devices, ascending, into @ids and
 * their number into *@count.  Collected before anything is stored, so
 * that a failure midway leaves the caller's array alone.
 */
static gmemError_t list_devices(int ids[GMEM_MAX_DEVICES], int max,
				int *count)
{
	struct gmem_dev_info d;
	__u32 next = 0;
	gmemError_t e;
	int fd, n = 0;

	e = get_fd(&fd);
	if (e)
		return e;
	while (n < max && next < GMEM_MAX_DEVICES) {
		memset(&d, 0, sizeof(d));
		d.id = next;
		if (ioctl(fd, GMEM_IOC_DEV_INFO, &d)) {
			if (errno == ENODEV)
				break;		/* past the last one */
			if (errno == EINTR)
				continue;
			return fail(errno);
		}
		/* Ids only grow and stay below 64: else this could loop. */
		if (d.id < next || d.id >= GMEM_MAX_DEVICES)
			return fail(EIO);
		ids[n++] = d.id;
		next = d.id + 1;
	}
	*count = n;
	return gmemSuccess;
}

GMEM_API gmemError_t gmemGetDeviceCount(int *count)
{
	int ids[GMEM_MAX_DEVICES];

	if (!count)
		return fail(EINVAL);
	return list_devices(ids, GMEM_MAX_DEVICES, count);
}

GMEM_API gmemError_t gmemGetDevices(int *ids, int max, int *count)
{
	int found[GMEM_MAX_DEVICES];
	gmemError_t e;
	int n;

	if (!count || max < 0 || (!ids && max))
		return fail(EINVAL);
	e = list_devices(found, max < GMEM_MAX_DEVICES ? max : GMEM_MAX_DEVICES,
			 &n);
	if (e)
		return e;
	if (n)
		memcpy(ids, found, n * sizeof(*ids));
	*count = n;
	return gmemSuccess;
}

GMEM_API gmemError_t gmemGetDeviceProperties(gmemDeviceProp *prop,
					     int device)
{
	struct gmem_dev_info d = { .id = device };
	gmemDeviceProp p = { .id = device };
	gmemError_t e;
	size_t n;

	if (!prop)
		return fail(EINVAL);
	if (device < 0)
		return fail_as(gmemErrorInvalidDevice, ENODEV);
	e = gmem_ioctl(GMEM_IOC_DEV_INFO, &d, true);
	if (e)
		return e;
	/* DEV_INFO answers with the next device up: not this one. */
	if (d.id != (__u32)device)
		return fail_as(gmemErrorInvalidDevice, ENODEV);
	n = strnlen(d.name, sizeof(d.name));
	if (n >= sizeof(p.name))
		n = sizeof(p.name) - 1;
	memcpy(p.name, d.name, n);
	p.totalGlobalMem = d.mem_bytes > SIZE_MAX ? SIZE_MAX : d.mem_bytes;
	p.replayableFaults = !!(d.caps & DEV_CAP_REPLAYABLE);
	p.hasDeviceMemory = !!(d.caps & DEV_CAP_DEVMEM);
	p.hasCopyEngine = !!(d.caps & DEV_CAP_COPY_ENGINE);
	*prop = p;
	return gmemSuccess;
}

/*
 * The start and end of the /proc/self/smaps entry that @line heads
 * ("start-end perms ..."); false for the entry's other lines.
 */
static bool vma_header(const char *line, uintptr_t *start, uintptr_t *end)
{
	char *p;

	if (!((*line >= '0' && *line <= '9') || (*line >= 'a' && *line <= 'f')))
		return false;
	*start = strtoul(line, &p, 16);
	if (*p != '-')
		return false;
	line = p + 1;
	*end = strtoul(line, &p, 16);
	return p != line && *p == ' ';
}

/*
 * Whether the mapping at @addr is peer-shared.  A kernel without gmem
 * ignores the unknown MAP_PEER_SHARED flag and maps plain memory, which no
 * device can reach: only the "ps" in the mapping's VmFlags tells.  The
 * entries come in address order, so the walk stops at @addr's.
 */
static gmemError_t check_peer_shared(uintptr_t addr)
{
	bool line_start = true, in = false, shared = false;
	uintptr_t start, end;
	char line[512];
	FILE *f;

	f = fopen("/proc/self/smaps", "re");
	if (!f)
		return fail_as(gmemErrorNotSupported, errno);
	while (fgets(line, sizeof(line), f)) {
		bool whole = line_start;

		/* The tail of a long line (a path) is not a line of its own. */
		line_start = strchr(line, '\n');
		if (!whole)
			continue;
		if (vma_header(line, &start, &end)) {
			if (in || start > addr)
				break;
			in = addr < end;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			const char *p = line + 8;

			while ((p = strstr(p, " ps")) &&
			       p[3] != ' ' && p[3] != '\n' && p[3] != '\0')
				p++;
			shared = p;
			break;
		}
	}
	fclose(f);
	return shared ? gmemSuccess :
	       fail_as(gmemErrorNotSupported, EOPNOTSUPP);
}

GMEM_API gmemError_t gmemMallocShared(void **ptr, size_t size)
{
	size_t len, map_len, head;
	uintptr_t base, p;
	gmemError_t e;
	void *m;

	if (!ptr || !size)
		return fail(EINVAL);
	if (!page_round(size, &len) ||
	    __builtin_add_overflow(len, GMEM_SHARED_ALIGN, &map_len))
		return fail(ENOMEM);
	/* GMEM_SHARED_ALIGN more, to cut an aligned @len out of it. */
	m = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_PEER_SHARED, -1, 0);
	if (m == MAP_FAILED) {
		/* The kernel knows the flag, but gmem.ko is not loaded. */
		if (errno == ENODEV)
			return fail_as(gmemErrorNoDevice, ENODEV);
		return fail(errno);
	}
	base = (uintptr_t)m;
	p = (base + GMEM_SHARED_ALIGN - 1) & ~(GMEM_SHARED_ALIGN - 1);
	head = p - base;
	/*
	 * Trimming splits the mapping, which fails over vm.max_map_count:
	 * then the whole goes, in one piece, so that nothing leaks.
	 */
	if (head && munmap(m, head)) {
		e = fail(errno);
		munmap(m, map_len);
		return e;
	}
	if (munmap((void *)(p + len), GMEM_SHARED_ALIGN - head)) {
		e = fail(errno);
		munmap((void *)p, map_len - head);
		return e;
	}
	e = check_peer_shared(p);
	if (e) {
		munmap((void *)p, len);
		return e;
	}
	*ptr = (void *)p;
	return gmemSuccess;
}

GMEM_API gmemError_t gmemFree(void *ptr, size_t size)
{
	size_t len;

	if (!ptr)
		return gmemSuccess;
	/* What gmemMallocShared returned is aligned: anything else is not. */
	if (((uintptr_t)ptr & (GMEM_SHARED_ALIGN - 1)) || !size ||
	    !page_round(size, &len))
		return fail(EINVAL);
	if (munmap(ptr, len))
		return fail(errno);
	return gmemSuccess;
}

/* GMEM_ADV_* for @advice, or 0 if there is none. */
static __u32 kernel_advice(gmemMemoryAdvise advice)
{
	switch (advice) {
	case gmemMemAdviseSetReadMostly:
		return GMEM_ADV_SET_READ_MOSTLY;
	case gmemMemAdviseUnsetReadMostly:
		return GMEM_ADV_UNSET_READ_MOSTLY;
	case gmemMemAdviseSetPreferredLocation:
		return GMEM_ADV_SET_PREFERRED_LOCATION;
	case gmemMemAdviseUnsetPreferredLocation:
		return GMEM_ADV_UNSET_PREFERRED_LOCATION;
	case gmemMemAdviseSetAccessedBy:
		return GMEM_ADV_SET_ACCESSED_BY;
	case gmemMemAdviseUnsetAccessedBy:
		return GMEM_ADV_UNSET_ACCESSED_BY;
	case gmemMemAdvisePin:
		return GMEM_ADV_PIN;
	case gmemMemAdviseUnpin:
		return GMEM_ADV_UNPIN;
	case gmemMemAdviseDiscard:
		return GMEM_ADV_DISCARD;
	}
	return 0;
}

static gmemError_t advise(const void *ptr, size_t count, __u32 advice,
			  int device)
{
	/* The kernel ignores @dev where no device is needed. */
	struct gmem_advise a = { .advice = advice, .dev = device };
	gmemError_t e;

	e = page_range(ptr, count, &a.addr, &a.len);
	if (e)
		return e;
	return gmem_ioctl(GMEM_IOC_ADVISE, &a, false);
}

GMEM_API gmemError_t gmemMemAdvise(const void *ptr, size_t count,
				   gmemMemoryAdvise advice, int device)
{
	uintptr_t mask = page_size() - 1;
	__u32 adv = kernel_advice(advice);

	if (!adv)
		return fail(EINVAL);
	/*
	 * Widening is harmless for the other advice, but would zero bytes
	 * outside the range next to it: Discard takes whole pages only.
	 */
	if (adv == GMEM_ADV_DISCARD && (((uintptr_t)ptr | count) & mask))
		return fail(EINVAL);
	return advise(ptr, count, adv, device);
}

GMEM_API gmemError_t gmemMemPrefetch(const void *ptr, size_t count,
				     int device)
{
	return advise(ptr, count, GMEM_ADV_PREFETCH, device);
}

/* Whether @size bytes at @data can hold @attribute's value. */
static bool attr_fits(gmemMemRangeAttribute attribute, const void *data,
		      size_t size)
{
	if (!data)
		return false;
	switch (attribute) {
	case gmemMemRangeAttributeReadMostly:
	case gmemMemRangeAttributePreferredLocation:
		return size >= sizeof(int);
	case gmemMemRangeAttributeAccessedBy:
	case gmemMemRangeAttributePinnedTo:
		return size && size % sizeof(int) == 0;
	}
	return false;
}

/*
 * The devices of @mask, ascending, into @n slots, then gmemInvalidDeviceId
 * in those left, as CUDA does; with more devices than slots, those that
 * fit.
 */
static void put_devices(int *ids, size_t n, __u64 mask)
{
	size_t i = 0;

	for (int dev = 0; dev < GMEM_MAX_DEVICES && i < n; dev++)
		if (mask & (1ULL << dev))
			ids[i++] = dev;
	while (i < n)
		ids[i++] = gmemInvalidDeviceId;
}

static void attr_store(gmemMemRangeAttribute attribute, void *data,
		       size_t size, const struct gmem_range_attrs *q)
{
	int *out = data;

	switch (attribute) {
	case gmemMemRangeAttributeReadMostly:
		*out = !!q->read_mostly;
		break;
	case gmemMemRangeAttributePreferredLocation:
		/* Device, host (-1) or none (-2): gmem.h's numbers too. */
		*out = q->preferred_location;
		break;
	case gmemMemRangeAttributeAccessedBy:
		put_devices(out, size / sizeof(int), q->accessed_by);
		break;
	case gmemMemRangeAttributePinnedTo:
		put_devices(out, size / sizeof(int), q->pinned);
		break;
	}
}

/* Every attribute is checked before the query, so a bad one changes none. */
static gmemError_t get_attrs(void **data, const size_t *sizes,
			     const gmemMemRangeAttribute *attributes, size_t n,
			     const void *ptr, size_t count)
{
	struct gmem_range_attrs q = { 0 };
	gmemError_t e;
	size_t i;

	for (i = 0; i < n; i++)
		if (!attr_fits(attributes[i], data[i], sizes[i]))
			return fail(EINVAL);
	e = page_range(ptr, count, &q.addr, &q.len);
	if (e)
		return e;
	e = gmem_ioctl(GMEM_IOC_GET_ATTRS, &q, true);
	if (e)
		return e;
	for (i = 0; i < n; i++)
		attr_store(attributes[i], data[i], sizes[i], &q);
	return gmemSuccess;
}

GMEM_API gmemError_t gmemMemRangeGetAttribute(void *data, size_t dataSize,
					      gmemMemRangeAttribute attribute,
					      const void *ptr, size_t count)
{
	return get_attrs(&data, &dataSize, &attribute, 1, ptr, count);
}

GMEM_API gmemError_t
gmemMemRangeGetAttributes(void **data, size_t *dataSizes,
			  const gmemMemRangeAttribute *attributes,
			  size_t numAttributes, const void *ptr, size_t count)
{
	if (!data || !dataSizes || !attributes || !numAttributes)
		return fail(EINVAL);
	return get_attrs(data, dataSizes, attributes, numAttributes, ptr,
			 count);
}
