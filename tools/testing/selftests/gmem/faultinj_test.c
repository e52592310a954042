// SPDX-License-Identifier: GPL-2.0
/*
 * Fault injection: gmem's user API under failing slab and page allocations.
 *
 * failslab and fail_page_alloc (Documentation/fault-injection/) are set up
 * with task-filter=Y, so that only a task with /proc/self/make-it-fail=1
 * sees failures, with a probability of 5..20%, interval 1, times -1,
 * verbose 0, space 0, ignore-gfp-wait=N (both), ignore-gfp-highmem=N and
 * min-order 0 (fail_page_alloc).  Each iteration runs in a fresh forked
 * child (its own process group) with its own seed, derived from a base
 * seed that is printed (FAULTINJ_SEED=<n> repeats a run, FAULTINJ_ITERS=<n>
 * sets the number of iterations).  The seed fixes the scenario's choices
 * and the probability; which allocations fail is up to the kernel's
 * prandom, so a run is not bit-for-bit repeatable.
 *
 * One iteration: map MAP_PEER_SHARED buffers, open both NPUs and
 * /dev/gmem, fill sources with the CPU, run FILL/COPY/ADD/REDUCE_SUM jobs
 * (device faults, migration to the device and between devices), read back
 * with the CPU (migration to host), prefetch both ways, read duplication
 * (GMEM_ADV_SET_READ_MOSTLY, two NPUs reading), hints (preferred location,
 * accessed-by, pin/unpin, prefetch, get-attrs), every 4th iteration an
 * 18 MiB working set on one 16 MiB NPU (eviction), fork with the child
 * reading the data and running its own job, and teardown (close, munmap,
 * exit) with failures still on.
 *
 * make-it-fail is 1 only around gmem system calls: mmap/munmap of peer
 * memory, open/close of the devices, every ioctl (job SUBMIT + WAIT,
 * prefetch, advise), fork and exit.  It is 0 around the CPU's own touches
 * of the memory (fill, check): a CPU page fault whose allocation fails
 * returns VM_FAULT_OOM (retried) or, in gmem's migrate_to_ram, possibly
 * VM_FAULT_SIGBUS, and a SIGBUS there would be ambiguous.  With the
 * touches outside, any SIGSEGV/SIGBUS (or other fatal signal) of an
 * iteration child is a failure: an injected allocation failure reached
 * user space as a crash.  Note that the NPU runs jobs on its workqueue: an
 * allocation made while resolving a device fault happens in a kworker,
 * which the task filter never fails; the fault and migration paths are
 * reached under injection through PREFETCH/PIN/ACCESSED_BY, which run
 * them in the caller's context, and through the CPU-side migrations and
 * invalidations that the ioctls trigger.
 *
 * Accepted outcomes, for every system call and ioctl made with
 * make-it-fail=1: success, or failure with ENOMEM, EFAULT (a copy to or
 * from user memory whose page-fault allocation failed), EAGAIN, EINTR,
 * ENODEV, EBUSY or ECANCELED.  A job's status must be 0 or minus one of
 * those.  Anything else fails the iteration.
 *
 * Data model, checked by the CPU with make-it-fail=0: the sources (written
 * only by the CPU) read back unchanged after every migration, hint or
 * failed call, in the parent and in a forked child; a job that succeeded
 * produced the right result (REDUCE_SUM's value, the destination of
 * FILL/COPY/ADD); a failed job leaves its destination unknown (it may be
 * partly written), so the model forgets it until the next successful job
 * writes it.  A child's NPU writes never reach the parent (COW).
 *
 * After each iteration and after the last, with failures off, the
 * counters of debugfs gmem/stats that describe the present (contexts,
 * regions, address_spaces, dup_pages, devmem_used) return to their values
 * at the start (teardown is asynchronous: they are waited for).  The
 * second test runs the whole scenario with probability 0 and requires
 * every call and job to succeed with correct data: nothing was left
 * broken.
 *
 * The probabilities are set back to 0 at teardown, and by a guard process
 * (in its own process group) when the test process dies in any other way,
 * e.g. killed by the harness's timeout.
 *
 * Needs debugfs, CONFIG_FAILSLAB (skips without /sys/kernel/debug/failslab),
 * gmem.ko and gmem_npu.ko num_devices=2 dram_mib=16.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

#define FAILSLAB	"/sys/kernel/debug/failslab"
#define FAILPAGE	"/sys/kernel/debug/fail_page_alloc"

#define ITERS_DEFAULT	24
#define BUF_LEN		(2 * BLOCK)	/* sources and destination */
#define EVICT_LEN	(9 * BLOCK)	/* 18 MiB: more than one NPU has */
#define ITER_TIMEOUT_S	240		/* one iteration, TCG + KASAN */
#define STAT_WAIT_MS	10000		/* teardown is asynchronous */

