// SPDX-License-Identifier: GPL-2.0
/*
 * libgmem (tools/lib/gmem): what a program using gmem.h relies on.  Each
 * call's effect is checked through the kernel's own view (the NPUs' jobs
 * and INFO, debugfs gmem/devices, /proc/self/smaps and fd), bad arguments
 * get their exact error and change nothing, and the one descriptor the
 * library keeps is opened once even by racing threads.
 *
 * Needs gmem.ko and gmem_npu.ko num_devices=2 dram_mib=16 (the runner
 * loads them), and root for debugfs.  no_module runs only with gmem.ko
 * unloaded (run it again then: libgmem_test -t no_module); it skips
 * otherwise.
 *
 * Build: -I tools/lib/gmem, linked with libgmem.a or -lgmem, -pthread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"
#include "gmem.h"

#define FREE_DELAY_MS		2000
#define NTHREADS		8
#define SENTINEL		0x5a5a5a5a

/* Asserts that @call returns @want, naming what it returned instead. */
#define ASSERT_GMEM(call, want) do {					\
	gmemError_t __e = (call);					\
									\
	ASSERT_EQ(__e, want) TH_LOG("%s: %s (errno %d)", #call,		\
				    gmemGetErrorName(__e),		\
				    gmemGetLastErrno());		\
} while (0)

/* Number of descriptors of this process open on /dev/gmem. */
static int gmem_fds(int *last)
{
	char path[300], link[64];
	struct dirent *e;
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	ssize_t len;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = 0;
		if (!strcmp(link, "/dev/gmem")) {
			n++;
			if (last)
				*last = atoi(e->d_name);
		}
	}
	closedir(d);
	return n;
}

/* Number of mappings of this process. */
static int map_count(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;

	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Bounds of the mapping containing @addr; false if there is none. */
static bool vma_bounds(const void *addr, uintptr_t *start, uintptr_t *end)
{
	uintptr_t a = (uintptr_t)addr;
	unsigned long s, e;
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && a >= s && a < e) {
			*start = s;
			*end = e;
			found = true;
		}
	fclose(f);
	return found;
}

static bool mapped(const void *addr, size_t len)
{
	return !msync((void *)page_of(U64(addr), sysconf(_SC_PAGE_SIZE)), len,
		      MS_ASYNC);
}

/* A single-int attribute of the range, or INT_MIN if the query failed. */
static int attr_int(const void *p, size_t len, gmemMemRangeAttribute attr)
{
	int v = INT_MIN;

	if (gmemMemRangeGetAttribute(&v, sizeof(v), attr, p, len))
		return INT_MIN;
	return v;
}

#define PREFERRED(p, len) \
	attr_int(p, len, gmemMemRangeAttributePreferredLocation)
#define READ_MOSTLY(p, len) \
	attr_int(p, len, gmemMemRangeAttributeReadMostly)

struct attrs {
	int preferred;
	int read_mostly;
	int accessed_by[4];
	int pinned[4];
};

/* All four attributes of the range in one gmemMemRangeGetAttributes. */
static gmemError_t get_attrs(const void *p, size_t len, struct attrs *a)
{
	gmemMemRangeAttribute ids[] = {
		gmemMemRangeAttributePreferredLocation,
		gmemMemRangeAttributeReadMostly,
		gmemMemRangeAttributeAccessedBy,
		gmemMemRangeAttributePinnedTo,
	};
	void *data[] = { &a->preferred, &a->read_mostly, a->accessed_by,
			 a->pinned };
	size_t sizes[] = { sizeof(a->preferred), sizeof(a->read_mostly),
			   sizeof(a->accessed_by), sizeof(a->pinned) };

	memset(a, 0x5a, sizeof(*a));
	return gmemMemRangeGetAttributes(data, sizes, ids, ARRAY_SIZE(ids), p,
					 len);
}

/* A device list attribute into @ids[4], INT_MIN in all if it failed. */
static void attr_devs(const void *p, size_t len, gmemMemRangeAttribute attr,
		      int ids[4])
{
	if (gmemMemRangeGetAttribute(ids, 4 * sizeof(int), attr, p, len))
		for (int i = 0; i < 4; i++)
			ids[i] = INT_MIN;
}

#define ACCESSED_BY(p, len, ids) \
	attr_devs(p, len, gmemMemRangeAttributeAccessedBy, ids)
#define PINNED_TO(p, len, ids) \
	attr_devs(p, len, gmemMemRangeAttributePinnedTo, ids)

/* Asserts the 4-slot device list @ids is { a, b, c, d }. */
#define ASSERT_DEVS(ids, a, b, c, d) do {				\
	const int __want[4] = { a, b, c, d };				\
									\
	ASSERT_EQ(memcmp(ids, __want, sizeof(__want)), 0)		\
		TH_LOG("{ %d, %d, %d, %d }, not { %d, %d, %d, %d }",	\
		       (ids)[0], (ids)[1], (ids)[2], (ids)[3],		\
		       __want[0], __want[1], __want[2], __want[3]);	\
} while (0)

#define NONE	gmemInvalidDeviceId

FIXTURE(lib)
{
	int fd[2];		/* /dev/gmem_npu0 and 1: attached */
	int dev[2];		/* their gmem ids */
	__u32 caps[2];
	char name[2][32];	/* "npuN", as debugfs names them */
	int lo, hi;		/* the two ids, ascending */
	size_t ps;
};

