// SPDX-License-Identifier: GPL-2.0

//! The Rust face of gmem's driver interface (`<linux/gmem.h>`).
//!
//! Two Rust modules can only meet through exported C symbols in 6.12, so a
//! Rust driver includes this file as a module of its own crate
//! (`mod gmem_dev;`) and talks to gmem.ko through the same C ABI that C
//! drivers use.  A driver implements [`GmemDevOps`] and keeps a
//! [`Registration`] for as long as its device should exist.

use core::marker::PhantomData;
use core::ptr;
use kernel::bindings;
use kernel::error::{from_result, to_result};
use kernel::ffi::{c_int, c_uint, c_ulong, c_void};
use kernel::init::PinInit;
use kernel::prelude::*;

/// Device capabilities (`GMEM_DEV_CAP_*`).
pub(crate) mod caps {
    use kernel::bindings;
    /// Faults pause the device and are replayed once resolved.
    pub(crate) const REPLAYABLE: u32 = bindings::GMEM_DEV_CAP_REPLAYABLE;
    /// Has its own memory.
    pub(crate) const DEVMEM: u32 = bindings::GMEM_DEV_CAP_DEVMEM;
    /// Copies between host and device memory.
    pub(crate) const COPY_ENGINE: u32 = bindings::GMEM_DEV_CAP_COPY_ENGINE;
}

/// In `map`'s pfns: an index into the device's own memory.
pub(crate) const PFN_DEVMEM: usize = bindings::GMEM_PFN_DEVMEM as usize;
/// In `copy_to_dev`'s sources: no source page, zero-fill.
pub(crate) const PFN_NONE: usize = bindings::GMEM_PFN_NONE as usize;

/// Faults one [`Attachment::fault_batch`] takes, at most.
pub(crate) const FAULT_BATCH_MAX: usize = bindings::GMEM_FAULT_BATCH_MAX as usize;

/// One fault of a batch: the C `struct gmem_fault_entry`.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct FaultEntry(bindings::gmem_fault_entry);

impl FaultEntry {
    pub(crate) fn new(addr: usize, write: bool) -> Self {
        Self(bindings::gmem_fault_entry {
            addr: addr as _,
            flags: if write { bindings::GMEM_FAULT_WRITE } else { 0 },
            result: 0,
        })
    }

    pub(crate) fn addr(&self) -> usize {
        self.0.addr
    }

    /// What gmem answered for this fault.
    pub(crate) fn result(&self) -> Result {
        to_result(self.0.result)
    }

    /// Answers the fault without gmem (failed before it was asked).
    pub(crate) fn set_result(&mut self, r: Result) {
        self.0.result = match r {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
    }
}

/// Protection of a device mapping (`GMEM_PROT_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Prot(u32);

impl Prot {
    pub(crate) fn writable(self) -> bool {
        self.0 & bindings::GMEM_PROT_WRITE != 0
    }
}

/// The device MMU operations gmem drives; see `struct gmem_dev_ops`.
pub(crate) trait GmemDevOps: Send + Sync + Sized + 'static {
    /// The device's state for one address space (its page table).
    type Context: Send + Sync;

    /// Creates the context (page table) for a new address space.
    fn ctx_create(&self) -> impl PinInit<Self::Context, Error>;

    /// Tears a context down; gmem calls nothing else on it afterwards.
    fn ctx_destroy(&self, ctx: Pin<KBox<Self::Context>>) {
        drop(ctx);
    }

    /// Allocates what mapping `[start, end)` will need, before [`map`]
    /// runs under gmem's page-table lock.  May sleep.
    ///
    /// [`map`]: GmemDevOps::map
    fn prepare(&self, _ctx: &Self::Context, _start: usize, _end: usize) -> Result {
        Ok(())
    }

    /// Maps host pages `pfns` at device address `va` with `prot`.  Runs
    /// under gmem's page-table lock, which reclaim takes: must not allocate
    /// (return `EAGAIN` if what `prepare` set up is gone; gmem retries).
    fn map(&self, ctx: &Self::Context, va: usize, pfns: &[usize], prot: Prot) -> Result;

    /// Removes every mapping in `[start, end)` and flushes the device TLB.
    /// Must not sleep.  Not called for a range where gmem mapped nothing
    /// into `ctx`: the device maps only what `map` gives it.
    fn invalidate(&self, ctx: &Self::Context, start: usize, end: usize);

