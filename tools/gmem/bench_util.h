/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What gmem's benchmarks (gmem_bench, gmem_policy) share: errors and
 * clocks, test data, debugfs counters, NPU jobs and hints, RATIO lines.
 */
#ifndef GMEM_BENCH_UTIL_H
#define GMEM_BENCH_UTIL_H

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
#include <time.h>
#include <unistd.h>
#include <linux/gmem.h>

#define MiB			(1UL << 20)
#define GiB			(1UL << 30)
/* gmem migrates and evicts aligned blocks of this size. */
#define BLOCK			(2 * MiB)
/* How long freeing device memory may lag behind munmap. */
#define FREE_WAIT_MS		5000
/* A job still running after this long is an error, not a measurement. */
#define JOB_TIMEOUT_NS		(120LL * 1000000000LL)

#define GMEM_STATS		"/sys/kernel/debug/gmem/stats"
#define GMEM_DEVICES		"/sys/kernel/debug/gmem/devices"

#define U64(p)			((__u64)(uintptr_t)(p))
#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

/* Reports an error; returns -1 for the caller to pass on. */
static inline int fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: error: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static inline double mib_per_s(size_t len, int64_t ns)
{
	return (double)len / MiB / ((double)ns / 1e9);
}

/* Progress on the console: the slow measurements take seconds under TCG. */
static inline void progress(const char *what)
{
	printf("# measuring %s\n", what);
	fflush(stdout);
}

static inline void *map_anon(size_t len, bool peer)
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
static inline void *map_peer_block(size_t len)
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
static inline __u32 pattern(size_t i, __u32 seed)
{
	return ((__u32)i * 2654435761u) ^ seed;
}

/* Fills @len bytes at @p with the pattern; returns their u32 sum. */
static inline __u64 fill_pattern(void *p, size_t len, __u32 seed)
{
	__u32 *u = p;
	__u64 sum = 0;

	for (size_t i = 0; i < len / 4; i++) {
		u[i] = pattern(i, seed);
		sum += u[i];
	}
	return sum;
}

/*
 * Counter @name of debugfs gmem/stats into *@val: 0; 1 if gmem has no such
 * counter (an older gmem); -1 (reported).
 */
static inline int gmem_stat_get(const char *name, long long *val)
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
static inline long long gmem_stat(const char *name)
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
static inline long long gmem_dev_stat(unsigned int id, const char *key)
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

/* NPU jobs */

/*
 * Submits @job to @fd and waits for it; fills *@w.  Returns 0 if the job
 * completed with status 0, -1 (reported) otherwise.
 */
static inline int npu_run(int fd, const struct gmem_npu_job *job,
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

/*
 * REDUCE_SUM of @len bytes at @p in jobs no longer than
 * GMEM_NPU_JOB_MAX_LEN; adds the sum to *@sum and the device faults to
 * *@faults.
 */
static inline int npu_sum(int fd, const char *p, size_t len, __u64 *sum,
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
static inline int npu_prefetch(int fd, void *p, size_t len)
{
	struct gmem_npu_prefetch pf = { .addr = U64(p), .len = len };

	while (ioctl(fd, GMEM_NPU_IOC_PREFETCH, &pf))
		if (errno != EINTR)
			return fail("GMEM_NPU_IOC_PREFETCH of %zu MiB: %s",
				    len / MiB, strerror(errno));
	return 0;
}

/* @bytes rounded down to whole blocks, at least one. */
static inline size_t whole_blocks(size_t bytes)
{
	return bytes < BLOCK ? BLOCK : bytes / BLOCK * BLOCK;
}

/* The NPU's device clock (GMEM_NPU_IOC_INFO), or -1 (reported). */
static inline int64_t npu_clock(int npu)
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
static inline int wait_devmem_free(unsigned int id)
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

/* GMEM_IOC_ADVISE on /dev/gmem; 0 or -1 (reported). */
static inline int advise(char *p, size_t len, __u32 advice, int dev)
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

/* Writes parameter @name of module @mod; 0 or -1 (reported). */
static inline int set_module_param(const char *mod, const char *name,
				   int value)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/%s/parameters/%s", mod, name);
	f = fopen(path, "w");
	if (!f)
		return fail("open %s: %s", path, strerror(errno));
	fprintf(f, "%d\n", value);
	if (fclose(f))
		return fail("write %s: %s", path, strerror(errno));
	return 0;
}

/* Writes gmem.ko parameter @name; 0 or -1 (reported). */
static inline int set_gmem_param(const char *name, int value)
{
	return set_module_param("gmem", name, value);
}

/* GMEM_NPU_IOC_SET_PLACEMENT; 0 or -1 (reported). */
static inline int set_placement(int npu, __u32 placement)
{
	struct gmem_npu_placement pl = { .placement = placement };

	if (ioctl(npu, GMEM_NPU_IOC_SET_PLACEMENT, &pl))
		return fail("GMEM_NPU_IOC_SET_PLACEMENT %u: %s", placement,
			    strerror(errno));
	return 0;
}

/* One line of the final block; a @target of 0 means none (information). */
static inline void ratio(const char *name, double value, char cmp, double target)
{
	bool ok = cmp == '<' ? value <= target : value >= target;

	if (!target)
		printf("RATIO %-28s %6.2f (info)\n", name, value);
	else
		printf("RATIO %-28s %6.2f (target %c= %.2f) %s\n", name, value,
		       cmp, target, ok ? "OK" : "MISS");
}

#endif /* GMEM_BENCH_UTIL_H */
