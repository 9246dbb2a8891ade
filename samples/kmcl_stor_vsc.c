// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_stor_vsc: the client (VSC) of kmcl's storage-style sample pair; the
 * server is kmcl_stor_vsp.  See kmcl_stor.h for the protocol.
 *
 * Once connected it asks for channels-1 sub-channels and opens each one
 * offered (its sub-channel callback), on its own target CPU.  It then
 * writes the whole disk in requests of 1 to 32 sectors and reads it back
 * with @reads requests at random places, round-robin over the channels,
 * 16 in flight per channel.  Each request's data lies in one to four
 * pieces of scattered pages, described by an MDL chain; every completion's
 * status is checked, and every byte read.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/completion.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include <kmcl/kmcl.h>

#include "kmcl_stor.h"

static unsigned int channels = 4;
module_param(channels, uint, 0444);
MODULE_PARM_DESC(channels, "Channels to use: the primary and channels-1 sub-channels (1 to 8)");

static unsigned int reads = 20000;
module_param(reads, uint, 0444);
MODULE_PARM_DESC(reads, "Read requests after the disk was written");

/* A request in flight: its memory and the MDL chain describing it. */
struct slot {
	struct stor_request req;
	u8 *mem;
	u8 *piece[STOR_PIECES];
	struct kmcl_mdl mdl[STOR_PIECES];
	struct page *pages[STOR_PIECES][STOR_PIECE_PAGES];
};

struct stor_chan {
	struct kmcl_channel *ch;
	spinlock_t lock;		/* guards busy */
	unsigned long busy;
	struct slot slots[STOR_SLOTS];
	atomic_t done;
};

static struct stor_chan *chans;
static unsigned int nch;
static u8 *memory;
static u32 writes;
static DECLARE_COMPLETION(ready);
static DECLARE_WAIT_QUEUE_HEAD(wake);
static struct task_struct *sender;
static atomic_t subs_up, completed, reads_good, reads_bad, failed;

/* The writes that cover the disk once, in order. */
static u32 count_writes(void)
{
	u32 lba = 0, n = 0;

	while (lba < STOR_DISK_SECTORS) {
		lba += min(stor_sectors(n), STOR_DISK_SECTORS - lba);
		n++;
	}
	return n;
}

static void request_done(struct kmcl_packet *pkt, int status, const void *buf, u32 len)
{
	uintptr_t word = (uintptr_t)kmcl_packet_get_pointer(pkt);
	struct stor_chan *c = &chans[word >> 8];
	struct slot *s = &c->slots[word & 0xff];
	const struct stor_status *st = buf;
	u32 bytes = s->req.sectors * STOR_SECTOR;
	unsigned long flags;

	if (status || len < sizeof(*st) || st->status || st->bytes != bytes) {
		atomic_inc(&failed);
	} else if (s->req.type == STOR_MSG_READ) {
		bool same = true;
		u32 j, k, at = s->req.lba * STOR_SECTOR;

		for (j = 0; j < STOR_PIECES && s->mdl[j].length; j++) {
			for (k = 0; k < s->mdl[j].length; k++, at++)
				same &= s->piece[j][k] ==
					stor_byte(at / STOR_SECTOR, at % STOR_SECTOR);
			if (!s->mdl[j].next)
				break;
		}
		atomic_inc(same ? &reads_good : &reads_bad);
	}
	atomic_inc(&c->done);
	kmcl_packet_free(pkt);
	spin_lock_irqsave(&c->lock, flags);
	__clear_bit(word & 0xff, &c->busy);
	spin_unlock_irqrestore(&c->lock, flags);
	if (atomic_inc_return(&completed) == writes + reads) {
		unsigned int i;

		pr_info("%u writes and %u reads over %u channels: %d reads byte-exact, %d bad, %d failed\n",
			writes, reads, nch, atomic_read(&reads_good), atomic_read(&reads_bad),
			atomic_read(&failed));
		for (i = 0; i < nch; i++)
			pr_info("channel %u: %d requests\n", i, atomic_read(&chans[i].done));
	}
	wake_up(&wake);
}

