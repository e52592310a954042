// SPDX-License-Identifier: GPL-2.0

//! Device memory: a device's own memory, given to core MM as
//! `MEMORY_DEVICE_PRIVATE` struct pages.
//!
//! The driver keeps the storage and moves data with its copy engine
//! (`copy_to_dev` / `copy_from_dev`); gmem owns the struct pages, their
//! allocation ([`DevMem`]'s free list) and every migration decision.  Core
//! MM sees a device-resident page as a device-private swap entry in the
//! process's page table, so fork, munmap, mremap and exit work on it as on
//! any page; a CPU touch calls [`PGMAP_OPS`]'s `migrate_to_ram` (in
//! `gmem_fault`) and a freed page comes back through `page_free`.
//!
//! # Lifetime
//!
//! A pool lives from `gmem_dev_add_memory()` until its device is
//! unregistered, which first moves every page still in use back to host
//! memory (`gmem_fault::evict_all`), then waits for the last reference
//! (`memunmap_pages`).  A pool is found from one of its pages as the
//! container of the page's `pgmap` ([`DevMem::of_page`]), as test_hmm
//! does: whoever holds the page holds the pagemap, so the pool cannot be
//! removed under the lookup.
//!
//! # Chunks, the LRU and eviction
//!
//! The memory is cut into chunks of [`CHUNK_PAGES`] pages, one 2 MiB
//! block of address space each, as UVM cuts GPU memory into root chunks: a
//! page at offset `i` of a block lives at page `i` of the block's chunk.  A
//! chunk is the unit of eviction, found by pfn range, so evicting needs no
//! address-space lock (`migrate_device_range`).  Each chunk carries a stamp
//! from a clock bumped when pages are allocated in it or the device maps
//! it; the oldest unpinned chunk is the victim when a block needs a chunk
//! and none is free.  A partly used chunk wastes the rest of its pages:
//! the price of evicting whole blocks without looking up what maps them.
//!
//! # Read duplicates
//!
//! A chunk may also hold read-only copies of a read-mostly block's host
//! pages ([`Dup`], see `gmem_fault::duplicate`).  Those pages are never
//! given to core MM: gmem frees them itself when the copies collapse (any
//! invalidation of the block, eviction, context teardown).
//!
//! The rule that keeps them private: **a [`Dup`] belongs to one context,
//! and only that context ever maps it.**  It is found by (context, block,
//! range), installed under its address space's page-table lock, and freed
//! only after its context's mappings of its whole range `[start, end)`
//! were removed under that lock (or the context is dead, with every
//! mapping removed).  The whole range, not what the invalidation that
//! collapses it covered: a CPU write to one page collapses copies of the
//! whole block, whose other pages the device still maps otherwise.  The
//! two paths that free one follow it: [`DevMem::collapse_dups`] (through
//! `retire_dup`) and [`DevMem::evict_dup`].  A chunk may hold several `Dup`s (ranges of one block
//! split by mprotect or by adjacent mappings, or other contexts), linked
//! from the chunk's slot, so installing one never drops another.
//!
//! # Thrashing
//!
//! [`Thrash`] remembers, per block, when it last left the device (evicted,
//! pulled back by a CPU fault or by another device).  A block is thrashing
//! when it left [`THRASH_THRESHOLD`] times within `thrash_lapse_ms` of
//! each other (ping-pong), or when it was evicted and is wanted back before
//! the device allocated [`THRASH_REUSE_FACTOR`] times its memory since (a
//! working set larger than the device, streamed over).  The device then
//! maps it where it is, in host memory, for `thrash_pin_ms` instead of
//! migrating it again (UVM's pinning), which also leaves the blocks
//! already resident where they are.  Times are on the device's clock when
//! its driver keeps one (`read_clock`): what matters is how much work the
//! device did between two departures, which a slow host stretches in wall
//! time but not in device time.  A
//! range unmapped takes its history along ([`Thrash::forget`], when its
//! region is retired): a buffer mapped at the same address later is other
//! data, and used to inherit the holds of the one before.

use core::sync::atomic::{AtomicU64, Ordering};
use core::{mem, ptr};
use kernel::bindings;
use kernel::c_str;
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::sync::{new_spinlock, SpinLock};
use kernel::types::Opaque;

use crate::gmem_policy::{self, Candidate, Pick, ThrashRule};
use crate::{gmem_fault, gmem_trace, GmemCtx, GmemDev, STATS};
use kernel::sync::Arc;

const PAGE_SIZE: usize = bindings::PAGE_SIZE;
/// Pages of a chunk: one fault block.
pub(crate) const CHUNK_PAGES: usize = gmem_fault::FAULT_BLOCK / PAGE_SIZE;
pub(crate) const CHUNK_WORDS: usize = CHUNK_PAGES / 64;

/// A block of one address space: the mm (as a number, never dereferenced)
/// and the block's aligned address.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BlockKey {
    pub(crate) mm: usize,
    pub(crate) block: usize,
}

/// In a chunk's key: the chunk holds read duplicates of the block.
const DUP_KEY_BIT: usize = 1;

impl BlockKey {
    pub(crate) fn new(mm: *mut bindings::mm_struct, addr: usize) -> Self {
        Self {
            mm: mm as usize,
            block: addr & !(gmem_fault::FAULT_BLOCK - 1),
        }
    }

