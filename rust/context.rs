// SPDX-License-Identifier: GPL-2.0

//! Queries about the current execution context (C macros, through glue).

mod ffi {
    extern "C" {
        pub(super) fn kmcl_in_task() -> bool;
    }
}

/// Whether the caller runs in process context (may sleep, unless it holds
/// a spinlock): KMCL's `PASSIVE_LEVEL`.
pub fn in_task() -> bool {
    // SAFETY: `kmcl_in_task` takes no arguments and only reads the
    // preemption count; it may be called from any context.
    unsafe { ffi::kmcl_in_task() }
}
