// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_policy: gmem's placement policy against the baselines a user would
 * otherwise pick and against the optimum, in the NPU's modelled device
 * time (gmem_npu_model.rs: what the work would take behind a PCIe link).
 *
 * Workloads, each over a CPU-filled, 2 MiB-aligned MAP_PEER_SHARED buffer
 * of 0.5, 1, 1.5, 2 and 4 times one NPU's memory:
 *
 *  stream   NPU 0 sweeps the buffer (one REDUCE_SUM of the whole).
 *  rand4k   NPU 0 reads 4 KiB chunks drawn uniformly (GATHER), 64 per
 *           2 MiB block of the buffer per epoch.
 *  rand64k  the same with 64 KiB chunks.
 *  hotcold  as rand4k, 90% of the draws in the first tenth of the buffer
 *           (whole blocks), in ten rounds per epoch of hot then cold.
 *  share2   NPU 0 then NPU 1 sweep the same buffer (two processes' worth
 *           of devices on one address space).
 *  cpu_alt  the CPU increments the first u32 of every page, then NPU 0
 *           sweeps the buffer.
 *
 * Each is run in four modes: "default" (gmem's policy, no hints), "hints"
 * (the hints a CUDA programmer would give it, below), "naive_lru" (gmem.ko
 * naive_lru=1: a naive driver, every fault migrates, LRU eviction) and
 * "in_place" (every context GMEM_NPU_PLACE_HOST: zero-copy).  A run is
 * WARM_EPOCHS untimed epochs, then TIMED_EPOCHS epochs over which the
 * NPUs' clocks are read (their sum: the device time of the work, the copy
 * engines' included, CPU fault-backs too).  Every result is checked: each
 * sum against the CPU's.  Figures are modelled MiB/s: bytes the devices
 * read in the timed epochs over their device time.  On the random
 * workloads naive_lru's epochs are NAIVE_SHORTER times shorter (the same
 * draws, fewer of them: every miss moves a whole block, which would take
 * hours of wall time here), so it is compared per byte read.
 *
 * Hints: stream and rand*: prefetch what fits (all, or as much as the
 * NPU's memory holds) and accessed-by the rest; hotcold: prefetch and
 * preferred location on the hot part, then as stream; share2:
 * read-mostly; cpu_alt: preferred location host, accessed-by NPU 0.
 *
 * The optimum is computed from the timed epochs' own trace (the bytes
 * each device read of each block, and which blocks the CPU wrote before a
 * device read them), with the model's parameters: the best placement
 * chosen in hindsight, each device holding the blocks (up to its memory)
 * that save most over reading them in place, copies of read-only data
 * allowed on both devices, the placement at the start free; a resident
 * block costs its reads at dev_gbps plus one copy over the link after
 * each CPU write, an in-place one its reads at link_gbps (a CPU write
 * to a page mapped in place changes nothing the device maps, so costs no
 * fault; faults are not counted at all).  These workloads are
 * stationary (sweeps repeat, draws are independent), for which moving
 * blocks during the epochs cannot beat the best fixed placement: a block
 * moved in is paid for with a copy and displaces one used as much.
 *
 * Printed: a row per workload, factor and mode; "policy <workload>
 * <factor> <mode> <modelled MiB/s>" lines (optimal too) for
 * scripts/bench.sh to plot; the RATIO block:
 *  policy_<w>_<f>x_vs_optimal     default / optimum time: <= 1.15 at 0.5x
 *                                 and 1x, <= 1.3 above;
 *  policy_<w>_<f>x_vs_naive_lru   default / naive, per byte: <= 0.5 at 2x
 *                                 and 4x on stream and hotcold, else 1.05;
 *  policy_<w>_<f>x_vs_in_place    <= 1.05;
 *  policy_<w>_<f>x_hints_vs_default <= 1.05;
 *  oversub_<mode>_2x_vs_0.5x      stream's wall-time MiB/s at 2x over
 *                                 0.5x: >= 0.5 for default and hints.
 *
 * Exit status: 0 when everything ran, even if a target is missed; 1 on an
 * error (wrong data, a failed call), after the rest ran and printed.  Run as root with debugfs, gmem.ko and
 * gmem_npu.ko num_devices=2 dram_mib=160 loaded (make bench).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_util.h"

