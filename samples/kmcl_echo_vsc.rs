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
//! `include/kmcl/rust/kmcl.rs`: no `unsafe` here.
//!
//! [`Driver`]: kmcl::Driver

use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    Ordering, //
};
use kernel::{
    new_spinlock_irq,
    prelude::*,
    sync::{Arc, SpinLockIrq},
    time::{delay::fsleep, Delta, Instant, Monotonic},
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

/// Largest payload sent: kmcl's default maximum packet size.
const MAX_PAYLOAD: usize = 4096;

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

/// Packet `tag`'s size: 1 to [`MAX_PAYLOAD`] bytes, from a xorshift of the
/// tag (so the receiver of an echo can recompute it).
fn size_of_packet(tag: u32) -> usize {
    let mut x = tag.wrapping_mul(0x9e37_79b9) | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    (x as usize & (MAX_PAYLOAD - 1)) + 1
}

/// The byte at `i` of packet `tag`.
fn pattern(tag: u32, i: usize) -> u8 {
    (tag.wrapping_mul(31) as usize).wrapping_add(i) as u8
}

/// The client's flow of packets: a window of reused packet objects, each
/// sent again from its completion routine with the next tag until `count`
/// packets were sent.
#[pin_data]
struct Flow {
    count: u32,
    /// Next tag to send.
    next: AtomicU32,
    good: AtomicU32,
    bad: AtomicU32,
    /// Where payloads are built (completion routines run in softirq
    /// context, where 4 KiB does not fit on the stack).
    #[pin]
    buf: SpinLockIrq<KVec<u8>>,
}

impl Flow {
    /// Sends `packet` with the next tag, or drops it when all were sent.
    fn send_next(&self, mut packet: kmcl::Packet) {
        let tag = self.next.fetch_add(1, Ordering::SeqCst);
        if tag >= self.count {
            return;
        }
        let len = size_of_packet(tag);
        packet.set_tag(tag as usize);
        let mut buf = self.buf.lock();
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = pattern(tag, i);
        }
        if packet.send(&buf[..len], true).is_err() {
            // Counted as bad: the total still reaches `count`.
            self.bad.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn finished(&self) -> u32 {
        self.good.load(Ordering::SeqCst) + self.bad.load(Ordering::SeqCst)
    }
}

impl kmcl::PacketDone for Flow {
    fn done(&self, mut packet: kmcl::Packet, status: Result, reply: &[u8]) {
        let tag = packet.tag() as u32;
        let len = size_of_packet(tag);
        // VMBus pads payloads to 8 bytes: compare the bytes that were sent.
        let good = status.is_ok()
            && reply.len() >= len
            && reply[..len]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(tag, i));
        let counter = if good { &self.good } else { &self.bad };
        counter.fetch_add(1, Ordering::SeqCst);
        if status.is_ok() {
            self.send_next(packet);
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
        let buf = KVec::from_elem(0u8, MAX_PAYLOAD, GFP_KERNEL)?;
        let flow = Arc::pin_init(
            pin_init!(Flow {
                count,
                next: AtomicU32::new(0),
                good: AtomicU32::new(0),
                bad: AtomicU32::new(0),
                buf <- new_spinlock_irq!(buf),
            }),
            GFP_KERNEL,
        )?;
        let start = Instant::<Monotonic>::now();
        for _ in 0..window.clamp(1, 1024) {
            flow.send_next(kmcl::Packet::new(channel.as_ref(), flow.clone())?);
        }
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

        let (good, bad) = (
            flow.good.load(Ordering::SeqCst),
            flow.bad.load(Ordering::SeqCst),
        );
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
