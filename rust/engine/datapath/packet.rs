// SPDX-License-Identifier: GPL-2.0

//! Incoming packets as the driver sees them (KMCL `VMBPACKETCOMPLETION`),
//! and the callbacks that receive them.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::channel::Channel,
    protocol::packet::DESCRIPTOR_SIZE,
    protocol::xfer::{
        LIST_HEADER,
        RANGE_SIZE, //
    },

    shmem::External, //
};

/// An incoming packet (KMCL `VMBPACKETCOMPLETION`): a copy of the payload,
/// valid until the packet is completed. Completing it sends a completion
/// to the other endpoint if it asked for one. Dropping it uncompleted
/// completes it with an empty payload, so the other endpoint is never left
/// waiting.
///
/// One allocation, made before the packet leaves the ring, so that handing
/// it to a driver (or to C, as a handle: [`IncomingPacket::into_box`])
/// cannot fail.
pub(crate) struct IncomingPacket(pub(super) KBox<PacketObject>);

/// The allocation behind an [`IncomingPacket`]: the packet read from the
/// ring, the driver context and the transaction. C drivers hold its
/// address as their packet handle; the receive work recycles it.
pub(crate) struct PacketObject {
    pub(super) channel: Arc<Channel>,
    /// The packet as read from the ring (descriptor, header, payload), or
    /// for a restored packet its payload alone.
    pub(super) data: KVec<u8>,
    /// Where the payload starts in `data`.
    pub(super) payload_at: usize,
    /// Zeroed driver context (KMCL `ClientContextSize`).
    pub(super) context: KVec<u8>,
    pub(super) transaction_id: u64,
    pub(super) completion_requested: bool,
    pub(super) done: bool,
    /// The channel's epoch when the packet was delivered: a packet of an
    /// older epoch was reclaimed ([`Channel::reclaim_held`]); its driver's
    /// completion then does nothing.
    pub(super) epoch: u32,
    /// External data the sender described (GPA-direct packets), checked
    /// against what it exposed; valid until the packet is completed.
    pub(super) external: Option<Arc<External>>,
    /// Transfer pages (a type-7 packet): the set id and the number of
    /// ranges, validated against the receiver's set when read; the ranges
    /// are in `data` after the descriptor and the list header.
    pub(super) transfer: Option<(u16, u32)>,
}

impl IncomingPacket {
    #[cfg(kmcl_kunit)]
    /// The external data the sender described (KMCL
    /// `VmbChannelPacketGetExternalData`), valid until the packet is
    /// completed; `None` for an in-band packet.
    pub(crate) fn external_data(&self) -> Option<&External> {
        self.0.external.as_deref()
    }

    #[cfg(kmcl_kunit)]
    /// The packet's payload.
    pub(crate) fn data(&self) -> &[u8] {
        self.0.data()
    }

    #[cfg(kmcl_kunit)]
    /// The driver's context area for this packet, zeroed on arrival.
    pub(crate) fn context_mut(&mut self) -> &mut [u8] {
        &mut self.0.context
    }

    #[cfg(kmcl_kunit)]
    /// The sender's transaction id.
    pub(crate) fn transaction_id(&self) -> u64 {
        self.0.transaction_id
    }

    /// KMCL `VmbChannelPacketComplete`: releases the packet and, if the
    /// sender asked for one, sends a completion carrying `payload`.
    pub(crate) fn complete(mut self, payload: &[u8]) -> Result {
        let p = &mut *self.0;
        p.done = true;
        if p.reclaimed() {
            // kmcl took it back already; dropped quietly.
            return Ok(());
        }
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
    pub(crate) fn defer_to_passive(mut self) {
        if self.0.reclaimed() {
            self.0.done = true;
            return;
        }
        let channel = self.0.channel.clone();
        channel.defer(self);
    }

    /// KMCL `VmbChannelPacketFail`: the packet is malformed or cannot be
    /// handled. Delivery on the channel stops and its connection is closed
    /// (Suspend and Closed on both sides). No completion is sent.
    pub(crate) fn fail(mut self) {
        self.0.done = true;
        if self.0.reclaimed() {
            return;
        }
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
    pub(crate) fn object(&self) -> &PacketObject {
        &self.0
    }

    /// The packet as one box, whose address stays put until it is turned
    /// back with [`IncomingPacket::from_box`] (the C API's handle).
    pub(crate) fn into_box(self) -> KBox<PacketObject> {
        self.0
    }

    /// The packet [`IncomingPacket::into_box`] gave.
    pub(crate) fn from_box(b: KBox<PacketObject>) -> Self {
        Self(b)
    }
}

impl PacketObject {
    /// The packet's external data (see [`IncomingPacket::external_data`]).
    pub(crate) fn external_data(&self) -> Option<&External> {
        self.external.as_deref()
    }

    /// The packet's payload.
    pub(crate) fn data(&self) -> &[u8] {
        self.data.get(self.payload_at..).unwrap_or_default()
    }

    /// The transfer-page set and ranges the packet names (a type-7
    /// packet), each range validated inside the receiver's set when the
    /// packet was read; `None` for any other packet. The ranges are in
    /// wire layout (`struct kmcl_transfer_range`: byte count, byte
    /// offset, little-endian `u32`s), `count` of them.
    pub(crate) fn transfer_pages(&self) -> Option<(u16, &[u8], u32)> {
        let (set, count) = self.transfer?;
        let at = DESCRIPTOR_SIZE + LIST_HEADER;
        let end = at + count as usize * RANGE_SIZE;
        Some((set, self.data.get(at..end)?, count))
    }

    /// Whether kmcl took the packet back from its driver (its epoch is
    /// over).
    fn reclaimed(&self) -> bool {
        self.epoch != self.channel.epoch()
    }

    /// The driver's context area (`ClientContextSize` bytes, zeroed on
    /// arrival): its address and length, for the C API to hand out.
    pub(crate) fn context_area(&mut self) -> (*mut u8, usize) {
        (self.context.as_mut_ptr(), self.context.len())
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
    ) -> Result<KBox<PacketObject>> {
        let channel_epoch = channel.epoch();
        let mut data = KVec::new();
        data.extend_from_slice(payload, GFP_KERNEL)?;
        Ok(KBox::new(
            PacketObject {
                channel,
                data,
                payload_at: 0,
                context: KVec::from_elem(0u8, context_size, GFP_KERNEL)?,
                transaction_id,
                completion_requested,
                done: false,
                epoch: channel_epoch,
                external: None,
                transfer: None,
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

impl Drop for PacketObject {
    fn drop(&mut self) {
        if !self.done && !self.reclaimed() {
            let _ =
                self.channel
                    .complete_incoming(self.completion_requested, self.transaction_id, &[]);
        }
    }
}
