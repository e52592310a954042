// SPDX-License-Identifier: GPL-2.0

//! The NPU's fault buffer: faults of the jobs running at once wait in one
//! queue, and a task of their own serves them in batches.
//!
//! A job that misses in its MMU puts the faulting accesses (one, or a wave
//! of them: the device's threads touching many pages at once) in the
//! buffer and sleeps.  The serving task takes up to `fault_batch` entries
//! (module parameter), groups them by context, hands each group to gmem
//! in one call ([`Attachment::fault_batch`]), which sorts them and serves
//! each block once, and wakes the jobs, which replay their accesses.
//! While it works, more faults queue up: the next batch is larger the
//! busier the device, as with UVM's fault buffer.
//!
//! One task serves the device: a fault that waits (for a userfaultfd
//! handler, in gmem) holds up the faults of every file of the device
//! behind it, as one job engine did before there were several.
//!
//! # Lifetimes
//!
//! An entry is the waiting job's (in its [`Wave`]); the buffer holds a
//! pointer to it from [`FaultBuffer::report`] until the serving task marks
//! it done, under the queue lock, and touches it no more.  The job cannot
//! return before, so the entry, its context and the job's copy counter
//! outlive the service.  The device flushes the serving task's workqueue
//! before it goes (after its jobs have run, so none is waiting).

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::AtomicU64;
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::{new_condvar, new_mutex, Arc, CondVar, Mutex};
use kernel::types::Opaque;
use kernel::{c_str, static_lock_class};

use crate::gmem_dev::{Attachment, FaultEntry, GmemDevOps, FAULT_BATCH_MAX};
use crate::gmem_npu_model::Model;
use crate::gmem_sync::{self, Workqueue};

/// Accesses of one job that fault together, at most: its threads touching
/// pages at once.
pub(crate) const WAVE: usize = 64;

/// A fault waiting in the buffer.
struct Pending<T: GmemDevOps> {
    attachment: *const Attachment<T>,
    /// The faulting job's copy-engine time.
    copy_ns: *const AtomicU64,
    entry: FaultEntry,
    done: bool,
    next: *mut Pending<T>,
}

/// Empties `v`, whose elements need no drop (checked at build time).
fn clear<T>(v: &mut KVec<T>) {
    const { assert!(!core::mem::needs_drop::<T>()) };
    // SAFETY: Shrinking; the elements have nothing to drop.
    unsafe { v.set_len(0) };
}

/// The faults of one job waiting together, at most [`WAVE`].
///
/// # Invariants
///
/// While [`FaultBuffer::report`] runs, only the serving task writes the
/// entries, through the pointers the queue holds.
pub(crate) struct Wave<T: GmemDevOps> {
    slots: KVec<UnsafeCell<Pending<T>>>,
}

impl<T: GmemDevOps> Wave<T> {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            slots: KVec::with_capacity(WAVE, GFP_KERNEL)?,
        })
    }

    /// Forgets the faults of the last report.
    pub(crate) fn clear(&mut self) {
        clear(&mut self.slots);
    }

    /// Adds a fault of `attachment` (false: the wave is full).
    pub(crate) fn push(
        &mut self,
        attachment: &Attachment<T>,
        copy_ns: &AtomicU64,
        addr: usize,
        write: bool,
    ) -> bool {
        if self.slots.len() == WAVE {
            return false;
        }
        let p = Pending {
            attachment,
            copy_ns,
            entry: FaultEntry::new(addr, write),
            done: false,
            next: ptr::null_mut(),
        };
        // Within the capacity reserved in `new`.
        self.slots.push(UnsafeCell::new(p), GFP_NOWAIT).is_ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The faults reported, with what gmem answered.
    pub(crate) fn results(&mut self) -> impl Iterator<Item = (usize, Result)> + '_ {
        self.slots.iter_mut().map(|p| {
            let p = p.get_mut();
            (p.entry.addr(), p.entry.result())
        })
    }
}

