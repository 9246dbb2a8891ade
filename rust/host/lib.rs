// SPDX-License-Identifier: GPL-2.0

//! Host build of kmcl's protocol layer.
//!
//! This crate compiles `rust/protocol/` (the files `kmcl.ko` compiles as
//! `crate::protocol`) for the host. Its own modules: [`host_ring`], the
//! host's counterpart of the kernel's ring pages (ring memory copied with
//! the platform's `memcpy`), and [`hostile`], a writer racing the ring
//! reader for the fuzz target and property test of the read-once rules.

#![cfg_attr(not(test), no_std)]

#[path = "../protocol/mod.rs"]
pub mod protocol;

pub use protocol::*;

pub mod host_ring;
pub mod hostile;
