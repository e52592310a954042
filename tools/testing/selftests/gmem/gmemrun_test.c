// SPDX-License-Identifier: GPL-2.0
/*
 * gmem-run (tools/lib/gmem): an unmodified program run under it has its
 * heap and its anonymous mmap() memory reachable by an NPU; the same
 * program run directly does not, so these tests fail if gmem-run did
 * nothing.  The "unmodified program" is this binary re-executed with a
 * hidden first argument: it uses only malloc() and friends and mmap(),
 * opens /dev/gmem_npu1 itself and reports what the NPU did on stdout, one
 * "name status ok" line per check.  libgmem-run.so's allocator is also
 * stressed from several threads, across fork().
 *
 * Needs gmem.ko and gmem_npu.ko num_devices=2 dram_mib=16 (the runner
 * loads them) and gmem-run installed: $GMEM_RUN, by default
 * /opt/gmem/bin/gmem-run (with /opt/gmem/lib/libgmem-run.so).  This test
 * must be linked dynamically: LD_PRELOAD does nothing to a static binary.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

#define PROBE_HEAP		"--probe-heap"
#define PROBE_ALLOC		"--probe-alloc"
#define PROBE_EXIT		"--probe-exit"
#define PROBE_EXIT_CODE		42
#define OUT_SIZE		8192

#define STRESS_THREADS		4
#define STRESS_ITERS		5000
#define STRESS_SLOTS		128
#define STRESS_FORKS		10

static const char *gmem_run(void)
{
	const char *p = getenv("GMEM_RUN");

	return p && *p ? p : "/opt/gmem/bin/gmem-run";
}

/* ---- the probe: an unmodified program ---- */

static void report(const char *name, int status, bool ok)
{
	printf("%s %d %d\n", name, status, ok);
}

/* NPU sum of @len bytes of pattern at @p against the CPU's. */
static void report_sum(int fd, const char *name, void *p, size_t len,
		       __u32 seed)
{
	struct gmem_npu_wait w;
	int ret;

	fill_pattern(p, len, seed);
	ret = npu_sum(fd, p, len, &w);
	report(name, ret, !ret && w.result == pattern_sum(len, seed));
}

/* An NPU write of @p, then what the CPU reads there. */
static void report_write(int fd, const char *name, void *p, size_t len,
			 __u8 byte)
{
	struct gmem_npu_wait w;
	int ret = npu_fill(fd, p, len, byte, &w);

	report(name, ret, !ret && find_not_byte(p, len, byte) == -1);
}

static void report_vma(const char *name, void *p)
{
	char flags[512];

	report(name, 0, vma_flags(p, flags, sizeof(flags)) &&
	       has_vmflag(flags, "ps"));
}

