// SPDX-License-Identifier: GPL-2.0

//! The interface tables (KMCL `KMCL_CLIENT_INTERFACE_V1`,
//! `KMCL_SERVER_INTERFACE_V1`).

use core::ffi::{
    c_int,
    c_void, //
};

use kernel::prelude::*;

use super::{
    abi,
    abi::{
        ClientInterfaceV1,
        ServerInterfaceV1,
        ServerOnlyMethods, //
    },
};

use super::{
    channels::*, gpadl::*, handles::*, incoming::*, lifecycle::*, outgoing::*, save::*, settings::*,
};

/// `KMCL_CLIENT_INTERFACE_V1` as kmcl hands it out.
const CLIENT_V1: ClientInterfaceV1 = ClientInterfaceV1 {
    size: core::mem::size_of::<ClientInterfaceV1>() as u32,
    version: abi::INTERFACE_VERSION_1,
    channel_allocate: kmcl_channel_allocate,
    channel_cleanup: kmcl_channel_cleanup,
    channel_create_gpadl_from_buffer: kmcl_channel_create_gpadl_from_buffer,
    channel_create_gpadl_from_mdl: kmcl_channel_create_gpadl_from_mdl,
    channel_delete_gpadl: kmcl_channel_delete_gpadl,
    channel_disable: kmcl_channel_disable,
    channel_enable: kmcl_channel_enable,
    channel_get_interface_instance: kmcl_channel_get_interface_instance,
    channel_get_mmio_space: kmcl_channel_get_mmio_space,
    channel_get_pointer: kmcl_channel_get_pointer,
    channel_init_set_client_context_size: kmcl_channel_init_set_client_context_size,
    channel_init_set_flags: kmcl_channel_init_set_flags,
    channel_init_set_friendly_name: kmcl_channel_init_set_friendly_name,
    channel_init_set_maximum_external_data: kmcl_channel_init_set_maximum_external_data,
    channel_init_set_maximum_packet_size: kmcl_channel_init_set_maximum_packet_size,
    channel_init_set_process_packet_callbacks: kmcl_channel_init_set_process_packet_callbacks,
    channel_init_set_state_change_callbacks: kmcl_channel_init_set_state_change_callbacks,
    channel_packet_complete: kmcl_channel_packet_complete,
    channel_packet_defer_to_passive: kmcl_channel_packet_defer_to_passive,
    channel_packet_fail: kmcl_channel_packet_fail,
    channel_packet_get_external_data: kmcl_channel_packet_get_external_data,
    channel_pause: kmcl_channel_pause,
    channel_send_synchronous_request: kmcl_channel_send_synchronous_request,
    channel_set_incoming_processing_at_passive: kmcl_channel_set_incoming_processing_at_passive,
    channel_set_interrupt_latency: kmcl_channel_set_interrupt_latency,
    channel_set_pointer: kmcl_channel_set_pointer,
    channel_set_transaction_quota: kmcl_channel_set_transaction_quota,
    channel_sizeof_packet: kmcl_channel_sizeof_packet,
    channel_start: kmcl_channel_start,
    client_channel_init_set_ring_buffer_page_count:
        kmcl_client_channel_init_set_ring_buffer_page_count,
    client_channel_init_set_target_pnp: kmcl_client_channel_init_set_target_pnp,
    packet_allocate: kmcl_packet_allocate,
    packet_free: kmcl_packet_free,
    packet_get_channel: kmcl_packet_get_channel,
    packet_get_pointer: kmcl_packet_get_pointer,
    packet_initialize: kmcl_packet_initialize,
    packet_send: kmcl_packet_send,
    packet_send_with_external_mdl: kmcl_packet_send_with_external_mdl,
    packet_send_with_external_pfns: kmcl_packet_send_with_external_pfns,
    packet_set_completion_routine: kmcl_packet_set_completion_routine,
    packet_set_pointer: kmcl_packet_set_pointer,
};

/// `KMCL_SERVER_ONLY_METHODS` as kmcl hands them out.
const SERVER_ONLY: ServerOnlyMethods = ServerOnlyMethods {
    channel_map_gpadl: kmcl_channel_map_gpadl,
    channel_restore_from_buffer: kmcl_channel_restore_from_buffer,
    channel_save_begin: kmcl_channel_save_begin,
    channel_save_continue: kmcl_channel_save_continue,
    channel_save_end: kmcl_channel_save_end,
    channel_unmap_gpadl: kmcl_channel_unmap_gpadl,
    convert_vmbus_handle_to_kernel_handle: kmcl_convert_vmbus_handle_to_kernel_handle,
    packet_restore: kmcl_packet_restore,
    server_channel_init_set_flags: kmcl_server_channel_init_set_flags,
    server_channel_init_set_mmio_megabytes: kmcl_server_channel_init_set_mmio_megabytes,
    server_channel_init_set_save_restore_packet_callbacks:
        kmcl_server_channel_init_set_save_restore_packet_callbacks,
    server_channel_init_set_target_interface_id: kmcl_server_channel_init_set_target_interface_id,
    server_channel_init_set_target_vtl: kmcl_server_channel_init_set_target_vtl,
    server_channel_init_set_vmbus_handle: kmcl_server_channel_init_set_vmbus_handle,
};

/// The interface query: fills `interface` with the client (`kind` 1) or
/// server (`kind` 2) table. `-EINVAL` for an unknown kind, a NULL buffer or
/// a size that is not the table's; `-EOPNOTSUPP` for an unknown version.
///
/// # Safety
///
/// `interface` is NULL or `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_query_interface(
    kind: u32,
    size: u32,
    version: u32,
    interface: *mut c_void,
) -> c_int {
    let (expected, name) = match kind {
        abi::CLIENT_INTERFACE => (core::mem::size_of::<ClientInterfaceV1>(), "client"),
        abi::SERVER_INTERFACE => (core::mem::size_of::<ServerInterfaceV1>(), "server"),
        _ => {
            pr_warn!("interface query: unknown interface type {}\n", kind);
            return EINVAL.to_errno();
        }
    };
    if version != abi::INTERFACE_VERSION_1 {
        pr_warn!(
            "interface query: {} interface version {} unknown (kmcl has version {})\n",
            name,
            version,
            abi::INTERFACE_VERSION_1
        );
        return EOPNOTSUPP.to_errno();
    }
    if interface.is_null() || size as usize != expected {
        pr_warn!(
            "interface query: {} interface version {} is {} bytes, caller has {}\n",
            name,
            version,
            expected,
            size
        );
        return EINVAL.to_errno();
    }
    // SAFETY: `interface` has `size` writable bytes, which is the table's
    // size; the tables hold only integers and function pointers, for which
    // any alignment of a caller's structure of this type is right.
    unsafe {
        match kind {
            abi::CLIENT_INTERFACE => interface.cast::<ClientInterfaceV1>().write(CLIENT_V1),
            _ => {
                let mut t = ServerInterfaceV1 {
                    client: CLIENT_V1,
                    server: SERVER_ONLY,
                };
                t.client.size = expected as u32;
                interface.cast::<ServerInterfaceV1>().write(t)
            }
        }
    }
    0
}
