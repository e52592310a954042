/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the gmem selftests. */
#ifndef GMEM_UTIL_H
#define GMEM_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <unistd.h>
#include <linux/gmem.h>

#define GMEM_DEBUGFS "/sys/kernel/debug/gmem"
#define MiB (1UL << 20)

#define PEER_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_PEER_SHARED)

static inline void *peer_mmap(size_t len)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, PEER_FLAGS, -1, 0);
}

/* What one NPU fault or CPU fault migrates at most: an aligned block. */
#define BLOCK			(2 * MiB)

/* A mapping of @len bytes (a multiple of BLOCK) at a BLOCK-aligned address. */
static inline void *mmap_block(size_t len, int prot, int flags)
{
	char *p = mmap(NULL, len + BLOCK, prot, flags, -1, 0);
	unsigned long a;

	if (p == MAP_FAILED)
		return p;
	a = ((unsigned long)p + BLOCK - 1) & ~(unsigned long)(BLOCK - 1);
	if (a > (unsigned long)p)
		munmap(p, a - (unsigned long)p);
	munmap((char *)a + len, (unsigned long)p + BLOCK - a);
	return (void *)a;
}

/*
 * MAP_PEER_SHARED memory on a block boundary, so that every migration block
 * lies inside it and the page counts of a migration are exact.
 */
static inline void *peer_mmap_block(size_t len)
{
	return mmap_block(len, PROT_READ | PROT_WRITE, PEER_FLAGS);
}

/* GMEM_IOC_ADVISE on /dev/gmem (@gfd); 0 or -errno. */
static inline int gmem_advise(int gfd, const void *addr, size_t len,
			      __u32 advice, int dev)
{
	struct gmem_advise a = { .addr = (unsigned long)addr, .len = len,
				 .advice = advice, .dev = dev };

	while (ioctl(gfd, GMEM_IOC_ADVISE, &a))
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* GMEM_IOC_GET_ATTRS into *@q; 0 or -errno. */
static inline int gmem_get_attrs(int gfd, const void *addr, size_t len,
				 struct gmem_range_attrs *q)
{
	memset(q, 0, sizeof(*q));
	q->addr = (unsigned long)addr;
	q->len = len;
	return ioctl(gfd, GMEM_IOC_GET_ATTRS, q) ? -errno : 0;
}

/* A number read from sysfs or debugfs file @path, or -1. */
/* Writes @s to the file at @path (a sysfs setting): 0 or -errno. */
static inline int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -errno;
}

#define PM_PRESENT		(1ULL << 63)
#define PM_PFN_MASK		((1ULL << 55) - 1)

/* The pagemap entry of page @addr of process @pid (0 if unreadable). */
static inline uint64_t pagemap_entry(pid_t pid, const void *addr, size_t ps)
{
	char path[64];
	uint64_t e;
	int fd, n;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	n = pread(fd, &e, sizeof(e), (uintptr_t)addr / ps * sizeof(e));
	close(fd);
	return n == sizeof(e) ? e : 0;
}

static inline long file_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* The thrashing parameters of gmem.ko, to put back after a case. */
struct thrash_params {
	long lapse_ms;
	long pin_ms;
};

static inline struct thrash_params thrash_params_get(void)
{
	return (struct thrash_params){
		.lapse_ms = file_long("/sys/module/gmem/parameters/thrash_lapse_ms"),
		.pin_ms = file_long("/sys/module/gmem/parameters/thrash_pin_ms"),
	};
}

static inline long set_gmem_param(const char *name, long value);

/*
 * Puts back what thrash_params_get() read, if a case that changed them
 * stopped before it could (an assertion failed).
 */
static inline void thrash_params_put(struct thrash_params p)
{
	if (p.lapse_ms >= 0)
		set_gmem_param("thrash_lapse_ms", p.lapse_ms);
	if (p.pin_ms >= 0)
		set_gmem_param("thrash_pin_ms", p.pin_ms);
}

/* Sets a gmem.ko parameter; returns its old value, or -1. */
static inline long set_gmem_param(const char *name, long value)
{
	char path[128];
	long old = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/gmem/parameters/%s", name);
	f = fopen(path, "r+");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &old) != 1)
		old = -1;
	rewind(f);
	fprintf(f, "%ld\n", value);
	if (fclose(f))
		return -1;
	return old;
}