#define NPUS			2
/*
 * Enough for a block to leave a device three times, which the thrashing
 * rule needs before it holds the block: the figures are the steady state.
 */
#define WARM_EPOCHS		4
#define TIMED_EPOCHS		2
#define DRAWS_PER_BLOCK		64
#define NAIVE_SHORTER		32
#define HOTCOLD_ROUNDS		10
#define SPARE			(256 * MiB)	/* free memory a run leaves */

static const double factors[] = { 0.5, 1, 1.5, 2, 4 };
#define NFACTORS		ARRAY_SIZE(factors)

enum mode { M_DEFAULT, M_HINTS, M_NAIVE, M_IN_PLACE, NMODES };
static const char *const mode_name[NMODES] = {
	"default", "hints", "naive_lru", "in_place",
};

enum workload { W_STREAM, W_RAND4K, W_RAND64K, W_HOTCOLD, W_SHARE2,
		W_CPU_ALT, NWORKLOADS };
static const char *const workload_name[NWORKLOADS] = {
	"stream", "rand4k", "rand64k", "hotcold", "share2", "cpu_alt",
};

/* gmem/stats counters whose rise explains a row. */
static const char *const stat_keys[] = {
	"migrated_to_dev", "evictions", "thrash_pins", "counter_migrations",
	"dup_pages",
};
#define NSTATS			ARRAY_SIZE(stat_keys)

static size_t page_size;
static size_t npu_devmem[NPUS];		/* bytes of each NPU's memory */
static struct gmem_npu_info npu_info[NPUS];

/* One workload at one factor in one mode, while it runs. */
struct run {
	enum workload w;
	enum mode m;
	char *buf;
	size_t len, blocks;
	int fd[NPUS];
	__u32 seed;			/* of the buffer's pattern */
	__u64 draw_seed;		/* of the next GATHER */
	size_t chunk;			/* of the GATHERs */
	__u64 *chunk_sum;		/* the CPU's sum of each chunk */
	__u64 sum;			/* of the whole buffer, as it is */
	bool timed;
	/* The timed epochs' trace: bytes each device read of each block. */
	double *bytes[NPUS];
	/* Device reads of a block the CPU wrote since the device's last. */
	unsigned int *rewritten[NPUS];
	bool *dirty[NPUS];		/* CPU-written since that device read */
	__u64 faults;
};

/* What a finished run measured. */
struct result {
	bool done;
	size_t len;
	double model_ns;		/* of the timed epochs */
	double wall_ns;
	double bytes;			/* the devices read in them */
	double optimal_ns;		/* for the default's trace */
	__u64 faults;
	long long rise[NSTATS];		/* -1: no such counter */
	long long warm[NSTATS];		/* the same over the warm epochs */
};

static struct result results[NWORKLOADS][NFACTORS][NMODES];

static double model_mib_per_s(const struct result *r)
{
	return r->bytes / MiB / (r->model_ns / 1e9);
}

/* A device read @bytes of the block holding offset @off. */
static void trace(struct run *r, int d, size_t off, size_t bytes)
{
	size_t b = off / BLOCK;

	if (!r->timed)
		return;
	r->bytes[d][b] += bytes;
	if (r->dirty[d][b])
		r->rewritten[d][b]++;
	r->dirty[d][b] = false;
}

/* The CPU wrote the block holding offset @off. */
static void trace_cpu(struct run *r, size_t off)
{
	for (int d = 0; d < NPUS; d++)
		r->dirty[d][off / BLOCK] = r->timed;
}

