// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_net_vsp: the server (VSP) of kmcl's network-style sample pair; the
 * client is kmcl_net_vsc.  See kmcl_net.h for the protocol.
 *
 * It offers the interface on the loopback VMBus and processes its primary
 * channel's packets at passive level (mapping GPADLs needs process
 * context).  When the client's NET_MSG_INIT arrives it maps the client's
 * receive and send buffers and makes the sub-channels the client asked
 * for; once they are connected it sends the client's number of frames,
 * each written into a slot of the receive buffer and delivered as a
 * transfer-page packet naming one or two ranges of it, round-robin over
 * the channels, 32 in flight per channel (a slot is free again when the
 * client completes its packet).  Every frame from the client is checked
 * byte for byte, from its page buffers (an MDL chain) or its send-buffer
 * section.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/highmem.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/wait.h>

#include <kmcl/kmcl.h>

#include "kmcl_net.h"

struct net_chan {
	struct kmcl_channel *ch;
	spinlock_t lock;		/* guards busy */
	unsigned long busy;		/* receive-buffer slots in flight */
	atomic_t received;		/* frames from the client */
};

static struct kmcl_channel *primary;
static struct net_chan chans[NET_MAX_CHANNELS];
static unsigned int nch;
static u32 frames;
static u32 recv_gpadl, send_gpadl;
static struct kmcl_mdl *recv_mdl, *send_mdl;
static struct task_struct *sender;
static DECLARE_WAIT_QUEUE_HEAD(wake);
static atomic_t subs_up, good, bad, counted, by_pages, by_section, sent_ok, sent_failed;
static bool closing;

/* Checks (@check) or writes (@!check) @len bytes of frame @seq, its bytes
 * @i.. on, at @off of the memory @mdl describes.  Returns whether they
 * matched (always true when writing).
 */
static bool mdl_bytes(const struct kmcl_mdl *mdl, u32 off, u32 len, u32 seq,
		      u32 i, bool check)
{
	while (len) {
		u32 pos = mdl->offset + off;
		u32 in_page = offset_in_page(pos);
		u32 n = min_t(u32, len, PAGE_SIZE - in_page);
		u8 *p = kmap_local_page(mdl->pages[pos >> PAGE_SHIFT]);
		bool same = true;
		u32 k;

		for (k = 0; k < n; k++) {
			if (!check)
				p[in_page + k] = net_byte(seq, i + k);
			else if (p[in_page + k] != net_byte(seq, i + k))
				same = false;
		}
		kunmap_local(p);
		if (!same)
			return false;
		off += n;
		i += n;
		len -= n;
	}
	return true;
}

/* A frame from the client: its bytes in an MDL chain (page buffers). */
static bool check_pages(struct kmcl_incoming *packet, u32 seq, u32 len)
{
	struct kmcl_mdl *m;
	u32 at = 0;

	if (kmcl_channel_packet_get_external_data(packet, 0, &m))
		return false;
	for (; m; m = m->next) {
		if (at + m->length > len || !mdl_bytes(m, 0, m->length, seq, at, true))
			return false;
		at += m->length;
	}
	return at == len;
}

/*
 * Called once per frame after its counts: only the call that counts the
 * last frame prints (atomic_inc_return() orders every frame's counts
 * before it), once, however the channels' callbacks interleave.
 */
static void all_received(void)
{
	unsigned int c;

	if (atomic_inc_return(&counted) != frames)
		return;
	pr_info("%d of %u frames from the client byte-exact (%d by page buffers, %d in send-buffer sections), %d bad\n",
		atomic_read(&good), frames, atomic_read(&by_pages),
		atomic_read(&by_section), atomic_read(&bad));
	for (c = 0; c < nch; c++)
		pr_info("channel %u: %d frames from the client\n", c,
			atomic_read(&chans[c].received));
}

static void make_subchannels(u32 want);

static void vsp_packet(struct kmcl_channel *ch, struct kmcl_incoming *packet,
		       const void *buffer, u32 length, u32 flags)
{
	const struct net_frame *f = buffer;
	struct net_chan *c = kmcl_channel_get_pointer(ch);
	bool ok = false;
	int rc = 0;

	if (length >= sizeof(struct net_init) &&
	    ((const struct net_init *)buffer)->type == NET_MSG_INIT && ch == primary) {
		const struct net_init *init = buffer;
		u32 want;

		/* Process context: the primary processes at passive. */
		frames = init->frames;
		recv_gpadl = init->recv_gpadl;
		send_gpadl = init->send_gpadl;
		rc = kmcl_channel_map_gpadl(ch, 0, recv_gpadl, &recv_mdl);
		if (!rc)
			rc = kmcl_channel_map_gpadl(ch, VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY,
						    send_gpadl, &send_mdl);
		want = min_t(u32, init->channels, NET_MAX_CHANNELS);
		if (!rc && recv_mdl->length < NET_RECV_LEN(want))
			rc = -EINVAL;
		kmcl_channel_packet_complete(packet, &rc, sizeof(rc));
		if (!rc)
			make_subchannels(init->channels);
		return;
	}
	if (length < sizeof(*f) || !c) {
		kmcl_channel_packet_fail(packet);
		return;
	}
	if (f->type == NET_MSG_FRAME && (flags & VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA)) {
		ok = check_pages(packet, f->seq, f->len);
		atomic_inc(&by_pages);
	} else if (f->type == NET_MSG_SECTION && send_mdl && f->len <= NET_SECTION_SIZE &&
		   f->section < NET_SEND_LEN(nch) / NET_SECTION_SIZE) {
		ok = mdl_bytes(send_mdl, f->section * NET_SECTION_SIZE, f->len, f->seq, 0, true);
		atomic_inc(&by_section);
	}
	kmcl_channel_packet_complete(packet, NULL, 0);
	atomic_inc(&c->received);
	atomic_inc(ok ? &good : &bad);
	all_received();
}

