// SPDX-License-Identifier: GPL-2.0

//! Server save and restore (KMCL `VmbChannelSaveBegin`/`SaveContinue`/
//! `SaveEnd`, `VmbChannelRestoreFromBuffer`, `VmbPacketRestore`): what a
//! VSP needs to be replaced (unloaded and loaded again: a live update)
//! while its client stays connected.
//!
//! - **Save.** `SaveBegin` stops delivery and takes the packets the server
//!   holds uncompleted into the save (the driver adds its own state for
//!   each, `EvtVmbChannelSavePacket`); from then on they belong to the
//!   save, not to the driver. The state is a stream in kmcl's save format
//!   ([`crate::protocol::save`]), handed out in whole chunks by
//!   `SaveContinue`.
//! - **Park.** A server that saved and is then disabled does not close its
//!   connection: the connection is parked on the bus under the save's id,
//!   the client is told nothing and keeps its rings (what it sends waits
//!   in them).
//! - **Restore.** A new server channel of the same interface is fed the
//!   stream (`RestoreFromBuffer`, before Enable; every buffer is checked
//!   whole before any of it is used). Its Enable takes the parked
//!   connection over; after its Opened, each saved packet is handed to the
//!   driver (`EvtVmbChannelRestorePacket`, then `VmbPacketRestore` makes
//!   it an incoming packet again) for it to complete as usual.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use super::Channel;
use crate::engine::datapath::PacketObject;
use crate::engine::types::Guid;
use crate::protocol::save::{
    self,
    PacketRecord,
    Record,
    Restore,
    SaveError,
    Writer, //
};
use crate::{
    engine::datapath::Peer,
    protocol::lifecycle::Role, //
};

/// A packet being saved: the packet and the driver's state for it.
pub(crate) struct SavedPacket {
    /// The packet, taken from the driver.
    pub(crate) packet: KBox<PacketObject>,
    /// What the driver saved for it.
    pub(crate) driver_state: KVec<u8>,
}

/// A save in progress: the whole stream, and how much of it was handed
/// out.
pub(crate) struct Saving {
    stream: KVec<u8>,
    at: usize,
    save_id: u32,
}

/// The outcome of handing out save chunks.
pub(crate) enum Continue {
    /// Everything was handed out (bytes written now).
    Done(usize),
    /// Some chunks written (bytes), more to come (`STATUS_BUFFER_OVERFLOW`).
    More(usize),
    /// The next chunk needs this many bytes (`STATUS_BUFFER_TOO_SMALL`).
    TooSmall(usize),
}

impl Saving {
    /// Copies as many whole chunks as fit into `out`.
    pub(crate) fn next(&mut self, out: &mut [u8]) -> Continue {
        let mut written = 0;
        while self.at < self.stream.len() {
            let rest = &self.stream[self.at..];
            // The stream was written by us: every header is whole.
            let Some(len) = save::chunk_len_at(rest) else {
                break;
            };
            if written + len > out.len() {
                return if written == 0 {
                    Continue::TooSmall(len)
                } else {
                    Continue::More(written)
                };
            }
            out[written..written + len].copy_from_slice(&rest[..len]);
            written += len;
            self.at += len;
        }
        Continue::Done(written)
    }
}

/// A restore being fed: where it is in the stream, and the packet chunks
/// to hand to the driver once the connection is taken over.
pub(crate) struct Restoring {
    state: Restore,
    /// Each saved packet's chunk (its `LibBuf`).
    pub(crate) packets: KVec<KVec<u8>>,
}

/// Save ids: distinct for every save while kmcl is loaded.
static NEXT_SAVE_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// Writes the whole stream of a channel offering `interface` with
/// `packets` in flight.
pub(crate) fn write_stream(interface: (&Guid, &Guid), packets: &[SavedPacket]) -> Result<Saving> {
    let save_id = NEXT_SAVE_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let mut len = save::chunk_len(save::CHANNEL_BODY_LEN) + save::chunk_len(save::END_BODY_LEN);
    for p in packets {
        len += save::packet_chunk_len(p.packet.data().len(), p.driver_state.len());
    }
    let mut stream = KVec::from_elem(0u8, len, GFP_KERNEL)?;
    let mut w = Writer::new(save_id);
    let count = u32::try_from(packets.len())?;
    let mut at = w
        .channel(&mut stream, interface.0, interface.1, count)
        .map_err(save_errno)?;
    for p in packets {
        let (transaction_id, completion_requested) = p.packet.transaction();
        let rec = PacketRecord {
            transaction_id,
            completion_requested,
            payload: p.packet.data(),
            driver_state: &p.driver_state,
        };
        at += w.packet(&mut stream[at..], &rec).map_err(save_errno)?;
    }
    at += w.end(&mut stream[at..]).map_err(save_errno)?;
    if at != len {
        return Err(EINVAL);
    }
    Ok(Saving {
        stream,
        at: 0,
        save_id,
    })
}