static int take_slot(struct stor_chan *c)
{
	unsigned long flags;
	int slot;

	spin_lock_irqsave(&c->lock, flags);
	slot = find_first_zero_bit(&c->busy, STOR_SLOTS);
	if (slot < STOR_SLOTS)
		__set_bit(slot, &c->busy);
	else
		slot = -1;
	spin_unlock_irqrestore(&c->lock, flags);
	return slot;
}

/* Lays request @tag's @bytes out in one to four scattered pieces of the
 * slot's memory, each an MDL of the chain.
 */
static void scatter(struct slot *s, u32 tag, u32 bytes)
{
	u32 n = 1 + tag % STOR_PIECES, each = DIV_ROUND_UP(bytes, n), j, at = 0;

	memset(s->mdl, 0, sizeof(s->mdl));
	for (j = 0; j < n && at < bytes; j++) {
		u32 len = min(each, bytes - at);
		u8 *p = s->mem + 3 * j * PAGE_SIZE + (tag * 64 + j * 100) % 1024;
		u32 first = offset_in_page(p), pages = DIV_ROUND_UP(first + len, PAGE_SIZE), k;

		for (k = 0; k < pages; k++)
			s->pages[j][k] = vmalloc_to_page(p - first + k * PAGE_SIZE);
		s->piece[j] = p;
		s->mdl[j] = (struct kmcl_mdl) {
			.pages = s->pages[j],
			.nr_pages = pages,
			.offset = first,
			.length = len,
		};
		if (j)
			s->mdl[j - 1].next = &s->mdl[j];
		at += len;
	}
}