    /// Copies host pages (`src_pfns`; [`PFN_NONE`]: zeros) into device pages
    /// `dst_idx` (devices with memory only).  Must not fail.
    fn copy_to_dev(&self, _dst_idx: &[usize], _src_pfns: &[usize]) {}

    /// Copies device pages `src_idx` into host pages `dst_pfns`.
    fn copy_from_dev(&self, _dst_pfns: &[usize], _src_idx: &[usize]) {}

    /// Whether the device keeps a clock: a driver that implements
    /// [`read_clock`] sets it, or gmem never calls it (the C op is left
    /// NULL, as upstream's `#[vtable]` does for ops not implemented).
    ///
    /// [`read_clock`]: GmemDevOps::read_clock
    const HAS_CLOCK: bool = false;

    /// The device's own account of its work; gmem times thrashing with
    /// its `ns`, which must never go back.  Must be cheap, not sleep and
    /// not call into gmem: it may run under gmem's page-table lock.
    fn read_clock(&self) -> DevClock {
        DevClock::default()
    }
}

/// A device's clock and traffic (`struct gmem_dev_clock`).
#[derive(Clone, Copy, Default)]
pub(crate) struct DevClock {
    /// Device time so far: what its work took on the device.
    pub(crate) ns: u64,
    /// Bytes over the link towards the device, and back.
    pub(crate) to_dev_bytes: u64,
    pub(crate) to_host_bytes: u64,
    /// Bytes read or written in its own memory.
    pub(crate) local_bytes: u64,
}

/// A device registered with gmem; unregistered on drop.
///
/// # Invariants
///
/// `dev` is registered with gmem, with `data` as its driver data and
/// `Adapter::<T>::OPS` as its ops, until `drop`.
pub(crate) struct Registration<T: GmemDevOps> {
    dev: *mut bindings::gmem_dev,
    _data: KBox<T>,
}

// SAFETY: The registration only holds `T: Send + Sync` and a handle gmem
// accepts from any thread.
unsafe impl<T: GmemDevOps> Send for Registration<T> {}
// SAFETY: As above.
unsafe impl<T: GmemDevOps> Sync for Registration<T> {}

impl<T: GmemDevOps> Registration<T> {
    /// Registers a device called `name` with capabilities `caps`.
    pub(crate) fn new(name: &CStr, caps: u32, data: T) -> Result<Self> {
        let data = KBox::new(data, GFP_KERNEL)?;
        let mut dev = ptr::null_mut();
        // SAFETY: The ops table is static, `data` is heap-allocated and
        // outlives the registration (dropped after unregister), `name` is
        // NUL-terminated and `dev` is writable.
        to_result(unsafe {
            bindings::gmem_dev_register(
                Adapter::<T>::ops(),
                (&*data as *const T).cast_mut().cast(),
                name.as_char_ptr(),
                caps,
                &mut dev,
            )
        })?;
        Ok(Self { dev, _data: data })
    }

    /// Gives gmem `size` bytes of the device's memory to manage.
    pub(crate) fn add_memory(&self, size: usize) -> Result {
        // SAFETY: The device is registered (type invariant).
        to_result(unsafe { bindings::gmem_dev_add_memory(self.dev, size as _) })
    }

    /// The id gmem gave the device.
    pub(crate) fn id(&self) -> u32 {
        // SAFETY: The device is registered (type invariant).
        unsafe { bindings::gmem_dev_id(self.dev) }
    }
}

impl<T: GmemDevOps> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: Registered (type invariant).  On return gmem makes no more
        // calls with `data`, which is freed after this.
        unsafe { bindings::gmem_dev_unregister(self.dev) };
    }
}

/// The address space of the calling task (null for kernel threads).
///
/// Read through `get_task_mm()`, not `task_struct::mm`: bindgen's layout of
/// `task_struct` was seen to differ from the compiler's with this toolchain.
/// The pointer stays valid while the task runs the current system call.
pub(crate) fn current_mm() -> *mut bindings::mm_struct {
    // SAFETY: `current` is a valid task.
    let mm = unsafe { bindings::get_task_mm(bindings::get_current()) };
    if !mm.is_null() {
        // SAFETY: Drops the reference `get_task_mm()` took; the task still
        // holds its own.
        unsafe { bindings::mmput(mm) };
    }
    mm
}

