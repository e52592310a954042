// SPDX-License-Identifier: GPL-2.0
/*
 * What an application trusts gmem and the NPU with: read-mostly copies
 * never show another process's data or stale data, device mappings never
 * outlive munmap, a device context's policy holds for copies too, failing
 * ioctls leave no trace, MAP_PEER_SHARED does not change any other mmap,
 * pins and queued jobs are limited per address space and file, memory
 * outside the direct map never reaches a device, and an NPU falling off
 * the bus loses no host data and hangs nothing.
 *
 * Run as root with gmem.ko and gmem_npu.ko num_devices=2 dram_mib=16 (the
 * runner loads them) and debugfs at /sys/kernel/debug.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

/* How long freeing device memory may lag behind munmap, close or exit. */
#define FREE_DELAY_MS		3000
/* The uid and gid of "nobody". */
#define NOBODY			65534

#define GMEM_PARAMS		"/sys/module/gmem/parameters/"
#define NPU_PARAMS		"/sys/module/gmem_npu/parameters/"
#define NPU_DEBUGFS		"/sys/kernel/debug/gmem_npu"

#ifndef SYS_memfd_secret
#define SYS_memfd_secret	447
#endif

static const char *const npu_name[] = { "npu0", "npu1" };

/*
 * Child processes report through their exit status only (an ASSERT in a
 * fork of the test would run the harness's bail-out there): the first
 * failed check prints its line and the child exits 1.
 */
#define CHILD_CHECK(cond, fmt, ...) do {				\
	if (!(cond)) {							\
		fprintf(stderr, "#      child (line %d): " fmt "\n",	\
			__LINE__, ##__VA_ARGS__);			\
		_exit(1);						\
	}								\
} while (0)

/* Exit status of child @pid, 128 + signal if killed, -1 if not ours. */
static int reap(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static bool say(int fd, char c)
{
	return write(fd, &c, 1) == 1;
}

/* The next byte from @fd, or 0 at EOF or error. */
static char hear(int fd)
{
	char c = 0;

	return read(fd, &c, 1) == 1 ? c : 0;
}

/* A parent/child pair of pipes. */
struct chan {
	int up[2];	/* child -> parent */
	int down[2];	/* parent -> child */
};

static bool chan_open(struct chan *c)
{
	return !pipe(c->up) && !pipe(c->down);
}

static void chan_child_side(struct chan *c)
{
	close(c->up[0]);
	close(c->down[1]);
}

static void chan_parent_side(struct chan *c)
{
	close(c->up[1]);
	close(c->down[0]);
}

static void chan_close_parent(struct chan *c)
{
	close(c->up[0]);
	close(c->down[1]);
}

/* Earlier tests' processes free their device memory first. */
static void settle(void)
{
	for (int i = 0; i < 2; i++)
		dev_stat_wait(npu_name[i], "devmem_used", 0, FREE_DELAY_MS);
}

/* The gmem device id of /dev/gmem_npu@index, or -1. */
static int npu_dev_id(int index)
{
	struct gmem_npu_info info;
	int fd = npu_open(index), id = -1;

	if (fd < 0)
		return -1;
	if (!npu_get_info(fd, &info))
		id = info.dev_id;
	close(fd);
	return id;
}

/* Writes @s to @path; 0 or -errno. */
static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	return ret;
}

/* The CPU's REDUCE_SUM of @len bytes at @p. */
static __u64 cpu_sum(const void *p, size_t len)
{
	const volatile __u32 *u = p;
	__u64 s = 0;

	for (size_t i = 0; i < len / 4; i++)
		s += u[i];
	return s;
}

/* The CPU's TOUCH read: the sum of the first u64 of every page. */
static __u64 cpu_touch_sum(const void *p, size_t len, size_t ps)
{
	__u64 s = 0;

	for (size_t off = 0; off < len; off += ps)
		s += *(const volatile __u64 *)((const char *)p + off);
	return s;
}

/* Start and end of the VMA containing @addr, from /proc/self/maps. */
static bool vma_bounds(const void *addr, unsigned long *start,
		       unsigned long *end)
{
	unsigned long a = (unsigned long)addr, s, e;
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && a >= s && a < e) {
			*start = s;
			*end = e;
			found = true;
		}
	}
	fclose(f);
	return found;
}

static bool is_peer_shared(void *addr)
{
	char flags[256];

	return vma_flags(addr, flags, sizeof(flags)) &&
	       has_vmflag(flags, "ps");
}

FIXTURE(trust)
{
	int gfd;
	int dev[2];
	int ndev;
	size_t ps;
};

FIXTURE_SETUP(trust)
{
	self->ps = sysconf(_SC_PAGE_SIZE);
	self->gfd = open("/dev/gmem", O_RDWR);
	ASSERT_GE(self->gfd, 0) TH_LOG("open /dev/gmem: %s", strerror(errno));
	self->ndev = 0;
	for (int i = 0; i < 2; i++) {
		self->dev[i] = npu_dev_id(i);
		if (self->dev[i] < 0)
			break;
		self->ndev++;
	}
	ASSERT_GE(self->ndev, 1) TH_LOG("no /dev/gmem_npu0");
	settle();
}

FIXTURE_TEARDOWN(trust)
{
	close(self->gfd);
}

/* ----------------------------------------------------------------------
 * 1. Read-mostly copies never leak another process's data.
 */

/*
 * The other process: its own MAP_PEER_SHARED memory with its own data,
 * streamed through npu0 (read, written, read) so that it takes every
 * page of npu0's memory, freed ones included.  Never returns.
 */
static void stream_child(const int *inherited, int n, size_t len)
{
	__u32 seed = 0x0bad5eed;
	struct gmem_npu_wait w;
	char *q;
	int fd, ret;

	for (int i = 0; i < n; i++)
		close(inherited[i]);
	fd = npu_open(0);
	CHILD_CHECK(fd >= 0, "open /dev/gmem_npu0: %s", strerror(errno));
	q = peer_mmap_block(len);
	CHILD_CHECK(q != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(q, len, seed);
	ret = npu_sum(fd, q, len, &w);
	CHILD_CHECK(ret == 0, "REDUCE_SUM: %d", ret);
	CHILD_CHECK(w.result == pattern_sum(len, seed), "REDUCE_SUM result");
	ret = npu_fill(fd, q, len, 0xc5, &w);
	CHILD_CHECK(ret == 0, "FILL: %d", ret);
	ret = npu_sum(fd, q, len, &w);
	CHILD_CHECK(ret == 0, "REDUCE_SUM after FILL: %d", ret);
	CHILD_CHECK(w.result == byte_sum(0xc5, len),
		    "REDUCE_SUM after FILL result");
	_exit(0);
}

/*
 * Forks stream_child() now, before the parent maps the buffer under test
 * (a fork write-protects the parent's anonymous pages, an invalidation
 * that would collapse the copies and hide stale mappings; the test kernel
 * has no madvise(MADV_DONTFORK)), held until start_stream_child().
 */
static pid_t spawn_stream_child(const int *inherited, int n, size_t len,
				int *go)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(90);
		close(p[0]);
		stream_child(inherited, n, len);
	}
	close(p[0]);
	*go = p[1];
	return pid;
}

/* Lets the child of spawn_stream_child() run and waits for it. */
static int start_stream_child(pid_t pid, int go)
{
	char c = 1;

	if (write(go, &c, 1) != 1)
		return -1;
	close(go);
	return reap(pid);
}

/* The buffer, its two files on npu0, and the other process, held. */
struct two_readers {
	char *p;
	size_t len;
	__u32 seed;
	int fa, fb, go;
	pid_t other;
};

/*
 * Sets up @t: the other process forked and held first, then the buffer
 * filled, made read-mostly and read by the NPU through fdA and fdB, each
 * into copies of its own (before copies were per context, fdB mapped
 * fdA's).
 */
