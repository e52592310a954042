// SPDX-License-Identifier: GPL-2.0
/*
 * The simulated NPU (gmem_npu.ko) running jobs on process memory through
 * the GMEM_NPU_IOC_* interface of <linux/gmem.h>: the upstream hmm-tests
 * cases ported to it, plus what is the NPU's own (atomics, the job queue,
 * poll, wait timeouts, ioctl validation, debugfs accounting).
 *
 * Needs gmem.ko and gmem_npu.ko num_devices=2 loaded (the runner loads
 * them); the npu2 tests skip without /dev/gmem_npu1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

/* End of the x86-64 user address space (4-level paging). */
#define USER_END		0x800000000000ULL
/* Jobs one file descriptor may have submitted and not yet waited for. */
#define MAX_PENDING_JOBS	1024
/* Device faults resolve at most this much at once. */
#define FAULT_BLOCK		(2 * MiB)

FIXTURE(npu)
{
	int fd;
	size_t page_size;
};

FIXTURE_SETUP(npu)
{
	self->page_size = sysconf(_SC_PAGE_SIZE);
	self->fd = npu_open(0);
	ASSERT_GE(self->fd, 0)
		TH_LOG("open /dev/gmem_npu0: %s (gmem_npu.ko loaded?)",
		       strerror(errno));
}

FIXTURE_TEARDOWN(npu)
{
	if (self->fd >= 0)
		close(self->fd);
}

FIXTURE(npu2)
{
	int fd0;
	int fd1;
	size_t page_size;
};

FIXTURE_SETUP(npu2)
{
	self->page_size = sysconf(_SC_PAGE_SIZE);
	self->fd0 = npu_open(0);
	ASSERT_GE(self->fd0, 0)
		TH_LOG("open /dev/gmem_npu0: %s", strerror(errno));
	self->fd1 = npu_open(1);
	if (self->fd1 < 0 && errno == ENOENT)
		SKIP(return, "no /dev/gmem_npu1 (gmem_npu.ko num_devices=2)");
	ASSERT_GE(self->fd1, 0)
		TH_LOG("open /dev/gmem_npu1: %s", strerror(errno));
}

FIXTURE_TEARDOWN(npu2)
{
	ASSERT_EQ(close(self->fd0), 0);
	ASSERT_EQ(close(self->fd1), 0);
}

/* The context lives as long as the file; a reopened device works. */
TEST_F(npu, open_close)
{
	size_t ps = self->page_size;
	long ctx = gmem_stat("contexts");
	struct gmem_npu_info info;
	struct gmem_npu_wait w;
	char *p;

	ASSERT_GE(ctx, 1) TH_LOG("debugfs contexts with npu0 open: %ld", ctx);
	ASSERT_EQ(close(self->fd), 0);
	self->fd = -1;
	ASSERT_EQ(gmem_stat_wait("contexts", ctx - 1, 2000), ctx - 1)
		TH_LOG("the context outlived its only file");
	self->fd = npu_open(0);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(gmem_stat_wait("contexts", ctx, 2000), ctx);
	ASSERT_EQ(npu_get_info(self->fd, &info), 0);
	ASSERT_EQ(info.npu_index, 0);

	p = peer_mmap(ps);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_fill(self->fd, p, ps, 0x5a, &w), 0);
	ASSERT_EQ(find_not_byte(p, ps, 0x5a), -1)
		TH_LOG("FILL through the reopened device did not land");
	ASSERT_EQ(munmap(p, ps), 0);
}

/* INFO identifies the device and its counters follow the jobs it runs. */
TEST_F(npu, info)
{
	size_t len = MiB;
	struct gmem_npu_info a, b, c, i1;
	struct gmem_npu_wait w, w2;
	long inv, dev_faults;
	char *p;
	int fd1;

	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(a.npu_index, 0);
	ASSERT_TRUE(a.caps & GMEM_NPU_CAP_REPLAYABLE)
		TH_LOG("caps 0x%x: the NPU replays faults", a.caps);
	dev_faults = gmem_stat("device_faults");
	ASSERT_GE(dev_faults, 0);

	p = peer_mmap(len);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x33, &w), 0);
	ASSERT_EQ(find_not_byte(p, len, 0x33), -1);
	ASSERT_GE(w.faults, 1) TH_LOG("fresh memory needs a device fault");
	/*
	 * The CPU's read took the pages back from the device's memory (and
	 * its mappings with them): the device maps them again.
	 */
	ASSERT_EQ(npu_sum(self->fd, p, len, &w2), 0);
	ASSERT_EQ(w2.result, byte_sum(0x33, len));

	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	ASSERT_EQ(b.npu_index, 0);
	ASSERT_EQ(b.dev_id, a.dev_id);
	ASSERT_GE(b.jobs_done, a.jobs_done + 1);
	ASSERT_GE(b.faults, a.faults + w.faults);
	ASSERT_GE(b.tlb_misses, a.tlb_misses);
	ASSERT_GE(b.invalidations, a.invalidations);
	ASSERT_GE(gmem_stat("device_faults"), dev_faults + (long)w.faults);

	/* Unmapping memory the device has mapped invalidates the device. */
	inv = gmem_stat("invalidations");
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(npu_get_info(self->fd, &c), 0);
	ASSERT_GT(c.invalidations, b.invalidations);
	ASSERT_GT(gmem_stat("invalidations"), inv);
	ASSERT_EQ(c.jobs_done, b.jobs_done);

	fd1 = npu_open(1);
	if (fd1 >= 0) {
		ASSERT_EQ(npu_get_info(fd1, &i1), 0);
		ASSERT_EQ(i1.npu_index, 1);
		ASSERT_NE(i1.dev_id, a.dev_id);
		ASSERT_EQ(close(fd1), 0);
	}
}

/* Never-touched memory reads as zeros on the device (pte_none). */
TEST_F(npu, read_untouched_is_zero)
{
	size_t len = 2 * MiB;
	struct gmem_npu_wait w;
	char *a = peer_mmap(len), *b = peer_mmap(len);

	ASSERT_NE(a, MAP_FAILED);
	ASSERT_NE(b, MAP_FAILED);
	memset(b, 0xff, len);

	ASSERT_EQ(npu_sum(self->fd, a, len, &w), 0);
	ASSERT_EQ(w.result, 0);
	ASSERT_EQ(npu_copy(self->fd, b, a, len, &w), 0);
	ASSERT_EQ(find_not_byte(b, len, 0), -1)
		TH_LOG("COPY of untouched memory did not give zeros");
	ASSERT_EQ(find_not_byte(a, len, 0), -1);
	ASSERT_EQ(munmap(a, len), 0);
	ASSERT_EQ(munmap(b, len), 0);
}

