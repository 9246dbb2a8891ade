// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl's wire-compatibility tests against Linux's own VMBus ring code
 * (built with KUnit only; the tests are rust/transport/hyperv/interop.rs
 * and transport_tests.rs).
 *
 * The tests run hv_vmbus's own exported functions on kmcl's rings through
 * a made-up struct vmbus_channel (hv_channel.c; kmcl's outgoing ring is
 * the channel's inbound ring, and the other way round), and read its
 * signal counters to compare hv_vmbus's signalling decisions with kmcl's.
 */
#include <linux/dma-mapping.h>
#include <linux/hyperv.h>
#include <linux/swiotlb.h>
#include <linux/slab.h>

#include "kmcl_glue.h"

int kmcl_hvi_send_mpb(struct vmbus_channel *ch, void *desc, u32 desc_size,
		      const void *buf, u32 len, u64 requestid)
{
	return vmbus_sendpacket_mpb_desc(ch, desc, desc_size, (void *)buf, len,
					 requestid);
}

/*
 * Reads every packet in the inbound ring with hv_pkt_iter_first(),
 * __hv_pkt_iter_next() and hv_pkt_iter_close(), appending each one whole
 * (descriptor included, len8 * 8 bytes) to @out.  Returns the number of
 * packets, or -ENOSPC when @out is too small (the rest stays unread).
 */
int kmcl_hvi_recv_all(struct vmbus_channel *ch, u8 *out, u32 cap, u32 *used)
{
	struct vmpacket_descriptor *desc;
	int n = 0;

	*used = 0;
	for (desc = hv_pkt_iter_first(ch); desc;
	     desc = __hv_pkt_iter_next(ch, desc)) {
		u32 len = desc->len8 << 3;

		if (len > cap - *used) {
			n = -ENOSPC;
			break;
		}
		memcpy(out + *used, desc, len);
		*used += len;
		n++;
	}
	hv_pkt_iter_close(ch);
	return n;
}

/*
 * Reads the transfer-page packet at @pkt (@len bytes, as hv_pkt_iter gave
 * it) the way netvsc does, through struct vmtransfer_page_packet_header:
 * its set id, its range count and up to @cap of its ranges.
 */
int kmcl_hvi_xfer_parse(const void *pkt, u32 len, u16 *set_id, u32 *count,
			struct vmtransfer_page_range *ranges, u32 cap)
{
	const struct vmtransfer_page_packet_header *h = pkt;
	u32 i;

	if (len < sizeof(*h) || h->d.type != VM_PKT_DATA_USING_XFER_PAGES)
		return -EINVAL;
	if (h->range_cnt > (len - sizeof(*h)) / sizeof(h->ranges[0]))
		return -EINVAL;
	*set_id = h->xfer_pageset_id;
	*count = h->range_cnt;
	for (i = 0; i < h->range_cnt && i < cap; i++)
		ranges[i] = h->ranges[i];
	return 0;
}

/*
 * Builds, in @out, the transfer-page packet Hyper-V's network VSP sends
 * (descriptor, header and @count ranges of set @set_id, no payload, a
 * completion requested under @tid) with struct
 * vmtransfer_page_packet_header.  Returns its length, or -ENOSPC.
 */
int kmcl_hvi_xfer_build(void *out, u32 cap, u16 set_id,
			const struct vmtransfer_page_range *ranges, u32 count,
			u64 tid)
{
	struct vmtransfer_page_packet_header *h = out;
	size_t len = struct_size(h, ranges, count);

	if (len > cap || len % 8)
		return -ENOSPC;
	memset(h, 0, len);
	h->d.type = VM_PKT_DATA_USING_XFER_PAGES;
	h->d.offset8 = len >> 3;
	h->d.len8 = len >> 3;
	h->d.flags = VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED;
	h->d.trans_id = tid;
	h->xfer_pageset_id = set_id;
	h->range_cnt = count;
	memcpy(h->ranges, ranges, count * sizeof(*ranges));
	return len;
}

/* hv_vmbus's signal counters of the made-up channel. */
void kmcl_hvi_counters(struct vmbus_channel *ch, u64 *sig_events,
		       u64 *intr_out_empty, u64 *intr_in_full)
{
	*sig_events = ch->sig_events;
	*intr_out_empty = ch->intr_out_empty;
	*intr_in_full = ch->intr_in_full;
}

static void kmcl_hvi_device_release(struct device *d)
{
	kfree(container_of(d, struct hv_device, device));
}

/*
 * A made-up VMBus device over a made-up channel, for the transport tests
 * (rust/hv/transport_tests.rs): what hv_vmbus hands a driver's probe.
 * Only the fields kmcl reads are set; it is never registered.  Its struct
 * device is initialised for the DMA API as vmbus_device_register() does
 * (64-bit masks, DMA parameters) with the 4-KiB min_align_mask kmcl's
 * probe sets, so that external data is mapped as on a real device.
 */
struct hv_device *kmcl_hvi_device_new(struct vmbus_channel *ch,
				      const guid_t *type,
				      const guid_t *instance)
{
	struct hv_device *dev = kzalloc_obj(*dev, GFP_KERNEL);

	if (!dev)
		return NULL;
	guid_copy(&dev->dev_type, type);
	guid_copy(&dev->dev_instance, instance);
	dev->channel = ch;
	device_initialize(&dev->device);
	dev->device.release = kmcl_hvi_device_release;
	if (dev_set_name(&dev->device, "kmcl-hvi-%pUl", instance))
		goto fail;
	dev->device.dma_parms = &dev->dma_parms;
	dev->device.dma_mask = &dev->dma_mask;
	if (dma_set_mask_and_coherent(&dev->device, DMA_BIT_MASK(64)))
		goto fail;
	dma_set_min_align_mask(&dev->device, HV_HYP_PAGE_SIZE - 1);
	return dev;
fail:
	put_device(&dev->device);
	return NULL;
}

void kmcl_hvi_device_free(struct hv_device *dev)
{
	put_device(&dev->device);
}

/* Whether every DMA mapping of @dev goes through a bounce buffer. */
bool kmcl_hvi_bounces(struct hv_device *dev)
{
	return is_swiotlb_force_bounce(&dev->device);
}

/*
 * Makes @sc sub-channel @index of @primary, as hv_vmbus's offer handling
 * links a sub-channel to its primary.
 */
void kmcl_hvi_make_subchannel(struct vmbus_channel *sc,
			      struct vmbus_channel *primary, u16 index)
{
	sc->primary_channel = primary;
	sc->offermsg.offer.sub_channel_index = index;
}

/*
 * What vmbus_onoffer_rescind() does to an open sub-channel before it waits
 * for the driver: no callback any more, and the channel marked rescinded.
 */
void kmcl_hvi_rescind(struct vmbus_channel *ch)
{
	WRITE_ONCE(ch->onchannel_callback, NULL);
	WRITE_ONCE(ch->rescind, true);
}

/* Whether @ch signals its host directly (hv_vmbus's low_latency). */
bool kmcl_hvi_low_latency(struct vmbus_channel *ch)
{
	return READ_ONCE(ch->low_latency);
}

/*
 * What vmbus_open() does for kmcl once the host accepted the channel: the
 * channel callback is set, and the rings are the channel's.
 */
void kmcl_hvi_attach(struct vmbus_channel *ch, const void *link,
		     struct kmcl_hv_rings *rings)
{
	ch->channel_callback_context = (void *)link;
	WRITE_ONCE(ch->onchannel_callback, kmcl_hv_on_channel);
	kmcl_hv_rings(ch, rings);
}

/* What vmbus_close() does for kmcl: no callback any more. */
void kmcl_hvi_detach(struct vmbus_channel *ch)
{
	WRITE_ONCE(ch->onchannel_callback, NULL);
}

/* The host's interrupt: what vmbus_on_event() does in the tasklet. */
void kmcl_hvi_interrupt(struct vmbus_channel *ch)
{
	void (*cb)(void *context);

	local_bh_disable();
	cb = READ_ONCE(ch->onchannel_callback);
	if (cb)
		cb(ch->channel_callback_context);
	local_bh_enable();
}