static const char *const present_stats[] = {
	"contexts", "regions", "address_spaces", "dup_pages", "devmem_used",
};
#define NSTATS (sizeof(present_stats) / sizeof(present_stats[0]))

/* ---- debugfs ---------------------------------------------------------- */

static int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY), ret = 0;
	size_t n = strlen(val);

	if (fd < 0)
		return -errno;
	if (write(fd, val, n) != (ssize_t)n)
		ret = errno ? -errno : -EIO;
	close(fd);
	return ret;
}

static int attr_set(const char *dir, const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return write_str(path, val);
}

static void set_probability(unsigned int pct)
{
	char v[16];

	snprintf(v, sizeof(v), "%u", pct);
	attr_set(FAILSLAB, "probability", v);
	if (access(FAILPAGE, F_OK) == 0)
		attr_set(FAILPAGE, "probability", v);
}

/* Everything but the probability (set to 0 here); 0 or -errno. */
static int configure(const char *dir, bool page_alloc)
{
	static const char *const common[][2] = {
		{ "probability", "0" }, { "task-filter", "Y" },
		{ "interval", "1" }, { "times", "-1" }, { "verbose", "0" },
		{ "space", "0" }, { "ignore-gfp-wait", "N" },
	};
	int ret;

	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
		ret = attr_set(dir, common[i][0], common[i][1]);
		if (ret)
			return ret;
	}
	if (page_alloc) {
		ret = attr_set(dir, "ignore-gfp-highmem", "N");
		if (!ret)
			ret = attr_set(dir, "min-order", "0");
	}
	return ret;
}

/*
 * A process outside the test's process group that sets the probabilities
 * back to 0 when the write end of @pfd (held by the test) closes, however
 * the test ends.
 */
static pid_t start_guard(int *wfd)
{
	int pfd[2];
	pid_t pid;
	char c;

	if (pipe(pfd))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		close(pfd[1]);
		while (read(pfd[0], &c, 1) > 0 || errno == EINTR)
			;
		set_probability(0);
		_exit(0);
	}
	close(pfd[0]);
	*wfd = pfd[1];
	return pid;
}

/* ---- what an iteration child reports ---------------------------------- */

struct report {
	char step[64];		/* the step the child is in */
	char msg[512];		/* why it failed */
	char errs[1024];	/* accepted failures, "step:ERRNO ..." */
	unsigned int nerrs;	/* accepted failures */
	unsigned int jobs_ok;
	unsigned int jobs_failed;
	unsigned int checks;	/* data checks passed */
	char gstep[64];		/* the fork child's */
	char gmsg[256];
};

/* State of one iteration child, on its stack (nothing in .data/.bss). */
struct iter {
	struct report *r;
	int mif_fd;		/* /proc/self/make-it-fail of this task */
	bool inject;		/* failures on (else every call must succeed) */
	int wfd_guard;		/* closed at once */
	__u64 rng;
	size_t ps;
	int fd[2], dev[2], gfd;
	char *a, *b, *d, *e;
	__u32 sa, sb;		/* patterns of a, b */
	/* What d holds. */
	enum { D_UNKNOWN, D_BYTE, D_PATTERN_A, D_SUM_AB } dstate;
	__u8 dbyte;
	bool evict;
};

