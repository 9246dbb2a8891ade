// SPDX-License-Identifier: GPL-2.0

//! The transports channels connect over, above the engine: each implements
//! the engine's traits: a channel's [`Bus`] and [`Link`], and the
//! [`Remote`] its data path signals.
//!
//! [`Bus`]: crate::engine::channel::Bus
//! [`Link`]: crate::engine::channel::Link
//! [`Remote`]: crate::engine::datapath::Remote
//!
//! - [`loopback`]: kmcl's in-guest loopback VMBus, on which a server
//!   channel and a client channel talk over real VMBus-format rings;
//! - [`hyperv`]: client channels on the devices a VMBus host offers,
//!   through Linux's `hv_vmbus` (FFI confined to `hyperv::vmbus`);
//! - [`offers`]: the offer table both buses keep.

pub(crate) mod hyperv;
pub(crate) mod loopback;
pub(crate) mod offers;
