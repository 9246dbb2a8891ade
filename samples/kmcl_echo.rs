// SPDX-License-Identifier: GPL-2.0

//! The echo protocol of kmcl's Rust samples (`kmcl_echo_vsc`,
//! `kmcl_echo_vsp_rs`; `kmcl_echo_vsp.c` speaks it too): the interface's
//! GUIDs, the packets each side sends (random sizes, a pattern the echo is
//! checked against) and a window of reused packet objects sending them.
//! Included by each sample with `#[path]`; copy it with the sample.

use core::sync::atomic::{
    AtomicU32,
    Ordering, //
};
use kernel::{
    new_spinlock_irq,
    prelude::*,
    sync::{Arc, SpinLockIrq},
    time::{Instant, Monotonic},
};

use super::kmcl;

/// The echo interface type.
pub(crate) const ECHO_TYPE: kmcl::Guid = kmcl::Guid {
    b: [
        0x6c, 0x63, 0x6d, 0x6b, 0x63, 0x65, 0x6f, 0x68, 0x8a, 0x11, 0, 0, 0, 0, 0, 0x01,
    ],
};
/// The echo interface instance.
pub(crate) const ECHO_INSTANCE: kmcl::Guid = kmcl::Guid {
    b: [
        0x6c, 0x63, 0x6d, 0x6b, 0x63, 0x65, 0x6f, 0x68, 0x8a, 0x11, 0, 0, 0, 0, 0, 0x02,
    ],
};

/// Largest payload sent: kmcl's default maximum packet size.
pub(crate) const MAX_PAYLOAD: usize = 4096;

/// Packet `tag`'s size: 1 to [`MAX_PAYLOAD`] bytes, from a xorshift of the
/// tag (so the receiver of an echo can recompute it).
pub(crate) fn size_of_packet(tag: u32) -> usize {
    let mut x = tag.wrapping_mul(0x9e37_79b9) | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    (x as usize & (MAX_PAYLOAD - 1)) + 1
}

/// The byte at `i` of packet `tag`.
pub(crate) fn pattern(tag: u32, i: usize) -> u8 {
    (tag.wrapping_mul(31) as usize).wrapping_add(i) as u8
}

/// A flow of packets to the other endpoint: a window of reused packet
/// objects, each sent again from its completion routine with the next tag
/// until `count` packets were sent, every echo checked byte for byte.
#[pin_data]
pub(crate) struct Flow {
    count: u32,
    /// Next tag to send.
    next: AtomicU32,
    good: AtomicU32,
    bad: AtomicU32,
    /// What the report says the packets went to, if the flow reports
    /// itself when it ends ([`Flow::new`]).
    to: Option<&'static str>,
    start: Instant<Monotonic>,
    /// Where payloads are built (completion routines run in softirq
    /// context, where 4 KiB does not fit on the stack).
    #[pin]
    buf: SpinLockIrq<KVec<u8>>,
}

impl Flow {
    /// A flow of `count` packets; with `to`, the last echo logs
    /// "N of N packets to `to` echoed byte-exact, B bad, in T ms".
    pub(crate) fn new(count: u32, to: Option<&'static str>) -> Result<Arc<Self>> {
        let buf = KVec::from_elem(0u8, MAX_PAYLOAD, GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Flow {
                count,
                next: AtomicU32::new(0),
                good: AtomicU32::new(0),
                bad: AtomicU32::new(0),
                to,
                start: Instant::now(),
                buf <- new_spinlock_irq!(buf),
            }),
            GFP_KERNEL,
        )
    }

    /// Starts the flow: `window` packets in flight on `channel`.
    pub(crate) fn start(self: &Arc<Self>, channel: kmcl::ChannelRef<'_>, window: u32) -> Result {
        for _ in 0..window.clamp(1, 1024).min(self.count) {
            self.send_next(kmcl::Packet::new(channel, self.clone())?);
        }
        Ok(())
    }

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
            self.count_one(false);
        }
    }

    fn count_one(&self, good: bool) {
        let counter = if good { &self.good } else { &self.bad };
        counter.fetch_add(1, Ordering::SeqCst);
        if let (Some(to), true) = (self.to, self.finished() == self.count) {
            pr_info!(
                "{} of {} packets to {} echoed byte-exact, {} bad, in {} ms\n",
                self.good(),
                self.count,
                to,
                self.bad(),
                self.start.elapsed().as_millis()
            );
        }
    }

    /// Echoes that came back byte-exact.
    pub(crate) fn good(&self) -> u32 {
        self.good.load(Ordering::SeqCst)
    }

    /// Sends refused and echoes that did not come back byte-exact.
    pub(crate) fn bad(&self) -> u32 {
        self.bad.load(Ordering::SeqCst)
    }

    /// Packets whose transaction is over.
    pub(crate) fn finished(&self) -> u32 {
        self.good() + self.bad()
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
        self.count_one(good);
        if status.is_ok() {
            self.send_next(packet);
        }
    }
}
