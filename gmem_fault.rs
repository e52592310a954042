// SPDX-License-Identifier: GPL-2.0

//! Device faults: a device reports (context, address, access); gmem finds
//! the host pages with `hmm_range_fault()` and maps them into the device
//! through its `gmem_dev_ops`.
//!
//! # The retry protocol (Documentation/mm/hmm.rst)
//!
//! 1. Read the region notifier's sequence (`mmu_interval_read_begin`).
//! 2. Under `mmap_lock` for read, check the policy on the VMA and fault the
//!    pages in with `hmm_range_fault()`; `-EBUSY` means an invalidation
//!    raced: start again.
//! 3. Let the driver allocate its page-table levels (`prepare`): nothing
//!    may allocate under the lock of step 4, which reclaim takes.
//! 4. Take the address space's page-table lock, which every invalidation
//!    of the address space also takes, and map the pages only if no
//!    invalidation ran since step 1 (`mmu_interval_read_retry`) and the
//!    region was not retired; otherwise start again.
//!
//! So a device never maps a page core MM has already decided to change or
//! free: that is gmem's coherence guarantee.
//!
//! # Migration
//!
//! With device memory and the default placement, step 1 is preceded by a
//! migration pass (`migrate_vma_*`) that moves the block's host and empty
//! pages to the device; `hmm_range_fault()` then returns them as the
//! device's own pages (`dev_private_owner`).  Pages on another device are
//! pulled back to the host by that fault and taken over by a second pass.
//! A CPU touch of a device page brings its block home
//! (`devmem_migrate_to_ram`); device unregistration brings every page home
//! (`evict_all`).
//!
//! Whether a block migrates is the placement policy: the range's hints
//! (`gmem_vma::Attrs`) first, then the context's placement, and no block
//! the device's thrashing table holds back (`gmem_devmem::Thrash`).
//!
//! # Read duplication
//!
//! A device's read fault on a read-mostly range copies the block's host
//! pages into the device's memory and maps the copies read-only
//! ([`duplicate`]); the host keeps its pages, and each device reading the
//! range gets copies of its own.  Coherence comes from core MM: the host
//! pages are write-protected and marked maybe shared (`gmem_wrprotect()`,
//! built in), and gmem holds a reference on each, so a CPU write copies
//! the page (`wp_page_copy()`) and invalidates it first, and every
//! invalidation of the block collapses all its copies.  A device write
//! faults in the same way and maps the host page in place.
//!
//! A block one device reads while it is in another's memory is read the
//! same way from then on, hint or not: it becomes shared on every device
//! of the address space for a while (`GmemAs::share`), until a device
//! writes it.  Copies evicted are departures for the thrashing table, so
//! a shared working set larger than the device is held on the host rather
//! than copied again on every pass.
//!
//! # Eviction
//!
//! A block needs a chunk of device memory; when none is free,
//! [`make_room`] evicts the least recently used unpinned chunk back to host
//! memory by pfn range (`migrate_device_range`), holding no gmem lock and
//! no `mmap_lock` it needs: page locks are only tried, so an eviction
//! racing a CPU fault, a device fault, munmap or exit on the same pages
//! skips what is busy and moves on.  If every chunk in use is pinned, the
//! fault fails with `ENOMEM`.
//!
//! # Access counters
//!
//! A device that counts its in-place accesses to host memory (as NVIDIA's
//! do since Volta) notifies gmem of a block it uses a lot
//! ([`access_notified`]); gmem then migrates it into free device memory
//! (never evicting for it) as a prefetch would, even
//! a block accessed-by maps in place, but never against the context's host
//! placement, a preferred location elsewhere, read-mostly (copies serve
//! it) or a thrashing hold.  So blocks first used in place move once they
//! have proved hot, and the rest stay on the link.  A device that counts
//! its accesses to its own memory says which resident blocks it uses
//! ([`use_notified`]): they become the most recently used and, for a
//! while, the last to be evicted.
//!
//! `naive_lru=1` turns all of this off for experiments: every device fault
//! migrates, whatever the hints, the thrashing table or the counters say.
//!
//! # Fault-ahead
//!
//! A fault resolves the whole [`FAULT_BLOCK`]-aligned block around the
//! address, clipped to the region and the VMA (one policy and protection),
//! so a device streaming through memory takes one fault per block rather
//! than per page, as UVM does with its 2 MiB VA blocks.  Not on a range
//! userfaultfd watches: there a fault resolves the page touched, after
//! waiting for the handler as a CPU fault would.

use core::sync::atomic::Ordering;
use kernel::bindings;
use kernel::prelude::*;

use crate::gmem_devmem::{self, BlockKey, DevMem, Dup, Victim, CHUNK_PAGES};
use crate::gmem_mm::{self, MmUser};
use crate::gmem_trace::{self, Cause};
use crate::gmem_vma::Region;
use crate::{gmem_vma, GmemCtx, STATS};

/// Bytes resolved by one device fault, at most (aligned).
pub(crate) const FAULT_BLOCK: usize = 2 << 20;
const PAGE_SIZE: usize = bindings::PAGE_SIZE;
const PAGES_PER_BLOCK: usize = FAULT_BLOCK / PAGE_SIZE;
/// Attempts before a fault that keeps racing invalidations gives up.
const MAX_ATTEMPTS: usize = 1000;

const HMM_PFN_VALID: usize = bindings::hmm_pfn_flags_HMM_PFN_VALID;
const HMM_PFN_WRITE: usize = bindings::hmm_pfn_flags_HMM_PFN_WRITE;
const HMM_PFN_FLAGS: usize = bindings::hmm_pfn_flags_HMM_PFN_FLAGS;

/// Resolves a device fault at `addr` for `ctx`, mapping the block around
/// it; returns the number of pages mapped.
///
/// Errors: `EFAULT` no mapping or `PROT_NONE`, `EPERM` write to read-only
/// memory, `EACCES` memory the context's policy excludes, `ESRCH` the
/// address space is exiting, `ENODEV` the context was torn down, `ENOMEM`
/// the device's memory is all pinned, `EAGAIN` endless invalidation races.
pub(crate) fn device_fault(ctx: &GmemCtx, addr: usize, write: bool) -> Result<usize> {
    let t0 = kernel::time::Ktime::ktime_get();
    let res = serve_fault(ctx, addr, write).map(|(n, _, _)| n);
    count_service(t0, 1);
    res
}

/// [`fault_block`] for a device fault, traced.
fn serve_fault(ctx: &GmemCtx, addr: usize, write: bool) -> Result<(usize, usize, bool)> {
    trace_fault(
        ctx,
        addr,
        write,
        fault_block(ctx, addr, write, Place::Policy, ANYWHERE),
    )
}

/// Traces the device fault that had result `res`, and returns it.
fn trace_fault(
    ctx: &GmemCtx,
    addr: usize,
    write: bool,
    res: Result<(usize, usize, bool)>,
) -> Result<(usize, usize, bool)> {
    let (pages, ret) = match res {
        Ok((n, _, _)) => (n, 0),
        Err(ref e) => (0, e.to_errno()),
    };
    gmem_trace::fault(ctx.dev_id(), addr, write, pages, ret);
    res
}

/// Counts `faults` device faults served since `t0`.
fn count_service(t0: kernel::time::Ktime, faults: u64) {
    STATS.fault_entries.fetch_add(faults, Ordering::Relaxed);
    crate::count_ns(&STATS.fault_service_ns, t0);
}

/// Faults one call may report ([`device_fault_batch`]), as many as a UVM
/// fault batch.
pub(crate) const FAULT_BATCH_MAX: usize = bindings::GMEM_FAULT_BATCH_MAX as usize;

