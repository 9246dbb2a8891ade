// SPDX-License-Identifier: GPL-2.0

//! Adapters to kernel services the rest of kmcl uses: kmcl's own
//! workqueues and timers, execution-context queries, trace events (FFI to
//! C glue, confined here), and bounded waits.

pub(crate) mod context;
pub(crate) mod lock;
pub(crate) mod queues;
pub(crate) mod trace;
pub(crate) mod wait;
