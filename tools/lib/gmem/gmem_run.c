// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause
/*
 * libgmem-run.so: run an unmodified program with its heap and its
 * anonymous mappings made MAP_PEER_SHARED, so that gmem devices can reach
 * them.  Preloaded by gmem-run (LD_PRELOAD); attaches no device and gives
 * no hints: the memory only becomes shareable.
 *
 * Interposing mmap() covers the program's own mappings, but not glibc's:
 * its internal mmap() calls (malloc's large chunks, thread stacks) and the
 * brk heap do not go through the dynamic symbol.  So this library replaces
 * the malloc family itself ("Replacing malloc" in the glibc manual) with
 * an allocator whose memory all comes from MAP_PEER_SHARED mappings:
 *
 * - Requests up to SMALL_MAX bytes are served from size classes (16-byte
 *   steps to 128, then four per power of two).  Each class carves blocks
 *   from 2 MiB superblocks aligned to 2 MiB; the superblock's header, at
 *   its start, holds the class and a free list.  A class keeps a list of
 *   its superblocks that have a free block, under one mutex per class.
 * - Larger requests get a mapping of their own, starting at the pointer
 *   returned, recorded in a hash table under big_lock; free() unmaps it
 *   and realloc() grows it with mremap().
 * - A pointer's kind is decided from the pointer alone: a bitmap with one
 *   bit per 2 MiB of address space says whether p & ~(2 MiB - 1) is one of
 *   our superblocks; if not, the hash table says whether p is one of our
 *   large blocks; if neither, the pointer is foreign and free() ignores
 *   it (realloc() fails with ENOMEM).  ld.so's own early memory, from its
 *   minimal malloc before relocation, is the known case, though glibc
 *   2.36 never hands it to the real free().
 * - Aligned requests use the first class whose blocks are naturally
 *   aligned enough, else a large block whose mapping is trimmed to start
 *   at the aligned pointer.
 * - Emptied superblocks go to a pool any class takes from; beyond
 *   POOL_KEEP of them they are unmapped.
 *
 * Not covered: thread stacks, the main stack, static data, and what ld.so
 * allocated before this library's malloc took over.  Static and setuid
 * programs ignore LD_PRELOAD.
 *
 * Environment: GMEM_RUN_VERBOSE=1 prints at exit, on a copy of stderr,
 * what was made shareable.  If gmem is not loaded (MAP_PEER_SHARED fails
 * with ENODEV or EOPNOTSUPP) everything falls back to plain mappings, from
 * the first failure on, for the whole process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MAP_PEER_SHARED
#define MAP_PEER_SHARED		0x200000	/* <linux/gmem.h> */
#endif

#define EXPORT			__attribute__((visibility("default")))

#define SB_SHIFT		21
#define SB_SIZE			(1UL << SB_SHIFT)
#define VA_BITS			48	/* user addresses mmap() can return */
#define MIN_ALIGN		16UL	/* what malloc() guarantees */
#define ALIGN_CAP		4096UL	/* most a class's blocks are aligned to */
/*
 * Above glibc's first mmap threshold (128 KiB): a mapping per block costs
 * two system calls and a VMA, too much for blocks programs churn.
 */
#define SMALL_MAX		(256UL << 10)
#define NCLASS			52	/* 8 up to 128 bytes, 4 per doubling */
#define POOL_KEEP		4	/* empty superblocks kept for reuse */
#define REPORT_FD_MIN		900

struct sb {
	struct sb *prev, *next;	/* in the class's list with free blocks */
	void *free;		/* freed blocks, linked through their first word */
	unsigned int cls;
	unsigned int bsize;
	unsigned int first;	/* offset of block 0 */
	unsigned int nblocks;
	unsigned int used;	/* blocks handed out and not freed */
	unsigned int fresh;	/* blocks from here on were never handed out */
};

struct size_class {
	pthread_mutex_t lock;
	struct sb *avail;	/* superblocks with a free block */
	unsigned long nalloc, served;	/* for the report */
} __attribute__((aligned(64)));

struct large {
	uintptr_t ptr;		/* start of the mapping; 0: free slot */
	size_t len;
};

static struct size_class classes[NCLASS] = {
	[0 ... NCLASS - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER },
};

/* Taken after a class lock, never before: the pool, the table, sb_map. */
static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sb *pool;
static unsigned int pool_len;
static struct large *ltab;
static size_t lcap, lcount;
static unsigned long *sb_map;	/* bit n: [n << SB_SHIFT, +SB_SIZE) is ours */
static size_t page_size;

