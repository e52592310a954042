// SPDX-License-Identifier: GPL-2.0

//! gmem core: the device registry, the per-process address spaces and the
//! driver interface.
//!
//! gmem.ko is this crate plus `gmem_glue.c`, which only exports the
//! `extern "C"` functions defined here (Rust cannot emit `EXPORT_SYMBOL` in
//! 6.12).  Drivers see the interface of `<linux/gmem.h>`: C drivers call it
//! directly, Rust drivers through the `GmemDevOps` trait of `gmem_dev.rs`.
//!
//! # Objects and their lifetimes
//!
//! - [`Registry`]: one per loaded module, created in `init`, published in
//!   [`REGISTRY`] before the mm hooks are installed and the exports become
//!   callable, and freed only after both are gone.
//! - [`GmemDev`]: one per registered device.  Registration takes a reference
//!   on gmem.ko; unregistration drops it.  Every entry point that reaches
//!   the device holds its lifetime guard ([`DevGuard`]); unregistration
//!   refuses new ones and waits for those in flight before it tears the
//!   device's contexts and memory down.
//! - [`GmemAs`]: one per `mm_struct` with regions, attached devices or a
//!   MAP_PEER_SHARED mapping (held from the first one until exit).  It
//!   is the `mmu_notifier` of that mm, found or created with
//!   `mmu_notifier_get_locked()`, so core MM keeps the mm-to-address-space
//!   map.  It counts its users itself (`refs`: regions, contexts, a queued
//!   work item) and holds one notifier reference while that count is
//!   non-zero; the last `put` lets core MM free it after an SRCU grace
//!   period (`free_notifier`).  Process exit (`release`) removes every
//!   device mapping; regions go as exit unmaps their VMAs, contexts when
//!   their drivers detach, in any order.  An address space holds a
//!   reference on gmem.ko from allocation to free; module exit waits for
//!   pending frees with `mmu_notifier_synchronize()`.
//! - [`GmemCtx`]: one per (device, address space), from
//!   `gmem_ctx_attach()` to `gmem_ctx_detach()`; device unregistration
//!   tears its driver side down early.
//! - Regions: see `gmem_vma`.
//!
//! gmem.ko therefore cannot be unloaded while any device or any address
//! space exists; `rmmod` gets `EAGAIN` (refcount non-zero) until then.
//!
//! # Lock order
//!
//! This is the one place where the order is written down; every module
//! follows it.
//!
//! 1. `mmap_lock` of the mm (core MM: held for write by the mmap hook, for
//!    read by the fault path, and by core MM around most invalidations).
//! 2. `Registry::devices`.
//! 3. `GmemDev::ctxs`.
//! 4. `GmemAs::regions`.
//! 5. `GmemAs::pt`, the page-table lock: taken by every invalidation (mmu
//!    notifier callbacks, with `try_lock` when they may not sleep) and by
//!    the fault path to commit device mappings.
//!
//! Leaf locks, under which nothing else is taken: `GmemDev::active` (the
//! lifetime guard's count, held only to count), `GmemCtx::drv_lock`
//! (around `prepare`; teardown takes it once, after marking the context
//! dead, to wait for a `prepare` in flight), `DevMem::chunks`,
//! `DevMem::dups` (taken under `GmemAs::pt` and released before anything
//! else is taken), `Thrash::slots`, `GmemAs::stale_span`, and the
//! drivers' own MMU locks.
//!
//! Eviction (`gmem_fault::make_room`) holds none of these while it works:
//! it picks a victim under `DevMem::chunks`, then migrates with no gmem
//! lock and no `mmap_lock`, taking only the victim's page-table lock
//! (level 5) to unmap read duplicates.
//!
//! A driver's `map` and `invalidate` run under `GmemAs::pt` and must not
//! call back into gmem, nor may `read_clock`, which may run under it too
//! (a block becoming shared); `ctx_create` and `ctx_destroy` run with no gmem
//! lock held (a context is published under `GmemDev::ctxs` after it was
//! created, and destroyed after every lock was dropped).  Notifiers are never inserted or removed under a gmem lock:
//! insertion may take `mmap_lock` and removal waits for callbacks.

// `pin_init!` of the larger structures nests deeper than the default.
#![recursion_limit = "256"]

use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::bindings;
use kernel::error::from_result;
use kernel::ffi::{c_char, c_int, c_void};
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::str::CString;
use kernel::sync::{new_condvar, new_mutex, new_spinlock, Arc, CondVar, Mutex, SpinLock};
use kernel::types::Opaque;
use kernel::{c_str, fmt};

#[macro_use]
mod gmem_param;
mod gmem_debugfs;
mod gmem_devmem;
mod gmem_fault;
mod gmem_ioctl;
mod gmem_mm;
mod gmem_policy;
mod gmem_sync;
mod gmem_trace;
mod gmem_uaccess;
mod gmem_vma;

use gmem_devmem::{BlockKey, DevMem};
use gmem_mm::MmWriteLocked;
use gmem_sync::TryMutex;
use gmem_vma::Regions;

module! {
    type: GmemModule,
    name: "gmem",
    author: "gmem developers",
    description: "Shared virtual memory for accelerators on HMM",
    license: "GPL",
}

/// Global counters, shown in debugfs `gmem/stats`.
///
/// Plain atomics: they are read as a snapshot and need no lock.
pub(crate) struct Stats {
    pub(crate) devices: AtomicU64,
    pub(crate) address_spaces: AtomicU64,
    pub(crate) contexts: AtomicU64,
    pub(crate) regions: AtomicU64,
    pub(crate) peer_shared_mmaps: AtomicU64,
    pub(crate) peer_shared_bytes: AtomicU64,
    pub(crate) device_faults: AtomicU64,
    pub(crate) fault_pages: AtomicU64,
    pub(crate) fault_retries: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) devmem_pages: AtomicU64,
    pub(crate) devmem_used: AtomicU64,
    pub(crate) migrated_to_dev: AtomicU64,
    pub(crate) migrated_to_host: AtomicU64,
    pub(crate) cpu_devmem_faults: AtomicU64,
    pub(crate) thrash_pins: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) evicted_pages: AtomicU64,
    pub(crate) oom_faults: AtomicU64,
    pub(crate) dup_pages: AtomicU64,
    pub(crate) dup_collapses: AtomicU64,
    pub(crate) discarded_pages: AtomicU64,
    pub(crate) counter_notifications: AtomicU64,
    pub(crate) counter_migrations: AtomicU64,
    /// Notifications for blocks already in device memory: LRU refreshes.
    pub(crate) counter_refreshes: AtomicU64,
    /// Faults devices reported (one per `gmem_dev_fault`, one per entry of
    /// a batch), and the wall time gmem took to serve them.
    pub(crate) fault_entries: AtomicU64,
    pub(crate) fault_service_ns: AtomicU64,
    /// Calls of `gmem_dev_fault_batch`, and their entries another fault of
    /// the batch served.
    pub(crate) fault_batches: AtomicU64,
    pub(crate) batch_dups: AtomicU64,
    /// Calls of drivers' `invalidate` op, and the wall time gmem spent
    /// removing device mappings for address-space invalidations.
    pub(crate) device_invalidations: AtomicU64,
    pub(crate) invalidate_ns: AtomicU64,
    /// Wall time of migrations to device memory (making room and the
    /// invalidations included).
    pub(crate) migrate_ns: AtomicU64,
    /// Wall time of CPU faults on device pages (`migrate_to_ram`).
    pub(crate) faultback_ns: AtomicU64,
}

impl Stats {
    const fn new() -> Self {
        Self {
            devices: AtomicU64::new(0),
            address_spaces: AtomicU64::new(0),
            contexts: AtomicU64::new(0),
            regions: AtomicU64::new(0),
            peer_shared_mmaps: AtomicU64::new(0),
            peer_shared_bytes: AtomicU64::new(0),
            device_faults: AtomicU64::new(0),
            fault_pages: AtomicU64::new(0),
            fault_retries: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            devmem_pages: AtomicU64::new(0),
            devmem_used: AtomicU64::new(0),
            migrated_to_dev: AtomicU64::new(0),
            migrated_to_host: AtomicU64::new(0),
            cpu_devmem_faults: AtomicU64::new(0),
            thrash_pins: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            evicted_pages: AtomicU64::new(0),
            oom_faults: AtomicU64::new(0),
            dup_pages: AtomicU64::new(0),
            dup_collapses: AtomicU64::new(0),
            discarded_pages: AtomicU64::new(0),
            counter_notifications: AtomicU64::new(0),
            counter_migrations: AtomicU64::new(0),
            counter_refreshes: AtomicU64::new(0),
            fault_entries: AtomicU64::new(0),
            fault_service_ns: AtomicU64::new(0),
            fault_batches: AtomicU64::new(0),
            batch_dups: AtomicU64::new(0),
            device_invalidations: AtomicU64::new(0),
            invalidate_ns: AtomicU64::new(0),
            migrate_ns: AtomicU64::new(0),
            faultback_ns: AtomicU64::new(0),
        }
    }

