// SPDX-License-Identifier: GPL-2.0

//! The incoming side of a data path: reading packets from the incoming
//! ring into packet objects, and matching completions to transactions.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::protocol::ring;
use crate::{
    engine::channel::Channel,

    protocol::packet::PacketType,
    protocol::ring::Next,
    protocol::transactions::Matched,
    protocol::xfer::XferRanges,
    shmem::External,
    sys::trace, //
};

use crate::engine::types::CloseReason;

use super::Exposed;
use super::{
    check_external,
    DataPath,
    IncomingPacket,
    PacketObject,
    Received, //
};

/// Incoming packet objects a channel keeps for reuse while connected.
pub(crate) const POOL_SIZE: usize = 64;

/// Keeps a completed incoming packet object in `pool` for reuse; gives it
/// back if the pool is full (or not set up: not connected).
pub(crate) fn recycle(
    pool: &mut KVec<KBox<PacketObject>>,
    b: KBox<PacketObject>,
) -> Option<KBox<PacketObject>> {
    pool.push_within_capacity(scrub(b)).err().map(|e| e.0)
}

/// A completed incoming packet object, ready for reuse: it holds nothing
/// of its last packet's sender.
pub(crate) fn scrub(mut b: KBox<PacketObject>) -> KBox<PacketObject> {
    b.external = None;
    b.transfer = None;
    b
}

/// Allocation failures the tests ask the receive path to pretend
/// ([`fail_rx_allocations`]).
#[cfg(kmcl_kunit)]
static FAIL_RX_ALLOCATIONS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Makes the next `n` allocations of the receive path fail (tests).
#[cfg(kmcl_kunit)]
pub(crate) fn fail_rx_allocations(n: u32) {
    FAIL_RX_ALLOCATIONS.store(n, core::sync::atomic::Ordering::SeqCst);
}

/// Whether a test asked this allocation to fail.
#[inline]
fn injected_failure() -> bool {
    #[cfg(kmcl_kunit)]
    {
        use core::sync::atomic::Ordering::Relaxed;
        if FAIL_RX_ALLOCATIONS.load(Relaxed) > 0 {
            return FAIL_RX_ALLOCATIONS
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok();
        }
    }
    false
}

/// A packet object of `channel` able to hold a packet of `len` bytes
/// with `context_size` bytes of driver context, built as done (dropping
/// it sends no completion).
pub(crate) fn new_object(
    channel: &Arc<Channel>,
    context_size: usize,
    len: usize,
    flags: kernel::alloc::Flags,
) -> Result<KBox<PacketObject>> {
    Ok(KBox::new(
        PacketObject {
            channel: channel.clone(),
            data: KVec::from_elem(0u8, len, flags)?,
            payload_at: 0,
            context: KVec::from_elem(0u8, context_size, flags)?,
            transaction_id: 0,
            completion_requested: false,
            done: true,
            epoch: 0,
            external: None,
            transfer: None,
        },
        flags,
    )?)
}

/// The buffer to read an incoming data packet of `len` bytes into: that
/// of the object in `spare` (the recycled one, usually already `len` long,
/// else a new object). `None`: out of memory (`spare` keeps its object).
pub(super) fn incoming_buffer<'a>(
    spare: &'a mut Option<KBox<PacketObject>>,
    context_size: usize,
    channel: &Arc<Channel>,
    len: usize,
) -> Option<&'a mut [u8]> {
    if injected_failure() {
        return None;
    }
    if spare.is_none() {
        // The data lock is held here.
        *spare = Some(new_object(channel, context_size, len, GFP_ATOMIC).ok()?);
    }
    let data = &mut spare.as_mut()?.data;
    if data.len() != len {
        data.resize(len, 0, GFP_ATOMIC).ok()?;
    }
    Some(data)
}

/// The object in `spare`, into which packet `pkt` was read, made the
/// incoming packet it is.
pub(super) fn take_incoming(
    spare: &mut Option<KBox<PacketObject>>,
    pkt: &ring::ReadPacket,
    external: Option<Arc<External>>,
    transfer: Option<(u16, u32)>,
) -> Option<KBox<PacketObject>> {
    let mut b = spare.take()?;
    let d = pkt.descriptor;
    b.payload_at = d.data_offset();
    if !b.context.is_empty() {
        // (An empty fill is still a call to `memset`.)
        b.context.fill(0);
    }
    b.transaction_id = d.transaction_id();
    b.completion_requested = d.completion_requested();
    b.done = false;
    b.epoch = b.channel.epoch();
    b.external = external;
    b.transfer = transfer;
    Some(b)
}

