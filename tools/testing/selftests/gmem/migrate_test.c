// SPDX-License-Identifier: GPL-2.0
/*
 * Device memory of the simulated NPU (gmem_npu.ko): pages migrating to an
 * NPU's own memory when it touches them or on GMEM_NPU_IOC_PREFETCH, and
 * back to host memory when the CPU touches them.  The upstream hmm-tests
 * migration cases (migrate, migrate_fault, migrate_multiple,
 * hmm_cow_in_device, migrate_partial_unmap_fault, migrate_remap_fault)
 * ported to it, plus what is gmem's own: placement, a full device evicting,
 * freeing at exit, two NPUs sharing one range.
 *
 * Every test checks the data, and where pages are follows from debugfs
 * gmem/devices (devmem_used, to_dev, to_host, cpu_faults of each NPU) and
 * gmem/stats.  Needs gmem.ko and gmem_npu.ko num_devices=2 dram_mib=16
 * loaded (the runner loads them); the migrate2 tests skip without
 * /dev/gmem_npu1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

/* End of the x86-64 user address space (4-level paging). */
#define USER_END		0x800000000000ULL
/* How long freeing device memory may lag behind munmap or exit. */
#define FREE_DELAY_MS		2000

/* A BLOCK-aligned PROT_NONE reservation of @len bytes, for mremap. */
static void *reserve_block(size_t len)
{
	return mmap_block(len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
}

/* The device-memory counters of one NPU in debugfs gmem/devices. */
struct devmem {
	long pages;
	long used;
	long to_dev;
	long to_host;
	long cpu_faults;
};

static struct devmem devmem(const char *dev)
{
	return (struct devmem){
		.pages = dev_stat(dev, "devmem_pages"),
		.used = dev_stat(dev, "devmem_used"),
		.to_dev = dev_stat(dev, "to_dev"),
		.to_host = dev_stat(dev, "to_host"),
		.cpu_faults = dev_stat(dev, "cpu_faults"),
	};
}

static long used(const char *dev)
{
	return dev_stat(dev, "devmem_used");
}

/* Waits up to FREE_DELAY_MS for @dev's devmem_used to be @want. */
static long used_wait(const char *dev, long want)
{
	return dev_stat_wait(dev, "devmem_used", want, FREE_DELAY_MS);
}

/*
 * The global sums of debugfs gmem/stats.
 */
struct gstats {
	long used;
	long to_dev;
	long to_host;
	long cpu_faults;
};

static struct gstats gstats(void)
{
	return (struct gstats){
		.used = gmem_stat("devmem_used"),
		.to_dev = gmem_stat("migrated_to_dev"),
		.to_host = gmem_stat("migrated_to_host"),
		.cpu_faults = gmem_stat("cpu_devmem_faults"),
	};
}

/*
 * Checks that @dev reports device memory, and lets the memory of an
 * earlier test's exited process be freed first, so that each test starts
 * from a quiet device.
 */
static void devmem_setup(struct __test_metadata *_metadata, const char *dev)
{
	struct devmem d = devmem(dev);

	ASSERT_GT(d.pages, 0)
		TH_LOG("%s: no devmem_pages in debugfs gmem/devices", dev);
	ASSERT_GE(d.used, 0);
	ASSERT_GE(d.to_dev, 0);
	ASSERT_GE(d.to_host, 0);
	ASSERT_GE(d.cpu_faults, 0);
	if (used_wait(dev, 0) != 0)
		TH_LOG("%s: %ld device pages in use before the test", dev,
		       used(dev));
}

FIXTURE(migrate)
{
	int fd;
	size_t ps;
	long devmem_pages;
	struct thrash_params thrash;
};

FIXTURE_SETUP(migrate)
{
	self->ps = sysconf(_SC_PAGE_SIZE);
	self->thrash = thrash_params_get();
	self->fd = npu_open(0);
	ASSERT_GE(self->fd, 0)
		TH_LOG("open /dev/gmem_npu0: %s (gmem_npu.ko loaded?)",
		       strerror(errno));
	devmem_setup(_metadata, "npu0");
	self->devmem_pages = dev_stat("npu0", "devmem_pages");
}

FIXTURE_TEARDOWN(migrate)
{
	thrash_params_put(self->thrash);
	if (self->fd >= 0)
		close(self->fd);
}

FIXTURE(migrate2)
{
	int fd0;
	int fd1;
	size_t ps;
};

FIXTURE_SETUP(migrate2)
{
	self->ps = sysconf(_SC_PAGE_SIZE);
	self->fd1 = -1;
	self->fd0 = npu_open(0);
	ASSERT_GE(self->fd0, 0)
		TH_LOG("open /dev/gmem_npu0: %s", strerror(errno));
	self->fd1 = npu_open(1);
	if (self->fd1 < 0 && errno == ENOENT)
		SKIP(return, "no /dev/gmem_npu1 (gmem_npu.ko num_devices=2)");
	ASSERT_GE(self->fd1, 0)
		TH_LOG("open /dev/gmem_npu1: %s", strerror(errno));
	devmem_setup(_metadata, "npu0");
	devmem_setup(_metadata, "npu1");
}

FIXTURE_TEARDOWN(migrate2)
{
	if (self->fd0 >= 0)
		close(self->fd0);
	if (self->fd1 >= 0)
		close(self->fd1);
}

/* Skips the test unless @dev has @npages free pages of device memory. */
#define NEED_FREE(dev, npages) do {					\
	struct devmem _d = devmem(dev);					\
	if (_d.pages - _d.used < (long)(npages))			\
		SKIP(return, "%s: %ld of %ld device pages free, %ld needed", \
		     dev, _d.pages - _d.used, _d.pages, (long)(npages)); \
} while (0)

