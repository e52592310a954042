// SPDX-License-Identifier: GPL-2.0

//! gmem's policy core: the decisions that are plain computation, with no
//! kernel binding, lock or allocation, so that the same file is compiled
//! into `gmem.ko` and into a host crate (`tools/testing/gmem-policy`),
//! whose `cargo test` checks it in seconds with unit and property tests.
//!
//! - the hints of a range ([`Attrs`]) and whether a device's fault
//!   migrates ([`Attrs::migrates_for`]);
//! - the attribute map's spans: lookup ([`attrs_at`]), update
//!   ([`update_spans`]) and the attributes a whole range shares
//!   ([`common`]);
//! - the thrashing rule of one block ([`ThrashSlot`]);
//! - the eviction choice ([`pick_lru`]).
//!
//! The callers keep the state (under their locks) and the clocks; this
//! module only decides.  It uses `core` alone.

/// Where a range prefers its pages (`GMEM_ADV_SET_PREFERRED_LOCATION`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) enum Loc {
    #[default]
    None,
    Host,
    Dev(u32),
}

/// The hints on a page range; the default is "no hint".  Device sets are
/// bit masks of gmem device ids.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct Attrs {
    pub(crate) preferred: Loc,
    pub(crate) read_mostly: bool,
    pub(crate) accessed_by: u64,
    pub(crate) pinned: u64,
}

impl Attrs {
    /// Whether device `id`'s faults on this range migrate, given the
    /// context's own placement `default`.
    pub(crate) fn migrates_for(&self, id: u32, default: bool) -> bool {
        let bit = 1u64 << id;
        if self.pinned & bit != 0 {
            return true;
        }
        if self.accessed_by & bit != 0 || self.read_mostly {
            return false;
        }
        match self.preferred {
            Loc::None => default,
            Loc::Host => false,
            Loc::Dev(d) => d == id,
        }
    }

    /// Whether the hints keep the range off device `id` however much the
    /// device uses it (its access counters): a preferred location
    /// elsewhere, or read-mostly (copies serve it).
    pub(crate) fn keeps_off(&self, id: u32) -> bool {
        self.read_mostly
            || match self.preferred {
                Loc::None => false,
                Loc::Host => true,
                Loc::Dev(d) => d != id,
            }
    }

    /// What `self` and `other` share, as `cudaMemRangeGetAttributes()`
    /// reports a range: a preferred location only if both have it,
    /// read-mostly only if both are, the devices in both sets.
    pub(crate) fn meet(&self, other: &Attrs) -> Attrs {
        Attrs {
            preferred: if self.preferred == other.preferred {
                self.preferred
            } else {
                Loc::None
            },
            read_mostly: self.read_mostly && other.read_mostly,
            accessed_by: self.accessed_by & other.accessed_by,
            pinned: self.pinned & other.pinned,
        }
    }
}

/// A span of pages `[start, end)` with the same attributes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct AttrSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) a: Attrs,
}

/// Where [`update_spans`] writes: the kernel's vector with room reserved,
/// a `Vec` on the host.
pub(crate) trait SpanSink {
    /// Appends `s`; the caller reserved room ([`update_capacity`]).
    fn push_span(&mut self, s: AttrSpan);
    /// The span appended last.
    fn last_span_mut(&mut self) -> Option<&mut AttrSpan>;
}

/// The attributes of the page at `addr` in `spans` (sorted, disjoint).
pub(crate) fn attrs_at(spans: &[AttrSpan], addr: usize) -> Attrs {
    let i = spans.partition_point(|s| s.end <= addr);
    match spans.get(i) {
        Some(s) if s.start <= addr => s.a,
        _ => Attrs::default(),
    }
}

/// Spans [`update_spans`] may write for `n` old ones: each old span gives
/// at most two pieces and one gap before it, plus the last gap.
pub(crate) fn update_capacity(n: usize) -> usize {
    2 * n + 3
}

