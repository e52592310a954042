// SPDX-License-Identifier: GPL-2.0
/*
 * Hints on /dev/gmem (GMEM_IOC_ADVISE, GMEM_IOC_GET_ATTRS), in CUDA's
 * vocabulary: each one's effect is visible in where pages are (debugfs
 * gmem/devices) and in the attributes a query reports; bad arguments get
 * their errno and change nothing.  Needs gmem.ko and gmem_npu.ko
 * num_devices=2 dram_mib=16 (the runner loads them).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

#define FREE_DELAY_MS		2000
/* End of the x86-64 user address space (4-level paging). */
#define USER_END		0x800000000000ULL

FIXTURE(hints)
{
	int gfd;
	int fd[2];
	int dev[2];
	int ndev;
	size_t ps;
};

FIXTURE_SETUP(hints)
{
	struct gmem_npu_info info;

	self->ps = sysconf(_SC_PAGE_SIZE);
	self->gfd = open("/dev/gmem", O_RDWR);
	ASSERT_GE(self->gfd, 0) TH_LOG("open /dev/gmem: %s", strerror(errno));
	self->ndev = 0;
	for (int i = 0; i < 2; i++) {
		self->fd[i] = npu_open(i);
		if (self->fd[i] < 0)
			break;
		ASSERT_EQ(npu_get_info(self->fd[i], &info), 0);
		self->dev[i] = info.dev_id;
		self->ndev++;
	}
	ASSERT_GE(self->ndev, 1) TH_LOG("open /dev/gmem_npu0: %s",
					strerror(errno));
	dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS);
	dev_stat_wait("npu1", "devmem_used", 0, FREE_DELAY_MS);
}

FIXTURE_TEARDOWN(hints)
{
	for (int i = 0; i < self->ndev; i++)
		close(self->fd[i]);
	close(self->gfd);
}

static const char *const npu_name[] = { "npu0", "npu1" };

/* Memory of each NPU: gmem_npu.ko's dram_mib. */
static unsigned long long npu_dram_bytes(void)
{
	unsigned long long mib = 0;
	FILE *f = fopen("/sys/module/gmem_npu/parameters/dram_mib", "r");

	if (f) {
		if (fscanf(f, "%llu", &mib) != 1)
			mib = 0;
		fclose(f);
	}
	return mib << 20;
}

