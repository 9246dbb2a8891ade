// SPDX-License-Identifier: GPL-2.0
// expect: E0505
//! A packet's payload is valid only while the packet is held: keeping the
//! slice past `complete` does not compile.

use kernel::{prelude::*, sync::Arc};

#[path = "../../include/kmcl/rust/kmcl.rs"]
mod kmcl;

struct Vsp {
    first: core::sync::atomic::AtomicU8,
}

impl kmcl::Driver for Vsp {
    fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
        let data = packet.data();
        let _ = packet.complete(&[]);
        self.first.store(
            data.first().copied().unwrap_or(0),
            core::sync::atomic::Ordering::Relaxed,
        );
    }
}

module! {
    type: Cf,
    name: "kmcl_cf",
    license: "GPL",
    imports_ns: ["KMCL"],
}

struct Cf {
    _channel: kmcl::Channel,
}

impl kernel::Module for Cf {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let d = Arc::new(
            Vsp {
                first: core::sync::atomic::AtomicU8::new(0),
            },
            GFP_KERNEL,
        )?;
        Ok(Cf {
            _channel: kmcl::Channel::new(module, kmcl::Role::Server, d)?,
        })
    }
}
