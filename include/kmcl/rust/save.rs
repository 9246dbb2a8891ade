// SPDX-License-Identifier: GPL-2.0

//! Save, restore and live update (server): a server hands its connection,
//! with the packets it holds, to the server that replaces it (see
//! `Documentation/save-restore.rst`).
//!
//! The old server, before it goes:
//!
//! ```ignore
//! channel.save_begin()?;               // each held packet: Driver::save_packet
//! for p in held.drain(..) {
//!     p.into_save();                   // the save has it now
//! }
//! let bytes = channel.save_rest()?;    // SaveContinue until done + SaveEnd
//! kmcl::stash_put(&KEY, &bytes)?;
//! drop(channel);                       // parks the connection
//! ```
//!
//! The new server, before Enable:
//!
//! ```ignore
//! let bytes = kmcl::stash_take(&KEY)?;
//! channel.restore_from_buffer(&bytes)?; // Ok(true): the whole save
//! channel.enable()?;                   // takes the connection over; after
//!                                      // Opened each saved packet reaches
//!                                      // Driver::restore_packet
//! ```

use super::{
    abi,
    abi::{
        KmclChannel,
        KmclIncoming,
        KmclPacket, //
    },
    driver, len32, result, Channel, ChannelRef, Incoming,
};
use core::ffi::{
    c_int,
    c_void, //
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::Mutex, //
};

/// Which incoming packet [`super::Driver::save_packet`] asks about: compare
/// with [`Incoming::id`] of the packets the driver holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncomingId(usize);

/// What [`Channel::save_continue`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveChunk {
    /// This many bytes, the last of the save.
    Done(usize),
    /// This many bytes (whole chunks); more to come (`STATUS_BUFFER_OVERFLOW`).
    More(usize),
    /// Nothing: the next chunk needs a buffer of this many bytes
    /// (`STATUS_BUFFER_TOO_SMALL`).
    TooSmall(usize),
}

/// The state a [`super::Driver::save_packet`] gave for one packet, kept
/// between kmcl's size query and its copy.
pub(super) type SavingLock = Mutex<Option<(usize, KVec<u8>)>>;

/// A new, empty [`SavingLock`].
pub(super) fn new_saving() -> impl PinInit<SavingLock> {
    new_mutex!(None)
}

impl Incoming {
    /// This packet's identity, as [`super::Driver::save_packet`] names it.
    ///
    /// ```no_run
    /// # fn example(packet: &kmcl::Incoming) -> Result {
    /// let id = packet.id(); // what Driver::save_packet will name it by
    /// # Ok(())
    /// # }
    /// ```
    pub fn id(&self) -> IncomingId {
        IncomingId(self.raw as usize)
    }

    /// Lets go of a packet that went into a save: after
    /// [`Channel::save_begin`] returned `Ok`, the packets the driver held
    /// belong to the save (the server that restores it completes them), so
    /// the driver lets go of each with this instead of completing it.
    ///
    /// ```no_run
    /// # fn example(channel: &kmcl::Channel, held: &mut KVec<kmcl::Incoming>) -> Result {
    /// channel.save_begin()?;
    /// for packet in held.drain_all() {
    ///     packet.into_save();
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_save(self) {
        core::mem::forget(self);
    }
}

