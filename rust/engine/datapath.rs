// SPDX-License-Identifier: GPL-2.0

//! The packet data path of a connected channel.
//!
//! A connection has two rings, in pages the client donates (as a Hyper-V
//! guest does): one per direction. Each endpoint writes its outgoing ring
//! and reads its incoming ring; a channel's receive work, on the BH
//! workqueue (softirq context, like hv_vmbus's per-channel tasklet), drains
//! the incoming ring and hands packets to the driver.
//!
//! - A send that finds the ring full is queued and written once the reader
//!   has made room: the writer sets `pending_send_sz`, the reader's commit
//!   reports the crossing, and the reader kicks the writer. A send never
//!   fails because the ring is full, and packets stay in order.
//! - The queue is bounded: beyond [`QUEUE_LIMIT_MIN`] bytes (or four times
//!   the ring, if larger) a send fails with `-ENOBUFS` while the other
//!   endpoint still makes progress, and once it has read nothing for
//!   [`PEER_STALL_MS`] the other endpoint is taken for dead: the channel
//!   is closed (the send gets `-EPIPE` from here, which the channel turns
//!   into closing and `-ENODEV`). Completions are never refused: they are
//!   queued up to twice the limit, beyond which the other endpoint (sending
//!   without reading) is taken for hostile the same way.
//! - A packet sent with a completion request is tracked by transaction id
//!   until the completion arrives ([`crate::protocol::transactions`]); a
//!   completion with an id that is not outstanding (forged, repeated, never
//!   sent) means the other endpoint is broken or hostile: the channel is
//!   closed, as after PacketFail. A late completion of a cancelled
//!   synchronous request is dropped. When the connection goes away, every
//!   tracked packet is completed with `-ENODEV`.
//!
//! # Locking
//!
//! `DataPath` lives under the channel's `data` lock (an IRQ-disabling
//! spinlock: it is taken from process and softirq context). Driver
//! callbacks and completion routines are never called with it held.

use kernel::{
    prelude::*,
    sync::Arc,
    time::{
        Instant,
        Monotonic, //
    },
};

use super::channel::Channel;
use super::host::HostLink;
use crate::protocol::{
    gpa::{self, GpaRanges},
    packet::PacketType,
    ring::{
        self,
        ring_state,
        IncomingRing,
        Next,
        OutgoingRing,
        RingState,
        WriteError, //
    },
    transactions::{
        InsertError,
        Matched,
        Slot,
        SlotStore,
        Transactions, //
    },
};
use crate::shmem::{GpadlPages, RingPages};
use crate::trace;

/// Called once when a sent packet's transaction is over (KMCL
/// `EvtVmbPacketCompletionRoutine`), in softirq or process context.
pub trait SendCompletion: Send {
    /// `status` is `Ok` when the other endpoint completed the packet (or,
    /// without a completion request, when the packet was written to the
    /// ring) and `Err(ENODEV)` when the connection ended first; `data` is
    /// the completion payload.
    fn complete(&mut self, status: Result, data: &[u8]);
}

/// What runs once when a sent packet's transaction is over.
pub enum Routine {
    /// A completion object.
    Boxed(KBox<dyn SendCompletion>),
    /// A function and a word for it: sending allocates nothing (the C API
    /// passes its packet objects this way).
    Function(fn(usize, Result, &[u8]), usize),
}

impl Routine {
    /// Runs the routine (once: it is consumed).
    pub(crate) fn run(self, status: Result, data: &[u8]) {
        match self {
            Routine::Boxed(mut b) => b.complete(status, data),
            Routine::Function(f, word) => f(word, status, data),
        }
    }
}

impl<T: SendCompletion + 'static> From<KBox<T>> for Routine {
    fn from(b: KBox<T>) -> Self {
        Routine::Boxed(b)
    }
}

/// Incoming packet callbacks (KMCL `EvtVmbChannelProcessPacket` and
/// `EvtVmbChannelProcessingComplete`), called in softirq context.
pub trait PacketCallbacks: Send + Sync {
    /// A packet arrived. The driver completes it, now or later, with
    /// [`IncomingPacket::complete`].
    fn process_packet(&self, channel: &Arc<Channel>, packet: IncomingPacket);
    /// The incoming ring went empty after `count` packets.
    fn processing_complete(&self, _channel: &Arc<Channel>, _count: u32) {}
    /// `EvtVmbChannelRestorePacket` (server taking over a saved
    /// connection, after Opened): `lib` is the saved packet (for
    /// [`Channel::restore_incoming`]), `driver_state` what the driver
    /// saved for it. An error (or no implementation) lets kmcl complete
    /// the packet with an empty payload.
    fn restore_packet(&self, _channel: &Arc<Channel>, _lib: &[u8], _driver_state: &[u8]) -> Result {
        Err(EOPNOTSUPP)
    }
}

/// An incoming packet (KMCL `VMBPACKETCOMPLETION`): a copy of the payload,
/// valid until the packet is completed. Completing it sends a completion
/// to the other endpoint if it asked for one. Dropping it uncompleted
/// completes it with an empty payload, so the other endpoint is never left
/// waiting.
///
/// One allocation, made before the packet leaves the ring, so that handing
/// it to a driver (or to C, as a handle: [`IncomingPacket::into_box`])
/// cannot fail.
pub struct IncomingPacket(KBox<Incoming>);

/// The state of an [`IncomingPacket`].
pub struct Incoming {
    channel: Arc<Channel>,
    /// The packet as read from the ring (descriptor, header, payload), or
    /// for a restored packet its payload alone.
    data: KVec<u8>,
    /// Where the payload starts in `data`.
    payload_at: usize,
    /// Zeroed driver context (KMCL `ClientContextSize`).
    context: KVec<u8>,
    transaction_id: u64,
    completion_requested: bool,
    done: bool,
    /// External data the sender described (GPA-direct packets), checked
    /// against what it exposed; valid until the packet is completed.
    external: Option<Arc<GpadlPages>>,
}

impl IncomingPacket {
    /// The external data the sender described (KMCL
    /// `VmbChannelPacketGetExternalData`), valid until the packet is
    /// completed; `None` for an in-band packet.
    pub fn external_data(&self) -> Option<&GpadlPages> {
        self.0.external.as_deref()
    }

    /// The packet's payload.
    pub fn data(&self) -> &[u8] {
        self.0.data()
    }

    /// The driver's context area for this packet, zeroed on arrival.
    pub fn context_mut(&mut self) -> &mut [u8] {
        &mut self.0.context
    }

    /// The sender's transaction id.
    pub fn transaction_id(&self) -> u64 {
        self.0.transaction_id
    }

    /// Whether the sender asked for a completion.
    pub fn completion_requested(&self) -> bool {
        self.0.completion_requested
    }

    /// The channel the packet arrived on.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.0.channel
    }

    /// KMCL `VmbChannelPacketComplete`: releases the packet and, if the
    /// sender asked for one, sends a completion carrying `payload`.
    pub fn complete(mut self, payload: &[u8]) -> Result {
        let p = &mut *self.0;
        p.done = true;
        let sent = if p.completion_requested {
            p.channel.send_completion(p.transaction_id, payload)
        } else {
            Ok(())
        };
        Channel::release_completed(self.0);
        sent
    }

    /// KMCL `VmbChannelPacketDeferToPassive`: hands the packet back; it is
    /// delivered again to `process_packet` in process context.
    pub fn defer_to_passive(self) {
        let channel = self.0.channel.clone();
        channel.defer(self);
    }

    /// KMCL `VmbChannelPacketFail`: the packet is malformed or cannot be
    /// handled. Delivery on the channel stops and its connection is closed
    /// (Suspend and Closed on both sides). No completion is sent.
    pub fn fail(mut self) {
        self.0.done = true;
        self.0.channel.fail_incoming();
    }

    /// The packet was read but is not delivered (its channel failed
    /// meanwhile): released without a completion, as a packet left in the
    /// ring of a closing channel.
    pub(crate) fn discard(mut self) {
        self.0.done = true;
        let channel = self.0.channel.clone();
        channel.discard_incoming(self.0);
    }

    /// The packet's object (where it lives until completed).
    pub(crate) fn object(&self) -> &Incoming {
        &self.0
    }

    /// The packet as one box, whose address stays put until it is turned
    /// back with [`IncomingPacket::from_box`] (the C API's handle).
    pub(crate) fn into_box(self) -> KBox<Incoming> {
        self.0
    }

    /// The packet [`IncomingPacket::into_box`] gave.
    pub(crate) fn from_box(b: KBox<Incoming>) -> Self {
        Self(b)
    }
}

impl Incoming {
    /// The packet's external data (see [`IncomingPacket::external_data`]).
    pub(crate) fn external_data(&self) -> Option<&GpadlPages> {
        self.external.as_deref()
    }

    /// The packet's payload.
    pub(crate) fn data(&self) -> &[u8] {
        self.data.get(self.payload_at..).unwrap_or_default()
    }

    /// The channel the packet arrived on.
    pub(crate) fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// (transaction id, completion requested).
    pub(crate) fn transaction(&self) -> (u64, bool) {
        (self.transaction_id, self.completion_requested)
    }