/* PREFETCH to a device and back to the host moves exactly the range. */
TEST_F(hints, prefetch_device_and_host)
{
	size_t len = 4 * MiB;
	long npages = len / self->ps, used0 = dev_stat("npu0", "devmem_used");
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 1);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_PREFETCH,
			      self->dev[0]), 0);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), used0 + npages);
	/* Mapped too: the job takes no fault. */
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 1));
	ASSERT_EQ(w.faults, 0);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_PREFETCH,
			      GMEM_DEV_HOST), 0);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), used0);
	ASSERT_EQ(check_pattern(p, len, 1), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * Preferred location: the host keeps pages in host memory whatever the
 * NPU does; a device as preferred location migrates even for a file
 * descriptor that asked for PLACE_HOST.
 */
TEST_F(hints, preferred_location)
{
	size_t len = 4 * MiB;
	long to_dev = dev_stat("npu0", "to_dev");
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 2);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.preferred_location, GMEM_DEV_NONE);
	ASSERT_EQ(gmem_advise(self->gfd, p, len,
			      GMEM_ADV_SET_PREFERRED_LOCATION, GMEM_DEV_HOST),
		  0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.preferred_location, GMEM_DEV_HOST);
	ASSERT_EQ(npu_fill(self->fd[0], p, len / 2, 0x31, &w), 0);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x31, len / 2) +
		  pattern_sum_from(len / 8, len / 2, 2));
	ASSERT_EQ(dev_stat("npu0", "to_dev"), to_dev);

	ASSERT_EQ(npu_set_placement(self->fd[0], GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(gmem_advise(self->gfd, p, len,
			      GMEM_ADV_SET_PREFERRED_LOCATION, self->dev[0]),
		  0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.preferred_location, self->dev[0]);
	/* Device mappings made in place stay; new faults migrate. */
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_PREFETCH,
			      GMEM_DEV_HOST), 0);
	memset(p, 0x32, len);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x32, len));
	ASSERT_EQ(dev_stat("npu0", "to_dev"), to_dev + (long)(len / self->ps));

	/* Half the range unset: the whole has no single preference. */
	ASSERT_EQ(gmem_advise(self->gfd, p, len / 2,
			      GMEM_ADV_UNSET_PREFERRED_LOCATION, 0), 0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.preferred_location, GMEM_DEV_NONE);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p + len / 2, len / 2, &q), 0);
	ASSERT_EQ(q.preferred_location, self->dev[0]);
	ASSERT_EQ(find_not_byte(p, len, 0x32), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * Accessed-by: mapped in place at once, never migrated by that device's
 * faults; only its access counters move a block it keeps using (one read
 * does not: the counter fires past one block's size of in-place traffic).
 */
TEST_F(hints, accessed_by)
{
	size_t len = 4 * MiB;
	long to_dev = dev_stat("npu0", "to_dev");
	long moved;
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 3);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_SET_ACCESSED_BY,
			      self->dev[0]), 0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.accessed_by, 1ULL << self->dev[0]);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 3));
	ASSERT_EQ(w.faults, 0) TH_LOG("not mapped eagerly");
	ASSERT_EQ(dev_stat("npu0", "to_dev"), to_dev);
	moved = gmem_stat("counter_migrations");
	ASSERT_EQ(npu_fill(self->fd[0], p, len, 0x41, &w), 0);
	ASSERT_EQ(w.faults, 0);
	/* Written after read: each block passes its counter and moves. */
	ASSERT_EQ(gmem_stat("counter_migrations") - moved, len / BLOCK);
	ASSERT_EQ(find_not_byte(p, len, 0x41), -1);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_UNSET_ACCESSED_BY,
			      self->dev[0]), 0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.accessed_by, 0);
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * Read-mostly: each device reading the range gets read-only copies in its
 * own memory and the host keeps its pages: no migration, no fault after
 * the first read, CPU reads change nothing.  A CPU write collapses the
 * copies of its block on both devices, and both see it; so does a device
 * write.
 */
TEST_F(hints, read_mostly)
{
	size_t len = 4 * MiB;
	long npages = len / self->ps, half = npages / 2;
	long to_dev[2], dup[2], collapses;
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	int i;

	if (self->ndev < 2)
		SKIP(return, "no /dev/gmem_npu1");
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 4);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_SET_READ_MOSTLY, 0),
		  0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.read_mostly, 1);
	for (i = 0; i < 2; i++) {
		to_dev[i] = dev_stat(npu_name[i], "to_dev");
		dup[i] = dev_stat(npu_name[i], "dup_pages");
	}
	for (int round = 0; round < 3; round++) {
		for (i = 0; i < 2; i++) {
			ASSERT_EQ(npu_sum(self->fd[i], p, len, &w), 0);
			ASSERT_EQ(w.result, pattern_sum(len, 4));
			if (round)
				ASSERT_EQ(w.faults, 0) TH_LOG("%s round %d",
							     npu_name[i], round);
			ASSERT_EQ(dev_stat(npu_name[i], "to_dev"), to_dev[i]);
			ASSERT_EQ(dev_stat(npu_name[i], "dup_pages"),
				  dup[i] + npages);
		}
		/* The CPU reads freely: the host kept its pages. */
		ASSERT_EQ(check_pattern(p, len, 4), -1);
	}

	/* A CPU write collapses its block's copies on both devices. */
	collapses = gmem_stat("dup_collapses");
	memset(p + len / 2, 0x51, len / 2);
	for (i = 0; i < 2; i++)
		ASSERT_EQ(dev_stat(npu_name[i], "dup_pages"), dup[i] + half)
			TH_LOG("%s", npu_name[i]);
	ASSERT_GE(gmem_stat("dup_collapses"), collapses + 2);
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(npu_sum(self->fd[i], p, len, &w), 0);
		ASSERT_EQ(w.result, pattern_sum(len / 2, 4) +
			  byte_sum(0x51, len / 2));
		ASSERT_EQ(dev_stat(npu_name[i], "dup_pages"), dup[i] + npages);
	}
	/* A device write: the other device and the CPU see it. */
	ASSERT_EQ(npu_fill(self->fd[0], p, len / 2, 0x52, &w), 0);
	ASSERT_EQ(npu_sum(self->fd[1], p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x52, len / 2) + byte_sum(0x51, len / 2));
	ASSERT_EQ(find_not_byte(p, len / 2, 0x52), -1);
	ASSERT_EQ(find_not_byte(p + len / 2, len / 2, 0x51), -1);
	for (i = 0; i < 2; i++)
		ASSERT_EQ(dev_stat(npu_name[i], "to_dev"), to_dev[i]);
	ASSERT_EQ(munmap(p, len), 0);
	for (i = 0; i < 2; i++)
		ASSERT_EQ(dev_stat_wait(npu_name[i], "dup_pages", dup[i],
					FREE_DELAY_MS), dup[i]);
}