/* The device reads what the CPU wrote. */
TEST_F(npu, read_cpu_written)
{
	size_t len = 2 * MiB;
	__u32 seed = 0x1234567;
	struct gmem_npu_wait w;
	char *a = peer_mmap(len), *b = peer_mmap(len);
	ssize_t bad;

	ASSERT_NE(a, MAP_FAILED);
	ASSERT_NE(b, MAP_FAILED);
	fill_pattern(a, len, seed);

	ASSERT_EQ(npu_sum(self->fd, a, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	/* An element-aligned range that starts and ends mid-page. */
	ASSERT_EQ(npu_sum(self->fd, a + 12, len - 20, &w), 0);
	ASSERT_EQ(w.result, pattern_sum_from(3, len - 20, seed));

	ASSERT_EQ(npu_copy(self->fd, b, a, len, &w), 0);
	bad = check_pattern(b, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("COPY: element %zd differs", bad);
	ASSERT_EQ(memcmp(a, b, len), 0);
	ASSERT_EQ(munmap(a, len), 0);
	ASSERT_EQ(munmap(b, len), 0);
}

/* The CPU reads what the device wrote. */
TEST_F(npu, write_then_cpu_read)
{
	size_t len = MiB, n = len / 4, i;
	struct gmem_npu_wait w;
	__u32 *a = peer_mmap(len), *b = peer_mmap(len), *c = peer_mmap(len);
	char *cb = (char *)c;
	ssize_t bad;

	ASSERT_NE(a, MAP_FAILED);
	ASSERT_NE(b, MAP_FAILED);
	ASSERT_NE(c, MAP_FAILED);

	ASSERT_EQ(npu_fill(self->fd, a, len, 0x11, &w), 0);
	ASSERT_EQ(npu_fill(self->fd, b, len, 0x22, &w), 0);
	ASSERT_EQ(find_not_byte(a, len, 0x11), -1);
	ASSERT_EQ(find_not_byte(b, len, 0x22), -1);
	ASSERT_EQ(npu_add(self->fd, c, a, b, len, &w), 0);
	ASSERT_EQ(find_not_byte(c, len, 0x33), -1);

	/* ADD of CPU-written operands, wrapping modulo 2^32. */
	for (i = 0; i < n; i++) {
		a[i] = i + 0xfff00000u;
		b[i] = 3 * i;
	}
	ASSERT_EQ(npu_add(self->fd, c, a, b, len, &w), 0);
	for (i = 0, bad = -1; i < n && bad < 0; i++)
		if (c[i] != (__u32)(4 * i + 0xfff00000u))
			bad = i;
	ASSERT_EQ(bad, -1) TH_LOG("ADD: element %zd is 0x%x", bad, c[bad]);

	/* FILL at any alignment and length touches exactly its bytes. */
	memset(c, 0, len);
	ASSERT_EQ(npu_fill(self->fd, cb + 3, 1001, 0x7e, &w), 0);
	ASSERT_EQ(find_not_byte(cb, 3, 0), -1);
	ASSERT_EQ(find_not_byte(cb + 3, 1001, 0x7e), -1);
	ASSERT_EQ(find_not_byte(cb + 1004, len - 1004, 0), -1)
		TH_LOG("FILL wrote past its end");

	ASSERT_EQ(munmap(a, len), 0);
	ASSERT_EQ(munmap(b, len), 0);
	ASSERT_EQ(munmap(c, len), 0);
}

/* hmm anon_read: pte_none, zero-page, written and read-only pages. */
TEST_F(npu, anon_read_mixed)
{
	size_t ps = self->page_size, npages = 256, len = npages * ps;
	size_t half = npages / 2, per_page = ps / 4;
	struct gmem_npu_wait w;
	__u32 *buf = peer_mmap(len), *dst = peer_mmap(len);
	__u64 sum = 0, touch = 0;
	ssize_t bad;
	size_t i;

#define EXPECTED(i) ((i) / per_page == 0 || (i) / per_page == half ? 0 : (i))
	ASSERT_NE(buf, MAP_FAILED);
	ASSERT_NE(dst, MAP_FAILED);
	memset(dst, 0xff, len);
	/* Page 0 stays pte_none, page @half becomes the zero page. */
	for (i = per_page; i < len / 4; i++)
		if (i / per_page != half)
			buf[i] = i;
	ASSERT_EQ(mprotect((char *)buf + half * ps, len - half * ps,
			   PROT_READ), 0);
	ASSERT_EQ(buf[half * per_page], 0);
	for (i = 0; i < len / 4; i++)
		sum += EXPECTED(i);
	/* Computed, not read: reading page 0 would map the zero page. */
	for (i = 0; i < len / 4; i += per_page)
		touch += EXPECTED(i) | (__u64)EXPECTED(i + 1) << 32;

	ASSERT_EQ(npu_copy(self->fd, dst, buf, len, &w), 0);
	for (i = 0, bad = -1; i < len / 4 && bad < 0; i++)
		if (dst[i] != EXPECTED(i))
			bad = i;
	ASSERT_EQ(bad, -1) TH_LOG("device read 0x%x at element %zd",
				  dst[bad], bad);
	ASSERT_EQ(npu_sum(self->fd, buf, len, &w), 0);
	ASSERT_EQ(w.result, sum);
	ASSERT_EQ(npu_touch(self->fd, buf, len, false, 0, &w), 0);
	ASSERT_EQ(w.result, touch);
	/* Reading changed nothing. */
	for (i = 0, bad = -1; i < len / 4 && bad < 0; i++)
		if (buf[i] != EXPECTED(i))
			bad = i;
	ASSERT_EQ(bad, -1) TH_LOG("CPU reads 0x%x at element %zd",
				  buf[bad], bad);
#undef EXPECTED
	ASSERT_EQ(munmap(buf, len), 0);
	ASSERT_EQ(munmap(dst, len), 0);
}

/* TOUCH reads or writes one u64 at the start of every page of a range. */
TEST_F(npu, touch_read_write)
{
	size_t ps = self->page_size, npages = 16, len = npages * ps;
	__u64 v1 = 0xdeadbeefcafef00dULL, v2 = 0x0123456789abcdefULL;
	struct gmem_npu_wait w;
	char *p = peer_mmap(len);
	__u64 sum = 0, sum4 = 0;

	ASSERT_NE(p, MAP_FAILED);
	memset(p, 0x01, len);
	for (size_t k = 0; k < npages; k++) {
		*(__u64 *)(p + k * ps) = k * 1000 + 7;
		sum += k * 1000 + 7;
		if (k < 4)
			sum4 += k * 1000 + 7;
	}
	ASSERT_EQ(npu_touch(self->fd, p, len, false, 0, &w), 0);
	ASSERT_EQ(w.result, sum);
	/* The range ends just inside page 3: pages 0..3. */
	ASSERT_EQ(npu_touch(self->fd, p, 3 * ps + 1, false, 0, &w), 0);
	ASSERT_EQ(w.result, sum4);

	/* Ends mid-way through the last page, which is still written. */
	ASSERT_EQ(npu_touch(self->fd, p, len - ps / 2, true, v1, &w), 0);
	ASSERT_EQ(npu_touch(self->fd, p, 4 * ps, true, v2, &w), 0);
	for (size_t k = 0; k < npages; k++) {
		ASSERT_EQ(*(__u64 *)(p + k * ps), k < 4 ? v2 : v1)
			TH_LOG("page %zu", k);
		ASSERT_EQ(find_not_byte(p + k * ps + 8, ps - 8, 0x01), -1)
			TH_LOG("TOUCH wrote more than a u64 in page %zu", k);
	}
	ASSERT_EQ(munmap(p, len), 0);
}

/* hmm anon_read_prot: reading PROT_NONE memory fails where it starts. */
TEST_F(npu, read_prot_none_fails)
{
	size_t ps = self->page_size, npages = 64, len = npages * ps;
	size_t bad = 40, off = bad * ps;
	__u32 seed = 0xabcdef, *d;
	struct gmem_npu_wait w;
	char *src = peer_mmap(len), *dst = peer_mmap(len);
	ssize_t i;

	ASSERT_NE(src, MAP_FAILED);
	ASSERT_NE(dst, MAP_FAILED);
	fill_pattern(src, len, seed);
	memset(dst, 0xa5, len);
	ASSERT_EQ(mprotect(src + off, ps, PROT_NONE), 0);

	ASSERT_EQ(npu_copy(self->fd, dst, src, len, &w), -EFAULT);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(src + off))
		TH_LOG("fault at 0x%llx, PROT_NONE page at %p",
		       (unsigned long long)w.fault_addr, src + off);
	i = find_not_byte(dst + off, len - off, 0xa5);
	ASSERT_EQ(i, -1) TH_LOG("dst written at +%zd beyond the fault", i);
	/* Before the fault: copied or untouched, nothing else. */
	d = (__u32 *)dst;
	for (i = 0; i < (ssize_t)(off / 4); i++)
		if (d[i] != pattern(i, seed) && d[i] != 0xa5a5a5a5)
			break;
	ASSERT_EQ(i, (ssize_t)(off / 4))
		TH_LOG("dst element %zd is 0x%x", i, d[i]);

	ASSERT_EQ(npu_sum(self->fd, src + off, ps, &w), -EFAULT);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(src + off));

	/* The device goes on; the page kept its data. */
	ASSERT_EQ(mprotect(src + off, ps, PROT_READ | PROT_WRITE), 0);
	ASSERT_EQ(npu_copy(self->fd, dst, src, len, &w), 0);
	i = check_pattern(dst, len, seed);
	ASSERT_EQ(i, -1) TH_LOG("element %zd after mprotect(RW)", i);
	ASSERT_EQ(munmap(src, len), 0);
	ASSERT_EQ(munmap(dst, len), 0);
}

/* hmm anon_write_prot: -EPERM on PROT_READ, then works after mprotect. */
TEST_F(npu, write_readonly_then_mprotect)
{
	size_t ps = self->page_size, len = MiB;
	struct gmem_npu_wait w;
	char *p = mmap(NULL, len, PROT_READ, PEER_FLAGS, -1, 0);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(p[0], 0);	/* maps the zero page */

	ASSERT_EQ(npu_fill(self->fd, p, len, 0x5a, &w), -EPERM);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(p));
	ASSERT_EQ(find_not_byte(p, len, 0), -1)
		TH_LOG("a refused write changed read-only memory");

	ASSERT_EQ(mprotect(p, len, PROT_READ | PROT_WRITE), 0);
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x5a, &w), 0);
	ASSERT_EQ(find_not_byte(p, len, 0x5a), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/* In the default mode only MAP_PEER_SHARED memory is the device's. */
TEST_F(npu, not_peer_shared_is_eacces)
{
	size_t ps = self->page_size, len = MiB;
	__u32 seed = 0x5eed;
	struct gmem_npu_wait w;
	char *anon = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *heap = malloc(len), *peer = peer_mmap(len);

	ASSERT_NE(anon, MAP_FAILED);
	ASSERT_NE(heap, NULL);
	ASSERT_NE(peer, MAP_FAILED);
	/* Different data in each, so that a stray copy shows. */
	fill_pattern(anon, len, seed);
	fill_pattern(heap, len, seed + 1);
	fill_pattern(peer, len, seed + 2);

	ASSERT_EQ(npu_sum(self->fd, anon, len, &w), -EACCES);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(anon));
	ASSERT_EQ(npu_fill(self->fd, anon, len, 0, &w), -EACCES);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(anon));
	ASSERT_EQ(check_pattern(anon, len, seed), -1);

	ASSERT_EQ(npu_sum(self->fd, heap, len, &w), -EACCES);
	ASSERT_EQ(page_of(w.fault_addr, ps), page_of(U64(heap), ps));

	/* Readable source, forbidden destination. */
	ASSERT_EQ(npu_copy(self->fd, anon, peer, len, &w), -EACCES);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(anon));
	/* Forbidden source: the peer destination keeps its data. */
	ASSERT_EQ(npu_copy(self->fd, peer, heap, len, &w), -EACCES);
	ASSERT_EQ(page_of(w.fault_addr, ps), page_of(U64(heap), ps));
	ASSERT_EQ(check_pattern(peer, len, seed + 2), -1);
	ASSERT_EQ(check_pattern(anon, len, seed), -1);
	ASSERT_EQ(check_pattern(heap, len, seed + 1), -1);

	/* The device goes on with memory it may use. */
	ASSERT_EQ(npu_sum(self->fd, peer, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed + 2));
	free(heap);
	ASSERT_EQ(munmap(anon, len), 0);
	ASSERT_EQ(munmap(peer, len), 0);
}

