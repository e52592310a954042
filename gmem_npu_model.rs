// SPDX-License-Identifier: GPL-2.0

//! The NPU's link: what its work would cost on a device behind PCIe.
//!
//! The simulated NPU reads host memory and its own memory at the same
//! speed (both are this machine's DRAM), so wall time cannot tell a good
//! placement from a bad one.  Each NPU therefore keeps a device clock
//! (ns), advanced by a cost model instead of by the CPU doing the work:
//!
//! - a job's accesses to device memory cost `bytes / dev_gbps`, its
//!   accesses to host memory in place `bytes / link_gbps` (the link is
//!   full duplex: reads and writes of one job overlap, so the larger of
//!   the two directions counts);
//! - each device fault costs `fault_us`, plus the copy-engine work done
//!   while it was served (migrations, evictions), at `link_gbps`;
//! - copy-engine work outside any job (prefetch, the CPU faulting pages
//!   back, eviction for another device) advances the clock by itself;
//!   zero-filling a fresh device page is a write to device memory.
//!
//! GB/s are decimal, so `bytes / gbps` is in ns.  The defaults model a
//! current PCIe accelerator: 3,000 GB/s of HBM3 (H100 SXM: 3.35 TB/s),
//! 64 GB/s per direction of PCIe Gen5 x16, and 45 us to take and replay
//! a fault (the figure GPU simulators use for a replayable fault).  They
//! are module parameters; `gmem_npu/npuN/model` in debugfs overrides
//! them per device and shows the clock and the bytes moved.
//!
//! The NPU also has access counters: per context and 2 MiB region, the
//! bytes it accessed in place, and apart from them those it accessed in
//! its own memory.  Past `counter_kib` in place (default one region,
//! 2,048 KiB) it notifies gmem, which may migrate the region; past
//! `refresh_kib` in device memory (default 64 KiB) it notifies gmem too,
//! which then keeps the region as the most recently used.  That second
//! threshold is small because it decides nothing but eviction order: a
//! region in use must be reported more often than blocks arrive and
//! push it out.
//! The default is the break-even point of the model: moving a region
//! costs what reading it once in place does, so a region read once never
//! moves, and one read again moves during its second pass (at most twice
//! the cost of the better choice made in hindsight, as in ski rental).
//!
//! The clock is a cost, not a schedule: it adds up the work of every
//! engine, as a device's busy time would, so jobs that run at once each
//! add their own.  A batch of faults costs each job stalled on it one
//! `fault_us`.  The copies made for a job (by its engine's task, and by
//! the task serving its faults meanwhile: [`Model::charge_to`]) are the
//! job's; those of other tasks (a CPU fault, a prefetch, another
//! device's eviction) only advance the clock.  The counters are independent atomics: INFO read
//! while a job runs may see its bytes before its time, or the reverse.

use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::bindings;
use kernel::prelude::*;

use crate::gmem_debugfs::{Control, SeqWriter};

/// Largest bandwidth (GB/s), fault latency (us) or threshold (KiB).
const PARAM_MAX: u32 = 1_000_000;

/// The parameters and their smallest values, by name.
const PARAMS: [(&str, u32); 5] = [
    ("dev_gbps", 1),
    ("link_gbps", 1),
    ("fault_us", 0),
    ("counter_kib", 0),
    ("refresh_kib", 0),
];

/// One NPU's cost parameters, clock and traffic counters.
pub(crate) struct Model {
    dev_gbps: AtomicU32,
    link_gbps: AtomicU32,
    fault_us: AtomicU32,
    /// Access-counter threshold: in-place KiB per 2 MiB region (0: off).
    counter_kib: AtomicU32,
    /// The same for device memory, whose notifications say "in use".
    refresh_kib: AtomicU32,
    /// Access-counter notifications sent to gmem.
    notifications: AtomicU64,
    clock_ns: AtomicU64,
    /// Bytes over the link, host to device and device to host: in-place
    /// accesses and copies.
    link_to_dev: AtomicU64,
    link_to_host: AtomicU64,
    /// Bytes read or written in the device's own memory.
    local: AtomicU64,
    /// Copy-engine time so far (part of `clock_ns`).
    copy_ns: AtomicU64,
    /// Which task's copies are which job's: see [`Model::charge_to`].
    slots: [Slot; SLOTS],
}

/// Tasks whose copies can be charged to a job at once: the engines, and
/// the task serving their faults.
pub(crate) const SLOTS: usize = 17;