/// Writes to `out` the spans of `spans` (sorted, disjoint, none default)
/// with `f` applied to the attributes of every page of `[start, end)`;
/// the result is sorted, disjoint, has no default span, and adjacent equal
/// spans are merged.
pub(crate) fn update_spans(
    spans: &[AttrSpan],
    start: usize,
    end: usize,
    f: impl Fn(&mut Attrs),
    out: &mut impl SpanSink,
) {
    let push = |out: &mut dyn SpanSink, s: AttrSpan| {
        if s.start >= s.end || s.a == Attrs::default() {
            return;
        }
        if let Some(last) = out.last_span_mut() {
            if last.end == s.start && last.a == s.a {
                last.end = s.end;
                return;
            }
        }
        out.push_span(s);
    };
    // A gap without attributes inside the range gets them.
    let gap = |out: &mut dyn SpanSink, start: usize, end: usize| {
        let mut a = Attrs::default();
        f(&mut a);
        push(out, AttrSpan { start, end, a });
    };
    let mut cursor = start;
    for s in spans {
        if s.end <= start || s.start >= end {
            if s.start >= end && cursor < end {
                gap(out, cursor, end);
                cursor = end;
            }
            push(out, *s);
            continue;
        }
        push(out, AttrSpan { end: start, ..*s });
        if cursor < s.start {
            gap(out, cursor, s.start);
        }
        let mut a = s.a;
        f(&mut a);
        let (ms, me) = (s.start.max(start), s.end.min(end));
        push(
            out,
            AttrSpan {
                start: ms,
                end: me,
                a,
            },
        );
        cursor = me;
        push(out, AttrSpan { start: end, ..*s });
    }
    if cursor < end {
        gap(out, cursor, end);
    }
}

/// The attributes every page of `[start, end)` shares in `spans`.
pub(crate) fn common(spans: &[AttrSpan], start: usize, end: usize) -> Attrs {
    let mut acc: Option<Attrs> = None;
    let mut merge = |a: Attrs| acc = Some(acc.map_or(a, |c| c.meet(&a)));
    let mut cursor = start;
    for s in spans.iter().filter(|s| s.end > start && s.start < end) {
        if s.start > cursor {
            merge(Attrs::default());
        }
        merge(s.a);
        cursor = s.end;
    }
    if cursor < end {
        merge(Attrs::default());
    }
    acc.unwrap_or_default()
}

/// The thrashing rule's parameters (times in ms; clock in pages).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThrashRule {
    /// Departures within this long of each other count together.
    pub(crate) lapse_ms: u64,
    /// Departures that make a block thrashing.
    pub(crate) threshold: u32,
    /// An evicted block wanted back before the device allocated this many
    /// times its memory is thrashing...
    pub(crate) reuse_factor: u64,
    /// ... if that is also within this long.
    pub(crate) reuse_ms: u64,
    /// How long a thrashing block stays where it is.
    pub(crate) pin_ms: u64,
}

/// The slot of a thrashing table of `n` (> 0) slots for block number
/// `block` (its address over the block size) of the mm at `mm`.  An
/// offset per mm, added rather than XORed: `n` consecutive blocks (a
/// buffer swept over) take `n` different slots, so no hold of a block the
/// sweep needs is forgotten for another of its blocks.  With XOR, when `n`
/// is not a power of two, up to a fifth of them shared slots, and each
/// pair sharing one took turns migrating, never held.  The offset is the
/// mm's address hashed: processes forked one after another have their mms
/// side by side and their buffers at the same addresses.
pub(crate) fn thrash_slot(block: usize, mm: usize, n: usize) -> usize {
    debug_assert!(n > 0);
    let offset = (mm as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20;
    block.wrapping_add(offset as usize) % n
}

/// What one slot of a device's thrashing table remembers of block `key`.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct ThrashSlot<K> {
    pub(crate) key: K,
    departures: u32,
    last: u64,
    pinned_until: u64,
    /// LRU clock at its last eviction, 0 if not evicted since.
    evicted_at: u64,
    /// Until when reads of the block are served by copies: it was read
    /// by one device while in another's memory.
    shared_until: u64,
}

