// SPDX-License-Identifier: GPL-2.0

//! The outgoing side of a data path: writing packets and completions to
//! the outgoing ring, queueing them while it is full, and tracking
//! transactions that wait for a completion.

use core::num::TryFromIntError;

use kernel::{
    alloc::AllocError,
    prelude::*,
    sync::Arc,
    time::Instant, //
};

use crate::{
    engine::types::CloseReason,
    protocol::{
        gpa,
        packet::{
            Descriptor,
            PacketType, //
        },
        ring::{
            self,
            OutgoingRing,
            WriteError, //
        },
        transactions::InsertError,
        xfer,
    },
    shmem::{
        External,
        RingPages, //
    },
    sys::trace, //
};

use super::{
    Counters,
    DataPath,
    Exposed,
    Routine,
    Sent,
    PEER_STALL_MS,
    RECYCLED_BUFFERS,
    RECYCLED_IDLE_MS, //
};

/// Why the data path did not take a packet.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Refused with this errno; nothing was written or queued.
    Refused(Error),
    /// The other endpoint is dead or hostile, and the channel must be
    /// closed for this reason: it read nothing for [`PEER_STALL_MS`] while
    /// sends waited for room (`PeerNotDraining`), or it corrupted the
    /// outgoing ring's shared state, its read index (`CorruptRing`, as for
    /// a corrupt incoming ring).
    Closes(CloseReason),
}

impl From<Error> for SendError {
    fn from(e: Error) -> Self {
        Self::Refused(e)
    }
}

impl From<AllocError> for SendError {
    fn from(_: AllocError) -> Self {
        Self::Refused(ENOMEM)
    }
}

impl From<TryFromIntError> for SendError {
    fn from(_: TryFromIntError) -> Self {
        Self::Refused(EINVAL)
    }
}

/// A packet to write: its type, type-specific header (a GPA range list;
/// empty for in-band packets and completions), payload and transaction.
#[derive(Clone, Copy)]
pub(super) struct Packet<'a> {
    pub(super) ptype: PacketType,
    pub(super) header: &'a [u8],
    pub(super) payload: &'a [u8],
    pub(super) completion_requested: bool,
    pub(super) transaction_id: u64,
}

/// A packet waiting for room in the outgoing ring.
pub(super) struct Queued {
    pub(super) ptype: PacketType,
    /// The header's bytes (`header_len`), then the payload's: one buffer,
    /// reused for later packets once this one is written
    /// ([`DataPath::recycle`]).
    pub(super) bytes: KVec<u8>,
    pub(super) header_len: usize,
    pub(super) completion_requested: bool,
    pub(super) transaction_id: u64,
    /// For packets without a completion request: run once written.
    pub(super) on_written: Option<Routine>,
}

impl Queued {
    fn packet(&self) -> Packet<'_> {
        let (header, payload) = self
            .bytes
            .split_at_checked(self.header_len)
            .unwrap_or((&[], &self.bytes));
        Packet {
            ptype: self.ptype,
            header,
            payload,
            completion_requested: self.completion_requested,
            transaction_id: self.transaction_id,
        }
    }
}

/// Every packet kmcl writes goes through here: written to `out` (not yet
/// committed), counted and traced (`queued`: it waited for room first).
#[inline(always)]
fn write_packet(
    out: &mut OutgoingRing<Arc<RingPages>>,
    counters: &mut Counters,
    chan: u32,
    p: Packet<'_>,
    queued: bool,
) -> core::result::Result<(), WriteError> {
    out.write(
        p.ptype,
        p.header,
        p.payload,
        p.completion_requested,
        p.transaction_id,
    )?;
    counters.packets_out += 1;
    counters.bytes_out += p.payload.len() as u64;
    if p.ptype == PacketType::Completion {
        counters.completions_out += 1;
    }
    trace::packet_sent(
        chan,
        p.transaction_id,
        p.ptype as u16,
        p.payload.len(),
        p.completion_requested,
        queued,
    );
    Ok(())
}

impl DataPath {
    /// Queues or writes a packet. Returns whether the peer must be kicked,
    /// and a routine to run now (a packet without a completion request that
    /// was written at once).
    pub(crate) fn send(
        &mut self,
        ptype: PacketType,
        payload: &[u8],
        completion: Routine,
        wait_for_completion: bool,
    ) -> Result<Sent, SendError> {
        self.send_with_id(ptype, payload, completion, wait_for_completion, true)
    }

