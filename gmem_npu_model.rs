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
//! The clock is a cost, not a schedule: jobs run one at a time (the
//! engine is ordered), and copies the CPU causes during a job's fault are
//! counted as that fault's.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;

use crate::gmem_debugfs::{Control, SeqWriter};

/// Largest bandwidth (GB/s) or fault latency (us) accepted.
const PARAM_MAX: u32 = 1_000_000;

/// One NPU's cost parameters, clock and traffic counters.
pub(crate) struct Model {
    dev_gbps: AtomicU32,
    link_gbps: AtomicU32,
    fault_us: AtomicU32,
    clock_ns: AtomicU64,
    /// Bytes over the link, host to device and device to host: in-place
    /// accesses and copies.
    link_to_dev: AtomicU64,
    link_to_host: AtomicU64,
    /// Bytes read or written in the device's own memory.
    local: AtomicU64,
    /// Copy-engine time so far (part of `clock_ns`).
    copy_ns: AtomicU64,
}

/// What one job did so far, in the model's units.
#[derive(Default, Clone, Copy)]
pub(crate) struct JobCost {
    pub(crate) local: u64,
    pub(crate) link_in: u64,
    pub(crate) link_out: u64,
    pub(crate) faults: u64,
    /// Copy-engine time spent serving the job's faults.
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

/// ns that `bytes` take at `gbps` GB/s (bytes per ns), rounded up.
fn ns(bytes: u64, gbps: u32) -> u64 {
    bytes.div_ceil(u64::from(gbps.max(1)))
}

impl Model {
    pub(crate) fn new(dev_gbps: u32, link_gbps: u32, fault_us: u32) -> Self {
        let ok = |v: u32, default| {
            if (1..=PARAM_MAX).contains(&v) {
                v
            } else {
                default
            }
        };
        Self {
            dev_gbps: AtomicU32::new(ok(dev_gbps, 3000)),
            link_gbps: AtomicU32::new(ok(link_gbps, 64)),
            fault_us: AtomicU32::new(fault_us.min(PARAM_MAX)),
            clock_ns: AtomicU64::new(0),
            link_to_dev: AtomicU64::new(0),
            link_to_host: AtomicU64::new(0),
            local: AtomicU64::new(0),
            copy_ns: AtomicU64::new(0),
        }
    }

    fn advance(&self, ns: u64) {
        self.clock_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn engine(&self, ns: u64) {
        self.copy_ns.fetch_add(ns, Ordering::Relaxed);
        self.advance(ns);
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

    /// Copy-engine time so far: its growth across a fault is what the
    /// fault's migrations cost.
    pub(crate) fn copy_ns(&self) -> u64 {
        self.copy_ns.load(Ordering::Relaxed)
    }

    /// Ends a job: adds what it did to the counters and its own time to the
    /// clock (its faults' copies are there already), and returns its
    /// modelled time, copies included.
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
/// `dev_gbps=N`, `link_gbps=N` or `fault_us=N` changes one parameter for
/// the jobs and copies that follow.
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
        )
    }

    fn write(&self, input: &[u8]) -> Result {
        let input = input.strip_suffix(b"\n").unwrap_or(input);
        let eq = input.iter().position(|&b| b == b'=').ok_or(EINVAL)?;
        let (key, val) = (&input[..eq], &input[eq + 1..]);
        let v = parse_u32(val).ok_or(EINVAL)?;
        let (slot, min) = match key {
            b"dev_gbps" => (&self.dev_gbps, 1),
            b"link_gbps" => (&self.link_gbps, 1),
            b"fault_us" => (&self.fault_us, 0),
            _ => return Err(EINVAL),
        };
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
