// SPDX-License-Identifier: GPL-2.0

//! Small views of core-MM objects for gmem: an mm whose `mmap_lock` is held
//! for write, and mmu notifiers.  Rust 6.12 has no mm abstractions; each
//! `unsafe` fact about them is stated once here.

use core::marker::PhantomData;
use core::ptr;
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::prelude::*;

extern "C" {
    /// `userfaultfd_armed(vma)` (gmem_glue.c).  `vm_area_struct` has
    /// members bindgen cannot lay out, which the FFI lint dislikes; only
    /// its address passes.
    #[allow(improper_ctypes)]
    fn gmem_vma_uffd_armed(vma: *mut bindings::vm_area_struct) -> bool;
    /// Whether a protection change leaves a device's access as it was
    /// (gmem_glue.c); the caller holds `mm`'s mmap lock.  Only the address
    /// of the `mm_struct` passes, as for `vm_area_struct` above.
    #[allow(improper_ctypes)]
    fn gmem_prot_change_keeps_access(
        mm: *mut bindings::mm_struct,
        start: kernel::ffi::c_ulong,
        end: kernel::ffi::c_ulong,
    ) -> bool;
}

/// Whether the invalidation `range` leaves every device mapping of its
/// pages valid: a protection change that still allows reading and writing
/// (NUMA balancing's hinting scan, see gmem_glue.c), not a downgrade.
pub(crate) fn keeps_device_access(range: &bindings::mmu_notifier_range) -> bool {
    range.event == bindings::mmu_notifier_event_MMU_NOTIFY_PROTECTION_VMA
        // SAFETY: Core MM sends this event with `range.mm` valid and its
        // mmap lock held by the invalidating task, which runs this.
        && unsafe { gmem_prot_change_keeps_access(range.mm, range.start, range.end) }
}

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
        Self {
            mm,
            _lock: PhantomData,
        }
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

/// `VM_PEER_SHARED` (include/linux/mm.h of the patched kernel: bit 41);
/// bindgen does not see through `BIT()`.
pub(crate) const VM_PEER_SHARED: u64 = 1 << 41;

/// A reference on an mm's users (`mmget_not_zero`): its page tables and
/// VMAs stay until the reference is dropped.
///
/// # Invariants
///
/// `mm` is valid and this object owns one `mm_users` reference on it.
pub(crate) struct MmUser {
    mm: *mut bindings::mm_struct,
}

impl MmUser {
    /// Takes a users reference on `mm` unless the mm is exiting.
    ///
    /// # Safety
    ///
    /// `mm` must be valid (its `mm_count` held by the caller).
    pub(crate) unsafe fn get(mm: *mut bindings::mm_struct) -> Option<Self> {
        // SAFETY: `mm` is valid per the caller.
        if unsafe { bindings::mmget_not_zero(mm) } {
            Some(Self { mm })
        } else {
            None
        }
    }

    /// The calling task's mm, unless it has none (a kernel thread).
    pub(crate) fn current() -> Option<Self> {
        // Through get_task_mm(), not `task_struct::mm`: bindgen's layout of
        // `task_struct` was seen to differ from the compiler's.
        // SAFETY: `current` is a valid task; the result holds a users
        // reference, which this object owns.
        let mm = unsafe { bindings::get_task_mm(bindings::get_current()) };
        (!mm.is_null()).then_some(Self { mm })
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::mm_struct {
        self.mm
    }

    /// Takes `mmap_lock` for read.
    pub(crate) fn read_lock(&self) -> MmReadGuard<'_> {
        // SAFETY: `mm` is valid (type invariant).
        unsafe { bindings::mmap_read_lock(self.mm) };
        MmReadGuard { mm: self }
    }
}

impl Drop for MmUser {
    fn drop(&mut self) {
        // SAFETY: Drops the reference this object owns.
        unsafe { bindings::mmput(self.mm) };
    }
}

/// `mmap_lock` held for read; unlocked on drop.
pub(crate) struct MmReadGuard<'a> {
    mm: &'a MmUser,
}

