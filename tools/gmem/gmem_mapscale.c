// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_mapscale: what a mapping costs as a process has more of them,
 * MAP_PEER_SHARED against plain private anonymous memory, in one run.
 *
 * For each kind (plain, peer) and each count N of existing mappings (10,
 * 1,000, 100,000), a child process first makes N mappings of one page
 * each, adjacent but alternating PROT_READ|PROT_WRITE and PROT_READ so
 * that core MM cannot merge them into fewer VMAs, and writes a byte into
 * every writable one (a mapping holds data).  A "peer" child has
 * /dev/gmem_npu0 open from the start, as an application using the NPU
 * would, so gmem watches its address space the whole time; a "plain" child
 * opens no gmem device for mmap_munmap (plain memory in a plain process),
 * and has the NPU open for exit, so that the exit figures differ by the
 * mappings, not by closing a device.  The plain and the peer child of one
 * N live side by side and take turns, one operation each, all on CPU 0, so
 * that drift in the machine's speed (TCG is noisy) hits both kinds alike.
 * Then they measure:
 *
 *  mmap_munmap  one mmap of a fresh 64 KiB mapping, a write to its first
 *               page, and its munmap, MAPOPS_REPS times; median ns.
 *  dev_fault    (after the above; the plain child now opens the NPU in
 *               system-allocator mode) a fresh 64 KiB mapping, the CPU
 *               writes its first page, then one GMEM_NPU_OP_TOUCH read job
 *               of that page: the NPU's device fault, gmem's handling of
 *               it and the job round trip, FAULT_REPS times; median ns.
 *  hint         (a child of its own) N adjacent one-page MAP_PEER_SHARED
 *               mappings, which core MM merges into one VMA, each given a
 *               hint (preferred location: host, which gmem keeps per
 *               range, each with its own notifier); then one more such
 *               mapping and the time of its hint, HINT_REPS times; median.
 *  exit         a second child makes its N mappings the same way, then
 *               waits; the parent takes the time, tells it to _exit() and
 *               reaps it: wall ns from the request to waitpid()'s return,
 *               EXIT_REPS children; median.
 *
 * Prints a table and RATIO lines against the targets of issue 10:
 * peer/plain <= 1.5 for mmap_munmap and exit at every N, and the N =
 * 100,000 case <= 1.2x the N = 10 case: for mmap_munmap and dev_fault of
 * each kind; for exit, whose cost grows with N for any memory (it frees N
 * mappings), for gmem's share of it (peer/plain at 100,000 against
 * peer/plain at 10; the raw growth is printed as information).  The
 * device fault is compared only with itself across N (plain memory needs
 * system-allocator mode, which is what it measures there).  A hint at
 * 100,000 must stay within 1.5x of one at 10 (a guard, see main()).
 *
 * vm.max_map_count must allow 200,000 mappings (the bench job sets it).
 * Exit status: 0 when everything ran (missed targets included), 1 on an
 * error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/gmem.h>

#define MAPOPS_REPS	201
#define FAULT_REPS	101
#define EXIT_REPS	3
#define HINT_REPS	101
#define NEW_LEN		(64 << 10)

enum kind { PLAIN, PEER, NKINDS };
enum op { OP_MAPOPS, OP_FAULT, OP_EXIT, NOPS };

static const char *const kind_name[NKINDS] = { "plain", "peer" };
static const char *const op_name[NOPS] = { "mmap_munmap", "dev_fault", "exit" };
static const long counts[] = { 10, 1000, 100000 };
#define NCOUNTS (sizeof(counts) / sizeof(counts[0]))

/* Median ns per [kind][count][op]; 0 = not measured. */
static double result[NKINDS][NCOUNTS][NOPS];
/* Median ns of a hint per count. */
static double hint_result[NCOUNTS];
static long page_size;

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static int flags_of(enum kind k)
{
	return MAP_PRIVATE | MAP_ANONYMOUS | (k == PEER ? MAP_PEER_SHARED : 0);
}

