// SPDX-License-Identifier: GPL-2.0

//! VMBus wire protocol: packet descriptors, ring layout and their validation.
//!
//! Everything under this directory is pure logic with no kernel dependencies.
//! The same source files are compiled into `kmcl.ko` (as `crate::protocol`)
//! and into the host crate `rust/host` (for `cargo test`, property tests,
//! fuzzing and benchmarks). Only `core` may be used here.
//!
//! Anything read from memory the other endpoint can write is treated as
//! untrusted: it is read once, validated, and only then used.

#![forbid(unsafe_code)]

pub mod gpa;
pub mod lifecycle;
pub mod packet;
pub mod ring;
pub mod save;
pub mod status;
pub mod transactions;
pub mod xfer;
