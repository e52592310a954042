// SPDX-License-Identifier: GPL-2.0
/*
 * Seeded randomized stress test of gmem and the simulated NPUs.
 *
 *	stress_test [-s SEED] [-t SECONDS]
 *
 * SEED defaults to one taken from the clock, SECONDS to $GMEM_STRESS_SECONDS
 * or 90.  The seed is printed first ("# seed N"): "-s N" replays the same
 * operation sequence per worker (thread interleaving, job timing and the
 * moment a child is killed still vary).
 *
 * Model: 64 MiB (4x one NPU's memory) in eight MAP_PEER_SHARED buffers on
 * 2 MiB boundaries, each with an exact shadow copy in malloc memory.  Three
 * workers (the main thread and two CPU threads) each own disjoint buffers
 * and run a deterministic random sequence of operations on them: CPU writes,
 * reads and atomics; NPU jobs on both NPUs through four files (two opens per
 * device), several in flight at once, so that the CPU and both NPUs read the
 * same data concurrently, read-mostly duplicates included; every hint of
 * /dev/gmem; NPU prefetch and placement; mprotect to read-only and back.
 * The main thread also punches holes (munmap, later MAP_FIXED fresh memory),
 * mremaps whole buffers and forks children that check, write and use the
 * NPU on their copy-on-write view, some of them SIGKILLed at a random moment.
 *
 * Every operation updates the shadow exactly.  A job is only submitted once
 * the jobs in flight that conflict with it (a write on either side of an
 * overlap; atomics commute with atomics) have been collected, and the CPU
 * only writes ranges no job in flight touches, so the shadow never races the
 * data.  Each job's status is predicted: 0, or EFAULT for a deliberate hole,
 * EPERM/EFAULT for a deliberate write to read-only memory (the fault page
 * must be such a page), or ENOMEM while pins may fill the device (tracked
 * conservatively in memory shared with children).  Sums are checked against
 * the shadow.  Checkpoints compare every word of a worker's buffers with the
 * shadow, by the CPU and by NPU REDUCE_SUMs; a mismatch prints the buffer,
 * offset, expected and actual value and the last operation on that page.
 * At the end everything is released and gmem/stats contexts, regions,
 * dup_pages and devmem_used must come back to their values at start.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* In the kernel tree kselftest.h is one up; on the host, -I names its dir. */
#if __has_include("../kselftest.h")
#include "../kselftest.h"
#else
#include "kselftest.h"
#endif
#include "gmem_util.h"
#include "npu_util.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE	0x100000
#endif

#define NWORKERS	3
#define NFILES		4	/* npu0 twice, npu1 twice */
#define MAXJOBS		6	/* jobs in flight per worker */
#define WMAX		(2 * MiB)	/* longest NPU write job */
#define CKPT_OPS	60	/* operations between checkpoints */
#define JOB_TIMEOUT_NS	(300LL * 1000000000LL)
#define STAT_WAIT_MS	5000

/* Page states of the model. */
enum { PS_RW, PS_RO, PS_HOLE };

/* Access modes of a job or CPU operation on a range. */
enum { ACC_R, ACC_W, ACC_A };

/* Expected outcomes of a job. */
enum { EXP_OK, EXP_HOLE, EXP_RO };

enum op_kind {
	OP_NONE, OP_CPU_WRITE, OP_CPU_ATOMIC, OP_FILL, OP_COPY, OP_ADD,
	OP_ATOMIC_INC, OP_TOUCH_W, OP_DISCARD, OP_REFILL, OP_MREMAP,
	OP_RECONCILE, OP_MPROTECT_RO, OP_MPROTECT_RW, OP_HOLE, OP_MAX
};

static const char *const op_name[OP_MAX] = {
	"none (initial data)", "cpu write", "cpu atomic add", "npu fill",
	"npu copy", "npu add", "npu atomic inc", "npu touch write",
	"discard", "refill hole (mmap MAP_FIXED)", "mremap",
	"reconcile after failed job", "mprotect read-only",
	"mprotect read-write", "munmap hole",
};

struct plog {			/* last operation that touched a page */
	uint32_t opno;
	uint8_t worker;
	uint8_t kind;
	int8_t file;
};

struct buf {
	int id;
	int owner;
	char *p;
	size_t len, npages, nblocks;
	uint8_t *shadow;
	uint8_t *pst;		/* per page: PS_* */
	struct plog *log;	/* per page */
	uint8_t *pin;		/* per block: devices it may be pinned to */
	bool pin_blocked;	/* mremapped since the last checkpoint */
	size_t ro_off, ro_len;	/* the read-only run, if ro_len */
	size_t hole_off, hole_len;	/* the hole, if hole_len (main only) */
};

struct acc {
	struct buf *b;
	size_t off, len;
	int mode;
};

struct slot {
	bool used;
	int file;
	__u64 seq;
	struct gmem_npu_job job;
	int nacc;
	struct acc acc[3];
	int expect;
	bool check_result;
	__u64 want;
	unsigned long epoch0;
	uint32_t opno;
	int kind;
	bool undo_valid;	/* undo[] holds dst's old shadow */
	struct buf *ub;
	size_t uoff, ulen;
};

struct worker {
	int id;
	uint64_t rng;
	int nbufs;
	struct buf *bufs[4];
	struct slot slots[MAXJOBS];
	uint8_t *undo[MAXJOBS];
	uint32_t opno;
	unsigned long ops;
	pthread_t thread;
};

/* Shared with children (MAP_SHARED): what may make a job fail with ENOMEM. */
struct shared {
	long pin_est[2];	/* upper bound of pinned chunks per NPU */
	unsigned long epoch[2];	/* bumped on every change at/above full */
	long nchunks[2];
	long pin_cap[2];	/* chunks this process may pin (gmem's limits) */
};

static struct shared *sh;
static int files[NFILES];
static const int file_npu[NFILES] = { 0, 0, 1, 1 };
static int dev_id[2];
static int gfd;
static size_t ps;
static uint64_t seed;
static struct timespec t_end;
static int stop_flag;
static struct buf bufs[8];
static int nbufs;
static struct worker workers[NWORKERS];

/* Results. */
static long data_bad, result_bad, job_bad, ioctl_bad, child_bad;
/* Statistics. */
static long n_jobs, n_enomem, n_exp_fault, n_forks, n_kills, n_mremaps,
	    n_mremap_skipped, n_holes, n_hints, n_ckpts, n_storms, n_eintr;

static pid_t child_pid;
static struct timespec child_kill_at;
static bool child_kill;
static bool ckpt_now;

#define ADD(x, n)	__atomic_add_fetch(&(x), (n), __ATOMIC_RELAXED)
#define INC(x)		ADD(x, 1)

static bool stopping(void)
{
	struct timespec now;

	if (__atomic_load_n(&stop_flag, __ATOMIC_RELAXED))
		return true;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t_end.tv_sec ||
	       (now.tv_sec == t_end.tv_sec && now.tv_nsec >= t_end.tv_nsec);
}

static void stop_all(void)
{
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
}

