// SPDX-License-Identifier: GPL-2.0
// expect: E0505
//! A borrowed channel (what callbacks get, and what GPADLs, mappings and
//! packets are made through) cannot outlive the channel: dropping the
//! channel (which frees it) while a reference is still used does not
//! compile.

use kernel::{prelude::*, sync::Arc};

#[path = "../../include/kmcl/rust/kmcl.rs"]
mod kmcl;

struct Vsc;

impl kmcl::Driver for Vsc {}

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
        let channel = kmcl::Channel::new(module, kmcl::Role::Client, d)?;
        let r = channel.as_ref();
        drop(channel);
        let memory = kmcl::SharedPages::new(1)?;
        let _ = r.create_gpadl(&memory, false);
        Ok(Cf)
    }
}
