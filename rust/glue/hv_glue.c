// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue for hv_vmbus: kmcl's drivers on the vmbus bus, and opening,
 * closing and signalling the channels of the devices bound to them.
 *
 * The Rust side (rust/hv/mod.rs) owns all decisions; these functions only
 * reach what hyperv.h offers as structures, macros and inline functions.
 */
#include <linux/dma-mapping.h>
#include <linux/hyperv.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include <asm/mshyperv.h>

#include <kmcl/kmcl.h>

#include "kmcl_glue.h"

/* True when hv_vmbus found a VMBus host and registered its bus. */
bool kmcl_hv_vmbus_present(void)
{
	return hv_vmbus_exists();
}

/* One hv_driver per interface type kmcl's clients target. */
struct kmcl_hv_driver {
	struct hv_driver drv;
	struct hv_vmbus_device_id ids[2];
	/* The Rust HostBus the devices are handed to. */
	const void *bus;
	char name[48];
};

static struct kmcl_hv_driver *kmcl_hv_driver_of(struct hv_device *dev)
{
	return container_of(drv_to_hv_drv(dev->device.driver),
			    struct kmcl_hv_driver, drv);
}

static int kmcl_hv_probe(struct hv_device *dev,
			 const struct hv_vmbus_device_id *id)
{
	/*
	 * External data is named by 4-KiB frame: a bounce buffer must keep
	 * each byte's place in its frame (as storvsc asks).
	 */
	dma_set_min_align_mask(&dev->device, HV_HYP_PAGE_SIZE - 1);
	return kmcl_host_probe(kmcl_hv_driver_of(dev)->bus, dev, dev->channel,
			       &dev->dev_type, &dev->dev_instance);
}

static void kmcl_hv_remove(struct hv_device *dev)
{
	kmcl_host_remove(kmcl_hv_driver_of(dev)->bus, dev);
}

/*
 * Hibernation (hv_vmbus calls these in its noirq phase): the client closes
 * the device's channel and, after resume, opens it afresh.
 */
static int kmcl_hv_suspend(struct hv_device *dev)
{
	kmcl_host_suspend(kmcl_hv_driver_of(dev)->bus, dev);
	return 0;
}

static int kmcl_hv_resume(struct hv_device *dev)
{
	kmcl_host_resume(kmcl_hv_driver_of(dev)->bus, dev);
	return 0;
}

/* Reboot and kexec: the host stops using the guest's memory. */
static void kmcl_hv_shutdown(struct hv_device *dev)
{
	kmcl_host_remove(kmcl_hv_driver_of(dev)->bus, dev);
}

/*
 * Registers a driver for the devices of @type, handing them to @bus;
 * returns it, or an ERR_PTR (-ENODEV without a VMBus host).
 */
void *kmcl_hv_watch(const void *bus, const guid_t *type)
{
	struct kmcl_hv_driver *kd;
	int ret;

	kd = kzalloc_obj(*kd, GFP_KERNEL);
	if (!kd)
		return ERR_PTR(-ENOMEM);
	snprintf(kd->name, sizeof(kd->name), "kmcl-%pUl", type);
	guid_copy(&kd->ids[0].guid, type);
	kd->bus = bus;
	kd->drv.name = kd->name;
	kd->drv.id_table = kd->ids;
	kd->drv.probe = kmcl_hv_probe;
	kd->drv.remove = kmcl_hv_remove;
	kd->drv.suspend = kmcl_hv_suspend;
	kd->drv.resume = kmcl_hv_resume;
	kd->drv.shutdown = kmcl_hv_shutdown;
	ret = __vmbus_driver_register(&kd->drv, THIS_MODULE, KBUILD_MODNAME);
	if (ret) {
		kfree(kd);
		return ERR_PTR(ret);
	}
	return kd;
}

/* Unregisters a driver from kmcl_hv_watch(); its devices are removed. */
void kmcl_hv_unwatch(void *driver)
{
	struct kmcl_hv_driver *kd = driver;

	vmbus_driver_unregister(&kd->drv);
	kfree(kd);
}

/* The channel callback of the channels kmcl opens. */
void kmcl_hv_on_channel(void *link)
{
	kmcl_host_interrupt(link);
}

