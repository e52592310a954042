// SPDX-License-Identifier: GPL-2.0

//! Unit and property tests of gmem's policy core.  The attribute map is
//! checked against a model that keeps one `Attrs` per page.

use crate::gmem_policy::*;
use proptest::prelude::*;
use std::vec::Vec;

const PAGE: usize = 4096;
/// Pages of the model address space.
const PAGES: usize = 48;

impl SpanSink for Vec<AttrSpan> {
    fn push_span(&mut self, s: AttrSpan) {
        self.push(s);
    }

    fn last_span_mut(&mut self) -> Option<&mut AttrSpan> {
        self.last_mut()
    }
}

fn update(spans: &[AttrSpan], start: usize, end: usize, f: impl Fn(&mut Attrs)) -> Vec<AttrSpan> {
    let mut out = Vec::with_capacity(update_capacity(spans.len()));
    let cap = out.capacity();
    update_spans(spans, start, end, f, &mut out);
    // The kernel reserves exactly this room and must never need more.
    assert!(out.len() <= update_capacity(spans.len()));
    assert_eq!(out.capacity(), cap, "update_spans outgrew update_capacity");
    out
}

/// Sorted, disjoint, page aligned, no default span, no two adjacent equal.
fn well_formed(spans: &[AttrSpan]) -> bool {
    spans
        .iter()
        .all(|s| s.start < s.end && s.a != Attrs::default())
        && spans
            .windows(2)
            .all(|w| w[0].end <= w[1].start && !(w[0].end == w[1].start && w[0].a == w[1].a))
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Preferred(Loc),
    ReadMostly(bool),
    AccessedBy(u32, bool),
    Pin(u32, bool),
    Clear,
}

impl Op {
    fn apply(self, a: &mut Attrs) {
        match self {
            Op::Preferred(l) => a.preferred = l,
            Op::ReadMostly(r) => a.read_mostly = r,
            Op::AccessedBy(d, on) => set_bit(&mut a.accessed_by, d, on),
            Op::Pin(d, on) => set_bit(&mut a.pinned, d, on),
            Op::Clear => *a = Attrs::default(),
        }
    }
}

fn set_bit(m: &mut u64, d: u32, on: bool) {
    if on {
        *m |= 1 << d;
    } else {
        *m &= !(1 << d);
    }
}

fn loc() -> impl Strategy<Value = Loc> {
    prop_oneof![
        Just(Loc::None),
        Just(Loc::Host),
        (0u32..4).prop_map(Loc::Dev)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        loc().prop_map(Op::Preferred),
        any::<bool>().prop_map(Op::ReadMostly),
        (0u32..4, any::<bool>()).prop_map(|(d, on)| Op::AccessedBy(d, on)),
        (0u32..4, any::<bool>()).prop_map(|(d, on)| Op::Pin(d, on)),
        Just(Op::Clear),
    ]
}

/// A page range `[start, end)` of the model space, in bytes, not empty.
fn range() -> impl Strategy<Value = (usize, usize)> {
    (0..PAGES, 1..=PAGES).prop_map(|(a, n)| {
        let end = (a + n).min(PAGES);
        (a * PAGE, end.max(a + 1) * PAGE)
    })
}

