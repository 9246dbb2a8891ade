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
    new_spinlock_irq,
    prelude::*,
    sync::{new_spinlock, Arc, SpinLock, SpinLockIrq},
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
        hold: bool {
            default: false,
            description: "Hold the client's packets instead of echoing them (up to 64)",
        },
        live_update: bool {
            default: false,
            description: "Save the packets in flight at unload, restore them at load (a live update)",
        },
    },
}

/// The most packets `hold=1` keeps.
const HELD_MAX: usize = 64;

/// A packet held uncompleted (`hold=1`) and its payload, the driver's state
/// for it in a save.
struct Held {
    packet: kmcl::Incoming,
    payload: KVec<u8>,
}

/// The channel's callbacks.
#[pin_data]
struct Vsp {
    /// Packets from clients echoed back.
    echoed: AtomicU32,
    /// Packets of a previous load's save completed.
    restored: AtomicU32,
    /// The flow of packets to the client now connected, if any.
    #[pin]
    flow: SpinLock<Option<Arc<Flow>>>,
    /// Packets held (`hold=1`); taken in softirq context.
    #[pin]
    held: SpinLockIrq<KVec<Held>>,
}

impl Vsp {
    /// Holds `packet` if `hold=1` and there is room; gives it back if not.
    fn hold(&self, packet: kmcl::Incoming) -> Option<kmcl::Incoming> {
        if !module_parameters::hold.value() {
            return Some(packet);
        }
        let mut payload = KVec::new();
        if payload
            .extend_from_slice(packet.data(), GFP_ATOMIC)
            .is_err()
        {
            return Some(packet);
        }
        let mut held = self.held.lock();
        if held.len() >= HELD_MAX || held.reserve(1, GFP_ATOMIC).is_err() {
            return Some(packet);
        }
        let _ = held.push_within_capacity(Held { packet, payload });
        None
    }
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
        let Some(packet) = self.hold(packet) else {
            return;
        };
        match packet.echo() {
            Ok(()) => {
                self.echoed.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => pr_warn!("completion not sent: {:?}\n", e),
        }
    }

    /// `EvtVmbChannelSavePacket` (live update): this driver's state for a
    /// held packet is its payload, to echo once restored.
    fn save_packet(
        &self,
        _channel: kmcl::ChannelRef<'_>,
        id: kmcl::IncomingId,
    ) -> Result<KVec<u8>> {
        let held = self.held.lock();
        let h = held.iter().find(|h| h.packet.id() == id).ok_or(ENOENT)?;
        let mut state = KVec::new();
        state.extend_from_slice(&h.payload, GFP_ATOMIC)?;
        Ok(state)
    }

    /// `EvtVmbChannelRestorePacket` (live update, after Opened): a packet
    /// the previous load held, echoed from its saved payload.
    fn restore_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming, state: &[u8]) {
        match packet.complete(state) {
            Ok(()) => {
                self.restored.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => pr_warn!("restored completion not sent: {:?}\n", e),
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
                restored: AtomicU32::new(0),
                flow <- new_spinlock!(None),
                held <- new_spinlock_irq!(KVec::new()),
            }),
            GFP_KERNEL,
        )?;
        let mut channel = kmcl::Channel::new(module, kmcl::Role::Server, vsp.clone())?;
        channel.set_offer(&ECHO_TYPE, &ECHO_INSTANCE)?;
        channel.set_friendly_name(c"kmcl_echo_vsp_rs")?;
        if module_parameters::live_update.value() {
            restore_previous(&mut channel)?;
        }
        channel.enable()?;
        // A server channel starts paused; Start lets packets flow.
        channel.start()?;
        pr_info!("echo interface offered\n");
        Ok(EchoVsp { channel, vsp })
    }
}

/// Takes a save of the previous load from kmcl's stash and restores it
/// (before Enable, which then takes the parked connection over).
fn restore_previous(channel: &mut kmcl::Channel) -> Result {
    let save = match kmcl::stash_take(&ECHO_INSTANCE) {
        Ok(s) => s,
        Err(e) if e == ENOENT => return Ok(()),
        Err(e) => return Err(e),
    };
    if !channel.restore_from_buffer(&save)? {
        pr_err!("the previous load's save is incomplete\n");
        return Err(EBADMSG);
    }
    pr_info!(
        "restoring the previous load's state ({} bytes)\n",
        save.len()
    );
    Ok(())
}

impl EchoVsp {
    /// Saves the packets held into kmcl's stash for the next load.
    fn save_for_next_load(&self) {
        match self.channel.save_begin() {
            Ok(()) => {}
            Err(e) if e == ENOTCONN => {
                pr_info!("live update: no client connected, nothing to save\n");
                return;
            }
            Err(e) => {
                pr_err!("live update: save failed: {:?}\n", e);
                return;
            }
        }
        // The held packets belong to the save now.
        let mut count = 0;
        for h in self.vsp.held.lock().drain_all() {
            h.packet.into_save();
            count += 1;
        }
        match self
            .channel
            .save_rest()
            .and_then(|save| kmcl::stash_put(&ECHO_INSTANCE, &save).map(|()| save.len()))
        {
            Ok(len) => pr_info!(
                "saved {} packets in flight ({} bytes) for the next load\n",
                count,
                len
            ),
            Err(e) => pr_err!("live update: save failed: {:?}\n", e),
        }
    }
}

impl Drop for EchoVsp {
    fn drop(&mut self) {
        if module_parameters::live_update.value() {
            self.save_for_next_load();
        }
        // Packets still held (no save) are completed with no payload.
        let rest = core::mem::take(&mut *self.vsp.held.lock());
        drop(rest);
        // Disables (withdraws the offer, waiting for teardown) and frees;
        // after a save the connection is parked for the next load instead.
        let _ = self.channel.disable();
        pr_info!(
            "echo interface withdrawn; {} packets echoed, {} restored\n",
            self.vsp.echoed.load(Ordering::SeqCst),
            self.vsp.restored.load(Ordering::SeqCst)
        );
    }
}