impl Saving {
    /// The save's id.
    pub(crate) fn save_id(&self) -> u32 {
        self.save_id
    }
}

/// The errno of a save format error: `-EBADMSG` for data that is not a
/// valid save (corrupted, truncated, another version, out of order).
pub(crate) fn save_errno(e: SaveError) -> Error {
    match e {
        SaveError::NoRoom => ENOBUFS,
        _ => EBADMSG,
    }
}

impl Restoring {
    /// A restore at the start of a stream.
    pub(crate) const fn new() -> Self {
        Self {
            state: Restore::new(),
            packets: KVec::new(),
        }
    }

    /// The save id of a complete stream.
    pub(crate) fn complete_save(&self) -> Option<u32> {
        self.state.is_done().then(|| self.state.save_id()).flatten()
    }

    /// Feeds `buf` (whole chunks) for a channel offering `interface`:
    /// `Ok(true)` once the stream is complete, `Ok(false)` when more chunks
    /// are expected. A buffer that is not valid, or a save of another
    /// interface, changes nothing (`-EBADMSG`, `-EINVAL`).
    pub(crate) fn feed(&mut self, interface: (&Guid, &Guid), buf: &[u8]) -> Result<bool> {
        let (records, next) = self.state.check(buf).map_err(|e| {
            pr_err!("restore: buffer refused: {:?}\n", e);
            save_errno(e)
        })?;
        // Everything is checked; collect before applying, so that running
        // out of memory changes nothing either.
        let mut staged = KVec::new();
        for (rec, chunk) in records {
            match rec {
                Record::Channel {
                    interface_type,
                    interface_instance,
                    ..
                } if (&interface_type, &interface_instance) != interface => {
                    pr_err!("restore: the save is of another interface\n");
                    return Err(EINVAL);
                }
                Record::Packet(_) => {
                    let mut lib = KVec::new();
                    lib.extend_from_slice(chunk, GFP_KERNEL)?;
                    staged.push(lib, GFP_KERNEL)?;
                }
                Record::Channel { .. } | Record::End => {}
            }
        }
        self.packets.reserve(staged.len(), GFP_KERNEL)?;
        for chunk in staged {
            self.packets
                .push_within_capacity(chunk)
                .map_err(|_| ENOMEM)?;
        }
        self.state = next;
        Ok(self.state.is_done())
    }
}

/// A saved packet's chunk (`LibBuf`), checked: its record.
pub(crate) fn packet_of(lib: &[u8]) -> Result<PacketRecord<'_>> {
    save::packet_chunk(lib).map_err(save_errno)
}

impl Channel {
    /// An incoming packet again, from a saved packet's chunk (KMCL
    /// `VmbPacketRestore`), counted as delivered to the driver.
    pub(crate) fn restore_incoming(self: &Arc<Self>, lib: &[u8]) -> Result<KBox<PacketObject>> {
        let rec = packet_of(lib)?;
        // Not the turn: this runs from the restore callback, which the
        // control work calls holding it.
        let context = self.incoming_context_size().ok_or(ENOTCONN)?;
        let b = PacketObject::restored(
            self.clone(),
            (rec.transaction_id, rec.completion_requested),
            rec.payload,
            context,
        )?;
        self.count_restored();
        Ok(b)
    }
}

/// Makes the next [`Channel::save`] fail (`-ENOMEM`), for tests of the
/// failure path.
#[cfg(kmcl_kunit)]
static FAIL_NEXT_SAVE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Makes the next save fail with `-ENOMEM` (tests).
#[cfg(kmcl_kunit)]
pub(crate) fn fail_next_save() {
    FAIL_NEXT_SAVE.store(true, core::sync::atomic::Ordering::SeqCst);
}

