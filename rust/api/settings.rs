// SPDX-License-Identifier: GPL-2.0

//! Init-time settings and channel information (KMCL `VmbChannelInitSet*`,
//! `VmbServerChannelInitSet*`, `VmbChannelGet*`).

use core::ffi::{
    c_int,
    c_void, //
};

use kernel::{
    ffi::c_char,
    prelude::*,
    sync::Arc, //
};

use crate::protocol::lifecycle::Role;

use super::{
    abi,
    abi::{
        EvtPnpFailure,
        EvtProcessPacket,
        EvtProcessingComplete,
        Guid,
        KmclChannel, //
    },
    callbacks::{
        CPackets,
        CState, //
    },
    errno, handle, sleepable, with_channel, with_channel_sleeping, Handle,
};

/// Runs `f` on the handle if the channel has `role`, else `-EINVAL`.
pub(super) fn for_role(h: &Handle, role: Role, f: impl FnOnce(&Handle) -> Result) -> Result {
    if h.channel.role() != role {
        return Err(EINVAL);
    }
    f(h)
}

/// Largest `ClientContextSize`: the context is allocated per packet in
/// softirq context.
pub(super) const CLIENT_CONTEXT_MAX: u32 = 4096;

/// `VmbChannelInitSetClientContextSize`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_client_context_size(
    channel: *mut KmclChannel,
    size: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_init_set_client_context_size", channel, |h| {
            if size > CLIENT_CONTEXT_MAX {
                return Err(EINVAL);
            }
            h.channel.configure(|s| s.client_context_size = size)
        })
    }
}

/// `VmbChannelInitSetFlags`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_flags(
    channel: *mut KmclChannel,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_init_set_flags", channel, |h| {
            h.channel.set_flags(flags)
        })
    }
}

/// `VmbChannelInitSetFriendlyName`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_friendly_name(
    channel: *mut KmclChannel,
    name: *const c_char,
) -> c_int {
    if name.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller's promise: NUL-terminated.
    let name = unsafe { CStr::from_char_ptr(name) };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_init_set_friendly_name", channel, |h| {
            h.channel.set_friendly_name(name.to_bytes())
        })
    }
}

/// `VmbChannelInitSetMaximumExternalData`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_maximum_external_data(
    channel: *mut KmclChannel,
    size: u32,
    chain_length: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(
            c"kmcl_channel_init_set_maximum_external_data",
            channel,
            |h| h.channel.set_maximum_external_data(size, chain_length),
        )
    }
}

/// `VmbChannelInitSetMaximumPacketSize`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_maximum_packet_size(
    channel: *mut KmclChannel,
    size: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_init_set_maximum_packet_size", channel, |h| {
            if size == 0 {
                return Err(EINVAL);
            }
            h.channel.configure(|s| s.max_packet_size = size)
        })
    }
}

/// `VmbChannelInitSetProcessPacketCallbacks`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; the callbacks are NULL or functions
/// that stay loaded while the channel exists.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_process_packet_callbacks(
    channel: *mut KmclChannel,
    process_packet: EvtProcessPacket,
    processing_complete: EvtProcessingComplete,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    if let Err(e) = sleepable(c"kmcl_channel_init_set_process_packet_callbacks", h.owner) {
        return e.to_errno();
    }
    if process_packet.is_none() {
        return EINVAL.to_errno();
    }
    let set = (|| -> Result {
        let cb = Arc::new(
            CPackets {
                handle: h.into(),
                process: process_packet,
                complete: processing_complete,
            },
            GFP_KERNEL,
        )?;
        h.channel.set_packet_callbacks(cb)
    })();
    errno(set)
}

/// `VmbChannelInitSetStateChangeCallbacks`: refuses a structure of another
/// version or size (`-EINVAL`).
///
/// # Safety
///
/// `channel` is NULL or a live handle; `callbacks` is NULL or points to at
/// least its own `size` bytes, `version` and `size` first.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_state_change_callbacks(
    channel: *mut KmclChannel,
    callbacks: *const abi::StateCallbacks,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    if let Err(e) = sleepable(c"kmcl_channel_init_set_state_change_callbacks", h.owner) {
        return e.to_errno();
    }
    if callbacks.is_null() {
        return EINVAL.to_errno();
    }
    // Read the version and size first: a smaller structure must not be
    // read past its end.
    // SAFETY: every version starts with `version` and `size`.
    let (version, size) = unsafe {
        (
            core::ptr::addr_of!((*callbacks).version).read(),
            core::ptr::addr_of!((*callbacks).size).read(),
        )
    };
    let expected = core::mem::size_of::<abi::StateCallbacks>();
    if version != abi::STATE_CALLBACKS_VERSION || size as usize != expected {
        pr_warn!(
            "state change callbacks: version {} size {}; kmcl supports version {} size {}\n",
            version,
            size,
            abi::STATE_CALLBACKS_VERSION,
            expected
        );
        return EINVAL.to_errno();
    }
    // SAFETY: checked: the caller's structure is this layout.
    let cb = unsafe { callbacks.read() };
    let set = (|| -> Result {
        let adapter = Arc::new(
            CState {
                handle: h.into(),
                cb,
            },
            GFP_KERNEL,
        )?;
        h.channel.set_state_callbacks(adapter)
    })();
    errno(set)
}

