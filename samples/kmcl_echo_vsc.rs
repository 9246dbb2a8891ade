// SPDX-License-Identifier: GPL-2.0

//! kmcl_echo_vsc: a VMBus echo client (VSC) on kmcl, written in Rust.
//!
//! On load it opens the echo interface that `kmcl_echo_vsp` offers, sends
//! `packets` packets of varying sizes with a completion request, checks
//! that every completion carries the packet's bytes back, makes one
//! synchronous request, and reports. Loading fails if anything did not come
//! back byte for byte. The channel stays open until the module is unloaded.
//!
//! A template for Rust drivers: copy it, change the GUIDs, the [`Driver`]
//! callbacks and what is sent. It uses kmcl only through the safe wrapper
//! `include/kmcl/rust/kmcl.rs`: no `unsafe` here.
//!
//! [`Driver`]: kmcl::Driver

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::{
    prelude::*,
    sync::Arc,
    time::{delay::fsleep, Delta},
};

#[path = "../include/kmcl/rust/kmcl.rs"]
mod kmcl;

module! {
    type: EchoVsc,
    name: "kmcl_echo_vsc",
    authors: ["kmcl developers"],
    description: "kmcl sample: VMBus echo client (VSC) in Rust",
    license: "GPL",
    imports_ns: ["KMCL"],
    params: {
        packets: u32 {
            default: 1000,
            description: "Packets to send and check on load",
        },
        wait_ms: u32 {
            default: 10000,
            description: "How long to wait for the echo server, in ms",
        },
    },
}

/// The echo interface (the same GUIDs are in kmcl_echo_vsp.c).
const ECHO_TYPE: kmcl::Guid = kmcl::Guid {
    b: [
        0x6c, 0x63, 0x6d, 0x6b, 0x63, 0x65, 0x6f, 0x68, 0x8a, 0x11, 0, 0, 0, 0, 0, 0x01,
    ],
};
const ECHO_INSTANCE: kmcl::Guid = kmcl::Guid {
    b: [
        0x6c, 0x63, 0x6d, 0x6b, 0x63, 0x65, 0x6f, 0x68, 0x8a, 0x11, 0, 0, 0, 0, 0, 0x02,
    ],
};

/// Largest payload sent.
const MAX_PAYLOAD: usize = 1500;

/// The channel's callbacks.
struct Vsc {
    running: AtomicBool,
}

impl kmcl::Driver for Vsc {
    fn started(&self, _channel: kmcl::ChannelRef<'_>) {
        self.running.store(true, Ordering::SeqCst);
    }

    fn suspend(&self, _channel: kmcl::ChannelRef<'_>) {
        self.running.store(false, Ordering::SeqCst);
    }

    fn closed(&self, _channel: kmcl::ChannelRef<'_>) {
        pr_info!("channel closed\n");
    }
}

/// Completions counted by outcome.
#[derive(Default)]
struct Tally {
    good: AtomicU32,
    bad: AtomicU32,
}

/// Checks one completion against the packet it answers.
struct Check {
    tally: Arc<Tally>,
    tag: u32,
    len: usize,
}

/// The byte at `i` of packet `tag`.
fn pattern(tag: u32, i: usize) -> u8 {
    (tag.wrapping_mul(31) as usize).wrapping_add(i) as u8
}

impl kmcl::SendDone for Check {
    fn done(&mut self, status: Result, reply: &[u8]) {
        // VMBus pads payloads to 8 bytes: compare the bytes that were sent.
        let good = status.is_ok()
            && reply.len() >= self.len
            && reply[..self.len]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(self.tag, i));
        let counter = if good {
            &self.tally.good
        } else {
            &self.tally.bad
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `what` every 10 ms for up to `ms` milliseconds.
fn wait_for(ms: u32, what: impl Fn() -> bool) -> bool {
    for _ in 0..ms.div_ceil(10) {
        if what() {
            return true;
        }
        fsleep(Delta::from_millis(10));
    }
    what()
}

struct EchoVsc {
    _channel: kmcl::Channel,
}

impl EchoVsc {
    /// Sends `count` packets and checks every echo.
    fn exercise(channel: &kmcl::Channel, count: u32) -> Result {
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let mut buf = KVec::from_elem(0u8, MAX_PAYLOAD, GFP_KERNEL)?;
        for tag in 0..count {
            // Sizes 1..=1500, varying from packet to packet.
            let len = (tag as usize * 37 + 1) % MAX_PAYLOAD + 1;
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = pattern(tag, i);
            }
            let check = KBox::new(
                Check {
                    tally: tally.clone(),
                    tag,
                    len,
                },
                GFP_KERNEL,
            )?;
            channel.send(&buf[..len], true, check)?;
        }
        let total = || tally.good.load(Ordering::SeqCst) + tally.bad.load(Ordering::SeqCst);
        if !wait_for(120_000, || total() == count) {
            pr_err!("only {} of {} packets completed\n", total(), count);
            return Err(ETIMEDOUT);
        }

        // One synchronous request.
        let request = b"kmcl echo: synchronous request";
        let mut reply = [0u8; 64];
        let n = channel.send_sync(request, &mut reply, Some(5000))?;
        let sync_ok = n >= request.len() && reply[..request.len()] == request[..];

        let (good, bad) = (
            tally.good.load(Ordering::SeqCst),
            tally.bad.load(Ordering::SeqCst),
        );
        pr_info!(
            "{} of {} packets echoed byte-exact, {} bad; synchronous request {}\n",
            good,
            count,
            bad,
            if sync_ok { "ok" } else { "WRONG" }
        );
        if bad != 0 || !sync_ok {
            return Err(EIO);
        }
        Ok(())
    }
}

impl kernel::Module for EchoVsc {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let vsc = Arc::new(
            Vsc {
                running: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?;
        let mut channel = kmcl::Channel::new(module, kmcl::Role::Client, vsc.clone())?;
        channel.set_target(&ECHO_TYPE, Some(&ECHO_INSTANCE))?;
        channel.set_friendly_name(c"kmcl_echo_vsc")?;
        channel.enable()?;
        if !wait_for(module_parameters::wait_ms.value(), || {
            vsc.running.load(Ordering::SeqCst)
        }) {
            pr_err!("no echo server (is kmcl_echo_vsp loaded?)\n");
            return Err(ENODEV);
        }
        let instance = channel.interface_instance();
        if instance != ECHO_INSTANCE {
            pr_err!("connected to the wrong instance\n");
            return Err(EIO);
        }
        Self::exercise(&channel, module_parameters::packets.value())?;
        Ok(EchoVsc { _channel: channel })
    }
}

impl Drop for EchoVsc {
    fn drop(&mut self) {
        // Dropping the channel disables and frees it.
        pr_info!("unloading\n");
    }
}
