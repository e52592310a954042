// SPDX-License-Identifier: GPL-2.0

//! Copying fixed-size uapi structures from and to user space, for the
//! ioctls of `/dev/gmem` and of the drivers (both crates include this
//! file).

use kernel::prelude::*;
use kernel::uaccess::UserSlice;

/// Reads a `T` from user address `arg`.
///
/// `T` must be a plain uapi struct: any bytes are a valid value.
pub(crate) fn read_arg<T: Default>(arg: usize) -> Result<T> {
    let mut v = T::default();
    let mut r = UserSlice::new(arg as _, core::mem::size_of::<T>()).reader();
    // SAFETY: Per the contract, any bytes written there form a valid `T`.
    let buf = unsafe {
        core::slice::from_raw_parts_mut((&raw mut v).cast::<u8>(), core::mem::size_of::<T>())
    };
    r.read_slice(buf)?;
    Ok(v)
}

/// Writes `v` to user address `arg`.
///
/// `T` must be a plain uapi struct without padding holes (the uapi headers
/// fix their layout), so that all its bytes are initialised.
pub(crate) fn write_arg<T>(arg: usize, v: &T) -> Result {
    let mut w = UserSlice::new(arg as _, core::mem::size_of::<T>()).writer();
    // SAFETY: Per the contract, every byte of `*v` is initialised.
    let buf = unsafe {
        core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>())
    };
    w.write_slice(buf)
}
