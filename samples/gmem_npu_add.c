// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_npu_add: c = a + b on the simulated NPU, in place in memory the CPU
 * shares with it.
 *
 * Three arrays of N u32 are mapped with MAP_PEER_SHARED.  The CPU fills a
 * and b and never touches c.  One GMEM_NPU_OP_ADD job on /dev/gmem_npu0
 * computes c = a + b (modulo 2^32): the NPU faults on each operand, gmem
 * maps the host pages into the NPU's MMU, a whole 2 MiB block per fault,
 * and the job replays.  The CPU then checks every element of c.  The file
 * descriptor asks for GMEM_NPU_PLACE_HOST, so nothing is copied: the CPU and
 * the NPU use the same pages (samples/gmem_migrate.c shows the default,
 * migration to the NPU's memory).
 *
 * Prints the job's device faults and run time, and gmem's device_faults,
 * fault_pages and invalidations counters (debugfs gmem/stats) before the
 * job, after it, and after munmap, which removes the NPU's mappings.
 *
 * Needs gmem.ko and gmem_npu.ko loaded, and debugfs for the counters.
 * Exits 0 only if every element of c is right.
 *
 * Build: gcc -O2 -I<kernel headers> gmem_npu_add.c $(pkg-config --cflags --libs gmem)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/gmem.h>
#include <gmem.h>

#define N		(4UL << 20)		/* elements per array */
#define LEN		(N * sizeof(uint32_t))	/* bytes per array */
#define MiB		(1UL << 20)

#define NPU_DEV		"/dev/gmem_npu0"
#define GMEM_STATS	"/sys/kernel/debug/gmem/stats"

/* A job still running after this long is a failure, not a result. */
#define JOB_TIMEOUT_NS	(60LL * 1000000000LL)

#define U64(p)		((__u64)(uintptr_t)(p))
#define ARRAY_SIZE(x)	(sizeof(x) / sizeof((x)[0]))

/* The input data; sums of the two overflow for some i. */
static uint32_t a_val(size_t i)
{
	return (uint32_t)i * 2654435761u;
}

static uint32_t b_val(size_t i)
{
	return (uint32_t)i ^ 0xdeadbeefu;
}

/* The gmem counters this sample shows, in debugfs gmem/stats. */
static const char *const stat_names[] = {
	"device_faults", "fault_pages", "invalidations",
};

#define NSTATS	ARRAY_SIZE(stat_names)

struct gmem_stats {
	long long val[NSTATS];		/* -1: not readable */
};

static void stats_read(struct gmem_stats *s)
{
	char key[64];
	long long val;
	size_t i;
	FILE *f = fopen(GMEM_STATS, "r");

	for (i = 0; i < NSTATS; i++)
		s->val[i] = -1;
	if (!f)
		return;
	while (fscanf(f, "%63s %lld", key, &val) == 2)
		for (i = 0; i < NSTATS; i++)
			if (!strcmp(key, stat_names[i]))
				s->val[i] = val;
	fclose(f);
}

/* Prints the counters as gmem/stats has them, with the change since @base. */
static void stats_show(const char *when, const struct gmem_stats *s,
		       const struct gmem_stats *base)
{
	size_t i;

	printf("gmem/stats %s:\n", when);
	for (i = 0; i < NSTATS; i++) {
		if (s->val[i] < 0) {
			printf("  %s (not readable: is debugfs mounted?)\n",
			       stat_names[i]);
			continue;
		}
		printf("  %s %lld", stat_names[i], s->val[i]);
		if (base && base->val[i] >= 0)
			printf(" (%+lld)", s->val[i] - base->val[i]);
		putchar('\n');
	}
}

/* LEN bytes every device may reach (libgmem), or NULL with the reason said. */
static uint32_t *peer_map(void)
{
	gmemError_t e;
	void *p;

	e = gmemMallocShared(&p, LEN);
	if (e == gmemSuccess)
		return p;
	fprintf(stderr, "gmemMallocShared: %s\n", gmemGetErrorString(e));
	return NULL;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Runs c = a + b on the NPU of @fd and waits for it.  Returns 0 with the
 * job's report in *@w (its status may still be an error), or -1 if an
 * ioctl failed; *@ns is the time from submission to completion.
 */
static int npu_add(int fd, uint32_t *c, const uint32_t *a, const uint32_t *b,
		   struct gmem_npu_wait *w, long long *ns)
{
	struct gmem_npu_submit sub = {
		.job = {
			.op = GMEM_NPU_OP_ADD,
			.dst = U64(c),
			.src = U64(a),
			.src2 = U64(b),
			.len = LEN,
		},
	};
	long long t0 = now_ns();

	if (ioctl(fd, GMEM_NPU_IOC_SUBMIT, &sub)) {
		perror("GMEM_NPU_IOC_SUBMIT");
		return -1;
	}
	memset(w, 0, sizeof(*w));
	w->seqno = sub.seqno;
	w->timeout_ns = JOB_TIMEOUT_NS;
	while (ioctl(fd, GMEM_NPU_IOC_WAIT, w)) {
		if (errno != EINTR) {
			perror("GMEM_NPU_IOC_WAIT");
			return -1;
		}
	}
	*ns = now_ns() - t0;
	return 0;
}

/* Checks every element of c on the CPU; returns the number that are wrong. */
static size_t check(const uint32_t *c)
{
	size_t i, bad = 0;

	for (i = 0; i < N; i++) {
		uint32_t want = a_val(i) + b_val(i);

		if (c[i] == want)
			continue;
		if (!bad)
			printf("c[%zu] = %#x, expected %#x\n", i, c[i], want);
		bad++;
	}
	return bad;
}

int main(void)
{
	struct gmem_stats before, after_job, after_unmap;
	struct gmem_npu_info info;
	struct gmem_npu_wait w;
	uint32_t *a, *b, *c;
	size_t i, bad = N;		/* all wrong until checked */
	long long ns = 0;
	int fd;

	a = peer_map();
	b = peer_map();
	c = peer_map();
	if (!a || !b || !c)
		return 1;
	printf("mapped a, b, c: %lu u32 (%lu MiB) each, MAP_PEER_SHARED\n",
	       N, LEN / MiB);

	for (i = 0; i < N; i++) {
		a[i] = a_val(i);
		b[i] = b_val(i);
	}
	printf("CPU filled a and b; c is untouched\n");

	fd = open(NPU_DEV, O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s%s\n", NPU_DEV, strerror(errno),
			errno == ENOENT ? " (is gmem_npu.ko loaded?)" : "");
		return 1;
	}
	if (ioctl(fd, GMEM_NPU_IOC_INFO, &info)) {
		perror("GMEM_NPU_IOC_INFO");
		return 1;
	}
	if (ioctl(fd, GMEM_NPU_IOC_SET_PLACEMENT,
		  &(struct gmem_npu_placement){ .placement = GMEM_NPU_PLACE_HOST })) {
		perror("GMEM_NPU_IOC_SET_PLACEMENT");
		return 1;
	}
	printf("opened %s: npu%u, gmem device %u\n", NPU_DEV, info.npu_index,
	       info.dev_id);

	stats_read(&before);
	stats_show("before the job", &before, NULL);

	if (npu_add(fd, c, a, b, &w, &ns))
		return 1;
	stats_read(&after_job);
	printf("NPU job c = a + b: %.3f ms, %llu device faults\n", ns / 1e6,
	       (unsigned long long)w.faults);
	if (w.status) {
		printf("NPU job failed: %s at %#llx%s\n", strerror(-w.status),
		       (unsigned long long)w.fault_addr,
		       w.status == -EACCES ?
		       " (not MAP_PEER_SHARED: a kernel without gmem?)" : "");
	} else {
		printf("  %.0f MiB/s of operands (a, b read, c written)\n",
		       3.0 * LEN / MiB / (ns / 1e9));
		bad = check(c);
		printf("CPU checked all %lu elements of c: %zu wrong (%s)\n",
		       N, bad, bad ? "WRONG" : "correct");
	}
	stats_show("after the job", &after_job, &before);

	/*
	 * The NPU still has the pages mapped.  munmap's invalidation removes
	 * them from its MMU before core MM frees them: "invalidations" grows.
	 */
	gmemFree(a, LEN);
	gmemFree(b, LEN);
	gmemFree(c, LEN);
	stats_read(&after_unmap);
	stats_show("after gmemFree (munmap)", &after_unmap, &after_job);

	close(fd);
	return bad ? 1 : 0;
}
