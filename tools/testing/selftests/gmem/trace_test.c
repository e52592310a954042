// SPDX-License-Identifier: GPL-2.0
/*
 * gmem's trace events (gmem:*): with the events on, each kind of work
 * records its event with the right fields (device, range, direction,
 * cause, pages); with them off, nothing is recorded.  Needs gmem.ko and
 * gmem_npu.ko (num_devices=2 dram_mib=16) and tracefs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"
#include "npu_util.h"

#define MAX_EVENTS	65536

/* One recorded event, its "key=value" fields kept as text. */
struct ev {
	char name[32];
	char fields[224];
};

static const char *tracefs(void)
{
	static const char *const dirs[] = { "/sys/kernel/tracing",
					    "/sys/kernel/debug/tracing" };
	char path[128];

	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/trace", dirs[i]);
		if (!access(path, W_OK))
			return dirs[i];
	}
	mkdir("/sys/kernel/tracing", 0755);
	if (!mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL))
		return dirs[0];
	return NULL;
}

static int tfs_write(const char *dir, const char *file, const char *val)
{
	char path[256];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (int)strlen(val) ? 0 : -1;
}

/*
 * The number in tracefs file @file; of a buffer never used, "7 (expanded:
 * 1408)", the size it takes once used (1408), as writing 7 would shrink it.
 */
static long tfs_read(const char *dir, const char *file)
{
	char path[256], line[128], *x;
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(line, sizeof(line), f)) {
		x = strstr(line, "expanded:");
		v = strtol(x ? x + strlen("expanded:") : line, NULL, 10);
	}
	fclose(f);
	return v;
}

/* The gmem events in the trace buffer, in order, into @evs; how many. */
static int read_events(const char *dir, struct ev *evs, int max)
{
	char path[256], line[512];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/trace", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (n < max && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, ": gmem_"), *q;

		if (!p || line[0] == '#')
			continue;
		p += 2;
		q = strchr(p, ':');
		if (!q || q - p >= (long)sizeof(evs[n].name))
			continue;
		memcpy(evs[n].name, p, q - p);
		evs[n].name[q - p] = 0;
		snprintf(evs[n].fields, sizeof(evs[n].fields), " %s", q + 2);
		evs[n].fields[strcspn(evs[n].fields, "\n")] = 0;
		n++;
	}
	fclose(f);
	return n;
}

/* Field @key of @e as a number (-1 if absent). */
static long long field(const struct ev *e, const char *key)
{
	char k[40];
	const char *p;

	snprintf(k, sizeof(k), " %s=", key);
	p = strstr(e->fields, k);
	return p ? strtoll(p + strlen(k), NULL, 0) : -1;
}

static bool has_word(const struct ev *e, const char *word)
{
	char w[48];
	size_t n;

	snprintf(w, sizeof(w), " %s", word);
	n = strlen(w);
	for (const char *p = e->fields; (p = strstr(p, w)); p += n)
		if (p[n] == ' ' || p[n] == 0)
			return true;
	return false;
}

/*
 * Pages of events @name on device @dev within [@start, @start + @len) with
 * all of @words (e.g. "to_dev", "cause=fault"); how many events in *@count.
 */
static long sum_pages(const struct ev *evs, int n, const char *name, int dev,
		      const void *start, size_t len, const char *w1,
		      const char *w2, int *count)
{
	unsigned long s = (unsigned long)start, e = s + len;
	long pages = 0;

	*count = 0;
	for (int i = 0; i < n; i++) {
		const struct ev *v = &evs[i];
		unsigned long vs = field(v, "start"), ve = field(v, "end");

		if (strcmp(v->name, name) || (dev >= 0 && field(v, "dev") != dev))
			continue;
		if (vs < s || ve > e || vs >= ve)
			continue;
		if ((w1 && !has_word(v, w1)) || (w2 && !has_word(v, w2)))
			continue;
		pages += field(v, "pages");
		(*count)++;
	}
	return pages;
}

FIXTURE(trace)
{
	const char *dir;
	long buffer_kb, tracing_on;
	struct ev *evs;
	int fd[2];
	int dev[2];
	int gfd;
	size_t ps;
};