/// A device's attachment to one address space (a gmem context); detached
/// on drop.
///
/// # Invariants
///
/// `ctx` is attached, until drop, to a device registered through a
/// [`Registration<T>`] whose driver data outlives this object (the driver
/// guarantees it: its files pin its module).  The registration may be
/// dropped first (hot-unplug): gmem then tore the context down, and only
/// what works on a torn-down context (detaching, the calls that then fail
/// with `ENODEV`) may be used; see [`Attachment::driver_ctx`].
pub(crate) struct Attachment<T: GmemDevOps> {
    ctx: *mut bindings::gmem_ctx,
    _ops: PhantomData<T>,
}

// SAFETY: gmem contexts may be used from any thread.
unsafe impl<T: GmemDevOps> Send for Attachment<T> {}
// SAFETY: As above; gmem serialises what needs it.
unsafe impl<T: GmemDevOps> Sync for Attachment<T> {}

impl<T: GmemDevOps> Attachment<T> {
    /// Attaches the calling process's address space to `reg`'s device.
    pub(crate) fn attach_current(reg: &Registration<T>) -> Result<Self> {
        let mm = current_mm();
        if mm.is_null() {
            return Err(EINVAL);
        }
        let mut ctx = ptr::null_mut();
        // SAFETY: The device is registered, `mm` has a users reference
        // (held by the running task) and `ctx` is writable.
        to_result(unsafe { bindings::gmem_ctx_attach(reg.dev, mm, &mut ctx) })?;
        Ok(Self {
            ctx,
            _ops: PhantomData,
        })
    }

    /// The driver's context created for this attachment.
    ///
    /// # Safety
    ///
    /// The device must still be registered, and stay so while the result
    /// is used: unregistration destroys the driver contexts of its
    /// attachments (which stay valid only for detaching).
    pub(crate) unsafe fn driver_ctx(&self) -> &T::Context {
        // SAFETY: Attached, and the device registered per the contract, so
        // the driver context from `ctx_create` is alive.
        unsafe { &*bindings::gmem_ctx_drvctx(self.ctx).cast::<T::Context>() }
    }

    /// Reports a device fault; returns the number of pages gmem mapped.
    /// For a driver without a fault buffer (the NPU batches its faults).
    #[allow(dead_code)]
    pub(crate) fn fault(&self, addr: usize, write: bool) -> Result<usize> {
        let flags = if write { bindings::GMEM_FAULT_WRITE } else { 0 };
        // SAFETY: Attached (type invariant).  May sleep, as we may.
        let ret = unsafe { bindings::gmem_dev_fault(self.ctx, addr as _, flags) };
        if ret < 0 {
            Err(Error::from_errno(ret as i32))
        } else {
            Ok(ret as usize)
        }
    }

    /// Reports the faults of a device's fault buffer at once (at most
    /// [`FAULT_BATCH_MAX`]), each resolved or failed in its `result`;
    /// returns how many gmem served once duplicates were removed.
    pub(crate) fn fault_batch(&self, faults: &mut [FaultEntry]) -> Result<usize> {
        let n = u32::try_from(faults.len()).map_err(|_| EINVAL)?;
        // SAFETY: Attached (type invariant); `FaultEntry` is the C entry,
        // and the slice is ours for the call.  May sleep, as we may.
        let ret =
            unsafe { bindings::gmem_dev_fault_batch(self.ctx, faults.as_mut_ptr().cast(), n) };
        if ret < 0 {
            Err(Error::from_errno(ret as i32))
        } else {
            Ok(ret as usize)
        }
    }

    /// Reports that the device used the block around `addr` in host
    /// memory, in place, more than its access-counter threshold; returns
    /// the pages gmem moved to device memory (0: the block stays).
    pub(crate) fn notify_access(&self, addr: usize) -> Result<usize> {
        // SAFETY: Attached (type invariant).  May sleep, as we may.
        let ret = unsafe { bindings::gmem_dev_notify_access(self.ctx, addr as _) };
        if ret < 0 {
            Err(Error::from_errno(ret as i32))
        } else {
            Ok(ret as usize)
        }
    }

    /// Reports that the device used the block around `addr` in its own
    /// memory more than its threshold: gmem keeps it ahead in eviction
    /// order.
    pub(crate) fn notify_use(&self, addr: usize) -> Result {
        // SAFETY: Attached (type invariant).
        let ret = unsafe { bindings::gmem_dev_notify_use(self.ctx, addr as _) };
        to_result(ret as i32)
    }

