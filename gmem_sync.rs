// SPDX-License-Identifier: GPL-2.0

//! Synchronisation pieces the 6.12 `kernel` crate lacks: a mutex with
//! `try_lock` (mmu notifiers that may not sleep must not block on it) and a
//! work item that is a plain field of a larger object.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr;
use kernel::bindings;
use kernel::ffi::c_char;
use kernel::init::PinInit;
use kernel::prelude::*;
use kernel::sync::LockClassKey;
use kernel::types::Opaque;

/// The C `lock_class_key` of `key` (its `as_ptr` is private to the
/// `kernel` crate in 6.12).
pub(crate) fn lock_class_ptr(key: &'static LockClassKey) -> *mut bindings::lock_class_key {
    // `LockClassKey` is a `repr(transparent)` wrapper of an
    // `Opaque<lock_class_key>`, itself a `lock_class_key` in memory.
    ptr::from_ref(key).cast_mut().cast()
}

/// A `struct mutex` protecting a `T`, with `try_lock`.
///
/// # Invariants
///
/// `raw` is an initialised mutex that protects `data`.
#[pin_data]
pub(crate) struct TryMutex<T> {
    #[pin]
    raw: Opaque<bindings::mutex>,
    data: UnsafeCell<T>,
}

// SAFETY: The mutex hands `T` to one thread at a time.
unsafe impl<T: Send> Send for TryMutex<T> {}
// SAFETY: As above.
unsafe impl<T: Send> Sync for TryMutex<T> {}

impl<T> TryMutex<T> {
    /// A mutex of lockdep class `key`, called `name`.
    pub(crate) fn new(
        data: T,
        name: &'static CStr,
        key: &'static LockClassKey,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `__mutex_init` initialises the mutex in place; it is
            // never moved afterwards (pinned).
            raw <- unsafe {
                Opaque::ffi_init(|slot: *mut bindings::mutex| {
                    bindings::__mutex_init(slot, name.as_char_ptr().cast::<c_char>(), lock_class_ptr(key))
                })
            },
            data: UnsafeCell::new(data),
        })
    }

    /// Sleeps until the lock is free and takes it.
    pub(crate) fn lock(&self) -> TryMutexGuard<'_, T> {
        // SAFETY: `raw` is initialised (type invariant).
        unsafe { bindings::mutex_lock(self.raw.get()) };
        TryMutexGuard { lock: self }
    }

    /// Takes the lock if it is free, without sleeping.
    pub(crate) fn try_lock(&self) -> Option<TryMutexGuard<'_, T>> {
        // SAFETY: `raw` is initialised (type invariant).
        if unsafe { bindings::mutex_trylock(self.raw.get()) } != 0 {
            Some(TryMutexGuard { lock: self })
        } else {
            None
        }
    }
}

/// Proof that a [`TryMutex`] is held; unlocks on drop.
pub(crate) struct TryMutexGuard<'a, T> {
    lock: &'a TryMutex<T>,
}

impl<T> Deref for TryMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: The guard holds the lock, so no one else accesses `data`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for TryMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: As above, and `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for TryMutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: This guard took the lock.
        unsafe { bindings::mutex_unlock(self.lock.raw.get()) };
    }
}

/// A workqueue owned by a module, drained and freed on drop.
///
/// # Invariants
///
/// `wq` is a live workqueue.
pub(crate) struct Workqueue {
    wq: *mut bindings::workqueue_struct,
}

// SAFETY: Workqueues may be used from any thread.
unsafe impl Send for Workqueue {}
// SAFETY: As above.
unsafe impl Sync for Workqueue {}

impl Workqueue {
    /// An unbound workqueue called `name`; `ordered` runs one item at a
    /// time, in queueing order.
    pub(crate) fn new(name: &CStr, ordered: bool) -> Result<Self> {
        if ordered {
            Self::alloc(
                name,
                bindings::wq_flags_WQ_UNBOUND | bindings::wq_flags___WQ_ORDERED,
                1,
            )
        } else {
            Self::alloc(name, bindings::wq_flags_WQ_UNBOUND, 0)
        }
    }

    /// An unbound workqueue called `name` running at most `max_active`
    /// items at once, in no particular order.
    #[allow(dead_code)]
    pub(crate) fn with_max_active(name: &CStr, max_active: u32) -> Result<Self> {
        Self::alloc(name, bindings::wq_flags_WQ_UNBOUND, max_active as i32)
    }

    fn alloc(name: &CStr, flags: u32, max_active: i32) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated and passed for "%s".
        let wq = unsafe {
            bindings::alloc_workqueue(
                c"%s".as_ptr().cast::<c_char>(),
                flags,
                max_active,
                name.as_char_ptr(),
            )
        };
        if wq.is_null() {
            return Err(ENOMEM);
        }
        Ok(Self { wq })
    }

    /// Queues `work`; false if it was already pending.
    ///
    /// # Safety
    ///
    /// `work` must be initialised and stay valid until it has run.
    pub(crate) unsafe fn queue(&self, work: *mut bindings::work_struct) -> bool {
        // SAFETY: `wq` is live (type invariant); the caller vouches for `work`.
        unsafe {
            bindings::queue_work_on(
                bindings::wq_misc_consts_WORK_CPU_UNBOUND as i32,
                self.wq,
                work,
            )
        }
    }
}

// Used by gmem_npu.ko only.
#[allow(dead_code)]
impl Workqueue {
    /// Waits until every item queued before the call has run.
    pub(crate) fn flush(&self) {
        // SAFETY: `wq` is live (type invariant).
        unsafe { bindings::__flush_workqueue(self.wq) };
    }

    /// Waits until the workqueue is empty, items its items queue
    /// included.  Nothing else may queue meanwhile.
    pub(crate) fn drain(&self) {
        // SAFETY: `wq` is live (type invariant).
        unsafe { bindings::drain_workqueue(self.wq) };
    }
}

impl Drop for Workqueue {
    fn drop(&mut self) {
        // SAFETY: Live per the invariant; drains pending work first.
        unsafe { bindings::destroy_workqueue(self.wq) };
    }
}

/// Initialises `work` to run `func`.
///
/// # Safety
///
/// `work` must be valid for writes and not queued.
pub(crate) unsafe fn init_work(
    work: *mut bindings::work_struct,
    func: unsafe extern "C" fn(*mut bindings::work_struct),
    name: &'static CStr,
    key: &'static LockClassKey,
) {
    // SAFETY: Per the function's contract.
    unsafe {
        bindings::init_work_with_key(
            work,
            Some(func),
            false,
            name.as_char_ptr().cast::<c_char>(),
            lock_class_ptr(key),
        )
    };
}
