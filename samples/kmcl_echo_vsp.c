// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_echo_vsp: a VMBus echo server (VSP) on kmcl, written in C.
 *
 * It offers the echo interface on kmcl's loopback VMBus and completes every
 * packet it receives with the packet's own bytes, so a client that sends
 * with VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION gets its data back.
 *
 * A template for C drivers: copy it, change the GUIDs and the packet
 * handling.  It calls kmcl through the server interface table, as a KMCL
 * driver ported from Windows would; calling the exported kmcl_ functions
 * directly is equivalent.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/uuid.h>

#include <kmcl/kmcl.h>

/* The echo interface (the same GUIDs are in kmcl_echo_vsc.rs). */
static const guid_t echo_type =
	GUID_INIT(0x6b6d636c, 0x6563, 0x686f, 0x8a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01);
static const guid_t echo_instance =
	GUID_INIT(0x6b6d636c, 0x6563, 0x686f, 0x8a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02);

static bool leak;
module_param(leak, bool, 0444);
MODULE_PARM_DESC(leak, "Testing only: leave the channel allocated at unload (kmcl frees it)");

static struct kmcl_server_interface_v1 kmcl;
static struct kmcl_channel *channel;
static atomic_t echoed = ATOMIC_INIT(0);

/* EvtVmbChannelProcessPacket: softirq context. */
static void echo_process_packet(struct kmcl_channel *ch, struct kmcl_incoming *packet,
				const void *buffer, u32 length, u32 flags)
{
	int rc = kmcl.client.channel_packet_complete(packet, buffer, length);

	if (rc)
		pr_warn_ratelimited("completion not sent: %d\n", rc);
	else
		atomic_inc(&echoed);
}

/* EvtChannelOpened: process context. */
static int echo_opened(struct kmcl_channel *ch)
{
	pr_info("client connected\n");
	return 0;
}

/* EvtChannelClosed: process context. */
static void echo_closed(struct kmcl_channel *ch)
{
	pr_info("client disconnected; %d packets echoed\n", atomic_read(&echoed));
}

static int __init echo_vsp_init(void)
{
	struct kmcl_state_callbacks callbacks;
	int rc;

	rc = kmcl_query_interface(KMCL_SERVER_INTERFACE, sizeof(kmcl), KMCL_INTERFACE_VERSION_1,
				  &kmcl);
	if (rc)
		return rc;

	rc = kmcl.client.channel_allocate(THIS_MODULE, true, &channel);
	if (rc)
		return rc;

	kmcl_state_callbacks_init(&callbacks);
	callbacks.opened = echo_opened;
	callbacks.closed = echo_closed;

	rc = kmcl.server.server_channel_init_set_target_interface_id(channel, &echo_type,
								     &echo_instance);
	if (!rc)
		rc = kmcl.client.channel_init_set_state_change_callbacks(channel, &callbacks);
	if (!rc)
		rc = kmcl.client.channel_init_set_process_packet_callbacks(channel,
									   echo_process_packet,
									   NULL);
	if (!rc)
		rc = kmcl.client.channel_init_set_friendly_name(channel, KBUILD_MODNAME);
	if (!rc)
		rc = kmcl.client.channel_enable(channel);
	/* A server channel starts paused; Start lets packets flow. */
	if (!rc)
		rc = kmcl.client.channel_start(channel);
	if (rc) {
		pr_err("cannot offer the echo channel: %d\n", rc);
		kmcl.client.channel_cleanup(channel);
		return rc;
	}
	pr_info("echo interface offered\n");
	return 0;
}

static void __exit echo_vsp_exit(void)
{
	if (leak) {
		pr_info("leaving the channel to kmcl (leak=1)\n");
		return;
	}
	/* Disables (rescinds the offer, waiting for teardown) and frees. */
	kmcl.client.channel_cleanup(channel);
	pr_info("echo interface withdrawn; %d packets echoed\n", atomic_read(&echoed));
}

module_init(echo_vsp_init);
module_exit(echo_vsp_exit);

MODULE_IMPORT_NS("KMCL");
MODULE_DESCRIPTION("kmcl sample: VMBus echo server (VSP) in C");
MODULE_LICENSE("GPL");