/* Value of counter @name in debugfs gmem/stats, or -1 if unreadable. */
static inline long gmem_stat(const char *name)
{
	char key[64];
	long val, found = -1;
	FILE *f = fopen(GMEM_DEBUGFS "/stats", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", key, &val) == 2) {
		if (!strcmp(key, name)) {
			found = val;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Waits up to @ms for counter @name to equal @want; returns the last value. */
static inline long gmem_stat_wait(const char *name, long want, int ms)
{
	long v = gmem_stat(name);

	for (; v != want && ms > 0; ms -= 10) {
		usleep(10000);
		v = gmem_stat(name);
	}
	return v;
}

/*
 * Value of @key (as in "devmem_used") on the line of device @dev (as in
 * "npu0") of debugfs gmem/devices, or -1 if there is no such line or key.
 * A line reads
 *   <id> <name> caps=0x<hex> devmem_pages=<n> devmem_used=<n> to_dev=<n> ...
 */
static inline long dev_stat(const char *dev, const char *key)
{
	char line[512], name[64], pat[64];
	unsigned int id;
	long found = -1;
	FILE *f = fopen(GMEM_DEBUGFS "/devices", "r");
	char *p;

	if (!f)
		return -1;
	snprintf(pat, sizeof(pat), " %s=", key);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%u %63s", &id, name) != 2 ||
		    strcmp(name, dev))
			continue;
		p = strstr(line, pat);
		if (p)
			found = strtol(p + strlen(pat), NULL, 0);
		break;
	}
	fclose(f);
	return found;
}

/* Waits up to @ms for dev_stat(@dev, @key) to equal @want; the last value. */
static inline long dev_stat_wait(const char *dev, const char *key, long want,
				 int ms)
{
	long v = dev_stat(dev, key);

	for (; v != want && ms > 0; ms -= 10) {
		usleep(10000);
		v = dev_stat(dev, key);
	}
	return v;
}

/*
 * The VmFlags line of the VMA containing @addr in /proc/self/smaps, copied
 * to @buf; returns false if there is no such VMA.
 */
static inline bool vma_flags(void *addr, char *buf, size_t size)
{
	unsigned long a = (unsigned long)addr, start, end;
	char line[512];
	bool in = false, found = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = a >= start && a < end;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(buf, size, "%s", line + 8);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Does the VmFlags line @flags carry the two-letter mnemonic @mn? */
static inline bool has_vmflag(const char *flags, const char *mn)
{
	char pat[8];

	snprintf(pat, sizeof(pat), " %s", mn);
	for (const char *p = flags; (p = strstr(p, pat)); p++)
		if (p[3] == ' ' || p[3] == '\n' || p[3] == '\0')
			return true;
	return false;
}

static inline const char *gmem_moddir(void)
{
	const char *d = getenv("GMEM_MODDIR");

	return d ? d : "/lib/modules/gmem";
}

static inline bool module_loaded(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/module/%s", name);
	return access(path, F_OK) == 0;
}

/* Loads @name.ko from gmem_moddir() with @params; 0 or -errno. */
static inline int load_module_params(const char *name, const char *params)
{
	char path[256];
	int fd, ret;

	snprintf(path, sizeof(path), "%s/%s.ko", gmem_moddir(), name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0);
	ret = ret ? -errno : 0;
	close(fd);
	return ret;
}

/*
 * Loads @name.ko as the test runner does: gmem_npu with two devices of
 * 16 MiB of memory each, so that tests of two NPUs and of device memory
 * filling up run.
 */
static inline int load_module(const char *name)
{
	return load_module_params(name, strcmp(name, "gmem_npu") ?
				  "" : "num_devices=2 dram_mib=16");
}

/* Unloads @name without waiting; 0 or -errno (EAGAIN/EWOULDBLOCK if in use). */
static inline int unload_module(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK) ? -errno : 0;
}

/* Unloads @name, retrying while it is busy for up to @ms. */
static inline int unload_module_wait(const char *name, int ms)
{
	int ret;

	while ((ret = unload_module(name)) == -EAGAIN && ms > 0) {
		usleep(10000);
		ms -= 10;
	}
	return ret;
}

#endif /* GMEM_UTIL_H */