FIXTURE_SETUP(trace)
{
	struct gmem_npu_info info;
	char path[256];

	self->ps = sysconf(_SC_PAGE_SIZE);
	self->evs = calloc(MAX_EVENTS, sizeof(*self->evs));
	ASSERT_NE(self->evs, NULL);
	self->dir = tracefs();
	if (!self->dir)
		SKIP(return, "no tracefs");
	snprintf(path, sizeof(path), "%s/events/gmem/enable", self->dir);
	ASSERT_EQ(access(path, W_OK), 0) TH_LOG("no gmem events in %s", self->dir);
	self->gfd = open("/dev/gmem", O_RDWR);
	ASSERT_GE(self->gfd, 0);
	for (int i = 0; i < 2; i++) {
		self->fd[i] = npu_open(i);
		ASSERT_GE(self->fd[i], 0);
		ASSERT_EQ(npu_get_info(self->fd[i], &info), 0);
		self->dev[i] = info.dev_id;
	}
	/* An earlier test's device memory would show in the events. */
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, 2000), 0);
	ASSERT_EQ(dev_stat_wait("npu1", "devmem_used", 0, 2000), 0);
	self->buffer_kb = tfs_read(self->dir, "buffer_size_kb");
	self->tracing_on = tfs_read(self->dir, "tracing_on");
	ASSERT_EQ(tfs_write(self->dir, "buffer_size_kb", "8192"), 0);
	ASSERT_EQ(tfs_write(self->dir, "trace", ""), 0);
	ASSERT_EQ(tfs_write(self->dir, "tracing_on", "1"), 0);
	ASSERT_EQ(tfs_write(self->dir, "events/gmem/enable", "1"), 0);
}

FIXTURE_TEARDOWN(trace)
{
	if (self->dir) {
		char v[32];

		tfs_write(self->dir, "events/gmem/enable", "0");
		tfs_write(self->dir, "trace", "");
		if (self->buffer_kb > 0) {
			snprintf(v, sizeof(v), "%ld", self->buffer_kb);
			tfs_write(self->dir, "buffer_size_kb", v);
		}
		if (self->tracing_on >= 0)
			tfs_write(self->dir, "tracing_on", self->tracing_on ? "1" : "0");
		close(self->fd[0]);
		close(self->fd[1]);
		close(self->gfd);
	}
	free(self->evs);
}

/*
 * npu0 faults a 4 MiB buffer in (it migrates by policy), the CPU takes one
 * block back, a prefetch moves it again and a prefetch home ends; munmap
 * invalidates the range.  Each step's events, with their numbers.
 */
TEST_F_TIMEOUT(trace, fault_migrate_prefetch_unmap, 120)
{
	size_t len = 4 * MiB, pages = len / self->ps;
	struct gmem_npu_wait w;
	int n, cnt;
	char *p;

	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 1, len);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.status, 0);
	p[BLOCK] = 2;				/* the CPU takes block 1 home */
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_PREFETCH, self->dev[0]), 0);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_PREFETCH, GMEM_DEV_HOST), 0);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(tfs_write(self->dir, "events/gmem/enable", "0"), 0);

	n = read_events(self->dir, self->evs, MAX_EVENTS);
	ASSERT_GT(n, 0);
	/* Device faults: one per block, each mapping the whole block. */
	cnt = 0;
	for (int i = 0; i < n; i++) {
		struct ev *e = &self->evs[i];
		unsigned long a = field(e, "addr");

		if (strcmp(e->name, "gmem_fault") || field(e, "dev") != self->dev[0])
			continue;
		if (a < (unsigned long)p || a >= (unsigned long)p + len)
			continue;
		ASSERT_EQ(field(e, "ret"), 0);
		ASSERT_TRUE(has_word(e, "read"));
		ASSERT_EQ(field(e, "pages"), (long)(BLOCK / self->ps));
		cnt++;
	}
	ASSERT_EQ(cnt, (int)(len / BLOCK));
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_migrate", self->dev[0], p, len,
			    "to_dev", "cause=fault", &cnt), (long)pages);
	ASSERT_EQ(cnt, (int)(len / BLOCK));
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_migrate", self->dev[0], p + BLOCK,
			    BLOCK, "to_host", "cause=cpu_fault", &cnt),
		  (long)(BLOCK / self->ps));
	ASSERT_EQ(cnt, 1);
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_migrate", self->dev[0], p, len,
			    "to_dev", "cause=prefetch", &cnt), (long)(BLOCK / self->ps));
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_migrate", self->dev[0], p, len,
			    "to_host", "cause=prefetch", &cnt), (long)pages);
	/* munmap's invalidation covers the range. */
	cnt = 0;
	for (int i = 0; i < n; i++) {
		struct ev *e = &self->evs[i];

		if (!strcmp(e->name, "gmem_invalidate") && has_word(e, "event=unmap") &&
		    field(e, "start") == (long long)(unsigned long)p &&
		    field(e, "end") == (long long)(unsigned long)(p + len))
			cnt++;
	}
	ASSERT_GE(cnt, 1);
}