static __u64 rnd(__u64 *s)
{
	/* splitmix64 */
	__u64 z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void set_mif(struct iter *it, bool on)
{
	char c = on && it->inject ? '1' : '0';

	/* No allocation on this path; retry anyway. */
	for (int i = 0; i < 1000; i++)
		if (write(it->mif_fd, &c, 1) == 1)
			return;
	_exit(3);
}

static void step(struct iter *it, const char *name)
{
	snprintf(it->r->step, sizeof(it->r->step), "%s", name);
}

static __attribute__((noreturn, format(printf, 2, 3)))
void fail(struct iter *it, const char *fmt, ...)
{
	va_list ap;

	set_mif(it, false);
	va_start(ap, fmt);
	vsnprintf(it->r->msg, sizeof(it->r->msg), fmt, ap);
	va_end(ap);
	_exit(1);
}

/* The errnos an injected allocation failure may give (see the top). */
static bool accepted(int err)
{
	switch (err) {
	case ENOMEM: case EFAULT: case EAGAIN: case EINTR:
	case ENODEV: case EBUSY: case ECANCELED:
		return true;
	}
	return false;
}

/*
 * The outcome @ret (0 or -errno) of call @what: true if it succeeded,
 * false if it failed acceptably (recorded); fails the iteration otherwise.
 */
static bool outcome(struct iter *it, const char *what, int ret)
{
	struct report *r = it->r;
	size_t n;

	if (ret == 0)
		return true;
	if (ret > 0)
		fail(it, "%s: returned %d", what, ret);
	if (!it->inject || !accepted(-ret))
		fail(it, "%s: %s (%d)%s", what, strerror(-ret), ret,
		     it->inject ? ", not an accepted errno" :
		     ", with failures off");
	r->nerrs++;
	n = strlen(r->errs);
	if (n + 48 < sizeof(r->errs))
		snprintf(r->errs + n, sizeof(r->errs) - n, "%s:%s ", what,
			 strerrorname_np(-ret) ?: "?");
	return false;
}

/*
 * A job on @fd: true if it ran and succeeded, false if SUBMIT/WAIT failed
 * or the job ended with an accepted -errno; fails on anything else.
 */
static bool job(struct iter *it, const char *what, int fd,
		const struct gmem_npu_job *j, struct gmem_npu_wait *w)
{
	__u64 seqno;
	int ret;

	step(it, what);
	set_mif(it, true);
	ret = npu_submit(fd, j, &seqno);
	if (!ret)
		ret = npu_wait(fd, seqno, WAIT_FOREVER, w);
	set_mif(it, false);
	if (!outcome(it, what, ret))
		return false;
	if (w->status > 0)
		fail(it, "%s: job status %d", what, w->status);
	if (w->status) {
		it->r->jobs_failed++;
		return outcome(it, what, w->status);
	}
	it->r->jobs_ok++;
	return true;
}

static char *map_peer(struct iter *it, const char *what, size_t len)
{
	char *p;

	step(it, what);
	set_mif(it, true);
	p = peer_mmap_block(len);
	set_mif(it, false);
	if (p == MAP_FAILED) {
		outcome(it, what, -errno);
		return NULL;
	}
	return p;
}

static void unmap(struct iter *it, const char *what, void *p, size_t len)
{
	if (!p)
		return;
	step(it, what);
	set_mif(it, true);
	outcome(it, what, munmap(p, len) ? -errno : 0);
	set_mif(it, false);
}

/* gmem_advise() with make-it-fail on. */
static bool advise(struct iter *it, const char *what, void *p, size_t len,
		   __u32 advice, int dev)
{
	int ret;

	if (it->gfd < 0)
		return false;
	step(it, what);
	set_mif(it, true);
	ret = gmem_advise(it->gfd, p, len, advice, dev);
	set_mif(it, false);
	return outcome(it, what, ret);
}

static bool prefetch(struct iter *it, const char *what, int fd, void *p,
		     size_t len, __u32 flags)
{
	int ret;

	step(it, what);
	set_mif(it, true);
	ret = npu_prefetch(fd, p, len, flags);
	set_mif(it, false);
	return outcome(it, what, ret);
}

/* ---- data checks (make-it-fail off) ----------------------------------- */

static void check_src(struct iter *it, const char *what)
{
	ssize_t bad;

	step(it, what);
	if (it->a && (bad = check_pattern(it->a, BUF_LEN, it->sa)) != -1)
		fail(it, "%s: source a element %zd is 0x%x, not 0x%x", what,
		     bad, ((__u32 *)it->a)[bad], pattern(bad, it->sa));
	if (it->b && (bad = check_pattern(it->b, BUF_LEN, it->sb)) != -1)
		fail(it, "%s: source b element %zd is 0x%x, not 0x%x", what,
		     bad, ((__u32 *)it->b)[bad], pattern(bad, it->sb));
	it->r->checks++;
}

static void check_dst(struct iter *it, const char *what)
{
	const __u32 *u = (const __u32 *)it->d;
	ssize_t bad = -1;

	if (!it->d)
		return;
	step(it, what);
	switch (it->dstate) {
	case D_UNKNOWN:
		return;
	case D_BYTE:
		bad = find_not_byte(it->d, BUF_LEN, it->dbyte);
		if (bad >= 0)
			bad /= 4;
		break;
	case D_PATTERN_A:
		bad = check_pattern(it->d, BUF_LEN, it->sa);
		break;
	case D_SUM_AB:
		for (size_t i = 0; i < BUF_LEN / 4; i++)
			if (u[i] != pattern(i, it->sa) + pattern(i, it->sb)) {
				bad = i;
				break;
			}
		break;
	}
	if (bad != -1)
		fail(it, "%s: destination (state %d) u32 %zd is 0x%x", what,
		     it->dstate, bad, u[bad]);
	it->r->checks++;
}

static void check_sum(struct iter *it, const char *what, __u64 got,
		      __u64 want)
{
	if (got != want)
		fail(it, "%s: REDUCE_SUM 0x%llx, expected 0x%llx", what,
		     (unsigned long long)got, (unsigned long long)want);
	it->r->checks++;
}

/* ---- the scenario ----------------------------------------------------- */

static void open_all(struct iter *it)
{
	struct gmem_npu_info info;
	char what[32];
	int ret;

	for (int i = 0; i < 2; i++) {
		snprintf(what, sizeof(what), "open_npu%d", i);
		step(it, what);
		set_mif(it, true);
		it->fd[i] = npu_open(i);
		ret = it->fd[i] < 0 ? -errno : 0;
		set_mif(it, false);
		if (ret == -ENOENT && i == 1)
			continue;	/* one NPU only */
		if (!outcome(it, what, ret))
			continue;
		snprintf(what, sizeof(what), "info_npu%d", i);
		set_mif(it, true);
		ret = npu_get_info(it->fd[i], &info);
		set_mif(it, false);
		if (!outcome(it, what, ret) &&
		    npu_get_info(it->fd[i], &info))
			fail(it, "%s: %s with failures off", what,
			     strerror(errno));
		it->dev[i] = info.dev_id;
	}
	step(it, "open_gmem");
	set_mif(it, true);
	it->gfd = open("/dev/gmem", O_RDWR);
	ret = it->gfd < 0 ? -errno : 0;
	set_mif(it, false);
	outcome(it, "open_gmem", ret);
}

static void jobs(struct iter *it)
{
	struct gmem_npu_wait w;
	struct gmem_npu_job j;
	int f0 = it->fd[0], f1 = it->fd[1] >= 0 ? it->fd[1] : it->fd[0];
	__u8 byte = 1 + rnd(&it->rng) % 254;
	bool on1;

	if (f0 < 0 || !it->d)
		return;
	j = job_fill(it->d, BUF_LEN, byte);
	it->dstate = D_UNKNOWN;
	if (job(it, "job_fill", f0, &j, &w)) {
		it->dstate = D_BYTE;
		it->dbyte = byte;
	}
	check_dst(it, "readback_fill");		/* migration to host */
	if (!it->a)
		return;
	j = (struct gmem_npu_job){ .op = GMEM_NPU_OP_COPY, .dst = U64(it->d),
				   .src = U64(it->a), .len = BUF_LEN };
	it->dstate = D_UNKNOWN;
	if (job(it, "job_copy", f0, &j, &w))
		it->dstate = D_PATTERN_A;
	/* The other NPU reads a and d: device to device through host. */
	j = job_sum(it->a, BUF_LEN);
	if (job(it, "job_sum_a", f1, &j, &w))
		check_sum(it, "job_sum_a", w.result, pattern_sum(BUF_LEN, it->sa));
	if (it->dstate == D_PATTERN_A) {
		j = job_sum(it->d, BUF_LEN);
		if (job(it, "job_sum_d", f1, &j, &w))
			check_sum(it, "job_sum_d", w.result,
				  pattern_sum(BUF_LEN, it->sa));
	}
	check_src(it, "readback_src1");
	check_dst(it, "readback_copy");
	if (!it->b)
		return;
	j = (struct gmem_npu_job){ .op = GMEM_NPU_OP_ADD, .dst = U64(it->d),
				   .src = U64(it->a), .src2 = U64(it->b),
				   .len = BUF_LEN };
	it->dstate = D_UNKNOWN;
	on1 = rnd(&it->rng) & 1;
	if (job(it, on1 ? "job_add_npu1" : "job_add_npu0", on1 ? f1 : f0,
		&j, &w))
		it->dstate = D_SUM_AB;
	/* Explicit migration both ways, in this task's context. */
	prefetch(it, "prefetch_dev", f0, it->d, BUF_LEN, 0);
	prefetch(it, "prefetch_host", f0, it->a, BUF_LEN,
		 GMEM_NPU_PREFETCH_TO_HOST);
	prefetch(it, "prefetch_dev_b", f1, it->b, BUF_LEN, 0);
	check_src(it, "readback_src2");
	check_dst(it, "readback_add");
}

static void read_dup(struct iter *it)
{
	struct gmem_npu_wait w;
	struct gmem_npu_job j = job_sum(it->a, BUF_LEN);
	__u64 want = pattern_sum(BUF_LEN, it->sa);
	__u32 *u = (__u32 *)it->a;

	if (!it->a || it->gfd < 0 || it->fd[0] < 0)
		return;
	advise(it, "set_read_mostly", it->a, BUF_LEN,
	       GMEM_ADV_SET_READ_MOSTLY, 0);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 2; i++) {
			if (it->fd[i] < 0)
				continue;
			if (job(it, i ? "dup_sum_npu1" : "dup_sum_npu0",
				it->fd[i], &j, &w))
				check_sum(it, "dup_sum", w.result, want);
		}
		/* A CPU write (same values) collapses the copies. */
		step(it, "dup_cpu_write");
		for (size_t k = 0; k < BUF_LEN / 4; k += it->ps / 4)
			u[k] = pattern(k, it->sa);
		check_src(it, "dup_cpu_read");
	}
	advise(it, "unset_read_mostly", it->a, BUF_LEN,
	       GMEM_ADV_UNSET_READ_MOSTLY, 0);
}

