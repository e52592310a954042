// SPDX-License-Identifier: GPL-2.0
/*
 * Device use together with what a distribution kernel does to anonymous
 * memory: swap, KSM, THP collapse and split, NUMA migration and balancing,
 * madvise, userfaultfd, memcg and hugetlb.  After each, every device must
 * see what the CPU sees, word by word: the NPU copies the buffer through
 * its own mappings into another one, which the CPU compares with what it
 * reads itself.
 *
 * npu0 keeps the default placement (its touch migrates pages to its
 * memory), npu1 is set to GMEM_NPU_PLACE_HOST (it maps host pages in
 * place).  Needs gmem.ko and gmem_npu.ko num_devices=2 dram_mib=16, zram
 * (swap), cgroup2 mounted at /sys/fs/cgroup, KSM, THP, two NUMA nodes and
 * hugetlb pages for the respective cases; a case whose feature is missing
 * is skipped with the reason.  Runs as root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <linux/userfaultfd.h>
#include <dirent.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22
#define MADV_POPULATE_WRITE	23
#endif
#ifndef MPOL_BIND
#define MPOL_BIND		2
#endif
#define MPOL_MF_MOVE_		(1 << 1)

#define CGROOT			"/sys/fs/cgroup"
#define THP			"/sys/kernel/mm/transparent_hugepage"
#define KSM			"/sys/kernel/mm/ksm"
#define FREE_DELAY_MS		2000

static long read_long(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 0) : -1;
}

/* The first word of @a that differs from @b, or -1. */
static ssize_t first_diff(const void *a, const void *b, size_t len)
{
	const __u64 *x = a, *y = b;

	for (size_t i = 0; i < len / 8; i++)
		if (x[i] != y[i])
			return i;
	return -1;
}

/*
 * What NPU @fd sees of [@p, @p + @len) against what the CPU sees: the NPU
 * copies it into a fresh buffer through its own mappings.  Returns the
 * first differing word, -1 if none, or -2 - errno if the job failed.
 */
static ssize_t device_view_diff(int fd, const void *p, size_t len)
{
	struct gmem_npu_wait w;
	char *out = peer_mmap(len);
	ssize_t d;
	int ret;

	if (out == MAP_FAILED)
		return -2 - errno;
	ret = npu_copy(fd, out, p, len, &w);
	if (ret) {
		munmap(out, len);
		return -2 + (ret < 0 ? ret : -ret);
	}
	d = first_diff(out, p, len);
	munmap(out, len);
	return d;
}

#define ASSERT_SAME_VIEW(fd, p, len) do {				\
	ssize_t __d = device_view_diff(fd, p, len);			\
	ASSERT_EQ(__d, -1) TH_LOG("%s: device and CPU differ at word %zd" \
				  " (< -1: job error)", #fd, __d);	\
} while (0)

/* The pages of the VMA at @p counted as "@key:" in smaps, in kB. */
static long smaps_kb(void *p, const char *key)
{
	unsigned long a = (unsigned long)p, start, end;
	char line[512];
	long kb = -1;
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = a >= start && a < end;
			continue;
		}
		if (in && !strncmp(line, key, strlen(key)) &&
		    line[strlen(key)] == ':') {
			kb = strtol(line + strlen(key) + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

/* Swap on zram0 (once per boot); 0, or a reason to skip. */
static const char *zram_swap_on(void)
{
	FILE *f;
	char line[256];

	f = fopen("/proc/swaps", "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (strstr(line, "/dev/zram0")) {
				fclose(f);
				return NULL;
			}
		fclose(f);
	}
	if (access("/sys/block/zram0/disksize", W_OK))
		return "no zram0 (CONFIG_ZRAM)";
	if (write_file("/sys/block/zram0/disksize", "512M"))
		return "cannot size zram0";
	if (system("mkswap /dev/zram0 >/dev/null 2>&1"))
		return "mkswap /dev/zram0 failed";
	if (swapon("/dev/zram0", 0))
		return "swapon /dev/zram0 failed";
	return NULL;
}

/*
 * Moves the calling process into a new memory cgroup limited to @max_mib
 * MiB; its path in @path.  0, or a reason to skip.
 */
static const char *memcg_enter(char *path, size_t size, int max_mib)
{
	char file[256], val[32];

	if (access(CGROOT "/cgroup.subtree_control", W_OK))
		return "no cgroup2 at " CGROOT;
	if (write_file(CGROOT "/cgroup.subtree_control", "+memory"))
		return "cannot enable the memory controller";
	snprintf(path, size, CGROOT "/gmem_mmfeat_%d", getpid());
	if (mkdir(path, 0755) && errno != EEXIST)
		return "cannot create a cgroup";
	snprintf(file, sizeof(file), "%s/memory.max", path);
	snprintf(val, sizeof(val), "%dM", max_mib);
	if (write_file(file, val))
		return "cannot set memory.max";
	snprintf(file, sizeof(file), "%s/cgroup.procs", path);
	if (write_file(file, "0"))
		return "cannot join the cgroup";
	return NULL;
}

static long memcg_read(const char *cg, const char *name)
{
	char file[256];

	snprintf(file, sizeof(file), "%s/%s", cg, name);
	return read_long(file);
}

/* Value of "@key " in memory.events or memory.stat style file @name. */
static long memcg_key(const char *cg, const char *name, const char *key)
{
	char file[256], k[64];
	long v, found = -1;
	FILE *f;

	snprintf(file, sizeof(file), "%s/%s", cg, name);
	f = fopen(file, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", k, &v) == 2)
		if (!strcmp(k, key)) {
			found = v;
			break;
		}
	fclose(f);
	return found;
}

/* A child's exit after leaving its cgroup, which then goes. */
static void memcg_remove(const char *cg)
{
	for (int i = 0; i < 100 && rmdir(cg) && errno == EBUSY; i++)
		usleep(20000);
}

struct npus {
	int fd0;	/* npu0, migrating */
	int fd1;	/* npu1, in place */
	int gfd;
	size_t ps;
};

static void npus_open(struct __test_metadata *_metadata, struct npus *self)
{
	struct dirent *e;
	char path[300];
	DIR *dir;

	self->ps = sysconf(_SC_PAGE_SIZE);
	self->gfd = open("/dev/gmem", O_RDWR);
	ASSERT_GE(self->gfd, 0);
	self->fd0 = npu_open(0);
	self->fd1 = npu_open(1);
	ASSERT_GE(self->fd0, 0);
	ASSERT_GE(self->fd1, 0);
	ASSERT_EQ(npu_set_placement(self->fd1, GMEM_NPU_PLACE_HOST), 0);
	/* An earlier case's memory, and its (now empty) cgroup, go first. */
	dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS);
	dir = opendir(CGROOT);
	while (dir && (e = readdir(dir))) {
		if (strncmp(e->d_name, "gmem_mmfeat_", 12))
			continue;
		snprintf(path, sizeof(path), CGROOT "/%s", e->d_name);
		memcg_remove(path);
	}
	if (dir)
		closedir(dir);
}

static void npus_close(struct npus *self)
{
	close(self->fd0);
	close(self->fd1);
	close(self->gfd);
}

FIXTURE(mmfeat)
{
	struct npus n;
};

FIXTURE_SETUP(mmfeat)
{
	npus_open(_metadata, &self->n);
}

FIXTURE_TEARDOWN(mmfeat)
{
	npus_close(&self->n);
}

/*
 * A memcg limit pushes host pages an NPU maps in place to swap; the NPU
 * reads and writes them (faulting them back in), and the CPU sees exact
 * data.
 */
TEST_F_TIMEOUT(mmfeat, swap_in_place, 300)
{
	size_t len = 16 * MiB;
	struct gmem_npu_wait w;
	const char *why;
	char cg[128];
	char *p;

	why = zram_swap_on();
	if (why)
		SKIP(return, "%s", why);
	why = memcg_enter(cg, sizeof(cg), 8);
	if (why)
		SKIP(return, "%s", why);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 0x5a11);
	ASSERT_GT(memcg_read(cg, "memory.swap.current"), 0)
		TH_LOG("nothing went to swap");
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0) TH_LOG("status %d", w.status);
	ASSERT_EQ(w.result, pattern_sum(len, 0x5a11));
	/* One word per page written by the NPU, the rest the CPU's. */
	ASSERT_EQ(npu_touch(self->n.fd1, p, len, true, 0xfeedULL, &w), 0);
	for (size_t off = 0; off < len; off += self->n.ps) {
		ASSERT_EQ(*(__u64 *)(p + off), 0xfeedULL) TH_LOG("page %zu", off / self->n.ps);
		ASSERT_EQ(check_pattern_from(p + off + 8, (off + 8) / 4, self->n.ps - 8, 0x5a11), -1);
	}
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	ASSERT_EQ(munmap(p, len), 0);
}