/* NPU @d sums the whole buffer; the sum must be the CPU's. */
static int sweep(struct run *r, int d)
{
	__u64 sum = 0;

	if (npu_sum(r->fd[d], r->buf, r->len, &sum, &r->faults))
		return -1;
	if (sum != r->sum)
		return fail("%s: NPU %d swept %llu, the CPU has %llu",
			    workload_name[r->w], d, (unsigned long long)sum,
			    (unsigned long long)r->sum);
	for (size_t off = 0; off < r->len; off += BLOCK)
		trace(r, d, off, BLOCK);
	return 0;
}

/*
 * NPU 0 GATHERs @n chunks from [@first, @first + @len) of the buffer; the
 * sum must be what the CPU's chunk sums add up to.
 */
static int gather(struct run *r, size_t first, size_t len, __u64 n)
{
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_GATHER,
				    .dst = r->draw_seed++,
				    .src = U64(r->buf + first),
				    .src2 = r->chunk, .len = len, .value = n };
	struct gmem_npu_wait w;
	__u64 want = 0;

	if (n == 0)
		return 0;
	for (__u64 k = 0; k < n; k++) {
		size_t off = first + gmem_npu_gather_offset(&job, k);

		want += r->chunk_sum[off / r->chunk];
		trace(r, 0, off, r->chunk);
	}
	if (npu_run(r->fd[0], &job, &w))
		return -1;
	r->faults += w.faults;
	if (w.result != want)
		return fail("%s: GATHER summed %llu, the CPU %llu",
			    workload_name[r->w], (unsigned long long)w.result,
			    (unsigned long long)want);
	return 0;
}

/* Draws per epoch over @len bytes. */
static __u64 draws(const struct run *r, size_t len)
{
	__u64 n = len / BLOCK * DRAWS_PER_BLOCK;

	return r->m == M_NAIVE ? (n + NAIVE_SHORTER - 1) / NAIVE_SHORTER : n;
}

/* The hot part of hotcold: a tenth, in whole blocks. */
static size_t hot_len(const struct run *r)
{
	return whole_blocks(r->len / 10);
}

static int hotcold_epoch(struct run *r)
{
	size_t hot = hot_len(r);
	__u64 n = draws(r, r->len);

	for (int i = 0; i < HOTCOLD_ROUNDS; i++) {
		__u64 per = n / HOTCOLD_ROUNDS;

		if (gather(r, 0, hot, per * 9 / 10) ||
		    gather(r, hot, r->len - hot, per - per * 9 / 10))
			return -1;
	}
	return 0;
}

/* The CPU increments the first u32 of every page (the sum follows). */
static void cpu_update(struct run *r)
{
	for (size_t off = 0; off < r->len; off += page_size) {
		__u32 *p = (__u32 *)(r->buf + off);
		__u32 old = *p;

		*p = old + 1;
		r->sum = r->sum - old + (__u32)(old + 1);
		trace_cpu(r, off);
	}
}

static int epoch(struct run *r)
{
	switch (r->w) {
	case W_STREAM:
		return sweep(r, 0);
	case W_RAND4K:
	case W_RAND64K:
		return gather(r, 0, r->len, draws(r, r->len));
	case W_HOTCOLD:
		return hotcold_epoch(r);
	case W_SHARE2:
		return sweep(r, 0) || sweep(r, 1) ? -1 : 0;
	case W_CPU_ALT:
		cpu_update(r);
		return sweep(r, 0);
	default:
		return fail("no workload %d", r->w);
	}
}

/*
 * Prefetch what fits of [@p, @p + @len) to NPU 0 (its whole memory),
 * accessed-by the rest.
 */
static int hint_fit(char *p, size_t len)
{
	size_t fit = len <= npu_devmem[0] ? len : npu_devmem[0] / BLOCK * BLOCK;
	int id = npu_info[0].dev_id;

	if (advise(p, fit, GMEM_ADV_PREFETCH, id))
		return -1;
	if (fit < len && advise(p + fit, len - fit, GMEM_ADV_SET_ACCESSED_BY, id))
		return -1;
	return 0;
}