static void hints(struct iter *it)
{
	struct gmem_range_attrs q;
	struct gmem_npu_wait w;
	struct gmem_npu_job j = job_sum(it->b, BUF_LEN);
	__u64 want = pattern_sum(BUF_LEN, it->sb);
	int d0 = it->dev[0], d1 = it->fd[1] >= 0 ? it->dev[1] : it->dev[0];
	int f1 = it->fd[1] >= 0 ? it->fd[1] : it->fd[0];
	bool pinned;
	int ret;

	if (!it->b || it->gfd < 0 || it->fd[0] < 0)
		return;
	advise(it, "set_preferred", it->b, BUF_LEN,
	       GMEM_ADV_SET_PREFERRED_LOCATION, d0);
	advise(it, "set_accessed_by", it->b, BUF_LEN,
	       GMEM_ADV_SET_ACCESSED_BY, d1);
	pinned = advise(it, "pin", it->b, BUF_LEN, GMEM_ADV_PIN, d0);
	step(it, "get_attrs");
	set_mif(it, true);
	ret = gmem_get_attrs(it->gfd, it->b, BUF_LEN, &q);
	set_mif(it, false);
	if (outcome(it, "get_attrs", ret) && pinned &&
	    !(q.pinned & (1ULL << d0)))
		fail(it, "get_attrs: pinned 0x%llx after PIN of dev %d",
		     (unsigned long long)q.pinned, d0);
	if (job(it, "hint_sum_npu1", f1, &j, &w))
		check_sum(it, "hint_sum_npu1", w.result, want);
	if (job(it, "hint_sum_npu0", it->fd[0], &j, &w))
		check_sum(it, "hint_sum_npu0", w.result, want);
	check_src(it, "hint_readback");
	if (pinned)
		advise(it, "unpin", it->b, BUF_LEN, GMEM_ADV_UNPIN, d0);
	advise(it, "adv_prefetch_dev", it->b, BUF_LEN, GMEM_ADV_PREFETCH, d1);
	advise(it, "adv_prefetch_host", it->b, BUF_LEN, GMEM_ADV_PREFETCH,
	       GMEM_DEV_HOST);
	advise(it, "unset_accessed_by", it->b, BUF_LEN,
	       GMEM_ADV_UNSET_ACCESSED_BY, d1);
	advise(it, "unset_preferred", it->b, BUF_LEN,
	       GMEM_ADV_UNSET_PREFERRED_LOCATION, 0);
	check_src(it, "hint_readback2");
}