/// The serving task's buffers: the entries of one batch, those of one
/// context it hands to gmem, and where their results go.
struct Scratch<T: GmemDevOps> {
    ptrs: KVec<*mut Pending<T>>,
    group: KVec<FaultEntry>,
    members: KVec<*mut Pending<T>>,
}

struct Queue<T: GmemDevOps> {
    head: *mut Pending<T>,
    tail: *mut Pending<T>,
    /// The serving task is queued or running.
    serving: bool,
}

// SAFETY: The pointers are to entries of waiting jobs (see the module
// docs), reached under the queue's lock only.
unsafe impl<T: GmemDevOps> Send for Queue<T> {}

/// One device's fault buffer and the task serving it.
///
/// # Invariants
///
/// `work` is initialised to run [`serve`] on this object, which is pinned
/// and outlives every run of it (see the module docs).
#[repr(C)]
#[pin_data]
pub(crate) struct FaultBuffer<T: GmemDevOps> {
    #[pin]
    work: Opaque<bindings::work_struct>,
    wq: Workqueue,
    #[pin]
    queue: Mutex<Queue<T>>,
    /// Signalled when the serving task has marked entries done.
    #[pin]
    served: CondVar,
    /// The serving task's scratch, locked by it only.
    #[pin]
    scratch: Mutex<Scratch<T>>,
    model: Arc<Model>,
    /// Entries one batch takes at most, read at each batch.
    batch: fn() -> usize,
}

// SAFETY: Shared state is behind the locks; the raw pointers in `scratch`
// are the serving task's only.
unsafe impl<T: GmemDevOps> Send for Scratch<T> {}
// SAFETY: As above.
unsafe impl<T: GmemDevOps> Send for FaultBuffer<T> {}
// SAFETY: As above.
unsafe impl<T: GmemDevOps> Sync for FaultBuffer<T> {}

impl<T: GmemDevOps> FaultBuffer<T> {
    /// A buffer served on a workqueue called `name`, taking at most
    /// `batch()` entries (clamped to 1..=[`FAULT_BATCH_MAX`]) at a time.
    pub(crate) fn new(
        name: &CStr,
        model: Arc<Model>,
        batch: fn() -> usize,
    ) -> Result<Pin<KBox<Self>>> {
        let wq = Workqueue::new(name, true)?;
        let scratch = Scratch {
            ptrs: KVec::with_capacity(FAULT_BATCH_MAX, GFP_KERNEL)?,
            group: KVec::with_capacity(FAULT_BATCH_MAX, GFP_KERNEL)?,
            members: KVec::with_capacity(FAULT_BATCH_MAX, GFP_KERNEL)?,
        };
        let b = KBox::pin_init(
            try_pin_init!(FaultBuffer {
                // Initialised below, before the buffer is used.
                work: Opaque::uninit(),
                wq,
                queue <- new_mutex!(Queue { head: ptr::null_mut(), tail: ptr::null_mut(), serving: false }),
                served <- new_condvar!(),
                scratch <- new_mutex!(scratch),
                model,
                batch,
            }? Error),
            GFP_KERNEL,
        )?;
        // SAFETY: `work` is pinned in the box and not queued yet.
        unsafe {
            gmem_sync::init_work(
                b.work.get(),
                serve::<T>,
                c_str!("gmem_npu_faults"),
                static_lock_class!(),
            )
        };
        Ok(b)
    }