/* N one-page mappings that cannot merge; 0 or -1 (message printed). */
static int make_mappings(enum kind k, long n)
{
	char *base = mmap(NULL, n * page_size, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	long i;

	if (base == MAP_FAILED) {
		perror("mapscale: reserving the range");
		return -1;
	}
	for (i = 0; i < n; i++) {
		int prot = i % 2 ? PROT_READ : PROT_READ | PROT_WRITE;
		char *p = mmap(base + i * page_size, page_size, prot,
			       flags_of(k) | MAP_FIXED, -1, 0);

		if (p == MAP_FAILED) {
			fprintf(stderr, "mapscale: mapping %ld of %ld: %s\n",
				i, n, strerror(errno));
			return -1;
		}
		if (prot & PROT_WRITE)
			*p = 1;
	}
	return 0;
}

static int npu_open_mode(__u32 mode)
{
	struct gmem_npu_mode m = { .mode = mode };
	int fd = open("/dev/gmem_npu0", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		perror("mapscale: /dev/gmem_npu0");
		return -1;
	}
	if (mode != GMEM_NPU_MODE_PEER_SHARED &&
	    ioctl(fd, GMEM_NPU_IOC_SET_MODE, &m)) {
		perror("mapscale: GMEM_NPU_IOC_SET_MODE");
		close(fd);
		return -1;
	}
	return fd;
}

/* One mmap, first-page write and munmap of a fresh mapping; ns or < 0. */
static double one_mapop(enum kind k)
{
	double t0 = now_ns();
	char *p = mmap(NULL, NEW_LEN, PROT_READ | PROT_WRITE, flags_of(k), -1, 0);

	if (p == MAP_FAILED)
		return -1;
	*p = 1;
	if (munmap(p, NEW_LEN))
		return -1;
	return now_ns() - t0;
}

/* One TOUCH job on the first page of a fresh mapping; ns or < 0. */
static double one_fault(int fd, enum kind k)
{
	struct gmem_npu_submit sub = { 0 };
	struct gmem_npu_wait w = { 0 };
	char *p = mmap(NULL, NEW_LEN, PROT_READ | PROT_WRITE, flags_of(k), -1, 0);
	double t0, t;

	if (p == MAP_FAILED)
		return -1;
	*(uint64_t *)p = 42;
	sub.job.op = GMEM_NPU_OP_TOUCH;
	sub.job.dst = (uintptr_t)p;
	sub.job.len = page_size;
	t0 = now_ns();
	if (ioctl(fd, GMEM_NPU_IOC_SUBMIT, &sub))
		return -1;
	w.seqno = sub.seqno;
	w.timeout_ns = -1;
	while (ioctl(fd, GMEM_NPU_IOC_WAIT, &w))
		if (errno != EINTR)
			return -1;
	t = now_ns() - t0;
	if (w.status || w.result != 42 || w.faults < 1) {
		fprintf(stderr, "mapscale: touch job: status %d result %llu faults %llu\n",
			w.status, (unsigned long long)w.result,
			(unsigned long long)w.faults);
		return -1;
	}
	munmap(p, NEW_LEN);
	return t;
}

/* All measurements run on CPU 0: the same node for both kinds. */
static void pin_cpu0(void)
{
	cpu_set_t cpus;

	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
}

/*
 * A worker of measure(): makes its mappings, then does one operation per
 * command byte read from @in ('m' mmap_munmap, 'f' dev_fault, 'q' quit),
 * writing the time (a double, < 0 on failure) to @out.
 */
static int worker(enum kind k, long n, int in, int out)
{
	double v = 0;
	int fd = -1;
	char c;

	pin_cpu0();
	if (k == PEER && (fd = npu_open_mode(GMEM_NPU_MODE_PEER_SHARED)) < 0)
		return 1;
	if (make_mappings(k, n))
		return 1;
	if (write(out, &v, sizeof(v)) != sizeof(v))
		return 1;
	while (read(in, &c, 1) == 1 && c != 'q') {
		if (c == 'f' && fd < 0)
			fd = npu_open_mode(GMEM_NPU_MODE_SYSTEM);
		v = c == 'm' ? one_mapop(k) : fd < 0 ? -1 : one_fault(fd, k);
		if (write(out, &v, sizeof(v)) != sizeof(v))
			return 1;
	}
	return 0;
}

static int reap(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : -1;
}

/* One child with N mappings exits; its exit's wall time, or < 0. */
static double time_exit(enum kind k, long n)
{
	int ready[2], go[2];
	double t0, t;
	pid_t pid;
	char c = 0;

	if (pipe(ready) || pipe(go))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		int fd = npu_open_mode(GMEM_NPU_MODE_PEER_SHARED);

		if (fd < 0 || make_mappings(k, n))
			_exit(1);
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	if (read(ready[0], &c, 1) != 1) {
		reap(pid);
		return -1;
	}
	t0 = now_ns();
	if (write(go[1], &c, 1) != 1)
		return -1;
	if (reap(pid))
		return -1;
	t = now_ns() - t0;
	close(ready[0]);
	close(go[1]);
	return t;
}

struct peer_worker {
	pid_t pid;
	int cmd, res;
};

static int worker_start(struct peer_worker *w, enum kind k, long n)
{
	int to[2], from[2];
	double v;

	if (pipe(to) || pipe(from))
		return -1;
	w->pid = fork();
	if (w->pid < 0)
		return -1;
	if (!w->pid) {
		close(to[1]);
		close(from[0]);
		_exit(worker(k, n, to[0], from[1]));
	}
	close(to[0]);
	close(from[1]);
	w->cmd = to[1];
	w->res = from[0];
	return read(w->res, &v, sizeof(v)) == sizeof(v) ? 0 : -1;
}

static double worker_op(struct peer_worker *w, char op)
{
	double v;

	if (write(w->cmd, &op, 1) != 1 || read(w->res, &v, sizeof(v)) != sizeof(v))
		return -1;
	return v;
}

/*
 * Both kinds at N mappings, their operations interleaved one by one (a
 * plain one, then a peer one) so that the machine's drift hits both alike.
 */
static int measure(int ci)
{
	static double t[NKINDS][MAPOPS_REPS];
	double ex[NKINDS][EXIT_REPS];
	struct peer_worker w[NKINDS];
	const struct { int op; char c; int reps; } ops[] = {
		{ OP_MAPOPS, 'm', MAPOPS_REPS }, { OP_FAULT, 'f', FAULT_REPS },
	};
	long n = counts[ci];
	int k, i, j;

	for (k = 0; k < NKINDS; k++)
		if (worker_start(&w[k], k, n)) {
			fprintf(stderr, "mapscale: %s with %ld mappings failed\n",
				kind_name[k], n);
			return -1;
		}
	for (j = 0; j < 2; j++) {
		for (i = 0; i < ops[j].reps; i++)
			for (k = 0; k < NKINDS; k++) {
				t[k][i] = worker_op(&w[k], ops[j].c);
				if (t[k][i] < 0) {
					fprintf(stderr, "mapscale: %s %s with %ld mappings failed\n",
						kind_name[k], op_name[ops[j].op], n);
					return -1;
				}
			}
		for (k = 0; k < NKINDS; k++)
			result[k][ci][ops[j].op] = median(t[k], ops[j].reps);
	}
	for (k = 0; k < NKINDS; k++) {
		char q = 'q';

		if (write(w[k].cmd, &q, 1) != 1 || reap(w[k].pid))
			return -1;
		close(w[k].cmd);
		close(w[k].res);
	}
	for (i = 0; i < EXIT_REPS; i++)
		for (k = 0; k < NKINDS; k++) {
			ex[k][i] = time_exit(k, n);
			if (ex[k][i] < 0) {
				fprintf(stderr, "mapscale: exit of %s with %ld mappings failed\n",
					kind_name[k], n);
				return -1;
			}
		}
	for (k = 0; k < NKINDS; k++)
		result[k][ci][OP_EXIT] = median(ex[k], EXIT_REPS);
	return 0;
}

/*
 * The hint measurement at N mappings, in a child of its own (its address
 * space is thrown away after); the median ns, or < 0.
 */
static int hint_child(long n, int out)
{
	size_t total = (n + HINT_REPS) * page_size;
	char *base = mmap(NULL, total, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	static double t[HINT_REPS];
	int gfd = open("/dev/gmem", O_RDWR);
	int fd = npu_open_mode(GMEM_NPU_MODE_PEER_SHARED);
	double v;

	if (base == MAP_FAILED || gfd < 0 || fd < 0)
		return 1;
	for (long i = 0; i < n + HINT_REPS; i++) {
		struct gmem_advise a = {
			.addr = (uintptr_t)(base + i * page_size),
			.len = page_size,
			.advice = GMEM_ADV_SET_PREFERRED_LOCATION,
			.dev = GMEM_DEV_HOST,
		};
		double t0;

		if (mmap(base + i * page_size, page_size, PROT_READ | PROT_WRITE,
			 flags_of(PEER) | MAP_FIXED, -1, 0) == MAP_FAILED)
			return 1;
		t0 = now_ns();
		if (ioctl(gfd, GMEM_IOC_ADVISE, &a))
			return 1;
		if (i >= n)
			t[i - n] = now_ns() - t0;
	}
	v = median(t, HINT_REPS);
	return write(out, &v, sizeof(v)) == sizeof(v) ? 0 : 1;
}

static int measure_hint(int ci)
{
	int p[2];
	pid_t pid;
	double v;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		close(p[0]);
		_exit(hint_child(counts[ci], p[1]));
	}
	close(p[1]);
	if (read(p[0], &v, sizeof(v)) != sizeof(v) || reap(pid)) {
		fprintf(stderr, "mapscale: hints with %ld mappings failed\n",
			counts[ci]);
		return -1;
	}
	close(p[0]);
	hint_result[ci] = v;
	return 0;
}

static void ratio(const char *name, double value, double target)
{
	printf("RATIO %-34s %6.2f (target <= %.2f) %s\n", name, value, target,
	       value <= target ? "OK" : "MISS");
}

int main(void)
{
	char name[64];
	int k, ci, op;

	page_size = sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pin_cpu0();
	for (ci = 0; ci < (int)NCOUNTS; ci++)
		if (measure(ci))
			return 1;
	/* Last: its children's 100,000 notifiers must not slow the others. */
	for (ci = 0; ci < (int)NCOUNTS; ci++)
		if (measure_hint(ci))
			return 1;
	printf("%-12s %-6s %12s %12s %12s\n", "operation", "kind", "N=10",
	       "N=1000", "N=100000");
	for (op = 0; op < NOPS; op++)
		for (k = 0; k < NKINDS; k++) {
			printf("%-12s %-6s", op_name[op], kind_name[k]);
			for (ci = 0; ci < (int)NCOUNTS; ci++)
				printf(" %9.1f us", result[k][ci][op] / 1e3);
			printf("\n");
		}
	printf("%-12s %-6s", "hint", "peer");
	for (ci = 0; ci < (int)NCOUNTS; ci++)
		printf(" %9.1f us", hint_result[ci] / 1e3);
	printf("\n");
	for (op = 0; op < NOPS; op++) {
		if (op == OP_FAULT)
			continue;
		for (ci = 0; ci < (int)NCOUNTS; ci++) {
			snprintf(name, sizeof(name), "mapscale_%s_peer_vs_plain_%ld",
				 op_name[op], counts[ci]);
			ratio(name, result[PEER][ci][op] / result[PLAIN][ci][op], 1.5);
		}
	}
	for (op = 0; op < NOPS; op++)
		for (k = 0; k < NKINDS; k++) {
			double grow = result[k][NCOUNTS - 1][op] / result[k][0][op];

			snprintf(name, sizeof(name), "mapscale_%s_%s_100000_vs_10",
				 op_name[op], kind_name[k]);
			if (op == OP_EXIT)
				printf("RATIO %-34s %6.2f (info)\n", name, grow);
			else
				ratio(name, grow, 1.2);
		}
	/*
	 * Not a target of issue 10: a guard.  A hint inserts a notifier into
	 * trees of N (log N deeper at 100,000: 1.25 in one run); a hint that
	 * walked the regions of its VMA took 100 times longer.
	 */
	ratio("mapscale_hint_peer_100000_vs_10",
	      hint_result[NCOUNTS - 1] / hint_result[0], 1.5);
	ratio("mapscale_exit_share_100000_vs_10",
	      (result[PEER][NCOUNTS - 1][OP_EXIT] / result[PLAIN][NCOUNTS - 1][OP_EXIT]) /
	      (result[PEER][0][OP_EXIT] / result[PLAIN][0][OP_EXIT]), 1.2);
	return 0;
}
