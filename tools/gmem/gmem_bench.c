// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_bench: what shared memory costs, in place and migrated, measured in
 * one run.
 *
 *  a. CPU first touch of MAP_PEER_SHARED memory vs plain anonymous memory:
 *     a fresh 128 MiB mapping of each, one byte written per page, ns/page.
 *  b. The NPU reading 64 MiB of host-resident MAP_PEER_SHARED memory in
 *     place (one GMEM_NPU_OP_REDUCE_SUM job, submit + wait, sum checked)
 *     vs the upstream HMM test driver reading as much anonymous memory
 *     (HMM_DMIRROR_READ on /dev/hmm_dmirror0, copy checked), in MiB/s:
 *     "cold" is the first access to a fresh buffer (device faults
 *     included; a fresh file descriptor for the HMM driver), "warm" the
 *     second access with the device mappings in place.
 *  c. memcpy of 64 MiB between warm buffers, the ceiling for b and f.
 *  d. Device faults: one GMEM_NPU_OP_TOUCH read job over a 1 GiB and over
 *     a 16 MiB MAP_PEER_SHARED mapping the CPU never touched, ns/page.
 *  e. Fault-driven migration: the CPU fills a fresh 64 MiB MAP_PEER_SHARED
 *     buffer, then one TOUCH read job (one word per page) on a context with
 *     the default placement moves every page to the NPU's memory on its
 *     device faults (a 2 MiB block per fault), in MiB/s; the job's sum is
 *     checked against the CPU's, and debugfs gmem/stats migrated_to_dev
 *     must rise by exactly the buffer's pages (16384 of 4 KiB).
 *  f. Explicit prefetch: GMEM_NPU_IOC_PREFETCH of a fresh CPU-filled
 *     64 MiB buffer to the NPU, in MiB/s; migrated_to_dev checked as in e,
 *     then an NPU REDUCE_SUM of the buffer checks the data it holds.
 *  g. CPU fault-back: after f, the CPU reads one word per page of the
 *     device-resident buffer; the first touch of a device page faults and
 *     gmem brings its 2 MiB block back, in MiB/s; the words, the whole
 *     buffer and migrated_to_host (all pages back) are checked.
 *     Baseline of e, f and g: HMM_DMIRROR_MIGRATE_TO_DEV of 64 MiB of
 *     CPU-filled anonymous memory (the device's copy, which test_hmm hands
 *     back in cmd.ptr on every migration, checked), then the CPU reading
 *     one word per page of it, each page coming back on its own fault
 *     (test_hmm's migrate_to_ram moves one page); the data is checked.
 *     test_hmm allocates its device memory on first use, so one untimed
 *     migration comes first; the NPU's exists from module load.
 *  After each repetition of e, f and g the buffer is unmapped, which frees
 *  its device memory.
 *  Oversubscription and the placement policies are gmem_policy's.
 *
 * Targets (the RATIO block): first touch peer/anon <= 1.10; in-place NPU
 * read >= 1.5x the HMM driver's, cold and warm; fault cost per page 1 GiB
 * vs 16 MiB <= 1.2; fault-driven migration >= 1.0x and prefetch >= 1.5x
 * HMM_DMIRROR_MIGRATE_TO_DEV; prefetch >= 0.40 of memcpy; CPU fault-back
 * >= 2.0x the HMM driver's page-at-a-time fault-back.
 *
 * Every measurement is repeated REPS times, each on
 * fresh mappings where it says so, and the median is reported; the table
 * shows the raw median with the minimum and maximum, and a last block
 * compares the ratios with their targets (OK or MISS).  The process keeps
 * two file descriptors of /dev/gmem_npu0 open for the whole run, as an
 * application using the NPU would, so its address space is attached to
 * gmem during (a) too: one with the default placement (pages migrate to
 * the NPU on its touch) for e-g, and one set to GMEM_NPU_PLACE_HOST for
 * the in-place work of b and d.
 *
 * Exit status: 0 when everything ran, even if a target is missed (this is a
 * benchmark, not a test); 1 on an error: wrong data, a migration that moved
 * the wrong number of pages, a failed mmap, open or ioctl, no debugfs.
 * Without /dev/hmm_dmirror0 the HMM driver lines are skipped.
 *
 * Run as root with debugfs mounted, gmem.ko, gmem_npu.ko num_devices=2
 * dram_mib=160 (64 MiB must fit in an NPU's memory, with room) and
 * test_hmm.ko loaded.  In
 * gmem's VM:
 *
 *	make bench
 *
 * or, by hand on the run kernel:
 *
 *	make vm FLAVOR=run LOAD=0 CMD='cd /lib/modules/gmem &&
 *		insmod gmem.ko && insmod gmem_npu.ko num_devices=2 dram_mib=160 &&
 *		insmod test_hmm.ko && /opt/gmem/tools/gmem_bench'
 *
 * (without LOAD=0, make vm loads gmem_npu.ko with its default 16 MiB of
 * device memory, too little for e and f.)  The test kernel works too, but
 * KASAN and lockdep dominate its numbers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <linux/gmem.h>
#include <lib/test_hmm_uapi.h>

#include "bench_util.h"

#define REPS			5

#define TOUCH_LEN		(128 * MiB)	/* (a) */
#define READ_LEN		(64 * MiB)	/* (b) and (c) */
#define FAULT_LEN_BIG		(1 * GiB)	/* (d) */
#define FAULT_LEN_SMALL		(16 * MiB)
#define MIGRATE_LEN		(64 * MiB)	/* (e), (f) and (g) */

#define NPU_DEV			"/dev/gmem_npu0"
#define DMIRROR_DEV		"/dev/hmm_dmirror0"

static size_t page_size;

/* REPS samples of one measurement, in ns. */
struct sample {
	int64_t ns[REPS];
};

static void sample_sort(struct sample *s)
{
	qsort(s->ns, REPS, sizeof(s->ns[0]), cmp_i64);
}

/* The statistics below sort the sample first. */
static int64_t median(struct sample *s)
{
	sample_sort(s);
	return s->ns[REPS / 2];
}

static double ns_per_page(size_t len, int64_t ns)
{
	return (double)ns / (double)(len / page_size);
}

static void table_head(void)
{
	printf("%-28s %14s %14s %14s %12s %-8s %s\n", "measurement",
	       "median_ns", "min_ns", "max_ns", "value", "unit", "notes");
}

static void table_line(const char *name, int64_t med, int64_t min,
		       int64_t max, double value, const char *unit,
		       const char *notes)
{
	printf("%-28s %14lld %14lld %14lld %12.2f %-8s %s\n", name,
	       (long long)med, (long long)min, (long long)max, value, unit,
	       notes ? notes : "");
}

static void table_row(const char *name, struct sample *s, double value,
		      const char *unit, const char *notes)
{
	int64_t med = median(s);

	table_line(name, med, s->ns[0], s->ns[REPS - 1], value, unit, notes);
}

/* Index of the first u32 of @p that is not the pattern of @seed, or -1. */
static ssize_t check_pattern(const void *p, size_t len, __u32 seed)
{
	const __u32 *u = p;

	for (size_t i = 0; i < len / 4; i++)
		if (u[i] != pattern(i, seed))
			return i;
	return -1;
}

/* Sum of the first u64 of every page of @p, as a TOUCH read job sums. */
static __u64 first_words_sum(const void *p, size_t len)
{
	__u64 sum = 0;

	for (size_t off = 0; off < len; off += page_size)
		sum += *(const __u64 *)((const char *)p + off);
	return sum;
}

/*
 * The CPU reads the first u64 of every page of @p, timed into *@ns;
 * returns their sum.
 */
static __u64 cpu_read_words(const void *p, size_t len, int64_t *ns)
{
	__u64 sum = 0;
	int64_t t0 = now_ns();

	for (size_t off = 0; off < len; off += page_size)
		sum += *(const volatile __u64 *)((const char *)p + off);
	*ns = now_ns() - t0;
	return sum;
}

/*
 * Checks that counter @name rose from @before by the pages of @len bytes;
 * the rise goes to *@delta.  0, or -1 (reported).
 */
static int check_stat_rise(const char *name, long long before, size_t len,
			   long long *delta)
{
	long long after = gmem_stat(name);

	if (after < 0)
		return -1;
	*delta = after - before;
	if (*delta != (long long)(len / page_size))
		return fail("gmem/stats %s rose by %lld pages, not %zu", name,
			    *delta, len / page_size);
	return 0;
}

/*
 * KiB of the mapping [@addr, @addr + @len) backed by transparent huge
 * pages (AnonHugePages of its VMAs in /proc/self/smaps), or -1.
 */
static long thp_kib(void *addr, size_t len)
{
	unsigned long a = (unsigned long)addr, start, end;
	long kib, total = -1;
	bool in = false;
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = start < a + len && a < end;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
			total = (total < 0 ? 0 : total) + kib;
	}
	fclose(f);
	return total;
}

/* Times one REDUCE_SUM over @buf and checks it against @want. */
static int npu_sum_timed(int fd, const void *buf, size_t len, __u64 want,
			 int64_t *ns, __u64 *faults)
{
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_REDUCE_SUM,
				    .src = U64(buf), .len = len };
	struct gmem_npu_wait w;
	int64_t t0 = now_ns();

	if (npu_run(fd, &job, &w))
		return -1;
	*ns = now_ns() - t0;
	*faults = w.faults;
	if (w.result != want)
		return fail("NPU REDUCE_SUM returned %llu, the CPU computed %llu",
			    (unsigned long long)w.result,
			    (unsigned long long)want);
	return 0;
}