static int hint(struct run *r)
{
	int id = npu_info[0].dev_id;
	size_t hot;

	switch (r->w) {
	case W_HOTCOLD:
		/* The hot tenth first: the fit prefetched starts there. */
		hot = hot_len(r);
		if (advise(r->buf, hot, GMEM_ADV_SET_PREFERRED_LOCATION, id))
			return -1;
		return hint_fit(r->buf, r->len);
	case W_SHARE2:
		return advise(r->buf, r->len, GMEM_ADV_SET_READ_MOSTLY, 0);
	case W_CPU_ALT:
		if (advise(r->buf, r->len, GMEM_ADV_SET_PREFERRED_LOCATION,
			   GMEM_DEV_HOST))
			return -1;
		return advise(r->buf, r->len, GMEM_ADV_SET_ACCESSED_BY, id);
	default:
		return hint_fit(r->buf, r->len);
	}
}

/* Enters (@on) or leaves the run's mode. */
static int mode_set(struct run *r, bool on)
{
	int ret = 0;

	if (r->m == M_NAIVE)
		return set_gmem_param("naive_lru", on);
	if (r->m != M_IN_PLACE)
		return 0;
	for (int d = 0; d < NPUS; d++)
		if (set_placement(r->fd[d], on ? GMEM_NPU_PLACE_HOST :
				  GMEM_NPU_PLACE_MIGRATE))
			ret = -1;
	return ret;
}

static int stats(long long *v)
{
	for (size_t k = 0; k < NSTATS; k++) {
		int ret = gmem_stat_get(stat_keys[k], &v[k]);

		if (ret < 0)
			return -1;
		if (ret)
			v[k] = -1;
	}
	return 0;
}

/* The sum of the NPUs' clocks, or -1 (reported). */
static int64_t clocks(struct run *r)
{
	int64_t sum = 0;

	for (int d = 0; d < NPUS; d++) {
		int64_t c = npu_clock(r->fd[d]);

		if (c < 0)
			return -1;
		sum += c;
	}
	return sum;
}

/* Descending doubles, for qsort(). */
static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x < y) - (x > y);
}

/*
 * The optimum of the run's trace on NPU @d: every block in place, less
 * the savings of the (up to) device-memory-many blocks that save most
 * when resident.
 */
static double optimal_ns(const struct run *r, int d)
{
	const struct gmem_npu_info *in = &npu_info[d];
	double *save = calloc(r->blocks, sizeof(*save));
	size_t cap = npu_devmem[d] / BLOCK;
	double t = 0;

	if (!save)
		return -1;
	for (size_t b = 0; b < r->blocks; b++) {
		double bytes = r->bytes[d][b];
		double in_place = bytes / in->link_gbps;
		double resident = bytes / in->dev_gbps +
				  r->rewritten[d][b] * (double)BLOCK / in->link_gbps;

		t += in_place;
		save[b] = in_place - resident;
	}
	qsort(save, r->blocks, sizeof(*save), cmp_desc);
	for (size_t b = 0; b < r->blocks && b < cap && save[b] > 0; b++)
		t -= save[b];
	free(save);
	return t;
}

/* The CPU fills the buffer and sums it, and its chunks for GATHER. */
static void fill(struct run *r)
{
	r->sum = fill_pattern(r->buf, r->len, r->seed);
	if (!r->chunk_sum)
		return;
	for (size_t c = 0; c < r->len / r->chunk; c++) {
		const __u32 *u = (const __u32 *)(r->buf + c * r->chunk);
		__u64 s = 0;

		for (size_t i = 0; i < r->chunk / 4; i++)
			s += u[i];
		r->chunk_sum[c] = s;
	}
}