static void eviction(struct iter *it)
{
	struct gmem_npu_wait w;
	struct gmem_npu_job j;
	__u32 se = it->sa ^ 0x5a5a5a5a;
	ssize_t bad;

	if (!it->evict || it->fd[0] < 0)
		return;
	it->e = map_peer(it, "mmap_evict", EVICT_LEN);
	if (!it->e)
		return;
	step(it, "evict_cpu_fill");
	fill_pattern(it->e, EVICT_LEN, se);
	j = job_sum(it->e, EVICT_LEN);
	if (job(it, "evict_sum", it->fd[0], &j, &w))
		check_sum(it, "evict_sum", w.result, pattern_sum(EVICT_LEN, se));
	/* Eviction in this task's context. */
	prefetch(it, "evict_prefetch", it->fd[0], it->e, EVICT_LEN, 0);
	step(it, "evict_readback");
	bad = check_pattern(it->e, EVICT_LEN, se);
	if (bad != -1)
		fail(it, "evict_readback: element %zd", bad);
	it->r->checks++;
	unmap(it, "munmap_evict", it->e, EVICT_LEN);
	it->e = NULL;
}

/*
 * The fork child: reads the data (CPU), runs a job of its own on its own
 * NPU file writing its copy of d, and exits, failures on.  0 or a code.
 */
static int fork_child(struct iter *it)
{
	struct report *r = it->r;
	struct gmem_npu_wait w;
	struct gmem_npu_job j;
	__u64 seqno;
	int fd, ret, i;

	/* make-it-fail was inherited; the parent's fd is the parent's. */
	for (i = 0; i < 100000; i++) {
		it->mif_fd = open("/proc/self/make-it-fail", O_WRONLY);
		if (it->mif_fd >= 0)
			break;
	}
	if (it->mif_fd < 0)
		return 2;
	set_mif(it, false);
	snprintf(r->gstep, sizeof(r->gstep), "child_readback");
	if (it->a && check_pattern(it->a, BUF_LEN, it->sa) != -1) {
		snprintf(r->gmsg, sizeof(r->gmsg), "child: a corrupted");
		return 1;
	}
	if (it->dstate == D_BYTE && find_not_byte(it->d, BUF_LEN,
						  it->dbyte) != -1) {
		snprintf(r->gmsg, sizeof(r->gmsg), "child: d corrupted");
		return 1;
	}
	snprintf(r->gstep, sizeof(r->gstep), "child_job");
	set_mif(it, true);
	fd = npu_open(0);
	if (fd >= 0) {
		j = job_fill(it->d, BUF_LEN, it->dbyte ^ 0xff);
		ret = npu_submit(fd, &j, &seqno);
		if (!ret)
			ret = npu_wait(fd, seqno, WAIT_FOREVER, &w);
		if (!ret)
			ret = w.status;
		if (ret && (!it->inject || !accepted(-ret))) {
			set_mif(it, false);
			snprintf(r->gmsg, sizeof(r->gmsg),
				 "child: fill job %d", ret);
			return 1;
		}
		j = job_sum(it->a, BUF_LEN);
		ret = npu_submit(fd, &j, &seqno);
		if (!ret)
			ret = npu_wait(fd, seqno, WAIT_FOREVER, &w);
		if (!ret && !w.status &&
		    w.result != pattern_sum(BUF_LEN, it->sa)) {
			set_mif(it, false);
			snprintf(r->gmsg, sizeof(r->gmsg), "child: sum wrong");
			return 1;
		}
		close(fd);
	} else if (!it->inject || !accepted(errno)) {
		set_mif(it, false);
		snprintf(r->gmsg, sizeof(r->gmsg), "child: open npu0: %s",
			 strerror(errno));
		return 1;
	}
	snprintf(r->gstep, sizeof(r->gstep), "child_exit");
	return 0;			/* exits with make-it-fail on */
}

