// SPDX-License-Identifier: GPL-2.0

//! kmcl_echo_vsc: a VMBus echo client (VSC) on kmcl, written in Rust.
//!
//! On load it opens the echo interface that `kmcl_echo_vsp` offers and
//! sends `packets` packets of random sizes (1 byte to the maximum packet
//! size) with a completion request, keeping `window` of them in flight and
//! reusing the packet objects. It checks that every completion carries the
//! packet's bytes back, makes one synchronous request, and reports; loading
//! fails if anything did not come back byte for byte. Packets the server
//! sends are echoed back the same way. The channel stays open until the
//! module is unloaded.
//!
//! A template for Rust drivers: copy it, change the GUIDs, the [`Driver`]
//! callbacks and what is sent. It uses kmcl only through the safe wrapper
//! `include/kmcl/rust/kmcl.rs`: no `unsafe` here. The echo protocol (GUIDs,
//! packets, the flow of packets) is in `kmcl_echo.rs`, which the Rust echo
//! server `kmcl_echo_vsp_rs` shares.
//!
//! [`Driver`]: kmcl::Driver

use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    Ordering, //
};
use kernel::{
    prelude::*,
    sync::Arc,
    time::{delay::fsleep, Delta, Instant, Monotonic},
};

#[path = "kmcl_echo.rs"]
mod echo;
#[path = "../include/kmcl/rust/kmcl.rs"]
mod kmcl;

use echo::{
    Flow,
    ECHO_INSTANCE,
    ECHO_TYPE, //
};

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
        window: u32 {
            default: 16,
            description: "Packets in flight at a time",
        },
        wait_ms: u32 {
            default: 10000,
            description: "How long to wait for the echo server, in ms",
        },
        stall_ms: u32 {
            default: 10000,
            description: "Give up after this long without an echo, in ms",
        },
    },
}

/// Bytes of the context area kmcl gives the client with each packet from
/// the server (`VmbChannelInitSetClientContextSize`).
const CONTEXT_SIZE: usize = 16;

/// The channel's callbacks.
struct Vsc {
    running: AtomicBool,
    /// Packets from the server echoed back.
    echoed: AtomicU32,
}

impl kmcl::Driver for Vsc {
    fn started(&self, _channel: kmcl::ChannelRef<'_>) {
        self.running.store(true, Ordering::SeqCst);
    }

    fn suspend(&self, _channel: kmcl::ChannelRef<'_>) {
        self.running.store(false, Ordering::SeqCst);
    }

    fn closed(&self, _channel: kmcl::ChannelRef<'_>) {
        pr_info!(
            "channel closed; {} packets from the server echoed\n",
            self.echoed.load(Ordering::SeqCst)
        );
    }

    /// Packets the server sends come back as their own completion, if
    /// the packet's context area arrived as kmcl promises: [`CONTEXT_SIZE`]
    /// zeroed bytes.  The client then marks the area, which kmcl must zero
    /// again for the next packet that reuses the object; a wrong area makes
    /// the echo empty, which the server counts as bad.
    fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, mut packet: kmcl::Incoming) {
        let ctx = packet.client_context();
        let fresh = ctx.len() == CONTEXT_SIZE && ctx.iter().all(|&b| b == 0);
        ctx.fill(0xc5);
        let done = if fresh {
            packet.echo()
        } else {
            pr_err!(
                "a packet's context area was not {} zeroed bytes\n",
                CONTEXT_SIZE
            );
            packet.complete(&[])
        };
        if done.is_ok() && fresh {
            self.echoed.fetch_add(1, Ordering::SeqCst);
        }
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
    /// Sends `count` packets, `window` at a time, and checks every echo.
    fn exercise(channel: &kmcl::Channel, count: u32, window: u32) -> Result {
        let flow = Flow::new(count, None)?;
        let start = Instant::<Monotonic>::now();
        flow.start(channel.as_ref(), window)?;
        // No progress for `stall_ms` means something is stuck.
        let mut last = 0;
        while flow.finished() < count {
            if !wait_for(module_parameters::stall_ms.value(), || {
                flow.finished() != last
            }) {
                pr_err!("stuck after {} of {} packets\n", flow.finished(), count);
                return Err(ETIMEDOUT);
            }
            last = flow.finished();
        }
        let ms = start.elapsed().as_millis().max(1);

        // One synchronous request.
        let request = b"kmcl echo: synchronous request";
        let mut reply = [0u8; 64];
        let n = channel.send_sync(request, &mut reply, Some(5000))?;
        let sync_ok = n >= request.len() && reply[..request.len()] == request[..];

        let (good, bad) = (flow.good(), flow.bad());
        pr_info!(
            "{} of {} packets echoed byte-exact, {} bad, in {} ms; synchronous request {}\n",
            good,
            count,
            bad,
            ms,
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
                echoed: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )?;
        let mut channel = kmcl::Channel::new(module, kmcl::Role::Client, vsc.clone())?;
        channel.set_target(&ECHO_TYPE, Some(&ECHO_INSTANCE))?;
        channel.set_friendly_name(c"kmcl_echo_vsc")?;
        channel.set_client_context_size(CONTEXT_SIZE as u32)?;
        // Room for a window of the largest packets each way.
        channel.set_ring_pages(32, 32)?;
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
        let (count, window) = (
            module_parameters::packets.value(),
            module_parameters::window.value(),
        );
        Self::exercise(&channel, count, window)?;
        Ok(EchoVsc { _channel: channel })
    }
}

impl Drop for EchoVsc {
    fn drop(&mut self) {
        // Dropping the channel disables and frees it.
        pr_info!("unloading\n");
    }
}
