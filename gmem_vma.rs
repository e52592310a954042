// SPDX-License-Identifier: GPL-2.0

//! gmem regions: the ranges of an address space devices may reach, each
//! watched by its own `mmu_interval_notifier`.
//!
//! # How regions follow the VMAs
//!
//! A region is created when a range is first needed by a device or a
//! hint: a device fault on an address the policy allows, a prefetch, a
//! `GMEM_IOC_ADVISE` (a hint is kept only where a region watches it).  A
//! MAP_PEER_SHARED mmap only marks the VMA (the first one of an mm also
//! creates its address space); a mapping no device ever touches costs
//! gmem nothing more, so mmap, munmap and exit cost as much with 100,000
//! such mappings as with 10 (the mapping-scale benchmark).
//! Core MM keeps VMA flags exact across split, merge, mprotect and mremap,
//! so gmem does not mirror VMAs: it asks them.  When an invalidation of a
//! region says `MMU_NOTIFY_UNMAP`, the region is marked stale, its span is
//! added to the address space's `stale_span`, and the address space's work
//! item re-reads the VMAs under the stale regions of that span only and
//! replaces each by the pieces still mapped (none after munmap or exit, two
//! after a hole is punched).  Notifiers cannot be removed from their own
//! callback, hence the deferral.
//!
//! # Lifetime
//!
//! A region is an `Arc<Region>`: the address space's tree holds one
//! reference, a device fault in flight another.  A region owns one
//! reference on its address space.  Its notifier is registered from
//! creation until [`retire`] removes it, after marking it `dead` and
//! removing every device mapping of its range under the address space's
//! page-table lock, so that a fault which started on it retries instead of
//! mapping pages the notifier no longer watches, and no mapping made
//! through it outlives its notifier.
//!
//! # Attributes
//!
//! Hints (`GMEM_IOC_ADVISE`) are kept per page range in an [`AttrMap`]
//! beside the regions, under the same lock, as disjoint spans holding only
//! non-default attributes.  They belong to the virtual range, not to a
//! region: a region split by munmap keeps them on the pieces, and the
//! resync that retires an unmapped range drops them there.

use core::sync::atomic::{AtomicBool, Ordering};
use kernel::bindings;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::Arc;
use kernel::types::Opaque;

use crate::gmem_mm::{self, IntervalOps, MmUser};
use crate::{gmem_trace, GmemAs, STATS};

/// One range of an address space that devices may reach.
///
/// # Invariants
///
/// `notifier` is registered for `[start, end)` of `as_`'s mm from the
/// return of [`Region::new`] until [`retire`]; `as_` is valid because the
/// region holds a reference on it.
#[pin_data]
pub(crate) struct Region {
    #[pin]
    notifier: Opaque<bindings::mmu_interval_notifier>,
    pub(crate) start: usize,
    pub(crate) end: usize,
    as_: *const GmemAs,
    /// The CPU unmapped part of the range; the VMAs must be re-read.
    stale: AtomicBool,
    /// Retired; set under the page-table lock.
    dead: AtomicBool,
}

// SAFETY: The raw pointers refer to objects that are themselves shared
// between threads under their own locks.
unsafe impl Send for Region {}
// SAFETY: As above.
unsafe impl Sync for Region {}

static REGION_OPS: IntervalOps = IntervalOps::new(bindings::mmu_interval_notifier_ops {
    invalidate: Some(region_invalidate),
});

