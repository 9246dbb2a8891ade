// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of channels, through the API a driver uses, by behaviour;
//! each file is a suite. What they share is here.

mod context;
mod failure;
mod flow;
mod gpadl;
mod lifecycle;
mod packets;
mod subchannels;
mod sync;
mod teardown;
mod transfer;

use core::sync::atomic::{
    AtomicU32,
    Ordering, //
};

use kernel::{
    prelude::*,
    sync::Arc,
    time::{
        delay::fsleep,
        Delta, //
    },
};

use crate::{
    engine::{
        datapath::{
            IncomingPacket,
            SendCompletion,
            PEER_STALL_MS,
            QUEUE_LIMIT_MIN, //
        },
        testing::{channel_pair, close_pair as close, connect as open, wait_until},
        types::Guid,
    },
    protocol::lifecycle::Role,
    transport::loopback::LoopbackBus,
};

use super::{
    Channel,
    PacketCallbacks, //
};

/// Server side: completes every packet with its own bytes.
pub(super) struct Echo;

impl PacketCallbacks for Echo {
    fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
        let mut copy = KVec::new();
        if copy.extend_from_slice(packet.data(), GFP_ATOMIC).is_ok() {
            let _ = packet.complete(&copy);
        }
    }
}

#[derive(Default)]
pub(super) struct Tally {
    ok: AtomicU32,
    mismatched: AtomicU32,
    removed: AtomicU32,
    other: AtomicU32,
}

impl Tally {
    pub(super) fn total(&self) -> u32 {
        self.ok.load(Ordering::SeqCst)
            + self.mismatched.load(Ordering::SeqCst)
            + self.removed.load(Ordering::SeqCst)
            + self.other.load(Ordering::SeqCst)
    }

    pub(super) fn wait_total(&self, n: u32) -> bool {
        for _ in 0..3000 {
            if self.total() >= n {
                return true;
            }
            fsleep(Delta::from_millis(10));
        }
        false
    }
}

/// Client side: expects its payload back.
pub(super) struct Expect {
    sent: KVec<u8>,
    tally: Arc<Tally>,
}

impl Expect {
    /// A routine that expects a completion payload equal to `sent` and
    /// counts the outcome in `tally`.
    pub(super) fn new(sent: KVec<u8>, tally: &Arc<Tally>) -> Result<KBox<Self>> {
        Ok(KBox::new(
            Expect {
                sent,
                tally: tally.clone(),
            },
            GFP_KERNEL,
        )?)
    }
}

impl SendCompletion for Expect {
    fn complete(&mut self, status: Result, data: &[u8]) {
        let counter = match status {
            Ok(()) if data.get(..self.sent.len()) == Some(&self.sent[..]) => &self.tally.ok,
            Ok(()) => &self.tally.mismatched,
            Err(e) if e == ENODEV => &self.tally.removed,
            Err(_) => &self.tally.other,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

pub(super) const TYPE: Guid = [0x33; 16];

pub(super) fn pair(bus: &Arc<LoopbackBus>) -> Result<(Arc<Channel>, Arc<Channel>)> {
    pair_with(bus, Arc::new(Echo, GFP_KERNEL)?)
}

pub(super) fn pair_with(
    bus: &Arc<LoopbackBus>,
    server_callbacks: Arc<dyn PacketCallbacks>,
) -> Result<(Arc<Channel>, Arc<Channel>)> {
    channel_pair(bus, TYPE, Some(server_callbacks))
}

pub(super) fn pattern(len: usize, tag: u32) -> Result<KVec<u8>> {
    let mut v = KVec::with_capacity(len, GFP_KERNEL)?;
    for i in 0..len {
        v.push((i as u32 ^ tag.wrapping_mul(131)) as u8, GFP_KERNEL)?;
    }
    Ok(v)
}

pub(super) fn send_one(client: &Arc<Channel>, tally: &Arc<Tally>, len: usize, tag: u32) -> Result {
    let payload = pattern(len, tag)?;
    client.send(&payload, true, Expect::new(pattern(len, tag)?, tally)?)
}

/// Server side: keeps packets uncompleted until the test says so.
#[pin_data]
pub(super) struct Holder {
    #[pin]
    held: kernel::sync::SpinLockIrq<KVec<IncomingPacket>>,
    delivered: AtomicU32,
    most_held: AtomicU32,
    /// Fail packets whose first byte is 0xff instead of holding them.
    fail_marked: bool,
}

impl Holder {
    pub(super) fn new(fail_marked: bool) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Holder {
                held <- kernel::new_spinlock_irq!(KVec::new()),
                delivered: AtomicU32::new(0),
                most_held: AtomicU32::new(0),
                fail_marked,
            }),
            GFP_KERNEL,
        )
    }

    pub(super) fn held(&self) -> u32 {
        self.held.lock().len() as u32
    }

    /// The transaction id of the first packet held (0: none).
    pub(super) fn first_id(&self) -> u64 {
        self.held.lock().first().map_or(0, |p| p.transaction_id())
    }

    /// Completes up to `n` held packets with an empty payload.
    pub(super) fn complete(&self, n: usize) {
        for _ in 0..n {
            let Some(p) = self.held.lock().pop() else {
                return;
            };
            let _ = p.complete(&[]);
        }
    }

    pub(super) fn wait(&self, what: impl Fn(&Self) -> bool) -> bool {
        crate::engine::testing::wait_until(|| what(self))
    }
}

impl PacketCallbacks for Holder {
    fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
        self.delivered.fetch_add(1, Ordering::SeqCst);
        if self.fail_marked && packet.data().first() == Some(&0xff) {
            packet.fail();
            return;
        }
        let mut held = self.held.lock();
        // On failure the packet is dropped, which completes it.
        if held.push(packet, GFP_ATOMIC).is_err() {
            return;
        }
        self.most_held
            .fetch_max(held.len() as u32, Ordering::SeqCst);
    }
}

/// Sends `payload`, counting the routine's status in `tally` (any
/// completion payload counts as ok).
pub(super) fn send_counted(
    client: &Arc<Channel>,
    tally: &Arc<Tally>,
    payload: &[u8],
    wait_for_completion: bool,
) -> Result {
    let routine = Expect::new(KVec::new(), tally)?;
    client.send(payload, wait_for_completion, routine)
}

/// Waits up to five seconds for `what`.
pub(super) fn holder_wait(what: impl Fn() -> bool) -> bool {
    wait_until(what)
}