impl MmReadGuard<'_> {
    /// The VMA containing `addr`, if any.
    pub(crate) fn vma_at(&self, addr: usize) -> Option<Vma<'_>> {
        // SAFETY: The mm is valid and read-locked.
        let vma = unsafe { bindings::find_vma(self.mm.mm, addr as _) };
        // SAFETY: A non-null result is a VMA of this mm, valid while the
        // lock is held, which the lifetime ties it to.
        let vma = unsafe { vma.as_ref() }?;
        let v = Vma(vma);
        (v.start() <= addr).then_some(v)
    }

    /// The first VMA ending above `addr`, if any.
    pub(crate) fn vma_from(&self, addr: usize) -> Option<Vma<'_>> {
        // SAFETY: As in `vma_at`.
        unsafe { bindings::find_vma(self.mm.mm, addr as _).as_ref() }.map(Vma)
    }

    /// Faults `addr` in as the CPU would, for reading or `write`, waiting
    /// for a userfaultfd handler if one watches it (which
    /// `hmm_range_fault()` cannot: it gets SIGBUS where a CPU fault would
    /// sleep, since it cannot let go of `mmap_lock`).  The lock may be
    /// dropped and retaken meanwhile: VMAs looked up before are stale.
    /// `&mut`: no [`Vma`] borrowed from this guard survives the call.
    pub(crate) fn fault_in_waiting(&mut self, addr: usize, write: bool) -> Result {
        let mut unlocked = false;
        let flags = bindings::fault_flag_FAULT_FLAG_REMOTE
            | if write {
                bindings::fault_flag_FAULT_FLAG_WRITE
            } else {
                0
            };
        // SAFETY: The mm is read-locked, as `fixup_user_fault()` wants, and
        // it returns with the lock held again if it dropped it.
        kernel::error::to_result(unsafe {
            bindings::fixup_user_fault(self.mm.mm, addr as _, flags, &mut unlocked)
        })
    }

    /// Runs `hmm_range_fault()` on `range`, which must belong to this mm.
    pub(crate) fn hmm_range_fault(&self, range: &mut bindings::hmm_range) -> Result {
        // SAFETY: The mm is read-locked as `hmm_range_fault()` requires;
        // `range` is valid for the call and its pfn array is owned by the
        // caller.
        kernel::error::to_result(unsafe { bindings::hmm_range_fault(range) })
    }
}

impl Drop for MmReadGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: This guard took the read lock.
        unsafe { bindings::mmap_read_unlock(self.mm.mm) };
    }
}

/// A VMA seen under `mmap_lock`.
pub(crate) struct Vma<'a>(&'a bindings::vm_area_struct);

impl Vma<'_> {
    pub(crate) fn start(&self) -> usize {
        // SAFETY: Reading a plain field of a valid, locked VMA.
        unsafe { self.0.__bindgen_anon_1.__bindgen_anon_1.vm_start }
    }

    pub(crate) fn end(&self) -> usize {
        // SAFETY: As above.
        unsafe { self.0.__bindgen_anon_1.__bindgen_anon_1.vm_end }
    }

    pub(crate) fn flags(&self) -> u64 {
        // SAFETY: As above.
        unsafe { self.0.__bindgen_anon_2.vm_flags as u64 }
    }

    /// Whether userfaultfd watches this VMA (missing, write-protect or
    /// minor faults).
    pub(crate) fn uffd_armed(&self) -> bool {
        // SAFETY: A valid VMA (the type's meaning).
        unsafe { gmem_vma_uffd_armed(self.as_ptr()) }
    }

    pub(crate) fn is_peer_shared(&self) -> bool {
        self.flags() & VM_PEER_SHARED != 0
    }

    /// Whether a device may be given this VMA's pages at all: not raw pfn
    /// or I/O mappings, not memfd_secret() memory (outside the kernel's
    /// direct map).
    pub(crate) fn device_reachable(&self) -> bool {
        // SAFETY: A valid VMA whose mm is locked (the type's meaning).
        unsafe { bindings::gmem_vma_device_reachable(self.as_ptr()) }
    }

    /// Private anonymous memory (no `vm_ops`), which pages may leave for a
    /// device.
    pub(crate) fn is_anonymous(&self) -> bool {
        self.0.vm_ops.is_null()
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::vm_area_struct {
        ptr::from_ref(self.0).cast_mut()
    }
}