/// Resolves a batch of device faults of `ctx`, as a device's fault buffer
/// holds them: many faults of one block (the device's threads touching its
/// pages at once) are served by one fault of the block, a write serving
/// the reads too.  Sets each entry's `result` (0 or an errno of
/// [`device_fault`]) and returns the number of faults served after
/// removing the duplicates.  `faults` is at most [`FAULT_BATCH_MAX`] long
/// and its flags are valid.
///
/// The batch takes one reference on the mm and one block's worth of pfns;
/// each block is still served on its own, `mmap_lock` taken and released
/// for it: migration and eviction must run without it.
pub(crate) fn device_fault_batch(
    ctx: &GmemCtx,
    faults: &mut [bindings::gmem_fault_entry],
) -> Result<usize> {
    let t0 = kernel::time::Ktime::ktime_get();
    // The pfns, once for the batch.
    let mut faulting = Faulting::new(ctx);
    // The order, on the stack (512 bytes).
    let mut slots = [0u16; FAULT_BATCH_MAX];
    let order = &mut slots[..faults.len()];
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u16;
    }
    let write = |f: &bindings::gmem_fault_entry| f.flags & bindings::GMEM_FAULT_WRITE != 0;
    // By block, the writes of a block first, then by address: the range a
    // fault maps covers the faults after it that it can.
    order.sort_unstable_by_key(|&i| {
        let f = &faults[usize::from(i)];
        (f.addr & !(FAULT_BLOCK - 1), !write(f), f.addr)
    });
    // What the last fault served mapped: [start, end), all writable.
    let mut mapped: Option<(usize, usize, bool)> = None;
    let (mut served, mut dups) = (0, 0);
    // An error of the context or the address space ends the batch.
    let mut fatal = None;
    for &i in order.iter() {
        let f = &mut faults[usize::from(i)];
        let (addr, w) = (f.addr, write(f));
        if fatal.is_none() && ctx.dev_going() {
            fatal = Some(ENODEV.to_errno());
        }
        if let Some(e) = fatal {
            f.result = e;
            continue;
        }
        if let Some((s, e, mw)) = mapped {
            if s <= addr && addr < e && (mw || !w) {
                f.result = 0;
                dups += 1;
                continue;
            }
        }
        served += 1;
        let res = match faulting {
            Ok(ref mut f) => f.fault_block(addr, w, Place::Policy, ANYWHERE),
            Err(e) => Err(e),
        };
        match trace_fault(ctx, addr, w, res) {
            Ok((n, end, writable)) => {
                f.result = 0;
                mapped = Some((end - n * PAGE_SIZE, end, writable));
            }
            Err(e) => {
                f.result = e.to_errno();
                mapped = None;
                if e == ENODEV || e == ESRCH {
                    fatal = Some(f.result);
                }
            }
        }
    }
    STATS.fault_batches.fetch_add(1, Ordering::Relaxed);
    STATS.batch_dups.fetch_add(dups, Ordering::Relaxed);
    count_service(t0, faults.len() as u64);
    Ok(served)
}

/// Where a fault puts the block it maps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// As the hints and the context's placement say (a device fault).
    Policy,
    /// In device memory (a prefetch or pin).
    Device,
    /// Where it is now (accessed-by: mapping in place).
    Where,
    /// Its pages in host memory move to device memory, and what is then
    /// present is mapped, faulting nothing: pages another device holds stay
    /// there (a prefetch of the host's pages only, `GMEM_PREFETCH_NO_PEER`).
    Migrate,
}

/// The part of a block a fault may resolve, `[start, end)`.
pub(crate) type Within = (usize, usize);
/// A device fault's: as much of the block as its region and VMA allow.
pub(crate) const ANYWHERE: Within = (0, usize::MAX);

/// As [`device_fault`], with the placement `place`, resolving no more of
/// the block than `within` (which holds `addr`).  Returns the pages mapped,
/// the end of the range they cover, and whether all of them were mapped
/// writable.
pub(crate) fn fault_block(
    ctx: &GmemCtx,
    addr: usize,
    write: bool,
    place: Place,
    within: Within,
) -> Result<(usize, usize, bool)> {
    let mut f = Faulting::new(ctx)?;
    f.fault_block(addr, write, place, within)
}

/// What the faults of one call share: a block's worth of pfns, allocated
/// once for a batch.
struct Faulting<'a> {
    ctx: &'a GmemCtx,
    pfns: KVec<usize>,
}

impl<'a> Faulting<'a> {
    fn new(ctx: &'a GmemCtx) -> Result<Self> {
        let mut pfns = KVec::with_capacity(PAGES_PER_BLOCK, GFP_KERNEL)?;
        pfns.extend_with(PAGES_PER_BLOCK, 0usize, GFP_KERNEL)?;
        Ok(Self { ctx, pfns })
    }

    /// [`fault_block`] with the pfns `self` holds.  The mm reference is
    /// taken for each fault: an address space exiting during a batch is
    /// not kept alive, nor faulted for, by the rest of it.
    fn fault_block(
        &mut self,
        addr: usize,
        write: bool,
        place: Place,
        within: Within,
    ) -> Result<(usize, usize, bool)> {
        let as_ = self.ctx.address_space();
        if as_.is_released() {
            return Err(ESRCH);
        }
        // SAFETY: The address space holds `mm_count` on its mm.
        let user = unsafe { MmUser::get(as_.mm()) }.ok_or(ESRCH)?;
        let pfns = &mut self.pfns;
        fault_block_with(self.ctx, &user, pfns, addr, write, place, within)
    }
}