impl<K: Copy + Eq + Default> ThrashSlot<K> {
    /// Records that `key`'s pages left the device at `now`; `evicted_at`
    /// is the LRU clock if it was an eviction.  A slot holding another
    /// block forgets it (a direct-mapped table).
    pub(crate) fn departed(&mut self, key: K, now: u64, evicted_at: Option<u64>, r: &ThrashRule) {
        if self.key == key && now.saturating_sub(self.last) < r.lapse_ms {
            self.departures += 1;
            self.last = now;
        } else if self.key != key || now >= self.pinned_until {
            let shared_until = if self.key == key {
                self.shared_until
            } else {
                0
            };
            *self = ThrashSlot {
                key,
                departures: 1,
                last: now,
                shared_until,
                ..ThrashSlot::default()
            };
        }
        if let Some(t) = evicted_at {
            self.evicted_at = t;
        }
    }

    /// Serves reads of `key` by copies until `now` plus the hold time; a
    /// slot holding another block forgets it.
    pub(crate) fn share(&mut self, key: K, now: u64, r: &ThrashRule) {
        if self.key != key {
            *self = ThrashSlot {
                key,
                ..ThrashSlot::default()
            };
        }
        self.shared_until = now + r.pin_ms;
    }

    /// Whether reads of `key` are served by copies at `now`.
    pub(crate) fn shared(&self, key: K, now: u64) -> bool {
        self.key == key && now < self.shared_until
    }

    /// Ends the sharing of `key`: it is written.  Whether it was shared
    /// (lately or still).
    pub(crate) fn unshare(&mut self, key: K) -> bool {
        let was = self.key == key && self.shared_until != 0;
        if was {
            self.shared_until = 0;
        }
        was
    }

    /// Whether `key` is held for thrashing at `now`, changing nothing.
    pub(crate) fn held(&self, key: K, now: u64) -> bool {
        self.key == key && now < self.pinned_until
    }

    /// Whether `key` must stay where it is at `now` rather than migrate:
    /// it is held for thrashing, or starts to be (then true, and
    /// `*started` is set).  `clock` is the device's LRU clock, `pages` the
    /// size of its memory.
    pub(crate) fn holds_back(
        &mut self,
        key: K,
        now: u64,
        clock: u64,
        pages: u64,
        r: &ThrashRule,
        started: &mut bool,
    ) -> bool {
        if self.key != key {
            return false;
        }
        if now < self.pinned_until {
            return true;
        }
        let pingpong = self.departures >= r.threshold && now.saturating_sub(self.last) < r.lapse_ms;
        // A device idle for long does not move its LRU clock: the
        // eviction must be recent in time too (wall time, or with a device
        // clock, in the device's work).
        let reused = self.evicted_at != 0
            && clock.saturating_sub(self.evicted_at) < r.reuse_factor * pages
            && now.saturating_sub(self.last) < r.reuse_ms;
        if pingpong || reused {
            self.pinned_until = now + r.pin_ms;
            self.departures = 0;
            self.evicted_at = 0;
            *started = true;
            return true;
        }
        false
    }
}

/// What the eviction choice looks at in one chunk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    /// In use, not pinned, not the block that needs the room.
    pub(crate) evictable: bool,
    /// Another eviction is moving it now.
    pub(crate) evicting: bool,
    /// LRU stamp: lower is older.
    pub(crate) stamp: u64,
    /// The device reported using it lately.
    pub(crate) in_use: bool,
}

/// The outcome of [`pick_lru`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Pick {
    /// Evict this chunk.
    Chunk(usize),
    /// Nothing to evict now, but evictions in progress will make room.
    Busy,
    /// Every chunk in use is pinned (or the block's own).
    AllPinned,
}

/// The least recently used evictable chunk not already being evicted (the
/// first one of equal stamps), among those the device did not report using
/// lately if there is any: a segmented LRU, whose protected part is what
/// the device says it uses.  Plain recency evicts a block used all the
/// time for one used once, when the once-used ones come in a burst larger
/// than the free memory.
pub(crate) fn pick_lru(chunks: impl Iterator<Item = Candidate>) -> Pick {
    let mut best: Option<(usize, (bool, u64))> = None;
    let mut busy = false;
    for (i, c) in chunks.enumerate() {
        if !c.evictable {
            continue;
        }
        let rank = (c.in_use, c.stamp);
        if c.evicting {
            busy = true;
        } else if best.map_or(true, |(_, r)| rank < r) {
            best = Some((i, rank));
        }
    }
    match best {
        Some((i, _)) => Pick::Chunk(i),
        None if busy => Pick::Busy,
        None => Pick::AllPinned,
    }
}