/* hmm migrate: prefetched pages are read by the device and faulted back. */
TEST_F_TIMEOUT(migrate, prefetch_then_device_read, 120)
{
	size_t len = 4 * MiB, npages = len / self->ps;
	__u32 seed = 0x9e71;
	struct devmem a, b, c;
	struct gstats ga, gb, gc;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	ssize_t bad;

	ASSERT_NE(p, MAP_FAILED);
	NEED_FREE("npu0", npages);
	fill_pattern(p, len, seed);
	a = devmem("npu0");
	ga = gstats();
	ASSERT_GE(ga.used, 0) TH_LOG("no devmem_used in debugfs gmem/stats");
	ASSERT_GE(ga.to_dev, 0) TH_LOG("no migrated_to_dev in gmem/stats");
	ASSERT_GE(ga.to_host, 0) TH_LOG("no migrated_to_host in gmem/stats");
	ASSERT_GE(ga.cpu_faults, 0)
		TH_LOG("no cpu_devmem_faults in gmem/stats");

	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	b = devmem("npu0");
	gb = gstats();
	ASSERT_EQ(b.used, a.used + (long)npages);
	ASSERT_EQ(b.to_dev, a.to_dev + (long)npages);
	ASSERT_EQ(b.to_host, a.to_host);
	ASSERT_EQ(b.cpu_faults, a.cpu_faults);
	ASSERT_EQ(gb.used, ga.used + (long)npages);
	ASSERT_EQ(gb.to_dev, ga.to_dev + (long)npages);

	/* Prefetching pages already there moves nothing. */
	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	c = devmem("npu0");
	ASSERT_EQ(c.used, b.used);
	ASSERT_EQ(c.to_dev, b.to_dev);

	/* The prefetched pages are mapped in the NPU: no device fault. */
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(w.faults, 0) TH_LOG("%llu faults on prefetched memory",
				      (unsigned long long)w.faults);
	ASSERT_EQ(used("npu0"), b.used) TH_LOG("a device read moved pages");

	/* The CPU faults every page back, intact. */
	bad = check_pattern(p, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at element %zd",
				  ((__u32 *)p)[bad], bad);
	c = devmem("npu0");
	gc = gstats();
	ASSERT_EQ(c.used, a.used) TH_LOG("pages left on the device");
	ASSERT_EQ(c.to_host, a.to_host + (long)npages);
	ASSERT_GE(c.cpu_faults, a.cpu_faults + 1);
	ASSERT_LE(c.cpu_faults, a.cpu_faults + (long)npages);
	ASSERT_EQ(gc.used, ga.used);
	ASSERT_EQ(gc.to_host, ga.to_host + (long)npages);
	ASSERT_GE(gc.cpu_faults, ga.cpu_faults + (c.cpu_faults - a.cpu_faults));
	/* Back in host memory: reading again faults nothing back. */
	ASSERT_EQ(check_pattern(p, len, seed), -1);
	ASSERT_EQ(dev_stat("npu0", "cpu_faults"), c.cpu_faults);
	ASSERT_EQ(munmap(p, len), 0);
}

/* The NPU touching host pages migrates their block; the CPU brings it back. */
TEST_F_TIMEOUT(migrate, device_touch_migrates, 120)
{
	size_t len = BLOCK, npages = len / self->ps;
	__u32 seed = 0x70c4;
	struct devmem a, b, c;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len), *q = peer_mmap_block(len);
	long before;
	ssize_t bad;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_NE(q, MAP_FAILED);
	NEED_FREE("npu0", 2 * npages);
	fill_pattern(p, len, seed);
	a = devmem("npu0");

	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_GE(w.faults, 1);
	b = devmem("npu0");
	ASSERT_EQ(b.used, a.used + (long)npages)
		TH_LOG("a device read migrates its 2 MiB block");
	ASSERT_EQ(b.to_dev, a.to_dev + (long)npages);
	/* Now the NPU's own memory, mapped: no fault, nothing moves. */
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(w.faults, 0);

	/* The NPU writes its own memory in place. */
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x5c, &w), 0);
	ASSERT_EQ(used("npu0"), b.used);
	ASSERT_EQ(dev_stat("npu0", "to_dev"), b.to_dev);
	bad = find_not_byte(p, len, 0x5c);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at byte %zd", p[bad], bad);
	c = devmem("npu0");
	ASSERT_EQ(c.used, a.used);
	ASSERT_EQ(c.to_host, a.to_host + (long)npages);
	ASSERT_GT(c.cpu_faults, a.cpu_faults);

	/* Never-touched memory: what the NPU writes the CPU reads. */
	before = used("npu0");
	ASSERT_EQ(npu_fill(self->fd, q, len, 0xa7, &w), 0);
	ASSERT_LE(used("npu0"), before + (long)npages);
	bad = find_not_byte(q, len, 0xa7);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at byte %zd", q[bad], bad);
	ASSERT_EQ(used("npu0"), before);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(munmap(q, len), 0);
}

/* hmm migrate_fault: half comes back, then the mixed range migrates again. */
TEST_F_TIMEOUT(migrate, cpu_faults_back_half_then_remigrate, 120)
{
	size_t len = 4 * MiB, half = len / 2, npages = len / self->ps;
	__u32 seed = 0xfa17;
	struct devmem a, b, c;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	ssize_t bad;

	ASSERT_NE(p, MAP_FAILED);
	NEED_FREE("npu0", npages);
	fill_pattern(p, len, seed);
	a = devmem("npu0");
	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	ASSERT_EQ(used("npu0"), a.used + (long)npages);

	bad = check_pattern(p, half, seed);
	ASSERT_EQ(bad, -1) TH_LOG("first half, element %zd", bad);
	b = devmem("npu0");
	ASSERT_EQ(b.to_host, a.to_host + (long)npages / 2)
		TH_LOG("reading the first 2 MiB brings back that block only");
	ASSERT_EQ(b.used, a.used + (long)npages / 2);
	ASSERT_GT(b.cpu_faults, a.cpu_faults);

	/* Half in host memory, half on the device: only the host half moves. */
	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	c = devmem("npu0");
	ASSERT_EQ(c.used, a.used + (long)npages);
	ASSERT_EQ(c.to_dev, b.to_dev + (long)npages / 2);

	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(w.faults, 0);
	bad = check_pattern(p, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at element %zd",
				  ((__u32 *)p)[bad], bad);
	ASSERT_EQ(used("npu0"), a.used);
	ASSERT_EQ(munmap(p, len), 0);
}