    /// Lines of `name value`, in a fixed order that tools can rely on.
    pub(crate) fn show(&self, w: &mut impl Write) -> core::fmt::Result {
        let rows = [
            ("devices", &self.devices),
            ("address_spaces", &self.address_spaces),
            ("contexts", &self.contexts),
            ("regions", &self.regions),
            ("peer_shared_mmaps", &self.peer_shared_mmaps),
            ("peer_shared_bytes", &self.peer_shared_bytes),
            ("device_faults", &self.device_faults),
            ("fault_pages", &self.fault_pages),
            ("fault_retries", &self.fault_retries),
            ("invalidations", &self.invalidations),
            ("devmem_pages", &self.devmem_pages),
            ("devmem_used", &self.devmem_used),
            ("migrated_to_dev", &self.migrated_to_dev),
            ("migrated_to_host", &self.migrated_to_host),
            ("cpu_devmem_faults", &self.cpu_devmem_faults),
            ("thrash_pins", &self.thrash_pins),
            ("evictions", &self.evictions),
            ("evicted_pages", &self.evicted_pages),
            ("oom_faults", &self.oom_faults),
            ("dup_pages", &self.dup_pages),
            ("dup_collapses", &self.dup_collapses),
            ("discarded_pages", &self.discarded_pages),
            ("counter_notifications", &self.counter_notifications),
            ("counter_migrations", &self.counter_migrations),
            ("counter_refreshes", &self.counter_refreshes),
            ("fault_entries", &self.fault_entries),
            ("fault_service_ns", &self.fault_service_ns),
            ("fault_batches", &self.fault_batches),
            ("batch_dups", &self.batch_dups),
            ("device_invalidations", &self.device_invalidations),
            ("invalidate_ns", &self.invalidate_ns),
            ("migrate_ns", &self.migrate_ns),
            ("faultback_ns", &self.faultback_ns),
        ];
        for (name, value) in rows {
            writeln!(w, "{} {}", name, value.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

pub(crate) static STATS: Stats = Stats::new();

/// Adds the wall time since `t0` to `counter`.
pub(crate) fn count_ns(counter: &AtomicU64, t0: kernel::time::Ktime) {
    let ns = kernel::time::Ktime::ktime_get().to_ns() - t0.to_ns();
    counter.fetch_add(ns.max(0) as u64, Ordering::Relaxed);
}

/// Removes `target` from `v` (order is not kept).
fn remove_arc<T>(v: &mut KVec<Arc<T>>, target: &T) -> Option<Arc<T>> {
    let i = v.iter().position(|x| ptr::eq::<T>(&**x, target))?;
    let last = v.len() - 1;
    v.as_mut_slice().swap(i, last);
    // SAFETY: Element `last` is initialised; shrinking the length by one
    // hands its ownership to the read.
    unsafe {
        let x = core::ptr::read(v.as_ptr().add(last));
        v.set_len(last);
        Some(x)
    }
}

/// A device registered by a driver.
///
/// # Invariants
///
/// `ops` points to a `gmem_dev_ops` with every operation set, and `ops` and
/// `drvdata` stay valid until `gmem_dev_unregister()` returns for it.
#[pin_data]
pub(crate) struct GmemDev {
    ops: *const bindings::gmem_dev_ops,
    drvdata: *mut c_void,
    name: CString,
    caps: u32,
    id: u32,
    /// Live contexts of this device; `None` once unregistered.
    #[pin]
    ctxs: Mutex<Option<KVec<Arc<GmemCtx>>>>,
    /// The device's memory pool, set once by `gmem_dev_add_memory()` and
    /// taken back by unregistration (a leaked `Pin<KBox<DevMem>>`).
    devmem: AtomicPtr<DevMem>,
    /// Device faults (and prefetch blocks) served for this device.
    pub(crate) faults: AtomicU64,
    /// The lifetime guard: entry points in flight, and whether the device
    /// is going away (see [`GmemDev::enter`]).
    #[pin]
    active: Mutex<Active>,
    /// Signalled when the last entry point leaves a device going away.
    #[pin]
    idle: CondVar,
    /// `active.gone`, readable without the lock: long operations holding
    /// a guard stop between blocks once it is set.
    going: AtomicBool,
}

/// The state of a device's lifetime guard.
struct Active {
    users: usize,
    gone: bool,
}

/// An entry point's hold on a registered device: while it lives,
/// unregistration waits before it tears contexts down or removes the
/// device's memory, so the driver's ops, its contexts and the pool stay.
///
/// # Invariants
///
/// Counted in `dev.active.users`, taken while `gone` was false.
#[must_use = "the device may go away as soon as the guard is dropped"]
pub(crate) struct DevGuard<'a> {
    dev: &'a GmemDev,
}

impl Drop for DevGuard<'_> {
    fn drop(&mut self) {
        let mut a = self.dev.active.lock();
        a.users -= 1;
        if a.users == 0 && a.gone {
            self.dev.idle.notify_all();
        }
    }
}

// SAFETY: `GmemDev` only stores the driver's pointers; the driver interface
// requires its ops to be callable from any thread.
unsafe impl Send for GmemDev {}
// SAFETY: As above; mutable state is behind the mutex.
unsafe impl Sync for GmemDev {}

impl GmemDev {
    pub(crate) fn name(&self) -> &CStr {
        &self.name
    }

    /// The device's gmem id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The device's memory, if it gave gmem any.
    pub(crate) fn devmem(&self) -> Option<&DevMem> {
        // SAFETY: Set once to a pool that lives until unregistration, after
        // which no context of the device faults (drivers stop first).
        unsafe { self.devmem.load(Ordering::Acquire).as_ref() }
    }

    /// Copies host pages (`GMEM_PFN_NONE`: zeros) into device pages.
    pub(crate) fn copy_to_dev(&self, dst_idx: &[usize], src_pfns: &[usize]) {
        if let Some(copy) = self.ops().copy_to_dev {
            // SAFETY: Arrays of the same length; the driver's data is valid
            // while registered.
            unsafe {
                copy(
                    self.drvdata,
                    dst_idx.as_ptr().cast(),
                    src_pfns.as_ptr().cast(),
                    dst_idx.len() as _,
                )
            };
        }
    }

    /// The device's clock and traffic, if its driver keeps them.
    pub(crate) fn read_clock(&self) -> Option<bindings::gmem_dev_clock> {
        let read = self.ops().read_clock?;
        let mut clk = bindings::gmem_dev_clock {
            ns: 0,
            to_dev_bytes: 0,
            to_host_bytes: 0,
            local_bytes: 0,
        };
        // SAFETY: The driver's data is valid while registered; `clk` is
        // writable.
        unsafe { read(self.drvdata, &mut clk) };
        Some(clk)
    }

    /// Copies device pages into host pages.
    pub(crate) fn copy_from_dev(&self, dst_pfns: &[usize], src_idx: &[usize]) {
        if let Some(copy) = self.ops().copy_from_dev {
            // SAFETY: As in `copy_to_dev`.
            unsafe {
                copy(
                    self.drvdata,
                    dst_pfns.as_ptr().cast(),
                    src_idx.as_ptr().cast(),
                    src_idx.len() as _,
                )
            };
        }
    }

    fn ops(&self) -> &bindings::gmem_dev_ops {
        // SAFETY: Valid while registered (type invariant); users hold an
        // `Arc` obtained while it was registered, and contexts are torn
        // down before unregistration returns.
        unsafe { &*self.ops }
    }

    /// Enters the device from an entry point that reaches it (a device
    /// fault, a prefetch, a hint that faults): `ENODEV` once unregistration
    /// started, else a guard that unregistration waits for.
    pub(crate) fn enter(&self) -> Result<DevGuard<'_>> {
        let mut a = self.active.lock();
        if a.gone {
            return Err(ENODEV);
        }
        a.users += 1;
        Ok(DevGuard { dev: self })
    }

    /// Whether unregistration started: a guard holder should finish soon.
    pub(crate) fn is_going(&self) -> bool {
        self.going.load(Ordering::Acquire)
    }

    /// Refuses new entries and waits until none is in flight.
    fn drain(&self) {
        self.going.store(true, Ordering::Release);
        let mut a = self.active.lock();
        a.gone = true;
        while a.users > 0 {
            self.idle.wait(&mut a);
        }
    }
}

/// The state of the loaded module that the C entry points reach.
#[pin_data]
pub(crate) struct Registry {
    /// Registered devices by id.
    #[pin]
    devices: Mutex<RBTree<u32, Arc<GmemDev>>>,
    /// Runs the address spaces' deferred region maintenance.
    wq: gmem_sync::Workqueue,
}

/// The registry of the loaded module.
///
/// Set in `init` before the hooks are installed; cleared in `drop` after
/// they are removed.  Exports cannot be called outside that window: a
/// caller of them is a module that depends on gmem.ko.
static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(ptr::null_mut());

pub(crate) fn registry() -> &'static Registry {
    let reg = REGISTRY.load(Ordering::Acquire);
    // SAFETY: Per `REGISTRY`, every caller runs while the module is live and
    // the pointer is set to a `Registry` that outlives the call.
    unsafe { &*reg }
}

