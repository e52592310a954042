// SPDX-License-Identifier: GPL-2.0

//! gmem_npu: a simulated NPU, a real driver on gmem's interface.
//!
//! The NPU is software, but it is built as a device: it registers with
//! gmem.ko through the exported C interface (via [`gmem_dev::GmemDevOps`]),
//! and it reaches memory only through its own MMU, which gmem fills.
//!
//! # The device
//!
//! - `/dev/gmem_npuN`, `num_devices` of them (module parameter, default 1).
//!   Opening one attaches the caller's address space (a gmem context).
//! - Its MMU has a page table of its own format ([`PageTable`]: a directory
//!   of 2 MiB blocks, each a leaf of 512 [`Pte`]s holding a host pfn or an
//!   index into the NPU's memory, and permission bits) and a small direct-mapped TLB per context.  gmem writes
//!   it through `map` and clears it through `invalidate`, which also
//!   flushes the TLB.
//! - Faults are replayable: an access that misses the TLB and the page
//!   table pauses the job, puts the fault in the device's fault buffer,
//!   which gmem serves in batches ([`gmem_npu_faults`]), and replays the
//!   access.  TOUCH runs as [`WAVE`] threads, whose misses fault
//!   together.  A fault gmem cannot resolve ends the job with that error
//!   and the faulting address, like a GPU MMU fault report; the device
//!   goes on with the next job.
//! - `engines` job engines per device (module parameter, default 4; an
//!   unbound workqueue with that many items at once) run the jobs
//!   submitted by ioctl: each file's in submission order, one at a time
//!   (the next waits in [`FileState`] until the one before ends), those
//!   of different files at once; see `include/uapi/linux/gmem.h`.
//! - It sits behind a modelled host link: a device clock counts what its
//!   jobs and its copy engine would take on real hardware
//!   ([`gmem_npu_model`]), which WAIT and INFO report.
//!
//! # Locking
//!
//! `Mmu` (a spinlock per context) is taken by the engine around each
//! access to host memory, by `map` and by `invalidate`: an invalidation
//! therefore waits for an access in flight on the page it removes, which is
//! what makes the device's view coherent.  gmem serialises `map` and
//! `invalidate` with its page-table lock.  `NpuFile::state` (a mutex) holds
//! job bookkeeping; it is never held while touching memory or faulting.
//! A job waiting in the fault buffer holds no lock; the task serving it
//! holds its own scratch lock throughout, takes the buffer's queue lock
//! inside it, and holds no other lock of the NPU while calling gmem.
//!
//! # Lifetimes
//!
//! A file owns its gmem attachment.  Each queued job holds an `Arc` of its
//! file; closing the file cancels the jobs not started and stops the
//! running one between two accesses (status `ECANCELED`), waits for it,
//! then detaches.
//!
//! # Hot-unplug
//!
//! `gmem_npu/npuN/present` in debugfs unplugs the device (write `0`), as a
//! GPU falling off the bus, and plugs it back (write `1`).  Unplugging
//! marks the registration gone ([`Npu::live`] no longer matches any
//! file's generation), so the running jobs stop at their next access and
//! queued ones end at once, both with `ENODEV`; waits for the engines to
//! drain (a job waiting in the fault buffer is served first); then
//! unregisters from gmem, which waits for the faults and hints
//! in flight on the device, tears every context down and moves the pages
//! in the device's memory back to host memory.  Files opened before stay
//! open: WAIT still reports, everything else fails with `ENODEV`, and
//! opening the device fails until it is plugged back with fresh memory.
//! No job touches a driver context after the drain: each checks the
//! generation first, and the drain orders that check after the store,
//! for a job a file's previous job queued during the drain as for one
//! submitted then (either was queued before the flush looked, and waited
//! for, or after, behind the workqueue's lock the flush took after the
//! store).
//!
//! The module cannot unload while a file is open
//! (the misc device's fops name this module as owner), and a device's
//! teardown first lets the jobs of closed files finish (an exiting task's
//! close does not wait for them), so the devices and their registrations
//! outlive every file and every job.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::bindings;
use kernel::ffi::{c_int, c_uint, c_ulong};
use kernel::ioctl::{_IOR, _IOW, _IOWR};
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNode};
use kernel::str::CString;
use kernel::sync::{
    new_condvar, new_mutex, new_spinlock, Arc, CondVar, CondVarTimeoutResult, Mutex, SpinLock,
};
use kernel::types::Opaque;
use kernel::{c_str, fmt};

#[allow(dead_code)]
mod gmem_debugfs;
mod gmem_dev;
mod gmem_npu_faults;
mod gmem_npu_model;
#[macro_use]
mod gmem_param;
mod gmem_uaccess;
// Shared with gmem.ko; the NPU uses its workqueue and work items only.
#[allow(dead_code)]
mod gmem_sync;

use gmem_dev::{Attachment, DevClock, GmemDevOps, Prot, Registration};
use gmem_npu_faults::{FaultBuffer, Wave, WAVE};
use gmem_npu_model::{JobCost, Model};
use gmem_uaccess::{read_arg, read_arg_sized, write_arg, write_arg_sized};

module! {
    type: NpuModule,
    name: "gmem_npu",
    author: "gmem developers",
    description: "Simulated NPU for gmem",
    license: "GPL",
}

/// The C `lock_class_key` of `key` (`as_ptr` is private in 6.12).
fn lock_class_ptr(key: &'static kernel::sync::LockClassKey) -> *mut bindings::lock_class_key {
    // A `repr(transparent)` wrapper of the C key.
    ptr::from_ref(key).cast_mut().cast()
}

/// An errno the `kernel` crate of 6.12 has no constant for.
fn errno(e: u32) -> Error {
    Error::from_errno(-(e as i32))
}

// ---------------------------------------------------------------------------
// Module parameter.  The 6.12 `module!` macro has no parameters, so this is
// what `module_param(num_devices, uint, 0444)` expands to in C.

const MAX_DEVICES: u32 = 8;

/// Written by the module loader before `init` runs, read-only afterwards.
static mut NUM_DEVICES: c_uint = 1;
uint_param!(
    NUM_DEVICES,
    "num_devices",
    0o444,
    NUM_DEVICES_PARAM,
    NUM_DEVICES_TYPE,
    NUM_DEVICES_DESC,
    "Number of NPUs (default 1, <=8)"
);

/// MiB of device memory per NPU; written by the module loader.
static mut DRAM_MIB: c_uint = 16;
const MAX_DRAM_MIB: u32 = 1024;
uint_param!(
    DRAM_MIB,
    "dram_mib",
    0o444,
    DRAM_MIB_PARAM,
    DRAM_MIB_TYPE,
    DRAM_MIB_DESC,
    "MiB of device memory per NPU (default 16)"
);

/// MiB of job bytes (`len`) a file may have submitted and not completed;
/// written by the module loader.
static mut MAX_QUEUED_MIB: c_uint = 256;
uint_param!(
    MAX_QUEUED_MIB,
    "max_queued_mib",
    0o644,
    MAX_QUEUED_MIB_PARAM,
    MAX_QUEUED_MIB_TYPE,
    MAX_QUEUED_MIB_DESC,
    "MiB of job length (GATHER: chunks, each at least a page) one file may have queued (default 256; a job is always accepted on an idle file)"
);

/// The device model's defaults (see `gmem_npu_model`); written by the
/// module loader, each device starts with them.
static mut DEV_GBPS: c_uint = 3000;
uint_param!(
    DEV_GBPS,
    "dev_gbps",
    0o444,
    DEV_GBPS_PARAM,
    DEV_GBPS_TYPE,
    DEV_GBPS_DESC,
    "Modelled device memory bandwidth, GB/s (default 3000, HBM3)"
);

static mut LINK_GBPS: c_uint = 64;
uint_param!(
    LINK_GBPS,
    "link_gbps",
    0o444,
    LINK_GBPS_PARAM,
    LINK_GBPS_TYPE,
    LINK_GBPS_DESC,
    "Modelled host link bandwidth per direction, GB/s (default 64, PCIe Gen5 x16)"
);

static mut COUNTER_KIB: c_uint = 2048;
uint_param!(
    COUNTER_KIB,
    "counter_kib",
    0o444,
    COUNTER_KIB_PARAM,
    COUNTER_KIB_TYPE,
    COUNTER_KIB_DESC,
    "In-place KiB to one 2 MiB region before the access counter notifies gmem (default 2048, one region's size; 0: off)"
);

static mut REFRESH_KIB: c_uint = 64;
uint_param!(
    REFRESH_KIB,
    "refresh_kib",
    0o444,
    REFRESH_KIB_PARAM,
    REFRESH_KIB_TYPE,
    REFRESH_KIB_DESC,
    "KiB to one 2 MiB region in device memory before the access counter tells gmem the region is in use (default 64; 0: off)"
);

static mut FAULT_US: c_uint = 45;
uint_param!(
    FAULT_US,
    "fault_us",
    0o444,
    FAULT_US_PARAM,
    FAULT_US_TYPE,
    FAULT_US_DESC,
    "Modelled cost of taking and replaying a device fault, us (default 45)"
);