static void two_readers_setup(struct __test_metadata *_metadata,
			      FIXTURE_DATA(trust) *self, struct two_readers *t,
			      __u32 seed)
{
	long dup0 = dev_stat("npu0", "dup_pages");
	struct gmem_npu_wait w;

	t->len = 4 * MiB;
	t->seed = seed;
	t->other = spawn_stream_child((int[]){ self->gfd }, 1, 24 * MiB,
				      &t->go);
	ASSERT_GT(t->other, 0);
	t->p = peer_mmap_block(t->len);
	ASSERT_NE(t->p, MAP_FAILED);
	t->fa = npu_open(0);
	t->fb = npu_open(0);
	ASSERT_GE(t->fa, 0);
	ASSERT_GE(t->fb, 0);
	fill_pattern(t->p, t->len, seed);
	ASSERT_EQ(gmem_advise(self->gfd, t->p, t->len,
			      GMEM_ADV_SET_READ_MOSTLY, 0), 0);
	ASSERT_EQ(npu_sum(t->fa, t->p, t->len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(t->len, seed));
	ASSERT_EQ(npu_sum(t->fb, t->p, t->len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(t->len, seed));
	/* Read through copies: otherwise this tests nothing. */
	ASSERT_GE(dev_stat("npu0", "dup_pages"),
		  dup0 + (long)(t->len / self->ps))
		TH_LOG("the reads made no read duplicates");
}

/* @fds must still read the parent's data. */
static void two_readers_check(struct __test_metadata *_metadata,
			      struct two_readers *t, const int *fds, int n)
{
	struct gmem_npu_wait w;

	for (int i = 0; i < n; i++) {
		ASSERT_EQ(npu_sum(fds[i], t->p, t->len, &w), 0);
		ASSERT_EQ(w.result, pattern_sum(t->len, t->seed))
			TH_LOG("file %d read 0x%llx: freed device pages or "
			       "another process's data", i,
			       (unsigned long long)w.result);
	}
	ASSERT_EQ(check_pattern(t->p, t->len, t->seed), -1);
}

/*
 * fdA is closed, then another process cycles through all of npu0's memory
 * and exits: fdB still reads the parent's data, never freed device pages.
 */
TEST_F_TIMEOUT(trust, read_mostly_copies_survive_closing_sibling_file, 180)
{
	struct two_readers t;

	two_readers_setup(_metadata, self, &t, 0x7e57a);
	ASSERT_EQ(close(t.fa), 0);
	ASSERT_EQ(start_stream_child(t.other, t.go), 0)
		TH_LOG("the other process failed");
	two_readers_check(_metadata, &t, &t.fb, 1);
	ASSERT_EQ(close(t.fb), 0);
	ASSERT_EQ(munmap(t.p, t.len), 0);
}

/*
 * Both files stay open; another process streams more than npu0's memory
 * through it, evicting the chunks holding the copies: both files still
 * read the parent's data.
 */
TEST_F_TIMEOUT(trust, read_mostly_copies_survive_eviction, 180)
{
	long dup0 = dev_stat("npu0", "dup_pages"), ev0;
	struct two_readers t;

	two_readers_setup(_metadata, self, &t, 0xe71c7);
	ev0 = dev_stat("npu0", "evictions");
	ASSERT_EQ(start_stream_child(t.other, t.go), 0)
		TH_LOG("the other process failed");
	ASSERT_GT(dev_stat("npu0", "evictions"), ev0);
	ASSERT_LT(dev_stat("npu0", "dup_pages"), dup0 + (long)(t.len / self->ps))
		TH_LOG("the copies were not evicted: this tests nothing");
	two_readers_check(_metadata, &t, (int[]){ t.fa, t.fb }, 2);
	ASSERT_EQ(close(t.fa), 0);
	ASSERT_EQ(close(t.fb), 0);
	ASSERT_EQ(munmap(t.p, t.len), 0);
}

/* ----------------------------------------------------------------------
 * 2. No stale reads: after a CPU write every reader sees the new data.
 */
TEST_F_TIMEOUT(trust, read_mostly_cpu_write_never_stale, 120)
{
	size_t ps = self->ps, len = 4 * MiB;
	long npages = len / ps, dup0 = dev_stat("npu0", "dup_pages");
	struct gmem_npu_wait w;
	const char *who[] = { "npu0 fdA", "npu0 fdB", "npu1" };
	char *p = peer_mmap_block(len);
	int fd[3];
	__u64 want;

	if (self->ndev < 2)
		SKIP(return, "no /dev/gmem_npu1");
	ASSERT_NE(p, MAP_FAILED);
	fd[0] = npu_open(0);
	fd[1] = npu_open(0);
	fd[2] = npu_open(1);
	for (int i = 0; i < 3; i++) {
		ASSERT_GE(fd[i], 0);
	}
	fill_pattern(p, len, 0x1000);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_SET_READ_MOSTLY, 0),
		  0);

	for (int round = 0; round < 4; round++) {
		__u32 *u = (__u32 *)p;

		want = cpu_sum(p, len);
		for (int k = 0; k < 3; k++) {
			int i = round % 2 ? 2 - k : k;

			ASSERT_EQ(npu_sum(fd[i], p, len, &w), 0)
				TH_LOG("round %d %s", round, who[i]);
			ASSERT_EQ(w.result, want)
				TH_LOG("round %d %s read stale data", round,
				       who[i]);
		}
		if (!round) {
			ASSERT_GE(dev_stat("npu0", "dup_pages"), dup0 + npages)
				TH_LOG("no read duplicates: this tests nothing");
		}
		/* The CPU writes new data: all of it, or a little. */
		switch (round % 3) {
		case 0:
			fill_pattern(p, len, 0x2000 + round);
			break;
		case 1:
			/* One word in each block. */
			for (size_t b = 0; b < len; b += BLOCK)
				u[(b + BLOCK / 2 + 4 * round) / 4] += 1 + round;
			break;
		default:
			/* One page of the last block. */
			memset(p + len - ps * (1 + round), 0x40 + round, ps);
			break;
		}
		want = cpu_sum(p, len);
		for (int k = 0; k < 3; k++) {
			int i = round % 2 ? k : 2 - k;

			ASSERT_EQ(npu_sum(fd[i], p, len, &w), 0)
				TH_LOG("round %d %s", round, who[i]);
			ASSERT_EQ(w.result, want)
				TH_LOG("round %d: %s read stale data after the "
				       "CPU's write", round, who[i]);
		}
		ASSERT_EQ(cpu_sum(p, len), want);
	}
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(close(fd[i]), 0);
	}
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * The same, read in pieces: a copy covers the whole 2 MiB block, and a CPU
 * write to one page of it collapses all of it.  Each device must then stop
 * mapping every page of the copy, not only the written one, before its
 * device pages are reused: sums of parts of the buffer (a sum of all of it
 * cannot tell pages apart) by all four files at once, with a CPU write or
 * an NPU write between rounds.
 */
