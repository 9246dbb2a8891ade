// SPDX-License-Identifier: GPL-2.0

//! Queries about the current execution context (C macros, through glue).

use kernel::ffi::c_char;

mod ffi {
    use kernel::ffi::c_char;

    extern "C" {
        pub(super) fn kmcl_interrupt_cpu() -> u32;
        #[cfg(kmcl_kunit)]
        pub(super) fn kmcl_pin_current(cpu: u32) -> core::ffi::c_int;
        pub(super) fn kmcl_may_sleep() -> bool;
        pub(super) fn kmcl_might_sleep();
        pub(super) fn kmcl_refuse_atomic(function: *const c_char, owner: *const core::ffi::c_void);
        pub(super) fn kmcl_refuse_handle(
            function: *const c_char,
            handle: *const core::ffi::c_void,
            why: *const c_char,
        );
        #[cfg(kmcl_kunit)]
        pub(super) fn kmcl_test_bh_disable();
        #[cfg(kmcl_kunit)]
        pub(super) fn kmcl_test_bh_enable();
    }
}

/// The CPU the caller runs on if it runs in interrupt context (hard or
/// soft: it stays on that CPU until it returns), `None` in process
/// context (KMCL's `PASSIVE_LEVEL`; it may still hold a spinlock or have
/// bottom halves disabled: [`may_sleep`] tells).
pub(crate) fn interrupt_cpu() -> Option<usize> {
    // SAFETY: `kmcl_interrupt_cpu` takes no arguments and only reads the
    // preemption count and the CPU number; any context.
    let cpu = unsafe { ffi::kmcl_interrupt_cpu() };
    (cpu != u32::MAX).then_some(cpu as usize)
}

/// Whether the caller may sleep: process context with bottom halves and
/// interrupts enabled and (where the kernel counts it) no spinlock held.
pub(crate) fn may_sleep() -> bool {
    // SAFETY: reads the preemption count and the interrupt flag; any
    // context.
    unsafe { ffi::kmcl_may_sleep() }
}

/// The kernel's `might_sleep()` (its checks run in debug kernels), for a
/// caller [`may_sleep`] let through.
pub(crate) fn might_sleep() {
    // SAFETY: `might_sleep()` only checks the context; any context.
    unsafe { ffi::kmcl_might_sleep() }
}

/// Logs (rate-limited) that `function` was refused because its caller may
/// not sleep, naming `owner` (a `struct module`, or null: the task).
pub(crate) fn refuse_atomic(function: &'static kernel::str::CStr, owner: usize) {
    let name: *const c_char = kernel::str::CStrExt::as_char_ptr(function);
    // SAFETY: `name` is a NUL-terminated static string; `owner` is null or
    // the module that owns the channel, which is loaded (it is calling).
    unsafe { ffi::kmcl_refuse_atomic(name, owner as *const core::ffi::c_void) }
}

/// Logs (rate-limited) that `function` refused `handle`, and `why`
/// ("stale or unknown", "in-flight", ...). Any context.
pub(crate) fn refuse_handle(
    function: &'static kernel::str::CStr,
    handle: usize,
    why: &'static kernel::str::CStr,
) {
    let name: *const c_char = kernel::str::CStrExt::as_char_ptr(function);
    let why: *const c_char = kernel::str::CStrExt::as_char_ptr(why);
    // SAFETY: `name` and `why` are NUL-terminated static strings; the
    // handle is only printed, never dereferenced.
    unsafe { ffi::kmcl_refuse_handle(name, handle as *const core::ffi::c_void, why) }
}

/// Runs `f` with bottom halves disabled (tests of atomic callers).
#[cfg(kmcl_kunit)]
pub(crate) fn with_bh_disabled<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: disables bottom halves on this CPU; enabled again below.
    unsafe { ffi::kmcl_test_bh_disable() };
    let r = f();
    // SAFETY: pairs with the disable above, on the same CPU (preemption
    // is off while bottom halves are).
    unsafe { ffi::kmcl_test_bh_enable() };
    r
}

/// Lets the calling thread run on CPU `cpu` only (for tests; kunit runs
/// each case in a thread of its own). `-EINVAL` for an offline CPU.
/// Process context.
#[cfg(kmcl_kunit)]
pub(crate) fn pin_current(cpu: u32) -> kernel::error::Result {
    // SAFETY: changes only the calling thread's affinity; process context
    // (the caller's promise), where set_cpus_allowed_ptr() may sleep.
    kernel::error::to_result(unsafe { ffi::kmcl_pin_current(cpu) })
}

/// The current task, as a number that identifies it while it runs (for
/// recognising a thread that calls back into what it holds).
pub(crate) fn current_task() -> usize {
    kernel::task::Task::current_raw() as usize
}
