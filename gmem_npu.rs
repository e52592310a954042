// SPDX-License-Identifier: GPL-2.0

//! gmem_npu: a simulated NPU, a real driver on gmem's interface.
//!
//! The NPU is software, but it is written as a device driver would be: it
//! registers with gmem.ko through the exported C interface (via the
//! [`gmem_dev::GmemDevOps`] trait) and gmem drives its MMU through those
//! operations.  Its MMU, job engine and device memory land with the issues
//! that need them; for now it registers one device whose MMU refuses every
//! mapping, which is what the driver boundary needs to be exercised.

use kernel::c_str;
use kernel::prelude::*;

mod gmem_dev;

use gmem_dev::{GmemDevOps, Prot, Registration};

module! {
    type: NpuModule,
    name: "gmem_npu",
    author: "gmem developers",
    description: "Simulated NPU for gmem",
    license: "GPL",
}

/// One simulated NPU.
struct Npu;

/// The NPU's page table for one address space.
struct NpuContext;

impl GmemDevOps for Npu {
    type Context = NpuContext;

    fn ctx_create(&self) -> Result<NpuContext> {
        Ok(NpuContext)
    }

    fn map(&self, _ctx: &NpuContext, _va: usize, _pfns: &[usize], _prot: Prot) -> Result {
        // No page table yet: nothing can be mapped.
        Err(Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32)))
    }

    fn invalidate(&self, _ctx: &NpuContext, _start: usize, _end: usize) {
        // Nothing is ever mapped, so there is nothing to remove.
    }
}

struct NpuModule {
    dev: Registration<Npu>,
}

impl kernel::Module for NpuModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let dev = Registration::new(c_str!("npu0"), gmem_dev::caps::REPLAYABLE, Npu)?;
        pr_info!("npu0 registered with gmem as device {}\n", dev.id());
        Ok(NpuModule { dev })
    }
}

impl Drop for NpuModule {
    fn drop(&mut self) {
        pr_info!("npu0 (gmem device {}) going away\n", self.dev.id());
    }
}