/* GMEM_NPU_MODE_SYSTEM: heap and file mappings (hmm file_read/write). */
TEST_F(npu, system_mode_malloc)
{
	size_t len = MiB;
	__u32 seed = 0xf11e;
	struct gmem_npu_wait w;
	char *heap = malloc(len), *tmp = malloc(len), *f;
	int fd;

	ASSERT_NE(heap, NULL);
	ASSERT_NE(tmp, NULL);
	ASSERT_EQ(npu_set_mode(self->fd, GMEM_NPU_MODE_SYSTEM), 0);

	fill_pattern(heap, len, seed);
	ASSERT_EQ(npu_sum(self->fd, heap, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(npu_fill(self->fd, heap, len, 0x3c, &w), 0);
	ASSERT_EQ(find_not_byte(heap, len, 0x3c), -1);

	fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	ASSERT_GE(fd, 0) TH_LOG("O_TMPFILE in /tmp: %s", strerror(errno));
	fill_pattern(tmp, len, seed);
	ASSERT_EQ(pwrite(fd, tmp, len, 0), (ssize_t)len);
	f = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(f, MAP_FAILED);
	ASSERT_EQ(npu_sum(self->fd, f, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed))
		TH_LOG("the device did not read the file's contents");
	ASSERT_EQ(npu_fill(self->fd, f, len, 0xc3, &w), 0);
	memset(tmp, 0, len);
	ASSERT_EQ(pread(fd, tmp, len, 0), (ssize_t)len);
	ASSERT_EQ(find_not_byte(tmp, len, 0xc3), -1)
		TH_LOG("the device's write is not in the file");

	ASSERT_EQ(munmap(f, len), 0);
	ASSERT_EQ(close(fd), 0);
	free(heap);
	free(tmp);
}

/* hmm anon_read_multiple: once mapped, the device reads without faults. */
TEST_F(npu, repeated_reads)
{
	size_t len = 4 * MiB;
	__u32 seed = 0x7e7e;
	struct gmem_npu_wait w;
	char *p = peer_mmap(len);
	__u64 sum;

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, seed);
	sum = pattern_sum(len, seed);
	for (int i = 0; i < 10; i++) {
		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
		ASSERT_EQ(w.result, sum) TH_LOG("read %d", i);
		if (i == 0) {
			ASSERT_GE(w.faults, 1);
			ASSERT_LE(w.faults, len / FAULT_BLOCK + 2);
		} else {
			ASSERT_EQ(w.faults, 0)
				TH_LOG("read %d faulted on mapped memory", i);
		}
	}
	ASSERT_EQ(munmap(p, len), 0);
}

/* A fault maps a whole 2 MiB block, not a page. */
TEST_F_TIMEOUT(npu, streaming_fault_ahead, 120)
{
	size_t len = 16 * MiB;
	struct gmem_npu_info a, b;
	struct gmem_npu_wait w;
	long pages = gmem_stat("fault_pages");
	char *p = peer_mmap(len);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_GE(pages, 0);
	ASSERT_EQ(npu_get_info(self->fd, &a), 0);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, 0);
	ASSERT_GE(w.faults, 1);
	ASSERT_LE(w.faults, len / FAULT_BLOCK + 2)
		TH_LOG("%llu faults for %zu MiB", (unsigned long long)w.faults,
		       len / MiB);
	ASSERT_EQ(npu_get_info(self->fd, &b), 0);
	ASSERT_GE(b.faults, a.faults + w.faults);
	/* Each fault resolved at least one page. */
	ASSERT_GE(gmem_stat("fault_pages"), pages + (long)w.faults);
	ASSERT_EQ(munmap(p, len), 0);
}

/* What the forked child of fork_private checks; 0 or a step number. */
static const char *const fork_child_steps[] = {
	"ok",
	"child's CPU view is not the parent's data",
	"parent's fd SUBMIT was not EBADF",
	"parent's fd WAIT was not EBADF",
	"parent's fd SET_MODE was not EBADF",
	"parent's fd INFO was not EBADF",
	"child could not open /dev/gmem_npu0",
	"child's device FILL failed",
	"child's CPU view is not its device's FILL",
	"child's device REDUCE_SUM is wrong",
};