TEST_F_TIMEOUT(trust, read_mostly_partial_reads_after_writes, 180)
{
	size_t ps = self->ps, len = 6 * MiB;
	__u32 rng = 0x5eed;
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	int fd[4];

	if (self->ndev < 2)
		SKIP(return, "no /dev/gmem_npu1");
	ASSERT_NE(p, MAP_FAILED);
	for (int i = 0; i < 4; i++) {
		fd[i] = npu_open(i / 2);
		ASSERT_GE(fd[i], 0);
	}
	fill_pattern(p, len, 0x3000);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_SET_READ_MOSTLY, 0),
		  0);
	for (int round = 0; round < 40; round++) {
		size_t roff, rn, woff, wn;
		struct gmem_npu_job job;
		__u64 seq[4], want;

		rng = rng * 1103515245 + 12345;
		roff = (rng >> 8) % (len / ps) * ps;
		rn = (1 + (rng >> 4) % 256) * ps;
		if (roff + rn > len)
			rn = len - roff;
		want = cpu_sum(p + roff, rn);
		job = job_sum(p + roff, rn);
		for (int i = 0; i < 4; i++) {
			ASSERT_EQ(npu_submit(fd[i], &job, &seq[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			ASSERT_EQ(npu_wait(fd[i], seq[i], WAIT_FOREVER, &w), 0);
			ASSERT_EQ(w.status, 0);
			ASSERT_EQ(w.result, want)
				TH_LOG("round %d file %d: [%#zx, +%#zx) reads "
				       "freed or stale copies", round, i, roff,
				       rn);
		}
		rng = rng * 1103515245 + 12345;
		woff = (rng >> 8) % (len / ps) * ps;
		wn = (1 + (rng >> 4) % 16) * ps;
		if (woff + wn > len)
			wn = len - woff;
		if (round % 3 == 2) {
			ASSERT_EQ(npu_fill(fd[(rng >> 2) % 4], p + woff, wn,
					   round, &w), 0);
		} else {
			for (size_t i = 0; i < wn; i += 64)
				p[woff + i]++;
		}
	}
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(close(fd[i]), 0);
	}
	ASSERT_EQ(munmap(p, len), 0);
}

/* ----------------------------------------------------------------------
 * 3. Two read-mostly ranges (two VMAs) inside one 2 MiB block: both read
 * correctly, and everything is released when the process exits.
 */
FIXTURE(two_ranges)
{
	size_t ps;
};

FIXTURE_VARIANT(two_ranges)
{
	bool mprotect_split;	/* else two MAP_FIXED mappings */
};

FIXTURE_VARIANT_ADD(two_ranges, mprotect_split)
{
	.mprotect_split = true,
};

FIXTURE_VARIANT_ADD(two_ranges, map_fixed_pieces)
{
	.mprotect_split = false,
};

FIXTURE_SETUP(two_ranges)
{
	self->ps = sysconf(_SC_PAGE_SIZE);
	settle();
}

FIXTURE_TEARDOWN(two_ranges)
{
}

static void two_ranges_child(bool mprotect_split)
{
	size_t half = BLOCK / 2, ps = sysconf(_SC_PAGE_SIZE);
	__u32 seed = 0x2a2a;
	struct gmem_npu_wait w;
	unsigned long s, e;
	long dup0 = dev_stat("npu0", "dup_pages");
	int gfd = open("/dev/gmem", O_RDWR), fd = npu_open(0), ret;
	char *p = mmap_block(BLOCK, PROT_READ | PROT_WRITE, PEER_FLAGS);

	CHILD_CHECK(gfd >= 0 && fd >= 0, "open: %s", strerror(errno));
	CHILD_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	if (mprotect_split) {
		fill_pattern(p, BLOCK, seed);
		CHILD_CHECK(!mprotect(p + half, half, PROT_READ), "mprotect");
	} else {
		/* NORESERVE differs, so the two pieces never merge. */
		CHILD_CHECK(mmap(p + half, half, PROT_READ | PROT_WRITE,
				 PEER_FLAGS | MAP_FIXED | MAP_NORESERVE, -1, 0)
			    == p + half, "mmap MAP_FIXED: %s", strerror(errno));
		fill_pattern(p, BLOCK, seed);
	}
	CHILD_CHECK(vma_bounds(p, &s, &e) && e == (unsigned long)p + half,
		    "the block is not two mappings");
	CHILD_CHECK(is_peer_shared(p) && is_peer_shared(p + half),
		    "a piece lost VM_PEER_SHARED");
	CHILD_CHECK(!gmem_advise(gfd, p, half, GMEM_ADV_SET_READ_MOSTLY, 0),
		    "READ_MOSTLY first range");
	CHILD_CHECK(!gmem_advise(gfd, p + half, half,
				 GMEM_ADV_SET_READ_MOSTLY, 0),
		    "READ_MOSTLY second range");

	for (int round = 0; round < 2; round++) {
		__u64 first = cpu_sum(p, half), second = cpu_sum(p + half, half);

		ret = npu_sum(fd, p, half, &w);
		CHILD_CHECK(!ret && w.result == first,
			    "round %d first range: status %d", round, ret);
		ret = npu_sum(fd, p + half, half, &w);
		CHILD_CHECK(!ret && w.result == second,
			    "round %d second range: status %d", round, ret);
		ret = npu_sum(fd, p, BLOCK, &w);
		CHILD_CHECK(!ret && w.result == first + second,
			    "round %d whole block: status %d", round, ret);
		if (!round) {
			CHILD_CHECK(dev_stat("npu0", "dup_pages") ==
				    dup0 + (long)(BLOCK / ps),
				    "dup_pages %ld, not %ld",
				    dev_stat("npu0", "dup_pages"),
				    dup0 + (long)(BLOCK / ps));
			/* A CPU write collapses the block's copies. */
			memset(p + ps, 0x77, ps);
		}
	}
	/* Exit with everything in place: exit must release it all. */
	_exit(0);
}

TEST_F_TIMEOUT(two_ranges, read_mostly_two_ranges_in_one_block, 120)
{
	long dup0 = gmem_stat("dup_pages"), as0 = gmem_stat("address_spaces");
	long used0 = dev_stat("npu0", "devmem_used");
	pid_t pid;

	ASSERT_GE(dup0, 0);
	ASSERT_GE(as0, 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		two_ranges_child(variant->mprotect_split);
	ASSERT_EQ(reap(pid), 0) TH_LOG("the child failed");
	ASSERT_EQ(gmem_stat_wait("dup_pages", dup0, FREE_DELAY_MS), dup0)
		TH_LOG("read duplicates outlived their process");
	ASSERT_EQ(gmem_stat_wait("address_spaces", as0, FREE_DELAY_MS), as0)
		TH_LOG("the exited process's address space leaked");
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", used0, FREE_DELAY_MS),
		  used0);
}

/* ----------------------------------------------------------------------
 * 4. Device mappings do not outlive munmap.
 */
FIXTURE(unmap)
{
	int fd;
	size_t ps;
};

FIXTURE_VARIANT(unmap)
{
	bool place_host;	/* the NPU maps host pages in place */
	bool busy;		/* jobs on the first half in flight */
};

FIXTURE_VARIANT_ADD(unmap, migrate)
{
	.place_host = false,
	.busy = false,
};

FIXTURE_VARIANT_ADD(unmap, host)
{
	.place_host = true,
	.busy = false,
};

FIXTURE_VARIANT_ADD(unmap, migrate_busy)
{
	.place_host = false,
	.busy = true,
};

FIXTURE_VARIANT_ADD(unmap, host_busy)
{
	.place_host = true,
	.busy = true,
};

FIXTURE_SETUP(unmap)
{
	self->ps = sysconf(_SC_PAGE_SIZE);
	settle();
	self->fd = npu_open(0);
	ASSERT_GE(self->fd, 0);
	if (variant->place_host) {
		ASSERT_EQ(npu_set_placement(self->fd, GMEM_NPU_PLACE_HOST), 0);
	}
}

FIXTURE_TEARDOWN(unmap)
{
	close(self->fd);
}

#define BUSY_JOBS	4

/*
 * 4 MiB, written by the CPU and read by the NPU (mapped into it, in
 * device memory or in place), then its second half unmapped, with jobs
 * on the first half queued or running if the variant says so.  Returns
 * the buffer; seqnos[] holds the jobs to collect.
 */
static char *map_read_unmap(struct __test_metadata *_metadata,
			    FIXTURE_DATA(unmap) *self,
			    const FIXTURE_VARIANT(unmap) *variant,
			    size_t len, __u32 seed, __u64 *seqnos)
{
	struct gmem_npu_job busy = job_sum(NULL, len / 2);
	struct gmem_npu_wait w;
	char *p = peer_mmap_block(len);
	__u64 touched;

	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, seed);
	/* Now, before the NPU: a CPU read would bring the pages back. */
	touched = cpu_touch_sum(p, len, self->ps);
	ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_EQ(npu_touch(self->fd, p, len, false, 0, &w), 0);
	ASSERT_EQ(w.result, touched);
	if (!variant->place_host) {
		ASSERT_GT(dev_stat("npu0", "devmem_used"), 0)
			TH_LOG("nothing migrated to npu0");
	}
	if (variant->busy) {
		busy.src = U64(p);
		for (int i = 0; i < BUSY_JOBS; i++) {
			ASSERT_EQ(npu_submit(self->fd, &busy, &seqnos[i]), 0);
		}
	}
	ASSERT_EQ(munmap(p + len / 2, len / 2), 0);
	return p;
}

/* The busy jobs on the first half all completed with its data. */
static void collect_busy(struct __test_metadata *_metadata,
			 FIXTURE_DATA(unmap) *self,
			 const FIXTURE_VARIANT(unmap) *variant, size_t len,
			 __u32 seed, const __u64 *seqnos)
{
	struct gmem_npu_wait w;

	if (!variant->busy)
		return;
	for (int i = 0; i < BUSY_JOBS; i++) {
		ASSERT_EQ(npu_wait(self->fd, seqnos[i], WAIT_FOREVER, &w), 0);
		ASSERT_EQ(w.status, 0) TH_LOG("job %d", i);
		ASSERT_EQ(w.result, pattern_sum(len / 2, seed));
	}
}

