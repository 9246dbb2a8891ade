// SPDX-License-Identifier: GPL-2.0

//! The channel engine: KMCL channel objects, their lifecycle and their
//! packet data path, in safe Rust. It names no transport: a channel's bus,
//! connection and other endpoint are the traits of [`transport`], which
//! kmcl's loopback VMBus and its `hv_vmbus` transport implement
//! ([`crate::transport`], above this layer).
//!
//! Transitions of a channel's lifecycle are decided by the pure state
//! machine in [`crate::protocol::lifecycle`]; this layer carries out the
//! resulting actions on kernel objects.

pub mod channel;
pub mod datapath;
#[cfg(CONFIG_KUNIT)]
pub(crate) mod testing;
pub mod types;
