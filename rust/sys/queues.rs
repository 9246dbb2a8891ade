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
        AtomicBool,
        AtomicPtr,
        Ordering, //
    },
};

use kernel::{
    bindings,
    prelude::*,
    sync::Arc,
    workqueue::{
        self,
        Queue, //
    },
};

mod ffi {
    use core::ffi::c_void;
    use kernel::bindings::workqueue_struct;

    extern "C" {
        pub(super) fn kmcl_wq_alloc(bh: bool) -> *mut workqueue_struct;
        pub(super) fn kmcl_wq_destroy(wq: *mut workqueue_struct);
        pub(super) fn kmcl_queue_work_on(
            cpu: u32,
            wq: *mut workqueue_struct,
            work: *mut kernel::bindings::work_struct,
        ) -> bool;
        pub(super) fn kmcl_timer_new() -> *mut c_void;
        pub(super) fn kmcl_timer_arm(
            t: *mut c_void,
            wq: *mut workqueue_struct,
            f: unsafe extern "C" fn(*mut c_void),
            ctx: *mut c_void,
            usecs: u32,
        ) -> bool;
        pub(super) fn kmcl_timer_disarm(t: *mut c_void) -> *mut c_void;
        pub(super) fn kmcl_timer_free(t: *mut c_void);
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
pub(crate) struct Queues(());

impl Queues {
    /// Allocates the queues. Called once, from module init.
    pub(crate) fn new() -> Result<Self> {
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
pub(crate) fn process() -> &'static Queue {
    queue(&PROCESS, workqueue::system)
}

/// kmcl's BH (softirq context) workqueue.
pub(crate) fn bh() -> &'static Queue {
    queue(&BH, workqueue::system_bh)
}

/// Queues `w` on kmcl's BH queue on CPU `cpu` if that CPU is online, else
/// on the current CPU (as [`Queue::enqueue`] does). A work item already
/// queued stays where it is.
pub(crate) fn enqueue_bh_on<W, const ID: u64>(cpu: u32, w: W) -> W::EnqueueOutput
where
    W: workqueue::RawWorkItem<ID> + Send + 'static,
{
    // `Queue` is a transparent wrapper of the C workqueue (`from_raw`).
    let wq = core::ptr::from_ref(bh())
        .cast::<bindings::workqueue_struct>()
        .cast_mut();
    // SAFETY: as in `Queue::enqueue`: the closure queues the work item
    // `__enqueue` hands it on a live queue (kmcl's, alive while its code
    // runs, or the system BH queue) and returns `false` only when the item
    // is already queued, which is all `queue_work_on()` does.
    unsafe { w.__enqueue(move |work| ffi::kmcl_queue_work_on(cpu, wq, work)) }
}

/// What a [`Timer`] calls when it fires; `K` tells a type's timers apart.
pub(crate) trait TimerFired<const K: u8>: Send + Sync + Sized {
    /// The timer `K` of `self`.
    fn timer(&self) -> &Timer<Self, K>;

    /// Runs in process context on kmcl's queue, with the reference the
    /// arming took; the timer is disarmed (it may be armed again).
    fn fired(this: Arc<Self>);
}

/// What [`Timer::arm`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arming {
    /// Armed by this call.
    Armed,
    /// Armed already: that arming fires.
    AlreadyArmed,
    /// Not armed: a [`Timer::disarm`] is cancelling it (an arming from
    /// [`TimerFired::fired`] can meet one).
    Refused,
}

/// A one-shot timer on kmcl's process queue whose arming holds a reference
/// to a `T` until it fires (then [`TimerFired::fired`] gets it) or is
/// disarmed; armed once at a time.
///
/// # Invariants
///
/// `raw` is a `kmcl_timer` from `kmcl_timer_new`, owned. While armed, its
/// context is a pointer from `Arc::into_raw` of a `T` that the arming
/// owns. `armed` is set from before an arming is made until it fired
/// (before `fired` runs), was disarmed or was refused: one arming at a
/// time.
pub(crate) struct Timer<T: TimerFired<K>, const K: u8> {
    raw: core::ptr::NonNull<core::ffi::c_void>,
    armed: AtomicBool,
    _t: core::marker::PhantomData<Arc<T>>,
}

// SAFETY: the C timer may be armed and disarmed from any thread; the `T`
// references it holds are `Send + Sync`.
unsafe impl<T: TimerFired<K>, const K: u8> Send for Timer<T, K> {}

// SAFETY: As for `Send`; `armed` lets one arming through at a time.
unsafe impl<T: TimerFired<K>, const K: u8> Sync for Timer<T, K> {}

impl<T: TimerFired<K>, const K: u8> Timer<T, K> {
    /// A disarmed timer. Process context.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: allocates; may sleep (process context).
        let raw = unsafe { ffi::kmcl_timer_new() };
        Ok(Self {
            raw: core::ptr::NonNull::new(raw).ok_or(ENOMEM)?,
            armed: AtomicBool::new(false),
            _t: core::marker::PhantomData,
        })
    }

