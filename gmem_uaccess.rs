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
    read_arg_sized(arg, core::mem::size_of::<T>())
}

/// Reads the first `len` bytes of a `T` from user address `arg`, the rest
/// zero: the structure of a binary built before `T` grew.
///
/// `T` must be a plain uapi struct (any bytes are a valid value) whose
/// `Default` is all zeroes.
pub(crate) fn read_arg_sized<T: Default>(arg: usize, len: usize) -> Result<T> {
    let mut v = T::default();
    let len = len.min(core::mem::size_of::<T>());
    let mut r = UserSlice::new(arg as _, len).reader();
    // SAFETY: Per the contract, any bytes written there form a valid `T`;
    // `len` is within it.
    let buf = unsafe { core::slice::from_raw_parts_mut((&raw mut v).cast::<u8>(), len) };
    r.read_slice(buf)?;
    Ok(v)
}

/// Writes `v` to user address `arg`.
///
/// `T` must be a plain uapi struct without padding holes (the uapi headers
/// fix their layout), so that all its bytes are initialised.
pub(crate) fn write_arg<T>(arg: usize, v: &T) -> Result {
    write_arg_sized(arg, v, core::mem::size_of::<T>())
}

/// Writes the first `len` bytes of `v` (all of it if larger) to user
/// address `arg`; `T` as for [`write_arg`].
pub(crate) fn write_arg_sized<T>(arg: usize, v: &T, len: usize) -> Result {
    let len = len.min(core::mem::size_of::<T>());
    let mut w = UserSlice::new(arg as _, len).writer();
    // SAFETY: Per the contract, every byte of `*v` is initialised; `len`
    // is within it.
    let buf = unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), len) };
    w.write_slice(buf)
}