/// A task making copies for a job: the job's copy-engine time is added
/// to `acc`.
///
/// # Invariants
///
/// `acc` is written by the task `task` only, and points to a live
/// counter while `task` is not 0, which only that task changes back.
struct Slot {
    task: AtomicUsize,
    acc: core::sync::atomic::AtomicPtr<AtomicU64>,
}

/// The copies made on the calling task are charged to a job until the
/// guard drops.
pub(crate) struct Charge<'a> {
    slot: Option<&'a Slot>,
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.task.store(0, Ordering::Release);
        }
    }
}

/// What one job did so far, in the model's units.
#[derive(Default, Clone, Copy)]
pub(crate) struct JobCost {
    pub(crate) local: u64,
    pub(crate) link_in: u64,
    pub(crate) link_out: u64,
    /// Times the job stalled on its faults.
    pub(crate) faults: u64,
    /// Copy-engine time for the job (see [`Model::charge_to`]).
    pub(crate) copy_ns: u64,
}

/// The model's parameters and counters, as INFO reports them.
pub(crate) struct Snapshot {
    pub(crate) dev_gbps: u32,
    pub(crate) link_gbps: u32,
    pub(crate) fault_ns: u64,
    pub(crate) clock_ns: u64,
    pub(crate) link_to_dev: u64,
    pub(crate) link_to_host: u64,
    pub(crate) local: u64,
}

/// The running task, as a number to compare.
fn current_task() -> usize {
    // SAFETY: Always valid in process context, where the model is used.
    unsafe { bindings::get_current() as usize }
}

/// ns that `bytes` take at `gbps` GB/s (bytes per ns), rounded up.
fn ns(bytes: u64, gbps: u32) -> u64 {
    bytes.div_ceil(u64::from(gbps.max(1)))
}

impl Model {
    /// Checks parameters `[dev_gbps, link_gbps, fault_us, counter_kib,
    /// refresh_kib]`: `EINVAL`, saying which, unless each is within its
    /// range.
    pub(crate) fn check(p: &[u32; 5]) -> Result {
        for (v, (name, min)) in p.iter().zip(PARAMS) {
            if *v < min || *v > PARAM_MAX {
                pr_err!("{} must be {}..={}\n", name, min, PARAM_MAX);
                return Err(EINVAL);
            }
        }
        Ok(())
    }

    /// A model with the parameters `p` (see [`check`](Self::check)).
    pub(crate) fn new(p: [u32; 5]) -> Result<Self> {
        Self::check(&p)?;
        Ok(Self {
            dev_gbps: AtomicU32::new(p[0]),
            link_gbps: AtomicU32::new(p[1]),
            fault_us: AtomicU32::new(p[2]),
            counter_kib: AtomicU32::new(p[3]),
            refresh_kib: AtomicU32::new(p[4]),
            notifications: AtomicU64::new(0),
            clock_ns: AtomicU64::new(0),
            link_to_dev: AtomicU64::new(0),
            link_to_host: AtomicU64::new(0),
            local: AtomicU64::new(0),
            copy_ns: AtomicU64::new(0),
            slots: [const {
                Slot {
                    task: AtomicUsize::new(0),
                    acc: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
                }
            }; SLOTS],
        })
    }

    fn advance(&self, ns: u64) {
        self.clock_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn engine(&self, ns: u64) {
        self.copy_ns.fetch_add(ns, Ordering::Relaxed);
        self.advance(ns);
        let me = current_task();
        for slot in &self.slots {
            // Only the slot's own task compares equal, and it wrote `acc`.
            if slot.task.load(Ordering::Acquire) == me {
                let acc = slot.acc.load(Ordering::Relaxed);
                // SAFETY: Live while the slot is ours (type invariant).
                unsafe { (*acc).fetch_add(ns, Ordering::Relaxed) };
                return;
            }
        }
    }

    /// Charges the copies the calling task makes from now until the guard
    /// drops to the job whose copy-engine time is `acc`: a job's own
    /// task, and the task serving its faults while it does.  Uncharged if
    /// every slot is taken (more tasks than engines).
    pub(crate) fn charge_to<'a>(&'a self, acc: &'a AtomicU64) -> Charge<'a> {
        let me = current_task();
        for slot in &self.slots {
            if slot
                .task
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.acc
                    .store(ptr::from_ref(acc).cast_mut(), Ordering::Relaxed);
                // `acc` before `task` for our own later loads; no one else
                // reads it.
                return Charge { slot: Some(slot) };
            }
        }
        Charge { slot: None }
    }

