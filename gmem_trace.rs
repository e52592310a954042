// SPDX-License-Identifier: GPL-2.0

//! Trace events `gmem:*`, for `perf`, `trace-cmd`, bpftrace and tracefs.
//!
//! The events are defined in C (`gmem_trace.h`, recorded by the wrappers
//! in `gmem_trace.c`), since the tracepoint macros have no Rust
//! counterpart in 6.12.  While an event is off, a call here costs a call
//! and a static branch.

use kernel::ffi::{c_int, c_ulong};

/// Why a migration ran (`GMEM_CAUSE_*` in `gmem_trace.h`).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Cause {
    /// A device fault, by the placement policy.
    Fault = 0,
    /// A prefetch or a pin, to a device or home.
    Prefetch = 1,
    /// Room for another block.
    Eviction = 2,
    /// A CPU access, or another device's fault, to a device page.
    CpuFault = 3,
    /// A device write to a page its own memory holds read-only.
    DeviceWrite = 4,
    /// A device's access counter: a block it uses in place a lot.
    Counter = 5,
}

extern "C" {
    fn gmem_trace_fault(dev: u32, addr: c_ulong, write: bool, pages: c_ulong, ret: c_int);
    fn gmem_trace_migrate(
        dev: u32,
        start: c_ulong,
        end: c_ulong,
        pages: c_ulong,
        to_dev: bool,
        cause: u32,
    );
    fn gmem_trace_evict(dev: u32, start: c_ulong, end: c_ulong, pages: c_ulong);
    fn gmem_trace_thrash_hold(dev: u32, start: c_ulong, end: c_ulong);
    fn gmem_trace_dup(dev: u32, start: c_ulong, end: c_ulong, pages: c_ulong);
    fn gmem_trace_dup_collapse(dev: u32, start: c_ulong, end: c_ulong, pages: c_ulong);
    fn gmem_trace_drop(dev: u32, start: c_ulong, end: c_ulong, pages: c_ulong);
    fn gmem_trace_invalidate(start: c_ulong, end: c_ulong, event: u32);
}

// SAFETY (for every call below): the wrappers take plain values, which
// they only record.

/// A device fault of `dev` at `addr` ended: `pages` mapped, or `ret` < 0.
pub(crate) fn fault(dev: u32, addr: usize, write: bool, pages: usize, ret: i32) {
    // SAFETY: See above.
    unsafe { gmem_trace_fault(dev, addr as _, write, pages as _, ret) }
}

/// `pages` of `[start, end)` moved to `dev`'s memory (`to_dev`) or home.
pub(crate) fn migrate(
    dev: u32,
    start: usize,
    end: usize,
    pages: usize,
    to_dev: bool,
    cause: Cause,
) {
    // SAFETY: See above.
    unsafe { gmem_trace_migrate(dev, start as _, end as _, pages as _, to_dev, cause as u32) }
}

/// `dev` evicted the chunk of block `[start, end)`: `pages` went home.
pub(crate) fn evict(dev: u32, start: usize, end: usize, pages: usize) {
    // SAFETY: See above.
    unsafe { gmem_trace_evict(dev, start as _, end as _, pages as _) }
}

/// `dev` maps `[start, end)` in place instead of migrating it (thrashing).
pub(crate) fn thrash_hold(dev: u32, start: usize, end: usize) {
    // SAFETY: See above.
    unsafe { gmem_trace_thrash_hold(dev, start as _, end as _) }
}

/// `dev` made read-only copies of `pages` pages of `[start, end)`.
pub(crate) fn dup(dev: u32, start: usize, end: usize, pages: usize) {
    // SAFETY: See above.
    unsafe { gmem_trace_dup(dev, start as _, end as _, pages as _) }
}

/// `dev` dropped its `pages` copies of `[start, end)`.
pub(crate) fn dup_collapse(dev: u32, start: usize, end: usize, pages: usize) {
    // SAFETY: See above.
    unsafe { gmem_trace_dup_collapse(dev, start as _, end as _, pages as _) }
}

/// `dev` freed the `pages` pages of `[start, end)` with their data
/// (munmap, exit, discard).
pub(crate) fn drop(dev: u32, start: usize, end: usize, pages: usize) {
    // SAFETY: See above.
    unsafe { gmem_trace_drop(dev, start as _, end as _, pages as _) }
}

/// Core MM invalidates `[start, end)` (an `mmu_notifier_event`) for devices.
pub(crate) fn invalidate(start: usize, end: usize, event: u32) {
    // SAFETY: See above.
    unsafe { gmem_trace_invalidate(start as _, end as _, event) }
}
