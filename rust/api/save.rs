// SPDX-License-Identifier: GPL-2.0

//! Server save/restore (live update) and the stash that carries state
//! across a module reload.

use core::{
    ffi::{
        c_int,
        c_void, //
    },
    sync::atomic::Ordering, //
};

use kernel::{
    error::to_result,
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::datapath::PacketObject,
    protocol::lifecycle::Role, //
};

use super::{
    abi::{
        EvtRestorePacket,
        EvtSavePacket,
        Guid,
        KmclChannel,
        KmclIncoming,
        KmclPacket, //
    },
    errno,
    incoming::incoming_unchecked,
    lent,
    outgoing::packet_ref,
    settings::{
        for_role,
        guid, //
    },
    sleepable, with_channel_sleeping, Handle, REGISTRY,
};

/// `VmbChannelRestoreFromBuffer` (server, disabled, interface set): 0
/// once the save is complete, `-EAGAIN` (`STATUS_MORE_PROCESSING_REQUIRED`)
/// for more chunks, `-EBADMSG` for a buffer that is not (the rest of) a
/// valid save, `-EINVAL` for a save of another interface; a refused buffer
/// changes nothing.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` is readable for `size`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_restore_from_buffer(
    channel: *mut KmclChannel,
    buffer: *const c_void,
    size: u32,
) -> c_int {
    if buffer.is_null() || size == 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: readable for `size` bytes (the caller's promise).
    let buf = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), size as usize) };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_restore_from_buffer", channel, |h| {
            for_role(h, Role::Server, |h| match h.channel.restore_from(buf)? {
                true => Ok(()),
                false => Err(EAGAIN),
            })
        })
    }
}

/// A save under way ends without `marked` (a failure before it was
/// sealed): each is the driver's again, as it was, except those the
/// driver completed meanwhile, which are completed now; delivery resumes.
fn abandon(h: &Handle, marked: &[usize], e: Error) -> Result {
    for &handle in marked {
        if let Some(payload) = lent::end_saving(handle, false) {
            complete_now(handle, &payload);
        }
    }
    h.channel.resume_after_save();
    Err(e)
}

/// Sends the completion the driver gave packet `handle` while a save held
/// it.
fn complete_now(handle: usize, payload: &[u8]) {
    // SAFETY: `end_saving` removed its entry: a lent packet's box, ours
    // alone now.
    let packet = unsafe { incoming_unchecked(handle as *mut KmclIncoming) };
    if let Err(e) = packet.complete(payload) {
        pr_warn!("save: a completion made during the save failed: {:?}\n", e);
    }
}

/// What the driver saves for the packet `handle` (`EvtVmbChannelSavePacket`:
/// a size query with no buffer first, then a buffer of the size it asked
/// for). Empty without a callback.
pub(super) fn driver_state(h: &Handle, handle: *mut KmclIncoming) -> Result<KVec<u8>> {
    let f = h.save_restore.lock().0;
    let (Some(f), true) = (f, h.alive()) else {
        return Ok(KVec::new());
    };
    let mut needed = 0u32;
    // SAFETY: the driver's callback (module alive); `handle` is one of its
    // packets, taken back for the save and alive; no buffer (size 0).
    let rc = unsafe { f(h.as_raw(), handle, core::ptr::null_mut(), 0, &mut needed) };
    if rc == 0 {
        return Ok(KVec::new());
    }
    if needed == 0 || needed as usize > crate::protocol::save::MAX_BODY_LEN / 2 {
        return Err(Error::from_errno(rc));
    }
    let mut buf = KVec::from_elem(0u8, needed as usize, GFP_KERNEL)?;
    let mut used = needed;
    // SAFETY: as above, with a writable buffer of `needed` bytes.
    let rc = unsafe {
        f(
            h.as_raw(),
            handle,
            buf.as_mut_ptr().cast(),
            needed,
            &mut used,
        )
    };
    to_result(rc)?;
    buf.truncate(used.min(needed) as usize);
    Ok(buf)
}

/// `VmbChannelSaveBegin` (server, connected): stops delivery and takes the
/// packets the driver holds uncompleted into the save, with what the
/// driver's `EvtVmbChannelSavePacket` saves for each. A packet the driver
/// completes while this runs is completed (when it returns) and left out
/// of the save; once it returns, the packets belong to the save:
/// completing one fails (`-EINVAL`). `-EOPNOTSUPP`
/// if one carries external data (not saved); on any error (the driver's
/// save callback, no memory, a save that cannot be written) every packet
/// is the driver's again, as it was, and delivery resumes.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_save_begin(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_save_begin", channel, |h| {
            for_role(h, Role::Server, save_begin)
        })
    }
}

