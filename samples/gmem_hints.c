// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_hints: placement hints on /dev/gmem, in CUDA's vocabulary.
 *
 * Three 4 MiB MAP_PEER_SHARED buffers, filled by the CPU, used by the NPU
 * /dev/gmem_npu0, each with the hint a CUDA program would give it:
 *
 *  - a lookup table, gmemMemAdviseSetReadMostly: the NPU reads a copy in its
 *    own memory while the host keeps its pages, nothing migrates, and a
 *    CPU update collapses the copy, so the NPU sees it at once;
 *  - weights, gmemMemAdvisePin to the NPU: moved to its memory now and never
 *    evicted, so a job on them takes no fault;
 *  - scratch, gmemMemPrefetch to the NPU, then gmemMemAdviseDiscard when its
 *    contents are no longer needed: it reads as zeros and frees the NPU's
 *    memory without copying anything home.
 *
 * gmemMemRangeGetAttributes shows each buffer's attributes.  Memory and
 * hints go through libgmem (<gmem.h>); the NPU's jobs through its own
 * ioctls.  Needs gmem.ko and gmem_npu.ko loaded.  Exits 0 only if every
 * sum and check is right.
 *
 * Build: gcc -O2 -I<kernel headers> gmem_hints.c $(pkg-config --cflags --libs gmem)
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
#include <gmem.h>

#define LEN		(4UL << 20)
#define N		(LEN / sizeof(uint32_t))
#define U64(p)		((__u64)(uintptr_t)(p))

static int npu, dev;

static int advise(void *p, gmemMemoryAdvise advice, int d, const char *what)
{
	gmemError_t e = gmemMemAdvise(p, LEN, advice, d);

	if (e == gmemSuccess)
		return 0;
	fprintf(stderr, "gmem_hints: %s: %s\n", what, gmemGetErrorString(e));
	return -1;
}

static void show(void *p, const char *name)
{
	gmemMemRangeAttribute attrs[] = {
		gmemMemRangeAttributePreferredLocation,
		gmemMemRangeAttributeReadMostly,
		gmemMemRangeAttributeAccessedBy,
		gmemMemRangeAttributePinnedTo,
	};
	int preferred, read_mostly, accessed_by[2], pinned[2];
	void *data[] = { &preferred, &read_mostly, accessed_by, pinned };
	size_t sizes[] = { sizeof(preferred), sizeof(read_mostly),
			   sizeof(accessed_by), sizeof(pinned) };

	if (gmemMemRangeGetAttributes(data, sizes, attrs, 4, p, LEN))
		return;
	printf("%-8s preferred %d, read_mostly %d, accessed_by %d, pinned to %d\n",
	       name, preferred, read_mostly, accessed_by[0], pinned[0]);
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
	gmemError_t e;
	uint32_t *p;

	e = gmemMallocShared((void **)&p, LEN);
	if (e) {
		fprintf(stderr, "gmem_hints: gmemMallocShared: %s\n",
			gmemGetErrorString(e));
		return NULL;
	}
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

	gmemDeviceProp prop;
	gmemError_t e;

	npu = open("/dev/gmem_npu0", O_RDWR);
	if (npu < 0 || ioctl(npu, GMEM_NPU_IOC_INFO, &info)) {
		perror("gmem_hints: /dev/gmem_npu0 (gmem_npu.ko loaded?)");
		return 1;
	}
	dev = info.dev_id;
	e = gmemGetDeviceProperties(&prop, dev);
	if (e) {
		fprintf(stderr, "gmem_hints: device %d: %s\n", dev, gmemGetErrorString(e));
		return 1;
	}
	printf("device %d: %s, %zu MiB of memory\n", prop.id, prop.name,
	       prop.totalGlobalMem >> 20);
	table = buffer(1);
	weights = buffer(2);
	scratch = buffer(3);
	if (!table || !weights || !scratch)
		return 1;
	if (advise(table, gmemMemAdviseSetReadMostly, 0, "read-mostly") ||
	    advise(weights, gmemMemAdvisePin, dev, "pin"))
		return 1;
	e = gmemMemPrefetch(scratch, LEN, dev);
	if (e) {
		fprintf(stderr, "gmem_hints: prefetch: %s\n", gmemGetErrorString(e));
		return 1;
	}
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
	if (advise(scratch, gmemMemAdviseDiscard, 0, "discard"))
		return 1;
	ok &= npu_sum(scratch, &f) == 0 && scratch[N - 1] == 0;
	printf("scratch: prefetched, then discarded: reads zeros: %s\n",
	       ok ? "yes" : "NO");
	advise(weights, gmemMemAdviseUnpin, dev, "unpin");
	gmemFree(table, LEN);
	gmemFree(weights, LEN);
	gmemFree(scratch, LEN);
	printf("gmem_hints: %s\n", ok ? "all checks passed" : "FAILED");
	return ok ? 0 : 1;
}
