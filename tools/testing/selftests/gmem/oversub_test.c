// SPDX-License-Identifier: GPL-2.0
/*
 * Oversubscription of the simulated NPUs' memory: jobs whose working set is
 * several times the device memory complete with exact data, the least
 * recently used blocks going back to host memory; pinned ranges are never
 * evicted and a device full of them fails jobs cleanly with ENOMEM;
 * blocks bouncing between the CPU and a device are held in host memory;
 * the naive policy of make bench's comparison (naive_lru=1) really
 * migrates every block on every pass of a 2x stream.
 *
 * Where pages are follows from debugfs gmem/devices (devmem_used, to_dev,
 * evictions, thrash, oom, pinned of each NPU).  Needs gmem.ko and
 * gmem_npu.ko num_devices=2 dram_mib=16 (the runner loads them).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

/* How long freeing device memory may lag behind munmap or exit. */
#define FREE_DELAY_MS		2000

FIXTURE(oversub)
{
	int fd;
	int gfd;
	int dev;
	size_t ps;
	size_t dev_bytes;
	/* naive_lru before a case set it, or -1. */
	long naive_old;
	struct thrash_params thrash;
};


FIXTURE_SETUP(oversub)
{
	struct gmem_npu_info info;

	self->thrash = thrash_params_get();
	self->ps = sysconf(_SC_PAGE_SIZE);
	self->naive_old = -1;
	self->gfd = open("/dev/gmem", O_RDWR);
	ASSERT_GE(self->gfd, 0) TH_LOG("open /dev/gmem: %s", strerror(errno));
	self->fd = npu_open(0);
	ASSERT_GE(self->fd, 0) TH_LOG("open /dev/gmem_npu0: %s",
				      strerror(errno));
	ASSERT_EQ(npu_get_info(self->fd, &info), 0);
	self->dev = info.dev_id;
	self->dev_bytes = dev_stat("npu0", "devmem_pages") * self->ps;
	ASSERT_GT(self->dev_bytes, 0);
	if (self->dev_bytes > 16 * MiB)
		SKIP(return, "npu0 has %zu MiB (dram_mib=16 wanted)",
		     self->dev_bytes / MiB);
	/* An earlier test's exited process frees its memory first. */
	dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS);
}

FIXTURE_TEARDOWN(oversub)
{
	thrash_params_put(self->thrash);
	if (self->naive_old >= 0)
		EXPECT_EQ(set_gmem_param("naive_lru", self->naive_old), 1);
	close(self->fd);
	close(self->gfd);
}

/* 4x the device memory, streamed through twice: read, written, read. */
TEST_F_TIMEOUT(oversub, stream_4x, 600)
{
	size_t len = 4 * self->dev_bytes;
	long ev0 = dev_stat("npu0", "evictions"), ev1;
	long faults0 = dev_stat("npu0", "faults");
	long thrash0 = dev_stat("npu0", "thrash"), moved[2];
	struct gmem_npu_wait w;
	__u32 seed = 0x4a4a;
	char *p = peer_mmap_block(len);
	ssize_t bad;

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, seed);
	for (int pass = 0; pass < 2; pass++) {
		long to_dev = dev_stat("npu0", "to_dev");

		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0)
			TH_LOG("pass %d: status %d at 0x%llx", pass, w.status,
			       (unsigned long long)w.fault_addr);
		ASSERT_EQ(w.result, pattern_sum(len, seed));
		ASSERT_LE(dev_stat("npu0", "devmem_used"),
			  (long)(self->dev_bytes / self->ps));
		moved[pass] = dev_stat("npu0", "to_dev") - to_dev;
	}
	/*
	 * The second sweep wants back blocks the first evicted long before the
	 * device used 4x its memory: they are thrashing, and stay in host
	 * memory, read in place, instead of each evicting the next one needs.
	 */
	ASSERT_GT(dev_stat("npu0", "thrash"), thrash0);
	ASSERT_LT(moved[1], moved[0] / 2)
		TH_LOG("pass 1 migrated %ld pages, pass 2 %ld", moved[0],
		       moved[1]);
	/* A fault per block and pass at least, counted for this device. */
	ASSERT_GE(dev_stat("npu0", "faults") - faults0, (long)(len / BLOCK))
		TH_LOG("%ld device faults", dev_stat("npu0", "faults") - faults0);
	ev1 = dev_stat("npu0", "evictions");
	ASSERT_GE(ev1 - ev0, (long)((len - self->dev_bytes) / BLOCK))
		TH_LOG("only %ld evictions", ev1 - ev0);
	ASSERT_GT(gmem_stat("evicted_pages"), 0);

	ASSERT_EQ(npu_fill(self->fd, p, len, 0x5c, &w), 0);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x5c, len));
	bad = find_not_byte(p, len, 0x5c);
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at byte %zd", p[bad], bad);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS), 0);
}

