// SPDX-License-Identifier: GPL-2.0
/*
 * The NPU's device model: its clock charges device memory at dev_gbps,
 * host memory in place and the copy engine at link_gbps, and fault_ns per
 * device fault, whatever this machine's speed.  Each case computes what a
 * job must cost from the parameters INFO reports and compares it with
 * WAIT's device_ns and with the clock and byte counters.  Also: reading a
 * block once is no faster migrated than in place, reading it many times
 * is; every operand of a job charged once; the access counters (a block
 * used in place past one block's size of traffic migrates, unless the
 * placement or a hint keeps it on the host); per-device overrides in
 * debugfs gmem_npu/npu0/model, refused bad writes, and WAIT and INFO with
 * the 48-byte structures of older binaries.
 *
 * Needs gmem.ko and gmem_npu.ko with at least 8 MiB of device memory on
 * npu0 (the runner loads them) and debugfs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <time.h>
#include <sys/ioctl.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

#define MODEL_FILE	"/sys/kernel/debug/gmem_npu/npu0/model"
#define NPU_PARAMS	"/sys/module/gmem_npu/parameters/"
#define LEN		(4 * MiB)
/* A finite wait: a bug fails the case instead of hanging it. */
#define WAIT_NS		(60LL * 1000 * 1000 * 1000)

/* ns that @bytes take at @gbps GB/s, rounded up as the driver does. */
static __u64 ns_at(__u64 bytes, __u32 gbps)
{
	return (bytes + gbps - 1) / gbps;
}

/* Writes @s to the model file; 0 or -errno. */
static int model_write(const char *s)
{
	int fd = open(MODEL_FILE, O_WRONLY);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* A module parameter's value, or -1. */
static long npu_param(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), NPU_PARAMS "%s", name);
	return file_long(path);
}

/* Writes "@key=@v" to the model file; 0 or -errno. */
static int model_set(const char *key, long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%s=%ld", key, v);
	return model_write(buf);
}

FIXTURE(model)
{
	int fd;
	int gfd;
	struct gmem_npu_info info;
};

FIXTURE_SETUP(model)
{
	self->fd = npu_open(0);
	ASSERT_GE(self->fd, 0) TH_LOG("open /dev/gmem_npu0: %s",
				      strerror(errno));
	self->gfd = open("/dev/gmem", O_RDWR);
	ASSERT_GE(self->gfd, 0);
	if (access(MODEL_FILE, W_OK))
		SKIP(return, "no %s", MODEL_FILE);
	ASSERT_EQ(npu_get_info(self->fd, &self->info), 0);
	if (dev_stat("npu0", "devmem_pages") * getpagesize() < 2 * LEN)
		SKIP(return, "npu0 has less than %d MiB", (int)(2 * LEN / MiB));
	/* An earlier test's exited process frees its memory first. */
	dev_stat_wait("npu0", "devmem_used", 0, 2000);
}

FIXTURE_TEARDOWN(model)
{
	/* Whatever a case changed goes back to the module's parameters. */
	static const char *const keys[] = {
		"dev_gbps", "link_gbps", "fault_us", "counter_kib",
		"refresh_kib",
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *k = keys[i];

		EXPECT_EQ(model_set(k, npu_param(k)), 0) TH_LOG("%s", k);
	}
	close(self->gfd);
	close(self->fd);
}

/* A CPU-filled MAP_PEER_SHARED buffer of @len bytes. */
static char *filled(size_t len, __u32 seed)
{
	char *p = peer_mmap_block(len);

	if (p != MAP_FAILED)
		fill_pattern(p, len, seed);
	return p;
}

TEST_F(model, defaults_are_a_pcie_accelerator)
{
	/* The module parameters' defaults (gmem_npu_model.rs)... */
	EXPECT_EQ(npu_param("dev_gbps"), 3000);
	EXPECT_EQ(npu_param("link_gbps"), 64);
	EXPECT_EQ(npu_param("fault_us"), 45);
	EXPECT_EQ(npu_param("counter_kib"), 2048);
	EXPECT_EQ(npu_param("refresh_kib"), 64);
	/* ...are what the device runs with. */
	EXPECT_EQ(self->info.dev_gbps, npu_param("dev_gbps"));
	EXPECT_EQ(self->info.link_gbps, npu_param("link_gbps"));
	EXPECT_EQ(self->info.fault_ns, npu_param("fault_us") * 1000);
}

