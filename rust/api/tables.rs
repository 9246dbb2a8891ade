// SPDX-License-Identifier: GPL-2.0

//! The interface tables (KMCL `KMCL_CLIENT_INTERFACE_V1`,
//! `KMCL_SERVER_INTERFACE_V1`, and kmcl's version 2 with V1 as a prefix).

use core::ffi::{
    c_int,
    c_void, //
};

use kernel::prelude::*;

use super::{
    abi,
    abi::{
        ClientInterfaceV1,
        ClientInterfaceV2,
        ServerInterfaceV1,
        ServerInterfaceV2,
        ServerOnlyMethods,
        V2Methods, //
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

/// What version 2 adds to the tables.
const V2: V2Methods = V2Methods {
    channel_packet_get_client_context: kmcl_channel_packet_get_client_context,
    channel_init_set_target_processor: kmcl_channel_init_set_target_processor,
    channel_init_set_primary_channel: kmcl_channel_init_set_primary_channel,
    client_channel_init_set_transport: kmcl_client_channel_init_set_transport,
    channel_init_set_subchannel_callback: kmcl_channel_init_set_subchannel_callback,
    channel_get_subchannel_index: kmcl_channel_get_subchannel_index,
    channel_register_transfer_page_set: kmcl_channel_register_transfer_page_set,
    channel_unregister_transfer_page_set: kmcl_channel_unregister_transfer_page_set,
    channel_packet_get_transfer_pages: kmcl_channel_packet_get_transfer_pages,
    packet_send_with_page_buffers: kmcl_packet_send_with_page_buffers,
    packet_send_with_transfer_pages: kmcl_packet_send_with_transfer_pages,
    stash_put: kmcl_stash_put,
    stash_take: kmcl_stash_take,
    loopback_vmbus_create: kmcl_loopback_vmbus_create,
    loopback_vmbus_destroy: kmcl_loopback_vmbus_destroy,
    channel_get_mmio_physical: kmcl_channel_get_mmio_physical,
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
    use core::mem::size_of;
    let name = match kind {
        abi::CLIENT_INTERFACE => "client",
        abi::SERVER_INTERFACE => "server",
        _ => {
            pr_warn!("interface query: unknown interface type {}\n", kind);
            return EINVAL.to_errno();
        }
    };
    let expected = match (kind, version) {
        (abi::CLIENT_INTERFACE, abi::INTERFACE_VERSION_1) => size_of::<ClientInterfaceV1>(),
        (abi::CLIENT_INTERFACE, abi::INTERFACE_VERSION_2) => size_of::<ClientInterfaceV2>(),
        (_, abi::INTERFACE_VERSION_1) => size_of::<ServerInterfaceV1>(),
        (_, abi::INTERFACE_VERSION_2) => size_of::<ServerInterfaceV2>(),
        _ => {
            pr_warn!(
                "interface query: {} interface version {} unknown (kmcl has versions 1 and 2)\n",
                name,
                version
            );
            return EOPNOTSUPP.to_errno();
        }
    };
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
    let mut client = CLIENT_V1;
    client.size = expected as u32;
    client.version = version;
    let server = ServerInterfaceV1 {
        client,
        server: SERVER_ONLY,
    };
    // SAFETY: `interface` has `size` writable bytes, which is the table's
    // size; the tables hold only integers and function pointers, for which
    // any alignment of a caller's structure of this type is right.
    unsafe {
        match (kind, version) {
            (abi::CLIENT_INTERFACE, abi::INTERFACE_VERSION_1) => {
                interface.cast::<ClientInterfaceV1>().write(client)
            }
            (abi::CLIENT_INTERFACE, _) => interface
                .cast::<ClientInterfaceV2>()
                .write(ClientInterfaceV2 { v1: client, v2: V2 }),
            (_, abi::INTERFACE_VERSION_1) => interface.cast::<ServerInterfaceV1>().write(server),
            _ => interface
                .cast::<ServerInterfaceV2>()
                .write(ServerInterfaceV2 {
                    v1: server,
                    v2: V2,
                    packet_restored: kmcl_packet_restored,
                }),
        }
    }
    0
}