/*
 * Device-resident pages are not swapped and not lost while host memory
 * around them is: a buffer in npu0's memory survives a memcg pushing the
 * rest of the process to swap.
 */
TEST_F_TIMEOUT(mmfeat, swap_spares_device_pages, 300)
{
	size_t dlen = 4 * MiB, hlen = 16 * MiB;
	long used;
	struct gmem_npu_wait w;
	const char *why;
	char cg[128];
	char *d, *h;

	why = zram_swap_on();
	if (why)
		SKIP(return, "%s", why);
	why = memcg_enter(cg, sizeof(cg), 10);
	if (why)
		SKIP(return, "%s", why);
	d = peer_mmap_block(dlen);
	h = peer_mmap_block(hlen);
	ASSERT_NE(d, MAP_FAILED);
	ASSERT_NE(h, MAP_FAILED);
	fill_pattern(d, dlen, 0xd0);
	ASSERT_EQ(npu_prefetch(self->n.fd0, d, dlen, 0), 0);
	used = dev_stat("npu0", "devmem_used");
	ASSERT_EQ(used, (long)(dlen / self->n.ps));
	fill_pattern(h, hlen, 0x40);
	ASSERT_GT(memcg_read(cg, "memory.swap.current"), 0);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), used);
	ASSERT_EQ(npu_sum(self->n.fd0, d, dlen, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(dlen, 0xd0));
	ASSERT_EQ(check_pattern(h, hlen, 0x40), -1);
	ASSERT_EQ(check_pattern(d, dlen, 0xd0), -1);
	ASSERT_SAME_VIEW(self->n.fd1, h, hlen);
	ASSERT_EQ(munmap(d, dlen), 0);
	ASSERT_EQ(munmap(h, hlen), 0);
}

static long ksm_merging_pages(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/ksm_merging_pages", getpid());
	return read_long(path);
}

/*
 * KSM merges identical pages an NPU maps in place; the device keeps
 * reading the right data, and a device write breaks the merge of exactly
 * the page it writes.  npu0 then takes the merged pages to its memory.
 */
