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
//! # Fault-ahead
//!
//! A fault resolves the whole [`FAULT_BLOCK`]-aligned block around the
//! address, clipped to the region and the VMA (one policy and protection),
//! so a device streaming through memory takes one fault per block rather
//! than per page, as UVM does with its 2 MiB VA blocks.

use core::sync::atomic::Ordering;
use kernel::bindings;
use kernel::prelude::*;

use crate::gmem_mm::{self, MmRef, MmUser};
use crate::{gmem_vma, GmemCtx, STATS};

/// Bytes resolved by one device fault, at most (aligned).
pub(crate) const FAULT_BLOCK: usize = 2 << 20;
const PAGE_SIZE: usize = bindings::PAGE_SIZE;
const PAGES_PER_BLOCK: usize = FAULT_BLOCK / PAGE_SIZE;
/// Attempts before a fault that keeps racing invalidations gives up.
const MAX_ATTEMPTS: usize = 1000;

const HMM_PFN_VALID: usize = bindings::hmm_pfn_flags_HMM_PFN_VALID as usize;
const HMM_PFN_WRITE: usize = bindings::hmm_pfn_flags_HMM_PFN_WRITE as usize;
const HMM_PFN_FLAGS: usize = bindings::hmm_pfn_flags_HMM_PFN_FLAGS as usize;

/// Resolves a device fault at `addr` for `ctx`, mapping the block around
/// it; returns the number of pages mapped.
///
/// Errors: `EFAULT` no mapping or `PROT_NONE`, `EPERM` write to read-only
/// memory, `EACCES` memory the context's policy excludes, `ESRCH` the
/// address space is exiting, `ENODEV` the context was torn down, `EAGAIN`
/// endless invalidation races.
pub(crate) fn device_fault(ctx: &GmemCtx, addr: usize, write: bool) -> Result<usize> {
    let as_ = ctx.address_space();
    if as_.is_released() {
        return Err(ESRCH);
    }
    // SAFETY: The address space holds `mm_count` on its mm.
    let user = unsafe { MmUser::get(as_.mm()) }.ok_or(ESRCH)?;
    STATS.device_faults.fetch_add(1, Ordering::Relaxed);
    let mut pfns = KVec::with_capacity(PAGES_PER_BLOCK, GFP_KERNEL)?;
    pfns.extend_with(PAGES_PER_BLOCK, 0usize, GFP_KERNEL)?;

    for _ in 0..MAX_ATTEMPTS {
        let found = as_.regions.lock().find(addr);
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
            gmem_vma::ensure_covered(as_, MmRef::User(&user), start, end)?;
            continue;
        };

        let block = addr & !(FAULT_BLOCK - 1);
        let mut start = block.max(region.start);
        let mut end = (block + FAULT_BLOCK).min(region.end);
        // SAFETY: The region's notifier stays registered until it is
        // retired, and a retired one only makes the commit below retry.
        let seq = unsafe { gmem_mm::interval_read_begin(region.notifier()) };
        let policy_gen = ctx.policy_gen();
        {
            let mm = user.read_lock();
            let vma = mm.vma_at(addr).ok_or(EFAULT)?;
            if !ctx.allows(&vma) {
                return Err(EACCES);
            }
            start = start.max(vma.start());
            end = end.min(vma.end());
            let mut range = bindings::hmm_range {
                notifier: region.notifier(),
                notifier_seq: seq as _,
                start: start as _,
                end: end as _,
                hmm_pfns: pfns.as_mut_ptr().cast(),
                default_flags: (HMM_PFN_VALID | if write { HMM_PFN_WRITE } else { 0 }) as _,
                pfn_flags_mask: 0,
                dev_private_owner: core::ptr::null_mut(),
            };
            match mm.hmm_range_fault(&mut range) {
                Ok(()) => {}
                Err(e) if e == EBUSY => {
                    STATS.fault_retries.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }

        let npages = (end - start) / PAGE_SIZE;
        ctx.prepare(start, end)?;
        let pt = as_.pt.lock();
        // SAFETY: As for `interval_read_begin` above; we hold the lock the
        // invalidation callback takes.
        if region.is_dead()
            || ctx.policy_gen() != policy_gen
            || unsafe { gmem_mm::interval_read_retry(region.notifier(), seq) }
        {
            drop(pt);
            STATS.fault_retries.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if ctx.is_dead() {
            return Err(ENODEV);
        }
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
        return Ok(npages);
    }
    Err(EAGAIN)
}

/// Maps `hmm_pfns` (from `hmm_range_fault`) at `start`, one driver call per
/// run of pages with the same protection.  Called under the page-table lock.
fn map_runs(ctx: &GmemCtx, start: usize, hmm_pfns: &mut [usize]) -> Result {
    let mut i = 0;
    while i < hmm_pfns.len() {
        let writable = hmm_pfns[i] & HMM_PFN_WRITE != 0;
        let mut j = i;
        while j < hmm_pfns.len() && (hmm_pfns[j] & HMM_PFN_WRITE != 0) == writable {
            hmm_pfns[j] &= !HMM_PFN_FLAGS;
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