    /// Keeps this context's pages in host memory (`true`) or lets device
    /// faults migrate them to device memory (`false`, the default).
    pub(crate) fn set_place_host(&self, host: bool) -> Result {
        let p = if host {
            bindings::GMEM_PLACE_HOST
        } else {
            bindings::GMEM_PLACE_MIGRATE
        };
        // SAFETY: Attached (type invariant).
        to_result(unsafe { bindings::gmem_ctx_set_placement(self.ctx, p) })
    }

    /// Migrates `[start, end)` to the device's memory or back to the host.
    pub(crate) fn prefetch(&self, start: usize, end: usize, to_host: bool) -> Result {
        let flags = if to_host {
            bindings::GMEM_PREFETCH_TO_HOST
        } else {
            0
        };
        // SAFETY: Attached (type invariant).  May sleep, as we may.
        to_result(unsafe { bindings::gmem_prefetch(self.ctx, start as _, end as _, flags) })
    }

    /// Lets the device reach any mapping (`true`) or only MAP_PEER_SHARED
    /// regions (`false`, the default).
    pub(crate) fn set_system_allocator(&self, on: bool) -> Result {
        let policy = if on {
            bindings::GMEM_POLICY_SYSTEM
        } else {
            bindings::GMEM_POLICY_PEER_SHARED
        };
        // SAFETY: Attached (type invariant).
        to_result(unsafe { bindings::gmem_ctx_set_policy(self.ctx, policy) })
    }
}

impl<T: GmemDevOps> Drop for Attachment<T> {
    fn drop(&mut self) {
        // SAFETY: Attached until now; nothing uses `ctx` afterwards.
        unsafe { bindings::gmem_ctx_detach(self.ctx) };
    }
}

/// Turns the C callbacks into calls of `T`'s methods.
struct Adapter<T>(PhantomData<T>);

impl<T: GmemDevOps> Adapter<T> {
    const OPS: bindings::gmem_dev_ops = bindings::gmem_dev_ops {
        ctx_create: Some(Self::ctx_create),
        ctx_destroy: Some(Self::ctx_destroy),
        prepare: Some(Self::prepare),
        map: Some(Self::map),
        invalidate: Some(Self::invalidate),
        copy_to_dev: Some(Self::copy_to_dev),
        copy_from_dev: Some(Self::copy_from_dev),
        read_clock: if T::HAS_CLOCK {
            Some(Self::read_clock)
        } else {
            None
        },
    };