/* PREFETCH_TO_HOST gives the device memory back; no CPU fault needed. */
TEST_F_TIMEOUT(migrate, prefetch_to_host_releases, 120)
{
	size_t len = 4 * MiB, half = len / 2, npages = len / self->ps;
	__u32 seed = 0x4057;
	struct devmem a, b;
	struct gstats ga;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	ssize_t bad;

	ASSERT_NE(p, MAP_FAILED);
	NEED_FREE("npu0", npages);
	fill_pattern(p, len, seed);
	a = devmem("npu0");
	ga = gstats();
	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	ASSERT_EQ(used("npu0"), a.used + (long)npages);

	/* The second half back, then the whole (half of it already host). */
	ASSERT_EQ(npu_prefetch(self->fd, p + half, half,
			       GMEM_NPU_PREFETCH_TO_HOST), 0);
	b = devmem("npu0");
	ASSERT_EQ(b.used, a.used + (long)npages / 2);
	ASSERT_EQ(b.to_host, a.to_host + (long)npages / 2);
	ASSERT_EQ(npu_prefetch(self->fd, p, len, GMEM_NPU_PREFETCH_TO_HOST),
		  0);
	b = devmem("npu0");
	ASSERT_EQ(b.used, a.used) TH_LOG("PREFETCH_TO_HOST kept device pages");
	ASSERT_EQ(b.to_host, a.to_host + (long)npages);
	ASSERT_EQ(b.cpu_faults, a.cpu_faults);
	ASSERT_EQ(gmem_stat("devmem_used"), ga.used);
	ASSERT_EQ(gmem_stat("migrated_to_host"), ga.to_host + (long)npages);

	/* In host memory: the CPU reads it without a device-memory fault. */
	bad = check_pattern(p, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at element %zd",
				  ((__u32 *)p)[bad], bad);
	ASSERT_EQ(dev_stat("npu0", "cpu_faults"), a.cpu_faults);
	ASSERT_EQ(dev_stat("npu0", "to_host"), b.to_host);
	/* Already host: nothing to do. */
	ASSERT_EQ(npu_prefetch(self->fd, p, len, GMEM_NPU_PREFETCH_TO_HOST),
		  0);
	ASSERT_EQ(dev_stat("npu0", "to_host"), b.to_host);

	/* And the device still reads it (migrating it again). */
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(npu_prefetch(self->fd, p, len, GMEM_NPU_PREFETCH_TO_HOST),
		  0);
	ASSERT_EQ(used("npu0"), a.used);
	ASSERT_EQ(check_pattern(p, len, seed), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * hmm migrate_multiple: ten round trips, data intact every time.  With the
 * thrashing window closed (thrash_lapse_ms=0), so that every round trip
 * migrates: the NPU's clock times the window, and ten round trips are
 * far less than its 200 ms of device time (closer ones are the thrashing
 * test's business).
 */
TEST_F_TIMEOUT(migrate, round_trips_10, 300)
{
	size_t len = BLOCK, npages = len / self->ps;
	long old_lapse = set_gmem_param("thrash_lapse_ms", 0);
	__u32 seed = 0x10a;
	struct devmem a, b;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	ssize_t bad;
	int i;

	ASSERT_GE(old_lapse, 0);
	ASSERT_NE(p, MAP_FAILED);
	NEED_FREE("npu0", npages);
	/* Populated, so that the first device write migrates host pages. */
	memset(p, 0xff, len);
	a = devmem("npu0");
	for (i = 0; i < 10; i++) {
		ASSERT_EQ(npu_fill(self->fd, p, len, i, &w), 0)
			TH_LOG("round %d", i);
		ASSERT_EQ(used("npu0"), a.used + (long)npages)
			TH_LOG("round %d: the device write migrated", i);
		bad = find_not_byte(p, len, i);
		ASSERT_EQ(bad, -1) TH_LOG("round %d: CPU reads 0x%x at %zd",
					  i, p[bad], bad);
		ASSERT_EQ(used("npu0"), a.used) TH_LOG("round %d", i);

		fill_pattern(p, len, seed + i);
		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
		ASSERT_EQ(w.result, pattern_sum(len, seed + i))
			TH_LOG("round %d: the device read stale data", i);
	}
	bad = check_pattern(p, len, seed + 9);
	ASSERT_EQ(bad, -1) TH_LOG("element %zd", bad);
	b = devmem("npu0");
	ASSERT_EQ(b.used, a.used);
	ASSERT_GE(b.to_dev, a.to_dev + 10 * (long)npages);
	ASSERT_GE(b.to_host, a.to_host + 10 * (long)npages);
	ASSERT_GE(b.cpu_faults, a.cpu_faults + 10);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(set_gmem_param("thrash_lapse_ms", old_lapse), 0);
}

/*
 * hmm migrate_mixed / double_map: one range with a block on npu0, a block
 * on npu1 and a block in host memory; npu1 reads it all, and what it
 * touched ends in its memory.
 */
TEST_F_TIMEOUT(migrate2, two_npus_mixed_range, 120)
{
	size_t len = 3 * BLOCK, bpages = BLOCK / self->ps;
	__u32 seed = 0x2b0c;
	struct devmem a0, a1, b0, b1;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	ssize_t bad;

	ASSERT_NE(p, MAP_FAILED);
	NEED_FREE("npu0", 3 * bpages);
	NEED_FREE("npu1", 3 * bpages);
	fill_pattern(p, len, seed);
	a0 = devmem("npu0");
	a1 = devmem("npu1");

	ASSERT_EQ(npu_prefetch(self->fd0, p, BLOCK, 0), 0);
	ASSERT_EQ(npu_prefetch(self->fd1, p + BLOCK, BLOCK, 0), 0);
	ASSERT_EQ(used("npu0"), a0.used + (long)bpages);
	ASSERT_EQ(used("npu1"), a1.used + (long)bpages);

	ASSERT_EQ(npu_sum(self->fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed))
		TH_LOG("npu1 read a mixed npu0/npu1/host range wrong");
	b0 = devmem("npu0");
	b1 = devmem("npu1");
	ASSERT_EQ(b1.used, a1.used + 3 * (long)bpages)
		TH_LOG("npu1 has %ld pages, not all it touched",
		       b1.used - a1.used);
	ASSERT_EQ(b0.used, a0.used) TH_LOG("npu0 kept %ld pages npu1 touched",
					   b0.used - a0.used);
	ASSERT_GE(b1.to_dev, a1.to_dev + 2 * (long)bpages);

	bad = check_pattern(p, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at element %zd",
				  ((__u32 *)p)[bad], bad);
	ASSERT_EQ(used("npu0"), a0.used);
	ASSERT_EQ(used("npu1"), a1.used);

	/* npu1 writes half of a block on npu0: the block moves, intact. */
	ASSERT_EQ(npu_prefetch(self->fd0, p, BLOCK, 0), 0);
	ASSERT_EQ(used("npu0"), a0.used + (long)bpages);
	ASSERT_EQ(npu_fill(self->fd1, p, BLOCK / 2, 0x6e, &w), 0);
	ASSERT_EQ(used("npu0"), a0.used);
	ASSERT_EQ(used("npu1"), a1.used + (long)bpages);
	/* All of it on npu1 now: npu1 reads it in place. */
	ASSERT_EQ(npu_sum(self->fd1, p, BLOCK, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x6e, BLOCK / 2) +
		  pattern_sum_from(BLOCK / 2 / 4, BLOCK / 2, seed));
	ASSERT_EQ(used("npu1"), a1.used + (long)bpages);
	ASSERT_EQ(find_not_byte(p, BLOCK / 2, 0x6e), -1);
	bad = check_pattern_from(p + BLOCK / 2, BLOCK / 2 / 4, len - BLOCK / 2,
				 seed);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads element %zd wrong", bad);
	ASSERT_EQ(used("npu0"), a0.used);
	ASSERT_EQ(used("npu1"), a1.used);
	ASSERT_EQ(munmap(p, len), 0);
}

/* What the forked child of fork_while_device_resident checks. */
static const char *const cow_child_steps[] = {
	"ok",
	"child's CPU view of block 0 is not the original data",
	"child's CPU view is not its own write",
	"child could not signal the parent",
	"child could not wait for the parent",
	"the parent's write reached the child's memory",
	"child could not open /dev/gmem_npu0",
	"child's device REDUCE_SUM is not its own data",
	"child's PREFETCH failed",
	"child's CPU view after its PREFETCH is wrong",
};

static int cow_child(char *p, size_t len, __u32 orig, __u32 mine, int rd,
		     int wr)
{
	struct gmem_npu_wait w;
	char c = 'c';
	int fd;

	/* Block 0 by a read fault; block 1 by a write fault. */
	if (check_pattern(p, BLOCK, orig) != -1)
		return 1;
	fill_pattern(p, len, mine);
	if (check_pattern(p, len, mine) != -1)
		return 2;
	if (write(wr, &c, 1) != 1)
		return 3;
	if (read(rd, &c, 1) != 1)
		return 4;
	if (check_pattern(p, len, mine) != -1)
		return 5;
	fd = npu_open(0);
	if (fd < 0)
		return 6;
	if (npu_sum(fd, p, len, &w) || w.result != pattern_sum(len, mine))
		return 7;
	if (npu_prefetch(fd, p, len, 0))
		return 8;
	if (check_pattern(p, len, mine) != -1)
		return 9;
	close(fd);
	return 0;
}

/* hmm_cow_in_device: fork with the pages on the device; both sides COW. */
TEST_F_TIMEOUT(migrate, fork_while_device_resident, 120)
{
	size_t len = 2 * BLOCK, npages = len / self->ps;
	__u32 orig = 0xc0c0, parent = 0x9a7e, mine = 0xc41d;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	int to_parent[2], to_child[2], status, code;
	long base;
	ssize_t bad;
	pid_t pid;
	char c;

	ASSERT_NE(p, MAP_FAILED);
	/* The parent's pages and the child's copies. */
	NEED_FREE("npu0", 2 * npages);
	fill_pattern(p, len, orig);
	base = used("npu0");
	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	ASSERT_EQ(used("npu0"), base + (long)npages);
	ASSERT_EQ(pipe(to_parent), 0);
	ASSERT_EQ(pipe(to_child), 0);

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		close(to_parent[0]);
		close(to_child[1]);
		_exit(cow_child(p, len, orig, mine, to_child[0],
				to_parent[1]));
	}
	close(to_parent[1]);
	close(to_child[0]);
	/* The child has read and written its copy, or failed. */
	if (read(to_parent[0], &c, 1) != 1) {
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		ASSERT_EQ(code, 0)
			TH_LOG("%s", code > 0 &&
			       code < (int)ARRAY_SIZE(cow_child_steps) ?
			       cow_child_steps[code] : "child failed");
	}

	bad = check_pattern_from(p + BLOCK, BLOCK / 4, BLOCK, orig);
	ASSERT_EQ(bad, -1) TH_LOG("the child's write reached the parent");
	fill_pattern(p, len, parent);
	bad = check_pattern(p, len, parent);
	ASSERT_EQ(bad, -1) TH_LOG("parent's CPU view, element %zd", bad);
	ASSERT_EQ(write(to_child[1], &c, 1), 1);

	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child status 0x%x", status);
	code = WEXITSTATUS(status);
	ASSERT_EQ(code, 0)
		TH_LOG("%s", code < (int)ARRAY_SIZE(cow_child_steps) ?
		       cow_child_steps[code] : "child failed");
	close(to_parent[0]);
	close(to_child[1]);

	ASSERT_EQ(check_pattern(p, len, parent), -1)
		TH_LOG("the child's device work reached the parent");
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, parent));
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(used_wait("npu0", base), base)
		TH_LOG("device pages outlived both processes' mappings");
}