FIXTURE_SETUP(lib)
{
	struct gmem_npu_info info;

	self->ps = sysconf(_SC_PAGE_SIZE);
	self->fd[0] = self->fd[1] = -1;
	for (int i = 0; i < 2; i++) {
		self->fd[i] = npu_open(i);
		ASSERT_GE(self->fd[i], 0) TH_LOG("open /dev/gmem_npu%d: %s", i,
						 strerror(errno));
		ASSERT_EQ(npu_get_info(self->fd[i], &info), 0);
		self->dev[i] = info.dev_id;
		self->caps[i] = info.caps;
		snprintf(self->name[i], sizeof(self->name[i]), "npu%u",
			 info.npu_index);
		/* What earlier tests freed may still be going. */
		dev_stat_wait(self->name[i], "devmem_used", 0, FREE_DELAY_MS);
	}
	self->lo = self->dev[0] < self->dev[1] ? self->dev[0] : self->dev[1];
	self->hi = self->dev[0] < self->dev[1] ? self->dev[1] : self->dev[0];
}

FIXTURE_TEARDOWN(lib)
{
	for (int i = 0; i < 2; i++)
		if (self->fd[i] >= 0)
			close(self->fd[i]);
}

/*
 * The devices the library lists are the kernel's, in id order, with the
 * NPUs' ids, names, memory and capabilities; a device that does not exist
 * is gmemErrorInvalidDevice and leaves the properties alone.
 */
TEST_F(lib, devices)
{
	int n = -1, got = -1, ids[GMEM_MAX_DEVICES + 1], one[2] = { -7, -7 };
	gmemDeviceProp prop, junk;
	const int bad[] = { -1, -2, INT_MIN, INT_MAX, GMEM_MAX_DEVICES };

	ASSERT_GMEM(gmemGetDeviceCount(&n), gmemSuccess);
	ASSERT_GE(n, 2);
	ASSERT_EQ(n, gmem_stat("devices"));
	ASSERT_GMEM(gmemGetDevices(ids, ARRAY_SIZE(ids), &got), gmemSuccess);
	ASSERT_EQ(got, n);
	for (int i = 0; i < n; i++) {
		ASSERT_GE(ids[i], 0);
		ASSERT_LT(ids[i], GMEM_MAX_DEVICES);
		if (i)
			ASSERT_GT(ids[i], ids[i - 1]);
		ASSERT_GMEM(gmemGetDeviceProperties(&prop, ids[i]), gmemSuccess);
		ASSERT_EQ(prop.id, ids[i]);
		ASSERT_NE(prop.name[0], 0);
		ASSERT_LT(strnlen(prop.name, sizeof(prop.name)),
			  sizeof(prop.name));
	}
	/* At most @max ids, the lowest; nothing written past them. */
	ASSERT_GMEM(gmemGetDevices(one, 1, &got), gmemSuccess);
	ASSERT_EQ(got, 1);
	ASSERT_EQ(one[0], ids[0]);
	ASSERT_EQ(one[1], -7);
	ASSERT_GMEM(gmemGetDevices(NULL, 0, &got), gmemSuccess);
	ASSERT_EQ(got, 0);

	for (int i = 0; i < 2; i++) {
		bool listed = false;

		for (int j = 0; j < n; j++)
			listed |= ids[j] == self->dev[i];
		ASSERT_TRUE(listed) TH_LOG("%s (id %d) not listed",
					   self->name[i], self->dev[i]);
		ASSERT_GMEM(gmemGetDeviceProperties(&prop, self->dev[i]),
			    gmemSuccess);
		ASSERT_EQ(prop.id, self->dev[i]);
		ASSERT_STREQ(prop.name, self->name[i]);
		ASSERT_EQ(prop.totalGlobalMem, 16 * MiB);
		ASSERT_TRUE(prop.hasDeviceMemory);
		ASSERT_EQ(prop.hasDeviceMemory,
			  !!(self->caps[i] & GMEM_NPU_CAP_DEVMEM));
		ASSERT_EQ(prop.replayableFaults,
			  !!(self->caps[i] & GMEM_NPU_CAP_REPLAYABLE));
		ASSERT_EQ(prop.hasCopyEngine,
			  !!(self->caps[i] & GMEM_NPU_CAP_COPY_ENGINE));
	}

	/* Past the last, negative, huge: no such device, prop untouched. */
	memset(&junk, 0xa5, sizeof(junk));
	prop = junk;
	ASSERT_GMEM(gmemGetDeviceProperties(&prop, ids[n - 1] + 1),
		    gmemErrorInvalidDevice);
	ASSERT_EQ(gmemGetLastErrno(), ENODEV);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (bad[i] == ids[n - 1])
			continue;
		ASSERT_GMEM(gmemGetDeviceProperties(&prop, bad[i]),
			    gmemErrorInvalidDevice);
	}
	ASSERT_EQ(memcmp(&prop, &junk, sizeof(prop)), 0);

	ASSERT_GMEM(gmemGetDeviceProperties(NULL, ids[0]),
		    gmemErrorInvalidValue);
	ASSERT_EQ(gmemGetLastErrno(), EINVAL);
	ASSERT_GMEM(gmemGetDeviceCount(NULL), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemGetDevices(NULL, 2, &got), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemGetDevices(ids, -1, &got), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemGetDevices(ids, 2, NULL), gmemErrorInvalidValue);
}

/*
 * gmemMallocShared gives 2 MiB aligned, zeroed, peer-shared memory of the
 * size asked (rounded to pages, the alignment slack given back), which
 * both NPUs read and write coherently with the CPU; gmemFree unmaps it;
 * a bad request maps nothing.
 */
