// SPDX-License-Identifier: GPL-2.0

//! KMCL packet objects (`VMBPACKET`): outgoing packets that carry their
//! own completion routine and driver pointer and can be reused.
//!
//! A packet is allocated for a channel ([`Channel::allocate_packet`], KMCL
//! `VmbPacketAllocate`; kmalloc's slab caches play the part of KMCL's
//! per-channel lookaside list), configured, and sent. Sending hands the
//! packet to kmcl until its transaction is over; then its completion routine
//! gets it back, with the status and the completion payload, and may send it
//! again or drop it. A packet without a routine is freed when its
//! transaction is over (KMCL's default routine).

use kernel::{prelude::*, sync::Arc};

use super::{
    channel::Channel,
    datapath::SendCompletion, //
};

/// A packet's completion routine (KMCL `EvtVmbPacketCompletionRoutine`),
/// called once per send, in softirq or process context.
pub trait PacketCompletion: Send + Sync {
    /// The transaction of `packet` is over: `status` as for
    /// [`SendCompletion::complete`], `data` the completion payload.
    fn complete(&self, packet: KBox<Packet>, status: Result, data: &[u8]);
}

/// An outgoing packet object (KMCL `VMBPACKET`).
pub struct Packet {
    channel: Arc<Channel>,
    pointer: usize,
    routine: Option<Arc<dyn PacketCompletion>>,
}

impl Channel {
    /// KMCL `VmbPacketAllocate`: a packet for this channel, with no
    /// completion routine (it is freed when its transaction is over).
    pub fn allocate_packet(self: &Arc<Self>) -> Result<KBox<Packet>> {
        Ok(KBox::new(
            Packet {
                channel: self.clone(),
                pointer: 0,
                routine: None,
            },
            GFP_KERNEL,
        )?)
    }
}

impl Packet {
    /// KMCL `VmbPacketGetChannel`.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// KMCL `VmbPacketSetPointer`.
    pub fn set_pointer(&mut self, pointer: usize) {
        self.pointer = pointer;
    }

    /// KMCL `VmbPacketGetPointer`.
    pub fn pointer(&self) -> usize {
        self.pointer
    }

    /// KMCL `VmbPacketSetCompletionRoutine`.
    pub fn set_completion_routine(&mut self, routine: Arc<dyn PacketCompletion>) {
        self.routine = Some(routine);
    }

    /// KMCL `VmbPacketSend` (in-band), from any context. Errors found
    /// before the packet is handed over (`-ENOTCONN`, `-EINVAL` for a
    /// payload over the channel's maximum, `-ENOMEM`) return the packet.
    /// Once handed over, the routine always runs: with the outcome, or with
    /// `-ENODEV` if the connection ended before the packet could be written.
    pub fn send(
        self: KBox<Self>,
        payload: &[u8],
        wait_for_completion: bool,
    ) -> core::result::Result<(), (KBox<Self>, Error)> {
        if let Err(e) = self.channel.check_send(payload.len()) {
            return Err((self, e));
        }
        let mut in_flight = match KBox::new(InFlight(None), GFP_ATOMIC) {
            Ok(b) => b,
            Err(_) => return Err((self, ENOMEM)),
        };
        let channel = self.channel.clone();
        in_flight.0 = Some(self);
        // On failure `in_flight` is dropped, which runs the routine.
        let _ = channel.send(payload, wait_for_completion, in_flight);
        Ok(())
    }
}

/// A packet handed to the data path.
struct InFlight(Option<KBox<Packet>>);

impl InFlight {
    fn finish(&mut self, status: Result, data: &[u8]) {
        if let Some(packet) = self.0.take() {
            match packet.routine.clone() {
                Some(routine) => routine.complete(packet, status, data),
                None => drop(packet),
            }
        }
    }
}

impl SendCompletion for InFlight {
    fn complete(&mut self, status: Result, data: &[u8]) {
        self.finish(status, data);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish(Err(ENODEV), &[]);
    }
}