    /// An in-band packet without a completion request and without a
    /// routine (`kmcl_channel_post`): written, or queued for room; nothing
    /// runs once it is in the ring.
    #[inline]
    pub(crate) fn post(&mut self, payload: &[u8]) -> Result<Sent, SendError> {
        self.admits(payload)?;
        let packet = Packet {
            ptype: PacketType::InBand,
            header: &[],
            payload,
            completion_requested: false,
            transaction_id: 0,
        };
        self.write_or_queue(packet, None, true)
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
    ) -> Result<Sent, SendError> {
        self.admits(payload)?;
        self.send_packet(
            ptype,
            &[],
            payload,
            completion,
            wait_for_completion,
            may_queue,
        )
    }

    /// Whether a new data packet with `payload` may be sent: `-ENODEV`
    /// once severed or closing, `-EINVAL` beyond `MaximumPacketSize`.
    fn admits(&self, payload: &[u8]) -> Result<(), SendError> {
        if self.closing {
            return Err(ENODEV.into());
        }
        if payload.len() > self.max_packet {
            return Err(EINVAL.into());
        }
        Ok(())
    }

    /// Writes or queues a packet of type `ptype` with type-specific
    /// `header`, tracking its transaction if `wait_for_completion` (the
    /// caller checked the rest).
    fn send_packet(
        &mut self,
        ptype: PacketType,
        header: &[u8],
        payload: &[u8],
        completion: Routine,
        wait_for_completion: bool,
        may_queue: bool,
    ) -> Result<Sent, SendError> {
        let (transaction_id, routine) = if wait_for_completion {
            match self.outstanding.insert(completion) {
                Ok(id) => (Some(id), None),
                Err((InsertError::NoMemory, _)) => return Err(ENOMEM.into()),
                Err((InsertError::Full, _)) => return Err(EBUSY.into()),
            }
        } else {
            (None, Some(completion))
        };
        let packet = Packet {
            ptype,
            header,
            payload,
            completion_requested: wait_for_completion,
            transaction_id: transaction_id.unwrap_or(0),
        };
        let sent = self.write_or_queue(packet, routine, may_queue);
        if sent.is_err() {
            // The routine will never run.
            self.forget(transaction_id);
        }
        sent
    }

    /// Writes `p` now if nothing is queued and it fits: `Some(kick)`;
    /// `None` if it must wait for room.
    #[inline(always)]
    fn write_now(&mut self, p: Packet<'_>) -> Result<Option<bool>, SendError> {
        if !self.queue.is_empty() {
            return Ok(None);
        }
        match write_packet(&mut self.out, &mut self.counters, self.chan, p, false) {
            Ok(()) => Ok(Some(self.out.commit().unwrap_or(false))),
            Err(WriteError::Full { .. }) => Ok(None),
            Err(WriteError::TooLarge) => Err(EINVAL.into()),
            Err(WriteError::Ring(e)) => Err(SendError::Closes(self.outgoing_corrupt(e))),
        }
    }

    /// The other endpoint corrupted the outgoing ring (`e`): counted and
    /// logged; the channel is to be closed.
    fn outgoing_corrupt(&mut self, e: ring::RingError) -> CloseReason {
        pr_err!(
            "channel {}: outgoing ring is corrupt ({:?}); closing the channel\n",
            self.chan,
            e
        );
        self.counters.ring_errors += 1;
        CloseReason::CorruptRing
    }

    /// Queues `p` for room (its routine, if any, runs once it is written)
    /// and writes what fits. Returns whether to kick the peer.
    fn enqueue(&mut self, p: Packet<'_>, routine: Option<Routine>) -> Result<bool> {
        if self.queue.is_empty() {
            self.trim_recycled_if_idle();
        }
        let mut bytes = match self.recycled.pop() {
            Some(b) => {
                self.recycled_bytes -= b.capacity();
                b
            }
            None => {
                self.counters.queue_allocations += 1;
                KVec::new()
            }
        };
        bytes.reserve(p.header.len() + p.payload.len(), GFP_ATOMIC)?;
        bytes.extend_from_slice(p.header, GFP_ATOMIC)?;
        bytes.extend_from_slice(p.payload, GFP_ATOMIC)?;
        if routine.is_some() {
            // Room to hand its routine out once written.
            self.written.reserve(self.queue.len() + 1)?;
        }
        self.queue.push(Queued {
            ptype: p.ptype,
            bytes,
            header_len: p.header.len(),
            completion_requested: p.completion_requested,
            transaction_id: p.transaction_id,
            on_written: routine,
        })?;
        self.note_queued(p.payload.len());
        self.counters.ring_full += 1;
        // The packet is queued: it is written later whatever happens now
        // (a corrupt ring shows up on the next read).
        Ok(self.flush_queue().is_ok_and(|(kick, _)| kick))
    }