TEST_F(lib, malloc_shared)
{
	size_t ps = self->ps, size = 3 * MiB + 1, len = 3 * MiB + ps;
	const __u64 value = 0x1234567890abcdefULL;
	void *q = &size, *sentinel = &size;
	struct gmem_npu_wait w;
	uintptr_t start, end;
	char flags[512], *p = NULL;
	int before;

	map_count();
	before = map_count();
	ASSERT_GMEM(gmemMallocShared((void **)&p, size), gmemSuccess);
	ASSERT_EQ((uintptr_t)p % GMEM_SHARED_ALIGN, 0);
	ASSERT_TRUE(vma_flags(p, flags, sizeof(flags)));
	ASSERT_TRUE(has_vmflag(flags, "ps")) TH_LOG("VmFlags:%s", flags);
	ASSERT_TRUE(vma_bounds(p, &start, &end));
	ASSERT_EQ(end, (uintptr_t)p + len);
	ASSERT_FALSE(mapped(p + len, ps));
	ASSERT_LE(map_count(), before + 1);

	/* Zeros, for the NPU and the CPU. */
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, 0);
	ASSERT_EQ(find_not_byte(p, len, 0), -1);
	/* The CPU writes, npu0 reads; npu1 writes, the CPU reads. */
	fill_pattern(p, len, 11);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 11));
	ASSERT_EQ(npu_touch(self->fd[1], p, len, true, value, &w), 0);
	for (size_t off = 0; off < len; off += ps) {
		ASSERT_EQ(load_u64((__u64 *)(p + off)), value)
			TH_LOG("page at offset %zu", off);
		ASSERT_EQ(check_pattern_from(p + off + 8, (off + 8) / 4,
					     ps - 8, 11), -1);
	}

	ASSERT_GMEM(gmemFree(p, size), gmemSuccess);
	ASSERT_FALSE(mapped(p, ps));
	ASSERT_FALSE(mapped(p + len - ps, ps));
	ASSERT_FALSE(vma_flags(p, flags, sizeof(flags)));
	ASSERT_EQ(map_count(), before);
	/* Gone for the devices too. */
	ASSERT_EQ(npu_sum(self->fd[0], p, ps, &w), -EFAULT);

	/* Bad requests: nothing mapped, *ptr untouched. */
	ASSERT_GMEM(gmemMallocShared(&q, 0), gmemErrorInvalidValue);
	ASSERT_EQ(gmemGetLastErrno(), EINVAL);
	ASSERT_GMEM(gmemMallocShared(NULL, ps), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMallocShared(&q, SIZE_MAX), gmemErrorMemoryAllocation);
	ASSERT_GMEM(gmemMallocShared(&q, SIZE_MAX - GMEM_SHARED_ALIGN),
		    gmemErrorMemoryAllocation);
	ASSERT_EQ(q, sentinel);
	ASSERT_EQ(map_count(), before);

	/* gmemFree: NULL is fine, a pointer it did not return is not. */
	ASSERT_GMEM(gmemFree(NULL, 0), gmemSuccess);
	ASSERT_GMEM(gmemFree(NULL, ps), gmemSuccess);
	ASSERT_GMEM(gmemMallocShared((void **)&p, BLOCK), gmemSuccess);
	ASSERT_GMEM(gmemFree(p + ps, ps), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemFree(p, 0), gmemErrorInvalidValue);
	ASSERT_TRUE(mapped(p, BLOCK));
	ASSERT_GMEM(gmemFree(p, BLOCK), gmemSuccess);
	ASSERT_FALSE(mapped(p, ps));
}

/*
 * Each advice reads back through the attribute queries, alone or all at
 * once, over exactly the pages the byte range touches.
 */