/* (a) CPU first touch */

static int64_t touch_pages(void *buf, size_t len)
{
	volatile char *p = buf;
	int64_t t0 = now_ns();

	for (size_t off = 0; off < len; off += page_size)
		p[off] = 1;
	return now_ns() - t0;
}

static struct sample ft_anon, ft_peer;
static long ft_thp_anon, ft_thp_peer;

static int bench_first_touch(void)
{
	progress("(a) CPU first touch, 128 MiB, anonymous vs MAP_PEER_SHARED");
	/* Alternate the two so that drift in the VM hits both alike. */
	for (int r = 0; r < REPS; r++) {
		for (int peer = 0; peer <= 1; peer++) {
			void *buf = map_anon(TOUCH_LEN, peer);

			if (!buf)
				return -1;
			if (peer)
				ft_peer.ns[r] = touch_pages(buf, TOUCH_LEN);
			else
				ft_anon.ns[r] = touch_pages(buf, TOUCH_LEN);
			if (r == REPS - 1)
				*(peer ? &ft_thp_peer : &ft_thp_anon) =
					thp_kib(buf, TOUCH_LEN);
			munmap(buf, TOUCH_LEN);
		}
	}
	return 0;
}

/* (b) device reads: the NPU in place vs the HMM test driver */

static struct sample npu_cold, npu_warm;
static __u64 npu_cold_faults, npu_warm_faults;

