// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_migrate: data that moves between host memory and the NPU's own
 * memory, and stays right wherever it is.
 *
 * 8 MiB are mapped with MAP_PEER_SHARED and filled by the CPU, so they are
 * in host memory.  Then:
 *
 *  1. A GMEM_NPU_OP_REDUCE_SUM job on /dev/gmem_npu0 reads them.  Each NPU
 *     fault migrates the 2 MiB block around it into the NPU's memory
 *     (gmem's default placement), so devmem_used and to_dev grow.
 *  2. The CPU reads every element back.  Its first touch of each block
 *     faults on a device-private page, and gmem moves that block back to
 *     host memory: to_host and cpu_faults grow, devmem_used falls.
 *  3. GMEM_NPU_IOC_PREFETCH moves the whole range to the NPU explicitly
 *     (and maps it there: a second REDUCE_SUM takes no fault), then with
 *     GMEM_NPU_PREFETCH_TO_HOST back to host memory, without a CPU fault.
 *
 * After each step it prints the npu0 line of debugfs gmem/devices and the
 * device-memory lines of debugfs gmem/stats, with the change since the
 * step before.  The numbers depend on what else uses the NPU, and on its
 * memory (gmem_npu.ko dram_mib, 16 MiB by default): when it is full, the
 * least recently used blocks go back to host memory, and the data is
 * still right.
 *
 * Needs gmem.ko and gmem_npu.ko loaded, and debugfs for the counters.
 * Exits 0 only if every check of the data passes: both sums and both CPU
 * reads of all 8 MiB.
 *
 * Build: gcc -O2 -I<kernel headers> gmem_migrate.c $(pkg-config --cflags --libs gmem)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/gmem.h>
#include <gmem.h>

#define MiB		(1UL << 20)
#define LEN		(8 * MiB)			/* bytes mapped */
#define N		(LEN / sizeof(uint32_t))	/* u32 elements */

#define NPU_DEV		"/dev/gmem_npu0"
#define NPU_NAME	"npu0"			/* its name in gmem/devices */
#define GMEM_STATS	"/sys/kernel/debug/gmem/stats"
#define GMEM_DEVICES	"/sys/kernel/debug/gmem/devices"

/* A job still running after this long is a failure, not a result. */
#define JOB_TIMEOUT_NS	(60LL * 1000000000LL)

#define U64(p)		((__u64)(uintptr_t)(p))
#define ARRAY_SIZE(x)	(sizeof(x) / sizeof((x)[0]))

/* The data: element i of the buffer. */
static uint32_t val(size_t i)
{
	return (uint32_t)i * 2654435761u ^ 0x5a5a5a5au;
}

/* What REDUCE_SUM must return, computed without touching the buffer. */
static uint64_t expected_sum(void)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < N; i++)
		sum += val(i);
	return sum;
}

/* The device-memory counters of debugfs gmem/stats, in its order. */
static const char *const stat_names[] = {
	"devmem_pages", "devmem_used", "migrated_to_dev", "migrated_to_host",
	"cpu_devmem_faults",
};

#define NSTATS	ARRAY_SIZE(stat_names)

struct snapshot {
	long long val[NSTATS];		/* -1: not readable */
	char npu_line[256];		/* "" if not found */
};

static void snapshot_read(struct snapshot *s)
{
	char key[64], line[256], name[64];
	unsigned int id;
	long long val;
	size_t i;
	FILE *f;

	for (i = 0; i < NSTATS; i++)
		s->val[i] = -1;
	s->npu_line[0] = '\0';

	f = fopen(GMEM_STATS, "r");
	if (f) {
		while (fscanf(f, "%63s %lld", key, &val) == 2)
			for (i = 0; i < NSTATS; i++)
				if (!strcmp(key, stat_names[i]))
					s->val[i] = val;
		fclose(f);
	}

	/* "<id> <name> caps=0x7 devmem_pages=... cpu_faults=..." */
	f = fopen(GMEM_DEVICES, "r");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "%u %63s", &id, name) != 2 ||
			    strcmp(name, NPU_NAME))
				continue;
			line[strcspn(line, "\n")] = '\0';
			snprintf(s->npu_line, sizeof(s->npu_line), "%s", line);
			break;
		}
		fclose(f);
	}
}

/* Prints @s, with the change of each counter since @base if given. */
static void snapshot_show(const char *when, const struct snapshot *s,
			  const struct snapshot *base)
{
	size_t i;

	printf("--- %s\n", when);
	if (s->npu_line[0])
		printf("  gmem/devices: %s\n", s->npu_line);
	else
		printf("  gmem/devices: no %s line (is debugfs mounted?)\n",
		       NPU_NAME);
	printf("  gmem/stats:\n");
	for (i = 0; i < NSTATS; i++) {
		if (s->val[i] < 0) {
			printf("    %s (not readable)\n", stat_names[i]);
			continue;
		}
		printf("    %s %lld", stat_names[i], s->val[i]);
		if (base && base->val[i] >= 0 && s->val[i] != base->val[i])
			printf(" (%+lld)", s->val[i] - base->val[i]);
		putchar('\n');
	}
}

