// SPDX-License-Identifier: GPL-2.0

//! kmcl: the VMBus Kernel Mode Client Library (KMCL) for Linux.
//!
//! kmcl gives VMBus drivers the channel API of Windows' KMCL
//! (`vmbuskernelmodeclientlibapi.h`) on top of Linux's `hv_vmbus`, plus an
//! in-guest loopback VMBus on which a server endpoint (VSP) and a client
//! endpoint (VSC) talk over real VMBus-format rings.
//!
//! Layers, each depending only on the ones above it:
//!
//! - [`protocol`]: the wire format and ring logic, pure and host-testable;
//! - [`shmem`]: ring memory shared with the other endpoint (raw access,
//!   confined here);
//! - [`engine`]: channel objects, their lifecycle, the loopback VMBus;
//! - [`hv`]: the boundary to `hv_vmbus` (FFI, confined here);
//! - [`trace`]: kmcl's ftrace events (FFI to their C definitions,
//!   confined here).

use kernel::prelude::*;

pub mod api;
pub mod engine;
pub mod protocol;
pub mod shmem;
pub mod sys;

mod hv;

module! {
    type: Kmcl,
    name: "kmcl",
    authors: ["kmcl developers"],
    description: "VMBus Kernel Mode Client Library (KMCL) channel API",
    license: "GPL",
}

/// The loaded kmcl module.
struct Kmcl {
    /// Dropped last of kmcl's state: waits for all queued work.
    _queues: sys::queues::Queues,
}

impl kernel::Module for Kmcl {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let queues = sys::queues::Queues::new()?;
        api::init()?;
        if hv::vmbus_host_present() {
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
