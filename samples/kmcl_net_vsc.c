// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_net_vsc: the client (VSC) of kmcl's network-style sample pair; the
 * server is kmcl_net_vsp.  See kmcl_net.h for the protocol.
 *
 * Once connected (PostStarted) it shares a receive buffer and a send
 * buffer as GPADLs, registers the receive buffer as transfer-page set
 * NET_SET_ID and asks the server for channels-1 sub-channels
 * (NET_MSG_INIT).  Its sub-channel callback opens each offered
 * sub-channel with its own channel, on its own target CPU.  Frames from
 * the server arrive as transfer-page packets on any of the channels and
 * are checked byte for byte in the receive buffer; the client sends its
 * own frames round-robin over the channels, each as page buffers
 * (multi-range external data) from per-frame memory, or, when small,
 * copied into its section of the send buffer.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/completion.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include <kmcl/kmcl.h>

#include "kmcl_net.h"

static unsigned int channels = 4;
module_param(channels, uint, 0444);
MODULE_PARM_DESC(channels, "Channels to use: the primary and channels-1 sub-channels (1 to 8)");

static unsigned int frames = 100000;
module_param(frames, uint, 0444);
MODULE_PARM_DESC(frames, "Frames to send each way");

struct net_chan {
	struct kmcl_channel *ch;
	spinlock_t lock;		/* guards busy */
	unsigned long busy;		/* frame slots in flight */
	atomic_t received;		/* frames from the server */
};

static struct kmcl_channel *primary;
static struct net_chan chans[NET_MAX_CHANNELS];
static unsigned int nch;
static u8 *recv_buf, *send_buf, *frame_mem;
static u32 recv_gpadl, send_gpadl;
static bool shared;
static DECLARE_COMPLETION(ready);
static DECLARE_WAIT_QUEUE_HEAD(wake);
static struct task_struct *sender;
static atomic_t subs_up, good, bad, counted, sent_ok, sent_failed;

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
	pr_info("%d of %u frames from the server byte-exact over %u channels, %d bad\n",
		atomic_read(&good), frames, nch, atomic_read(&bad));
	for (c = 0; c < nch; c++)
		pr_info("channel %u: %d frames from the server\n", c,
			atomic_read(&chans[c].received));
}

/* A frame from the server, in ranges of the receive buffer. */
static void vsc_packet(struct kmcl_channel *ch, struct kmcl_incoming *packet,
		       const void *buffer, u32 length, u32 flags)
{
	const struct kmcl_transfer_range *r;
	struct net_chan *c = kmcl_channel_get_pointer(ch);
	const struct net_frame *f = buffer;
	bool ok = false;
	u32 n, i, k, at = 0;
	u16 set;

	if (length >= sizeof(*f) && f->type == NET_MSG_FRAME &&
	    !kmcl_channel_packet_get_transfer_pages(packet, &set, &r, &n) && set == NET_SET_ID) {
		ok = true;
		for (i = 0; i < n && ok; i++) {
			/* kmcl checked the range lies in the set. */
			const u8 *p = recv_buf + r[i].byte_offset;

			for (k = 0; k < r[i].byte_count; k++)
				ok &= p[k] == net_byte(f->seq, at + k);
			at += r[i].byte_count;
		}
		ok &= at == f->len;
	}
	kmcl_channel_packet_complete(packet, NULL, 0);
	if (c)
		atomic_inc(&c->received);
	atomic_inc(ok ? &good : &bad);
	all_received();
}

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
		pr_info("%d of %u frames to the server completed, %d failed\n",
			atomic_read(&sent_ok), frames, atomic_read(&sent_failed));
	kmcl_packet_free(pkt);
	wake_up(&wake);
}

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

/* Frame @seq: small ones through a send-buffer section, the rest as page
 * buffers of the frame's own memory (from an offset, so that the ranges
 * do not start on page boundaries).
 */
