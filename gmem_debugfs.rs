// SPDX-License-Identifier: GPL-2.0

//! A thin debugfs wrapper: a directory removed on drop, holding read-only
//! files whose text a Rust function writes (through `seq_file`), and
//! control files that also act on what is written to them.
//!
//! Failures to create debugfs entries are ignored, as debugfs asks of its
//! users: statistics are not worth failing a module load for.

use core::fmt;
use core::ptr;
use kernel::bindings;
use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;

/// Writes to a `seq_file` being shown.
pub(crate) struct SeqWriter(*mut bindings::seq_file);

impl fmt::Write for SeqWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: `self.0` is the `seq_file` of the running show callback.
        // On overflow seq_file retries the whole show with a larger buffer.
        unsafe { bindings::seq_write(self.0, s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// What a file shows.
pub(crate) type ShowFn = fn(&mut SeqWriter) -> fmt::Result;

/// A debugfs directory, removed with its files on drop.
///
/// # Invariants
///
/// `dentry` is what `debugfs_create_dir()` returned (possibly an error
/// pointer, which debugfs accepts everywhere).
pub(crate) struct Dir {
    dentry: *mut bindings::dentry,
}

// SAFETY: A dentry pointer may be used and removed from any thread.
unsafe impl Send for Dir {}
// SAFETY: `Dir` has no interior mutability.
unsafe impl Sync for Dir {}

impl Dir {
    pub(crate) fn new(name: &CStr) -> Self {
        // SAFETY: `name` is NUL-terminated; a null parent is the root.
        let dentry = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), ptr::null_mut()) };
        Self { dentry }
    }

    /// Adds a read-only file whose contents `show` writes on each read.
    pub(crate) fn show_file(&self, name: &CStr, show: ShowFn) {
        // SAFETY: `name` is NUL-terminated, the parent is ours (or an error
        // pointer debugfs ignores), and `SHOW_FOPS` is static.  The data
        // pointer is a function pointer, valid as long as the module.
        unsafe {
            bindings::debugfs_create_file(
                name.as_char_ptr(),
                0o444,
                self.dentry,
                show as *mut c_void,
                &SHOW_FOPS.0,
            )
        };
    }
}

// The control files are used by gmem_npu.ko only, the crate that includes
// this file as well.

/// What a control file shows, and what writing to it does.
#[allow(dead_code)]
pub(crate) trait Control: Sync + 'static {
    /// The file's text.
    fn show(&self, w: &mut SeqWriter) -> fmt::Result;
    /// Acts on a write of `input` (at most [`CONTROL_INPUT_MAX`] bytes).
    fn write(&self, input: &[u8]) -> Result;
}

/// Longest write a control file takes.
#[allow(dead_code)]
pub(crate) const CONTROL_INPUT_MAX: usize = 24;

#[allow(dead_code)]
impl Dir {
    /// A subdirectory, removed with this one.
    pub(crate) fn subdir(&self, name: &CStr) -> Dir {
        // SAFETY: `name` is NUL-terminated; the parent is ours (or an error
        // pointer debugfs ignores).
        let dentry = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), self.dentry) };
        Dir { dentry }
    }

    /// Adds a file that shows `ctl` and hands it what is written.
    ///
    /// # Safety
    ///
    /// `ctl` must stay valid until this directory is dropped.
    pub(crate) unsafe fn control_file<T: Control>(&self, name: &CStr, ctl: &T) {
        // SAFETY: As in `show_file`; `ctl` outlives the file per the
        // function's contract.
        unsafe {
            bindings::debugfs_create_file(
                name.as_char_ptr(),
                0o644,
                self.dentry,
                ptr::from_ref(ctl).cast_mut().cast(),
                &ControlFops::<T>::FOPS,
            )
        };
    }
}

#[allow(dead_code)]
struct ControlFops<T>(core::marker::PhantomData<T>);

