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
 *  h. Oversubscription: a streaming NPU job over working sets of 0.5, 1, 2
 *     and 4 times the NPU's memory (devmem_pages in debugfs gmem/devices),
 *     in MiB/s.  The CPU fills a fresh 2 MiB-aligned MAP_PEER_SHARED buffer
 *     once; then one untimed warm-up pass and OVERSUB_PASSES timed passes,
 *     each a REDUCE_SUM of the whole buffer ("fault": the NPU's faults
 *     migrate, and evict once its memory is full) or, slice by slice of a
 *     quarter of the NPU's memory, GMEM_NPU_IOC_PREFETCH of the slice then
 *     its REDUCE_SUM ("prefetch"); every sum is checked.  The rows note the
 *     device faults and the rise of gmem/stats migrated_to_dev, evictions,
 *     evicted_pages and thrash_pins (those gmem has) over the timed passes;
 *     "oversub <factor> <mode> <MiB/s> <modelled MiB/s>" lines repeat the
 *     figures for scripts/bench.sh to plot; the modelled figure is the
 *     working set over the NPU's device clock across the pass (see
 *     gmem_npu_model.rs: what the pass would take behind a PCIe link).
 *     Two more modes are the baselines a user would otherwise pick:
 *     "naive" (gmem.ko naive_lru=1: every fault migrates, LRU eviction)
 *     and "in_place" (the context set to GMEM_NPU_PLACE_HOST: zero-copy).
 *     Each buffer is unmapped, and its device memory seen free, before
 *     the next.
 *
 * Targets (the RATIO block): first touch peer/anon <= 1.10; in-place NPU
 * read >= 1.5x the HMM driver's, cold and warm; fault cost per page 1 GiB
 * vs 16 MiB <= 1.2; fault-driven migration >= 1.0x and prefetch >= 1.5x
 * HMM_DMIRROR_MIGRATE_TO_DEV; prefetch >= 0.40 of memcpy; CPU fault-back
 * >= 2.0x the HMM driver's page-at-a-time fault-back; streaming at twice
 * the NPU's memory >= 0.5x streaming at half of it, in each mode; in
 * modelled device time, the default policy at most 0.5x naive LRU's time
 * at 2x and 4x (1.05x below), at most 1.05x always-in-place's, and hints
 * at most 1.05x the default's (policy_stream_*).
 *
 * Every measurement is repeated REPS times (h: OVERSUB_PASSES), each on
 * fresh mappings where it says so, and the median is reported; the table
 * shows the raw median with the minimum and maximum, and a last block
 * compares the ratios with their targets (OK or MISS).  The process keeps
 * two file descriptors of /dev/gmem_npu0 open for the whole run, as an
 * application using the NPU would, so its address space is attached to
 * gmem during (a) too: one with the default placement (pages migrate to
 * the NPU on its touch) for e-h, and one set to GMEM_NPU_PLACE_HOST for
 * the in-place work of b and d.
 *
 * Exit status: 0 when everything ran, even if a target is missed (this is a
 * benchmark, not a test); 1 on an error: wrong data, a migration that moved
 * the wrong number of pages, a failed mmap, open or ioctl, no debugfs.
 * Without /dev/hmm_dmirror0 the HMM driver lines are skipped; (h) skips a
 * working set that would leave less than OVERSUB_SPARE of memory free.
 *
 * Run as root with debugfs mounted, gmem.ko, gmem_npu.ko num_devices=2
 * dram_mib=160 (64 MiB must fit in an NPU's memory, with room; h then
 * maps up to 640 MiB, which a 2 GiB VM holds) and test_hmm.ko loaded.  In
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

#define MiB			(1UL << 20)
#define GiB			(1UL << 30)
#define REPS			5