TEST_F(lib, advise_attributes)
{
	size_t ps = self->ps, len = 4 * MiB, half = len / 2;
	int d0 = self->dev[0], d1 = self->dev[1], ids[4], one = -7;
	struct attrs a;
	char *p;

	ASSERT_GMEM(gmemMallocShared((void **)&p, len), gmemSuccess);
	ASSERT_GMEM(get_attrs(p, len, &a), gmemSuccess);
	ASSERT_EQ(a.preferred, NONE);
	ASSERT_EQ(a.read_mostly, 0);
	ASSERT_DEVS(a.accessed_by, NONE, NONE, NONE, NONE);
	ASSERT_DEVS(a.pinned, NONE, NONE, NONE, NONE);

	/* Preferred location: a device, the host, none. */
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetPreferredLocation,
				  d0), gmemSuccess);
	ASSERT_EQ(PREFERRED(p, len), d0);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetPreferredLocation,
				  gmemCpuDeviceId), gmemSuccess);
	ASSERT_EQ(PREFERRED(p, len), gmemCpuDeviceId);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseUnsetPreferredLocation,
				  d0), gmemSuccess);
	ASSERT_EQ(PREFERRED(p, len), NONE);

	/* Accessed by both: ascending, then unused slots. */
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetAccessedBy, d1),
		    gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetAccessedBy, d0),
		    gmemSuccess);
	ACCESSED_BY(p, len, ids);
	ASSERT_DEVS(ids, self->lo, self->hi, NONE, NONE);
	/* One slot for two devices: the first, as CUDA. */
	ASSERT_GMEM(gmemMemRangeGetAttribute(&one, sizeof(one),
					     gmemMemRangeAttributeAccessedBy,
					     p, len), gmemSuccess);
	ASSERT_EQ(one, self->lo);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseUnsetAccessedBy, d0),
		    gmemSuccess);
	ACCESSED_BY(p, len, ids);
	ASSERT_DEVS(ids, d1, NONE, NONE, NONE);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseUnsetAccessedBy, d1),
		    gmemSuccess);
	ACCESSED_BY(p, len, ids);
	ASSERT_DEVS(ids, NONE, NONE, NONE, NONE);

	/* Read-mostly; the device argument is not used. */
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetReadMostly, d0),
		    gmemSuccess);
	ASSERT_EQ(READ_MOSTLY(p, len), 1);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseUnsetReadMostly,
				  gmemCpuDeviceId), gmemSuccess);
	ASSERT_EQ(READ_MOSTLY(p, len), 0);

	/* Pin half: pinned to d0 there, not over the whole range. */
	fill_pattern(p, len, 12);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdvisePin, d0), gmemSuccess);
	ASSERT_EQ(dev_stat(self->name[0], "pinned"), (long)(half / ps));
	PINNED_TO(p, half, ids);
	ASSERT_DEVS(ids, d0, NONE, NONE, NONE);
	PINNED_TO(p, len, ids);
	ASSERT_DEVS(ids, NONE, NONE, NONE, NONE);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdviseUnpin, d0),
		    gmemSuccess);
	ASSERT_EQ(dev_stat(self->name[0], "pinned"), 0);
	PINNED_TO(p, half, ids);
	ASSERT_DEVS(ids, NONE, NONE, NONE, NONE);
	ASSERT_EQ(check_pattern(p, len, 12), -1);

	/* All at once agrees with one at a time. */
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdviseSetPreferredLocation,
				  d1), gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdviseSetReadMostly, 0),
		    gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdviseSetAccessedBy, d0),
		    gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdvisePin, d1), gmemSuccess);
	ASSERT_GMEM(get_attrs(p, half, &a), gmemSuccess);
	ASSERT_EQ(a.preferred, d1);
	ASSERT_EQ(a.preferred, PREFERRED(p, half));
	ASSERT_EQ(a.read_mostly, 1);
	ASSERT_EQ(a.read_mostly, READ_MOSTLY(p, half));
	ASSERT_DEVS(a.accessed_by, d0, NONE, NONE, NONE);
	ACCESSED_BY(p, half, ids);
	ASSERT_DEVS(ids, d0, NONE, NONE, NONE);
	ASSERT_DEVS(a.pinned, d1, NONE, NONE, NONE);
	PINNED_TO(p, half, ids);
	ASSERT_DEVS(ids, d1, NONE, NONE, NONE);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdviseUnpin, d1),
		    gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdviseUnsetAccessedBy, d0),
		    gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, half, gmemMemAdviseUnsetReadMostly, 0),
		    gmemSuccess);

	/* Two halves, two preferences: the whole has none. */
	ASSERT_GMEM(gmemMemAdvise(p + half, half,
				  gmemMemAdviseSetPreferredLocation, d0),
		    gmemSuccess);
	ASSERT_EQ(PREFERRED(p, half), d1);
	ASSERT_EQ(PREFERRED(p + half, half), d0);
	ASSERT_EQ(PREFERRED(p, len), NONE);
	/* Bytes stand for their pages: one byte, two bytes over two pages. */
	ASSERT_EQ(PREFERRED(p + half + 123, 1), d0);
	ASSERT_EQ(PREFERRED(p + half - 1, 1), d1);
	ASSERT_EQ(PREFERRED(p + half - 1, 2), NONE);

	/* Advice on a byte: its page, and only it. */
	ASSERT_GMEM(gmemMemAdvise(p + ps + 5, 1, gmemMemAdviseSetReadMostly, 0),
		    gmemSuccess);
	ASSERT_EQ(READ_MOSTLY(p + ps, ps), 1);
	ASSERT_EQ(READ_MOSTLY(p + 2 * ps - 1, 1), 1);
	ASSERT_EQ(READ_MOSTLY(p, ps), 0);
	ASSERT_EQ(READ_MOSTLY(p + 2 * ps, ps), 0);
	/* Two bytes across a page boundary: both pages. */
	ASSERT_GMEM(gmemMemAdvise(p + 4 * ps - 1, 2, gmemMemAdviseSetAccessedBy,
				  d1), gmemSuccess);
	ACCESSED_BY(p + 3 * ps, 2 * ps, ids);
	ASSERT_DEVS(ids, d1, NONE, NONE, NONE);
	ACCESSED_BY(p + 2 * ps, ps, ids);
	ASSERT_DEVS(ids, NONE, NONE, NONE, NONE);
	ACCESSED_BY(p + 5 * ps, ps, ids);
	ASSERT_DEVS(ids, NONE, NONE, NONE, NONE);
	ASSERT_EQ(check_pattern(p, len, 12), -1);
	ASSERT_GMEM(gmemFree(p, len), gmemSuccess);
}

/*
 * gmemMemPrefetch moves the range into a device's memory (mapped there:
 * the job after it takes no fault), from one device to the other, and
 * home again with gmemCpuDeviceId, exactly the pages named; the data
 * survives every move.
 */