    /// The key of the block's read duplicates.
    pub(crate) fn dup(self) -> Self {
        Self {
            block: self.block | DUP_KEY_BIT,
            ..self
        }
    }

    /// The key of the chunk holding `ctx`'s read duplicates of the block:
    /// the context (as a number, never dereferenced) in place of the mm,
    /// so that two contexts of one device never share a chunk's pages.
    pub(crate) fn of_ctx(self, ctx: &GmemCtx) -> Self {
        Self {
            mm: ptr::from_ref(ctx) as usize,
            ..self
        }
    }

    pub(crate) fn is_dup(&self) -> bool {
        self.block & DUP_KEY_BIT != 0
    }

    /// The block's address.
    pub(crate) fn addr(&self) -> usize {
        self.block & !DUP_KEY_BIT
    }
}

extern "C" {
    /// Drops a reference on each page (gmem_glue.c).
    pub(crate) fn gmem_put_pfns(pfns: *const usize, n: usize);
    /// Takes a reference on each page, or on none (gmem_glue.c).
    pub(crate) fn gmem_get_pfns(pfns: *const usize, n: usize) -> bool;
    /// `page->pgmap` (gmem_glue.c).  `struct page` has members bindgen
    /// cannot lay out, which the FFI lint dislikes; only its address passes.
    #[allow(improper_ctypes)]
    fn gmem_page_pgmap(page: *mut bindings::page) -> *mut bindings::dev_pagemap;
    /// `is_zone_device_page(pfn_to_page(pfn))` (gmem_glue.c).
    fn gmem_pfn_is_zone_device(pfn: usize) -> bool;
}

/// Read-only copies of `[start, end)`'s host pages, in one chunk of one
/// device's memory, mapped by one context.
///
/// # Invariants
///
/// Holds a reference on the context's address space (put when freed), so
/// that an eviction may take its page-table lock even after the context
/// detached.  Only `ctx` maps the copies (see the module docs).
pub(crate) struct Dup {
    pub(crate) ctx: Arc<GmemCtx>,
    pub(crate) key: BlockKey,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The host pages copied, each with a reference held: a CPU write to
    /// one must copy it (with an invalidation, which collapses the copies)
    /// rather than reuse it silently.
    pub(crate) host: KVec<usize>,
    /// The next copies in the same chunk.
    pub(crate) next: Option<KBox<Dup>>,
}

impl Dup {
    /// Whether these are `ctx`'s copies.
    pub(crate) fn is_of(&self, ctx: &GmemCtx) -> bool {
        ptr::eq::<GmemCtx>(&*self.ctx, ctx)
    }

    /// Removes its context's mappings of the whole range.  Under the
    /// page-table lock of the context's address space.
    fn unmap(&self) {
        if !self.ctx.is_dead() {
            self.ctx.invalidate(self.start, self.end);
        }
    }

    /// Whether these are `ctx`'s copies of exactly `[start, end)` of `key`.
    fn is(&self, ctx: &GmemCtx, key: BlockKey, start: usize, end: usize) -> bool {
        self.is_of(ctx) && self.key == key && self.start == start && self.end == end
    }
}

/// Splits the list `head` into what `pred` selects (returned) and the rest
/// (left in `head`).  Allocates nothing.
fn take_dups(head: &mut Option<KBox<Dup>>, pred: &impl Fn(&Dup) -> bool) -> Option<KBox<Dup>> {
    let mut kept = None;
    let mut taken = None;
    let mut cur = head.take();
    while let Some(mut d) = cur {
        cur = d.next.take();
        let list = if pred(&d) { &mut taken } else { &mut kept };
        d.next = list.take();
        *list = Some(d);
    }
    *head = kept;
    taken
}

/// One chunk of device memory.  Free when `used` is 0 and it is not being
/// evicted; `key` and `pinned` only mean something while it is in use.
///
/// # Invariants
///
/// A bit of `gone` is set only where `bits` has one: the page is allocated
/// but holds no data of anyone's (see [`DevMem::retire`]).
#[derive(Clone, Copy, Default)]
struct Chunk {
    key: BlockKey,
    used: u32,
    bits: [u64; CHUNK_WORDS],
    gone: [u64; CHUNK_WORDS],
    stamp: u64,
    /// LRU clock when the device last reported using it, 0 if never
    /// since it was given out.
    used_at: u64,
    pinned: bool,
    evicting: bool,
}

impl Chunk {
    fn is_free(&self) -> bool {
        self.used == 0 && !self.evicting
    }
}

/// The chunk table and the LRU clock.
struct Chunks {
    v: KVec<Chunk>,
    clock: u64,
    /// The chunk of the last allocation: a block's pages come in a row.
    last: usize,
}

/// Percent of a device's memory one address space may pin; written by the
/// module loader.
static mut PIN_LIMIT_PCT: kernel::ffi::c_uint = 50;
uint_param!(
    PIN_LIMIT_PCT,
    "pin_limit_pct",
    0o644,
    PIN_LIMIT_PCT_PARAM,
    PIN_LIMIT_PCT_TYPE,
    PIN_LIMIT_PCT_DESC,
    "Percent of one device's memory one process may pin (default 50)"
);

/// Percent of a device's memory all address spaces together may pin.
static mut PIN_TOTAL_PCT: kernel::ffi::c_uint = 75;
uint_param!(
    PIN_TOTAL_PCT,
    "pin_total_pct",
    0o644,
    PIN_TOTAL_PCT_PARAM,
    PIN_TOTAL_PCT_TYPE,
    PIN_TOTAL_PCT_DESC,
    "Percent of one device's memory all processes together may pin (default 75)"
);

