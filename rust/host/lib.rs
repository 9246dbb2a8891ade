// SPDX-License-Identifier: GPL-2.0

//! Host build of kmcl's protocol layer.
//!
//! This crate has no code of its own: it compiles `rust/protocol/` (the
//! files `kmcl.ko` compiles as `crate::protocol`) for the host.

#![cfg_attr(not(test), no_std)]

#[path = "../protocol/mod.rs"]
pub mod protocol;

pub use protocol::*;