proptest! {
    // No regression files written into the source tree.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A buffer of as many blocks as the thrashing table has slots, at any
    /// address of any mm, takes every slot once: a sweep over it loses no
    /// hold to a collision.
    #[test]
    fn consecutive_blocks_take_distinct_thrash_slots(
        first in 0usize..(1 << 35),
        mm in any::<usize>(),
        n in 1usize..2048,
    ) {
        let mut taken = Vec::from_iter(core::iter::repeat(false).take(n));
        for b in first..first + n {
            let s = thrash_slot(b, mm, n);
            prop_assert!(!taken[s], "blocks {} and another share slot {}", b, s);
            taken[s] = true;
        }
    }

    /// Any sequence of updates leaves the spans well formed and every page
    /// with exactly the attributes the per-page model has.
    #[test]
    fn attr_map_matches_model(ops in proptest::collection::vec((range(), op()), 1..24)) {
        let mut spans: Vec<AttrSpan> = Vec::new();
        let mut model = [Attrs::default(); PAGES];
        for ((start, end), o) in ops {
            spans = update(&spans, start, end, |a| o.apply(a));
            for a in &mut model[start / PAGE..end / PAGE] {
                o.apply(a);
            }
            prop_assert!(well_formed(&spans), "{:?}", spans);
            for (p, want) in model.iter().enumerate() {
                // The first byte, one inside, and the last of each page.
                for off in [0, 17, PAGE - 1] {
                    prop_assert_eq!(attrs_at(&spans, p * PAGE + off), *want, "page {} +{}", p, off);
                }
            }
        }
    }

    /// What a range shares is the meet of its pages' attributes.
    #[test]
    fn common_is_the_meet_of_the_pages(
        ops in proptest::collection::vec((range(), op()), 0..16),
        (start, end) in range(),
    ) {
        let mut spans: Vec<AttrSpan> = Vec::new();
        let mut model = [Attrs::default(); PAGES];
        for ((s, e), o) in ops {
            spans = update(&spans, s, e, |a| o.apply(a));
            for a in &mut model[s / PAGE..e / PAGE] {
                o.apply(a);
            }
        }
        let want = model[start / PAGE..end / PAGE]
            .iter()
            .skip(1)
            .fold(model[start / PAGE], |acc, a| acc.meet(a));
        prop_assert_eq!(common(&spans, start, end), want);
    }

    /// The pick is the oldest evictable chunk not being evicted, among
    /// those not in use if there is any; Busy only when there is none but
    /// some evictable one is being evicted.
    #[test]
    fn pick_lru_takes_the_oldest(cs in proptest::collection::vec(
        (any::<bool>(), any::<bool>(), 0u64..8, any::<bool>()), 0..20)) {
        let cands: Vec<Candidate> = cs
            .iter()
            .map(|&(evictable, evicting, stamp, in_use)| Candidate {
                evictable,
                evicting,
                stamp,
                in_use,
            })
            .collect();
        let all: Vec<usize> = (0..cands.len())
            .filter(|&i| cands[i].evictable && !cands[i].evicting)
            .collect();
        let idle: Vec<usize> = all.iter().copied().filter(|&i| !cands[i].in_use).collect();
        let free = if idle.is_empty() { all } else { idle };
        match pick_lru(cands.iter().copied()) {
            Pick::Chunk(i) => {
                prop_assert!(free.contains(&i));
                let oldest = free.iter().map(|&j| cands[j].stamp).min().unwrap();
                prop_assert_eq!(cands[i].stamp, oldest);
                // The first of equal stamps.
                prop_assert!(free.iter().all(|&j| j >= i || cands[j].stamp > oldest));
            }
            Pick::Busy => {
                prop_assert!(free.is_empty());
                prop_assert!(cands.iter().any(|c| c.evictable && c.evicting));
            }
            Pick::AllPinned => {
                prop_assert!(cands.iter().all(|c| !c.evictable));
            }
        }
    }

    /// A slot never holds back a block it does not remember, and a hold,
    /// once started, lasts exactly pin_ms.
    #[test]
    fn thrash_holds_only_its_block(
        events in proptest::collection::vec((0u8..3, 0u64..400, any::<bool>()), 1..40),
    ) {
        let r = rule();
        let mut slot = ThrashSlot::<u8>::default();
        let (mut now, mut clock, mut held_until) = (1u64, 1u64, 0u64);
        for (key, dt, depart) in events {
            now += dt;
            clock += dt;
            if depart {
                slot.departed(key, now, if dt % 2 == 0 { Some(clock) } else { None }, &r);
                continue;
            }
            let mut started = false;
            let held = slot.holds_back(key, now, clock, 1024, &r, &mut started);
            if slot.key != key {
                prop_assert!(!held);
            }
            if started {
                prop_assert!(held);
                held_until = now + r.pin_ms;
            } else if held && slot.key == key {
                prop_assert!(now < held_until, "held at {} past {}", now, held_until);
            }
        }
    }
}

fn rule() -> ThrashRule {
    ThrashRule {
        lapse_ms: 200,
        threshold: 3,
        reuse_factor: 4,
        reuse_ms: 5000,
        pin_ms: 1000,
    }
}

