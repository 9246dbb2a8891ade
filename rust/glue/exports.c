// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue: exports kmcl's API (defined in Rust, rust/ffi/mod.rs) to
 * other modules, and tells kmcl when a module that may own channels goes.
 */
#include <linux/export.h>
#include <linux/module.h>
#include <linux/notifier.h>
#include <linux/stddef.h>

#include <kmcl/kmcl.h>

#include "kmcl_glue.h"

/* The release, as in dkms.conf (PACKAGE_VERSION; a host test compares). */
MODULE_VERSION("0.1.0");

EXPORT_SYMBOL_NS_GPL(kmcl_query_interface, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_allocate, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_cleanup, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_create_gpadl_from_buffer, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_create_gpadl_from_mdl, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_delete_gpadl, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_disable, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_enable, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_get_interface_instance, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_get_mmio_space, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_get_mmio_physical, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_get_pointer, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_client_context_size, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_primary_channel, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_subchannel_callback, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_get_subchannel_index, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_flags, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_friendly_name, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_maximum_external_data, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_maximum_packet_size, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_process_packet_callbacks, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_state_change_callbacks, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_packet_complete, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_packet_defer_to_passive, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_packet_fail, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_packet_get_client_context, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_packet_get_transfer_pages, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_register_transfer_page_set, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_unregister_transfer_page_set, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_send_with_page_buffers, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_send_with_transfer_pages, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_packet_get_external_data, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_pause, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_send_synchronous_request, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_set_incoming_processing_at_passive, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_set_interrupt_latency, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_set_pointer, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_set_transaction_quota, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_sizeof_packet, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_start, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_client_channel_init_set_ring_buffer_page_count, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_client_channel_init_set_target_pnp, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_client_channel_init_set_transport, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_init_set_target_processor, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_loopback_vmbus_create, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_loopback_vmbus_destroy, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_restored, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_stash_put, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_stash_take, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_allocate, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_free, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_get_channel, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_get_pointer, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_initialize, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_send, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_post, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_send_with_external_mdl, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_send_with_external_pfns, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_set_completion_routine, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_set_pointer, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_map_gpadl, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_restore_from_buffer, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_save_begin, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_save_continue, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_save_end, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_channel_unmap_gpadl, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_convert_vmbus_handle_to_kernel_handle, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_packet_restore, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_server_channel_init_set_flags, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_server_channel_init_set_mmio_megabytes, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_server_channel_init_set_save_restore_packet_callbacks, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_server_channel_init_set_target_interface_id, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_server_channel_init_set_target_vtl, "KMCL");
EXPORT_SYMBOL_NS_GPL(kmcl_server_channel_init_set_vmbus_handle, "KMCL");

static int kmcl_module_notify(struct notifier_block *nb, unsigned long action,
			      void *data)
{
	struct module *mod = data;

	if (action == MODULE_STATE_GOING && mod != THIS_MODULE)
		kmcl_ffi_module_going(mod, mod->name);
	return NOTIFY_OK;
}

static struct notifier_block kmcl_module_nb = {
	.notifier_call = kmcl_module_notify,
};

int kmcl_glue_watch_modules(void)
{
	return register_module_notifier(&kmcl_module_nb);
}

void kmcl_glue_unwatch_modules(void)
{
	unregister_module_notifier(&kmcl_module_nb);
}

/*
 * The C layouts of kmcl's ABI structures, for the KUnit test that compares
 * them with the Rust ones (include/kmcl/rust/abi.rs): sizes first, then
 * the offset of every field in declaration order.
 */
#define KMCL_OFF(type, field) offsetof(struct type, field)

static const u32 kmcl_c_layout[] = {
	sizeof(struct kmcl_state_callbacks),
	sizeof(struct kmcl_mdl),
	sizeof(struct kmcl_client_interface_v1),
	sizeof(struct kmcl_server_only_methods),
	sizeof(struct kmcl_server_interface_v1),
	sizeof(struct kmcl_transfer_range),
	sizeof(struct kmcl_page_buffer),
	sizeof(struct kmcl_client_interface_v2),
	sizeof(struct kmcl_server_interface_v2),
	KMCL_OFF(kmcl_state_callbacks, version),
	KMCL_OFF(kmcl_state_callbacks, size),
	KMCL_OFF(kmcl_state_callbacks, opened),
	KMCL_OFF(kmcl_state_callbacks, closed),
	KMCL_OFF(kmcl_state_callbacks, suspend),
	KMCL_OFF(kmcl_state_callbacks, started),
	KMCL_OFF(kmcl_state_callbacks, post_started),
	KMCL_OFF(kmcl_mdl, pages),
	KMCL_OFF(kmcl_mdl, nr_pages),
	KMCL_OFF(kmcl_mdl, offset),
	KMCL_OFF(kmcl_mdl, length),
	KMCL_OFF(kmcl_mdl, next),
	KMCL_OFF(kmcl_client_interface_v1, version),
	KMCL_OFF(kmcl_client_interface_v1, channel_allocate),
	KMCL_OFF(kmcl_client_interface_v1, channel_init_set_state_change_callbacks),
	KMCL_OFF(kmcl_client_interface_v1, channel_start),
	KMCL_OFF(kmcl_client_interface_v1, packet_set_pointer),
	KMCL_OFF(kmcl_server_only_methods, server_channel_init_set_vmbus_handle),
	KMCL_OFF(kmcl_server_interface_v1, server),
	KMCL_OFF(kmcl_transfer_range, byte_count),
	KMCL_OFF(kmcl_transfer_range, byte_offset),
	KMCL_OFF(kmcl_page_buffer, len),
	KMCL_OFF(kmcl_page_buffer, offset),
	KMCL_OFF(kmcl_page_buffer, pfn),
	KMCL_OFF(kmcl_client_interface_v2, v2),
	KMCL_OFF(kmcl_client_interface_v2, v2.loopback_vmbus_destroy),
	KMCL_OFF(kmcl_client_interface_v2, v2.channel_get_mmio_physical),
	KMCL_OFF(kmcl_server_interface_v2, v2),
	KMCL_OFF(kmcl_server_interface_v2, v2.channel_register_transfer_page_set),
	KMCL_OFF(kmcl_server_interface_v2, packet_restored),
};

const u32 *kmcl_glue_c_layout(u32 *count)
{
	*count = ARRAY_SIZE(kmcl_c_layout);
	return kmcl_c_layout;
}