/* hmm migrate_partial_unmap_fault at offsets 0, 1/4 and 1/2 of 2 MiB. */
TEST_F_TIMEOUT(migrate, partial_munmap_then_fault_back, 120)
{
	size_t len = BLOCK, hole = MiB, npages = len / self->ps;
	size_t hpages = hole / self->ps;
	const size_t offsets[] = { 0, BLOCK / 4, BLOCK / 2 };
	__u32 seed = 0x9a47;

	NEED_FREE("npu0", npages);
	for (size_t k = 0; k < ARRAY_SIZE(offsets); k++) {
		size_t off = offsets[k], end = off + hole;
		char *p = peer_mmap_block(len);
		long base;
		ssize_t bad;

		ASSERT_NE(p, MAP_FAILED);
		fill_pattern(p, len, seed + k);
		base = used("npu0");
		ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
		ASSERT_EQ(used("npu0"), base + (long)npages);

		ASSERT_EQ(munmap(p + off, hole), 0);
		ASSERT_EQ(used_wait("npu0", base + (long)(npages - hpages)),
			  base + (long)(npages - hpages))
			TH_LOG("offset %zu: the unmapped MiB's device pages",
			       off);

		/* The rest faults back intact. */
		bad = check_pattern(p, off, seed + k);
		ASSERT_EQ(bad, -1) TH_LOG("offset %zu: element %zd", off, bad);
		bad = check_pattern_from(p + end, end / 4, len - end, seed + k);
		ASSERT_EQ(bad, -1) TH_LOG("offset %zu: element %zd", off, bad);
		ASSERT_EQ(used("npu0"), base) TH_LOG("offset %zu", off);

		/* On the device again, then unmapped. */
		if (off) {
			ASSERT_EQ(npu_prefetch(self->fd, p, off, 0), 0);
		}
		if (end < len) {
			ASSERT_EQ(npu_prefetch(self->fd, p + end, len - end, 0),
				  0);
		}
		ASSERT_EQ(used("npu0"), base + (long)(npages - hpages));
		if (off) {
			ASSERT_EQ(munmap(p, off), 0);
		}
		if (end < len) {
			ASSERT_EQ(munmap(p + end, len - end), 0);
		}
		ASSERT_EQ(used_wait("npu0", base), base)
			TH_LOG("offset %zu: device pages outlived the mapping",
			       off);
	}
}