static void forking(struct iter *it)
{
	int status;
	pid_t pid;

	if (!it->a || !it->d)
		return;
	step(it, "fork");
	fflush(NULL);
	set_mif(it, true);
	pid = fork();
	if (pid == 0)
		_exit(fork_child(it));
	set_mif(it, false);
	if (pid < 0) {
		outcome(it, "fork", -errno);
		return;
	}
	step(it, "fork_wait");
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail(it, "waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status))
		fail(it, "fork child killed by signal %d (%s) in %s",
		     WTERMSIG(status), strsignal(WTERMSIG(status)),
		     it->r->gstep);
	if (WEXITSTATUS(status))
		fail(it, "fork child exited %d in %s: %s", WEXITSTATUS(status),
		     it->r->gstep, it->r->gmsg);
	/* The child's writes to its d stay in the child. */
	check_src(it, "fork_parent_src");
	check_dst(it, "fork_parent_dst");
}

static void teardown(struct iter *it)
{
	step(it, "teardown");
	set_mif(it, true);
	for (int i = 0; i < 2; i++)
		if (it->fd[i] >= 0)
			close(it->fd[i]);
	if (it->gfd >= 0)
		close(it->gfd);
	set_mif(it, false);
	unmap(it, "munmap_a", it->a, BUF_LEN);
	unmap(it, "munmap_b", it->b, BUF_LEN);
	unmap(it, "munmap_d", it->d, BUF_LEN);
	step(it, "exit");
	set_mif(it, true);	/* exit (and mm teardown) with failures on */
}

/* One iteration, in a fresh child. */
static __attribute__((noreturn))
void run_iteration(struct report *r, __u64 seed, bool inject, bool evict,
		   int wfd_guard)
{
	volatile char pad[256 << 10];	/* fault the stack in now */
	struct iter it = {
		.r = r, .inject = inject, .rng = seed, .gfd = -1,
		.fd = { -1, -1 }, .dev = { -1, -1 }, .evict = evict,
		.ps = sysconf(_SC_PAGE_SIZE),
	};

	memset((char *)pad, 0, sizeof(pad));
	setpgid(0, 0);
	if (wfd_guard >= 0)
		close(wfd_guard);
	memset(r, 0, sizeof(*r));
	it.mif_fd = open("/proc/self/make-it-fail", O_WRONLY);
	if (it.mif_fd < 0) {
		snprintf(r->msg, sizeof(r->msg), "open make-it-fail: %s",
			 strerror(errno));
		_exit(1);
	}
	it.sa = rnd(&it.rng);
	it.sb = rnd(&it.rng);
	errno = 0;

	it.a = map_peer(&it, "mmap_a", BUF_LEN);
	it.b = map_peer(&it, "mmap_b", BUF_LEN);
	it.d = map_peer(&it, "mmap_d", BUF_LEN);
	open_all(&it);
	step(&it, "cpu_fill");
	if (it.a)
		fill_pattern(it.a, BUF_LEN, it.sa);
	if (it.b)
		fill_pattern(it.b, BUF_LEN, it.sb);
	if (it.d)
		memset(it.d, 0, BUF_LEN);
	jobs(&it);
	read_dup(&it);
	hints(&it);
	eviction(&it);
	forking(&it);
	check_src(&it, "final_readback");
	check_dst(&it, "final_readback_dst");
	teardown(&it);
	_exit(0);
}

/*
 * Runs one iteration in a child and waits for it (ITER_TIMEOUT_S at most).
 * 0, or -1 with the reason logged.
 */
static int iteration(struct __test_metadata *_metadata, struct report *r,
		     int n, __u64 seed, unsigned int pct, bool inject,
		     bool evict, int wfd_guard)
{
	int status = 0, waited = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		TH_LOG("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0)
		run_iteration(r, seed, inject, evict, wfd_guard);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (waited++ >= ITER_TIMEOUT_S * 10) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			TH_LOG("iteration %d (seed 0x%llx, %u%%): hung in %s",
			       n, (unsigned long long)seed, pct, r->step);
			return -1;
		}
		usleep(100000);
	}
	/* Reap a fork child left behind, if any. */
	kill(-pid, SIGKILL);
	ksft_print_msg("iteration %d seed 0x%llx p=%u%%%s: %u accepted failures, %u jobs ok, %u jobs failed, %u checks%s%s\n",
		       n, (unsigned long long)seed, pct,
		       evict ? " +evict" : "", r->nerrs, r->jobs_ok,
		       r->jobs_failed, r->checks, r->nerrs ? ": " : "",
		       r->errs);
	if (WIFSIGNALED(status)) {
		TH_LOG("iteration %d (seed 0x%llx, %u%%): killed by signal %d (%s) in %s: an injected failure reached user space as a crash",
		       n, (unsigned long long)seed, pct, WTERMSIG(status),
		       strsignal(WTERMSIG(status)), r->step);
		return -1;
	}
	if (WEXITSTATUS(status)) {
		TH_LOG("iteration %d (seed 0x%llx, %u%%): exit %d in %s: %s",
		       n, (unsigned long long)seed, pct, WEXITSTATUS(status),
		       r->step, r->msg);
		return -1;
	}
	return 0;
}