static int fork_child(int parent_fd, char *p, size_t len, __u32 seed)
{
	struct gmem_npu_submit sub = { .job = job_fill(p, len, 0xee) };
	struct gmem_npu_wait w = { .seqno = 1, .timeout_ns = WAIT_FOREVER };
	struct gmem_npu_mode mode = { .mode = GMEM_NPU_MODE_SYSTEM };
	struct gmem_npu_info info;
	int fd;

	if (check_pattern(p, len, seed) != -1)
		return 1;
	if (ioctl(parent_fd, GMEM_NPU_IOC_SUBMIT, &sub) != -1 || errno != EBADF)
		return 2;
	if (ioctl(parent_fd, GMEM_NPU_IOC_WAIT, &w) != -1 || errno != EBADF)
		return 3;
	if (ioctl(parent_fd, GMEM_NPU_IOC_SET_MODE, &mode) != -1 ||
	    errno != EBADF)
		return 4;
	if (ioctl(parent_fd, GMEM_NPU_IOC_INFO, &info) != -1 || errno != EBADF)
		return 5;
	fd = npu_open(0);
	if (fd < 0)
		return 6;
	if (npu_fill(fd, p, len, 0xbb, &w))
		return 7;
	if (find_not_byte(p, len, 0xbb) != -1)
		return 8;
	if (npu_sum(fd, p, len, &w) || w.result != byte_sum(0xbb, len))
		return 9;
	close(fd);
	return 0;
}

/* hmm anon_write_child: a device write in a forked child stays private. */
TEST_F(npu, fork_private)
{
	size_t len = MiB;
	__u32 seed = 0xa5a5a5;
	struct gmem_npu_wait w;
	char *p = peer_mmap(len);
	int status, code;
	pid_t pid;

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, seed);
	/* The device maps the pages before fork write-protects them. */
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(fork_child(self->fd, p, len, seed));
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child status 0x%x", status);
	code = WEXITSTATUS(status);
	ASSERT_EQ(code, 0)
		TH_LOG("%s", code < (int)ARRAY_SIZE(fork_child_steps) ?
		       fork_child_steps[code] : "child failed");

	ASSERT_EQ(check_pattern(p, len, seed), -1)
		TH_LOG("the child's write reached the parent's memory");
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed))
		TH_LOG("the parent's device sees the child's pages");
	ASSERT_EQ(npu_fill(self->fd, p, len, 0xcc, &w), 0);
	ASSERT_EQ(find_not_byte(p, len, 0xcc), -1);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0xcc, len));
	ASSERT_EQ(munmap(p, len), 0);
}

struct unmapper {
	void *p;
	size_t len;
	unsigned int delay_us;
	int ret;
};

static void *unmapper_fn(void *arg)
{
	struct unmapper *u = arg;

	usleep(u->delay_us);
	u->ret = munmap(u->p, u->len);
	return NULL;
}

/* hmm anon_teardown: munmap races with a job; the job ends cleanly. */
TEST_F_TIMEOUT(npu, munmap_during_job, 180)
{
	size_t len = 4 * MiB;
	unsigned int seed = time(NULL) ^ getpid();
	struct gmem_npu_wait w;
	int ok = 0, faulted = 0;
	char *p;

	TH_LOG("random seed %u", seed);
	for (int i = 0; i < 20; i++) {
		struct unmapper u = { .len = len };
		pthread_t t;
		int ret;

		p = peer_mmap(len);
		ASSERT_NE(p, MAP_FAILED);
		memset(p, 0x01, len);
		u.p = p;
		u.delay_us = rand_r(&seed) % 2001;
		ASSERT_EQ(pthread_create(&t, NULL, unmapper_fn, &u), 0);
		ret = npu_sum(self->fd, p, len, &w);
		ASSERT_EQ(pthread_join(t, NULL), 0);
		ASSERT_EQ(u.ret, 0);
		ASSERT_TRUE(ret == 0 || ret == -EFAULT)
			TH_LOG("run %d, munmap after %u us: status %d",
			       i, u.delay_us, ret);
		if (ret == 0) {
			ASSERT_EQ(w.result, byte_sum(0x01, len));
			ok++;
		} else {
			ASSERT_GE(w.fault_addr, U64(p));
			ASSERT_LT(w.fault_addr, U64(p) + len);
			faulted++;
		}
	}
	TH_LOG("%d jobs completed, %d hit the munmap", ok, faulted);

	p = peer_mmap(len);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x42, &w), 0);
	ASSERT_EQ(find_not_byte(p, len, 0x42), -1);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x42, len));
	ASSERT_EQ(munmap(p, len), 0);
}

static void killed_child(int ready_fd)
{
	size_t len = 16 * MiB;
	char *p = peer_mmap(len);
	char c = 'r';
	int fd = npu_open(0);

	if (fd < 0 || p == MAP_FAILED) {
		c = 'o';
	} else {
		for (int i = 0; i < 50; i++) {
			struct gmem_npu_job job = i & 1 ? job_sum(p, len) :
						  job_fill(p, len, i);
			__u64 seqno;
			int ret = npu_submit(fd, &job, &seqno);

			/* The file's queue is full (max_queued_mib): enough. */
			if (ret == -EAGAIN && i > 0)
				break;
			if (ret) {
				c = 's';
				break;
			}
		}
	}
	if (write(ready_fd, &c, 1) != 1)
		_exit(2);
	pause();
	_exit(0);
}