impl Registry {
    /// Calls `f` on every registered device, under the registry lock.
    pub(crate) fn for_each_device(&self, mut f: impl FnMut(&GmemDev)) {
        for dev in self.devices.lock().values() {
            f(dev);
        }
    }

    /// `GMEM_IOC_DEV_INFO`: the device with the lowest id at or above
    /// `info.id`, described into `info`; `ENODEV` if there is none.  Under
    /// the registry lock, so the device's memory is still there.
    pub(crate) fn dev_info(&self, info: &mut bindings::gmem_dev_info) -> Result {
        let devices = self.devices.lock();
        let (_, dev) = devices
            .iter()
            .find(|(&id, _)| id >= info.id)
            .ok_or(ENODEV)?;
        info.id = dev.id;
        info.caps = dev.caps;
        info.mem_bytes = dev
            .devmem()
            .map_or(0, |p| (p.npages * bindings::PAGE_SIZE) as u64);
        info.name = [0; bindings::GMEM_DEV_NAME_LEN as usize];
        let name = dev.name().as_bytes();
        let n = name.len().min(info.name.len() - 1);
        for (d, &c) in info.name.iter_mut().zip(&name[..n]) {
            *d = c as _;
        }
        Ok(())
    }
}

/// A device's view of one address space: the driver's context (its page
/// table) and the policy of what it may reach.
///
/// # Invariants
///
/// `as_` is valid: the context holds a reference on it until detached.
/// `drv` is the driver's context from `ctx_create` until `dead` is set
/// (under the address space's page-table lock) and `ctx_destroy` is called.
/// Every device mapping of the context lies in `[mapped_lo, mapped_hi)`
/// (none if `mapped_lo >= mapped_hi`): `map` widens the span before the
/// driver maps, and only an invalidation covering all of it empties it.
#[pin_data]
pub(crate) struct GmemCtx {
    as_: *const GmemAs,
    dev: Arc<GmemDev>,
    drv: *mut c_void,
    system: AtomicBool,
    /// Device faults migrate pages to device memory (`GMEM_PLACE_MIGRATE`).
    migrate: AtomicBool,
    /// Bumped, under the page-table lock, when the policy narrows: a fault
    /// that checked the old policy must not commit.
    policy_gen: AtomicU32,
    dead: AtomicBool,
    /// The span gmem mapped into the device: invalidations outside it skip
    /// the driver, so that devices attached but idle cost a fault nothing.
    /// Under the page-table lock.
    mapped_lo: AtomicUsize,
    mapped_hi: AtomicUsize,
    /// Serialises `prepare`, which runs without the page-table lock, with
    /// `ctx_destroy`.
    #[pin]
    drv_lock: Mutex<()>,
}

// SAFETY: The pointers refer to objects shared under their own locks.
unsafe impl Send for GmemCtx {}
// SAFETY: As above.
unsafe impl Sync for GmemCtx {}

impl GmemCtx {
    pub(crate) fn address_space(&self) -> &GmemAs {
        // SAFETY: Per the type invariant.
        unsafe { &*self.as_ }
    }

    /// True once torn down.  Reliable under the page-table lock.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Whether this context's policy lets the device reach `vma`.
    pub(crate) fn allows(&self, vma: &gmem_mm::Vma<'_>) -> bool {
        vma.device_reachable() && (vma.is_peer_shared() || self.system.load(Ordering::Relaxed))
    }

    /// Maps host pages into the device.  Called under the page-table lock.
    pub(crate) fn map(&self, va: usize, pfns: &[usize], prot: u32) -> Result {
        let map = self.dev.ops().map.ok_or(EINVAL)?;
        // Before the driver maps: a map that fails may have mapped a part.
        self.widen_mapped(va, va + pfns.len() * bindings::PAGE_SIZE);
        // SAFETY: The context is alive (checked under the page-table lock
        // by the caller) and the driver's data is valid while registered.
        let ret = unsafe {
            map(
                self.dev.drvdata,
                self.drv,
                va as _,
                pfns.as_ptr().cast(),
                pfns.len() as _,
                prot,
            )
        };
        kernel::error::to_result(ret)
    }

    /// The device's memory, if any.
    pub(crate) fn devmem(&self) -> Option<&DevMem> {
        self.dev.devmem()
    }

    /// The device's gmem id.
    pub(crate) fn dev_id(&self) -> u32 {
        self.dev.id
    }

    /// Enters the context's device (see [`GmemDev::enter`]).
    pub(crate) fn enter(&self) -> Result<DevGuard<'_>> {
        self.dev.enter()
    }

    /// Whether the context's device is being unregistered.
    pub(crate) fn dev_going(&self) -> bool {
        self.dev.is_going()
    }

    /// Counts a device fault of this context's device.
    pub(crate) fn count_fault(&self) {
        self.dev.faults.fetch_add(1, Ordering::Relaxed);
        STATS.device_faults.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this context's faults move pages to device memory.
    pub(crate) fn migrates(&self) -> bool {
        self.migrate.load(Ordering::Relaxed) && self.devmem().is_some()
    }

    /// The policy generation; see `policy_gen`.
    pub(crate) fn policy_gen(&self) -> u32 {
        self.policy_gen.load(Ordering::Acquire)
    }

    /// Lets the driver allocate for a mapping of `[start, end)`.  Without
    /// the page-table lock (the allocation may enter reclaim).
    pub(crate) fn prepare(&self, start: usize, end: usize) -> Result {
        let Some(prepare) = self.dev.ops().prepare else {
            return Ok(());
        };
        let _drv = self.drv_lock.lock();
        if self.is_dead() {
            return Err(ENODEV);
        }
        // What the driver allocates here, an invalidation in the span frees
        // (a fault that gives up before `map` leaves it behind).  Without
        // the page-table lock: a covering invalidation racing with this
        // can only make the span miss empty levels, never a mapping, since
        // `map` widens it again under the lock.
        self.widen_mapped(start, end);
        // SAFETY: `drv` is alive: `kill` destroys it under `drv_lock` after
        // setting `dead`, which we checked under that lock.
        kernel::error::to_result(unsafe {
            prepare(self.dev.drvdata, self.drv, start as _, end as _)
        })
    }

    /// Makes the span of what gmem mapped cover `[start, end)`.
    fn widen_mapped(&self, start: usize, end: usize) {
        self.mapped_lo.fetch_min(start, Ordering::Relaxed);
        self.mapped_hi.fetch_max(end, Ordering::Relaxed);
    }

    /// Removes device mappings of `[start, end)`.  Under the page-table
    /// lock, on a live context.
    pub(crate) fn invalidate(&self, start: usize, end: usize) {
        let (lo, hi) = (
            self.mapped_lo.load(Ordering::Relaxed),
            self.mapped_hi.load(Ordering::Relaxed),
        );
        // Per the type invariant, nothing is mapped outside `[lo, hi)`.
        if start >= hi || end <= lo {
            return;
        }
        if start <= lo && hi <= end {
            self.mapped_lo.store(usize::MAX, Ordering::Relaxed);
            self.mapped_hi.store(0, Ordering::Relaxed);
        }
        if let Some(inv) = self.dev.ops().invalidate {
            STATS.device_invalidations.fetch_add(1, Ordering::Relaxed);
            // SAFETY: As in `map`.
            unsafe { inv(self.dev.drvdata, self.drv, start as _, end as _) };
        }
    }

    /// Tears the context down once: no mapping survives and the driver's
    /// context is destroyed.  Returns false if it already was.
    fn kill(&self) -> bool {
        {
            let mut pt = self.address_space().pt.lock();
            if self.dead.swap(true, Ordering::Relaxed) {
                return false;
            }
            self.invalidate(0, usize::MAX);
            if let Some(pool) = self.devmem() {
                pool.collapse_dups(|d| ptr::eq::<GmemCtx>(&*d.ctx, self));
            }
            remove_arc(&mut pt, self);
        }
        // A `prepare` that checked `dead` before it was set finishes first;
        // later ones see it.  Then the driver destroys with no gmem lock
        // held (its destroy may wait for its own fault handling).
        drop(self.drv_lock.lock());
        if let Some(destroy) = self.dev.ops().ctx_destroy {
            // SAFETY: `drv` came from `ctx_create` and no op runs on it any
            // more: `dead` is set, under the page-table lock for `map` and
            // `invalidate`, and before the `drv_lock` round above for
            // `prepare`.
            unsafe { destroy(self.dev.drvdata, self.drv) };
        }
        true
    }
}