/// `VmbClientChannelInitSetRingBufferPageCount`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_client_channel_init_set_ring_buffer_page_count(
    channel: *mut KmclChannel,
    incoming: u32,
    outgoing: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(
            c"kmcl_client_channel_init_set_ring_buffer_page_count",
            channel,
            |h| {
                for_role(h, Role::Client, |h| {
                    h.channel.set_ring_page_counts(incoming, outgoing)
                })
            },
        )
    }
}

/// `VmbChannelInitSetPrimaryChannel` (KMCL V5).
///
/// # Safety
///
/// `channel` and `primary` are NULL or live handles.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_primary_channel(
    channel: *mut KmclChannel,
    primary: *mut KmclChannel,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { handle(primary) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_init_set_primary_channel", channel, |h| {
            h.channel.set_primary(&p.channel)
        })
    }
}

/// `kmcl_channel_init_set_subchannel_callback` (kmcl's own): `cb` runs,
/// in process context, for each sub-channel the server offers on the
/// client primary channel's connection.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_subchannel_callback(
    channel: *mut KmclChannel,
    cb: abi::EvtSubchannelOffered,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    if let Err(e) = sleepable(c"kmcl_channel_init_set_subchannel_callback", h.owner) {
        return e.to_errno();
    }
    if cb.is_none() || h.channel.role() != Role::Client {
        return EINVAL.to_errno();
    }
    let set = (|| -> Result {
        // The callback goes through the state-change adapter: one with no
        // state callbacks if the driver set none (yet; setting them later
        // replaces it and keeps this callback, which lives in the handle).
        if !h.channel.has_state_callbacks() {
            let adapter = Arc::new(
                CState {
                    handle: h.into(),
                    cb: abi::StateCallbacks::new(),
                },
                GFP_KERNEL,
            )?;
            h.channel.set_state_callbacks(adapter)?;
        } else if h.channel.is_enabled() {
            return Err(EBUSY);
        }
        *h.subchannel.lock() = cb;
        Ok(())
    })();
    errno(set)
}

/// `kmcl_channel_get_subchannel_index` (kmcl's own).
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_subchannel_index(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    if !h.channel.is_connected() {
        return ENOTCONN.to_errno();
    }
    c_int::from(h.channel.subchannel_index())
}

/// `VmbClientChannelInitSetTargetProcessorIndex` (kmcl: servers too).
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_target_processor(
    channel: *mut KmclChannel,
    processor: u32,
) -> c_int {
    let cpu = (processor != abi::TARGET_PROCESSOR_NONE).then_some(processor);
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_init_set_target_processor", channel, |h| {
            h.channel.set_target_processor(cpu)
        })
    }
}

/// `kmcl_client_channel_init_set_transport` (kmcl's own).
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_client_channel_init_set_transport(
    channel: *mut KmclChannel,
    transport: u32,
) -> c_int {
    let transport = match transport {
        abi::TRANSPORT_AUTO => Some(crate::engine::channel::Transport::Auto),
        abi::TRANSPORT_LOOPBACK => Some(crate::engine::channel::Transport::Loopback),
        abi::TRANSPORT_HOST => Some(crate::engine::channel::Transport::Host),
        _ => None,
    };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_client_channel_init_set_transport", channel, |h| {
            for_role(h, Role::Client, |h| {
                let transport = transport.ok_or(EINVAL)?;
                h.channel.configure(|s| s.transport = transport)
            })
        })
    }
}

/// Reads an optional GUID.
///
/// # Safety
///
/// `g` is NULL or readable.
pub(super) unsafe fn guid(g: *const Guid) -> Option<[u8; 16]> {
    // SAFETY: the caller's promise.
    (!g.is_null()).then(|| unsafe { g.read() }.b)
}

