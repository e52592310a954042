/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * gmem user API: shared CPU/accelerator virtual memory.
 *
 * Memory that devices attached through gmem may use is mapped with
 *
 *	mmap(NULL, len, PROT_READ | PROT_WRITE,
 *	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_PEER_SHARED, -1, 0);
 *
 * Errors: EINVAL with a file, MAP_SHARED or MAP_GROWSDOWN; ENODEV when the
 * gmem module is not loaded; EOPNOTSUPP on a kernel built without gmem.
 * Older kernels ignore the flag: check VmFlags "ps" in /proc/self/smaps.
 */
#ifndef _UAPI_LINUX_GMEM_H
#define _UAPI_LINUX_GMEM_H

#include <linux/types.h>

#ifndef MAP_PEER_SHARED
#define MAP_PEER_SHARED		0x8000000
#endif

#endif /* _UAPI_LINUX_GMEM_H */