/* Discard: device-resident or not, the range reads as zeros after. */
TEST_F(hints, discard_reads_zeros)
{
	size_t len = 4 * MiB;
	long used0 = dev_stat("npu0", "devmem_used");
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 5);
	ASSERT_EQ(npu_prefetch(self->fd[0], p, len / 2, 0), 0);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"),
		  used0 + (long)(len / 2 / self->ps));
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_DISCARD, 0), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", used0, FREE_DELAY_MS),
		  used0);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, 0);
	ASSERT_EQ(find_not_byte(p, len, 0), -1);
	ASSERT_GE(gmem_stat("discarded_pages"), (long)(len / self->ps));
	ASSERT_EQ(munmap(p, len), 0);
}

/* Attributes go with the mapping: a new mapping at the address has none. */
TEST_F(hints, munmap_drops_attributes)
{
	size_t len = 4 * MiB;
	struct gmem_range_attrs q;
	char *p = peer_mmap_block(len), *again;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_SET_READ_MOSTLY, 0),
		  0);
	ASSERT_EQ(gmem_advise(self->gfd, p, len,
			      GMEM_ADV_SET_PREFERRED_LOCATION, GMEM_DEV_HOST),
		  0);
	ASSERT_EQ(munmap(p, len), 0);
	again = mmap(p, len, PROT_READ | PROT_WRITE, PEER_FLAGS | MAP_FIXED,
		     -1, 0);
	ASSERT_EQ(again, p);
	/* The unmap is processed by a work item: give it a moment. */
	for (int i = 0; i < 200; i++) {
		ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
		if (!q.read_mostly && q.preferred_location == GMEM_DEV_NONE)
			break;
		usleep(10000);
	}
	ASSERT_EQ(q.read_mostly, 0);
	ASSERT_EQ(q.preferred_location, GMEM_DEV_NONE);
	ASSERT_EQ(munmap(p, len), 0);
}

struct bad_advice {
	const char *what;
	struct gmem_advise a;
	int err;
};