impl Channel {
    /// `VmbChannelSaveContinue`: as many whole chunks of the save under way
    /// as fit in `buf`. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// let mut buf = KVec::from_elem(0u8, 4096, GFP_KERNEL)?;
    /// match channel.save_continue(&mut buf)? {
    ///     kmcl::SaveChunk::Done(n) => buf.truncate(n),
    ///     kmcl::SaveChunk::More(n) => buf.truncate(n), // and call again
    ///     kmcl::SaveChunk::TooSmall(need) => buf.resize(need, 0, GFP_KERNEL)?,
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSaveContinue")]
    pub fn save_continue(&self, buf: &mut [u8]) -> Result<SaveChunk> {
        let (mut filled, mut required) = (0u32, 0u32);
        let ptr = if buf.is_empty() {
            core::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast::<c_void>()
        };
        // SAFETY: `raw` is live; `buf` is writable for its length; the
        // outputs are writable.
        let rc = unsafe {
            abi::kmcl_channel_save_continue(self.raw, ptr, len32(buf)?, &mut filled, &mut required)
        };
        let filled = (filled as usize).min(buf.len());
        match rc {
            0 => Ok(SaveChunk::Done(filled)),
            rc if rc == EOVERFLOW.to_errno() => Ok(SaveChunk::More(filled)),
            rc if rc == ENOBUFS.to_errno() => Ok(SaveChunk::TooSmall(required as usize)),
            rc => Err(Error::from_errno(rc)),
        }
    }

    /// `VmbChannelSaveEnd`: the save is over; dropping (or disabling) the
    /// channel now parks its connection for the server that restores the
    /// save. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::Channel) -> Result {
    /// channel.save_end();
    /// drop(channel); // parks the connection for the next server
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSaveEnd")]
    pub fn save_end(&self) {
        // SAFETY: `raw` is live.
        unsafe { abi::kmcl_channel_save_end(self.raw) };
    }

    /// After [`Channel::save_begin`]: the whole save, in one buffer
    /// ([`Channel::save_continue`] until done), then [`Channel::save_end`]
    /// (also on an error). Process context.
    ///
    /// ```no_run
    /// # const KEY: kmcl::Guid = kmcl::Guid { b: [0x13; 16] };
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// channel.save_begin()?;
    /// let save = channel.save_rest()?;
    /// kmcl::stash_put(&KEY, &save)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn save_rest(&self) -> Result<KVVec<u8>> {
        let rest = (|| {
            let mut out = KVVec::new();
            let mut next = 4096usize;
            loop {
                let at = out.len();
                out.resize(at + next, 0, GFP_KERNEL)?;
                let chunk = self.save_continue(&mut out[at..]);
                match chunk {
                    Ok(SaveChunk::Done(n)) => {
                        out.truncate(at + n);
                        return Ok(out);
                    }
                    Ok(SaveChunk::More(n)) => {
                        out.truncate(at + n);
                        next = 4096;
                    }
                    Ok(SaveChunk::TooSmall(need)) => {
                        out.truncate(at);
                        if need <= next {
                            return Err(EINVAL);
                        }
                        next = need;
                    }
                    Err(e) => return Err(e),
                }
            }
        })();
        self.save_end();
        rest
    }

    /// `VmbChannelRestoreFromBuffer` (server, disabled, offer set): the
    /// next whole chunks of a save. `Ok(true)`: the save is complete, and
    /// [`Channel::enable`] takes its parked connection over; `Ok(false)`:
    /// more chunks are needed (`STATUS_MORE_PROCESSING_REQUIRED`).
    /// `EBADMSG`: not (the rest of) a valid save; nothing changed. Process
    /// context.
    ///
    /// ```no_run
    /// # const KEY: kmcl::Guid = kmcl::Guid { b: [0x13; 16] };
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// let save = kmcl::stash_take(&KEY)?;
    /// if !channel.restore_from_buffer(&save)? {
    ///     return Err(EBADMSG); // not the whole save
    /// }
    /// channel.enable()?; // takes the parked connection over
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelRestoreFromBuffer")]
    pub fn restore_from_buffer(&mut self, buf: &[u8]) -> Result<bool> {
        // SAFETY: `raw` is live; `buf` is readable for its length.
        let rc = unsafe {
            abi::kmcl_channel_restore_from_buffer(self.raw, buf.as_ptr().cast(), len32(buf)?)
        };
        if rc == EAGAIN.to_errno() {
            return Ok(false);
        }
        result(rc).map(|()| true)
    }
}

