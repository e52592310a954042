// SPDX-License-Identifier: GPL-2.0

//! The Rust face of gmem's driver interface (`<linux/gmem.h>`).
//!
//! Two Rust modules can only meet through exported C symbols in 6.12, so a
//! Rust driver includes this file as a module of its own crate
//! (`mod gmem_dev;`) and talks to gmem.ko through the same C ABI that C
//! drivers use.  A driver implements [`GmemDevOps`] and keeps a
//! [`Registration`] for as long as its device should exist.

use kernel::ffi::{c_int, c_uint, c_ulong, c_void};
use core::marker::PhantomData;
use core::ptr;
use kernel::bindings;
use kernel::error::{from_result, to_result};
use kernel::prelude::*;

/// Device capabilities (`GMEM_DEV_CAP_*`).
pub(crate) mod caps {
    use kernel::bindings;
    /// Faults pause the device and are replayed once resolved.
    pub(crate) const REPLAYABLE: u32 = bindings::GMEM_DEV_CAP_REPLAYABLE;
}

/// Protection of a device mapping (`GMEM_PROT_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Prot(u32);

/// The device MMU operations gmem drives; see `struct gmem_dev_ops`.
pub(crate) trait GmemDevOps: Send + Sync + Sized + 'static {
    /// The device's state for one address space (its page table).
    type Context: Send + Sync;

    /// Creates the context (page table) for a new address space.
    fn ctx_create(&self) -> Result<Self::Context>;

    /// Tears a context down; gmem calls nothing else on it afterwards.
    fn ctx_destroy(&self, ctx: Self::Context) {
        drop(ctx);
    }

    /// Maps host pages `pfns` at device address `va` with `prot`.
    fn map(&self, ctx: &Self::Context, va: usize, pfns: &[usize], prot: Prot) -> Result;

    /// Removes every mapping in `[start, end)` and flushes the device TLB.
    /// Must not sleep.
    fn invalidate(&self, ctx: &Self::Context, start: usize, end: usize);
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

/// Turns the C callbacks into calls of `T`'s methods.
struct Adapter<T>(PhantomData<T>);

impl<T: GmemDevOps> Adapter<T> {
    const OPS: bindings::gmem_dev_ops = bindings::gmem_dev_ops {
        ctx_create: Some(Self::ctx_create),
        ctx_destroy: Some(Self::ctx_destroy),
        map: Some(Self::map),
        invalidate: Some(Self::invalidate),
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

    unsafe extern "C" fn ctx_create(
        drvdata: *mut c_void,
        _mm: *mut bindings::mm_struct,
        ctx: *mut *mut c_void,
    ) -> c_int {
        from_result(|| {
            // SAFETY: gmem passes the driver data of a registered device.
            let data = unsafe { Self::data(drvdata) };
            let new = KBox::new(data.ctx_create()?, GFP_KERNEL)?;
            // SAFETY: `ctx` is writable per the C contract.
            unsafe { *ctx = KBox::into_raw(new).cast() };
            Ok(0)
        })
    }

    unsafe extern "C" fn ctx_destroy(drvdata: *mut c_void, ctx: *mut c_void) {
        // SAFETY: gmem passes the driver data of a registered device and a
        // context from `ctx_create`, which it gives up here.
        let (data, ctx) = unsafe { (Self::data(drvdata), KBox::from_raw(ctx.cast::<T::Context>())) };
        data.ctx_destroy(KBox::into_inner(ctx));
    }

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
                    core::slice::from_raw_parts(pfns.cast::<usize>(), npages as usize),
                )
            };
            data.map(ctx, va as usize, pfns, Prot(prot))?;
            Ok(0)
        })
    }

    unsafe extern "C" fn invalidate(drvdata: *mut c_void, ctx: *mut c_void, start: c_ulong, end: c_ulong) {
        // SAFETY: gmem passes the driver data of a registered device and a
        // live context.
        let (data, ctx) = unsafe { (Self::data(drvdata), &*ctx.cast::<T::Context>()) };
        data.invalidate(ctx, start as usize, end as usize);
    }
}