TEST_F(lib, prefetch)
{
	size_t ps = self->ps, len = 4 * MiB;
	long pages = len / ps, used0, used1, used;
	const char *n0 = self->name[0], *n1 = self->name[1];
	struct gmem_npu_wait w;
	char *p;

	used0 = dev_stat(n0, "devmem_used");
	used1 = dev_stat(n1, "devmem_used");
	ASSERT_GE(used0, 0) TH_LOG("no %s in debugfs gmem/devices", n0);
	ASSERT_GE(used1, 0) TH_LOG("no %s in debugfs gmem/devices", n1);
	ASSERT_GMEM(gmemMallocShared((void **)&p, len), gmemSuccess);
	fill_pattern(p, len, 21);

	ASSERT_GMEM(gmemMemPrefetch(p, len, self->dev[0]), gmemSuccess);
	ASSERT_EQ(dev_stat(n0, "devmem_used"), used0 + pages);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 21));
	ASSERT_EQ(w.faults, 0);

	ASSERT_GMEM(gmemMemPrefetch(p, len, self->dev[1]), gmemSuccess);
	ASSERT_EQ(dev_stat(n1, "devmem_used"), used1 + pages);
	ASSERT_EQ(dev_stat(n0, "devmem_used"), used0);
	ASSERT_EQ(npu_sum(self->fd[1], p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 21));
	ASSERT_EQ(w.faults, 0);

	ASSERT_GMEM(gmemMemPrefetch(p, len, gmemCpuDeviceId), gmemSuccess);
	ASSERT_EQ(dev_stat(n1, "devmem_used"), used1);
	ASSERT_EQ(dev_stat(n0, "devmem_used"), used0);
	ASSERT_EQ(check_pattern(p, len, 21), -1);

	/* One byte to a device: at least its page moves (by block). */
	ASSERT_GMEM(gmemMemPrefetch(p + ps + 7, 1, self->dev[0]), gmemSuccess);
	used = dev_stat(n0, "devmem_used");
	ASSERT_GT(used, used0);
	/* One byte home: exactly its page comes back. */
	ASSERT_GMEM(gmemMemPrefetch(p + ps + 7, 1, gmemCpuDeviceId),
		    gmemSuccess);
	ASSERT_EQ(dev_stat(n0, "devmem_used"), used - 1);
	ASSERT_GMEM(gmemMemPrefetch(p, len, gmemCpuDeviceId), gmemSuccess);
	ASSERT_EQ(dev_stat(n0, "devmem_used"), used0);
	ASSERT_EQ(check_pattern(p, len, 21), -1);
	ASSERT_GMEM(gmemFree(p, len), gmemSuccess);
	ASSERT_EQ(dev_stat_wait(n0, "devmem_used", used0, FREE_DELAY_MS),
		  used0);
}

static void *last_errno_of_new_thread(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)gmemGetLastErrno();
}

/*
 * Every bad argument gets its exact error and errno, and changes none of
 * the range's attributes nor any output.
 */
