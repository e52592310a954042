// SPDX-License-Identifier: GPL-2.0

//! `/dev/gmem`: hints on ranges of the caller's address space, in CUDA's
//! vocabulary (`GMEM_IOC_ADVISE`), their query (`GMEM_IOC_GET_ATTRS`), and
//! the list of devices (`GMEM_IOC_DEV_INFO`).
//!
//! An ioctl rather than the RFC's `hmadvise()` system call: a module cannot
//! add a system call, the core-MM patch stays two hooks long, and, as the
//! RFC's reviewers asked, the call has madvise()'s shape (a range and an
//! advice) plus the one thing madvise() lacks, a device.  Each call acts on
//! the caller's mm, like madvise(); the file carries no state.
//!
//! Every argument is checked before anything changes: a call that fails
//! with `EINVAL`, `EFAULT`, `EACCES` or `ENODEV` changes nothing.

use kernel::bindings;
use kernel::ffi::{c_uint, c_ulong};
use kernel::ioctl::{_IOW, _IOWR};
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;

use crate::gmem_fault::{self, map_range, Place};
use crate::gmem_mm::MmUser;
use crate::gmem_uaccess::{read_arg, write_arg};
use crate::gmem_vma::{self, Attrs, Loc};
use crate::{GmemAs, GmemCtx, STATS};

const PAGE_SIZE: usize = bindings::PAGE_SIZE;
const IOC_MAGIC: u32 = bindings::GMEM_IOC_MAGIC as u32;
const IOC_ADVISE: u32 = _IOW::<bindings::gmem_advise>(IOC_MAGIC, 1);
const IOC_GET_ATTRS: u32 = _IOWR::<bindings::gmem_range_attrs>(IOC_MAGIC, 2);
const IOC_DEV_INFO: u32 = _IOWR::<bindings::gmem_dev_info>(IOC_MAGIC, 3);
const DEV_HOST: i32 = bindings::GMEM_DEV_HOST;
const DEV_NONE: i32 = bindings::GMEM_DEV_NONE;

/// The `/dev/gmem` misc device, registered from module init to exit.
///
/// # Invariants
///
/// `misc` is registered from the return of [`Misc::register`] until drop.
pub(crate) struct Misc {
    misc: Pin<KBox<Opaque<bindings::miscdevice>>>,
}

// SAFETY: Registered once, deregistered once; no other access.
unsafe impl Send for Misc {}
// SAFETY: As above.
unsafe impl Sync for Misc {}

#[repr(transparent)]
struct Fops(bindings::file_operations);

// SAFETY: Written once in `register` before the device exists, then only
// read.
unsafe impl Sync for Fops {}