/*
 * COPY and ADD on host memory in place: each operand's bytes cross the
 * link once, though the operands translated before a fault are translated
 * again when the job replays.
 */
TEST_F(model, every_operand_is_charged_once)
{
	struct gmem_npu_info a, b;
	struct gmem_npu_wait w;
	char *src = filled(LEN, 8), *src2 = filled(LEN, 9);
	char *dst = peer_mmap_block(LEN);

	ASSERT_NE(src, MAP_FAILED);
	ASSERT_NE(src2, MAP_FAILED);
	ASSERT_NE(dst, MAP_FAILED);
	ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	/* The destination was never touched: its first page faults. */
	ASSERT_EQ(npu_copy(self->fd, dst, src, LEN, &w), 0);
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_GT(w.faults, 0);
	EXPECT_EQ(b.link_to_dev_bytes - a.link_to_dev_bytes, LEN);
	EXPECT_EQ(b.link_to_host_bytes - a.link_to_host_bytes, LEN);
	EXPECT_EQ(b.local_bytes - a.local_bytes, 0);
	EXPECT_EQ(w.device_ns, ns_at(LEN, a.link_gbps) + w.faults * a.fault_ns);
	EXPECT_EQ(check_pattern(dst, LEN, 8), -1);

	ASSERT_EQ(madvise(dst, LEN, MADV_DONTNEED), 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(npu_add(self->fd, dst, src, src2, LEN, &w), 0);
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_GT(w.faults, 0);
	EXPECT_EQ(b.link_to_dev_bytes - a.link_to_dev_bytes, 2 * LEN);
	EXPECT_EQ(b.link_to_host_bytes - a.link_to_host_bytes, LEN);
	EXPECT_EQ(w.device_ns,
		  ns_at(2 * LEN, a.link_gbps) + w.faults * a.fault_ns);
	for (size_t i = 0; i < LEN / 4; i++) {
		__u32 got = ((__u32 *)dst)[i];
		__u32 want = pattern(i, 8) + pattern(i, 9);
		size_t at = i;

		ASSERT_EQ(got, want) TH_LOG("word %zu", at);
	}
	munmap(src, LEN);
	munmap(src2, LEN);
	munmap(dst, LEN);
}

/*
 * Access counters: a block accessed-by maps in place; read once it stays
 * there (the counter fires past one block's worth of in-place bytes); in
 * its second pass the counter fires at the first page and gmem migrates
 * and maps it, so the rest of the pass and the next ones read device
 * memory, with no fault.
 */
TEST_F(model, counter_migrates_a_block_used_again)
{
	size_t len = BLOCK, ps = getpagesize();
	long notes = gmem_stat("counter_notifications");
	long moved = gmem_stat("counter_migrations");
	struct gmem_npu_info a, b;
	struct gmem_npu_wait w;
	char *p = filled(len, 10);
	__u64 want;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(model_set("counter_kib", 2048), 0);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_SET_ACCESSED_BY,
			      self->info.dev_id), 0);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	EXPECT_EQ(w.result, pattern_sum(len, 10));
	EXPECT_EQ(dev_stat("npu0", "devmem_used"), 0);
	EXPECT_EQ(gmem_stat("counter_notifications"), notes);

	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_EQ(w.result, pattern_sum(len, 10));
	EXPECT_EQ(w.faults, 0);
	EXPECT_EQ(gmem_stat("counter_notifications"), notes + 1);
	EXPECT_EQ(gmem_stat("counter_migrations"), moved + 1);
	EXPECT_EQ(dev_stat("npu0", "devmem_used") * ps, len);
	/* One page in place, the copy, the rest in device memory. */
	EXPECT_EQ(b.link_to_dev_bytes - a.link_to_dev_bytes, ps + len);
	EXPECT_EQ(b.local_bytes - a.local_bytes, len - ps);
	want = ns_at(ps, a.link_gbps) + ns_at(len, a.link_gbps) +
	       ns_at(len - ps, a.dev_gbps);
	EXPECT_GE(w.device_ns, want);
	EXPECT_LE(w.device_ns, want + 16);

	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	EXPECT_EQ(w.result, pattern_sum(len, 10));
	EXPECT_EQ(w.faults, 0);
	EXPECT_EQ(w.device_ns, ns_at(len, a.dev_gbps));
	/* The CPU reads the data back, exact. */
	EXPECT_EQ(check_pattern(p, len, 10), -1);
	munmap(p, len);
}