/// Jobs one NPU runs at once (of different files); written by the loader.
static mut ENGINES: c_uint = 4;
const MAX_ENGINES: u32 = gmem_npu_model::SLOTS as u32 - 1;
uint_param!(
    ENGINES,
    "engines",
    0o444,
    ENGINES_PARAM,
    ENGINES_TYPE,
    ENGINES_DESC,
    "Jobs an NPU runs at once, each of another file (default 4, <=16)"
);

/// Faults the fault buffer hands to gmem in one batch, at most; may be
/// changed at run time.
static mut FAULT_BATCH: c_uint = 256;
uint_param!(
    FAULT_BATCH,
    "fault_batch",
    0o644,
    FAULT_BATCH_PARAM,
    FAULT_BATCH_TYPE,
    FAULT_BATCH_DESC,
    "Faults served in one batch, at most (default 256, 1..=256)"
);

fn fault_batch() -> usize {
    param_value!(FAULT_BATCH) as usize
}

/// The model's module parameters, in the order of `gmem_npu_model::PARAMS`.
fn model_params() -> [u32; 5] {
    [
        param_value!(DEV_GBPS),
        param_value!(LINK_GBPS),
        param_value!(FAULT_US),
        param_value!(COUNTER_KIB),
        param_value!(REFRESH_KIB),
    ]
}

// ---------------------------------------------------------------------------
// The NPU MMU.

const PAGE_SIZE: usize = bindings::PAGE_SIZE;
const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();
const LEAF_SHIFT: u32 = 21;
const LEAF_ENTRIES: usize = 1 << (LEAF_SHIFT - PAGE_SHIFT);
const TLB_ENTRIES: usize = 64;

/// An NPU page-table entry: a host pfn or an index into the NPU's own
/// memory (`DEVMEM`), shifted, and permission bits.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Pte(u64);

impl Pte {
    const VALID: u64 = 1 << 0;
    const WRITE: u64 = 1 << 1;
    const DEVMEM: u64 = 1 << 2;
    const PFN_SHIFT: u32 = 12;
    const NONE: Pte = Pte(0);

    /// An entry for what gmem passed to `map`: a host pfn, or
    /// `PFN_DEVMEM | index` for a page of the NPU's memory.
    fn new(pfn: usize, writable: bool) -> Self {
        let (frame, dev) = if pfn & gmem_dev::PFN_DEVMEM != 0 {
            (pfn & !gmem_dev::PFN_DEVMEM, Self::DEVMEM)
        } else {
            (pfn, 0)
        };
        Pte(((frame as u64) << Self::PFN_SHIFT)
            | Self::VALID
            | dev
            | if writable { Self::WRITE } else { 0 })
    }

    fn in_devmem(self) -> bool {
        self.0 & Self::DEVMEM != 0
    }

    fn valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    fn writable(self) -> bool {
        self.0 & Self::WRITE != 0
    }

    fn pfn(self) -> usize {
        (self.0 >> Self::PFN_SHIFT) as usize
    }
}

type Leaf = [Pte; LEAF_ENTRIES];

/// The NPU page table: leaves of 512 PTEs, one per 2 MiB of address space.
struct PageTable {
    leaves: RBTree<usize, KBox<Leaf>>,
}

impl PageTable {
    fn lookup(&self, va: usize) -> Pte {
        match self.leaves.get(&(va >> LEAF_SHIFT)) {
            Some(leaf) => leaf[(va >> PAGE_SHIFT) % LEAF_ENTRIES],
            None => Pte::NONE,
        }
    }

    /// Clears the PTEs of `[start, end)`; frees leaves left empty.  Visits
    /// only the leaves that exist there: an invalidation of a huge range
    /// (munmap of a large reservation) costs what is mapped in it.
    fn clear(&mut self, start: usize, end: usize) {
        if start == 0 && end == usize::MAX {
            self.leaves = RBTree::new();
            return;
        }
        if start >= end {
            return;
        }
        let last = (end - 1) >> LEAF_SHIFT;
        let mut cursor = self.leaves.cursor_lower_bound(&(start >> LEAF_SHIFT));
        while let Some(mut c) = cursor {
            let key = *c.current().0;
            if key > last {
                break;
            }
            let base = key << LEAF_SHIFT;
            let from = (start.max(base) - base) >> PAGE_SHIFT;
            let to = if key == last {
                ((end - 1 - base) >> PAGE_SHIFT) + 1
            } else {
                LEAF_ENTRIES
            };
            let leaf = c.current_mut().1;
            for pte in &mut leaf[from..to] {
                *pte = Pte::NONE;
            }
            if leaf.iter().any(|p| p.valid()) {
                cursor = c.move_next();
                continue;
            }
            // The cursor left behind is on the next leaf, or on the
            // previous one if there is none: then we are done.
            let (next, _) = c.remove_current();
            cursor = next.filter(|n| *n.current().0 > key);
        }
    }
}

#[derive(Clone, Copy)]
struct TlbEntry {
    vpn: usize,
    pte: Pte,
}

/// Access counters per context, by 2 MiB region: sets of `COUNTER_WAYS`
/// entries (two buffers a power of two apart share a set, and must not
/// keep evicting each other's counts).
const COUNTERS: usize = 64;
const COUNTER_WAYS: usize = 4;

/// The bytes a context accessed in one region since the counter last
/// fired: in place, and in device memory.
#[derive(Clone, Copy)]
struct Counter {
    /// The region's number plus one; 0 for a free entry.
    tag: usize,
    bytes: u64,
    local: u64,
}

/// One context's MMU state.
struct Mmu {
    pt: PageTable,
    tlb: [TlbEntry; TLB_ENTRIES],
    counters: [Counter; COUNTERS],
}

impl Mmu {
    /// Translates `va` for an access, through the TLB then the page table.
    /// Returns the entry, or `None` for a fault.
    fn translate(&mut self, va: usize, write: bool, stats: &NpuStats) -> Option<Pte> {
        let vpn = va >> PAGE_SHIFT;
        let slot = &mut self.tlb[vpn % TLB_ENTRIES];
        let pte = if slot.pte.valid() && slot.vpn == vpn {
            slot.pte
        } else {
            stats.tlb_misses.fetch_add(1, Ordering::Relaxed);
            let pte = self.pt.lookup(va);
            if pte.valid() {
                *slot = TlbEntry { vpn, pte };
            }
            pte
        };
        (pte.valid() && (!write || pte.writable())).then_some(pte)
    }

    /// Counts `bytes` accessed at `va`, in device memory if `local`; true
    /// when this passes `threshold` bytes of that kind for the region (0:
    /// off), which starts that count again.  A region new to a full set
    /// takes the entry with the smallest count.
    fn count(&mut self, va: usize, bytes: u64, local: bool, threshold: u64) -> bool {
        if threshold == 0 {
            return false;
        }
        let tag = (va >> LEAF_SHIFT) + 1;
        let set = tag % (COUNTERS / COUNTER_WAYS) * COUNTER_WAYS;
        let ways = &mut self.counters[set..set + COUNTER_WAYS];
        let i = match ways.iter().position(|c| c.tag == tag) {
            Some(i) => i,
            None => {
                let (i, _) = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, c)| {
                        if c.tag == 0 {
                            0
                        } else {
                            c.bytes.saturating_add(c.local).saturating_add(1)
                        }
                    })
                    .unwrap_or((0, &ways[0]));
                ways[i] = Counter {
                    tag,
                    bytes: 0,
                    local: 0,
                };
                i
            }
        };
        let c = &mut ways[i];
        let n = if local { &mut c.local } else { &mut c.bytes };
        *n = n.saturating_add(bytes);
        if *n > threshold {
            *n = 0;
            return true;
        }
        false
    }

    /// Drops the counts of the regions `[start, end)` touches: what was
    /// mapped there changed (migrated, unmapped, written by the CPU), and
    /// counting starts again with the next in-place mapping.
    fn forget_counts(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        let (first, last) = ((start >> LEAF_SHIFT) + 1, ((end - 1) >> LEAF_SHIFT) + 1);
        for c in self.counters.iter_mut() {
            if (first..=last).contains(&c.tag) {
                c.tag = 0;
            }
        }
    }

    fn flush_tlb(&mut self, start: usize, end: usize) {
        for e in self.tlb.iter_mut() {
            let va = e.vpn << PAGE_SHIFT;
            if va >= start && va < end {
                e.pte = Pte::NONE;
            }
        }
    }
}

/// The NPU's state for one address space.
#[pin_data]
struct NpuContext {
    #[pin]
    mmu: SpinLock<Mmu>,
}

#[derive(Default)]
struct NpuStats {
    jobs_done: AtomicU64,
    faults: AtomicU64,
    tlb_misses: AtomicU64,
    invalidations: AtomicU64,
    copied_to_dev: AtomicU64,
    copied_to_host: AtomicU64,
}

/// The NPU's own memory: `pages` pages (vmalloc), the storage behind the
/// device-private pages gmem hands to core MM.
///
/// # Invariants
///
/// `base` points to the `pages * PAGE_SIZE` bytes of `_buf`.
struct Dram {
    _buf: VVec<u8>,
    base: *mut u8,
    pages: usize,
}

// SAFETY: Plain memory, accessed under the MMU lock or by the copy engine
// on pages nobody else uses during the copy (migration holds them locked).
unsafe impl Send for Dram {}
// SAFETY: As above.
unsafe impl Sync for Dram {}