static int send_frame(u32 seq)
{
	unsigned int ci = seq % nch;
	struct net_chan *c = &chans[ci];
	struct kmcl_page_buffer pb[NET_FRAME_PAGES];
	struct net_frame f = { .seq = seq, .len = net_frame_len(seq, NET_MAX_FRAME) };
	struct kmcl_packet *pkt;
	u32 index, i, n = 0;
	int slot, rc;
	u8 *p;

	wait_event(wake, (slot = take_slot(c)) >= 0 || kthread_should_stop());
	if (slot < 0)
		return -ECANCELED;
	index = ci * NET_SLOTS + slot;
	pkt = kmcl_packet_allocate(c->ch);
	if (!pkt) {
		rc = -ENOMEM;
		goto out;
	}
	kmcl_packet_set_pointer(pkt, (void *)(uintptr_t)(ci << 8 | slot));
	kmcl_packet_set_completion_routine(pkt, frame_done);
	if (f.len <= NET_SECTION_SIZE) {
		f.type = NET_MSG_SECTION;
		f.section = index;
		p = send_buf + index * NET_SECTION_SIZE;
		for (i = 0; i < f.len; i++)
			p[i] = net_byte(seq, i);
		rc = kmcl_packet_send(pkt, &f, sizeof(f), NULL,
				      VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION);
	} else {
		u32 done = 0;

		f.type = NET_MSG_FRAME;
		p = frame_mem + (size_t)index * NET_FRAME_PAGES * PAGE_SIZE + (seq * 64) % 512;
		for (i = 0; i < f.len; i++)
			p[i] = net_byte(seq, i);
		while (done < f.len) {
			u8 *at = p + done;
			u32 len = min_t(u32, f.len - done, PAGE_SIZE - offset_in_page(at));

			pb[n].pfn = vmalloc_to_pfn(at);
			pb[n].offset = offset_in_page(at);
			pb[n].len = len;
			done += len;
			n++;
		}
		rc = kmcl_packet_send_with_page_buffers(pkt, &f, sizeof(f), pb, n, NET_WAIT);
	}
	if (rc)
		kmcl_packet_free(pkt);
out:
	if (rc) {
		spin_lock_irq(&c->lock);
		__clear_bit(slot, &c->busy);
		spin_unlock_irq(&c->lock);
	}
	return rc;
}

static int vsc_sender(void *unused)
{
	unsigned long start = jiffies;
	u32 seq;
	int rc;

	pr_info("sending %u frames to the server over %u channels\n", frames, nch);
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
	while (!kthread_should_stop())
		schedule_timeout_interruptible(HZ);
	return 0;
}

static void sub_started(struct kmcl_channel *ch)
{
	if (atomic_inc_return(&subs_up) == nch - 1)
		complete(&ready);
}

static const struct kmcl_state_callbacks sub_callbacks = {
	.version = KMCL_STATE_CALLBACKS_VERSION,
	.size = sizeof(struct kmcl_state_callbacks),
	.started = sub_started,
};

/* Sub-channel @index's target processor: the online CPUs in turn. */
static u32 target_cpu(u16 index)
{
	return cpumask_nth(index % num_online_cpus(), cpu_online_mask);
}

/* The server offered sub-channel @index: open it, on its own CPU. */
static void vsc_subchannel(struct kmcl_channel *of, u16 index)
{
	struct net_chan *c;
	struct kmcl_channel *ch;

	if (index >= nch || chans[index].ch)
		return;
	c = &chans[index];
	if (kmcl_channel_allocate(THIS_MODULE, false, &ch))
		return;
	spin_lock_init(&c->lock);
	c->busy = 0;
	atomic_set(&c->received, 0);
	kmcl_channel_set_pointer(ch, c);
	/* Before Enable: the sender may use it as soon as it is started. */
	c->ch = ch;
	if (kmcl_channel_init_set_primary_channel(ch, of) ||
	    kmcl_channel_init_set_friendly_name(ch, "kmcl_net_vsc_sub") ||
	    kmcl_channel_init_set_state_change_callbacks(ch, &sub_callbacks) ||
	    kmcl_channel_init_set_process_packet_callbacks(ch, vsc_packet, NULL) ||
	    kmcl_channel_init_set_target_processor(ch, target_cpu(index)) ||
	    kmcl_channel_enable(ch)) {
		pr_err("sub-channel %u not opened\n", index);
		c->ch = NULL;
		kmcl_channel_cleanup(ch);
	}
}