static mut FOPS: Fops = Fops(bindings::file_operations {
    unlocked_ioctl: Some(gmem_ioctl),
    // SAFETY: All-zero is "not implemented" for every other member.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

impl Misc {
    /// Registers `/dev/gmem`; open files pin `module`.
    pub(crate) fn register(module: &'static ThisModule) -> Result<Self> {
        // SAFETY: The device does not exist yet, so nothing reads `FOPS`.
        unsafe { FOPS.0.owner = module.as_ptr() };
        // SAFETY: All-zero is an unregistered miscdevice.
        let misc: Pin<KBox<Opaque<bindings::miscdevice>>> =
            KBox::pin(Opaque::new(unsafe { core::mem::zeroed() }), GFP_KERNEL)?;
        // SAFETY: Pinned and unregistered; the name and fops are static.
        unsafe {
            let m = misc.get();
            (*m).minor = bindings::MISC_DYNAMIC_MINOR as i32;
            (*m).name = kernel::c_str!("gmem").as_char_ptr();
            (*m).fops = &raw const FOPS.0;
            (*m).mode = 0o666;
            kernel::error::to_result(bindings::misc_register(m))?;
        }
        Ok(Self { misc })
    }
}

impl Drop for Misc {
    fn drop(&mut self) {
        // SAFETY: Registered (type invariant); no file is open, each pins
        // the module.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

/// `file_operations::unlocked_ioctl` of `/dev/gmem`.
///
/// # Safety
///
/// Called by the VFS only, for an open file of `/dev/gmem`.
unsafe extern "C" fn gmem_ioctl(_file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> isize {
    let res = match cmd {
        IOC_ADVISE => read_arg::<bindings::gmem_advise>(arg).and_then(|a| advise(&a)),
        IOC_GET_ATTRS => read_arg::<bindings::gmem_range_attrs>(arg).and_then(|mut q| {
            get_attrs(&mut q)?;
            write_arg(arg, &q)
        }),
        IOC_DEV_INFO => read_arg::<bindings::gmem_dev_info>(arg).and_then(|mut d| {
            if d.reserved != 0 {
                return Err(EINVAL);
            }
            crate::registry().dev_info(&mut d)?;
            write_arg(arg, &d)
        }),
        _ => Err(ENOTTY),
    };
    match res {
        Ok(()) => 0,
        Err(e) => e.to_errno() as isize,
    }
}

/// A page-aligned, non-empty, non-wrapping range.
fn check_range(addr: u64, len: u64) -> Result<(usize, usize)> {
    let end = addr.checked_add(len).ok_or(EINVAL)?;
    if len == 0 || (addr | len) % PAGE_SIZE as u64 != 0 {
        return Err(EINVAL);
    }
    Ok((addr as usize, end as usize))
}

/// The caller's address space, with a users reference on its mm.
struct Caller {
    user: MmUser,
    as_: &'static GmemAs,
}

impl Caller {
    fn get() -> Result<Self> {
        let user = MmUser::current().ok_or(ESRCH)?;
        // SAFETY: `user` holds a users reference on the mm.
        let as_ = unsafe { GmemAs::get(user.as_ptr())? };
        Ok(Self { user, as_ })
    }

    /// Checks that `[start, end)` is mapped (`EFAULT`) and that devices may
    /// reach all of it (`EACCES`), and covers it with regions, so that
    /// unmapping it drops its attributes.  Only the range: a hint must not
    /// cost more as regions elsewhere in the same VMA (merged mappings,
    /// each with its own hint) grow in number.
    fn check_reachable(&self, start: usize, end: usize) -> Result {
        let mut spans: KVec<(usize, usize)> = KVec::new();
        {
            let mm = self.user.read_lock();
            let mut addr = start;
            while addr < end {
                let vma = mm.vma_at(addr).ok_or(EFAULT)?;
                if !self.as_.allows(&vma) {
                    return Err(EACCES);
                }
                spans.push((vma.start().max(start), vma.end().min(end)), GFP_KERNEL)?;
                addr = vma.end();
            }
        }
        for (s, e) in spans {
            gmem_vma::ensure_covered(self.as_, &self.user, s, e)?;
        }
        Ok(())
    }

    /// This process's context on device `dev`.
    fn ctx(&self, dev: i32) -> Result<Arc<GmemCtx>> {
        if dev < 0 {
            return Err(if dev == DEV_HOST { EINVAL } else { ENODEV });
        }
        self.as_
            .pt
            .lock()
            .iter()
            .find(|c| c.dev_id() == dev as u32 && !c.is_dead())
            .cloned()
            .ok_or(ENODEV)
    }

    /// Applies `f` to the attributes of `[start, end)`; devices fault
    /// there again under the new policy.
    fn update(&self, start: usize, end: usize, f: impl Fn(&mut Attrs)) -> Result {
        self.as_.regions.lock().attrs.update(start, end, f)?;
        self.as_.repolicy(start, end);
        Ok(())
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.as_.put();
    }
}

fn advise(a: &bindings::gmem_advise) -> Result {
    if a.reserved != 0 || a.advice == 0 || a.advice > bindings::GMEM_ADV_MAX {
        return Err(EINVAL);
    }
    let (start, end) = check_range(a.addr, a.len)?;
    let c = Caller::get()?;
    // Every check before the first change.
    let ctx = match a.advice {
        bindings::GMEM_ADV_SET_ACCESSED_BY
        | bindings::GMEM_ADV_UNSET_ACCESSED_BY
        | bindings::GMEM_ADV_PIN
        | bindings::GMEM_ADV_UNPIN => Some(c.ctx(a.dev)?),
        bindings::GMEM_ADV_SET_PREFERRED_LOCATION | bindings::GMEM_ADV_PREFETCH
            if a.dev != DEV_HOST =>
        {
            Some(c.ctx(a.dev)?)
        }
        _ => None,
    };
    // Held while the hint reaches the device (see `GmemDev::enter`).
    let _dev = match ctx.as_deref() {
        Some(x) => Some(x.enter()?),
        None => None,
    };
    c.check_reachable(start, end)?;
    let bit = ctx.as_ref().map_or(0, |x| 1u64 << x.dev_id());
    let mm = c.user.as_ptr() as usize;
    match a.advice {
        bindings::GMEM_ADV_SET_PREFERRED_LOCATION => {
            let loc = ctx.as_ref().map_or(Loc::Host, |x| Loc::Dev(x.dev_id()));
            c.update(start, end, |at| at.preferred = loc)
        }
        bindings::GMEM_ADV_UNSET_PREFERRED_LOCATION => {
            c.update(start, end, |at| at.preferred = Loc::None)
        }
        bindings::GMEM_ADV_SET_READ_MOSTLY => c.update(start, end, |at| at.read_mostly = true),
        bindings::GMEM_ADV_UNSET_READ_MOSTLY => c.update(start, end, |at| at.read_mostly = false),
        bindings::GMEM_ADV_SET_ACCESSED_BY => {
            c.update(start, end, |at| at.accessed_by |= bit)?;
            // Mapped now, in place; what cannot be is faulted later.
            let _ = map_range(ctx.as_deref().ok_or(EINVAL)?, start, end, Place::Where);
            Ok(())
        }
        bindings::GMEM_ADV_UNSET_ACCESSED_BY => c.update(start, end, |at| at.accessed_by &= !bit),
        bindings::GMEM_ADV_PIN => {
            let ctx = ctx.as_deref().ok_or(EINVAL)?;
            if let Some(pool) = ctx.devmem() {
                // Before any change: over a limit, nothing is pinned.
                pool.check_pin(mm, start, end)?;
            }
            // What was pinned before stays pinned if this call fails.
            let before = c
                .as_
                .regions
                .lock()
                .attrs
                .ranges(start, end, |at| at.pinned & bit != 0)?;
            c.update(start, end, |at| at.pinned |= bit)?;
            if let Some(pool) = ctx.devmem() {
                pool.set_pinned(mm, start, end, true);
            }
            let res = map_range(ctx, start, end, Place::Device);
            if res.is_err() {
                // Out of room, a signal, the device going: the range is
                // left as it was.
                let _ = c.update(start, end, |at| at.pinned &= !bit);
                if let Some(pool) = ctx.devmem() {
                    pool.set_pinned(mm, start, end, false);
                }
                for &(s, e) in before.iter() {
                    let _ = c.update(s, e, |at| at.pinned |= bit);
                    if let Some(pool) = ctx.devmem() {
                        pool.set_pinned(mm, s, e, true);
                    }
                }
            }
            res
        }
        bindings::GMEM_ADV_UNPIN => {
            c.update(start, end, |at| at.pinned &= !bit)?;
            if let Some(pool) = ctx.as_ref().and_then(|x| x.devmem()) {
                pool.set_pinned(mm, start, end, false);
            }
            Ok(())
        }
        bindings::GMEM_ADV_PREFETCH => match ctx.as_deref() {
            Some(ctx) => map_range(ctx, start, end, Place::Device),
            None => {
                // Home from every device that holds some of it.
                let ctxs = {
                    let pt = c.as_.pt.lock();
                    let mut v = KVec::with_capacity(pt.len(), GFP_NOWAIT)?;
                    for x in pt.iter() {
                        v.push(x.clone(), GFP_NOWAIT)?;
                    }
                    v
                };
                for x in ctxs.iter() {
                    // A device going away brings its pages home itself.
                    let Ok(_dev) = x.enter() else {
                        continue;
                    };
                    gmem_fault::prefetch_to_host(x, start, end)?;
                }
                Ok(())
            }
        },
        bindings::GMEM_ADV_DISCARD => {
            // SAFETY: `user` holds a users reference; no lock is held.
            kernel::error::to_result(unsafe {
                bindings::gmem_discard(c.user.as_ptr(), start as _, end - start)
            })?;
            STATS.discarded_pages.fetch_add(
                ((end - start) / PAGE_SIZE) as u64,
                core::sync::atomic::Ordering::Relaxed,
            );
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

fn get_attrs(q: &mut bindings::gmem_range_attrs) -> Result {
    if q.reserved != 0 {
        return Err(EINVAL);
    }
    let (start, end) = check_range(q.addr, q.len)?;
    let c = Caller::get()?;
    c.check_reachable(start, end)?;
    let at = c.as_.regions.lock().attrs.common(start, end);
    q.preferred_location = match at.preferred {
        Loc::None => DEV_NONE,
        Loc::Host => DEV_HOST,
        Loc::Dev(d) => d as i32,
    };
    q.read_mostly = u32::from(at.read_mostly);
    q.accessed_by = at.accessed_by;
    q.pinned = at.pinned;
    Ok(())
}