/* Malformed advice fails with its errno and changes no attribute. */
TEST_F(hints, invalid_advice)
{
	size_t ps = self->ps, len = BLOCK;
	char *p = peer_mmap_block(len);
	char *anon = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *hole = unmapped_page(ps);
	__u64 b = U64(p), wrap = ~0ULL & ~(__u64)(ps - 1);
	int d = self->dev[0];
	struct gmem_range_attrs q;
	const struct bad_advice cases[] = {
		{ "advice 0", { b, ps, 0, d, 0 }, EINVAL },
		{ "advice MAX + 1", { b, ps, GMEM_ADV_MAX + 1, d, 0 }, EINVAL },
		{ "advice ~0", { b, ps, ~0U, d, 0 }, EINVAL },
		{ "reserved", { b, ps, GMEM_ADV_PIN, d, 1 }, EINVAL },
		{ "addr + 1", { b + 1, ps, GMEM_ADV_PIN, d, 0 }, EINVAL },
		{ "len 0", { b, 0, GMEM_ADV_PIN, d, 0 }, EINVAL },
		{ "len page - 1", { b, ps - 1, GMEM_ADV_SET_READ_MOSTLY, 0, 0 },
		  EINVAL },
		{ "wraps", { wrap, 2 * ps, GMEM_ADV_SET_READ_MOSTLY, 0, 0 },
		  EINVAL },
		{ "hole", { U64(hole), ps, GMEM_ADV_SET_READ_MOSTLY, 0, 0 },
		  EFAULT },
		{ "past the end", { b, len + ps, GMEM_ADV_SET_READ_MOSTLY, 0, 0 },
		  EFAULT },
		{ "user end", { USER_END, ps, GMEM_ADV_SET_READ_MOSTLY, 0, 0 },
		  EFAULT },
		{ "not peer-shared", { U64(anon), ps, GMEM_ADV_SET_READ_MOSTLY,
				       0, 0 }, EACCES },
		{ "accessed-by host", { b, ps, GMEM_ADV_SET_ACCESSED_BY,
					GMEM_DEV_HOST, 0 }, EINVAL },
		{ "pin host", { b, ps, GMEM_ADV_PIN, GMEM_DEV_HOST, 0 },
		  EINVAL },
		{ "device 63", { b, ps, GMEM_ADV_PIN, 63, 0 }, ENODEV },
		{ "device 64", { b, ps, GMEM_ADV_SET_ACCESSED_BY, 64, 0 },
		  ENODEV },
		{ "device -3", { b, ps, GMEM_ADV_SET_PREFERRED_LOCATION, -3, 0 },
		  ENODEV },
		{ "prefetch device -7", { b, ps, GMEM_ADV_PREFETCH, -7, 0 },
		  ENODEV },
	};

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_NE(anon, MAP_FAILED);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct gmem_advise a = cases[i].a;

		errno = 0;
		ASSERT_EQ(ioctl(self->gfd, GMEM_IOC_ADVISE, &a), -1)
			TH_LOG("%s: accepted", cases[i].what);
		ASSERT_EQ(errno, cases[i].err)
			TH_LOG("%s: %s", cases[i].what, strerror(errno));
	}
	ASSERT_EQ(ioctl(self->gfd, GMEM_IOC_ADVISE, NULL), -1);
	ASSERT_EQ(errno, EFAULT);
	ASSERT_EQ(ioctl(self->gfd, _IO('G', 99), 0), -1);
	ASSERT_EQ(errno, ENOTTY);
	memset(&q, 0, sizeof(q));
	q.addr = b;
	q.len = ps;
	q.reserved = 1;
	ASSERT_EQ(ioctl(self->gfd, GMEM_IOC_GET_ATTRS, &q), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(gmem_get_attrs(self->gfd, hole, ps, &q), -EFAULT);

	/* Nothing changed, nothing moved. */
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	ASSERT_EQ(q.preferred_location, GMEM_DEV_NONE);
	ASSERT_EQ(q.read_mostly, 0);
	ASSERT_EQ(q.accessed_by, 0);
	ASSERT_EQ(q.pinned, 0);
	ASSERT_EQ(dev_stat("npu0", "pinned"), 0);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(munmap(anon, 4 * ps), 0);
}

/*
 * GMEM_IOC_DEV_INFO lists every registered device in id order, with its
 * name and memory; past the last it says ENODEV, and a nonzero reserved
 * field is refused without an answer.
 */
