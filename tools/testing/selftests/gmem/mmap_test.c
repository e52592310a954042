// SPDX-License-Identifier: GPL-2.0
/*
 * mmap(MAP_PEER_SHARED): what an application relies on.
 *
 * Needs gmem.ko loaded (the runner loads it).
 */
#include <signal.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"

static void fill_check(struct __test_metadata *_metadata, unsigned long *p,
		       size_t len)
{
	size_t i, n = len / sizeof(*p);

	for (i = 0; i < n; i++)
		p[i] = i ^ 0x9e3779b97f4a7c15UL;
	for (i = 0; i < n; i++)
		ASSERT_EQ(p[i], i ^ 0x9e3779b97f4a7c15UL);
}

TEST(map_read_write_unmap)
{
	size_t len = 4 * MiB;
	char flags[512];
	unsigned long *p = peer_mmap(len);

	ASSERT_NE(p, MAP_FAILED);
	/* Fresh anonymous memory reads as zeros. */
	for (size_t i = 0; i < len / sizeof(*p); i += 512)
		ASSERT_EQ(p[i], 0);
	fill_check(_metadata, p, len);
	ASSERT_TRUE(vma_flags(p, flags, sizeof(flags)));
	ASSERT_TRUE(has_vmflag(flags, "ps")) TH_LOG("VmFlags:%s", flags);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_FALSE(vma_flags(p, flags, sizeof(flags)));
}

TEST(plain_anon_not_marked)
{
	char flags[512];
	void *p = mmap(NULL, MiB, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_TRUE(vma_flags(p, flags, sizeof(flags)));
	ASSERT_FALSE(has_vmflag(flags, "ps")) TH_LOG("VmFlags:%s", flags);
	ASSERT_EQ(munmap(p, MiB), 0);
}

TEST(populate_and_fixed)
{
	size_t len = MiB;
	char flags[512];
	char *hole = mmap(NULL, 2 * len, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned long *p;

	ASSERT_NE(hole, MAP_FAILED);
	/* MAP_FIXED over an existing mapping replaces it. */
	p = mmap(hole + len, len, PROT_READ | PROT_WRITE,
		 PEER_FLAGS | MAP_FIXED | MAP_POPULATE, -1, 0);
	ASSERT_EQ((void *)p, hole + len);
	fill_check(_metadata, p, len);
	ASSERT_TRUE(vma_flags(p, flags, sizeof(flags)));
	ASSERT_TRUE(has_vmflag(flags, "ps"));
	ASSERT_TRUE(vma_flags(hole, flags, sizeof(flags)));
	ASSERT_FALSE(has_vmflag(flags, "ps"));
	ASSERT_EQ(munmap(hole, 2 * len), 0);
}

TEST(prot_none_then_mprotect)
{
	size_t len = MiB;
	unsigned long *p = mmap(NULL, len, PROT_NONE, PEER_FLAGS, -1, 0);

	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(mprotect(p, len, PROT_READ | PROT_WRITE), 0);
	fill_check(_metadata, p, len);
	ASSERT_EQ(munmap(p, len), 0);
}

/* Each invalid combination fails with its errno and maps nothing. */
struct bad_case {
	const char *what;
	int flags;
	bool use_file;
	int err;
};

TEST(invalid_flag_combinations)
{
	static const struct bad_case cases[] = {
		{ "MAP_SHARED", MAP_SHARED | MAP_ANONYMOUS | MAP_PEER_SHARED,
		  false, EINVAL },
		{ "MAP_SHARED_VALIDATE",
		  MAP_SHARED_VALIDATE | MAP_ANONYMOUS | MAP_PEER_SHARED,
		  false, EINVAL },
		{ "private file", MAP_PRIVATE | MAP_PEER_SHARED, true, EINVAL },
		{ "shared file", MAP_SHARED | MAP_PEER_SHARED, true, EINVAL },
		{ "MAP_GROWSDOWN", PEER_FLAGS | MAP_GROWSDOWN, false, EINVAL },
		{ "no MAP_ANONYMOUS, no fd", MAP_PRIVATE | MAP_PEER_SHARED,
		  false, EBADF },
	};
	long before = gmem_stat("peer_shared_mmaps");
	int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, MiB), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		void *p = mmap(NULL, MiB, PROT_READ | PROT_WRITE, c->flags,
			       c->use_file ? fd : -1, 0);

		EXPECT_EQ(p, MAP_FAILED) TH_LOG("%s was accepted", c->what);
		EXPECT_EQ(errno, c->err) TH_LOG("%s: errno %d", c->what, errno);
		if (p != MAP_FAILED)
			munmap(p, MiB);
	}
	close(fd);
	ASSERT_EQ(gmem_stat("peer_shared_mmaps"), before);
}

TEST(stats_count_mappings)
{
	long mmaps = gmem_stat("peer_shared_mmaps");
	long bytes = gmem_stat("peer_shared_bytes");
	void *p;

	ASSERT_GE(mmaps, 0);
	p = peer_mmap(3 * MiB);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(gmem_stat("peer_shared_mmaps"), mmaps + 1);
	ASSERT_EQ(gmem_stat("peer_shared_bytes"), bytes + 3 * MiB);
	ASSERT_EQ(munmap(p, 3 * MiB), 0);
}

/*
 * A process's address space and regions exist while it lives and are torn
 * down when it exits, whether it exits or is killed.
 */
static void child_maps_and_waits(int nregions, int ready_fd)
{
	for (int i = 0; i < nregions; i++) {
		unsigned long *p = peer_mmap(64 * 1024);

		if (p == MAP_FAILED)
			_exit(1);
		p[0] = i;
	}
	if (write(ready_fd, "r", 1) != 1)
		_exit(2);
	pause();
	_exit(0);
}

TEST(address_space_lifetime)
{
	long spaces = gmem_stat("address_spaces");
	long regions = gmem_stat("regions");
	int pipefd[2], status;
	char c;
	pid_t pid;

	ASSERT_GE(spaces, 0);
	ASSERT_EQ(pipe(pipefd), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		child_maps_and_waits(32, pipefd[1]);
	ASSERT_EQ(read(pipefd[0], &c, 1), 1);
	ASSERT_EQ(gmem_stat("address_spaces"), spaces + 1);
	/* Mappings no device touched cost gmem no region (nor notifier). */
	ASSERT_EQ(gmem_stat("regions"), regions);
	kill(pid, SIGKILL);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	/* The address space is freed after an SRCU grace period. */
	ASSERT_EQ(gmem_stat_wait("address_spaces", spaces, 2000), spaces);
	ASSERT_EQ(gmem_stat("regions"), regions);
	close(pipefd[0]);
	close(pipefd[1]);
}

TEST_HARNESS_MAIN