/// `[vm_start, vm_end)` of a VMA.
///
/// # Safety
///
/// `vma` must be valid and its mm (or the VMA itself) locked.
pub(crate) unsafe fn vma_bounds(vma: *mut bindings::vm_area_struct) -> (usize, usize) {
    // SAFETY: Per the function's contract.
    let v = Vma(unsafe { &*vma });
    (v.start(), v.end())
}

/// The mm a VMA belongs to.
///
/// # Safety
///
/// `vma` must be a valid VMA.
pub(crate) unsafe fn vma_mm(vma: *mut bindings::vm_area_struct) -> *mut bindings::mm_struct {
    // SAFETY: Per the function's contract; `vm_mm` never changes.
    unsafe { (*vma).vm_mm }
}

/// A static `mmu_interval_notifier_ops` table.
#[repr(transparent)]
pub(crate) struct IntervalOps(bindings::mmu_interval_notifier_ops);

// SAFETY: Only function pointers, never written.
unsafe impl Sync for IntervalOps {}

impl IntervalOps {
    pub(crate) const fn new(ops: bindings::mmu_interval_notifier_ops) -> Self {
        Self(ops)
    }
}

/// Registers `sub` for `[start, end)` of `mm`'s mm.  No `mmap_lock` may be
/// held: the first interval notifier of an mm registers its subscriptions,
/// which takes it for write.
///
/// # Safety
///
/// `sub` must be zeroed, pinned, and stay valid until
/// [`interval_remove`] returns for it.
pub(crate) unsafe fn interval_insert(
    sub: *mut bindings::mmu_interval_notifier,
    mm: &MmUser,
    start: usize,
    end: usize,
    ops: &'static IntervalOps,
) -> Result {
    let len = (end - start) as _;
    // SAFETY: The caller vouches for `sub`; `mm` is a live mm with a users
    // reference.
    kernel::error::to_result(unsafe {
        bindings::mmu_interval_notifier_insert(sub, mm.as_ptr(), start as _, len, &ops.0)
    })
}

/// Unregisters `sub`, waiting for a running invalidation of it to finish.
///
/// # Safety
///
/// `sub` must be registered; the caller must not hold locks its
/// invalidation callback takes.
pub(crate) unsafe fn interval_remove(sub: *mut bindings::mmu_interval_notifier) {
    // SAFETY: Per the function's contract.
    unsafe { bindings::mmu_interval_notifier_remove(sub) }
}

/// Starts a read-side critical section of the HMM retry protocol.
///
/// # Safety
///
/// `sub` must be registered.
pub(crate) unsafe fn interval_read_begin(sub: *mut bindings::mmu_interval_notifier) -> usize {
    // SAFETY: Per the function's contract.
    unsafe { bindings::mmu_interval_read_begin(sub) as usize }
}

/// True if an invalidation ran since `seq` was read.  Call under the lock
/// the invalidation callback takes.
///
/// # Safety
///
/// `sub` must be registered.
pub(crate) unsafe fn interval_read_retry(
    sub: *mut bindings::mmu_interval_notifier,
    seq: usize,
) -> bool {
    // SAFETY: Per the function's contract.
    unsafe { bindings::mmu_interval_read_retry(sub, seq as _) }
}

/// Publishes the sequence number of a running invalidation.
///
/// # Safety
///
/// Only from the invalidate callback of `sub`, under the driver lock.
pub(crate) unsafe fn interval_set_seq(sub: *mut bindings::mmu_interval_notifier, seq: usize) {
    // SAFETY: Per the function's contract.
    unsafe { bindings::mmu_interval_set_seq(sub, seq as _) }
}