pub(super) fn save_begin(h: &Handle) -> Result {
    h.channel.stop_for_save()?;
    let me = Arc::as_ptr(&h.channel);
    // The packets the driver holds on this channel are marked, not taken:
    // a completion of one meanwhile is recorded and carried out when the
    // save ends, and the packet left out of it.
    let mut marked: KVec<usize> = KVec::new();
    loop {
        if marked.reserve(1, GFP_KERNEL).is_err() {
            return abandon(h, &marked, ENOMEM);
        }
        let Some((handle, _)) = lent::mark_for_save(|addr, _| {
            // SAFETY: `addr` is lent (its entry is in the table, under the
            // table's lock), so the packet is alive.
            let b = unsafe { &*(addr as *const PacketObject) };
            core::ptr::eq(Arc::as_ptr(b.channel()), me)
        }) else {
            break;
        };
        let _ = marked.push_within_capacity(handle);
    }
    let carries_external = |handle: usize| {
        // SAFETY: a marked packet stays alive: its completions are
        // recorded, not carried out, until `end_saving`.
        let packet = unsafe { &*(handle as *const PacketObject) };
        packet.external_data().is_some()
    };
    if marked.iter().any(|&a| carries_external(a)) {
        pr_err!("save: a packet in flight carries external data, which is not saved\n");
        return abandon(h, &marked, EOPNOTSUPP);
    }
    let Ok(mut states) = KVec::with_capacity(marked.len(), GFP_KERNEL) else {
        return abandon(h, &marked, ENOMEM);
    };
    for &a in marked.iter() {
        match driver_state(h, a as *mut KmclIncoming) {
            Ok(st) => {
                let _ = states.push_within_capacity(st);
            }
            Err(e) => {
                pr_err!("save: the driver could not save a packet: {:?}\n", e);
                return abandon(h, &marked, e);
            }
        }
    }
    let (Ok(mut packets), Ok(mut sealed)) = (
        KVec::with_capacity(marked.len(), GFP_KERNEL),
        KVec::with_capacity(marked.len(), GFP_KERNEL),
    ) else {
        return abandon(h, &marked, ENOMEM);
    };
    // Sealed: from here a completion is refused (the packet is the
    // save's); one completed meanwhile is completed now instead.
    for (&a, driver_state) in marked.iter().zip(states) {
        match lent::end_saving(a, true) {
            Some(payload) => complete_now(a, &payload),
            None => {
                // SAFETY: sealed, so the driver can no longer give it back:
                // the box is ours until the save takes it or fails.
                let packet = unsafe { KBox::from_raw(a as *mut PacketObject) };
                let _ = packets.push_within_capacity(crate::engine::channel::SavedPacket {
                    packet,
                    driver_state,
                });
                let _ = sealed.push_within_capacity(a);
            }
        }
    }
    match h.channel.save(packets) {
        Ok(()) => {
            for a in sealed {
                lent::drop_sealed(a);
            }
            Ok(())
        }
        Err((e, packets)) => {
            pr_err!("save: {:?}; the packets are the driver's again\n", e);
            for p in packets {
                lent::unseal(KBox::into_raw(p.packet) as usize);
            }
            h.channel.resume_after_save();
            Err(e)
        }
    }
}

/// `VmbChannelSaveContinue`: as many whole chunks of the save as fit in
/// `buffer`: 0 (all handed out), `-EOVERFLOW` (`STATUS_BUFFER_OVERFLOW`:
/// `*filled` bytes written, more to come), `-ENOBUFS`
/// (`STATUS_BUFFER_TOO_SMALL`: the next chunk needs `*required` bytes).
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` is writable for `size`
/// bytes (NULL if `size` is 0); `filled` and `required` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_save_continue(
    channel: *mut KmclChannel,
    buffer: *mut c_void,
    size: u32,
    filled: *mut u32,
    required: *mut u32,
) -> c_int {
    if filled.is_null() || required.is_null() || (buffer.is_null() && size > 0) {
        return EINVAL.to_errno();
    }
    let out: &mut [u8] = if size == 0 {
        &mut []
    } else {
        // SAFETY: writable for `size` bytes (the caller's promise).
        unsafe { core::slice::from_raw_parts_mut(buffer.cast(), size as usize) }
    };
    let mut outcome = None;
    // SAFETY: the caller's promise.
    let rc = unsafe {
        with_channel_sleeping(c"kmcl_channel_save_continue", channel, |h| {
            outcome = Some(h.channel.save_continue(out)?);
            Ok(())
        })
    };
    use crate::engine::channel::Continue;
    let (n, need, rc) = match outcome {
        Some(Continue::Done(n)) => (n, 0, 0),
        Some(Continue::More(n)) => (n, 0, EOVERFLOW.to_errno()),
        Some(Continue::TooSmall(need)) => (0, need, ENOBUFS.to_errno()),
        None => (0, 0, rc),
    };
    // SAFETY: both checked non-NULL; writable (the caller's promise).
    unsafe {
        *filled = n as u32;
        *required = need as u32;
    }
    rc
}

/// `VmbChannelSaveEnd`: the save is over; the channel's Disable now parks
/// its connection for the server that restores the save.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_save_end(channel: *mut KmclChannel) {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_save_end", channel, |h| {
            h.channel.save_end();
            Ok(())
        })
    };
}

/// `VmbPacketRestore`: makes the saved packet `buffer` (the `lib_buffer`
/// of `EvtVmbChannelRestorePacket`) an incoming packet of the packet
/// object's channel again; [`kmcl_packet_restored`] hands out its handle.
/// `-EBADMSG` for a buffer that is not a saved packet, `-EBUSY` if the
/// packet object holds a restored packet not handed out yet.
///
/// # Safety
///
/// `packet` is NULL or a live packet object; `buffer` is readable for
/// `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_restore(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    size: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { packet_ref(packet) }) else {
        return EINVAL.to_errno();
    };
    if buffer.is_null() || size == 0 {
        return EINVAL.to_errno();
    }
    if p.restored.load(Ordering::Acquire) != 0 {
        return EBUSY.to_errno();
    }
    // SAFETY: readable for `size` bytes (the caller's promise).
    let lib = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), size as usize) };
    let b = match p.handle.channel.restore_incoming(lib) {
        Ok(b) => b,
        Err(e) => return e.to_errno(),
    };
    let raw = KBox::into_raw(b);
    if lent::lend(raw as usize, p.handle.owner).is_err() {
        // SAFETY: made just above, not handed out: completed empty.
        drop(unsafe { incoming_unchecked(raw.cast()) });
        return ENOMEM.to_errno();
    }
    p.restored.store(raw as usize, Ordering::Release);
    0
}