/* xorshift64* */
static uint64_t rnd(struct worker *w)
{
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t rndn(struct worker *w, uint64_t n)
{
	return n ? rnd(w) % n : 0;
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

static __printf(2, 3) void failf(long *counter, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ksft_print_msg("FAIL seed=%" PRIu64 ": %s\n", seed, msg);
	INC(*counter);
}

/* ---- the ENOMEM model ---- */

static void pin_est_add(int npu, long n)
{
	long old = __atomic_fetch_add(&sh->pin_est[npu], n, __ATOMIC_SEQ_CST);

	if (old >= sh->pin_cap[npu] || old + n >= sh->pin_cap[npu])
		__atomic_add_fetch(&sh->epoch[npu], 1, __ATOMIC_SEQ_CST);
}

static unsigned long pin_epoch(int npu)
{
	return __atomic_load_n(&sh->epoch[npu], __ATOMIC_SEQ_CST);
}

/* May the NPU's memory have been all pinned since @epoch0 was read? */
static bool enomem_possible(int npu, unsigned long epoch0)
{
	return __atomic_load_n(&sh->pin_est[npu], __ATOMIC_SEQ_CST) >=
		       sh->nchunks[npu] ||
	       pin_epoch(npu) != epoch0;
}

/* May a PIN have gone over gmem's pin limits since @epoch0 was read? */
static bool pin_over_limit(int npu, unsigned long epoch0)
{
	return __atomic_load_n(&sh->pin_est[npu], __ATOMIC_SEQ_CST) >
		       sh->pin_cap[npu] ||
	       pin_epoch(npu) != epoch0;
}

/* A gmem.ko parameter, or @dflt if it cannot be read. */
static long gmem_param(const char *name, long dflt)
{
	char path[128];
	long v = dflt;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/gmem/parameters/%s", name);
	f = fopen(path, "r");
	if (!f)
		return dflt;
	if (fscanf(f, "%ld", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

/* ---- the model's pages ---- */

static void note(struct worker *w, struct buf *b, size_t off, size_t len,
		 int kind, int file)
{
	if (!len)
		return;
	for (size_t pg = off / ps; pg <= (off + len - 1) / ps; pg++)
		b->log[pg] = (struct plog){ .opno = w->opno, .worker = w->id,
					    .kind = kind, .file = file };
}

static void range_state(struct buf *b, size_t off, size_t len, size_t *nrw,
			size_t *nro, size_t *nhole)
{
	*nrw = *nro = *nhole = 0;
	if (!len)
		return;
	for (size_t pg = off / ps; pg <= (off + len - 1) / ps; pg++) {
		if (b->pst[pg] == PS_RW)
			(*nrw)++;
		else if (b->pst[pg] == PS_RO)
			(*nro)++;
		else
			(*nhole)++;
	}
}

static bool all_rw(struct buf *b, size_t off, size_t len)
{
	size_t rw, ro, hole;

	range_state(b, off, len, &rw, &ro, &hole);
	return !ro && !hole;
}

static bool no_hole(struct buf *b, size_t off, size_t len)
{
	size_t rw, ro, hole;

	range_state(b, off, len, &rw, &ro, &hole);
	return !hole;
}

static void report_mismatch(struct buf *b, size_t off, const char *how)
{
	size_t w = off & ~(size_t)3;
	uint32_t exp, act;
	struct plog *l = &b->log[off / ps];

	memcpy(&exp, b->shadow + w, 4);
	memcpy(&act, b->p + w, 4);
	failf(&data_bad,
	      "%s: buffer %d (owner %d, %p) offset 0x%zx (page %zu, state %d): expected 0x%08x, actual 0x%08x; last op on the page: #%u %s by worker %d%s%d",
	      how, b->id, b->owner, b->p, w, w / ps, b->pst[w / ps], exp, act,
	      l->opno, op_name[l->kind], l->worker,
	      l->file >= 0 ? " file " : " ", l->file);
	stop_all();
}

/* CPU compare of [off, off + len) (no holes) with the shadow. */
static bool cpu_check(struct buf *b, size_t off, size_t len, const char *how)
{
	for (size_t o = off; o < off + len;) {
		size_t n = ps - (o % ps);

		if (n > off + len - o)
			n = off + len - o;
		if (memcmp(b->p + o, b->shadow + o, n)) {
			for (size_t i = o; i < o + n; i++)
				if (((volatile char *)b->p)[i] !=
				    (char)b->shadow[i]) {
					report_mismatch(b, i, how);
					return false;
				}
			/* Changed back in between: still wrong. */
			report_mismatch(b, o, how);
			return false;
		}
		o += n;
	}
	return true;
}

static __u64 shadow_sum32(struct buf *b, size_t off, size_t len)
{
	__u64 s = 0;
	uint32_t v;

	for (size_t i = off; i + 4 <= off + len; i += 4) {
		memcpy(&v, b->shadow + i, 4);
		s += v;
	}
	return s;
}

static __u64 shadow_touch_sum(struct buf *b, size_t off, size_t len)
{
	__u64 s = 0, v;

	for (size_t i = off; i < off + len; i += ps) {
		memcpy(&v, b->shadow + i, 8);
		s += v;
	}
	return s;
}

/* ---- picking ranges ---- */

/* A page count, mostly small, up to @max. */
static size_t rnd_pages(struct worker *w, size_t max)
{
	switch (rndn(w, 4)) {
	case 0:
		return 1 + rndn(w, max < 4 ? max : 4);
	case 1:
		return 1 + rndn(w, max < 64 ? max : 64);
	default:
		return 1 + rndn(w, max);
	}
}

/* A page-aligned range of @b of at most @maxlen bytes. */
static void pick_pages(struct worker *w, struct buf *b, size_t maxlen,
		       size_t *off, size_t *len)
{
	size_t max = maxlen / ps, n;

	if (max > b->npages)
		max = b->npages;
	n = rnd_pages(w, max);
	*off = rndn(w, b->npages - n + 1) * ps;
	*len = n * ps;
}

/* A page-aligned range all read-write, or false after a few tries. */
static bool pick_rw(struct worker *w, struct buf *b, size_t maxlen,
		    size_t *off, size_t *len)
{
	for (int t = 0; t < 8; t++) {
		pick_pages(w, b, maxlen, off, len);
		if (all_rw(b, *off, *len))
			return true;
	}
	return false;
}

static bool pick_nohole(struct worker *w, struct buf *b, size_t maxlen,
			size_t *off, size_t *len)
{
	for (int t = 0; t < 8; t++) {
		pick_pages(w, b, maxlen, off, len);
		if (no_hole(b, *off, *len))
			return true;
	}
	return false;
}

static struct buf *pick_buf(struct worker *w)
{
	return w->bufs[rndn(w, w->nbufs)];
}

/* ---- jobs ---- */

static bool overlap(const struct acc *a, const struct acc *b)
{
	return a->b == b->b && a->off < b->off + b->len &&
	       b->off < a->off + a->len;
}

static bool conflict(const struct acc *a, const struct acc *b)
{
	if (!overlap(a, b))
		return false;
	if (a->mode == ACC_R && b->mode == ACC_R)
		return false;
	if (a->mode == ACC_A && b->mode == ACC_A)
		return false;
	return true;
}

/* Where @addr is in the slot's operands: its buffer and page state. */
static int fault_state(struct slot *s, __u64 addr)
{
	for (int i = 0; i < s->nacc; i++) {
		struct acc *a = &s->acc[i];
		__u64 lo = U64(a->b->p + a->off);

		if (addr >= lo && addr < lo + a->len)
			return a->b->pst[(addr - U64(a->b->p)) / ps];
	}
	return -1;
}

/* After a write job failed midway: every byte is old or new; adopt it. */
static void reconcile(struct worker *w, struct slot *s, int k)
{
	struct buf *b = s->ub;

	if (s->kind == OP_ATOMIC_INC) {
		/* One access of <= 4096 increments: all or nothing. */
		__u64 v;

		memcpy(&v, b->shadow + s->uoff, 8);
		v -= s->job.value;
		memcpy(b->shadow + s->uoff, &v, 8);
		return;
	}
	if (!s->undo_valid)
		return;
	for (size_t i = 0; i < s->ulen; i++) {
		uint8_t act = ((volatile uint8_t *)b->p)[s->uoff + i];

		if (act != b->shadow[s->uoff + i] && act != w->undo[k][i]) {
			report_mismatch(b, s->uoff + i,
					"failed job left neither old nor new data");
			return;
		}
		b->shadow[s->uoff + i] = act;
	}
	note(w, b, s->uoff, s->ulen, OP_RECONCILE, s->file);
}

static void complete(struct worker *w, int k)
{
	struct slot *s = &w->slots[k];
	struct gmem_npu_wait wt;
	int npu = file_npu[s->file], ret, st, fst;

	ret = npu_wait(files[s->file], s->seq, JOB_TIMEOUT_NS, &wt);
	s->used = false;
	if (ret) {
		failf(&job_bad, "worker %d op #%u: WAIT of job op %u seqno %llu on file %d: %s",
		      w->id, s->opno, s->job.op, (unsigned long long)s->seq,
		      s->file, strerror(-ret));
		stop_all();
		return;
	}
	st = wt.status;
	fst = st ? fault_state(s, wt.fault_addr) : -1;
	if (!st) {
		if (s->expect != EXP_OK)
			failf(&job_bad, "worker %d op #%u: job op %u on file %d at 0x%llx+0x%llx succeeded, expected a fault (%s)",
			      w->id, s->opno, s->job.op, s->file,
			      (unsigned long long)(s->job.dst ? s->job.dst : s->job.src),
			      (unsigned long long)s->job.len,
			      s->expect == EXP_HOLE ? "hole" : "read-only");
		else if (s->check_result && wt.result != s->want)
			failf(&result_bad, "worker %d op #%u: job op %u on file %d at 0x%llx+0x%llx: result 0x%llx, shadow says 0x%llx",
			      w->id, s->opno, s->job.op, s->file,
			      (unsigned long long)s->job.src,
			      (unsigned long long)s->job.len,
			      (unsigned long long)wt.result,
			      (unsigned long long)s->want);
		return;
	}
	if (st == -ENOMEM && enomem_possible(npu, s->epoch0)) {
		INC(n_enomem);
		if (s->expect == EXP_OK)
			reconcile(w, s, k);
		return;
	}
	if (st == -EINTR) {
		INC(n_eintr);
		if (s->expect == EXP_OK)
			reconcile(w, s, k);
		return;
	}
	if (s->expect == EXP_HOLE && st == -EFAULT && fst == PS_HOLE) {
		INC(n_exp_fault);
		return;
	}
	if (s->expect == EXP_RO && (st == -EPERM || st == -EFAULT) &&
	    fst == PS_RO) {
		INC(n_exp_fault);
		return;
	}
	failf(&job_bad, "worker %d op #%u: job op %u flags %u on file %d (npu%d) dst 0x%llx src 0x%llx src2 0x%llx len 0x%llx: status %d (%s) at 0x%llx (page state %d), expected %s%s",
	      w->id, s->opno, s->job.op, s->job.flags, s->file, npu,
	      (unsigned long long)s->job.dst, (unsigned long long)s->job.src,
	      (unsigned long long)s->job.src2, (unsigned long long)s->job.len,
	      st, strerror(-st), (unsigned long long)wt.fault_addr, fst,
	      s->expect == EXP_OK ? "success" :
	      s->expect == EXP_HOLE ? "EFAULT in the hole" :
	      "EPERM/EFAULT in the read-only run",
	      st == -ENOMEM ? " (ENOMEM with the pins not filling the device)" : "");
	if (s->expect == EXP_OK)
		stop_all();	/* the shadow of its dst is unknown now */
}

static void complete_all(struct worker *w)
{
	for (int k = 0; k < MAXJOBS; k++)
		if (w->slots[k].used)
			complete(w, k);
}

/* Collects the jobs in flight that conflict with @acc. */
static void wait_conflicts(struct worker *w, const struct acc *acc, int n)
{
	for (int k = 0; k < MAXJOBS; k++) {
		struct slot *s = &w->slots[k];
		bool c = false;

		if (!s->used)
			continue;
		for (int i = 0; i < s->nacc && !c; i++)
			for (int j = 0; j < n && !c; j++)
				c = conflict(&s->acc[i], &acc[j]);
		if (c)
			complete(w, k);
	}
}

static void wait_range(struct worker *w, struct buf *b, size_t off,
		       size_t len, int mode)
{
	struct acc a = { b, off, len, mode };

	wait_conflicts(w, &a, 1);
}

static int free_slot(struct worker *w)
{
	int oldest = -1;

	for (int k = 0; k < MAXJOBS; k++) {
		if (!w->slots[k].used)
			return k;
		if (oldest < 0 || w->slots[k].opno < w->slots[oldest].opno)
			oldest = k;
	}
	complete(w, oldest);
	return oldest;
}

/*
 * Submits a job whose operands are @acc (the first ACC_W/ACC_A one being
 * its destination) after collecting conflicting jobs; for EXP_OK writes
 * saves the destination's shadow (undo) and applies @apply to the shadow.
 * Returns the slot or -1.
 */
static int submit(struct worker *w, int file, const struct gmem_npu_job *job,
		  const struct acc *acc, int nacc, int expect, int kind)
{
	struct slot *s;
	int k, ret;

	wait_conflicts(w, acc, nacc);
	k = free_slot(w);
	s = &w->slots[k];
	memset(s, 0, sizeof(*s));
	s->file = file;
	s->job = *job;
	s->nacc = nacc;
	memcpy(s->acc, acc, nacc * sizeof(*acc));
	s->expect = expect;
	s->opno = w->opno;
	s->kind = kind;
	s->epoch0 = pin_epoch(file_npu[file]);
	for (int i = 0; i < nacc; i++) {
		if (acc[i].mode == ACC_R)
			continue;
		s->ub = acc[i].b;
		s->uoff = acc[i].off;
		s->ulen = acc[i].len;
		if (expect == EXP_OK && acc[i].mode == ACC_W &&
		    acc[i].len <= WMAX) {
			memcpy(w->undo[k], acc[i].b->shadow + acc[i].off,
			       acc[i].len);
			s->undo_valid = true;
		}
		break;
	}
	ret = npu_submit(files[file], job, &s->seq);
	if (ret) {
		failf(&job_bad, "worker %d op #%u: SUBMIT op %u len 0x%llx on file %d: %s",
		      w->id, w->opno, job->op, (unsigned long long)job->len,
		      file, strerror(-ret));
		return -1;
	}
	s->used = true;
	INC(n_jobs);
	return k;
}

static int rnd_file(struct worker *w)
{
	return rndn(w, NFILES);
}

/* Synchronous REDUCE_SUM of [off, off + len) of @b on @file vs the shadow. */
static void npu_check_sum(struct worker *w, struct buf *b, size_t off,
			  size_t len, int file)
{
	struct gmem_npu_job job = job_sum(b->p + off, len);
	struct acc a = { b, off, len, ACC_R };
	int k = submit(w, file, &job, &a, 1, EXP_OK, OP_NONE);

	if (k < 0)
		return;
	w->slots[k].check_result = true;
	w->slots[k].want = shadow_sum32(b, off, len);
	complete(w, k);
}

/* ---- operations ---- */

static void op_cpu_write(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;

	if (!pick_rw(w, b, 256 * 1024, &off, &len))
		return;
	wait_range(w, b, off, len, ACC_W);
	if (rndn(w, 2)) {
		uint32_t x = rnd(w);

		for (size_t i = off; i < off + len; i += 4) {
			x = x * 1664525u + 1013904223u;
			memcpy(b->shadow + i, &x, 4);
		}
		memcpy(b->p + off, b->shadow + off, len);
	} else {
		for (int n = 1 + rndn(w, 64); n; n--) {
			size_t i = off + rndn(w, len / 4) * 4;
			uint32_t x = rnd(w);

			memcpy(b->shadow + i, &x, 4);
			*(volatile uint32_t *)(b->p + i) = x;
		}
	}
	note(w, b, off, len, OP_CPU_WRITE, -1);
}

static void op_cpu_read(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;

	if (!pick_nohole(w, b, 4 * MiB, &off, &len))
		return;
	wait_range(w, b, off, len, ACC_R);
	cpu_check(b, off, len, "cpu read");
}

/* An 8-aligned word of a read-write page, from a few hot ones mostly. */
static bool pick_counter(struct worker *w, struct buf **bp, size_t *off)
{
	for (int t = 0; t < 8; t++) {
		struct buf *b = w->bufs[0];
		size_t o = rndn(w, 4) * (BLOCK / 2) + 64;

		if (rndn(w, 3) == 0) {
			b = pick_buf(w);
			o = rndn(w, b->len / 8) * 8;
		}
		if (o + 8 <= b->len && all_rw(b, o, 8)) {
			*bp = b;
			*off = o;
			return true;
		}
	}
	return false;
}

static void op_cpu_atomic(struct worker *w)
{
	struct buf *b;
	size_t off;
	__u64 v = 1 + rndn(w, 1000), s;

	if (!pick_counter(w, &b, &off))
		return;
	wait_range(w, b, off, 8, ACC_A);
	__atomic_fetch_add((__u64 *)(b->p + off), v, __ATOMIC_SEQ_CST);
	memcpy(&s, b->shadow + off, 8);
	s += v;
	memcpy(b->shadow + off, &s, 8);
	note(w, b, off, 8, OP_CPU_ATOMIC, -1);
}

static void op_npu_atomic(struct worker *w)
{
	struct buf *b;
	size_t off;
	__u64 v = 1 + rndn(w, 1000), s;
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_ATOMIC_INC, .len = 8 };
	int f = rnd_file(w);

	if (!pick_counter(w, &b, &off))
		return;
	struct acc a = { b, off, 8, ACC_A };

	job.dst = U64(b->p + off);
	job.value = v;
	if (submit(w, f, &job, &a, 1, EXP_OK, OP_ATOMIC_INC) < 0)
		return;
	memcpy(&s, b->shadow + off, 8);
	s += v;
	memcpy(b->shadow + off, &s, 8);
	note(w, b, off, 8, OP_ATOMIC_INC, f);
}

/* A byte range of at most WMAX, all read-write, for a write job. */
static bool pick_dst(struct worker *w, struct buf *b, size_t *off, size_t *len,
		     bool words)
{
	if (!pick_rw(w, b, WMAX, off, len))
		return false;
	/* Sometimes not page-aligned at either end. */
	if (rndn(w, 3) == 0) {
		size_t a = rndn(w, ps / 4) * 4, c = rndn(w, ps / 4) * 4;

		if (a + c < *len) {
			*off += a;
			*len -= a + c;
		}
		if (!words && rndn(w, 2) && *len > 1)
			*len -= 1 + rndn(w, 3);
	}
	return true;
}

static void op_npu_fill(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;
	int f = rnd_file(w), v = rndn(w, 256);
	struct gmem_npu_job job;

	if (!pick_dst(w, b, &off, &len, false))
		return;
	struct acc a = { b, off, len, ACC_W };

	job = job_fill(b->p + off, len, v);
	if (submit(w, f, &job, &a, 1, EXP_OK, OP_FILL) < 0)
		return;
	memset(b->shadow + off, v, len);
	note(w, b, off, len, OP_FILL, f);
}

static void op_npu_copy(struct worker *w)
{
	struct buf *d = pick_buf(w), *sb = pick_buf(w);
	size_t off, len, soff = 0;
	int f = rnd_file(w);
	bool ok = false;

	if (!pick_dst(w, d, &off, &len, false))
		return;
	for (int t = 0; t < 8 && !ok; t++) {
		if (len > sb->len)
			return;
		soff = rndn(w, sb->len - len + 1);
		if (rndn(w, 2))
			soff &= ~(size_t)3;
		ok = no_hole(sb, soff, len) &&
		     (sb != d || soff + len <= off || off + len <= soff);
	}
	if (!ok)
		return;
	struct acc a[2] = { { d, off, len, ACC_W }, { sb, soff, len, ACC_R } };
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_COPY,
				    .dst = U64(d->p + off),
				    .src = U64(sb->p + soff), .len = len };

	if (submit(w, f, &job, a, 2, EXP_OK, OP_COPY) < 0)
		return;
	memmove(d->shadow + off, sb->shadow + soff, len);
	note(w, d, off, len, OP_COPY, f);
}

static bool pick_src_words(struct worker *w, struct buf *sb, size_t len,
			   struct buf *d, size_t doff, size_t *soff)
{
	for (int t = 0; t < 8; t++) {
		if (len > sb->len)
			return false;
		*soff = rndn(w, (sb->len - len) / 4 + 1) * 4;
		if (!no_hole(sb, *soff, len))
			continue;
		/* Disjoint from the destination, or exactly it. */
		if (sb != d || *soff == doff || *soff + len <= doff ||
		    doff + len <= *soff)
			return true;
	}
	return false;
}

static void op_npu_add(struct worker *w)
{
	struct buf *d = pick_buf(w), *s1 = pick_buf(w), *s2 = pick_buf(w);
	size_t off, len, o1, o2;
	int f = rnd_file(w);

	if (!pick_dst(w, d, &off, &len, true))
		return;
	if (rndn(w, 4) == 0) {
		s1 = d;
		o1 = off;
	} else if (!pick_src_words(w, s1, len, d, off, &o1)) {
		return;
	}
	if (!pick_src_words(w, s2, len, d, off, &o2))
		return;
	struct acc a[3] = { { d, off, len, ACC_W }, { s1, o1, len, ACC_R },
			    { s2, o2, len, ACC_R } };
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_ADD,
				    .dst = U64(d->p + off),
				    .src = U64(s1->p + o1),
				    .src2 = U64(s2->p + o2), .len = len };

	/* A source overlapping the destination only if it is the destination. */
	if (submit(w, f, &job, a, 3, EXP_OK, OP_ADD) < 0)
		return;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t x, y;

		memcpy(&x, s1->shadow + o1 + i, 4);
		memcpy(&y, s2->shadow + o2 + i, 4);
		x += y;
		memcpy(d->shadow + off + i, &x, 4);
	}
	note(w, d, off, len, OP_ADD, f);
}

static void op_npu_sum(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;
	int f = rnd_file(w), k;

	if (!pick_nohole(w, b, rndn(w, 4) ? 4 * MiB : b->len, &off, &len))
		return;
	if (rndn(w, 3) == 0 && len > ps) {	/* word-aligned ends */
		off += rndn(w, ps / 4) * 4;
		len -= ps;
	}
	struct acc a = { b, off, len, ACC_R };
	struct gmem_npu_job job = job_sum(b->p + off, len);

	k = submit(w, f, &job, &a, 1, EXP_OK, OP_NONE);
	if (k < 0)
		return;
	w->slots[k].check_result = true;
	w->slots[k].want = shadow_sum32(b, off, len);
}

static void op_npu_touch(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;
	int f = rnd_file(w), k;
	bool wr = rndn(w, 2);
	__u64 v = rnd(w);

	if (wr ? !pick_rw(w, b, 8 * MiB, &off, &len) :
		 !pick_nohole(w, b, b->len, &off, &len))
		return;
	if (wr && len > WMAX)
		len = WMAX;
	struct acc a = { b, off, len, wr ? ACC_W : ACC_R };
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_TOUCH,
				    .flags = wr ? GMEM_NPU_JOB_WRITE : 0,
				    .dst = U64(b->p + off), .len = len,
				    .value = v };

	k = submit(w, f, &job, &a, 1, EXP_OK, wr ? OP_TOUCH_W : OP_NONE);
	if (k < 0)
		return;
	if (wr) {
		for (size_t i = off; i < off + len; i += ps)
			memcpy(b->shadow + i, &v, 8);
		note(w, b, off, len, OP_TOUCH_W, f);
	} else {
		w->slots[k].check_result = true;
		w->slots[k].want = shadow_touch_sum(b, off, len);
	}
}