static int bench_npu_read(int npu)
{
	progress("(b) NPU REDUCE_SUM over 64 MiB of host-resident memory");
	for (int r = 0; r < REPS; r++) {
		void *buf = map_anon(READ_LEN, true);
		__u64 want;
		int ret;

		if (!buf)
			return -1;
		want = fill_pattern(buf, READ_LEN, 0x5eed0000 + r);
		ret = npu_sum_timed(npu, buf, READ_LEN, want, &npu_cold.ns[r],
				    &npu_cold_faults);
		if (!ret)
			ret = npu_sum_timed(npu, buf, READ_LEN, want,
					    &npu_warm.ns[r], &npu_warm_faults);
		munmap(buf, READ_LEN);
		if (ret)
			return -1;
	}
	return 0;
}

static struct sample dm_cold, dm_warm;
static __u64 dm_cold_faults, dm_warm_faults;
static bool have_dmirror;

/* Times one HMM_DMIRROR_READ of @src into @dst and checks the copy. */
static int dmirror_read_timed(int fd, const void *src, void *dst, size_t len,
			      int64_t *ns, __u64 *faults)
{
	struct hmm_dmirror_cmd cmd = { .addr = U64(src), .ptr = U64(dst),
				       .npages = len / page_size };
	int64_t t0;

	memset(dst, 0, len);
	t0 = now_ns();
	if (ioctl(fd, HMM_DMIRROR_READ, &cmd))
		return fail("HMM_DMIRROR_READ: %s", strerror(errno));
	*ns = now_ns() - t0;
	*faults = cmd.faults;
	if (cmd.cpages != cmd.npages)
		return fail("HMM_DMIRROR_READ copied %llu of %llu pages",
			    (unsigned long long)cmd.cpages,
			    (unsigned long long)cmd.npages);
	if (memcmp(dst, src, len))
		return fail("HMM_DMIRROR_READ: the copy differs from the source");
	return 0;
}