/// A process's gmem address space: its regions and device contexts.
///
/// # Invariants
///
/// `notifier` is registered with core MM for `mm` from the return of
/// `alloc_notifier` until `free_notifier`; the object is only freed by
/// `free_notifier`, which runs after the one notifier reference held while
/// `refs > 0` is put.  Core MM holds `mm_count` on `mm` meanwhile.
#[pin_data]
#[repr(C)]
pub(crate) struct GmemAs {
    notifier: Opaque<bindings::mmu_notifier>,
    mm: *mut bindings::mm_struct,
    /// Users: regions, contexts, a queued resync, callers in between.
    refs: AtomicUsize,
    /// The mm is exiting (`release` ran).
    released: AtomicBool,
    /// The mm made a MAP_PEER_SHARED mapping: it holds a reference (in
    /// `refs`) until `release`, so that mapping does not create and free an
    /// address space (and register a notifier, which takes every VMA
    /// lock) each time.
    mapped: AtomicBool,
    #[pin]
    pub(crate) regions: Mutex<Regions>,
    /// The span holding every region marked stale since the last resync
    /// (`(usize::MAX, 0)` when none is): what the resync looks at, the
    /// regions between the unmaps it covers rather than all of them.  A
    /// leaf lock, taken by notifier callbacks that may not sleep.
    #[pin]
    pub(crate) stale_span: SpinLock<(usize, usize)>,
    /// The page-table lock: serialises device page-table updates (fault
    /// commits) with invalidations, and guards the context list.
    #[pin]
    pub(crate) pt: TryMutex<KVec<Arc<GmemCtx>>>,
    work: Opaque<bindings::work_struct>,
}

// SAFETY: Shared state is atomic or behind the locks above.
unsafe impl Send for GmemAs {}
// SAFETY: As above.
unsafe impl Sync for GmemAs {}

impl GmemAs {
    /// Returns the address space that embeds `mn`.
    ///
    /// # Safety
    ///
    /// `mn` must be the `notifier` field of a live [`GmemAs`].
    unsafe fn from_notifier<'a>(mn: *mut bindings::mmu_notifier) -> &'a GmemAs {
        // SAFETY: `notifier` is the first field of this `repr(C)` struct and
        // `Opaque<T>` has the layout of `T`, so the pointers coincide.
        unsafe { &*(mn as *const GmemAs) }
    }

    /// Takes a reference for a caller who just got a notifier reference:
    /// the first user keeps it, later ones give theirs back.
    fn adopt(mn: *mut bindings::mmu_notifier) -> &'static GmemAs {
        // SAFETY: `GMEM_AS_OPS` allocates every notifier as a `GmemAs`, and
        // the notifier reference keeps it alive.
        let as_ = unsafe { GmemAs::from_notifier(mn) };
        if as_.refs.fetch_add(1, Ordering::AcqRel) != 0 {
            // SAFETY: We own this notifier reference; the one kept for
            // `refs > 0` remains.
            unsafe { gmem_mm::notifier_put(mn) };
        }
        as_
    }

    /// Finds or creates the address space of a write-locked mm and returns
    /// it with a reference the caller must [`put`](Self::put).
    fn get_locked(mm: &MmWriteLocked<'_>) -> Result<&'static GmemAs> {
        Ok(Self::adopt(gmem_mm::notifier_get_locked(&GMEM_AS_OPS, mm)?))
    }

    /// As [`get_locked`](Self::get_locked), taking `mmap_lock` itself.
    ///
    /// # Safety
    ///
    /// The caller must hold a users reference on `mm`.
    unsafe fn get(mm: *mut bindings::mm_struct) -> Result<&'static GmemAs> {
        // SAFETY: `mm` is live per the contract; the lock is held only
        // around the lookup.
        unsafe { bindings::mmap_write_lock(mm) };
        // SAFETY: Write-locked just above, unlocked just below.
        let res = Self::get_locked(&unsafe { MmWriteLocked::from_raw(mm) });
        // SAFETY: Locked above.
        unsafe { bindings::mmap_write_unlock(mm) };
        res
    }

    /// Another reference, for a caller that holds one.
    pub(crate) fn get_ref(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a reference; the last one lets the address space go.
    pub(crate) fn put(&self) {
        if self.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: The reference kept while `refs > 0`; the object stays
            // valid until the SRCU-delayed `free_notifier`.
            unsafe { gmem_mm::notifier_put(self.notifier()) };
        }
    }

    fn notifier(&self) -> *mut bindings::mmu_notifier {
        self.notifier.get()
    }

    pub(crate) fn mm(&self) -> *mut bindings::mm_struct {
        self.mm
    }

    /// The mm is exiting and every device mapping is gone.  Set under the
    /// page-table lock, after which no device mapping is committed (every
    /// commit checks it under that lock), so it is reliable under the lock.
    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Adds a context to the list invalidations walk.  The list is grown
    /// outside the page-table lock: reclaim runs invalidations, so nothing
    /// under that lock may allocate with reclaim.
    fn add_ctx(&self, ctx: Arc<GmemCtx>) -> Result {
        loop {
            let want = self.pt.lock().len() + 1;
            let mut grown = KVec::with_capacity(want, GFP_KERNEL)?;
            let mut pt = self.pt.lock();
            if pt.len() + 1 > grown.capacity() {
                continue;
            }
            for c in pt.iter() {
                // Within capacity: cannot fail or allocate.
                grown.push(c.clone(), GFP_NOWAIT)?;
            }
            grown.push(ctx, GFP_NOWAIT)?;
            *pt = grown;
            return Ok(());
        }
    }

    /// Whether any context may use `vma` (keeps regions for it).
    pub(crate) fn allows(&self, vma: &gmem_mm::Vma<'_>) -> bool {
        vma.device_reachable()
            && (vma.is_peer_shared()
                || self
                    .pt
                    .lock()
                    .iter()
                    .any(|c| c.system.load(Ordering::Relaxed)))
    }

    /// Removes every device mapping in `[start, end)` under the page-table
    /// lock, running `under_lock` first (the notifier sequence update).
    /// Returns false, doing nothing, if the lock is busy and `blockable` is
    /// false: the caller (an mmu notifier) must then fail with -EAGAIN.
    pub(crate) fn invalidate_devices(
        &self,
        blockable: bool,
        start: usize,
        end: usize,
        under_lock: impl FnOnce(),
    ) -> bool {
        let pt = if blockable {
            self.pt.lock()
        } else {
            match self.pt.try_lock() {
                Some(pt) => pt,
                None => return false,
            }
        };
        under_lock();
        // After `release`, nothing is mapped and nothing can be (see
        // `is_released`): exit's unmapping of every region costs no work.
        if !self.is_released() {
            self.invalidate_locked(&pt, start, end);
            STATS.invalidations.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Makes every device fault on `[start, end)` again under a policy that
    /// just changed: mappings go, and faults that looked at the old policy
    /// do not commit.
    pub(crate) fn repolicy(&self, start: usize, end: usize) {
        let pt = self.pt.lock();
        for ctx in pt.iter() {
            ctx.policy_gen.fetch_add(1, Ordering::Release);
        }
        self.invalidate_locked(&pt, start, end);
    }

    /// Makes `[start, end)` unreachable to every device context of this
    /// address space, then frees the read duplicates there (what they
    /// copied may be about to change).  The one invalidation primitive:
    /// every path that frees or retires what backs a device mapping of
    /// this address space comes here, or (for one context going away,
    /// `GmemCtx::kill`, or one chunk, `DevMem::evict_dup`) does the same
    /// for the contexts concerned.  Under the page-table lock, which `ctxs`
    /// is the content of.
    pub(crate) fn invalidate_locked(&self, ctxs: &[Arc<GmemCtx>], start: usize, end: usize) {
        let t0 = kernel::time::Ktime::ktime_get();
        // Every mapping first: a duplicate is freed only once no context
        // maps it (`gmem_devmem`'s rule), and its pages may be reused the
        // moment they are.
        for ctx in ctxs {
            ctx.invalidate(start, end);
        }
        let mm = self.mm as usize;
        for (i, ctx) in ctxs.iter().enumerate() {
            let Some(pool) = ctx.devmem() else {
                continue;
            };
            // Each pool once.
            if ctxs[..i]
                .iter()
                .any(|c| c.devmem().is_some_and(|p| ptr::eq(p, pool)))
            {
                continue;
            }
            pool.collapse_dups(|d| d.key.mm == mm && d.start < end && start < d.end);
        }
        count_ns(&STATS.invalidate_ns, t0);
    }

    /// Serves reads of block `key` by copies on every device of this
    /// address space, each for its hold time: one device read the block
    /// while it was in another's memory, and moving it would take it from
    /// the other.
    pub(crate) fn share(&self, key: BlockKey) {
        let ctxs = self.pt.lock();
        for pool in ctxs.iter().filter_map(|c| c.devmem()) {
            pool.share(key);
        }
    }

    /// Ends the sharing of block `key` on every device: it is about to be
    /// written.  The copies collapse with the write's own invalidation.
    pub(crate) fn unshare(&self, key: BlockKey) {
        let ctxs = self.pt.lock();
        for pool in ctxs.iter().filter_map(|c| c.devmem()) {
            pool.unshare(key);
        }
    }

    /// Whether a device other than `dev` has block `key` (some of it) in
    /// its memory now.
    pub(crate) fn held_elsewhere(&self, key: BlockKey, dev: u32) -> bool {
        let ctxs = self.pt.lock();
        ctxs.iter()
            .filter(|c| c.dev_id() != dev)
            .any(|c| c.devmem().is_some_and(|p| p.holds_block(key)))
    }

    /// Forgets the thrashing history of `[start, end)` on the devices of
    /// `ctxs` (under the page-table lock, their holder): the range was
    /// unmapped, and data mapped there later must not inherit its holds.
    pub(crate) fn forget_history_locked(&self, ctxs: &[Arc<GmemCtx>], start: usize, end: usize) {
        for ctx in ctxs {
            if let Some(pool) = ctx.devmem() {
                pool.thrash.forget(self.mm as usize, start, end);
            }
        }
    }

    /// Schedules region maintenance (see `gmem_vma`).
    pub(crate) fn queue_resync(&self) {
        self.get_ref();
        // SAFETY: `work` was initialised in `gmem_as_alloc` and stays valid:
        // the reference just taken keeps the address space until the work
        // has run.
        if !unsafe { registry().wq.queue(self.work.get()) } {
            self.put();
        }
    }
}

/// The address space's work item: region maintenance.
///
/// # Safety
///
/// Called by the workqueue only, for the `work` of a live [`GmemAs`] that
/// holds a reference for the queued work.
unsafe extern "C" fn gmem_as_work(work: *mut bindings::work_struct) {
    let off = core::mem::offset_of!(GmemAs, work);
    // SAFETY: `work` is the `work` field of a `GmemAs` kept alive by the
    // reference `queue_resync` took.
    let as_ = unsafe { &*(work.cast::<u8>().sub(off).cast::<GmemAs>()) };
    gmem_vma::resync(as_);
    // Last use of `as_`: it may be freed after this.
    as_.put();
}

/// `mmu_notifier_ops::alloc_notifier`: a new, empty address space.
///
/// # Safety
///
/// Called by core MM only (`mmu_notifier_get_locked`), with `mm` valid and
/// its mmap lock held for write.
unsafe extern "C" fn gmem_as_alloc(mm: *mut bindings::mm_struct) -> *mut bindings::mmu_notifier {
    let init = pin_init!(GmemAs {
        // SAFETY: An all-zero `mmu_notifier` is its unregistered state.
        notifier: Opaque::new(unsafe { core::mem::zeroed() }),
        mm,
        refs: AtomicUsize::new(0),
        released: AtomicBool::new(false),
        mapped: AtomicBool::new(false),
        regions <- new_mutex!(Regions::new(), "GmemAs::regions"),
        stale_span <- new_spinlock!((usize::MAX, 0), "GmemAs::stale_span"),
        pt <- TryMutex::new(KVec::new(), c_str!("GmemAs::pt"), kernel::static_lock_class!()),
        work: Opaque::uninit(),
    });
    match KBox::pin_init(init, GFP_KERNEL) {
        Ok(as_) => {
            // SAFETY: `work` is pinned in the box and not queued yet.
            unsafe {
                gmem_sync::init_work(
                    as_.work.get(),
                    gmem_as_work,
                    c_str!("gmem_as_work"),
                    kernel::static_lock_class!(),
                )
            };
            // Pinned until `gmem_as_free`, which rebuilds the box.
            // SAFETY: The box is never moved out of; it is freed as a box.
            let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(as_) });
            // SAFETY: `THIS_MODULE` is this live module; the reference is
            // dropped in `gmem_as_free`.
            unsafe { bindings::__module_get(THIS_MODULE.as_ptr()) };
            STATS.address_spaces.fetch_add(1, Ordering::Relaxed);
            raw.cast()
        }
        Err(e) => e.to_ptr(),
    }
}

