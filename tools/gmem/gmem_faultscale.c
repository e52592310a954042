// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_faultscale: gmem's own cost of serving device faults, in wall time
 * per fault, as the device batches them and as devices are added.
 *
 * The time is gmem's: debugfs gmem/stats fault_service_ns (the time spent
 * in gmem_dev_fault() and gmem_dev_fault_batch()) over fault_entries (the
 * faults the devices reported), both read around the measured job.
 *
 *  a. Batches of distinct faults.  One NPU TOUCH read job over a fresh
 *     8 MiB MAP_PEER_SHARED mapping on a context that maps in place, every
 *     other page made read-only so that each page is a VMA of its own and
 *     each fault serves one page: the NPU runs TOUCH as 64 threads, so a
 *     wave's 64 faults, all different, sit in its fault buffer together.
 *     With gmem_npu's fault_batch=64 the buffer hands them to gmem in one
 *     call, with fault_batch=1 in 64.  Ratio: gmem's ns per fault, batch
 *     of 64 / batch of 1 (target <= 0.3).
 *  a'. Batches of duplicates (information).  The same over a fresh 64 MiB
 *     mapping without the holes: a wave's 64 faults are pages of one
 *     2 MiB block.  A batch of 64 serves the block once and answers the
 *     rest; with batches of 1 each fault is a call of its own, and all
 *     but the first find the block mapped.  Shown: gmem's time per fault
 *     the device took (INFO faults), both ways.
 *  b. Devices.  A fresh CPU-filled 8 MiB buffer read by one TOUCH job on
 *     npu0 with the default placement (each fault migrates its block to
 *     npu0; the migration invalidates the block on every device of the
 *     address space), with the process attached to npu0 only and to all
 *     eight NPUs (npu1-7 idle), in turn.  Ratio: ns per fault, 8 NPUs / 1
 *     (target <= 1.2).  Shown beside it, per fault: the part of the time
 *     spent migrating and removing device mappings, and the drivers'
 *     invalidate ops called (idle devices map nothing, so gmem skips
 *     them).  The sum is checked in every run.
 *
 * Each measurement is repeated REPS times, the median reported.  Exit
 * status 0 when everything ran, 1 on an error.
 *
 * Run as root with debugfs, gmem.ko and gmem_npu.ko num_devices=8 loaded
 * (make bench does, after gmem_bench and gmem_policy).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_util.h"

#define REPS		5
#define BATCH_LEN	(64 * MiB)
#define HOLES_LEN	(8 * MiB)
#define DEV_LEN		(8 * MiB)
#define NPUS		8

static int set_fault_batch(int n)
{
	return set_module_param("gmem_npu", "fault_batch", n);
}

/* Faults @npu put in its fault buffer so far (INFO), or -1 (reported). */
static long long npu_faults(int npu)
{
	struct gmem_npu_info info = { 0 };

	if (ioctl(npu, GMEM_NPU_IOC_INFO, &info))
		return fail("GMEM_NPU_IOC_INFO: %s", strerror(errno));
	return info.faults;
}

/*
 * gmem's service time per fault gmem was given (*ns) and per fault the
 * device took (*dev_ns, if not NULL) of one TOUCH read job.
 */
