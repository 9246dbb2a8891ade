// SPDX-License-Identifier: GPL-2.0
// expect: E0521
//! The channel a callback gets is borrowed for the call: keeping it beyond
//! the callback (here: handing it to something that needs it for ever, as a
//! driver storing it for later would) does not compile.  A driver keeps
//! its own `Channel` instead, or the state it needs.

use kernel::{prelude::*, sync::Arc};

#[path = "../../include/kmcl/rust/kmcl.rs"]
mod kmcl;

/// Something that would use the channel later.
fn keep_for_later(_channel: kmcl::ChannelRef<'static>) {}

struct Vsc;

impl kmcl::Driver for Vsc {
    fn started(&self, channel: kmcl::ChannelRef<'_>) {
        keep_for_later(channel);
    }
}

module! {
    type: Cf,
    name: "kmcl_cf",
    license: "GPL",
    imports_ns: ["KMCL"],
}

struct Cf;

impl kernel::Module for Cf {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let d = Arc::new(Vsc, GFP_KERNEL)?;
        let _channel = kmcl::Channel::new(module, kmcl::Role::Client, d)?;
        Ok(Cf)
    }
}