/// `VmbClientChannelInitSetTargetPnp`: the interface type (required) and
/// instance (NULL: any) of the offer to open.
///
/// # Safety
///
/// `channel` is NULL or a live handle; the GUIDs are NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_client_channel_init_set_target_pnp(
    channel: *mut KmclChannel,
    interface_type: *const Guid,
    instance: *const Guid,
    pnp_failure: EvtPnpFailure,
) -> c_int {
    // SAFETY: the caller's promise.
    let (ty, inst) = unsafe { (guid(interface_type), guid(instance)) };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_client_channel_init_set_target_pnp", channel, |h| {
            for_role(h, Role::Client, |h| {
                let ty = ty.ok_or(EINVAL)?;
                h.channel.configure(|s| {
                    s.interface_type = ty;
                    s.interface_instance = inst.unwrap_or([0; 16]);
                })?;
                *h.pnp_failure.lock() = pnp_failure;
                Ok(())
            })
        })
    }
}

/// `VmbServerChannelInitSetTargetInterfaceId`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; the GUIDs are NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_target_interface_id(
    channel: *mut KmclChannel,
    interface_type: *const Guid,
    instance: *const Guid,
) -> c_int {
    // SAFETY: the caller's promise.
    let (ty, inst) = unsafe { (guid(interface_type), guid(instance)) };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(
            c"kmcl_server_channel_init_set_target_interface_id",
            channel,
            |h| {
                for_role(h, Role::Server, |h| {
                    let (ty, inst) = (ty.ok_or(EINVAL)?, inst.ok_or(EINVAL)?);
                    h.channel.configure(|s| {
                        s.interface_type = ty;
                        s.interface_instance = inst;
                    })
                })
            },
        )
    }
}

/// `VmbServerChannelInitSetFlags`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_flags(
    channel: *mut KmclChannel,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_server_channel_init_set_flags", channel, |h| {
            for_role(h, Role::Server, |h| h.channel.set_server_flags(flags))
        })
    }
}

/// `VmbServerChannelInitSetTargetVtl`: only clients running in `vtl` see
/// the offer (kmcl's clients run in VTL 0).
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_target_vtl(
    channel: *mut KmclChannel,
    vtl: u8,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_server_channel_init_set_target_vtl", channel, |h| {
            h.channel.set_target_vtl(vtl)
        })
    }
}

/// `VmbChannelSetIncomingProcessingAtPassive`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_incoming_processing_at_passive(
    channel: *mut KmclChannel,
    at_passive: bool,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(
            c"kmcl_channel_set_incoming_processing_at_passive",
            channel,
            |h| h.channel.set_incoming_processing_at_passive(at_passive),
        )
    }
}

/// `VmbChannelSetTransactionQuota`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_transaction_quota(
    channel: *mut KmclChannel,
    quota: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.set_transaction_quota(quota)) }
}

/// `VmbChannelGetInterfaceInstance`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `instance` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_interface_instance(
    channel: *mut KmclChannel,
    instance: *mut Guid,
) {
    // SAFETY: the caller's promise.
    if let (Some(h), false) = (unsafe { handle(channel) }, instance.is_null()) {
        let b = h.channel.interface_instance();
        // SAFETY: checked non-NULL; writable (the caller's promise).
        unsafe { instance.write(Guid { b }) };
    }
}

/// `VmbChannelSetPointer`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_pointer(channel: *mut KmclChannel, pointer: *mut c_void) {
    // SAFETY: the caller's promise.
    if let Some(h) = unsafe { handle(channel) } {
        h.channel.set_pointer(pointer as usize);
    }
}

/// `VmbChannelGetPointer`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_pointer(channel: *mut KmclChannel) -> *mut c_void {
    // SAFETY: the caller's promise.
    match unsafe { handle(channel) } {
        Some(h) => h.channel.pointer() as *mut c_void,
        None => core::ptr::null_mut(),
    }
}

/// `VmbChannelSetInterruptLatency`: `*original` (if not NULL) receives
/// the previous latency.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `original` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_interrupt_latency(
    channel: *mut KmclChannel,
    latency: u16,
    original: *mut u16,
) -> c_int {
    let mut old = None;
    // SAFETY: the caller's promise.
    let rc = unsafe {
        with_channel(channel, |h| {
            old = Some(h.channel.set_interrupt_latency(latency)?);
            Ok(())
        })
    };
    if let (Some(old), false) = (old, original.is_null()) {
        // SAFETY: not NULL, so writable (the caller's promise).
        unsafe { *original = old };
    }
    rc
}

/// `VmbServerChannelInitSetMmioMegabytes`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_mmio_megabytes(
    channel: *mut KmclChannel,
    megabytes: u16,
    optional_megabytes: u16,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(
            c"kmcl_server_channel_init_set_mmio_megabytes",
            channel,
            |h| h.channel.set_mmio_megabytes(megabytes, optional_megabytes),
        )
    }
}
