// SPDX-License-Identifier: GPL-2.0
/*
 * Loading and unloading gmem.ko and gmem_npu.ko, and what pins them.
 *
 * Run as root with both modules loaded; every test leaves them loaded.
 * Module files come from $GMEM_MODDIR (default /lib/modules/gmem).
 */
#include <signal.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

static void reload_all(struct __test_metadata *_metadata)
{
	if (!module_loaded("gmem"))
		ASSERT_EQ(load_module("gmem"), 0);
	if (!module_loaded("gmem_npu"))
		ASSERT_EQ(load_module("gmem_npu"), 0);
}

static bool file_has_line(const char *path, const char *needle)
{
	char line[256];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

FIXTURE(mods) {};

FIXTURE_SETUP(mods)
{
	if (getuid())
		SKIP(return, "needs root");
	reload_all(_metadata);
}

FIXTURE_TEARDOWN(mods)
{
	reload_all(_metadata);
}

TEST_F(mods, npu_registers_its_devices)
{
	ASSERT_EQ(gmem_stat("devices"), 2);
	ASSERT_TRUE(file_has_line(GMEM_DEBUGFS "/devices", "npu0"));
	ASSERT_TRUE(file_has_line(GMEM_DEBUGFS "/devices", "npu1"));
	ASSERT_EQ(access("/dev/gmem_npu0", R_OK | W_OK), 0);
	ASSERT_EQ(access("/dev/gmem_npu1", R_OK | W_OK), 0);
}

TEST_F(mods, num_devices_parameter)
{
	ASSERT_EQ(unload_module("gmem_npu"), 0);
	ASSERT_EQ(load_module_params("gmem_npu", "num_devices=3"), 0);
	ASSERT_EQ(gmem_stat("devices"), 3);
	ASSERT_EQ(access("/dev/gmem_npu2", F_OK), 0);
	ASSERT_EQ(unload_module("gmem_npu"), 0);
	ASSERT_NE(access("/dev/gmem_npu2", F_OK), 0);
	ASSERT_EQ(load_module_params("gmem_npu", "num_devices=9"), -EINVAL);
	ASSERT_EQ(load_module_params("gmem_npu", "num_devices=0"), -EINVAL);
	ASSERT_EQ(gmem_stat("devices"), 0);
}

/*
 * engines and fault_batch out of range fail the load; one engine serving
 * one fault at a time still runs jobs of two files right.
 */
TEST_F(mods, engines_and_fault_batch_parameters)
{
	static const char *const bad[] = {
		"engines=0", "engines=17", "fault_batch=0", "fault_batch=257",
	};
	const size_t len = 4 << 20;
	struct gmem_npu_wait w;
	char *p;
	int a, b;

	ASSERT_EQ(unload_module("gmem_npu"), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(load_module_params("gmem_npu", bad[i]), -EINVAL)
			TH_LOG("%s", bad[i]);
		ASSERT_EQ(gmem_stat("devices"), 0);
	}
	ASSERT_EQ(load_module_params("gmem_npu", "engines=1 fault_batch=1"), 0);
	a = npu_open(0);
	b = npu_open(0);
	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	p = peer_mmap(len);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(npu_touch(a, p, len / 2, true, 0xa1, &w), 0);
	ASSERT_EQ(npu_touch(b, p + len / 2, len / 2, true, 0xb2, &w), 0);
	for (size_t off = 0; off < len; off += getpagesize()) {
		ASSERT_EQ(*(unsigned long long *)(p + off),
			  off < len / 2 ? 0xa1ULL : 0xb2ULL) TH_LOG("%zu", off);
	}
	munmap(p, len);
	close(a);
	close(b);
	ASSERT_EQ(unload_module_wait("gmem_npu", 2000), 0);
}

TEST_F(mods, npu_pins_itself_while_open)
{
	int fd = open("/dev/gmem_npu0", O_RDWR);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(unload_module("gmem_npu"), -EAGAIN);
	close(fd);
	ASSERT_EQ(unload_module_wait("gmem_npu", 2000), 0);
}

TEST_F(mods, unload_in_reverse_order)
{
	ASSERT_EQ(unload_module("gmem_npu"), 0);
	ASSERT_EQ(gmem_stat("devices"), 0);
	ASSERT_EQ(unload_module_wait("gmem", 2000), 0);
	ASSERT_FALSE(module_loaded("gmem"));
	ASSERT_NE(access(GMEM_DEBUGFS, F_OK), 0);
	ASSERT_EQ(load_module("gmem"), 0);
	ASSERT_EQ(gmem_stat("devices"), 0);
	ASSERT_EQ(load_module("gmem_npu"), 0);
	ASSERT_EQ(gmem_stat("devices"), 2);
}

TEST_F(mods, gmem_refused_while_device_exists)
{
	int ret = unload_module("gmem");

	ASSERT_TRUE(ret == -EAGAIN || ret == -EWOULDBLOCK) TH_LOG("ret %d", ret);
	ASSERT_TRUE(module_loaded("gmem"));
	ASSERT_EQ(gmem_stat("devices"), 2);
}

TEST_F(mods, gmem_refused_while_region_exists)
{
	int pipefd[2], status;
	char c;
	pid_t pid;

	ASSERT_EQ(unload_module("gmem_npu"), 0);
	ASSERT_EQ(pipe(pipefd), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		unsigned long *p = peer_mmap(MiB);

		if (p == MAP_FAILED)
			_exit(1);
		p[0] = 1;
		if (write(pipefd[1], "r", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	ASSERT_EQ(read(pipefd[0], &c, 1), 1);
	ASSERT_EQ(unload_module("gmem"), -EAGAIN);
	ASSERT_TRUE(module_loaded("gmem"));
	kill(pid, SIGKILL);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	/* The address space goes after an SRCU grace period; then gmem may. */
	ASSERT_EQ(unload_module_wait("gmem", 2000), 0);
	close(pipefd[0]);
	close(pipefd[1]);
}

TEST_F(mods, mmap_without_gmem_is_enodev)
{
	void *p;

	ASSERT_EQ(unload_module("gmem_npu"), 0);
	ASSERT_EQ(unload_module_wait("gmem", 2000), 0);
	p = peer_mmap(MiB);
	ASSERT_EQ(p, MAP_FAILED);
	ASSERT_EQ(errno, ENODEV);
	ASSERT_EQ(load_module("gmem"), 0);
	p = peer_mmap(MiB);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(munmap(p, MiB), 0);
}

TEST_F(mods, npu_needs_gmem)
{
	int ret;

	ASSERT_EQ(unload_module("gmem_npu"), 0);
	ASSERT_EQ(unload_module_wait("gmem", 2000), 0);
	/* Its symbols come from gmem.ko: loading it alone must fail. */
	ret = load_module("gmem_npu");
	ASSERT_NE(ret, 0);
	ASSERT_FALSE(module_loaded("gmem_npu"));
}

TEST_F(mods, double_load_is_eexist)
{
	ASSERT_EQ(load_module("gmem"), -EEXIST);
	ASSERT_EQ(load_module("gmem_npu"), -EEXIST);
}

/*
 * Unloading the NPU driver while a process still has data in the NPU's
 * memory (its file closed) moves that data back to host memory first: the
 * process loses nothing and the device memory is all free again.
 */
TEST_F(mods, unload_npu_evicts_device_memory)
{
	size_t len = 4 * MiB, n = len / sizeof(__u32), i;
	int go[2], done[2], status;
	char c;
	pid_t pid;

	ASSERT_EQ(pipe(go), 0);
	ASSERT_EQ(pipe(done), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		__u32 *p = peer_mmap(len);
		int fd = open("/dev/gmem_npu0", O_RDWR);

		if (p == MAP_FAILED || fd < 0)
			_exit(1);
		for (i = 0; i < n; i++)
			p[i] = pattern(i, 7);
		if (npu_prefetch(fd, p, len, 0))
			_exit(2);
		close(fd);
		if (write(done[1], "p", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		/* The driver is gone: every word must be back, intact. */
		for (i = 0; i < n; i++)
			if (p[i] != pattern(i, 7))
				_exit(4);
		_exit(0);
	}
	ASSERT_EQ(read(done[0], &c, 1), 1);
	ASSERT_GE(gmem_stat("devmem_used"), (long)(len / 4096));
	ASSERT_EQ(unload_module_wait("gmem_npu", 2000), 0);
	ASSERT_EQ(gmem_stat("devmem_used"), 0);
	ASSERT_EQ(gmem_stat("devmem_pages"), 0);
	ASSERT_EQ(write(go[1], "g", 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0) TH_LOG("child status %d", WEXITSTATUS(status));
}

TEST_HARNESS_MAIN