static int run_alloc(struct run *r)
{
	r->buf = map_peer_block(r->len);
	if (!r->buf)
		return -1;
	if (r->w == W_RAND4K || r->w == W_HOTCOLD)
		r->chunk = 4096;
	else if (r->w == W_RAND64K)
		r->chunk = 64 * 1024;
	if (r->chunk) {
		r->chunk_sum = calloc(r->len / r->chunk, sizeof(__u64));
		if (!r->chunk_sum)
			return fail("out of memory");
	}
	for (int d = 0; d < NPUS; d++) {
		r->bytes[d] = calloc(r->blocks, sizeof(double));
		r->rewritten[d] = calloc(r->blocks, sizeof(unsigned int));
		r->dirty[d] = calloc(r->blocks, sizeof(bool));
		if (!r->bytes[d] || !r->rewritten[d] || !r->dirty[d])
			return fail("out of memory");
	}
	for (int d = 0; d < NPUS; d++) {
		char path[32];

		snprintf(path, sizeof(path), "/dev/gmem_npu%d", d);
		r->fd[d] = open(path, O_RDWR);
		if (r->fd[d] < 0)
			return fail("open %s: %s", path, strerror(errno));
	}
	return 0;
}

static void run_free(struct run *r)
{
	if (r->buf)
		munmap(r->buf, r->len);	/* frees its device memory */
	for (int d = 0; d < NPUS; d++) {
		if (r->fd[d] >= 0)
			close(r->fd[d]);
		free(r->bytes[d]);
		free(r->rewritten[d]);
		free(r->dirty[d]);
	}
	free(r->chunk_sum);
}

/* The timed epochs of a run into @res. */
static int measure(struct run *r, struct result *res)
{
	long long start[NSTATS], before[NSTATS], after[NSTATS];
	int64_t c0, c1, t0;
	int ret;

	if (stats(start))
		return -1;
	for (int e = 0; e < WARM_EPOCHS; e++)
		if (epoch(r))
			return -1;
	if (stats(before))
		return -1;
	c0 = clocks(r);
	if (c0 < 0)
		return -1;
	r->timed = true;
	r->faults = 0;
	t0 = now_ns();
	for (int e = 0; e < TIMED_EPOCHS; e++)
		if (epoch(r))
			return -1;
	res->wall_ns = now_ns() - t0;
	c1 = clocks(r);
	ret = c1 < 0 || stats(after) ? -1 : 0;
	if (ret)
		return -1;
	res->model_ns = c1 - c0;
	res->faults = r->faults;
	res->bytes = 0;
	for (int d = 0; d < NPUS; d++)
		for (size_t b = 0; b < r->blocks; b++)
			res->bytes += r->bytes[d][b];
	res->optimal_ns = 0;
	for (int d = 0; d < NPUS; d++) {
		double o = optimal_ns(r, d);

		if (o < 0)
			return fail("out of memory");
		res->optimal_ns += o;
	}
	for (size_t k = 0; k < NSTATS; k++) {
		res->rise[k] = before[k] < 0 || after[k] < 0 ? -1 :
			       after[k] - before[k];
		res->warm[k] = start[k] < 0 || before[k] < 0 ? -1 :
			       before[k] - start[k];
	}
	return 0;
}

static int run_one(enum workload w, size_t f, enum mode m)
{
	struct run r = { .w = w, .m = m, .fd = { -1, -1 },
			 .seed = 0x0e000000 + w * 64 + f * 4 + m,
			 .draw_seed = 0x5eed0000ULL * (w + 1) + f };
	struct result *res = &results[w][f][m];
	int ret;

	r.len = whole_blocks(factors[f] * npu_devmem[0]);
	r.blocks = r.len / BLOCK;
	for (int d = 0; d < NPUS; d++)
		if (wait_devmem_free(npu_info[d].dev_id))
			return -1;
	ret = run_alloc(&r);
	if (!ret) {
		fill(&r);
		ret = mode_set(&r, true);
		if (!ret && m == M_HINTS)
			ret = hint(&r);
		if (!ret)
			ret = measure(&r, res);
		if (mode_set(&r, false))
			ret = -1;
	}
	run_free(&r);
	if (ret)
		return fail("%s at %gx, %s", workload_name[w], factors[f],
			    mode_name[m]);
	res->len = r.len;
	res->done = true;
	return 0;
}