/* A frame's transfer-page packet was completed: its slot is free. */
static void frame_done(struct kmcl_packet *pkt, int status, const void *buf, u32 len)
{
	uintptr_t word = (uintptr_t)kmcl_packet_get_pointer(pkt);
	struct net_chan *c = &chans[word >> 8];
	unsigned long flags;

	spin_lock_irqsave(&c->lock, flags);
	__clear_bit(word & 0xff, &c->busy);
	spin_unlock_irqrestore(&c->lock, flags);
	atomic_inc(status ? &sent_failed : &sent_ok);
	if (atomic_read(&sent_ok) + atomic_read(&sent_failed) == frames)
		pr_info("%d of %u frames to the client completed, %d failed\n",
			atomic_read(&sent_ok), frames, atomic_read(&sent_failed));
	kmcl_packet_free(pkt);
	wake_up(&wake);
}

/* A free slot of @c, taken; -1 if none. */
static int take_slot(struct net_chan *c)
{
	unsigned long flags;
	int slot;

	spin_lock_irqsave(&c->lock, flags);
	slot = find_first_zero_bit(&c->busy, NET_SLOTS);
	if (slot < NET_SLOTS)
		__set_bit(slot, &c->busy);
	else
		slot = -1;
	spin_unlock_irqrestore(&c->lock, flags);
	return slot;
}

static int send_frame(u32 seq)
{
	unsigned int ci = seq % nch;
	struct net_chan *c = &chans[ci];
	struct kmcl_transfer_range r[2];
	struct net_frame f = { .type = NET_MSG_FRAME, .seq = seq };
	struct kmcl_packet *pkt;
	u32 off, n = 1;
	int slot, rc;

	wait_event(wake, (slot = take_slot(c)) >= 0 || kthread_should_stop() ||
		   READ_ONCE(closing));
	if (slot < 0)
		return -ECANCELED;
	f.len = net_frame_len(seq, NET_SLOT_SIZE);
	off = (ci * NET_SLOTS + slot) * NET_SLOT_SIZE;
	mdl_bytes(recv_mdl, off, f.len, seq, 0, false);
	r[0].byte_offset = off;
	r[0].byte_count = min_t(u32, f.len, NET_SPLIT);
	if (f.len > NET_SPLIT) {
		r[1].byte_offset = off + NET_SPLIT;
		r[1].byte_count = f.len - NET_SPLIT;
		n = 2;
	}
	pkt = kmcl_packet_allocate(c->ch);
	rc = pkt ? 0 : -ENOMEM;
	if (!rc) {
		kmcl_packet_set_pointer(pkt, (void *)(uintptr_t)(ci << 8 | slot));
		kmcl_packet_set_completion_routine(pkt, frame_done);
		rc = kmcl_packet_send_with_transfer_pages(pkt, NET_SET_ID, r, n, &f, sizeof(f),
							  NET_WAIT);
		if (rc)
			kmcl_packet_free(pkt);
	}
	if (rc) {
		spin_lock_irq(&c->lock);
		__clear_bit(slot, &c->busy);
		spin_unlock_irq(&c->lock);
	}
	return rc;
}

static int vsp_sender(void *unused)
{
	unsigned long start;
	u32 seq;
	int rc;

	wait_event_timeout(wake, atomic_read(&subs_up) >= nch - 1 || kthread_should_stop(),
			   30 * HZ);
	if (atomic_read(&subs_up) < nch - 1) {
		pr_err("%d of %u sub-channels connected; no frames sent\n",
		       atomic_read(&subs_up), nch - 1);
		goto idle;
	}
	pr_info("sending %u frames to the client over %u channels\n", frames, nch);
	start = jiffies;
	for (seq = 0; seq < frames && !kthread_should_stop(); seq++) {
		rc = send_frame(seq);
		if (rc) {
			pr_err("frame %u not sent (%d)\n", seq, rc);
			break;
		}
	}
	wait_event_timeout(wake, atomic_read(&sent_ok) + atomic_read(&sent_failed) >= seq ||
			   kthread_should_stop(), 600 * HZ);
	pr_info("sent in %u ms\n", jiffies_to_msecs(jiffies - start));
idle:
	while (!kthread_should_stop())
		schedule_timeout_interruptible(HZ);
	return 0;
}

