// SPDX-License-Identifier: GPL-2.0

//! kmcl's trace events, for ftrace (`/sys/kernel/tracing/events/kmcl/`).
//!
//! The events are defined in C (`rust/glue/kmcl_trace.h`, instantiated by
//! `rust/glue/trace_events.c`); this module is the only Rust code that touches
//! them. Each function here checks the event's static key and, only when
//! someone enabled the event, calls the C function that records it, so a
//! disabled event costs one key test.
//!
//! Channels are named by their kmcl id ([`crate::engine::channel::Channel::id`]).

#[cfg(CONFIG_TRACEPOINTS)]
mod raw {
    use kernel::bindings::tracepoint;

    // SAFETY (for the declarations): these are the tracepoint objects and
    // rust_do_trace_* functions rust/glue/trace_events.c defines from
    // kmcl_trace.h; the prototypes are that header's TP_PROTO lists.
    // `struct tracepoint` has a zero-sized member, which the FFI lint
    // rejects; Rust only ever takes the address of these objects.
    #[allow(
        improper_ctypes,
        reason = "`struct tracepoint` has a zero-sized member; only its address is used"
    )]
    extern "C" {
        pub(super) static __tracepoint_kmcl_packet_fetched: tracepoint;
        pub(super) static __tracepoint_kmcl_packet_sent: tracepoint;
        pub(super) static __tracepoint_kmcl_batch_done: tracepoint;
        pub(super) static __tracepoint_kmcl_quota_hit: tracepoint;
        pub(super) static __tracepoint_kmcl_budget_hit: tracepoint;
        pub(super) static __tracepoint_kmcl_state_change: tracepoint;
        pub(super) static __tracepoint_kmcl_channel_failed: tracepoint;

        pub(super) fn rust_do_trace_kmcl_packet_fetched(
            chan: u32,
            tid: u64,
            completion: bool,
            len: u32,
        );
        pub(super) fn rust_do_trace_kmcl_packet_sent(
            chan: u32,
            tid: u64,
            ptype: u16,
            len: u32,
            completion_requested: bool,
            was_queued: bool,
        );
        pub(super) fn rust_do_trace_kmcl_batch_done(chan: u32, fetched: u32, allowed: u32);
        pub(super) fn rust_do_trace_kmcl_quota_hit(chan: u32, outstanding: u32, quota: u32);
        pub(super) fn rust_do_trace_kmcl_budget_hit(chan: u32, fetched: u32);
        pub(super) fn rust_do_trace_kmcl_state_change(
            chan: u32,
            event: *const u8,
            event_len: u32,
            action: *const u8,
            action_len: u32,
        );
        pub(super) fn rust_do_trace_kmcl_channel_failed(chan: u32, why: *const u8, why_len: u32);
    }
}

/// Expands to whether the trace event `$tp` (a tracepoint in [`raw`]) is
/// enabled.
#[cfg(CONFIG_TRACEPOINTS)]
macro_rules! enabled {
    ($tp:ident) => {
        // SAFETY: `$tp` is a tracepoint C defines (see `raw`); querying its
        // static key is always allowed.
        unsafe {
            kernel::jump_label::static_branch_unlikely!(raw::$tp, kernel::bindings::tracepoint, key)
        }
    };
}

/// Calls `rust_do_trace_<event>` when `$tp` is enabled; nothing without
/// tracepoints.
macro_rules! emit {
    ($tp:ident, $f:ident($($arg:expr),* $(,)?)) => {{
        #[cfg(CONFIG_TRACEPOINTS)]
        if enabled!($tp) {
            // SAFETY: the arguments have the types of the C prototype;
            // string arguments are a pointer and the length of a live
            // `&str`, which the event copies before returning.
            unsafe { raw::$f($($arg),*) };
        }
        #[cfg(not(CONFIG_TRACEPOINTS))]
        {
            $(let _ = $arg;)*
        }
    }};
}

fn len32(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

/// A packet was read from the incoming ring (KMCL ETW event 1).
#[inline]
pub(crate) fn packet_fetched(chan: u32, tid: u64, completion: bool, len: usize) {
    emit!(
        __tracepoint_kmcl_packet_fetched,
        rust_do_trace_kmcl_packet_fetched(chan, tid, completion, len as u32)
    );
}

/// A packet was written to the outgoing ring (KMCL ETW event 2);
/// `was_queued`: it waited for room first.
#[inline]
pub(crate) fn packet_sent(
    chan: u32,
    tid: u64,
    ptype: u16,
    len: usize,
    completion_requested: bool,
    was_queued: bool,
) {
    emit!(
        __tracepoint_kmcl_packet_sent,
        rust_do_trace_kmcl_packet_sent(
            chan,
            tid,
            ptype,
            len as u32,
            completion_requested,
            was_queued
        )
    );
}

/// One run of a channel's receive work ended (KMCL ETW event 3).
#[inline]
pub(crate) fn batch_done(chan: u32, fetched: u32, allowed: u32) {
    emit!(
        __tracepoint_kmcl_batch_done,
        rust_do_trace_kmcl_batch_done(chan, fetched, allowed)
    );
}

/// Delivery stopped at the transaction quota (KMCL ETW event 4).
pub(crate) fn quota_hit(chan: u32, outstanding: u32, quota: u32) {
    emit!(
        __tracepoint_kmcl_quota_hit,
        rust_do_trace_kmcl_quota_hit(chan, outstanding, quota)
    );
}

/// The receive work used its budget and yields (KMCL ETW event 5).
pub(crate) fn budget_hit(chan: u32, fetched: u32) {
    emit!(
        __tracepoint_kmcl_budget_hit,
        rust_do_trace_kmcl_budget_hit(chan, fetched)
    );
}

/// A lifecycle step: `event` caused `action`.
pub(crate) fn state_change(chan: u32, event: &str, action: &str) {
    emit!(
        __tracepoint_kmcl_state_change,
        rust_do_trace_kmcl_state_change(
            chan,
            event.as_ptr(),
            len32(event),
            action.as_ptr(),
            len32(action)
        )
    );
}

/// kmcl closes channel `chan` because of `why`.
pub(crate) fn channel_failed(chan: u32, why: &str) {
    emit!(
        __tracepoint_kmcl_channel_failed,
        rust_do_trace_kmcl_channel_failed(chan, why.as_ptr(), len32(why))
    );
}
