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

/*
 * Layout facts of C structures that the Rust code reads through bindgen's
 * view of them.  gmem checks the two agree before it does anything (see
 * gmem_core.rs: check_layouts), because a silent mismatch would corrupt
 * memory: one was seen for struct task_struct with this toolchain.
 */
#include <linux/fs.h>
#include <linux/hmm.h>
#include <linux/miscdevice.h>
#include <linux/mm_types.h>
#include <linux/mmu_notifier.h>
#include <linux/seq_file.h>

const unsigned long gmem_c_layout[] = {
	offsetof(struct vm_area_struct, vm_start),
	offsetof(struct vm_area_struct, vm_end),
	offsetof(struct vm_area_struct, vm_flags),
	offsetof(struct mmu_notifier_range, start),
	offsetof(struct mmu_notifier_range, end),
	offsetof(struct mmu_notifier_range, flags),
	offsetof(struct mmu_notifier_range, event),
	sizeof(struct hmm_range),
	sizeof(struct mmu_notifier),
	sizeof(struct mmu_interval_notifier),
	sizeof(struct work_struct),
	sizeof(struct mutex),
	offsetof(struct seq_file, private),
	offsetof(struct inode, i_private),
	offsetof(struct file, private_data),
	sizeof(struct miscdevice),
	sizeof(struct file_operations),
	offsetof(struct file_operations, unlocked_ioctl),
	offsetof(struct file_operations, poll),
	sizeof(struct wait_queue_head),
	sizeof(struct kernel_param),
};
EXPORT_SYMBOL_GPL(gmem_c_layout);