/*
 * The naive baseline: streaming 2x the device memory, each pass migrates
 * every block again and evicts as many (LRU on a cyclic sweep always
 * evicts the block needed next), and the data stays exact.
 */
TEST_F_TIMEOUT(oversub, naive_lru_migrates_every_block_every_pass, 600)
{
	size_t len = 2 * self->dev_bytes;
	long pages = len / self->ps, blocks = len / BLOCK;
	long thrash = dev_stat("npu0", "thrash");
	struct gmem_npu_wait w;
	__u32 seed = 0x6e61;
	char *p = peer_mmap_block(len);

	ASSERT_NE(p, MAP_FAILED);
	self->naive_old = set_gmem_param("naive_lru", 1);
	ASSERT_GE(self->naive_old, 0);
	fill_pattern(p, len, seed);
	for (int pass = 0; pass < 3; pass++) {
		long to_dev = dev_stat("npu0", "to_dev");
		long ev = dev_stat("npu0", "evictions");

		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0)
			TH_LOG("pass %d: status %d", pass, w.status);
		ASSERT_EQ(w.result, pattern_sum(len, seed));
		to_dev = dev_stat("npu0", "to_dev") - to_dev;
		ev = dev_stat("npu0", "evictions") - ev;
		TH_LOG("pass %d: %ld pages migrated, %ld evictions", pass,
		       to_dev, ev);
		ASSERT_EQ(to_dev, pages);
		if (pass > 0)
			ASSERT_GE(ev, blocks);
	}
	ASSERT_EQ(dev_stat("npu0", "thrash"), thrash);
	ASSERT_EQ(check_pattern(p, len, seed), -1);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(set_gmem_param("naive_lru", self->naive_old), 1);
	self->naive_old = -1;
}

/* A pinned range stays on the device while 3x its memory streams past. */
TEST_F_TIMEOUT(oversub, pinned_never_evicted, 600)
{
	size_t plen = 4 * MiB, len = 3 * self->dev_bytes;
	long pin_pages = plen / self->ps, to_dev;
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	char *pin = peer_mmap_block(plen), *p = peer_mmap_block(len);

	ASSERT_NE(pin, MAP_FAILED);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(pin, plen, 11);
	fill_pattern(p, len, 12);
	ASSERT_EQ(gmem_advise(self->gfd, pin, plen, GMEM_ADV_PIN, self->dev),
		  0);
	ASSERT_EQ(dev_stat("npu0", "pinned"), pin_pages);
	ASSERT_EQ(gmem_get_attrs(self->gfd, pin, plen, &q), 0);
	ASSERT_EQ(q.pinned, 1ULL << self->dev);

	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 12));
	ASSERT_GT(dev_stat("npu0", "evictions"), 0);
	ASSERT_EQ(dev_stat("npu0", "pinned"), pin_pages);
	/* Still resident: reading it migrates nothing and faults once. */
	to_dev = dev_stat("npu0", "to_dev");
	ASSERT_EQ(npu_sum(self->fd, pin, plen, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(plen, 11));
	ASSERT_EQ(dev_stat("npu0", "to_dev"), to_dev);

	ASSERT_EQ(gmem_advise(self->gfd, pin, plen, GMEM_ADV_UNPIN, self->dev),
		  0);
	ASSERT_EQ(dev_stat("npu0", "pinned"), 0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, pin, plen, &q), 0);
	ASSERT_EQ(q.pinned, 0);
	ASSERT_EQ(check_pattern(pin, plen, 11), -1);
	ASSERT_EQ(munmap(pin, plen), 0);
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * By default one process may pin half of a device and everyone together
 * three quarters: pinning all of it fails with ENOMEM and pins nothing,
 * and a job on other memory still finds room.
 */