TEST_F_TIMEOUT(mmfeat, ksm_merge_then_device_write, 300)
{
	size_t npages = 64, len = npages * self->n.ps;
	struct gmem_npu_wait w;
	long merged = 0;
	char *p;

	if (access(KSM "/run", W_OK))
		SKIP(return, "no KSM");
	p = peer_mmap_block(2 * MiB);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 0x5a, len);
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x5a, len));
	ASSERT_EQ(madvise(p, len, MADV_MERGEABLE), 0);
	ASSERT_EQ(write_file(KSM "/pages_to_scan", "10000"), 0);
	ASSERT_EQ(write_file(KSM "/sleep_millisecs", "10"), 0);
	ASSERT_EQ(write_file(KSM "/run", "1"), 0);
	for (int i = 0; i < 2000 && merged < (long)npages; i++) {
		usleep(10000);
		merged = ksm_merging_pages();
	}
	ASSERT_EQ(merged, (long)npages) TH_LOG("KSM merged %ld of %zu pages", merged, npages);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	/* The device writes page 5: it alone is unmerged and changed. */
	ASSERT_EQ(npu_touch(self->n.fd1, p + 5 * self->n.ps, self->n.ps, true, 0x77ULL, &w), 0);
	ASSERT_EQ(*(__u64 *)(p + 5 * self->n.ps), 0x77ULL);
	for (size_t i = 0; i < len; i++) {
		if (i < 5 * self->n.ps || i >= 5 * self->n.ps + 8) {
			ASSERT_EQ(p[i], 0x5a) TH_LOG("byte %zu", i);
		}
	}
	/*
	 * The count is ksmd's: the write fault copied the page at once, but
	 * ksmd only counts it out when its scan comes back to the address.
	 */
	for (int i = 0; i < 500 && ksm_merging_pages() > (long)npages - 1; i++)
		usleep(10000);
	ASSERT_LE(ksm_merging_pages(), (long)npages - 1);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	/*
	 * npu0 writes page 9, which breaks its merge first; page 10 stays
	 * merged and is read in place (merged pages never migrate).
	 */
	ASSERT_EQ(npu_touch(self->n.fd0, p + 9 * self->n.ps, self->n.ps, true, 0x99ULL, &w), 0);
	ASSERT_EQ(*(__u64 *)(p + 9 * self->n.ps), 0x99ULL);
	ASSERT_EQ(p[10 * self->n.ps], 0x5a);
	ASSERT_SAME_VIEW(self->n.fd0, p, len);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	ASSERT_EQ(madvise(p, len, MADV_UNMERGEABLE), 0);
	write_file(KSM "/run", "2");
	ASSERT_EQ(munmap(p, 2 * MiB), 0);
}

/*
 * Whether page @addr of @pid is present in host memory; a page being
 * migrated (compaction) is given a moment to be back.
 */
static bool page_in_host_memory(pid_t pid, const void *addr, size_t ps)
{
	for (int i = 0; i < 20; i++) {
		if (pagemap_entry(pid, addr, ps) & PM_PRESENT)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

/*
 * KSM merges pages of this process with those of a plain (non-gmem)
 * process next door; npu0's fault on the merged pages must leave them in
 * host memory: migrating one would unmap it from every process that maps
 * it and hand KSM's stable tree a device page.  The device reads them in
 * place and the neighbour keeps its pages and data.  The neighbour's
 * buffer is locked, so that swap cannot take its pages either.
 */
TEST_F_TIMEOUT(mmfeat, ksm_page_shared_with_another_process_stays_home, 300)
{
	size_t npages = 32, len = npages * self->n.ps;
	int go[2], ready[2], status;
	struct gmem_npu_wait w;
	char path[64], c = 0;
	long merged = 0;
	char *p, *q;
	pid_t pid;

	if (access(KSM "/run", W_OK))
		SKIP(return, "no KSM");
	ASSERT_EQ(pipe(go), 0);
	ASSERT_EQ(pipe(ready), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		/* The test's end, even a failed one, ends the wait below. */
		close(go[1]);
		q = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q == MAP_FAILED)
			_exit(2);
		memset(q, 0x3c, len);
		if (mlock(q, len) || madvise(q, len, MADV_MERGEABLE))
			_exit(3);
		if (write(ready[1], &q, sizeof(q)) != sizeof(q) ||
		    read(go[0], &c, 1) != 1)
			_exit(4);
		for (size_t i = 0; i < len; i++)
			if (q[i] != 0x3c)
				_exit(5);
		_exit(0);
	}
	close(go[0]);
	ASSERT_EQ(read(ready[0], &q, sizeof(q)), sizeof(q));
	p = peer_mmap_block(2 * MiB);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 0x3c, len);
	ASSERT_EQ(madvise(p, len, MADV_MERGEABLE), 0);
	ASSERT_EQ(write_file(KSM "/pages_to_scan", "10000"), 0);
	ASSERT_EQ(write_file(KSM "/sleep_millisecs", "10"), 0);
	ASSERT_EQ(write_file(KSM "/run", "1"), 0);
	snprintf(path, sizeof(path), "/proc/%d/ksm_merging_pages", pid);
	for (int i = 0; i < 2000; i++) {
		merged = ksm_merging_pages();
		if (merged == (long)npages && read_long(path) == (long)npages)
			break;
		usleep(10000);
	}
	ASSERT_EQ(merged, (long)npages);
	ASSERT_EQ(read_long(path), (long)npages);
	/* One KSM page backs both buffers. */
	for (size_t i = 0; i < npages; i++) {
		uint64_t mine = pagemap_entry(getpid(), p + i * self->n.ps, self->n.ps);
		uint64_t theirs = pagemap_entry(pid, q + i * self->n.ps, self->n.ps);

		ASSERT_TRUE(mine & PM_PRESENT);
		ASSERT_EQ(mine & PM_PFN_MASK, theirs & PM_PFN_MASK)
			TH_LOG("page %zu: not one merged page", i);
	}

	ASSERT_EQ(npu_sum(self->n.fd0, p, len, &w), 0);
	ASSERT_EQ(w.result, byte_sum(0x3c, len));
	for (size_t i = 0; i < npages; i++) {
		ASSERT_TRUE(page_in_host_memory(pid, q + i * self->n.ps, self->n.ps))
			TH_LOG("the other process's page %zu left host memory", i);
	}
	ASSERT_SAME_VIEW(self->n.fd0, p, len);
	/*
	 * Devices keep faulting on the merged pages while ksmd keeps
	 * scanning both processes (a migration of a merged page racing ksmd
	 * once left a migration entry to an unlocked page behind).
	 */
	ASSERT_EQ(write_file(KSM "/sleep_millisecs", "1"), 0);
	for (int round = 0; round < 10; round++) {
		ASSERT_EQ(npu_sum(self->n.fd0, p, len, &w), 0);
		ASSERT_EQ(w.result, byte_sum(0x3c, len));
		ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
		ASSERT_EQ(w.result, byte_sum(0x3c, len));
		ASSERT_EQ(npu_touch(self->n.fd0, p + len, self->n.ps, true, round, &w), 0);
	}
	ASSERT_EQ(write_file(KSM "/sleep_millisecs", "10"), 0);

	ASSERT_EQ(write(go[1], &c, 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("the other process saw its data change (status %#x)", status);
	ASSERT_EQ(madvise(p, len, MADV_UNMERGEABLE), 0);
	write_file(KSM "/run", "2");
	ASSERT_EQ(munmap(p, 2 * MiB), 0);
}

static const char *thp_set(const char *mode)
{
	char path[] = THP "/enabled";

	if (access(path, W_OK))
		return "no THP";
	return write_file(path, mode) ? "cannot set THP mode" : NULL;
}

/*
 * MADV_COLLAPSE, retried as its manual page allows: EAGAIN is a transient
 * failure (a page locked or still in a per-CPU LRU batch) and ENOMEM means no
 * free huge page, which compaction may make.  Any other error is final.
 */
static int collapse(void *p, size_t len)
{
	int err = 0;

	for (int i = 0; i < 10; i++) {
		if (i) {
			write_file("/proc/sys/vm/compact_memory", "1");
			usleep(100 * 1000);
		}
		if (!madvise(p, len, MADV_COLLAPSE))
			return 0;
		err = errno;
		if (err != EAGAIN && err != ENOMEM)
			break;
	}
	errno = err;
	return -1;
}

/*
 * A range the NPU maps in place is collapsed into huge pages (MADV_COLLAPSE,
 * khugepaged's code run synchronously) and later split, in THP mode @mode;
 * the NPU sees the data and its writes throughout, and one device fault
 * covers each huge page.
 */
static void thp_collapse_split(struct __test_metadata *_metadata,
			       FIXTURE_DATA(mmfeat) *self, const char *mode)
{
	size_t len = 4 * MiB;
	struct gmem_npu_wait w;
	char cmd[128];
	const char *why;
	char *p;

	why = thp_set("never");
	if (why)
		SKIP(return, "%s", why);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 0x7e);
	ASSERT_EQ(smaps_kb(p, "AnonHugePages"), 0);
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x7e));

	ASSERT_EQ(thp_set(mode), NULL);
	if (!strcmp(mode, "madvise"))
		ASSERT_EQ(madvise(p, len, MADV_HUGEPAGE), 0);
	if (collapse(p, len)) {
		if (errno == EINVAL)
			SKIP(goto out, "no MADV_COLLAPSE");
		ASSERT_EQ(errno, 0) TH_LOG("MADV_COLLAPSE: %s", strerror(errno));
	}
	ASSERT_EQ(smaps_kb(p, "AnonHugePages"), (long)(len >> 10));
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x7e));
	ASSERT_EQ(w.faults, len / BLOCK) TH_LOG("%llu faults for %zu huge pages",
					       (unsigned long long)w.faults, len / BLOCK);
	ASSERT_EQ(npu_touch(self->n.fd1, p, len, true, 0xabcdULL, &w), 0);
	for (size_t off = 0; off < len; off += self->n.ps)
		ASSERT_EQ(*(__u64 *)(p + off), 0xabcdULL);
	ASSERT_EQ(smaps_kb(p, "AnonHugePages"), (long)(len >> 10));
	ASSERT_SAME_VIEW(self->n.fd1, p, len);

	/* Split them while mapped by the device. */
	snprintf(cmd, sizeof(cmd), "%d,0x%lx,0x%lx", getpid(),
		 (unsigned long)p, (unsigned long)p + len);
	ASSERT_EQ(write_file("/sys/kernel/debug/split_huge_pages", cmd), 0);
	ASSERT_EQ(smaps_kb(p, "AnonHugePages"), 0);
	ASSERT_EQ(npu_touch(self->n.fd1, p + self->n.ps, len - self->n.ps, true, 0x1234ULL, &w), 0);
	ASSERT_EQ(*(__u64 *)p, 0xabcdULL);
	for (size_t off = self->n.ps; off < len; off += self->n.ps)
		ASSERT_EQ(*(__u64 *)(p + off), 0x1234ULL);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	/* And npu0 takes the (split) pages to its memory and back. */
	ASSERT_EQ(collapse(p, len), 0) TH_LOG("MADV_COLLAPSE: %s", strerror(errno));
	ASSERT_SAME_VIEW(self->n.fd0, p, len);
	ASSERT_EQ(*(__u64 *)(p + self->n.ps), 0x1234ULL);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