/* A process killed with jobs queued leaves nothing behind. */
TEST_F_TIMEOUT(npu, killed_with_jobs_queued, 120)
{
	size_t len = MiB;
	long ctx = gmem_stat("contexts");
	long spaces = gmem_stat("address_spaces");
	long child_ctx, child_spaces;
	struct gmem_npu_wait w;
	int pipefd[2], status;
	char c, *p;
	pid_t pid;

	ASSERT_GE(ctx, 1);
	ASSERT_GE(spaces, 1);
	ASSERT_EQ(pipe(pipefd), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		killed_child(pipefd[1]);
	ASSERT_EQ(read(pipefd[0], &c, 1), 1);
	child_ctx = gmem_stat("contexts");
	child_spaces = gmem_stat("address_spaces");
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(c, 'r')
		TH_LOG("child could not %s", c == 'o' ? "open or mmap" :
		       "submit its jobs");
	ASSERT_EQ(child_ctx, ctx + 1);
	ASSERT_EQ(child_spaces, spaces + 1);
	ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ASSERT_EQ(gmem_stat_wait("contexts", ctx, 2000), ctx)
		TH_LOG("the killed child's context is still there");
	ASSERT_EQ(gmem_stat_wait("address_spaces", spaces, 2000), spaces)
		TH_LOG("the killed child's address space is still there");
	close(pipefd[0]);
	close(pipefd[1]);

	p = peer_mmap(len);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x99, &w), 0);
	ASSERT_EQ(find_not_byte(p, len, 0x99), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/* hmm double_map: two devices read the same read-only memory. */
TEST_F(npu2, two_devices_read_same)
{
	size_t len = 2 * MiB;
	__u32 seed = 0xd0d1;
	struct gmem_npu_wait w0, w1;
	struct gmem_npu_job job;
	char *p = peer_mmap(len), *d0 = peer_mmap(len), *d1 = peer_mmap(len);
	__u64 s0, s1;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_NE(d0, MAP_FAILED);
	ASSERT_NE(d1, MAP_FAILED);
	fill_pattern(p, len, seed);
	ASSERT_EQ(mprotect(p, len, PROT_READ), 0);

	/* Both at once. */
	job = job_sum(p, len);
	ASSERT_EQ(npu_submit(self->fd0, &job, &s0), 0);
	ASSERT_EQ(npu_submit(self->fd1, &job, &s1), 0);
	ASSERT_EQ(npu_wait(self->fd0, s0, WAIT_FOREVER, &w0), 0);
	ASSERT_EQ(npu_wait(self->fd1, s1, WAIT_FOREVER, &w1), 0);
	ASSERT_EQ(w0.status, 0);
	ASSERT_EQ(w1.status, 0);
	ASSERT_EQ(w0.result, pattern_sum(len, seed));
	ASSERT_EQ(w1.result, w0.result);

	ASSERT_EQ(npu_copy(self->fd0, d0, p, len, &w0), 0);
	ASSERT_EQ(npu_copy(self->fd1, d1, p, len, &w1), 0);
	ASSERT_EQ(check_pattern(d0, len, seed), -1);
	ASSERT_EQ(check_pattern(d1, len, seed), -1);
	/* Nor may a device write it. */
	ASSERT_EQ(npu_fill(self->fd1, p, len, 0, &w1), -EPERM);
	ASSERT_EQ(check_pattern(p, len, seed), -1);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(munmap(d0, len), 0);
	ASSERT_EQ(munmap(d1, len), 0);
}

/* What one device writes, the other device and the CPU read. */
TEST_F(npu2, write_one_read_other)
{
	size_t len = 2 * MiB;
	__u32 seed = 0x0102;
	struct gmem_npu_wait w;
	char *p = peer_mmap(len), *q = peer_mmap(len);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_NE(q, MAP_FAILED);
	ASSERT_EQ(npu_fill(self->fd0, p, len, 0x42, &w), 0);
	ASSERT_EQ(npu_sum(self->fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x42, len));
	ASSERT_EQ(find_not_byte(p, len, 0x42), -1);

	/* Both have it mapped now; a CPU write reaches both. */
	fill_pattern(p, len, seed);
	ASSERT_EQ(npu_sum(self->fd0, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(npu_sum(self->fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));

	ASSERT_EQ(npu_copy(self->fd1, q, p, len, &w), 0);
	ASSERT_EQ(npu_fill(self->fd1, p, len, 0, &w), 0);
	ASSERT_EQ(npu_copy(self->fd0, p, q, len, &w), 0);
	ASSERT_EQ(check_pattern(p, len, seed), -1);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(munmap(q, len), 0);
}

/*
 * An invalidation reaches every device that maps the range, and only
 * those: npu1, attached but idle, costs npu0's faults and the CPU's
 * writes nothing; once both map the range in place, munmap invalidates
 * both, and neither reaches the range any more.
 */
TEST_F(npu2, invalidations_reach_the_devices_mapping)
{
	size_t len = 2 * MiB;
	struct gmem_npu_info a0, a1, b0, b1;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	long to_dev;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_get_info(self->fd1, &a1), 0);
	ASSERT_EQ(npu_fill(self->fd0, p, len, 0x21, &w), 0);
	memset(p, 0x22, len);
	ASSERT_EQ(npu_sum(self->fd0, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x22, len));
	ASSERT_EQ(npu_get_info(self->fd1, &b1), 0);
	ASSERT_EQ(b1.invalidations, a1.invalidations)
		TH_LOG("npu1 mapped nothing and was invalidated %llu times",
		       (unsigned long long)(b1.invalidations -
					    a1.invalidations));

	/* npu1 first: its fault brings the block home from npu0. */
	ASSERT_EQ(npu_set_placement(self->fd0, GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(npu_set_placement(self->fd1, GMEM_NPU_PLACE_HOST), 0);
	ASSERT_EQ(npu_sum(self->fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x22, len));
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, 2000), 0);
	to_dev = dev_stat("npu0", "to_dev");
	ASSERT_EQ(npu_sum(self->fd0, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x22, len));
	/* In place, both. */
	ASSERT_EQ(dev_stat("npu0", "to_dev"), to_dev);
	ASSERT_EQ(npu_get_info(self->fd0, &a0), 0);
	ASSERT_EQ(npu_get_info(self->fd1, &a1), 0);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(npu_get_info(self->fd0, &b0), 0);
	ASSERT_EQ(npu_get_info(self->fd1, &b1), 0);
	ASSERT_GT(b0.invalidations, a0.invalidations);
	ASSERT_GT(b1.invalidations, a1.invalidations);
	ASSERT_EQ(npu_sum(self->fd0, p, len, &w), -EFAULT);
	ASSERT_EQ(npu_sum(self->fd1, p, len, &w), -EFAULT);
}

/* The device and the CPU take turns incrementing one counter. */
TEST_F_TIMEOUT(npu, pingpong_cpu_device, 300)
{
	__u64 *c = peer_mmap(self->page_size);
	struct gmem_npu_wait w;

	ASSERT_NE(c, MAP_FAILED);
	for (__u64 i = 0; i < 10000; i++) {
		ASSERT_EQ(npu_inc(self->fd, c, 1, &w), 0);
		ASSERT_EQ(load_u64(c), 2 * i + 1)
			TH_LOG("after device increment %llu",
			       (unsigned long long)i);
		(*c)++;
	}
	ASSERT_EQ(load_u64(c), 20000);
	ASSERT_EQ(munmap(c, self->page_size), 0);
}

/* Two devices take turns incrementing one counter; the CPU watches. */
TEST_F_TIMEOUT(npu2, pingpong_two_devices, 300)
{
	__u64 *c = peer_mmap(self->page_size);
	struct gmem_npu_wait w;

	ASSERT_NE(c, MAP_FAILED);
	for (__u64 i = 0; i < 10000; i++) {
		ASSERT_EQ(npu_inc(self->fd0, c, 1, &w), 0);
		ASSERT_EQ(load_u64(c), 2 * i + 1)
			TH_LOG("after npu0 increment %llu",
			       (unsigned long long)i);
		ASSERT_EQ(npu_inc(self->fd1, c, 1, &w), 0);
		ASSERT_EQ(load_u64(c), 2 * i + 2)
			TH_LOG("after npu1 increment %llu",
			       (unsigned long long)i);
	}
	ASSERT_EQ(load_u64(c), 20000);
	ASSERT_EQ(munmap(c, self->page_size), 0);
}

struct cpu_incrementer {
	__u64 *counter;
	int go;
	int times;
};

static void *cpu_inc_fn(void *arg)
{
	struct cpu_incrementer *ci = arg;

	while (!__atomic_load_n(&ci->go, __ATOMIC_ACQUIRE))
		;
	for (int i = 0; i < ci->times; i++)
		__atomic_fetch_add(ci->counter, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* Device atomics are atomic with respect to CPU atomics. */
TEST_F_TIMEOUT(npu, atomic_inc_concurrent_cpu, 120)
{
	__u64 *c = peer_mmap(self->page_size);
	struct cpu_incrementer ci = { .times = 100000 };
	struct gmem_npu_job job;
	struct gmem_npu_wait w;
	pthread_t t;
	__u64 seqno;

	ASSERT_NE(c, MAP_FAILED);
	/* The counter is c[1], between two guards. */
	c[0] = 0x1111111111111111ULL;
	c[2] = 0x2222222222222222ULL;
	ci.counter = &c[1];
	ASSERT_EQ(pthread_create(&t, NULL, cpu_inc_fn, &ci), 0);
	job = (struct gmem_npu_job){ .op = GMEM_NPU_OP_ATOMIC_INC,
				     .dst = U64(&c[1]), .len = 8,
				     .value = 100000 };
	ASSERT_EQ(npu_submit(self->fd, &job, &seqno), 0);
	__atomic_store_n(&ci.go, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(npu_wait(self->fd, seqno, WAIT_FOREVER, &w), 0);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(w.status, 0);
	ASSERT_EQ(__atomic_load_n(&c[1], __ATOMIC_SEQ_CST), 200000)
		TH_LOG("increments were lost");
	ASSERT_EQ(c[0], 0x1111111111111111ULL);
	ASSERT_EQ(c[2], 0x2222222222222222ULL);
	ASSERT_EQ(munmap(c, self->page_size), 0);
}

/* After mremap the device finds the data at the new address only. */
TEST_F(npu, mremap_then_device_read)
{
	size_t ps = self->page_size, len = 2 * MiB;
	__u32 seed = 0x3e3a9;
	struct gmem_npu_wait w;
	char *old = peer_mmap(len), *dst = peer_mmap(len), *target, *new;

	ASSERT_NE(old, MAP_FAILED);
	ASSERT_NE(dst, MAP_FAILED);
	target = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	ASSERT_NE(target, MAP_FAILED);
	fill_pattern(old, len, seed);
	ASSERT_EQ(npu_sum(self->fd, old, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));

	new = mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	ASSERT_EQ(new, target) TH_LOG("mremap: %s", strerror(errno));
	ASSERT_EQ(npu_sum(self->fd, new, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(npu_copy(self->fd, dst, new, len, &w), 0);
	ASSERT_EQ(check_pattern(dst, len, seed), -1);

	ASSERT_EQ(npu_sum(self->fd, old, len, &w), -EFAULT)
		TH_LOG("the device still reads the old address");
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(old));
	ASSERT_EQ(check_pattern(new, len, seed), -1);
	ASSERT_EQ(munmap(new, len), 0);
	ASSERT_EQ(munmap(dst, len), 0);
}

/* Unmapping the middle of a region splits it; the hole faults. */
TEST_F(npu, munmap_partial_regions)
{
	size_t ps = self->page_size, len = 3 * MiB;
	__u32 seed = 0x3;
	long before = gmem_stat("regions"), regions;
	struct gmem_npu_wait w;
	char *p = peer_mmap(len), *hole;

	ASSERT_GE(before, 0);
	ASSERT_NE(p, MAP_FAILED);
	hole = p + MiB;
	fill_pattern(p, len, seed);
	/* A mapping gets its region when the device first needs it. */
	ASSERT_EQ(gmem_stat("regions"), before);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	regions = gmem_stat("regions");
	ASSERT_EQ(regions, before + 1);

	ASSERT_EQ(munmap(hole, MiB), 0);
	ASSERT_EQ(gmem_stat_wait("regions", regions + 1, 2000), regions + 1)
		TH_LOG("a hole in the middle makes two regions");
	ASSERT_EQ(npu_sum(self->fd, p, MiB, &w), 0);
	ASSERT_EQ(w.result, pattern_sum_from(0, MiB, seed));
	ASSERT_EQ(npu_sum(self->fd, hole + MiB, MiB, &w), 0);
	ASSERT_EQ(w.result, pattern_sum_from(2 * MiB / 4, MiB, seed));
	ASSERT_EQ(npu_sum(self->fd, hole, MiB, &w), -EFAULT);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(hole));
	/* Running into the hole from below faults at its start. */
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), -EFAULT);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(hole));

	ASSERT_EQ(munmap(p, MiB), 0);
	ASSERT_EQ(munmap(hole + MiB, MiB), 0);
	ASSERT_EQ(gmem_stat_wait("regions", before, 2000), before);
}

/* Unmapping a whole region removes it, after a short deferral. */
TEST_F(npu, regions_removed_on_munmap)
{
	size_t ps = self->page_size, len = 2 * MiB;
	long before = gmem_stat("regions");
	struct gmem_npu_wait w;
	char *p;

	ASSERT_GE(before, 0);
	p = peer_mmap(len);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_fill(self->fd, p, len, 0x6b, &w), 0);
	ASSERT_EQ(gmem_stat("regions"), before + 1);
	ASSERT_EQ(find_not_byte(p, len, 0x6b), -1);

	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(gmem_stat_wait("regions", before, 2000), before)
		TH_LOG("the region outlived its mapping");
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), -EFAULT);
	ASSERT_EQ(page_of(w.fault_addr, ps), U64(p));
}