impl Region {
    /// Creates a region for `[start, end)` and registers its notifier.
    fn new(as_: &GmemAs, mm: &MmUser, start: usize, end: usize) -> Result<Arc<Region>> {
        let region = Arc::pin_init(
            pin_init!(Region {
                // SAFETY: A zeroed notifier is what insertion expects.
                notifier: Opaque::new(unsafe { core::mem::zeroed() }),
                start,
                end,
                as_: as_ as *const GmemAs,
                stale: AtomicBool::new(false),
                dead: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: The notifier is zeroed and pinned inside the `Arc`, which
        // `retire` keeps alive until after removal.
        unsafe { gmem_mm::interval_insert(region.notifier.get(), mm, start, end, &REGION_OPS)? };
        as_.get_ref();
        STATS.regions.fetch_add(1, Ordering::Relaxed);
        Ok(region)
    }

    pub(crate) fn notifier(&self) -> *mut bindings::mmu_interval_notifier {
        self.notifier.get()
    }

    /// True once retired.  Reliable under the page-table lock.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    fn contains(&self, addr: usize) -> bool {
        self.start <= addr && addr < self.end
    }
}

use crate::gmem_policy::{self, AttrSpan, SpanSink};
pub(crate) use crate::gmem_policy::{Attrs, Loc};

/// Room is reserved first ([`gmem_policy::update_capacity`]), so a push
/// never allocates and never fails.
impl SpanSink for KVec<AttrSpan> {
    fn push_span(&mut self, s: AttrSpan) {
        let _ = self.push(s, GFP_NOWAIT);
    }

    fn last_span_mut(&mut self) -> Option<&mut AttrSpan> {
        self.last_mut()
    }
}

/// Attributes by page range: sorted, disjoint spans, none default.
pub(crate) struct AttrMap {
    spans: KVec<AttrSpan>,
}

impl AttrMap {
    /// The attributes of the page at `addr`.
    pub(crate) fn get(&self, addr: usize) -> Attrs {
        gmem_policy::attrs_at(&self.spans, addr)
    }

    /// Applies `f` to the attributes of every page of `[start, end)`.
    /// On failure (no memory) nothing changed.
    pub(crate) fn update(&mut self, start: usize, end: usize, f: impl Fn(&mut Attrs)) -> Result {
        let room = gmem_policy::update_capacity(self.spans.len());
        let mut out: KVec<AttrSpan> = KVec::with_capacity(room, GFP_KERNEL)?;
        gmem_policy::update_spans(&self.spans, start, end, f, &mut out);
        self.spans = out;
        Ok(())
    }

    /// Drops every hint on `[start, end)`.  Costs nothing when there is
    /// none there (every new mapping asks).
    pub(crate) fn clear(&mut self, start: usize, end: usize) -> Result {
        let i = self.spans.partition_point(|s| s.end <= start);
        if self.spans.get(i).map_or(true, |s| s.start >= end) {
            return Ok(());
        }
        self.update(start, end, |a| *a = Attrs::default())
    }

    /// The parts of `[start, end)` whose attributes satisfy `pred` (never
    /// the default ones).
    pub(crate) fn ranges(
        &self,
        start: usize,
        end: usize,
        pred: impl Fn(&Attrs) -> bool,
    ) -> Result<KVec<(usize, usize)>> {
        let mut out = KVec::new();
        for s in self.spans.iter() {
            if s.end > start && s.start < end && pred(&s.a) {
                out.push((s.start.max(start), s.end.min(end)), GFP_KERNEL)?;
            }
        }
        Ok(out)
    }

    /// The attributes all of `[start, end)` shares, as
    /// `cudaMemRangeGetAttributes()` reports them.
    pub(crate) fn common(&self, start: usize, end: usize) -> Attrs {
        gmem_policy::common(&self.spans, start, end)
    }
}

/// The regions of one address space, by start address; they never overlap.
/// And the attributes of its ranges.
pub(crate) struct Regions {
    by_start: RBTree<usize, Arc<Region>>,
    pub(crate) attrs: AttrMap,
}

impl Regions {
    pub(crate) fn new() -> Self {
        Self {
            by_start: RBTree::new(),
            attrs: AttrMap { spans: KVec::new() },
        }
    }

    /// The region with the highest start `<= addr`, if any.
    fn floor(&mut self, addr: usize) -> Option<Arc<Region>> {
        let cursor = match self.by_start.cursor_lower_bound(&addr) {
            Some(c) => c,
            None => self.by_start.cursor_back()?,
        };
        let (start, region) = cursor.current();
        if *start <= addr {
            return Some(region.clone());
        }
        cursor.peek_prev().map(|(_, r)| r.clone())
    }

    /// The region containing `addr`.
    pub(crate) fn find(&mut self, addr: usize) -> Option<Arc<Region>> {
        self.floor(addr).filter(|r| r.contains(addr))
    }

    /// The first region starting at or after `addr`.
    fn next_start(&mut self, addr: usize) -> Option<usize> {
        self.by_start
            .cursor_lower_bound(&addr)
            .map(|c| *c.current().0)
    }

    /// The largest part of `[lo, hi)` around `addr` that no region covers,
    /// or `Err(end)` with the end of the region covering `addr`.
    fn gap_around(
        &mut self,
        addr: usize,
        lo: usize,
        hi: usize,
    ) -> core::result::Result<(usize, usize), usize> {
        let below = self.floor(addr);
        if let Some(r) = below.as_ref().filter(|r| r.contains(addr)) {
            return Err(r.end);
        }
        let start = below.map_or(lo, |r| r.end.max(lo));
        let end = self.next_start(addr).map_or(hi, |s| s.min(hi));
        Ok((start, end))
    }

    fn overlaps(&mut self, start: usize, end: usize) -> bool {
        if self.floor(start).is_some_and(|r| r.end > start) {
            return true;
        }
        self.next_start(start).is_some_and(|s| s < end)
    }

    /// The regions overlapping `[start, end)` whose CPU mappings changed
    /// shape.
    fn stale_in(&mut self, start: usize, end: usize) -> Result<KVec<Arc<Region>>> {
        let mut out = KVec::new();
        let first = match self.floor(start) {
            Some(r) if r.end > start => r.start,
            _ => start,
        };
        let mut cursor = self.by_start.cursor_lower_bound(&first);
        while let Some(c) = cursor {
            let (s, r) = c.current();
            if *s >= end {
                break;
            }
            if r.stale.load(Ordering::Relaxed) {
                out.push(r.clone(), GFP_KERNEL)?;
            }
            cursor = c.move_next();
        }
        Ok(out)
    }
}

/// Takes `region` out of service: dead, and (if it was ever published)
/// every device mapping of its range removed, both under the page-table
/// lock; then its notifier removed and its address-space reference dropped.
/// No region or page-table lock may be held (notifier removal waits for a
/// running callback).
///
/// This is what keeps every device mapping inside a live notifier: a
/// mapping is committed only under the page-table lock, through a region
/// that is not dead, after reading that region's notifier sequence; a
/// region's notifier is removed only after its range was made unreachable
/// under that same lock.  Whatever a resync decided (pieces dropped on
/// ENOMEM, a MAP_FIXED mapping that raced the VMA walk), no device can keep
/// a page that no notifier watches; the pieces still mapped fault again.
fn retire(as_: &GmemAs, region: Arc<Region>, published: bool) {
    {
        let pt = as_.pt.lock();
        region.dead.store(true, Ordering::Relaxed);
        // After `release` nothing is mapped (see `GmemAs::is_released`).
        if published && !as_.is_released() {
            as_.invalidate_locked(&pt, region.start, region.end);
            as_.forget_history_locked(&pt, region.start, region.end);
        }
    }
    // SAFETY: Registered until now (invariant) and no lock the callback
    // takes is held.
    unsafe { gmem_mm::interval_remove(region.notifier()) };
    STATS.regions.fetch_sub(1, Ordering::Relaxed);
    drop(region);
    as_.put();
}

/// Makes sure regions cover `[start, end)` of `as_`, creating them for the
/// parts nothing covers yet.  Called with the VMA facts already checked.
pub(crate) fn ensure_covered(as_: &GmemAs, mm: &MmUser, start: usize, end: usize) -> Result {
    let mut addr = start;
    while addr < end {
        let (gs, ge) = match as_.regions.lock().gap_around(addr, start, end) {
            Ok(gap) => gap,
            Err(covered_to) => {
                addr = covered_to;
                continue;
            }
        };
        let slot = RBTreeNodeReservation::new(GFP_KERNEL)?;
        let region = Region::new(as_, mm, gs, ge)?;
        let lost_race = {
            let mut regions = as_.regions.lock();
            if regions.overlaps(gs, ge) {
                Some(region)
            } else {
                // Unmapped between its notifier's insertion and now: the
                // resync that mark queued may have looked before this.
                if region.stale.load(Ordering::Relaxed) {
                    mark_stale_span(as_, gs, ge);
                    as_.queue_resync();
                }
                regions.by_start.insert(slot.into_node(gs, region));
                None
            }
        };
        if let Some(region) = lost_race {
            // Someone covered part of it meanwhile; theirs stands.
            retire(as_, region, false);
            continue;
        }
        addr = ge;
    }
    Ok(())
}

/// Re-reads the VMAs under every stale region and replaces it by the parts
/// still mapped that the policy allows.  Runs from the address space's work
/// item.  Takes `mmap_lock` for read while reading VMAs, and the regions
/// and page-table locks only around its updates (never while inserting or
/// removing a notifier; insertion may take `mmap_lock` itself).
pub(crate) fn resync(as_: &GmemAs) {
    let (start, end) = core::mem::replace(&mut *as_.stale_span.lock(), (usize::MAX, 0));
    if start >= end {
        return;
    }
    let Ok(stale) = as_.regions.lock().stale_in(start, end) else {
        // Out of memory: the regions stay stale; look again.
        mark_stale_span(as_, start, end);
        as_.queue_resync();
        return;
    };
    // SAFETY: The address space holds `mm_count` on its mm.
    let user = unsafe { gmem_mm::MmUser::get(as_.mm()) };
    for old in stale {
        old.stale.store(false, Ordering::Relaxed);
        let mut pieces: KVec<Piece> = KVec::new();
        let mut unchanged = false;
        if let Some(user) = &user {
            let mut spans: KVec<(usize, usize)> = KVec::new();
            {
                let mm = user.read_lock();
                let mut addr = old.start;
                while let Some(vma) = mm.vma_from(addr) {
                    if vma.start() >= old.end {
                        break;
                    }
                    if as_.allows(&vma)
                        && spans
                            .push(
                                (vma.start().max(old.start), vma.end().min(old.end)),
                                GFP_KERNEL,
                            )
                            .is_err()
                    {
                        // Cannot tell: keep the region, look again.
                        old.stale.store(true, Ordering::Relaxed);
                        mark_stale_span(as_, old.start, old.end);
                        as_.queue_resync();
                        unchanged = true;
                        break;
                    }
                    addr = vma.end();
                }
            }
            if !unchanged && spans.len() == 1 && spans[0] == (old.start, old.end) {
                unchanged = true;
            }
            if !unchanged {
                // Capacity first: a push must not fail (and drop a live
                // region) below.
                match KVec::with_capacity(spans.len(), GFP_KERNEL) {
                    Ok(v) => pieces = v,
                    Err(_) => {
                        old.stale.store(true, Ordering::Relaxed);
                        mark_stale_span(as_, old.start, old.end);
                        as_.queue_resync();
                        continue;
                    }
                }
                // A piece that cannot be set up now is found again lazily
                // by the next device fault on it.
                for &(s, e) in spans.iter() {
                    let Ok(slot) = RBTreeNodeReservation::new(GFP_KERNEL) else {
                        continue;
                    };
                    let Ok(r) = Region::new(as_, user, s, e) else {
                        continue;
                    };
                    // Within the capacity reserved above: cannot fail.
                    let _ = pieces.push((r, slot), GFP_KERNEL);
                }
            }
        }
        if unchanged {
            continue;
        }
        {
            let mut regions = as_.regions.lock();
            regions.by_start.remove(&old.start);
            // Hints go with the pages: none survive where nothing is mapped
            // (on failure they stay, as harmless leftovers).
            let mut cursor = old.start;
            for (p, _) in pieces.iter() {
                let _ = regions
                    .attrs
                    .update(cursor, p.start, |a| *a = Attrs::default());
                cursor = p.end;
            }
            let _ = regions
                .attrs
                .update(cursor, old.end, |a| *a = Attrs::default());
            for (p, slot) in pieces.into_iter() {
                regions.by_start.insert(slot.into_node(p.start, p));
            }
        }
        retire(as_, old, true);
    }
}

/// A region that replaces part of a stale one, with the tree node it will
/// go into (reserved before anything changes).
type Piece = (Arc<Region>, RBTreeNodeReservation<usize, Arc<Region>>);

/// The interval notifier callback: the CPU is about to change or drop pages
/// in `range`.  Device mappings of them go first, unless the change leaves
/// them valid (a NUMA hinting scan): then nothing is done and concurrent
/// device faults need not retry.
///
/// # Safety
///
/// Called by core MM only, for the `notifier` of a registered `Region`,
/// with `range` valid for the call.
unsafe extern "C" fn region_invalidate(
    sub: *mut bindings::mmu_interval_notifier,
    range: *const bindings::mmu_notifier_range,
    cur_seq: kernel::ffi::c_ulong,
) -> bool {
    // SAFETY: `sub` is the `notifier` field of a live `Region` (registered
    // notifiers belong to live regions, see `retire`).
    let region = unsafe {
        &*(sub
            .cast::<u8>()
            .sub(core::mem::offset_of!(Region, notifier))
            .cast::<Region>())
    };
    // SAFETY: Core MM passes a valid range for the callback's duration.
    let range = unsafe { &*range };
    // SAFETY: The region holds a reference on its address space.
    let as_ = unsafe { &*region.as_ };
    if gmem_mm::keeps_device_access(range) {
        return true;
    }
    let blockable = range.flags & bindings::MMU_NOTIFIER_RANGE_BLOCKABLE != 0;
    let start = range.start.max(region.start);
    let end = range.end.min(region.end);
    gmem_trace::invalidate(start, end, range.event);
    if !as_.invalidate_devices(blockable, start, end, || {
        // SAFETY: Called from the callback of `sub`, under the pt lock.
        unsafe { gmem_mm::interval_set_seq(sub, cur_seq) }
    }) {
        return false;
    }
    if range.event == bindings::mmu_notifier_event_MMU_NOTIFY_UNMAP {
        // Every time, not only when it turns stale: a resync that ran
        // before this region entered the tree (or failed) has used up the
        // earlier mark.  Queueing queued work costs a bit test.
        region.stale.store(true, Ordering::Relaxed);
        mark_stale_span(as_, region.start, region.end);
        as_.queue_resync();
    }
    true
}

/// Adds `[start, end)` to the span the next resync looks at.
fn mark_stale_span(as_: &GmemAs, start: usize, end: usize) {
    let mut span = as_.stale_span.lock();
    span.0 = span.0.min(start);
    span.1 = span.1.max(end);
}