/// `mmu_notifier_ops::free_notifier`: called after an SRCU grace period once
/// the last reference is put.  Must not sleep.
///
/// # Safety
///
/// Called by core MM only, once, for a notifier `gmem_as_alloc` made.
unsafe extern "C" fn gmem_as_free(mn: *mut bindings::mmu_notifier) {
    // SAFETY: `mn` came from `gmem_as_alloc` (the invariant of `GmemAs`) and
    // core MM no longer uses it; no work is queued (it would hold a ref).
    drop(unsafe { KBox::from_raw(mn.cast::<GmemAs>()) });
    STATS.address_spaces.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: Drops the reference taken in `gmem_as_alloc`.  Module exit
    // waits for this callback to return (`mmu_notifier_synchronize`).
    unsafe { bindings::module_put(THIS_MODULE.as_ptr()) };
}

/// `mmu_notifier_ops::release`: the process is exiting (`exit_mmap`).
/// Devices lose every mapping now; regions follow as their VMAs are
/// unmapped, contexts when their drivers detach.
///
/// # Safety
///
/// Called by core MM only, for a registered notifier of ours.
unsafe extern "C" fn gmem_as_release(
    mn: *mut bindings::mmu_notifier,
    _mm: *mut bindings::mm_struct,
) {
    // SAFETY: Core MM passes a registered notifier of ours, alive for the
    // duration of the callback.
    let as_ = unsafe { GmemAs::from_notifier(mn) };
    {
        let pt = as_.pt.lock();
        as_.released.store(true, Ordering::Release);
        as_.invalidate_locked(&pt, 0, usize::MAX);
    }
    // `mmu_notifier_put()` may be called from `release`.
    if as_.mapped.swap(false, Ordering::AcqRel) {
        as_.put();
    }
}

