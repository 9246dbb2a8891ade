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
//!   is closed (the send gets [`SendError::Closes`] from here, which the
//!   channel turns into closing and `-ENODEV`). Completions are never refused: they are
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
//! # Files
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`DataPath`]: the rings, queue, transactions and counters of a connection |
//! | `outgoing.rs` | writing packets and completions (one writer: write, count, trace), queueing for room, [`SendError`] |
//! | `incoming.rs` | reading packets into their packet objects, matching completions, the packet-object pool |
//! | `packet.rs` | [`IncomingPacket`] (KMCL `VMBPACKETCOMPLETION`) as a driver holds it |
//! | `routine.rs` | [`Routine`]: what runs when a sent packet's transaction is over |
//! | `remote.rs` | [`Remote`]: the other endpoint, implemented by the transports |
//! | `exposed.rs` | [`Exposed`]: external data an endpoint exposes, and the check of incoming range lists |
//! | `transfer.rs` | [`TransferSets`]: the transfer-page sets a receiver registered, which incoming type-7 packets must stay inside |
//! | `fifo.rs` | the send queue's first-in first-out vector |
//! | `handoff.rs` | a packet completed during its delivery handed straight back to the receive work |
//!
//! The data path names channels in one place only: a delivered packet
//! ([`PacketObject`]) holds its channel, because completing the packet must
//! reach the channel's data path and receive state.
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

use crate::{
    protocol::ring::{
        ring_state,
        IncomingRing,
        OutgoingRing,
        RingState, //
    },
    protocol::transactions::Transactions,
    shmem::RingPages, //
};

mod exposed;
mod fifo;
pub(crate) mod handoff;
mod incoming;
mod outgoing;
mod packet;
mod remote;
mod routine;
mod transfer;

use crate::engine::types::{
    CloseReason,
    DataPathLimits,
    ExternalLimits, //
};
use exposed::check_external;
pub(crate) use exposed::Exposed;
use fifo::Fifo;
#[cfg(kmcl_kunit)]
pub(crate) use incoming::fail_rx_allocations;
pub(crate) use incoming::{
    new_object,
    recycle,
    scrub,
    POOL_SIZE, //
};
use outgoing::Queued;
pub(crate) use outgoing::SendError;
pub(crate) use packet::IncomingPacket;
pub(crate) use packet::PacketObject;
pub(crate) use remote::{
    GpadlHost,
    MappedExternal,
    Remote, //
};
use routine::{
    no_transactions,
    RoutineSlots, //
};
pub(crate) use routine::{
    Routine,
    SendCompletion, //
};
#[cfg(kmcl_kunit)]
pub(crate) use transfer::MAX_TRANSFER_SETS;
pub(crate) use transfer::{
    TransferSets,
    MAX_TRANSFER_RANGES, //
};

/// Counters of one channel's data path.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Packets written to the outgoing ring (data and completions).
    pub(crate) packets_out: u64,
    /// Data packets delivered to the driver.
    pub(crate) packets_in: u64,
    /// Completions received for outstanding packets.
    pub(crate) completions_in: u64,
    /// Completions written for incoming packets that asked for one.
    pub(crate) completions_out: u64,
    /// Completions with an id that was not outstanding (the channel is
    /// closed at the first).
    pub(crate) bad_completions: u64,
    /// Completions of cancelled (timed-out) synchronous requests, dropped.
    pub(crate) late_completions: u64,
    /// Sends that found the ring full and were queued.
    pub(crate) ring_full: u64,
    /// Queued sends that allocated their buffer (none written before was
    /// left to reuse).
    pub(crate) queue_allocations: u64,
    /// Malformed data found in the incoming ring (the channel stops
    /// reading).
    pub(crate) ring_errors: u64,
    /// Payload bytes of the data packets delivered.
    pub(crate) bytes_in: u64,
    /// Payload bytes written (data packets and completions).
    pub(crate) bytes_out: u64,
}

