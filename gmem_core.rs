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
//!   on gmem.ko; unregistration drops it.
//! - [`GmemAs`]: one per `mm_struct` that has MAP_PEER_SHARED regions.  It is
//!   the `mmu_notifier` of that mm, found or created with
//!   `mmu_notifier_get_locked()`, so core MM keeps the mm-to-address-space
//!   map.  Every region holds one notifier reference; process exit
//!   (`release`) drops them, and the last `mmu_notifier_put()` frees the
//!   address space after an SRCU grace period (`free_notifier`).  An address
//!   space holds a reference on gmem.ko from allocation to free; module exit
//!   waits for pending frees with `mmu_notifier_synchronize()`.
//!
//! gmem.ko therefore cannot be unloaded while any device or any address
//! space exists; `rmmod` gets `EAGAIN` (refcount non-zero) until then.
//!
//! # Lock order
//!
//! This is the one place where the order is written down; every module
//! follows it.
//!
//! 1. `mmap_lock` of the mm (core MM; held for write by the mmap hook).
//! 2. `Registry::devices`.
//! 3. `GmemAs::regions`.
//!
//! No gmem lock is held while calling into a driver's `gmem_dev_ops`.

use kernel::ffi::{c_char, c_int, c_void};
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use kernel::bindings;
use kernel::error::from_result;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::str::CString;
use kernel::{c_str, fmt};
use kernel::sync::{new_mutex, Arc, Mutex};
use kernel::types::Opaque;

mod gmem_debugfs;
mod gmem_fault;
mod gmem_mm;
mod gmem_vma;

use gmem_mm::MmWriteLocked;
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
    pub(crate) regions: AtomicU64,
    pub(crate) peer_shared_mmaps: AtomicU64,
    pub(crate) peer_shared_bytes: AtomicU64,
}

impl Stats {
    const fn new() -> Self {
        Self {
            devices: AtomicU64::new(0),
            address_spaces: AtomicU64::new(0),
            regions: AtomicU64::new(0),
            peer_shared_mmaps: AtomicU64::new(0),
            peer_shared_bytes: AtomicU64::new(0),
        }
    }