/*
 * The risky case: one range read at once by both NPUs (three files) and
 * the CPU, often read-mostly so that both NPUs duplicate it.
 */
/* -R: never set read-mostly (to tell read duplication's bugs apart). */
static bool no_read_mostly;

static void op_read_storm(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;
	int k, f0 = rndn(w, 2), f1 = 2 + rndn(w, 2);

	if (!pick_nohole(w, b, 6 * MiB, &off, &len))
		return;
	INC(n_storms);
	if (rndn(w, 3) && !no_read_mostly) {
		int ret = gmem_advise(gfd, b->p + off, len,
				      GMEM_ADV_SET_READ_MOSTLY, 0);

		if (ret)
			failf(&ioctl_bad, "worker %d op #%u: SET_READ_MOSTLY buffer %d 0x%zx+0x%zx: %s",
			      w->id, w->opno, b->id, off, len, strerror(-ret));
	}
	struct acc a = { b, off, len, ACC_R };
	struct gmem_npu_job sum = job_sum(b->p + off, len);
	struct gmem_npu_job touch = { .op = GMEM_NPU_OP_TOUCH,
				      .dst = U64(b->p + off), .len = len };
	__u64 want = shadow_sum32(b, off, len);

	k = submit(w, f0, &sum, &a, 1, EXP_OK, OP_NONE);
	if (k >= 0) {
		w->slots[k].check_result = true;
		w->slots[k].want = want;
	}
	k = submit(w, f1, &sum, &a, 1, EXP_OK, OP_NONE);
	if (k >= 0) {
		w->slots[k].check_result = true;
		w->slots[k].want = want;
	}
	if (rndn(w, 2)) {
		k = submit(w, f1 ^ 1, &touch, &a, 1, EXP_OK, OP_NONE);
		if (k >= 0) {
			w->slots[k].check_result = true;
			w->slots[k].want = shadow_touch_sum(b, off, len);
		}
	}
	/* The CPU reads it while they run. */
	cpu_check(b, off, len, "cpu read during npu reads");
	if (rndn(w, 2))
		k = submit(w, f0 ^ 1, &sum, &a, 1, EXP_OK, OP_NONE);
	else
		k = -1;
	if (k >= 0) {
		w->slots[k].check_result = true;
		w->slots[k].want = want;
	}
}