    /// Puts the faults of `wave` in the buffer and waits until gmem has
    /// answered each (see [`Wave::results`]).
    pub(crate) fn report(&self, wave: &Wave<T>) {
        if wave.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        for p in wave.slots.iter() {
            let p = p.get();
            if q.tail.is_null() {
                q.head = p;
            } else {
                // SAFETY: Queued entries are live (module docs); we hold
                // the lock.
                unsafe { (*q.tail).next = p };
            }
            q.tail = p;
        }
        let kick = !q.serving;
        q.serving = true;
        drop(q);
        if kick {
            // SAFETY: `work` is initialised and outlives its runs (type
            // invariant).
            unsafe { self.wq.queue(self.work.get()) };
        }
        let mut q = self.queue.lock();
        // SAFETY: `done` is written under the lock we hold.
        while wave.slots.iter().any(|p| unsafe { !(*p.get()).done }) {
            self.served.wait(&mut q);
        }
    }

    /// Waits until the serving task is idle.
    pub(crate) fn flush(&self) {
        self.wq.flush();
    }

    /// Takes up to a batch of entries off the queue into `ptrs`; false
    /// (and the task marked idle) if there were none.
    fn take(&self, ptrs: &mut KVec<*mut Pending<T>>) -> bool {
        let max = (self.batch)().clamp(1, FAULT_BATCH_MAX);
        clear(ptrs);
        let mut q = self.queue.lock();
        while ptrs.len() < max && !q.head.is_null() {
            let p = q.head;
            // SAFETY: Queued entries are live; we hold the lock.
            q.head = unsafe { (*p).next };
            // Within the capacity reserved in `new`.
            let _ = ptrs.push(p, GFP_NOWAIT);
        }
        if q.head.is_null() {
            q.tail = ptr::null_mut();
        }
        if ptrs.is_empty() {
            q.serving = false;
            return false;
        }
        true
    }

    /// Hands the entries in `ptrs` to gmem, one call per context.
    fn serve_batch(&self, sc: &mut Scratch<T>) {
        let Scratch {
            ptrs,
            group,
            members,
        } = sc;
        // SAFETY: Entries taken off the queue are ours until marked done.
        ptrs.sort_unstable_by_key(|&p| unsafe { (*p).attachment } as usize);
        let mut i = 0;
        while i < ptrs.len() {
            // SAFETY: As above.
            let (att, copy_ns) = unsafe { ((*ptrs[i]).attachment, (*ptrs[i]).copy_ns) };
            // SAFETY: The waiting job keeps both alive (module docs).
            let (att, copy_ns) = unsafe { (&*att, &*copy_ns) };
            clear(group);
            clear(members);
            // SAFETY: As above.
            while i < ptrs.len() && ptr::eq(unsafe { (*ptrs[i]).attachment }, att) {
                let p = ptrs[i];
                i += 1;
                // SAFETY: As above.
                let entry = unsafe { (*p).entry };
                // Within the capacity reserved in `new`.
                let _ = group.push(entry, GFP_NOWAIT);
                let _ = members.push(p, GFP_NOWAIT);
            }
            if group.is_empty() {
                continue;
            }
            let res = {
                // One file runs one job at a time: the copies gmem makes
                // for this group are that job's.
                let _charge = self.model.charge_to(copy_ns);
                att.fault_batch(group)
            };
            for (e, &p) in group.iter_mut().zip(members.iter()) {
                if let Err(err) = res {
                    e.set_result(Err(err));
                }
                // SAFETY: As above; `done` is still false, so the job
                // waits and does not read the entry.
                unsafe { (*p).entry = *e };
            }
        }
        let _q = self.queue.lock();
        for &p in ptrs.iter() {
            // SAFETY: As above; after this the entry is the job's again.
            unsafe { (*p).done = true };
        }
        self.served.notify_all();
    }
}

/// The serving task: batches until the buffer is empty.
///
/// # Safety
///
/// Called by the workqueue only, for the `work` of a [`FaultBuffer<T>`].
unsafe extern "C" fn serve<T: GmemDevOps>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the first field of a live buffer (type invariant,
    // `repr(C)`).
    let b = unsafe { &*work.cast::<FaultBuffer<T>>() };
    let mut scratch = b.scratch.lock();
    while b.take(&mut scratch.ptrs) {
        b.serve_batch(&mut scratch);
    }
}