/* Connected: share the buffers and ask for the sub-channels. */
static void vsc_post_started(struct kmcl_channel *ch)
{
	struct net_init init = {
		.type = NET_MSG_INIT,
		.channels = nch,
		.frames = frames,
		.set_id = NET_SET_ID,
	};
	u32 timeout = 10000, reply_len;
	/* The reply: an int, padded to 8 bytes as VMBus pads payloads. */
	int rc, status[2] = { -EIO };

	if (shared)
		return;
	rc = kmcl_channel_create_gpadl_from_buffer(ch, 0, recv_buf, NET_RECV_LEN(nch),
						   &recv_gpadl);
	if (!rc)
		rc = kmcl_channel_create_gpadl_from_buffer(ch, VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY,
							   send_buf, NET_SEND_LEN(nch),
							   &send_gpadl);
	if (!rc)
		rc = kmcl_channel_register_transfer_page_set(ch, recv_gpadl, NET_SET_ID);
	init.recv_gpadl = recv_gpadl;
	init.send_gpadl = send_gpadl;
	reply_len = sizeof(status);
	if (!rc)
		rc = kmcl_channel_send_synchronous_request(ch, &init, sizeof(init), NULL, 0,
							   status, &reply_len, &timeout);
	if (rc || status[0]) {
		pr_err("the server did not take the buffers (%d, %d)\n", rc, status[0]);
		return;
	}
	shared = true;
	if (nch == 1)
		complete(&ready);
}

/* The connection ended: the buffers are the client's again. */
static void vsc_closed(struct kmcl_channel *ch)
{
	if (!shared)
		return;
	kmcl_channel_unregister_transfer_page_set(ch, NET_SET_ID);
	kmcl_channel_delete_gpadl(ch, send_gpadl);
	kmcl_channel_delete_gpadl(ch, recv_gpadl);
	shared = false;
}

static const struct kmcl_state_callbacks primary_callbacks = {
	.version = KMCL_STATE_CALLBACKS_VERSION,
	.size = sizeof(struct kmcl_state_callbacks),
	.post_started = vsc_post_started,
	.closed = vsc_closed,
};

static void vsc_free(void)
{
	unsigned int i;

	if (sender)
		kthread_stop(sender);
	for (i = 1; i < NET_MAX_CHANNELS; i++) {
		if (chans[i].ch)
			kmcl_channel_cleanup(chans[i].ch);
		chans[i].ch = NULL;
	}
	if (primary)
		kmcl_channel_cleanup(primary);
	vfree(frame_mem);
	vfree(send_buf);
	vfree(recv_buf);
}

static int __init vsc_init(void)
{
	int rc;

	nch = clamp_t(unsigned int, channels, 1, NET_MAX_CHANNELS);
	recv_buf = vzalloc(NET_RECV_LEN(nch));
	send_buf = vzalloc(NET_SEND_LEN(nch));
	frame_mem = vzalloc((size_t)nch * NET_SLOTS * NET_FRAME_PAGES * PAGE_SIZE);
	if (!recv_buf || !send_buf || !frame_mem) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = kmcl_channel_allocate(THIS_MODULE, false, &primary);
	if (rc)
		goto fail;
	spin_lock_init(&chans[0].lock);
	chans[0].ch = primary;
	kmcl_channel_set_pointer(primary, &chans[0]);
	rc = kmcl_client_channel_init_set_target_pnp(primary, &net_type, &net_instance, NULL);
	if (!rc)
		rc = kmcl_channel_init_set_friendly_name(primary, "kmcl_net_vsc");
	if (!rc)
		rc = kmcl_channel_init_set_state_change_callbacks(primary, &primary_callbacks);
	if (!rc)
		rc = kmcl_channel_init_set_process_packet_callbacks(primary, vsc_packet, NULL);
	if (!rc)
		rc = kmcl_channel_init_set_subchannel_callback(primary, vsc_subchannel);
	if (!rc)
		rc = kmcl_channel_enable(primary);
	if (rc)
		goto fail;
	if (!wait_for_completion_timeout(&ready, 60 * HZ)) {
		pr_err("%d of %u sub-channels opened in 60 s\n", atomic_read(&subs_up), nch - 1);
		rc = -ETIMEDOUT;
		goto fail;
	}
	sender = kthread_run(vsc_sender, NULL, "kmcl_net_vsc");
	if (IS_ERR(sender)) {
		rc = PTR_ERR(sender);
		sender = NULL;
		goto fail;
	}
	return 0;
fail:
	vsc_free();
	return rc;
}

static void __exit vsc_exit(void)
{
	vsc_free();
	pr_info("unloaded\n");
}

module_init(vsc_init);
module_exit(vsc_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmcl sample: a network-style VSC (transfer pages, page buffers, sub-channels)");
MODULE_IMPORT_NS("KMCL");