impl Chunks {
    /// Pinned chunks of `mm`, and of everyone.
    fn pinned_counts(&self, mm: usize) -> (usize, usize) {
        let pinned = || self.v.iter().filter(|c| c.used > 0 && c.pinned);
        (
            pinned().filter(|c| c.key.mm == mm).count(),
            pinned().count(),
        )
    }

    /// The most chunks one address space, and all, may pin.
    fn pin_limits(&self) -> (usize, usize) {
        let pct = |p: kernel::ffi::c_uint| self.v.len() * (p.min(100) as usize) / 100;
        (
            pct(param_value!(PIN_LIMIT_PCT)),
            pct(param_value!(PIN_TOTAL_PCT)),
        )
    }

    /// Whether `mm` may pin `want` more chunks.
    fn may_pin(&self, mm: usize, want: usize) -> bool {
        let (mine, all) = self.pinned_counts(mm);
        let (max_mine, max_all) = self.pin_limits();
        mine + want <= max_mine && all + want <= max_all
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The chunk in use for `key`, or a free one, now given to `key`.
    fn for_key(&mut self, key: BlockKey) -> Option<usize> {
        let in_use = |c: &Chunk| c.used > 0 && c.key == key;
        let c = match self.v.get(self.last) {
            Some(c) if in_use(c) => self.last,
            _ => match self.v.iter().position(in_use) {
                Some(c) => c,
                None => {
                    let c = self.v.iter().position(Chunk::is_free)?;
                    self.v[c] = Chunk {
                        key,
                        ..Chunk::default()
                    };
                    c
                }
            },
        };
        self.last = c;
        Some(c)
    }
}

/// What [`DevMem::pick_victim`] found.
pub(crate) enum Victim {
    /// This chunk, holding this block, is now being evicted by the caller.
    Chunk(usize, BlockKey),
    /// Every chunk in use is pinned: nothing can be evicted.
    AllPinned,
    /// Others are evicting what could be; try again shortly.
    Busy,
}

#[repr(transparent)]
struct PgmapOps(bindings::dev_pagemap_ops);

// SAFETY: Function pointers only, never written.
unsafe impl Sync for PgmapOps {}

static PGMAP_OPS: PgmapOps = PgmapOps(bindings::dev_pagemap_ops {
    page_free: Some(devmem_page_free),
    migrate_to_ram: Some(gmem_fault::devmem_migrate_to_ram),
    // SAFETY: All-zero is "no callback" for every other member.
    ..unsafe { mem::MaybeUninit::zeroed().assume_init() }
});

/// One device's memory.
///
/// # Invariants
///
/// `pgmap` is mapped by `memremap_pages()` over `[base_pfn, base_pfn +
/// npages)` (the resource `res`) from [`DevMem::new`] until [`DevMem::remove`];
/// `dev` outlives the pool (the device removes it before it goes).
#[pin_data]
pub(crate) struct DevMem {
    #[pin]
    pgmap: Opaque<bindings::dev_pagemap>,
    res: *mut bindings::resource,
    pub(crate) base_pfn: usize,
    pub(crate) npages: usize,
    dev: *const GmemDev,
    /// The chunks, allocated up front: pages are freed from any context.
    #[pin]
    chunks: SpinLock<Chunks>,
    #[pin]
    pub(crate) thrash: Thrash,
    /// Read duplicates, by chunk.
    #[pin]
    dups: SpinLock<KVec<Option<KBox<Dup>>>>,
    pub(crate) dup_pages: AtomicU64,
    pub(crate) used: AtomicU64,
    pub(crate) to_dev: AtomicU64,
    pub(crate) to_host: AtomicU64,
    pub(crate) cpu_faults: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) oom: AtomicU64,
}

// SAFETY: Shared state is atomic or behind the spinlock; the raw pointers
// are stable for the pool's life.
unsafe impl Send for DevMem {}
// SAFETY: As above.
unsafe impl Sync for DevMem {}