static void print_row(enum workload w, size_t f, enum mode m)
{
	const struct result *r = &results[w][f][m];
	char name[48], note[512];
	int n;

	snprintf(name, sizeof(name), "%s_%gx_%s", workload_name[w],
		 factors[f], mode_name[m]);
	n = snprintf(note, sizeof(note), "%zu MiB, faults %llu", r->len / MiB,
		     (unsigned long long)r->faults);
	for (size_t k = 0; k < NSTATS; k++)
		if (r->rise[k] >= 0)
			n += snprintf(note + n, sizeof(note) - n, ", %s +%lld",
				      stat_keys[k], r->rise[k]);
	n += snprintf(note + n, sizeof(note) - n, "; warm-up:");
	for (size_t k = 0; k < NSTATS; k++)
		if (r->warm[k] > 0)
			n += snprintf(note + n, sizeof(note) - n, " %s +%lld",
				      stat_keys[k], r->warm[k]);
	printf("%-26s %14.0f %14.0f %12.0f %s\n", name, r->model_ns, r->wall_ns,
	       model_mib_per_s(r), note);
}

static void print_table(void)
{
	char name[48];

	printf("\n%-26s %14s %14s %12s %s\n", "measurement", "model_ns",
	       "wall_ns", "model_MiB/s", "notes (over the timed epochs)");
	for (int w = 0; w < NWORKLOADS; w++) {
		for (size_t f = 0; f < NFACTORS; f++) {
			const struct result *d = &results[w][f][M_DEFAULT];

			for (int m = 0; m < NMODES; m++)
				if (results[w][f][m].done)
					print_row(w, f, m);
			if (!d->done)
				continue;
			snprintf(name, sizeof(name), "%s_%gx_optimal",
				 workload_name[w], factors[f]);
			printf("%-26s %14.0f %14s %12.0f best fixed placement in hindsight\n",
			       name, d->optimal_ns, "-",
			       d->bytes / MiB / (d->optimal_ns / 1e9));
		}
	}
}

/* "policy <workload> <factor> <mode> <modelled MiB/s>" lines, to plot. */
static void print_lines(void)
{
	printf("\n");
	for (int w = 0; w < NWORKLOADS; w++) {
		for (size_t f = 0; f < NFACTORS; f++) {
			const struct result *d = &results[w][f][M_DEFAULT];

			for (int m = 0; m < NMODES; m++)
				if (results[w][f][m].done)
					printf("policy %s %g %s %.2f\n",
					       workload_name[w], factors[f],
					       mode_name[m],
					       model_mib_per_s(&results[w][f][m]));
			if (d->done)
				printf("policy %s %g optimal %.2f\n",
				       workload_name[w], factors[f],
				       d->bytes / MiB / (d->optimal_ns / 1e9));
		}
	}
}

/* Device time per byte read of mode @m's run. */
static double per_byte(const struct result *r)
{
	return r->model_ns / r->bytes;
}

