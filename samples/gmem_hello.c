// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_hello: list gmem's devices, allocate memory the CPU shares with
 * them (libgmem's gmemMallocShared: a MAP_PEER_SHARED mapping), use it on
 * the CPU and show that the kernel knows it (VmFlags "ps").
 *
 * Build: gcc -O2 -I<kernel headers> gmem_hello.c $(pkg-config --cflags --libs gmem)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/gmem.h>
#include <gmem.h>

#define LEN (8UL << 20)

static void show_vmflags(void *addr)
{
	unsigned long a = (unsigned long)addr, start, end;
	char line[512];
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			in = a >= start && a < end;
		else if (in && !strncmp(line, "VmFlags:", 8))
			printf("  VmFlags:%s", line + 8);
	}
	if (f)
		fclose(f);
}

static void list_devices(void)
{
	int ids[GMEM_MAX_DEVICES], n;
	gmemDeviceProp prop;
	gmemError_t e;

	e = gmemGetDevices(ids, GMEM_MAX_DEVICES, &n);
	if (e) {
		printf("no device list: %s\n", gmemGetErrorString(e));
		return;
	}
	printf("%d gmem device%s\n", n, n == 1 ? "" : "s");
	for (int i = 0; i < n; i++)
		if (!gmemGetDeviceProperties(&prop, ids[i]))
			printf("  device %d: %s, %zu MiB of its own memory\n",
			       prop.id, prop.name, prop.totalGlobalMem >> 20);
}

int main(void)
{
	unsigned long *buf, sum = 0;
	size_t i, n = LEN / sizeof(*buf);
	gmemError_t e;

	list_devices();
	e = gmemMallocShared((void **)&buf, LEN);
	if (e) {
		fprintf(stderr, "gmemMallocShared: %s\n", gmemGetErrorString(e));
		return 1;
	}
	printf("allocated %lu MiB of MAP_PEER_SHARED memory at %p\n", LEN >> 20,
	       (void *)buf);
	show_vmflags(buf);

	for (i = 0; i < n; i++)
		buf[i] = i;
	for (i = 0; i < n; i++)
		sum += buf[i];
	printf("CPU wrote %zu words and read them back: sum %lu (%s)\n", n,
	       sum, sum == n * (n - 1) / 2 ? "correct" : "WRONG");

	/* Shared memory is still a normal mapping: invalid uses fail clearly. */
	if (mmap(NULL, LEN, PROT_READ, MAP_SHARED | MAP_ANONYMOUS |
		 MAP_PEER_SHARED, -1, 0) == MAP_FAILED)
		printf("MAP_SHARED | MAP_PEER_SHARED is refused: %s\n",
		       strerror(errno));

	gmemFree(buf, LEN);
	return sum == n * (n - 1) / 2 ? 0 : 1;
}
