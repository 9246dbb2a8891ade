// SPDX-License-Identifier: GPL-2.0

//! kmcl_echo_vsp_rs: a VMBus echo server (VSP) on kmcl, written in Rust.
//!
//! The Rust twin of `kmcl_echo_vsp.c`: it offers the echo interface on
//! kmcl's loopback VMBus and completes every packet it receives with the
//! packet's own bytes. With `packets=N` it also sends N packets of random
//! sizes to each client that connects (`window` in flight, reusing the
//! packet objects) and checks that each comes back byte for byte. The
//! offer stays until the module is unloaded.
//!
//! A template for Rust servers: copy it with `kmcl_echo.rs`, change the
//! GUIDs and the packet handling. It uses kmcl only through the safe
//! wrapper `include/kmcl/rust/kmcl.rs`: no `unsafe` here.

use core::sync::atomic::{
    AtomicU32,
    Ordering, //
};
use kernel::{
    prelude::*,
    sync::{new_spinlock, Arc, SpinLock},
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
    type: EchoVsp,
    name: "kmcl_echo_vsp_rs",
    authors: ["kmcl developers"],
    description: "kmcl sample: VMBus echo server (VSP) in Rust",
    license: "GPL",
    imports_ns: ["KMCL"],
    params: {
        packets: u32 {
            default: 0,
            description: "Packets to send to each client once it connects",
        },
        window: u32 {
            default: 16,
            description: "Packets in flight at a time",
        },
    },
}

/// The channel's callbacks.
#[pin_data]
struct Vsp {
    /// Packets from clients echoed back.
    echoed: AtomicU32,
    /// The flow of packets to the client now connected, if any.
    #[pin]
    flow: SpinLock<Option<Arc<Flow>>>,
}

impl kmcl::Driver for Vsp {
    fn opened(&self, _channel: kmcl::ChannelRef<'_>) -> Result {
        pr_info!("client connected\n");
        Ok(())
    }

    /// Packets flow: start sending, if asked to.
    fn post_started(&self, channel: kmcl::ChannelRef<'_>) {
        let count = module_parameters::packets.value();
        if count == 0 {
            return;
        }
        let flow = match Flow::new(count, Some("the client")) {
            Ok(f) => f,
            Err(e) => {
                pr_err!("no memory for the flow: {:?}\n", e);
                return;
            }
        };
        *self.flow.lock() = Some(flow.clone());
        if let Err(e) = flow.start(channel, module_parameters::window.value()) {
            pr_err!("no memory for packet objects: {:?}\n", e);
        }
    }

    fn closed(&self, _channel: kmcl::ChannelRef<'_>) {
        drop(self.flow.lock().take());
        pr_info!(
            "client disconnected; {} packets echoed\n",
            self.echoed.load(Ordering::SeqCst)
        );
    }

    /// Softirq context: the payload goes back as the completion.
    fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
        match packet.echo() {
            Ok(()) => {
                self.echoed.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => pr_warn!("completion not sent: {:?}\n", e),
        }
    }
}

struct EchoVsp {
    channel: kmcl::Channel,
    vsp: Arc<Vsp>,
}

impl kernel::Module for EchoVsp {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let vsp = Arc::pin_init(
            pin_init!(Vsp {
                echoed: AtomicU32::new(0),
                flow <- new_spinlock!(None),
            }),
            GFP_KERNEL,
        )?;
        let mut channel = kmcl::Channel::new(module, kmcl::Role::Server, vsp.clone())?;
        channel.set_offer(&ECHO_TYPE, &ECHO_INSTANCE)?;
        channel.set_friendly_name(c"kmcl_echo_vsp_rs")?;
        channel.enable()?;
        // A server channel starts paused; Start lets packets flow.
        channel.start()?;
        pr_info!("echo interface offered\n");
        Ok(EchoVsp { channel, vsp })
    }
}

impl Drop for EchoVsp {
    fn drop(&mut self) {
        // Disables (withdraws the offer, waiting for teardown) and frees.
        let _ = self.channel.disable();
        pr_info!(
            "echo interface withdrawn; {} packets echoed\n",
            self.vsp.echoed.load(Ordering::SeqCst)
        );
    }
}