TEST_F_TIMEOUT(oversub, pins_are_bounded, 600)
{
	size_t len = self->dev_bytes, half = len / 2, olen = 4 * MiB;
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	char *pin = peer_mmap_block(len), *other = peer_mmap_block(olen);

	ASSERT_NE(pin, MAP_FAILED);
	ASSERT_NE(other, MAP_FAILED);
	fill_pattern(pin, len, 31);
	fill_pattern(other, olen, 32);
	ASSERT_EQ(gmem_advise(self->gfd, pin, len, GMEM_ADV_PIN, self->dev),
		  -ENOMEM);
	ASSERT_EQ(dev_stat("npu0", "pinned"), 0);
	ASSERT_EQ(gmem_get_attrs(self->gfd, pin, len, &q), 0);
	ASSERT_EQ(q.pinned, 0);
	ASSERT_EQ(gmem_advise(self->gfd, pin, half, GMEM_ADV_PIN, self->dev),
		  0);
	ASSERT_EQ(dev_stat("npu0", "pinned"), (long)(half / self->ps));
	/* Past the limit, a range adjoining the pinned one is refused too. */
	ASSERT_EQ(gmem_advise(self->gfd, pin + half, BLOCK, GMEM_ADV_PIN,
			      self->dev), -ENOMEM);
	ASSERT_EQ(npu_sum(self->fd, other, olen, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(olen, 32));
	ASSERT_EQ(gmem_advise(self->gfd, pin, half, GMEM_ADV_UNPIN, self->dev),
		  0);
	ASSERT_EQ(check_pattern(pin, len, 31), -1);
	ASSERT_EQ(munmap(pin, len), 0);
	ASSERT_EQ(munmap(other, olen), 0);
}

/*
 * All of the device pinned (limits raised by root to 100%): a job that
 * needs device memory fails with ENOMEM and changes nothing; pinning more
 * fails the same way and leaves the range unpinned; unpinning lets the
 * job run.
 */
TEST_F_TIMEOUT(oversub, all_pinned_is_enomem, 600)
{
	size_t len = self->dev_bytes, olen = 4 * MiB;
	long oom = dev_stat("npu0", "oom");
	long old_limit = set_gmem_param("pin_limit_pct", 100);
	long old_total = set_gmem_param("pin_total_pct", 100);
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	char *pin = peer_mmap_block(len), *other = peer_mmap_block(olen);

	ASSERT_GE(old_limit, 0);
	ASSERT_GE(old_total, 0);
	ASSERT_NE(pin, MAP_FAILED);
	ASSERT_NE(other, MAP_FAILED);
	fill_pattern(pin, len, 21);
	fill_pattern(other, olen, 22);
	ASSERT_EQ(gmem_advise(self->gfd, pin, len, GMEM_ADV_PIN, self->dev),
		  0);
	ASSERT_EQ(dev_stat("npu0", "pinned"), (long)(len / self->ps));

	ASSERT_EQ(npu_sum(self->fd, other, olen, &w), -ENOMEM);
	ASSERT_EQ(w.fault_addr, (__u64)(uintptr_t)other);
	ASSERT_GT(dev_stat("npu0", "oom"), oom);
	ASSERT_EQ(gmem_advise(self->gfd, other, olen, GMEM_ADV_PIN, self->dev),
		  -ENOMEM);
	ASSERT_EQ(gmem_get_attrs(self->gfd, other, olen, &q), 0);
	ASSERT_EQ(q.pinned, 0);
	ASSERT_EQ(check_pattern(other, olen, 22), -1);

	ASSERT_EQ(gmem_advise(self->gfd, pin, len, GMEM_ADV_UNPIN, self->dev),
		  0);
	ASSERT_EQ(npu_sum(self->fd, other, olen, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(olen, 22));
	ASSERT_EQ(npu_sum(self->fd, pin, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 21));
	ASSERT_EQ(munmap(pin, len), 0);
	ASSERT_EQ(munmap(other, olen), 0);
	ASSERT_EQ(set_gmem_param("pin_limit_pct", old_limit), 100);
	ASSERT_EQ(set_gmem_param("pin_total_pct", old_total), 100);
}

/*
 * The CPU and the NPU writing one block in turn: after a few round trips
 * the block is thrashing and stays in host memory, mapped in place by the
 * NPU, and every value is still right.
 */
TEST_F_TIMEOUT(oversub, thrashing_pins_to_host, 300)
{
	size_t len = BLOCK;
	long pins = dev_stat("npu0", "thrash"), to_dev_mid, to_dev_end;
	/*
	 * A round trip of a block takes longer than the default lapse under
	 * TCG with the debug kernel's checkers: count departures up to 5 s
	 * apart, and hold for 30 s, as a slow machine's administrator would.
	 */
	long old_lapse = set_gmem_param("thrash_lapse_ms", 5000);
	long old_pin = set_gmem_param("thrash_pin_ms", 30000);
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	int i;

	ASSERT_GE(old_lapse, 0);
	ASSERT_GE(old_pin, 0);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 0, len);
	for (i = 0; i < 8; i++) {
		ASSERT_EQ(npu_fill(self->fd, p, len, 0x10 + i, &w), 0);
		ASSERT_EQ(find_not_byte(p, len, 0x10 + i), -1)
			TH_LOG("round %d: CPU reads stale data", i);
		memset(p, 0x80 + i, len);
		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
		ASSERT_EQ(w.result, byte_sum(0x80 + i, len));
		if (i == 4)
			to_dev_mid = dev_stat("npu0", "to_dev");
	}
	to_dev_end = dev_stat("npu0", "to_dev");
	ASSERT_GT(dev_stat("npu0", "thrash"), pins);
	ASSERT_GT(gmem_stat("thrash_pins"), 0);
	/* Held in host memory: the last rounds migrated (almost) nothing. */
	ASSERT_LT(to_dev_end - to_dev_mid, (long)(len / self->ps))
		TH_LOG("%ld pages still migrated after round 4",
		       to_dev_end - to_dev_mid);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(set_gmem_param("thrash_lapse_ms", old_lapse), 5000);
	ASSERT_EQ(set_gmem_param("thrash_pin_ms", old_pin), 30000);
}

/*
 * The NPU keeps a clock, so its thrashing table counts device time: the
 * same ping-pong at the default lapse, with more than the lapse of wall
 * time between rounds, is still thrashing, since the NPU worked well
 * under a millisecond between two departures.  In wall time it never
 * was (under TCG every round trip took longer than the lapse anyway).
 */
TEST_F_TIMEOUT(oversub, thrashing_is_timed_in_device_time, 300)
{
	size_t len = BLOCK;
	long old_lapse = set_gmem_param("thrash_lapse_ms", 200);
	long old_pin = set_gmem_param("thrash_pin_ms", 30000);
	long pins = dev_stat("npu0", "thrash");
	long clock = dev_stat("npu0", "clock_ns"), used;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	int i;

	ASSERT_GE(old_lapse, 0);
	ASSERT_GE(old_pin, 0);
	ASSERT_GE(clock, 0) TH_LOG("no clock_ns in gmem/devices");
	ASSERT_NE(p, MAP_FAILED);
	for (i = 0; i < 8 && dev_stat("npu0", "thrash") == pins; i++) {
		memset(p, 0x40 + i, len);
		ASSERT_EQ(npu_fill(self->fd, p, len, 0x10 + i, &w), 0);
		ASSERT_EQ(find_not_byte(p, len, 0x10 + i), -1)
			TH_LOG("round %d: CPU reads stale data", i);
		/* More than the lapse, in wall time. */
		usleep(300 * 1000);
	}
	EXPECT_GT(dev_stat("npu0", "thrash"), pins)
		TH_LOG("never held: thrashing timed in wall time?");
	EXPECT_GT(dev_stat("npu0", "clock_ns"), clock);
	/* Held: the NPU writes the host page in place, the CPU reads it. */
	memset(p, 0x70, len);
	used = dev_stat("npu0", "devmem_used");
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x71, &w), 0);
	EXPECT_EQ(dev_stat("npu0", "devmem_used"), used)
		TH_LOG("the held block migrated");
	EXPECT_EQ(find_not_byte(p, len, 0x71), -1);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(set_gmem_param("thrash_lapse_ms", old_lapse), 200);
	ASSERT_EQ(set_gmem_param("thrash_pin_ms", old_pin), 30000);
}