/* Jobs that must fail: writes into the read-only run, accesses of the hole. */
static void op_bad_job(struct worker *w)
{
	struct buf *b = pick_buf(w);
	int f = rnd_file(w);
	struct gmem_npu_job job = { 0 };
	size_t off, len;
	int expect;

	if (b->hole_len && (!b->ro_len || rndn(w, 2))) {
		expect = EXP_HOLE;
		off = b->hole_off + rndn(w, b->hole_len / ps) * ps;
		len = (1 + rndn(w, (b->hole_off + b->hole_len - off) / ps)) * ps;
		/* A read may start in mapped memory before the hole. */
		if (rndn(w, 2) && off == b->hole_off && off >= ps &&
		    b->pst[off / ps - 1] != PS_HOLE) {
			size_t pre = (1 + rndn(w, 8)) * ps;

			while (pre > off || !no_hole(b, off - pre, pre))
				pre -= ps;
			off -= pre;
			len += pre;
			if (rndn(w, 2)) {
				job = job_sum(b->p + off, len);
			} else {
				job.op = GMEM_NPU_OP_TOUCH;
				job.dst = U64(b->p + off);
				job.len = len;
			}
			struct acc a = { b, off, len, ACC_R };

			submit(w, f, &job, &a, 1, expect, OP_NONE);
			return;
		}
	} else if (b->ro_len) {
		expect = EXP_RO;
		off = b->ro_off + rndn(w, b->ro_len / ps) * ps;
		len = (1 + rndn(w, (b->ro_off + b->ro_len - off) / ps)) * ps;
	} else {
		return;
	}
	if (len > WMAX)
		len = WMAX;
	switch (rndn(w, 4)) {
	case 0:
		job = job_fill(b->p + off, len, 0xee);
		break;
	case 1:
		job.op = GMEM_NPU_OP_TOUCH;
		job.flags = GMEM_NPU_JOB_WRITE;
		job.dst = U64(b->p + off);
		job.len = len;
		job.value = 0xbad;
		break;
	case 2:
		job.op = GMEM_NPU_OP_ATOMIC_INC;
		job.dst = U64(b->p + off);
		job.len = 8;
		job.value = 1;
		len = 8;
		break;
	default:
		if (expect == EXP_HOLE) {
			job = job_sum(b->p + off, len);
		} else {	/* a copy from elsewhere into it */
			struct buf *sb = pick_buf(w);
			size_t so;

			if (!pick_nohole(w, sb, len, &so, &len))
				return;
			if (sb == b && so < off + len && off < so + len)
				return;
			struct acc a[2] = { { b, off, len, ACC_W },
					    { sb, so, len, ACC_R } };

			job.op = GMEM_NPU_OP_COPY;
			job.dst = U64(b->p + off);
			job.src = U64(sb->p + so);
			job.len = len;
			submit(w, f, &job, a, 2, expect, OP_NONE);
			return;
		}
	}
	struct acc a = { b, off, len,
			 job.op == GMEM_NPU_OP_REDUCE_SUM ? ACC_R : ACC_W };

	submit(w, f, &job, &a, 1, expect, OP_NONE);
}