/*
 * The counters count accesses to device memory too, and their
 * notification keeps a resident block the most recently used: with the
 * device full, a block that came first but is read again stays when the
 * next block needs room, and one not used since leaves instead.
 */
TEST_F_TIMEOUT(model, a_block_in_use_outlives_one_that_is_not, 300)
{
	size_t ps = getpagesize(), nblk, len, i;
	long refreshes = gmem_stat("counter_refreshes");
	long evictions = dev_stat("npu0", "evictions");
	struct gmem_npu_wait w;
	char *p;

	nblk = dev_stat("npu0", "devmem_pages") * ps / BLOCK;
	/* Block 0's counter must not be replaced by the others' (16 sets). */
	if (nblk > 16)
		SKIP(return, "npu0 has more than 32 MiB");
	len = (nblk + 1) * BLOCK;
	p = filled(len, 15);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(model_set("counter_kib", 2048), 0);
	/* A refresh past one block of device-memory traffic. */
	ASSERT_EQ(model_set("refresh_kib", 2048), 0);
	/* One block of traffic each: the counters stay quiet. */
	for (i = 0; i < nblk; i++) {
		ASSERT_EQ(npu_sum(self->fd, p + i * BLOCK, BLOCK, &w), 0);
		ASSERT_EQ(w.result, pattern_sum_from(i * BLOCK / 4, BLOCK, 15));
	}
	ASSERT_EQ(dev_stat("npu0", "devmem_used") * ps, nblk * BLOCK);
	EXPECT_EQ(gmem_stat("counter_refreshes"), refreshes);
	/* Block 0 read again in device memory: its counter fires. */
	ASSERT_EQ(npu_sum(self->fd, p, BLOCK, &w), 0);
	EXPECT_EQ(w.faults, 0);
	EXPECT_EQ(gmem_stat("counter_refreshes"), refreshes + 1);
	/* The last block needs room: block 1, not block 0, makes it. */
	ASSERT_EQ(npu_sum(self->fd, p + nblk * BLOCK, BLOCK, &w), 0);
	ASSERT_EQ(w.result, pattern_sum_from(nblk * BLOCK / 4, BLOCK, 15));
	EXPECT_EQ(dev_stat("npu0", "evictions"), evictions + 1);
	ASSERT_EQ(npu_sum(self->fd, p, BLOCK, &w), 0);
	EXPECT_EQ(w.result, pattern_sum_from(0, BLOCK, 15));
	EXPECT_EQ(w.faults, 0) TH_LOG("block 0 was evicted");
	EXPECT_EQ(w.device_ns, ns_at(BLOCK, self->info.dev_gbps));
	ASSERT_EQ(npu_sum(self->fd, p + BLOCK, BLOCK, &w), 0);
	EXPECT_EQ(w.result, pattern_sum_from(BLOCK / 4, BLOCK, 15));
	EXPECT_GT(w.faults, 0) TH_LOG("block 1 was not evicted");
	EXPECT_EQ(check_pattern(p, len, 15), -1);
	munmap(p, len);
}

/*
 * gmem learns the NPU's clock through the driver's read_clock op: the
 * line of npu0 in gmem/devices shows what INFO reports, and both moved
 * with a job that crossed the link.
 */
TEST_F(model, gmem_shows_the_device_clock)
{
	size_t len = BLOCK;
	struct gmem_npu_info a, b;
	struct gmem_npu_wait w;
	char *p = filled(len, 16);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	EXPECT_EQ(w.result, pattern_sum(len, 16));
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_GT(b.clock_ns, a.clock_ns);
	EXPECT_GT(b.link_to_dev_bytes, a.link_to_dev_bytes);
	EXPECT_EQ(dev_stat("npu0", "clock_ns"), (long)b.clock_ns);
	EXPECT_EQ(dev_stat("npu0", "link_to_dev"), (long)b.link_to_dev_bytes);
	EXPECT_EQ(dev_stat("npu0", "link_to_host"),
		  (long)b.link_to_host_bytes);
	EXPECT_EQ(dev_stat("npu0", "local"), (long)b.local_bytes);
	munmap(p, len);
}

/*
 * Two buffers 128 MiB apart, a power of two, share a set of counters:
 * copied from one to the other twice, both still pass their counts, and
 * the copy is exact.
 */