#[allow(dead_code)]
impl<T: Control> ControlFops<T> {
    const FOPS: bindings::file_operations = bindings::file_operations {
        open: Some(Self::open),
        read: Some(bindings::seq_read),
        write: Some(Self::write),
        llseek: Some(bindings::seq_lseek),
        release: Some(bindings::single_release),
        owner: THIS_MODULE,
        // SAFETY: All-zero is "not implemented" for every other member.
        ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
    };

    /// # Safety
    ///
    /// Called by VFS on a file of `control_file`, whose `i_private` is a
    /// live `T`.
    unsafe extern "C" fn open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: Per the function's contract.
        unsafe { bindings::single_open(file, Some(Self::show), (*inode).i_private) }
    }

    /// # Safety
    ///
    /// Called by `seq_read` on a file opened by [`Self::open`].
    unsafe extern "C" fn show(m: *mut bindings::seq_file, _v: *mut c_void) -> c_int {
        // SAFETY: `single_open()` stored the `T` in `private`.
        let ctl = unsafe { &*(*m).private.cast::<T>() };
        match ctl.show(&mut SeqWriter(m)) {
            Ok(()) => 0,
            Err(_) => EINVAL.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by VFS on a file opened by [`Self::open`] with a user buffer
    /// of `len` bytes.
    unsafe extern "C" fn write(
        file: *mut bindings::file,
        buf: *const kernel::ffi::c_char,
        len: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: `single_open()` made `private_data` the `seq_file` whose
        // `private` is the `T`.
        let ctl = unsafe {
            &*(*(*file).private_data.cast::<bindings::seq_file>())
                .private
                .cast::<T>()
        };
        let mut input = [0u8; CONTROL_INPUT_MAX];
        if len > input.len() {
            return EINVAL.to_errno() as isize;
        }
        let mut reader = kernel::uaccess::UserSlice::new(buf as usize, len).reader();
        let res = reader
            .read_slice(&mut input[..len])
            .and_then(|()| ctl.write(&input[..len]));
        match res {
            Ok(()) => len as isize,
            Err(e) => e.to_errno() as isize,
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: Per the invariant; after this no file callback is running
        // or can start (debugfs waits for active users).
        unsafe { bindings::debugfs_remove(self.dentry) };
    }
}

/// `file_operations::open` of gmem's debugfs files.
///
/// # Safety
///
/// Called by the VFS only, for a file this module created, with `inode` and
/// `file` valid; `i_private` is the data pointer given at creation.
unsafe extern "C" fn show_open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: VFS passes a valid inode and file; debugfs stored our data
    // pointer in `i_private`.
    unsafe { bindings::single_open(file, Some(show_seq), (*inode).i_private) }
}

/// `seq_file` show of gmem's debugfs files.
///
/// # Safety
///
/// Called by seq_file only, for a file `show_open` opened, with `m` valid.
unsafe extern "C" fn show_seq(m: *mut bindings::seq_file, _v: *mut c_void) -> c_int {
    // SAFETY: `single_open()` stored the `ShowFn` given to `show_file` in
    // `private`; function and data pointers have the same size here.
    let show: ShowFn = unsafe { core::mem::transmute::<*mut c_void, ShowFn>((*m).private) };
    match show(&mut SeqWriter(m)) {
        Ok(()) => 0,
        Err(_) => EINVAL.to_errno(),
    }
}

#[repr(transparent)]
struct Fops(bindings::file_operations);

// SAFETY: The table is never written; it holds function pointers and the
// module's address.
unsafe impl Sync for Fops {}

/// The owner of the files: an open file pins the module, whose code and
/// `file_operations` its release still uses (debugfs waits at removal
/// only for the calls in progress, not for open files).
const THIS_MODULE: *mut bindings::module =
    (&raw mut crate::gmem_param::__this_module).cast::<bindings::module>();

static SHOW_FOPS: Fops = Fops(bindings::file_operations {
    open: Some(show_open),
    read: Some(bindings::seq_read),
    llseek: Some(bindings::seq_lseek),
    release: Some(bindings::single_release),
    owner: THIS_MODULE,
    // SAFETY: All-zero is "not implemented" for every other member.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});
