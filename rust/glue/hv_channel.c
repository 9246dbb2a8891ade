// SPDX-License-Identifier: GPL-2.0
/*
 * A struct vmbus_channel made up around two rings kmcl owns, for running
 * hv_vmbus's own ring code on them: kmcl.ko's wire-compatibility KUnit
 * tests (hv_interop.c) and kmcl_bench.ko's side-by-side measurement of
 * kmcl's ring and hv_vmbus's (bench/hv_channel.c includes this file).
 *
 * Each ring is mapped the way hv_ringbuffer_init() maps one: the control
 * page once, then the data pages twice, so that hv_vmbus's readers and
 * writers can run straight past the end of the data area.  The channel
 * uses a dedicated interrupt and no monitor page, so vmbus_setevent() only
 * counts the signal (sig_events) and calls the hypercall stub, which
 * without Hyper-V is __hv_hyperfail() (it returns an error).
 */
#include <linux/hyperv.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/reciprocal_div.h>

#include "kmcl_glue.h"

/* Maps the ring at @ring (vmalloc, @pages pages with the control page) as
 * hv_ringbuffer_init() does.
 */
static struct hv_ring_buffer *kmcl_hvi_map(void *ring, u32 pages)
{
	struct page **wrap;
	void *va;
	u32 i;

	wrap = kcalloc(pages * 2 - 1, sizeof(*wrap), GFP_KERNEL);
	if (!wrap)
		return NULL;
	wrap[0] = vmalloc_to_page(ring);
	for (i = 0; i < 2 * (pages - 1); i++)
		wrap[i + 1] = vmalloc_to_page(ring + PAGE_SIZE * (1 + i % (pages - 1)));
	va = vmap(wrap, pages * 2 - 1, VM_MAP, PAGE_KERNEL);
	kfree(wrap);
	return va;
}

static int kmcl_hvi_ring_init(struct hv_ring_buffer_info *rbi, void *ring,
			      u32 pages, u32 max_pkt)
{
	rbi->ring_buffer = kmcl_hvi_map(ring, pages);
	if (!rbi->ring_buffer)
		return -ENOMEM;
	rbi->ring_size = pages << PAGE_SHIFT;
	rbi->ring_size_div10_reciprocal = reciprocal_value(rbi->ring_size / 10);
	rbi->ring_datasize = rbi->ring_size - sizeof(struct hv_ring_buffer);
	rbi->priv_read_index = READ_ONCE(rbi->ring_buffer->read_index);
	spin_lock_init(&rbi->ring_lock);
	mutex_init(&rbi->ring_buffer_mutex);
	if (max_pkt) {
		rbi->pkt_buffer = kzalloc(max_pkt, GFP_KERNEL);
		if (!rbi->pkt_buffer)
			return -ENOMEM;
		rbi->pkt_buffer_size = max_pkt;
	}
	return 0;
}

void kmcl_hvi_channel_free(struct vmbus_channel *ch)
{
	if (!ch)
		return;
	if (ch->inbound.ring_buffer)
		vunmap(ch->inbound.ring_buffer);
	if (ch->outbound.ring_buffer)
		vunmap(ch->outbound.ring_buffer);
	kfree(ch->inbound.pkt_buffer);
	kfree(ch);
}

struct vmbus_channel *kmcl_hvi_channel_new(void *inbound, void *outbound,
					   u32 pages, u32 max_pkt)
{
	struct vmbus_channel *ch;

	if (pages < 2)
		return NULL;
	ch = kzalloc_obj(*ch, GFP_KERNEL);
	if (!ch)
		return NULL;
	ch->is_dedicated_interrupt = true;
	ch->offermsg.monitor_allocated = 0;
	if (kmcl_hvi_ring_init(&ch->inbound, inbound, pages, max_pkt) ||
	    kmcl_hvi_ring_init(&ch->outbound, outbound, pages, 0)) {
		kmcl_hvi_channel_free(ch);
		return NULL;
	}
	return ch;
}

int kmcl_hvi_send(struct vmbus_channel *ch, const void *buf, u32 len,
		  u64 requestid, u16 type, u32 flags)
{
	return vmbus_sendpacket(ch, (void *)buf, len, requestid, type, flags);
}

/*
 * A channel callback's read loop: every packet in the inbound ring, each
 * copied out by hv_pkt_iter_first() into the channel's packet buffer, the
 * read index published when the ring is empty (foreach_vmbus_pkt).
 * Returns the packets; adds their payload bytes to @bytes.
 */
u32 kmcl_hvi_read_all(struct vmbus_channel *ch, u64 *bytes)
{
	struct vmpacket_descriptor *desc;
	u32 n = 0;

	foreach_vmbus_pkt(desc, ch) {
		*bytes += hv_pkt_datalen(desc);
		n++;
	}
	return n;
}