TEST_F(hints, dev_info_lists_devices)
{
	struct gmem_dev_info d = { .id = 0 };
	int found = 0, prev = -1;

	while (!ioctl(self->gfd, GMEM_IOC_DEV_INFO, &d)) {
		ASSERT_GT((int)d.id, prev);
		ASSERT_NE(d.name[0], 0);
		ASSERT_EQ(d.name[sizeof(d.name) - 1], 0);
		for (int i = 0; i < self->ndev; i++) {
			if ((int)d.id != self->dev[i])
				continue;
			ASSERT_STREQ(d.name, npu_name[i]);
			ASSERT_EQ(d.mem_bytes, npu_dram_bytes());
			ASSERT_TRUE(d.caps & GMEM_NPU_CAP_DEVMEM);
			found++;
		}
		prev = d.id;
		d = (struct gmem_dev_info){ .id = prev + 1 };
	}
	ASSERT_EQ(errno, ENODEV);
	ASSERT_EQ(found, self->ndev);

	d = (struct gmem_dev_info){ .id = 0, .reserved = 1 };
	ASSERT_EQ(ioctl(self->gfd, GMEM_IOC_DEV_INFO, &d), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(d.name[0], 0);
	d = (struct gmem_dev_info){ .id = prev + 1 };
	ASSERT_EQ(ioctl(self->gfd, GMEM_IOC_DEV_INFO, &d), -1);
	ASSERT_EQ(errno, ENODEV);
	ASSERT_EQ(ioctl(self->gfd, GMEM_IOC_DEV_INFO, NULL), -1);
	ASSERT_EQ(errno, EFAULT);
}

/*
 * 3000 random requests around a mapping, the NPU running jobs on it in
 * between: each gets 0 or one of the documented errnos, nothing hangs or
 * splats, and the range can still be queried and used afterwards.
 */
TEST_F_TIMEOUT(hints, random_advice, 600)
{
	size_t ps = self->ps, len = 4 * MiB;
	const int errs[] = { 0, EINVAL, EFAULT, EACCES, ENODEV, ENOMEM };
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	unsigned int seed = 0x5eed;
	int i, ret;

	ASSERT_NE(p, MAP_FAILED);
	for (i = 0; i < 3000; i++) {
		__u64 off = (rand_r(&seed) % (2 * len)) - len / 2;
		struct gmem_advise a = {
			.addr = U64(p) + (off & ~(__u64)(rand_r(&seed) % 3 ?
							ps - 1 : 0)),
			.len = (rand_r(&seed) % (len / ps + 2)) * ps +
			       (rand_r(&seed) % 5 ? 0 : 1),
			.advice = rand_r(&seed) % (GMEM_ADV_MAX + 2),
			.dev = rand_r(&seed) % 4 ? self->dev[rand_r(&seed) %
							    self->ndev] :
			       (int)(rand_r(&seed) % 70) - 3,
			.reserved = rand_r(&seed) % 50 ? 0 : 1,
		};
		bool known = false;

		ret = ioctl(self->gfd, GMEM_IOC_ADVISE, &a) ? errno : 0;
		for (size_t e = 0; e < ARRAY_SIZE(errs); e++)
			known |= ret == errs[e];
		ASSERT_TRUE(known) TH_LOG("request %d: %s", i, strerror(ret));
		if (i % 100 == 0)
			ASSERT_EQ(npu_touch(self->fd[0], p, len, i % 200 == 0,
					    i, &w), 0);
	}
	ASSERT_EQ(gmem_get_attrs(self->gfd, p, len, &q), 0);
	for (i = 0; i < 2 && i < self->ndev; i++)
		ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_UNPIN,
				      self->dev[i]), 0);
	memset(p, 0x61, len);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x61, len));
	ASSERT_EQ(munmap(p, len), 0);
}

static void on_alarm(int sig)
{
	(void)sig;
}

/*
 * A prefetch of 8 GiB (never touched: device memory fills, then evicts,
 * block after block) is interrupted by a signal: EINTR within a bounded
 * time, what moved stays, and everything is freed at munmap.
 */
TEST_F_TIMEOUT(hints, huge_prefetch_is_interruptible, 300)
{
	size_t len = 8UL << 30;
	struct sigaction sa = { .sa_handler = on_alarm };	/* no restart */
	struct gmem_advise a = { .len = len, .advice = GMEM_ADV_PREFETCH,
				 .dev = self->dev[0] };
	struct timespec t0, t1;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       PEER_FLAGS | MAP_NORESERVE, -1, 0);
	int ret;

	ASSERT_NE(p, MAP_FAILED);
	a.addr = U64(p);
	ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(1);
	ret = ioctl(self->gfd, GMEM_IOC_ADVISE, &a) ? errno : 0;
	alarm(0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ASSERT_EQ(ret, EINTR) TH_LOG("%s", strerror(ret));
	ASSERT_LT(t1.tv_sec - t0.tv_sec, 60);
	ASSERT_GT(dev_stat("npu0", "devmem_used"), 0);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS), 0);
	signal(SIGALRM, SIG_DFL);
}

TEST_HARNESS_MAIN