/*
 * hmm migrate_remap_fault: mremap(MAYMOVE | FIXED), with and without
 * DONTUNMAP, before and after migration; the data is at the new address
 * for the CPU and the device.
 */
TEST_F_TIMEOUT(migrate, mremap_before_and_after, 180)
{
	size_t len = BLOCK, npages = len / self->ps, ps = self->ps;
	__u32 seed = 0x4e3a;

	NEED_FREE("npu0", npages);
	for (int k = 0; k < 4; k++) {
		bool after = k & 1, dontunmap = k & 2;
		int flags = MREMAP_MAYMOVE | MREMAP_FIXED |
			    (dontunmap ? MREMAP_DONTUNMAP : 0);
		struct gmem_npu_wait w;
		char *old = peer_mmap_block(len), *target, *new;
		long base;
		ssize_t bad;

		TH_LOG("mremap%s %s migration", dontunmap ? "(DONTUNMAP)" : "",
		       after ? "after" : "before");
		ASSERT_NE(old, MAP_FAILED);
		target = reserve_block(len);
		ASSERT_NE(target, MAP_FAILED);
		fill_pattern(old, len, seed + k);
		base = used("npu0");
		if (after) {
			ASSERT_EQ(npu_prefetch(self->fd, old, len, 0), 0);
			ASSERT_EQ(used("npu0"), base + (long)npages);
		}

		new = mremap(old, len, len, flags, target);
		ASSERT_EQ(new, target) TH_LOG("mremap: %s", strerror(errno));
		if (!after) {
			ASSERT_EQ(npu_prefetch(self->fd, new, len, 0), 0);
			ASSERT_EQ(used("npu0"), base + (long)npages);
		}

		ASSERT_EQ(npu_sum(self->fd, new, len, &w), 0);
		ASSERT_EQ(w.result, pattern_sum(len, seed + k))
			TH_LOG("the device reads the new address wrong");
		bad = check_pattern(new, len, seed + k);
		ASSERT_EQ(bad, -1) TH_LOG("CPU reads element %zd wrong", bad);
		ASSERT_EQ(used("npu0"), base);

		if (dontunmap) {
			/* The old range stays mapped, empty. */
			ASSERT_EQ(npu_sum(self->fd, old, len, &w), 0);
			ASSERT_EQ(w.result, 0)
				TH_LOG("the device reads the old pages");
			ASSERT_EQ(find_not_byte(old, len, 0), -1);
			ASSERT_EQ(munmap(old, len), 0);
		} else {
			ASSERT_EQ(npu_sum(self->fd, old, len, &w), -EFAULT)
				TH_LOG("the device reads the old address");
			ASSERT_EQ(page_of(w.fault_addr, ps), U64(old));
		}
		ASSERT_EQ(check_pattern(new, len, seed + k), -1);
		ASSERT_EQ(munmap(new, len), 0);
		ASSERT_EQ(used_wait("npu0", base), base)
			TH_LOG("device pages outlived the mappings");
	}
}

/* What the child of exit_frees_device_memory reports through the pipe. */
static __noreturn void devmem_child(int wr, int rd, size_t len, __u32 seed)
{
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	char c = 'r';
	int fd = npu_open(0);

	if (fd < 0 || p == MAP_FAILED) {
		c = 'o';
	} else {
		fill_pattern(p, len, seed);
		if (npu_prefetch(fd, p, len, 0))
			c = 'p';
		else if (npu_sum(fd, p, len, &w) ||
			 w.result != pattern_sum(len, seed))
			c = 's';
	}
	if (write(wr, &c, 1) != 1)
		_exit(2);
	/* Until the parent writes, closes its end, or kills us. */
	if (read(rd, &c, 1) < 0)
		_exit(3);
	/* Exit with the mapping, the fd and the device pages as they are. */
	_exit(0);
}