/* The ring mappings hv_vmbus made for @ch. */
void kmcl_hv_rings(struct vmbus_channel *ch, struct kmcl_hv_rings *rings)
{
	rings->out = ch->outbound.ring_buffer;
	rings->out_len = ch->outbound.ring_datasize;
	rings->in = ch->inbound.ring_buffer;
	rings->in_len = ch->inbound.ring_datasize;
}

/*
 * hv_vmbus offers a new sub-channel @sc of an open primary channel kmcl
 * owns (its sc-create callback, run from hv_vmbus's sub-channel
 * workqueue: process context).  The Rust side records it as an offer for
 * the primary's client.
 */
static void kmcl_hv_on_subchannel(struct vmbus_channel *sc)
{
	struct hv_device *dev = sc->primary_channel->device_obj;

	kmcl_host_subchannel(kmcl_hv_driver_of(dev)->bus, dev, sc,
			     sc->offermsg.offer.sub_channel_index);
}

/*
 * Opens channel @ch (a device's primary channel or one of its
 * sub-channels) with rings of @out_pages and @in_pages data pages (plus
 * hv_vmbus's control page each).  The callback runs in the channel's
 * tasklet, on the CPU hv_vmbus chose for the channel (HV_CALL_DIRECT:
 * hv_vmbus does not touch the rings' interrupt masks, kmcl's reader
 * manages them) and only kicks kmcl's receive work.  A primary channel
 * also takes the host's sub-channel offers from now until it closes.
 */
int kmcl_hv_open(struct vmbus_channel *ch, const void *link, u32 out_pages,
		 u32 in_pages, u32 max_pkt, struct kmcl_hv_rings *rings)
{
	int ret;

	/* vmbus_open() takes each ring's size in bytes as a u32. */
	if (!out_pages || !in_pages || out_pages >= (U32_MAX >> PAGE_SHIFT) ||
	    in_pages >= (U32_MAX >> PAGE_SHIFT))
		return -EINVAL;
	ch->max_pkt_size = max_pkt;
	set_channel_read_mode(ch, HV_CALL_DIRECT);
	ret = vmbus_open(ch, (out_pages + 1) << PAGE_SHIFT,
			 (in_pages + 1) << PAGE_SHIFT, NULL, 0,
			 kmcl_hv_on_channel, (void *)link);
	if (ret)
		return ret;
	if (!ch->primary_channel)
		vmbus_set_sc_create_callback(ch, kmcl_hv_on_subchannel);
	kmcl_hv_rings(ch, rings);
	return 0;
}

/*
 * Closes @ch.  hv_vmbus closes a sub-channel only with its primary
 * (vmbus_close() refuses a sub-channel alone): for a sub-channel this does
 * nothing, and its callback stays kmcl's until the primary closes.
 */
void kmcl_hv_close(struct vmbus_channel *ch)
{
	if (!ch->primary_channel)
		vmbus_close(ch);
}

/*
 * Makes @ch signal the host directly (@on) or through its monitor page,
 * if the host gave it one (vmbus_setevent() reads the flag each time).
 */
void kmcl_hv_set_low_latency(struct vmbus_channel *ch, bool on)
{
	WRITE_ONCE(ch->low_latency, on);
}

/* Signals the host through @ch; whether the host rescinded @ch. */
bool kmcl_hv_signal(struct vmbus_channel *ch)
{
	vmbus_setevent(ch);
	return READ_ONCE(ch->rescind);
}

/*
 * Whether external data on @ch must reach the host through the DMA API: in
 * an isolated (SNP/TDX/VBS) guest the host cannot read private memory,
 * unless @ch is a confidential VMBus channel whose host may
 * (co_external_memory).
 */
bool kmcl_hv_bounces_external(struct vmbus_channel *ch)
{
	return hv_is_isolation_supported() && !ch->co_external_memory;
}

/*
 * Maps @len bytes at @offset of @page for the host of @dev, both ways
 * (in an isolated guest: a swiotlb bounce buffer the host can reach,
 * filled now); its bus address in @addr.  Any context.
 */
int kmcl_hv_dma_map(struct hv_device *dev, struct page *page, u32 offset,
		    u32 len, u64 *addr)
{
	dma_addr_t a = dma_map_page(&dev->device, page, offset, len,
				    DMA_BIDIRECTIONAL);

	if (dma_mapping_error(&dev->device, a))
		return -ENOMEM;
	*addr = a;
	return 0;
}

