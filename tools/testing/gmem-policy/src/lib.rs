// SPDX-License-Identifier: GPL-2.0

//! The host build of gmem's policy core: the very file `gmem.ko` compiles
//! (`gmem_policy.rs` at the top of the repository), with its tests.

#![no_std]
#![allow(dead_code)]

#[path = "../../../../gmem_policy.rs"]
pub mod gmem_policy;

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;