/* A process exiting or killed with pages on the device frees them. */
TEST_F_TIMEOUT(migrate, exit_frees_device_memory, 120)
{
	size_t len = 8 * MiB, npages = len / self->ps;
	__u32 seed = 0xe817;
	struct gmem_npu_wait w;
	char *p;

	NEED_FREE("npu0", npages);
	for (int kill_it = 0; kill_it < 2; kill_it++) {
		int to_parent[2], to_child[2], status;
		long base = used("npu0"), gbase = gmem_stat("devmem_used");
		pid_t pid;
		char c;

		ASSERT_EQ(pipe(to_parent), 0);
		ASSERT_EQ(pipe(to_child), 0);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			close(to_parent[0]);
			close(to_child[1]);
			devmem_child(to_parent[1], to_child[0], len, seed);
		}
		close(to_parent[1]);
		close(to_child[0]);
		ASSERT_EQ(read(to_parent[0], &c, 1), 1);
		ASSERT_EQ(c, 'r')
			TH_LOG("child could not %s", c == 'o' ? "open or mmap" :
			       c == 'p' ? "prefetch" : "read its pages");
		ASSERT_EQ(used("npu0"), base + (long)npages);
		if (kill_it) {
			ASSERT_EQ(kill(pid, SIGKILL), 0);
		} else {
			ASSERT_EQ(write(to_child[1], &c, 1), 1);
		}
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		if (kill_it) {
			ASSERT_TRUE(WIFSIGNALED(status) &&
				    WTERMSIG(status) == SIGKILL)
				TH_LOG("child status 0x%x", status);
		} else {
			ASSERT_TRUE(WIFEXITED(status) &&
				    WEXITSTATUS(status) == 0)
				TH_LOG("child status 0x%x", status);
		}
		close(to_parent[0]);
		close(to_child[1]);
		ASSERT_EQ(used_wait("npu0", base), base)
			TH_LOG("the %s child's device pages were not freed",
			       kill_it ? "killed" : "exited");
		ASSERT_EQ(gmem_stat("devmem_used"), gbase);
	}

	/* The freed memory is usable again. */
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, seed);
	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(check_pattern(p, len, seed), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * More than the device holds: blocks are evicted to make room, and what is
 * in device memory never exceeds it.
 */
TEST_F_TIMEOUT(migrate, device_full_evicts, 300)
{
	size_t ps = self->ps, len = 24 * MiB;
	size_t dev_bytes = self->devmem_pages * ps;
	__u32 seed = 0xf0111;
	struct gmem_npu_wait w;
	long base = used("npu0"), u;
	char *p;
	ssize_t bad;

	/* 8 MiB more than the device's memory, at least 24 MiB. */
	if (len < dev_bytes + 8 * MiB)
		len = (dev_bytes + 8 * MiB + BLOCK - 1) & ~(BLOCK - 1);
	if (len > 64 * MiB)
		SKIP(return, "npu0 has %zu MiB of memory (dram_mib=16 wanted)",
		     dev_bytes / MiB);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, seed);

	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	u = used("npu0");
	ASSERT_GT(u, base) TH_LOG("nothing migrated");
	ASSERT_LE(u, self->devmem_pages);
	TH_LOG("%ld of %ld device pages in use", u, self->devmem_pages);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	bad = check_pattern(p, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at element %zd",
				  ((__u32 *)p)[bad], bad);
	ASSERT_EQ(used("npu0"), base);

	/* PREFETCH as far as there is room, and writes. */
	ASSERT_EQ(npu_prefetch(self->fd, p, len, 0), 0);
	u = used("npu0");
	ASSERT_GT(u, base);
	ASSERT_LE(u, self->devmem_pages);
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x3d, &w), 0);
	ASSERT_LE(used("npu0"), self->devmem_pages);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x3d, len));
	bad = find_not_byte(p, len, 0x3d);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at byte %zd", p[bad], bad);
	ASSERT_EQ(used("npu0"), base);
	ASSERT_EQ(munmap(p, len), 0);
}

/* GMEM_NPU_PLACE_HOST: this fd's jobs use host memory in place. */
TEST_F_TIMEOUT(migrate, place_host_never_migrates, 120)
{
	size_t len = 4 * MiB, npages = len / self->ps;
	__u32 seed = 0x4057;
	struct gmem_npu_placement bad_pl = { .placement = 2 };
	struct gmem_npu_placement all_pl = { .placement = ~0U };
	struct gmem_npu_placement pad_pl = { .placement = GMEM_NPU_PLACE_HOST,
					     .pad = 1 };
	struct devmem a, b;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len), *q = peer_mmap_block(len);
	ssize_t bad;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_NE(q, MAP_FAILED);
	NEED_FREE("npu0", npages);
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_SET_PLACEMENT, &bad_pl), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_SET_PLACEMENT, &all_pl), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_SET_PLACEMENT, &pad_pl), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_SET_PLACEMENT, NULL), -1);
	ASSERT_EQ(errno, EFAULT);
	ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_HOST), 0);

	fill_pattern(p, len, seed);
	a = devmem("npu0");
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(npu_fill(self->fd, p, len / 2, 0x4d, &w), 0);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x4d, len / 2) +
		  pattern_sum_from(len / 2 / 4, len / 2, seed));
	b = devmem("npu0");
	ASSERT_EQ(b.used, a.used) TH_LOG("PLACE_HOST jobs migrated pages");
	ASSERT_EQ(b.to_dev, a.to_dev);
	ASSERT_EQ(find_not_byte(p, len / 2, 0x4d), -1);
	bad = check_pattern_from(p + len / 2, len / 2 / 4, len / 2, seed);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads element %zd wrong", bad);
	b = devmem("npu0");
	ASSERT_EQ(b.cpu_faults, a.cpu_faults);
	ASSERT_EQ(b.to_host, a.to_host);

	/*
	 * Back to MIGRATE: the next device fault migrates.  On memory the
	 * NPU has not mapped yet: what it mapped in place may stay so.
	 */
	ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_MIGRATE), 0);
	fill_pattern(q, len, seed + 1);
	ASSERT_EQ(npu_sum(self->fd, q, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed + 1));
	ASSERT_EQ(used("npu0"), a.used + (long)npages);
	ASSERT_EQ(check_pattern(q, len, seed + 1), -1);
	ASSERT_EQ(used("npu0"), a.used);
	/* And the memory used in place is still right on both sides. */
	ASSERT_EQ(npu_sum(self->fd, p, len / 2, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x4d, len / 2));
	ASSERT_EQ(find_not_byte(p, len / 2, 0x4d), -1);
	ASSERT_EQ(used("npu0"), a.used);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(munmap(q, len), 0);
}

struct bad_prefetch {
	const char *what;
	struct gmem_npu_prefetch pf;
	int err;
	int err2;	/* also accepted, if nonzero */
};

