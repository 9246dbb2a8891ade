// SPDX-License-Identifier: GPL-2.0

//! GPADLs, external data of incoming packets, and MMIO space.

use core::ffi::{
    c_int,
    c_void, //
};

use kernel::prelude::*;

use crate::shmem::GpadlPages;

use crate::engine::types::MmioSpace;

use super::{
    abi,
    abi::{
        KmclChannel,
        KmclIncoming,
        KmclMdl, //
    },
    incoming::lent_object,
    outgoing::mdl_pages, //
    with_channel,
    with_channel_sleeping,
    MappedMdl,
};

/// `VmbChannelCreateGpadlFromBuffer`: shares `length` bytes at `buffer`
/// (vmalloc or linear-map memory) with the server.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `gpadl` is NULL or writable; the
/// buffer stays allocated until the GPADL is deleted.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_create_gpadl_from_buffer(
    channel: *mut KmclChannel,
    flags: u32,
    buffer: *mut c_void,
    length: u32,
    gpadl: *mut u32,
) -> c_int {
    if gpadl.is_null() || buffer.is_null() || flags & !abi::GPADL_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_create_gpadl_from_buffer", channel, |h| {
            // SAFETY: the caller keeps the buffer until the GPADL is
            // deleted (kmcl.h).
            let pages = GpadlPages::from_buffer(buffer as usize, length as usize)?;
            let handle = h
                .channel
                .create_gpadl(pages, flags & abi::GPADL_FLAG_READ_ONLY != 0)?;
            // SAFETY: `gpadl` is writable (the caller's promise).
            *gpadl = handle;
            Ok(())
        })
    }
}

/// `VmbChannelCreateGpadlFromMdl`: shares `length` bytes (0: to the end)
/// from `offset` of the data `mdl` describes.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `mdl` is NULL or a readable
/// `struct kmcl_mdl` whose `pages` holds `nr_pages` valid page pointers,
/// and those pages stay allocated until the GPADL is deleted; `gpadl` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_create_gpadl_from_mdl(
    channel: *mut KmclChannel,
    flags: u32,
    mdl: *const KmclMdl,
    offset: u32,
    length: u32,
    gpadl: *mut u32,
) -> c_int {
    if gpadl.is_null() || mdl.is_null() || flags & !abi::GPADL_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_create_gpadl_from_mdl", channel, |h| {
            // A GPADL is one buffer: a chain is refused.
            if !(*mdl).next.is_null() {
                return Err(EINVAL);
            }
            // SAFETY: the caller's promise (as `mdl_pages` requires).
            let pages = mdl_pages(mdl, offset, length, false)?;
            let handle = h
                .channel
                .create_gpadl(pages, flags & abi::GPADL_FLAG_READ_ONLY != 0)?;
            // SAFETY: `gpadl` is writable (the caller's promise).
            *gpadl = handle;
            Ok(())
        })
    }
}

/// kmcl's `kmcl_channel_get_mmio_physical`: KMCL's physical
/// `MmioAddress`, the guest physical range of the connection's MMIO space.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `start` and `size` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_mmio_physical(
    channel: *mut KmclChannel,
    start: *mut u64,
    size: *mut u64,
) -> c_int {
    if start.is_null() || size.is_null() {
        return EINVAL.to_errno();
    }
    let mut range = None;
    // SAFETY: the caller's promise.
    let rc = unsafe {
        with_channel(channel, |h| {
            range = Some(h.channel.mmio_physical()?);
            Ok(())
        })
    };
    if let Some((at, len)) = range {
        // SAFETY: both outputs are writable (checked non-NULL; the
        // caller's promise).
        unsafe {
            *start = at;
            *size = len as u64;
        }
    }
    rc
}

/// `VmbChannelDeleteGpadl`: waits while the server has it mapped.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_delete_gpadl(channel: *mut KmclChannel, gpadl: u32) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_delete_gpadl", channel, |h| {
            h.channel.delete_gpadl(gpadl)
        })
    }
}

/// `VmbChannelGetMmioSpace`: the MMIO space of the connection.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `address` and `size` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_mmio_space(
    channel: *mut KmclChannel,
    address: *mut *mut c_void,
    size: *mut u64,
) -> c_int {
    if address.is_null() || size.is_null() {
        return EINVAL.to_errno();
    }
    let mut space = None;
    // SAFETY: the caller's promise.
    let rc = unsafe {
        with_channel(channel, |h| {
            space = Some(h.channel.mmio_space()?);
            Ok(())
        })
    };
    if let Some(MmioSpace {
        address: va, len, ..
    }) = space
    {
        // SAFETY: both outputs are writable (checked non-NULL; the
        // caller's promise).
        unsafe {
            *address = va as *mut c_void;
            *size = len as u64;
        }
    }
    rc
}

/// `VmbChannelPacketGetExternalData`: `*mdl` describes the external data
/// of an incoming GPA-direct packet, valid until the packet is completed.
/// `-ENODATA` for a packet without external data.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// and not yet given back; `mdl` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_get_external_data(
    packet: *mut KmclIncoming,
    flags: u32,
    mdl: *mut *mut KmclMdl,
) -> c_int {
    if packet.is_null() || mdl.is_null() || flags & !abi::EXTERNAL_DATA_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    let Some(obj) = lent_object(packet, "kmcl_channel_packet_get_external_data") else {
        return EINVAL.to_errno();
    };
    // SAFETY: a lent handle is a live incoming packet's box, which the
    // calling driver owns until it gives it back.
    let incoming = unsafe { &*obj };
    match incoming.external_data() {
        Some(pages) => {
            // SAFETY: `mdl` is writable; the view has `struct kmcl_mdl`'s
            // layout (checked below) and lives as long as the packet.
            unsafe {
                *mdl = core::ptr::from_ref(pages.first().mdl_view())
                    .cast_mut()
                    .cast()
            };
            0
        }
        None => ENODATA.to_errno(),
    }
}