TEST_F_TIMEOUT(unmap, device_touch_after_munmap_faults, 120)
{
	size_t len = 4 * MiB, ps = self->ps;
	const size_t offs[] = { len / 2, len / 2 + BLOCK / 2 + ps, len - ps };
	__u32 seed = 0x0a11;
	__u64 seqnos[BUSY_JOBS];
	struct gmem_npu_wait w;
	char *p = map_read_unmap(_metadata, self, variant, len, seed, seqnos);

	ASSERT_NE(p, MAP_FAILED);
	for (size_t i = 0; i < ARRAY_SIZE(offs); i++) {
		struct gmem_npu_job job = {
			.op = GMEM_NPU_OP_TOUCH, .dst = U64(p + offs[i]),
			.len = ps,	/* no GMEM_NPU_JOB_WRITE: a read */
		};

		ASSERT_EQ(run_job(self->fd, &job, &w), -EFAULT)
			TH_LOG("a read of unmapped +0x%zx: status %d, result "
			       "0x%llx", offs[i], w.status,
			       (unsigned long long)w.result);
		ASSERT_EQ(page_of(w.fault_addr, ps), U64(p + offs[i]));
	}
	collect_busy(_metadata, self, variant, len, seed, seqnos);
	/* The first half is intact for both. */
	ASSERT_EQ(npu_sum(self->fd, p, len / 2, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len / 2, seed));
	ASSERT_EQ(check_pattern(p, len / 2, seed), -1);
	ASSERT_EQ(munmap(p, len / 2), 0);
}

/*
 * Pieces of a mapping unmapped one after another while the NPU keeps
 * reading the rest: each munmap queues a region resync, which may run
 * between a later munmap's VMA removal and its invalidation.  Whatever the
 * interleaving, an NPU read of an unmapped piece faults, never reads the
 * freed pages through a mapping made before.
 */
TEST_F_TIMEOUT(unmap, munmap_pieces_while_reading, 300)
{
	size_t piece = MiB, len = 8 * piece;
	struct gmem_npu_wait w;

	for (int round = 0; round < 12; round++) {
		char *p = peer_mmap_block(len);
		__u64 seq[8];

		ASSERT_NE(p, MAP_FAILED);
		fill_pattern(p, len, 0x4400 + round);
		ASSERT_EQ(npu_sum(self->fd, p, len, &w), 0);
		ASSERT_EQ(w.result, pattern_sum(len, 0x4400 + round));
		for (int k = 0; k < 8; k++) {
			/* An order that leaves pieces on both sides mapped. */
			int i = (k * 5 + round) % 8;
			struct gmem_npu_job touch = {
				.op = GMEM_NPU_OP_TOUCH,
				.dst = U64(p + i * piece), .len = piece,
			};
			int j = (i + 1) % 8;
			struct gmem_npu_job sum = job_sum(p + j * piece, piece);
			__u64 sseq;

			ASSERT_EQ(munmap(p + i * piece, piece), 0);
			ASSERT_EQ(npu_submit(self->fd, &touch, &seq[i]), 0);
			/* Keep the device mapping what is still mapped. */
			if (k < 7) {
				ASSERT_EQ(npu_submit(self->fd, &sum, &sseq), 0);
				ASSERT_EQ(npu_wait(self->fd, sseq, WAIT_FOREVER,
						   &w), 0);
			}
		}
		for (int i = 0; i < 8; i++) {
			ASSERT_EQ(npu_wait(self->fd, seq[i], WAIT_FOREVER, &w),
				  0);
			ASSERT_EQ(w.status, -EFAULT)
				TH_LOG("round %d: piece %d read after munmap "
				       "(status %d, result %#llx)", round, i,
				       w.status, (unsigned long long)w.result);
		}
	}
}