impl DevMem {
    /// Gives core MM `size` bytes of device memory for `dev`.
    pub(crate) fn new(dev: &GmemDev, size: usize) -> Result<Pin<KBox<DevMem>>> {
        let npages = size / PAGE_SIZE;
        if npages == 0 {
            return Err(EINVAL);
        }
        let nchunks = npages.div_ceil(CHUNK_PAGES);
        let chunks = KVec::from_elem(Chunk::default(), nchunks, GFP_KERNEL)?;
        let mut dups = KVec::with_capacity(nchunks, GFP_KERNEL)?;
        for _ in 0..nchunks {
            dups.push(None, GFP_KERNEL)?;
        }
        let thrash_slots = KVec::from_elem(
            ThrashSlot::default(),
            nchunks * THRASH_SLOTS_PER_CHUNK,
            GFP_KERNEL,
        )?;
        // SAFETY: `iomem_resource` is the root of physical address space;
        // the name is static.
        let res = unsafe {
            bindings::request_free_mem_region(
                &raw mut bindings::iomem_resource,
                size as _,
                c_str!("gmem device memory").as_char_ptr(),
            )
        };
        let res = kernel::error::from_err_ptr(res)?;
        // SAFETY: A resource just returned to us.
        let (start, end) = unsafe { ((*res).start as usize, (*res).end as usize) };
        let release = kernel::types::ScopeGuard::new(|| {
            // SAFETY: Requested above and not handed to anyone.
            unsafe {
                bindings::__release_region(&raw mut bindings::iomem_resource, start as _, size as _)
            };
        });
        let pool = KBox::pin_init(
            pin_init!(DevMem {
                // SAFETY: All-zero is an unused pagemap.
                pgmap: Opaque::new(unsafe { mem::zeroed() }),
                res,
                base_pfn: start / PAGE_SIZE,
                npages,
                dev: ptr::from_ref(dev),
                chunks <- new_spinlock!(Chunks {
                    v: chunks,
                    clock: 0,
                    last: 0,
                }, "DevMem::chunks"),
                thrash <- Thrash::new(thrash_slots),
                dups <- new_spinlock!(dups, "DevMem::dups"),
                dup_pages: AtomicU64::new(0),
                used: AtomicU64::new(0),
                to_dev: AtomicU64::new(0),
                to_host: AtomicU64::new(0),
                cpu_faults: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                oom: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: The pagemap is pinned in the box and not yet in use; the
        // ops table is static; the owner token is the device, which
        // outlives the pool.
        let mapped = unsafe {
            let pg = pool.pgmap.get();
            (*pg).type_ = bindings::memory_type_MEMORY_DEVICE_PRIVATE;
            (*pg).nr_range = 1;
            let range = (*pg).__bindgen_anon_1.range.as_mut();
            range.start = start as _;
            range.end = end as _;
            (*pg).ops = &PGMAP_OPS.0;
            (*pg).owner = pool.owner();
            bindings::memremap_pages(pg, bindings::NUMA_NO_NODE)
        };
        kernel::error::from_err_ptr(mapped)?;
        release.dismiss();
        STATS
            .devmem_pages
            .fetch_add(npages as u64, Ordering::Relaxed);
        Ok(pool)
    }

    /// The token core MM matches against `pgmap->owner`: the device.
    pub(crate) fn owner(&self) -> *mut c_void {
        self.dev.cast_mut().cast()
    }

    pub(crate) fn device(&self) -> &GmemDev {
        // SAFETY: The device outlives its pool (type invariant).
        unsafe { &*self.dev }
    }

    /// Takes page `off` of the chunk of `key` (given a free chunk if it has
    /// none), `pinned` making that chunk unevictable.  `None` when no chunk
    /// is free or that page is taken (a block remapped by mremap may find
    /// its old pages still there): the page is then used in place.
    pub(crate) fn alloc(&self, key: BlockKey, off: usize, pinned: bool) -> Option<usize> {
        let mut chunks = self.chunks.lock();
        let c = chunks.for_key(key)?;
        let idx = c * CHUNK_PAGES + off;
        let (w, bit) = (off / 64, 1u64 << (off % 64));
        if idx >= self.npages || chunks.v[c].bits[w] & bit != 0 {
            return None;
        }
        // Over a pin limit the chunk stays evictable: pins are bounded
        // even for ranges pinned while they were elsewhere.
        let pin = pinned && (chunks.v[c].pinned || chunks.may_pin(key.mm, 1));
        let stamp = chunks.tick();
        let chunk = &mut chunks.v[c];
        chunk.bits[w] |= bit;
        chunk.used += 1;
        chunk.stamp = stamp;
        chunk.pinned |= pin;
        drop(chunks);
        self.used.fetch_add(1, Ordering::Relaxed);
        STATS.devmem_used.fetch_add(1, Ordering::Relaxed);
        Some(idx)
    }

    /// Whether a block could get a page now without evicting.
    pub(crate) fn has_room(&self, key: BlockKey) -> bool {
        let chunks = self.chunks.lock();
        chunks
            .v
            .iter()
            .any(|c| c.is_free() || (c.used > 0 && c.key == key))
    }

    /// Marks the chunks in use for `keys` recently used and in use (the
    /// device says it uses them); whether there was any.  The clock does
    /// not tick: it counts allocations, which the thrashing rule measures
    /// distance in.
    pub(crate) fn touch(&self, keys: &[BlockKey]) -> bool {
        let mut chunks = self.chunks.lock();
        let now = chunks.clock;
        let mut found = false;
        for c in chunks.v.iter_mut() {
            if c.used > 0 && !c.evicting && keys.contains(&c.key) {
                c.stamp = now;
                c.used_at = now.max(1);
                found = true;
            }
        }
        found
    }

    /// Whether some of block `key`'s pages are in this memory.
    pub(crate) fn holds_block(&self, key: BlockKey) -> bool {
        let chunks = self.chunks.lock();
        chunks.v.iter().any(|c| c.used > 0 && c.key == key)
    }

    /// Marks the chunk of page `idx` recently used: the device mapped it.
    pub(crate) fn touch_page(&self, idx: usize) {
        let mut chunks = self.chunks.lock();
        let stamp = chunks.tick();
        if let Some(c) = chunks.v.get_mut(idx / CHUNK_PAGES) {
            c.stamp = stamp;
        }
    }

    /// Picks the least recently used chunk that is neither pinned nor
    /// `keep`'s, and marks it being evicted; [`end_evict`] ends that.
    ///
    /// [`end_evict`]: Self::end_evict
    pub(crate) fn pick_victim(&self, keep: BlockKey) -> Victim {
        let mut chunks = self.chunks.lock();
        let (clock, window) = (chunks.clock, THRASH_REUSE_FACTOR * self.npages as u64);
        let candidates = chunks.v.iter().map(|c| Candidate {
            evictable: c.used > 0 && !c.pinned && c.key != keep,
            evicting: c.evicting,
            stamp: c.stamp,
            in_use: c.used_at != 0 && clock.saturating_sub(c.used_at) < window,
        });
        match gmem_policy::pick_lru(candidates) {
            Pick::Chunk(i) => {
                chunks.v[i].evicting = true;
                Victim::Chunk(i, chunks.v[i].key)
            }
            Pick::Busy => Victim::Busy,
            Pick::AllPinned => Victim::AllPinned,
        }
    }

    /// Ends the eviction of chunk `c`; pages that could not move (locked
    /// by a racing fault) keep it in use, now as the most recent.
    pub(crate) fn end_evict(&self, c: usize) {
        let mut chunks = self.chunks.lock();
        let stamp = chunks.tick();
        chunks.v[c].evicting = false;
        chunks.v[c].stamp = stamp;
    }

    /// Whether a thrashing hold of `key` is in force, starting none.
    pub(crate) fn is_held(&self, key: BlockKey) -> bool {
        self.thrash.is_held(key, self.now_ms())
    }

    /// Whether the thrashing table holds `key` back from this device.
    pub(crate) fn holds_back(&self, key: BlockKey) -> bool {
        self.thrash
            .holds_back(key, self.now_ms(), self.clock(), self.npages)
    }

    /// Records in the thrashing table that `key`'s pages left the device;
    /// `evicted_at` is the LRU clock if it was an eviction.
    pub(crate) fn departed(&self, key: BlockKey, evicted_at: Option<u64>) {
        self.thrash.departed(key, self.now_ms(), evicted_at);
    }

    /// Serves reads of `key` on this device by copies for a while: a
    /// device read it while it was in another device's memory.
    pub(crate) fn share(&self, key: BlockKey) {
        self.thrash.with_slot(
            key,
            |s, now, r| {
                // An active hold of another block keeps its slot.
                if s.key == key || !s.held(s.key, now) {
                    s.share(key, now, r);
                }
            },
            self.now_ms(),
        );
    }

    /// Whether reads of `key` are served by copies (see [`share`]).
    ///
    /// [`share`]: Self::share
    pub(crate) fn is_shared(&self, key: BlockKey) -> bool {
        self.thrash
            .with_slot(key, |s, now, _| s.shared(key, now), self.now_ms())
    }

    /// Ends the sharing of `key`: a device writes it.
    pub(crate) fn unshare(&self, key: BlockKey) {
        self.thrash.with_slot(key, |s, _, _| s.unshare(key), 0);
    }

    /// Now for the thrashing table, in ms: the device's own clock if its
    /// driver keeps one, wall time otherwise.  Device time is what a
    /// migration must pay for, and does not stretch when the host is slow
    /// (a simulator, TCG): a round trip that takes seconds of wall time
    /// there is milliseconds of the device's.
    fn now_ms(&self) -> u64 {
        match self.device().read_clock() {
            Some(c) => c.ns / 1_000_000,
            None => wall_ms(),
        }
    }

    /// The LRU clock: ticks once per page allocated and per mapping.
    pub(crate) fn clock(&self) -> u64 {
        self.chunks.lock().clock
    }

    /// Pages and number of chunk `c`.
    pub(crate) fn chunk_range(&self, c: usize) -> (usize, usize) {
        let first = c * CHUNK_PAGES;
        (first, CHUNK_PAGES.min(self.npages - first))
    }

    /// The address of the block chunk `c` holds (meaningful while in use).
    pub(crate) fn chunk_block(&self, c: usize) -> usize {
        self.chunks.lock().v[c].key.addr()
    }

    /// Pages of chunk `c` in use.
    pub(crate) fn chunk_used(&self, c: usize) -> u32 {
        self.chunks.lock().v[c].used
    }

    /// Whether chunk `c` is in use and pinned.
    pub(crate) fn chunk_pinned(&self, c: usize) -> bool {
        let chunks = self.chunks.lock();
        chunks.v[c].used > 0 && chunks.v[c].pinned
    }

    /// Number of chunks.
    pub(crate) fn nchunks(&self) -> usize {
        self.npages.div_ceil(CHUNK_PAGES)
    }

    /// Pins (or unpins) the chunks holding blocks of `mm` in `[start,
    /// end)`, pinning only within the limits; returns how many changed.
    pub(crate) fn set_pinned(&self, mm: usize, start: usize, end: usize, pinned: bool) -> usize {
        let first = start & !(gmem_fault::FAULT_BLOCK - 1);
        let mut n = 0;
        let mut chunks = self.chunks.lock();
        for i in 0..chunks.v.len() {
            let c = chunks.v[i];
            if c.used == 0
                || c.key.mm != mm
                || c.key.is_dup()
                || !(first..end).contains(&c.key.block)
            {
                continue;
            }
            if c.pinned == pinned || (pinned && !chunks.may_pin(mm, 1)) {
                continue;
            }
            chunks.v[i].pinned = pinned;
            n += 1;
        }
        n
    }

    /// `ENOMEM` if pinning the blocks of `[start, end)` of `mm` would take
    /// it over `pin_limit_pct` of this device's memory, or all address
    /// spaces together over `pin_total_pct`: what one user pins never
    /// starves another.  Blocks already pinned count once.
    pub(crate) fn check_pin(&self, mm: usize, start: usize, end: usize) -> Result {
        let block = gmem_fault::FAULT_BLOCK;
        let first = start & !(block - 1);
        let blocks = (end - first).div_ceil(block);
        let chunks = self.chunks.lock();
        let held = chunks
            .v
            .iter()
            .filter(|c| c.pinned && c.used > 0 && c.key.mm == mm && !c.key.is_dup())
            .filter(|c| (first..end).contains(&c.key.block))
            .count();
        if !chunks.may_pin(mm, blocks.saturating_sub(held)) {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Pages in pinned chunks.
    pub(crate) fn pinned_pages(&self) -> usize {
        let chunks = self.chunks.lock();
        chunks
            .v
            .iter()
            .filter(|c| c.used > 0 && c.pinned)
            .map(|c| c.used as usize)
            .sum()
    }

    /// The index of `pfn` in this pool, if it is one of its pages.
    pub(crate) fn index_of(&self, pfn: usize) -> Option<usize> {
        pfn.checked_sub(self.base_pfn).filter(|&i| i < self.npages)
    }

    /// The pool of `page`, a device-private page of gmem.
    ///
    /// # Safety
    ///
    /// `page` must be a page of one of gmem's pagemaps (`PGMAP_OPS`), on
    /// which the caller holds a reference or which core MM passes to a
    /// pagemap callback: either keeps the pagemap, hence the pool, alive.
    pub(crate) unsafe fn of_page<'a>(page: *mut bindings::page) -> &'a DevMem {
        // SAFETY: Per the contract the page's pagemap is the `pgmap` field
        // of a live `DevMem`.
        unsafe {
            let pgmap = gmem_page_pgmap(page);
            &*(pgmap
                .cast::<u8>()
                .sub(mem::offset_of!(DevMem, pgmap))
                .cast::<DevMem>())
        }
    }

    /// Whether `pfn` is device memory (gmem's or anyone's).
    pub(crate) fn is_device_pfn(pfn: usize) -> bool {
        // SAFETY: Only reads the page's zone; `pfn` came from a page table.
        unsafe { gmem_pfn_is_zone_device(pfn) }
    }

    /// Takes the memory away from core MM: pages in use go back to host
    /// memory, then the pagemap is unmapped once the last reference is
    /// gone.
    pub(crate) fn remove(self: Pin<KBox<Self>>) {
        gmem_fault::evict_all(&self);
        // SAFETY: Mapped in `new`; this waits until every page is free.
        unsafe { bindings::memunmap_pages(self.pgmap.get()) };
        // SAFETY: Requested in `new` (and freed by this call); nothing
        // uses the range any more.
        unsafe {
            let (start, size) = ((*self.res).start, (*self.res).end - (*self.res).start + 1);
            bindings::__release_region(&raw mut bindings::iomem_resource, start, size)
        };
        STATS
            .devmem_pages
            .fetch_sub(self.npages as u64, Ordering::Relaxed);
    }

    /// The chunk of `ctx`'s installed duplicates of `key` over `[start,
    /// end)`.  Under the address space's page-table lock.
    pub(crate) fn dup_chunk(
        &self,
        ctx: &GmemCtx,
        key: BlockKey,
        start: usize,
        end: usize,
    ) -> Option<usize> {
        let dups = self.dups.lock();
        dups.iter().position(|head| {
            let mut cur = head.as_deref();
            while let Some(d) = cur {
                if d.is(ctx, key, start, end) {
                    return true;
                }
                cur = d.next.as_deref();
            }
            false
        })
    }

    /// Installs duplicates whose copies are the pages from `first_idx`,
    /// beside any others in that chunk.  Under the address space's
    /// page-table lock; allocates nothing.
    pub(crate) fn install_dup(&self, mut dup: KBox<Dup>, first_idx: usize) {
        let n = ((dup.end - dup.start) / PAGE_SIZE) as u64;
        let mut dups = self.dups.lock();
        let head = &mut dups[first_idx / CHUNK_PAGES];
        dup.next = head.take();
        *head = Some(dup);
        drop(dups);
        self.dup_pages.fetch_add(n, Ordering::Relaxed);
        STATS.dup_pages.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes out the duplicates `pred` selects and retires them (see
    /// [`retire_dup`](Self::retire_dup)).  Under the page-table lock of
    /// their address space; allocates nothing and never sleeps.
    pub(crate) fn collapse_dups(&self, pred: impl Fn(&Dup) -> bool) {
        // Every invalidation comes here: most find no copies at all.  An
        // installation is ordered before by the page-table lock both hold.
        if self.dup_pages.load(Ordering::Relaxed) == 0 {
            return;
        }
        for c in 0..self.nchunks() {
            let mut taken = take_dups(&mut self.dups.lock()[c], &pred);
            while let Some(mut d) = taken {
                taken = d.next.take();
                self.retire_dup(c, d);
                STATS.dup_collapses.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The one way copies go: their context stops mapping all of their
    /// range (an invalidation that touched one page of it removed only
    /// that page), then their pages are freed, to be reused at once.
    /// Under the page-table lock of their address space, with `d` out of
    /// the table.
    fn retire_dup(&self, c: usize, d: KBox<Dup>) {
        d.unmap();
        self.free_dup(c, d);
    }

    /// Frees the copies of `d`, taken out of chunk `c`.
    fn free_dup(&self, c: usize, d: KBox<Dup>) {
        let first = c * CHUNK_PAGES + (d.start - d.key.addr()) / PAGE_SIZE;
        let n = (d.end - d.start) / PAGE_SIZE;
        for idx in first..first + n {
            let _ = self.free_page(idx);
        }
        // SAFETY: The references taken when the copies were made.
        unsafe { gmem_put_pfns(d.host.as_ptr(), d.host.len()) };
        self.dup_pages.fetch_sub(n as u64, Ordering::Relaxed);
        STATS.dup_pages.fetch_sub(n as u64, Ordering::Relaxed);
        gmem_trace::dup_collapse(self.device().id(), d.start, d.end, n);
        // Never the last reference under the page-table lock: a context
        // that is attached holds one too (the other callers hold none).
        d.ctx.address_space().put();
    }

    /// Evicts the duplicates in chunk `c`: each one's context stops mapping
    /// it, then it is freed.  No gmem lock held.
    pub(crate) fn evict_dup(&self, c: usize) -> usize {
        let mut taken = self.dups.lock()[c].take();
        let mut moved = 0;
        // The chunk holds copies of one block (its key): one departure.
        let mut block = None;
        while let Some(mut d) = taken {
            taken = d.next.take();
            {
                let _pt = d.ctx.address_space().pt.lock();
                d.unmap();
            }
            moved += (d.end - d.start) / PAGE_SIZE;
            block = Some(BlockKey {
                mm: d.key.mm,
                block: d.key.addr(),
            });
            // Outside the lock: the reference `d` holds on the address
            // space may be the last one (its context detached).
            self.free_dup(c, d);
        }
        // A block whose copies keep being evicted is streamed over, as one
        // whose pages do: the thrashing table sees both.
        if let Some(block) = block {
            self.departed(block, Some(self.clock()));
        }
        moved
    }

    /// Page `idx` no longer holds data: its contents moved to the host, or
    /// the migration meant to fill it failed.  Called while the migration
    /// still holds the page locked, before it is unlocked and put.  Until
    /// its last reference goes, eviction may still collect the page by pfn
    /// range (`migrate_device_range` takes any referenced page it can
    /// lock), and must then leave it alone ([`DevMem::chunk_gone`]): moving it
    /// would copy stale data into a host page that no memcg is charged for.
    pub(crate) fn retire(&self, idx: usize) {
        let mut chunks = self.chunks.lock();
        let off = idx % CHUNK_PAGES;
        if let Some(c) = chunks.v.get_mut(idx / CHUNK_PAGES) {
            // INVARIANT: Only an allocated page is marked.
            c.gone[off / 64] |= c.bits[off / 64] & (1u64 << (off % 64));
        }
    }

    /// The pages of chunk `c` that were retired and wait for their last
    /// reference, one bit per page.
    pub(crate) fn chunk_gone(&self, c: usize) -> [u64; CHUNK_WORDS] {
        self.chunks
            .lock()
            .v
            .get(c)
            .map_or([0; CHUNK_WORDS], |c| c.gone)
    }

    /// Frees page `idx`; returns the block its chunk held and whether the
    /// page was retired ([`DevMem::retire`]).
    pub(crate) fn free_page(&self, idx: usize) -> Option<(BlockKey, bool)> {
        let freed = {
            let mut chunks = self.chunks.lock();
            let c = chunks.v.get_mut(idx / CHUNK_PAGES)?;
            let off = idx % CHUNK_PAGES;
            let gone = c.gone[off / 64] & (1u64 << (off % 64)) != 0;
            c.bits[off / 64] &= !(1u64 << (off % 64));
            c.gone[off / 64] &= !(1u64 << (off % 64));
            c.used -= 1;
            if c.used == 0 {
                c.pinned = false;
            }
            (c.key, gone)
        };
        self.used.fetch_sub(1, Ordering::Relaxed);
        STATS.devmem_used.fetch_sub(1, Ordering::Relaxed);
        Some(freed)
    }
}

/// `dev_pagemap_ops::page_free`: the last reference to a device page went.
///
/// # Safety
///
/// Called by core MM only, for a page of a gmem pool's pagemap whose last
/// reference went.
unsafe extern "C" fn devmem_page_free(page: *mut bindings::page) {
    // SAFETY: Core MM passes a page of one of our pagemaps.
    let (pool, pfn) = unsafe { (DevMem::of_page(page), bindings::page_to_pfn(page) as usize) };
    if let Some(idx) = pool.index_of(pfn) {
        // A page no migration emptied goes with its data.
        if let Some((key, false)) = pool.free_page(idx) {
            let addr = key.addr() + (idx % CHUNK_PAGES) * PAGE_SIZE;
            gmem_trace::drop(pool.device().id(), addr, addr + PAGE_SIZE, 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Thrashing.

/// Slots of the thrashing table (direct-mapped by block) per chunk of device
/// memory: enough for every block a stream evicts within the reuse window.
const THRASH_SLOTS_PER_CHUNK: usize = THRASH_REUSE_FACTOR as usize;
/// Departures of one block within this many ms of each other count
/// together (UVM's `uvm_perf_thrashing_lapse_usec`); root may change it,
/// as the right value depends on how fast the machine moves a block.
static mut THRASH_LAPSE_MS: kernel::ffi::c_uint = 200;
uint_param!(
    THRASH_LAPSE_MS,
    "thrash_lapse_ms",
    0o644,
    THRASH_LAPSE_MS_PARAM,
    THRASH_LAPSE_MS_TYPE,
    THRASH_LAPSE_MS_DESC,
    "Departures of a block within this many ms of each other (device time if the driver keeps a clock) count as thrashing (default 200)"
);

fn thrash_lapse_ms() -> u64 {
    u64::from(param_value!(THRASH_LAPSE_MS))
}
/// Departures that make a block thrashing.
pub(crate) const THRASH_THRESHOLD: u32 = 3;
/// How many ms a thrashing block stays in host memory, mapped in place
/// (UVM's `uvm_perf_thrashing_pin`); root may change it.
static mut THRASH_PIN_MS: kernel::ffi::c_uint = 1000;
uint_param!(
    THRASH_PIN_MS,
    "thrash_pin_ms",
    0o644,
    THRASH_PIN_MS_PARAM,
    THRASH_PIN_MS_TYPE,
    THRASH_PIN_MS_DESC,
    "How long a thrashing block stays in host memory, in ms (device time if the driver keeps a clock; default 1000)"
);
/// An evicted block wanted back within this many device memories' worth of
/// allocations is thrashing.
pub(crate) const THRASH_REUSE_FACTOR: u64 = 4;
/// ... and within this long.
pub(crate) const THRASH_REUSE_MS: u64 = 5000;

type ThrashSlot = gmem_policy::ThrashSlot<BlockKey>;

/// The thrashing rule with the module parameters' current values.
fn thrash_rule() -> ThrashRule {
    ThrashRule {
        lapse_ms: thrash_lapse_ms(),
        threshold: THRASH_THRESHOLD,
        reuse_factor: THRASH_REUSE_FACTOR,
        reuse_ms: THRASH_REUSE_MS,
        pin_ms: u64::from(param_value!(THRASH_PIN_MS)),
    }
}

/// Recent departures of blocks from one device.  A direct-mapped table: a
/// collision forgets an older block, which at worst migrates once more.
#[pin_data]
pub(crate) struct Thrash {
    #[pin]
    slots: SpinLock<KVec<ThrashSlot>>,
    pub(crate) pins: AtomicU64,
}

fn wall_ms() -> u64 {
    // SAFETY: Reading the jiffies counter, a word on 64-bit.
    unsafe {
        bindings::jiffies64_to_msecs(core::ptr::read_volatile(&raw const bindings::jiffies_64))
    }
}

impl Thrash {
    fn new(slots: KVec<ThrashSlot>) -> impl PinInit<Self> {
        pin_init!(Self {
            slots <- new_spinlock!(slots, "Thrash::slots"),
            pins: AtomicU64::new(0),
        })
    }

    fn slot(key: BlockKey, n: usize) -> usize {
        gmem_policy::thrash_slot(key.block / gmem_fault::FAULT_BLOCK, key.mm, n)
    }

    /// Whether `key` is held at `now`; unlike
    /// [`holds_back`](Self::holds_back) it starts no hold.
    fn is_held(&self, key: BlockKey, now: u64) -> bool {
        let slots = self.slots.lock();
        slots[Self::slot(key, slots.len())].held(key, now)
    }

    /// Calls `f` with the slot of `key`, `now` and the rule.
    fn with_slot<R>(
        &self,
        key: BlockKey,
        f: impl FnOnce(&mut ThrashSlot, u64, &ThrashRule) -> R,
        now: u64,
    ) -> R {
        let rule = thrash_rule();
        let mut slots = self.slots.lock();
        let n = slots.len();
        f(&mut slots[Self::slot(key, n)], now, &rule)
    }

    /// Forgets what the table knows of the blocks of `mm` in `[start,
    /// end)`: they were unmapped, and a mapping made there later is other
    /// data, which must not inherit their holds.
    pub(crate) fn forget(&self, mm: usize, start: usize, end: usize) {
        let mut slots = self.slots.lock();
        for s in slots.iter_mut() {
            if s.key.mm == mm && s.key.block < end && start < s.key.block + gmem_fault::FAULT_BLOCK
            {
                *s = ThrashSlot::default();
            }
        }
    }

    /// Records that `key`'s pages left the device at `now`; `evicted_at`
    /// is the LRU clock if it was an eviction.
    fn departed(&self, key: BlockKey, now: u64, evicted_at: Option<u64>) {
        let rule = thrash_rule();
        let mut slots = self.slots.lock();
        let n = slots.len();
        slots[Self::slot(key, n)].departed(key, now, evicted_at, &rule);
    }

    /// Whether `key` must stay where it is rather than migrate to the
    /// device: it is pinned for thrashing, or starts to be now.  `clock`
    /// is the device's LRU clock, `pages` the size of its memory.
    fn holds_back(&self, key: BlockKey, now: u64, clock: u64, pages: usize) -> bool {
        let rule = thrash_rule();
        let mut started = false;
        let held = {
            let mut slots = self.slots.lock();
            let n = slots.len();
            slots[Self::slot(key, n)].holds_back(key, now, clock, pages as u64, &rule, &mut started)
        };
        if started {
            self.pins.fetch_add(1, Ordering::Relaxed);
            STATS.thrash_pins.fetch_add(1, Ordering::Relaxed);
        }
        held
    }
}