out:
	munmap(p, len);
	thp_set("always");
}

TEST_F_TIMEOUT(mmfeat, thp_always, 300)
{
	thp_collapse_split(_metadata, self, "always");
}

TEST_F_TIMEOUT(mmfeat, thp_madvise, 300)
{
	thp_collapse_split(_metadata, self, "madvise");
}

/* A write fault of the NPU on THP-backed memory in place keeps it huge. */
TEST_F_TIMEOUT(mmfeat, thp_fault_ahead, 120)
{
	size_t len = 4 * MiB;
	struct gmem_npu_wait w;
	char *p;

	ASSERT_EQ(thp_set("always"), NULL);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	/* The CPU's first touch of each block makes it a huge page. */
	p[0] = 1;
	p[BLOCK] = 2;
	if (smaps_kb(p, "AnonHugePages") != (long)(len >> 10))
		SKIP(goto out, "no huge page on first touch (fragmented?)");
	ASSERT_EQ(npu_touch(self->n.fd1, p, len, true, 5, &w), 0);
	ASSERT_EQ(w.faults, len / BLOCK);
	ASSERT_EQ(smaps_kb(p, "AnonHugePages"), (long)(len >> 10));
	for (size_t off = 0; off < len; off += self->n.ps)
		ASSERT_EQ(*(__u64 *)(p + off), 5);
out:
	munmap(p, len);
}

static long sys_move_pages(pid_t pid, unsigned long n, void **pages,
			   const int *nodes, int *status, int flags)
{
	return syscall(__NR_move_pages, pid, n, pages, nodes, status, flags);
}

static int node_of(void *p)
{
	int status = -1;

	if (sys_move_pages(0, 1, &p, NULL, &status, 0))
		return -errno;
	return status;
}

static bool two_nodes(void)
{
	return !access("/sys/devices/system/node/node1", F_OK);
}