    /// A packet in flight restored from a save (live update) on `channel`.
    pub(crate) fn restored(
        channel: Arc<Channel>,
        (transaction_id, completion_requested): (u64, bool),
        payload: &[u8],
        context_size: usize,
    ) -> Result<KBox<Incoming>> {
        let mut data = KVec::new();
        data.extend_from_slice(payload, GFP_KERNEL)?;
        Ok(KBox::new(
            Incoming {
                channel,
                data,
                payload_at: 0,
                context: KVec::from_elem(0u8, context_size, GFP_KERNEL)?,
                transaction_id,
                completion_requested,
                done: false,
                external: None,
            },
            GFP_KERNEL,
        )?)
    }

    /// The packet went into a save: freed without a completion (the
    /// restored server completes it).
    pub(crate) fn saved(mut self: KBox<Self>) {
        self.done = true;
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.done {
            let _ =
                self.channel
                    .complete_incoming(self.completion_requested, self.transaction_id, &[]);
        }
    }
}

/// A packet waiting for room in the outgoing ring.
struct Queued {
    ptype: PacketType,
    /// Type-specific header (a GPA range list; empty for in-band).
    header: KVec<u8>,
    payload: KVec<u8>,
    completion_requested: bool,
    transaction_id: u64,
    /// For packets without a completion request: run once written.
    on_written: Option<Routine>,
}

/// A first-in first-out queue: a vector read from `head`, so that taking
/// the oldest item does not move the others; compacted once half of it is
/// taken. Its capacity is kept, so room can be reserved ahead.
struct Fifo<T> {
    items: KVec<Option<T>>,
    head: usize,
}

impl<T> Fifo<T> {
    const fn new() -> Self {
        Self {
            items: KVec::new(),
            head: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.head >= self.items.len()
    }

    fn len(&self) -> usize {
        self.items.len() - self.head
    }

    fn front(&self) -> Option<&T> {
        self.items.get(self.head).and_then(|q| q.as_ref())
    }

    fn restart_if_empty(&mut self) {
        if self.is_empty() {
            self.items.clear();
            self.head = 0;
        }
    }

    fn push(&mut self, item: T) -> Result {
        self.restart_if_empty();
        self.items.push(Some(item), GFP_ATOMIC)?;
        Ok(())
    }

    /// Makes room for `n` more items without allocating.
    fn reserve(&mut self, n: usize) -> Result {
        self.restart_if_empty();
        self.items.reserve(n, GFP_ATOMIC)?;
        Ok(())
    }

    /// Appends `item` in reserved room; gives it back if there is none.
    fn push_reserved(&mut self, item: T) -> core::result::Result<(), T> {
        self.restart_if_empty();
        self.items.push_within_capacity(Some(item)).map_err(|e| {
            // Only `Some` is ever pushed.
            e.0.unwrap_or_else(|| unreachable!())
        })
    }

    fn pop_front(&mut self) -> Option<T> {
        let item = self.items.get_mut(self.head)?.take();
        self.head += 1;
        if self.is_empty() {
            self.items.clear();
            self.head = 0;
        } else if self.head >= 64 && self.head * 2 >= self.items.len() {
            self.items.retain(|q| q.is_some());
            self.head = 0;
        }
        item
    }

    /// Everything still queued, oldest first.
    fn take_all(&mut self) -> KVec<Option<T>> {
        self.head = 0;
        core::mem::take(&mut self.items)
    }
}

/// Counters of one channel's data path.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Packets written to the outgoing ring (data and completions).
    pub packets_out: u64,
    /// Data packets delivered to the driver.
    pub packets_in: u64,
    /// Completions received for outstanding packets.
    pub completions_in: u64,
    /// Completions written for incoming packets that asked for one.
    pub completions_out: u64,
    /// Completions with an id that was not outstanding (the channel is
    /// closed at the first).
    pub bad_completions: u64,
    /// Completions of cancelled (timed-out) synchronous requests, dropped.
    pub late_completions: u64,
    /// Sends that found the ring full and were queued.
    pub ring_full: u64,
    /// Malformed data found in the incoming ring (the channel stops
    /// reading).
    pub ring_errors: u64,
    /// Payload bytes of the data packets delivered.
    pub bytes_in: u64,
    /// Payload bytes written (data packets and completions).
    pub bytes_out: u64,
}

/// The data path of a connected channel, under the channel's `data` lock.
pub(crate) struct DataPath {
    out: OutgoingRing<Arc<RingPages>>,
    inc: IncomingRing<Arc<RingPages>>,
    /// The other endpoint, to kick when it must look at a ring.
    peer: Peer,
    /// Receive buffer: one packet of the largest allowed size.
    buf: KVec<u8>,
    /// Largest payload this endpoint sends (`MaximumPacketSize`).
    max_packet: usize,
    /// Bytes of driver context per incoming packet.
    context_size: usize,
    /// Most external data per incoming packet: (ranges, bytes); 0: none.
    max_external: (u32, u64),
    queue: Fifo<Queued>,
    /// Routines of queued packets that were written, to run without the
    /// data lock ([`Self::pop_written`]); room for all of them is reserved
    /// when they are queued.
    written: Fifo<Routine>,
    /// Payload bytes in `queue`.
    queued_bytes: usize,
    /// Most payload bytes `queue` may hold.
    queue_limit: usize,
    /// When the queue last became non-empty or a queued packet was
    /// written: the other endpoint's last sign of life while we wait.
    progress: Instant<Monotonic>,
    /// Sent packets awaiting a completion, by transaction id.
    outstanding: Transactions<Routine, RoutineSlots>,
    /// The buffer completion payloads are received into.
    spare: KVec<u8>,
    /// The incoming ring was found corrupt: stop reading it.
    broken: bool,
    /// Transactions of the server this one replaced (a live update):
    /// their completions are dropped as late, once each.
    orphans: KVec<u64>,
    /// The channel's id, for trace events.
    chan: u32,
    pub(crate) counters: Counters,
}

/// The memory of a channel's transaction table.
pub(crate) struct RoutineSlots(KVec<Slot<Routine>>);

impl SlotStore<Routine> for RoutineSlots {
    fn slots(&self) -> usize {
        self.0.len()
    }

    fn slot(&mut self, i: usize) -> &mut Slot<Routine> {
        &mut self.0[i]
    }

    fn push(&mut self, slot: Slot<Routine>) -> core::result::Result<(), Slot<Routine>> {
        // Sends may come from softirq context.
        self.0.push_within_capacity(slot).or_else(|e| {
            let slot = e.0;
            if self.0.reserve(1, GFP_ATOMIC).is_err() {
                return Err(slot);
            }
            self.0.push_within_capacity(slot).map_err(|e| e.0)
        })
    }
}

fn no_transactions() -> Transactions<Routine, RoutineSlots> {
    Transactions::new(RoutineSlots(KVec::new()))
}

/// Payload bytes a channel queues for a full ring at least (see the
/// module documentation).
pub const QUEUE_LIMIT_MIN: usize = 1 << 20;

/// Time without the other endpoint reading anything, while sends wait for
/// room, after which it is taken for dead.
pub const PEER_STALL_MS: i64 = 2000;

/// Incoming packet objects a channel keeps for reuse while connected.
pub(crate) const POOL_SIZE: usize = 64;

/// Keeps a completed incoming packet object in `pool` for reuse; gives it
/// back if the pool is full (or not set up: not connected).
pub(crate) fn recycle(
    pool: &mut KVec<KBox<Incoming>>,
    b: KBox<Incoming>,
) -> Option<KBox<Incoming>> {
    pool.push_within_capacity(scrub(b)).err().map(|e| e.0)
}

/// A completed incoming packet object, ready for reuse: it holds nothing
/// of its last packet's sender.
pub(crate) fn scrub(mut b: KBox<Incoming>) -> KBox<Incoming> {
    b.external = None;
    b
}

/// The buffer to read an incoming data packet of `len` bytes into: that
/// of the object in `spare` (the recycled one, usually already `len` long,
/// else a new object). `None`: out of memory (`spare` keeps its object).
fn incoming_buffer<'a>(
    spare: &'a mut Option<KBox<Incoming>>,
    context_size: usize,
    channel: &Arc<Channel>,
    len: usize,
) -> Option<&'a mut [u8]> {
    if spare.is_none() {
        // Built as done, so that dropping it sends no completion: the
        // data lock is held here.
        *spare = Some(
            KBox::new(
                Incoming {
                    channel: channel.clone(),
                    data: KVec::new(),
                    payload_at: 0,
                    context: KVec::from_elem(0u8, context_size, GFP_ATOMIC).ok()?,
                    transaction_id: 0,
                    completion_requested: false,
                    done: true,
                    external: None,
                },
                GFP_ATOMIC,
            )
            .ok()?,
        );
    }
    let data = &mut spare.as_mut()?.data;
    if data.len() != len {
        data.resize(len, 0, GFP_ATOMIC).ok()?;
    }
    Some(data)
}

/// The object in `spare`, into which packet `pkt` was read, made the
/// incoming packet it is.
fn take_incoming(
    spare: &mut Option<KBox<Incoming>>,
    pkt: &ring::IncomingPacket,
    external: Option<Arc<GpadlPages>>,
) -> Option<KBox<Incoming>> {
    let mut b = spare.take()?;
    let d = pkt.descriptor;
    b.payload_at = d.data_offset();
    b.context.fill(0);
    b.transaction_id = d.transaction_id();
    b.completion_requested = d.completion_requested();
    b.done = false;
    b.external = external;
    Some(b)
}