struct bad_submit {
	const char *what;
	struct gmem_npu_job job;
};

struct bad_ioctl {
	const char *what;
	unsigned long cmd;
	void *arg;
	int err;
};

/* Every malformed request fails with its errno and does nothing. */
TEST_F(npu, invalid_ioctls)
{
	size_t ps = self->page_size, len = 4 * ps;
	__u32 seed = 0xbad;
	char *buf = peer_mmap(len), *heap = malloc(MiB);
	char *ro = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	void *hole = unmapped_page(ps);
	__u64 b = U64(buf), max = GMEM_NPU_JOB_MAX_LEN;
	struct gmem_npu_mode bad_mode = { .mode = GMEM_NPU_MODE_SYSTEM + 1 };
	struct gmem_npu_mode all_modes = { .mode = ~0U };
	struct gmem_npu_mode mode_pad = { .mode = GMEM_NPU_MODE_SYSTEM,
					  .pad = 1 };
	struct gmem_npu_submit sub = { .job = job_fill(buf, ps, 0) };
	struct gmem_npu_info before, after;
	struct gmem_npu_wait w;
	__u64 seqno;
	size_t i;
	const struct bad_submit jobs[] = {
		{ "op 0", { .op = 0, .dst = b, .len = ps } },
		{ "op MAX + 1", { .op = GMEM_NPU_OP_MAX + 1, .dst = b,
				  .len = ps } },
		{ "op ~0", { .op = ~0U, .dst = b, .len = ps } },
		{ "flag bit 1", { .op = GMEM_NPU_OP_FILL, .flags = 1U << 1,
				  .dst = b, .len = ps } },
		{ "flag bit 31", { .op = GMEM_NPU_OP_TOUCH, .flags = 1U << 31,
				   .dst = b, .len = ps } },
		{ "FILL value 0x100", { .op = GMEM_NPU_OP_FILL, .dst = b,
					.len = ps, .value = 0x100 } },
		{ "FILL len 0", { .op = GMEM_NPU_OP_FILL, .dst = b } },
		{ "REDUCE_SUM len 0", { .op = GMEM_NPU_OP_REDUCE_SUM,
					.src = b } },
		{ "TOUCH len 0", { .op = GMEM_NPU_OP_TOUCH, .dst = b } },
		{ "FILL len MAX + 1", { .op = GMEM_NPU_OP_FILL, .dst = b,
					.len = max + 1 } },
		{ "REDUCE_SUM len MAX + 4", { .op = GMEM_NPU_OP_REDUCE_SUM,
					      .src = b, .len = max + 4 } },
		{ "COPY len ~0", { .op = GMEM_NPU_OP_COPY, .dst = b,
				   .src = b + 2 * ps, .len = ~0ULL } },
		{ "COPY dst overlaps the end of src",
		  { .op = GMEM_NPU_OP_COPY, .dst = b + ps, .src = b,
		    .len = 2 * ps } },
		{ "COPY dst overlaps the start of src",
		  { .op = GMEM_NPU_OP_COPY, .dst = b, .src = b + ps,
		    .len = 2 * ps } },
		{ "COPY dst == src", { .op = GMEM_NPU_OP_COPY, .dst = b,
				       .src = b, .len = ps } },
		{ "COPY overlap by one byte", { .op = GMEM_NPU_OP_COPY,
						.dst = b + 99, .src = b,
						.len = 100 } },
		{ "ADD dst misaligned", { .op = GMEM_NPU_OP_ADD, .dst = b + 2,
					  .src = b + ps, .src2 = b + 2 * ps,
					  .len = 64 } },
		{ "ADD src misaligned", { .op = GMEM_NPU_OP_ADD, .dst = b,
					  .src = b + ps + 1,
					  .src2 = b + 2 * ps, .len = 64 } },
		{ "ADD src2 misaligned", { .op = GMEM_NPU_OP_ADD, .dst = b,
					   .src = b + ps,
					   .src2 = b + 2 * ps + 3,
					   .len = 64 } },
		{ "ADD len misaligned", { .op = GMEM_NPU_OP_ADD, .dst = b,
					  .src = b + ps, .src2 = b + 2 * ps,
					  .len = 66 } },
		{ "REDUCE_SUM src misaligned", { .op = GMEM_NPU_OP_REDUCE_SUM,
						 .src = b + 2, .len = 64 } },
		{ "REDUCE_SUM len misaligned", { .op = GMEM_NPU_OP_REDUCE_SUM,
						 .src = b, .len = 6 } },
		{ "ATOMIC_INC dst misaligned", { .op = GMEM_NPU_OP_ATOMIC_INC,
						 .dst = b + 4, .len = 8,
						 .value = 1 } },
		{ "ATOMIC_INC len 4", { .op = GMEM_NPU_OP_ATOMIC_INC, .dst = b,
					.len = 4, .value = 1 } },
		{ "ATOMIC_INC len 16", { .op = GMEM_NPU_OP_ATOMIC_INC,
					 .dst = b, .len = 16, .value = 1 } },
		{ "ATOMIC_INC value 0", { .op = GMEM_NPU_OP_ATOMIC_INC,
					  .dst = b, .len = 8 } },
		{ "ATOMIC_INC value 2^20 + 1",
		  { .op = GMEM_NPU_OP_ATOMIC_INC, .dst = b, .len = 8,
		    .value = (1ULL << 20) + 1 } },
		{ "GATHER chunk 0", { .op = GMEM_NPU_OP_GATHER, .src = b,
				      .len = ps, .value = 1 } },
		{ "GATHER chunk 2", { .op = GMEM_NPU_OP_GATHER, .src = b,
				      .src2 = 2, .len = ps, .value = 1 } },
		{ "GATHER chunk 12", { .op = GMEM_NPU_OP_GATHER, .src = b,
				       .src2 = 12, .len = 48, .value = 1 } },
		{ "GATHER chunk 4 MiB", { .op = GMEM_NPU_OP_GATHER, .src = 0,
					  .src2 = 4 << 20, .len = 4 << 20,
					  .value = 1 } },
		{ "GATHER src misaligned to the chunk",
		  { .op = GMEM_NPU_OP_GATHER, .src = b + 64, .src2 = 128,
		    .len = ps, .value = 1 } },
		{ "GATHER len not whole chunks",
		  { .op = GMEM_NPU_OP_GATHER, .src = b, .src2 = 64,
		    .len = 96, .value = 1 } },
		{ "GATHER value 0", { .op = GMEM_NPU_OP_GATHER, .src = b,
				      .src2 = 64, .len = ps } },
		{ "GATHER value 2^24 + 1",
		  { .op = GMEM_NPU_OP_GATHER, .src = b, .src2 = 4,
		    .len = ps, .value = (1ULL << 24) + 1 } },
		{ "GATHER value * chunk past MAX",
		  { .op = GMEM_NPU_OP_GATHER, .src = 0, .src2 = 1 << 20,
		    .len = 1 << 20, .value = 4097 } },
		{ "GATHER 2^20 + 1 chunks under a page",
		  { .op = GMEM_NPU_OP_GATHER, .src = b, .src2 = 64,
		    .len = ps, .value = (1ULL << 20) + 1 } },
		{ "GATHER with a flag", { .op = GMEM_NPU_OP_GATHER,
					  .flags = GMEM_NPU_JOB_WRITE,
					  .src = b, .src2 = 64, .len = ps,
					  .value = 1 } },
		{ "GATHER src at the user end",
		  { .op = GMEM_NPU_OP_GATHER, .src = USER_END, .src2 = 64,
		    .len = 64, .value = 1 } },
		{ "FILL dst + len wraps", { .op = GMEM_NPU_OP_FILL,
					    .dst = ~0ULL - 15, .len = 32 } },
		{ "REDUCE_SUM src + len wraps",
		  { .op = GMEM_NPU_OP_REDUCE_SUM, .src = ~0ULL - 15,
		    .len = 32 } },
		{ "FILL crosses the user end", { .op = GMEM_NPU_OP_FILL,
						 .dst = USER_END - ps,
						 .len = 2 * ps } },
		{ "FILL at the user end", { .op = GMEM_NPU_OP_FILL,
					    .dst = USER_END, .len = 1 } },
		{ "TOUCH in kernel space", { .op = GMEM_NPU_OP_TOUCH,
					     .dst = 0xffff888000000000ULL,
					     .len = ps } },
		{ "COPY src crosses the user end",
		  { .op = GMEM_NPU_OP_COPY, .dst = b, .src = USER_END - 8,
		    .len = 16 } },
		{ "ADD src2 at the user end",
		  { .op = GMEM_NPU_OP_ADD, .dst = b, .src = b + ps,
		    .src2 = USER_END, .len = 4 } },
	};
	const struct bad_ioctl calls[] = {
		{ "SUBMIT NULL", GMEM_NPU_IOC_SUBMIT, NULL, EFAULT },
		{ "SUBMIT unmapped", GMEM_NPU_IOC_SUBMIT, hole, EFAULT },
		{ "WAIT NULL", GMEM_NPU_IOC_WAIT, NULL, EFAULT },
		{ "WAIT unmapped", GMEM_NPU_IOC_WAIT, hole, EFAULT },
		{ "SET_MODE NULL", GMEM_NPU_IOC_SET_MODE, NULL, EFAULT },
		{ "SET_MODE unmapped", GMEM_NPU_IOC_SET_MODE, hole, EFAULT },
		{ "SET_MODE SYSTEM + 1", GMEM_NPU_IOC_SET_MODE, &bad_mode,
		  EINVAL },
		{ "SET_MODE ~0", GMEM_NPU_IOC_SET_MODE, &all_modes, EINVAL },
		{ "SET_MODE SYSTEM, pad 1", GMEM_NPU_IOC_SET_MODE, &mode_pad,
		  EINVAL },
		{ "INFO NULL", GMEM_NPU_IOC_INFO, NULL, EFAULT },
		{ "INFO unmapped", GMEM_NPU_IOC_INFO, hole, EFAULT },
		{ "INFO into read-only memory", GMEM_NPU_IOC_INFO, ro,
		  EFAULT },
		{ "nr 0", _IO(GMEM_NPU_IOC_MAGIC, 0), NULL, ENOTTY },
		{ "nr 99", _IOWR(GMEM_NPU_IOC_MAGIC, 99,
				 struct gmem_npu_submit), &sub, ENOTTY },
		{ "other magic", _IOWR('X', 1, struct gmem_npu_submit), &sub,
		  ENOTTY },
		{ "SUBMIT number, wrong size", _IOWR(GMEM_NPU_IOC_MAGIC, 1,
						     __u64), &sub, ENOTTY },
		{ "INFO number, wrong direction", _IOW(GMEM_NPU_IOC_MAGIC, 4,
						       struct gmem_npu_info),
		  &sub, ENOTTY },
	};

	ASSERT_NE(buf, MAP_FAILED);
	ASSERT_NE(heap, NULL);
	ASSERT_NE(ro, MAP_FAILED);
	ASSERT_NE(hole, MAP_FAILED);
	fill_pattern(buf, len, seed);

	ASSERT_EQ(npu_get_info(self->fd, &before), 0);
	for (i = 0; i < ARRAY_SIZE(jobs); i++) {
		int ret = npu_submit(self->fd, &jobs[i].job, &seqno);

		EXPECT_EQ(ret, -EINVAL) TH_LOG("SUBMIT %s: %d", jobs[i].what,
					       ret);
		if (!ret)
			npu_wait(self->fd, seqno, WAIT_FOREVER, &w);
	}
	for (i = 0; i < ARRAY_SIZE(calls); i++) {
		int ret = ioctl(self->fd, calls[i].cmd, calls[i].arg);
		int err = ret ? errno : 0;

		EXPECT_EQ(ret, -1) TH_LOG("%s was accepted", calls[i].what);
		EXPECT_EQ(err, calls[i].err) TH_LOG("%s: errno %d",
						    calls[i].what, err);
	}
	ASSERT_EQ(npu_get_info(self->fd, &after), 0);
	ASSERT_EQ(after.jobs_done, before.jobs_done)
		TH_LOG("a refused job ran");
	ASSERT_EQ(check_pattern(buf, len, seed), -1);

	/* The refused SET_MODE left the context in PEER_SHARED mode. */
	ASSERT_EQ(npu_sum(self->fd, heap, MiB, &w), -EACCES);
	/* And valid requests still work. */
	ASSERT_EQ(npu_fill(self->fd, buf, len, 0x24, &w), 0);
	ASSERT_EQ(find_not_byte(buf, len, 0x24), -1);
	ASSERT_EQ(npu_set_mode(self->fd, GMEM_NPU_MODE_PEER_SHARED), 0);

	free(heap);
	ASSERT_EQ(munmap(ro, ps), 0);
	ASSERT_EQ(munmap(buf, len), 0);
}