/*
 * A working set larger than npu0's memory evicts: each eviction names its
 * block, and its pages go home with cause eviction.
 */
TEST_F_TIMEOUT(trace, eviction, 300)
{
	size_t len = 24 * MiB;
	struct gmem_npu_wait w;
	long evicted = 0, home;
	int n, cnt;
	char *p;

	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 3, len);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.status, 0);
	ASSERT_EQ(tfs_write(self->dir, "events/gmem/enable", "0"), 0);

	n = read_events(self->dir, self->evs, MAX_EVENTS);
	cnt = 0;
	for (int i = 0; i < n; i++) {
		struct ev *e = &self->evs[i];
		unsigned long s = field(e, "start");

		if (strcmp(e->name, "gmem_evict") || field(e, "dev") != self->dev[0])
			continue;
		ASSERT_EQ(s % BLOCK, 0);
		ASSERT_EQ(field(e, "end"), (long long)(s + BLOCK));
		ASSERT_TRUE(s >= (unsigned long)p && s < (unsigned long)p + len);
		evicted += field(e, "pages");
		cnt++;
	}
	ASSERT_GT(cnt, 0);
	home = sum_pages(self->evs, n, "gmem_migrate", self->dev[0], p, len,
			 "to_host", "cause=eviction", &cnt);
	ASSERT_EQ(home, evicted);
	ASSERT_GT(home, 0);
	munmap(p, len);
}

/* A read-mostly range read by npu1: copies made, then collapsed by a write. */
TEST_F_TIMEOUT(trace, read_duplication, 120)
{
	size_t len = 2 * MiB, pages = len / self->ps;
	struct gmem_npu_wait w;
	int n, cnt;
	char *p;

	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 4, len);
	ASSERT_EQ(gmem_advise(self->gfd, p, len, GMEM_ADV_SET_READ_MOSTLY, 0), 0);
	ASSERT_EQ(npu_sum(self->fd[1], p, len, &w), 0);
	p[0] = 5;
	ASSERT_EQ(tfs_write(self->dir, "events/gmem/enable", "0"), 0);

	n = read_events(self->dir, self->evs, MAX_EVENTS);
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_dup", self->dev[1], p, len,
			    NULL, NULL, &cnt), (long)pages);
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_dup_collapse", self->dev[1], p, len,
			    NULL, NULL, &cnt), (long)pages);
	/* Nothing migrated: the host kept its pages. */
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_migrate", -1, p, len, NULL, NULL,
			    &cnt), 0);
	munmap(p, len);
}

/*
 * munmap of a buffer in npu0's memory frees its pages with their data:
 * one gmem_drop page for each, and no migration home.
 */
TEST_F_TIMEOUT(trace, munmap_drops_device_pages, 120)
{
	size_t len = 4 * MiB, pages = len / self->ps;
	struct gmem_npu_wait w;
	long dropped = 0;
	int n, cnt;
	char *p;

	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 6, len);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	ASSERT_EQ(w.status, 0);
	ASSERT_EQ(dev_stat("npu0", "devmem_used"), (long)pages);
	ASSERT_EQ(tfs_write(self->dir, "trace", ""), 0);
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(dev_stat_wait("npu0", "devmem_used", 0, 2000), 0);
	ASSERT_EQ(tfs_write(self->dir, "events/gmem/enable", "0"), 0);

	n = read_events(self->dir, self->evs, MAX_EVENTS);
	dropped = sum_pages(self->evs, n, "gmem_drop", self->dev[0], p, len, NULL,
			    NULL, &cnt);
	ASSERT_EQ(dropped, (long)pages);
	ASSERT_EQ(cnt, (int)pages);
	ASSERT_EQ(sum_pages(self->evs, n, "gmem_migrate", -1, p, len, NULL, NULL,
			    &cnt), 0);
}

/* With the events off, the same work records nothing. */
TEST_F_TIMEOUT(trace, off_records_nothing, 120)
{
	size_t len = 4 * MiB;
	struct gmem_npu_wait w;
	char *p;

	ASSERT_EQ(tfs_write(self->dir, "events/gmem/enable", "0"), 0);
	ASSERT_EQ(tfs_write(self->dir, "trace", ""), 0);
	p = peer_mmap_block(len);
	ASSERT_NE(p, MAP_FAILED);
	memset(p, 1, len);
	ASSERT_EQ(npu_sum(self->fd[0], p, len, &w), 0);
	p[0] = 0;
	ASSERT_EQ(munmap(p, len), 0);
	ASSERT_EQ(read_events(self->dir, self->evs, MAX_EVENTS), 0);
}

TEST_HARNESS_MAIN