#[test]
fn migrates_for_follows_the_hints() {
    let none = Attrs::default();
    assert!(none.migrates_for(1, true));
    assert!(!none.migrates_for(1, false));
    let host = Attrs {
        preferred: Loc::Host,
        ..none
    };
    assert!(!host.migrates_for(1, true));
    let dev2 = Attrs {
        preferred: Loc::Dev(2),
        ..none
    };
    assert!(dev2.migrates_for(2, false));
    assert!(!dev2.migrates_for(1, true));
    let rm = Attrs {
        read_mostly: true,
        ..dev2
    };
    assert!(!rm.migrates_for(2, true));
    let acc = Attrs {
        accessed_by: 1 << 1,
        ..none
    };
    assert!(!acc.migrates_for(1, true));
    assert!(acc.migrates_for(0, true));
    // A pin wins over everything.
    let pinned = Attrs {
        pinned: 1 << 1,
        read_mostly: true,
        accessed_by: 1 << 1,
        preferred: Loc::Host,
    };
    assert!(pinned.migrates_for(1, false));
}

#[test]
fn ping_pong_starts_a_hold_that_ends() {
    let r = rule();
    let mut s = ThrashSlot::<u8>::default();
    let mut started = false;
    for t in [10, 60, 110] {
        s.departed(7, t, None, &r);
    }
    assert!(s.holds_back(7, 150, 0, 1024, &r, &mut started));
    assert!(started);
    started = false;
    assert!(s.holds_back(7, 150 + r.pin_ms - 1, 0, 1024, &r, &mut started));
    assert!(!started);
    assert!(!s.holds_back(7, 150 + r.pin_ms, 0, 1024, &r, &mut started));
    // Another block in the slot is never held.
    assert!(!s.holds_back(8, 160, 0, 1024, &r, &mut started));
}

#[test]
fn sharing_lasts_the_hold_time_survives_departures_and_ends_on_write() {
    let r = rule();
    let mut s = ThrashSlot::<u8>::default();
    assert!(!s.shared(4, 0));
    s.share(4, 100, &r);
    assert!(s.shared(4, 100 + r.pin_ms - 1));
    assert!(!s.shared(4, 100 + r.pin_ms));
    assert!(!s.shared(5, 150));
    // A copy evicted is a departure; the block stays shared.
    s.departed(4, 2000, Some(10), &r);
    s.departed(4, 2000 + r.lapse_ms, None, &r);
    assert!(!s.shared(4, 2000));
    s.share(4, 2000, &r);
    s.departed(4, 2000 + 2 * r.lapse_ms, Some(20), &r);
    assert!(s.shared(4, 2000 + 2 * r.lapse_ms));
    // Another block's departure takes the slot, and the sharing with it.
    s.departed(6, 2500, None, &r);
    assert!(!s.shared(4, 2500));
    s.share(4, 2600, &r);
    assert!(!s.unshare(6));
    assert!(s.shared(4, 2600));
    assert!(s.unshare(4));
    assert!(!s.shared(4, 2600));
    assert!(!s.unshare(4));
}

#[test]
fn a_chunk_in_use_outlives_older_and_newer_idle_ones() {
    let c = |stamp, in_use| Candidate {
        evictable: true,
        evicting: false,
        stamp,
        in_use,
    };
    // The oldest is in use: the next oldest idle one goes.
    assert_eq!(pick_lru([c(1, true), c(5, false), c(3, false)].into_iter()), Pick::Chunk(2));
    // All in use: plain LRU.
    assert_eq!(pick_lru([c(4, true), c(2, true)].into_iter()), Pick::Chunk(1));
}

#[test]
fn slow_departures_do_not_thrash() {
    let r = rule();
    let mut s = ThrashSlot::<u8>::default();
    let mut started = false;
    for t in [0, 300, 600, 900] {
        s.departed(1, t, None, &r);
    }
    assert!(!s.holds_back(1, 950, 0, 1024, &r, &mut started));
}

#[test]
fn an_evicted_block_wanted_back_soon_is_held() {
    let r = rule();
    let mut s = ThrashSlot::<u8>::default();
    let mut started = false;
    s.departed(3, 1000, Some(5000), &r);
    // Wanted back after the device allocated less than 4x its memory.
    assert!(s.holds_back(3, 1100, 5000 + 4 * 1024 - 1, 1024, &r, &mut started));
    let mut s = ThrashSlot::<u8>::default();
    s.departed(3, 1000, Some(5000), &r);
    // After 4x its memory the block is streamed over, not thrashing.
    assert!(!s.holds_back(3, 1100, 5000 + 4 * 1024, 1024, &r, &mut started));
    // Nor long after in time, however idle the device was.
    assert!(!s.holds_back(3, 1000 + r.reuse_ms, 5001, 1024, &r, &mut started));
}