static int bench_dmirror_read(void)
{
	void *dst;
	int ret = 0;

	if (access(DMIRROR_DEV, F_OK)) {
		printf("# %s missing (test_hmm.ko not loaded?): skipping the HMM test driver\n",
		       DMIRROR_DEV);
		return 0;
	}
	progress("(b) HMM_DMIRROR_READ of 64 MiB of host-resident memory");
	dst = map_anon(READ_LEN, false);
	if (!dst)
		return -1;
	for (int r = 0; r < REPS && !ret; r++) {
		void *src = map_anon(READ_LEN, false);
		int fd;

		if (!src) {
			ret = -1;
			break;
		}
		fill_pattern(src, READ_LEN, 0xd0000000 + r);
		fd = open(DMIRROR_DEV, O_RDWR);
		if (fd < 0) {
			ret = fail("open %s: %s", DMIRROR_DEV, strerror(errno));
		} else {
			ret = dmirror_read_timed(fd, src, dst, READ_LEN,
						 &dm_cold.ns[r], &dm_cold_faults);
			if (!ret)
				ret = dmirror_read_timed(fd, src, dst, READ_LEN,
							 &dm_warm.ns[r],
							 &dm_warm_faults);
			close(fd);
		}
		munmap(src, READ_LEN);
	}
	munmap(dst, READ_LEN);
	have_dmirror = !ret;
	return ret;
}

/* (c) memcpy ceiling */

static struct sample cpy;

static int bench_memcpy(void)
{
	void *src, *dst;

	progress("(c) memcpy of 64 MiB between warm buffers");
	src = map_anon(READ_LEN, false);
	dst = map_anon(READ_LEN, false);
	if (!src || !dst)
		return -1;
	fill_pattern(src, READ_LEN, 0xc0c0c0c0);
	memcpy(dst, src, READ_LEN);		/* warms both */
	for (int r = 0; r < REPS; r++) {
		int64_t t0 = now_ns();

		memcpy(dst, src, READ_LEN);
		asm volatile("" : : : "memory");	/* keep every copy */
		cpy.ns[r] = now_ns() - t0;
	}
	if (memcmp(dst, src, READ_LEN))
		return fail("memcpy: the copy differs from the source");
	munmap(src, READ_LEN);
	munmap(dst, READ_LEN);
	return 0;
}

/* (d) device fault cost per page */

static struct sample fault_big, fault_small;
static __u64 fault_big_faults, fault_small_faults;

/* One TOUCH read job over a fresh, never touched mapping of @len bytes. */
static int touch_fresh(int npu, size_t len, int64_t *ns, __u64 *faults)
{
	void *buf = map_anon(len, true);
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_TOUCH, .dst = U64(buf),
				    .len = len };
	struct gmem_npu_wait w;
	int64_t t0;
	int ret;

	if (!buf)
		return -1;
	t0 = now_ns();
	ret = npu_run(npu, &job, &w);
	*ns = now_ns() - t0;
	*faults = w.faults;
	munmap(buf, len);
	if (!ret && w.result)
		ret = fail("TOUCH read of untouched memory summed to %llu, not 0",
			   (unsigned long long)w.result);
	return ret;
}

static int bench_device_faults(int npu)
{
	progress("(d) NPU TOUCH read of fresh 1 GiB and 16 MiB mappings");
	for (int r = 0; r < REPS; r++) {
		if (touch_fresh(npu, FAULT_LEN_SMALL, &fault_small.ns[r],
				&fault_small_faults) ||
		    touch_fresh(npu, FAULT_LEN_BIG, &fault_big.ns[r],
				&fault_big_faults))
			return -1;
	}
	return 0;
}

/* (e) fault-driven migration to the NPU */

static struct sample npu_mig;
static __u64 npu_mig_faults;
static long long npu_mig_to_dev;

