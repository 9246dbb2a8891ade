// SPDX-License-Identifier: GPL-2.0

//! kmcl's own workqueues.
//!
//! Every work item kmcl queues runs on one of these two queues rather than
//! the system ones, so that unloading the module — which destroys them, and
//! `destroy_workqueue()` first waits for all queued and running work — can
//! never leave a work item to run after kmcl's code is gone.

use core::{
    ptr::null_mut,
    sync::atomic::{
        AtomicPtr,
        Ordering, //
    },
};

use kernel::{
    bindings,
    prelude::*,
    workqueue::{
        self,
        Queue, //
    },
};

mod ffi {
    use kernel::bindings::workqueue_struct;

    extern "C" {
        pub(super) fn kmcl_wq_alloc(bh: bool) -> *mut workqueue_struct;
        pub(super) fn kmcl_wq_destroy(wq: *mut workqueue_struct);
    }
}

/// The process-context queue, or null outside the module's lifetime.
static PROCESS: AtomicPtr<bindings::workqueue_struct> = AtomicPtr::new(null_mut());
/// The BH (softirq) queue, or null outside the module's lifetime.
static BH: AtomicPtr<bindings::workqueue_struct> = AtomicPtr::new(null_mut());

/// Owns kmcl's workqueues; dropping it (at module exit) drains and
/// destroys them.
///
/// # Invariants
///
/// While a `Queues` exists, `PROCESS` and `BH` point to live workqueues it
/// allocated. There is at most one.
pub struct Queues(());

impl Queues {
    /// Allocates the queues. Called once, from module init.
    pub fn new() -> Result<Self> {
        // SAFETY: `kmcl_wq_alloc` may be called from process context and
        // returns a new workqueue or null.
        let process = unsafe { ffi::kmcl_wq_alloc(false) };
        if process.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: As above.
        let bh = unsafe { ffi::kmcl_wq_alloc(true) };
        if bh.is_null() {
            // SAFETY: `process` was allocated above and nothing uses it.
            unsafe { ffi::kmcl_wq_destroy(process) };
            return Err(ENOMEM);
        }
        // INVARIANT: both pointers are live queues owned by this value.
        PROCESS.store(process, Ordering::Release);
        BH.store(bh, Ordering::Release);
        Ok(Self(()))
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        // Destroy while the pointers are still published: work running
        // during the drain may queue more work, which the drain also waits
        // for.
        let process = PROCESS.load(Ordering::Acquire);
        let bh = BH.load(Ordering::Acquire);
        // SAFETY: By the type invariants both are live queues we own; no
        // kmcl code runs after module exit, so nothing queues on them once
        // they are drained.
        unsafe {
            ffi::kmcl_wq_destroy(bh);
            ffi::kmcl_wq_destroy(process);
        }
        PROCESS.store(null_mut(), Ordering::Release);
        BH.store(null_mut(), Ordering::Release);
    }
}

fn queue(
    ptr: &AtomicPtr<bindings::workqueue_struct>,
    fallback: fn() -> &'static Queue,
) -> &'static Queue {
    let p = ptr.load(Ordering::Acquire);
    if p.is_null() {
        return fallback();
    }
    // SAFETY: A non-null pointer is a live queue owned by the module's
    // `Queues`, which is dropped only at module exit, after which no kmcl
    // code (and so no user of this reference) runs.
    unsafe { Queue::from_raw(p) }
}

/// kmcl's process-context workqueue.
pub fn process() -> &'static Queue {
    queue(&PROCESS, workqueue::system)
}

/// kmcl's BH (softirq context) workqueue.
pub fn bh() -> &'static Queue {
    queue(&BH, workqueue::system_bh)
}