    /// The copy engine moved `bytes` over the link (`to_dev`: host to
    /// device).
    pub(crate) fn copied(&self, to_dev: bool, bytes: u64) {
        let dir = if to_dev {
            &self.link_to_dev
        } else {
            &self.link_to_host
        };
        dir.fetch_add(bytes, Ordering::Relaxed);
        self.engine(ns(bytes, self.link_gbps.load(Ordering::Relaxed)));
    }

    /// The copy engine zero-filled `bytes` of device memory.
    pub(crate) fn zeroed(&self, bytes: u64) {
        self.local.fetch_add(bytes, Ordering::Relaxed);
        self.engine(ns(bytes, self.dev_gbps.load(Ordering::Relaxed)));
    }

    /// In-place bytes to one region that fire its access counter (0: off).
    pub(crate) fn counter_bytes(&self) -> u64 {
        u64::from(self.counter_kib.load(Ordering::Relaxed)) << 10
    }

    /// Bytes in device memory to one region that fire its access counter
    /// (0: off).
    pub(crate) fn refresh_bytes(&self) -> u64 {
        u64::from(self.refresh_kib.load(Ordering::Relaxed)) << 10
    }

    /// An access counter fired.
    pub(crate) fn notified(&self) {
        self.notifications.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a job: adds what it did to the counters and its own time to
    /// the clock (its faults' copies, `c.copy_ns`, are there already), and
    /// returns its modelled time, copies included.
    pub(crate) fn finish(&self, c: &JobCost) -> u64 {
        let (dev, link) = (
            self.dev_gbps.load(Ordering::Relaxed),
            self.link_gbps.load(Ordering::Relaxed),
        );
        let fault_ns = u64::from(self.fault_us.load(Ordering::Relaxed)) * 1000;
        let own =
            ns(c.local, dev) + ns(c.link_in, link).max(ns(c.link_out, link)) + c.faults * fault_ns;
        self.local.fetch_add(c.local, Ordering::Relaxed);
        self.link_to_dev.fetch_add(c.link_in, Ordering::Relaxed);
        self.link_to_host.fetch_add(c.link_out, Ordering::Relaxed);
        self.advance(own);
        own + c.copy_ns
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            dev_gbps: self.dev_gbps.load(Ordering::Relaxed),
            link_gbps: self.link_gbps.load(Ordering::Relaxed),
            fault_ns: u64::from(self.fault_us.load(Ordering::Relaxed)) * 1000,
            clock_ns: self.clock_ns.load(Ordering::Relaxed),
            link_to_dev: self.link_to_dev.load(Ordering::Relaxed),
            link_to_host: self.link_to_host.load(Ordering::Relaxed),
            local: self.local.load(Ordering::Relaxed),
        }
    }
}

/// `gmem_npu/npuN/model`: the parameters and counters; writing
/// `dev_gbps=N`, `link_gbps=N`, `fault_us=N`, `counter_kib=N` or `refresh_kib=N` changes one
/// parameter for the jobs and copies that follow.
impl Control for Model {
    fn show(&self, w: &mut SeqWriter) -> core::fmt::Result {
        use core::fmt::Write;
        let s = self.snapshot();
        writeln!(
            w,
            "dev_gbps={} link_gbps={} fault_us={}",
            s.dev_gbps,
            s.link_gbps,
            s.fault_ns / 1000
        )?;
        writeln!(
            w,
            "clock_ns={} link_to_dev={} link_to_host={} local={}",
            s.clock_ns, s.link_to_dev, s.link_to_host, s.local
        )?;
        writeln!(
            w,
            "counter_kib={} refresh_kib={} notifications={}",
            self.counter_kib.load(Ordering::Relaxed),
            self.refresh_kib.load(Ordering::Relaxed),
            self.notifications.load(Ordering::Relaxed)
        )
    }

    fn write(&self, input: &[u8]) -> Result {
        let input = input.strip_suffix(b"\n").unwrap_or(input);
        let eq = input.iter().position(|&b| b == b'=').ok_or(EINVAL)?;
        let (key, val) = (&input[..eq], &input[eq + 1..]);
        let v = parse_u32(val).ok_or(EINVAL)?;
        let slots = [
            &self.dev_gbps,
            &self.link_gbps,
            &self.fault_us,
            &self.counter_kib,
            &self.refresh_kib,
        ];
        let i = PARAMS
            .iter()
            .position(|(name, _)| name.as_bytes() == key)
            .ok_or(EINVAL)?;
        let (slot, min) = (slots[i], PARAMS[i].1);
        if v < min || v > PARAM_MAX {
            return Err(EINVAL);
        }
        slot.store(v, Ordering::Relaxed);
        Ok(())
    }
}

/// A decimal number of up to 7 digits, nothing else.
fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 7 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0')))
}
