// SPDX-License-Identifier: GPL-2.0

//! An interrupt-safe spinlock that saves and restores the interrupt flag
//! (`spin_lock_irqsave()`), for the locks the data path takes per packet.
//!
//! The kernel crate's `SpinLockIrq` disables interrupts through the
//! reference-counted `local_interrupt_disable()`: a per-CPU count and a
//! saved flag on every acquisition, and an out-of-line helper for each of
//! lock, unlock and (in every build) the lockdep assertion. hv_vmbus's own
//! channel path uses `spin_lock_irqsave()`; this backend does the same,
//! through one small C function each way (the macros cannot be called from
//! Rust), and asserts the lock held only where lockdep is built in.
//!
//! The one rule the saved flag brings: guards of this lock are released in
//! the reverse order of acquisition with respect to other interrupt-
//! disabling locks held at the same time (a guard dropped while a lock taken
//! after it is still held would re-enable interrupts under that lock).
//! Every use in kmcl takes and drops them in scope order.

use kernel::{
    bindings,
    ffi::c_ulong,
    sync::lock::{
        Backend,
        Lock, //
    },
};

mod ffi {
    use kernel::{
        bindings,
        ffi::c_ulong, //
    };

    extern "C" {
        pub(super) fn kmcl_spin_lock_irqsave(lock: *mut bindings::spinlock_t) -> c_ulong;
        pub(super) fn kmcl_spin_trylock_irqsave(
            lock: *mut bindings::spinlock_t,
            flags: *mut c_ulong,
        ) -> bool;
        pub(super) fn kmcl_spin_unlock_irqrestore(lock: *mut bindings::spinlock_t, flags: c_ulong);
    }
}

/// A spinlock that disables interrupts while held, restoring the flag the
/// holder had (any context).
pub(crate) type IrqSpinLock<T> = Lock<T, IrqSaveBackend>;

/// Creates an [`IrqSpinLock`] initialiser with a lock class of its own
/// (one per call site, as the kernel's `new_spinlock_irq!`).
macro_rules! new_irq_spinlock {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::sys::lock::IrqSpinLock::new(
            $inner,
            ::kernel::optional_name!($($name)?),
            ::kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_irq_spinlock;

/// The backend of [`IrqSpinLock`]: `spin_lock_irqsave()` and
/// `spin_unlock_irqrestore()`; the guard keeps the saved flag.
pub(crate) struct IrqSaveBackend;

// SAFETY: `lock` and `try_lock` return only with the spinlock held (and
// interrupts off), `unlock` releases it with the flag saved by the matching
// acquisition, and `init` initialises the state once, before any use: the
// lock provides mutual exclusion.
unsafe impl Backend for IrqSaveBackend {
    type State = bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: the caller passes a valid pointer to uninitialised
        // memory for the lock, and a name and key valid for the lock's
        // lifetime.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    #[inline]
    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: the caller passes an initialised lock.
        unsafe { ffi::kmcl_spin_lock_irqsave(ptr) }
    }

    #[inline]
    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags: c_ulong = 0;
        // SAFETY: the caller passes an initialised lock; `flags` is a
        // valid place for the saved flag.
        if unsafe { ffi::kmcl_spin_trylock_irqsave(ptr, &mut flags) } {
            Some(flags)
        } else {
            None
        }
    }

    #[inline]
    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: the caller holds the lock, taken by `lock` or `try_lock`,
        // which returned `flags`.
        unsafe { ffi::kmcl_spin_unlock_irqrestore(ptr, *flags) }
    }

    #[inline]
    unsafe fn assert_is_held(_ptr: *mut Self::State) {
        // Without lockdep the kernel's assertion is empty: no call.
        #[cfg(CONFIG_LOCKDEP)]
        // SAFETY: the caller passes an initialised lock.
        unsafe {
            bindings::spin_assert_is_held(_ptr)
        }
    }
}