/* ---- the fixture ------------------------------------------------------ */

FIXTURE(faultinj)
{
	bool page_alloc;
	long base[NSTATS];
	int wfd_guard;
	pid_t guard;
	struct report *r;
};

FIXTURE_SETUP(faultinj)
{
	self->guard = -1;
	self->wfd_guard = -1;
	self->r = MAP_FAILED;
	if (access(FAILSLAB, F_OK))
		SKIP(return, "no %s (CONFIG_FAILSLAB, debugfs)", FAILSLAB);
	ASSERT_EQ(access("/proc/self/make-it-fail", W_OK), 0)
		TH_LOG("/proc/self/make-it-fail: %s", strerror(errno));
	ASSERT_EQ(access("/dev/gmem_npu0", F_OK), 0)
		TH_LOG("no /dev/gmem_npu0 (gmem_npu.ko loaded?)");
	self->page_alloc = access(FAILPAGE, F_OK) == 0;
	if (!self->page_alloc)
		TH_LOG("no %s: slab failures only", FAILPAGE);
	self->guard = start_guard(&self->wfd_guard);
	ASSERT_GE(self->guard, 0);
	ASSERT_EQ(configure(FAILSLAB, false), 0)
		TH_LOG("configuring %s", FAILSLAB);
	if (self->page_alloc)
		ASSERT_EQ(configure(FAILPAGE, true), 0)
			TH_LOG("configuring %s", FAILPAGE);
	self->r = mmap(NULL, sizeof(struct report), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(self->r, MAP_FAILED);
	memset(self->r, 0, sizeof(*self->r));
	/* Let an earlier test's memory be freed first. */
	gmem_stat_wait("devmem_used", 0, 2000);
	gmem_stat_wait("contexts", 0, 2000);
	for (size_t i = 0; i < NSTATS; i++) {
		self->base[i] = gmem_stat(present_stats[i]);
		ASSERT_GE(self->base[i], 0)
			TH_LOG("no %s in debugfs gmem/stats", present_stats[i]);
	}
}

FIXTURE_TEARDOWN(faultinj)
{
	int status;

	set_probability(0);
	if (self->wfd_guard >= 0)
		close(self->wfd_guard);
	if (self->guard > 0)
		waitpid(self->guard, &status, 0);
	if (self->r != MAP_FAILED)
		munmap(self->r, sizeof(*self->r));
}

/* Every counter of present_stats back at its start value; 0 or -1. */
static int stats_back(struct __test_metadata *_metadata,
		      FIXTURE_DATA(faultinj) *self, const char *when)
{
	int ret = 0;

	for (size_t i = 0; i < NSTATS; i++) {
		long v = gmem_stat_wait(present_stats[i], self->base[i],
					STAT_WAIT_MS);

		if (v != self->base[i]) {
			TH_LOG("%s: gmem/stats %s is %ld, was %ld at start",
			       when, present_stats[i], v, self->base[i]);
			ret = -1;
		}
	}
	return ret;
}

static __u64 base_seed(void)
{
	const char *s = getenv("FAULTINJ_SEED");
	struct timespec ts;

	if (s && *s)
		return strtoull(s, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (__u64)ts.tv_sec * 1000003u ^ ts.tv_nsec ^ getpid();
}

/* Random slab and page allocation failures in many iterations. */
TEST_F_TIMEOUT(faultinj, random_failures, 900)
{
	const char *s = getenv("FAULTINJ_ITERS");
	int iters = s && *s ? atoi(s) : ITERS_DEFAULT;
	__u64 base = base_seed(), seed, rng;
	unsigned long total_errs = 0;
	int failed = 0, leaked_after = -1;
	char when[64];

	ksft_print_msg("faultinj: base seed 0x%llx (FAULTINJ_SEED=0x%llx repeats the scenario), %d iterations\n",
		       (unsigned long long)base, (unsigned long long)base,
		       iters);
	for (int n = 0; n < iters; n++) {
		unsigned int pct;

		rng = base + (__u64)n * 0x9e3779b97f4a7c15ULL;
		seed = rnd(&rng);
		pct = 5 + rnd(&rng) % 16;
		set_probability(pct);
		if (iteration(_metadata, self->r, n, seed, pct, true,
			      n % 4 == 3, self->wfd_guard))
			failed++;
		total_errs += self->r->nerrs;
		set_probability(0);
		snprintf(when, sizeof(when), "after iteration %d (seed 0x%llx)",
			 n, (unsigned long long)seed);
		if (leaked_after < 0 && stats_back(_metadata, self, when)) {
			leaked_after = n;
			failed++;
		}
	}
	set_probability(0);
	if (!total_errs)
		TH_LOG("warning: no injected failure was observed");
	ASSERT_EQ(stats_back(_metadata, self, "after all iterations"), 0);
	ASSERT_EQ(failed, 0) TH_LOG("%d iterations failed or leaked (first leak after iteration %d)",
				    failed, leaked_after);
}

/* With failures off, every call and job of the scenario succeeds. */
TEST_F_TIMEOUT(faultinj, clean_run_after, 600)
{
	set_probability(0);
	ASSERT_EQ(iteration(_metadata, self->r, 0, 0xc1ea9ULL, 0, false,
			    true, self->wfd_guard), 0);
	ASSERT_EQ(self->r->nerrs, 0U);
	ASSERT_GT(self->r->jobs_ok, 0U);
	ASSERT_EQ(self->r->jobs_failed, 0U);
	ASSERT_EQ(stats_back(_metadata, self, "after the clean run"), 0);
}

/*
 * Loading the NPU driver under allocation failures: every failed load is
 * a clean errno with nothing left registered (its error paths undo only
 * what they did: the misc device, the gmem device, its memory), and a
 * normal load afterwards works.  Opt-in (FAULTINJ_LOAD=1): the module
 * loader's own vmalloc() reports each injected failure with a stack dump
 * (warn_alloc), which make check's splat filter counts as a failure.
 */
TEST_F_TIMEOUT(faultinj, npu_load_under_failures, 600)
{
	const char *params = "num_devices=2 dram_mib=16";
	const char *opt = getenv("FAULTINJ_LOAD");
	int loaded = 0, refused = 0;
	__u64 rng = base_seed();

	if (!opt || strcmp(opt, "1"))
		SKIP(return, "set FAULTINJ_LOAD=1 (prints allocation warnings)");
	if (unload_module_wait("gmem_npu", 5000))
		SKIP(return, "gmem_npu busy: %s", strerror(errno));
	for (int n = 0; n < 20; n++) {
		int status, code;
		pid_t pid;

		set_probability(10 + rnd(&rng) % 30);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			int ret;

			if (write_str("/proc/self/make-it-fail", "1"))
				_exit(255);
			ret = load_module_params("gmem_npu", params);
			_exit(ret ? -ret : 0);
		}
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		set_probability(0);
		ASSERT_TRUE(WIFEXITED(status))
			TH_LOG("load %d: the loading process crashed", n);
		code = WEXITSTATUS(status);
		ASSERT_NE(code, 255);
		if (code == 0) {
			loaded++;
			ASSERT_EQ(unload_module_wait("gmem_npu", 5000), 0);
		} else {
			refused++;
			ASSERT_FALSE(module_loaded("gmem_npu"))
				TH_LOG("load %d failed (%s) but left the module",
				       n, strerror(code));
		}
		/* Nothing of a failed or unloaded driver stays in gmem. */
		ASSERT_EQ(gmem_stat_wait("devices", 0, STAT_WAIT_MS), 0)
			TH_LOG("load %d (%s): a gmem device was left", n,
			       code ? strerror(code) : "loaded");
		ASSERT_EQ(gmem_stat_wait("devmem_pages", 0, STAT_WAIT_MS), 0);
	}
	TH_LOG("%d loads worked, %d failed cleanly", loaded, refused);
	ASSERT_EQ(load_module_params("gmem_npu", params), 0);
	ASSERT_EQ(access("/dev/gmem_npu1", F_OK), 0);
	ASSERT_EQ(stats_back(_metadata, self, "after the loads"), 0);
}

TEST_HARNESS_MAIN