TEST_F(model, counters_of_a_strided_copy_both_fire)
{
	size_t gap = 128 * MiB, len = BLOCK;
	long notes = gmem_stat("counter_notifications");
	struct gmem_npu_wait w;
	char *big = peer_mmap_block(gap + len);
	char *src = big, *dst = big + gap;

	ASSERT_NE(big, MAP_FAILED);
	fill_pattern(src, len, 14);
	ASSERT_EQ(model_set("counter_kib", 2048), 0);
	ASSERT_EQ(gmem_advise(self->gfd, src, len, GMEM_ADV_SET_ACCESSED_BY,
			      self->info.dev_id), 0);
	ASSERT_EQ(gmem_advise(self->gfd, dst, len, GMEM_ADV_SET_ACCESSED_BY,
			      self->info.dev_id), 0);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(npu_copy(self->fd, dst, src, len, &w), 0);
	EXPECT_GE(gmem_stat("counter_notifications") - notes, 2);
	EXPECT_EQ(check_pattern(dst, len, 14), -1);
	EXPECT_EQ(check_pattern(src, len, 14), -1);
	munmap(big, gap + len);
}

/*
 * The counters fire but never move a block the context keeps on the host
 * (placement host, a preferred location on the host); with counter_kib=0
 * they are off.
 */
TEST_F(model, counter_never_moves_what_stays_on_the_host)
{
	size_t len = BLOCK;
	int fd2 = npu_open(0);
	long moved = gmem_stat("counter_migrations");
	long notes = gmem_stat("counter_notifications");
	struct gmem_npu_wait w;
	char *host = filled(len, 11), *pref = filled(len, 12);
	char *off = filled(len, 13);

	ASSERT_GE(fd2, 0);
	ASSERT_NE(host, MAP_FAILED);
	ASSERT_NE(pref, MAP_FAILED);
	ASSERT_NE(off, MAP_FAILED);
	ASSERT_EQ(model_set("counter_kib", 2048), 0);
	ASSERT_EQ(npu_set_placement(fd2, GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(gmem_advise(self->gfd, pref, len,
			      GMEM_ADV_SET_PREFERRED_LOCATION, GMEM_DEV_HOST),
		  0);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(npu_sum(fd2, host, len, &w), 0);
		EXPECT_EQ(w.result, pattern_sum(len, 11));
		ASSERT_EQ(npu_sum(self->fd, pref, len, &w), 0);
		EXPECT_EQ(w.result, pattern_sum(len, 12));
	}
	EXPECT_EQ(dev_stat("npu0", "devmem_used"), 0);
	EXPECT_GE(gmem_stat("counter_notifications") - notes, 4);
	EXPECT_EQ(gmem_stat("counter_migrations"), moved);

	ASSERT_EQ(model_set("counter_kib", 0), 0);
	notes = gmem_stat("counter_notifications");
	ASSERT_EQ(gmem_advise(self->gfd, off, len, GMEM_ADV_SET_ACCESSED_BY,
			      self->info.dev_id), 0);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(npu_sum(self->fd, off, len, &w), 0);
		EXPECT_EQ(w.result, pattern_sum(len, 13));
	}
	EXPECT_EQ(gmem_stat("counter_notifications"), notes);
	EXPECT_EQ(dev_stat("npu0", "devmem_used"), 0);
	EXPECT_EQ(check_pattern(host, len, 11), -1);
	EXPECT_EQ(check_pattern(pref, len, 12), -1);
	close(fd2);
	munmap(host, len);
	munmap(pref, len);
	munmap(off, len);
}

/* In place: every byte crosses the link, each fault costs fault_ns. */
TEST_F(model, in_place_read_costs_the_link)
{
	struct gmem_npu_info a, b;
	struct gmem_npu_wait w;
	char *p = filled(LEN, 1);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(npu_sum(self->fd, p, LEN, &w), 0);
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_EQ(w.result, pattern_sum(LEN, 1));
	EXPECT_GT(w.faults, 0);
	EXPECT_EQ(w.device_ns,
		  ns_at(LEN, a.link_gbps) + w.faults * a.fault_ns);
	EXPECT_GT(w.wall_ns, 0);
	EXPECT_EQ(b.clock_ns - a.clock_ns, w.device_ns);
	EXPECT_EQ(b.link_to_dev_bytes - a.link_to_dev_bytes, LEN);
	EXPECT_EQ(b.link_to_host_bytes - a.link_to_host_bytes, 0);
	EXPECT_EQ(b.local_bytes - a.local_bytes, 0);
	munmap(p, LEN);
}