/// The data path of a connected channel, under the channel's `data` lock.
///
/// # Invariants
///
/// - `queued_bytes` is the sum of the payload lengths in `queue`.
/// - While `queue` is not empty, nothing is written to `out` except from
///   its head (packets stay in order), and `out`'s `pending_send_sz` asks
///   the reader for room for the head whenever it did not fit.
/// - `written` has room reserved for the routine of every queued packet
///   that has one, so handing a routine out once written cannot fail.
/// - Every transaction in `outstanding` belongs to a packet written or
///   queued; a packet with external data has its pages in the channel's
///   `Exposed` table under its transaction id until the completion.
/// - `broken`: the incoming ring was found corrupt; nothing more is read.
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
    max_external: ExternalLimits,
    queue: Fifo<Queued>,
    /// Routines of queued packets that were written, to run without the
    /// data lock ([`Self::pop_written`]); room for all of them is reserved
    /// when they are queued.
    written: Fifo<Routine>,
    /// Payload buffers of queued packets that were written, kept for the
    /// next packets queued (a sender that keeps the ring full queues every
    /// packet: without them each would cost an allocation and a free).
    recycled: KVec<KVec<u8>>,
    /// The capacity of `recycled`'s buffers: at most the queue's limit;
    /// cut to one outgoing ring's data bytes once the queue has been idle
    /// for [`RECYCLED_IDLE_MS`] (by the channel's trim timer, or by the
    /// next queue to start).
    recycled_bytes: usize,
    /// Payload bytes in `queue`.
    queued_bytes: usize,
    /// Most payload bytes `queue` may hold.
    queue_limit: usize,
    /// When the queue last became non-empty or a queued packet was
    /// written: the other endpoint's last sign of life while we wait.
    progress: Instant<Monotonic>,
    /// Sent packets awaiting a completion, by transaction id.
    outstanding: Transactions<Routine, RoutineSlots>,
    /// The buffers completion payloads are received into, one per
    /// completion of a receive batch ([`Self::return_spare`] keeps at
    /// most [`SPARE_BUFFERS`] of them, within one incoming ring's bytes).
    spares: KVec<KVec<u8>>,
    /// The capacity of `spares`' buffers.
    spare_bytes: usize,
    /// A commit made room the other endpoint waits for, and the receive
    /// step that made it went on reading: reported by the next
    /// [`Self::commit_reads`].
    kick_pending: bool,
    /// The incoming ring was found corrupt: stop reading it.
    broken: bool,
    /// The other endpoint left (or the channel is closing): no new packet
    /// is sent, and the receive work completes every transaction left
    /// with `-ENODEV` once it has read what the ring holds.
    severed: bool,
    /// The channel is closing: no new packet is sent (`-ENODEV`), and a
    /// data packet that can no longer be delivered (delivery is off) is
    /// read and completed empty instead of blocking the completions
    /// behind it.
    closing: bool,
    /// Transactions of the server this one replaced (a live update):
    /// their completions are dropped as late, once each.
    orphans: KVec<u64>,
    /// The channel's id, for trace events.
    chan: u32,
    pub(crate) counters: Counters,
}

/// The control values of a connection's two rings, as this endpoint sees
/// them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingStates {
    pub(crate) outgoing: RingState,
    pub(crate) incoming: RingState,
}

/// What debugfs shows of a data path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DataPathState {
    /// Sends awaiting their completion.
    pub(crate) awaiting_completion: usize,
    /// Sends queued for room.
    pub(crate) queued: usize,
    /// Bytes of the buffers of written queued packets kept for reuse.
    pub(crate) kept_send_bytes: usize,
    pub(crate) rings: RingStates,
}

/// Payload bytes a channel queues for a full ring at least (see the
/// module documentation).
pub(crate) const QUEUE_LIMIT_MIN: usize = 1 << 20;

/// Most completion payload buffers a channel keeps for reuse: one per
/// completion the receive work reads in one batch.
pub(crate) const SPARE_BUFFERS: usize = 16;

