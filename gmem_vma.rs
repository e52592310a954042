// SPDX-License-Identifier: GPL-2.0

//! gmem regions: the MAP_PEER_SHARED ranges of one address space.
//!
//! A region is recorded when core MM reports a new MAP_PEER_SHARED mapping
//! (the mmap hook, under `mmap_lock`) and lives until the process exits.
//! Regions are kept by start address; each owns one reference on its
//! address space's notifier (see `gmem_core`).

use kernel::prelude::*;
use kernel::rbtree::RBTree;

/// The regions of one address space, by start address; values are ends.
pub(crate) struct Regions {
    by_start: RBTree<usize, usize>,
    count: usize,
}

impl Regions {
    pub(crate) fn new() -> Self {
        Self { by_start: RBTree::new(), count: 0 }
    }

    /// Records `[start, end)` and returns whether it is a new region.  A
    /// mapping placed over an old one (MAP_FIXED) replaces the record with
    /// the same start.
    pub(crate) fn insert(&mut self, start: usize, end: usize) -> Result<bool> {
        if start >= end {
            return Err(EINVAL);
        }
        let old = self.by_start.try_create_and_insert(start, end, GFP_KERNEL)?;
        if old.is_none() {
            self.count += 1;
        }
        Ok(old.is_none())
    }

    /// Forgets every region and returns how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        self.by_start = RBTree::new();
        core::mem::take(&mut self.count)
    }
}