/*
 * move_pages() and mbind(MPOL_MF_MOVE) migrate host pages the NPU maps in
 * place to the other node; its next access sees the new pages and the data.
 */
TEST_F_TIMEOUT(mmfeat, numa_move_pages_and_mbind, 300)
{
	size_t len = 2 * MiB, n = len / self->n.ps;
	void **pages = calloc(n, sizeof(void *));
	int *nodes = calloc(n, sizeof(int)), *status = calloc(n, sizeof(int));
	unsigned long mask = 1;
	struct gmem_npu_wait w;
	int from, to;
	char *p;

	if (!two_nodes())
		SKIP(return, "one NUMA node");
	ASSERT_EQ(thp_set("never"), NULL);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 0x31);
	from = node_of(p);
	ASSERT_GE(from, 0);
	to = !from;
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
	for (size_t i = 0; i < n; i++) {
		pages[i] = p + i * self->n.ps;
		nodes[i] = to;
	}
	ASSERT_EQ(sys_move_pages(0, n, pages, nodes, status, 0), 0);
	for (size_t i = 0; i < n; i++) {
		ASSERT_EQ(status[i], to) TH_LOG("page %zu", i);
	}
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x31));
	ASSERT_EQ(npu_touch(self->n.fd1, p, len, true, 0x4242ULL, &w), 0);
	for (size_t off = 0; off < len; off += self->n.ps)
		ASSERT_EQ(*(__u64 *)(p + off), 0x4242ULL);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);

	/* And back with mbind(MPOL_MF_MOVE). */
	mask = 1UL << from;
	ASSERT_EQ(syscall(__NR_mbind, p, len, MPOL_BIND, &mask, 8 * sizeof(mask),
			  MPOL_MF_MOVE_), 0) TH_LOG("mbind: %s", strerror(errno));
	ASSERT_EQ(node_of(p + len - self->n.ps), from);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	ASSERT_EQ(npu_touch(self->n.fd1, p, len, true, 0x4343ULL, &w), 0);
	for (size_t off = 0; off < len; off += self->n.ps)
		ASSERT_EQ(*(__u64 *)(p + off), 0x4343ULL);
	/* A page npu0 holds is not on any node; it stays exact. */
	ASSERT_EQ(npu_prefetch(self->n.fd0, p, len, 0), 0);
	sys_move_pages(0, n, pages, nodes, status, 0);
	/* move_pages() finds no page on a node there (-ENOENT). */
	ASSERT_EQ(status[0], -ENOENT) TH_LOG("device page status %d", status[0]);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	ASSERT_EQ(*(__u64 *)(p + self->n.ps), 0x4343ULL);
	munmap(p, len);
	thp_set("always");
	free(pages);
	free(nodes);
	free(status);
}

static long vmstat(const char *key)
{
	char k[64];
	long v, found = -1;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", k, &v) == 2)
		if (!strcmp(k, key)) {
			found = v;
			break;
		}
	fclose(f);
	return found;
}

/*
 * NUMA balancing migrates pages the NPU maps in place towards the CPU that
 * uses them; the NPU keeps reading and writing the right data throughout.
 */
TEST_F_TIMEOUT(mmfeat, numa_balancing, 300)
{
	size_t len = 8 * MiB;
	unsigned long node0 = 1;
	struct gmem_npu_wait w;
	cpu_set_t cpus;
	long mig0;
	int cpu_node;
	char *p;

	if (!two_nodes())
		SKIP(return, "one NUMA node");
	if (access("/proc/sys/kernel/numa_balancing", W_OK))
		SKIP(return, "no NUMA balancing");
	ASSERT_EQ(thp_set("never"), NULL);
	/* Run on CPU 1 (node 1); the memory starts on node 0. */
	CPU_ZERO(&cpus);
	CPU_SET(1, &cpus);
	ASSERT_EQ(sched_setaffinity(0, sizeof(cpus), &cpus), 0);
	cpu_node = 1;
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	ASSERT_EQ(syscall(__NR_mbind, p, len, MPOL_BIND, &node0, 64, 0), 0);
	fill_pattern(p, len, 0x99);
	ASSERT_EQ(syscall(__NR_mbind, p, len, 0, NULL, 0, 0), 0);
	ASSERT_EQ(node_of(p), 0);
	mig0 = vmstat("numa_pages_migrated");
	write_file("/sys/kernel/debug/sched/numa_balancing/scan_delay_ms", "0");
	write_file("/sys/kernel/debug/sched/numa_balancing/scan_period_min_ms", "100");
	write_file("/sys/kernel/debug/sched/numa_balancing/scan_size_mb", "256");
	ASSERT_EQ(write_file("/proc/sys/kernel/numa_balancing", "1"), 0);
	/* The NPU maps it in place. */
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x99));
	/*
	 * Busy, not sleeping: the scanner runs after each second of the
	 * task's CPU time, and a page moves on its second hinting fault from
	 * the same node.  The NPU stays away meanwhile: its faults on pages
	 * the scanner protected are hinting faults from the node of the CPU
	 * that runs its jobs, which would keep resetting that count.
	 */
	for (time_t t0 = time(NULL), tn = t0; time(NULL) - t0 < 30;) {
		volatile __u32 *u = (__u32 *)p;
		__u64 s = 0;

		for (size_t i = 0; i < len / 4; i += 1024)
			s += u[i];
		(void)s;
		if (time(NULL) - tn < 2)
			continue;
		tn = time(NULL);
		if (node_of(p + len / 2) == cpu_node && vmstat("numa_pages_migrated") > mig0)
			break;
	}
	write_file("/proc/sys/kernel/numa_balancing", "0");
	if (vmstat("numa_pages_migrated") == mig0)
		SKIP(goto out, "NUMA balancing migrated nothing in the time given");
	ASSERT_EQ(check_pattern(p, len, 0x99), -1);
	ASSERT_SAME_VIEW(self->n.fd1, p, len);
	ASSERT_EQ(npu_touch(self->n.fd1, p, len, true, 0x88ULL, &w), 0);
	for (size_t off = 0; off < len; off += self->n.ps)
		ASSERT_EQ(*(__u64 *)(p + off), 0x88ULL);
	TH_LOG("%ld pages migrated by NUMA balancing",
	       vmstat("numa_pages_migrated") - mig0);