#define TOUCH_LEN		(128 * MiB)	/* (a) */
#define READ_LEN		(64 * MiB)	/* (b) and (c) */
#define FAULT_LEN_BIG		(1 * GiB)	/* (d) */
#define FAULT_LEN_SMALL		(16 * MiB)
#define MIGRATE_LEN		(64 * MiB)	/* (e), (f) and (g) */
/* (h): gmem migrates and evicts aligned blocks of this size. */
#define BLOCK			(2 * MiB)
#define OVERSUB_PASSES		3
#define OVERSUB_SPARE		(256 * MiB)	/* free memory (h) leaves */
/* How long freeing device memory may lag behind munmap. */
#define FREE_WAIT_MS		5000

/* A job still running after this long is an error, not a measurement. */
#define JOB_TIMEOUT_NS		(120LL * 1000000000LL)

#define NPU_DEV			"/dev/gmem_npu0"
#define DMIRROR_DEV		"/dev/hmm_dmirror0"
#define GMEM_STATS		"/sys/kernel/debug/gmem/stats"
#define GMEM_DEVICES		"/sys/kernel/debug/gmem/devices"

#define U64(p)			((__u64)(uintptr_t)(p))
#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

static size_t page_size;

/* Reports an error; returns -1 for the caller to pass on. */
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("gmem_bench: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* REPS samples of one measurement, in ns. */
struct sample {
	int64_t ns[REPS];
};

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

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

static double mib_per_s(size_t len, int64_t ns)
{
	return (double)len / MiB / ((double)ns / 1e9);
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

/* Progress on the console: the slow measurements take seconds under TCG. */
static void progress(const char *what)
{
	printf("# measuring %s\n", what);
	fflush(stdout);
}

static void *map_anon(size_t len, bool peer)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | (peer ? MAP_PEER_SHARED : 0);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);

	if (p == MAP_FAILED) {
		fail("mmap(%zu MiB%s): %s%s", len / MiB,
		     peer ? ", MAP_PEER_SHARED" : "", strerror(errno),
		     peer && errno == ENODEV ? " (is gmem.ko loaded?)" : "");
		return NULL;
	}
	return p;
}

/*
 * A MAP_PEER_SHARED mapping of @len bytes (a multiple of BLOCK) on a BLOCK
 * boundary: every migration block lies inside it, so the NPU's memory holds
 * as much of it as its size says.
 */