/* Blocks of [off, off + len) of @b. */
static void blocks_of(struct buf *b, size_t off, size_t len, size_t *first,
		      size_t *end)
{
	*first = off / BLOCK;
	*end = (off + len + BLOCK - 1) / BLOCK;
	if (*end > b->nblocks)
		*end = b->nblocks;
}

static void unpin_model(struct buf *b, size_t off, size_t len, int npu)
{
	/* Only blocks wholly inside: a partial unpin may leave the pin. */
	for (size_t bl = (off + BLOCK - 1) / BLOCK;
	     (bl + 1) * BLOCK <= off + len && bl < b->nblocks; bl++)
		if (b->pin[bl] & (1 << npu)) {
			b->pin[bl] &= ~(1 << npu);
			pin_est_add(npu, -1);
		}
}

static void op_hint(struct worker *w)
{
	static const int advs[] = {
		GMEM_ADV_SET_READ_MOSTLY, GMEM_ADV_SET_READ_MOSTLY,
		GMEM_ADV_SET_READ_MOSTLY, GMEM_ADV_UNSET_READ_MOSTLY,
		GMEM_ADV_UNSET_READ_MOSTLY,
		GMEM_ADV_SET_PREFERRED_LOCATION,
		GMEM_ADV_UNSET_PREFERRED_LOCATION, GMEM_ADV_SET_ACCESSED_BY,
		GMEM_ADV_UNSET_ACCESSED_BY, GMEM_ADV_PIN, GMEM_ADV_UNPIN,
		GMEM_ADV_UNPIN, GMEM_ADV_PREFETCH, GMEM_ADV_PREFETCH,
		GMEM_ADV_DISCARD,
	};
	struct buf *b = pick_buf(w);
	int adv = advs[rndn(w, ARRAY_SIZE(advs))];

	if (no_read_mostly && adv == GMEM_ADV_SET_READ_MOSTLY)
		adv = GMEM_ADV_UNSET_READ_MOSTLY;
	int npu = rndn(w, 2), dev = dev_id[npu], ret, want = 0;
	size_t off, len, rw, ro, hole, first = 0, end = 0;
	long added = 0;
	unsigned long ep;
	bool enomem_ok;

	INC(n_hints);
	if (rndn(w, 8) == 0) {
		off = 0;
		len = b->len;
	} else {
		pick_pages(w, b, 4 * MiB, &off, &len);
	}
	range_state(b, off, len, &rw, &ro, &hole);
	if ((adv == GMEM_ADV_SET_PREFERRED_LOCATION ||
	     adv == GMEM_ADV_PREFETCH) && rndn(w, 3) == 0)
		dev = GMEM_DEV_HOST;
	if (hole)
		want = -EFAULT;
	if (adv == GMEM_ADV_DISCARD && !hole) {
		if (ro)
			return;	/* discard of read-only memory: not modelled */
		wait_range(w, b, off, len, ACC_W);
	}
	if (adv == GMEM_ADV_PIN && !hole) {
		if (b->pin_blocked)
			return;
		blocks_of(b, off, len, &first, &end);
		for (size_t bl = first; bl < end; bl++)
			if (!(b->pin[bl] & (1 << npu)))
				added++;
	}
	ep = pin_epoch(npu);
	pin_est_add(npu, added);	/* tentatively: the PIN itself counts */
	ret = gmem_advise(gfd, b->p + off, len, adv, dev);
	enomem_ok = !hole && dev != GMEM_DEV_HOST &&
		    ((adv == GMEM_ADV_PIN && pin_over_limit(npu, ep)) ||
		     ((adv == GMEM_ADV_PIN || adv == GMEM_ADV_PREFETCH) &&
		      enomem_possible(npu, ep)));
	if (added) {
		if (!ret)
			for (size_t bl = first; bl < end; bl++)
				b->pin[bl] |= 1 << npu;
		else
			pin_est_add(npu, -added);
	}
	if (ret == -ENOMEM && enomem_ok) {
		INC(n_enomem);
		return;
	}
	if (ret == -EINTR && (adv == GMEM_ADV_PIN || adv == GMEM_ADV_PREFETCH ||
			      adv == GMEM_ADV_SET_ACCESSED_BY)) {
		INC(n_eintr);
		return;
	}
	if (ret != want) {
		failf(&ioctl_bad, "worker %d op #%u: ADVISE %d dev %d buffer %d 0x%zx+0x%zx (%zu ro, %zu hole pages): %s, expected %s",
		      w->id, w->opno, adv, dev, b->id, off, len, ro, hole,
		      strerror(-ret), want ? strerror(-want) : "success");
		return;
	}
	if (!ret && adv == GMEM_ADV_UNPIN)
		unpin_model(b, off, len, npu);
	if (!ret && adv == GMEM_ADV_DISCARD) {
		memset(b->shadow + off, 0, len);
		note(w, b, off, len, OP_DISCARD, -1);
	}
}