static int probe_heap(void)
{
	size_t small_len = 1000, large_len = 3 * MiB, calloc_len = 16 << 10;
	size_t grown_len = 300 << 10, aligned_len = 64 << 10, map_len = MiB;
	char *small = malloc(small_len), *large = malloc(large_len);
	char *zeroed = calloc(calloc_len / 64, 64), *grown = malloc(512);
	void *aligned = NULL;
	char *mapped = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = npu_open(1);

	if (!small || !large || !zeroed || !grown || mapped == MAP_FAILED ||
	    posix_memalign(&aligned, 4096, aligned_len)) {
		fprintf(stderr, "probe: out of memory\n");
		return 1;
	}
	if (fd < 0 || npu_set_placement(fd, GMEM_NPU_PLACE_HOST)) {
		fprintf(stderr, "probe: /dev/gmem_npu1: %s\n", strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	report_sum(fd, "small", small, small_len, 1);
	report_sum(fd, "large", large, large_len, 2);
	report("calloc_zero", 0, find_not_byte(zeroed, calloc_len, 0) == -1);
	report_sum(fd, "calloc", zeroed, calloc_len, 3);
	fill_pattern(grown, 512, 4);
	grown = realloc(grown, grown_len);
	if (!grown)
		return 1;
	report("realloc_keep", 0, check_pattern(grown, 512, 4) == -1);
	report_sum(fd, "realloc", grown, grown_len, 5);
	report_sum(fd, "aligned", aligned, aligned_len, 6);
	report_sum(fd, "mmap", mapped, map_len, 7);
	report_write(fd, "write_small", small, small_len, 0x5a);
	report_write(fd, "write_large", large, large_len, 0xa5);
	report_vma("vma_small", small);
	report_vma("vma_large", large);
	free(small);
	free(large);
	free(zeroed);
	free(grown);
	free(aligned);
	munmap(mapped, map_len);
	close(fd);
	return 0;
}

struct blk {
	__u32 *p;
	size_t len;
	size_t align;
	__u32 seed;
};

static __u64 rnd(__u64 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Mostly small, some up to a few superblock classes, 1% up to 1 MiB. */
static size_t rnd_size(__u64 *s)
{
	unsigned int r = rnd(s) % 100;

	if (r < 70)
		return rnd(s) % 512;
	if (r < 95)
		return rnd(s) % (64 << 10);
	if (r < 99)
		return rnd(s) % (320 << 10);
	return rnd(s) % MiB;
}

static bool blk_ok(const struct blk *b, size_t len)
{
	if ((uintptr_t)b->p % b->align ||
	    malloc_usable_size(b->p) < b->len) {
		fprintf(stderr, "probe: block %p of %zu: alignment %zu, usable %zu\n",
			b->p, b->len, b->align, malloc_usable_size(b->p));
		return false;
	}
	if (check_pattern(b->p, len, b->seed) != -1) {
		fprintf(stderr, "probe: block %p of %zu overwritten\n",
			b->p, b->len);
		return false;
	}
	return true;
}

static bool blk_alloc(struct blk *b, __u64 *s)
{
	void *p = NULL;

	b->len = rnd_size(s);
	b->align = 16;
	switch (rnd(s) % 6) {
	case 0:
		b->align = 1UL << (3 + rnd(s) % 19);
		if (posix_memalign(&p, b->align, b->len))
			p = NULL;
		break;
	case 1:
		b->align = 1UL << (rnd(s) % 14);
		p = aligned_alloc(b->align, b->len);
		break;
	case 2:
		p = calloc(1, b->len);
		if (p && find_not_byte(p, b->len, 0) != -1) {
			fprintf(stderr, "probe: calloc(%zu) not zeroed\n",
				b->len);
			return false;
		}
		break;
	default:
		p = malloc(b->len);
	}
	if (!p) {
		fprintf(stderr, "probe: allocating %zu failed\n", b->len);
		return false;
	}
	b->p = p;
	b->seed = rnd(s);
	fill_pattern(b->p, b->len, b->seed);
	return true;
}

/* realloc() to a random size: the common part survives. */
static bool blk_realloc(struct blk *b, __u64 *s)
{
	size_t len = rnd_size(s) + 1, keep = len < b->len ? len : b->len;
	void *q = realloc(b->p, len);

	if (!q) {
		fprintf(stderr, "probe: realloc to %zu failed\n", len);
		return false;
	}
	b->p = q;
	b->len = len;
	b->align = 16;
	if (!blk_ok(b, keep))
		return false;
	fill_pattern(b->p, b->len, b->seed);
	return true;
}

static void *stress_thread(void *arg)
{
	__u64 s = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
	struct blk *slot = calloc(STRESS_SLOTS, sizeof(*slot));
	bool ok = slot;

	for (int i = 0; ok && i < STRESS_ITERS; i++) {
		struct blk *b = &slot[rnd(&s) % STRESS_SLOTS];

		if (!b->p) {
			ok = blk_alloc(b, &s);
		} else if (rnd(&s) % 3) {
			ok = blk_ok(b, b->len);
			free(b->p);
			b->p = NULL;
		} else {
			ok = blk_realloc(b, &s);
		}
	}
	for (int i = 0; ok && i < STRESS_SLOTS; i++) {
		if (slot[i].p)
			ok = blk_ok(&slot[i], slot[i].len);
		free(slot[i].p);
	}
	free(slot);
	return ok ? NULL : (void *)1;
}

/*
 * Forks while the other threads allocate: the child's allocator must not
 * have been copied with a lock held.
 */
static void *fork_thread(void *arg)
{
	for (int i = 0; i < STRESS_FORKS; i++) {
		int status;
		pid_t pid = fork();

		if (pid < 0)
			return (void *)1;
		if (!pid) {
			alarm(60);
			for (size_t n = 1; n < 4 * MiB; n = n * 3 + 1) {
				char *p = malloc(n);

				if (!p)
					_exit(1);
				memset(p, 1, n);
				free(p);
			}
			_exit(0);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status)) {
			fprintf(stderr, "probe: fork child: status %#x\n",
				status);
			return (void *)1;
		}
		usleep(20000);
	}
	return arg;
}

static int probe_alloc(void)
{
	pthread_t t[STRESS_THREADS], f;
	void *ret;
	int bad = 0;
	char *p = malloc(7);

	/* Through every class into a mapping of its own and back. */
	memcpy(p, "gmemrun", 7);
	for (size_t n = 8; p && n < 8 * MiB; n = n * 3 / 2)
		p = realloc(p, n);
	for (size_t n = 8 * MiB; p && n > 8; n /= 3)
		p = realloc(p, n);
	if (!p || memcmp(p, "gmemrun", 7)) {
		fprintf(stderr, "probe: realloc lost the contents\n");
		return 1;
	}
	free(p);
	if (pthread_create(&f, NULL, fork_thread, NULL))
		return 1;
	for (uintptr_t i = 0; i < STRESS_THREADS; i++)
		if (pthread_create(&t[i], NULL, stress_thread, (void *)i))
			return 1;
	for (int i = 0; i < STRESS_THREADS; i++) {
		pthread_join(t[i], &ret);
		bad |= ret != NULL;
	}
	pthread_join(f, &ret);
	bad |= ret != NULL;
	printf("alloc %d %d\n", 0, !bad);
	return bad;
}

/* ---- the tests ---- */

/*
 * Runs this binary with @probe, through gmem-run (with @opt if not NULL)
 * or directly, and without LD_PRELOAD of its own.  Its stdout (and
 * stderr, if @with_err) goes to @out; returns the wait status, or -1.
 */
static int run(bool via, const char *opt, const char *probe, bool with_err,
	       char *out, size_t size)
{
	char self[PATH_MAX];
	const char *argv[5];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	size_t got = 0;
	int pfd[2], status, i = 0;
	pid_t pid;

	if (n < 0 || pipe(pfd))
		return -1;
	self[n] = '\0';
	if (via) {
		argv[i++] = gmem_run();
		if (opt)
			argv[i++] = opt;
	}
	if (probe)
		argv[i++] = self;
	if (probe && *probe)
		argv[i++] = probe;
	argv[i] = NULL;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		close(pfd[0]);
		dup2(pfd[1], STDOUT_FILENO);
		if (with_err)
			dup2(pfd[1], STDERR_FILENO);
		unsetenv("LD_PRELOAD");
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	close(pfd[1]);
	while (got + 1 < size) {
		n = read(pfd[0], out + got, size - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	out[got] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

/* The "status ok" of line @name of a probe's output; false if none. */
static bool probe_result(const char *out, const char *name, int *status,
			 int *ok)
{
	size_t len = strlen(name);

	for (const char *l = out; *l; l++) {
		if (!strncmp(l, name, len) && l[len] == ' ')
			return sscanf(l + len, "%d %d", status, ok) == 2;
		l = strchr(l, '\n');
		if (!l)
			break;
	}
	return false;
}

static const char *const npu_checks[] = {
	"small", "large", "calloc", "realloc", "aligned", "mmap",
	"write_small", "write_large",
};

/* No state: a fixture only for the timeouts, long enough for TCG. */
FIXTURE(gmemrun)
{
	int unused;
};

FIXTURE_SETUP(gmemrun)
{
}

FIXTURE_TEARDOWN(gmemrun)
{
}

/* Why a test cannot run without @path, or NULL if it can. */
static const char *missing(const char *path, int mode)
{
	static char why[256];

	if (!access(path, mode))
		return NULL;
	snprintf(why, sizeof(why), "%.160s: %s", path, strerror(errno));
	return why;
}

static const char *no_gmem_run(void)
{
	return missing(gmem_run(), X_OK);
}

static const char *no_npu1(void)
{
	return missing("/dev/gmem_npu1", R_OK | W_OK);
}

/* Under gmem-run every kind of heap block and mmap() reaches the NPU. */
TEST_F_TIMEOUT(gmemrun, heap_shared, 120)
{
	static char out[OUT_SIZE];
	int status, ok;
	const char *why = no_gmem_run() ?: no_npu1();

	if (why)
		SKIP(return, "%s", why);
	status = run(true, "-v", PROBE_HEAP, true, out, sizeof(out));
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("probe: status %#x, output:\n%s", status, out);
	for (size_t i = 0; i < ARRAY_SIZE(npu_checks); i++) {
		ASSERT_TRUE(probe_result(out, npu_checks[i], &status, &ok))
			TH_LOG("no %s in:\n%s", npu_checks[i], out);
		EXPECT_EQ(status, 0) TH_LOG("%s", npu_checks[i]);
		EXPECT_EQ(ok, 1) TH_LOG("%s", npu_checks[i]);
	}
	ASSERT_TRUE(probe_result(out, "calloc_zero", &status, &ok));
	EXPECT_EQ(ok, 1);
	ASSERT_TRUE(probe_result(out, "realloc_keep", &status, &ok));
	EXPECT_EQ(ok, 1);
	ASSERT_TRUE(probe_result(out, "vma_small", &status, &ok));
	EXPECT_EQ(ok, 1);
	ASSERT_TRUE(probe_result(out, "vma_large", &status, &ok));
	EXPECT_EQ(ok, 1);
	/* -v: the report at exit, and gmem was found. */
	EXPECT_NE(strstr(out, "heap mappings made MAP_PEER_SHARED"), NULL)
		TH_LOG("%s", out);
	EXPECT_EQ(strstr(out, "gmem not loaded"), NULL) TH_LOG("%s", out);
	EXPECT_EQ(strstr(out, " 0 heap mappings"), NULL) TH_LOG("%s", out);
}

/* The control: run directly, the same program's memory is out of reach. */
TEST_F_TIMEOUT(gmemrun, heap_control, 120)
{
	static char out[OUT_SIZE];
	int status, ok;
	const char *why = no_npu1();

	if (why)
		SKIP(return, "%s", why);
	status = run(false, NULL, PROBE_HEAP, false, out, sizeof(out));
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("probe: status %#x, output:\n%s", status, out);
	for (size_t i = 0; i < ARRAY_SIZE(npu_checks); i++) {
		ASSERT_TRUE(probe_result(out, npu_checks[i], &status, &ok))
			TH_LOG("no %s in:\n%s", npu_checks[i], out);
		EXPECT_EQ(status, -EACCES) TH_LOG("%s", npu_checks[i]);
	}
	ASSERT_TRUE(probe_result(out, "realloc_keep", &status, &ok));
	EXPECT_EQ(ok, 1);
	ASSERT_TRUE(probe_result(out, "vma_small", &status, &ok));
	EXPECT_EQ(ok, 0);
	ASSERT_TRUE(probe_result(out, "vma_large", &status, &ok));
	EXPECT_EQ(ok, 0);
}

/* Threads, aligned and large blocks, realloc() and fork() under gmem-run. */
TEST_F_TIMEOUT(gmemrun, alloc_stress, 600)
{
	static char out[OUT_SIZE];
	int status, ok;
	const char *why = no_gmem_run();

	if (why)
		SKIP(return, "%s (GMEM_RUN)", why);
	status = run(true, NULL, PROBE_ALLOC, true, out, sizeof(out));
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("probe: status %#x, output:\n%s", status, out);
	ASSERT_TRUE(probe_result(out, "alloc", &status, &ok)) TH_LOG("%s", out);
	ASSERT_EQ(ok, 1);
}

/* gmem-run execs the program: its exit status is the program's. */
TEST_F_TIMEOUT(gmemrun, exit_status, 60)
{
	static char out[OUT_SIZE];
	int status;
	const char *why = no_gmem_run();

	if (why)
		SKIP(return, "%s (GMEM_RUN)", why);
	status = run(true, NULL, PROBE_EXIT, true, out, sizeof(out));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status %#x", status);
	ASSERT_EQ(WEXITSTATUS(status), PROBE_EXIT_CODE) TH_LOG("%s", out);
}

/* No program: usage, and a failure; --help: usage, and success. */
TEST_F_TIMEOUT(gmemrun, usage, 60)
{
	static char out[OUT_SIZE];
	int status;
	const char *why = no_gmem_run();

	if (why)
		SKIP(return, "%s (GMEM_RUN)", why);
	status = run(true, NULL, NULL, true, out, sizeof(out));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status %#x", status);
	EXPECT_NE(WEXITSTATUS(status), 0);
	EXPECT_NE(strstr(out, "Usage: gmem-run"), NULL) TH_LOG("%s", out);

	status = run(true, "--help", NULL, true, out, sizeof(out));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status %#x", status);
	EXPECT_EQ(WEXITSTATUS(status), 0);
	EXPECT_NE(strstr(out, "Usage: gmem-run"), NULL) TH_LOG("%s", out);
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], PROBE_HEAP))
		return probe_heap();
	if (argc == 2 && !strcmp(argv[1], PROBE_ALLOC))
		return probe_alloc();
	if (argc == 2 && !strcmp(argv[1], PROBE_EXIT))
		return PROBE_EXIT_CODE;
	return test_harness_run(argc, argv);
}