static int bench_npu_fault_migrate(int npu)
{
	progress("(e) NPU TOUCH read migrating 64 MiB of host-resident memory");
	for (int r = 0; r < REPS; r++) {
		void *buf = map_anon(MIGRATE_LEN, true);
		struct gmem_npu_job job = { .op = GMEM_NPU_OP_TOUCH,
					    .dst = U64(buf),
					    .len = MIGRATE_LEN };
		struct gmem_npu_wait w;
		long long before;
		__u64 want;
		int64_t t0;
		int ret;

		if (!buf)
			return -1;
		fill_pattern(buf, MIGRATE_LEN, 0xe0000000 + r);
		want = first_words_sum(buf, MIGRATE_LEN);
		before = gmem_stat("migrated_to_dev");
		ret = before < 0 ? -1 : 0;
		if (!ret) {
			t0 = now_ns();
			ret = npu_run(npu, &job, &w);
			npu_mig.ns[r] = now_ns() - t0;
		}
		if (!ret) {
			npu_mig_faults = w.faults;
			if (w.result != want)
				ret = fail("NPU TOUCH read (migrating) summed to %llu, the CPU computed %llu",
					   (unsigned long long)w.result,
					   (unsigned long long)want);
		}
		if (!ret)
			ret = check_stat_rise("migrated_to_dev", before,
					      MIGRATE_LEN, &npu_mig_to_dev);
		munmap(buf, MIGRATE_LEN);	/* frees the device memory */
		if (ret)
			return -1;
	}
	return 0;
}

/* (f) explicit prefetch to the NPU and (g) the CPU faulting it back */

static struct sample npu_pf, gm_back;
static long long npu_pf_to_dev, gm_back_to_host, gm_back_faults;
/* Of gm_back, the time in gmem's migrate_to_ram (debugfs faultback_ns). */
static struct sample gm_back_handler;

static int prefetch_once(int npu, int r)
{
	void *buf = map_anon(MIGRATE_LEN, true);
	__u32 seed = 0xf0000000 + r;
	long long before, faults, handler;
	__u64 want_sum, want, got, npu_faults;
	int64_t t0, ns;
	ssize_t bad;
	int ret = 0;

	if (!buf)
		return -1;
	want_sum = fill_pattern(buf, MIGRATE_LEN, seed);
	want = first_words_sum(buf, MIGRATE_LEN);

	/* (f) */
	before = gmem_stat("migrated_to_dev");
	if (before < 0)
		goto fail;
	t0 = now_ns();
	if (npu_prefetch(npu, buf, MIGRATE_LEN))
		goto fail;
	npu_pf.ns[r] = now_ns() - t0;
	if (check_stat_rise("migrated_to_dev", before, MIGRATE_LEN,
			    &npu_pf_to_dev))
		goto fail;
	/* The NPU's memory holds the data. */
	if (npu_sum_timed(npu, buf, MIGRATE_LEN, want_sum, &ns, &npu_faults))
		goto fail;

	/* (g) */
	before = gmem_stat("migrated_to_host");
	faults = gmem_stat("cpu_devmem_faults");
	handler = gmem_stat("faultback_ns");
	if (before < 0 || faults < 0 || handler < 0)
		goto fail;
	got = cpu_read_words(buf, MIGRATE_LEN, &gm_back.ns[r]);
	gm_back_faults = gmem_stat("cpu_devmem_faults");
	gm_back_handler.ns[r] = gmem_stat("faultback_ns");
	if (gm_back_faults < 0 || gm_back_handler.ns[r] < 0)
		goto fail;
	gm_back_handler.ns[r] -= handler;
	gm_back_faults -= faults;
	if (got != want) {
		fail("CPU read of device-resident memory summed to %llu, not %llu",
		     (unsigned long long)got, (unsigned long long)want);
		goto fail;
	}
	if (check_stat_rise("migrated_to_host", before, MIGRATE_LEN,
			    &gm_back_to_host))
		goto fail;
	bad = check_pattern(buf, MIGRATE_LEN, seed);
	if (bad >= 0) {
		fail("after the CPU fault-back, u32 %zd differs", bad);
		goto fail;
	}
	goto out;
fail:
	ret = -1;
out:
	munmap(buf, MIGRATE_LEN);	/* frees any device memory left */
	return ret;
}

static int bench_npu_prefetch(int npu)
{
	progress("(f) GMEM_NPU_IOC_PREFETCH of 64 MiB, (g) the CPU reading it back");
	for (int r = 0; r < REPS; r++)
		if (prefetch_once(npu, r))
			return -1;
	return 0;
}