TEST_F(lib, wrong_arguments)
{
	size_t ps = self->ps, len = BLOCK;
	int d0 = self->dev[0], v = SENTINEL, devs[4], ids[GMEM_MAX_DEVICES];
	const int bad_adv[] = { 0, 10, 99, -1, INT_MAX };
	const int bad_attr[] = { 0, 5, -1, INT_MAX };
	struct attrs before, now, junk;
	char *p, *plain, *holey;
	pthread_t t;
	void *res;
	int n;

	ASSERT_GMEM(gmemMallocShared((void **)&p, len), gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetPreferredLocation,
				  d0), gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetReadMostly, 0),
		    gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetAccessedBy,
				  self->dev[1]), gmemSuccess);
	ASSERT_GMEM(get_attrs(p, len, &before), gmemSuccess);

	/* Unknown advice. */
	for (size_t i = 0; i < ARRAY_SIZE(bad_adv); i++) {
		ASSERT_GMEM(gmemMemAdvise(p, len, (gmemMemoryAdvise)bad_adv[i],
					  d0), gmemErrorInvalidValue);
		ASSERT_EQ(gmemGetLastErrno(), EINVAL);
	}
	/* Empty, NULL, wrapping ranges. */
	ASSERT_GMEM(gmemMemAdvise(p, 0, gmemMemAdviseSetReadMostly, 0),
		    gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemAdvise(NULL, ps, gmemMemAdviseSetReadMostly, 0),
		    gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemAdvise(p, SIZE_MAX, gmemMemAdviseSetReadMostly, 0),
		    gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemAdvise((void *)(UINTPTR_MAX - ps + 1), 1,
				  gmemMemAdviseSetReadMostly, 0),
		    gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemPrefetch(p, 0, d0), gmemErrorInvalidValue);
	/* Discard is not widened: it would zero bytes outside the range. */
	ASSERT_GMEM(gmemMemAdvise(p + 1, ps - 1, gmemMemAdviseDiscard, 0),
		    gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemAdvise(p, ps + 1, gmemMemAdviseDiscard, 0),
		    gmemErrorInvalidValue);

	/* The host where a device is needed. */
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetAccessedBy,
				  gmemCpuDeviceId), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdvisePin, gmemCpuDeviceId),
		    gmemErrorInvalidValue);

	/* Devices that do not exist. */
	ASSERT_GMEM(gmemGetDevices(ids, ARRAY_SIZE(ids), &n), gmemSuccess);
	ASSERT_NE(ids[n - 1], 63);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetPreferredLocation,
				  63), gmemErrorInvalidDevice);
	ASSERT_EQ(gmemGetLastErrno(), ENODEV);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetAccessedBy, 63),
		    gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseUnsetAccessedBy, 63),
		    gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdvisePin, 63),
		    gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdvisePin, 64),
		    gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetPreferredLocation,
				  gmemInvalidDeviceId), gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemPrefetch(p, len, 63), gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemPrefetch(p, len, -3), gmemErrorInvalidDevice);

	/* A hole in the range: the mapped pages around it keep theirs. */
	holey = peer_mmap(3 * ps);
	ASSERT_NE(holey, MAP_FAILED);
	ASSERT_EQ(munmap(holey + ps, ps), 0);
	ASSERT_GMEM(gmemMemAdvise(holey, 3 * ps, gmemMemAdviseSetReadMostly, 0),
		    gmemErrorNotMapped);
	ASSERT_EQ(gmemGetLastErrno(), EFAULT);
	ASSERT_GMEM(gmemMemAdvise(holey + 1, 3 * ps - 2,
				  gmemMemAdviseSetPreferredLocation, d0),
		    gmemErrorNotMapped);
	ASSERT_GMEM(gmemMemPrefetch(holey, 3 * ps, d0), gmemErrorNotMapped);
	ASSERT_GMEM(gmemMemRangeGetAttribute(&v, sizeof(v),
					     gmemMemRangeAttributeReadMostly,
					     holey, 3 * ps),
		    gmemErrorNotMapped);
	ASSERT_EQ(v, SENTINEL);
	ASSERT_GMEM(get_attrs(holey, 3 * ps, &now), gmemErrorNotMapped);
	memset(&junk, 0x5a, sizeof(junk));
	ASSERT_EQ(memcmp(&now, &junk, sizeof(now)), 0);
	ASSERT_EQ(READ_MOSTLY(holey, ps), 0);
	ASSERT_EQ(READ_MOSTLY(holey + 2 * ps, ps), 0);
	ASSERT_EQ(PREFERRED(holey, ps), NONE);
	ASSERT_EQ(PREFERRED(holey + 2 * ps, ps), NONE);

	/* Memory the devices cannot reach. */
	plain = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(plain, MAP_FAILED);
	ASSERT_GMEM(gmemMemAdvise(plain, 4 * ps, gmemMemAdviseSetReadMostly, 0),
		    gmemErrorNotShared);
	ASSERT_EQ(gmemGetLastErrno(), EACCES);
	ASSERT_GMEM(gmemMemPrefetch(plain, ps, d0), gmemErrorNotShared);
	ASSERT_GMEM(gmemMemRangeGetAttribute(&v, sizeof(v),
					     gmemMemRangeAttributeReadMostly,
					     plain, ps), gmemErrorNotShared);
	ASSERT_EQ(v, SENTINEL);

	/* Bad attributes and sizes: no output written. */
	for (size_t i = 0; i < ARRAY_SIZE(bad_attr); i++)
		ASSERT_GMEM(gmemMemRangeGetAttribute(&v, sizeof(v),
				(gmemMemRangeAttribute)bad_attr[i], p, len),
			    gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemRangeGetAttribute(&v, 0,
					     gmemMemRangeAttributeReadMostly,
					     p, len), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemRangeGetAttribute(&v, sizeof(v) - 1,
				gmemMemRangeAttributePreferredLocation, p, len),
		    gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemRangeGetAttribute(NULL, sizeof(v),
					     gmemMemRangeAttributeReadMostly,
					     p, len), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemRangeGetAttribute(&v, sizeof(v),
					     gmemMemRangeAttributeReadMostly,
					     p, 0), gmemErrorInvalidValue);
	ASSERT_EQ(v, SENTINEL);
	for (int i = 0; i < 4; i++)
		devs[i] = SENTINEL;
	ASSERT_GMEM(gmemMemRangeGetAttribute(devs, 0,
					     gmemMemRangeAttributeAccessedBy,
					     p, len), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemRangeGetAttribute(devs, 6,
					     gmemMemRangeAttributeAccessedBy,
					     p, len), gmemErrorInvalidValue);
	ASSERT_GMEM(gmemMemRangeGetAttribute(devs, 3,
					     gmemMemRangeAttributePinnedTo,
					     p, len), gmemErrorInvalidValue);
	ASSERT_DEVS(devs, SENTINEL, SENTINEL, SENTINEL, SENTINEL);

	/* Several at once: one bad one, and none is written. */
	{
		int pref = SENTINEL, rm = SENTINEL, acc[2] = { SENTINEL },
		    pin[2] = { SENTINEL };
		void *data[] = { &pref, &rm, acc, pin };
		size_t sizes[] = { sizeof(pref), sizeof(rm), 6, sizeof(pin) };
		gmemMemRangeAttribute at[] = {
			gmemMemRangeAttributePreferredLocation,
			gmemMemRangeAttributeReadMostly,
			gmemMemRangeAttributeAccessedBy,
			gmemMemRangeAttributePinnedTo,
		};

		ASSERT_GMEM(gmemMemRangeGetAttributes(data, sizes, at, 4, p,
						      len),
			    gmemErrorInvalidValue);
		sizes[2] = sizeof(acc);
		at[3] = (gmemMemRangeAttribute)7;
		ASSERT_GMEM(gmemMemRangeGetAttributes(data, sizes, at, 4, p,
						      len),
			    gmemErrorInvalidValue);
		at[3] = gmemMemRangeAttributePinnedTo;
		data[1] = NULL;
		ASSERT_GMEM(gmemMemRangeGetAttributes(data, sizes, at, 4, p,
						      len),
			    gmemErrorInvalidValue);
		data[1] = &rm;
		ASSERT_EQ(pref, SENTINEL);
		ASSERT_EQ(rm, SENTINEL);
		ASSERT_EQ(acc[0], SENTINEL);
		ASSERT_EQ(pin[0], SENTINEL);
		ASSERT_GMEM(gmemMemRangeGetAttributes(data, sizes, at, 0, p,
						      len),
			    gmemErrorInvalidValue);
		ASSERT_GMEM(gmemMemRangeGetAttributes(NULL, sizes, at, 4, p,
						      len),
			    gmemErrorInvalidValue);
		ASSERT_GMEM(gmemMemRangeGetAttributes(data, NULL, at, 4, p,
						      len),
			    gmemErrorInvalidValue);
		ASSERT_GMEM(gmemMemRangeGetAttributes(data, sizes, NULL, 4, p,
						      len),
			    gmemErrorInvalidValue);
		ASSERT_EQ(pref, SENTINEL);
		/* And now all good: every one written. */
		ASSERT_GMEM(gmemMemRangeGetAttributes(data, sizes, at, 4, p,
						      len), gmemSuccess);
		ASSERT_EQ(pref, before.preferred);
		ASSERT_EQ(rm, before.read_mostly);
		ASSERT_EQ(acc[0], before.accessed_by[0]);
		ASSERT_EQ(pin[0], before.pinned[0]);
	}

	/* Nothing changed, nothing moved. */
	ASSERT_GMEM(get_attrs(p, len, &now), gmemSuccess);
	ASSERT_EQ(memcmp(&now, &before, sizeof(now)), 0);
	ASSERT_EQ(now.preferred, d0);
	ASSERT_EQ(now.read_mostly, 1);
	ASSERT_DEVS(now.accessed_by, self->dev[1], NONE, NONE, NONE);
	ASSERT_DEVS(now.pinned, NONE, NONE, NONE, NONE);
	ASSERT_EQ(dev_stat(self->name[0], "pinned"), 0);
	ASSERT_EQ(dev_stat(self->name[1], "pinned"), 0);

	/* The last errno is this thread's: a new one has none. */
	ASSERT_NE(gmemGetLastErrno(), 0);
	ASSERT_EQ(pthread_create(&t, NULL, last_errno_of_new_thread, NULL), 0);
	ASSERT_EQ(pthread_join(t, &res), 0);
	ASSERT_EQ((intptr_t)res, 0);

	ASSERT_EQ(munmap(plain, 4 * ps), 0);
	ASSERT_EQ(munmap(holey, ps), 0);
	ASSERT_EQ(munmap(holey + 2 * ps, ps), 0);
	ASSERT_GMEM(gmemFree(p, len), gmemSuccess);
}

