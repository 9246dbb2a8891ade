// SPDX-License-Identifier: GPL-2.0
// expect: E0505
//! A driver must not read a packet's external data after completing the
//! packet (kmcl then lets the sender reuse the memory): the view borrows
//! the packet, which `complete` takes.

use kernel::{prelude::*, sync::Arc};

#[path = "../../include/kmcl/rust/kmcl.rs"]
mod kmcl;

struct Vsp;

impl kmcl::Driver for Vsp {
    fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
        let ext = packet.external_data();
        let _ = packet.complete(&[]);
        if let Some(ext) = ext {
            let mut buf = [0u8; 8];
            let _ = ext.read(0, &mut buf);
        }
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
        let d = Arc::new(Vsp, GFP_KERNEL)?;
        Ok(Cf {
            _channel: kmcl::Channel::new(module, kmcl::Role::Server, d)?,
        })
    }
}