/* WAIT refuses a nonzero pad, unknown and already-collected seqnos. */
TEST_F(npu, wait_invalid)
{
	size_t ps = self->page_size;
	struct gmem_npu_job job;
	struct gmem_npu_wait w;
	char *p = peer_mmap(ps);
	__u64 seqno;

	ASSERT_NE(p, MAP_FAILED);
	job = job_fill(p, ps, 0x77);
	ASSERT_EQ(npu_submit(self->fd, &job, &seqno), 0);

	memset(&w, 0, sizeof(w));
	w.seqno = seqno;
	w.timeout_ns = WAIT_FOREVER;
	w.pad = 1;
	ASSERT_EQ(ioctl(self->fd, GMEM_NPU_IOC_WAIT, &w), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(npu_wait(self->fd, seqno + 1000, WAIT_FOREVER, &w), -EINVAL)
		TH_LOG("waiting for a job never submitted");

	/* The refused waits did not collect the job. */
	ASSERT_EQ(npu_wait(self->fd, seqno, WAIT_FOREVER, &w), 0);
	ASSERT_EQ(w.status, 0);
	ASSERT_EQ(find_not_byte(p, ps, 0x77), -1);
	ASSERT_EQ(npu_wait(self->fd, seqno, WAIT_FOREVER, &w), -EINVAL)
		TH_LOG("waiting twice for the same job");
	ASSERT_EQ(npu_wait(self->fd, seqno, 0, &w), -EINVAL);
	ASSERT_EQ(munmap(p, ps), 0);
}

/* poll() reports POLLIN once every submitted job has completed. */
TEST_F_TIMEOUT(npu, poll_reports_completion, 180)
{
	size_t len = 16 * MiB;
	struct pollfd pfd = { .fd = self->fd, .events = POLLIN };
	struct gmem_npu_wait w;
	__u64 seqno[4];
	char *p = peer_mmap(len);
	int i;

	ASSERT_NE(p, MAP_FAILED);
	for (i = 0; i < 4; i++) {
		struct gmem_npu_job job = job_fill(p, len, 0x10 + i);

		ASSERT_EQ(npu_submit(self->fd, &job, &seqno[i]), 0);
	}
	ASSERT_EQ(poll(&pfd, 1, 0), 0)
		TH_LOG("POLLIN (revents 0x%x) with 64 MiB of FILLs queued",
		       pfd.revents);
	ASSERT_EQ(poll(&pfd, 1, 120000), 1);
	ASSERT_TRUE(pfd.revents & POLLIN) TH_LOG("revents 0x%x", pfd.revents);
	ASSERT_FALSE(pfd.revents & (POLLERR | POLLHUP | POLLNVAL));
	/* All done: a polling wait finds every one finished. */
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(npu_wait(self->fd, seqno[i], 0, &w), 0)
			TH_LOG("job %d not done after POLLIN", i);
		ASSERT_EQ(w.status, 0);
	}
	ASSERT_EQ(find_not_byte(p, len, 0x13), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/* WAIT with a timeout that expires: ETIMEDOUT, and the job stays. */
TEST_F_TIMEOUT(npu, wait_timeout, 180)
{
	size_t len = 16 * MiB;
	struct gmem_npu_wait w;
	__u64 seqno[4];
	char *p = peer_mmap(len);
	int i;

	ASSERT_NE(p, MAP_FAILED);
	for (i = 0; i < 4; i++) {
		struct gmem_npu_job job = job_fill(p, len, 0x20 + i);

		ASSERT_EQ(npu_submit(self->fd, &job, &seqno[i]), 0);
	}
	ASSERT_EQ(npu_wait(self->fd, seqno[3], 1, &w), -ETIMEDOUT)
		TH_LOG("64 MiB of FILLs finished within 1 ns");
	ASSERT_EQ(npu_wait(self->fd, seqno[3], 0, &w), -ETIMEDOUT);
	ASSERT_EQ(npu_wait(self->fd, seqno[3], WAIT_FOREVER, &w), 0);
	ASSERT_EQ(w.status, 0);
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(npu_wait(self->fd, seqno[i], WAIT_FOREVER, &w), 0);
		ASSERT_EQ(w.status, 0);
	}
	/* In submission order: the last FILL wins. */
	ASSERT_EQ(find_not_byte(p, len, 0x23), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

static __u8 ebusy_byte(int i)
{
	return i * 7 + 1;
}

/* At most 1024 jobs per fd may be submitted and not yet waited for. */
TEST_F_TIMEOUT(npu, too_many_jobs_ebusy, 120)
{
	size_t ps = self->page_size, len = 2 * ps;
	static __u64 seqno[MAX_PENDING_JOBS + 1];
	struct gmem_npu_job job;
	struct gmem_npu_wait w;
	__u8 *p = peer_mmap(len);
	int i;

	ASSERT_NE(p, MAP_FAILED);
	for (i = 0; i < MAX_PENDING_JOBS; i++) {
		job = job_fill(p + i, 1, ebusy_byte(i));
		ASSERT_EQ(npu_submit(self->fd, &job, &seqno[i]), 0)
			TH_LOG("job %d", i);
	}
	job = job_fill(p + MAX_PENDING_JOBS, 1, 0xee);
	ASSERT_EQ(npu_submit(self->fd, &job, &seqno[MAX_PENDING_JOBS]),
		  -EBUSY) TH_LOG("job %d accepted", MAX_PENDING_JOBS + 1);

	/* Collecting one makes room for one. */
	ASSERT_EQ(npu_wait(self->fd, seqno[0], WAIT_FOREVER, &w), 0);
	ASSERT_EQ(w.status, 0);
	job = job_fill(p + MAX_PENDING_JOBS + 1, 1, 0xef);
	ASSERT_EQ(npu_submit(self->fd, &job, &seqno[MAX_PENDING_JOBS]), 0);
	for (i = 1; i <= MAX_PENDING_JOBS; i++) {
		ASSERT_EQ(npu_wait(self->fd, seqno[i], WAIT_FOREVER, &w), 0);
		ASSERT_EQ(w.status, 0);
	}

	for (i = 0; i < MAX_PENDING_JOBS; i++)
		if (p[i] != ebusy_byte(i))
			break;
	ASSERT_EQ(i, MAX_PENDING_JOBS) TH_LOG("job %d wrote 0x%x", i, p[i]);
	ASSERT_EQ(p[MAX_PENDING_JOBS], 0) TH_LOG("the refused job ran");
	ASSERT_EQ(p[MAX_PENDING_JOBS + 1], 0xef);
	ASSERT_EQ(find_not_byte(p + MAX_PENDING_JOBS + 2,
				len - MAX_PENDING_JOBS - 2, 0), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

TEST_HARNESS_MAIN