impl DataPath {
    /// Reads one packet; a data packet goes into the object in `spare` if
    /// there is one. Returns what it was, and whether the peer must be
    /// kicked (it is waiting for room we just made). Without `data` only a
    /// completion is read: a data packet at the head of the ring stays
    /// there (`Received::Empty`). A data packet or completion read stays
    /// uncommitted: the caller commits its batch with
    /// [`DataPath::commit_reads`] before it lets go of the data lock.
    pub(crate) fn receive(
        &mut self,
        channel: &Arc<Channel>,
        exposed: &Exposed,
        spare: &mut Option<KBox<PacketObject>>,
        data: bool,
    ) -> (Received, bool) {
        if self.broken {
            return (Received::Empty, false);
        }
        loop {
            // The receive buffer holds any packet the ring can hold, so a
            // longer one is corruption (the ring's own checks catch it
            // first).
            let (buf, context_size, closing) = (&mut self.buf, self.context_size, self.closing);
            let max = buf.len();
            // Data packets are read straight into their packet object;
            // completions (and data packets discarded while closing) into
            // the receive buffer.
            let next = self.inc.read_into(|d| match d.packet_type() {
                _ if d.packet_len() > max => None,
                PacketType::Completion => buf.get_mut(..d.packet_len()),
                _ if !data && closing => buf.get_mut(..d.packet_len()),
                _ if !data => None,
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
                Ok(Next::Empty) if !self.inc.has_uncommitted() => return (Received::Empty, false),
                // Empty, with reads of this batch not published yet: a
                // writer decides whether to signal from the read index we
                // published, so a packet it committed after our look at
                // its index and before our commit would get no signal.
                // Published first, then looked at again.
                Ok(Next::Empty) => match self.inc.commit_and_poll() {
                    Ok((kick, false)) => return (Received::Empty, kick),
                    Ok((kick, true)) => {
                        // Reported by the batch's `commit_reads`.
                        self.kick_pending |= kick;
                        continue;
                    }
                    Err(e) => {
                        pr_err!(
                            "channel {}: incoming ring is corrupt ({:?}); closing the channel\n",
                            self.chan,
                            e
                        );
                        return self.refuse(CloseReason::CorruptRing);
                    }
                },
                // Completions only: a data packet waits in the ring.
                Ok(Next::Declined(d)) if !data && d.packet_type() != PacketType::Completion => {
                    return (Received::Empty, false)
                }
                Ok(Next::Declined(d)) => {
                    // Out of memory: the packet stays in the ring until
                    // memory for it was found in process context.
                    return (Received::NoMemory(d.packet_len()), false);
                }
                Err(e) => {
                    pr_err!(
                        "channel {}: incoming ring is corrupt ({:?}); closing the channel\n",
                        self.chan,
                        e
                    );
                    return self.refuse(CloseReason::CorruptRing);
                }
            };
            let d = pkt.descriptor;
            trace::packet_fetched(
                self.chan,
                d.transaction_id(),
                d.packet_type() == PacketType::Completion,
                d.payload_len(),
            );
            if d.packet_type() != PacketType::Completion && !data {
                // Closing, and never to be delivered: completed empty, so
                // that the sender (waiting to reclaim its external data,
                // or for a reply) is not left waiting.
                let mut kick = self.inc.commit();
                if d.completion_requested() {
                    if let Ok(sent) = self.send_completion(d.transaction_id(), &[]) {
                        kick |= sent.kick.is_some();
                    }
                }
                return (Received::Discarded, kick);
            }
            if d.packet_type() != PacketType::Completion {
                return self.take_data(spare, &pkt, channel);
            }
            // The completion payload goes into a spare buffer, which the
            // receive work hands back after the routine ran; an empty one
            // needs none (nor a call to copy nothing).
            let empty = d.payload_len() == 0;
            let mut data = if empty {
                KVec::new()
            } else {
                self.take_spare()
            };
            let payload = pkt.payload(&self.buf);
            if injected_failure()
                || (!empty && data.extend_from_slice(payload, GFP_ATOMIC).is_err())
            {
                // Out of memory: read it again once memory for it was
                // found in process context.
                let len = payload.len();
                self.return_spare(data);
                self.inc.unread();
                return (Received::NoMemory(len), false);
            }
            // Committed with the rest of the batch (the caller's
            // `commit_reads`).
            let kick = false;
            let id = d.transaction_id();
            match self.outstanding.complete(id) {
                Matched::Done(routine) => {
                    self.counters.completions_in += 1;
                    exposed.remove(id);
                    return (Received::Completion(routine, data), kick);
                }
                Matched::Late => {
                    self.counters.late_completions += 1;
                    exposed.remove(id);
                    self.return_spare(data);
                }
                Matched::Unknown if let Some(i) = self.orphans.iter().position(|o| *o == id) => {
                    let _ = self.orphans.remove(i);
                    self.counters.late_completions += 1;
                    self.return_spare(data);
                }
                Matched::Unknown => {
                    pr_err!(
                        "channel {}: completion for transaction {:#x}, which is not outstanding; closing the channel\n",
                        self.chan,
                        id
                    );
                    self.counters.bad_completions += 1;
                    self.return_spare(data);
                    self.broken = true;
                    return (Received::Broken(CloseReason::BadCompletion), kick);
                }
            }
        }
    }

    /// The data packet `pkt` was read into the object in `spare`: checks
    /// its external data and makes it an incoming packet.
    pub(super) fn take_data(
        &mut self,
        spare: &mut Option<KBox<PacketObject>>,
        pkt: &ring::ReadPacket,
        channel: &Channel,
    ) -> (Received, bool) {
        let d = pkt.descriptor;
        // Transfer pages: the range list must name a set this endpoint
        // registered, every range inside it, no more ranges than allowed.
        // Parsed from the packet's private copy, once; the set id and
        // count are kept, the ranges stay in the copy.
        let transfer = if d.packet_type() == PacketType::TransferPages {
            let sets = channel.transfer_sets();
            let parsed = match spare.as_deref() {
                Some(object) => XferRanges::parse(
                    pkt.header(&object.data),
                    |id| sets.len_of(id),
                    super::MAX_TRANSFER_RANGES,
                )
                .map(|r| (r.set_id(), r.count())),
                None => Err(crate::protocol::xfer::XferError::Truncated),
            };
            match parsed {
                Ok(t) => Some(t),
                Err(e) => {
                    pr_err!(
                        "channel {}: transfer-page packet {:#x} refused ({:?}); closing the channel\n",
                        self.chan,
                        d.transaction_id(),
                        e
                    );
                    return self.refuse(CloseReason::BadTransferPages);
                }
            }
        } else {
            None
        };
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
                return self.refuse(CloseReason::BadExternalData);
            }
            found
        } else {
            None
        };
        let Some(packet) = take_incoming(spare, pkt, external, transfer) else {
            // Not reached: the packet was read into the object.
            self.inc.unread();
            return (Received::Empty, false);
        };
        self.counters.packets_in += 1;
        self.counters.bytes_in += d.payload_len() as u64;
        // Committed with the rest of the batch (the caller's
        // `commit_reads`): one index store and one look at the writer's
        // request per batch, as hv_vmbus's `hv_pkt_iter_close()`.
        (Received::Data(IncomingPacket(packet)), false)
    }

    /// The other endpoint wrote something that is not a valid packet
    /// (logged by the caller): nothing more is read, and the channel must
    /// be closed for `why`.
    fn refuse(&mut self, why: CloseReason) -> (Received, bool) {
        self.counters.ring_errors += 1;
        self.broken = true;
        (Received::Broken(why), false)
    }

    /// A spare buffer for a completion payload, empty (one without
    /// capacity when none is kept).
    fn take_spare(&mut self) -> KVec<u8> {
        match self.spares.pop() {
            Some(mut b) => {
                self.spare_bytes -= b.capacity();
                b.clear();
                b
            }
            None => KVec::new(),
        }
    }

    /// Hands back the buffer of a [`Received::Completion`]: kept for a
    /// later completion within [`super::SPARE_BUFFERS`] buffers and one
    /// incoming ring's bytes, freed otherwise. A buffer without capacity
    /// owns no memory and is forgotten (dropping it would still call the
    /// allocator: the kernel's `Vec` frees unconditionally).
    pub(crate) fn return_spare(&mut self, data: KVec<u8>) {
        let cap = data.capacity();
        if cap == 0 {
            core::mem::forget(data);
            return;
        }
        if self.spare_bytes + cap > crate::protocol::ring::RingMemory::data_len(self.inc.memory()) {
            return;
        }
        if self.spares.push_within_capacity(data).is_ok() {
            self.spare_bytes += cap;
        }
    }
}