    /// Arms the timer to call `T::fired(this)` after `usecs` (rounded up to
    /// the timer tick), unless it is armed. Any context.
    pub(crate) fn arm(&self, this: &Arc<T>, usecs: u32) -> Arming {
        // (A look first: the swap is an atomic write.)
        if self.armed.load(Ordering::Relaxed) || self.armed.swap(true, Ordering::AcqRel) {
            return Arming::AlreadyArmed;
        }
        let ctx = Arc::into_raw(this.clone()).cast_mut().cast();
        // SAFETY: `raw` is live (invariant); the queue is kmcl's, drained
        // at module exit; `ctx` is an owned reference that `trampoline`
        // or `disarm` takes back exactly once if the timer was armed.
        let armed = unsafe {
            ffi::kmcl_timer_arm(
                self.raw.as_ptr(),
                process_raw(),
                trampoline::<T, K>,
                ctx,
                usecs,
            )
        };
        if !armed {
            // SAFETY: the reference made above, which nothing will take
            // back now.
            drop(unsafe { Arc::<T>::from_raw(ctx.cast_const().cast()) });
            self.armed.store(false, Ordering::Release);
            return Arming::Refused;
        }
        Arming::Armed
    }

    /// Disarms the timer, waiting for a running callback; returns whether
    /// an arming was cancelled (its reference is dropped). Process context.
    pub(crate) fn disarm(&self) -> bool {
        // SAFETY: `raw` is live.
        let ctx = unsafe { ffi::kmcl_timer_disarm(self.raw.as_ptr()) };
        if ctx.is_null() {
            return false;
        }
        // SAFETY: the cancelled arming's reference (invariant), not taken
        // back by the callback, which will not run.
        drop(unsafe { Arc::<T>::from_raw(ctx.cast_const().cast()) });
        self.armed.store(false, Ordering::Release);
        true
    }
}

impl<T: TimerFired<K>, const K: u8> Drop for Timer<T, K> {
    fn drop(&mut self) {
        // An arming holds a reference to the owner of the timer, so the
        // owner (and this timer) cannot be dropped while it is armed.
        // SAFETY: owned (invariant) and disarmed.
        unsafe { ffi::kmcl_timer_free(self.raw.as_ptr()) };
    }
}

/// The C callback of a [`Timer`].
///
/// # Safety
///
/// `ctx` is the reference an arming took with `Arc::into_raw`.
unsafe extern "C" fn trampoline<T: TimerFired<K>, const K: u8>(ctx: *mut core::ffi::c_void) {
    // SAFETY: the caller's promise; taken back once.
    let this = unsafe { Arc::<T>::from_raw(ctx.cast_const().cast()) };
    // Fired: it may be armed again from here on (`fired` too may).
    <T as TimerFired<K>>::timer(&this)
        .armed
        .store(false, Ordering::Release);
    <T as TimerFired<K>>::fired(this);
}

/// kmcl's process queue as a raw pointer (the system queue outside the
/// module's lifetime, as [`process`]).
fn process_raw() -> *mut bindings::workqueue_struct {
    let p = PROCESS.load(Ordering::Acquire);
    if p.is_null() {
        // SAFETY: reads the kernel's `system_wq` pointer.
        unsafe { bindings::system_wq }
    } else {
        p
    }
}