/// kmcl's own: the incoming packet `kmcl_packet_restore` made in `packet`
/// (once; NULL otherwise), to complete as any incoming packet.
///
/// # Safety
///
/// `packet` is NULL or a live packet object.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_restored(packet: *mut KmclPacket) -> *mut KmclIncoming {
    // SAFETY: the caller's promise.
    match unsafe { packet_ref(packet) } {
        Some(p) => p.restored.swap(0, Ordering::AcqRel) as *mut KmclIncoming,
        None => core::ptr::null_mut(),
    }
}

/// `kmcl_stash_put` (kmcl's own): keeps a copy of `len` bytes under `key`
/// (replacing what was there) until [`kmcl_stash_take`] or kmcl unloads:
/// state a driver hands to its next load (a live update).
///
/// # Safety
///
/// `key` is NULL or readable; `buffer` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_stash_put(
    key: *const Guid,
    buffer: *const c_void,
    len: u32,
) -> c_int {
    if let Err(e) = sleepable(c"kmcl_stash_put", 0) {
        return e.to_errno();
    }
    // SAFETY: the caller's promise.
    let Some(key) = (unsafe { guid(key) }) else {
        return EINVAL.to_errno();
    };
    if buffer.is_null() || len == 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: readable for `len` bytes (the caller's promise).
    let data = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), len as usize) };
    let put = (|| {
        let mut copy = KVVec::with_capacity(data.len(), GFP_KERNEL)?;
        copy.extend_from_slice(data, GFP_KERNEL)?;
        let mut r = REGISTRY.lock();
        r.stash.retain(|(k, _)| *k != key);
        r.stash.push((key, copy), GFP_KERNEL)?;
        Ok(())
    })();
    errno(put)
}

/// `kmcl_stash_take` (kmcl's own): copies what is kept under `key` into
/// `buffer` and forgets it; `*len` receives its size. `-ENOENT` (nothing
/// kept), `-ENOBUFS` (`size` too small: `*len` says how much; it stays
/// kept).
///
/// # Safety
///
/// `key` is NULL or readable; `buffer` writable for `size` bytes (NULL if
/// `size` is 0); `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_stash_take(
    key: *const Guid,
    buffer: *mut c_void,
    size: u32,
    len: *mut u32,
) -> c_int {
    if let Err(e) = sleepable(c"kmcl_stash_take", 0) {
        return e.to_errno();
    }
    // SAFETY: the caller's promise.
    let Some(key) = (unsafe { guid(key) }) else {
        return EINVAL.to_errno();
    };
    if len.is_null() || (buffer.is_null() && size > 0) {
        return EINVAL.to_errno();
    }
    let mut r = REGISTRY.lock();
    let Some(i) = r.stash.iter().position(|(k, _)| *k == key) else {
        return ENOENT.to_errno();
    };
    let n = r.stash[i].1.len();
    // SAFETY: checked non-NULL; writable (the caller's promise).
    unsafe { *len = n as u32 };
    if n > size as usize {
        return ENOBUFS.to_errno();
    }
    // SAFETY: writable for `size >= n` bytes (the caller's promise).
    unsafe { core::ptr::copy_nonoverlapping(r.stash[i].1.as_ptr(), buffer.cast::<u8>(), n) };
    let taken = r.stash.remove(i);
    drop(r);
    drop(taken);
    0
}

/// `VmbServerChannelInitSetSaveRestorePacketCallbacks`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_save_restore_packet_callbacks(
    channel: *mut KmclChannel,
    save: EvtSavePacket,
    restore: EvtRestorePacket,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(
            c"kmcl_server_channel_init_set_save_restore_packet_callbacks",
            channel,
            |h| {
                for_role(h, Role::Server, |h| {
                    // Init time only (`-EBUSY` while enabled).
                    h.channel.configure(|_| {})?;
                    *h.save_restore.lock() = (save, restore);
                    Ok(())
                })
            },
        )
    }
}