TEST_F_TIMEOUT(unmap, remap_after_munmap_sees_new_data, 120)
{
	size_t len = 4 * MiB, half = len / 2;
	__u32 seed = 0x01d, fresh = 0x9e3;
	__u64 seqnos[BUSY_JOBS];
	struct gmem_npu_wait w;
	char *p = map_read_unmap(_metadata, self, variant, len, seed, seqnos);
	__u64 touched;
	char *q;

	ASSERT_NE(p, MAP_FAILED);
	q = mmap(p + half, half, PROT_READ | PROT_WRITE, PEER_FLAGS | MAP_FIXED,
		 -1, 0);
	ASSERT_EQ(q, p + half) TH_LOG("mmap MAP_FIXED: %s", strerror(errno));
	fill_pattern(q, half, fresh);
	touched = cpu_touch_sum(q, half, self->ps);
	ASSERT_EQ(npu_touch(self->fd, q, half, false, 0, &w), 0);
	ASSERT_EQ(w.result, touched)
		TH_LOG("the NPU read the old mapping's pages");
	ASSERT_EQ(npu_sum(self->fd, q, half, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(half, fresh))
		TH_LOG("the NPU read the old mapping's data");
	collect_busy(_metadata, self, variant, len, seed, seqnos);
	ASSERT_EQ(npu_sum(self->fd, p, half, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(half, seed));
	ASSERT_EQ(check_pattern(q, half, fresh), -1);
	ASSERT_EQ(check_pattern(p, half, seed), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

/* ----------------------------------------------------------------------
 * 5. MAP_PEER_SHARED changes no other mmap, MAP_HUGE_* ones included.
 */
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT	26
#endif
#ifndef MAP_HUGE_MASK
#define MAP_HUGE_MASK	0x3f
#endif
#define HUGE_ENC(log)	((unsigned int)(log) << MAP_HUGE_SHIFT)
#ifndef MAP_HUGE_16KB
#define MAP_HUGE_16KB	HUGE_ENC(14)
#endif
#ifndef MAP_HUGE_64KB
#define MAP_HUGE_64KB	HUGE_ENC(16)
#endif
#ifndef MAP_HUGE_512KB
#define MAP_HUGE_512KB	HUGE_ENC(19)
#endif
#ifndef MAP_HUGE_1MB
#define MAP_HUGE_1MB	HUGE_ENC(20)
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB	HUGE_ENC(21)
#endif
#ifndef MAP_HUGE_8MB
#define MAP_HUGE_8MB	HUGE_ENC(23)
#endif
#ifndef MAP_HUGE_16MB
#define MAP_HUGE_16MB	HUGE_ENC(24)
#endif
#ifndef MAP_HUGE_32MB
#define MAP_HUGE_32MB	HUGE_ENC(25)
#endif
#ifndef MAP_HUGE_256MB
#define MAP_HUGE_256MB	HUGE_ENC(28)
#endif
#ifndef MAP_HUGE_512MB
#define MAP_HUGE_512MB	HUGE_ENC(29)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB	HUGE_ENC(30)
#endif
#ifndef MAP_HUGE_2GB
#define MAP_HUGE_2GB	HUGE_ENC(31)
#endif
#ifndef MAP_HUGE_16GB
#define MAP_HUGE_16GB	HUGE_ENC(34)
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE	0x100000
#endif
#ifndef MAP_SYNC
#define MAP_SYNC		0x080000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE	0x03
#endif
#ifndef MAP_UNINITIALIZED
#define MAP_UNINITIALIZED	0x4000000
#endif
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE		0x08
#endif

struct huge_size {
	const char *name;
	unsigned int enc;
	int log2;
};

#define HUGE(sz, lg)	{ #sz, MAP_HUGE_##sz, lg }
static const struct huge_size huge_sizes[] = {
	HUGE(16KB, 14), HUGE(64KB, 16), HUGE(512KB, 19), HUGE(1MB, 20),
	HUGE(2MB, 21), HUGE(8MB, 23), HUGE(16MB, 24), HUGE(32MB, 25),
	HUGE(256MB, 28), HUGE(512MB, 29), HUGE(1GB, 30), HUGE(2GB, 31),
	HUGE(16GB, 34),
};

/* The value, and that it is a bit of its own. */
TEST(map_peer_shared_is_own_bit)
{
	const unsigned long others[] = {
		MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_DROPPABLE,
		MAP_FIXED, MAP_ANONYMOUS, MAP_32BIT, MAP_GROWSDOWN,
		MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED, MAP_NORESERVE,
		MAP_POPULATE, MAP_NONBLOCK, MAP_STACK, MAP_HUGETLB, MAP_SYNC,
		MAP_FIXED_NOREPLACE, MAP_UNINITIALIZED,
	};
	size_t len = 2 * MiB;
	char *p;

	ASSERT_EQ(MAP_PEER_SHARED, 0x200000);
	ASSERT_EQ(MAP_PEER_SHARED & ((unsigned long)MAP_HUGE_MASK <<
				     MAP_HUGE_SHIFT), 0UL);
	for (size_t i = 0; i < ARRAY_SIZE(huge_sizes); i++) {
		ASSERT_EQ(huge_sizes[i].enc, HUGE_ENC(huge_sizes[i].log2))
			TH_LOG("MAP_HUGE_%s", huge_sizes[i].name);
		ASSERT_EQ(huge_sizes[i].enc & MAP_PEER_SHARED, 0U)
			TH_LOG("MAP_HUGE_%s", huge_sizes[i].name);
	}
	for (size_t i = 0; i < ARRAY_SIZE(others); i++) {
		ASSERT_EQ(others[i] & MAP_PEER_SHARED, 0UL) TH_LOG("flag %zu", i);
	}
	/* ... and the one the kernel knows. */
	p = peer_mmap(len);
	ASSERT_NE(p, MAP_FAILED) TH_LOG("MAP_PEER_SHARED: %s", strerror(errno));
	ASSERT_TRUE(is_peer_shared(p));
	ASSERT_EQ(munmap(p, len), 0);
}

/* A size encoding without MAP_HUGETLB is ignored, as it always was. */
TEST(map_huge_size_without_hugetlb_is_plain)
{
	size_t len = 2 * MiB;

	for (size_t i = 0; i <= ARRAY_SIZE(huge_sizes); i++) {
		unsigned int enc = i < ARRAY_SIZE(huge_sizes) ?
				   huge_sizes[i].enc : MAP_HUGE_MASK << MAP_HUGE_SHIFT;
		const char *name = i < ARRAY_SIZE(huge_sizes) ?
				   huge_sizes[i].name : "(all size bits)";
		char flags[256];
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       (int)(MAP_PRIVATE | MAP_ANONYMOUS | enc), -1, 0);

		ASSERT_NE(p, MAP_FAILED)
			TH_LOG("MAP_HUGE_%s: %s", name, strerror(errno));
		ASSERT_TRUE(vma_flags(p, flags, sizeof(flags)));
		ASSERT_FALSE(has_vmflag(flags, "ps"))
			TH_LOG("MAP_HUGE_%s became peer-shared:%s", name, flags);
		ASSERT_FALSE(has_vmflag(flags, "ht"))
			TH_LOG("MAP_HUGE_%s became hugetlb:%s", name, flags);
		memset(p, 0x5a, len);
		ASSERT_EQ(find_not_byte(p, len, 0x5a), -1);
		ASSERT_EQ(munmap(p, len), 0);
	}
}

/* MAP_HUGETLB with each size: 0 if mapped (and plain), else the errno. */
static void hugetlb_results(struct __test_metadata *_metadata, int *res)
{
	for (size_t i = 0; i <= ARRAY_SIZE(huge_sizes); i++) {
		unsigned int enc = i < ARRAY_SIZE(huge_sizes) ?
				   huge_sizes[i].enc : 0;
		size_t len = i < ARRAY_SIZE(huge_sizes) &&
			     huge_sizes[i].log2 <= 30 ?
			     1UL << huge_sizes[i].log2 : 2 * MiB;
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       (int)(MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB |
				     enc), -1, 0);

		res[i] = p == MAP_FAILED ? errno : 0;
		if (p != MAP_FAILED) {
			ASSERT_FALSE(is_peer_shared(p));
			ASSERT_EQ(munmap(p, len), 0);
		}
	}
}

static void restore_modules(struct __test_metadata *_metadata)
{
	if (!module_loaded("gmem")) {
		ASSERT_EQ(load_module("gmem"), 0);
	}
	if (!module_loaded("gmem_npu")) {
		ASSERT_EQ(load_module_params("gmem_npu",
					     "num_devices=2 dram_mib=16"), 0);
	}
}

/*
 * MAP_HUGETLB requests get what they got without gmem: the same address
 * or errno (this kernel has no hugetlbfs), gmem.ko loaded or not.
 */
TEST(map_hugetlb_same_with_and_without_gmem)
{
	int loaded[ARRAY_SIZE(huge_sizes) + 1], unloaded[ARRAY_SIZE(loaded)];
	int ret;

	if (getuid())
		SKIP(return, "needs root");
	ASSERT_TRUE(module_loaded("gmem"));
	hugetlb_results(_metadata, loaded);

	/* Earlier tests' address spaces go first. */
	gmem_stat_wait("address_spaces", 0, FREE_DELAY_MS);
	ret = unload_module_wait("gmem_npu", 2000);
	if (ret == -EAGAIN || ret == -EBUSY)
		SKIP(return, "gmem_npu busy: %s", strerror(-ret));
	ASSERT_EQ(ret, 0) TH_LOG("unload gmem_npu: %s", strerror(-ret));
	ret = unload_module_wait("gmem", 2000);
	if (ret == -EAGAIN || ret == -EBUSY) {
		restore_modules(_metadata);
		SKIP(return, "gmem busy: %s", strerror(-ret));
	}
	if (ret)
		restore_modules(_metadata);
	ASSERT_EQ(ret, 0) TH_LOG("unload gmem: %s", strerror(-ret));
	hugetlb_results(_metadata, unloaded);
	restore_modules(_metadata);
	ASSERT_EQ(gmem_stat("devices"), 2);

	for (size_t i = 0; i < ARRAY_SIZE(loaded); i++) {
		ASSERT_EQ(loaded[i], unloaded[i])
			TH_LOG("MAP_HUGETLB | MAP_HUGE_%s: %s with gmem, %s "
			       "without",
			       i < ARRAY_SIZE(huge_sizes) ? huge_sizes[i].name :
			       "(default)", strerror(loaded[i]),
			       strerror(unloaded[i]));
	}
}

TEST(map_peer_shared_hugetlb_is_einval)
{
	for (size_t i = 0; i <= ARRAY_SIZE(huge_sizes); i++) {
		unsigned int enc = i < ARRAY_SIZE(huge_sizes) ?
				   huge_sizes[i].enc : 0;
		char *p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE,
			       (int)(PEER_FLAGS | MAP_HUGETLB | enc), -1, 0);

		ASSERT_EQ(p, MAP_FAILED)
			TH_LOG("MAP_HUGE_%s mapped",
			       i < ARRAY_SIZE(huge_sizes) ? huge_sizes[i].name :
			       "(default)");
		ASSERT_EQ(errno, EINVAL)
			TH_LOG("MAP_HUGE_%s: %s",
			       i < ARRAY_SIZE(huge_sizes) ? huge_sizes[i].name :
			       "(default)", strerror(errno));
	}
}

/* ----------------------------------------------------------------------
 * 6. Failing ioctls leave no trace.
 */

/* A page holding a copy of @size bytes of @arg, then made read-only. */
static void *readonly_arg(const void *arg, size_t size, size_t ps)
{
	void *page = mmap(NULL, ps, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED)
		return NULL;
	memcpy(page, arg, size);
	if (mprotect(page, ps, PROT_READ)) {
		munmap(page, ps);
		return NULL;
	}
	return page;
}

/* Whether @fd has no pending job (POLLIN) within @ms. */
static bool npu_idle(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, ms) == 1 && (pfd.revents & POLLIN);
}

TEST_F(trust, submit_efault_runs_nothing)
{
	size_t ps = self->ps, len = 64 * 1024;
	struct gmem_npu_submit sub = { .job = job_fill(NULL, len, 0xee) };
	struct gmem_npu_wait w;
	char *dst = peer_mmap_block(BLOCK);
	int fd = npu_open(0);
	void *ro;

	ASSERT_GE(fd, 0);
	ASSERT_NE(dst, MAP_FAILED);
	memset(dst, 0x11, len);
	sub.job.dst = U64(dst);
	ro = readonly_arg(&sub, sizeof(sub), ps);
	ASSERT_NE(ro, NULL);

	errno = 0;
	ASSERT_EQ(ioctl(fd, GMEM_NPU_IOC_SUBMIT, ro), -1);
	ASSERT_EQ(errno, EFAULT) TH_LOG("%s", strerror(errno));
	usleep(200 * 1000);
	ASSERT_TRUE(npu_idle(fd, 0)) TH_LOG("a job is pending");
	ASSERT_EQ(find_not_byte(dst, len, 0x11), -1)
		TH_LOG("the rejected FILL ran");
	/* Nothing to collect for it, whatever seqno it would have had. */
	for (__u64 s = 0; s <= 3; s++) {
		ASSERT_EQ(npu_wait(fd, s, 0, &w), -EINVAL)
			TH_LOG("seqno %llu: status %d", (unsigned long long)s,
			       w.status);
	}
	/* Jobs run in order: a later job sees what the FILL would change. */
	ASSERT_EQ(npu_sum(fd, dst, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x11, len))
		TH_LOG("the rejected FILL ran before the next job");
	ASSERT_EQ(find_not_byte(dst, len, 0x11), -1);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(munmap(ro, ps), 0);
	ASSERT_EQ(munmap(dst, BLOCK), 0);
}

