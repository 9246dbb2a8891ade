// SPDX-License-Identifier: GPL-2.0

//! Queries about the current execution context (C macros, through glue).

mod ffi {
    extern "C" {
        pub(super) fn kmcl_in_task() -> bool;
        pub(super) fn kmcl_pin_current(cpu: u32) -> core::ffi::c_int;
    }
}

/// Whether the caller runs in process context (may sleep, unless it holds
/// a spinlock): KMCL's `PASSIVE_LEVEL`.
pub(crate) fn in_task() -> bool {
    // SAFETY: `kmcl_in_task` takes no arguments and only reads the
    // preemption count; it may be called from any context.
    unsafe { ffi::kmcl_in_task() }
}

/// Lets the calling thread run on CPU `cpu` only (for tests; kunit runs
/// each case in a thread of its own). `-EINVAL` for an offline CPU.
/// Process context.
#[cfg(CONFIG_KUNIT)]
pub(crate) fn pin_current(cpu: u32) -> kernel::error::Result {
    // SAFETY: changes only the calling thread's affinity; process context
    // (the caller's promise), where set_cpus_allowed_ptr() may sleep.
    kernel::error::to_result(unsafe { ffi::kmcl_pin_current(cpu) })
}