out:
	munmap(p, len);
	thp_set("always");
}

/* Passes of NUMA balancing's scanner over this process's address space. */
static long numa_scan_seq(void)
{
	char line[128];
	long v = -1;
	FILE *f = fopen("/proc/self/sched", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " mm->numa_scan_seq : %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/*
 * NUMA balancing's hinting scan changes the protection of a task's whole
 * address space once a scan period, and moves no page by itself: what an
 * NPU maps, in its memory or in place, stays mapped, so its next job takes
 * no fault.  (Dropping them every period would make a device job on a
 * distribution kernel fault its working set again about once a second.)
 * The CPU stays away from both buffers: its own hinting faults could
 * migrate a page, which would rightly unmap it.
 */
TEST_F_TIMEOUT(mmfeat, numa_hinting_keeps_device_mappings, 300)
{
	size_t len = 4 * MiB;
	char *res = peer_mmap_block(len), *inplace = peer_mmap_block(len);
	static const char *const knob[] = {
		"/proc/sys/kernel/numa_balancing",
		"/sys/kernel/debug/sched/numa_balancing/scan_delay_ms",
		"/sys/kernel/debug/sched/numa_balancing/scan_period_min_ms",
	};
	static const char *const fast[] = { "1", "0", "100" };
	char was[3][32];
	struct gmem_npu_wait w;
	long seq0;
	time_t t0;
	int i;

	if (!two_nodes())
		SKIP(return, "one NUMA node");
	if (access("/proc/sys/kernel/numa_balancing", W_OK))
		SKIP(return, "no NUMA balancing");
	ASSERT_NE(res, MAP_FAILED);
	ASSERT_NE(inplace, MAP_FAILED);
	fill_pattern(res, len, 0x51);
	fill_pattern(inplace, len, 0x52);
	ASSERT_EQ(npu_prefetch(self->n.fd0, res, len, 0), 0);
	ASSERT_EQ(npu_sum(self->n.fd1, inplace, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x52));

	seq0 = numa_scan_seq();
	if (seq0 < 0)
		SKIP(goto out, "no mm->numa_scan_seq in /proc/self/sched");
	for (i = 0; i < 3; i++) {
		FILE *f = fopen(knob[i], "r");

		ASSERT_NE(f, NULL) TH_LOG("no knob %d", i);
		ASSERT_NE(fgets(was[i], sizeof(was[i]), f), NULL);
		fclose(f);
		was[i][strcspn(was[i], "\n")] = 0;
	}
	for (i = 2; i >= 0; i--)
		ASSERT_EQ(write_file(knob[i], fast[i]), 0) TH_LOG("knob %d", i);
	/*
	 * Busy elsewhere until the scanner has finished two passes: the
	 * first may have started past the buffers, the second covered them.
	 */
	for (t0 = time(NULL); time(NULL) - t0 < 60;) {
		for (volatile long spin = 0; spin < 1000000; spin++)
			;
		if (numa_scan_seq() >= seq0 + 2)
			break;
	}
	for (i = 0; i < 3; i++)
		write_file(knob[i], was[i]);
	if (numa_scan_seq() < seq0 + 2)
		SKIP(goto out, "fewer than two hinting scans within 60 s");

	ASSERT_EQ(npu_sum(self->n.fd0, res, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x51));
	EXPECT_EQ(w.faults, 0) TH_LOG("device-resident pages faulted after a scan");
	ASSERT_EQ(npu_sum(self->n.fd1, inplace, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x52));
	EXPECT_EQ(w.faults, 0) TH_LOG("in-place pages faulted after a scan");
	ASSERT_EQ(check_pattern(res, len, 0x51), -1);
	ASSERT_EQ(check_pattern(inplace, len, 0x52), -1);
	/* And what the devices write through the mappings kept reaches the CPU. */
	ASSERT_EQ(npu_touch(self->n.fd0, res, len, true, 0x5151ULL, &w), 0);
	ASSERT_EQ(npu_touch(self->n.fd1, inplace, len, true, 0x5252ULL, &w), 0);
	for (size_t off = 0; off < len; off += self->n.ps) {
		ASSERT_EQ(*(__u64 *)(res + off), 0x5151ULL);
		ASSERT_EQ(*(__u64 *)(inplace + off), 0x5252ULL);
	}
out:
	munmap(res, len);
	munmap(inplace, len);
}

/* madvise() on host-resident, device-mapped and device-resident ranges. */
FIXTURE(madv)
{
	struct npus n;
};

FIXTURE_SETUP(madv)
{
	npus_open(_metadata, &self->n);
}

FIXTURE_TEARDOWN(madv)
{
	npus_close(&self->n);
}

FIXTURE_VARIANT(madv)
{
	int advice;
	bool zeroes;	/* the advised range reads zeroes afterwards */
};

FIXTURE_VARIANT_ADD(madv, dontneed) { .advice = MADV_DONTNEED, .zeroes = true };
FIXTURE_VARIANT_ADD(madv, free) { .advice = MADV_FREE };
FIXTURE_VARIANT_ADD(madv, pageout) { .advice = MADV_PAGEOUT };
FIXTURE_VARIANT_ADD(madv, cold) { .advice = MADV_COLD };
FIXTURE_VARIANT_ADD(madv, willneed) { .advice = MADV_WILLNEED };
FIXTURE_VARIANT_ADD(madv, populate_read) { .advice = MADV_POPULATE_READ };
FIXTURE_VARIANT_ADD(madv, populate_write) { .advice = MADV_POPULATE_WRITE };

enum where { HOST, MAPPED, RESIDENT };

TEST_F_TIMEOUT(madv, ranges, 300)
{
	static const char *const names[] = { "host", "device-mapped", "device-resident" };
	size_t len = 2 * MiB, a = MiB / 2, alen = MiB;
	struct gmem_npu_wait w;

	/* MADV_FREE and PAGEOUT can only drop or write out with swap. */
	zram_swap_on();
	for (int where = HOST; where <= RESIDENT; where++) {
		char *p = peer_mmap_block(len);
		__u32 seed = 0x600 + where;

		ASSERT_NE(p, MAP_FAILED);
		fill_pattern(p, len, seed);
		if (where == MAPPED)
			ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
		if (where == RESIDENT)
			ASSERT_EQ(npu_prefetch(self->n.fd0, p, len, 0), 0);
		ASSERT_EQ(madvise(p + a, alen, variant->advice), 0)
			TH_LOG("%s: %s", names[where], strerror(errno));
		/* Outside the advised range nothing changed. */
		ASSERT_EQ(check_pattern(p, a, seed), -1) TH_LOG("%s", names[where]);
		ASSERT_EQ(check_pattern_from(p + a + alen, (a + alen) / 4,
					     len - a - alen, seed), -1);
		if (variant->zeroes) {
			ASSERT_EQ(find_not_byte(p + a, alen, 0), -1) TH_LOG("%s", names[where]);
		} else if (variant->advice != MADV_FREE) {
			ASSERT_EQ(check_pattern_from(p + a, a / 4, alen, seed), -1)
				TH_LOG("%s", names[where]);
		}
		ASSERT_SAME_VIEW(self->n.fd0, p, len);
		ASSERT_SAME_VIEW(self->n.fd1, p, len);
		/* And the devices' writes after it reach the CPU. */
		ASSERT_EQ(npu_touch(self->n.fd1, p + a, alen, true, 0x3131ULL, &w), 0);
		ASSERT_EQ(*(__u64 *)(p + a + alen - self->n.ps), 0x3131ULL);
		ASSERT_SAME_VIEW(self->n.fd0, p, len);
		ASSERT_EQ(munmap(p, len), 0);
	}
}

struct uffd_handler {
	int uffd;
	size_t ps;
	__u8 byte;		/* what the handler supplies */
	int served;
	bool wp;
};

static void *uffd_serve(void *arg)
{
	struct uffd_handler *h = arg;
	char *page = aligned_alloc(h->ps, h->ps);

	memset(page, h->byte, h->ps);
	for (;;) {
		struct pollfd pfd = { .fd = h->uffd, .events = POLLIN };
		struct uffd_msg msg;

		if (poll(&pfd, 1, 20000) <= 0)
			break;
		if (read(h->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		if (h->wp) {
			struct uffdio_writeprotect wp = {
				.range = { .start = msg.arg.pagefault.address & ~(h->ps - 1),
					   .len = h->ps },
			};

			ioctl(h->uffd, UFFDIO_WRITEPROTECT, &wp);
		} else {
			struct uffdio_copy c = {
				.dst = msg.arg.pagefault.address & ~(h->ps - 1),
				.src = (unsigned long)page, .len = h->ps,
			};

			ioctl(h->uffd, UFFDIO_COPY, &c);
		}
		if (++h->served == 1000)
			break;
	}
	free(page);
	return NULL;
}

static int uffd_open(__u64 features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (uffd < 0)
		return -errno;
	if (ioctl(uffd, UFFDIO_API, &api)) {
		close(uffd);
		return -errno;
	}
	return uffd;
}

/*
 * userfaultfd missing mode on MAP_PEER_SHARED memory: an NPU job touching
 * pages nobody has filled waits for the handler and completes with the
 * handler's data, in place and migrating.
 */
TEST_F_TIMEOUT(mmfeat, uffd_missing, 120)
{
	size_t len = 16 * self->n.ps;
	struct uffd_handler h = { .ps = self->n.ps, .byte = 0x6b };
	struct gmem_npu_wait w;
	pthread_t thr;
	char *p;

	h.uffd = uffd_open(0);
	if (h.uffd == -ENOSYS || h.uffd == -EPERM)
		SKIP(return, "no userfaultfd");
	ASSERT_GE(h.uffd, 0);
	for (int pass = 0; pass < 2; pass++) {
		int fd = pass ? self->n.fd0 : self->n.fd1;
		struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };

		p = peer_mmap(len);
		ASSERT_NE(p, MAP_FAILED);
		reg.range.start = (unsigned long)p;
		reg.range.len = len;
		ASSERT_EQ(ioctl(h.uffd, UFFDIO_REGISTER, &reg), 0);
		h.served = 0;
		ASSERT_EQ(pthread_create(&thr, NULL, uffd_serve, &h), 0);
		ASSERT_EQ(npu_sum(fd, p, len, &w), 0)
			TH_LOG("pass %d: status %d", pass, w.status);
		ASSERT_EQ(w.result, byte_sum(0x6b, len));
		ASSERT_EQ(h.served, (int)(len / self->n.ps));
		ASSERT_EQ(find_not_byte(p, len, 0x6b), -1);
		ASSERT_EQ(npu_touch(fd, p, len, true, 0x11ULL, &w), 0);
		ASSERT_EQ(*(__u64 *)(p + len - self->n.ps), 0x11ULL);
		ASSERT_SAME_VIEW(self->n.fd1, p, len);
		munmap(p, len);
		pthread_join(thr, NULL);
	}
	close(h.uffd);
}

/*
 * userfaultfd write-protect mode: an NPU write to a protected page waits
 * until the handler lifts the protection, then lands.
 */
TEST_F_TIMEOUT(mmfeat, uffd_wp, 120)
{
	size_t len = 16 * self->n.ps;
	struct uffd_handler h = { .ps = self->n.ps, .wp = true };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	struct gmem_npu_wait w;
	pthread_t thr;
	char *p;

	h.uffd = uffd_open(0);
	if (h.uffd == -ENOSYS || h.uffd == -EPERM)
		SKIP(return, "no userfaultfd");
	ASSERT_GE(h.uffd, 0);
	p = peer_mmap(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 0x17);
	reg.range.start = (unsigned long)p;
	reg.range.len = len;
	if (ioctl(h.uffd, UFFDIO_REGISTER, &reg))
		SKIP(goto out, "no write-protect mode: %s", strerror(errno));
	wp.range = reg.range;
	ASSERT_EQ(ioctl(h.uffd, UFFDIO_WRITEPROTECT, &wp), 0);
	/* Reads go through without the handler. */
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), 0);
	ASSERT_EQ(w.result, pattern_sum(len, 0x17));
	ASSERT_EQ(pthread_create(&thr, NULL, uffd_serve, &h), 0);
	ASSERT_EQ(npu_touch(self->n.fd1, p, len, true, 0x2222ULL, &w), 0)
		TH_LOG("status %d", w.status);
	ASSERT_EQ(h.served, (int)(len / self->n.ps));
	for (size_t off = 0; off < len; off += self->n.ps) {
		ASSERT_EQ(*(__u64 *)(p + off), 0x2222ULL);
		ASSERT_EQ(check_pattern_from(p + off + 8, (off + 8) / 4, self->n.ps - 8, 0x17), -1);
	}
	ASSERT_SAME_VIEW(self->n.fd0, p, len);
	pthread_join(thr, NULL);
out:
	munmap(p, len);
	close(h.uffd);
}

/*
 * The memcg charge follows the data: host pages gmem allocates to bring
 * device-resident data back are charged to the process's memcg (the
 * device pages held the charge meanwhile, as HMM's device-private pages
 * do), by PREFETCH_TO_HOST and by CPU fault alike; unmapping uncharges
 * everything.
 */
TEST_F_TIMEOUT(mmfeat, memcg_charges_follow_the_data, 120)
{
	size_t len = 8 * MiB;
	long host, dev, back, faulted, gone;
	const char *why;
	char cg[128];
	char *p;

	why = memcg_enter(cg, sizeof(cg), 512);
	if (why)
		SKIP(return, "%s", why);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	fill_pattern(p, len, 0xc9);
	host = memcg_key(cg, "memory.stat", "anon");
	ASSERT_GE(host, (long)len);
	ASSERT_EQ(npu_prefetch(self->n.fd0, p, len, 0), 0);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), (long)(len / self->n.ps));
	dev = memcg_key(cg, "memory.stat", "anon");
	ASSERT_EQ(npu_prefetch(self->n.fd0, p, len, GMEM_NPU_PREFETCH_TO_HOST), 0);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), 0);
	back = memcg_key(cg, "memory.stat", "anon");
	ASSERT_EQ(check_pattern(p, len, 0xc9), -1);
	ASSERT_EQ(npu_prefetch(self->n.fd0, p, len, 0), 0);
	ASSERT_EQ(check_pattern(p, len, 0xc9), -1);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), 0);
	faulted = memcg_key(cg, "memory.stat", "anon");
	TH_LOG("anon: host %ld, on device %ld, prefetched back %ld, faulted back %ld",
	       host, dev, back, faulted);
	ASSERT_GE(dev, host - (long)MiB);
	ASSERT_GE(back, host - (long)MiB);
	ASSERT_GE(faulted, host - (long)MiB);
	ASSERT_LE(back, host + (long)MiB);
	ASSERT_LE(faulted, host + (long)MiB);
	ASSERT_EQ(munmap(p, len), 0);
	gone = memcg_key(cg, "memory.stat", "anon");
	ASSERT_LE(gone, host - (long)len + (long)MiB) TH_LOG("anon %ld after munmap", gone);
}