/*
 * A buffer mapped where a thrashing one was unmapped is other data: it
 * migrates on its first device fault instead of inheriting the hold.
 */
TEST_F_TIMEOUT(oversub, a_hold_ends_with_its_mapping, 300)
{
	size_t len = BLOCK;
	long old_lapse = set_gmem_param("thrash_lapse_ms", 5000);
	long old_pin = set_gmem_param("thrash_pin_ms", 30000);
	long pins = dev_stat("npu0", "thrash"), regions, to_dev;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len), *q;
	int i;

	ASSERT_GE(old_lapse, 0);
	ASSERT_GE(old_pin, 0);
	ASSERT_NE(p, MAP_FAILED);
	/* Ping-pong until the block is held (thrashing_pins_to_host). */
	for (i = 0; i < 8 && dev_stat("npu0", "thrash") == pins; i++) {
		memset(p, 0x40 + i, len);
		ASSERT_EQ(npu_fill(self->fd, p, len, 0x10 + i, &w), 0);
		ASSERT_EQ(find_not_byte(p, len, 0x10 + i), -1);
	}
	ASSERT_GT(dev_stat("npu0", "thrash"), pins) TH_LOG("never held");
	regions = gmem_stat("regions");
	ASSERT_EQ(munmap(p, len), 0);
	/* The region goes in the background, with the history. */
	for (i = 0; i < 200 && gmem_stat("regions") >= regions; i++)
		usleep(10000);
	ASSERT_LT(gmem_stat("regions"), regions);
	q = mmap(p, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_PEER_SHARED | MAP_FIXED, -1,
		 0);
	ASSERT_EQ(q, p);
	memset(q, 0x77, len);
	to_dev = dev_stat("npu0", "to_dev");
	ASSERT_EQ(npu_sum(self->fd, q, len, &w), 0);
	EXPECT_EQ(w.result, byte_sum(0x77, len));
	EXPECT_EQ(dev_stat("npu0", "to_dev") - to_dev, (long)(len / self->ps))
		TH_LOG("the new buffer did not migrate: it inherited the hold");
	ASSERT_EQ(munmap(q, len), 0);
	ASSERT_EQ(set_gmem_param("thrash_lapse_ms", old_lapse), 5000);
	ASSERT_EQ(set_gmem_param("thrash_pin_ms", old_pin), 30000);
}