/* What GATHER @job over a pattern buffer of @seed at its src sums to. */
static __u64 gather_sum(const struct gmem_npu_job *job, __u32 seed)
{
	__u64 sum = 0;

	for (__u64 k = 0; k < job->value; k++)
		sum += pattern_sum_from(gmem_npu_gather_offset(job, k) / 4,
					job->src2, seed);
	return sum;
}

/*
 * GATHER reads the chunks the uapi's generator names, 64 B inside a page
 * to 2 MiB across 512, each byte once over the link when in place (over
 * a chunk count that is no power of two: no modulo works as a mask).
 */
TEST_F(model, gather_reads_the_chunks_it_names)
{
	static const __u64 chunks[][2] = {	/* bytes, how many */
		{ 64, 5000 }, { 4096, 700 }, { 64 * 1024, 40 }, { 2 * MiB, 3 },
	};
	struct gmem_npu_info a, b;
	struct gmem_npu_wait w;
	char *p = filled(LEN, 7);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_HOST), 0);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct gmem_npu_job job = { .op = GMEM_NPU_OP_GATHER,
					    .dst = 0x5eed + i, .src = U64(p),
					    .src2 = chunks[i][0],
					    .len = LEN - chunks[i][0],
					    .value = chunks[i][1] };
		__u64 bytes = job.src2 * job.value;

		ASSERT_EQ(npu_get_info(self->fd, &a), 0);
		ASSERT_EQ(run_job(self->fd, &job, &w), 0) TH_LOG("%llu B",
			  (unsigned long long)job.src2);
		ASSERT_EQ(npu_get_info(self->fd, &b), 0);
		EXPECT_EQ(w.result, gather_sum(&job, 7)) TH_LOG("%llu B",
			  (unsigned long long)job.src2);
		EXPECT_EQ(b.link_to_dev_bytes - a.link_to_dev_bytes, bytes);
		EXPECT_EQ(b.local_bytes - a.local_bytes, 0);
		EXPECT_EQ(w.device_ns,
			  ns_at(bytes, a.link_gbps) + w.faults * a.fault_ns);
	}
	/* Another seed, other chunks. */
	{
		struct gmem_npu_job x = { .op = GMEM_NPU_OP_GATHER, .dst = 1,
					  .src2 = 4096, .len = LEN };
		struct gmem_npu_job y = x;
		int same = 0;

		y.dst = 2;
		for (__u64 k = 0; k < 64; k++)
			same += gmem_npu_gather_offset(&x, k) ==
				gmem_npu_gather_offset(&y, k);
		EXPECT_LT(same, 8);
	}
	munmap(p, LEN);
}

/*
 * Migrated on the fault: the faults, the copy engine bringing the data over
 * the link, then the reads in device memory.
 */
TEST_F(model, migration_on_fault_costs_copies_and_device_reads)
{
	struct gmem_npu_info a, b;
	struct gmem_npu_wait w;
	char *p = filled(LEN, 2);
	__u64 want;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(npu_sum(self->fd, p, LEN, &w), 0);
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_EQ(w.result, pattern_sum(LEN, 2));
	ASSERT_EQ(dev_stat("npu0", "devmem_used") * getpagesize(), LEN);
	want = w.faults * a.fault_ns + ns_at(LEN, a.link_gbps) +
	       ns_at(LEN, a.dev_gbps);
	/* Each copy-engine call rounds up on its own. */
	EXPECT_GE(w.device_ns, want);
	EXPECT_LE(w.device_ns, want + 2 * w.faults);
	EXPECT_EQ(b.clock_ns - a.clock_ns, w.device_ns);
	EXPECT_EQ(b.link_to_dev_bytes - a.link_to_dev_bytes, LEN);
	EXPECT_EQ(b.local_bytes - a.local_bytes, LEN);
	munmap(p, LEN);
}

/*
 * A prefetch is copy-engine time on the clock, outside any job; the job
 * after it reads device memory only.  The CPU reading the data back moves
 * it over the link the other way.
 */