    fn ops() -> &'static bindings::gmem_dev_ops {
        &Self::OPS
    }

    /// # Safety
    ///
    /// `drvdata` must be the `T` of a live [`Registration`].
    unsafe fn data<'a>(drvdata: *mut c_void) -> &'a T {
        // SAFETY: Per the function's contract.
        unsafe { &*drvdata.cast::<T>() }
    }

    /// A new device context for an address space.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and a `ctx` is one that
    /// `ctx_create` made and `ctx_destroy` has not yet taken back.
    unsafe extern "C" fn ctx_create(
        drvdata: *mut c_void,
        _mm: *mut bindings::mm_struct,
        ctx: *mut *mut c_void,
    ) -> c_int {
        from_result(|| {
            // SAFETY: gmem passes the driver data of a registered device.
            let data = unsafe { Self::data(drvdata) };
            let new = KBox::pin_init(data.ctx_create(), GFP_KERNEL)?;
            // SAFETY: `ctx` is writable per the C contract.  The context
            // stays pinned: it is only rebuilt as a pinned box.
            unsafe { *ctx = KBox::into_raw(Pin::into_inner_unchecked(new)).cast() };
            Ok(0)
        })
    }

    /// Takes back and drops a context.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and a `ctx` is one that
    /// `ctx_create` made and `ctx_destroy` has not yet taken back.
    unsafe extern "C" fn ctx_destroy(drvdata: *mut c_void, ctx: *mut c_void) {
        // SAFETY: gmem passes the driver data of a registered device and a
        // context from `ctx_create`, which it gives up here.
        let (data, ctx) = unsafe {
            (
                Self::data(drvdata),
                Pin::new_unchecked(KBox::from_raw(ctx.cast::<T::Context>())),
            )
        };
        data.ctx_destroy(ctx);
    }

    /// Makes the device ready to map `[start, end)`.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and a `ctx` is one that
    /// `ctx_create` made and `ctx_destroy` has not yet taken back.
    unsafe extern "C" fn prepare(
        drvdata: *mut c_void,
        ctx: *mut c_void,
        start: c_ulong,
        end: c_ulong,
    ) -> c_int {
        from_result(|| {
            // SAFETY: gmem passes the driver data of a registered device and
            // a live context.
            let (data, ctx) = unsafe { (Self::data(drvdata), &*ctx.cast::<T::Context>()) };
            data.prepare(ctx, start, end)?;
            Ok(0)
        })
    }

    /// Maps `npages` pages at `va`.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and a `ctx` is one that
    /// `ctx_create` made and `ctx_destroy` has not yet taken back.
    unsafe extern "C" fn map(
        drvdata: *mut c_void,
        ctx: *mut c_void,
        va: c_ulong,
        pfns: *const c_ulong,
        npages: c_ulong,
        prot: c_uint,
    ) -> c_int {
        from_result(|| {
            // SAFETY: gmem passes the driver data of a registered device, a
            // live context, and `npages` readable pfns.
            let (data, ctx, pfns) = unsafe {
                (
                    Self::data(drvdata),
                    &*ctx.cast::<T::Context>(),
                    core::slice::from_raw_parts(pfns.cast::<usize>(), npages),
                )
            };
            data.map(ctx, va, pfns, Prot(prot))?;
            Ok(0)
        })
    }

    /// The driver data and the two page arrays of a copy call.
    ///
    /// # Safety
    ///
    /// `drvdata` as for [`Self::data`]; `dst` and `src` must point to `n`
    /// entries each, valid for `'a`.
    unsafe fn copy_args<'a>(
        drvdata: *mut c_void,
        dst: *const c_ulong,
        src: *const c_ulong,
        n: c_ulong,
    ) -> (&'a T, &'a [usize], &'a [usize]) {
        // SAFETY: Per the function's contract.
        unsafe {
            (
                Self::data(drvdata),
                core::slice::from_raw_parts(dst.cast::<usize>(), n),
                core::slice::from_raw_parts(src.cast::<usize>(), n),
            )
        }
    }

    /// The copy engine, host to device.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and the arrays hold `n`
    /// entries each.
    unsafe extern "C" fn copy_to_dev(
        drvdata: *mut c_void,
        dst: *const c_ulong,
        src: *const c_ulong,
        n: c_ulong,
    ) {
        // SAFETY: gmem passes the driver data of a registered device and two
        // arrays of `n` entries.
        let (data, dst, src) = unsafe { Self::copy_args(drvdata, dst, src, n) };
        data.copy_to_dev(dst, src);
    }

    /// The copy engine, device to host.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and the arrays hold `n`
    /// entries each.
    unsafe extern "C" fn copy_from_dev(
        drvdata: *mut c_void,
        dst: *const c_ulong,
        src: *const c_ulong,
        n: c_ulong,
    ) {
        // SAFETY: As in `copy_to_dev`.
        let (data, dst, src) = unsafe { Self::copy_args(drvdata, dst, src, n) };
        data.copy_from_dev(dst, src);
    }

    /// Reports the device's clock.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and `clk` is writable.
    unsafe extern "C" fn read_clock(drvdata: *mut c_void, clk: *mut bindings::gmem_dev_clock) {
        // SAFETY: gmem passes the driver data of a registered device.
        let c = unsafe { Self::data(drvdata) }.read_clock();
        // SAFETY: Writable per the contract.
        unsafe {
            *clk = bindings::gmem_dev_clock {
                ns: c.ns,
                to_dev_bytes: c.to_dev_bytes,
                to_host_bytes: c.to_host_bytes,
                local_bytes: c.local_bytes,
            }
        };
    }

    /// Unmaps `[start, end)`.
    ///
    /// # Safety
    ///
    /// Called by gmem only, through the ops of a device registered by
    /// [`Registration`]: `drvdata` is its `T`, and a `ctx` is one that
    /// `ctx_create` made and `ctx_destroy` has not yet taken back.
    unsafe extern "C" fn invalidate(
        drvdata: *mut c_void,
        ctx: *mut c_void,
        start: c_ulong,
        end: c_ulong,
    ) {
        // SAFETY: gmem passes the driver data of a registered device and a
        // live context.
        let (data, ctx) = unsafe { (Self::data(drvdata), &*ctx.cast::<T::Context>()) };
        data.invalidate(ctx, start, end);
    }
}