static void sub_started(struct kmcl_channel *ch)
{
	atomic_inc(&subs_up);
	wake_up(&wake);
}

static const struct kmcl_state_callbacks sub_callbacks = {
	.version = KMCL_STATE_CALLBACKS_VERSION,
	.size = sizeof(struct kmcl_state_callbacks),
	.started = sub_started,
};

static struct kmcl_channel *new_channel(struct kmcl_channel *of, struct net_chan *c)
{
	struct kmcl_channel *ch;

	if (kmcl_channel_allocate(THIS_MODULE, true, &ch))
		return NULL;
	if ((of && (kmcl_channel_init_set_primary_channel(ch, of) ||
		    kmcl_channel_init_set_state_change_callbacks(ch, &sub_callbacks) ||
		    kmcl_channel_init_set_friendly_name(ch, "kmcl_net_vsp_sub"))) ||
	    kmcl_channel_init_set_process_packet_callbacks(ch, vsp_packet, NULL) ||
	    kmcl_channel_init_set_maximum_external_data(ch, NET_MAX_FRAME,
							NET_FRAME_PAGES)) {
		kmcl_channel_cleanup(ch);
		return NULL;
	}
	spin_lock_init(&c->lock);
	c->busy = 0;
	atomic_set(&c->received, 0);
	c->ch = ch;
	kmcl_channel_set_pointer(ch, c);
	return ch;
}

/* The client asked for @want channels: the sub-channels, then the frames. */
static void make_subchannels(u32 want)
{
	unsigned int i;

	want = clamp_t(u32, want, 1, NET_MAX_CHANNELS);
	atomic_set(&subs_up, 0);
	/* Set before the first sub-channel can carry a frame. */
	nch = want;
	for (i = 1; i < want; i++) {
		struct kmcl_channel *ch = new_channel(primary, &chans[i]);

		if (!ch || kmcl_channel_enable(ch) || kmcl_channel_start(ch)) {
			pr_err("sub-channel %u not offered\n", i);
			if (ch)
				kmcl_channel_cleanup(ch);
			chans[i].ch = NULL;
			nch = i;
			break;
		}
	}
	WRITE_ONCE(closing, false);
	sender = kthread_run(vsp_sender, NULL, "kmcl_net_vsp");
	if (IS_ERR(sender))
		sender = NULL;
}

/* The client left: stop sending, unmap its buffers, end the sub-channels. */
static void vsp_closed(struct kmcl_channel *ch)
{
	unsigned int i;

	WRITE_ONCE(closing, true);
	wake_up(&wake);
	if (sender) {
		kthread_stop(sender);
		sender = NULL;
	}
	for (i = 1; i < nch; i++) {
		kmcl_channel_cleanup(chans[i].ch);
		chans[i].ch = NULL;
	}
	nch = 1;
	if (send_mdl)
		kmcl_channel_unmap_gpadl(ch, send_gpadl);
	if (recv_mdl)
		kmcl_channel_unmap_gpadl(ch, recv_gpadl);
	send_mdl = NULL;
	recv_mdl = NULL;
	pr_info("client disconnected\n");
}

static const struct kmcl_state_callbacks primary_callbacks = {
	.version = KMCL_STATE_CALLBACKS_VERSION,
	.size = sizeof(struct kmcl_state_callbacks),
	.closed = vsp_closed,
};

static int __init vsp_init(void)
{
	int rc;

	nch = 1;
	primary = new_channel(NULL, &chans[0]);
	if (!primary)
		return -ENOMEM;
	rc = kmcl_server_channel_init_set_target_interface_id(primary, &net_type, &net_instance);
	if (!rc)
		rc = kmcl_channel_init_set_friendly_name(primary, "kmcl_net_vsp");
	if (!rc)
		rc = kmcl_channel_init_set_state_change_callbacks(primary, &primary_callbacks);
	if (!rc)
		rc = kmcl_channel_set_incoming_processing_at_passive(primary, true);
	if (!rc)
		rc = kmcl_channel_enable(primary);
	if (!rc)
		rc = kmcl_channel_start(primary);
	if (rc) {
		kmcl_channel_cleanup(primary);
		return rc;
	}
	pr_info("network-style interface offered\n");
	return 0;
}

static void __exit vsp_exit(void)
{
	/* Disabling waits for the client to leave; Closed ends the rest. */
	kmcl_channel_disable(primary);
	kmcl_channel_cleanup(primary);
	pr_info("network-style interface withdrawn\n");
}

module_init(vsp_init);
module_exit(vsp_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmcl sample: a network-style VSP (transfer pages, sub-channels)");
MODULE_IMPORT_NS("KMCL");