/// Makes `raw` (a server channel) call [`super::Driver::save_packet`] and
/// [`super::Driver::restore_packet`].
///
/// # Safety
///
/// `raw` is a live server channel made by [`Channel::new`], disabled.
pub(super) unsafe fn register(raw: *mut KmclChannel) -> Result {
    // SAFETY: the caller's promise.
    result(unsafe {
        abi::kmcl_server_channel_init_set_save_restore_packet_callbacks(
            raw,
            Some(on_save_packet),
            Some(on_restore_packet),
        )
    })
}

/// kmcl asks first with no buffer (`size` 0) and then with `*needed`
/// bytes: the driver is asked once, its bytes kept in between.
///
/// # Safety
///
/// Called by kmcl for a server channel made by [`Channel::new`] with one
/// of its held packets; `buffer` is writable for `size` bytes and `needed`
/// is writable.
unsafe extern "C" fn on_save_packet(
    channel: *mut KmclChannel,
    packet: *mut KmclIncoming,
    buffer: *mut c_void,
    size: u32,
    needed: *mut u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(s) = (unsafe { super::shared_state(channel) }) else {
        return EINVAL.to_errno();
    };
    let id = packet as usize;
    let mut saving = s.saving.lock();
    if buffer.is_null() || size == 0 {
        // SAFETY: the caller's promise.
        let (d, c) = unsafe { driver(channel) };
        let state = match d.save_packet(c, IncomingId(id)) {
            Ok(st) => st,
            Err(e) => return e.to_errno(),
        };
        if state.is_empty() {
            *saving = None;
            return 0;
        }
        let Ok(n) = u32::try_from(state.len()) else {
            return EOVERFLOW.to_errno();
        };
        // SAFETY: writable (the caller's promise).
        unsafe { *needed = n };
        *saving = Some((id, state));
        return ENOBUFS.to_errno();
    }
    match saving.take() {
        Some((kept, state)) if kept == id && state.len() <= size as usize => {
            // SAFETY: `buffer` is writable for `size >= state.len()` bytes
            // (the caller's promise); `needed` is writable.
            unsafe {
                core::ptr::copy_nonoverlapping(state.as_ptr(), buffer.cast::<u8>(), state.len());
                *needed = state.len() as u32;
            }
            0
        }
        _ => EINVAL.to_errno(),
    }
}

/// A saved packet, made an incoming packet again (`VmbPacketRestore`) and
/// handed to the driver with its saved state.
///
/// # Safety
///
/// Called by kmcl for a server channel made by [`Channel::new`], after its
/// Opened; `lib` and `state` are readable for their sizes.
unsafe extern "C" fn on_restore_packet(
    channel: *mut KmclChannel,
    lib: *const c_void,
    lib_size: u32,
    state: *const c_void,
    size: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    // SAFETY: the channel is live.
    let pkt: *mut KmclPacket = unsafe { abi::kmcl_packet_allocate(channel) };
    if pkt.is_null() {
        return ENOMEM.to_errno();
    }
    // SAFETY: `pkt` is a new packet object of the channel; `lib` is
    // readable for `lib_size` bytes (the caller's promise); the packet
    // object is freed once its restored packet is taken out.
    let incoming = unsafe {
        let rc = abi::kmcl_packet_restore(pkt, lib, lib_size);
        let incoming = abi::kmcl_packet_restored(pkt);
        abi::kmcl_packet_free(pkt);
        if rc != 0 {
            return rc;
        }
        incoming
    };
    if incoming.is_null() {
        return EINVAL.to_errno();
    }
    let state = if state.is_null() || size == 0 {
        &[][..]
    } else {
        // SAFETY: readable for `size` bytes during the call (the caller's
        // promise).
        unsafe { core::slice::from_raw_parts(state.cast::<u8>(), size as usize) }
    };
    let packet = Incoming {
        raw: incoming,
        data: core::ptr::null(),
        len: 0,
        flags: 0,
    };
    d.restore_packet(c, packet, state);
    0
}