TEST_F(trust, wait_efault_keeps_the_result)
{
	size_t ps = self->ps, len = 2 * MiB;
	__u32 seed = 0x3a17;
	struct gmem_npu_job job;
	char *src = peer_mmap_block(len);
	int fd = npu_open(0);

	ASSERT_GE(fd, 0);
	ASSERT_NE(src, MAP_FAILED);
	fill_pattern(src, len, seed);
	job = job_sum(src, len);
	/* The job done before the WAIT, then still running (maybe). */
	for (int pending = 0; pending < 2; pending++) {
		struct gmem_npu_wait w = { .timeout_ns = WAIT_FOREVER };
		void *ro;

		ASSERT_EQ(npu_submit(fd, &job, &w.seqno), 0);
		if (!pending) {
			ASSERT_TRUE(npu_idle(fd, 10000));
		}
		ro = readonly_arg(&w, sizeof(w), ps);
		ASSERT_NE(ro, NULL);
		errno = 0;
		ASSERT_EQ(ioctl(fd, GMEM_NPU_IOC_WAIT, ro), -1);
		ASSERT_EQ(errno, EFAULT) TH_LOG("%s", strerror(errno));
		ASSERT_EQ(npu_wait(fd, w.seqno, WAIT_FOREVER, &w), 0)
			TH_LOG("the result went with the failed WAIT");
		ASSERT_EQ(w.status, 0);
		ASSERT_EQ(w.result, pattern_sum(len, seed));
		/* Collected now, once. */
		ASSERT_EQ(npu_wait(fd, w.seqno, 0, &w), -EINVAL);
		ASSERT_EQ(munmap(ro, ps), 0);
	}
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(munmap(src, len), 0);
}

/* ----------------------------------------------------------------------
 * 7. Copies obey the reading context's policy.
 */
TEST_F(trust, read_mostly_copies_obey_policy)
{
	size_t len = 4 * MiB;
	__u32 seed = 0x9011c7;
	struct gmem_npu_wait w;
	long dup;
	char *p = mmap_block(len, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS);
	int fa = npu_open(0), fb = npu_open(0), ret;

	ASSERT_GE(fa, 0);
	ASSERT_GE(fb, 0);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_FALSE(is_peer_shared(p));
	fill_pattern(p, len, seed);
	ASSERT_EQ(npu_set_mode(fb, GMEM_NPU_MODE_SYSTEM), 0);
	ret = gmem_advise(self->gfd, p, len, GMEM_ADV_SET_READ_MOSTLY, 0);
	if (ret)
		TH_LOG("READ_MOSTLY refused (%s): checking the jobs only",
		       strerror(-ret));

	/* Before and after fdB made copies, fdA may not read. */
	ASSERT_EQ(npu_sum(fa, p, len, &w), -EACCES)
		TH_LOG("fdA read plain memory: result 0x%llx",
		       (unsigned long long)w.result);
	for (int round = 0; round < 2; round++) {
		ASSERT_EQ(npu_sum(fb, p, len, &w), 0) TH_LOG("round %d", round);
		ASSERT_EQ(w.result, pattern_sum(len, seed));
		dup = gmem_stat("dup_pages");
		ASSERT_EQ(npu_sum(fa, p, len, &w), -EACCES)
			TH_LOG("round %d: fdA read plain memory through fdB's "
			       "copies: result 0x%llx", round,
			       (unsigned long long)w.result);
		ASSERT_EQ(npu_touch(fa, p + len / 2, len / 2, false, 0, &w),
			  -EACCES);
		ASSERT_EQ(gmem_stat("dup_pages"), dup)
			TH_LOG("fdA made copies of memory outside its policy");
	}
	ASSERT_EQ(check_pattern(p, len, seed), -1);
	ASSERT_EQ(close(fa), 0);
	ASSERT_EQ(close(fb), 0);
	ASSERT_EQ(munmap(p, len), 0);
}

/* ----------------------------------------------------------------------
 * 8. Limits: pinned memory per address space and in all, queued job bytes
 * per file.
 */
struct pin_limits {
	size_t dev_bytes;	/* npu0's memory */
	size_t per_as;		/* pin_limit_pct of it, in whole blocks */
	size_t total;		/* pin_total_pct of it */
};

static void get_pin_limits(struct __test_metadata *_metadata,
			   size_t ps, struct pin_limits *l)
{
	long per = file_long(GMEM_PARAMS "pin_limit_pct");
	long total = file_long(GMEM_PARAMS "pin_total_pct");

	ASSERT_GE(per, 0) TH_LOG("no gmem parameter pin_limit_pct");
	ASSERT_GE(total, 0) TH_LOG("no gmem parameter pin_total_pct");
	l->dev_bytes = dev_stat("npu0", "devmem_pages") * ps;
	ASSERT_GT(l->dev_bytes, 0UL);
	l->per_as = (l->dev_bytes * per / 100) & ~(BLOCK - 1);
	l->total = l->dev_bytes * total / 100;
	TH_LOG("npu0 %zu MiB, pin_limit_pct %ld, pin_total_pct %ld",
	       l->dev_bytes / MiB, per, total);
}

/*
 * A process of user nobody (setgid/setuid before opening anything) that
 * pins.  Commands from the parent: 'p' pins @len bytes and answers 'y'
 * (pinned, as GET_ATTRS confirms), 'n' (ENOMEM, nothing pinned) or 'x'
 * (anything else); 'q' exits.
 */
static void pin_child(struct chan *c, size_t len, int inherited)
{
	struct gmem_range_attrs q;
	struct gmem_npu_info info;
	char cmd, *p;
	int gfd, fd, ret;

	chan_child_side(c);
	close(inherited);
	CHILD_CHECK(!setgroups(0, NULL) && !setgid(NOBODY) && !setuid(NOBODY),
		    "setuid: %s", strerror(errno));
	gfd = open("/dev/gmem", O_RDWR);
	fd = npu_open(0);
	CHILD_CHECK(gfd >= 0 && fd >= 0, "open as nobody: %s", strerror(errno));
	CHILD_CHECK(!npu_get_info(fd, &info), "INFO");
	p = peer_mmap_block(len);
	CHILD_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	CHILD_CHECK(say(c->up[1], 'r'), "pipe");
	while ((cmd = hear(c->down[0])) == 'p') {
		char answer = 'x';

		ret = gmem_advise(gfd, p, len, GMEM_ADV_PIN, info.dev_id);
		if (!gmem_get_attrs(gfd, p, len, &q)) {
			if (!ret && q.pinned == 1ULL << info.dev_id)
				answer = 'y';
			else if (ret == -ENOMEM && q.pinned == 0)
				answer = 'n';
		}
		if (answer == 'x')
			fprintf(stderr, "#      pin of %zu MiB: %s, pinned "
				"0x%llx\n", len / MiB, strerror(-ret),
				(unsigned long long)q.pinned);
		CHILD_CHECK(say(c->up[1], answer), "pipe");
	}
	_exit(cmd == 'q' ? 0 : 2);
}

static pid_t start_pin_child(struct chan *c, size_t len, int inherited)
{
	pid_t pid;

	if (!chan_open(c))
		return -1;
	pid = fork();
	if (pid == 0)
		pin_child(c, len, inherited);
	chan_parent_side(c);
	if (pid > 0 && hear(c->up[0]) != 'r') {
		reap(pid);
		return -1;
	}
	return pid;
}

/* Asks a pin child to pin; its answer. */
static char child_pin(struct chan *c)
{
	return say(c->down[1], 'p') ? hear(c->up[0]) : 0;
}

static int stop_child(struct chan *c, pid_t pid)
{
	say(c->down[1], 'q');
	chan_close_parent(c);
	return reap(pid);
}

