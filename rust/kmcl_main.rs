// SPDX-License-Identifier: GPL-2.0

//! kmcl: the VMBus Kernel Mode Client Library (KMCL) for Linux.
//!
//! kmcl gives VMBus drivers the channel API of Windows' KMCL
//! (`vmbuskernelmodeclientlibapi.h`) on top of Linux's `hv_vmbus`, plus an
//! in-guest loopback VMBus on which a server endpoint (VSP) and a client
//! endpoint (VSC) talk over real VMBus-format rings.
//!
//! Layers, in dependency order (each uses only the ones above it):
//!
//! - [`protocol`]: the wire format, ring, transaction table, lifecycle
//!   state machine and save format: pure, `#![forbid(unsafe_code)]`, also
//!   built for the host (cargo test, fuzzing);
//! - [`sys`]: kernel services kmcl uses (its workqueues and timers,
//!   context queries, trace events), FFI confined there;
//! - [`shmem`]: memory the other endpoint can touch (rings, GPADL pages,
//!   MMIO space), raw access confined there;
//! - [`engine`]: channel objects, their lifecycle and data path, in safe
//!   Rust; the transports are traits to it;
//! - [`transport`]: the loopback VMBus and the `hv_vmbus` transport,
//!   implementing the engine's traits;
//! - [`api`]: the exported C ABI and interface tables (the only place C
//!   pointers enter), on top of it all.
//!
//! Where a packet goes after `send`: see [`engine`].

use kernel::prelude::*;

pub mod api;
pub(crate) mod engine;
pub mod protocol;
pub(crate) mod shmem;
pub(crate) mod sys;
pub(crate) mod transport;

module! {
    type: Kmcl,
    name: "kmcl",
    authors: ["kmcl developers"],
    description: "VMBus Kernel Mode Client Library (KMCL) channel API",
    license: "GPL",
    params: {
        checked_handles: u32 {
            default: 1,
            description: "Refuse stale, made-up and wrong-kind handles, double frees and double sends (1, default) or trust the driver (0)",
        },
    },
}

/// The loaded kmcl module.
struct Kmcl {
    /// Dropped last of kmcl's state: waits for all queued work.
    _queues: sys::queues::Queues,
}

impl kernel::Module for Kmcl {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let queues = sys::queues::Queues::new()?;
        api::init(module_parameters::checked_handles.value() != 0)?;
        if transport::hyperv::vmbus::vmbus_host_present() {
            pr_info!("loaded; VMBus host present\n");
        } else {
            pr_info!("loaded; no VMBus host (hv_vmbus inactive), loopback only\n");
        }
        Ok(Kmcl { _queues: queues })
    }
}

impl Drop for Kmcl {
    fn drop(&mut self) {
        api::exit();
        pr_info!("unloaded\n");
    }
}