/// Most payload buffers of written queued packets a channel keeps for
/// reuse: a queue at [`QUEUE_LIMIT_MIN`] holds this many packets of 4 KiB.
/// Their bytes are bounded by the queue's limit too.
pub(super) const RECYCLED_BUFFERS: usize = QUEUE_LIMIT_MIN / 4096;

/// How long a channel's queue must have been empty (since its last write
/// out of the queue) for its kept buffers to be cut to one outgoing ring's
/// bytes.
pub(crate) const RECYCLED_IDLE_MS: i64 = 1000;

/// How long kmcl waits for the other endpoint (or its driver) before it
/// takes it for dead: sends waiting for room it does not make, a server's
/// Disable waiting for its client to leave, a rescind waiting for the
/// driver to let its channel close.
pub(crate) const PEER_STALL_MS: i64 = 2000;

/// The other endpoint of a data path (a transport's [`Remote`]).
pub(crate) type Peer = Arc<dyn Remote>;

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
    /// A data packet read while closing with delivery off, and completed
    /// empty: look further.
    Discarded,
    /// A packet of this many bytes could not be read for want of memory
    /// (an atomic allocation failed): it stays in the ring until the
    /// receive work was given memory for it in process context.
    NoMemory(usize),
    /// The other endpoint wrote nonsense (a corrupt ring, a completion
    /// for a transaction that is not outstanding): the channel must be
    /// closed. The reason, for the trace.
    Broken(CloseReason),
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

impl DataPath {
    /// Sets up channel `chan`'s ends of the connection's rings, with the
    /// channel's maximum packet size and per-packet context size.
    pub(crate) fn new(
        out: Arc<RingPages>,
        inc: Arc<RingPages>,
        peer: Peer,
        chan: u32,
        DataPathLimits {
            max_packet,
            context_size,
            max_external,
        }: DataPathLimits,
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
            recycled: KVec::new(),
            recycled_bytes: 0,
            queued_bytes: 0,
            queue_limit,
            progress: Instant::now(),
            outstanding: no_transactions(),
            spares: KVec::with_capacity(SPARE_BUFFERS, GFP_KERNEL)?,
            spare_bytes: 0,
            kick_pending: false,
            broken: false,
            severed: false,
            closing: false,
            orphans: KVec::new(),
            chan,
            counters: Counters::default(),
        })
    }

    /// Sends awaiting completion, sends queued, and the (outgoing,
    /// incoming) ring control values.
    pub(crate) fn snapshot(&self) -> DataPathState {
        DataPathState {
            awaiting_completion: self.outstanding.outstanding(),
            queued: self.queue.len(),
            kept_send_bytes: self.recycled_bytes,
            rings: RingStates {
                outgoing: ring_state(self.out.memory()),
                incoming: ring_state(self.inc.memory()),
            },
        }
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

    /// Publishes the read index of every packet read so far: at the end
    /// of each receive batch, and before the data path is handed over (its
    /// successor starts there). Whether the other endpoint must be kicked
    /// (it waits for the room this made).
    #[inline]
    pub(crate) fn commit_reads(&mut self) -> bool {
        self.inc.commit() | core::mem::take(&mut self.kick_pending)
    }

    /// The other endpoint left, or the channel is closing: new packets
    /// are refused (`-ENODEV`); completions of incoming packets still go
    /// out.
    pub(crate) fn sever(&mut self) {
        self.severed = true;
        self.closing = true;
    }

    /// The channel is closing: new packets are refused (`-ENODEV`: routines
    /// running meanwhile do not start new transactions), and data packets
    /// that can no longer be delivered are completed empty (so that
    /// completions behind them, and the other endpoint's waits, go on).
    pub(crate) fn begin_close(&mut self) {
        self.closing = true;
    }

    /// Whether [`Self::sever`] was called.
    pub(crate) fn is_severed(&self) -> bool {
        self.severed
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
}