/*
 * Two NPUs and two CPU threads on overlapping ranges at 2x the memory of
 * both NPUs together.  Each round every actor adds 1 to every word of its
 * quarter of the data (the quarters rotate, so every actor works on all
 * of it) and sums a read-only buffer all four read; after the rounds every
 * word went up by the number of rounds.
 */
#define ACTORS	4
#define ROUNDS	4

struct actor {
	int fd;			/* NPU, or -1 for a CPU thread */
	int index;
	__u32 *data;
	size_t quarter;		/* bytes */
	const __u32 *ones;
	size_t ones_len;
	pthread_barrier_t *barrier;
	int error;
};

static void *actor_run(void *arg)
{
	struct actor *a = arg;
	struct gmem_npu_wait w;
	size_t words = a->quarter / 4;

	/* Every round ends at the barrier, even after an error. */
	for (int r = 0; r < ROUNDS; r++) {
		__u32 *q = a->data + ((a->index + r) % ACTORS) * words;
		__u64 sum = 0;

		if (a->error) {
			/* Nothing more to do. */
		} else if (a->fd >= 0) {
			if (npu_add(a->fd, q, q, a->ones, a->quarter, &w))
				a->error = 1000 + r;
			else if (npu_sum(a->fd, a->ones, a->ones_len, &w) ||
				 w.result != a->ones_len / 4)
				a->error = 2000 + r;
		} else {
			for (size_t i = 0; i < words; i++)
				q[i]++;
			for (size_t i = 0; i < a->ones_len / 4; i++)
				sum += a->ones[i];
			if (sum != a->ones_len / 4)
				a->error = 3000 + r;
		}
		pthread_barrier_wait(a->barrier);
	}
	return NULL;
}