impl Dram {
    fn new(mib: usize) -> Result<Self> {
        let pages = (mib << 20) / PAGE_SIZE;
        let mut buf = VVec::from_elem(0u8, pages * PAGE_SIZE, GFP_KERNEL)?;
        let base = buf.as_mut_ptr();
        Ok(Self {
            _buf: buf,
            base,
            pages,
        })
    }

    /// The storage of device page `idx`.
    fn page(&self, idx: usize) -> *mut u8 {
        assert!(idx < self.pages);
        // SAFETY: In bounds (checked) of the allocation (type invariant).
        unsafe { self.base.add(idx * PAGE_SIZE) }
    }
}

/// The kernel address of host page `pfn`.
///
/// # Safety
///
/// `pfn` must be a RAM page kept alive by the caller.
unsafe fn host_page(pfn: usize) -> *mut u8 {
    // SAFETY: Per the contract.
    unsafe { bindings::page_address(bindings::pfn_to_page(pfn as c_ulong)).cast() }
}

/// The gmem-facing half of one NPU.
struct NpuMmuOps {
    stats: Arc<NpuStats>,
    dram: Arc<Dram>,
    model: Arc<Model>,
}

impl GmemDevOps for NpuMmuOps {
    type Context = NpuContext;

    fn ctx_create(&self) -> impl PinInit<NpuContext, Error> {
        try_pin_init!(NpuContext {
            mmu <- new_spinlock!(
                Mmu {
                    pt: PageTable { leaves: RBTree::new() },
                    tlb: [TlbEntry { vpn: 0, pte: Pte::NONE }; TLB_ENTRIES],
                    counters: [Counter {
                        tag: 0,
                        bytes: 0,
                        local: 0
                    }; COUNTERS],
                },
                "NpuContext::mmu"
            ),
        }? Error)
    }

    fn prepare(&self, ctx: &NpuContext, start: usize, end: usize) -> Result {
        // Allocated here, outside gmem's page-table lock; an empty leaf is
        // harmless if the mapping never comes.
        let mut key = start >> LEAF_SHIFT;
        while key << LEAF_SHIFT < end {
            if ctx.mmu.lock().pt.leaves.get(&key).is_none() {
                let leaf = KBox::new([Pte::NONE; LEAF_ENTRIES], GFP_KERNEL)?;
                let node = RBTreeNode::new(key, leaf, GFP_KERNEL)?;
                let mut mmu = ctx.mmu.lock();
                if mmu.pt.leaves.get(&key).is_none() {
                    mmu.pt.leaves.insert(node);
                }
            }
            key += 1;
        }
        Ok(())
    }

    fn map(&self, ctx: &NpuContext, va: usize, pfns: &[usize], prot: Prot) -> Result {
        let end = va + pfns.len() * PAGE_SIZE;
        let mut mmu = ctx.mmu.lock();
        for (i, &pfn) in pfns.iter().enumerate() {
            let v = va + i * PAGE_SIZE;
            match mmu.pt.leaves.get_mut(&(v >> LEAF_SHIFT)) {
                Some(leaf) => {
                    leaf[(v >> PAGE_SHIFT) % LEAF_ENTRIES] = Pte::new(pfn, prot.writable())
                }
                // An invalidation freed the leaf since `prepare`.
                None => return Err(EAGAIN),
            }
        }
        // A read-only entry may be cached for a page now writable.
        mmu.flush_tlb(va, end);
        Ok(())
    }

    fn invalidate(&self, ctx: &NpuContext, start: usize, end: usize) {
        let mut mmu = ctx.mmu.lock();
        mmu.pt.clear(start, end);
        mmu.flush_tlb(start, end);
        mmu.forget_counts(start, end);
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// The copy engine, host to device.
    fn copy_to_dev(&self, dst_idx: &[usize], src_pfns: &[usize]) {
        let mut zeroed = 0;
        for (&idx, &pfn) in dst_idx.iter().zip(src_pfns) {
            let dst = self.dram.page(idx);
            // SAFETY: Whole pages: the device page is locked by the
            // migration, the host page held by it.
            unsafe {
                if pfn == gmem_dev::PFN_NONE {
                    ptr::write_bytes(dst, 0, PAGE_SIZE);
                    zeroed += 1;
                } else {
                    ptr::copy_nonoverlapping(host_page(pfn), dst, PAGE_SIZE);
                }
            }
        }
        let copied = dst_idx.len() - zeroed;
        self.model.copied(true, (copied * PAGE_SIZE) as u64);
        self.model.zeroed((zeroed * PAGE_SIZE) as u64);
        self.stats
            .copied_to_dev
            .fetch_add(dst_idx.len() as u64, Ordering::Relaxed);
    }

    /// The copy engine, device to host.
    fn copy_from_dev(&self, dst_pfns: &[usize], src_idx: &[usize]) {
        for (&pfn, &idx) in dst_pfns.iter().zip(src_idx) {
            // SAFETY: As in `copy_to_dev`.
            unsafe { ptr::copy_nonoverlapping(self.dram.page(idx), host_page(pfn), PAGE_SIZE) };
        }
        self.model.copied(false, (src_idx.len() * PAGE_SIZE) as u64);
        self.stats
            .copied_to_host
            .fetch_add(src_idx.len() as u64, Ordering::Relaxed);
    }

    const HAS_CLOCK: bool = true;

    fn read_clock(&self) -> DevClock {
        let s = self.model.snapshot();
        DevClock {
            ns: s.clock_ns,
            to_dev_bytes: s.link_to_dev,
            to_host_bytes: s.link_to_host,
            local_bytes: s.local,
        }
    }
}

// ---------------------------------------------------------------------------
// Jobs.

/// The NPU MMU's virtual address width (`GMEM_NPU_VA_BITS`).
const USER_END: u64 = 1 << bindings::GMEM_NPU_VA_BITS;
const MAX_OUTSTANDING: usize = 1024;
const MAX_ATOMIC_INCS: u64 = 1 << 20;
const MAX_GATHER_CHUNKS: u64 = 1 << 24;
const MAX_GATHER_CHUNK: u64 = 2 << 20;
const ATOMIC_BATCH: u64 = 4096;
/// Replays of one access before the job fails with EAGAIN.
const MAX_REPLAYS: u32 = 64;

/// A validated job.
#[derive(Clone, Copy)]
struct JobDesc {
    op: u32,
    write: bool,
    dst: usize,
    src: usize,
    src2: usize,
    len: usize,
    value: u64,
}

fn check_range(addr: u64, len: u64) -> Result {
    match addr.checked_add(len) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(EINVAL),
    }
}

impl JobDesc {
    /// Validates a job from user space; every rule gets EINVAL.
    fn validate(j: &bindings::gmem_npu_job) -> Result<Self> {
        if j.flags & !bindings::GMEM_NPU_JOB_WRITE != 0 {
            return Err(EINVAL);
        }
        if j.flags != 0 && j.op != bindings::GMEM_NPU_OP_TOUCH {
            return Err(EINVAL);
        }
        if j.len == 0 || j.len > bindings::GMEM_NPU_JOB_MAX_LEN {
            return Err(EINVAL);
        }
        let aligned = |a: u64, n: u64| a % n == 0;
        match j.op {
            bindings::GMEM_NPU_OP_FILL => {
                check_range(j.dst, j.len)?;
                if j.value > 0xff {
                    return Err(EINVAL);
                }
            }
            bindings::GMEM_NPU_OP_COPY => {
                check_range(j.dst, j.len)?;
                check_range(j.src, j.len)?;
                if j.dst < j.src + j.len && j.src < j.dst + j.len {
                    return Err(EINVAL);
                }
            }
            bindings::GMEM_NPU_OP_ADD => {
                for a in [j.dst, j.src, j.src2] {
                    check_range(a, j.len)?;
                    if !aligned(a, 4) {
                        return Err(EINVAL);
                    }
                }
                if !aligned(j.len, 4) {
                    return Err(EINVAL);
                }
            }
            bindings::GMEM_NPU_OP_REDUCE_SUM => {
                check_range(j.src, j.len)?;
                if !aligned(j.src, 4) || !aligned(j.len, 4) {
                    return Err(EINVAL);
                }
            }
            bindings::GMEM_NPU_OP_ATOMIC_INC => {
                check_range(j.dst, j.len)?;
                if !aligned(j.dst, 8) || j.len != 8 || j.value == 0 || j.value > MAX_ATOMIC_INCS {
                    return Err(EINVAL);
                }
            }
            bindings::GMEM_NPU_OP_TOUCH => check_range(j.dst, j.len)?,
            bindings::GMEM_NPU_OP_GATHER => {
                check_range(j.src, j.len)?;
                let chunk = j.src2;
                if !chunk.is_power_of_two()
                    || !(4..=MAX_GATHER_CHUNK).contains(&chunk)
                    || !aligned(j.src, chunk)
                    || !aligned(j.len, chunk)
                    || j.value == 0
                    || j.value > MAX_GATHER_CHUNKS
                    || j.value * chunk.max(PAGE_SIZE as u64) > bindings::GMEM_NPU_JOB_MAX_LEN
                {
                    return Err(EINVAL);
                }
            }
            _ => return Err(EINVAL),
        }
        Ok(JobDesc {
            op: j.op,
            write: j.flags & bindings::GMEM_NPU_JOB_WRITE != 0,
            dst: j.dst as usize,
            src: j.src as usize,
            src2: j.src2 as usize,
            len: j.len as usize,
            value: j.value,
        })
    }