impl Channel {
    /// KMCL `VmbChannelSaveBegin`, first half: stops delivery (no packet
    /// reaches the driver after this returns). `-EINVAL` for a client,
    /// `-ENOTCONN` when not connected, `-EBUSY` when a save is under way
    /// or done. Process context, not from the channel's callbacks.
    pub(crate) fn stop_for_save(&self) -> Result {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        let ctl = self.lock_control()?;
        if ctl.saving.is_some() || ctl.saved.is_some() {
            return Err(EBUSY);
        }
        // A server connects only on the loopback bus.
        if ctl.connection.is_none() {
            return Err(ENOTCONN);
        }
        self.stop_incoming();
        Ok(())
    }

    /// KMCL `VmbChannelSaveBegin`, second half: `packets` (taken from the
    /// driver, with its state for each) go into the save, which
    /// [`Self::save_continue`] hands out. They are released without a
    /// completion: the restored server completes them.
    ///
    /// On failure the packets are given back, untouched, with the error.
    pub(crate) fn save(
        self: &Arc<Self>,
        packets: KVec<SavedPacket>,
    ) -> Result<(), (Error, KVec<SavedPacket>)> {
        let mut ctl = match self.lock_control() {
            Ok(ctl) => ctl,
            Err(e) => return Err((e, packets)),
        };
        if ctl.saving.is_some() || ctl.saved.is_some() {
            return Err((EBUSY, packets));
        }
        #[cfg(kmcl_kunit)]
        if FAIL_NEXT_SAVE.swap(false, core::sync::atomic::Ordering::SeqCst) {
            return Err((ENOMEM, packets));
        }
        let interface = (ctl.settings.interface_type, ctl.settings.interface_instance);
        let saving = match write_stream((&interface.0, &interface.1), &packets) {
            Ok(saving) => saving,
            Err(e) => return Err((e, packets)),
        };
        ctl.saving = Some(saving);
        drop(ctl);
        for p in packets {
            p.packet.saved();
            self.release_incoming(None);
        }
        Ok(())
    }

    /// KMCL `VmbChannelSaveContinue`: as many whole chunks of the save as
    /// fit in `out`. `-EINVAL` without a save under way.
    pub(crate) fn save_continue(&self, out: &mut [u8]) -> Result<Continue> {
        let mut ctl = self.lock_control()?;
        let saving = ctl.saving.as_mut().ok_or(EINVAL)?;
        Ok(saving.next(out))
    }

    /// KMCL `VmbChannelSaveEnd`: the save is over; the channel's Disable
    /// now parks its connection for the server that restores the save.
    pub(crate) fn save_end(&self) {
        let Ok(mut ctl) = self.lock_control() else {
            pr_err!(
                "channel {}: SaveEnd from its own state callback ignored\n",
                self.id
            );
            return;
        };
        if let Some(saving) = ctl.saving.take() {
            ctl.saved = Some(saving.save_id());
        }
    }

    /// KMCL `VmbChannelRestoreFromBuffer` (server, disabled, its interface
    /// set): feeds whole chunks of a save; `Ok(true)` once complete,
    /// `Ok(false)` for more (`STATUS_MORE_PROCESSING_REQUIRED`). A buffer
    /// that is not valid changes nothing (`-EBADMSG`); a save of another
    /// interface `-EINVAL`.
    pub(crate) fn restore_from(&self, buf: &[u8]) -> Result<bool> {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        let mut ctl = self.lock_control()?;
        if !ctl.lifecycle.accepts_init() {
            return Err(EBUSY);
        }
        let interface = (ctl.settings.interface_type, ctl.settings.interface_instance);
        let restoring = ctl.restoring.get_or_insert_with(Restoring::new);
        restoring.feed((&interface.0, &interface.1), buf)
    }

    /// The other endpoint is now `peer` (a restored server took the
    /// connection over).
    pub(crate) fn repoint_peer(&self, peer: Peer) {
        if let Some(dp) = Option::as_mut(&mut *self.data.lock()) {
            dp.set_peer(peer);
        }
    }

    /// A save failed after delivery stopped: delivery resumes if the
    /// channel is running.
    pub(crate) fn resume_after_save(self: &Arc<Self>) {
        let running = self.control.lock().lifecycle.is_running();
        if running {
            self.rx.lock().enabled = true;
            self.kick_rx();
        }
    }

    /// Bytes of driver context per incoming packet, while connected.
    pub(crate) fn incoming_context_size(&self) -> Option<usize> {
        self.data.lock().as_ref().map(|dp| dp.context_size())
    }

    /// One restored packet is delivered to the driver.
    pub(crate) fn count_restored(&self) {
        self.rx.lock().outstanding += 1;
    }
}