/*
 * An OOM in a memcg kills the process holding device-resident data cleanly
 * and its device memory is freed.
 */
TEST_F_TIMEOUT(mmfeat, memcg_oom_frees_device_memory, 300)
{
	char cg[128];
	int st, ready[2];
	char c;
	pid_t pid;

	if (access(CGROOT "/cgroup.subtree_control", W_OK))
		SKIP(return, "no cgroup2");
	ASSERT_EQ(pipe(ready), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		char mine[128], file[160];
		size_t dlen = 8 * MiB, hlen = 256 * MiB;
		int fd = npu_open(0);
		char *d, *h;

		if (fd < 0 || memcg_enter(mine, sizeof(mine), 32))
			_exit(2);
		snprintf(file, sizeof(file), "%s/memory.swap.max", mine);
		if (!access(file, F_OK) && write_file(file, "0"))
			_exit(3);
		d = peer_mmap_block(dlen);
		fill_pattern(d, dlen, 1);
		if (npu_prefetch(fd, d, dlen, 0))
			_exit(4);
		if (write(ready[1], "r", 1) != 1)
			_exit(5);
		/* No swap limit applies: the whole cgroup goes OOM. */
		h = peer_mmap(hlen);
		for (size_t i = 0; i < hlen; i += 4096)
			h[i] = 1;
		_exit(0);
	}
	close(ready[1]);
	snprintf(cg, sizeof(cg), CGROOT "/gmem_mmfeat_%d", pid);
	ASSERT_EQ(read(ready[0], &c, 1), 1) TH_LOG("the child did not start");
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), (long)(8 * MiB / self->n.ps));
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
		TH_LOG("child status 0x%x", st);
	ASSERT_GE(memcg_key(cg, "memory.events", "oom_kill"), 1);
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, FREE_DELAY_MS), 0);
	memcg_remove(cg);
}

/* hugetlb mappings are not gmem's: refused as peer-shared, left alone. */
TEST_F_TIMEOUT(mmfeat, hugetlb_untouched, 120)
{
	size_t len = 2 * MiB;
	long regions = gmem_stat("regions");
	struct gmem_npu_wait w;
	char *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 PEER_FLAGS | MAP_HUGETLB, -1, 0);
	ASSERT_EQ(p, MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED)
		SKIP(return, "no hugetlb pages (vm.nr_hugepages)");
	memset(p, 0x2c, len);
	ASSERT_EQ(npu_sum(self->n.fd1, p, len, &w), -EACCES);
	ASSERT_EQ(gmem_stat("regions"), regions);
	ASSERT_EQ(find_not_byte(p, len, 0x2c), -1);
	ASSERT_EQ(munmap(p, len), 0);
}

TEST_HARNESS_MAIN