static GMEM_AS_OPS: gmem_mm::NotifierOps = gmem_mm::NotifierOps::new(bindings::mmu_notifier_ops {
    release: Some(gmem_as_release),
    alloc_notifier: Some(gmem_as_alloc),
    free_notifier: Some(gmem_as_free),
    // SAFETY: All-zero is "no callback" for every other member.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

/// The MAP_PEER_SHARED hook.  A new mapping costs gmem only its address
/// space (once per mm) and the removal of stale hints: regions, and their
/// notifiers, come when a device or a hint first needs the range (see
/// `gmem_vma`).
///
/// # Safety
///
/// Called by the core-MM hook only (`gmem_peer_shared_mapped`), with `mm`
/// valid and its mmap lock held for write.
unsafe extern "C" fn gmem_peer_shared_hook(
    mm: *mut bindings::mm_struct,
    start: usize,
    len: usize,
) -> c_int {
    // SAFETY: `gmem_peer_shared_mapped()` calls us with `mm` locked for
    // write (mmap_assert_write_locked) for the duration of the call.
    let mm = unsafe { MmWriteLocked::from_raw(mm) };
    from_result(|| {
        let end = start.checked_add(len).ok_or(EINVAL)?;
        let as_ = GmemAs::get_locked(&mm)?;
        // A new mapping has no hints, whatever an old one here had.
        let res = as_.regions.lock().attrs.clear(start, end);
        // The first mapping's reference stays with the mm (see `mapped`);
        // `release` cannot have run: the mm is write-locked and mapping.
        if as_.mapped.swap(true, Ordering::AcqRel) {
            as_.put();
        }
        res?;
        STATS.peer_shared_mmaps.fetch_add(1, Ordering::Relaxed);
        STATS
            .peer_shared_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        Ok(0)
    })
}

/// Registers a device; see `<linux/gmem.h>`.
///
/// # Safety
///
/// `ops` and `drvdata` must stay valid until `gmem_dev_unregister()` of the
/// returned device returns; `name` must be a NUL-terminated string and
/// `devp` writable.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_register(
    ops: *const bindings::gmem_dev_ops,
    drvdata: *mut c_void,
    name: *const c_char,
    caps: u32,
    devp: *mut *mut bindings::gmem_dev,
) -> c_int {
    from_result(|| {
        if ops.is_null() || name.is_null() || devp.is_null() {
            return Err(EINVAL);
        }
        if caps & !bindings::GMEM_DEV_CAP_ALL != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `ops` is valid per the function's contract.
        let o = unsafe { &*ops };
        if o.ctx_create.is_none()
            || o.ctx_destroy.is_none()
            || o.map.is_none()
            || o.invalidate.is_none()
        {
            return Err(EINVAL);
        }
        // SAFETY: `name` is a NUL-terminated string per the contract.
        let name = unsafe { CStr::from_char_ptr(name) };
        if name.is_empty() || name.len() >= bindings::GMEM_DEV_NAME_LEN as usize {
            return Err(EINVAL);
        }
        let reg = registry();
        let name = CString::try_from_fmt(fmt!("{}", name))?;
        let mut devices = reg.devices.lock();
        // The lowest free id: ids index the device masks of hints.
        let id = (0..bindings::GMEM_MAX_DEVICES)
            .find(|id| devices.get(id).is_none())
            .ok_or(ENOSPC)?;
        let dev = Arc::pin_init(
            pin_init!(GmemDev {
                ops,
                drvdata,
                name,
                caps,
                id,
                ctxs <- new_mutex!(Some(KVec::new()), "GmemDev::ctxs"),
                devmem: AtomicPtr::new(ptr::null_mut()),
                faults: AtomicU64::new(0),
                active <- new_mutex!(Active { users: 0, gone: false }, "GmemDev::active"),
                idle <- new_condvar!("GmemDev::idle"),
                going: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )?;
        devices.try_create_and_insert(dev.id, dev.clone(), GFP_KERNEL)?;
        drop(devices);
        // SAFETY: Pins gmem.ko while the device exists; dropped in
        // `gmem_dev_unregister`.
        unsafe { bindings::__module_get(THIS_MODULE.as_ptr()) };
        STATS.devices.fetch_add(1, Ordering::Relaxed);
        pr_info!(
            "device {} ({}) registered, caps {:#x}\n",
            dev.id,
            dev.name(),
            caps
        );
        // SAFETY: `devp` is writable per the contract.  The registry keeps
        // its own reference, so the pointer stays valid until unregister.
        unsafe { *devp = ptr::from_ref::<GmemDev>(&dev).cast_mut().cast() };
        Ok(0)
    })
}

/// Unregisters a device; on return gmem makes no more calls into its ops:
/// entry points in flight on it finish (new ones get `ENODEV`), its live
/// contexts are torn down (their handles stay valid for
/// `gmem_ctx_detach()`), and the pages in its memory go back to host
/// memory.  The driver must not hold one of its own faults waiting on
/// this call.
///
/// # Safety
///
/// `dev` must come from `gmem_dev_register()` and not be unregistered yet.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_unregister(dev: *mut bindings::gmem_dev) {
    // SAFETY: A registered device is a live `GmemDev` per the contract.
    let id = unsafe { gmem_dev_id(dev) };
    let Some(removed) = registry().devices.lock().remove(&id) else {
        pr_warn!("unregister of an unknown device {}\n", id);
        return;
    };
    // Nothing reaches the device from now on; what is in flight finishes
    // before its contexts and memory go.
    removed.drain();
    let ctxs = removed.ctxs.lock().take();
    for ctx in ctxs.into_iter().flatten() {
        ctx.kill();
    }
    let pool = removed.devmem.swap(ptr::null_mut(), Ordering::AcqRel);
    if !pool.is_null() {
        // SAFETY: Leaked by `gmem_dev_add_memory`; nothing else frees it.
        DevMem::remove(unsafe { Pin::new_unchecked(KBox::from_raw(pool)) });
    }
    pr_info!("device {} ({}) unregistered\n", removed.id, removed.name());
    drop(removed);
    STATS.devices.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: Drops the reference taken by `gmem_dev_register`.
    unsafe { bindings::module_put(THIS_MODULE.as_ptr()) };
}

/// Returns the id gmem gave a device (its index in debugfs `gmem/devices`).
///
/// # Safety
///
/// `dev` must be a registered device.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_id(dev: *const bindings::gmem_dev) -> u32 {
    // SAFETY: A registered device is a live `GmemDev` per the contract.
    unsafe { (*dev.cast::<GmemDev>()).id }
}

/// Attaches `mm` to `dev`: creates the device's context for it.
///
/// # Safety
///
/// `dev` must be registered, `mm` must have a users reference held by the
/// caller (e.g. `current->mm` in `open()`), `ctxp` must be writable.
#[no_mangle]
pub unsafe extern "C" fn gmem_ctx_attach(
    dev: *mut bindings::gmem_dev,
    mm: *mut bindings::mm_struct,
    ctxp: *mut *mut bindings::gmem_ctx,
) -> c_int {
    from_result(|| {
        if dev.is_null() || mm.is_null() || ctxp.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `dev` is registered, so its id is readable.
        let id = unsafe { gmem_dev_id(dev) };
        let dev = registry().devices.lock().get(&id).cloned().ok_or(ENODEV)?;
        // SAFETY: The caller holds a users reference on `mm`.
        let as_ = unsafe { GmemAs::get(mm)? };
        let guard = kernel::types::ScopeGuard::new(|| as_.put());
        let mut drv = ptr::null_mut();
        let create = dev.ops().ctx_create.ok_or(EINVAL)?;
        // With no gmem lock held, as the driver contract says.
        // SAFETY: The driver's data is valid while registered; `drv` is
        // writable.
        kernel::error::to_result(unsafe { create(dev.drvdata, mm, &mut drv) })?;
        let dev_ref = dev.clone();
        let ctx = Arc::pin_init(
            pin_init!(GmemCtx {
                as_,
                dev: dev_ref,
                drv,
                system: AtomicBool::new(false),
                migrate: AtomicBool::new(true),
                policy_gen: AtomicU32::new(0),
                dead: AtomicBool::new(false),
                mapped_lo: AtomicUsize::new(usize::MAX),
                mapped_hi: AtomicUsize::new(0),
                drv_lock <- new_mutex!((), "GmemCtx::drv_lock"),
            }),
            GFP_KERNEL,
        );
        let ctx = match ctx {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: Created just above and never published.
                unsafe { (dev.ops().ctx_destroy.ok_or(EINVAL)?)(dev.drvdata, drv) };
                return Err(e);
            }
        };
        // Published under `ctxs`, which unregistration empties first: it
        // either sees the context or we see it gone.  Once published,
        // `kill` owns the teardown of `drv`.
        let published = {
            let mut ctxs = dev.ctxs.lock();
            match ctxs.as_mut() {
                None => Err(ENODEV),
                Some(list) => list
                    .reserve(1, GFP_KERNEL)
                    .map_err(Error::from)
                    .and_then(|()| as_.add_ctx(ctx.clone()))
                    .and_then(|()| list.push(ctx.clone(), GFP_KERNEL).map_err(Error::from)),
            }
        };
        if let Err(e) = published {
            ctx.kill();
            return Err(e);
        }
        guard.dismiss();
        STATS.contexts.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ctxp` is writable per the contract; the reference is
        // given back by `gmem_ctx_detach`.
        unsafe { *ctxp = Arc::into_raw(ctx).cast_mut().cast() };
        Ok(0)
    })
}

/// Detaches a context: no device mapping of it survives, the driver's
/// context is destroyed (unless unregistration did it already), and the
/// address space may go.
///
/// # Safety
///
/// `ctx` must come from `gmem_ctx_attach()` and not be detached yet.
#[no_mangle]
pub unsafe extern "C" fn gmem_ctx_detach(ctx: *mut bindings::gmem_ctx) {
    // SAFETY: Gives back the reference `gmem_ctx_attach` handed out.
    let ctx = unsafe { Arc::from_raw(ctx.cast_const().cast::<GmemCtx>()) };
    ctx.kill();
    if let Some(list) = ctx.dev.ctxs.lock().as_mut() {
        remove_arc(list, &ctx);
    }
    let as_ = ctx.as_;
    drop(ctx);
    STATS.contexts.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: The reference the context held, dropped last.
    unsafe { (*as_).put() };
}

/// The driver's own context (from `ctx_create`) of `ctx`.
///
/// # Safety
///
/// `ctx` must be attached and its device still registered.
#[no_mangle]
pub unsafe extern "C" fn gmem_ctx_drvctx(ctx: *mut bindings::gmem_ctx) -> *mut c_void {
    // SAFETY: Attached contexts are live `GmemCtx`s.
    unsafe { (*ctx.cast::<GmemCtx>()).drv }
}

/// Sets which memory the context may reach (`GMEM_POLICY_*`).
///
/// # Safety
///
/// `ctx` must be attached.
#[no_mangle]
pub unsafe extern "C" fn gmem_ctx_set_policy(ctx: *mut bindings::gmem_ctx, policy: u32) -> c_int {
    // SAFETY: Attached contexts are live `GmemCtx`s.
    let ctx = unsafe { &*ctx.cast::<GmemCtx>() };
    let system = match policy {
        bindings::GMEM_POLICY_PEER_SHARED => false,
        bindings::GMEM_POLICY_SYSTEM => true,
        _ => return EINVAL.to_errno(),
    };
    let pt = ctx.address_space().pt.lock();
    if ctx.system.swap(system, Ordering::Relaxed) && !system {
        // Narrowed: mappings of memory it may no longer reach must go, and
        // faults that checked the old policy must not commit.
        ctx.policy_gen.fetch_add(1, Ordering::Release);
        if !ctx.is_dead() {
            ctx.invalidate(0, usize::MAX);
            // Its copies may be of memory it may no longer reach.
            if let Some(pool) = ctx.devmem() {
                pool.collapse_dups(|d| d.is_of(ctx));
            }
        }
    }
    drop(pt);
    0
}

/// Gives gmem `size` bytes of the device's own memory (once per device):
/// core MM gets `MEMORY_DEVICE_PRIVATE` pages for it and device faults
/// migrate pages there.
///
/// # Safety
///
/// `dev` must be registered with `GMEM_DEV_CAP_DEVMEM` and copy ops.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_add_memory(dev: *mut bindings::gmem_dev, size: usize) -> c_int {
    from_result(|| {
        // SAFETY: A registered device is a live `GmemDev`.
        let d = unsafe { &*dev.cast::<GmemDev>() };
        let o = d.ops();
        if d.caps & bindings::GMEM_DEV_CAP_DEVMEM == 0
            || o.copy_to_dev.is_none()
            || o.copy_from_dev.is_none()
        {
            return Err(EINVAL);
        }
        let pool = DevMem::new(d, size)?;
        // SAFETY: Leaked here, taken back by `gmem_dev_unregister`.
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(pool) });
        if d.devmem
            .compare_exchange(ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: Not published.
            DevMem::remove(unsafe { Pin::new_unchecked(KBox::from_raw(raw)) });
            return Err(EBUSY);
        }
        pr_info!(
            "device {} ({}): {} MiB of device memory\n",
            d.id,
            d.name(),
            size >> 20
        );
        Ok(0)
    })
}

/// Sets where a context's device faults put pages (`GMEM_PLACE_*`).
///
/// # Safety
///
/// `ctx` must be attached.
#[no_mangle]
pub unsafe extern "C" fn gmem_ctx_set_placement(
    ctx: *mut bindings::gmem_ctx,
    placement: u32,
) -> c_int {
    // SAFETY: Attached contexts are live `GmemCtx`s.
    let ctx = unsafe { &*ctx.cast::<GmemCtx>() };
    match placement {
        bindings::GMEM_PLACE_MIGRATE => ctx.migrate.store(true, Ordering::Relaxed),
        bindings::GMEM_PLACE_HOST => ctx.migrate.store(false, Ordering::Relaxed),
        _ => return EINVAL.to_errno(),
    }
    0
}

/// Migrates `[start, end)` to the context's device memory (and maps it into
/// the device), or to host memory (`GMEM_PREFETCH_TO_HOST`); with
/// `GMEM_PREFETCH_NO_PEER` only the range's pages in host memory move, and
/// nothing is mapped.  Page aligned; synchronous.
///
/// # Safety
///
/// `ctx` must be attached.  May sleep.
#[no_mangle]
pub unsafe extern "C" fn gmem_prefetch(
    ctx: *mut bindings::gmem_ctx,
    start: usize,
    end: usize,
    flags: u32,
) -> c_int {
    // SAFETY: Attached contexts are live `GmemCtx`s.
    let ctx = unsafe { &*ctx.cast::<GmemCtx>() };
    from_result(|| {
        let known = bindings::GMEM_PREFETCH_TO_HOST | bindings::GMEM_PREFETCH_NO_PEER;
        if start >= end
            || (start | end) % bindings::PAGE_SIZE != 0
            || flags & !known != 0
            || flags == known
        {
            return Err(EINVAL);
        }
        let _dev = ctx.enter()?;
        if flags & bindings::GMEM_PREFETCH_TO_HOST != 0 {
            gmem_fault::prefetch_to_host(ctx, start, end)?;
            return Ok(0);
        }
        let place = if flags & bindings::GMEM_PREFETCH_NO_PEER != 0 {
            gmem_fault::Place::Migrate
        } else {
            gmem_fault::Place::Device
        };
        // Block by block, each clipped to its VMA: every page is visited,
        // and a hole fails with EFAULT.
        gmem_fault::map_range(ctx, start, end, place)?;
        Ok(0)
    })
}

/// Reports the state of each page of `[start, end)` into `state`, one
/// `GMEM_PAGE_*` byte each, faulting nothing; see `<linux/gmem.h>`.
///
/// # Safety
///
/// `ctx` must be attached and `state` writable for a byte per page.  May
/// sleep.
#[no_mangle]
pub unsafe extern "C" fn gmem_snapshot(
    ctx: *mut bindings::gmem_ctx,
    start: usize,
    end: usize,
    state: *mut u8,
) -> c_int {
    // SAFETY: Attached contexts are live `GmemCtx`s.
    let ctx = unsafe { &*ctx.cast::<GmemCtx>() };
    from_result(|| {
        if start >= end || (start | end) % bindings::PAGE_SIZE != 0 || state.is_null() {
            return Err(EINVAL);
        }
        let n = (end - start) / bindings::PAGE_SIZE;
        // SAFETY: The caller gives a byte per page.
        let out = unsafe { core::slice::from_raw_parts_mut(state, n) };
        let _dev = ctx.enter()?;
        gmem_fault::snapshot_range(ctx, start, end, out)?;
        Ok(0)
    })
}

/// Moves the device's memory back to host memory now; see `<linux/gmem.h>`.
///
/// # Safety
///
/// `dev` must be registered.  May sleep.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_evict(dev: *mut bindings::gmem_dev) -> kernel::ffi::c_long {
    // SAFETY: A registered device is a live `GmemDev`.
    let d = unsafe { &*dev.cast::<GmemDev>() };
    let res = d.enter().and_then(|_guard| {
        let pool = d.devmem().ok_or(EINVAL)?;
        gmem_fault::evict_now(pool)
    });
    match res {
        Ok(n) => n as _,
        Err(e) => e.to_errno() as _,
    }
}

/// Resolves a device fault; see `<linux/gmem.h>` and `gmem_fault`.
///
/// # Safety
///
/// `ctx` must be attached.  May sleep.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_fault(
    ctx: *mut bindings::gmem_ctx,
    addr: usize,
    flags: u32,
) -> kernel::ffi::c_long {
    if flags & !bindings::GMEM_FAULT_WRITE != 0 {
        return EINVAL.to_errno() as _;
    }
    let write = flags & bindings::GMEM_FAULT_WRITE != 0;
    // SAFETY: Attached per the contract.
    unsafe { entered(ctx, |ctx| gmem_fault::device_fault(ctx, addr, write)) }
}

/// Resolves a batch of device faults; see `<linux/gmem.h>` and
/// `gmem_fault::device_fault_batch`.
///
/// # Safety
///
/// `ctx` must be attached; `faults` points to `n` entries, valid for
/// reads and writes.  May sleep.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_fault_batch(
    ctx: *mut bindings::gmem_ctx,
    faults: *mut bindings::gmem_fault_entry,
    n: kernel::ffi::c_uint,
) -> kernel::ffi::c_long {
    let n = n as usize;
    if n == 0 || n > gmem_fault::FAULT_BATCH_MAX || faults.is_null() {
        return EINVAL.to_errno() as _;
    }
    // SAFETY: The caller's `n` entries, exclusively ours for the call.
    let faults = unsafe { core::slice::from_raw_parts_mut(faults, n) };
    if faults
        .iter()
        .any(|f| f.flags & !bindings::GMEM_FAULT_WRITE != 0)
    {
        return EINVAL.to_errno() as _;
    }
    // SAFETY: Attached per the contract.
    unsafe { entered(ctx, |ctx| gmem_fault::device_fault_batch(ctx, faults)) }
}

/// Runs `f` on `ctx` with its device entered (see `GmemCtx::enter`): the
/// count `f` returns, or an errno, as the C calls return them.
///
/// # Safety
///
/// `ctx` must be attached.
unsafe fn entered(
    ctx: *mut bindings::gmem_ctx,
    f: impl FnOnce(&GmemCtx) -> Result<usize>,
) -> kernel::ffi::c_long {
    // SAFETY: Attached contexts are live `GmemCtx`s.
    let ctx = unsafe { &*ctx.cast::<GmemCtx>() };
    let res = ctx.enter().and_then(|_dev| f(ctx));
    match res {
        Ok(n) => n as _,
        Err(e) => e.to_errno() as _,
    }
}

/// Takes a device's notification that it uses a block in its own memory;
/// see `<linux/gmem.h>` and `gmem_fault::use_notified`.
///
/// # Safety
///
/// `ctx` must be attached.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_notify_use(
    ctx: *mut bindings::gmem_ctx,
    addr: usize,
) -> kernel::ffi::c_long {
    // SAFETY: Attached per the contract.
    unsafe {
        entered(ctx, |ctx| {
            gmem_fault::use_notified(ctx, addr);
            Ok(0)
        })
    }
}

/// Takes a device's access-counter notification; see `<linux/gmem.h>` and
/// `gmem_fault::access_notified`.
///
/// # Safety
///
/// `ctx` must be attached.  May sleep.
#[no_mangle]
pub unsafe extern "C" fn gmem_dev_notify_access(
    ctx: *mut bindings::gmem_ctx,
    addr: usize,
) -> kernel::ffi::c_long {
    // SAFETY: Attached per the contract.
    unsafe { entered(ctx, |ctx| gmem_fault::access_notified(ctx, addr)) }
}

/// Entries of `gmem_c_layout`.
const LAYOUT_FACTS: usize = 58;

extern "C" {
    /// Offsets and sizes as the C compiler lays them out (gmem_glue.c).
    static gmem_c_layout: [usize; LAYOUT_FACTS];
}

/// Refuses to run if bindgen's view of a C structure gmem reads differs
/// from the C compiler's (the same table, in the same order, as
/// `gmem_c_layout`).
fn check_layouts() -> Result {
    use bindings::*;
    use core::mem::{offset_of, size_of};
    let rust: [usize; LAYOUT_FACTS] = [
        offset_of!(vm_area_struct, __bindgen_anon_1.__bindgen_anon_1.vm_start),
        offset_of!(vm_area_struct, __bindgen_anon_1.__bindgen_anon_1.vm_end),
        offset_of!(vm_area_struct, __bindgen_anon_2.vm_flags),
        offset_of!(mmu_notifier_range, start),
        offset_of!(mmu_notifier_range, end),
        offset_of!(mmu_notifier_range, flags),
        offset_of!(mmu_notifier_range, event),
        size_of::<hmm_range>(),
        size_of::<mmu_notifier>(),
        size_of::<mmu_interval_notifier>(),
        size_of::<work_struct>(),
        size_of::<mutex>(),
        offset_of!(seq_file, private),
        offset_of!(inode, i_private),
        offset_of!(file, private_data),
        size_of::<miscdevice>(),
        size_of::<file_operations>(),
        offset_of!(file_operations, unlocked_ioctl),
        offset_of!(file_operations, poll),
        size_of::<wait_queue_head>(),
        size_of::<kernel_param>(),
        offset_of!(kernel_param, __bindgen_anon_1.arg),
        offset_of!(hmm_range, hmm_pfns),
        offset_of!(hmm_range, default_flags),
        offset_of!(hmm_range, dev_private_owner),
        offset_of!(miscdevice, fops),
        offset_of!(miscdevice, mode),
        offset_of!(file_operations, open),
        offset_of!(file_operations, release),
        offset_of!(poll_table_struct, _qproc),
        size_of::<mmu_notifier_ops>(),
        offset_of!(mmu_notifier_ops, alloc_notifier),
        offset_of!(mmu_notifier_ops, free_notifier),
        size_of::<mmu_interval_notifier_ops>(),
        size_of::<gmem_dev_ops>(),
        offset_of!(gmem_dev_ops, invalidate),
        size_of::<gmem_mm_hooks>(),
        size_of::<gmem_npu_wait>(),
        size_of::<gmem_npu_info>(),
        offset_of!(vm_area_struct, vm_ops),
        offset_of!(dev_pagemap, type_),
        offset_of!(dev_pagemap, ops),
        offset_of!(dev_pagemap, owner),
        offset_of!(dev_pagemap, nr_range),
        offset_of!(dev_pagemap, __bindgen_anon_1.range),
        size_of::<dev_pagemap_ops>(),
        size_of::<migrate_vma>(),
        offset_of!(migrate_vma, fault_page),
        offset_of!(vm_fault, __bindgen_anon_1.address),
        offset_of!(vm_fault, page),
        size_of::<gmem_npu_prefetch>(),
        offset_of!(vm_area_struct, vm_mm),
        offset_of!(vm_fault, __bindgen_anon_1.vma),
        size_of::<gmem_advise>(),
        size_of::<gmem_range_attrs>(),
        offset_of!(mmu_notifier_range, mm),
        size_of::<gmem_dev_info>(),
        offset_of!(gmem_dev_info, name),
    ];
    // SAFETY: A constant array defined in gmem_glue.c.
    let c = unsafe { &*core::ptr::addr_of!(gmem_c_layout) };
    for (i, (r, c)) in rust.iter().zip(c.iter()).enumerate() {
        if r != c {
            pr_err!("layout check {}: bindings say {}, C says {}\n", i, r, c);
            return Err(kernel::error::code::EINVAL);
        }
    }
    Ok(())
}

/// The `gmem_mm_hooks` handed to core MM.
///
/// # Invariants
///
/// Registered with core MM from `GmemModule::init` until `drop`.
struct MmHooks(Opaque<bindings::gmem_mm_hooks>);

struct GmemModule {
    hooks: Pin<KBox<MmHooks>>,
    registry: *mut Registry,
    /// Removed first on exit: its files read the registry.
    debugfs: Option<gmem_debugfs::Dir>,
    /// `/dev/gmem`; its open files pin the module.
    misc: Option<gmem_ioctl::Misc>,
}

// SAFETY: The module object is only touched by init and exit.
unsafe impl Sync for GmemModule {}
// SAFETY: As above.
unsafe impl Send for GmemModule {}

impl kernel::Module for GmemModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        check_layouts()?;
        let hooks = KBox::pin(
            MmHooks(Opaque::new(bindings::gmem_mm_hooks {
                owner: module.as_ptr(),
                peer_shared_mapped: Some(gmem_peer_shared_hook),
            })),
            GFP_KERNEL,
        )?;
        let wq = gmem_sync::Workqueue::new(c_str!("gmem"), false)?;
        let reg = KBox::pin_init(
            pin_init!(Registry {
                devices <- new_mutex!(RBTree::new(), "Registry::devices"),
                wq,
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: Never moved out of; freed as a box in `drop`.
        let reg = KBox::into_raw(unsafe { Pin::into_inner_unchecked(reg) });
        REGISTRY.store(reg, Ordering::Release);

        // SAFETY: `hooks` is pinned and lives in the module object until
        // `drop` unregisters it.
        let ret = unsafe { bindings::gmem_register_mm_hooks(hooks.0.get()) };
        if ret != 0 {
            REGISTRY.store(ptr::null_mut(), Ordering::Release);
            // SAFETY: Not published anywhere any more.
            drop(unsafe { KBox::from_raw(reg) });
            return Err(Error::from_errno(ret));
        }
        let debugfs = gmem_debugfs::Dir::new(c_str!("gmem"));
        debugfs.show_file(c_str!("stats"), |w| STATS.show(w));
        debugfs.show_file(c_str!("devices"), |w| {
            let mut res = Ok(());
            registry().for_each_device(|d| {
                if res.is_err() {
                    return;
                }
                let faults = d.faults.load(Ordering::Relaxed);
                res = write!(w, "{} {} caps={:#x} faults={}", d.id, d.name(), d.caps, faults);
                if res.is_ok() {
                    res = match d.devmem() {
                        Some(p) => write!(
                            w,
                            " devmem_pages={} devmem_used={} to_dev={} to_host={} cpu_faults={} evictions={} evicted={} thrash={} oom={} pinned={} dup_pages={}",
                            p.npages,
                            p.used.load(Ordering::Relaxed),
                            p.to_dev.load(Ordering::Relaxed),
                            p.to_host.load(Ordering::Relaxed),
                            p.cpu_faults.load(Ordering::Relaxed),
                            p.evictions.load(Ordering::Relaxed),
                            p.evicted.load(Ordering::Relaxed),
                            p.thrash.pins.load(Ordering::Relaxed),
                            p.oom.load(Ordering::Relaxed),
                            p.pinned_pages(),
                            p.dup_pages.load(Ordering::Relaxed)
                        ),
                        None => write!(w, " devmem_pages=0"),
                    };
                }
                if res.is_ok() {
                    res = match d.read_clock() {
                        Some(c) => writeln!(
                            w,
                            " clock_ns={} link_to_dev={} link_to_host={} local={}",
                            c.ns, c.to_dev_bytes, c.to_host_bytes, c.local_bytes
                        ),
                        None => writeln!(w),
                    };
                }
            });
            res
        });

        let misc = match gmem_ioctl::Misc::register(module) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: Registered above.
                unsafe { bindings::gmem_unregister_mm_hooks(hooks.0.get()) };
                drop(debugfs);
                REGISTRY.store(ptr::null_mut(), Ordering::Release);
                // SAFETY: Not published anywhere any more.
                drop(unsafe { KBox::from_raw(reg) });
                return Err(e);
            }
        };
        pr_info!("loaded\n");
        Ok(GmemModule {
            hooks,
            registry: reg,
            debugfs: Some(debugfs),
            misc: Some(misc),
        })
    }
}

impl Drop for GmemModule {
    fn drop(&mut self) {
        // SAFETY: Registered in `init` (the invariant of `MmHooks`).
        unsafe { bindings::gmem_unregister_mm_hooks(self.hooks.0.get()) };
        drop(self.misc.take());
        drop(self.debugfs.take());
        // No address space or device is left (each pinned the module), but
        // an address space's free or work item may still be running its
        // last lines.
        gmem_mm::notifier_synchronize();
        REGISTRY.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: Allocated in `init`; nothing can reach it any more.
        drop(unsafe { KBox::from_raw(self.registry) });
        pr_info!("unloaded\n");
    }
}