/* Malformed PREFETCH requests fail with their errno and move nothing. */
TEST_F(migrate, prefetch_invalid)
{
	size_t ps = self->ps, len = BLOCK, npages = len / ps;
	const __u32 host = GMEM_NPU_PREFETCH_TO_HOST;
	__u32 seed = 0xbadf;
	char *buf = peer_mmap_block(len);
	char *anon = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *none = peer_mmap(4 * ps);
	char *holey = peer_mmap(4 * ps);
	void *hole = unmapped_page(ps);
	__u64 b = U64(buf), top = USER_END - ps;
	__u64 wrap = ~0ULL & ~(__u64)(ps - 1);
	struct gmem_npu_prefetch ok = { .addr = b, .len = ps };
	struct devmem a, d;
	size_t i;
	const struct bad_prefetch cases[] = {
		{ "addr + 1", { b + 1, ps, 0, 0 }, EINVAL },
		{ "addr + page / 2", { b + ps / 2, ps, 0, 0 }, EINVAL },
		{ "len 1", { b, 1, 0, 0 }, EINVAL },
		{ "len page - 1", { b, ps - 1, 0, 0 }, EINVAL },
		{ "len page + 1", { b, ps + 1, 0, 0 }, EINVAL },
		{ "len 0", { b, 0, 0, 0 }, EINVAL },
		{ "TO_HOST addr + 8", { b + 8, ps, host, 0 }, EINVAL },
		{ "TO_HOST len page / 2", { b, ps / 2, host, 0 }, EINVAL },
		{ "TO_HOST len 0", { b, 0, host, 0 }, EINVAL },
		{ "flags bit 1", { b, ps, 1U << 1, 0 }, EINVAL },
		{ "flags bit 31", { b, ps, 1U << 31, 0 }, EINVAL },
		{ "flags ~0", { b, ps, ~0U, 0 }, EINVAL },
		{ "pad 1", { b, ps, 0, 1 }, EINVAL },
		{ "TO_HOST pad ~0", { b, ps, host, ~0U }, EINVAL },
		{ "addr + len wraps", { wrap, 2 * ps, 0, 0 }, EINVAL, EFAULT },
		{ "crosses the user end", { top, 2 * ps, 0, 0 }, EINVAL,
		  EFAULT },
		{ "at the user end", { USER_END, ps, 0, 0 }, EINVAL, EFAULT },
		{ "an unmapped page", { U64(hole), ps, 0, 0 }, EFAULT },
		{ "TO_HOST an unmapped page", { U64(hole), ps, host, 0 },
		  EFAULT },
		{ "PROT_NONE", { U64(none), 4 * ps, 0, 0 }, EFAULT },
		{ "not MAP_PEER_SHARED", { U64(anon), 4 * ps, 0, 0 }, EACCES },
	};

	ASSERT_NE(buf, MAP_FAILED);
	ASSERT_NE(anon, MAP_FAILED);
	ASSERT_NE(none, MAP_FAILED);
	ASSERT_EQ(mprotect(none, 4 * ps, PROT_NONE), 0);
	ASSERT_NE(holey, MAP_FAILED);
	ASSERT_NE(hole, MAP_FAILED);
	NEED_FREE("npu0", npages);
	fill_pattern(buf, len, seed);
	fill_pattern(anon, 4 * ps, seed);
	a = devmem("npu0");

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct gmem_npu_prefetch pf = cases[i].pf;
		int ret = ioctl(self->fd, GMEM_NPU_IOC_PREFETCH, &pf);
		int err = ret ? errno : 0;

		EXPECT_EQ(ret, -1) TH_LOG("%s was accepted", cases[i].what);
		if (cases[i].err2 && err == cases[i].err2)
			continue;
		EXPECT_EQ(err, cases[i].err)
			TH_LOG("%s: errno %d", cases[i].what, err);
	}
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_PREFETCH, NULL), -1);
	ASSERT_EQ(errno, EFAULT);
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_PREFETCH, hole), -1);
	ASSERT_EQ(errno, EFAULT);
	d = devmem("npu0");
	ASSERT_EQ(d.used, a.used) TH_LOG("a refused PREFETCH migrated");
	ASSERT_EQ(d.to_dev, a.to_dev);
	ASSERT_EQ(d.to_host, a.to_host);
	ASSERT_EQ(check_pattern(buf, len, seed), -1);
	ASSERT_EQ(check_pattern(anon, 4 * ps, seed), -1);

	/* A hole inside the range: EFAULT; the data around it stays. */
	fill_pattern(holey, 4 * ps, seed + 1);
	ASSERT_EQ(munmap(holey + ps, ps), 0);
	ASSERT_EQ(npu_prefetch(self->fd, holey, 4 * ps, 0), -EFAULT);
	ASSERT_EQ(check_pattern(holey, ps, seed + 1), -1);
	ASSERT_EQ(check_pattern_from(holey + 2 * ps, 2 * ps / 4, 2 * ps,
				     seed + 1), -1);

	/* Valid requests still work. */
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_PREFETCH, &ok), 0);
	ASSERT_EQ(npu_prefetch(self->fd, buf, len, 0), 0);
	ASSERT_EQ(used("npu0"), a.used + (long)npages);
	ASSERT_EQ(check_pattern(buf, len, seed), -1);
	ASSERT_EQ(used("npu0"), a.used);

	ASSERT_EQ(munmap(buf, len), 0);
	ASSERT_EQ(munmap(anon, 4 * ps), 0);
	ASSERT_EQ(munmap(none, 4 * ps), 0);
	ASSERT_EQ(munmap(holey, ps), 0);
	ASSERT_EQ(munmap(holey + 2 * ps, 2 * ps), 0);
}

/*
 * CPU and NPU take turns on one counter: the page migrates every turn
 * until it is found thrashing and held in host memory, where both keep
 * counting exactly.
 */
TEST_F_TIMEOUT(migrate, coherence_pingpong_thrashing, 300)
{
	const int rounds = 500;
	__u64 *c = peer_mmap(self->ps);
	long pins = dev_stat("npu0", "thrash");
	struct gmem_npu_wait w;
	struct devmem a, b;

	ASSERT_NE(c, MAP_FAILED);
	NEED_FREE("npu0", 1);
	*c = 0;
	a = devmem("npu0");
	for (int i = 0; i < rounds; i++) {
		ASSERT_EQ(npu_inc(self->fd, c, 1, &w), 0) TH_LOG("round %d", i);
		ASSERT_EQ(load_u64(c), 2 * (__u64)i + 1)
			TH_LOG("after device increment %d", i);
		(*c)++;
	}
	ASSERT_EQ(load_u64(c), 2 * (__u64)rounds);
	b = devmem("npu0");
	TH_LOG("%ld migrations to the device in %d rounds",
	       b.to_dev - a.to_dev, rounds);
	ASSERT_GE(b.to_dev, a.to_dev + 3);
	ASSERT_LT(b.to_dev, a.to_dev + rounds / 2);
	ASSERT_GT(dev_stat("npu0", "thrash"), pins);
	ASSERT_EQ(b.to_host, b.to_dev - a.to_dev + a.to_host);
	ASSERT_EQ(b.used, a.used);
	ASSERT_EQ(munmap(c, self->ps), 0);
}