static void op_npu_prefetch(struct worker *w)
{
	struct buf *b = pick_buf(w);
	int f = rnd_file(w), npu = file_npu[f], ret, want;
	bool home = rndn(w, 3) == 0;
	size_t off, len;
	unsigned long ep = pin_epoch(npu);

	pick_pages(w, b, 8 * MiB, &off, &len);
	want = no_hole(b, off, len) ? 0 : -EFAULT;
	ret = npu_prefetch(files[f], b->p + off, len,
			   home ? GMEM_NPU_PREFETCH_TO_HOST : 0);
	if (ret == want)
		return;
	if (!want && ret == -ENOMEM && !home && enomem_possible(npu, ep)) {
		INC(n_enomem);
		return;
	}
	failf(&ioctl_bad, "worker %d op #%u: NPU PREFETCH%s file %d buffer %d 0x%zx+0x%zx: %s, expected %s",
	      w->id, w->opno, home ? " TO_HOST" : "", f, b->id, off, len,
	      strerror(-ret), want ? strerror(-want) : "success");
}

static void op_placement(struct worker *w)
{
	int f = rnd_file(w), pl = rndn(w, 2) ? GMEM_NPU_PLACE_HOST :
					       GMEM_NPU_PLACE_MIGRATE;
	int ret = npu_set_placement(files[f], pl);

	if (ret)
		failf(&ioctl_bad, "SET_PLACEMENT %d on file %d: %s", pl, f,
		      strerror(-ret));
}

static void set_pst(struct buf *b, size_t off, size_t len, int st)
{
	memset(b->pst + off / ps, st, len / ps);
}

static void op_mprotect(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;

	if (b->ro_len) {
		wait_range(w, b, b->ro_off, b->ro_len, ACC_W);
		if (mprotect(b->p + b->ro_off, b->ro_len,
			     PROT_READ | PROT_WRITE))
			failf(&ioctl_bad, "mprotect RW: %s", strerror(errno));
		set_pst(b, b->ro_off, b->ro_len, PS_RW);
		note(w, b, b->ro_off, b->ro_len, OP_MPROTECT_RW, -1);
		b->ro_len = 0;
		return;
	}
	if (!pick_rw(w, b, 4 * MiB, &off, &len))
		return;
	wait_range(w, b, off, len, ACC_W);
	if (mprotect(b->p + off, len, PROT_READ)) {
		failf(&ioctl_bad, "mprotect RO: %s", strerror(errno));
		return;
	}
	set_pst(b, off, len, PS_RO);
	note(w, b, off, len, OP_MPROTECT_RO, -1);
	b->ro_off = off;
	b->ro_len = len;
}

/* Main only: punch a hole, or fill it with fresh zero memory. */
static void op_hole(struct worker *w)
{
	struct buf *b = pick_buf(w);
	size_t off, len;
	char *q;

	if (b->hole_len) {
		off = b->hole_off;
		len = b->hole_len;
		wait_range(w, b, off, len, ACC_W);
		q = mmap(b->p + off, len, PROT_READ | PROT_WRITE,
			 PEER_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
		if (q != b->p + off) {
			failf(&ioctl_bad, "mmap MAP_FIXED_NOREPLACE of the hole at %p: %s",
			      b->p + off, q == MAP_FAILED ? strerror(errno) :
			      "other address");
			if (q != MAP_FAILED)
				munmap(q, len);
			stop_all();
			return;
		}
		memset(b->shadow + off, 0, len);
		set_pst(b, off, len, PS_RW);
		note(w, b, off, len, OP_REFILL, -1);
		b->hole_len = 0;
		return;
	}
	if (!pick_rw(w, b, 3 * MiB, &off, &len))
		return;
	wait_range(w, b, off, len, ACC_W);
	if (munmap(b->p + off, len)) {
		failf(&ioctl_bad, "munmap: %s", strerror(errno));
		return;
	}
	INC(n_holes);
	set_pst(b, off, len, PS_HOLE);
	note(w, b, off, len, OP_HOLE, -1);
	b->hole_off = off;
	b->hole_len = len;
}

/* Main only: move a whole buffer to a new 2 MiB-aligned address. */
static void op_mremap(struct worker *w)
{
	struct buf *b = pick_buf(w);
	char *target, *q;

	if (b->hole_len || b->ro_len)
		return;
	wait_range(w, b, 0, b->len, ACC_W);
	target = mmap_block(b->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
	if (target == MAP_FAILED)
		return;
	q = mremap(b->p, b->len, b->len, MREMAP_MAYMOVE | MREMAP_FIXED,
		   target);
	if (q == MAP_FAILED) {
		/* EFAULT: the buffer is several VMAs (a refilled hole). */
		if (errno != EFAULT)
			failf(&ioctl_bad, "mremap: %s", strerror(errno));
		INC(n_mremap_skipped);
		munmap(target, b->len);
		return;
	}
	INC(n_mremaps);
	b->p = q;
	b->pin_blocked = true;
	note(w, b, 0, b->len, OP_MREMAP, -1);
}

/* ---- fork ---- */

static void cmsg(const char *fmt, ...)
{
	char m[400];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(m) - 1)
		n = sizeof(m) - 1;
	if (write(STDOUT_FILENO, m, n) < 0)
		return;
}

static bool child_check(struct buf *b, size_t off, size_t len)
{
	for (size_t i = off; i < off + len; i++)
		if (b->p[i] != (char)b->shadow[i]) {
			uint32_t e, a;
			size_t wo = i & ~(size_t)3;

			memcpy(&e, b->shadow + wo, 4);
			memcpy(&a, b->p + wo, 4);
			cmsg("# child: buffer %d offset 0x%zx: expected 0x%08x, actual 0x%08x (last op #%u %s by worker %d)\n",
			     b->id, wo, e, a, b->log[i / ps].opno,
			     op_name[b->log[i / ps].kind], b->log[i / ps].worker);
			return false;
		}
	return true;
}

/*
 * In the child: the parent's files say EBADF; main's buffers (quiesced
 * before fork) equal the shadow; own writes by the CPU and own NPU jobs
 * on the copy-on-write copies, checked.  Exit codes name what failed.
 */
static __noreturn void child_main(struct worker *w)
{
	struct gmem_npu_info info;
	struct gmem_npu_job job;
	struct gmem_npu_wait wt;
	size_t off, len;
	int fd, ret;
	unsigned long ep;

	if (ioctl(files[rndn(w, NFILES)], GMEM_NPU_IOC_INFO, &info) != -1 ||
	    errno != EBADF) {
		cmsg("# child: parent's NPU file did not give EBADF\n");
		_exit(10);
	}
	job = job_sum(w->bufs[0]->p, ps);
	{
		struct gmem_npu_submit sub = { .job = job };

		if (ioctl(files[rndn(w, NFILES)], GMEM_NPU_IOC_SUBMIT, &sub) != -1 ||
		    errno != EBADF) {
			cmsg("# child: SUBMIT on the parent's file did not give EBADF\n");
			_exit(10);
		}
	}
	for (int n = 0; n < 2; n++) {
		struct buf *b = pick_buf(w);

		for (size_t pg = 0; pg < b->npages; pg++)
			if (b->pst[pg] != PS_HOLE &&
			    !child_check(b, pg * ps, ps))
				_exit(11);
	}
	fd = npu_open(0);
	if (fd < 0) {
		cmsg("# child: open /dev/gmem_npu0: %s\n", strerror(errno));
		_exit(12);
	}
	/* CPU writes of its own (the parent must not see them). */
	for (int n = 0; n < 4; n++) {
		struct buf *b = pick_buf(w);

		if (!pick_rw(w, b, 512 * 1024, &off, &len))
			continue;
		for (size_t i = off; i < off + len; i++)
			b->shadow[i] = 0xc5 ^ (uint8_t)(i >> 12);
		memcpy(b->p + off, b->shadow + off, len);
	}
	/* An NPU job of its own, then the NPU and the CPU check. */
	for (int n = 0; n < 2; n++) {
		struct buf *b = pick_buf(w);
		int v = rndn(w, 256);

		if (!pick_rw(w, b, WMAX, &off, &len))
			continue;
		ep = pin_epoch(0);
		ret = npu_fill(fd, b->p + off, len, v, &wt);
		if (ret == -ENOMEM && enomem_possible(0, ep))
			_exit(0);
		if (ret) {
			cmsg("# child: FILL 0x%zx bytes of buffer %d: status %d at 0x%llx\n",
			     len, b->id, ret, (unsigned long long)wt.fault_addr);
			_exit(13);
		}
		memset(b->shadow + off, v, len);
		if (!pick_nohole(w, b, b->len, &off, &len))
			continue;
		ep = pin_epoch(0);
		ret = npu_sum(fd, b->p + off, len, &wt);
		if (ret == -ENOMEM && enomem_possible(0, ep))
			_exit(0);
		if (ret || wt.result != shadow_sum32(b, off, len)) {
			cmsg("# child: SUM 0x%zx bytes of buffer %d: status %d, 0x%llx vs shadow 0x%llx\n",
			     len, b->id, ret, (unsigned long long)wt.result,
			     (unsigned long long)shadow_sum32(b, off, len));
			_exit(14);
		}
		if (!child_check(b, off, len))
			_exit(15);
	}
	close(fd);
	_exit(0);
}

static void reap_child(bool block)
{
	int status;
	pid_t r;

	if (!child_pid)
		return;
	r = waitpid(child_pid, &status, block ? 0 : WNOHANG);
	if (r == 0) {
		struct timespec now;

		if (!child_kill)
			return;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!block && (now.tv_sec < child_kill_at.tv_sec ||
			       (now.tv_sec == child_kill_at.tv_sec &&
				now.tv_nsec < child_kill_at.tv_nsec)))
			return;
		kill(child_pid, SIGKILL);
		r = waitpid(child_pid, &status, 0);
	}
	if (r != child_pid) {
		failf(&child_bad, "waitpid %d: %s", child_pid, strerror(errno));
	} else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
		   child_kill) {
		INC(n_kills);
		ckpt_now = true;	/* nothing of ours may be lost */
	} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		failf(&child_bad, "child %d: %s %d", child_pid,
		      WIFEXITED(status) ? "exit status" : "signal",
		      WIFEXITED(status) ? WEXITSTATUS(status) :
		      WTERMSIG(status));
	}
	child_pid = 0;
}