/*
 * Runs REDUCE_SUM over the buffer on the NPU of @fd and waits for it.
 * Returns 0 with the job's report in *@w (its status may still be an
 * error), or -1 if an ioctl failed.
 */
static int npu_sum(int fd, const uint32_t *p, struct gmem_npu_wait *w)
{
	struct gmem_npu_submit sub = {
		.job = {
			.op = GMEM_NPU_OP_REDUCE_SUM,
			.src = U64(p),
			.len = LEN,
		},
	};

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
	return 0;
}

/* Runs REDUCE_SUM and checks its result; true if right. */
static bool check_npu_sum(int fd, const uint32_t *p, uint64_t want)
{
	struct gmem_npu_wait w;

	if (npu_sum(fd, p, &w))
		return false;
	if (w.status) {
		printf("NPU REDUCE_SUM failed: %s at %#llx\n",
		       strerror(-w.status), (unsigned long long)w.fault_addr);
		return false;
	}
	printf("NPU REDUCE_SUM: %#llx, %llu device faults (%s)\n",
	       (unsigned long long)w.result, (unsigned long long)w.faults,
	       w.result == want ? "correct" : "WRONG");
	if (w.result != want)
		printf("  expected %#llx\n", (unsigned long long)want);
	return w.result == want;
}

/* Checks every element on the CPU; true if all are right. */
static bool check_cpu(const uint32_t *p)
{
	size_t i, bad = 0;

	for (i = 0; i < N; i++) {
		if (p[i] == val(i))
			continue;
		if (!bad)
			printf("element %zu = %#x, expected %#x\n", i, p[i],
			       val(i));
		bad++;
	}
	printf("CPU checked all %zu elements: %zu wrong (%s)\n", N, bad,
	       bad ? "WRONG" : "correct");
	return !bad;
}

/* Migrates the buffer to the NPU, or back to host memory; 0 or -1. */
static int prefetch(int fd, uint32_t *p, bool to_host)
{
	struct gmem_npu_prefetch pf = {
		.addr = U64(p),
		.len = LEN,
		.flags = to_host ? GMEM_NPU_PREFETCH_TO_HOST : 0,
	};

	while (ioctl(fd, GMEM_NPU_IOC_PREFETCH, &pf)) {
		if (errno != EINTR) {
			perror("GMEM_NPU_IOC_PREFETCH");
			return -1;
		}
	}
	return 0;
}

int main(void)
{
	struct snapshot prev, cur;
	uint64_t want = expected_sum();
	struct gmem_npu_info info;
	bool ok = true;
	gmemError_t e;
	uint32_t *p;
	size_t i;
	int fd;

	e = gmemMallocShared((void **)&p, LEN);
	if (e) {
		fprintf(stderr, "gmemMallocShared: %s\n", gmemGetErrorString(e));
		return 1;
	}
	for (i = 0; i < N; i++)
		p[i] = val(i);
	printf("mapped %lu MiB MAP_PEER_SHARED; the CPU filled it (host memory)\n",
	       LEN / MiB);
	snapshot_read(&prev);
	snapshot_show("after the CPU filled it", &prev, NULL);

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
	printf("\nopened %s: gmem device %u, caps %#x\n", NPU_DEV,
	       info.dev_id, info.caps);

	/* 1. The NPU's faults bring the blocks into its memory. */
	ok &= check_npu_sum(fd, p, want);
	snapshot_read(&cur);
	snapshot_show("after the NPU read it (devmem_used, to_dev up)", &cur,
		      &prev);
	prev = cur;

	/* 2. The CPU's faults bring them back. */
	printf("\n");
	ok &= check_cpu(p);
	snapshot_read(&cur);
	snapshot_show("after the CPU read it back (to_host, cpu_faults up)",
		      &cur, &prev);
	prev = cur;

	/* 3. Explicitly: to the NPU (and mapped there), then home. */
	printf("\nPREFETCH %lu MiB to %s\n", LEN / MiB, NPU_NAME);
	if (prefetch(fd, p, false))
		ok = false;
	snapshot_read(&cur);
	snapshot_show("after PREFETCH to the NPU (devmem_used, to_dev up)",
		      &cur, &prev);
	prev = cur;
	ok &= check_npu_sum(fd, p, want);

	printf("\nPREFETCH %lu MiB to host memory\n", LEN / MiB);
	if (prefetch(fd, p, true))
		ok = false;
	snapshot_read(&cur);
	snapshot_show("after PREFETCH_TO_HOST (to_host up, no cpu_faults)",
		      &cur, &prev);
	prev = cur;
	ok &= check_cpu(p);
	snapshot_read(&cur);
	snapshot_show("after the CPU read it again (nothing moved)", &cur,
		      &prev);

	/* Freeing the mapping frees whatever device pages it still had. */
	gmemFree(p, LEN);
	close(fd);
	printf("\n%s\n", ok ? "all data checks passed" : "DATA CHECK FAILED");
	return ok ? 0 : 1;
}
