// SPDX-License-Identifier: GPL-2.0

//! Small views of core-MM objects for gmem: an mm whose `mmap_lock` is held
//! for write, and mmu notifiers.  Rust 6.12 has no mm abstractions; each
//! `unsafe` fact about them is stated once here.

use core::marker::PhantomData;
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::prelude::*;

/// An `mm_struct` whose `mmap_lock` the caller holds for write.
///
/// # Invariants
///
/// `mm` is valid and write-locked for the lifetime `'a`.
pub(crate) struct MmWriteLocked<'a> {
    mm: *mut bindings::mm_struct,
    _lock: PhantomData<&'a ()>,
}

impl MmWriteLocked<'_> {
    /// # Safety
    ///
    /// `mm` must be valid and its `mmap_lock` held for write while the
    /// returned value lives.
    pub(crate) unsafe fn from_raw(mm: *mut bindings::mm_struct) -> Self {
        Self { mm, _lock: PhantomData }
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::mm_struct {
        self.mm
    }
}

/// A static `mmu_notifier_ops` table.
#[repr(transparent)]
pub(crate) struct NotifierOps(bindings::mmu_notifier_ops);

// SAFETY: The table holds only function pointers and is never written.
unsafe impl Sync for NotifierOps {}

impl NotifierOps {
    pub(crate) const fn new(ops: bindings::mmu_notifier_ops) -> Self {
        Self(ops)
    }
}

/// Finds the notifier of `ops` registered on `mm`, or allocates one with
/// `ops.alloc_notifier` and registers it, and takes a reference on it.
pub(crate) fn notifier_get_locked(
    ops: &'static NotifierOps,
    mm: &MmWriteLocked<'_>,
) -> Result<*mut bindings::mmu_notifier> {
    // SAFETY: `ops` is static and `mm` is write-locked (type invariant), as
    // `mmu_notifier_get_locked()` requires.
    from_err_ptr(unsafe { bindings::mmu_notifier_get_locked(&ops.0, mm.as_ptr()) })
}

/// Drops a reference taken by [`notifier_get_locked`]; the last one
/// unregisters the notifier and frees it after an SRCU grace period.
///
/// # Safety
///
/// The caller must own a reference on `mn`.
pub(crate) unsafe fn notifier_put(mn: *mut bindings::mmu_notifier) {
    // SAFETY: The caller owns the reference it gives back.
    unsafe { bindings::mmu_notifier_put(mn) }
}

/// Waits for every pending `free_notifier` callback to finish.
pub(crate) fn notifier_synchronize() {
    // SAFETY: Callable from any sleepable context.
    unsafe { bindings::mmu_notifier_synchronize() }
}