/* Baseline of (e), (f) and (g): the HMM test driver's migration */

static struct sample dm_mig, dm_back;
static bool have_dmirror_mig;

/*
 * HMM_DMIRROR_MIGRATE_TO_DEV of a fresh CPU-filled buffer, then the CPU
 * reading one word per page back; times into *@mig_ns and *@back_ns.
 * test_hmm copies the migrated data to cmd.ptr, @bounce.
 */
static int dmirror_migrate_once(void *bounce, __u32 seed, int64_t *mig_ns,
				int64_t *back_ns)
{
	void *buf = map_anon(MIGRATE_LEN, false);
	struct hmm_dmirror_cmd cmd = { .addr = U64(buf), .ptr = U64(bounce),
				       .npages = MIGRATE_LEN / page_size };
	__u64 want, got;
	int64_t t0;
	ssize_t bad;
	int fd, ret = 0;

	if (!buf)
		return -1;
	fill_pattern(buf, MIGRATE_LEN, seed);
	want = first_words_sum(buf, MIGRATE_LEN);
	memset(bounce, 0, MIGRATE_LEN);
	fd = open(DMIRROR_DEV, O_RDWR);
	if (fd < 0) {
		munmap(buf, MIGRATE_LEN);
		return fail("open %s: %s", DMIRROR_DEV, strerror(errno));
	}
	t0 = now_ns();
	if (ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd)) {
		ret = fail("HMM_DMIRROR_MIGRATE_TO_DEV: %s", strerror(errno));
		goto out;
	}
	*mig_ns = now_ns() - t0;
	if (cmd.cpages != cmd.npages) {
		ret = fail("HMM_DMIRROR_MIGRATE_TO_DEV migrated %llu of %llu pages",
			   (unsigned long long)cmd.cpages,
			   (unsigned long long)cmd.npages);
		goto out;
	}
	bad = check_pattern(bounce, MIGRATE_LEN, seed);
	if (bad >= 0) {
		ret = fail("HMM_DMIRROR_MIGRATE_TO_DEV: the device's u32 %zd differs",
			   bad);
		goto out;
	}
	got = cpu_read_words(buf, MIGRATE_LEN, back_ns);
	if (got != want) {
		ret = fail("CPU read of HMM device memory summed to %llu, not %llu",
			   (unsigned long long)got, (unsigned long long)want);
		goto out;
	}
	bad = check_pattern(buf, MIGRATE_LEN, seed);
	if (bad >= 0)
		ret = fail("after the CPU fault-back from the HMM driver, u32 %zd differs",
			   bad);
out:
	/* Unmapped first: the device pages go while their mirror exists. */
	munmap(buf, MIGRATE_LEN);
	close(fd);
	return ret;
}

static int bench_dmirror_migrate(void)
{
	int64_t warm_mig, warm_back;
	void *bounce;
	int ret;

	if (access(DMIRROR_DEV, F_OK))
		return 0;	/* said in (b) */
	progress("(e-g) HMM_DMIRROR_MIGRATE_TO_DEV of 64 MiB, the CPU reading it back");
	bounce = map_anon(MIGRATE_LEN, false);
	if (!bounce)
		return -1;
	/* Untimed: test_hmm allocates its device memory on first use. */
	ret = dmirror_migrate_once(bounce, 0xa0000000, &warm_mig, &warm_back);
	for (int r = 0; r < REPS && !ret; r++)
		ret = dmirror_migrate_once(bounce, 0xd1000000 + r,
					   &dm_mig.ns[r], &dm_back.ns[r]);
	munmap(bounce, MIGRATE_LEN);
	have_dmirror_mig = !ret;
	return ret;
}

/* Reporting */