static int send_request(u32 tag, u32 type, u32 lba, u32 sectors)
{
	unsigned int ci = tag % nch;
	struct stor_chan *c = &chans[ci];
	struct kmcl_packet *pkt;
	struct slot *s;
	int slot, rc;
	u32 j, k, at;

	wait_event(wake, (slot = take_slot(c)) >= 0 || kthread_should_stop());
	if (slot < 0)
		return -ECANCELED;
	s = &c->slots[slot];
	s->req = (struct stor_request) {
		.type = type, .tag = tag, .lba = lba, .sectors = sectors,
	};
	scatter(s, tag, sectors * STOR_SECTOR);
	at = lba * STOR_SECTOR;
	for (j = 0; j < STOR_PIECES && s->mdl[j].length; j++)
		for (k = 0; k < s->mdl[j].length; k++, at++)
			s->piece[j][k] = type == STOR_MSG_WRITE ?
				stor_byte(at / STOR_SECTOR, at % STOR_SECTOR) : 0;
	pkt = kmcl_packet_allocate(c->ch);
	rc = pkt ? 0 : -ENOMEM;
	if (!rc) {
		kmcl_packet_set_pointer(pkt, (void *)(uintptr_t)(ci << 8 | slot));
		kmcl_packet_set_completion_routine(pkt, request_done);
		rc = kmcl_packet_send_with_external_mdl(pkt, &s->req, sizeof(s->req), &s->mdl[0],
							0, 0, STOR_WAIT);
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

/* Wait until every request sent so far completed. */
static void drain(u32 sent)
{
	wait_event_timeout(wake, atomic_read(&completed) >= sent || kthread_should_stop(),
			   600 * HZ);
}

static int vsc_sender(void *unused)
{
	u32 tag = 0, lba = 0, i;
	int rc = 0;

	pr_info("writing the disk in %u requests, then %u reads, over %u channels\n",
		writes, reads, nch);
	while (lba < STOR_DISK_SECTORS && !rc && !kthread_should_stop()) {
		u32 n = min(stor_sectors(tag), STOR_DISK_SECTORS - lba);

		rc = send_request(tag++, STOR_MSG_WRITE, lba, n);
		lba += n;
	}
	/* Reads see only completed writes. */
	drain(tag);
	for (i = 0; i < reads && !rc && !kthread_should_stop(); i++) {
		u32 n = stor_sectors(tag);

		rc = send_request(tag, STOR_MSG_READ,
				  (tag * 2654435761u) % (STOR_DISK_SECTORS - n + 1), n);
		tag++;
	}
	if (rc)
		pr_err("request %u not sent (%d)\n", tag, rc);
	drain(tag);
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
	struct kmcl_channel *ch;

	if (index >= nch || chans[index].ch)
		return;
	if (kmcl_channel_allocate(THIS_MODULE, false, &ch))
		return;
	chans[index].ch = ch;
	if (kmcl_channel_init_set_primary_channel(ch, of) ||
	    kmcl_channel_init_set_friendly_name(ch, "kmcl_stor_vsc_sub") ||
	    kmcl_channel_init_set_state_change_callbacks(ch, &sub_callbacks) ||
	    kmcl_channel_init_set_target_processor(ch, target_cpu(index)) ||
	    kmcl_channel_enable(ch)) {
		pr_err("sub-channel %u not opened\n", index);
		chans[index].ch = NULL;
		kmcl_channel_cleanup(ch);
	}
}

static void vsc_post_started(struct kmcl_channel *ch)
{
	struct stor_init init = {
		.type = STOR_MSG_INIT, .channels = nch, .requests = writes + reads,
	};
	struct stor_status st = { .status = -EIO };
	u32 timeout = 10000, len = sizeof(st);
	int rc;

	rc = kmcl_channel_send_synchronous_request(ch, &init, sizeof(init), NULL, 0, &st, &len,
						   &timeout);
	if (rc || st.status) {
		pr_err("the server refused the sub-channels (%d, %d)\n", rc, st.status);
		return;
	}
	if (nch == 1)
		complete(&ready);
}

static const struct kmcl_state_callbacks primary_callbacks = {
	.version = KMCL_STATE_CALLBACKS_VERSION,
	.size = sizeof(struct kmcl_state_callbacks),
	.post_started = vsc_post_started,
};

static void vsc_free(void)
{
	unsigned int i;

	if (sender)
		kthread_stop(sender);
	for (i = nch; chans && i-- > 0;)
		if (chans[i].ch)
			kmcl_channel_cleanup(chans[i].ch);
	vfree(chans);
	vfree(memory);
}

static int __init vsc_init(void)
{
	unsigned int i, j;
	int rc;

	nch = clamp_t(unsigned int, channels, 1, STOR_MAX_CHANNELS);
	writes = count_writes();
	chans = vzalloc(sizeof(*chans) * nch);
	memory = vzalloc((size_t)nch * STOR_SLOTS * STOR_SLOT_PAGES * PAGE_SIZE);
	if (!chans || !memory) {
		rc = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < nch; i++) {
		spin_lock_init(&chans[i].lock);
		for (j = 0; j < STOR_SLOTS; j++)
			chans[i].slots[j].mem = memory +
				((size_t)i * STOR_SLOTS + j) * STOR_SLOT_PAGES * PAGE_SIZE;
	}
	rc = kmcl_channel_allocate(THIS_MODULE, false, &chans[0].ch);
	if (rc)
		goto fail;
	rc = kmcl_client_channel_init_set_target_pnp(chans[0].ch, &stor_type, &stor_instance, NULL);
	if (!rc)
		rc = kmcl_channel_init_set_friendly_name(chans[0].ch, "kmcl_stor_vsc");
	if (!rc)
		rc = kmcl_channel_init_set_state_change_callbacks(chans[0].ch, &primary_callbacks);
	if (!rc)
		rc = kmcl_channel_init_set_subchannel_callback(chans[0].ch, vsc_subchannel);
	if (!rc)
		rc = kmcl_channel_enable(chans[0].ch);
	if (rc)
		goto fail;
	if (!wait_for_completion_timeout(&ready, 60 * HZ)) {
		pr_err("%d of %u sub-channels opened in 60 s\n", atomic_read(&subs_up), nch - 1);
		rc = -ETIMEDOUT;
		goto fail;
	}
	sender = kthread_run(vsc_sender, NULL, "kmcl_stor_vsc");
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
MODULE_DESCRIPTION("kmcl sample: a storage-style VSC (MDL chains, sub-channels)");
MODULE_IMPORT_NS("KMCL");
