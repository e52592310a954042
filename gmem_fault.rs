// SPDX-License-Identifier: GPL-2.0

//! gmem fault handling: device faults resolved with `hmm_range_fault`,
//! CPU faults on device-resident pages, migration and eviction.
//!
//! Nothing lives here yet: the foundation only records regions.  The device
//! fault path arrives with in-place shared memory (see the issue tracker);
//! this file is where it goes, per the layout in Documentation/mm/gmem.rst.