static int print_header(int npu)
{
	struct gmem_npu_info info = { 0 };
	struct utsname u;
	char thp[128] = "unknown";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	if (f) {
		if (fgets(thp, sizeof(thp), f))
			thp[strcspn(thp, "\n")] = '\0';
		fclose(f);
	}
	uname(&u);
	if (ioctl(npu, GMEM_NPU_IOC_INFO, &info))
		return fail("GMEM_NPU_IOC_INFO: %s", strerror(errno));
	printf("# gmem_bench: kernel %s, page %zu B, %d repetitions, median reported\n",
	       u.release, page_size, REPS);
	printf("# THP enabled: %s\n", thp);
	printf("# %s: gmem device %u, tlb_entries %u, caps 0x%x\n", NPU_DEV,
	       info.dev_id, info.tlb_entries, info.caps);
	printf("# (b) and (d) on a context with GMEM_NPU_PLACE_HOST, (e)-(g) on one with the default placement\n");
	return 0;
}

static void thp_note(char *buf, size_t size, long kib)
{
	if (kib < 0)
		snprintf(buf, size, "thp n/a");
	else
		snprintf(buf, size, "thp %ld MiB", kib >> 10);
}

static void print_table(void)
{
	char note[96];

	printf("\n");
	table_head();

	thp_note(note, sizeof(note), ft_thp_anon);
	table_row("first_touch_anon_128M", &ft_anon,
		  ns_per_page(TOUCH_LEN, median(&ft_anon)), "ns/page", note);
	thp_note(note, sizeof(note), ft_thp_peer);
	table_row("first_touch_peer_128M", &ft_peer,
		  ns_per_page(TOUCH_LEN, median(&ft_peer)), "ns/page", note);

	snprintf(note, sizeof(note), "faults %llu",
		 (unsigned long long)npu_cold_faults);
	table_row("npu_read_cold_64M", &npu_cold,
		  mib_per_s(READ_LEN, median(&npu_cold)), "MiB/s", note);
	snprintf(note, sizeof(note), "faults %llu",
		 (unsigned long long)npu_warm_faults);
	table_row("npu_read_warm_64M", &npu_warm,
		  mib_per_s(READ_LEN, median(&npu_warm)), "MiB/s", note);

	if (have_dmirror) {
		snprintf(note, sizeof(note), "faults %llu",
			 (unsigned long long)dm_cold_faults);
		table_row("dmirror_read_cold_64M", &dm_cold,
			  mib_per_s(READ_LEN, median(&dm_cold)), "MiB/s", note);
		snprintf(note, sizeof(note), "faults %llu",
			 (unsigned long long)dm_warm_faults);
		table_row("dmirror_read_warm_64M", &dm_warm,
			  mib_per_s(READ_LEN, median(&dm_warm)), "MiB/s", note);
	}

	table_row("memcpy_64M", &cpy, mib_per_s(READ_LEN, median(&cpy)),
		  "MiB/s", NULL);

	snprintf(note, sizeof(note), "faults %llu",
		 (unsigned long long)fault_small_faults);
	table_row("npu_touch_fresh_16M", &fault_small,
		  ns_per_page(FAULT_LEN_SMALL, median(&fault_small)),
		  "ns/page", note);
	snprintf(note, sizeof(note), "faults %llu",
		 (unsigned long long)fault_big_faults);
	table_row("npu_touch_fresh_1G", &fault_big,
		  ns_per_page(FAULT_LEN_BIG, median(&fault_big)),
		  "ns/page", note);

	snprintf(note, sizeof(note), "faults %llu, migrated_to_dev +%lld",
		 (unsigned long long)npu_mig_faults, npu_mig_to_dev);
	table_row("npu_fault_migrate_64M", &npu_mig,
		  mib_per_s(MIGRATE_LEN, median(&npu_mig)), "MiB/s", note);
	snprintf(note, sizeof(note), "migrated_to_dev +%lld", npu_pf_to_dev);
	table_row("npu_prefetch_64M", &npu_pf,
		  mib_per_s(MIGRATE_LEN, median(&npu_pf)), "MiB/s", note);
	snprintf(note, sizeof(note),
		 "cpu faults %lld, migrated_to_host +%lld, %.0f%% in gmem's migrate_to_ram",
		 gm_back_faults, gm_back_to_host,
		 100.0 * median(&gm_back_handler) / median(&gm_back));
	table_row("cpu_faultback_gmem_64M", &gm_back,
		  mib_per_s(MIGRATE_LEN, median(&gm_back)), "MiB/s", note);
	if (have_dmirror_mig) {
		table_row("dmirror_migrate_64M", &dm_mig,
			  mib_per_s(MIGRATE_LEN, median(&dm_mig)), "MiB/s",
			  "includes test_hmm's copy to cmd.ptr");
		table_row("cpu_faultback_dmirror_64M", &dm_back,
			  mib_per_s(MIGRATE_LEN, median(&dm_back)), "MiB/s",
			  "one page per cpu fault");
	}
}

