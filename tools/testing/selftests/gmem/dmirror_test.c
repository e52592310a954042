// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_dmirror (test_hmm's interface on gmem) as a skeptical user and an
 * attacker use it, beyond the upstream hmm-tests that make check runs on
 * it: bad input changes nothing, a file used from another process shows
 * it nothing, eviction on request and unloading keep every byte.
 *
 * Run as root with gmem.ko loaded and test_hmm.ko not: each test loads
 * gmem_dmirror.ko from $GMEM_MODDIR and unloads it.
 */
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "../../../../lib/test_hmm_uapi.h"

#define NPAGES	64
#define LEN	(NPAGES * 4096UL)

static int dm_cmd(int fd, unsigned long req, void *addr, void *ptr,
		  unsigned long npages, struct hmm_dmirror_cmd *out)
{
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)addr,
				       .ptr = (uintptr_t)ptr, .npages = npages };

	if (ioctl(fd, req, &cmd))
		return -errno;
	if (out)
		*out = cmd;
	return 0;
}

static char *filled(unsigned char seed)
{
	char *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p != MAP_FAILED)
		for (unsigned long i = 0; i < LEN; i++)
			p[i] = (char)(seed + i * 7);
	return p;
}

static bool holds(const char *p, unsigned char seed)
{
	for (unsigned long i = 0; i < LEN; i++)
		if (p[i] != (char)(seed + i * 7))
			return false;
	return true;
}

FIXTURE(dm) {
	int fd;
};

/* The mTHP size a test turned on, and what it was before. */
#define MTHP "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled"
static char mthp_was[16];

static void mthp_put_back(void)
{
	if (mthp_was[0])
		write_file(MTHP, mthp_was);
	mthp_was[0] = 0;
}

/* Turns 64 KiB folios for anonymous memory on ("always"). */
static bool mthp_on(void)
{
	char buf[128], *b, *e;
	FILE *f = fopen(MTHP, "r");

	if (!f)
		return false;
	b = fgets(buf, sizeof(buf), f) ? strchr(buf, '[') : NULL;
	e = b ? strchr(b, ']') : NULL;
	fclose(f);
	if (!e)
		return false;
	*e = 0;
	snprintf(mthp_was, sizeof(mthp_was), "%s", b + 1);
	return write_file(MTHP, "always") == 0;
}

/* Whether the page at @p is part of a large folio (pagemap, kpageflags). */
static bool in_large_folio(const void *p)
{
	uint64_t ent = pagemap_entry(getpid(), p, 4096), flags = 0;
	int kf = open("/proc/kpageflags", O_RDONLY);
	bool large = false;

	if (kf >= 0 && (ent & PM_PRESENT) &&
	    pread(kf, &flags, 8, (ent & PM_PFN_MASK) * 8) == 8)
		large = flags & (3ULL << 15); /* KPF_COMPOUND_HEAD, _TAIL */
	if (kf >= 0)
		close(kf);
	return large;
}

FIXTURE_SETUP(dm)
{
	self->fd = -1;
	if (module_loaded("test_hmm"))
		SKIP(return, "test_hmm.ko holds /dev/hmm_dmirror*");
	if (!module_loaded("gmem"))
		SKIP(return, "gmem.ko is not loaded");
	if (!module_loaded("gmem_dmirror"))
		ASSERT_EQ(load_module("gmem_dmirror"), 0);
	self->fd = open("/dev/hmm_dmirror0", O_RDWR | O_CLOEXEC);
	ASSERT_GE(self->fd, 0);
}

FIXTURE_TEARDOWN(dm)
{
	mthp_put_back();
	if (self->fd >= 0)
		close(self->fd);
	for (int i = 0; i < 100 && module_loaded("gmem_dmirror"); i++)
		if (unload_module("gmem_dmirror"))
			usleep(20000);
	EXPECT_FALSE(module_loaded("gmem_dmirror"));
}

/* Malformed commands get EINVAL and write nothing back. */
TEST_F(dm, bad_input_changes_nothing)
{
	char *p = filled(1), *out = malloc(LEN);
	unsigned long written = 0;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_NE(out, NULL);
	memset(out, 0x5a, LEN);
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_READ, p + 1, out, 1, NULL), -EINVAL);
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_READ, p, out, 0, NULL), -EINVAL);
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_READ, p, out, ~0UL >> 12, NULL), -EINVAL);
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, (void *)-4096L, out, 2, NULL),
		  -EINVAL);
	EXPECT_EQ(dm_cmd(self->fd, _IOWR('H', 0x42, struct hmm_dmirror_cmd), p, out,
			 1, NULL), -EINVAL);
	/* The last block of the address space: a hole, reported so. */
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, (void *)-(2L << 20), out, 1,
			 NULL), 0);
	EXPECT_EQ((unsigned char)out[0], HMM_DMIRROR_PROT_ERROR);
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_SYS, (void *)-(2L << 20), out,
			 1, NULL), -EINVAL);
	memset(out, 0x5a, LEN);
	/* A huge but valid range: no memory for it, a clear error. */
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_READ, p, out, 1UL << 40, NULL), -ENOMEM);
	/* A hole: the device faults and fails, nothing is copied out. */
	ASSERT_EQ(munmap(p + LEN / 2, LEN / 2), 0);
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_READ, p, out, NPAGES, NULL), -EFAULT);
	EXPECT_EQ(dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, out, NPAGES, NULL),
		  -EINVAL);
	for (unsigned long i = 0; i < LEN; i++)
		written += out[i] != 0x5a;
	EXPECT_EQ(written, 0);
	munmap(p, LEN / 2);
	free(out);
}

