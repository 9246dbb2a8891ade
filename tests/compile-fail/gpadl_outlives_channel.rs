// SPDX-License-Identifier: GPL-2.0
// expect: E0505
//! A GPADL object borrows the channel it was made on: dropping the channel
//! (which frees it) while the GPADL is still alive does not compile.  Its
//! memory cannot go first either: the channel holds an `Arc` of it until
//! the GPADL is deleted.

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
        let memory = kmcl::SharedPages::new(1)?;
        let r = channel.as_ref();
        let gpadl = r.share(&memory, false)?;
        drop(channel);
        drop(gpadl);
        Ok(Cf)
    }
}