static void op_fork(struct worker *w)
{
	pid_t pid;

	if (child_pid)
		return;
	complete_all(w);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		failf(&child_bad, "fork: %s", strerror(errno));
		return;
	}
	if (!pid)
		child_main(w);
	INC(n_forks);
	child_pid = pid;
	child_kill = rndn(w, 3) == 0;
	clock_gettime(CLOCK_MONOTONIC, &child_kill_at);
	child_kill_at.tv_nsec += rndn(w, 1500) * 1000000L;
	child_kill_at.tv_sec += child_kill_at.tv_nsec / 1000000000L;
	child_kill_at.tv_nsec %= 1000000000L;
	/* The child's work and ours overlap: COW breaks on both sides. */
}

/* ---- checkpoints ---- */

static void checkpoint(struct worker *w)
{
	INC(n_ckpts);
	complete_all(w);
	for (int i = 0; i < w->nbufs; i++) {
		struct buf *b = w->bufs[i];

		for (size_t pg = 0; pg < b->npages &&
		     !__atomic_load_n(&data_bad, __ATOMIC_RELAXED);) {
			size_t end = pg;

			if (b->pst[pg] == PS_HOLE) {
				pg++;
				continue;
			}
			while (end < b->npages && b->pst[end] != PS_HOLE)
				end++;
			if (!cpu_check(b, pg * ps, (end - pg) * ps, "checkpoint"))
				return;
			npu_check_sum(w, b, pg * ps, (end - pg) * ps,
				      rnd_file(w));
			/* Pins go; the model's upper bound starts afresh. */
			for (int npu = 0; npu < 2; npu++) {
				int ret = gmem_advise(gfd, b->p + pg * ps,
						      (end - pg) * ps,
						      GMEM_ADV_UNPIN,
						      dev_id[npu]);

				if (ret)
					failf(&ioctl_bad, "UNPIN at checkpoint: %s",
					      strerror(-ret));
				else if (!b->hole_len)
					unpin_model(b, 0, b->len, npu);
			}
			pg = end;
		}
		if (!b->hole_len)
			b->pin_blocked = false;
	}
}

/* ---- the workers ---- */

static void one_op(struct worker *w)
{
	unsigned int r = rndn(w, w->id == 0 ? 112 : 104);

	w->opno++;
	if (r < 10)
		op_cpu_write(w);
	else if (r < 18)
		op_cpu_read(w);
	else if (r < 21)
		op_cpu_atomic(w);
	else if (r < 29)
		op_npu_fill(w);
	else if (r < 35)
		op_npu_copy(w);
	else if (r < 41)
		op_npu_add(w);
	else if (r < 49)
		op_npu_sum(w);
	else if (r < 53)
		op_npu_atomic(w);
	else if (r < 58)
		op_npu_touch(w);
	else if (r < 66)
		op_read_storm(w);
	else if (r < 82)
		op_hint(w);
	else if (r < 86)
		op_npu_prefetch(w);
	else if (r < 88)
		op_placement(w);
	else if (r < 92)
		op_mprotect(w);
	else if (r < 104)
		op_bad_job(w);
	else if (r < 108)
		op_hole(w);
	else if (r < 110)
		op_mremap(w);
	else
		op_fork(w);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	while (!stopping()) {
		one_op(w);
		if (++w->ops % CKPT_OPS == 0 || (w->id == 0 && ckpt_now)) {
			ckpt_now = false;
			checkpoint(w);
		}
		if (w->id == 0)
			reap_child(false);
	}
	complete_all(w);
	return NULL;
}

/* ---- setup and teardown ---- */

static const char *const base_keys[] = {
	"contexts", "regions", "dup_pages", "devmem_used",
};

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-s SEED] [-t SECONDS] [-R]\n"
		"  SEED defaults to one from the clock, SECONDS to $GMEM_STRESS_SECONDS or 90\n"
		"  -R: no read-mostly hints\n",
		prog);
}