/// The other endpoint of a data path.
#[derive(Clone)]
pub(crate) enum Peer {
    /// A channel on kmcl's loopback VMBus.
    Loopback(Arc<Channel>),
    /// The VMBus host, through hv_vmbus.
    Host(Arc<HostLink>),
}

impl Peer {
    /// The other endpoint's channel, if it is a loopback channel.
    pub(crate) fn channel(&self) -> Option<&Arc<Channel>> {
        match self {
            Peer::Loopback(c) => Some(c),
            Peer::Host(_) => None,
        }
    }
}

/// The pages `peer` exposed for transaction `tid`, if `header` (a GPA range
/// list read from the ring) describes exactly them within `limits`
/// (ranges, bytes). A host's GPA ranges would name guest memory the host
/// chose: never accepted.
fn check_external(
    peer: &Peer,
    header: &[u8],
    tid: u64,
    (max_ranges, max_bytes): (u32, u64),
) -> Option<Arc<GpadlPages>> {
    let ranges = GpaRanges::parse(header, max_ranges, max_bytes).ok()?;
    let pages = peer.channel()?.exposed(tid)?;
    let mut it = ranges.iter();
    let r = it.next()?;
    let same = it.next().is_none()
        && r.offset as usize == pages.offset()
        && r.len as usize == pages.len()
        && r.pfns().eq(pages.pfns());
    same.then_some(pages)
}

/// The outcome of a send.
pub(crate) struct Sent {
    /// The other endpoint, when it must be kicked.
    pub(crate) kick: Option<Peer>,
    /// A routine to run now, without locks (a packet without a completion
    /// request was written).
    pub(crate) run_now: Option<Routine>,
    /// The transaction id (0 without a completion request).
    pub(crate) id: u64,
}

/// What a receive step found.
pub(crate) enum Received {
    /// A data packet for the driver.
    Data(IncomingPacket),
    /// A completion for one of our packets, with its routine.
    Completion(Routine, KVec<u8>),
    /// Nothing (more) to read.
    Empty,
    /// The other endpoint wrote nonsense (a corrupt ring, a completion
    /// for a transaction that is not outstanding): the channel must be
    /// closed. The reason, for the trace.
    Broken(&'static str),
}

impl DataPath {
    /// Sets up channel `chan`'s ends of the connection's rings, with the
    /// channel's maximum packet size and per-packet context size.
    pub(crate) fn new(
        out: Arc<RingPages>,
        inc: Arc<RingPages>,
        peer: Peer,
        chan: u32,
        (max_packet, context_size, max_external): (usize, usize, (u32, u64)),
    ) -> Result<Self> {
        // Any packet that fits the incoming ring fits this buffer.
        let buf_len = crate::protocol::ring::RingMemory::data_len(&*inc);
        let queue_limit =
            QUEUE_LIMIT_MIN.max(4 * crate::protocol::ring::RingMemory::data_len(&*out));
        let out = OutgoingRing::new(out).map_err(|_| EINVAL)?;
        let inc = IncomingRing::new(inc).map_err(|_| EINVAL)?;
        Ok(Self {
            out,
            inc,
            peer,
            buf: KVec::from_elem(0u8, buf_len, GFP_KERNEL)?,
            max_packet,
            context_size,
            max_external,
            queue: Fifo::new(),
            written: Fifo::new(),
            queued_bytes: 0,
            queue_limit,
            progress: Instant::now(),
            outstanding: no_transactions(),
            spare: KVec::new(),
            broken: false,
            orphans: KVec::new(),
            chan,
            counters: Counters::default(),
        })
    }

    /// Sends awaiting completion, sends queued, and the (outgoing,
    /// incoming) ring control values.
    pub(crate) fn snapshot(&self) -> (usize, usize, (RingState, RingState)) {
        (
            self.outstanding.outstanding(),
            self.queue.len(),
            (ring_state(self.out.memory()), ring_state(self.inc.memory())),
        )
    }

    /// The other endpoint.
    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Bytes of driver context per incoming packet.
    pub(crate) fn context_size(&self) -> usize {
        self.context_size
    }

    /// Completions of `ids` (the replaced server's transactions) are
    /// dropped as late instead of closing the channel.
    pub(crate) fn set_orphans(&mut self, ids: KVec<u64>) {
        self.orphans = ids;
    }

    /// The other endpoint is now `peer` (a restored server took over).
    pub(crate) fn set_peer(&mut self, peer: Peer) {
        self.peer = peer;
    }

    /// Publishes the read index of every packet read so far (before the
    /// data path is handed over: its successor starts there).
    pub(crate) fn commit_reads(&mut self) -> bool {
        self.inc.commit()
    }

    /// Queues or writes a packet. Returns whether the peer must be kicked,
    /// and a routine to run now (a packet without a completion request that
    /// was written at once).
    pub(crate) fn send(
        &mut self,
        ptype: PacketType,
        payload: &[u8],
        completion: Routine,
        wait_for_completion: bool,
    ) -> Result<Sent> {
        self.send_with_id(ptype, payload, completion, wait_for_completion, true)
    }

    /// [`Self::send`], also returning the transaction id (0 without a
    /// completion request). With `may_queue` false a packet that does not
    /// fit now fails with `-EOVERFLOW` instead of being queued.
    pub(crate) fn send_with_id(
        &mut self,
        ptype: PacketType,
        payload: &[u8],
        completion: Routine,
        wait_for_completion: bool,
        may_queue: bool,
    ) -> Result<Sent> {
        if payload.len() > self.max_packet {
            return Err(EINVAL);
        }
        let (transaction_id, routine) = if wait_for_completion {
            match self.outstanding.insert(completion) {
                Ok(id) => (Some(id), None),
                Err((InsertError::NoMemory, _)) => return Err(ENOMEM),
                Err((InsertError::Full, _)) => return Err(EBUSY),
            }
        } else {
            (None, Some(completion))
        };
        let id = transaction_id.unwrap_or(0);
        let sent = self.write_or_queue(
            ptype,
            &[],
            payload,
            (wait_for_completion, id),
            routine,
            may_queue,
        );
        if sent.is_err() {
            // The routine will never run.
            self.forget(transaction_id);
        }
        sent
    }

    /// Writes a packet whose transaction (if any) is set up, or queues it
    /// for room (unless `may_queue` is false: `-EOVERFLOW`). On an error
    /// nothing was written or queued; the caller undoes the transaction.
    /// `routine` runs once the packet is written (no completion request).
    fn write_or_queue(
        &mut self,
        ptype: PacketType,
        header: &[u8],
        payload: &[u8],
        (wait_for_completion, id): (bool, u64),
        routine: Option<Routine>,
        may_queue: bool,
    ) -> Result<Sent> {
        if self.queue.is_empty() {
            match self
                .out
                .write(ptype, header, payload, wait_for_completion, id)
            {
                Ok(()) => {
                    self.counters.packets_out += 1;
                    self.counters.bytes_out += payload.len() as u64;
                    trace::packet_sent(
                        self.chan,
                        id,
                        ptype as u16,
                        payload.len(),
                        wait_for_completion,
                        false,
                    );
                    let kick = self.out.commit().unwrap_or(false);
                    return Ok(Sent {
                        kick: kick.then(|| self.peer.clone()),
                        run_now: routine,
                        id,
                    });
                }
                Err(WriteError::Full { .. }) => {}
                Err(_) => return Err(EINVAL),
            }
        }
        if !may_queue {
            return Err(EOVERFLOW);
        }
        self.may_queue(payload.len(), self.queue_limit)?;
        let mut copy = KVec::with_capacity(payload.len(), GFP_ATOMIC)?;
        copy.extend_from_slice(payload, GFP_ATOMIC)?;
        let mut header_copy = KVec::new();
        header_copy.extend_from_slice(header, GFP_ATOMIC)?;
        if routine.is_some() {
            // Room to hand its routine out once written.
            self.written.reserve(self.queue.len() + 1)?;
        }
        self.queue.push(Queued {
            ptype,
            header: header_copy,
            payload: copy,
            completion_requested: wait_for_completion,
            transaction_id: id,
            on_written: routine,
        })?;
        self.note_queued(payload.len());
        self.counters.ring_full += 1;
        // The packet is queued: it completes later whatever happens now (a
        // corrupt ring shows up on the next read).
        let (kick, _) = self.flush_queue().unwrap_or((false, 0));
        Ok(Sent {
            kick: kick.then(|| self.peer.clone()),
            run_now: None,
            id,
        })
    }

    /// Whether `len` more bytes may be queued under `limit`: `-ENOBUFS`
    /// when not, `-EPIPE` when the other endpoint has also read nothing for
    /// [`PEER_STALL_MS`] (close the channel).
    fn may_queue(&self, len: usize, limit: usize) -> Result {
        if self.queued_bytes + len <= limit {
            return Ok(());
        }
        if self.progress.elapsed().as_millis() >= PEER_STALL_MS {
            pr_err!(
                "channel {}: the other endpoint has read nothing for {} ms with {} bytes queued; closing the channel\n",
                self.chan,
                self.progress.elapsed().as_millis(),
                self.queued_bytes
            );
            return Err(EPIPE);
        }
        Err(ENOBUFS)
    }