static int disabled;		/* MAP_PEER_SHARED failed: gmem not loaded */
static int report_fd = -1;	/* GMEM_RUN_VERBOSE: stderr, kept aside */
static unsigned long mmap_turned, heap_maps, large_allocs, large_served;
static unsigned long foreign;

static void say(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= n;
	}
}

static long sys_mmap(void *addr, size_t len, int prot, int flags, int fd,
		     off_t off)
{
	return syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

/*
 * mmap() with MAP_PEER_SHARED added, or without it from the first time the
 * kernel says gmem is not there: then nothing can be shared, and trying
 * again on every call would only cost a system call each.
 */
static long map_peer(void *addr, size_t len, int prot, int flags, int fd,
		     off_t off, bool *turned)
{
	int saved = errno;
	long ret;

	*turned = false;
	if (!__atomic_load_n(&disabled, __ATOMIC_RELAXED)) {
		ret = sys_mmap(addr, len, prot, flags | MAP_PEER_SHARED, fd, off);
		if (ret != -1) {
			*turned = true;
			return ret;
		}
		if (errno != ENODEV && errno != EOPNOTSUPP)
			return ret;
		__atomic_store_n(&disabled, 1, __ATOMIC_RELAXED);
	}
	ret = sys_mmap(addr, len, prot, flags, fd, off);
	if (ret != -1)
		errno = saved;
	return ret;
}

/* Private anonymous memory the allocator hands out; NULL on failure. */
static void *heap_map(size_t len)
{
	bool turned;
	long ret = map_peer(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &turned);

	if (ret == -1)
		return NULL;
	if (turned)
		__atomic_fetch_add(&heap_maps, 1, __ATOMIC_RELAXED);
	return (void *)ret;
}

/* The allocator's own bookkeeping: plain memory, no device needs it. */
static void *meta_map(size_t len, int flags)
{
	long ret = sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	return ret == -1 ? NULL : (void *)ret;
}

static size_t pagesz(void)
{
	if (!page_size)
		page_size = sysconf(_SC_PAGESIZE);
	return page_size;
}

/* Size classes: 16, 32, ..., 128, then 160, 192, 224, 256, 320, ... */
static unsigned int size_class(size_t n)
{
	unsigned int b;

	if (n <= 128)
		return n ? (n - 1) >> 4 : 0;
	n--;
	b = 63 - __builtin_clzl(n);
	return 8 + (b - 7) * 4 + ((n >> (b - 2)) & 3);
}

static size_t class_size(unsigned int c)
{
	unsigned int b;

	if (c < 8)
		return (c + 1) * 16;
	b = 7 + (c - 8) / 4;
	return (1UL << b) + ((c - 8) % 4 + 1) * (1UL << (b - 2));
}

/* What every block of class @c is aligned to (block 0 is placed so). */
static size_t class_align(unsigned int c)
{
	size_t s = class_size(c), a = s & -s;

	return a < ALIGN_CAP ? a : ALIGN_CAP;
}

/* The superblock @p lies in, or NULL if it is not in one of ours. */
static struct sb *sb_of(const void *p)
{
	uintptr_t a = (uintptr_t)p, i = a >> SB_SHIFT;
	unsigned long *map = __atomic_load_n(&sb_map, __ATOMIC_ACQUIRE);

	if (!map || a >> VA_BITS)
		return NULL;
	if (!(__atomic_load_n(&map[i / 64], __ATOMIC_RELAXED) &
	      (1UL << (i % 64))))
		return NULL;
	return (struct sb *)(a & ~(SB_SIZE - 1));
}

static void sb_mark(struct sb *sb, bool ours)
{
	uintptr_t i = (uintptr_t)sb >> SB_SHIFT;

	if (ours)
		__atomic_fetch_or(&sb_map[i / 64], 1UL << (i % 64),
				  __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&sb_map[i / 64], ~(1UL << (i % 64)),
				   __ATOMIC_RELEASE);
}

/* A superblock for class @c, from the pool or mapped; under class lock. */
static struct sb *sb_get(unsigned int c)
{
	struct sb *sb = NULL;
	char *p, *a;

	pthread_mutex_lock(&big_lock);
	if (!sb_map) {
		/* One bit per 2 MiB: untouched parts of it cost nothing. */
		p = meta_map(1UL << (VA_BITS - SB_SHIFT - 3), MAP_NORESERVE);
		if (!p)
			goto out;
		__atomic_store_n(&sb_map, (unsigned long *)p, __ATOMIC_RELEASE);
	}
	if (pool) {
		sb = pool;
		pool = sb->next;
		pool_len--;
	} else {
		p = heap_map(2 * SB_SIZE);
		if (!p)
			goto out;
		a = (char *)(((uintptr_t)p + SB_SIZE - 1) & ~(SB_SIZE - 1));
		if (a > p)
			munmap(p, a - p);
		if (p + SB_SIZE > a)
			munmap(a + SB_SIZE, p + SB_SIZE - a);
		if ((uintptr_t)a >> VA_BITS) {
			munmap(a, SB_SIZE);
			goto out;
		}
		/*
		 * With THP "always" a first touch would take a whole huge
		 * page, for each of up to NCLASS classes.
		 */
		madvise(a, SB_SIZE, MADV_NOHUGEPAGE);
		sb = (struct sb *)a;
		sb_mark(sb, true);
	}
	sb->cls = c;
	sb->bsize = class_size(c);
	sb->first = (sizeof(*sb) + class_align(c) - 1) & -class_align(c);
	sb->nblocks = (SB_SIZE - sb->first) / sb->bsize;
	sb->used = 0;
	sb->fresh = 0;
	sb->free = NULL;
out:
	pthread_mutex_unlock(&big_lock);
	return sb;
}

/* Gives an empty superblock back: kept for any class, or unmapped. */
static void sb_put(struct sb *sb)
{
	pthread_mutex_lock(&big_lock);
	if (pool_len < POOL_KEEP) {
		sb->next = pool;
		pool = sb;
		pool_len++;
	} else {
		int saved = errno;	/* free() must not change it */

		/* Cleared first: the range may be mapped again at once. */
		sb_mark(sb, false);
		munmap(sb, SB_SIZE);
		errno = saved;
	}
	pthread_mutex_unlock(&big_lock);
}

static void avail_add(struct size_class *sc, struct sb *sb)
{
	sb->prev = NULL;
	sb->next = sc->avail;
	if (sc->avail)
		sc->avail->prev = sb;
	sc->avail = sb;
}

static void avail_del(struct size_class *sc, struct sb *sb)
{
	if (sb->prev)
		sb->prev->next = sb->next;
	else
		sc->avail = sb->next;
	if (sb->next)
		sb->next->prev = sb->prev;
}

static void *small_alloc(unsigned int c)
{
	struct size_class *sc = &classes[c];
	struct sb *sb;
	char *b;

	pthread_mutex_lock(&sc->lock);
	sb = sc->avail;
	if (!sb) {
		sb = sb_get(c);
		if (!sb) {
			pthread_mutex_unlock(&sc->lock);
			return NULL;
		}
		avail_add(sc, sb);
	}
	if (sb->free) {
		b = sb->free;
		sb->free = *(void **)b;
	} else {
		b = (char *)sb + sb->first + (size_t)sb->fresh++ * sb->bsize;
	}
	if (++sb->used == sb->nblocks)
		avail_del(sc, sb);
	sc->nalloc++;
	sc->served += sb->bsize;
	pthread_mutex_unlock(&sc->lock);
	return b;
}

/* Is @p a block of @sb that is handed out?  Under the class lock. */
static bool sb_block(struct sb *sb, unsigned int c, const char *p)
{
	size_t off = p - (char *)sb - sb->first;

	return sb->cls == c && sb->used && off % sb->bsize == 0 &&
	       off / sb->bsize < sb->fresh;
}

static void small_free(struct sb *sb, void *p)
{
	/* Stable: a superblock with a block handed out keeps its class. */
	unsigned int c = __atomic_load_n(&sb->cls, __ATOMIC_RELAXED);
	struct size_class *sc;

	if (c >= NCLASS)
		goto bad;
	sc = &classes[c];
	pthread_mutex_lock(&sc->lock);
	if (!sb_block(sb, c, p)) {
		pthread_mutex_unlock(&sc->lock);
		goto bad;
	}
	*(void **)p = sb->free;
	sb->free = p;
	if (sb->used-- == sb->nblocks)
		avail_add(sc, sb);
	/* The class's last superblock stays, so alloc/free pairs map none. */
	if (!sb->used && (sc->avail != sb || sb->next)) {
		avail_del(sc, sb);
		pthread_mutex_unlock(&sc->lock);
		sb_put(sb);
		return;
	}
	pthread_mutex_unlock(&sc->lock);
	return;
bad:
	__atomic_fetch_add(&foreign, 1, __ATOMIC_RELAXED);
}

/*
 * Large blocks: an open-addressing table (linear probing, at most half
 * full) keyed by the pointer, which is also the mapping's start.  Under
 * big_lock.
 */
static size_t lhash(uintptr_t p, size_t cap)
{
	return ((p >> 12) * 0x9e3779b97f4a7c15UL >> 32) & (cap - 1);
}

static struct large *ltab_find(uintptr_t p)
{
	size_t i;

	if (!lcap)
		return NULL;
	for (i = lhash(p, lcap); ltab[i].ptr; i = (i + 1) & (lcap - 1))
		if (ltab[i].ptr == p)
			return &ltab[i];
	return NULL;
}

static void ltab_put(struct large *t, size_t cap, uintptr_t p, size_t len)
{
	size_t i = lhash(p, cap);

	while (t[i].ptr)
		i = (i + 1) & (cap - 1);
	t[i].ptr = p;
	t[i].len = len;
}

static bool ltab_insert(uintptr_t p, size_t len)
{
	if (2 * (lcount + 1) > lcap) {
		size_t cap = lcap ? 2 * lcap : 1024, i;
		struct large *t = meta_map(cap * sizeof(*t), 0);

		if (!t)
			return false;
		for (i = 0; i < lcap; i++)
			if (ltab[i].ptr)
				ltab_put(t, cap, ltab[i].ptr, ltab[i].len);
		if (ltab)
			munmap(ltab, lcap * sizeof(*ltab));
		ltab = t;
		lcap = cap;
	}
	ltab_put(ltab, lcap, p, len);
	lcount++;
	return true;
}

/* Empties slot @e, moving later entries of its run back (no tombstones). */
static void ltab_remove(struct large *e)
{
	size_t i = e - ltab, j = i, k;

	lcount--;
	for (;;) {
		ltab[i].ptr = 0;
		do {
			j = (j + 1) & (lcap - 1);
			if (!ltab[j].ptr)
				return;
			k = lhash(ltab[j].ptr, lcap);
		} while (i <= j ? i < k && k <= j : i < k || k <= j);
		ltab[i] = ltab[j];
		i = j;
	}
}

/*
 * A mapping of its own, trimmed to start at a multiple of @align (a power
 * of two): the pointer is the mapping, so free() and realloc() need only
 * the length.
 */
static void *large_alloc(size_t size, size_t align)
{
	size_t ps = pagesz(), extra = align > ps ? align - ps : 0, len;
	char *m, *p, *end;
	bool ok;

	if (extra > PTRDIFF_MAX - ps || size > PTRDIFF_MAX - ps - extra)
		goto nomem;
	len = (size + !size + ps - 1) & -ps;
	m = heap_map(len + extra);
	if (!m)
		goto nomem;
	p = (char *)(((uintptr_t)m + align - 1) & -align);
	end = m + len + extra;
	if (p > m)
		munmap(m, p - m);
	if (end > p + len)
		munmap(p + len, end - (p + len));
	pthread_mutex_lock(&big_lock);
	ok = ltab_insert((uintptr_t)p, len);
	if (ok) {
		large_allocs++;
		large_served += len;
	}
	pthread_mutex_unlock(&big_lock);
	if (ok)
		return p;
	munmap(p, len);
nomem:
	errno = ENOMEM;
	return NULL;
}

static bool large_free(void *p)
{
	struct large *e;
	size_t len;

	pthread_mutex_lock(&big_lock);
	e = ltab_find((uintptr_t)p);
	if (!e) {
		pthread_mutex_unlock(&big_lock);
		return false;
	}
	len = e->len;
	ltab_remove(e);
	pthread_mutex_unlock(&big_lock);
	/* Unmapped after: till then nobody can map the range and insert it. */
	munmap(p, len);
	return true;
}

/*
 * Resizes large block @p in place, or moves it with mremap(), for a
 * realloc() to @n bytes; NULL if it must be copied instead.  *@old: its
 * length, 0 if @p is not a large block of ours.  All under big_lock: a
 * moving mremap() frees the old range for anyone to map, and the table
 * must not name it by then.
 */
static void *large_resize(void *p, size_t n, size_t *old)
{
	size_t ps = pagesz(), len;
	struct large *e;
	int saved = errno;
	void *q = NULL;

	pthread_mutex_lock(&big_lock);
	e = ltab_find((uintptr_t)p);
	*old = e ? e->len : 0;
	if (!e || n <= SMALL_MAX || n > PTRDIFF_MAX - ps)
		goto out;
	len = (n + ps - 1) & -ps;
	if (len <= e->len) {
		if (len < e->len)
			munmap((char *)p + len, e->len - len);
		e->len = len;
		q = p;
		goto out;
	}
	q = mremap(p, e->len, len, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) {
		errno = saved;
		q = NULL;
		goto out;
	}
	large_served += len - e->len;
	if (q == p) {
		e->len = len;
	} else {
		/* Cannot fail: the table does not grow for one it just lost. */
		ltab_remove(e);
		ltab_insert((uintptr_t)q, len);
	}
out:
	pthread_mutex_unlock(&big_lock);
	return q;
}

/* @n bytes aligned to @align, a power of two of at least MIN_ALIGN. */
static void *alloc(size_t n, size_t align)
{
	unsigned int c;
	void *p;

	if (n <= SMALL_MAX && align <= ALIGN_CAP) {
		c = size_class(n);
		while (align > MIN_ALIGN && c < NCLASS && class_align(c) < align)
			c++;
		if (c < NCLASS) {
			p = small_alloc(c);
			if (!p)
				errno = ENOMEM;
			return p;
		}
	}
	return large_alloc(n, align);
}

static void release(void *p)
{
	struct sb *sb;

	if (!p)
		return;
	sb = sb_of(p);
	if (sb)
		small_free(sb, p);
	else if (!large_free(p))
		__atomic_fetch_add(&foreign, 1, __ATOMIC_RELAXED);
}

/* memalign(): any @align, rounded up to a power of two as glibc does. */
static void *alloc_aligned(size_t align, size_t n)
{
	if (align <= MIN_ALIGN)
		return alloc(n, MIN_ALIGN);
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	if (align & (align - 1))
		align = 1UL << (64 - __builtin_clzl(align));
	return alloc(n, align);
}

EXPORT void *malloc(size_t n)
{
	return alloc(n, MIN_ALIGN);
}

EXPORT void free(void *p)
{
	release(p);
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
	size_t n;
	void *p;

	if (__builtin_mul_overflow(nmemb, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	p = alloc(n, MIN_ALIGN);
	/* A large block is a new mapping, zero already. */
	if (p && n <= SMALL_MAX)
		memset(p, 0, n);
	return p;
}

/*
 * glibc's semantics: realloc(NULL, n) is malloc(n); realloc(p, 0) frees p
 * and returns NULL; on failure p is left as it was.
 */
EXPORT void *realloc(void *p, size_t n)
{
	struct sb *sb;
	size_t old;
	void *q;

	if (!p)
		return alloc(n, MIN_ALIGN);
	if (!n) {
		release(p);
		return NULL;
	}
	sb = sb_of(p);
	if (sb) {
		old = sb->bsize;
		/* Shrinking by up to a doubling is not worth a copy. */
		if (n <= old && size_class(n) + 4 > sb->cls)
			return p;
	} else {
		q = large_resize(p, n, &old);
		if (q)
			return q;
		if (!old) {
			static const char msg[] =
				"gmem-run: realloc() of memory not from malloc()\n";

			__atomic_fetch_add(&foreign, 1, __ATOMIC_RELAXED);
			say(STDERR_FILENO, msg, sizeof(msg) - 1);
			errno = ENOMEM;
			return NULL;
		}
	}
	q = alloc(n, MIN_ALIGN);
	if (!q)
		return NULL;
	memcpy(q, p, n < old ? n : old);
	release(p);
	return q;
}

EXPORT void *reallocarray(void *p, size_t nmemb, size_t size)
{
	size_t n;

	if (__builtin_mul_overflow(nmemb, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, n);
}

EXPORT void *memalign(size_t align, size_t n)
{
	return alloc_aligned(align, n);
}

/* As the glibc manual documents it (and 2.38 does): EINVAL unless 2^k. */
EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (!align || align & (align - 1)) {
		errno = EINVAL;
		return NULL;
	}
	return alloc_aligned(align, n);
}

/* Returns the error; errno is left alone, as POSIX wants. */
EXPORT int posix_memalign(void **res, size_t align, size_t n)
{
	int saved = errno;
	void *p;

	if (!align || align & (align - 1) || align % sizeof(void *))
		return EINVAL;
	p = alloc_aligned(align, n);
	errno = saved;
	if (!p)
		return ENOMEM;
	*res = p;
	return 0;
}

EXPORT void *valloc(size_t n)
{
	return alloc_aligned(pagesz(), n);
}

EXPORT void *pvalloc(size_t n)
{
	size_t ps = pagesz();

	if (n > SIZE_MAX - ps) {
		errno = ENOMEM;
		return NULL;
	}
	return alloc_aligned(ps, (n + ps - 1) & -ps);
}

EXPORT size_t malloc_usable_size(void *p)
{
	struct sb *sb = p ? sb_of(p) : NULL;
	struct large *e;
	size_t len = 0;

	if (sb)
		return sb->bsize;
	if (!p)
		return 0;
	pthread_mutex_lock(&big_lock);
	e = ltab_find((uintptr_t)p);
	if (e)
		len = e->len;
	pthread_mutex_unlock(&big_lock);
	return len;
}

/*
 * The program's own mmap() calls: private anonymous mappings become
 * MAP_PEER_SHARED.  Left alone: shared and file mappings, MAP_HUGETLB
 * (hugetlb memory is not gmem's) and MAP_GROWSDOWN (gmem refuses it).
 */
EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off)
{
	bool turned;
	long ret;

	if ((flags & MAP_TYPE) != MAP_PRIVATE || !(flags & MAP_ANONYMOUS) ||
	    flags & (MAP_HUGETLB | MAP_GROWSDOWN | MAP_PEER_SHARED))
		return (void *)sys_mmap(addr, len, prot, flags, fd, off);
	ret = map_peer(addr, len, prot, flags, fd, off, &turned);
	if (turned)
		__atomic_fetch_add(&mmap_turned, 1, __ATOMIC_RELAXED);
	return (void *)ret;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off) __attribute__((alias("mmap")));

/*
 * fork() copies the locks as they are: take them all, so that no other
 * thread holds one halfway through an update the child would inherit.
 */
static void fork_prepare(void)
{
	for (int i = 0; i < NCLASS; i++)
		pthread_mutex_lock(&classes[i].lock);
	pthread_mutex_lock(&big_lock);
}

/* In the child too: its one thread is the one that took them. */
static void fork_done(void)
{
	pthread_mutex_unlock(&big_lock);
	for (int i = NCLASS - 1; i >= 0; i--)
		pthread_mutex_unlock(&classes[i].lock);
}

/*
 * No malloc() may wait for this: the first calls come from ld.so and
 * other constructors before it runs, so the allocator needs no setup.
 */
static void __attribute__((constructor)) gmem_run_init(void)
{
	const char *v = getenv("GMEM_RUN_VERBOSE");

	/*
	 * A copy of stderr out of the program's way, for the report: many
	 * programs close stderr before exit (coreutils' close_stdout()).
	 */
	if (v && *v && strcmp(v, "0")) {
		report_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, REPORT_FD_MIN);
		if (report_fd < 0)
			report_fd = STDERR_FILENO;
	}
	pagesz();
	pthread_atfork(fork_prepare, fork_done, fork_done);
}

/* stdio could allocate: the report is put together by hand. */
static char *put(char *b, const char *s)
{
	while (*s)
		*b++ = *s++;
	return b;
}

static char *put_num(char *b, unsigned long n)
{
	char d[24];
	int i = 0;

	do
		d[i++] = '0' + n % 10;
	while (n /= 10);
	while (i)
		*b++ = d[--i];
	return b;
}

static void __attribute__((destructor)) gmem_run_report(void)
{
	unsigned long nalloc = large_allocs, served = large_served;
	char buf[512], *b = buf;

	if (report_fd < 0)
		return;
	for (int i = 0; i < NCLASS; i++) {
		nalloc += classes[i].nalloc;
		served += classes[i].served;
	}
	b = put(b, "gmem-run[");
	b = put_num(b, getpid());
	b = put(b, "]: ");
	if (__atomic_load_n(&disabled, __ATOMIC_RELAXED))
		b = put(b, "gmem not loaded, nothing shareable; ");
	b = put_num(b, __atomic_load_n(&mmap_turned, __ATOMIC_RELAXED));
	b = put(b, " mmap() and ");
	b = put_num(b, __atomic_load_n(&heap_maps, __ATOMIC_RELAXED));
	b = put(b, " heap mappings made MAP_PEER_SHARED; heap served ");
	b = put_num(b, served);
	b = put(b, " bytes in ");
	b = put_num(b, nalloc);
	b = put(b, " blocks (");
	b = put_num(b, large_allocs);
	b = put(b, " large); ");
	b = put_num(b, __atomic_load_n(&foreign, __ATOMIC_RELAXED));
	b = put(b, " foreign pointers ignored\n");
	say(report_fd, buf, b - buf);
}
