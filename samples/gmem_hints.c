// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_hints: placement hints on /dev/gmem, in CUDA's vocabulary.
 *
 * Three 4 MiB MAP_PEER_SHARED buffers, filled by the CPU, used by the NPU
 * /dev/gmem_npu0, each with the hint a CUDA program would give it:
 *
 *  - a lookup table, GMEM_ADV_SET_READ_MOSTLY: the NPU reads a copy in its
 *    own memory while the host keeps its pages, nothing migrates, and a
 *    CPU update collapses the copy, so the NPU sees it at once;
 *  - weights, GMEM_ADV_PIN to the NPU: moved to its memory now and never
 *    evicted, so a job on them takes no fault;
 *  - scratch, GMEM_ADV_PREFETCH to the NPU, then GMEM_ADV_DISCARD when its
 *    contents are no longer needed: it reads as zeros and frees the NPU's
 *    memory without copying anything home.
 *
 * GMEM_IOC_GET_ATTRS shows each buffer's attributes.  Needs gmem.ko and
 * gmem_npu.ko loaded.  Exits 0 only if every sum and check is right.
 *
 * Build: gcc -O2 -I<kernel headers> gmem_hints.c -o gmem_hints
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/gmem.h>

#define LEN		(4UL << 20)
#define N		(LEN / sizeof(uint32_t))
#define U64(p)		((__u64)(uintptr_t)(p))

static int gfd, npu, dev;

static int advise(void *p, __u32 advice, int d, const char *what)
{
	struct gmem_advise a = { .addr = U64(p), .len = LEN, .advice = advice,
				 .dev = d };

	if (ioctl(gfd, GMEM_IOC_ADVISE, &a) == 0)
		return 0;
	fprintf(stderr, "gmem_hints: %s: %s\n", what, strerror(errno));
	return -1;
}

static void show(void *p, const char *name)
{
	struct gmem_range_attrs q = { .addr = U64(p), .len = LEN };

	if (ioctl(gfd, GMEM_IOC_GET_ATTRS, &q))
		return;
	printf("%-8s preferred %d, read_mostly %u, accessed_by %#llx, pinned %#llx\n",
	       name, q.preferred_location, q.read_mostly,
	       (unsigned long long)q.accessed_by,
	       (unsigned long long)q.pinned);
}

/* Sums @p on the NPU; returns the sum, and the job's faults in *@faults. */
static int64_t npu_sum(void *p, __u64 *faults)
{
	struct gmem_npu_submit s = { .job = { .op = GMEM_NPU_OP_REDUCE_SUM,
					      .src = U64(p), .len = LEN } };
	struct gmem_npu_wait w = { .timeout_ns = -1 };

	if (ioctl(npu, GMEM_NPU_IOC_SUBMIT, &s))
		return -1;
	w.seqno = s.seqno;
	if (ioctl(npu, GMEM_NPU_IOC_WAIT, &w) || w.status)
		return -1;
	*faults = w.faults;
	return w.result;
}

static void *buffer(uint32_t v)
{
	uint32_t *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_PEER_SHARED, -1, 0);

	if (p != MAP_FAILED)
		for (size_t i = 0; i < N; i++)
			p[i] = v;
	return p;
}

int main(void)
{
	struct gmem_npu_info info;
	uint32_t *table, *weights, *scratch;
	int ok = 1;
	__u64 f;

	gfd = open("/dev/gmem", O_RDWR);
	npu = open("/dev/gmem_npu0", O_RDWR);
	if (gfd < 0 || npu < 0 || ioctl(npu, GMEM_NPU_IOC_INFO, &info)) {
		perror("gmem_hints: /dev/gmem, /dev/gmem_npu0 (modules loaded?)");
		return 1;
	}
	dev = info.dev_id;
	table = buffer(1);
	weights = buffer(2);
	scratch = buffer(3);
	if (table == MAP_FAILED || weights == MAP_FAILED ||
	    scratch == MAP_FAILED) {
		perror("gmem_hints: mmap(MAP_PEER_SHARED)");
		return 1;
	}
	if (advise(table, GMEM_ADV_SET_READ_MOSTLY, 0, "read-mostly") ||
	    advise(weights, GMEM_ADV_PIN, dev, "pin") ||
	    advise(scratch, GMEM_ADV_PREFETCH, dev, "prefetch"))
		return 1;
	show(table, "table");
	show(weights, "weights");
	show(scratch, "scratch");

	ok &= npu_sum(table, &f) == (int64_t)N;
	table[0] = 1001;			/* a CPU update */
	ok &= npu_sum(table, &f) == (int64_t)N + 1000;
	printf("table:   duplicated on the NPU, CPU update seen: %s\n",
	       ok ? "yes" : "NO");
	ok &= npu_sum(weights, &f) == 2 * (int64_t)N;
	printf("weights: pinned on the NPU, job faults %llu\n",
	       (unsigned long long)f);
	ok &= f == 0;
	ok &= npu_sum(scratch, &f) == 3 * (int64_t)N && f == 0;
	if (advise(scratch, GMEM_ADV_DISCARD, 0, "discard"))
		return 1;
	ok &= npu_sum(scratch, &f) == 0 && scratch[N - 1] == 0;
	printf("scratch: prefetched, then discarded: reads zeros: %s\n",
	       ok ? "yes" : "NO");
	advise(weights, GMEM_ADV_UNPIN, dev, "unpin");
	printf("gmem_hints: %s\n", ok ? "all checks passed" : "FAILED");
	return ok ? 0 : 1;
}
