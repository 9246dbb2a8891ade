// SPDX-License-Identifier: GPL-2.0

//! The channel engine: KMCL channel objects, their lifecycle and their
//! packet data path, in safe Rust. It names no transport: a channel's bus
//! and connection are the [`channel::Bus`] and [`channel::Link`] traits,
//! its data path's other endpoint the [`datapath::Remote`] trait, which
//! kmcl's loopback VMBus and its `hv_vmbus` transport implement
//! ([`crate::transport`], above this layer).
//!
//! Modules, in dependency order: [`types`] (shared small types), then
//! [`datapath`] (rings, queue, transactions; its one reference upward is a
//! delivered packet's channel), then [`channel`] (the `Channel` object,
//! split by concern).
//!
//! # Where a packet goes
//!
//! A driver sends a packet (KMCL `VmbPacketSend`; C: `api/outgoing.rs`):
//!
//! 1. `channel/send.rs`: `Channel::send` hands the packet to the data path
//!    under the channel's `data` lock through `send_through`, the one send
//!    epilogue every kind of send uses.
//! 2. `datapath/outgoing.rs`: with a completion request the routine gets a
//!    transaction id (`protocol::transactions`); `write_packet` writes the
//!    packet to the outgoing ring (`protocol::ring` over `shmem` pages),
//!    counts and traces it; a full ring queues it (`datapath/fifo.rs`).
//! 3. Back in `channel/send.rs`, without the lock: routines of queued
//!    packets written meanwhile run, and if the ring went from empty to
//!    non-empty `channel/signal.rs` signals the other endpoint.
//! 4. The signal goes to the transport's `datapath::Remote`: on the
//!    loopback bus the other channel's `signalled()`
//!    (`transport/loopback/connection.rs`), on Hyper-V `vmbus_setevent()`
//!    (`transport/hyperv/`).
//! 5. The receiving channel queues its receive work (`channel/signal.rs`,
//!    on its target CPU), which runs `Channel::receive`
//!    (`channel/receive.rs`): within the transaction quota and the budget
//!    it takes packet objects from its pool and reads a batch under its
//!    `data` lock.
//! 6. `datapath/incoming.rs`: each packet is read from the incoming ring
//!    straight into its `PacketObject` (`datapath/packet.rs`), validated
//!    (external data against what the sender exposed:
//!    `datapath/exposed.rs`), and becomes an `IncomingPacket`.
//! 7. `channel/receive.rs` delivers it, without locks, to the driver's
//!    `PacketCallbacks::process_packet` (C: `api/callbacks.rs`).
//! 8. The driver completes it (`IncomingPacket::complete`, C:
//!    `api/incoming.rs`): if a completion was requested,
//!    `Channel::send_completion` sends it back through steps 1-7 as a
//!    completion packet; the object goes back to the receive work
//!    (`datapath/handoff.rs`) or the pool.
//! 9. On the sender, `datapath/incoming.rs` matches the completion's
//!    untrusted transaction id to its routine, and `channel/receive.rs`
//!    runs the routine (`datapath/routine.rs`, KMCL
//!    `EvtVmbPacketCompletionRoutine`) without locks.

pub(crate) mod channel;
pub(crate) mod datapath;
#[cfg(kmcl_kunit)]
pub(crate) mod testing;
pub(crate) mod types;