static void print_ratios(void)
{
	double npu_c = mib_per_s(READ_LEN, median(&npu_cold));
	double npu_w = mib_per_s(READ_LEN, median(&npu_warm));
	double npu_m = mib_per_s(MIGRATE_LEN, median(&npu_mig));
	double npu_p = mib_per_s(MIGRATE_LEN, median(&npu_pf));
	double gm_b = mib_per_s(MIGRATE_LEN, median(&gm_back));

	printf("\n");
	ratio("first_touch_peer_vs_anon",
	      (double)median(&ft_peer) / median(&ft_anon), '<', 1.10);
	if (have_dmirror) {
		ratio("npu_read_vs_dmirror_cold",
		      npu_c / mib_per_s(READ_LEN, median(&dm_cold)), '>', 1.5);
		ratio("npu_read_vs_dmirror_warm",
		      npu_w / mib_per_s(READ_LEN, median(&dm_warm)), '>', 1.5);
	} else {
		printf("RATIO npu_read_vs_dmirror_*: skipped, no %s\n",
		       DMIRROR_DEV);
	}
	ratio("npu_read_warm_vs_memcpy",
	      npu_w / mib_per_s(READ_LEN, median(&cpy)), '>', 0);
	ratio("fault_per_page_1g_vs_16m",
	      ns_per_page(FAULT_LEN_BIG, median(&fault_big)) /
	      ns_per_page(FAULT_LEN_SMALL, median(&fault_small)), '<', 1.2);
	if (have_dmirror_mig) {
		double dm_m = mib_per_s(MIGRATE_LEN, median(&dm_mig));

		ratio("npu_fault_migrate_vs_dmirror", npu_m / dm_m, '>', 1.0);
		ratio("npu_prefetch_vs_dmirror", npu_p / dm_m, '>', 1.5);
		ratio("cpu_faultback_vs_dmirror",
		      gm_b / mib_per_s(MIGRATE_LEN, median(&dm_back)), '>',
		      2.0);
	} else {
		printf("RATIO npu_fault_migrate_vs_dmirror, npu_prefetch_vs_dmirror, cpu_faultback_vs_dmirror: skipped, no %s\n",
		       DMIRROR_DEV);
	}
	ratio("npu_prefetch_vs_memcpy",
	      npu_p / mib_per_s(READ_LEN, median(&cpy)), '>', 0.40);
}

int main(void)
{
	struct gmem_npu_placement host = { .placement = GMEM_NPU_PLACE_HOST };
	int npu, npu_host, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGE_SIZE);
	npu = open(NPU_DEV, O_RDWR);
	if (npu < 0) {
		fail("open %s: %s (is gmem_npu.ko loaded?)", NPU_DEV,
		     strerror(errno));
		return 1;
	}
	/* In-place work (b, d): a context that never migrates. */
	npu_host = open(NPU_DEV, O_RDWR);
	if (npu_host < 0) {
		fail("open %s: %s", NPU_DEV, strerror(errno));
		close(npu);
		return 1;
	}
	ret = 0;
	if (ioctl(npu_host, GMEM_NPU_IOC_SET_PLACEMENT, &host))
		ret = fail("GMEM_NPU_IOC_SET_PLACEMENT (GMEM_NPU_PLACE_HOST): %s",
			   strerror(errno));
	if (!ret)
		ret = print_header(npu);
	if (!ret)
		ret = bench_first_touch();
	if (!ret)
		ret = bench_npu_read(npu_host);
	if (!ret)
		ret = bench_dmirror_read();
	if (!ret)
		ret = bench_memcpy();
	if (!ret)
		ret = bench_device_faults(npu_host);
	if (!ret)
		ret = bench_npu_fault_migrate(npu);
	if (!ret)
		ret = bench_npu_prefetch(npu);
	if (!ret)
		ret = bench_dmirror_migrate();
	close(npu_host);
	close(npu);
	if (ret)
		return 1;

	print_table();
	print_ratios();
	return 0;
}