static int touch_timed(int npu, void *buf, size_t len, __u64 want,
		       double *ns, double *dev_ns)
{
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_TOUCH, .dst = U64(buf),
				    .len = len };
	long long e0 = gmem_stat("fault_entries"),
		  t0 = gmem_stat("fault_service_ns"), f0 = npu_faults(npu);
	long long e1, t1, f1;
	struct gmem_npu_wait w;

	if (e0 < 0 || t0 < 0 || f0 < 0)
		return fail("no fault_entries/fault_service_ns in %s",
			    GMEM_STATS);
	if (npu_run(npu, &job, &w))
		return -1;
	e1 = gmem_stat("fault_entries");
	t1 = gmem_stat("fault_service_ns");
	f1 = npu_faults(npu);
	if (w.result != want)
		return fail("TOUCH summed to %llu, not %llu",
			    (unsigned long long)w.result,
			    (unsigned long long)want);
	if (e1 <= e0)
		return fail("a TOUCH of fresh memory reported no fault");
	*ns = (double)(t1 - t0) / (e1 - e0);
	if (dev_ns)
		*dev_ns = f1 > f0 ? (double)(t1 - t0) / (f1 - f0) : 0;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median_d(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/*
 * (a) with @holes, else (a'): gmem's ns per fault it was given (*med) and
 * per fault the device took (*dev) with batches of @batch.
 */
static int bench_batch(int npu, int batch, bool holes, double *med,
		       double *dev)
{
	size_t len = holes ? HOLES_LEN : BATCH_LEN, ps = getpagesize();
	double ns[REPS], per[REPS];

	if (set_fault_batch(batch))
		return -1;
	for (int r = 0; r < REPS; r++) {
		char *buf = map_peer_block(len);
		int ret = 0;

		if (!buf)
			return -1;
		for (size_t off = ps; holes && !ret && off < len; off += 2 * ps)
			if (mprotect(buf + off, ps, PROT_READ))
				ret = fail("mprotect: %s", strerror(errno));
		if (!ret)
			ret = touch_timed(npu, buf, len, 0, &ns[r], &per[r]);
		munmap(buf, len);
		if (ret)
			return -1;
	}
	*med = median_d(ns, REPS);
	*dev = median_d(per, REPS);
	return 0;
}

/* The sum of the first word of each page of @p. */
static __u64 first_words(const char *p, size_t len)
{
	__u64 sum = 0;

	for (size_t off = 0; off < len; off += getpagesize())
		sum += *(const __u64 *)(p + off);
	return sum;
}

/* Where (b)'s time per fault goes: medians over the repetitions. */
struct dev_cost {
	double ns;		/* gmem's service, all of it */
	double migrate_ns;	/* of which migrating (room, invalidation) */
	double invalidate_ns;	/* of which removing device mappings */
	double driver_calls;	/* drivers' invalidate ops called */
};

static const char *const dev_cost_stats[] = {
	"fault_entries", "migrate_ns", "invalidate_ns", "device_invalidations",
};

static int read_dev_cost(long long *v)
{
	for (int i = 0; i < 4; i++) {
		v[i] = gmem_stat(dev_cost_stats[i]);
		if (v[i] < 0)
			return fail("no %s in %s", dev_cost_stats[i],
				    GMEM_STATS);
	}
	return 0;
}

/* One (b) measurement on npu0 (fd @npu, device @dev_id), into rep @r. */
static int devices_once(int npu, __u32 dev_id, int r, double (*v)[REPS])
{
	char *buf = map_peer_block(DEV_LEN);
	long long v0[4], v1[4];
	double faults;
	__u64 want;
	int ret;

	if (!buf)
		return -1;
	fill_pattern(buf, DEV_LEN, 77 + r);
	want = first_words(buf, DEV_LEN);
	ret = read_dev_cost(v0) ||
	      touch_timed(npu, buf, DEV_LEN, want, &v[0][r], NULL) ||
	      read_dev_cost(v1);
	munmap(buf, DEV_LEN);
	if (ret)
		return -1;
	faults = v1[0] - v0[0];
	for (int i = 1; i < 4; i++)
		v[i][r] = (v1[i] - v0[i]) / faults;
	return wait_devmem_free(dev_id);
}

/* Opens (@open) or closes npu1 and up, attaching or detaching them. */
static int attach_others(int *fds, bool open_them)
{
	char path[32];

	for (int i = 1; i < NPUS; i++) {
		if (!open_them) {
			close(fds[i]);
			fds[i] = -1;
			continue;
		}
		snprintf(path, sizeof(path), "/dev/gmem_npu%d", i);
		fds[i] = open(path, O_RDWR);
		if (fds[i] < 0)
			return fail("open %s: %s (load gmem_npu.ko num_devices=%d)",
				    path, strerror(errno), NPUS);
	}
	return 0;
}

static void dev_cost_median(double (*v)[REPS], struct dev_cost *c)
{
	c->ns = median_d(v[0], REPS);
	c->migrate_ns = median_d(v[1], REPS);
	c->invalidate_ns = median_d(v[2], REPS);
	c->driver_calls = median_d(v[3], REPS);
}

/*
 * (b): gmem's cost per migrating fault on npu0 with it alone attached and
 * with all eight, in turn and each first every other time, so that drift
 * and order weigh on both.
 */
static int bench_devices(int *fds, struct dev_cost *one, struct dev_cost *all)
{
	double v1[4][REPS], v8[4][REPS];
	struct gmem_npu_info info = { 0 };

	if (ioctl(fds[0], GMEM_NPU_IOC_INFO, &info))
		return fail("GMEM_NPU_IOC_INFO: %s", strerror(errno));
	for (int r = 0; r < REPS; r++) {
		/* Each first in every other repetition. */
		bool alone_first = r % 2 == 0;

		if (alone_first && devices_once(fds[0], info.dev_id, r, v1))
			return -1;
		if (attach_others(fds, true) ||
		    devices_once(fds[0], info.dev_id, r, v8))
			return -1;
		attach_others(fds, false);
		if (!alone_first && devices_once(fds[0], info.dev_id, r, v1))
			return -1;
	}
	dev_cost_median(v1, one);
	dev_cost_median(v8, all);
	return 0;
}

static void print_dev_cost(const char *what, const struct dev_cost *c)
{
	printf("%-48s %14.0f %14.0f %14.0f %14.2f\n", what, c->ns,
	       c->migrate_ns, c->invalidate_ns, c->driver_calls);
}

int main(void)
{
	double h1, h64, hd1, hd64, b1, b64, f1, f64;
	struct dev_cost d1, d8;
	int fds[NPUS], host, ret = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < NPUS; i++)
		fds[i] = -1;
	host = open("/dev/gmem_npu0", O_RDWR);
	if (host < 0) {
		fail("open /dev/gmem_npu0: %s", strerror(errno));
		return 1;
	}
	if (set_placement(host, GMEM_NPU_PLACE_HOST))
		return 1;

	progress("(a) distinct faults of 64-thread TOUCH waves, batches of 64 and of 1");
	if (bench_batch(host, 64, true, &h64, &hd64) ||
	    bench_batch(host, 1, true, &h1, &hd1))
		ret = 1;
	progress("(a') faults of 64-thread TOUCH waves on one block, batches of 64 and of 1");
	if (!ret && (bench_batch(host, 64, false, &b64, &f64) ||
		     bench_batch(host, 1, false, &b1, &f1)))
		ret = 1;
	set_fault_batch(256);
	close(host);
	if (ret)
		return 1;

	progress("(b) migrating faults on npu0 with 1 and 8 NPUs attached");
	fds[0] = open("/dev/gmem_npu0", O_RDWR);
	if (fds[0] < 0) {
		fail("open /dev/gmem_npu0: %s", strerror(errno));
		return 1;
	}
	ret = bench_devices(fds, &d1, &d8);
	for (int i = 0; i < NPUS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (ret)
		return 1;

	printf("\n%-48s %14s %14s\n", "gmem fault service, ns (median)",
	       "per gmem fault", "per NPU fault");
	printf("%-48s %14.0f %14.0f\n", "(a) distinct pages, fault_batch=64",
	       h64, hd64);
	printf("%-48s %14.0f %14.0f\n", "(a) distinct pages, fault_batch=1",
	       h1, hd1);
	printf("%-48s %14.0f %14.0f\n", "(a') pages of one block, fault_batch=64",
	       b64, f64);
	printf("%-48s %14.0f %14.0f\n", "(a') pages of one block, fault_batch=1",
	       b1, f1);
	printf("\n%-48s %14s %14s %14s %14s\n",
	       "(b) migrating faults, per fault (median)", "service ns",
	       "migrate ns", "invalidate ns", "driver invals");
	print_dev_cost("1 NPU attached", &d1);
	print_dev_cost("8 NPUs attached", &d8);
	printf("\n");
	ratio("fault_service_batch64_vs_1", h64 / h1, '<', 0.3);
	ratio("fault_service_dups_batch64_vs_1", f64 / f1, '<', 0);
	ratio("fault_service_8npus_vs_1", d8.ns / d1.ns, '<', 1.2);
	return 0;
}
