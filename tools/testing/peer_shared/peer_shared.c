// SPDX-License-Identifier: GPL-2.0
/*
 * peer_shared.so: run an unmodified program with every private anonymous
 * mmap() it makes turned into a MAP_PEER_SHARED one, and with a gmem device
 * context attached to its address space, so that gmem watches all of its
 * memory the way it would for an application sharing it with a device.
 * gmem creates its notifier for a range when a device or a hint first
 * needs it, so each turned mapping also gets the one hint that changes
 * nothing while no device touches it (preferred location: host), which
 * makes gmem watch it from the start.
 *
 *   LD_PRELOAD=/path/to/peer_shared.so program args...
 *
 * Environment:
 *   GMEM_PEER_DEV      device node to attach (default /dev/gmem_npu0; an
 *                      empty value attaches nothing)
 *   GMEM_PEER_VERBOSE  if set, print at exit how many mappings were turned
 *   GMEM_PEER_OFF      if set, turn nothing and attach nothing: the same
 *                      program, preloaded the same way, as a baseline
 *
 * Either way stdout is made line buffered, so that a program stopped by a
 * time limit has printed every result it reached.
 *
 * Left alone: shared and file mappings, and MAP_HUGETLB ones (gmem refuses
 * MAP_PEER_SHARED | MAP_HUGETLB: hugetlb memory is not gmem's).  glibc's
 * own mmap() calls (malloc's large chunks, thread stacks) do not go through
 * the dynamic symbol and stay as they are.  The device file descriptor is
 * close-on-exec and placed high, out of the program's way; a program run
 * with it execs with LD_PRELOAD still set and attaches its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/gmem.h>

#define PEER_FD_MIN	900

static atomic_long turned;
static int gmem_fd = -1;
static int off;

/* @fd moved out of the program's way (or as it is if that fails). */
static int move_high(int fd)
{
	int high;

	if (fd < 0 || fd >= PEER_FD_MIN)
		return fd;
	high = fcntl(fd, F_DUPFD_CLOEXEC, PEER_FD_MIN);
	if (high < 0)
		return fd;
	close(fd);
	return high;
}

static void __attribute__((constructor)) peer_shared_attach(void)
{
	const char *dev = getenv("GMEM_PEER_DEV");
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	off = getenv("GMEM_PEER_OFF") != NULL;
	if (off)
		return;
	if (!dev)
		dev = "/dev/gmem_npu0";
	if (!*dev)
		return;
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "peer_shared: %s: cannot attach a device context\n", dev);
		return;
	}
	fd = move_high(fd);
	gmem_fd = move_high(open("/dev/gmem", O_RDWR | O_CLOEXEC));
}

static void __attribute__((destructor)) peer_shared_report(void)
{
	if (!off && getenv("GMEM_PEER_VERBOSE"))
		fprintf(stderr, "peer_shared: %ld mappings made MAP_PEER_SHARED\n",
			atomic_load(&turned));
}

static int peer_shared_flags(int flags)
{
	if (off || (flags & MAP_TYPE) != MAP_PRIVATE || !(flags & MAP_ANONYMOUS) ||
	    (flags & MAP_HUGETLB))
		return flags;
	/* Said at once: a program stopped by a time limit has no destructor. */
	if (!atomic_fetch_add_explicit(&turned, 1, memory_order_relaxed) &&
	    getenv("GMEM_PEER_VERBOSE")) {
		static const char msg[] = "peer_shared: turning mappings\n";

		if (write(2, msg, sizeof(msg) - 1) < 0)
			return flags | MAP_PEER_SHARED;
	}
	return flags | MAP_PEER_SHARED;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	int peer = peer_shared_flags(flags);
	long ret = syscall(SYS_mmap, addr, len, prot, peer, fd, off);

	if (ret != -1 && peer != flags && gmem_fd >= 0) {
		struct gmem_advise a = {
			.addr = ret, .len = (len + 4095) & ~4095UL,
			.advice = GMEM_ADV_SET_PREFERRED_LOCATION,
			.dev = GMEM_DEV_HOST,
		};
		int saved = errno;

		ioctl(gmem_fd, GMEM_IOC_ADVISE, &a);
		errno = saved;
	}
	return (void *)ret;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));