#[test]
fn update_splits_and_merges() {
    let a = |s: usize, e: usize, rm: bool| AttrSpan {
        start: s * PAGE,
        end: e * PAGE,
        a: Attrs {
            read_mostly: rm,
            ..Attrs::default()
        },
    };
    let spans = update(&[], 0, 8 * PAGE, |x| x.read_mostly = true);
    assert_eq!(spans, [a(0, 8, true)]);
    let spans = update(&spans, 2 * PAGE, 4 * PAGE, |x| x.read_mostly = false);
    assert_eq!(spans, [a(0, 2, true), a(4, 8, true)]);
    let spans = update(&spans, 2 * PAGE, 4 * PAGE, |x| x.read_mostly = true);
    assert_eq!(spans, [a(0, 8, true)]);
    assert_eq!(common(&spans, 0, 10 * PAGE), Attrs::default());
    assert!(common(&spans, PAGE, 3 * PAGE).read_mostly);
}

/// Block 1 after three quick departures, at 1000, 1010 and 1020.
fn ping_ponged(r: &ThrashRule) -> ThrashSlot<u8> {
    let mut s = ThrashSlot::<u8>::default();
    for t in [0, 10, 20] {
        s.departed(1, 1000 + t, None, r);
    }
    s
}

/// Departures exactly `lapse_ms` apart do not count together.
#[test]
fn the_lapse_is_exclusive() {
    let r = rule();
    let mut s = ThrashSlot::<u8>::default();
    let mut started = false;
    for t in [0, r.lapse_ms, 2 * r.lapse_ms] {
        s.departed(1, 1000 + t, None, &r);
    }
    assert!(!s.holds_back(1, 1000 + 2 * r.lapse_ms, 0, 1024, &r, &mut started));
    let mut s = ThrashSlot::<u8>::default();
    for t in [0, r.lapse_ms - 1, 2 * (r.lapse_ms - 1)] {
        s.departed(1, 1000 + t, None, &r);
    }
    assert!(s.holds_back(1, 1000 + 2 * (r.lapse_ms - 1), 0, 1024, &r, &mut started));
}

/// Ping-pong needs the last departure to be recent.
#[test]
fn old_ping_pong_is_forgotten() {
    let r = rule();
    let mut s = ping_ponged(&r);
    let mut started = false;
    assert!(!s.holds_back(1, 1020 + r.lapse_ms, 0, 1024, &r, &mut started));
}

/// A hold starts the count again: after it, three new quick departures
/// are needed, not one.
#[test]
fn a_hold_resets_the_departures() {
    let r = rule();
    let mut s = ping_ponged(&r);
    let mut started = false;
    assert!(s.holds_back(1, 1030, 0, 1024, &r, &mut started));
    let after = 1030 + r.pin_ms;
    s.departed(1, after, None, &r);
    assert!(!s.holds_back(1, after + 1, 0, 1024, &r, &mut started));
}

/// Departing during a hold (the block was used in place, then left
/// again) does not end the hold.
#[test]
fn a_departure_during_a_hold_keeps_it() {
    let r = rule();
    let mut s = ping_ponged(&r);
    let mut started = false;
    assert!(s.holds_back(1, 1030, 0, 1024, &r, &mut started));
    s.departed(1, 1030 + r.lapse_ms + 1, None, &r);
    assert!(s.holds_back(1, 1030 + r.lapse_ms + 2, 0, 1024, &r, &mut started));
}

/// A departure that was no eviction keeps the eviction's clock.
#[test]
fn a_plain_departure_keeps_the_eviction_clock() {
    let r = rule();
    let mut s = ThrashSlot::<u8>::default();
    let mut started = false;
    s.departed(3, 1000, Some(5000), &r);
    s.departed(3, 1001, None, &r);
    assert!(s.holds_back(3, 1002, 5001, 1024, &r, &mut started));
}