/*
 * A registered device this process has not attached: advice naming it
 * is gmemErrorInvalidDevice and changes nothing, until the process opens
 * the device.
 */
TEST(unattached_device)
{
	int ids[GMEM_MAX_DEVICES], n, fd, devs[4];
	struct gmem_npu_info info;
	size_t len = BLOCK;
	char *p;

	ASSERT_GMEM(gmemGetDevices(ids, ARRAY_SIZE(ids), &n), gmemSuccess);
	ASSERT_GE(n, 1);
	ASSERT_GMEM(gmemMallocShared((void **)&p, len), gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetAccessedBy, ids[0]),
		    gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdvisePin, ids[0]),
		    gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetPreferredLocation,
				  ids[0]), gmemErrorInvalidDevice);
	ASSERT_GMEM(gmemMemPrefetch(p, len, ids[0]), gmemErrorInvalidDevice);
	ASSERT_EQ(PREFERRED(p, len), NONE);
	ACCESSED_BY(p, len, devs);
	ASSERT_DEVS(devs, NONE, NONE, NONE, NONE);
	PINNED_TO(p, len, devs);
	ASSERT_DEVS(devs, NONE, NONE, NONE, NONE);

	fd = npu_open(0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(npu_get_info(fd, &info), 0);
	ASSERT_GMEM(gmemMemAdvise(p, len, gmemMemAdviseSetAccessedBy,
				  info.dev_id), gmemSuccess);
	ACCESSED_BY(p, len, devs);
	ASSERT_DEVS(devs, (int)info.dev_id, NONE, NONE, NONE);
	ASSERT_GMEM(gmemFree(p, len), gmemSuccess);
	close(fd);
}

/* Every error has its own string and its enumerator's name. */
TEST(error_strings)
{
	static const char *const names[] = {
		"gmemSuccess", "gmemErrorInvalidValue",
		"gmemErrorMemoryAllocation", "gmemErrorNoDevice",
		"gmemErrorInvalidDevice", "gmemErrorNotMapped",
		"gmemErrorNotShared", "gmemErrorInterrupted",
		"gmemErrorNotSupported", "gmemErrorPermission",
		"gmemErrorUnknown",
	};
	const int unknown[] = { -1, gmemErrorUnknown + 1, 1000, INT_MAX,
				INT_MIN };

	ASSERT_EQ(ARRAY_SIZE(names), gmemErrorUnknown + 1);
	for (int e = gmemSuccess; e <= gmemErrorUnknown; e++) {
		const char *s = gmemGetErrorString(e);
		const char *name = gmemGetErrorName(e);

		ASSERT_NE(s, NULL);
		ASSERT_NE(name, NULL);
		ASSERT_NE(s[0], 0);
		ASSERT_STREQ(name, names[e]);
		ASSERT_STRNE(s, "unrecognized error code");
		for (int f = gmemSuccess; f < e; f++) {
			ASSERT_STRNE(s, gmemGetErrorString(f));
			ASSERT_STRNE(name, gmemGetErrorName(f));
		}
	}
	ASSERT_STREQ(gmemGetErrorString(gmemSuccess), "no error");
	for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
		ASSERT_STREQ(gmemGetErrorString(unknown[i]),
			     "unrecognized error code");
		ASSERT_STREQ(gmemGetErrorName(unknown[i]),
			     "gmemErrorUnrecognized");
	}
}