TEST_F(model, prefetch_and_cpu_fault_back_advance_the_clock)
{
	struct gmem_npu_info a, b, c;
	struct gmem_npu_wait w;
	char *p = filled(LEN, 3);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(npu_prefetch(self->fd, p, LEN, 0), 0);
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_GE(b.clock_ns - a.clock_ns, ns_at(LEN, a.link_gbps));
	EXPECT_LE(b.clock_ns - a.clock_ns, ns_at(LEN, a.link_gbps) + 16);
	EXPECT_EQ(b.link_to_dev_bytes - a.link_to_dev_bytes, LEN);

	ASSERT_EQ(npu_sum(self->fd, p, LEN, &w), 0);
	EXPECT_EQ(w.result, pattern_sum(LEN, 3));
	EXPECT_EQ(w.faults, 0);
	EXPECT_EQ(w.device_ns, ns_at(LEN, a.dev_gbps));

	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	EXPECT_EQ(check_pattern(p, LEN, 3), -1);
	ASSERT_EQ(npu_get_info(self->fd, &c), 0);
	EXPECT_EQ(c.link_to_host_bytes - b.link_to_host_bytes, LEN);
	EXPECT_GE(c.clock_ns - b.clock_ns, ns_at(LEN, a.link_gbps));
	munmap(p, LEN);
}

/*
 * The trade-off the policies live on: a block read once costs at least as
 * much migrated (copy, then read) as read in place; read nine times, it is
 * cheaper migrated.
 */
TEST_F(model, migration_pays_off_only_with_reuse)
{
	size_t len = 2 * MiB;
	int fd2 = npu_open(0);
	char *near = filled(len, 4), *far = filled(len, 5);
	__u64 t_near = 0, t_far = 0, once_near, once_far;
	struct gmem_npu_wait w;

	ASSERT_GE(fd2, 0);
	ASSERT_NE(near, MAP_FAILED);
	ASSERT_NE(far, MAP_FAILED);
	ASSERT_EQ(npu_set_placement(fd2, GMEM_NPU_PLACE_HOST), 0);
	for (int i = 0; i < 9; i++) {
		ASSERT_EQ(npu_sum(self->fd, near, len, &w), 0);
		EXPECT_EQ(w.result, pattern_sum(len, 4));
		t_near += w.device_ns;
		if (!i)
			once_near = w.device_ns;
		ASSERT_EQ(npu_sum(fd2, far, len, &w), 0);
		EXPECT_EQ(w.result, pattern_sum(len, 5));
		t_far += w.device_ns;
		if (!i)
			once_far = w.device_ns;
	}
	TH_LOG("once: migrated %llu ns, in place %llu ns; nine times: %llu, %llu",
	       (unsigned long long)once_near, (unsigned long long)once_far,
	       (unsigned long long)t_near, (unsigned long long)t_far);
	EXPECT_GE(once_near, once_far);
	EXPECT_LT(t_near, t_far);
	close(fd2);
	munmap(near, len);
	munmap(far, len);
}

/*
 * A TOUCH job runs as many threads: the pages of a wave that miss fault
 * together, and gmem serves the block they share once.  One stall per
 * fresh block, however many of its pages faulted; the data is right.
 */
TEST_F(model, a_wave_of_faults_is_one_batch)
{
	const size_t ps = getpagesize(), len = 4 * BLOCK;
	long e0 = gmem_stat("fault_entries"), b0 = gmem_stat("fault_batches");
	long d0 = gmem_stat("batch_dups");
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_GE(e0, 0) TH_LOG("no fault_entries in gmem/stats");
	ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(npu_touch(self->fd, p, len, true, 0x5a5aULL, &w), 0);
	/* One stall per block: its first wave maps all of it. */
	EXPECT_EQ(w.faults, len / BLOCK);
	EXPECT_EQ(w.device_ns, w.faults * self->info.fault_ns +
		  ns_at(len / ps * 8, self->info.link_gbps));
	/* Every page of each first wave faulted; gmem served one each. */
	EXPECT_GE(gmem_stat("fault_entries") - e0, (long)(len / BLOCK * 64));
	EXPECT_GE(gmem_stat("fault_batches") - b0, (long)(len / BLOCK));
	EXPECT_GE(gmem_stat("batch_dups") - d0, (long)(len / BLOCK * 63));
	for (size_t off = 0; off < len; off += ps) {
		ASSERT_EQ(*(__u64 *)(p + off), 0x5a5aULL)
			TH_LOG("page %zu", off / ps);
	}
	munmap(p, len);
}

/*
 * Jobs of different files run at once, each stalling on its own faults,
 * which wait in the device's fault buffer and are served in batches of
 * more than one; a file's own jobs still run in order.  Every job
 * completes with the right data.
 */