/* A child using its parent's file gets EBADF: no read, no write. */
TEST_F(dm, other_process_sees_nothing)
{
	char *p = filled(2);
	pid_t pid;
	int st;

	ASSERT_NE(p, MAP_FAILED);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char *out = malloc(LEN);
		int bad = 0;

		memset(out, 0, LEN);
		bad |= dm_cmd(self->fd, HMM_DMIRROR_READ, p, out, NPAGES, NULL) != -EBADF;
		bad |= dm_cmd(self->fd, HMM_DMIRROR_WRITE, p, out, NPAGES, NULL) != -EBADF;
		bad |= dm_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, p, out, NPAGES, NULL) !=
		       -EBADF;
		bad |= dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, out, NPAGES, NULL) !=
		       -EBADF;
		_exit(bad);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	EXPECT_TRUE(holds(p, 2));
	munmap(p, LEN);
}

/* RELEASE empties the device's memory; the data is all back, in RAM. */
TEST_F(dm, release_evicts_everything)
{
	char *p = filled(3), *out = malloc(LEN);
	unsigned char state[NPAGES];
	struct hmm_dmirror_cmd c = { 0 };
	unsigned long wrong = 0;

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, out, NPAGES, &c), 0);
	EXPECT_EQ(c.cpages, NPAGES);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, p, state, NPAGES, NULL), 0);
	for (int i = 0; i < NPAGES; i++)
		ASSERT_EQ(state[i], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
				    HMM_DMIRROR_PROT_WRITE);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_RELEASE, p, out, 1, NULL), 0);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, p, state, NPAGES, NULL), 0);
	for (int i = 0; i < NPAGES; i++)
		ASSERT_EQ(state[i] & HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, 0);
	EXPECT_TRUE(holds(p, 3));
	/* Back on the device, it writes its memory without a fault. */
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, out, NPAGES, &c), 0);
	memset(out, 0x11, LEN);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_WRITE, p, out, NPAGES, &c), 0);
	EXPECT_EQ(c.faults, 0);
	for (unsigned long i = 0; i < LEN; i++)
		wrong += p[i] != 0x11;
	EXPECT_EQ(wrong, 0);
	munmap(p, LEN);
	free(out);
}

/* Unloading with pages in device memory brings every one home. */
TEST_F(dm, unload_keeps_data)
{
	char *p = filled(4), *out = malloc(LEN);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, out, NPAGES, NULL), 0);
	close(self->fd);
	self->fd = -1;
	for (int i = 0; i < 100 && module_loaded("gmem_dmirror"); i++)
		if (unload_module("gmem_dmirror"))
			usleep(20000);
	ASSERT_FALSE(module_loaded("gmem_dmirror"));
	EXPECT_TRUE(holds(p, 4));
	munmap(p, LEN);
	free(out);
}

/* One page of a range migrates when one is asked: no fault-ahead. */
TEST_F(dm, migrate_moves_exactly_the_range)
{
	char *p = filled(5), *out = malloc(LEN);
	unsigned char state[NPAGES];

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, p + 4096 * 3, out, 1,
			 NULL), 0);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, p, state, NPAGES, NULL), 0);
	for (int i = 0; i < NPAGES; i++)
		EXPECT_EQ(!!(state[i] & HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL), i == 3);
	EXPECT_TRUE(holds(p, 5));
	munmap(p, LEN);
	free(out);
}

/*
 * Memory in large folios mapped by PTEs (mTHP) moves too: 6.12's
 * migrate_vma_setup() collects none of their pages, so gmem splits them.
 */
TEST_F(dm, migrate_moves_large_folios)
{
	static const char splits[] =
		"/sys/kernel/mm/transparent_hugepage/hugepages-64kB/stats/split";
	unsigned char state[NPAGES];
	struct hmm_dmirror_cmd c = { 0 };
	char *p, *out;
	int large = 0;
	long split;

	if (!mthp_on())
		SKIP(return, "no 64 KiB anonymous folios (" MTHP ")");
	p = filled(6);
	ASSERT_NE(p, MAP_FAILED);
	for (int i = 0; i < NPAGES; i++)
		large += in_large_folio(p + i * 4096UL);
	if (!large)
		SKIP(munmap(p, LEN); return, "no large folio was allocated");
	out = malloc(LEN);
	ASSERT_NE(out, NULL);
	split = file_long(splits);
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, out, NPAGES, &c), 0);
	EXPECT_EQ(c.cpages, NPAGES);
	/* They were split (gmem's doing: nothing else touched them). */
	EXPECT_GE(file_long(splits) - split, large * 4096L / (64 << 10));
	ASSERT_EQ(dm_cmd(self->fd, HMM_DMIRROR_SNAPSHOT, p, state, NPAGES, NULL), 0);
	for (int i = 0; i < NPAGES; i++)
		EXPECT_EQ(state[i], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
				    HMM_DMIRROR_PROT_WRITE);
	EXPECT_TRUE(holds(p, 6));
	munmap(p, LEN);
	free(out);
}

TEST_HARNESS_MAIN
