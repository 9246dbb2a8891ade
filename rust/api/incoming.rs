// SPDX-License-Identifier: GPL-2.0

//! Incoming packets: complete, defer, fail, and what a packet carries.

use core::ffi::{
    c_int,
    c_void, //
};

use kernel::prelude::*;

use crate::engine::datapath::{
    IncomingPacket, //
    PacketObject,
};

use super::{
    abi::KmclIncoming, //
    bytes,
    errno,

    lent,
};

/// The incoming packet behind a handle a driver gives back, if kmcl lent
/// it and it was not given back before (a packet completed twice is
/// refused and logged instead of freed twice; see [`lent`]). A packet a
/// save under way holds (`function` defers or fails it meanwhile) is
/// completed empty when the save ends.
pub(super) fn incoming(packet: *mut KmclIncoming, function: &str) -> Option<IncomingPacket> {
    match lent::give_back(packet as usize) {
        lent::GiveBack::Taken => {
            // SAFETY: the record had the handle, so it is `KBox::into_raw`
            // of a packet's box, and taking it out of the record made it
            // ours alone.
            Some(unsafe { incoming_unchecked(packet) })
        }
        lent::GiveBack::Recorded => {
            pr_warn!(
                "{}: packet {:p} is being saved; it is completed empty instead\n",
                function,
                packet
            );
            let _ = lent::record(packet as usize, &[]);
            None
        }
        lent::GiveBack::Refused => {
            pr_err!(
                "{}: invalid incoming packet handle {:p} (completed twice, or saved?); ignored\n",
                function,
                packet
            );
            None
        }
    }
}

/// The incoming packet behind a handle.
///
/// # Safety
///
/// `packet` is `KBox::into_raw` of an incoming packet's box, owned by the
/// caller (given back exactly once).
pub(super) unsafe fn incoming_unchecked(packet: *mut KmclIncoming) -> IncomingPacket {
    // SAFETY: the caller's promise.
    IncomingPacket::from_box(unsafe { KBox::from_raw(packet.cast::<PacketObject>()) })
}

/// `VmbChannelPacketComplete`.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// (one given back already is refused); `buffer` holds `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_complete(
    packet: *mut KmclIncoming,
    buffer: *const c_void,
    length: u32,
) -> c_int {
    if packet.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller's promise.
    let payload = unsafe { bytes(buffer, length) };
    match lent::give_back(packet as usize) {
        lent::GiveBack::Taken => {
            // SAFETY: as in `incoming`.
            let packet = unsafe { incoming_unchecked(packet) };
            match payload {
                Ok(payload) => errno(packet.complete(payload)),
                Err(e) => {
                    // Completed without a payload rather than leaked.
                    drop(packet);
                    e.to_errno()
                }
            }
        }
        // A save under way holds it: the completion is sent when the save
        // ends (the packet does not go into it).
        lent::GiveBack::Recorded => {
            let recorded = lent::record(packet as usize, payload.as_deref().unwrap_or(&[]));
            errno(recorded.and(payload.map(|_| ())))
        }
        lent::GiveBack::Refused => {
            pr_err!(
                "kmcl_channel_packet_complete: invalid incoming packet handle {:p} (completed twice, or saved?); ignored\n",
                packet
            );
            EINVAL.to_errno()
        }
    }
}

/// `VmbChannelPacketDeferToPassive`.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// (one given back already is refused).
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_defer_to_passive(packet: *mut KmclIncoming) {
    if !packet.is_null() {
        if let Some(p) = incoming(packet, "kmcl_channel_packet_defer_to_passive") {
            p.defer_to_passive();
        }
    }
}

/// `VmbChannelPacketFail`.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// (one given back already is refused).
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_fail(packet: *mut KmclIncoming) {
    if !packet.is_null() {
        if let Some(p) = incoming(packet, "kmcl_channel_packet_fail") {
            p.fail();
        }
    }
}

/// The packet object behind `packet`, a handle kmcl lent to its driver
/// and not yet given back, for `function`'s accessor; `None` (and one log
/// line for a handle that is not NULL) otherwise.
pub(super) fn lent_object(packet: *mut KmclIncoming, function: &str) -> Option<*mut PacketObject> {
    if packet.is_null() {
        return None;
    }
    if !lent::is_lent(packet as usize) {
        pr_err!(
            "{}: invalid incoming packet handle {:p}; ignored\n",
            function,
            packet
        );
        return None;
    }
    Some(packet.cast())
}

/// `VmbChannelPacketGetClientContext` (KMCL V2): the packet's context area
/// of `ClientContextSize` bytes (zeroed on arrival, the driver's until it
/// gives the packet back), and its size in `*size` if `size` is not NULL.
/// NULL (and 0) for a channel without a context area or a handle kmcl has
/// not lent.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// and not yet given back; `size` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_get_client_context(
    packet: *mut KmclIncoming,
    size: *mut u32,
) -> *mut c_void {
    let (area, len) = match lent_object(packet, "kmcl_channel_packet_get_client_context") {
        // SAFETY: a lent handle is a live incoming packet's box, which the
        // calling driver owns until it gives it back: nothing else refers
        // to its context area meanwhile.
        Some(obj) => unsafe { (*obj).context_area() },
        None => (core::ptr::null_mut(), 0),
    };
    if !size.is_null() {
        // SAFETY: writable (the caller's promise); at most 4096.
        unsafe { *size = len as u32 };
    }
    if len == 0 {
        return core::ptr::null_mut();
    }
    area.cast()
}
