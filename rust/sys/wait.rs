// SPDX-License-Identifier: GPL-2.0

//! Bounded waits: how kmcl waits for anything the other endpoint (or its
//! driver) must do, so that no wait on it lasts for ever.

use kernel::sync::{
    lock::{
        Backend,
        Guard, //
    },
    CondVar, CondVarTimeoutResult,
};

/// Waits on `cv` (with `guard` held, as [`CondVar::wait`] does) until
/// `done` holds or `ms` milliseconds have passed; whether `done` held. A
/// signal ends the wait early, as an expiry does. Process context.
pub(crate) fn wait_bounded<T: ?Sized, B: Backend>(
    cv: &CondVar,
    guard: &mut Guard<'_, T, B>,
    ms: u32,
    mut done: impl FnMut(&T) -> bool,
) -> bool {
    let mut left = kernel::time::msecs_to_jiffies(ms);
    while !done(&**guard) {
        match cv.wait_interruptible_timeout(guard, left) {
            CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
            CondVarTimeoutResult::Timeout | CondVarTimeoutResult::Signal { .. } => {
                return done(&**guard);
            }
        }
    }
    true
}