static void print_ratios(void)
{
	char name[64];

	printf("\n");
	for (int w = 0; w < NWORKLOADS; w++) {
		for (size_t f = 0; f < NFACTORS; f++) {
			const struct result *r = results[w][f];
			double x = factors[f];
			bool big = x >= 2 && (w == W_STREAM || w == W_HOTCOLD);

			if (!r[M_DEFAULT].done || !r[M_HINTS].done ||
			    !r[M_NAIVE].done || !r[M_IN_PLACE].done) {
				printf("RATIO policy_%s_%gx_*: skipped, not measured\n",
				       workload_name[w], x);
				continue;
			}
			snprintf(name, sizeof(name), "policy_%s_%gx_vs_optimal",
				 workload_name[w], x);
			ratio(name, r[M_DEFAULT].model_ns / r[M_DEFAULT].optimal_ns,
			      '<', x <= 1 ? 1.15 : 1.3);
			snprintf(name, sizeof(name), "policy_%s_%gx_vs_naive_lru",
				 workload_name[w], x);
			ratio(name, per_byte(&r[M_DEFAULT]) / per_byte(&r[M_NAIVE]),
			      '<', big ? 0.5 : 1.05);
			snprintf(name, sizeof(name), "policy_%s_%gx_vs_in_place",
				 workload_name[w], x);
			ratio(name, per_byte(&r[M_DEFAULT]) / per_byte(&r[M_IN_PLACE]),
			      '<', 1.05);
			snprintf(name, sizeof(name),
				 "policy_%s_%gx_hints_vs_default",
				 workload_name[w], x);
			ratio(name, per_byte(&r[M_HINTS]) / per_byte(&r[M_DEFAULT]),
			      '<', 1.05);
		}
	}
	/* Wall time, as this VM spends it: streaming keeps its pace. */
	for (int m = 0; m < NMODES; m++) {
		const struct result *half = &results[W_STREAM][0][m];
		const struct result *twice = &results[W_STREAM][3][m];

		snprintf(name, sizeof(name), "oversub_%s_2x_vs_0.5x",
			 mode_name[m]);
		if (half->done && twice->done)
			ratio(name, (twice->bytes / twice->wall_ns) /
			      (half->bytes / half->wall_ns), '>',
			      m < M_NAIVE ? 0.5 : 0);
		else
			printf("RATIO %s: skipped, not measured\n", name);
	}
}

static int setup(void)
{
	long long pages;

	for (int d = 0; d < NPUS; d++) {
		char path[32];
		int fd;

		snprintf(path, sizeof(path), "/dev/gmem_npu%d", d);
		fd = open(path, O_RDWR);
		if (fd < 0)
			return fail("open %s: %s (gmem_npu.ko num_devices=2?)",
				    path, strerror(errno));
		if (ioctl(fd, GMEM_NPU_IOC_INFO, &npu_info[d]))
			return fail("GMEM_NPU_IOC_INFO: %s", strerror(errno));
		close(fd);
	}
	for (int d = 0; d < NPUS; d++) {
		pages = gmem_dev_stat(npu_info[d].dev_id, "devmem_pages");
		if (pages <= 0)
			return fail("/dev/gmem_npu%d has no device memory", d);
		npu_devmem[d] = pages * page_size;
	}
	printf("# gmem_policy: NPU memory %zu MiB, dev_gbps %u, link_gbps %u, fault %llu ns; %d warm and %d timed epochs\n",
	       npu_devmem[0] / MiB, npu_info[0].dev_gbps, npu_info[0].link_gbps,
	       (unsigned long long)npu_info[0].fault_ns, WARM_EPOCHS,
	       TIMED_EPOCHS);
	return 0;
}

int main(void)
{
	char what[128];
	int failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGE_SIZE);
	if (setup())
		return 1;
	for (size_t f = 0; f < NFACTORS; f++) {
		size_t len = whole_blocks(factors[f] * npu_devmem[0]);
		size_t avail = sysconf(_SC_AVPHYS_PAGES) * page_size;

		if (len + SPARE > avail) {
			printf("# %gx: %zu MiB does not fit in the free %zu MiB with %lu to spare: skipped\n",
			       factors[f], len / MiB, avail / MiB, SPARE / MiB);
			continue;
		}
		for (int w = 0; w < NWORKLOADS; w++) {
			snprintf(what, sizeof(what), "%s_%gx", workload_name[w],
				 factors[f]);
			/* GMEM_POLICY_ONLY=stream_4x: one run, to look into. */
			if (getenv("GMEM_POLICY_ONLY") &&
			    strcmp(getenv("GMEM_POLICY_ONLY"), what))
				continue;
			snprintf(what, sizeof(what), "%s over %zu MiB, %gx an NPU's memory",
				 workload_name[w], len / MiB, factors[f]);
			progress(what);
			/* A failed run is reported; the rest still run. */
			for (int m = 0; m < NMODES; m++)
				failed |= run_one(w, f, m);
		}
	}
	print_table();
	print_lines();
	print_ratios();
	return failed ? 1 : 0;
}