    /// `len` bytes were queued.
    fn note_queued(&mut self, len: usize) {
        if self.queued_bytes == 0 {
            self.progress = Instant::now();
        }
        self.queued_bytes += len;
    }

    /// Sends `payload` with external data `pages` (a GPA-direct packet; a
    /// completion is always requested, as KMCL requires): `owner` (this
    /// endpoint) exposes the pages to the other endpoint for the
    /// transaction, until its completion. With `may_queue` false a packet
    /// that does not fit now fails with `-EOVERFLOW`.
    pub(crate) fn send_external(
        &mut self,
        owner: &Channel,
        payload: &[u8],
        pages: Arc<GpadlPages>,
        completion: Routine,
        may_queue: bool,
    ) -> Result<Sent> {
        if payload.len() > self.max_packet {
            return Err(EINVAL);
        }
        // An isolated VM's host cannot read guest pages it is only told of.
        if let Peer::Host(link) = &self.peer {
            if !link.shares_memory() {
                return Err(EOPNOTSUPP);
            }
        }
        // The range list: one range over the pages.
        let mut pfns = KVec::with_capacity(pages.mdl_view().nr_pages as usize, GFP_ATOMIC)?;
        for pfn in pages.pfns() {
            pfns.push(pfn, GFP_ATOMIC)?;
        }
        let (offset, len) = (u32::try_from(pages.offset())?, u32::try_from(pages.len())?);
        let hlen = gpa::encoded_len(core::iter::once((offset, len))).ok_or(EINVAL)?;
        let mut header = KVec::from_elem(0u8, hlen, GFP_ATOMIC)?;
        gpa::encode(core::iter::once((offset, len, &pfns[..])), &mut header).map_err(|_| EINVAL)?;
        let id = match self.outstanding.insert(completion) {
            Ok(id) => id,
            Err((InsertError::NoMemory, _)) => return Err(ENOMEM),
            Err((InsertError::Full, _)) => return Err(EBUSY),
        };
        if let Err(e) = owner.expose(id, pages) {
            self.forget(Some(id));
            return Err(e);
        }
        let sent = self.write_or_queue(
            PacketType::GpaDirect,
            &header,
            payload,
            (true, id),
            None,
            may_queue,
        );
        if sent.is_err() {
            owner.unexpose(id);
            self.forget(Some(id));
        }
        sent
    }

    /// Stops waiting for the completion of `id` (a synchronous request
    /// that timed out). Returns the routine if it was still outstanding; a
    /// completion arriving later is counted as a bad completion.
    pub(crate) fn cancel(&mut self, id: u64) -> Option<Routine> {
        self.outstanding.cancel(id)
    }

    /// A send failed: its routine will never run.
    fn forget(&mut self, id: Option<u64>) {
        if let Some(id) = id {
            drop(self.outstanding.forget(id));
        }
    }

    /// Writes queued packets while they fit. Returns whether to kick the
    /// peer and how many were written.
    pub(crate) fn flush_queue(&mut self) -> Result<(bool, usize)> {
        let mut written = 0;
        while let Some(q) = self.queue.front() {
            match self.out.write(
                q.ptype,
                &q.header,
                &q.payload,
                q.completion_requested,
                q.transaction_id,
            ) {
                Ok(()) => {
                    self.counters.packets_out += 1;
                    self.counters.bytes_out += q.payload.len() as u64;
                    if q.ptype == PacketType::Completion {
                        self.counters.completions_out += 1;
                    }
                    trace::packet_sent(
                        self.chan,
                        q.transaction_id,
                        q.ptype as u16,
                        q.payload.len(),
                        q.completion_requested,
                        true,
                    );
                    written += 1;
                    self.queued_bytes -= q.payload.len();
                    self.progress = Instant::now();
                    if let Some(r) = self.queue.pop_front().and_then(|mut q| q.on_written.take()) {
                        // Written: a packet without a completion request
                        // is complete. Its routine runs without the lock
                        // (it may send again); room was reserved.
                        if let Err(r) = self.written.push_reserved(r) {
                            // Not expected (room was reserved): the
                            // routine still runs once.
                            pr_err!("channel {}: no room for a routine\n", self.chan);
                            if self.written.push(r).is_err() {
                                pr_err!("channel {}: a send routine was lost\n", self.chan);
                            }
                        }
                    }
                }
                Err(WriteError::Full { needed }) => {
                    self.out.set_pending_send_size(needed as u32);
                    // The reader may have made room before it could see
                    // the request: look again, or no signal may come.
                    if self.out.free_bytes().is_ok_and(|free| free >= needed) {
                        continue;
                    }
                    break;
                }
                Err(_) => return Err(EINVAL),
            }
        }
        if self.queue.is_empty() {
            self.out.set_pending_send_size(0);
        }
        let kick = self.out.commit().unwrap_or(false);
        Ok((kick, written))
    }

    /// Reads one packet; a data packet goes into the object in `spare` if
    /// there is one. Returns what it was, and whether the peer must be
    /// kicked (it is waiting for room we just made).
    pub(crate) fn receive(
        &mut self,
        channel: &Arc<Channel>,
        spare: &mut Option<KBox<Incoming>>,
    ) -> (Received, bool) {
        if self.broken {
            return (Received::Empty, false);
        }
        loop {
            // The receive buffer holds any packet the ring can hold, so a
            // longer one is corruption (the ring's own checks catch it
            // first).
            let (buf, context_size) = (&mut self.buf, self.context_size);
            let max = buf.len();
            // Data packets are read straight into their packet object;
            // completions into the receive buffer.
            let next = self.inc.read_into(|d| match d.packet_type() {
                _ if d.packet_len() > max => None,
                PacketType::Completion => buf.get_mut(..d.packet_len()),
                _ => incoming_buffer(spare, context_size, channel, d.packet_len()),
            });
            let next = next.and_then(|n| match n {
                Next::Declined(d) if d.packet_len() > max => Err(ring::RingError::PacketTooLarge {
                    len: d.packet_len(),
                    max,
                }),
                n => Ok(n),
            });
            let pkt = match next {
                Ok(Next::Read(p)) => p,
                Ok(Next::Empty) => return (Received::Empty, self.inc.commit()),
                Ok(Next::Declined(_)) => {
                    // Out of memory: the packet stays in the ring for the
                    // next pass.
                    pr_warn!("out of memory receiving a packet\n");
                    return (Received::Empty, false);
                }
                Err(e) => {
                    pr_err!(
                        "channel {}: incoming ring is corrupt ({:?}); closing the channel\n",
                        self.chan,
                        e
                    );
                    self.counters.ring_errors += 1;
                    self.broken = true;
                    return (Received::Broken("corrupt_ring"), false);
                }
            };
            let d = pkt.descriptor;
            trace::packet_fetched(
                self.chan,
                d.transaction_id(),
                d.packet_type() == PacketType::Completion,
                d.payload_len(),
            );
            if d.packet_type() != PacketType::Completion {
                return self.take_data(spare, &pkt);
            }
            // The completion payload goes into the spare buffer, which the
            // receive work hands back after the routine ran.
            let mut data = core::mem::take(&mut self.spare);
            data.clear();
            if data
                .extend_from_slice(pkt.payload(&self.buf), GFP_ATOMIC)
                .is_err()
            {
                // Out of memory: read it again on the next pass.
                pr_warn!("out of memory receiving a packet\n");
                self.inc.revert();
                return (Received::Empty, false);
            }
            let kick = self.inc.commit();
            let id = d.transaction_id();
            match self.outstanding.complete(id) {
                Matched::Done(routine) => {
                    self.counters.completions_in += 1;
                    channel.unexpose(id);
                    return (Received::Completion(routine, data), kick);
                }
                Matched::Late => {
                    self.counters.late_completions += 1;
                    channel.unexpose(id);
                    self.spare = data;
                }
                Matched::Unknown if let Some(i) = self.orphans.iter().position(|o| *o == id) => {
                    let _ = self.orphans.remove(i);
                    self.counters.late_completions += 1;
                    self.spare = data;
                }
                Matched::Unknown => {
                    pr_err!(
                        "channel {}: completion for transaction {:#x}, which is not outstanding; closing the channel\n",
                        self.chan,
                        id
                    );
                    self.counters.bad_completions += 1;
                    self.spare = data;
                    self.broken = true;
                    return (Received::Broken("bad_completion"), kick);
                }
            }
        }
    }

    /// The data packet `pkt` was read into the object in `spare`: checks
    /// its external data and makes it an incoming packet.
    fn take_data(
        &mut self,
        spare: &mut Option<KBox<Incoming>>,
        pkt: &ring::IncomingPacket,
    ) -> (Received, bool) {
        let d = pkt.descriptor;
        // External data: the range list must describe exactly what the
        // sender exposed for this transaction, within our limits.
        let external = if d.packet_type() == PacketType::GpaDirect {
            let found = match spare.as_deref() {
                Some(object) if d.completion_requested() => check_external(
                    &self.peer,
                    pkt.header(&object.data),
                    d.transaction_id(),
                    self.max_external,
                ),
                _ => None,
            };
            if found.is_none() {
                pr_err!(
                    "channel {}: external data of transaction {:#x} is not what the sender described or exceeds the limits; closing the channel\n",
                    self.chan,
                    d.transaction_id()
                );
                self.counters.ring_errors += 1;
                self.broken = true;
                return (Received::Broken("bad_external_data"), false);
            }
            found
        } else {
            None
        };
        let Some(packet) = take_incoming(spare, pkt, external) else {
            // Not reached: the packet was read into the object.
            self.inc.revert();
            return (Received::Empty, false);
        };
        let kick = self.inc.commit();
        self.counters.packets_in += 1;
        self.counters.bytes_in += d.payload_len() as u64;
        (Received::Data(IncomingPacket(packet)), kick)
    }