TEST_F_TIMEOUT(oversub, two_npus_two_threads_2x, 900)
{
	size_t total = 2 * 2 * self->dev_bytes;	/* 2x both NPUs */
	size_t ones_len = total / 4, len = total - ones_len;
	size_t quarter = len / ACTORS;
	struct actor actors[ACTORS];
	pthread_t threads[ACTORS];
	pthread_barrier_t barrier;
	__u32 *data, *ones;
	int fd1 = npu_open(1), k;
	size_t i;

	if (fd1 < 0 && errno == ENOENT)
		SKIP(return, "no /dev/gmem_npu1 (gmem_npu.ko num_devices=2)");
	ASSERT_GE(fd1, 0);
	ASSERT_EQ(quarter % BLOCK, 0);
	data = peer_mmap_block(len);
	ones = peer_mmap_block(ones_len);
	ASSERT_NE(data, MAP_FAILED);
	ASSERT_NE(ones, MAP_FAILED);
	for (i = 0; i < len / 4; i++)
		data[i] = i * 7;
	for (i = 0; i < ones_len / 4; i++)
		ones[i] = 1;

	ASSERT_EQ(pthread_barrier_init(&barrier, NULL, ACTORS), 0);
	for (k = 0; k < ACTORS; k++) {
		actors[k] = (struct actor){
			.fd = k == 0 ? self->fd : k == 1 ? fd1 : -1,
			.index = k, .data = data, .quarter = quarter,
			.ones = ones, .ones_len = ones_len,
			.barrier = &barrier,
		};
		ASSERT_EQ(pthread_create(&threads[k], NULL, actor_run,
					 &actors[k]), 0);
	}
	for (k = 0; k < ACTORS; k++)
		pthread_join(threads[k], NULL);
	for (k = 0; k < ACTORS; k++)
		EXPECT_EQ(actors[k].error, 0) TH_LOG("actor %d", k);
	for (i = 0; i < len / 4; i++)
		ASSERT_EQ(data[i], (__u32)(i * 7 + ROUNDS))
			TH_LOG("word %zu", i);
	ASSERT_GT(dev_stat("npu0", "evictions") + dev_stat("npu1", "evictions"),
		  0);
	pthread_barrier_destroy(&barrier);
	close(fd1);
	ASSERT_EQ(munmap(data, len), 0);
	ASSERT_EQ(munmap(ones, ones_len), 0);
}

/*
 * Eviction racing everything else on the same pages: the NPU streams over
 * 4x its memory (evicting) while a CPU thread reads the same buffer
 * (faulting device pages home) and the other NPU sums it too; then a
 * child process streaming over its own 4x buffer, evicting this one's
 * blocks, is killed at varying moments, five times.  Nothing hangs, and
 * every sum and every CPU read of this process's data is exact.
 */
struct reader {
	const char *p;
	size_t len;
	__u32 seed;
	int stop;		/* set with __atomic_store_n() */
	long bad;
};

static void *cpu_reader(void *arg)
{
	struct reader *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
		for (size_t off = 0; off < r->len; off += 3 * MiB)
			if (check_pattern_from(r->p + off, off / 4, MiB, r->seed)
			    != -1)
				r->bad++;
	return NULL;
}