TEST_F_TIMEOUT(trust, pin_limit_per_address_space, 120)
{
	size_t ps = self->ps, len = 8 * MiB;
	long pinned0 = dev_stat("npu0", "pinned"), npages;
	struct pin_limits l;
	struct gmem_npu_wait w;
	struct chan all, part;
	pid_t big, small;
	int fd;
	char *p;

	if (getuid())
		SKIP(return, "needs root");
	get_pin_limits(_metadata, ps, &l);
	if (l.dev_bytes <= l.per_as)
		SKIP(return, "pin_limit_pct allows pinning all of npu0");
	if (l.per_as < BLOCK)
		SKIP(return, "pin_limit_pct allows less than a block");
	npages = l.per_as / ps;

	/* All of npu0: refused, nothing pinned. */
	big = start_pin_child(&all, l.dev_bytes, self->gfd);
	ASSERT_GT(big, 0);
	ASSERT_EQ(child_pin(&all), 'n')
		TH_LOG("nobody pinned all of npu0 (or the error was wrong)");
	ASSERT_EQ(dev_stat("npu0", "pinned"), pinned0);
	ASSERT_EQ(stop_child(&all, big), 0);

	/* The limit itself: fine. */
	small = start_pin_child(&part, l.per_as, self->gfd);
	ASSERT_GT(small, 0);
	ASSERT_EQ(child_pin(&part), 'y') TH_LOG("pinning %zu MiB failed",
						l.per_as / MiB);
	ASSERT_EQ(dev_stat("npu0", "pinned"), pinned0 + npages);

	/* Root still gets work done on npu0 meanwhile. */
	if (len > l.dev_bytes - l.per_as)
		len = (l.dev_bytes - l.per_as) & ~(BLOCK - 1);
	fd = npu_open(0);
	ASSERT_GE(fd, 0);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 0x9147);
	ASSERT_EQ(npu_sum(fd, p, len, &w), 0)
		TH_LOG("status %d", w.status);
	ASSERT_EQ(w.result, pattern_sum(len, 0x9147));
	ASSERT_EQ(npu_fill(fd, p, len, 0x6b, &w), 0);
	ASSERT_EQ(find_not_byte(p, len, 0x6b), -1);
	ASSERT_EQ(dev_stat("npu0", "pinned"), pinned0 + npages);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(munmap(p, len), 0);

	ASSERT_EQ(stop_child(&part, small), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "pinned", pinned0, FREE_DELAY_MS),
		  pinned0);
}

TEST_F_TIMEOUT(trust, pin_limit_total, 120)
{
	long pinned0 = dev_stat("npu0", "pinned"), npages;
	struct pin_limits l;
	struct chan c1, c2;
	pid_t first, second;

	if (getuid())
		SKIP(return, "needs root");
	get_pin_limits(_metadata, self->ps, &l);
	if (l.per_as < BLOCK || 2 * l.per_as <= l.total || l.per_as > l.total)
		SKIP(return, "limits leave nothing to test");
	npages = l.per_as / self->ps;

	first = start_pin_child(&c1, l.per_as, self->gfd);
	ASSERT_GT(first, 0);
	second = start_pin_child(&c2, l.per_as, self->gfd);
	ASSERT_GT(second, 0);
	ASSERT_EQ(child_pin(&c1), 'y');
	ASSERT_EQ(dev_stat("npu0", "pinned"), pinned0 + npages);
	ASSERT_EQ(child_pin(&c2), 'n')
		TH_LOG("both pinned %zu MiB of %zu (pin_total_pct exceeded)",
		       l.per_as / MiB, l.dev_bytes / MiB);
	ASSERT_EQ(dev_stat("npu0", "pinned"), pinned0 + npages);
	/* Live pins count: once the first exits, the second may pin. */
	ASSERT_EQ(stop_child(&c1, first), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "pinned", pinned0, FREE_DELAY_MS),
		  pinned0);
	ASSERT_EQ(child_pin(&c2), 'y');
	ASSERT_EQ(dev_stat("npu0", "pinned"), pinned0 + npages);
	ASSERT_EQ(stop_child(&c2, second), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "pinned", pinned0, FREE_DELAY_MS),
		  pinned0);
}

TEST_F_TIMEOUT(trust, queued_job_bytes_limited, 120)
{
	size_t len = 64 * MiB, ps = self->ps;
	long max_mib = file_long(NPU_PARAMS "max_queued_mib");
	struct gmem_npu_job sum, touch;
	struct gmem_npu_info i0, i1;
	struct gmem_npu_wait w;
	__u64 seq[1000], touch_sum, next;
	int n = 0, bound, ret = 0, fd = npu_open(0);
	char *p = peer_mmap_block(len);

	ASSERT_GE(max_mib, 0) TH_LOG("no gmem_npu parameter max_queued_mib");
	bound = max_mib / 64 + 16;
	if (bound > (int)ARRAY_SIZE(seq))
		SKIP(return, "max_queued_mib %ld: too many jobs to queue",
		     max_mib);
	ASSERT_GE(fd, 0);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_set_placement(fd, GMEM_NPU_PLACE_HOST), 0);
	memset(p, 0x5a, len);
	touch_sum = cpu_touch_sum(p, len, ps);
	sum = job_sum(p, len);
	touch = (struct gmem_npu_job){ .op = GMEM_NPU_OP_TOUCH, .dst = U64(p),
				       .len = len };
	ASSERT_EQ(npu_get_info(fd, &i0), 0);

	/* The first job reads everything, the next ones a word per page. */
	while (n < bound) {
		ret = npu_submit(fd, n ? &touch : &sum, &seq[n]);
		if (ret)
			break;
		n++;
	}
	ASSERT_EQ(ret, -EAGAIN) TH_LOG("%d jobs of 64 MiB queued, then %s", n,
				       ret ? strerror(-ret) : "no refusal");
	ASSERT_GE(n, 1);
	next = seq[n - 1] + 1;
	/* The refused job has nothing to collect. */
	ASSERT_EQ(npu_wait(fd, next, 0, &w), -EINVAL);
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(npu_wait(fd, seq[i], WAIT_FOREVER, &w), 0);
		ASSERT_EQ(w.status, 0) TH_LOG("job %d", i);
		ASSERT_EQ(w.result, i ? touch_sum : byte_sum(0x5a, len))
			TH_LOG("job %d", i);
	}
	/* Nothing else was queued. */
	ASSERT_TRUE(npu_idle(fd, 0));
	ASSERT_EQ(npu_get_info(fd, &i1), 0);
	ASSERT_EQ(i1.jobs_done - i0.jobs_done, (__u64)n);
	ASSERT_EQ(npu_wait(fd, next, 0, &w), -EINVAL);
	/* Accepted again. */
	ASSERT_EQ(run_job(fd, &touch, &w), 0);
	ASSERT_EQ(w.result, touch_sum);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(munmap(p, len), 0);
}