/*
 * Both NPUs read the same blocks at the same time, over and over: with
 * default placement each fault would pull the blocks to its own device.
 * Every job must still finish with the right sum (no livelock between the
 * devices) and the data stays intact.  How often gmem pinned a bouncing
 * block to host memory depends on how the jobs overlap, so it is logged,
 * not asserted.
 */
/*
 * A block two devices read, with no hint: npu1 takes it from npu0 once,
 * and from then on each reads copies of its own in its memory, with no
 * fault and nothing over the link.  A CPU write collapses both copies and
 * both devices read the new data; so does a device write, which ends the
 * sharing: the other device then takes the block as before.
 */
TEST_F_TIMEOUT(migrate2, two_readers_get_copies, 180)
{
	size_t len = BLOCK, bpages = BLOCK / self->ps;
	long dups0 = dev_stat("npu0", "dup_pages");
	long dups1 = dev_stat("npu1", "dup_pages");
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	int fd[2] = { self->fd0, self->fd1 };
	int round, d;

	ASSERT_NE(p, MAP_FAILED);
	NEED_FREE("npu0", bpages);
	NEED_FREE("npu1", bpages);
	fill_pattern(p, len, 0x5a);
	ASSERT_EQ(npu_sum(self->fd0, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x5a));
	ASSERT_EQ(npu_sum(self->fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x5a));
	/* Taken once, the old way. */
	EXPECT_EQ(used("npu1"), (long)bpages);
	EXPECT_EQ(used("npu0"), 0);
	for (round = 0; round < 2; round++)
		for (d = 0; d < 2; d++) {
			ASSERT_EQ(npu_sum(fd[d], p, len, &w), 0);
			ASSERT_EQ(w.result, pattern_sum(len, 0x5a))
				TH_LOG("round %d npu%d", round, d);
		}
	EXPECT_EQ(dev_stat("npu0", "dup_pages") - dups0, (long)bpages);
	EXPECT_EQ(dev_stat("npu1", "dup_pages") - dups1, (long)bpages);
	for (d = 0; d < 2; d++) {
		struct gmem_npu_info a, b;

		ASSERT_EQ(npu_get_info(fd[d], &a), 0);
		ASSERT_EQ(npu_sum(fd[d], p, len, &w), 0);
		ASSERT_EQ(npu_get_info(fd[d], &b), 0);
		EXPECT_EQ(w.result, pattern_sum(len, 0x5a));
		EXPECT_EQ(w.faults, 0) TH_LOG("npu%d faulted on its copy", d);
		EXPECT_EQ(b.link_to_dev_bytes, a.link_to_dev_bytes)
			TH_LOG("npu%d read over the link", d);
	}

	/* The CPU writes: no copy survives, both read the new data. */
	fill_pattern(p, len, 0x5b);
	EXPECT_EQ(dev_stat("npu0", "dup_pages"), dups0);
	EXPECT_EQ(dev_stat("npu1", "dup_pages"), dups1);
	for (d = 0; d < 2; d++) {
		ASSERT_EQ(npu_sum(fd[d], p, len, &w), 0);
		EXPECT_EQ(w.result, pattern_sum(len, 0x5b))
			TH_LOG("npu%d read a stale copy", d);
	}

	/* npu0 writes: no copy survives, npu1 reads what it wrote... */
	ASSERT_EQ(npu_fill(self->fd0, p, len, 0x3c, &w), 0);
	EXPECT_EQ(dev_stat("npu0", "dup_pages"), dups0);
	EXPECT_EQ(dev_stat("npu1", "dup_pages"), dups1);
	ASSERT_EQ(npu_sum(self->fd1, p, len, &w), 0);
	EXPECT_EQ(w.result, byte_sum(0x3c, len)) TH_LOG("npu1 read stale data");
	/* ...and takes it, in its memory, no copy: no longer shared. */
	EXPECT_EQ(dev_stat("npu1", "dup_pages"), dups1);
	EXPECT_EQ(used("npu1"), (long)bpages);
	EXPECT_EQ(find_not_byte(p, len, 0x3c), -1);
	ASSERT_EQ(munmap(p, len), 0);
	EXPECT_EQ(used_wait("npu0", 0), 0);
	EXPECT_EQ(used_wait("npu1", 0), 0);
}

TEST_F(migrate2, concurrent_readers_do_not_livelock)
{
	size_t len = 4 * MiB;
	__u32 *buf = peer_mmap_block(len);
	__u64 want, s0, s1;
	struct gmem_npu_wait w0, w1;
	struct gmem_npu_job job;
	long pins = gmem_stat("thrash_pins");
	int round;

	ASSERT_NE(buf, MAP_FAILED);
	fill_pattern(buf, len, 11);
	want = pattern_sum(len, 11);
	job = job_sum(buf, len);
	for (round = 0; round < 8; round++) {
		ASSERT_EQ(npu_submit(self->fd0, &job, &s0), 0);
		ASSERT_EQ(npu_submit(self->fd1, &job, &s1), 0);
		ASSERT_EQ(npu_wait(self->fd0, s0, -1, &w0), 0);
		ASSERT_EQ(npu_wait(self->fd1, s1, -1, &w1), 0);
		ASSERT_EQ(w0.status, 0) TH_LOG("round %d: npu0 status %d", round, w0.status);
		ASSERT_EQ(w1.status, 0) TH_LOG("round %d: npu1 status %d", round, w1.status);
		ASSERT_EQ(w0.result, want);
		ASSERT_EQ(w1.result, want);
	}
	TH_LOG("thrash_pins +%ld", gmem_stat("thrash_pins") - pins);
	ASSERT_EQ(check_pattern(buf, len, 11), -1);
	ASSERT_EQ(munmap(buf, len), 0);
}

TEST_HARNESS_MAIN