/// kmcl's `kmcl_channel_packet_get_transfer_pages`: the set and ranges of
/// an incoming transfer-page packet, valid until the packet is given back.
/// `-ENODATA` for any other packet.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// and not yet given back; `set_id`, `ranges` and `count` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_get_transfer_pages(
    packet: *mut KmclIncoming,
    set_id: *mut u16,
    ranges: *mut *const abi::KmclTransferRange,
    count: *mut u32,
) -> c_int {
    if set_id.is_null() || ranges.is_null() || count.is_null() {
        return EINVAL.to_errno();
    }
    let Some(obj) = lent_object(packet, "kmcl_channel_packet_get_transfer_pages") else {
        return EINVAL.to_errno();
    };
    // SAFETY: a lent handle is a live incoming packet's box, which the
    // calling driver owns until it gives it back.
    let incoming = unsafe { &*obj };
    match incoming.transfer_pages() {
        Some((set, list, n)) => {
            // SAFETY: the three are writable (the caller's promise); `list`
            // holds `n` ranges in `struct kmcl_transfer_range`'s layout
            // (wire layout, little-endian like every kernel VMBus runs
            // on), at a 4-byte aligned offset of a kmalloc'ed buffer, and
            // lives as long as the packet.
            unsafe {
                *set_id = set;
                *ranges = list.as_ptr().cast();
                *count = n;
            }
            0
        }
        None => ENODATA.to_errno(),
    }
}

/// kmcl's `kmcl_channel_register_transfer_page_set`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_register_transfer_page_set(
    channel: *mut KmclChannel,
    gpadl: u32,
    set_id: u16,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_register_transfer_page_set", channel, |h| {
            h.channel.register_transfer_set(set_id, gpadl)
        })
    }
}

/// kmcl's `kmcl_channel_unregister_transfer_page_set`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_unregister_transfer_page_set(
    channel: *mut KmclChannel,
    set_id: u16,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_unregister_transfer_page_set", channel, |h| {
            h.channel.unregister_transfer_set(set_id)
        })
    }
}

// `struct kmcl_transfer_range` is the wire layout of a range.
const _: () = {
    use crate::protocol::xfer::RANGE_SIZE;
    use core::mem::{
        align_of,
        offset_of,
        size_of, //
    };
    assert!(size_of::<abi::KmclTransferRange>() == RANGE_SIZE);
    assert!(align_of::<abi::KmclTransferRange>() == 4);
    assert!(offset_of!(abi::KmclTransferRange, byte_count) == 0);
    assert!(offset_of!(abi::KmclTransferRange, byte_offset) == 4);
};

// `MdlView` is handed to C as a `struct kmcl_mdl`.
const _: () = {
    use crate::shmem::MdlView;
    use core::mem::{
        align_of,
        offset_of,
        size_of, //
    };
    assert!(size_of::<MdlView>() == size_of::<KmclMdl>());
    assert!(align_of::<MdlView>() == align_of::<KmclMdl>());
    assert!(offset_of!(MdlView, pages) == offset_of!(KmclMdl, pages));
    assert!(offset_of!(MdlView, nr_pages) == offset_of!(KmclMdl, nr_pages));
    assert!(offset_of!(MdlView, offset) == offset_of!(KmclMdl, offset));
    assert!(offset_of!(MdlView, length) == offset_of!(KmclMdl, length));
    assert!(offset_of!(MdlView, next) == offset_of!(KmclMdl, next));
};

/// `VmbChannelMapGpadl`: `*mdl` describes the client's pages behind
/// `gpadl` until it is unmapped (or the channel is cleaned up).
///
/// # Safety
///
/// `channel` is NULL or a live handle; `mdl` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_map_gpadl(
    channel: *mut KmclChannel,
    flags: u32,
    gpadl: u32,
    mdl: *mut *mut KmclMdl,
) -> c_int {
    if mdl.is_null() || flags & !abi::GPADL_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    let writable = flags & abi::GPADL_FLAG_READ_ONLY == 0;
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_map_gpadl", channel, |h| {
            let pages = h.channel.map_gpadl(gpadl, writable)?;
            let m = MappedMdl { gpadl, pages };
            let ptr = m.as_ptr();
            match h.mdls.lock().push(m, GFP_KERNEL) {
                Ok(()) => {
                    // SAFETY: `mdl` is writable (the caller's promise).
                    *mdl = ptr;
                    Ok(())
                }
                Err(e) => {
                    let _ = h.channel.unmap_gpadl(gpadl);
                    Err(e.into())
                }
            }
        })
    }
}

/// `VmbChannelUnmapGpadl`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_unmap_gpadl(channel: *mut KmclChannel, gpadl: u32) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_unmap_gpadl", channel, |h| {
            let r = h.channel.unmap_gpadl(gpadl);
            // The MDL goes with the mapping (also if kmcl already unmapped
            // it because the connection ended).
            let gone = {
                let mut mdls = h.mdls.lock();
                let i = mdls.iter().position(|m| m.gpadl == gpadl);
                i.and_then(|i| mdls.remove(i).ok())
            };
            match (r, gone) {
                (Err(e), None) => Err(e),
                _ => Ok(()),
            }
        })
    }
}
