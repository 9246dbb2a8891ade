// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_echo_vsp: a VMBus echo server (VSP) on kmcl, written in C.
 *
 * It offers the echo interface on kmcl's loopback VMBus and completes every
 * packet it receives with the packet's own bytes, so a client that sends
 * with VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION gets its data back.
 * With packets=N it also sends N packets of random sizes to the client once
 * it connects (window=W of them in flight, reusing the packet objects) and
 * checks that each comes back byte for byte.
 *
 * A template for C drivers: copy it, change the GUIDs and the packet
 * handling.  It calls kmcl through the server interface table, as a KMCL
 * driver ported from Windows would; calling the exported kmcl_ functions
 * directly is equivalent.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/jiffies.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/spinlock.h>
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

static unsigned int packets;
module_param(packets, uint, 0444);
MODULE_PARM_DESC(packets, "Packets to send to the client once it connects");

static unsigned int window = 16;
module_param(window, uint, 0444);
MODULE_PARM_DESC(window, "Packets in flight at a time");

static bool hold;
module_param(hold, bool, 0444);
MODULE_PARM_DESC(hold, "Hold the client's packets instead of echoing them (up to 64)");

static bool live_update;
module_param(live_update, bool, 0444);
MODULE_PARM_DESC(live_update,
		 "Save the packets in flight at unload, restore them at load (a live update)");

/* Largest payload sent: kmcl's default maximum packet size. */
#define MAX_PAYLOAD 4096

static struct kmcl_server_interface_v1 kmcl;
static struct kmcl_channel *channel;
static atomic_t echoed = ATOMIC_INIT(0);

/* The server's own flow of packets to the client. */
static atomic_t next_tag, good, bad, finished;
static unsigned long flow_start;
/* Completion routines run in softirq context: payloads are built here. */
static DEFINE_SPINLOCK(buf_lock);
static u8 buf[MAX_PAYLOAD];

/* Packet @tag's size, 1 to MAX_PAYLOAD (the same as in kmcl_echo_vsc.rs). */
static u32 size_of_packet(u32 tag)
{
	u32 x = (tag * 0x9e3779b9u) | 1;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return (x & (MAX_PAYLOAD - 1)) + 1;
}

static u8 pattern(u32 tag, u32 i)
{
	return (u8)(tag * 31 + i);
}

static void count_one(atomic_t *outcome)
{
	atomic_inc(outcome);
	if (atomic_inc_return(&finished) == packets)
		pr_info("%d of %u packets to the client echoed byte-exact, %d bad, in %u ms\n",
			atomic_read(&good), packets, atomic_read(&bad),
			jiffies_to_msecs(jiffies - flow_start));
}

/* Sends @pkt with the next tag, or frees it when all were sent. */
static void send_next(struct kmcl_packet *pkt)
{
	u32 tag = atomic_inc_return(&next_tag) - 1;
	unsigned long flags;
	u32 len, i;
	int rc;

	if (tag >= packets) {
		kmcl.client.packet_free(pkt);
		return;
	}
	len = size_of_packet(tag);
	kmcl.client.packet_set_pointer(pkt, (void *)(uintptr_t)tag);
	spin_lock_irqsave(&buf_lock, flags);
	for (i = 0; i < len; i++)
		buf[i] = pattern(tag, i);
	rc = kmcl.client.packet_send(pkt, buf, len, NULL,
				     VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION);
	spin_unlock_irqrestore(&buf_lock, flags);
	if (rc) {
		kmcl.client.packet_free(pkt);
		count_one(&bad);
	}
}

/* EvtVmbPacketCompletionRoutine: softirq or process context. */
static void packet_done(struct kmcl_packet *pkt, int status, const void *reply, u32 length)
{
	u32 tag = (uintptr_t)kmcl.client.packet_get_pointer(pkt);
	u32 len = size_of_packet(tag);
	const u8 *r = reply;
	bool ok = !status && length >= len;
	u32 i;

	for (i = 0; ok && i < len; i++)
		ok = r[i] == pattern(tag, i);
	count_one(ok ? &good : &bad);
	if (status)
		kmcl.client.packet_free(pkt);
	else
		send_next(pkt);
}

/* EvtChannelPostStarted: packets flow; start sending if asked to. */
static void echo_post_started(struct kmcl_channel *ch)
{
	struct kmcl_packet *pkt;
	unsigned int i;

	if (!packets)
		return;
	atomic_set(&next_tag, 0);
	atomic_set(&good, 0);
	atomic_set(&bad, 0);
	atomic_set(&finished, 0);
	flow_start = jiffies;
	for (i = 0; i < min(window, packets); i++) {
		pkt = kmcl.client.packet_allocate(ch);
		if (!pkt) {
			pr_err("no memory for packet objects\n");
			break;
		}
		kmcl.client.packet_set_completion_routine(pkt, packet_done);
		send_next(pkt);
	}
}

/* Packets held (hold=1): the handle and its payload, valid until completed. */
#define HELD_MAX 64
static DEFINE_SPINLOCK(held_lock);
static struct {
	struct kmcl_incoming *packet;
	const void *buffer;
	u32 length;
} held[HELD_MAX];
static unsigned int held_count;
static atomic_t restored = ATOMIC_INIT(0);