    /// Whether routines of written packets wait to be run.
    pub(crate) fn has_written(&self) -> bool {
        !self.written.is_empty()
    }

    /// The oldest routine of a written packet, to run once the data lock
    /// is released.
    pub(crate) fn pop_written(&mut self) -> Option<Routine> {
        self.written.pop_front()
    }

    /// Hands back the buffer of a [`Received::Completion`].
    pub(crate) fn return_spare(&mut self, data: KVec<u8>) {
        if data.capacity() > self.spare.capacity() {
            self.spare = data;
        }
    }

    /// Takes every routine still waiting (the connection is ending). No
    /// allocation: nothing can be lost.
    pub(crate) fn take_unfinished(&mut self) -> Unfinished {
        self.queued_bytes = 0;
        Unfinished {
            outstanding: core::mem::replace(&mut self.outstanding, no_transactions()),
            queue: self.queue.take_all(),
            written: self.written.take_all(),
        }
    }

    /// Queues or writes a completion for the incoming packet `id`.
    /// Returns whether to kick the peer.
    pub(crate) fn send_completion(&mut self, id: u64, payload: &[u8]) -> Result<bool> {
        if self.queue.is_empty() {
            match self
                .out
                .write(PacketType::Completion, &[], payload, false, id)
            {
                Ok(()) => {
                    self.counters.packets_out += 1;
                    self.counters.bytes_out += payload.len() as u64;
                    self.counters.completions_out += 1;
                    trace::packet_sent(
                        self.chan,
                        id,
                        PacketType::Completion as u16,
                        payload.len(),
                        false,
                        false,
                    );
                    return Ok(self.out.commit().unwrap_or(false));
                }
                Err(WriteError::Full { .. }) => {}
                Err(_) => return Err(EINVAL),
            }
        }
        // A completion is never refused for want of room, but a peer that
        // keeps sending without reading ours is stopped.
        if self.may_queue(payload.len(), 2 * self.queue_limit) == Err(EPIPE) {
            return Err(EPIPE);
        }
        let mut copy = KVec::with_capacity(payload.len(), GFP_ATOMIC)?;
        copy.extend_from_slice(payload, GFP_ATOMIC)?;
        self.queue.push(Queued {
            ptype: PacketType::Completion,
            header: KVec::new(),
            payload: copy,
            completion_requested: false,
            transaction_id: id,
            on_written: None,
        })?;
        self.note_queued(payload.len());
        self.counters.ring_full += 1;
        // Queued: it is written later whatever happens now.
        Ok(self.flush_queue().is_ok_and(|(kick, _)| kick))
    }
}

/// Completion routines of a connection that ended.
pub(crate) struct Unfinished {
    outstanding: Transactions<Routine, RoutineSlots>,
    queue: KVec<Option<Queued>>,
    /// Written, routine not run yet: they succeeded.
    written: KVec<Option<Routine>>,
}

impl Unfinished {
    /// Runs every routine with `status` (call without locks held); packets
    /// already written complete with success.
    pub(crate) fn complete_all(self, status: Result) {
        self.finish(status, |_| {});
    }

    /// As [`Self::complete_all`], also returning the ids of the
    /// transactions that were outstanding: their completions may still
    /// arrive (for a successor that takes the connection over). Process
    /// context.
    pub(crate) fn complete_all_ids(self, status: Result) -> KVec<u64> {
        let mut ids = KVec::new();
        self.finish(status, |id| {
            let _ = ids.push(id, GFP_KERNEL);
        });
        ids
    }

    fn finish(mut self, status: Result, mut note: impl FnMut(u64)) {
        for r in self.written.iter_mut() {
            if let Some(r) = r.take() {
                r.run(Ok(()), &[]);
            }
        }
        self.outstanding.drain(|id, r| {
            note(id);
            r.run(status, &[]);
        });
        for q in self.queue.iter_mut() {
            if let Some(r) = q.as_mut().and_then(|q| q.on_written.take()) {
                r.run(status, &[]);
            }
        }
    }
}

/// Packets over a loopback channel pair, through the API a driver uses.
#[kunit_tests(kmcl_engine_packets)]
mod tests {
    use super::*;
    use crate::engine::channel::Guid;
    use crate::engine::loopback::LoopbackBus;
    use crate::engine::testing::connect as open;
    use crate::protocol::lifecycle::Role;
    use core::sync::atomic::{AtomicU32, Ordering};
    use kernel::time::{delay::fsleep, Delta};

    /// Server side: completes every packet with its own bytes.
    struct Echo;

    impl PacketCallbacks for Echo {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            let mut copy = KVec::new();
            if copy.extend_from_slice(packet.data(), GFP_ATOMIC).is_ok() {
                let _ = packet.complete(&copy);
            }
        }
    }

    #[derive(Default)]
    struct Tally {
        ok: AtomicU32,
        mismatched: AtomicU32,
        removed: AtomicU32,
        other: AtomicU32,
    }

    impl Tally {
        fn total(&self) -> u32 {
            self.ok.load(Ordering::SeqCst)
                + self.mismatched.load(Ordering::SeqCst)
                + self.removed.load(Ordering::SeqCst)
                + self.other.load(Ordering::SeqCst)
        }