/* Ends a kmcl_hv_dma_map() mapping: the host's writes reach the page. */
void kmcl_hv_dma_unmap(struct hv_device *dev, u64 addr, u32 len)
{
	dma_unmap_page(&dev->device, addr, len, DMA_BIDIRECTIONAL);
}

struct kmcl_hv_gpadl {
	struct vmbus_gpadl gpadl;
	void *va;
};

/*
 * Establishes a GPADL over @mdl, whole pages, on the open channel @ch
 * (vmbus_establish_gpadl() needs them virtually contiguous: they are
 * mapped here); returns it with its handle in @handle, or an ERR_PTR.
 */
void *kmcl_hv_gpadl_create(struct vmbus_channel *ch,
			   const struct kmcl_mdl *mdl, u32 *handle)
{
	struct kmcl_hv_gpadl *g;
	int ret;

	/* Whole pages only: hv_vmbus's GPADL carries no offset. */
	if (!mdl->nr_pages || mdl->nr_pages > (U32_MAX >> PAGE_SHIFT) ||
	    mdl->offset || mdl->length != mdl->nr_pages << PAGE_SHIFT)
		return ERR_PTR(-EINVAL);
	g = kzalloc_obj(*g, GFP_KERNEL);
	if (!g)
		return ERR_PTR(-ENOMEM);
	g->va = vmap(mdl->pages, mdl->nr_pages, VM_MAP, PAGE_KERNEL);
	if (!g->va) {
		kfree(g);
		return ERR_PTR(-ENOMEM);
	}
	ret = vmbus_establish_gpadl(ch, g->va,
				    mdl->nr_pages << PAGE_SHIFT, &g->gpadl);
	if (ret) {
		vunmap(g->va);
		kfree(g);
		return ERR_PTR(ret);
	}
	*handle = g->gpadl.gpadl_handle;
	return g;
}

struct kmcl_hv_mmio {
	struct resource *res;
	resource_size_t size;
	void __iomem *va;
};

/*
 * Reserves the MMIO space @dev's offer asks for (mmio_megabytes) and maps
 * it: NULL if it asks for none, else the reservation (an ERR_PTR on
 * failure), with the mapping, its size and its physical start in @va,
 * @size and @start.
 */
void *kmcl_hv_mmio_allocate(struct hv_device *dev, void **va, u64 *size,
			    u64 *start)
{
	resource_size_t bytes = (resource_size_t)dev->channel->offermsg.offer.mmio_megabytes << 20;
	struct kmcl_hv_mmio *m;
	int ret;

	if (!bytes)
		return NULL;
	m = kzalloc_obj(*m, GFP_KERNEL);
	if (!m)
		return ERR_PTR(-ENOMEM);
	ret = vmbus_allocate_mmio(&m->res, dev, 0, -1, bytes, 0x100000, false);
	if (ret) {
		kfree(m);
		return ERR_PTR(ret);
	}
	m->size = bytes;
	m->va = ioremap(m->res->start, bytes);
	if (!m->va) {
		vmbus_free_mmio(m->res->start, bytes);
		kfree(m);
		return ERR_PTR(-ENOMEM);
	}
	*va = (void __force *)m->va;
	*size = bytes;
	*start = m->res->start;
	return m;
}

void kmcl_hv_mmio_free(void *mmio)
{
	struct kmcl_hv_mmio *m = mmio;

	iounmap(m->va);
	vmbus_free_mmio(m->res->start, m->size);
	kfree(m);
}

/* Tears down a GPADL of kmcl_hv_gpadl_create(); kept on an error. */
int kmcl_hv_gpadl_delete(struct vmbus_channel *ch, void *gpadl)
{
	struct kmcl_hv_gpadl *g = gpadl;
	int ret;

	ret = vmbus_teardown_gpadl(ch, &g->gpadl);
	if (ret)
		return ret;
	vunmap(g->va);
	kfree(g);
	return 0;
}

/*
 * The public header's constants must match the values the Rust side uses
 * (rust/protocol/packet.rs: FLAG_COMPLETION_REQUESTED is what
 * WAIT_FOR_COMPLETION puts on the wire).
 */
static_assert(VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION == 0x1);