static void *map_peer_block(size_t len)
{
	char *p = map_anon(len + BLOCK, true);
	uintptr_t a;

	if (!p)
		return NULL;
	a = ((uintptr_t)p + BLOCK - 1) & ~(uintptr_t)(BLOCK - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((char *)a + len, (uintptr_t)p + BLOCK - a);
	return (void *)a;
}

/* Test data: u32 element @i of a buffer filled with seed @seed. */
static __u32 pattern(size_t i, __u32 seed)
{
	return ((__u32)i * 2654435761u) ^ seed;
}

/* Fills @len bytes at @p with the pattern; returns their u32 sum. */
static __u64 fill_pattern(void *p, size_t len, __u32 seed)
{
	__u32 *u = p;
	__u64 sum = 0;

	for (size_t i = 0; i < len / 4; i++) {
		u[i] = pattern(i, seed);
		sum += u[i];
	}
	return sum;
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
 * Counter @name of debugfs gmem/stats into *@val: 0; 1 if gmem has no such
 * counter (an older gmem); -1 (reported).
 */
static int gmem_stat_get(const char *name, long long *val)
{
	char key[64];
	FILE *f = fopen(GMEM_STATS, "r");

	if (!f)
		return fail("open %s: %s (is debugfs mounted?)", GMEM_STATS,
			    strerror(errno));
	while (fscanf(f, "%63s %lld", key, val) == 2) {
		if (!strcmp(key, name)) {
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return 1;
}

/* Counter @name of debugfs gmem/stats, or -1 (reported). */
static long long gmem_stat(const char *name)
{
	long long val;
	int ret = gmem_stat_get(name, &val);

	if (ret > 0)
		fail("no %s in %s", name, GMEM_STATS);
	return ret ? -1 : val;
}

/*
 * Value of @key on gmem device @id's line of debugfs gmem/devices
 * ("<id> <name> key=value ..."), or -1 (reported).
 */
static long long gmem_dev_stat(unsigned int id, const char *key)
{
	char line[1024], pat[64];
	long long val = -1;
	unsigned int i;
	FILE *f = fopen(GMEM_DEVICES, "r");
	char *p;

	if (!f) {
		fail("open %s: %s (is debugfs mounted?)", GMEM_DEVICES,
		     strerror(errno));
		return -1;
	}
	snprintf(pat, sizeof(pat), " %s=", key);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%u ", &i) != 1 || i != id)
			continue;
		p = strstr(line, pat);
		if (p)
			val = strtoll(p + strlen(pat), NULL, 0);
		break;
	}
	fclose(f);
	if (val < 0)
		fail("no %s for gmem device %u in %s", key, id, GMEM_DEVICES);
	return val;
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

/* NPU jobs */

/*
 * Submits @job to @fd and waits for it; fills *@w.  Returns 0 if the job
 * completed with status 0, -1 (reported) otherwise.
 */
static int npu_run(int fd, const struct gmem_npu_job *job,
		   struct gmem_npu_wait *w)
{
	struct gmem_npu_submit sub = { .job = *job };

	if (ioctl(fd, GMEM_NPU_IOC_SUBMIT, &sub))
		return fail("GMEM_NPU_IOC_SUBMIT (op %u): %s", job->op,
			    strerror(errno));
	memset(w, 0, sizeof(*w));
	w->seqno = sub.seqno;
	w->timeout_ns = JOB_TIMEOUT_NS;
	while (ioctl(fd, GMEM_NPU_IOC_WAIT, w))
		if (errno != EINTR)
			return fail("GMEM_NPU_IOC_WAIT (op %u): %s", job->op,
				    strerror(errno));
	if (w->status)
		return fail("NPU job (op %u) failed: %s at 0x%llx", job->op,
			    strerror(-w->status),
			    (unsigned long long)w->fault_addr);
	return 0;
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

/*
 * REDUCE_SUM of @len bytes at @p in jobs no longer than
 * GMEM_NPU_JOB_MAX_LEN; adds the sum to *@sum and the device faults to
 * *@faults.
 */
static int npu_sum(int fd, const char *p, size_t len, __u64 *sum,
		   __u64 *faults)
{
	for (size_t off = 0; off < len; off += GMEM_NPU_JOB_MAX_LEN) {
		struct gmem_npu_job job = { .op = GMEM_NPU_OP_REDUCE_SUM,
					    .src = U64(p + off),
					    .len = len - off };
		struct gmem_npu_wait w;

		if (job.len > GMEM_NPU_JOB_MAX_LEN)
			job.len = GMEM_NPU_JOB_MAX_LEN;
		if (npu_run(fd, &job, &w))
			return -1;
		*sum += w.result;
		*faults += w.faults;
	}
	return 0;
}

/* GMEM_NPU_IOC_PREFETCH of @len bytes at @p to the NPU; 0 or -1 (reported). */
static int npu_prefetch(int fd, void *p, size_t len)
{
	struct gmem_npu_prefetch pf = { .addr = U64(p), .len = len };

	while (ioctl(fd, GMEM_NPU_IOC_PREFETCH, &pf))
		if (errno != EINTR)
			return fail("GMEM_NPU_IOC_PREFETCH of %zu MiB: %s",
				    len / MiB, strerror(errno));
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

static int prefetch_once(int npu, int r)
{
	void *buf = map_anon(MIGRATE_LEN, true);
	__u32 seed = 0xf0000000 + r;
	long long before, faults;
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
	if (before < 0 || faults < 0)
		goto fail;
	got = cpu_read_words(buf, MIGRATE_LEN, &gm_back.ns[r]);
	gm_back_faults = gmem_stat("cpu_devmem_faults");
	if (gm_back_faults < 0)
		goto fail;
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

/* (h) oversubscription */

/* Working sets in NPU memories; [0] fits, [2] is twice: the RATIO lines. */
static const double oversub_factors[] = { 0.5, 1, 2, 4 };
/*
 * gmem's policy without and with hints, and the two baselines a user would
 * otherwise pick: a naive driver (gmem.ko naive_lru=1: migrate on every
 * fault, LRU) and zero-copy (GMEM_NPU_PLACE_HOST: always in place).
 */
static const char *const oversub_modes[] = { "fault", "hints", "naive",
					     "in_place" };
enum { OV_FAULT, OV_HINTS, OV_NAIVE, OV_IN_PLACE };
/* gmem/stats counters whose rise explains a row, where gmem has them. */
static const char *const oversub_keys[] = {
	"migrated_to_dev", "evictions", "evicted_pages", "thrash_pins",
};

struct oversub_row {
	size_t len;			/* working set; 0: not measured */
	int64_t ns[OVERSUB_PASSES];	/* sorted */
	/* The NPU's modelled clock over each pass (copies included), sorted. */
	int64_t model_ns[OVERSUB_PASSES];
	__u64 faults;			/* of the timed passes */
	long long rise[ARRAY_SIZE(oversub_keys)];	/* -1: no counter */
};

static struct oversub_row
	oversub[ARRAY_SIZE(oversub_factors)][ARRAY_SIZE(oversub_modes)];
static size_t oversub_devmem;	/* bytes of the NPU's memory */

/* @bytes rounded down to whole blocks, at least one. */
static size_t whole_blocks(size_t bytes)
{
	return bytes < BLOCK ? BLOCK : bytes / BLOCK * BLOCK;
}

static double oversub_mib_per_s(const struct oversub_row *row)
{
	return mib_per_s(row->len, row->ns[OVERSUB_PASSES / 2]);
}

static double oversub_model_mib_per_s(const struct oversub_row *row)
{
	return mib_per_s(row->len, row->model_ns[OVERSUB_PASSES / 2]);
}

/* The NPU's device clock (GMEM_NPU_IOC_INFO), or -1 (reported). */
static int64_t npu_clock(int npu)
{
	struct gmem_npu_info info = { 0 };

	if (ioctl(npu, GMEM_NPU_IOC_INFO, &info))
		return fail("GMEM_NPU_IOC_INFO: %s", strerror(errno));
	return info.clock_ns;
}

/*
 * Waits for gmem device @id's memory to be all free, which may lag behind
 * munmap, so that a measurement starts from an empty NPU; a note if it
 * does not come.  0, or -1 (reported).
 */
static int wait_devmem_free(unsigned int id)
{
	long long used;

	for (int ms = 0; ; ms += 10) {
		used = gmem_dev_stat(id, "devmem_used");
		if (used <= 0)
			return used;
		if (ms >= FREE_WAIT_MS)
			break;
		usleep(10000);
	}
	printf("# gmem device %u still uses %lld pages %d ms after munmap\n",
	       id, used, FREE_WAIT_MS);
	return 0;
}

/*
 * One streaming pass over @len bytes at @buf: a REDUCE_SUM of the whole.
 * The sum must be @want; times into *@ns, adds the device faults to
 * *@faults.
 */
static int oversub_pass(int npu, char *buf, size_t len, __u64 want,
			int64_t *ns, int64_t *model_ns, __u64 *faults)
{
	int64_t t0 = now_ns(), c0 = npu_clock(npu), c1;
	__u64 sum = 0;

	if (c0 < 0 || npu_sum(npu, buf, len, &sum, faults))
		return -1;
	*ns = now_ns() - t0;
	c1 = npu_clock(npu);
	if (c1 < 0)
		return -1;
	*model_ns = c1 - c0;
	if (sum != want)
		return fail("NPU REDUCE_SUM streaming %zu MiB returned %llu, the CPU computed %llu",
			    len / MiB, (unsigned long long)sum,
			    (unsigned long long)want);
	return 0;
}

/* GMEM_IOC_ADVISE on /dev/gmem; 0 or -1 (reported). */
static int advise(char *p, size_t len, __u32 advice, int dev)
{
	struct gmem_advise a = { .addr = (__u64)(uintptr_t)p, .len = len,
				 .advice = advice, .dev = dev };
	int fd = open("/dev/gmem", O_RDWR), ret;

	if (fd < 0)
		return fail("open /dev/gmem: %s", strerror(errno));
	ret = ioctl(fd, GMEM_IOC_ADVISE, &a);
	if (ret)
		fail("GMEM_IOC_ADVISE %u over %zu MiB: %s", advice, len / MiB,
		     strerror(errno));
	close(fd);
	return ret ? -1 : 0;
}

/*
 * The hints a CUDA programmer would give a stream larger than the device:
 * what fits (three quarters of the device, all of a working set that
 * fits) is prefetched to it, the rest is accessed by it in place and never
 * migrated.
 */
static int oversub_hints(char *buf, size_t len, unsigned int id)
{
	size_t fit = len <= oversub_devmem ? len :
		     whole_blocks(oversub_devmem / 4 * 3);

	if (advise(buf, fit, GMEM_ADV_PREFETCH, id))
		return -1;
	if (fit < len &&
	    advise(buf + fit, len - fit, GMEM_ADV_SET_ACCESSED_BY, id))
		return -1;
	return 0;
}

/* Writes gmem.ko parameter @name; 0 or -1 (reported). */
static int set_gmem_param(const char *name, int value)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/gmem/parameters/%s", name);
	f = fopen(path, "w");
	if (!f)
		return fail("open %s: %s", path, strerror(errno));
	fprintf(f, "%d\n", value);
	if (fclose(f))
		return fail("write %s: %s", path, strerror(errno));
	return 0;
}

/* GMEM_NPU_IOC_SET_PLACEMENT; 0 or -1 (reported). */
static int set_placement(int npu, __u32 placement)
{
	struct gmem_npu_placement pl = { .placement = placement };

	if (ioctl(npu, GMEM_NPU_IOC_SET_PLACEMENT, &pl))
		return fail("GMEM_NPU_IOC_SET_PLACEMENT %u: %s", placement,
			    strerror(errno));
	return 0;
}

/* Enters (@on) or leaves mode @m's setting of the policy. */
static int oversub_mode(int npu, size_t m, bool on)
{
	if (m == OV_NAIVE)
		return set_gmem_param("naive_lru", on);
	if (m == OV_IN_PLACE)
		return set_placement(npu, on ? GMEM_NPU_PLACE_HOST :
				     GMEM_NPU_PLACE_MIGRATE);
	return 0;
}

/* The oversub_keys counters into @v, -1 for those gmem lacks. */
static int oversub_counters(long long *v)
{
	for (size_t k = 0; k < ARRAY_SIZE(oversub_keys); k++) {
		int ret = gmem_stat_get(oversub_keys[k], &v[k]);

		if (ret < 0)
			return -1;
		if (ret)
			v[k] = -1;
	}
	return 0;
}

/* Working set @f in mode @m, on @npu: gmem device @id. */
static int oversub_run(int npu, unsigned int id, size_t f, size_t m)
{
	struct oversub_row *row = &oversub[f][m];
	size_t len = whole_blocks(oversub_factors[f] * oversub_devmem);
	long long before[ARRAY_SIZE(oversub_keys)];
	long long after[ARRAY_SIZE(oversub_keys)];
	__u64 want, warm_faults = 0;
	int64_t warm_ns, warm_model;
	char *buf;
	int ret;

	if (wait_devmem_free(id))
		return -1;
	buf = map_peer_block(len);
	if (!buf)
		return -1;
	want = fill_pattern(buf, len, 0x0e000000 + f * 2 + m);
	ret = oversub_mode(npu, m, true);
	if (!ret && m == OV_HINTS)
		ret = oversub_hints(buf, len, id);
	if (!ret)
		ret = oversub_pass(npu, buf, len, want, &warm_ns, &warm_model,
				   &warm_faults);
	if (!ret)
		ret = oversub_counters(before);
	for (int p = 0; p < OVERSUB_PASSES && !ret; p++)
		ret = oversub_pass(npu, buf, len, want, &row->ns[p],
				   &row->model_ns[p], &row->faults);
	if (!ret)
		ret = oversub_counters(after);
	if (oversub_mode(npu, m, false))
		ret = -1;
	munmap(buf, len);	/* frees its device memory */
	if (ret)
		return -1;
	for (size_t k = 0; k < ARRAY_SIZE(oversub_keys); k++)
		row->rise[k] = before[k] < 0 || after[k] < 0 ? -1 :
			       after[k] - before[k];
	qsort(row->ns, OVERSUB_PASSES, sizeof(row->ns[0]), cmp_i64);
	qsort(row->model_ns, OVERSUB_PASSES, sizeof(row->model_ns[0]), cmp_i64);
	row->len = len;
	return 0;
}

static int bench_oversub(int npu)
{
	struct gmem_npu_info info = { 0 };
	char what[128];
	long long pages;

	if (ioctl(npu, GMEM_NPU_IOC_INFO, &info))
		return fail("GMEM_NPU_IOC_INFO: %s", strerror(errno));
	pages = gmem_dev_stat(info.dev_id, "devmem_pages");
	if (pages < 0)
		return -1;
	if (!pages) {
		printf("# %s has no device memory: skipping (h)\n", NPU_DEV);
		return 0;
	}
	oversub_devmem = pages * page_size;
	for (size_t f = 0; f < ARRAY_SIZE(oversub_factors); f++) {
		size_t len = whole_blocks(oversub_factors[f] * oversub_devmem);
		size_t avail = sysconf(_SC_AVPHYS_PAGES) * page_size;

		/* Room for the rest of the system, not an OOM kill. */
		if (len + OVERSUB_SPARE > avail) {
			printf("# (h) %gx: %zu MiB does not fit in the free %zu MiB with %lu to spare: skipped\n",
			       oversub_factors[f], len / MiB, avail / MiB,
			       OVERSUB_SPARE / MiB);
			continue;
		}
		snprintf(what, sizeof(what),
			 "(h) NPU streaming REDUCE_SUM of %zu MiB, %gx its memory: gmem, with hints, naive LRU, in place",
			 len / MiB, oversub_factors[f]);
		progress(what);
		for (size_t m = 0; m < ARRAY_SIZE(oversub_modes); m++)
			if (oversub_run(npu, info.dev_id, f, m))
				return -1;
	}
	return 0;
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
	printf("# (b) and (d) on a context with GMEM_NPU_PLACE_HOST, (e)-(h) on one with the default placement\n");
	return 0;
}

static void thp_note(char *buf, size_t size, long kib)
{
	if (kib < 0)
		snprintf(buf, size, "thp n/a");
	else
		snprintf(buf, size, "thp %ld MiB", kib >> 10);
}

/* (h)'s rows, with how much the counters rose over the timed passes. */
static void print_oversub_rows(void)
{
	char name[40], note[256];

	for (size_t f = 0; f < ARRAY_SIZE(oversub_factors); f++) {
		for (size_t m = 0; m < ARRAY_SIZE(oversub_modes); m++) {
			const struct oversub_row *row = &oversub[f][m];
			int n;

			if (!row->len)
				continue;
			snprintf(name, sizeof(name), "oversub_%gx_%s",
				 oversub_factors[f], oversub_modes[m]);
			n = snprintf(note, sizeof(note),
				     "%zu MiB, modelled %.0f MiB/s, faults %llu",
				     row->len / MiB,
				     oversub_model_mib_per_s(row),
				     (unsigned long long)row->faults);
			for (size_t k = 0; k < ARRAY_SIZE(oversub_keys); k++) {
				if (row->rise[k] < 0)
					n += snprintf(note + n, sizeof(note) - n,
						      ", %s -", oversub_keys[k]);
				else
					n += snprintf(note + n, sizeof(note) - n,
						      ", %s +%lld", oversub_keys[k],
						      row->rise[k]);
			}
			table_line(name, row->ns[OVERSUB_PASSES / 2], row->ns[0],
				   row->ns[OVERSUB_PASSES - 1],
				   oversub_mib_per_s(row), "MiB/s", note);
		}
	}
}

/* (h) again, one "oversub <factor> <mode> <MiB/s>" line each, to plot. */
static void print_oversub_lines(void)
{
	bool first = true;

	for (size_t m = 0; m < ARRAY_SIZE(oversub_modes); m++) {
		for (size_t f = 0; f < ARRAY_SIZE(oversub_factors); f++) {
			if (!oversub[f][m].len)
				continue;
			if (first)
				printf("\n");
			first = false;
			printf("oversub %g %s %.2f %.2f\n", oversub_factors[f],
			       oversub_modes[m],
			       oversub_mib_per_s(&oversub[f][m]),
			       oversub_model_mib_per_s(&oversub[f][m]));
		}
	}
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
	snprintf(note, sizeof(note), "cpu faults %lld, migrated_to_host +%lld",
		 gm_back_faults, gm_back_to_host);
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
	print_oversub_rows();
}

/* One line of the final block; a @target of 0 means none (information). */
static void ratio(const char *name, double value, char cmp, double target)
{
	bool ok = cmp == '<' ? value <= target : value >= target;

	if (!target)
		printf("RATIO %-28s %6.2f (info)\n", name, value);
	else
		printf("RATIO %-28s %6.2f (target %c= %.2f) %s\n", name, value,
		       cmp, target, ok ? "OK" : "MISS");
}

/* Median modelled device time of a pass of mode @m at factor @f, or 0. */
static double oversub_model_ns(size_t f, size_t m)
{
	const struct oversub_row *row = &oversub[f][m];

	return row->len ? row->model_ns[OVERSUB_PASSES / 2] : 0;
}

/*
 * The streaming workload's policy ratios, in modelled device time (issue
 * 11's targets): gmem's default against the naive driver (at least 2x
 * faster at 2x and 4x) and against always-in-place (never more than 5%
 * slower), and hints against the default (never more than 5% slower).
 */
static void print_policy_ratios(void)
{
	for (size_t f = 0; f < ARRAY_SIZE(oversub_factors); f++) {
		double def = oversub_model_ns(f, OV_FAULT);
		double naive = oversub_model_ns(f, OV_NAIVE);
		double place = oversub_model_ns(f, OV_IN_PLACE);
		double hints = oversub_model_ns(f, OV_HINTS);
		double x = oversub_factors[f];
		char name[48];

		if (!def || !naive || !place || !hints) {
			printf("RATIO policy_stream_%gx_*: skipped, not measured\n",
			       x);
			continue;
		}
		snprintf(name, sizeof(name), "policy_stream_%gx_vs_naive_lru", x);
		ratio(name, def / naive, '<', x >= 2 ? 0.5 : 1.05);
		snprintf(name, sizeof(name), "policy_stream_%gx_vs_in_place", x);
		ratio(name, def / place, '<', 1.05);
		snprintf(name, sizeof(name), "policy_stream_%gx_hints_vs_default",
			 x);
		ratio(name, hints / def, '<', 1.05);
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
	for (size_t m = 0; m < ARRAY_SIZE(oversub_modes); m++) {
		const struct oversub_row *half = &oversub[0][m];
		const struct oversub_row *twice = &oversub[2][m];
		char name[40];

		snprintf(name, sizeof(name), "oversub_%s_2x_vs_0.5x",
			 oversub_modes[m]);
		/* The baselines are there to be beaten: information only. */
		if (half->len && twice->len)
			ratio(name, oversub_mib_per_s(twice) /
			      oversub_mib_per_s(half), '>',
			      m < OV_NAIVE ? 0.5 : 0);
		else
			printf("RATIO %s: skipped, not measured\n", name);
	}
	print_policy_ratios();
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
	if (!ret)
		ret = bench_oversub(npu);
	close(npu_host);
	close(npu);
	if (ret)
		return 1;

	print_table();
	print_oversub_lines();
	print_ratios();
	return 0;
}