int main(int argc, char **argv)
{
	/* Buffer sizes in MiB and their owners: 64 MiB in all. */
	static const int sizes[8] = { 4, 6, 10, 8, 8, 10, 12, 6 };
	static const int owner[8] = { 0, 0, 0, 0, 1, 1, 2, 2 };
	long base[ARRAY_SIZE(base_keys)], pages0, pages1;
	struct gmem_npu_info info;
	struct timespec t0, t1;
	const char *env = getenv("GMEM_STRESS_SECONDS");
	long seconds = env ? atol(env) : 90;
	bool have_seed = false, base_ok = true;
	int opt, i;

	while ((opt = getopt(argc, argv, "s:t:Rh")) != -1) {
		switch (opt) {
		case 'R':
			no_read_mostly = true;
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			have_seed = true;
			break;
		case 't':
			seconds = atol(optarg);
			break;
		case 'h':
			usage(argv[0]);
			return 0;
		default:
			usage(argv[0]);
			return 2;
		}
	}
	if (!have_seed) {
		clock_gettime(CLOCK_REALTIME, &t0);
		seed = (uint64_t)t0.tv_sec * 1000003u ^ t0.tv_nsec ^ getpid();
		seed %= 1000000000000ULL;
	}
	if (seconds < 1)
		seconds = 1;
	ksft_print_header();
	ksft_print_msg("seed %" PRIu64 "\n", seed);
	ksft_print_msg("reproduce with: %s -s %" PRIu64 " -t %ld\n", argv[0],
		       seed, seconds);
	ps = sysconf(_SC_PAGE_SIZE);

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		ksft_exit_fail_msg("mmap shared: %s\n", strerror(errno));
	memset(sh, 0, sizeof(*sh));

	/* Baseline, once an earlier test's memory is free. */
	gmem_stat_wait("devmem_used", 0, 2000);
	gmem_stat_wait("dup_pages", 0, 2000);
	for (i = 0; i < (int)ARRAY_SIZE(base_keys); i++) {
		base[i] = gmem_stat(base_keys[i]);
		if (base[i] < 0)
			base_ok = false;
	}

	gfd = open("/dev/gmem", O_RDWR);
	if (gfd < 0)
		ksft_exit_skip("open /dev/gmem: %s\n", strerror(errno));
	for (i = 0; i < NFILES; i++) {
		files[i] = npu_open(file_npu[i]);
		if (files[i] < 0)
			ksft_exit_skip("open /dev/gmem_npu%d: %s (gmem_npu.ko num_devices=2 wanted)\n",
				       file_npu[i], strerror(errno));
	}
	ksft_set_plan(6);
	for (i = 0; i < 2; i++) {
		if (npu_get_info(files[2 * i], &info))
			ksft_exit_fail_msg("INFO: %s\n", strerror(errno));
		dev_id[i] = info.dev_id;
	}
	pages0 = dev_stat("npu0", "devmem_pages");
	pages1 = dev_stat("npu1", "devmem_pages");
	/* Without debugfs assume 16 MiB (dram_mib=16). */
	sh->nchunks[0] = pages0 > 0 ? pages0 * (long)ps / BLOCK : 8;
	sh->nchunks[1] = pages1 > 0 ? pages1 * (long)ps / BLOCK : 8;
	for (i = 0; i < 2; i++) {
		long lim = gmem_param("pin_limit_pct", 100);
		long tot = gmem_param("pin_total_pct", 100);

		sh->pin_cap[i] = sh->nchunks[i] * (lim < tot ? lim : tot) / 100;
	}
	ksft_print_msg("npu0 id %d (%ld chunks), npu1 id %d (%ld chunks), %ld s\n",
		       dev_id[0], sh->nchunks[0], dev_id[1], sh->nchunks[1],
		       seconds);

	nbufs = ARRAY_SIZE(sizes);
	for (i = 0; i < nbufs; i++) {
		struct buf *b = &bufs[i];

		b->id = i;
		b->owner = owner[i];
		b->len = sizes[i] * MiB;
		b->npages = b->len / ps;
		b->nblocks = b->len / BLOCK;
		b->p = peer_mmap_block(b->len);
		b->shadow = malloc(b->len);
		b->pst = calloc(b->npages, 1);
		b->log = calloc(b->npages, sizeof(*b->log));
		b->pin = calloc(b->nblocks, 1);
		if (b->p == MAP_FAILED || !b->shadow || !b->pst || !b->log ||
		    !b->pin)
			ksft_exit_fail_msg("buffer %d: %s\n", i, strerror(errno));
		/* Initial data: a pattern, some of it left untouched (zero). */
		for (size_t o = 0; o < b->len; o += 4) {
			uint32_t v = (o / BLOCK) % 4 == 3 ? 0 :
				     pattern(o / 4, seed + i);

			memcpy(b->shadow + o, &v, 4);
		}
		for (size_t o = 0; o < b->len; o += BLOCK)
			if ((o / BLOCK) % 4 != 3)
				memcpy(b->p + o, b->shadow + o, BLOCK);
		for (size_t pg = 0; pg < b->npages; pg++)
			b->log[pg].file = -1;
	}
	for (i = 0; i < NWORKERS; i++) {
		struct worker *w = &workers[i];

		w->id = i;
		w->rng = splitmix(seed ^ (0x1000193ULL * (i + 1))) | 1;
		for (int j = 0; j < nbufs; j++)
			if (bufs[j].owner == i)
				w->bufs[w->nbufs++] = &bufs[j];
		for (int k = 0; k < MAXJOBS; k++) {
			w->undo[k] = malloc(WMAX);
			if (!w->undo[k])
				ksft_exit_fail_msg("malloc\n");
		}
	}
	fflush(stdout);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	t_end = t0;
	t_end.tv_sec += seconds;
	for (i = 1; i < NWORKERS; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_run,
				   &workers[i]))
			ksft_exit_fail_msg("pthread_create\n");
	worker_run(&workers[0]);
	for (i = 1; i < NWORKERS; i++)
		pthread_join(workers[i].thread, NULL);
	/* A child still running gets two minutes, then counts as hung. */
	for (i = 0; child_pid && i < 12000; i++) {
		reap_child(false);
		if (child_pid)
			usleep(10000);
	}
	if (child_pid) {
		failf(&child_bad, "child %d still running after 120 s", child_pid);
		child_kill = false;
		kill(child_pid, SIGKILL);
		waitpid(child_pid, NULL, 0);
		child_pid = 0;
	}

	/* Final checkpoint of everything (unless a mismatch stopped us). */
	if (!data_bad)
		for (i = 0; i < NWORKERS; i++) {
			workers[i].opno++;
			checkpoint(&workers[i]);
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (i = 0; i < NWORKERS; i++)
		ksft_print_msg("worker %d: %lu operations\n", i, workers[i].ops);
	ksft_print_msg("%ld jobs, %ld checkpoints, %ld read storms, %ld hints, %ld expected faults, %ld ENOMEM, %ld EINTR, %ld forks (%ld killed), %ld holes, %ld mremaps (%ld skipped), %ld s\n",
		       n_jobs, n_ckpts, n_storms, n_hints, n_exp_fault,
		       n_enomem, n_eintr, n_forks, n_kills, n_holes,
		       n_mremaps, n_mremap_skipped, (long)(t1.tv_sec - t0.tv_sec));
	ksft_print_msg("gmem: dup_collapses %ld thrash_pins %ld evictions %ld oom_faults %ld discarded_pages %ld\n",
		       gmem_stat("dup_collapses"), gmem_stat("thrash_pins"),
		       gmem_stat("evictions"), gmem_stat("oom_faults"),
		       gmem_stat("discarded_pages"));

	ksft_test_result(!data_bad, "data matches shadow\n");
	ksft_test_result(!result_bad, "npu results match shadow\n");
	ksft_test_result(!job_bad, "no unexpected job errors\n");
	ksft_test_result(!ioctl_bad, "no unexpected hint or syscall errors\n");
	ksft_test_result(!child_bad, "children exited cleanly (%ld forked, %ld killed)\n",
			 n_forks, n_kills);

	/* Teardown: everything goes, and gmem's gauges come back. */
	for (i = 0; i < nbufs; i++) {
		struct buf *b = &bufs[i];

		if (b->hole_len) {
			if (b->hole_off)
				munmap(b->p, b->hole_off);
			if (b->hole_off + b->hole_len < b->len)
				munmap(b->p + b->hole_off + b->hole_len,
				       b->len - b->hole_off - b->hole_len);
		} else {
			munmap(b->p, b->len);
		}
		free(b->shadow);
		free(b->pst);
		free(b->log);
		free(b->pin);
	}
	for (i = 0; i < NFILES; i++)
		close(files[i]);
	close(gfd);
	if (!base_ok) {
		ksft_test_result_skip("gmem state back to baseline (gmem/stats unreadable)\n");
	} else {
		bool ok = true;

		for (i = 0; i < (int)ARRAY_SIZE(base_keys); i++) {
			long v = gmem_stat_wait(base_keys[i], base[i],
						STAT_WAIT_MS);

			if (v != base[i]) {
				ksft_print_msg("FAIL seed=%" PRIu64 ": gmem/stats %s is %ld, was %ld at start\n",
					       seed, base_keys[i], v, base[i]);
				ok = false;
			}
		}
		ksft_test_result(ok, "gmem state back to baseline\n");
	}
	if (ksft_get_fail_cnt())
		ksft_print_msg("failed with seed %" PRIu64 " (rerun: -s %" PRIu64 ")\n",
			       seed, seed);
	ksft_finished();
}