        fn wait_total(&self, n: u32) -> bool {
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
    struct Expect {
        sent: KVec<u8>,
        tally: Arc<Tally>,
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

    const TYPE: Guid = [0x33; 16];

    fn pair(bus: &Arc<LoopbackBus>) -> Result<(Arc<Channel>, Arc<Channel>)> {
        pair_with(bus, Arc::new(Echo, GFP_KERNEL)?)
    }

    fn pair_with(
        bus: &Arc<LoopbackBus>,
        server_callbacks: Arc<dyn PacketCallbacks>,
    ) -> Result<(Arc<Channel>, Arc<Channel>)> {
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(server_callbacks)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        open(&server, &client)?;
        Ok((server, client))
    }

    /// Disables and releases both channels.
    fn close(client: Arc<Channel>, server: Arc<Channel>) -> Result {
        client.disable()?;
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    /// Deterministic pseudo-random sizes in `1..=max`.
    fn sizes(seed: &mut u32, max: u32) -> usize {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((*seed >> 8) % max + 1) as usize
    }

    fn pattern(len: usize, tag: u32) -> Result<KVec<u8>> {
        let mut v = KVec::with_capacity(len, GFP_KERNEL)?;
        for i in 0..len {
            v.push((i as u32 ^ tag.wrapping_mul(131)) as u8, GFP_KERNEL)?;
        }
        Ok(v)
    }

    fn send_one(client: &Arc<Channel>, tally: &Arc<Tally>, len: usize, tag: u32) -> Result {
        let payload = pattern(len, tag)?;
        let routine = KBox::new(
            Expect {
                sent: pattern(len, tag)?,
                tally: tally.clone(),
            },
            GFP_KERNEL,
        )?;
        client.send(&payload, true, routine)
    }

    /// Sends 20 packets 1 ms apart without completion requests; returns
    /// the signals the client made and the ones merged.
    fn spaced_sends(client: &Arc<Channel>, server: &Arc<Channel>) -> Result<(u64, u64)> {
        let (sent0, merged0) = (client.signals().0, client.signals_coalesced());
        let done = Arc::new(Tally::default(), GFP_KERNEL)?;
        let before = server.counters().packets_in;
        for i in 0..20u32 {
            let routine = KBox::new(
                Expect {
                    sent: KVec::new(),
                    tally: done.clone(),
                },
                GFP_KERNEL,
            )?;
            client.send(&pattern(64, i)?, false, routine)?;
            fsleep(Delta::from_millis(1));
        }
        for _ in 0..500 {
            if server.counters().packets_in == before + 20 {
                break;
            }
            fsleep(Delta::from_millis(10));
        }
        assert_eq!(server.counters().packets_in, before + 20);
        assert_eq!(done.ok.load(Ordering::SeqCst), 20);
        Ok((
            client.signals().0 - sent0,
            client.signals_coalesced() - merged0,
        ))
    }

    #[test]
    fn an_interrupt_latency_merges_signals_and_loses_nothing() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        // No latency: the server drains each packet before the next, so
        // (nearly) every send signals.
        let (signals, merged) = spaced_sends(&client, &server)?;
        assert_eq!(merged, 0);
        if signals < 12 {
            pr_err!("{} signals without latency\n", signals);
        }
        assert!(signals >= 12);
        // 6.5 ms: each signal waits that long and takes the sends made
        // meanwhile with it.
        assert_eq!(client.set_interrupt_latency(u16::MAX), Ok(0));
        let (signals, merged) = spaced_sends(&client, &server)?;
        if signals > 8 {
            pr_err!("{} signals with latency\n", signals);
        }
        assert!(signals <= 8);
        // (Sends made while a delayed signal is armed find the ring not
        // empty and ask for no signal: `merged` counts only the rest.)
        let _ = merged;
        assert_eq!(client.set_interrupt_latency(0), Ok(u16::MAX));
        // Disabled with a delayed signal armed: disarmed, nothing leaks.
        client.set_interrupt_latency(u16::MAX)?;
        client.send(
            b"last",
            false,
            KBox::new(
                Expect {
                    sent: KVec::new(),
                    tally: Arc::new(Tally::default(), GFP_KERNEL)?,
                },
                GFP_KERNEL,
            )?,
        )?;
        close(client, server)
    }

    #[test]
    fn echo_round_trips_byte_for_byte_in_both_directions() -> Result {
        const N: u32 = 1500;
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        open(&server, &client)?;
        let (to_server, to_client) = (
            Arc::new(Tally::default(), GFP_KERNEL)?,
            Arc::new(Tally::default(), GFP_KERNEL)?,
        );
        // Sizes from 1 byte to 3000 (of a 4096-byte maximum) through
        // 16 KiB rings: the rings fill and sends queue.
        let mut seed = 1;
        for i in 0..N {
            send_one(&client, &to_server, sizes(&mut seed, 3000), i)?;
            send_one(&server, &to_client, sizes(&mut seed, 3000), i + N)?;
        }
        assert!(to_server.wait_total(N));
        assert!(to_client.wait_total(N));
        assert_eq!(to_server.ok.load(Ordering::SeqCst), N);
        assert_eq!(to_client.ok.load(Ordering::SeqCst), N);
        assert_eq!(to_server.mismatched.load(Ordering::SeqCst), 0);
        assert_eq!(to_client.mismatched.load(Ordering::SeqCst), 0);
        let (c, s) = (client.counters(), server.counters());
        // Each side wrote N data packets and N completions.
        assert_eq!(c.packets_out, 2 * u64::from(N));
        assert_eq!(s.packets_out, 2 * u64::from(N));
        assert_eq!(c.packets_in, u64::from(N));
        assert_eq!(s.packets_in, u64::from(N));
        assert_eq!(c.completions_in, u64::from(N));
        assert_eq!(s.completions_in, u64::from(N));
        assert_eq!(c.bad_completions + s.bad_completions, 0);
        assert_eq!(c.ring_errors + s.ring_errors, 0);
        // Each side completed every packet inside its callback: each went
        // straight back to the receive work, and none is left counted.
        let settled = || server.snapshot().held == 0 && client.snapshot().held == 0;
        assert!(crate::engine::testing::wait_until(settled));
        assert_eq!(server.snapshot().handed_back, u64::from(N));
        assert_eq!(client.snapshot().handed_back, u64::from(N));
        pr_info!("echo both ways: client {:?}, server {:?}\n", c, s);
        close(client, server)
    }

    /// Sends 500 packets, then disables one side while they are in
    /// flight: every completion routine must run exactly once, echoed or
    /// with -ENODEV, and the client must end up closed.
    fn disable_under_traffic(server_side: bool, mut seed: u32) -> Result {
        const N: u32 = 500;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_one(&client, &tally, sizes(&mut seed, 3000), i)?;
        }
        if server_side {
            // The server rescinds: the client gets Suspend and Closed.
            server.disable()?;
        } else {
            client.disable()?;
        }
        assert!(!client.is_enabled());
        assert!(tally.wait_total(N));
        fsleep(Delta::from_millis(50));
        assert_eq!(tally.total(), N);
        assert_eq!(tally.mismatched.load(Ordering::SeqCst), 0);
        assert_eq!(tally.other.load(Ordering::SeqCst), 0);
        let late = KBox::new(
            Expect {
                sent: KVec::new(),
                tally: tally.clone(),
            },
            GFP_KERNEL,
        )?;
        assert_eq!(client.send(&[1], false, late), Err(ENOTCONN));
        if !server_side {
            server.disable()?;
        }
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn disable_under_traffic_accounts_for_every_packet() -> Result {
        disable_under_traffic(false, 7)
    }

    /// Server side: keeps packets uncompleted until the test says so.
    #[pin_data]
    struct Holder {
        #[pin]
        held: kernel::sync::SpinLockIrq<KVec<IncomingPacket>>,
        delivered: AtomicU32,
        most_held: AtomicU32,
        /// Fail packets whose first byte is 0xff instead of holding them.
        fail_marked: bool,
    }

    impl Holder {
        fn new(fail_marked: bool) -> Result<Arc<Self>> {
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

        fn held(&self) -> u32 {
            self.held.lock().len() as u32
        }

        /// The transaction id of the first packet held (0: none).
        fn first_id(&self) -> u64 {
            self.held.lock().first().map_or(0, |p| p.transaction_id())
        }

        /// Completes up to `n` held packets with an empty payload.
        fn complete(&self, n: usize) {
            for _ in 0..n {
                let Some(p) = self.held.lock().pop() else {
                    return;
                };
                let _ = p.complete(&[]);
            }
        }

        fn wait(&self, what: impl Fn(&Self) -> bool) -> bool {
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

    #[test]
    fn synchronous_request_round_trip() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        let mut reply = [0u8; 64];
        // VMBus carries payloads in 8-byte units: 11 bytes come back as 16,
        // zero-padded (as with hv_vmbus's hv_pkt_datalen()).
        let n = client.send_sync(b"hello, kmcl", &mut reply, Some(2000))?;
        assert_eq!(n, 16);
        assert_eq!(&reply[..11], b"hello, kmcl");
        assert_eq!(&reply[11..16], &[0; 5]);
        let n = client.send_sync(&[7; 40], &mut reply, None)?;
        assert_eq!(&reply[..n], &[7; 40]);
        // The completion payload does not fit the caller's buffer.
        let mut small = [0u8; 4];
        assert_eq!(client.send_sync(&[1; 16], &mut small, None), Err(EOVERFLOW));
        client.disable()?;
        // Not connected any more.
        assert_eq!(client.send_sync(&[1], &mut reply, None), Err(ENODEV));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        Ok(())
    }

    #[test]
    fn synchronous_request_times_out_and_late_completion_is_dropped() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let mut reply = [0u8; 16];
        assert_eq!(
            client.send_sync(&[1, 2, 3], &mut reply, Some(100)),
            Err(ETIMEDOUT)
        );
        assert_eq!(holder.held(), 1);
        // The server completes it after all: the request was cancelled, so
        // the completion is recognised as late and dropped, and the channel
        // carries on (it is not a forgery).
        holder.complete(1);
        let mut dropped = false;
        for _ in 0..300 {
            if client.counters().late_completions == 1 {
                dropped = true;
                break;
            }
            fsleep(Delta::from_millis(10));
        }
        assert!(dropped);
        assert_eq!(client.counters().completions_in, 0);
        assert_eq!(client.counters().bad_completions, 0);
        assert!(client.is_running());
        // And a new transaction completes normally.
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_counted(&client, &tally, &[4], true)?;
        assert!(holder.wait(|h| h.held() == 1));
        holder.complete(1);
        assert!(tally.wait_total(1));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 1);
        close(client, server)
    }

    #[test]
    fn synchronous_request_sees_the_device_removed_while_waiting() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(true)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let mut reply = [0u8; 16];
        // The server fails the request, which closes the connection while
        // the client waits: the request ends with -ENODEV, not a timeout.
        assert_eq!(
            client.send_sync(&[0xff], &mut reply, Some(10_000)),
            Err(ENODEV)
        );
        assert!(holder.wait(|_| !client.is_enabled()));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        Ok(())
    }

    #[test]
    fn transaction_quota_limits_outstanding_packets() -> Result {
        const N: u32 = 20;
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        assert_eq!(server.set_transaction_quota(0), Err(EINVAL));
        server.set_transaction_quota(4)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_one(&client, &tally, 16, i)?;
        }
        assert!(holder.wait(|h| h.held() == 4));
        fsleep(Delta::from_millis(100));
        assert_eq!(holder.delivered.load(Ordering::SeqCst), 4);
        assert!(server.quota_hits() >= 1);
        // Each completion lets exactly one more packet in.
        holder.complete(1);
        assert!(holder.wait(|h| h.delivered.load(Ordering::SeqCst) == 5));
        while holder.delivered.load(Ordering::SeqCst) < N {
            holder.complete(4);
            fsleep(Delta::from_millis(10));
        }
        holder.complete(4);
        assert!(tally.wait_total(N));
        assert_eq!(tally.total(), N);
        assert!(holder.most_held.load(Ordering::SeqCst) <= 4);
        // Completed after their callbacks: none went back during delivery.
        assert!(crate::engine::testing::wait_until(|| server
            .snapshot()
            .held
            == 0));
        assert_eq!(server.snapshot().handed_back, 0);
        close(client, server)
    }

    #[test]
    fn packet_fail_closes_the_channel() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(true)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let routine = KBox::new(
            Expect {
                sent: KVec::new(),
                tally: tally.clone(),
            },
            GFP_KERNEL,
        )?;
        client.send(&[0xff, 1, 2], true, routine)?;
        // The server fails the packet: both sides close, and the sender's
        // routine runs with -ENODEV.
        assert!(tally.wait_total(1));
        assert_eq!(tally.removed.load(Ordering::SeqCst), 1);
        assert!(holder.wait(|_| !client.is_enabled() && !server.is_running()));
        assert!(server.is_enabled());
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        Ok(())
    }