static __noreturn void streaming_child(size_t len)
{
	char *q = peer_mmap_block(len);
	struct gmem_npu_wait w;
	int fd = npu_open(0);

	if (q == MAP_FAILED || fd < 0)
		_exit(1);
	memset(q, 0x77, len);
	for (;;)
		npu_sum(fd, q, len, &w);
}

TEST_F_TIMEOUT(oversub, eviction_races, 900)
{
	size_t len = 4 * self->dev_bytes, mid = len / 2;
	struct reader r = { .len = len, .seed = 0x7ace };
	struct gmem_npu_wait w;
	pthread_t thread;
	int fd1 = npu_open(1), status, round;
	char *p = peer_mmap_block(len);
	pid_t child;

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, r.seed);
	r.p = p;
	ASSERT_EQ(pthread_create(&thread, NULL, cpu_reader, &r), 0);
	for (round = 0; round < 3; round++) {
		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
		ASSERT_EQ(w.result, pattern_sum(len, r.seed));
		if (fd1 >= 0) {
			ASSERT_EQ(npu_sum(fd1, p + mid, mid, &w), 0);
			ASSERT_EQ(w.result, pattern_sum_from(mid / 4, mid,
							     r.seed));
		}
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(thread, NULL);
	ASSERT_EQ(r.bad, 0) TH_LOG("%ld wrong CPU reads", r.bad);
	ASSERT_GT(dev_stat("npu0", "evictions"), 0);

	/* Half of it on the NPU, then children evict it and die. */
	ASSERT_EQ(npu_prefetch(self->fd, p, self->dev_bytes / 2, 0), 0);
	for (round = 0; round < 5; round++) {
		child = fork();
		ASSERT_GE(child, 0);
		if (!child)
			streaming_child(len);
		usleep(50000 + round * 120000);
		kill(child, SIGKILL);
		ASSERT_EQ(waitpid(child, &status, 0), child);
		ASSERT_TRUE(WIFSIGNALED(status));
		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0)
			TH_LOG("round %d: status %d", round, w.status);
		ASSERT_EQ(w.result, pattern_sum(len, r.seed));
	}
	ASSERT_EQ(check_pattern(p, len, r.seed), -1);
	if (fd1 >= 0)
		close(fd1);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS), 0);
}

/*
 * munmap of pages being evicted: the NPU streams over 4x its memory while
 * the main thread unmaps the buffer a block group at a time.  Every job
 * ends, with the right sum or EFAULT at an unmapped address, and all the
 * device memory is free at the end.
 */
struct streamer {
	int fd;
	char *p;
	size_t len;
	int stop;		/* set with __atomic_store_n() */
	int jobs;
	int bad;
};

static void *stream_until_stopped(void *arg)
{
	struct streamer *st = arg;
	struct gmem_npu_wait w;
	int ret;

	while (!__atomic_load_n(&st->stop, __ATOMIC_RELAXED)) {
		ret = npu_sum(st->fd, st->p, st->len, &w);
		if ((ret && ret != -EFAULT) ||
		    (!ret && w.result != byte_sum(1, st->len)))
			st->bad++;
		st->jobs++;
	}
	return NULL;
}

TEST_F_TIMEOUT(oversub, eviction_vs_munmap, 600)
{
	size_t len = 4 * self->dev_bytes, step = len / 8;
	struct streamer st = { .fd = self->fd, .len = len };
	pthread_t thread;

	st.p = peer_mmap_block(len);
	ASSERT_NE(st.p, MAP_FAILED);
	memset(st.p, 1, len);
	ASSERT_EQ(pthread_create(&thread, NULL, stream_until_stopped, &st), 0);
	/* From the end, so that the jobs keep running over what is left. */
	for (size_t off = len; off > step; off -= step) {
		usleep(150000);
		ASSERT_EQ(munmap(st.p + off - step, step), 0);
	}
	usleep(150000);
	__atomic_store_n(&st.stop, 1, __ATOMIC_RELAXED);
	pthread_join(thread, NULL);
	ASSERT_EQ(st.bad, 0);
	ASSERT_GT(st.jobs, 0);
	ASSERT_EQ(munmap(st.p, step), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS), 0);
}

TEST_HARNESS_MAIN
