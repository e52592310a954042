// SPDX-License-Identifier: GPL-2.0
/*
 * Exports of gmem.ko.  The functions are written in Rust (gmem_core.rs) as
 * extern "C" with the prototypes of <linux/gmem.h>; Rust cannot emit
 * EXPORT_SYMBOL in 6.12, so the export table entries are made here.
 */
#include <linux/export.h>
#include <linux/gmem.h>

EXPORT_SYMBOL_GPL(gmem_dev_register);
EXPORT_SYMBOL_GPL(gmem_dev_unregister);
EXPORT_SYMBOL_GPL(gmem_dev_id);
EXPORT_SYMBOL_GPL(gmem_ctx_attach);
EXPORT_SYMBOL_GPL(gmem_ctx_detach);
EXPORT_SYMBOL_GPL(gmem_ctx_drvctx);
EXPORT_SYMBOL_GPL(gmem_ctx_set_policy);
EXPORT_SYMBOL_GPL(gmem_dev_fault);
