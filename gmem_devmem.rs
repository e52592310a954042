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
//! (`memunmap_pages`).  Pools are found from a pfn through [`POOLS`], a
//! fixed table read without locks: an entry is cleared only after
//! `memunmap_pages`, when no page callback can run any more.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use core::{mem, ptr};
use kernel::bindings;
use kernel::c_str;
use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::sync::{new_spinlock, SpinLock};
use kernel::types::Opaque;

use crate::{gmem_fault, GmemDev, STATS};

const PAGE_SIZE: usize = bindings::PAGE_SIZE;
const MAX_POOLS: usize = 16;

/// Every live pool, for lookups by pfn.
static POOLS: [AtomicPtr<DevMem>; MAX_POOLS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_POOLS];

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
    slot: usize,
    /// Free page indices.  Its capacity is `npages`, so pushing never
    /// allocates (pages are freed from any context).
    #[pin]
    free: SpinLock<KVec<usize>>,
    pub(crate) used: AtomicU64,
    pub(crate) to_dev: AtomicU64,
    pub(crate) to_host: AtomicU64,
    pub(crate) cpu_faults: AtomicU64,
}

// SAFETY: Shared state is atomic or behind the spinlock; the raw pointers
// are stable for the pool's life.
unsafe impl Send for DevMem {}
// SAFETY: As above.
unsafe impl Sync for DevMem {}

fn pop(v: &mut KVec<usize>) -> Option<usize> {
    let n = v.len().checked_sub(1)?;
    let x = v[n];
    // SAFETY: Shrinks over an initialised `usize`; nothing to drop.
    unsafe { v.set_len(n) };
    Some(x)
}

impl DevMem {
    /// Gives core MM `size` bytes of device memory for `dev`.
    pub(crate) fn new(dev: &GmemDev, size: usize) -> Result<Pin<KBox<DevMem>>> {
        let npages = size / PAGE_SIZE;
        if npages == 0 {
            return Err(EINVAL);
        }
        let mut free = KVec::with_capacity(npages, GFP_KERNEL)?;
        for i in (0..npages).rev() {
            free.push(i, GFP_KERNEL)?;
        }
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
        let slot = POOLS
            .iter()
            .position(|p| p.load(Ordering::Acquire).is_null())
            .ok_or(ENOSPC)?;
        let pool = KBox::pin_init(
            pin_init!(DevMem {
                // SAFETY: All-zero is an unused pagemap.
                pgmap: Opaque::new(unsafe { mem::zeroed() }),
                res,
                base_pfn: start / PAGE_SIZE,
                npages,
                dev: ptr::from_ref(dev),
                slot,
                free <- new_spinlock!(free, "DevMem::free"),
                used: AtomicU64::new(0),
                to_dev: AtomicU64::new(0),
                to_host: AtomicU64::new(0),
                cpu_faults: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        let raw = ptr::from_ref::<DevMem>(&pool).cast_mut();
        if POOLS[slot]
            .compare_exchange(ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(EBUSY);
        }
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
        if let Err(e) = kernel::error::from_err_ptr(mapped) {
            POOLS[slot].store(ptr::null_mut(), Ordering::Release);
            return Err(e);
        }
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

    /// Takes a free page; `None` when the device memory is full.
    pub(crate) fn alloc(&self) -> Option<usize> {
        let idx = pop(&mut self.free.lock())?;
        self.used.fetch_add(1, Ordering::Relaxed);
        STATS.devmem_used.fetch_add(1, Ordering::Relaxed);
        Some(idx)
    }

    /// Whether a page is free (a hint: it may be gone when allocating).
    pub(crate) fn has_free(&self) -> bool {
        !self.free.lock().is_empty()
    }

    /// The index of `pfn` in this pool, if it is one of its pages.
    pub(crate) fn index_of(&self, pfn: usize) -> Option<usize> {
        pfn.checked_sub(self.base_pfn).filter(|&i| i < self.npages)
    }

    /// The pool `pfn` belongs to.
    pub(crate) fn lookup(pfn: usize) -> Option<&'static DevMem> {
        POOLS.iter().find_map(|p| {
            // SAFETY: A published pool lives until its entry is cleared,
            // after which no pfn of it reaches gmem (see the module docs).
            let pool = unsafe { p.load(Ordering::Acquire).as_ref() }?;
            pool.index_of(pfn).map(|_| pool)
        })
    }

    /// Takes the memory away from core MM: pages in use go back to host
    /// memory, then the pagemap is unmapped once the last reference is
    /// gone.
    pub(crate) fn remove(self: Pin<KBox<Self>>) {
        gmem_fault::evict_all(&self);
        // SAFETY: Mapped in `new`; this waits until every page is free.
        unsafe { bindings::memunmap_pages(self.pgmap.get()) };
        POOLS[self.slot].store(ptr::null_mut(), Ordering::Release);
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

    fn free_page(&self, idx: usize) {
        // Within the capacity reserved in `new`: never allocates.
        let _ = self.free.lock().push(idx, GFP_ATOMIC);
        self.used.fetch_sub(1, Ordering::Relaxed);
        STATS.devmem_used.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `dev_pagemap_ops::page_free`: the last reference to a device page went.
unsafe extern "C" fn devmem_page_free(page: *mut bindings::page) {
    // SAFETY: Core MM passes a page of one of our pagemaps.
    let pfn = unsafe { bindings::page_to_pfn(page) } as usize;
    if let Some(pool) = DevMem::lookup(pfn) {
        if let Some(idx) = pool.index_of(pfn) {
            pool.free_page(idx);
        }
    }
}