    /// Records the context of each delivery; echoes, or defers packets
    /// first seen in softirq context.
    #[derive(Default)]
    struct ContextProbe {
        defer_from_softirq: bool,
        in_softirq: AtomicU32,
        in_task: AtomicU32,
        deferred: AtomicU32,
    }

    impl PacketCallbacks for ContextProbe {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            if crate::context::in_task() {
                self.in_task.fetch_add(1, Ordering::SeqCst);
            } else {
                self.in_softirq.fetch_add(1, Ordering::SeqCst);
                if self.defer_from_softirq {
                    self.deferred.fetch_add(1, Ordering::SeqCst);
                    packet.defer_to_passive();
                    return;
                }
            }
            let _ = packet.complete(b"done");
        }
    }

    /// `n` synchronous requests (completed with "done") from a client to a
    /// server with `callbacks`: `setup` configures the server before it is
    /// enabled and `connected` checks it while it is.
    fn requests_to(
        callbacks: Arc<dyn PacketCallbacks>,
        n: u32,
        setup: impl FnOnce(&Arc<Channel>) -> Result,
        connected: impl FnOnce(&Arc<Channel>),
    ) -> Result {
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(callbacks)?;
        setup(&server)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        open(&server, &client)?;
        connected(&server);
        let mut reply = [0u8; 8];
        for _ in 0..n {
            let len = client.send_sync(&[1, 2, 3], &mut reply, Some(5000))?;
            assert_eq!(&reply[..4], b"done");
            assert_eq!(len, 8);
        }
        close(client, server)
    }

    fn probe_run(passive: bool, defer: bool) -> Result<Arc<ContextProbe>> {
        let probe = Arc::new(
            ContextProbe {
                defer_from_softirq: defer,
                ..Default::default()
            },
            GFP_KERNEL,
        )?;
        requests_to(
            probe.clone(),
            50,
            |server| server.set_incoming_processing_at_passive(passive),
            |server| {
                assert_eq!(
                    server.set_incoming_processing_at_passive(!passive),
                    Err(EBUSY)
                )
            },
        )?;
        Ok(probe)
    }

    #[test]
    fn delivery_runs_in_softirq_by_default() -> Result {
        let p = probe_run(false, false)?;
        assert_eq!(p.in_softirq.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_task.load(Ordering::SeqCst), 0);
        Ok(())
    }

    #[test]
    fn incoming_processing_at_passive_runs_in_process_context() -> Result {
        let p = probe_run(true, false)?;
        assert_eq!(p.in_task.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_softirq.load(Ordering::SeqCst), 0);
        Ok(())
    }

    #[test]
    fn deferred_packets_are_redelivered_in_process_context() -> Result {
        let p = probe_run(false, true)?;
        assert_eq!(p.deferred.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_softirq.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_task.load(Ordering::SeqCst), 50);
        Ok(())
    }

    /// Counts the packets delivered on CPU `cpu` and elsewhere.
    #[derive(Default)]
    struct CpuProbe {
        cpu: AtomicU32,
        on_cpu: AtomicU32,
        elsewhere: AtomicU32,
    }

    impl PacketCallbacks for CpuProbe {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            let here = kernel::cpu::CpuId::current().as_u32();
            if here == self.cpu.load(Ordering::SeqCst) {
                self.on_cpu.fetch_add(1, Ordering::SeqCst);
            } else {
                self.elsewhere.fetch_add(1, Ordering::SeqCst);
            }
            let _ = packet.complete(b"done");
        }
    }

    /// 40 requests from a sender pinned to CPU 0 to a server with target
    /// processor `target`: counts of those delivered on `expect`.
    fn deliveries_on(target: Option<u32>, expect: u32) -> Result<(u32, u32)> {
        crate::context::pin_current(0)?;
        let probe = Arc::new(CpuProbe::default(), GFP_KERNEL)?;
        probe.cpu.store(expect, Ordering::SeqCst);
        requests_to(
            probe.clone(),
            40,
            |server| {
                assert_eq!(
                    server.set_target_processor(Some(kernel::cpu::nr_cpu_ids())),
                    Err(EINVAL)
                );
                server.set_target_processor(target)?;
                assert_eq!(server.target_processor(), target);
                Ok(())
            },
            |server| assert_eq!(server.set_target_processor(None), Err(EBUSY)),
        )?;
        Ok((
            probe.on_cpu.load(Ordering::SeqCst),
            probe.elsewhere.load(Ordering::SeqCst),
        ))
    }

    #[test]
    fn packets_are_delivered_on_the_target_processor() -> Result {
        // The test VM has two CPUs: the server's packets go to CPU 1 while
        // the client sends from CPU 0.
        let last = kernel::cpu::nr_cpu_ids() - 1;
        assert_eq!(deliveries_on(Some(last), last)?, (40, 0));
        // Without a target: on the CPU the client signalled from.
        assert_eq!(deliveries_on(None, 0)?, (40, 0));
        Ok(())
    }

    /// Checks the per-packet context area, then dirties it.
    #[derive(Default)]
    struct ContextCheck {
        clean: AtomicU32,
        dirty: AtomicU32,
    }

    impl PacketCallbacks for ContextCheck {
        fn process_packet(&self, _channel: &Arc<Channel>, mut packet: IncomingPacket) {
            let ctx = packet.context_mut();
            let counter = if ctx.len() == 24 && ctx.iter().all(|&b| b == 0) {
                &self.clean
            } else {
                &self.dirty
            };
            counter.fetch_add(1, Ordering::SeqCst);
            ctx.fill(0xaa);
            let _ = packet.complete(&[]);
        }
    }

    #[test]
    fn init_settings_and_channel_information() -> Result {
        use crate::engine::channel::CHANNEL_FLAG_IS_PIPE;
        let bus = LoopbackBus::new()?;
        let check = Arc::new(ContextCheck::default(), GFP_KERNEL)?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| {
            s.interface_type = TYPE;
            s.interface_instance = [0x44; 16];
            s.client_context_size = 24;
        })?;
        server.set_packet_callbacks(check.clone())?;
        assert_eq!(server.set_friendly_name(&[b'x'; 65]), Err(EINVAL));
        server.set_friendly_name(b"echo-server")?;
        assert!(server.with_friendly_name(|n| n == b"echo-server"));
        assert_eq!(server.set_flags(CHANNEL_FLAG_IS_PIPE), Err(EOPNOTSUPP));
        assert_eq!(server.set_flags(0x2), Err(EINVAL));
        server.set_flags(0)?;
        assert_eq!(server.set_server_flags(0x20), Err(EINVAL));
        server.set_server_flags(0x1)?;
        assert_eq!(server.set_maximum_external_data(0, 4), Err(EINVAL));
        assert_eq!(server.set_maximum_external_data(4096, 0), Err(EINVAL));
        server.set_maximum_external_data(1 << 20, 16)?;
        assert_eq!(server.settings().max_external_bytes, 1 << 20);
        assert_eq!(server.settings().max_external_ranges, 16);
        let client = Channel::new(Role::Client, bus.clone())?;
        assert_eq!(client.set_server_flags(0x1), Err(EINVAL));
        // Any instance, at most 100 bytes per packet.
        client.configure(|s| {
            s.interface_type = TYPE;
            s.max_packet_size = 100;
        })?;
        assert_eq!(client.interface_instance(), [0; 16]);
        client.set_pointer(0xfeed);
        assert_eq!(client.pointer(), 0xfeed);
        open(&server, &client)?;
        assert_eq!(server.set_maximum_external_data(1, 1), Err(EBUSY));
        // The client learns the instance of the offer it opened.
        assert_eq!(client.interface_instance(), [0x44; 16]);
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        assert_eq!(send_one(&client, &tally, 101, 0), Err(EINVAL));
        for i in 0..10 {
            send_one(&client, &tally, 100, i)?;
        }
        assert!(tally.wait_total(10));
        assert_eq!(check.clean.load(Ordering::SeqCst), 10);
        assert_eq!(check.dirty.load(Ordering::SeqCst), 0);
        close(client, server)
    }

    #[test]
    fn pause_and_start_mid_stream_lose_nothing() -> Result {
        const N: u32 = 600;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let mut seed = 3;
        for i in 0..N {
            send_one(&client, &tally, sizes(&mut seed, 2000), i)?;
            if i == N / 3 {
                // Delivery stops (Suspend after every delivered packet was
                // completed); sends keep queueing; Start resumes.
                server.pause()?;
                assert!(!server.is_running());
            }
            if i == 2 * N / 3 {
                server.start()?;
            }
        }
        assert!(tally.wait_total(N));
        assert_eq!(tally.ok.load(Ordering::SeqCst), N);
        assert_eq!(server.counters().packets_in, u64::from(N));
        // While the server was paused ~200 packets went into a 16 KiB ring:
        // it filled and the rest were queued, then written after Start.
        assert!(client.counters().ring_full > 0);
        close(client, server)
    }

    #[test]
    fn the_receive_work_yields_after_its_budget_and_loses_nothing() -> Result {
        use crate::engine::channel::RX_BUDGET;
        const N: u32 = RX_BUDGET + 22;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        // Paused: the packets wait in the ring (N * 40 bytes fit in it).
        server.pause()?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_one(&client, &tally, 16, i)?;
        }
        assert_eq!(client.counters().ring_full, 0);
        assert_eq!(server.snapshot().budget_hits, 0);
        server.start()?;
        assert!(tally.wait_total(N));
        assert_eq!(tally.ok.load(Ordering::SeqCst), N);
        // One run read RX_BUDGET packets and queued the work again.
        assert!(server.snapshot().budget_hits >= 1);
        assert_eq!(server.counters().packets_in, u64::from(N));
        assert_eq!(server.counters().completions_out, u64::from(N));
        assert_eq!(client.counters().completions_in, u64::from(N));
        close(client, server)
    }

    #[test]
    fn server_disable_under_traffic_accounts_for_every_packet() -> Result {
        disable_under_traffic(true, 11)
    }

    /// The server's ring to the client turned corrupt in one of several
    /// ways: the client's reader refuses it, and both sides close (Suspend
    /// and Closed, as after PacketFail); every send is accounted for.
    #[test]
    fn a_corrupt_ring_closes_the_channel_on_both_sides() -> Result {
        use crate::protocol::ring::RingMemory;
        // (type, offset8, len8, flags) of a descriptor the server never
        // wrote: too long, unknown type, data offset inside the
        // descriptor, unknown flags.
        let bad = [
            (6u16, 2u16, 0xffffu16, 0u16),
            (7, 2, 3, 0),
            (6, 1, 3, 0),
            (6, 2, 3, 0x8000),
        ];
        for case in 0..=bad.len() {
            let bus = LoopbackBus::new()?;
            let (server, client) = pair(&bus)?;
            let conn = client.connection().ok_or(EINVAL)?;
            let s2c = conn.rings().1;
            let w = s2c.control()[0].load(Ordering::SeqCst);
            let size = s2c.data_len() as u32;
            match bad.get(case) {
                // A write index outside the ring.
                None => s2c.control()[0].store(size + 8, Ordering::SeqCst),
                Some(&(ptype, off8, len8, flags)) => {
                    let mut d = [0u8; 24];
                    d[0..2].copy_from_slice(&ptype.to_le_bytes());
                    d[2..4].copy_from_slice(&off8.to_le_bytes());
                    d[4..6].copy_from_slice(&len8.to_le_bytes());
                    d[6..8].copy_from_slice(&flags.to_le_bytes());
                    s2c.write_data(w as usize, &d);
                    s2c.control()[0].store(w + 24, Ordering::SeqCst);
                }
            }
            client.kick_rx();
            let closed = (0..500).any(|_| {
                let done = !client.is_enabled() && !server.snapshot().connected;
                if !done {
                    fsleep(Delta::from_millis(10));
                }
                done
            });
            assert!(closed);
            assert_eq!(client.snapshot().failures, 1);
            // The server keeps its offer up, as after any close.
            assert!(server.is_enabled());
            server.disable()?;
            server.cleanup()?;
            client.cleanup()?;
        }
        Ok(())
    }

    /// A completion for a packet never sent (a forged transaction id)
    /// closes the channel; pending sends end with `-ENODEV`.
    #[test]
    fn a_forged_completion_closes_the_channel() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        // Two transactions in flight, held by the server's driver.
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_one(&client, &tally, 40, 1)?;
        send_one(&client, &tally, 40, 2)?;
        assert!(holder.wait(|h| h.held() == 2));
        // The server's own writer sends a completion for an id the client
        // never used (as a confused or hostile peer would).
        server.complete_incoming(true, 0xdead, b"forged")?;
        // The client closes (as after PacketFail): both sends end with the
        // defined failure status.
        assert!(tally.wait_total(2));
        assert_eq!(tally.removed.load(Ordering::SeqCst), 2);
        assert!(holder.wait(|_| !client.is_enabled()));
        assert_eq!(client.snapshot().failures, 1);
        // The server lost its client; its Suspend waits for its driver,
        // whose completions now go nowhere.
        holder.complete(2);
        assert!(holder.wait(|_| !server.is_running()));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    /// Sends `payload`, counting the routine's status in `tally` (any
    /// completion payload counts as ok).
    fn send_counted(
        client: &Arc<Channel>,
        tally: &Arc<Tally>,
        payload: &[u8],
        wait_for_completion: bool,
    ) -> Result {
        let routine = KBox::new(
            Expect {
                sent: KVec::new(),
                tally: tally.clone(),
            },
            GFP_KERNEL,
        )?;
        client.send(payload, wait_for_completion, routine)
    }

    /// Sends again from its routine, once: the routine of a packet that
    /// waited in the queue runs without the data lock.
    struct SendAgain {
        client: Arc<Channel>,
        tally: Arc<Tally>,
        again: bool,
    }

    impl SendCompletion for SendAgain {
        fn complete(&mut self, status: Result, _data: &[u8]) {
            let counter = if status.is_ok() {
                &self.tally.ok
            } else {
                &self.tally.other
            };
            counter.fetch_add(1, Ordering::SeqCst);
            if self.again && status.is_ok() {
                let next = KBox::new(
                    SendAgain {
                        client: self.client.clone(),
                        tally: self.tally.clone(),
                        again: false,
                    },
                    GFP_ATOMIC,
                );
                let sent = next
                    .map_err(|_| ENOMEM)
                    .and_then(|r| self.client.send(&[0x33; 200], false, r));
                if sent.is_err() {
                    self.tally.mismatched.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    #[test]
    fn routines_of_queued_packets_may_send_again() -> Result {
        const N: u32 = 200;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        // The server reads nothing for now: most packets wait in the queue
        // and are written later, from the client's receive work.
        server.pause()?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for _ in 0..N {
            let r = KBox::new(
                SendAgain {
                    client: client.clone(),
                    tally: tally.clone(),
                    again: true,
                },
                GFP_KERNEL,
            )?;
            client.send(&[0x11; 200], false, r)?;
        }
        assert!(client.counters().ring_full > 0);
        server.start()?;
        // Every packet and every packet sent from a routine was written.
        assert!(tally.wait_total(2 * N));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 2 * N);
        assert_eq!(tally.mismatched.load(Ordering::SeqCst), 0);
        assert!(holder_wait(
            || server.counters().packets_in == u64::from(2 * N)
        ));
        close(client, server)
    }

    #[test]
    fn a_peer_that_never_reads_is_closed_after_the_stall_time() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        // A paused server reads nothing: the client's ring fills, then its
        // queue, until the limit refuses more.
        server.pause()?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let payload = pattern(4096, 1)?;
        let mut accepted = 0u32;
        let refused = loop {
            match send_counted(&client, &tally, &payload, false) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 1000);
        };
        assert_eq!(refused, ENOBUFS);
        let queued = client.snapshot().queued as u32;
        assert!(queued >= (QUEUE_LIMIT_MIN / 4096 - 1) as u32);
        assert!(client.is_running());
        // Still nothing read after the stall time: the next send closes
        // the channel.
        fsleep(Delta::from_millis(PEER_STALL_MS + 200));
        assert_eq!(send_counted(&client, &tally, &payload, false), Err(ENODEV));
        // Every accepted send's routine ran once: written ones with
        // success, queued ones with -ENODEV.
        assert!(tally.wait_total(accepted));
        assert_eq!(tally.removed.load(Ordering::SeqCst), queued);
        assert_eq!(tally.ok.load(Ordering::SeqCst), accepted - queued);
        assert!(holder_wait(|| !client.is_enabled()));
        assert_eq!(client.snapshot().failures, 1);
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn a_peer_that_never_completes_does_not_hold_up_disable() -> Result {
        const N: u32 = 100;
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_counted(&client, &tally, &[i as u8; 64], true)?;
        }
        assert!(holder.wait(|h| h.held() == N));
        assert_eq!(tally.total(), 0);
        // The client gives up: Disable ends every open transaction with
        // -ENODEV at once, whatever the server's driver does.
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        client.disable()?;
        assert!(start.elapsed().as_millis() < 2000);
        assert_eq!(tally.removed.load(Ordering::SeqCst), N);
        // The server's driver completes late: nobody waits, nothing breaks.
        holder.complete(N as usize);
        assert!(holder.wait(|_| !server.is_running()));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    /// Waits up to five seconds for `what`.
    fn holder_wait(what: impl Fn() -> bool) -> bool {
        (0..500).any(|_| {
            let done = what();
            if !done {
                fsleep(Delta::from_millis(10));
            }
            done
        })
    }

    #[test]
    fn a_completion_repeated_by_the_peer_closes_the_channel() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_one(&client, &tally, 40, 1)?;
        assert!(holder.wait(|h| h.held() == 1));
        let id = holder.first_id();
        holder.complete(1);
        assert!(tally.wait_total(1));
        // Completed (with the holder's empty payload), not failed.
        assert_eq!(tally.mismatched.load(Ordering::SeqCst), 1);
        // The same id again: a duplicate.
        server.complete_incoming(true, id, b"again")?;
        assert!(holder.wait(|_| !client.is_enabled() && !server.is_running()));
        assert_eq!(client.snapshot().failures, 1);
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }
}
