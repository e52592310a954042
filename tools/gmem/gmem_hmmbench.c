// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_hmmbench: hmm-tests' own operations timed through whichever HMM
 * test driver provides /dev/hmm_dmirror0 (test_hmm.ko or gmem_dmirror.ko),
 * so that make bench compares the two drivers on the same calls.
 *
 *   gmem_hmmbench measure NAME	one line "HMMOP NAME OP NS" per operation:
 *				the median over REPS of the time it takes on
 *				a fresh LEN-byte buffer (anonymous, private,
 *				filled by the CPU unless said):
 *     read       HMM_DMIRROR_READ of the whole buffer (the device faults
 *                it in, once: cold)
 *     read_warm  the same again: no fault, the device's accesses alone
 *     write      HMM_DMIRROR_WRITE of it, untouched before
 *     to_dev     HMM_DMIRROR_MIGRATE_TO_DEV of it
 *     cpu_back   the CPU reading one word per page after to_dev: each
 *                touch brings device memory back (the driver's
 *                migrate_to_ram)
 *   gmem_hmmbench ratio REF OURS	RATIO lines, one per operation: REF's
 *				time over OURS' (above 1: ours is faster),
 *				from the HMMOP lines on stdin; target >= 1.0.
 *
 * Every copy is checked.  Exit status 0 when everything ran.
 */
#define _GNU_SOURCE
#include "bench_util.h"
#include <lib/test_hmm_uapi.h>

#define LEN	(8 * MiB)
#define REPS	5

static const char *const ops[] = { "read", "read_warm", "write", "to_dev",
				    "cpu_back" };

static int dmirror(int fd, unsigned long req, void *addr, void *ptr)
{
	struct hmm_dmirror_cmd cmd = { .addr = U64(addr), .ptr = U64(ptr),
				       .npages = LEN / 4096 };

	if (ioctl(fd, req, &cmd))
		return fail("ioctl %#lx: %s", req, strerror(errno));
	if (cmd.cpages != LEN / 4096)
		return fail("ioctl %#lx: %llu pages of %lu", req,
			    (unsigned long long)cmd.cpages, LEN / 4096);
	return 0;
}

/* dmirror(), its time into *ns. */
static int timed(int fd, unsigned long req, void *addr, void *ptr, int64_t *ns)
{
	int64_t t0 = now_ns();
	int ret = dmirror(fd, req, addr, ptr);

	*ns = now_ns() - t0;
	return ret;
}

/* One repetition of every operation: their times into ns[]. */
static int measure_once(int fd, __u32 seed, int64_t *ns)
{
	char *buf = map_anon(LEN, false), *mirror = malloc(LEN);
	volatile __u32 *w;
	__u64 sum = 0;
	int64_t t0;
	int ret = -1;
	size_t i;

	if (buf == MAP_FAILED || !mirror)
		goto out;
	fill_pattern(buf, LEN, seed);
	if (timed(fd, HMM_DMIRROR_READ, buf, mirror, &ns[0]) ||
	    timed(fd, HMM_DMIRROR_READ, buf, mirror, &ns[1]))
		goto out;
	if (memcmp(buf, mirror, LEN)) {
		fail("read: the device read other data");
		goto out;
	}
	munmap(buf, LEN);
	buf = map_anon(LEN, false);
	if (buf == MAP_FAILED)
		goto out;
	fill_pattern(mirror, LEN, seed + 1);
	if (timed(fd, HMM_DMIRROR_WRITE, buf, mirror, &ns[2]))
		goto out;
	if (memcmp(buf, mirror, LEN)) {
		fail("write: the CPU reads other data");
		goto out;
	}
	fill_pattern(buf, LEN, seed + 2);
	if (timed(fd, HMM_DMIRROR_MIGRATE_TO_DEV, buf, mirror, &ns[3]))
		goto out;
	t0 = now_ns();
	for (w = (volatile __u32 *)buf, i = 0; i < LEN / 4; i += 1024)
		sum += w[i];
	ns[4] = now_ns() - t0;
	(void)sum;
	if (memcmp(buf, mirror, LEN)) {
		fail("to_dev: the device or the CPU reads other data");
		goto out;
	}
	ret = 0;
out:
	if (buf != MAP_FAILED)
		munmap(buf, LEN);
	free(mirror);
	return ret;
}

static int measure(const char *name)
{
	int64_t ns[ARRAY_SIZE(ops)][REPS];
	int fd = open("/dev/hmm_dmirror0", O_RDWR);
	size_t o;
	int r;

	if (fd < 0)
		return fail("/dev/hmm_dmirror0: %s", strerror(errno));
	for (r = 0; r < REPS; r++) {
		int64_t one[ARRAY_SIZE(ops)];

		progress(name);
		if (measure_once(fd, 0x5eed0000 + 16 * r, one)) {
			close(fd);
			return -1;
		}
		for (o = 0; o < ARRAY_SIZE(ops); o++)
			ns[o][r] = one[o];
	}
	close(fd);
	for (o = 0; o < ARRAY_SIZE(ops); o++) {
		qsort(ns[o], REPS, sizeof(ns[o][0]), cmp_i64);
		printf("HMMOP %s %s %lld\n", name, ops[o],
		       (long long)ns[o][REPS / 2]);
	}
	return 0;
}

static int ratios(const char *ref, const char *ours)
{
	double t[2][ARRAY_SIZE(ops)] = { { 0 } };
	char who[64], op[64];
	long long v;
	size_t o;

	while (scanf(" HMMOP %63s %63s %lld", who, op, &v) == 3) {
		for (o = 0; o < ARRAY_SIZE(ops); o++) {
			if (strcmp(op, ops[o]))
				continue;
			if (!strcmp(who, ref))
				t[0][o] = v;
			else if (!strcmp(who, ours))
				t[1][o] = v;
		}
	}
	for (o = 0; o < ARRAY_SIZE(ops); o++) {
		char name[64];

		if (!t[0][o] || !t[1][o])
			return fail("no %s time of %s and %s", ops[o], ref, ours);
		snprintf(name, sizeof(name), "hmm_%s_%s_vs_%s", ops[o], ours,
			 ref);
		printf("# %s: %s %.0f us, %s %.0f us (8 MiB)\n", ops[o], ref,
		       t[0][o] / 1e3, ours, t[1][o] / 1e3);
		ratio(name, t[0][o] / t[1][o], '>', 1.0);
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "measure"))
		return measure(argv[2]) ? 1 : 0;
	if (argc == 4 && !strcmp(argv[1], "ratio"))
		return ratios(argv[2], argv[3]) ? 1 : 0;
	fprintf(stderr, "usage: %s measure NAME | ratio REF OURS < HMMOP lines\n",
		argv[0]);
	return 2;
}
