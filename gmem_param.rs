// SPDX-License-Identifier: GPL-2.0

//! Module parameters for gmem.ko and gmem_npu.ko.  The 6.12 `module!` macro
//! has none, so `uint_param!` is what `module_param(name, uint, 0444)` and
//! `MODULE_PARM_DESC` expand to in C.  Each crate includes this file as a
//! module of its own (`#[macro_use] mod gmem_param;`).

use kernel::bindings;
use kernel::types::Opaque;

/// Declares a `uint` module parameter `$name` for the variable `$var` (a
/// `static mut c_uint` the module loader writes before `init` runs), with
/// sysfs permissions `$perm`: 0o444, or 0o644 for one that root may change
/// at run time (a word store, read with `param_value!`).
macro_rules! uint_param {
    ($var:ident, $name:literal, $perm:literal, $param:ident, $type:ident, $desc:ident, $desc_text:literal) => {
        #[link_section = "__param"]
        #[used]
        static $param: $crate::gmem_param::KernelParam =
            $crate::gmem_param::KernelParam(kernel::bindings::kernel_param {
                name: concat!($name, "\0").as_ptr().cast(),
                mod_: (&raw mut $crate::gmem_param::__this_module).cast(),
                ops: &raw const kernel::bindings::param_ops_uint,
                perm: $perm,
                level: -1,
                flags: 0,
                __bindgen_anon_1: kernel::bindings::kernel_param__bindgen_ty_1 {
                    arg: (&raw mut $var).cast(),
                },
            });

        #[link_section = ".modinfo"]
        #[used]
        static $type: [u8; concat!("parmtype=", $name, ":uint\0").len()] =
            *$crate::gmem_param::konst_bytes(concat!("parmtype=", $name, ":uint\0"));

        #[link_section = ".modinfo"]
        #[used]
        static $desc: [u8; concat!("parm=", $name, ":", $desc_text, "\0").len()] =
            *$crate::gmem_param::konst_bytes(concat!("parm=", $name, ":", $desc_text, "\0"));
    };
}

/// Reads a parameter declared with `uint_param!`.
macro_rules! param_value {
    ($var:ident) => {
        // SAFETY: A word the loader, or sysfs for a writable parameter,
        // stores whole: a volatile read sees one value or the other.
        unsafe { core::ptr::read_volatile(&raw const $var) }
    };
}

/// The bytes of a string literal as an array reference, in a constant.
pub(crate) const fn konst_bytes<const N: usize>(s: &'static str) -> &'static [u8; N] {
    match s.as_bytes().first_chunk::<N>() {
        Some(a) => a,
        None => panic!("length mismatch"),
    }
}

/// A `struct kernel_param` in the `__param` section.
#[repr(transparent)]
pub(crate) struct KernelParam(pub(crate) bindings::kernel_param);

// SAFETY: The loader and sysfs serialise access to parameters; Rust code
// only reads the values.
unsafe impl Sync for KernelParam {}

// Only its address is taken; `struct module` has empty members in some
// configurations, which the FFI lint dislikes (the module! macro has the
// same declaration).
#[allow(improper_ctypes)]
extern "C" {
    pub(crate) static mut __this_module: Opaque<bindings::module>;
}