/* A job longer than the limit runs when it is the file's only one. */
TEST_F(trust, queued_limit_admits_a_lone_big_job)
{
	long max_mib = file_long(NPU_PARAMS "max_queued_mib");
	size_t len;
	struct gmem_npu_job job;
	struct gmem_npu_wait w;
	char *p;
	int fd = npu_open(0);

	ASSERT_GE(max_mib, 0) TH_LOG("no gmem_npu parameter max_queued_mib");
	len = (max_mib + 2) * MiB;
	if (len > GMEM_NPU_JOB_MAX_LEN)
		SKIP(return, "max_queued_mib %ld: no job is longer", max_mib);
	ASSERT_GE(fd, 0);
	/* Inaccessible, so that the job ends at its first access. */
	p = mmap(NULL, len, PROT_NONE, PEER_FLAGS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(p, MAP_FAILED);
	job = (struct gmem_npu_job){ .op = GMEM_NPU_OP_TOUCH, .dst = U64(p),
				     .len = len };
	ASSERT_TRUE(npu_idle(fd, 0));
	ASSERT_LE(run_job(fd, &job, &w), 0)
		TH_LOG("a lone %zu MiB job was refused", len / MiB);
	ASSERT_LT(w.status, 0);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(munmap(p, len), 0);
}

/* ----------------------------------------------------------------------
 * 9. Memory outside the direct map never reaches a device.
 */
TEST_F(trust, memfd_secret_unreachable)
{
	size_t len = 64 * 1024;
	struct gmem_npu_wait w;
	int sfd = syscall(SYS_memfd_secret, 0), fd, ret;
	char *p;

	if (sfd < 0 && errno == ENOSYS)
		SKIP(return, "no memfd_secret");
	ASSERT_GE(sfd, 0) TH_LOG("memfd_secret: %s", strerror(errno));
	ASSERT_EQ(ftruncate(sfd, len), 0);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	ASSERT_NE(p, MAP_FAILED) TH_LOG("mmap: %s", strerror(errno));
	memset(p, 0x3c, len);
	fd = npu_open(0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(npu_set_mode(fd, GMEM_NPU_MODE_SYSTEM), 0);

	ret = npu_sum(fd, p, len, &w);
	ASSERT_TRUE(ret == -EACCES || ret == -EFAULT)
		TH_LOG("REDUCE_SUM of secret memory: %d, result 0x%llx", ret,
		       (unsigned long long)w.result);
	ret = npu_fill(fd, p, len, 0xc3, &w);
	ASSERT_TRUE(ret == -EACCES || ret == -EFAULT)
		TH_LOG("FILL of secret memory: %d", ret);
	ASSERT_EQ(find_not_byte(p, len, 0x3c), -1);
	ASSERT_NE(npu_prefetch(fd, p, len, 0), 0);
	ASSERT_EQ(find_not_byte(p, len, 0x3c), -1);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(close(sfd), 0);
}

/* ----------------------------------------------------------------------
 * 10. Hot-unplug of npu1.
 */
#define PRESENT		NPU_DEBUGFS "/npu1/present"

FIXTURE(unplug)
{
	int gfd;
	size_t ps;
};

FIXTURE_SETUP(unplug)
{
	self->ps = sysconf(_SC_PAGE_SIZE);
	self->gfd = -1;
	if (access(PRESENT, F_OK))
		SKIP(return, "no %s", PRESENT);
	if (file_long(PRESENT) == 0) {
		ASSERT_EQ(write_str(PRESENT, "1"), 0);
	}
	settle();
	self->gfd = open("/dev/gmem", O_RDWR);
	ASSERT_GE(self->gfd, 0);
}

FIXTURE_TEARDOWN(unplug)
{
	if (self->gfd >= 0)
		close(self->gfd);
	/* Never leave npu1 unplugged for later tests. */
	if (file_long(PRESENT) == 0)
		write_str(PRESENT, "1");
}

struct hint_loop {
	int gfd;
	int dev;
	char *p;
	size_t len;
	volatile bool unplugged;
	volatile long ok_before;
	long ok_after, err_after;
	int last_err;
	bool timed_out;
};

/* Hints on npu1 for the buffer until they fail after the unplug. */
static void *hint_thread(void *arg)
{
	static const __u32 advice[] = {
		GMEM_ADV_PREFETCH, GMEM_ADV_PIN, GMEM_ADV_UNPIN,
		GMEM_ADV_SET_PREFERRED_LOCATION, GMEM_ADV_SET_ACCESSED_BY,
		GMEM_ADV_UNSET_ACCESSED_BY, GMEM_ADV_UNSET_PREFERRED_LOCATION,
		GMEM_ADV_PREFETCH,
	};
	struct hint_loop *h = arg;
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		for (size_t i = 0; i < ARRAY_SIZE(advice); i++) {
			bool after = h->unplugged;
			int ret = gmem_advise(h->gfd, h->p, h->len, advice[i],
					      h->dev);

			if (!after)
				h->ok_before += !ret;
			else if (ret) {
				h->err_after++;
				h->last_err = -ret;
			} else {
				h->ok_after++;
			}
		}
		gmem_advise(h->gfd, h->p, h->len, GMEM_ADV_UNPIN, h->dev);
		if (h->err_after >= 8)
			return NULL;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 20) {
			h->timed_out = true;
			return NULL;
		}
	}
}

TEST_F_TIMEOUT(unplug, npu_unplug_keeps_host_data, 180)
{
	size_t len = 8 * MiB;
	__u32 seed = 0xdead1;
	struct gmem_npu_job inc = { .op = GMEM_NPU_OP_ATOMIC_INC, .len = 8,
				    .value = 1 << 20 };
	struct gmem_npu_job sum;
	struct gmem_npu_info info;
	struct gmem_npu_wait w;
	struct hint_loop h = { .gfd = self->gfd, .len = len };
	struct timespec deadline;
	pthread_t thread;
	__u64 seq[6];
	char *p = peer_mmap_block(len);
	__u64 *counter = peer_mmap(self->ps);
	int fd = npu_open(1), fd2, ret;
	ssize_t bad;

	ASSERT_GE(fd, 0);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_NE(counter, MAP_FAILED);
	ASSERT_EQ(file_long(PRESENT), 1);
	ASSERT_EQ(npu_get_info(fd, &info), 0);
	fill_pattern(p, len, seed);
	*counter = 0;
	ASSERT_EQ(npu_sum(fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_GT(dev_stat("npu1", "devmem_used"), 0)
		TH_LOG("nothing migrated into npu1");

	/* Long jobs in flight, hints racing them. */
	sum = job_sum(p, len);
	inc.dst = U64(counter);
	for (int i = 0; i < 6; i++) {
		ASSERT_EQ(npu_submit(fd, i % 2 ? &inc : &sum, &seq[i]), 0);
	}
	h.dev = info.dev_id;
	h.p = p;
	ASSERT_EQ(pthread_create(&thread, NULL, hint_thread, &h), 0);
	for (int i = 0; i < 2000 && !h.ok_before; i++)
		usleep(10 * 1000);
	ASSERT_GT(h.ok_before, 0) TH_LOG("no hint on npu1 works");

	ASSERT_EQ(write_str(PRESENT, "0"), 0);
	h.unplugged = true;
	ASSERT_EQ(file_long(PRESENT), 0);

	/* The host data is whole. */
	bad = check_pattern(p, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("element %zd lost in the unplug", bad);
	/* Every job ends, correctly or with an error. */
	for (int i = 0; i < 6; i++) {
		ret = npu_wait(fd, seq[i], 30LL * 1000 * 1000 * 1000, &w);
		ASSERT_EQ(ret, 0) TH_LOG("WAIT job %d: %s", i, strerror(-ret));
		ASSERT_LE(w.status, 0);
		if (i % 2 == 0 && w.status == 0) {
			ASSERT_EQ(w.result, pattern_sum(len, seed))
				TH_LOG("job %d succeeded with a wrong sum", i);
		}
	}
	/* The old file is dead; the device is gone. */
	ASSERT_EQ(npu_submit(fd, &sum, &seq[0]), -ENODEV);
	ASSERT_EQ(npu_prefetch(fd, p, BLOCK, 0), -ENODEV);
	fd2 = npu_open(1);
	ASSERT_LT(fd2, 0) TH_LOG("opened an unplugged npu1");

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	ret = pthread_timedjoin_np(thread, NULL, &deadline);
	ASSERT_EQ(ret, 0) TH_LOG("the hint thread hangs");
	ASSERT_FALSE(h.timed_out) TH_LOG("hints on npu1 kept working: %ld ok",
					 h.ok_after);
	ASSERT_GT(h.err_after, 0);
	TH_LOG("after the unplug: %ld hints failed (last %s), %ld worked",
	       h.err_after, strerror(h.last_err), h.ok_after);
	bad = check_pattern(p, len, seed);
	ASSERT_EQ(bad, -1) TH_LOG("element %zd lost after the unplug", bad);
	ASSERT_EQ(close(fd), 0);

	/* Plugged back: fresh, empty, working. */
	ASSERT_EQ(write_str(PRESENT, "1"), 0);
	ASSERT_EQ(file_long(PRESENT), 1);
	fd = npu_open(1);
	ASSERT_GE(fd, 0) TH_LOG("open npu1 after replug: %s", strerror(errno));
	ASSERT_EQ(dev_stat_wait("npu1", "devmem_used", 0, FREE_DELAY_MS), 0);
	/*
	 * Hints name devices by id, and the re-plugged NPU may get the old
	 * one: drop what the hint thread left (accessed-by and a preferred
	 * location keep pages in place) before expecting a migration.
	 */
	{
		int gfd = open("/dev/gmem", O_RDWR), id = npu_dev_id(1);

		ASSERT_GE(gfd, 0);
		ASSERT_GE(id, 0);
		ASSERT_EQ(gmem_advise(gfd, p, len, GMEM_ADV_UNSET_ACCESSED_BY, id),
			  0);
		ASSERT_EQ(gmem_advise(gfd, p, len,
				      GMEM_ADV_UNSET_PREFERRED_LOCATION, 0), 0);
		ASSERT_EQ(close(gfd), 0);
	}
	ASSERT_EQ(npu_sum(fd, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, seed));
	ASSERT_GT(dev_stat("npu1", "devmem_used"), 0);
	ASSERT_EQ(npu_fill(fd, p, BLOCK, 0x4e, &w), 0);
	ASSERT_EQ(find_not_byte(p, BLOCK, 0x4e), -1);
	ASSERT_EQ(check_pattern_from(p + BLOCK, BLOCK / 4, len - BLOCK, seed),
		  -1);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(munmap(counter, self->ps), 0);
}

TEST_HARNESS_MAIN
