// SPDX-License-Identifier: GPL-2.0

//! The channel engine: KMCL channel objects, their lifecycle, and the
//! in-guest loopback VMBus they connect over.
//!
//! Transitions of a channel's lifecycle are decided by the pure state
//! machine in [`crate::protocol::lifecycle`]; this layer carries out the
//! resulting actions on kernel objects.

pub mod channel;
pub mod datapath;
pub(crate) mod host;
pub(crate) mod link;
pub mod loopback;
#[cfg(CONFIG_KUNIT)]
pub(crate) mod testing;
pub mod types;