static pthread_barrier_t start_line;

struct worker {
	pthread_t thread;
	char *page;
	int count;
	gmemError_t count_err, advise_err;
};

/* Half the threads count the devices first, half advise first. */
static void *first_use(void *arg)
{
	struct worker *w = arg;
	bool count_first = ((uintptr_t)w->page / sysconf(_SC_PAGE_SIZE)) & 1;

	pthread_barrier_wait(&start_line);
	if (count_first)
		w->count_err = gmemGetDeviceCount(&w->count);
	w->advise_err = gmemMemAdvise(w->page, 1, gmemMemAdviseSetReadMostly,
				      gmemCpuDeviceId);
	if (!count_first)
		w->count_err = gmemGetDeviceCount(&w->count);
	return NULL;
}

/*
 * Threads racing to make the library's first call all succeed, and the
 * process is left with one descriptor of /dev/gmem, close-on-exec, kept
 * for the calls after.
 */
TEST(threads_first_use)
{
	size_t ps = sysconf(_SC_PAGE_SIZE);
	struct worker w[NTHREADS];
	int before = gmem_fds(NULL), fd = -1, n;
	char *p;

	ASSERT_GE(before, 0);
	/* Mapping needs no descriptor: the threads make the first use. */
	ASSERT_GMEM(gmemMallocShared((void **)&p, NTHREADS * ps), gmemSuccess);
	ASSERT_EQ(gmem_fds(NULL), before);
	ASSERT_EQ(pthread_barrier_init(&start_line, NULL, NTHREADS), 0);
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .page = p + i * ps, .count = -1,
					.count_err = -1, .advise_err = -1 };
		ASSERT_EQ(pthread_create(&w[i].thread, NULL, first_use, &w[i]),
			  0);
	}
	for (int i = 0; i < NTHREADS; i++)
		ASSERT_EQ(pthread_join(w[i].thread, NULL), 0);
	for (int i = 0; i < NTHREADS; i++) {
		ASSERT_EQ(w[i].count_err, gmemSuccess)
			TH_LOG("thread %d: %s", i,
			       gmemGetErrorName(w[i].count_err));
		ASSERT_EQ(w[i].advise_err, gmemSuccess)
			TH_LOG("thread %d: %s", i,
			       gmemGetErrorName(w[i].advise_err));
		ASSERT_GE(w[i].count, 2);
		ASSERT_EQ(w[i].count, w[0].count);
	}
	ASSERT_EQ(gmem_fds(&fd), before + 1);
	ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(READ_MOSTLY(p, NTHREADS * ps), 1);
	/* Kept: the next calls open nothing more. */
	ASSERT_GMEM(gmemGetDeviceCount(&n), gmemSuccess);
	ASSERT_GMEM(gmemMemAdvise(p, NTHREADS * ps,
				  gmemMemAdviseUnsetReadMostly, 0),
		    gmemSuccess);
	ASSERT_EQ(gmem_fds(NULL), before + 1);
	ASSERT_GMEM(gmemFree(p, NTHREADS * ps), gmemSuccess);
	pthread_barrier_destroy(&start_line);
}

/*
 * Without gmem.ko every call says gmemErrorNoDevice, every time (a failed
 * open is not cached), and maps nothing.
 */
TEST(no_module)
{
	size_t ps = sysconf(_SC_PAGE_SIZE);
	int n = -5, v = SENTINEL, ids[4], before;
	void *q = &n, *sentinel = &n;
	gmemDeviceProp prop;
	char *plain;

	if (module_loaded("gmem"))
		SKIP(return, "gmem is loaded");
	for (int round = 0; round < 2; round++) {
		ASSERT_GMEM(gmemGetDeviceCount(&n), gmemErrorNoDevice);
		ASSERT_NE(gmemGetLastErrno(), 0);
		ASSERT_EQ(n, -5);
	}
	ASSERT_GMEM(gmemGetDevices(ids, 4, &n), gmemErrorNoDevice);
	ASSERT_GMEM(gmemGetDeviceProperties(&prop, 0), gmemErrorNoDevice);

	map_count();
	before = map_count();
	ASSERT_GMEM(gmemMallocShared(&q, MiB), gmemErrorNoDevice);
	ASSERT_EQ(gmemGetLastErrno(), ENODEV);
	ASSERT_EQ(q, sentinel);
	ASSERT_EQ(map_count(), before);

	plain = mmap(NULL, ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(plain, MAP_FAILED);
	ASSERT_GMEM(gmemMemAdvise(plain, ps, gmemMemAdviseSetReadMostly, 0),
		    gmemErrorNoDevice);
	ASSERT_GMEM(gmemMemPrefetch(plain, ps, gmemCpuDeviceId),
		    gmemErrorNoDevice);
	ASSERT_GMEM(gmemMemRangeGetAttribute(&v, sizeof(v),
					     gmemMemRangeAttributeReadMostly,
					     plain, ps), gmemErrorNoDevice);
	ASSERT_EQ(v, SENTINEL);
	ASSERT_EQ(gmem_fds(NULL), 0);
	ASSERT_EQ(munmap(plain, ps), 0);
}

TEST_HARNESS_MAIN