/// The body of [`fault_block`]: `pfns` has room for a block.
fn fault_block_with(
    ctx: &GmemCtx,
    user: &MmUser,
    pfns: &mut [usize],
    addr: usize,
    write: bool,
    place: Place,
    within: Within,
) -> Result<(usize, usize, bool)> {
    let as_ = ctx.address_space();
    if as_.is_released() {
        return Err(ESRCH);
    }
    ctx.count_fault();

    // Migration passes left: one to bring the block to the device, and one
    // more if the device fault pulled pages back from another device.
    let key = BlockKey::new(as_.mm(), addr);
    let mut passes = 0;
    let mut migrate_next = false;
    let mut pinned = false;
    // Pages of the block the last migration pass could not look at.
    let mut foreign = 0;
    // The last migration pass found pages of the block on another device.
    let mut bounced = false;
    let mut decided = false;
    for _ in 0..MAX_ATTEMPTS {
        let (found, attrs) = {
            let mut regions = as_.regions.lock();
            (regions.find(addr), regions.attrs.get(addr))
        };
        let Some(region) = found else {
            // Not covered yet (mremap, fork, system-allocator mode): cover
            // the VMA if the policy allows it, then fault.
            let (start, end) = {
                let mm = user.read_lock();
                let vma = mm.vma_at(addr).ok_or(EFAULT)?;
                if !ctx.allows(&vma) {
                    return Err(EACCES);
                }
                (vma.start(), vma.end())
            };
            gmem_vma::ensure_covered(as_, user, start, end)?;
            continue;
        };
        if !decided && place == Place::Policy && !naive() && param_value!(READ_DUP) != 0 {
            if write {
                // Written: copies would collapse at once, on every device,
                // whichever devices' tables say shared.
                as_.unshare(key);
            } else if let Some(pool) = ctx.devmem() {
                let mine = attrs.pinned & (1u64 << ctx.dev_id()) != 0;
                // Sharing stands in for a migration: only where the
                // context and the hints would migrate, and not pinned
                // (copies are not).
                let shared = !mine
                    && attrs.migrates_for(ctx.dev_id(), ctx.migrates())
                    && pool.is_shared(key);
                if (attrs.read_mostly || shared)
                    // Copies evicted and wanted back soon are held on the
                    // host like pages (streamed over).
                    && (mine || !pool.holds_back(key))
                {
                    if let Some((n, end)) = duplicate(ctx, user, &region, addr) {
                        return Ok((n, end, false));
                    }
                }
            }
        }
        if !decided {
            decided = true;
            pinned = attrs.pinned & (1u64 << ctx.dev_id()) != 0;
            if let Some(pool) = ctx.devmem() {
                let wanted = match place {
                    Place::Policy if naive() => ctx.migrates(),
                    Place::Policy => {
                        let migrates = attrs.migrates_for(ctx.dev_id(), ctx.migrates());
                        let held = migrates && !pinned && pool.holds_back(key);
                        if held {
                            trace_hold(ctx, key);
                        }
                        migrates && !held
                    }
                    Place::Device | Place::Migrate => true,
                    Place::Where => false,
                };
                if wanted {
                    passes = 2;
                    migrate_next = true;
                }
            }
        }
        let block = addr & !(FAULT_BLOCK - 1);
        let mut start = block.max(region.start).max(within.0);
        let mut end = (block + FAULT_BLOCK).min(region.end).min(within.1);
        if migrate_next {
            migrate_next = false;
            passes -= 1;
            let (s, e, allowed, file) = {
                let mm = user.read_lock();
                let vma = mm.vma_at(addr).ok_or(EFAULT)?;
                if !ctx.allows(&vma) {
                    return Err(EACCES);
                }
                // Only what the access may touch moves; the fault below
                // reports the protection error otherwise.
                let need = u64::from(bindings::VM_READ)
                    | if write {
                        u64::from(bindings::VM_WRITE)
                    } else {
                        0
                    };
                if vma.uffd_armed() {
                    // Only the page touched (see below).
                    start = addr & !(PAGE_SIZE - 1);
                    end = start + PAGE_SIZE;
                }
                (
                    start.max(vma.start()),
                    end.min(vma.end()),
                    vma.flags() & need == need,
                    !vma.is_anonymous(),
                )
            };
            // A block holding merged (KSM) pages is left where it is:
            // collecting one for migration unmaps it from every process
            // that merged into it while ksmd works on it, which core MM
            // has been seen to get wrong (a migration entry left to an
            // unlocked page), and it would not move anyway.
            if !allowed && place == Place::Migrate {
                // What a fault of the range would say.
                return Err(EFAULT);
            }
            if allowed && ready_to_migrate(user, &region, s, e, pfns, file) {
                // Whatever does not move is used in place, unless the
                // device has no room it may make.
                let cause = if place == Place::Policy {
                    Cause::Fault
                } else {
                    Cause::Prefetch
                };
                match migrate_to_device(ctx, user, s, e, pinned, cause) {
                    Ok((_, f)) => {
                        foreign = f;
                        // What was not collected may be this device's own
                        // pages, or pages busy: another device's only if
                        // it holds the block.
                        bounced = f > 0
                            && !write
                            && place == Place::Policy
                            && !naive()
                            && param_value!(READ_DUP) != 0
                            && as_.held_elsewhere(key, ctx.dev_id());
                    }
                    Err(e) if e == ENOMEM => return Err(ENOMEM),
                    Err(_) => {}
                }
            }
        }
        // SAFETY: The region's notifier stays registered until it is
        // retired, and a retired one only makes the commit below retry.
        let seq = unsafe { gmem_mm::interval_read_begin(region.notifier()) };
        let policy_gen = ctx.policy_gen();
        {
            let owner = ctx.devmem().map_or(core::ptr::null_mut(), |p| p.owner());
            let mut mm = user.read_lock();
            let (mut vs, mut ve, uffd) = {
                let vma = mm.vma_at(addr).ok_or(EFAULT)?;
                if !ctx.allows(&vma) {
                    return Err(EACCES);
                }
                (vma.start(), vma.end(), vma.uffd_armed())
            };
            if uffd && place != Place::Migrate {
                // hmm_range_fault() cannot wait for a userfaultfd handler
                // (it would get SIGBUS): fault the page in first as the
                // CPU would, waiting for the handler, then map what is
                // there.  A change meanwhile shows in the notifier
                // sequence.  The handler sees the device's accesses only:
                // no fault-ahead around them.
                start = addr & !(PAGE_SIZE - 1);
                end = start + PAGE_SIZE;
                // A snapshot first: a page already there (this device's
                // own included, which a CPU fault would take home) needs
                // no CPU fault.
                let need = HMM_PFN_VALID | if write { HMM_PFN_WRITE } else { 0 };
                let there = range_fault(&mm, &region, seq, start, end, pfns, 0, owner).is_ok()
                    && pfns[0] & need == need;
                if !there {
                    mm.fault_in_waiting(addr, write)?;
                }
                let vma = mm.vma_at(addr).ok_or(EFAULT)?;
                if !ctx.allows(&vma) {
                    return Err(EACCES);
                }
                (vs, ve) = (vma.start(), vma.end());
            }
            start = start.max(vs);
            end = end.min(ve);
            let flags = match place {
                Place::Migrate => 0,
                _ => HMM_PFN_VALID | if write { HMM_PFN_WRITE } else { 0 },
            };
            match range_fault(&mm, &region, seq, start, end, pfns, flags, owner) {
                Ok(()) => {}
                Err(e) if e == EBUSY => {
                    STATS.fault_retries.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) if e == EFAULT && uffd => {
                    // Taken away again since: fault it in once more.
                    STATS.fault_retries.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }

        let npages = (end - start) / PAGE_SIZE;
        let fault_idx = (addr - start) / PAGE_SIZE;
        if write && pfns[fault_idx] & HMM_PFN_WRITE == 0 {
            // hmm_range_fault() hands back our own device pages as they
            // are: read-only ones (shared copy-on-write after fork) must
            // come home for the CPU's write fault to copy them.
            let pool = ctx.devmem().ok_or(EFAULT)?;
            let mm = user.read_lock();
            let vma = mm.vma_at(addr).ok_or(EFAULT)?;
            if vma.flags() & u64::from(bindings::VM_WRITE) == 0 {
                return Err(EPERM);
            }
            let home = (start, end, core::ptr::null_mut());
            // SAFETY: The VMA is read-locked and covers the block.
            unsafe { migrate_to_host(pool, vma.as_ptr(), home, Cause::DeviceWrite)? };
            passes = 0;
            continue;
        }
        if passes > 0
            && foreign > 0
            && place != Place::Migrate
            && has_host_pages(ctx, &pfns[..npages])
        {
            // Pages another device held came back to the host during the
            // fault: take them too, unless the block keeps bouncing
            // between devices, in which case it stays on the host, mapped
            // in place by both, for a while (see `gmem_devmem::Thrash`).
            passes = 0;
            if bounced {
                // Read by two devices: from now on each reads copies of
                // its own (see `duplicate`), instead of taking the block
                // from the other.  This fault still moves it.
                as_.share(key);
            }
            let held = ctx.devmem().is_some_and(|p| {
                !pinned && place != Place::Device && !naive() && p.holds_back(key)
            });
            if held {
                trace_hold(ctx, key);
            } else if ctx.devmem().is_some() {
                migrate_next = true;
                passes = 1;
                continue;
            }
        }
        ctx.prepare(start, end)?;
        let pt = as_.pt.lock();
        if region.is_dead()
            || ctx.policy_gen() != policy_gen
            // SAFETY: As for `interval_read_begin` above; we hold the lock
            // the invalidation callback takes.
            || unsafe { gmem_mm::interval_read_retry(region.notifier(), seq) }
        {
            drop(pt);
            STATS.fault_retries.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if ctx.is_dead() {
            return Err(ENODEV);
        }
        if as_.is_released() {
            return Err(ESRCH);
        }
        let writable = pfns[..npages].iter().all(|&p| p & HMM_PFN_WRITE != 0);
        match map_runs(ctx, start, &mut pfns[..npages]) {
            Ok(()) => {}
            Err(e) if e == EAGAIN => {
                drop(pt);
                STATS.fault_retries.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => return Err(e),
        }
        drop(pt);
        STATS
            .fault_pages
            .fetch_add(npages as u64, Ordering::Relaxed);
        return Ok((npages, end, writable));
    }
    Err(EAGAIN)
}

/// Whether `[start, end)` of `region` may be collected for migration, as
/// looked at without faulting anything in (into `pfns`): not if it has a
/// KSM page mapped or, in a file mapping (`file`), a page that is not both
/// present and anonymous.  Collecting a page-cache page for migration
/// would unmap it from every process that maps the file, for nothing: core
/// MM moves only anonymous pages to a device.  If the look was overtaken
/// by an invalidation: true for anonymous memory (the migration then
/// checks each page for KSM), false for a file.  A movable block's large
/// folios mapped by PTEs are split on the way (`split_large_folios`), even
/// if it then finds no room on the device.
fn ready_to_migrate(
    user: &MmUser,
    region: &Region,
    start: usize,
    end: usize,
    pfns: &mut [usize],
    file: bool,
) -> bool {
    let n = (end - start) / PAGE_SIZE;
    // SAFETY: As in `fault_block`: the region's notifier is registered
    // until it is retired.
    let seq = unsafe { gmem_mm::interval_read_begin(region.notifier()) };
    let mm = user.read_lock();
    let none = core::ptr::null_mut();
    if range_fault(&mm, region, seq, start, end, &mut pfns[..n], 0, none).is_err() {
        // Overtaken: a file block is not collected on a stale look.
        return !file;
    }
    let movable = !pfns[..n].iter().any(|&p| {
        if p & HMM_PFN_VALID == 0 {
            return file;
        }
        let pfn = (p & !HMM_PFN_FLAGS) as _;
        // SAFETY: The helpers take any pfn hmm_range_fault() reported, and
        // a stale answer only decides whether the block migrates.
        unsafe { gmem_pfn_is_ksm(pfn) || (file && !gmem_pfn_is_anon(pfn)) }
    });
    if movable {
        if let Some(vma) = mm.vma_at(start) {
            split_large_folios(&vma, &pfns[..n]);
        }
    }
    movable
}

fn has_host_pages(ctx: &GmemCtx, hmm_pfns: &[usize]) -> bool {
    let pool = ctx.devmem();
    hmm_pfns
        .iter()
        .any(|&p| pool.map_or(true, |pool| pool.index_of(p & !HMM_PFN_FLAGS).is_none()))
}

/// Maps `hmm_pfns` (from `hmm_range_fault`) at `start`, one driver call per
/// run of pages with the same protection.  Pages of the device's own memory
/// are passed as `GMEM_PFN_DEVMEM | index`.  Called under the page-table
/// lock.
fn map_runs(ctx: &GmemCtx, start: usize, hmm_pfns: &mut [usize]) -> Result {
    let pool = ctx.devmem();
    let mut i = 0;
    while i < hmm_pfns.len() {
        if hmm_pfns[i] & HMM_PFN_VALID == 0 {
            // Not present (a prefetch faulting nothing): left unmapped.
            i += 1;
            continue;
        }
        let writable = hmm_pfns[i] & HMM_PFN_WRITE != 0;
        let mut j = i;
        while j < hmm_pfns.len()
            && hmm_pfns[j] & HMM_PFN_VALID != 0
            && (hmm_pfns[j] & HMM_PFN_WRITE != 0) == writable
        {
            let pfn = hmm_pfns[j] & !HMM_PFN_FLAGS;
            hmm_pfns[j] = match pool.and_then(|p| p.index_of(pfn)) {
                Some(idx) => {
                    if j == i || idx % CHUNK_PAGES == 0 {
                        // The device uses it: last in line for eviction.
                        pool.inspect(|p| p.touch_page(idx));
                    }
                    bindings::GMEM_PFN_DEVMEM as usize | idx
                }
                None => pfn,
            };
            j += 1;
        }
        let prot = bindings::GMEM_PROT_READ
            | if writable {
                bindings::GMEM_PROT_WRITE
            } else {
                0
            };
        ctx.map(start + i * PAGE_SIZE, &hmm_pfns[i..j], prot)?;
        i = j;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Migration between host memory and device memory (`gmem_devmem`).

const MIGRATE_PFN_VALID: usize = bindings::MIGRATE_PFN_VALID as usize;
const MIGRATE_PFN_MIGRATE: usize = bindings::MIGRATE_PFN_MIGRATE as usize;
const MIGRATE_PFN_SHIFT: u32 = bindings::MIGRATE_PFN_SHIFT;
extern "C" {
    /// A movable user page (gmem_glue.c): for `vma` at `addr` under its
    /// NUMA policy, or on the local node if `vma` is null; with `nofail`,
    /// one that cannot fail.  Null on failure.
    #[allow(improper_ctypes)]
    fn gmem_alloc_host_page(
        vma: *mut bindings::vm_area_struct,
        addr: usize,
        nofail: bool,
    ) -> *mut bindings::page;
    /// Whether a collected host page is a KSM page (gmem_glue.c).
    fn gmem_pfn_is_ksm(pfn: kernel::ffi::c_ulong) -> bool;
    /// Whether a mapped host page is anonymous (gmem_glue.c).
    fn gmem_pfn_is_anon(pfn: kernel::ffi::c_ulong) -> bool;
    /// The `GMEM_PAGE_*` state of an `hmm_range_fault()` result.
    fn gmem_hmm_pfn_state(hmm_pfn: kernel::ffi::c_ulong) -> u8;
}

fn migrate_pfn(pfn: usize) -> usize {
    (pfn << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID
}

fn mpfn_pfn(mpfn: usize) -> Option<usize> {
    (mpfn & MIGRATE_PFN_VALID != 0).then_some(mpfn >> MIGRATE_PFN_SHIFT)
}

/// Source and destination arrays of one migration, and the copy list.
struct MigrateBufs {
    src: KVec<usize>,
    dst: KVec<usize>,
    copy_to: KVec<usize>,
    copy_from: KVec<usize>,
}

impl MigrateBufs {
    fn new(n: usize) -> Result<Self> {
        Ok(Self {
            src: KVec::from_elem(0usize, n, GFP_KERNEL)?,
            dst: KVec::from_elem(0usize, n, GFP_KERNEL)?,
            copy_to: KVec::with_capacity(n, GFP_KERNEL)?,
            copy_from: KVec::with_capacity(n, GFP_KERNEL)?,
        })
    }

    /// Records one page to copy; within the capacity reserved in `new`.
    fn add_copy(&mut self, to: usize, from: usize) {
        let _ = self.copy_to.push(to, GFP_ATOMIC);
        let _ = self.copy_from.push(from, GFP_ATOMIC);
    }

    /// A `migrate_vma` over `[start, end)` of `vma` with these arrays.
    fn args(
        &mut self,
        vma: *mut bindings::vm_area_struct,
        start: usize,
        end: usize,
        owner: *mut kernel::ffi::c_void,
        select: bindings::migrate_vma_direction,
        fault_page: *mut bindings::page,
    ) -> bindings::migrate_vma {
        bindings::migrate_vma {
            vma,
            dst: self.dst.as_mut_ptr().cast(),
            src: self.src.as_mut_ptr().cast(),
            cpages: 0,
            npages: 0,
            start: start as _,
            end: end as _,
            pgmap_owner: owner,
            flags: select as _,
            fault_page,
        }
    }

    /// After `migrate_*_pages()`, before finalizing: retires in `pool` the
    /// device pages this migration leaves without data, which finalizing
    /// unlocks before their last put.  Those are the sources that moved
    /// (`from_device`), or the destinations whose source did not.
    fn retire(&self, pool: &DevMem, from_device: bool) {
        for (&s, &d) in self.src.iter().zip(self.dst.iter()) {
            let moved = d != 0 && s & MIGRATE_PFN_MIGRATE != 0;
            let page = match (from_device, moved) {
                (true, true) => s,
                (false, false) if d != 0 => d,
                _ => continue,
            };
            if let Some(idx) = mpfn_pfn(page).and_then(|p| pool.index_of(p)) {
                pool.retire(idx);
            }
        }
    }

    fn moved(&self) -> usize {
        self.src
            .iter()
            .zip(self.dst.iter())
            .filter(|(s, d)| **d != 0 && **s & MIGRATE_PFN_MIGRATE != 0)
            .count()
    }
}

/// Moves the host pages of `[start, end)`, inside one anonymous VMA and one
/// block, to the device memory of `ctx`'s device, evicting to make room
/// (`pinned`: never to be evicted itself).  Never-touched pages become
/// zeroed device pages.  Returns how many moved, and how many could not
/// even be looked at: neither host pages nor empty, which means (mostly)
/// pages on another device, that the fault will pull back to the host.
pub(crate) fn migrate_to_device(
    ctx: &GmemCtx,
    user: &MmUser,
    start: usize,
    end: usize,
    pinned: bool,
    cause: Cause,
) -> Result<(usize, usize)> {
    let t0 = kernel::time::Ktime::ktime_get();
    let res = migrate_range(ctx, user, start, end, pinned, cause);
    crate::count_ns(&STATS.migrate_ns, t0);
    res
}

/// [`migrate_to_device`], untimed.
fn migrate_range(
    ctx: &GmemCtx,
    user: &MmUser,
    start: usize,
    end: usize,
    pinned: bool,
    cause: Cause,
) -> Result<(usize, usize)> {
    let Some(pool) = ctx.devmem() else {
        return Ok((0, 0));
    };
    let key = BlockKey::new(user.as_ptr(), start);
    if cause == Cause::Counter {
        // An access counter only fills free memory: evicting would trade
        // a block known to be used for a resident one whose use is not
        // known, and under a stream push out what was prefetched.
        if !pool.has_room(key) {
            return Ok((0, 0));
        }
    } else {
        // Before taking mmap_lock: eviction unmaps pages of any mm, this
        // one included, and must not wait for a lock a fault on them holds.
        make_room(pool, key)?;
    }
    let n = (end - start) / PAGE_SIZE;
    let mut b = MigrateBufs::new(n)?;
    let mm = user.read_lock();
    let vma = mm.vma_at(start).ok_or(EFAULT)?;
    // Anonymous pages of a private file mapping (written, so copied) move
    // too: core MM leaves the page cache's where they are.
    // Looked up again since the caller checked it: still one this context
    // may reach, and not shared (a read-only file opened for MAP_SHARED
    // has VM_MAYSHARE only).
    if vma.end() < end || vma.flags() & u64::from(bindings::VM_MAYSHARE) != 0 || !ctx.allows(&vma) {
        return Ok((0, 0));
    }
    let mut args = b.args(
        vma.as_ptr(),
        start,
        end,
        pool.owner(),
        bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM,
        core::ptr::null_mut(),
    );
    // SAFETY: `args` describes a range of a VMA of a read-locked mm, with
    // arrays of `n` entries.
    kernel::error::to_result(unsafe { bindings::migrate_vma_setup(&mut args) })?;
    let mut ksm = 0;
    if args.cpages != 0 {
        for i in 0..n {
            if b.src[i] & MIGRATE_PFN_MIGRATE == 0 {
                continue;
            }
            // A KSM page stays in host memory, mapped in place: KSM's
            // stable tree (its rmap walk, ksmd's comparisons) would be
            // handed a device page, and every process that merged into
            // the page would be unmapped from it.
            if let Some(pfn) = mpfn_pfn(b.src[i]) {
                // SAFETY: A host page collected (referenced) above.
                if unsafe { gmem_pfn_is_ksm(pfn as _) } {
                    ksm += 1;
                    continue;
                }
                // A page-cache page (a file block changed since it was
                // looked at): core MM would not move it; no device page
                // is spent on it.
                // SAFETY: As above.
                if !unsafe { gmem_pfn_is_anon(pfn as _) } {
                    continue;
                }
            }
            // No room after all (taken meanwhile): used in place.
            let off = (start - key.block) / PAGE_SIZE + i;
            let Some(idx) = pool.alloc(key, off, pinned) else {
                continue;
            };
            // SAFETY: A free page of our pagemap: initialise (ref 1,
            // locked) as migrate_vma_pages() wants its destinations.
            unsafe {
                bindings::zone_device_page_init(bindings::pfn_to_page((pool.base_pfn + idx) as _))
            };
            b.dst[i] = migrate_pfn(pool.base_pfn + idx);
            b.add_copy(
                idx,
                mpfn_pfn(b.src[i]).unwrap_or(bindings::GMEM_PFN_NONE as usize),
            );
        }
        pool.device().copy_to_dev(&b.copy_to, &b.copy_from);
        // SAFETY: The setup above succeeded; destinations are locked.
        unsafe { bindings::migrate_vma_pages(&mut args) };
        b.retire(pool, false);
    }
    let moved = b.moved();
    // The other PTEs of a KSM page were not collected (its lock was ours):
    // not pages of another device, and another pass would skip them again.
    let foreign = if ksm > 0 {
        0
    } else {
        b.src.iter().filter(|&&s| s == 0).count()
    };
    // SAFETY: Ends the migration set up above; unmigrated destinations are
    // freed (back to the pool through `page_free`).
    unsafe { bindings::migrate_vma_finalize(&mut args) };
    pool.to_dev.fetch_add(moved as u64, Ordering::Relaxed);
    STATS
        .migrated_to_dev
        .fetch_add(moved as u64, Ordering::Relaxed);
    if moved > 0 {
        gmem_trace::migrate(ctx.dev_id(), start, end, moved, true, cause);
    }
    Ok((moved, foreign))
}

/// Splits the large folios that `looked` (`hmm_range_fault()`'s pfns of a
/// range of `vma`) shows mapped by PTEs, before the range migrates:
/// `migrate_vma_setup()` would leave their pages out.
fn split_large_folios(vma: &gmem_mm::Vma<'_>, looked: &[usize]) {
    let mut i = 0;
    while i < looked.len() {
        // SAFETY: The VMA is read-locked; the helper takes any entry
        // hmm_range_fault() filled, its page freed or reused since.
        let skip = unsafe { bindings::gmem_split_anon_folio(vma.as_ptr(), looked[i] as _) };
        i += skip as usize;
    }
}

/// Records that `ctx`'s device maps block `key` in place, held back from
/// migrating by the thrashing table.
fn trace_hold(ctx: &GmemCtx, key: BlockKey) {
    let block = key.addr();
    gmem_trace::thrash_hold(ctx.dev_id(), block, block + FAULT_BLOCK);
}

/// Moves `pool`'s pages in `[start, end)` of `vma` back to host memory,
/// for `cause`.  `fault_page` is the page of a CPU fault being served, if
/// any.
///
/// # Safety
///
/// `vma` must be a VMA of an mm whose `mmap_lock` (or the VMA's lock) is
/// held, covering `[start, end)`.
unsafe fn migrate_to_host(
    pool: &DevMem,
    vma: *mut bindings::vm_area_struct,
    (start, end, fault_page): (usize, usize, *mut bindings::page),
    cause: Cause,
) -> Result<usize> {
    let n = (end - start) / PAGE_SIZE;
    let mut b = MigrateBufs::new(n)?;
    let mut args = b.args(
        vma,
        start,
        end,
        pool.owner(),
        bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
        fault_page,
    );
    // SAFETY: Per the function's contract, with arrays of `n` entries.
    kernel::error::to_result(unsafe { bindings::migrate_vma_setup(&mut args) })?;
    let mut oom = false;
    for i in 0..n {
        if b.src[i] & MIGRATE_PFN_MIGRATE == 0 {
            continue;
        }
        let Some(idx) = mpfn_pfn(b.src[i]).and_then(|p| pool.index_of(p)) else {
            continue;
        };
        // SAFETY: `vma` is valid and covers the address (the contract).
        let page = unsafe { gmem_alloc_host_page(vma, start + i * PAGE_SIZE, false) };
        if page.is_null() {
            oom = true;
            continue;
        }
        // SAFETY: A new page of ours; migrate_vma_pages() wants it locked.
        let pfn = unsafe {
            bindings::lock_page(page);
            bindings::page_to_pfn(page) as usize
        };
        b.dst[i] = migrate_pfn(pfn);
        b.add_copy(pfn, idx);
    }
    pool.device().copy_from_dev(&b.copy_to, &b.copy_from);
    // SAFETY: Set up above; destinations locked.
    unsafe { bindings::migrate_vma_pages(&mut args) };
    b.retire(pool, true);
    let moved = b.moved();
    // SAFETY: Ends the migration set up above.
    unsafe { bindings::migrate_vma_finalize(&mut args) };
    pool.to_host.fetch_add(moved as u64, Ordering::Relaxed);
    STATS
        .migrated_to_host
        .fetch_add(moved as u64, Ordering::Relaxed);
    if moved > 0 {
        gmem_trace::migrate(pool.device().id(), start, end, moved, false, cause);
    }
    if oom && moved == 0 {
        return Err(ENOMEM);
    }
    Ok(moved)
}

/// `dev_pagemap_ops::migrate_to_ram`: the CPU touched a device page.  The
/// block around it comes back, not just the page.  What is taken here: the
/// mmap or VMA lock (held by the caller), page locks (tried, by core MM),
/// and, inside the invalidation, gmem's page-table lock and the driver's
/// MMU lock, both only held briefly and never while waiting for anything
/// else.  No lock is held across a device fault's wait, so CPU and device
/// faults on one page cannot livelock (drm_gpusvm's lesson).
///
/// # Safety
///
/// Called by core MM only (`do_swap_page`), with `vmf` valid, its page a
/// device page of a gmem pool and the mmap or VMA lock held.
pub(crate) unsafe extern "C" fn devmem_migrate_to_ram(
    vmf: *mut bindings::vm_fault,
) -> bindings::vm_fault_t {
    let t0 = kernel::time::Ktime::ktime_get();
    // SAFETY: Core MM passes a valid fault on a page of one of our pools.
    let (page, vma, addr) = unsafe {
        (
            (*vmf).page,
            (*vmf).__bindgen_anon_1.vma,
            (*vmf).__bindgen_anon_1.address,
        )
    };
    // SAFETY: Core MM holds a reference on the faulting page of ours.
    let pool = unsafe { DevMem::of_page(page) };
    pool.cpu_faults.fetch_add(1, Ordering::Relaxed);
    STATS.cpu_devmem_faults.fetch_add(1, Ordering::Relaxed);
    // SAFETY: The faulting VMA, locked by the caller.
    let (vs, ve) = unsafe { gmem_mm::vma_bounds(vma) };
    // SAFETY: As above.
    let mm = unsafe { gmem_mm::vma_mm(vma) };
    pool.departed(BlockKey::new(mm, addr), None);
    let block = addr & !(FAULT_BLOCK - 1);
    let start = block.max(vs);
    let end = (block + FAULT_BLOCK).min(ve);
    // SAFETY: The VMA is locked and covers `[start, end)`.
    let res = unsafe { migrate_to_host(pool, vma, (start, end, page), Cause::CpuFault) };
    crate::count_ns(&STATS.faultback_ns, t0);
    match res {
        Ok(_) => 0,
        Err(e) if e == ENOMEM => bindings::vm_fault_reason_VM_FAULT_OOM as _,
        Err(_) => bindings::vm_fault_reason_VM_FAULT_SIGBUS as _,
    }
}

/// Takes `ctx`'s device's access-counter notification for the block
/// around `addr` (see `<linux/gmem.h>`): the device uses it in place a
/// lot, so it migrates into free device memory unless the context's
/// placement, the range's hints or a thrashing hold keep it where it is,
/// or it cannot move (not anonymous, watched by userfaultfd, merged KSM
/// pages).  Returns the pages moved: 0 if it stays, mapped as before.
pub(crate) fn access_notified(ctx: &GmemCtx, addr: usize) -> Result<usize> {
    STATS.counter_notifications.fetch_add(1, Ordering::Relaxed);
    let Some(pool) = ctx.devmem() else {
        return Ok(0);
    };
    if naive() || !ctx.migrates() {
        return Ok(0);
    }
    let as_ = ctx.address_space();
    let key = BlockKey::new(as_.mm(), addr);
    let (region, attrs) = {
        let mut regions = as_.regions.lock();
        (regions.find(addr), regions.attrs.get(addr))
    };
    let Some(region) = region else {
        return Ok(0);
    };
    // A thrashing hold stays: the CPU (or another device) uses the block
    // too, and moving it would restart the ping-pong the hold stopped.  No
    // room: a notification never evicts (see the module docs).
    if attrs.keeps_off(ctx.dev_id()) || pool.is_held(key) || !pool.has_room(key) {
        return Ok(0);
    }
    // SAFETY: The address space holds `mm_count` on its mm.
    let user = unsafe { MmUser::get(as_.mm()) }.ok_or(ESRCH)?;
    let (start, end) = {
        let mm = user.read_lock();
        let vma = mm.vma_at(addr).ok_or(EFAULT)?;
        let read = u64::from(bindings::VM_READ);
        // A userfaultfd handler must see only the device's own faults.
        if !ctx.allows(&vma) || vma.uffd_armed() || !vma.is_anonymous() || vma.flags() & read == 0 {
            return Ok(0);
        }
        let block = addr & !(FAULT_BLOCK - 1);
        (
            block.max(region.start).max(vma.start()),
            (block + FAULT_BLOCK).min(region.end).min(vma.end()),
        )
    };
    let mut pfns = KVec::with_capacity(PAGES_PER_BLOCK, GFP_KERNEL)?;
    pfns.extend_with(PAGES_PER_BLOCK, 0usize, GFP_KERNEL)?;
    // As in `fault_block`: a block with merged pages is not collected.
    if !ready_to_migrate(&user, &region, start, end, &mut pfns, false) {
        return Ok(0);
    }
    let pinned = attrs.pinned & (1u64 << ctx.dev_id()) != 0;
    let (moved, _) = migrate_to_device(ctx, &user, start, end, pinned, Cause::Counter)?;
    if moved == 0 {
        return Ok(0);
    }
    STATS.counter_migrations.fetch_add(1, Ordering::Relaxed);
    // The migration unmapped the block from the device: map the pages
    // where they are now.
    fault_block(ctx, addr, false, Place::Where, ANYWHERE)?;
    Ok(moved)
}

/// Takes `ctx`'s device's notification that it uses the block around
/// `addr` in its own memory (see `<linux/gmem.h>`): the block's chunks,
/// its pages' and this context's copies', become the most recently used
/// and are protected from eviction for a while (see
/// `gmem_policy::pick_lru`).  Nothing else can tell: a block mapped in
/// device memory faults no more.  The naive policy ignores it, as it
/// ignores the counters.
pub(crate) fn use_notified(ctx: &GmemCtx, addr: usize) {
    let Some(pool) = ctx.devmem() else {
        return;
    };
    if naive() {
        return;
    }
    let key = BlockKey::new(ctx.address_space().mm(), addr);
    if pool.touch(&[key, key.dup().of_ctx(ctx)]) {
        STATS.counter_refreshes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Faults `[start, end)`, and nothing around it, into `ctx`'s device block
/// by block with `place` (a prefetch, a pin, an eager accessed-by mapping).
/// Every block is visited and a hole fails with `EFAULT`; `EINTR` if a
/// signal is pending, `ENODEV` if the device is going away, what was done
/// staying done.
pub(crate) fn map_range(ctx: &GmemCtx, start: usize, end: usize, place: Place) -> Result {
    let mut addr = start;
    while addr < end {
        if kernel::current!().signal_pending() {
            return Err(EINTR);
        }
        if ctx.dev_going() {
            return Err(ENODEV);
        }
        let (_, covered, _) = fault_block(ctx, addr, false, place, (start, end))?;
        addr = covered;
    }
    Ok(())
}

/// Moves `ctx`'s device pages in `[start, end)` back to host memory;
/// `EINTR` if a signal is pending, what moved staying moved.
pub(crate) fn prefetch_to_host(ctx: &GmemCtx, start: usize, end: usize) -> Result {
    let Some(pool) = ctx.devmem() else {
        return Ok(());
    };
    // SAFETY: The address space holds `mm_count` on its mm.
    let user = unsafe { MmUser::get(ctx.address_space().mm()) }.ok_or(ESRCH)?;
    let mm = user.read_lock();
    let mut addr = start;
    while addr < end {
        let vma = mm.vma_at(addr).ok_or(EFAULT)?;
        let stop = end.min(vma.end());
        while addr < stop {
            if kernel::current!().signal_pending() {
                return Err(EINTR);
            }
            if ctx.dev_going() {
                return Err(ENODEV);
            }
            let next = ((addr & !(FAULT_BLOCK - 1)) + FAULT_BLOCK).min(stop);
            let range = (addr, next, core::ptr::null_mut());
            // SAFETY: The VMA is read-locked and covers the block.
            unsafe { migrate_to_host(pool, vma.as_ptr(), range, Cause::Prefetch)? };
            addr = next;
        }
    }
    Ok(())
}

/// Moves every page of `pool` still in use back to host memory, whoever
/// maps it (device unregistration).  Runs after the device's entry points
/// drained and its contexts (with their read duplicates) are gone, so no
/// page of the pool is allocated any more: a page still in use is in some
/// process's page table, or being moved home by a CPU fault.  A page that
/// could not move (locked by such a fault, or by munmap) is tried again
/// until the pool is empty, which `memunmap_pages` then waits for.
pub(crate) fn evict_all(pool: &DevMem) {
    for c in 0..pool.nchunks() {
        let mut tries = 0u32;
        while pool.chunk_used(c) > 0 {
            tries += 1;
            if tries == EVICT_WARN_TRIES {
                pr_warn!("device memory chunk {} still busy, waiting\n", c);
            }
            evict_counted(pool, c, true);
            if pool.chunk_used(c) > 0 {
                // SAFETY: A plain sleep while the holder of the page
                // finishes with it.
                unsafe { bindings::msleep(EVICT_RETRY_MS) };
            }
        }
    }
}

/// Moves every page of `pool` in use back to host memory once, whoever
/// maps it, as the driver asked (`gmem_dev_evict()`); pages busy at that
/// moment, pinned chunks and read duplicates stay.  Returns how many moved.
pub(crate) fn evict_now(pool: &DevMem) -> Result<usize> {
    let mut moved = 0;
    for c in 0..pool.nchunks() {
        if kernel::current!().signal_pending() {
            return Err(EINTR);
        }
        // Pins keep device memory from everyone else; this is no exception.
        if pool.chunk_used(c) > 0 && !pool.chunk_pinned(c) {
            moved += evict_counted(pool, c, false);
        }
    }
    Ok(moved)
}

/// [`evict_chunk`], traced and counted as an eviction.
fn evict_counted(pool: &DevMem, c: usize, nofail: bool) -> usize {
    let block = pool.chunk_block(c);
    let moved = evict_chunk(pool, c, nofail).unwrap_or(0);
    if moved > 0 {
        let (dev, end) = (pool.device().id(), block + FAULT_BLOCK);
        gmem_trace::migrate(dev, block, end, moved, false, Cause::Eviction);
    }
    pool.to_host.fetch_add(moved as u64, Ordering::Relaxed);
    STATS
        .migrated_to_host
        .fetch_add(moved as u64, Ordering::Relaxed);
    moved
}

/// How long [`evict_all`] waits for a busy page before trying again.
const EVICT_RETRY_MS: u32 = 1;
/// Tries after which [`evict_all`] says it is still waiting.
const EVICT_WARN_TRIES: u32 = 10_000;

/// Makes sure block `key` can get device memory in `pool`: while no chunk
/// is free, evicts the least recently used one.  `ENOMEM` if everything in
/// use is pinned; `EAGAIN` if evictions keep failing (pages busy).
fn make_room(pool: &DevMem, key: BlockKey) -> Result {
    let mut tries = 2 * pool.nchunks() + 8;
    while !pool.has_room(key) {
        if tries == 0 {
            return Err(EAGAIN);
        }
        tries -= 1;
        match pool.pick_victim(key) {
            Victim::Chunk(c, victim) if victim.is_dup() => {
                let moved = pool.evict_dup(c) as u64;
                pool.end_evict(c);
                pool.evictions.fetch_add(1, Ordering::Relaxed);
                pool.evicted.fetch_add(moved, Ordering::Relaxed);
                STATS.evictions.fetch_add(1, Ordering::Relaxed);
                STATS.evicted_pages.fetch_add(moved, Ordering::Relaxed);
            }
            Victim::Chunk(c, victim) => {
                let moved = evict_chunk(pool, c, false).unwrap_or(0) as u64;
                pool.end_evict(c);
                if moved > 0 {
                    let (dev, block) = (pool.device().id(), victim.addr());
                    let end = block + FAULT_BLOCK;
                    gmem_trace::evict(dev, block, end, moved as usize);
                    gmem_trace::migrate(dev, block, end, moved as usize, false, Cause::Eviction);
                }
                pool.departed(victim, Some(pool.clock()));
                pool.evictions.fetch_add(1, Ordering::Relaxed);
                pool.evicted.fetch_add(moved, Ordering::Relaxed);
                pool.to_host.fetch_add(moved, Ordering::Relaxed);
                STATS.evictions.fetch_add(1, Ordering::Relaxed);
                STATS.evicted_pages.fetch_add(moved, Ordering::Relaxed);
                STATS.migrated_to_host.fetch_add(moved, Ordering::Relaxed);
            }
            Victim::AllPinned => {
                pool.oom.fetch_add(1, Ordering::Relaxed);
                STATS.oom_faults.fetch_add(1, Ordering::Relaxed);
                return Err(ENOMEM);
            }
            // SAFETY: A plain sleep while another eviction finishes.
            Victim::Busy => unsafe { bindings::msleep(1) },
        }
    }
    Ok(())
}

/// The policy of a naive driver (1), the baseline `make bench` compares
/// gmem's with: every device fault migrates its block, ignoring the hints
/// and the thrashing table, access counters are ignored, and room comes
/// from the least recently used chunk as always.  Root may change it at
/// run time; 0, the default, is gmem's policy.
static mut NAIVE_LRU: kernel::ffi::c_uint = 0;
uint_param!(
    NAIVE_LRU,
    "naive_lru",
    0o644,
    NAIVE_LRU_PARAM,
    NAIVE_LRU_TYPE,
    NAIVE_LRU_DESC,
    "Baseline policy for experiments: migrate on every device fault, no hints, no thrashing hold (1), or gmem's (0, default)"
);

fn naive() -> bool {
    param_value!(NAIVE_LRU) != 0
}

/// Whether read-mostly ranges are duplicated (1) or only mapped in place
/// (0); root may change it at run time.
static mut READ_DUP: kernel::ffi::c_uint = 1;
uint_param!(
    READ_DUP,
    "read_dup",
    0o644,
    READ_DUP_PARAM,
    READ_DUP_TYPE,
    READ_DUP_DESC,
    "Read duplication of read-mostly ranges and of blocks two devices read (1, default) or mapping in place (0)"
);

/// Attempts at making read duplicates that keep racing invalidations.
const DUP_ATTEMPTS: usize = 4;

/// Maps the block around `addr`, in a read-mostly range, into `ctx`'s
/// device as read-only copies in its memory, made now or earlier.  Returns
/// the pages mapped and the end of the range, or `None` if the block
/// cannot be duplicated (not anonymous, pages on a device or pinned by
/// someone, no room, racing changes): the caller then maps it in place.
fn duplicate(ctx: &GmemCtx, user: &MmUser, region: &Region, addr: usize) -> Option<(usize, usize)> {
    let pool = ctx.devmem()?;
    let as_ = ctx.address_space();
    let key = BlockKey::new(as_.mm(), addr).dup();
    // The chunk holding them is this context's: another context of the
    // same device makes copies of its own in another chunk.
    let chunk_key = key.of_ctx(ctx);
    // Read before the policy is looked at: a narrowing since then makes
    // the mapping below retry (or give up) rather than commit.
    let policy_gen = ctx.policy_gen();
    let (start, end) = {
        let mm = user.read_lock();
        let vma = mm.vma_at(addr)?;
        // The caller's checks come after this: a sibling context's wider
        // policy may have created the region, not this one's.
        // Copies are made from a snapshot of the whole block, which a
        // range userfaultfd watches may not have (see `fault_block`).
        if !vma.is_anonymous() || !ctx.allows(&vma) || vma.uffd_armed() {
            return None;
        }
        (
            key.addr().max(region.start).max(vma.start()),
            (key.addr() + FAULT_BLOCK).min(region.end).min(vma.end()),
        )
    };
    let n = (end - start) / PAGE_SIZE;
    let first = (start - key.addr()) / PAGE_SIZE;
    let me = as_
        .pt
        .lock()
        .iter()
        .find(|c| core::ptr::eq::<GmemCtx>(&***c, ctx))
        .cloned()?;
    // The copies to be: `host` holds their host pages as they are found,
    // and the box is what the pool keeps.
    let host = KVec::from_elem(0usize, n, GFP_KERNEL).ok()?;
    let mut dup = KBox::new(
        Dup {
            ctx: me,
            key,
            start,
            end,
            host,
            next: None,
        },
        GFP_KERNEL,
    )
    .ok()?;
    // Device page indices, then the entries mapped; scratch before that.
    let mut idxs = KVec::from_elem(0usize, n, GFP_KERNEL).ok()?;
    for _ in 0..DUP_ATTEMPTS {
        ctx.prepare(start, end).ok()?;
        {
            // This context's copies made earlier, still valid: map them.
            let pt = as_.pt.lock();
            if let Some(c) = pool.dup_chunk(ctx, key, start, end) {
                if region.is_dead()
                    || ctx.is_dead()
                    || as_.is_released()
                    || ctx.policy_gen() != policy_gen
                {
                    return None;
                }
                for (i, e) in idxs.iter_mut().enumerate() {
                    *e = bindings::GMEM_PFN_DEVMEM as usize | (c * CHUNK_PAGES + first + i);
                }
                ctx.map(start, &idxs, bindings::GMEM_PROT_READ).ok()?;
                drop(pt);
                return Some((n, end));
            }
        }
        {
            // Copies of this context overlapping these (a range split by
            // mprotect and merged again, say) hold the pages wanted.
            let _pt = as_.pt.lock();
            pool.collapse_dups(|d| d.is_of(ctx) && d.key == key && d.start < end && start < d.end);
        }
        make_room(pool, chunk_key).ok()?;
        let pfns = &mut dup.host;
        let seq = {
            let mm = user.read_lock();
            // SAFETY: As in `fault_block`.
            let seq = unsafe { gmem_mm::interval_read_begin(region.notifier()) };
            // Pages in a device's memory come home during the snapshot,
            // whose own invalidation then fails it (EBUSY): look again.
            let none = core::ptr::null_mut();
            match range_fault(&mm, region, seq, start, end, pfns, HMM_PFN_VALID, none) {
                Ok(()) => {}
                Err(e) if e == EBUSY => continue,
                Err(_) => return None,
            }
            for p in pfns.iter_mut() {
                *p &= !HMM_PFN_FLAGS;
                if DevMem::is_device_pfn(*p) {
                    return None;
                }
            }
            // SAFETY: Pfns of host pages just found mapped.
            if !unsafe { gmem_devmem::gmem_get_pfns(pfns.as_ptr(), n) } {
                continue;
            }
            // With the references held, a write fault on a page that is not
            // exclusive must copy it.  Make every page so: write-protected
            // and maybe shared.  An exclusive page, even a read-only one,
            // would be reused by the next write fault silently, whatever
            // references it has.  Nothing to change (the usual case once
            // one device made copies) means no invalidation either.
            // SAFETY: The mm is read-locked.
            if unsafe { bindings::gmem_wrprotect(user.as_ptr(), start as _, end as _) } != 0 {
                // A page pinned for DMA stays exclusive: its writes would
                // not be seen.  Mapped in place instead.
                // SAFETY: Taken just above.
                unsafe { gmem_devmem::gmem_put_pfns(pfns.as_ptr(), n) };
                return None;
            }
            // The copies are made of what the CPU maps from now on: the
            // same pages, read-only; any change after this bumps `seq`.
            // SAFETY: As above.
            let seq = unsafe { gmem_mm::interval_read_begin(region.notifier()) };
            let again = &mut idxs;
            let same = snapshot(&mm, region, seq, start, end, again).is_some()
                && again
                    .iter()
                    .zip(pfns.iter())
                    .all(|(&a, &p)| a & HMM_PFN_WRITE == 0 && a & !HMM_PFN_FLAGS == p);
            if !same {
                // SAFETY: Taken just above.
                unsafe { gmem_devmem::gmem_put_pfns(pfns.as_ptr(), n) };
                continue;
            }
            seq
        };
        let release = |idxs: &[usize], pfns: &[usize]| {
            for &idx in idxs {
                pool.free_page(idx);
            }
            // SAFETY: The references taken above.
            unsafe { gmem_devmem::gmem_put_pfns(pfns.as_ptr(), pfns.len()) };
        };
        for i in 0..n {
            match pool.alloc(chunk_key, first + i, false) {
                Some(idx) => idxs[i] = idx,
                None => {
                    release(&idxs[..i], pfns);
                    return None;
                }
            }
        }
        pool.device().copy_to_dev(&idxs, pfns);
        // Again: the write-protection's invalidation may have freed what
        // the first call allocated.
        if ctx.prepare(start, end).is_err() {
            release(&idxs, pfns);
            return None;
        }
        let pt = as_.pt.lock();
        if ctx.is_dead() || as_.is_released() {
            drop(pt);
            release(&idxs, pfns);
            return None;
        }
        if region.is_dead()
            || ctx.policy_gen() != policy_gen
            // SAFETY: As in `fault_block`.
            || unsafe { gmem_mm::interval_read_retry(region.notifier(), seq) }
        {
            drop(pt);
            release(&idxs, pfns);
            continue;
        }
        let first_idx = idxs[0];
        for e in idxs.iter_mut() {
            *e |= bindings::GMEM_PFN_DEVMEM as usize;
        }
        // The copies keep the address space (see `DevMem::evict_dup`).
        as_.get_ref();
        pool.install_dup(dup, first_idx);
        gmem_trace::dup(ctx.dev_id(), start, end, n);
        if ctx.map(start, &idxs, bindings::GMEM_PROT_READ).is_err() {
            // Undone as any invalidation would.
            ctx.invalidate(start, end);
            pool.collapse_dups(|d| d.is_of(ctx) && d.key == key && d.start == start);
            return None;
        }
        drop(pt);
        STATS.fault_pages.fetch_add(n as u64, Ordering::Relaxed);
        return Some((n, end));
    }
    None
}

/// Where `[start, end)`'s pages are, faulting them in for reading, into
/// `out`; `None` if that fails or an invalidation since `seq` makes it
/// stale.
fn snapshot(
    mm: &gmem_mm::MmReadGuard<'_>,
    region: &Region,
    seq: usize,
    start: usize,
    end: usize,
    out: &mut [usize],
) -> Option<()> {
    let none = core::ptr::null_mut();
    range_fault(mm, region, seq, start, end, out, HMM_PFN_VALID, none).ok()
}

/// Where the pages of `[start, end)` are and how `ctx`'s device could map
/// them, one `GMEM_PAGE_*` state each into `out`, faulting nothing (see
/// `gmem_snapshot()`).  Holes and memory the context may not reach read
/// `GMEM_PAGE_ERROR`.
pub(crate) fn snapshot_range(ctx: &GmemCtx, start: usize, end: usize, out: &mut [u8]) -> Result {
    let as_ = ctx.address_space();
    // SAFETY: The address space holds `mm_count` on its mm.
    let user = unsafe { MmUser::get(as_.mm()) }.ok_or(ESRCH)?;
    let owner = ctx.devmem().map_or(core::ptr::null_mut(), |p| p.owner());
    let mut pfns = KVec::with_capacity(PAGES_PER_BLOCK, GFP_KERNEL)?;
    pfns.extend_with(PAGES_PER_BLOCK, 0usize, GFP_KERNEL)?;
    let mut addr = start;
    let mut attempts = 0;
    while addr < end {
        if kernel::current!().signal_pending() {
            return Err(EINTR);
        }
        if attempts == MAX_ATTEMPTS {
            return Err(EAGAIN);
        }
        attempts += 1;
        // The end of the block, or of the range if the block ends past the
        // address space.
        let next = (addr & !(FAULT_BLOCK - 1))
            .checked_add(FAULT_BLOCK)
            .map_or(end, |n| n.min(end));
        let (stop, reachable) = {
            let mm = user.read_lock();
            match mm.vma_from(addr) {
                Some(v) if v.start() <= addr && ctx.allows(&v) => (next.min(v.end()), true),
                // A VMA no device may reach, whole.
                Some(v) if v.start() <= addr => (v.end().min(end), false),
                // A hole, to the next VMA at once.
                Some(v) => (v.start().min(end), false),
                None => (end, false),
            }
        };
        let first = (addr - start) / PAGE_SIZE;
        let n = (stop - addr) / PAGE_SIZE;
        if !reachable {
            out[first..first + n].fill(bindings::GMEM_PAGE_ERROR as u8);
            addr = stop;
            attempts = 0;
            continue;
        }
        let found = as_.regions.lock().find(addr);
        let Some(region) = found else {
            gmem_vma::ensure_covered(as_, &user, addr, stop)?;
            continue;
        };
        let stop = stop.min(region.end);
        let n = (stop - addr) / PAGE_SIZE;
        // SAFETY: As in `fault_block`: the region's notifier is registered
        // until it is retired.
        let seq = unsafe { gmem_mm::interval_read_begin(region.notifier()) };
        let mm = user.read_lock();
        // Looked up again: the VMA may have changed since.
        if !mm
            .vma_at(addr)
            .is_some_and(|v| v.end() >= stop && ctx.allows(&v))
        {
            continue;
        }
        match range_fault(&mm, &region, seq, addr, stop, &mut pfns[..n], 0, owner) {
            Ok(()) => {}
            Err(e) if e == EBUSY => continue,
            Err(e) => return Err(e),
        }
        for (o, &p) in out[first..first + n].iter_mut().zip(pfns[..n].iter()) {
            // SAFETY: A result of `hmm_range_fault()` under the mmap_lock
            // it ran under; only this device's pages are reported as
            // device-private, and its pool is alive (the caller entered it).
            *o = unsafe { gmem_hmm_pfn_state(p as _) };
        }
        drop(mm);
        addr = stop;
        attempts = 0;
    }
    Ok(())
}

/// `hmm_range_fault()` of `[start, end)` in `region` since notifier
/// sequence `seq`, asking `flags` of every page, into `out`; device-private
/// pages of `owner` are reported as they are.  `EBUSY`: an invalidation
/// ran since `seq`.
#[allow(clippy::too_many_arguments)]
fn range_fault(
    mm: &gmem_mm::MmReadGuard<'_>,
    region: &Region,
    seq: usize,
    start: usize,
    end: usize,
    out: &mut [usize],
    flags: usize,
    owner: *mut kernel::ffi::c_void,
) -> Result {
    let mut range = bindings::hmm_range {
        notifier: region.notifier(),
        notifier_seq: seq as _,
        start: start as _,
        end: end as _,
        hmm_pfns: out.as_mut_ptr().cast(),
        default_flags: flags as _,
        pfn_flags_mask: 0,
        dev_private_owner: owner,
    };
    mm.hmm_range_fault(&mut range)
}

/// Moves the pages of chunk `c` of `pool` that are in use back to host
/// memory, whoever maps them, with host page allocations that cannot fail
/// if `nofail`; returns how many moved.  Pages that are locked (being
/// faulted or migrated by someone else) or cannot get a host page stay.
fn evict_chunk(pool: &DevMem, c: usize, nofail: bool) -> Result<usize> {
    let (first, n) = pool.chunk_range(c);
    let mut b = MigrateBufs::new(n)?;
    // SAFETY: Our pagemap's pfns, arrays of `n` entries.
    kernel::error::to_result(unsafe {
        bindings::migrate_device_range(
            b.src.as_mut_ptr().cast(),
            (pool.base_pfn + first) as _,
            n as _,
        )
    })?;
    // Read once the pages are collected: only their lock holder retires
    // them, so this cannot change under us.
    let gone = pool.chunk_gone(c);
    for i in 0..n {
        // A page another migration has just emptied is collected too:
        // without a destination it stays, and its last put frees it.
        if b.src[i] & MIGRATE_PFN_MIGRATE == 0 || gone[i / 64] & (1u64 << (i % 64)) != 0 {
            continue;
        }
        // SAFETY: With no VMA, a plain page allocation.
        let page = unsafe { gmem_alloc_host_page(core::ptr::null_mut(), 0, nofail) };
        if page.is_null() {
            continue;
        }
        // SAFETY: A new page of ours, locked as migrate_device_pages() wants.
        let pfn = unsafe {
            bindings::lock_page(page);
            bindings::page_to_pfn(page) as usize
        };
        b.dst[i] = migrate_pfn(pfn);
        b.add_copy(pfn, first + i);
    }
    pool.device().copy_from_dev(&b.copy_to, &b.copy_from);
    // SAFETY: Collected by migrate_device_range() above; pages without a
    // destination are left where they are.
    unsafe {
        bindings::migrate_device_pages(
            b.src.as_mut_ptr().cast(),
            b.dst.as_mut_ptr().cast(),
            n as _,
        );
    }
    b.retire(pool, true);
    // SAFETY: Ends the migration collected above.
    unsafe {
        bindings::migrate_device_finalize(
            b.src.as_mut_ptr().cast(),
            b.dst.as_mut_ptr().cast(),
            n as _,
        );
    }
    Ok(b.moved())
}