    /// Bytes the job reads or writes in one operand, what the queue
    /// limit counts; a GATHER chunk counts at least a page, as each costs
    /// the device an access (and bounds them as `len` bounds the others).
    fn bytes(&self) -> u64 {
        if self.op == bindings::GMEM_NPU_OP_GATHER {
            self.value * self.src2.max(PAGE_SIZE) as u64
        } else {
            self.len as u64
        }
    }

    /// The offset in `src` of GATHER's chunk `k` (the uapi header's
    /// generator, which user space repeats to know the addresses).
    fn gather_offset(&self, k: u64) -> usize {
        let mut z = (self.dst as u64).wrapping_add((k + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let chunks = (self.len / self.src2) as u64;
        (z % chunks) as usize * self.src2
    }
}

/// What a job reports.
#[derive(Clone, Copy, Default)]
struct JobResult {
    status: i32,
    fault_addr: u64,
    result: u64,
    faults: u64,
    device_ns: u64,
    wall_ns: u64,
}

/// What an access does to its operand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Acc {
    Read,
    Write,
    /// Read, modify and write back (an atomic): both directions.
    Rmw,
}

impl Acc {
    fn writes(self) -> bool {
        self != Acc::Read
    }
}

/// A device access that could not be resolved.
struct Fault {
    err: Error,
    addr: usize,
}

/// Runs jobs of one file's context.
struct JobRunner<'a> {
    file: &'a NpuFile,
    faults: u64,
    /// What the job's accesses and faults cost in the device model.
    cost: JobCost,
    /// Copy-engine time for the job's faults (see `Model::charge_to`).
    copy_ns: &'a AtomicU64,
    /// The faults it reports at once.
    wave: Wave<NpuMmuOps>,
}

impl JobRunner<'_> {
    /// Calls `f` with the kernel addresses of the pages holding `vas`
    /// (each access: address, kind, of `bytes` bytes), with all of them
    /// translated and the MMU locked, faulting in what misses first.
    fn access<const N: usize, R>(
        &mut self,
        vas: [(usize, Acc); N],
        bytes: usize,
        f: impl FnOnce([*mut u8; N]) -> R,
    ) -> core::result::Result<R, Fault> {
        let mut replays = 0;
        loop {
            if let Some(err) = self.file.stopped() {
                // The file or the device is going away: stop between
                // accesses, before touching the driver context.
                return Err(Fault {
                    err,
                    addr: vas[0].0,
                });
            }
            // Every operand that misses faults, in one report.
            self.wave.clear();
            {
                // SAFETY: The device was live just above (`stopped`), and
                // unplugging waits for this job before it destroys contexts.
                let ctx = unsafe { self.file.attachment.driver_ctx() };
                let mut mmu = ctx.mmu.lock();
                let mut ptrs = [ptr::null_mut::<u8>(); N];
                let mut local = [false; N];
                for (i, &(va, acc)) in vas.iter().enumerate() {
                    match mmu.translate(va, acc.writes(), &self.file.npu.stats) {
                        Some(pte) => {
                            // The page was mapped by gmem and cannot be
                            // freed or moved before `invalidate` removes it,
                            // which needs the MMU lock we hold.
                            local[i] = pte.in_devmem();
                            let page = if pte.in_devmem() {
                                self.file.npu.dram.page(pte.pfn())
                            } else {
                                // SAFETY: As just said.
                                unsafe { host_page(pte.pfn()) }
                            };
                            // SAFETY: In-page offset of a mapped page.
                            ptrs[i] = unsafe { page.add(va % PAGE_SIZE) };
                        }
                        None => {
                            self.wave
                                .push(&self.file.attachment, self.copy_ns, va, acc.writes());
                        }
                    }
                }
                if self.wave.is_empty() {
                    // Only an access that happens costs: the operands
                    // translated before a fault are translated again.
                    let hot = self.account(&mut mmu, &vas, local, bytes as u64);
                    let r = f(ptrs);
                    drop(mmu);
                    for (va, local) in hot.into_iter().flatten() {
                        self.notify_hot(va, local);
                    }
                    return Ok(r);
                }
            }
            // gmem maps what a fault asks for; a page taken away again each
            // time (other devices, the CPU) is given up on, not spun on.
            replays += 1;
            if replays > MAX_REPLAYS {
                let addr = self.wave.results().next().map_or(vas[0].0, |r| r.0);
                return Err(Fault { err: EAGAIN, addr });
            }
            self.report();
            if let Some((addr, Err(err))) = self.wave.results().find(|r| r.1.is_err()) {
                return Err(Fault { err, addr });
            }
        }
    }

    /// Reports the faults in the wave to the fault buffer and waits for
    /// them: replayable faults, the job then replays.  Its cost: one
    /// fault, and the copies gmem makes for it, which the model charges to
    /// the job.
    fn report(&mut self) {
        let npu = self.file.npu;
        let n = self.wave.len() as u64;
        self.faults += 1;
        npu.stats.faults.fetch_add(n, Ordering::Relaxed);
        npu.faults.report(&self.wave);
        self.cost.faults += 1;
    }

    // A bit per page of a wave in `touch`.
    const _WAVE_FITS: () = assert!(WAVE <= 64);

    /// TOUCH: one word of each page of `[start, end)`, written with
    /// `value` or read, by [`WAVE`] threads at once: the pages of a wave
    /// that miss fault together, one report for all.  Returns the sum of
    /// the words read.
    fn touch(&mut self, start: usize, end: usize, write: bool, value: u64) -> Result<u64, Fault> {
        let mut sum = 0u64;
        let mut va = start;
        while va < end {
            let wave_end = end.min(va + WAVE * PAGE_SIZE);
            // Pages of the wave not touched yet: a bit each.
            let mut left: u64 = u64::MAX >> (64 - (wave_end - va).div_ceil(PAGE_SIZE));
            let mut replays = 0;
            while left != 0 {
                let before = left;
                // The first page not touched yet.
                let next = va + left.trailing_zeros() as usize * PAGE_SIZE;
                if let Some(err) = self.file.stopped() {
                    return Err(Fault { err, addr: next });
                }
                self.wave.clear();
                {
                    // SAFETY: As in `access`.
                    let ctx = unsafe { self.file.attachment.driver_ctx() };
                    let mut mmu = ctx.mmu.lock();
                    for i in 0..WAVE {
                        if left & (1 << i) == 0 {
                            continue;
                        }
                        let page = va + i * PAGE_SIZE;
                        let kind = if write { Acc::Write } else { Acc::Read };
                        let Some(pte) = mmu.translate(page, write, &self.file.npu.stats) else {
                            self.wave
                                .push(&self.file.attachment, self.copy_ns, page, write);
                            continue;
                        };
                        let p = if pte.in_devmem() {
                            self.file.npu.dram.page(pte.pfn())
                        } else {
                            // SAFETY: Mapped by gmem, and kept until
                            // `invalidate`, which needs the MMU lock.
                            unsafe { host_page(pte.pfn()) }
                        }
                        .cast::<u64>();
                        // Counted, and notified after the lock, as in
                        // `access`; one word moves.
                        let hot = self.account(&mut mmu, &[(page, kind)], [pte.in_devmem()], 8);
                        // SAFETY: The first word of a page mapped as above.
                        unsafe {
                            if write {
                                p.write(value);
                            } else {
                                sum = sum.wrapping_add(p.read());
                            }
                        }
                        left &= !(1 << i);
                        if let [Some(h)] = hot {
                            // At most one per wave: a region's counter
                            // fires once per threshold's bytes.
                            drop(mmu);
                            self.notify_hot(h.0, h.1);
                            break;
                        }
                    }
                }
                if self.wave.is_empty() {
                    continue;
                }
                // The budget is per page: it starts again while the wave
                // makes progress.
                if left != before {
                    replays = 0;
                }
                replays += 1;
                if replays > MAX_REPLAYS {
                    return Err(Fault {
                        err: EAGAIN,
                        addr: next,
                    });
                }
                self.report();
                if let Some((addr, Err(err))) = self.wave.results().find(|r| r.1.is_err()) {
                    return Err(Fault { err, addr });
                }
            }
            va = wave_end;
        }
        Ok(sum)
    }

    /// Adds an access of `bytes` per operand to the job's cost and to the
    /// access counters (`local`: the operand is in device memory); returns
    /// the operands whose counter fired, and whether in device memory.
    /// Accesses to device memory count too, apart: gmem learns from them
    /// which resident blocks are in use.
    fn account<const N: usize>(
        &mut self,
        mmu: &mut Mmu,
        vas: &[(usize, Acc); N],
        local: [bool; N],
        bytes: u64,
    ) -> [Option<(usize, bool)>; N] {
        let (threshold, refresh) = (
            self.file.npu.model.counter_bytes(),
            self.file.npu.model.refresh_bytes(),
        );
        let mut hot = [None; N];
        for (i, &(va, acc)) in vas.iter().enumerate() {
            let (rd, wr) = match acc {
                Acc::Read => (bytes, 0),
                Acc::Write => (0, bytes),
                Acc::Rmw => (bytes, bytes),
            };
            if local[i] {
                self.cost.local += rd + wr;
            } else {
                self.cost.link_in += rd;
                self.cost.link_out += wr;
            }
            let limit = if local[i] { refresh } else { threshold };
            if mmu.count(va, rd + wr, local[i], limit) {
                hot[i] = Some((va, local[i]));
            }
        }
        hot
    }

    /// Tells gmem that an access counter fired for the region of `va`, of
    /// in-place accesses or (`local`) of accesses to device memory.  A
    /// real device queues the notification and runs on; here the job
    /// waits, and is charged only the copies gmem makes (no fault).  What
    /// gmem answers does not matter to the job: it is advice.
    fn notify_hot(&mut self, va: usize, local: bool) {
        let _ = if local {
            self.file.attachment.notify_use(va)
        } else {
            self.file.attachment.notify_access(va).map(|_| ())
        };
        self.file.npu.model.notified();
    }

    /// Bytes from `va` to the end of its page.
    fn in_page(va: usize) -> usize {
        PAGE_SIZE - va % PAGE_SIZE
    }

    fn run(&mut self, j: &JobDesc) -> core::result::Result<u64, Fault> {
        let mut done = 0;
        let mut acc: u64 = 0;
        match j.op {
            bindings::GMEM_NPU_OP_FILL => {
                while done < j.len {
                    let d = j.dst + done;
                    let n = Self::in_page(d).min(j.len - done);
                    // SAFETY: `n` bytes from the pointer stay in its page.
                    self.access([(d, Acc::Write)], n, |[p]| unsafe {
                        ptr::write_bytes(p, j.value as u8, n)
                    })?;
                    done += n;
                }
            }
            bindings::GMEM_NPU_OP_COPY => {
                while done < j.len {
                    let (d, s) = (j.dst + done, j.src + done);
                    let n = Self::in_page(d).min(Self::in_page(s)).min(j.len - done);
                    // SAFETY: Both spans stay in their pages; the ranges do
                    // not overlap (validated), so neither do the spans.
                    self.access([(s, Acc::Read), (d, Acc::Write)], n, |[ps, pd]| unsafe {
                        ptr::copy_nonoverlapping(ps, pd, n)
                    })?;
                    done += n;
                }
            }
            bindings::GMEM_NPU_OP_ADD => {
                while done < j.len {
                    let (d, a, b) = (j.dst + done, j.src + done, j.src2 + done);
                    let n = Self::in_page(d)
                        .min(Self::in_page(a))
                        .min(Self::in_page(b))
                        .min(j.len - done);
                    self.access(
                        [(a, Acc::Read), (b, Acc::Read), (d, Acc::Write)],
                        n,
                        |[pa, pb, pd]| {
                            for i in 0..n / 4 {
                                // SAFETY: 4-byte aligned elements inside the
                                // pages (alignment validated).
                                unsafe {
                                    let x = pa.cast::<u32>().add(i).read();
                                    let y = pb.cast::<u32>().add(i).read();
                                    pd.cast::<u32>().add(i).write(x.wrapping_add(y));
                                }
                            }
                        },
                    )?;
                    done += n;
                }
            }
            bindings::GMEM_NPU_OP_REDUCE_SUM => {
                while done < j.len {
                    let s = j.src + done;
                    let n = Self::in_page(s).min(j.len - done);
                    // SAFETY: `s` and `n` are multiples of 4 (validated);
                    // `n` stops at the page's end.
                    acc += self.access([(s, Acc::Read)], n, |[p]| unsafe { sum_u32(p, n) })?;
                    done += n;
                }
            }
            bindings::GMEM_NPU_OP_ATOMIC_INC => {
                // In batches, so the MMU lock is not held for long.
                let mut left = j.value;
                while left > 0 {
                    let batch = left.min(ATOMIC_BATCH);
                    // An atomic moves its word each way.
                    self.access([(j.dst, Acc::Rmw)], batch as usize * 8, |[p]| {
                        // SAFETY: An 8-byte aligned u64 inside the page; the
                        // CPU may update it concurrently, with atomics too.
                        let a = unsafe { core::sync::atomic::AtomicU64::from_ptr(p.cast::<u64>()) };
                        for _ in 0..batch {
                            a.fetch_add(1, Ordering::SeqCst);
                        }
                    })?;
                    left -= batch;
                }
            }
            bindings::GMEM_NPU_OP_TOUCH => {
                acc = self.touch(j.dst & !(PAGE_SIZE - 1), j.dst + j.len, j.write, j.value)?;
            }
            bindings::GMEM_NPU_OP_GATHER => {
                for k in 0..j.value {
                    let base = j.src + j.gather_offset(k);
                    let mut off = 0;
                    while off < j.src2 {
                        let s = base + off;
                        let n = Self::in_page(s).min(j.src2 - off);
                        // SAFETY: `s` is aligned to the chunk (at least 4
                        // bytes, validated); `n` stops at the page's end.
                        let sum =
                            self.access([(s, Acc::Read)], n, |[p]| unsafe { sum_u32(p, n) })?;
                        acc = acc.wrapping_add(sum);
                        off += n;
                    }
                }
            }
            _ => {}
        }
        Ok(acc)
    }
}