    /// Writes a packet whose transaction (if any) is set up, or queues it
    /// for room (unless `may_queue` is false: `-EOVERFLOW`). On an error
    /// nothing was written or queued; the caller undoes the transaction.
    /// `routine` runs once the packet is written (no completion request).
    /// Inlined into each kind of send (a call and a return are two
    /// translated blocks more per packet under TCG).
    #[inline(always)]
    pub(super) fn write_or_queue(
        &mut self,
        p: Packet<'_>,
        routine: Option<Routine>,
        may_queue: bool,
    ) -> Result<Sent, SendError> {
        let id = p.transaction_id;
        if let Some(kick) = self.write_now(p)? {
            return Ok(Sent {
                kick: kick.then(|| self.peer.clone()),
                run_now: routine,
                id,
            });
        }
        if !may_queue {
            return Err(EOVERFLOW.into());
        }
        self.may_queue(p.payload.len(), self.queue_limit)?;
        let kick = self.enqueue(p, routine)?;
        Ok(Sent {
            kick: kick.then(|| self.peer.clone()),
            run_now: None,
            id,
        })
    }

    /// Whether `len` more bytes may be queued under `limit`: `-ENOBUFS`
    /// when not, `Closes(PeerNotDraining)` when the other endpoint has
    /// also read nothing for [`PEER_STALL_MS`].
    pub(super) fn may_queue(&self, len: usize, limit: usize) -> Result<(), SendError> {
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
            return Err(SendError::Closes(CloseReason::PeerNotDraining));
        }
        Err(ENOBUFS.into())
    }

    /// `len` bytes were queued.
    pub(super) fn note_queued(&mut self, len: usize) {
        if self.queued_bytes == 0 {
            self.progress = Instant::now();
        }
        self.queued_bytes += len;
    }

    /// Sends `payload` with external data `pages` (a GPA-direct packet
    /// with one range per range of `pages`; a completion is always
    /// requested, as KMCL requires): the pages go into this endpoint's
    /// `exposed` table for the transaction, until its completion. With
    /// `may_queue` false a packet that does not fit now fails with
    /// `-EOVERFLOW`.
    pub(crate) fn send_external(
        &mut self,
        exposed: &Exposed,
        payload: &[u8],
        pages: Arc<External>,
        completion: Routine,
        may_queue: bool,
    ) -> Result<Sent, SendError> {
        self.admits(payload)?;
        // The range list: one range per range of the external data, each
        // with its 4-KiB frame numbers (VMBus's, whatever the kernel's page
        // size): the pages' own, or those of their mapping for an endpoint
        // that cannot read them where they are (the host of an isolated
        // VM). Dropped on any failure below: the mapping ends.
        let mapped = self.peer.map_external(&pages)?;
        let ranges = pages.ranges();
        let frames: usize = ranges
            .iter()
            .map(|r| gpa::pages_spanned(r.offset() % gpa::HV_PAGE_SIZE, r.len()).unwrap_or(0))
            .sum();
        let mut pfns = KVec::with_capacity(frames, GFP_ATOMIC)?;
        let mut lists = KVec::with_capacity(ranges.len(), GFP_ATOMIC)?;
        match mapped.as_deref() {
            Some(m) => {
                for i in 0..m.count() {
                    let at = pfns.len();
                    let (offset, len, frames) = m.range(i).ok_or(EINVAL)?;
                    pfns.extend_from_slice(frames, GFP_ATOMIC)?;
                    lists.push((offset, len, at..pfns.len()), GFP_ATOMIC)?;
                }
            }
            None => {
                for r in ranges {
                    let at = pfns.len();
                    let (offset, frames) = r.hv_range().ok_or(EINVAL)?;
                    for pfn in frames {
                        pfns.push(pfn, GFP_ATOMIC)?;
                    }
                    lists.push(
                        (offset, u32::try_from(r.len())?, at..pfns.len()),
                        GFP_ATOMIC,
                    )?;
                }
            }
        }
        let hlen = gpa::encoded_len(lists.iter().map(|(o, l, _)| (*o, *l))).ok_or(EINVAL)?;
        let mut header = KVec::from_elem(0u8, hlen, GFP_ATOMIC)?;
        let list = lists
            .iter()
            .map(|(o, l, at)| (*o, *l, pfns.get(at.clone()).unwrap_or_default()));
        gpa::encode(list, &mut header).map_err(|_| EINVAL)?;
        let id = match self.outstanding.insert(completion) {
            Ok(id) => id,
            Err((InsertError::NoMemory, _)) => return Err(ENOMEM.into()),
            Err((InsertError::Full, _)) => return Err(EBUSY.into()),
        };
        if exposed.add(id, pages, mapped).is_err() {
            self.forget(Some(id));
            return Err(ENOMEM.into());
        }
        let packet = Packet {
            ptype: PacketType::GpaDirect,
            header: &header,
            payload,
            completion_requested: true,
            transaction_id: id,
        };
        let sent = self.write_or_queue(packet, None, may_queue);
        if sent.is_err() {
            exposed.remove(id);
            self.forget(Some(id));
        }
        sent
    }

    /// Sends `payload` naming `ranges` of the other endpoint's
    /// transfer-page set `set_id` (a `VM_PKT_DATA_USING_XFER_PAGES`
    /// packet). The other endpoint must have registered the set and every
    /// range must lie inside it (`-EINVAL` otherwise, also for no range or
    /// more than [`super::MAX_TRANSFER_RANGES`]): the receiver would fail
    /// the channel. With `wait_for_completion`, `completion` runs when the
    /// receiver completes the packet (its ranges are free again).
    pub(crate) fn send_transfer(
        &mut self,
        set_id: u16,
        ranges: &[xfer::XferRange],
        payload: &[u8],
        completion: Routine,
        wait_for_completion: bool,
    ) -> Result<Sent, SendError> {
        self.admits(payload)?;
        if ranges.is_empty() || ranges.len() > super::MAX_TRANSFER_RANGES as usize {
            return Err(EINVAL.into());
        }
        let set_len = self.peer.transfer_set_len(set_id).ok_or(EINVAL)?;
        if ranges
            .iter()
            .any(|r| r.len == 0 || u64::from(r.offset) + u64::from(r.len) > set_len)
        {
            return Err(EINVAL.into());
        }
        let hlen = xfer::LIST_HEADER + ranges.len() * xfer::RANGE_SIZE;
        let mut header = KVec::from_elem(0u8, hlen, GFP_ATOMIC)?;
        xfer::encode(set_id, ranges.iter().copied(), &mut header).map_err(|_| EINVAL)?;
        self.send_packet(
            PacketType::TransferPages,
            &header,
            payload,
            completion,
            wait_for_completion,
            true,
        )
    }

    /// Stops waiting for the completion of `id` (a synchronous request
    /// that timed out). Returns the routine if it was still outstanding; a
    /// completion arriving later is counted as a bad completion.
    pub(crate) fn cancel(&mut self, id: u64) -> Option<Routine> {
        self.outstanding.cancel(id)
    }

    /// A send failed: its routine will never run.
    pub(super) fn forget(&mut self, id: Option<u64>) {
        if let Some(id) = id {
            drop(self.outstanding.forget(id));
        }
    }

    /// Writes queued packets while they fit. Returns whether to kick the
    /// peer and how many were written; why the channel must close if the
    /// other endpoint corrupted the ring.
    pub(crate) fn flush_queue(&mut self) -> Result<(bool, usize), CloseReason> {
        let mut written = 0;
        while let Some(q) = self.queue.front() {
            match write_packet(
                &mut self.out,
                &mut self.counters,
                self.chan,
                q.packet(),
                true,
            ) {
                Ok(()) => {
                    written += 1;
                    self.queued_bytes -= q.bytes.len() - q.header_len;
                    // Moved out whole: its buffer is reused, not freed.
                    let routine = self.queue.pop_front().and_then(|q| {
                        self.recycle(q.bytes);
                        q.on_written
                    });
                    if let Some(r) = routine {
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
                Err(WriteError::Ring(e)) => return Err(self.outgoing_corrupt(e)),
                // Checked when it was queued: only a ring that changed
                // under us gets here.
                Err(WriteError::TooLarge) => return Err(CloseReason::CorruptRing),
            }
        }
        if written > 0 {
            // The other endpoint made room (once per flush: reading the
            // clock is a call).
            self.progress = Instant::now();
        }
        if self.queue.is_empty() {
            self.out.set_pending_send_size(0);
        }
        let kick = self.out.commit().unwrap_or(false);
        Ok((kick, written))
    }

    /// Keeps the buffer of a written queued packet for the next packet
    /// queued, within [`RECYCLED_BUFFERS`] buffers and the queue's limit in
    /// bytes (as much as the queue itself may hold: a sender that keeps
    /// queueing gets back every buffer written out); frees it otherwise.
    fn recycle(&mut self, mut b: KVec<u8>) {
        let cap = b.capacity();
        if cap == 0
            || self.recycled_bytes + cap > self.queue_limit
            || self.recycled.len() >= RECYCLED_BUFFERS
        {
            return;
        }
        b.clear();
        let kept = match self.recycled.push_within_capacity(b) {
            Ok(()) => true,
            // Grown as the queue is used (most channels never queue).
            Err(e) => self.recycled.push(e.0, GFP_ATOMIC).is_ok(),
        };
        if kept {
            self.recycled_bytes += cap;
        }
    }

    /// Bytes of kept buffers a queue that has been idle for
    /// [`RECYCLED_IDLE_MS`] keeps at most: one outgoing ring's data bytes.
    fn idle_kept_limit(&self) -> usize {
        crate::protocol::ring::RingMemory::data_len(self.out.memory())
    }

    /// Whether the queue is empty and keeps more buffers than it may once
    /// idle: the channel's trim timer is to look again
    /// ([`Self::trim_idle_queue`]).
    pub(crate) fn keeps_more_than_idle(&self) -> bool {
        self.queue.is_empty() && self.recycled_bytes > self.idle_kept_limit()
    }

    /// The trim timer's look: the kept buffers of a queue idle for
    /// [`RECYCLED_IDLE_MS`] (the last write out of it was that long ago)
    /// are cut to [`Self::idle_kept_limit`]. Returns the milliseconds
    /// after which to look again, for a queue that was used since the
    /// timer was armed (`None`: trimmed, nothing to trim, or a queue is
    /// running, whose end arms the timer again).
    pub(crate) fn trim_idle_queue(&mut self) -> Option<i64> {
        if !self.keeps_more_than_idle() {
            return None;
        }
        let idle = self.progress.elapsed().as_millis();
        if idle < RECYCLED_IDLE_MS {
            return Some(RECYCLED_IDLE_MS - idle);
        }
        self.cut_recycled();
        None
    }

    /// A queue that starts again after [`RECYCLED_IDLE_MS`] without one
    /// (the last write out of the queue was that long ago) starts with at
    /// most one outgoing ring's data bytes of kept buffers: the rest, kept
    /// for a sender that queues all the time, is freed. (The trim timer
    /// does the same for a channel that stays idle.)
    fn trim_recycled_if_idle(&mut self) {
        if self.recycled_bytes == 0 || self.progress.elapsed().as_millis() < RECYCLED_IDLE_MS {
            return;
        }
        self.cut_recycled();
    }

    /// Frees kept buffers beyond [`Self::idle_kept_limit`].
    fn cut_recycled(&mut self) {
        let limit = self.idle_kept_limit();
        while self.recycled_bytes > limit {
            let Some(b) = self.recycled.pop() else {
                break;
            };
            self.recycled_bytes -= b.capacity();
        }
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

    /// Queues or writes a completion for the incoming packet `id`.
    /// `-EOVERFLOW`, nothing written, if the completion could never fit the
    /// outgoing ring.
    pub(crate) fn send_completion(&mut self, id: u64, payload: &[u8]) -> Result<Sent, SendError> {
        let fits = Descriptor::new(PacketType::Completion, 0, payload.len(), false, id)
            .is_some_and(|d| d.ring_len() <= self.out.capacity());
        if !fits {
            return Err(EOVERFLOW.into());
        }
        let packet = Packet {
            ptype: PacketType::Completion,
            header: &[],
            payload,
            completion_requested: false,
            transaction_id: id,
        };
        let kick = match self.write_now(packet)? {
            Some(kick) => kick,
            None => {
                // A completion is never refused for want of room, but a
                // peer that keeps sending without reading ours is stopped.
                if let Err(stalled @ SendError::Closes(_)) =
                    self.may_queue(payload.len(), 2 * self.queue_limit)
                {
                    return Err(stalled);
                }
                self.enqueue(packet, None)?
            }
        };
        Ok(Sent {
            kick: kick.then(|| self.peer.clone()),
            run_now: None,
            id,
        })
    }
}
