/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the tests of the simulated NPU (gmem_npu.ko): opening
 * /dev/gmem_npuN, submitting jobs and waiting for them, and test data.
 */
#ifndef NPU_UTIL_H
#define NPU_UTIL_H

#include <stdint.h>
#include <sys/ioctl.h>

#include "gmem_util.h"

#define WAIT_FOREVER		(-1LL)

#define U64(p)			((__u64)(uintptr_t)(p))

static inline __u64 page_of(__u64 addr, size_t page_size)
{
	return addr & ~((__u64)page_size - 1);
}

static inline int npu_open(int index)
{
	char path[32];

	snprintf(path, sizeof(path), "/dev/gmem_npu%d", index);
	return open(path, O_RDWR);
}

/* 0 with the job's seqno in *@seqno, or -errno of the ioctl (*@seqno 0). */
static inline int npu_submit(int fd, const struct gmem_npu_job *job,
			     __u64 *seqno)
{
	struct gmem_npu_submit sub = { .job = *job };

	*seqno = 0;
	if (ioctl(fd, GMEM_NPU_IOC_SUBMIT, &sub))
		return -errno;
	*seqno = sub.seqno;
	return 0;
}

/* 0 with *@w filled in, or -errno of the ioctl (-ETIMEDOUT, -EINVAL...). */
static inline int npu_wait(int fd, __u64 seqno, __s64 timeout_ns,
			   struct gmem_npu_wait *w)
{
	memset(w, 0, sizeof(*w));
	w->seqno = seqno;
	w->timeout_ns = timeout_ns;
	while (ioctl(fd, GMEM_NPU_IOC_WAIT, w))
		if (errno != EINTR)
			return -errno;
	return 0;
}

/*
 * Submits @job and waits for it forever.  Returns the job's status (0 or
 * -errno, the details in *@w), or a positive errno if the SUBMIT or WAIT
 * ioctl itself failed, so that ASSERT_EQ(run_job(...), 0) shows which.
 */
static inline int run_job(int fd, const struct gmem_npu_job *job,
			  struct gmem_npu_wait *w)
{
	__u64 seqno;
	int ret;

	memset(w, 0, sizeof(*w));
	ret = npu_submit(fd, job, &seqno);
	if (!ret)
		ret = npu_wait(fd, seqno, WAIT_FOREVER, w);
	return ret ? -ret : w->status;
}

static inline struct gmem_npu_job job_fill(void *dst, size_t len, __u8 byte)
{
	return (struct gmem_npu_job){ .op = GMEM_NPU_OP_FILL, .dst = U64(dst),
				      .len = len, .value = byte };
}

static inline struct gmem_npu_job job_sum(const void *src, size_t len)
{
	return (struct gmem_npu_job){ .op = GMEM_NPU_OP_REDUCE_SUM,
				      .src = U64(src), .len = len };
}

static inline int npu_fill(int fd, void *dst, size_t len, __u8 byte,
			   struct gmem_npu_wait *w)
{
	struct gmem_npu_job job = job_fill(dst, len, byte);

	return run_job(fd, &job, w);
}

static inline int npu_copy(int fd, void *dst, const void *src, size_t len,
			   struct gmem_npu_wait *w)
{
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_COPY, .dst = U64(dst),
				    .src = U64(src), .len = len };

	return run_job(fd, &job, w);
}

static inline int npu_add(int fd, void *dst, const void *src, const void *src2,
			  size_t len, struct gmem_npu_wait *w)
{
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_ADD, .dst = U64(dst),
				    .src = U64(src), .src2 = U64(src2),
				    .len = len };

	return run_job(fd, &job, w);
}

/* The sum is in w->result. */
static inline int npu_sum(int fd, const void *src, size_t len,
			  struct gmem_npu_wait *w)
{
	struct gmem_npu_job job = job_sum(src, len);

	return run_job(fd, &job, w);
}

static inline int npu_inc(int fd, void *counter, __u64 times,
			  struct gmem_npu_wait *w)
{
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_ATOMIC_INC,
				    .dst = U64(counter), .len = 8,
				    .value = times };

	return run_job(fd, &job, w);
}