/// The sum of the `n / 4` u32s at `p`.
///
/// # Safety
///
/// `p` is 4-byte aligned and `n` bytes from it lie in one page that stays
/// mapped meanwhile (the MMU lock of [`JobRunner::access`] is held).
unsafe fn sum_u32(p: *mut u8, n: usize) -> u64 {
    let mut sum = 0u64;
    for i in 0..n / 4 {
        // SAFETY: Aligned elements inside the mapped page (the contract).
        sum += u64::from(unsafe { p.cast::<u32>().add(i).read() });
    }
    sum
}

/// A queued job: a work item of the device's engine.
///
/// # Invariants
///
/// `work` is initialised to run [`job_work`] on this object, which owns
/// itself once queued (it is a leaked box until the work runs).
#[repr(C)]
struct Job {
    work: Opaque<bindings::work_struct>,
    file: Arc<NpuFile>,
    seqno: u64,
    desc: JobDesc,
    /// The file's next job, while this one waits its turn (`FileState`).
    next: *mut Job,
}

/// The engine's work item: runs one job.
///
/// # Safety
///
/// Called by the workqueue only, for the `work` of a queued job.
unsafe extern "C" fn job_work(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the first field of a leaked `KBox<Job>` (type
    // invariant); we take the box back.
    let job = unsafe { KBox::from_raw(work.cast::<Job>()) };
    let file = &job.file;
    let res = if let Some(err) = file.stopped() {
        JobResult {
            status: err.to_errno(),
            ..Default::default()
        }
    } else {
        run_job(file, &job.desc)
    };
    file.npu.stats.jobs_done.fetch_add(1, Ordering::Relaxed);
    file.complete(job.seqno, job.desc.bytes(), res);
    // The file's next job, if one waits, runs now (on any engine).
    file.next_job();
}

/// Runs job `desc` of `file` and reports how it went.
fn run_job(file: &NpuFile, desc: &JobDesc) -> JobResult {
    let t0 = kernel::time::Ktime::ktime_get();
    let wave = match Wave::new() {
        Ok(w) => w,
        Err(e) => {
            return JobResult {
                status: e.to_errno(),
                ..Default::default()
            }
        }
    };
    // The copies made for the job, by this task and by the task serving
    // its faults.
    let copy_ns = AtomicU64::new(0);
    let charge = file.npu.model.charge_to(&copy_ns);
    let mut engine = JobRunner {
        file,
        faults: 0,
        cost: JobCost::default(),
        copy_ns: &copy_ns,
        wave,
    };
    let mut res = match engine.run(desc) {
        Ok(result) => JobResult {
            result,
            ..Default::default()
        },
        Err(f) => JobResult {
            status: f.err.to_errno(),
            fault_addr: f.addr as u64,
            ..Default::default()
        },
    };
    drop(charge);
    res.faults = engine.faults;
    engine.cost.copy_ns = copy_ns.load(Ordering::Relaxed);
    res.device_ns = file.npu.model.finish(&engine.cost);
    let t1 = kernel::time::Ktime::ktime_get();
    res.wall_ns = (t1.to_ns() - t0.to_ns()).max(0) as u64;
    res
}

// ---------------------------------------------------------------------------
// Files.

struct FileState {
    next_seqno: u64,
    /// Jobs submitted and not yet waited for; `None` while running.
    results: RBTree<u64, Option<JobResult>>,
    /// Entries of `results` (the RB tree does not count them).
    outstanding: usize,
    /// Jobs submitted and not yet completed.
    pending: usize,
    /// Their bytes (`JobDesc::bytes`), bounded by `max_queued_mib`.
    queued_bytes: u64,
    /// A job of the file is on the engine (queued or running): the next
    /// wait here, oldest first, linked through `Job::next`, so that a
    /// file's jobs run in order while other files' run beside them.
    on_engine: bool,
    waiting_head: *mut Job,
    waiting_tail: *mut Job,
}

// SAFETY: The waiting jobs are owned by this list and reached under the
// file's lock only.
unsafe impl Send for FileState {}

/// An open `/dev/gmem_npuN`.
#[pin_data]
struct NpuFile {
    npu: &'static Npu,
    attachment: Attachment<NpuMmuOps>,
    /// The address space the file belongs to; compared, never used.
    mm: *mut bindings::mm_struct,
    /// The device's registration this file attached to ([`Npu::live`]).
    gen: u64,
    closing: AtomicBool,
    #[pin]
    state: Mutex<FileState>,
    #[pin]
    done: CondVar,
    #[pin]
    poll_wq: Opaque<bindings::wait_queue_head>,
}

// SAFETY: `mm` is only compared; everything else is thread-safe.
unsafe impl Send for NpuFile {}
// SAFETY: As above.
unsafe impl Sync for NpuFile {}

impl NpuFile {
    /// Whether the device this file attached to is still plugged in.
    fn live(&self) -> bool {
        self.npu.live.load(Ordering::Acquire) == self.gen
    }

    /// Why jobs must stop now, if they must: the file is closing
    /// (`ECANCELED`) or the device was unplugged (`ENODEV`).
    fn stopped(&self) -> Option<Error> {
        if self.closing.load(Ordering::Acquire) {
            Some(errno(bindings::ECANCELED))
        } else if !self.live() {
            Some(ENODEV)
        } else {
            None
        }
    }

    fn complete(&self, seqno: u64, len: u64, res: JobResult) {
        let mut st = self.state.lock();
        if let Some(slot) = st.results.get_mut(&seqno) {
            *slot = Some(res);
        }
        st.pending -= 1;
        st.queued_bytes -= len;
        drop(st);
        self.done.notify_all();
        // SAFETY: `poll_wq` is initialised for the file's lifetime.
        unsafe {
            bindings::__wake_up(
                self.poll_wq.get(),
                bindings::TASK_NORMAL,
                0,
                ptr::null_mut(),
            )
        };
    }

    /// Validates `job` and gives it a seqno and a result slot, without
    /// running it: the caller tells user space the seqno, then
    /// [`queue`](Self::queue)s it, or [`cancel`](Self::cancel)s it if that
    /// failed, so that a failed SUBMIT leaves no trace.
    fn reserve(self: &Arc<Self>, job: &bindings::gmem_npu_job) -> Result<KBox<Job>> {
        let desc = JobDesc::validate(job)?;
        let mut job = KBox::new(
            Job {
                work: Opaque::uninit(),
                file: self.clone(),
                seqno: 0,
                desc,
                next: ptr::null_mut(),
            },
            GFP_KERNEL,
        )?;
        let limit = u64::from(param_value!(MAX_QUEUED_MIB)) << 20;
        let mut st = self.state.lock();
        if st.outstanding >= MAX_OUTSTANDING {
            return Err(EBUSY);
        }
        // An idle file always takes a job, however large.
        if st.pending > 0 && st.queued_bytes.saturating_add(job.desc.bytes()) > limit {
            return Err(EAGAIN);
        }
        let seqno = st.next_seqno;
        job.seqno = seqno;
        st.results.try_create_and_insert(seqno, None, GFP_KERNEL)?;
        st.next_seqno += 1;
        st.pending += 1;
        st.outstanding += 1;
        st.queued_bytes += job.desc.bytes();
        Ok(job)
    }

    /// Undoes [`reserve`](Self::reserve) of a job that never ran.
    fn cancel(&self, job: KBox<Job>) {
        let mut st = self.state.lock();
        st.results.remove(&job.seqno);
        // Its seqno too, unless another was handed out since.
        if st.next_seqno == job.seqno + 1 {
            st.next_seqno = job.seqno;
        }
        st.pending -= 1;
        st.outstanding -= 1;
        st.queued_bytes -= job.desc.bytes();
        drop(st);
        // A WAIT for the seqno (guessed) sees it gone.
        self.done.notify_all();
    }

    /// Hands a reserved job to the engine, or to the end of the file's
    /// waiting jobs if one of the file's is on the engine already.
    fn queue(&self, job: KBox<Job>) {
        let job = KBox::into_raw(job);
        // SAFETY: `work` is the first field of the leaked box; it is
        // initialised here and owned by the work item from now on.
        unsafe {
            gmem_sync::init_work(
                (*job).work.get(),
                job_work,
                c_str!("gmem_npu_job"),
                kernel::static_lock_class!(),
            )
        };
        let mut st = self.state.lock();
        if st.on_engine {
            if st.waiting_tail.is_null() {
                st.waiting_head = job;
            } else {
                // SAFETY: Waiting jobs are live boxes the list owns.
                unsafe { (*st.waiting_tail).next = job };
            }
            st.waiting_tail = job;
            return;
        }
        st.on_engine = true;
        drop(st);
        // SAFETY: Initialised above; the work item owns the box.
        unsafe { self.npu.engine.queue((*job).work.get()) };
    }

    /// Called by a job of the file as it ends: puts the next one waiting
    /// on the engine.
    fn next_job(&self) {
        let mut st = self.state.lock();
        let job = st.waiting_head;
        if job.is_null() {
            st.on_engine = false;
            return;
        }
        // SAFETY: Waiting jobs are live boxes the list owns; the work item
        // owns this one from here.
        unsafe {
            st.waiting_head = (*job).next;
            if st.waiting_head.is_null() {
                st.waiting_tail = ptr::null_mut();
            }
            self.npu.engine.queue((*job).work.get());
        }
    }

    /// Waits for job `seqno` and returns its report, which stays until
    /// [`consume`](Self::consume)d: a WAIT that cannot write it out
    /// loses nothing.
    fn wait(&self, seqno: u64, timeout_ns: i64) -> Result<JobResult> {
        let mut st = self.state.lock();
        let mut left = if timeout_ns < 0 {
            kernel::task::MAX_SCHEDULE_TIMEOUT as c_ulong
        } else {
            // SAFETY: A pure conversion.
            unsafe { bindings::nsecs_to_jiffies(timeout_ns as u64) }
        };
        loop {
            match st.results.get(&seqno) {
                None => return Err(EINVAL),
                Some(Some(res)) => return Ok(*res),
                Some(None) => {}
            }
            if timeout_ns == 0 {
                return Err(errno(bindings::ETIMEDOUT));
            }
            match self.done.wait_interruptible_timeout(&mut st, left) {
                CondVarTimeoutResult::Signal { .. } => return Err(ERESTARTSYS),
                CondVarTimeoutResult::Timeout => {
                    if let Some(Some(_)) = st.results.get(&seqno) {
                        continue;
                    }
                    return Err(errno(bindings::ETIMEDOUT));
                }
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
            }
        }
    }

    /// Forgets the report of job `seqno`, delivered to user space.
    fn consume(&self, seqno: u64) {
        let mut st = self.state.lock();
        if let Some(Some(_)) = st.results.get(&seqno) {
            st.results.remove(&seqno);
            st.outstanding -= 1;
        }
    }

    fn info(&self) -> bindings::gmem_npu_info {
        let s = &self.npu.stats;
        let m = self.npu.model.snapshot();
        bindings::gmem_npu_info {
            dev_id: self.npu.dev_id.load(Ordering::Relaxed),
            npu_index: self.npu.index,
            caps: bindings::GMEM_DEV_CAP_REPLAYABLE
                | bindings::GMEM_DEV_CAP_DEVMEM
                | bindings::GMEM_DEV_CAP_COPY_ENGINE,
            tlb_entries: TLB_ENTRIES as u32,
            jobs_done: s.jobs_done.load(Ordering::Relaxed),
            faults: s.faults.load(Ordering::Relaxed),
            tlb_misses: s.tlb_misses.load(Ordering::Relaxed),
            invalidations: s.invalidations.load(Ordering::Relaxed),
            dev_gbps: m.dev_gbps,
            link_gbps: m.link_gbps,
            fault_ns: m.fault_ns,
            clock_ns: m.clock_ns,
            link_to_dev_bytes: m.link_to_dev,
            link_to_host_bytes: m.link_to_host,
            local_bytes: m.local,
        }
    }

    /// Stops the file: queued jobs are cancelled, the running one stops at
    /// its next access; waits until none is left.
    fn quiesce(&self) {
        self.closing.store(true, Ordering::Release);
        let mut st = self.state.lock();
        while st.pending > 0 {
            self.done.wait(&mut st);
        }
    }
}

// ---------------------------------------------------------------------------
// The device and its file operations.

/// One simulated NPU.
///
/// # Invariants
///
/// `misc` is registered from the end of [`Npu::new`] while the `Npu`
/// lives, and its `fops` point to `FOPS`.  `live` is 0 while `gmem` is
/// `None`, else the generation of the registration in it.
#[pin_data(PinnedDrop)]
struct Npu {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    /// `misc` was registered (`Npu::new` may fail before).
    misc_registered: AtomicBool,
    name: CString,
    index: u32,
    stats: Arc<NpuStats>,
    /// The device model; its clock runs across unplug and plug.
    model: Arc<Model>,
    /// The registration with gmem while plugged in.  Dropped before `dram`:
    /// unregistration moves device pages back to the host, reading it.
    #[pin]
    gmem: Mutex<Option<Registration<NpuMmuOps>>>,
    /// The generation of the registration in `gmem`, 0 while unplugged.
    live: AtomicU64,
    /// The last generation given out.
    gens: AtomicU64,
    /// The gmem id of the current (or last) registration.
    dev_id: AtomicU32,
    dram: Arc<Dram>,
    /// Runs the jobs, `engines` at once; each file's in order (`NpuFile`).
    engine: gmem_sync::Workqueue,
    /// Where the running jobs' faults wait to be served.
    faults: Pin<KBox<FaultBuffer<NpuMmuOps>>>,
}

// SAFETY: Shared state is behind locks or atomics; `misc` is only touched
// by the misc core.
unsafe impl Send for Npu {}
// SAFETY: As above.
unsafe impl Sync for Npu {}

#[pinned_drop]
impl PinnedDrop for Npu {
    fn drop(self: Pin<&mut Self>) {
        if self.misc_registered.load(Ordering::Acquire) {
            // SAFETY: Registered (type invariant); no file is open (they
            // pin the module), so no callback is running.
            unsafe { bindings::misc_deregister(self.misc.get()) };
        }
        // Jobs of files an exiting task closed may still be queued or
        // running (`npu_release` does not wait for them): they finish
        // here, while the registration and every field they use live.
        self.unplug();
        // A job ending queues the file's next: drain, not flush.
        self.engine.drain();
        self.faults.flush();
    }
}

#[repr(transparent)]
struct Fops(bindings::file_operations);
// SAFETY: Written once in `init` before any device exists, then read-only.
unsafe impl Sync for Fops {}

static mut FOPS: Fops = Fops(bindings::file_operations {
    open: Some(npu_open),
    release: Some(npu_release),
    unlocked_ioctl: Some(npu_ioctl),
    compat_ioctl: Some(npu_ioctl),
    poll: Some(npu_poll),
    // SAFETY: All-zero is "not implemented" for every other member.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

impl Npu {
    fn new(index: u32, dram_mib: usize) -> Result<Pin<KBox<Npu>>> {
        let name = CString::try_from_fmt(fmt!("gmem_npu{}", index))?;
        let stats = Arc::new(NpuStats::default(), GFP_KERNEL)?;
        let model = Arc::new(Model::new(model_params())?, GFP_KERNEL)?;
        let dram = Arc::new(Dram::new(dram_mib)?, GFP_KERNEL)?;
        // The job engines: up to `engines` jobs at once.
        let engine = gmem_sync::Workqueue::with_max_active(&name, param_value!(ENGINES))?;
        let faults = FaultBuffer::new(
            &CString::try_from_fmt(fmt!("gmem_npu{}_faults", index))?,
            model.clone(),
            fault_batch,
        )?;
        let npu = KBox::pin_init(
            try_pin_init!(Npu {
                // SAFETY: Zeroed is the unregistered state of a miscdevice.
                misc: Opaque::new(unsafe { core::mem::zeroed() }),
                misc_registered: AtomicBool::new(false),
                name,
                index,
                stats,
                model,
                gmem <- new_mutex!(None, "Npu::gmem"),
                live: AtomicU64::new(0),
                gens: AtomicU64::new(0),
                dev_id: AtomicU32::new(0),
                dram,
                engine,
                faults,
            }? Error),
            GFP_KERNEL,
        )?;
        npu.plug()?;
        // SAFETY: `misc` is pinned in the box; `FOPS` is static.  After
        // registration the device may be opened at once.
        unsafe {
            let m = npu.misc.get();
            (*m).minor = bindings::MISC_DYNAMIC_MINOR as i32;
            (*m).name = npu.name.as_char_ptr();
            (*m).fops = &raw const FOPS.0;
            // Like KFD's /dev/kfd: a file reaches only its opener's own
            // memory, and the limits bound what one user can take.
            (*m).mode = 0o666;
            kernel::error::to_result(bindings::misc_register(m))?;
        }
        npu.misc_registered.store(true, Ordering::Release);
        Ok(npu)
    }

    /// Registers the device with gmem, with fresh memory (plugged in).
    fn plug(&self) -> Result {
        let mut reg = self.gmem.lock();
        if reg.is_some() {
            return Ok(());
        }
        let gmem_name = CString::try_from_fmt(fmt!("npu{}", self.index))?;
        let r = Registration::new(
            &gmem_name,
            gmem_dev::caps::REPLAYABLE | gmem_dev::caps::DEVMEM | gmem_dev::caps::COPY_ENGINE,
            NpuMmuOps {
                stats: self.stats.clone(),
                dram: self.dram.clone(),
                model: self.model.clone(),
            },
        )?;
        r.add_memory(self.dram.pages * PAGE_SIZE)?;
        self.dev_id.store(r.id(), Ordering::Relaxed);
        *reg = Some(r);
        let gen = self.gens.fetch_add(1, Ordering::Relaxed) + 1;
        self.live.store(gen, Ordering::Release);
        Ok(())
    }

    /// Takes the device away from gmem, as if it fell off the bus: see the
    /// module docs (hot-unplug).
    fn unplug(&self) {
        let mut reg = self.gmem.lock();
        let Some(r) = reg.take() else {
            return;
        };
        self.live.store(0, Ordering::Release);
        // Every job that could still see the old generation has run.
        self.engine.flush();
        drop(r);
        pr_info!("{} unplugged\n", &*self.name);
    }
}

impl gmem_debugfs::Control for Npu {
    fn show(&self, w: &mut gmem_debugfs::SeqWriter) -> core::fmt::Result {
        use core::fmt::Write;
        writeln!(w, "{}", u32::from(self.live.load(Ordering::Acquire) != 0))
    }

    fn write(&self, input: &[u8]) -> Result {
        match input.strip_suffix(b"\n").unwrap_or(input) {
            b"0" => {
                self.unplug();
                Ok(())
            }
            b"1" => self.plug(),
            _ => Err(EINVAL),
        }
    }
}

/// The `Npu` a misc device belongs to.
///
/// # Safety
///
/// `misc` must be the `misc` field of a live `Npu`.
unsafe fn npu_of(misc: *mut bindings::miscdevice) -> &'static Npu {
    let off = core::mem::offset_of!(Npu, misc);
    // SAFETY: Per the contract; devices live until module exit, after
    // every file is closed.
    unsafe { &*misc.cast::<u8>().sub(off).cast::<Npu>() }
}

/// `file_operations::open` of `/dev/gmem_npuN`.
///
/// # Safety
///
/// Called by the VFS only (through `misc_open`), with `file` valid.
unsafe extern "C" fn npu_open(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: `misc_open()` stored our miscdevice in `private_data`.
    let npu = unsafe { npu_of((*file).private_data.cast()) };
    let res = (|| -> Result<Arc<NpuFile>> {
        // Held while attaching: unplugging never races an attach.
        let reg = npu.gmem.lock();
        let attachment = Attachment::attach_current(reg.as_ref().ok_or(ENODEV)?)?;
        let gen = npu.live.load(Ordering::Acquire);
        drop(reg);
        Arc::pin_init(
            try_pin_init!(NpuFile {
                npu,
                attachment,
                mm: gmem_dev::current_mm(),
                gen,
                closing: AtomicBool::new(false),
                state <- new_mutex!(FileState {
                    next_seqno: 1,
                    results: RBTree::new(),
                    outstanding: 0,
                    pending: 0,
                    queued_bytes: 0,
                    on_engine: false,
                    waiting_head: ptr::null_mut(),
                    waiting_tail: ptr::null_mut(),
                }),
                done <- new_condvar!(),
                // SAFETY: `__init_waitqueue_head` initialises the slot.
                poll_wq <- unsafe {
                    Opaque::ffi_init(|slot| {
                        bindings::__init_waitqueue_head(
                            slot,
                            c_str!("gmem_npu_poll").as_char_ptr().cast(),
                            lock_class_ptr(kernel::static_lock_class!()),
                        )
                    })
                },
            }? Error),
            GFP_KERNEL,
        )
    })();
    match res {
        Ok(f) => {
            // SAFETY: `file` is ours until release, which takes it back.
            unsafe { (*file).private_data = Arc::into_raw(f).cast_mut().cast() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// The `NpuFile` of an open file.
///
/// # Safety
///
/// `file` must be an open gmem_npu file.
unsafe fn file_of<'a>(file: *mut bindings::file) -> &'a NpuFile {
    // SAFETY: `npu_open` stored an `Arc<NpuFile>` there.
    unsafe { &*(*file).private_data.cast::<NpuFile>() }
}

/// `file_operations::release` of `/dev/gmem_npuN`.
///
/// # Safety
///
/// Called by the VFS only, once, for a file `npu_open` opened.
unsafe extern "C" fn npu_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: Takes back the reference `npu_open` stored.
    let f = unsafe { Arc::from_raw((*file).private_data.cast::<NpuFile>()) };
    if gmem_dev::current_mm().is_null() {
        // An exiting task (its mm already gone) or a kernel thread closes
        // the file.  A running job may be waiting for that process's
        // userfaultfd handler, which cannot answer any more and whose file
        // is released after this one: waiting here would never end.  The
        // jobs stop as they would (`closing`) and the last one to finish
        // drops the file.
        f.closing.store(true, Ordering::Release);
    } else {
        f.quiesce();
    }
    drop(f);
    0
}

/// `file_operations::poll` of `/dev/gmem_npuN`.
///
/// # Safety
///
/// Called by the VFS only, for a file `npu_open` opened.
unsafe extern "C" fn npu_poll(
    file: *mut bindings::file,
    wait: *mut bindings::poll_table_struct,
) -> c_uint {
    // SAFETY: An open gmem_npu file.
    let f = unsafe { file_of(file) };
    // This is poll_wait(): register on the queue unless polling only.
    // SAFETY: VFS passes a valid (or null) poll table.
    if let Some(pt) = unsafe { wait.as_ref() } {
        if let Some(qproc) = pt._qproc {
            // SAFETY: Arguments as poll_wait() passes them.
            unsafe { qproc(file, f.poll_wq.get(), wait) };
        }
    }
    if f.state.lock().pending == 0 {
        bindings::POLLIN | bindings::POLLRDNORM
    } else {
        0
    }
}

/// `file_operations::unlocked_ioctl` of `/dev/gmem_npuN`.
///
/// # Safety
///
/// Called by the VFS only, for a file `npu_open` opened.
unsafe extern "C" fn npu_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> isize {
    // SAFETY: An open gmem_npu file; `private_data` holds an `Arc`.
    let f = unsafe { ManuallyDropArc::new((*file).private_data.cast()) };
    match do_ioctl(&f, cmd, arg) {
        Ok(()) => 0,
        Err(e) => e.to_errno() as isize,
    }
}

/// Borrows the file's `Arc` without touching its count.
struct ManuallyDropArc(core::mem::ManuallyDrop<Arc<NpuFile>>);

impl ManuallyDropArc {
    /// # Safety
    ///
    /// `p` must come from `Arc::into_raw` and stay owned elsewhere for the
    /// lifetime of the result.
    unsafe fn new(p: *const NpuFile) -> Self {
        // SAFETY: Per the contract; `ManuallyDrop` keeps the count as is.
        Self(core::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) }))
    }
}

impl core::ops::Deref for ManuallyDropArc {
    type Target = Arc<NpuFile>;
    fn deref(&self) -> &Arc<NpuFile> {
        &self.0
    }
}

// The ioctl numbers of include/uapi/linux/gmem.h (function-like macros
// there, which bindgen cannot evaluate).
const IOC_MAGIC: u32 = bindings::GMEM_NPU_IOC_MAGIC as u32;
const IOC_SUBMIT: u32 = _IOWR::<bindings::gmem_npu_submit>(IOC_MAGIC, 1);
const IOC_WAIT: u32 = _IOWR::<bindings::gmem_npu_wait>(IOC_MAGIC, 2);
const IOC_SET_MODE: u32 = _IOW::<bindings::gmem_npu_mode>(IOC_MAGIC, 3);
const IOC_INFO: u32 = _IOR::<bindings::gmem_npu_info>(IOC_MAGIC, 4);
const IOC_PREFETCH: u32 = _IOW::<bindings::gmem_npu_prefetch>(IOC_MAGIC, 5);
const IOC_SET_PLACEMENT: u32 = _IOW::<bindings::gmem_npu_placement>(IOC_MAGIC, 6);

/// `cmd` with its size field set to `size`.
const fn ioc_resized(cmd: u32, size: u32) -> u32 {
    let mask = bindings::_IOC_SIZEMASK << bindings::_IOC_SIZESHIFT;
    (cmd & !mask) | (size << bindings::_IOC_SIZESHIFT)
}

/// The command and argument size of an ioctl: WAIT and INFO also come
/// with the shorter structures of their first version.
fn ioc_normalize(cmd: u32) -> (u32, usize) {
    let v1 = [
        (IOC_WAIT, bindings::GMEM_NPU_WAIT_SIZE_V1),
        (IOC_INFO, bindings::GMEM_NPU_INFO_SIZE_V1),
    ];
    for (cur, size) in v1 {
        if cmd == ioc_resized(cur, size) {
            return (cur, size as usize);
        }
    }
    (cmd, kernel::ioctl::_IOC_SIZE(cmd))
}

fn do_ioctl(f: &Arc<NpuFile>, cmd: c_uint, arg: usize) -> Result {
    let (cmd, size) = ioc_normalize(cmd);
    if gmem_dev::current_mm() != f.mm {
        // The file belongs to another address space (fork, fd passing).
        return Err(EBADF);
    }
    // After an unplug a file only reports what its jobs did.
    if cmd != IOC_WAIT && cmd != IOC_INFO && !f.live() {
        return Err(ENODEV);
    }
    match cmd {
        IOC_SUBMIT => {
            let mut s: bindings::gmem_npu_submit = read_arg(arg)?;
            let job = f.reserve(&s.job)?;
            s.seqno = job.seqno;
            if let Err(e) = write_arg(arg, &s) {
                f.cancel(job);
                return Err(e);
            }
            f.queue(job);
            Ok(())
        }
        IOC_WAIT => {
            let mut w: bindings::gmem_npu_wait = read_arg_sized(arg, size)?;
            if w.pad != 0 {
                return Err(EINVAL);
            }
            let r = f.wait(w.seqno, w.timeout_ns)?;
            w.status = r.status;
            w.fault_addr = r.fault_addr;
            w.result = r.result;
            w.faults = r.faults;
            w.device_ns = r.device_ns;
            w.wall_ns = r.wall_ns;
            write_arg_sized(arg, &w, size)?;
            f.consume(w.seqno);
            Ok(())
        }
        IOC_SET_MODE => {
            let m: bindings::gmem_npu_mode = read_arg(arg)?;
            if m.pad != 0 {
                return Err(EINVAL);
            }
            match m.mode {
                bindings::GMEM_NPU_MODE_PEER_SHARED => f.attachment.set_system_allocator(false),
                bindings::GMEM_NPU_MODE_SYSTEM => f.attachment.set_system_allocator(true),
                _ => Err(EINVAL),
            }
        }
        IOC_INFO => write_arg_sized(arg, &f.info(), size),
        IOC_PREFETCH => {
            let p: bindings::gmem_npu_prefetch = read_arg(arg)?;
            let aligned = |x: u64| x % PAGE_SIZE as u64 == 0;
            if p.pad != 0 || p.flags & !bindings::GMEM_NPU_PREFETCH_TO_HOST != 0 {
                return Err(EINVAL);
            }
            if p.len == 0 || !aligned(p.addr) || !aligned(p.len) {
                return Err(EINVAL);
            }
            check_range(p.addr, p.len)?;
            let to_host = p.flags & bindings::GMEM_NPU_PREFETCH_TO_HOST != 0;
            f.attachment
                .prefetch(p.addr as usize, (p.addr + p.len) as usize, to_host)
        }
        IOC_SET_PLACEMENT => {
            let p: bindings::gmem_npu_placement = read_arg(arg)?;
            if p.pad != 0 {
                return Err(EINVAL);
            }
            match p.placement {
                bindings::GMEM_NPU_PLACE_MIGRATE => f.attachment.set_place_host(false),
                bindings::GMEM_NPU_PLACE_HOST => f.attachment.set_place_host(true),
                _ => Err(EINVAL),
            }
        }
        _ => Err(ENOTTY),
    }
}

// ---------------------------------------------------------------------------

struct NpuModule {
    /// `gmem_npu/npuN/present`; dropped first, its files point at `npus`.
    _debugfs: gmem_debugfs::Dir,
    npus: KVec<Pin<KBox<Npu>>>,
}

impl kernel::Module for NpuModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let (n, dram_mib) = (param_value!(NUM_DEVICES), param_value!(DRAM_MIB));
        if n == 0 || n > MAX_DEVICES {
            pr_err!("num_devices must be 1..={}\n", MAX_DEVICES);
            return Err(EINVAL);
        }
        if dram_mib == 0 || dram_mib > MAX_DRAM_MIB {
            pr_err!("dram_mib must be 1..={}\n", MAX_DRAM_MIB);
            return Err(EINVAL);
        }
        Model::check(&model_params())?;
        if param_value!(ENGINES) == 0 || param_value!(ENGINES) > MAX_ENGINES {
            pr_err!("engines must be 1..={}\n", MAX_ENGINES);
            return Err(EINVAL);
        }
        if fault_batch() == 0 || fault_batch() > gmem_dev::FAULT_BATCH_MAX {
            pr_err!("fault_batch must be 1..={}\n", gmem_dev::FAULT_BATCH_MAX);
            return Err(EINVAL);
        }
        // SAFETY: No device exists yet, so nothing reads `FOPS`.
        unsafe { FOPS.0.owner = module.as_ptr() };
        let mut npus = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let debugfs = gmem_debugfs::Dir::new(c_str!("gmem_npu"));
        for i in 0..n {
            npus.push(Npu::new(i, dram_mib as usize)?, GFP_KERNEL)?;
            let npu = &npus[i as usize];
            pr_info!(
                "/dev/gmem_npu{} ready (gmem device {})\n",
                i,
                npu.dev_id.load(Ordering::Relaxed)
            );
            let dir = debugfs.subdir(&CString::try_from_fmt(fmt!("npu{}", i))?);
            // SAFETY: The NPU is pinned in `npus`, which outlives the
            // directory (dropped first, see `NpuModule`).
            unsafe { dir.control_file(c_str!("present"), &**npu) };
            // SAFETY: As above: the NPU holds its model.
            unsafe { dir.control_file(c_str!("model"), &*npu.model) };
            // Removed with its parent.
            core::mem::forget(dir);
        }
        Ok(NpuModule {
            _debugfs: debugfs,
            npus,
        })
    }
}

impl Drop for NpuModule {
    fn drop(&mut self) {
        pr_info!("{} NPU(s) going away\n", self.npus.len());
    }
}