/* Holds @packet if hold=1 and there is room. */
static bool hold_packet(struct kmcl_incoming *packet, const void *buffer, u32 length)
{
	unsigned long flags;
	bool kept = false;

	if (!hold)
		return false;
	spin_lock_irqsave(&held_lock, flags);
	if (held_count < HELD_MAX) {
		held[held_count].packet = packet;
		held[held_count].buffer = buffer;
		held[held_count].length = length;
		held_count++;
		kept = true;
	}
	spin_unlock_irqrestore(&held_lock, flags);
	return kept;
}

/*
 * EvtVmbChannelSavePacket (live update): this driver's state for a held
 * packet is its payload, to echo once restored.
 */
static int echo_save_packet(struct kmcl_channel *ch, struct kmcl_incoming *packet,
			    void *buffer, u32 size, u32 *needed)
{
	unsigned long flags;
	unsigned int i;
	int rc = -ENOENT;

	spin_lock_irqsave(&held_lock, flags);
	for (i = 0; i < held_count; i++) {
		if (held[i].packet != packet)
			continue;
		*needed = held[i].length;
		rc = -ENOBUFS;
		if (size >= held[i].length) {
			memcpy(buffer, held[i].buffer, held[i].length);
			rc = 0;
		}
		break;
	}
	spin_unlock_irqrestore(&held_lock, flags);
	return rc;
}

/*
 * EvtVmbChannelRestorePacket (live update, after Opened): the saved packet
 * becomes an incoming packet again and is echoed from the saved payload.
 */
static int echo_restore_packet(struct kmcl_channel *ch, const void *lib, u32 lib_size,
			       const void *state, u32 state_size)
{
	struct kmcl_packet *pkt = kmcl.client.packet_allocate(ch);
	struct kmcl_incoming *packet;
	int rc;

	if (!pkt)
		return -ENOMEM;
	rc = kmcl.server.packet_restore(pkt, lib, lib_size);
	packet = kmcl_packet_restored(pkt);
	kmcl.client.packet_free(pkt);
	if (rc || !packet)
		return rc ? rc : -EINVAL;
	rc = kmcl.client.channel_packet_complete(packet, state, state_size);
	if (!rc)
		atomic_inc(&restored);
	return 0;
}

/* EvtVmbChannelProcessPacket: softirq context. */
static void echo_process_packet(struct kmcl_channel *ch, struct kmcl_incoming *packet,
				const void *buffer, u32 length, u32 flags)
{
	int rc;

	if (hold_packet(packet, buffer, length))
		return;
	rc = kmcl.client.channel_packet_complete(packet, buffer, length);

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

/* Takes a save of the previous load from kmcl's stash and restores it. */
static int restore_previous(void)
{
	u32 len = 0;
	void *buf;
	int rc;

	rc = kmcl_stash_take(&echo_instance, NULL, 0, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc != -ENOBUFS)
		return rc;
	buf = kvmalloc(len, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	rc = kmcl_stash_take(&echo_instance, buf, len, &len);
	if (!rc)
		rc = kmcl.server.channel_restore_from_buffer(channel, buf, len);
	kvfree(buf);
	if (!rc)
		pr_info("restoring the previous load's state (%u bytes)\n", len);
	return rc;
}

/* Saves the packets in flight into kmcl's stash for the next load. */
static void save_for_next_load(void)
{
	u32 size = 4096, filled, required, len = 0;
	unsigned int packets = held_count;
	void *buf = NULL, *bigger;
	int rc;

	rc = kmcl.server.channel_save_begin(channel);
	if (rc == -ENOTCONN) {
		pr_info("live update: no client connected, nothing to save\n");
		return;
	}
	while (!rc || rc == -EOVERFLOW || rc == -ENOBUFS) {
		if (!buf || rc == -ENOBUFS || len + 4096 > size) {
			size = max(size * 2, len + required + 4096);
			bigger = kvrealloc(buf, size, GFP_KERNEL);
			if (!bigger) {
				rc = -ENOMEM;
				break;
			}
			buf = bigger;
		}
		rc = kmcl.server.channel_save_continue(channel, buf + len, size - len, &filled,
						       &required);
		len += filled;
		if (!rc)
			break;
	}
	kmcl.server.channel_save_end(channel);
	if (!rc)
		rc = kmcl_stash_put(&echo_instance, buf, len);
	kvfree(buf);
	if (rc)
		pr_err("live update: save failed: %d\n", rc);
	else
		pr_info("saved %u packets in flight (%u bytes) for the next load\n", packets, len);
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
	callbacks.post_started = echo_post_started;

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
	if (!rc && live_update)
		rc = kmcl.server.server_channel_init_set_save_restore_packet_callbacks
			(channel, echo_save_packet, echo_restore_packet);
	if (!rc && live_update)
		rc = restore_previous();
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
	if (live_update)
		save_for_next_load();
	/*
	 * Disables (rescinds the offer, waiting for teardown) and frees; after
	 * a save the connection is parked for the next load instead.
	 */
	kmcl.client.channel_cleanup(channel);
	pr_info("echo interface withdrawn; %d packets echoed, %d restored\n",
		atomic_read(&echoed), atomic_read(&restored));
}

module_init(echo_vsp_init);
module_exit(echo_vsp_exit);

MODULE_IMPORT_NS("KMCL");
MODULE_DESCRIPTION("kmcl sample: VMBus echo server (VSP) in C");
MODULE_LICENSE("GPL");