    /// Lines of `name value`, in a fixed order that tools can rely on.
    pub(crate) fn show(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        let rows = [
            ("devices", &self.devices),
            ("address_spaces", &self.address_spaces),
            ("regions", &self.regions),
            ("peer_shared_mmaps", &self.peer_shared_mmaps),
            ("peer_shared_bytes", &self.peer_shared_bytes),
        ];
        for (name, value) in rows {
            writeln!(w, "{} {}", name, value.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

pub(crate) static STATS: Stats = Stats::new();

/// A device registered by a driver.
///
/// # Invariants
///
/// `ops` points to a `gmem_dev_ops` with every operation set, and `ops` and
/// `drvdata` stay valid until `gmem_dev_unregister()` returns for it.
pub(crate) struct GmemDev {
    // The ops are driven by the fault path, which is not written yet.
    #[allow(dead_code)]
    ops: *const bindings::gmem_dev_ops,
    #[allow(dead_code)]
    drvdata: *mut c_void,
    name: CString,
    caps: u32,
    id: u32,
}

// SAFETY: `GmemDev` only stores the driver's pointers; the driver interface
// requires its ops to be callable from any thread.
unsafe impl Send for GmemDev {}
// SAFETY: As above; `GmemDev` has no interior mutability.
unsafe impl Sync for GmemDev {}

impl GmemDev {
    pub(crate) fn name(&self) -> &CStr {
        &self.name
    }
}

/// The state of the loaded module that the C entry points reach.
#[pin_data]
pub(crate) struct Registry {
    /// Registered devices by id.
    #[pin]
    devices: Mutex<RBTree<u32, Arc<GmemDev>>>,
    next_id: AtomicU32,
}

/// The registry of the loaded module.
///
/// Set in `init` before the hooks are installed; cleared in `drop` after
/// they are removed.  Exports cannot be called outside that window: a
/// caller of them is a module that depends on gmem.ko.
static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(ptr::null_mut());

fn registry() -> &'static Registry {
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
}

/// A process's gmem address space: its regions and, later, device contexts.
///
/// # Invariants
///
/// `notifier` is registered with core MM for `mm` (set by core MM) from the
/// return of `alloc_notifier` until `free_notifier`; the object is only
/// freed by `free_notifier`.
#[pin_data]
#[repr(C)]
pub(crate) struct GmemAs {
    notifier: Opaque<bindings::mmu_notifier>,
    #[pin]
    regions: Mutex<Regions>,
}

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

    /// Finds or creates the address space of `mm` and returns it with a new
    /// notifier reference, which the caller must give back with
    /// [`gmem_mm::notifier_put`].
    fn get(mm: &MmWriteLocked<'_>) -> Result<&'static GmemAs> {
        let mn = gmem_mm::notifier_get_locked(&GMEM_AS_OPS, mm)?;
        // SAFETY: `GMEM_AS_OPS` allocates every notifier as a `GmemAs`, and
        // the reference we now own keeps it alive.
        Ok(unsafe { GmemAs::from_notifier(mn) })
    }

    fn notifier(&self) -> *mut bindings::mmu_notifier {
        self.notifier.get()
    }
}

/// `mmu_notifier_ops::alloc_notifier`: a new, empty address space.
unsafe extern "C" fn gmem_as_alloc(_mm: *mut bindings::mm_struct) -> *mut bindings::mmu_notifier {
    let init = pin_init!(GmemAs {
        // SAFETY: An all-zero `mmu_notifier` is its unregistered state.
        notifier: Opaque::new(unsafe { core::mem::zeroed() }),
        regions <- new_mutex!(Regions::new(), "GmemAs::regions"),
    });
    match KBox::pin_init(init, GFP_KERNEL) {
        Ok(as_) => {
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
/// the last reference is put.
unsafe extern "C" fn gmem_as_free(mn: *mut bindings::mmu_notifier) {
    // SAFETY: `mn` came from `gmem_as_alloc` (the invariant of `GmemAs`) and
    // core MM no longer uses it.
    drop(unsafe { KBox::from_raw(mn.cast::<GmemAs>()) });
    STATS.address_spaces.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: Drops the reference taken in `gmem_as_alloc`.  Module exit
    // waits for this callback to return (`mmu_notifier_synchronize`).
    unsafe { bindings::module_put(THIS_MODULE.as_ptr()) };
}

/// `mmu_notifier_ops::release`: the process is exiting (`exit_mmap`).
/// Its regions go away with it, and with them their notifier references.
unsafe extern "C" fn gmem_as_release(mn: *mut bindings::mmu_notifier, _mm: *mut bindings::mm_struct) {
    // SAFETY: Core MM passes a registered notifier of ours; SRCU keeps it
    // alive for the duration of the callback even after the last put below.
    let as_ = unsafe { GmemAs::from_notifier(mn) };
    let gone = as_.regions.lock().clear();
    STATS.regions.fetch_sub(gone as u64, Ordering::Relaxed);
    for _ in 0..gone {
        // SAFETY: Each region owned one reference.
        unsafe { gmem_mm::notifier_put(as_.notifier()) };
    }
}

static GMEM_AS_OPS: gmem_mm::NotifierOps = gmem_mm::NotifierOps::new(bindings::mmu_notifier_ops {
    release: Some(gmem_as_release),
    alloc_notifier: Some(gmem_as_alloc),
    free_notifier: Some(gmem_as_free),
    // SAFETY: All-zero is "no callback" for every other member.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

/// The MAP_PEER_SHARED hook: record the new region in the address space.
unsafe extern "C" fn gmem_peer_shared_hook(mm: *mut bindings::mm_struct, start: usize, len: usize) -> c_int {
    // SAFETY: `gmem_peer_shared_mapped()` calls us with `mm` locked for
    // write (mmap_assert_write_locked) for the duration of the call.
    let mm = unsafe { MmWriteLocked::from_raw(mm) };
    from_result(|| {
        let end = start.checked_add(len).ok_or(EINVAL)?;
        let as_ = GmemAs::get(&mm)?;
        let inserted = as_.regions.lock().insert(start, end);
        if inserted != Ok(true) {
            // The region already held a reference, or there is none to keep.
            // SAFETY: Gives back the reference `GmemAs::get` took.
            unsafe { gmem_mm::notifier_put(as_.notifier()) };
        }
        if inserted? {
            STATS.regions.fetch_add(1, Ordering::Relaxed);
        }
        STATS.peer_shared_mmaps.fetch_add(1, Ordering::Relaxed);
        STATS.peer_shared_bytes.fetch_add(len as u64, Ordering::Relaxed);
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
        if o.ctx_create.is_none() || o.ctx_destroy.is_none() || o.map.is_none() || o.invalidate.is_none() {
            return Err(EINVAL);
        }
        // SAFETY: `name` is a NUL-terminated string per the contract.
        let name = unsafe { CStr::from_char_ptr(name) };
        if name.is_empty() || name.len() > 31 {
            return Err(EINVAL);
        }
        let reg = registry();
        let dev = Arc::new(
            GmemDev {
                ops,
                drvdata,
                name: CString::try_from_fmt(fmt!("{}", name))?,
                caps,
                id: reg.next_id.fetch_add(1, Ordering::Relaxed),
            },
            GFP_KERNEL,
        )?;
        reg.devices.lock().try_create_and_insert(dev.id, dev.clone(), GFP_KERNEL)?;
        // SAFETY: Pins gmem.ko while the device exists; dropped in
        // `gmem_dev_unregister`.
        unsafe { bindings::__module_get(THIS_MODULE.as_ptr()) };
        STATS.devices.fetch_add(1, Ordering::Relaxed);
        pr_info!("device {} ({}) registered, caps {:#x}\n", dev.id, dev.name(), caps);
        // SAFETY: `devp` is writable per the contract.  The registry keeps
        // its own reference, so the pointer stays valid until unregister.
        unsafe { *devp = ptr::from_ref::<GmemDev>(&dev).cast_mut().cast() };
        Ok(0)
    })
}

/// Unregisters a device; on return gmem makes no more calls into its ops.
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
}

// SAFETY: The module object is only touched by init and exit.
unsafe impl Sync for GmemModule {}
// SAFETY: As above.
unsafe impl Send for GmemModule {}

impl kernel::Module for GmemModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let hooks = KBox::pin(
            MmHooks(Opaque::new(bindings::gmem_mm_hooks {
                owner: module.as_ptr(),
                peer_shared_mapped: Some(gmem_peer_shared_hook),
            })),
            GFP_KERNEL,
        )?;
        let reg = KBox::pin_init(
            pin_init!(Registry {
                devices <- new_mutex!(RBTree::new(), "Registry::devices"),
                next_id: AtomicU32::new(0),
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
                if res.is_ok() {
                    res = writeln!(w, "{} {} caps={:#x}", d.id, d.name(), d.caps);
                }
            });
            res
        });

        pr_info!("loaded\n");
        Ok(GmemModule { hooks, registry: reg, debugfs: Some(debugfs) })
    }
}

impl Drop for GmemModule {
    fn drop(&mut self) {
        // SAFETY: Registered in `init` (the invariant of `MmHooks`).
        unsafe { bindings::gmem_unregister_mm_hooks(self.hooks.0.get()) };
        drop(self.debugfs.take());
        // No address space or device is left (each pinned the module), but
        // an address space's free may still be running its last lines.
        gmem_mm::notifier_synchronize();
        REGISTRY.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: Allocated in `init`; nothing can reach it any more.
        drop(unsafe { KBox::from_raw(self.registry) });
        pr_info!("unloaded\n");
    }
}