static inline int npu_touch(int fd, void *dst, size_t len, bool write,
			    __u64 value, struct gmem_npu_wait *w)
{
	struct gmem_npu_job job = { .op = GMEM_NPU_OP_TOUCH,
				    .flags = write ? GMEM_NPU_JOB_WRITE : 0,
				    .dst = U64(dst), .len = len,
				    .value = value };

	return run_job(fd, &job, w);
}

static inline int npu_get_info(int fd, struct gmem_npu_info *info)
{
	memset(info, 0, sizeof(*info));
	return ioctl(fd, GMEM_NPU_IOC_INFO, info) ? -errno : 0;
}

static inline int npu_set_mode(int fd, __u32 mode)
{
	struct gmem_npu_mode m = { .mode = mode };

	return ioctl(fd, GMEM_NPU_IOC_SET_MODE, &m) ? -errno : 0;
}

/*
 * Migrates [@addr, @addr + @len) to this NPU's memory, or with
 * GMEM_NPU_PREFETCH_TO_HOST back to host memory; 0 or -errno.
 */
static inline int npu_prefetch(int fd, const void *addr, size_t len,
			       __u32 flags)
{
	struct gmem_npu_prefetch pf = { .addr = U64(addr), .len = len,
					.flags = flags };

	while (ioctl(fd, GMEM_NPU_IOC_PREFETCH, &pf))
		if (errno != EINTR)
			return -errno;
	return 0;
}

static inline int npu_set_placement(int fd, __u32 placement)
{
	struct gmem_npu_placement pl = { .placement = placement };

	return ioctl(fd, GMEM_NPU_IOC_SET_PLACEMENT, &pl) ? -errno : 0;
}

/* Test data: u32 element @i of a buffer filled with seed @seed. */
static inline __u32 pattern(size_t i, __u32 seed)
{
	return ((__u32)i * 2654435761u) ^ seed;
}

static inline void fill_pattern(void *p, size_t len, __u32 seed)
{
	__u32 *u = p;

	for (size_t i = 0; i < len / 4; i++)
		u[i] = pattern(i, seed);
}

/* Sum of elements [@first, @first + @len / 4) of a pattern buffer. */
static inline __u64 pattern_sum_from(size_t first, size_t len, __u32 seed)
{
	__u64 sum = 0;

	for (size_t i = first; i < first + len / 4; i++)
		sum += pattern(i, seed);
	return sum;
}

static inline __u64 pattern_sum(size_t len, __u32 seed)
{
	return pattern_sum_from(0, len, seed);
}

/* Index of the first u32 that is not the pattern, or -1. */
static inline ssize_t check_pattern(const void *p, size_t len, __u32 seed)
{
	const __u32 *u = p;

	for (size_t i = 0; i < len / 4; i++)
		if (u[i] != pattern(i, seed))
			return i;
	return -1;
}

/*
 * Index (from the start of the pattern buffer) of the first u32 of
 * [@first, @first + @len / 4) that is not the pattern, or -1; @p points to
 * element @first.
 */
static inline ssize_t check_pattern_from(const void *p, size_t first,
					 size_t len, __u32 seed)
{
	const __u32 *u = p;

	for (size_t i = 0; i < len / 4; i++)
		if (u[i] != pattern(first + i, seed))
			return first + i;
	return -1;
}

/* Index of the first byte that is not @byte, or -1. */
static inline ssize_t find_not_byte(const void *p, size_t len, __u8 byte)
{
	const __u8 *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i] != byte)
			return i;
	return -1;
}

/* REDUCE_SUM of @len bytes all equal to @byte. */
static inline __u64 byte_sum(__u8 byte, size_t len)
{
	return (__u64)(len / 4) * (byte * 0x01010101u);
}

/* An address with nothing mapped at it. */
static inline void *unmapped_page(size_t page_size)
{
	void *p = mmap(NULL, page_size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p != MAP_FAILED)
		munmap(p, page_size);
	return p;
}

/* A CPU read of memory the device may write behind the compiler's back. */
static inline __u64 load_u64(__u64 *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

#endif /* NPU_UTIL_H */