TEST_F(model, concurrent_jobs_fault_in_batches)
{
	enum { FILES = 4, ROUNDS = 3 };
	const size_t ps = getpagesize(), len = BLOCK;
	long e0 = gmem_stat("fault_entries"), b0 = gmem_stat("fault_batches");
	int fds[FILES];
	char *bufs[FILES], *copies[FILES];
	__u64 seq[FILES][3], wall_sum = 0;
	struct gmem_npu_wait w;
	struct timespec t0, t1;

	fds[0] = self->fd;
	for (int f = 0; f < FILES; f++) {
		if (f) {
			fds[f] = npu_open(0);
			ASSERT_GE(fds[f], 0);
		}
		/* Half of them migrate, half map in place: all fit. */
		if (f % 2)
			ASSERT_EQ(npu_set_placement(fds[f],
						    GMEM_NPU_PLACE_HOST), 0);
		bufs[f] = peer_mmap_block(len);
		copies[f] = peer_mmap_block(len);
		ASSERT_NE(bufs[f], MAP_FAILED);
		ASSERT_NE(copies[f], MAP_FAILED);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int r = 0; r < ROUNDS; r++) {
		/* Per file: write its buffer, copy it, overwrite it. */
		for (int f = 0; f < FILES; f++) {
			struct gmem_npu_job touch = {
				.op = GMEM_NPU_OP_TOUCH,
				.flags = GMEM_NPU_JOB_WRITE,
				.dst = U64(bufs[f]), .len = len,
				.value = 0x1000 + 16 * r + f,
			};
			struct gmem_npu_job copy = {
				.op = GMEM_NPU_OP_COPY, .dst = U64(copies[f]),
				.src = U64(bufs[f]), .len = len,
			};
			struct gmem_npu_job fill = job_fill(bufs[f], len,
							    0x40 + r);

			ASSERT_EQ(npu_submit(fds[f], &touch, &seq[f][0]), 0);
			ASSERT_EQ(npu_submit(fds[f], &copy, &seq[f][1]), 0);
			ASSERT_EQ(npu_submit(fds[f], &fill, &seq[f][2]), 0);
		}
		for (int f = 0; f < FILES; f++)
			for (int j = 0; j < 3; j++) {
				ASSERT_EQ(npu_wait(fds[f], seq[f][j], WAIT_NS,
						   &w), 0);
				ASSERT_EQ(w.status, 0) TH_LOG("file %d job %d",
							      f, j);
				wall_sum += w.wall_ns;
			}
		for (int f = 0; f < FILES; f++) {
			for (size_t off = 0; off < len; off += ps) {
				ASSERT_EQ(*(__u64 *)(copies[f] + off),
					  (__u64)(0x1000 + 16 * r + f))
					TH_LOG("round %d file %d page %zu",
					       r, f, off / ps);
			}
			ASSERT_EQ(find_not_byte(bufs[f], len, 0x40 + r), -1);
		}
		/* Fresh memory again for the next round's faults. */
		for (int f = 0; f < FILES; f++) {
			munmap(bufs[f], len);
			munmap(copies[f], len);
			bufs[f] = peer_mmap_block(len);
			copies[f] = peer_mmap_block(len);
			ASSERT_NE(bufs[f], MAP_FAILED);
			ASSERT_NE(copies[f], MAP_FAILED);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* The files' jobs ran at once: more job time than time passed. */
	EXPECT_GT(wall_sum, (__u64)((t1.tv_sec - t0.tv_sec) * 1000000000LL +
				    t1.tv_nsec - t0.tv_nsec));
	/* More than one fault per batch, on average. */
	EXPECT_GT(gmem_stat("fault_entries") - e0,
		  gmem_stat("fault_batches") - b0);
	EXPECT_GT(gmem_stat("fault_batches") - b0, 0);
	for (int f = 0; f < FILES; f++) {
		munmap(bufs[f], len);
		munmap(copies[f], len);
		if (f)
			close(fds[f]);
	}
}

/* Overrides apply to what follows, and INFO shows them. */
TEST_F(model, per_device_overrides)
{
	struct gmem_npu_info a;
	struct gmem_npu_wait w;
	char *p = filled(LEN, 6);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(model_write("link_gbps=16\n"), 0);
	ASSERT_EQ(model_write("fault_us=0"), 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	EXPECT_EQ(a.link_gbps, 16);
	EXPECT_EQ(a.fault_ns, 0);
	ASSERT_EQ(npu_sum(self->fd, p, LEN, &w), 0);
	EXPECT_GT(w.faults, 0);
	EXPECT_EQ(w.device_ns, ns_at(LEN, 16));
	ASSERT_EQ(model_write("dev_gbps=1000"), 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	EXPECT_EQ(a.dev_gbps, 1000);
	munmap(p, LEN);
}

/* Bad writes fail with EINVAL and change nothing. */
TEST_F(model, bad_writes_change_nothing)
{
	static const char *const bad[] = {
		"link_gbps=0", "dev_gbps=0", "link_gbps=1000001",
		"link_gbps=abc", "link_gbps=", "link_gbps", "=5", "clock_ns=1",
		"fault_us=-1", "link_gbps=12x", "dev_gbps=99999999999",
		"dev_gbps=1000001", "fault_us=1000001", "counter_kib=1000001",
		"refresh_kib=1000001", "refresh_kib=-1",
		"link_gbps=5 ", "link_gbps=5\n\n", " link_gbps=5",
	};
	struct gmem_npu_info a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *b = bad[i];

		EXPECT_EQ(model_write(b), -EINVAL) TH_LOG("%s", b);
	}
	/* Longer than any good input. */
	EXPECT_LT(model_write("link_gbps=0000000000000000000000000005"), 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	EXPECT_EQ(a.dev_gbps, self->info.dev_gbps);
	EXPECT_EQ(a.link_gbps, self->info.link_gbps);
	EXPECT_EQ(a.fault_ns, self->info.fault_ns);
	/* The bounds themselves are accepted, and a good write still works. */
	EXPECT_EQ(model_write("link_gbps=1000000"), 0);
	EXPECT_EQ(model_write("fault_us=1000000"), 0);
	EXPECT_EQ(model_write("counter_kib=0"), 0);
	EXPECT_EQ(model_write("refresh_kib=0"), 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	EXPECT_EQ(a.link_gbps, 1000000);
	EXPECT_EQ(a.fault_ns, 1000000000ULL);
}

/* Binaries built before the model pass 48-byte structures; they still work. */
TEST_F(model, first_version_structures)
{
	unsigned char buf[sizeof(struct gmem_npu_info) + 16];
	struct gmem_npu_wait *w = (void *)buf;
	unsigned long wait_v1 = _IOC(_IOC_READ | _IOC_WRITE, GMEM_NPU_IOC_MAGIC,
				     2, GMEM_NPU_WAIT_SIZE_V1);
	unsigned long info_v1 = _IOC(_IOC_READ, GMEM_NPU_IOC_MAGIC, 4,
				     GMEM_NPU_INFO_SIZE_V1);
	struct gmem_npu_job job;
	char *p = filled(MiB, 7);
	__u64 seqno;

	ASSERT_NE(p, MAP_FAILED);
	job = job_sum(p, MiB);
	ASSERT_EQ(npu_submit(self->fd, &job, &seqno), 0);
	memset(buf, 0xa5, sizeof(buf));
	memset(buf, 0, GMEM_NPU_WAIT_SIZE_V1);
	w->seqno = seqno;
	w->timeout_ns = WAIT_NS;
	ASSERT_EQ(ioctl(self->fd, wait_v1, w), 0) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(w->status, 0);
	EXPECT_EQ(w->result, pattern_sum(MiB, 7));
	for (size_t i = GMEM_NPU_WAIT_SIZE_V1; i < sizeof(buf); i++) {
		size_t at = i;

		ASSERT_EQ(buf[at], 0xa5) TH_LOG("byte %zu written", at);
	}

	memset(buf, 0xa5, sizeof(buf));
	ASSERT_EQ(ioctl(self->fd, info_v1, buf), 0);
	EXPECT_EQ(((struct gmem_npu_info *)buf)->tlb_entries,
		  self->info.tlb_entries);
	for (size_t i = GMEM_NPU_INFO_SIZE_V1; i < sizeof(buf); i++) {
		size_t at = i;

		ASSERT_EQ(buf[at], 0xa5) TH_LOG("byte %zu written", at);
	}
	/* Other sizes are not WAIT or INFO. */
	EXPECT_EQ(ioctl(self->fd, _IOC(_IOC_READ, GMEM_NPU_IOC_MAGIC, 4, 56),
			buf), -1);
	EXPECT_EQ(errno, ENOTTY);
	EXPECT_EQ(ioctl(self->fd, _IOC(_IOC_READ | _IOC_WRITE,
				       GMEM_NPU_IOC_MAGIC, 2, 56), buf), -1);
	EXPECT_EQ(errno, ENOTTY);
	munmap(p, MiB);
}

TEST_HARNESS_MAIN
