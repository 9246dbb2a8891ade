// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal VMBus driver written on hv_vmbus directly, as a driver author
 * would without kmcl: the peer kmcl_bench compares kmcl's full path with.
 *
 * A client channel and a server channel over two rings of 64 data pages
 * (kmcl's benchmark pair's), made up as hv_channel.c makes them: the
 * client sends with vmbus_sendpacket() (a completion request takes a
 * request id from hv_vmbus's requestor, as storvsc's and netvsc's do); the
 * server's channel callback, a tasklet as hv_vmbus runs callbacks, reads
 * every packet with foreach_vmbus_pkt(), looks at its first byte, and
 * answers a completion request with a VM_PKT_COMP packet; the client's
 * callback looks each completion's request id up (vmbus_request_addr())
 * and runs the sender's "routine", which sends the next packet.  Without a
 * host, a send that signals (hv_vmbus's sig_events moved) schedules the
 * other side's tasklet, as kmcl's loopback schedules the other side's
 * receive work.
 */
#include <linux/bitmap.h>
#include <linux/hyperv.h>
#include <linux/interrupt.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "../rust/glue/kmcl_glue.h"
#include "bench_glue.h"

/* Pages of each ring, the control page included (256 KiB of data). */
#define HV_RING_PAGES 65
/* Request ids: more than the window of packets in flight. */
#define HV_REQUESTS 64

struct kmcl_bench_hv {
	struct vmbus_channel *client;	/* writes ring a, reads ring b */
	struct vmbus_channel *server;	/* reads ring a, writes ring b */
	void *ring_a;
	void *ring_b;
	struct tasklet_struct server_cb;
	struct tasklet_struct client_cb;
	const u8 *payload;
	u32 size;
	u32 flags;
	u64 count;
	u64 next;
	u64 received;
	u64 completed;
	u64 failed;
	u64 deferred;	/* sends of the window that found the ring full */
	u64 seen;	/* the first bytes the server looked at */
};

/* Sends on @ch and, if that signalled the other side, runs its callback. */
static int kmcl_bench_hv_send_on(struct vmbus_channel *ch, struct tasklet_struct *peer,
				 const void *buf, u32 len, u64 id, enum vmbus_packet_type type,
				 u32 flags)
{
	u64 signals = READ_ONCE(ch->sig_events);
	int rc = vmbus_sendpacket(ch, (void *)buf, len, id, type, flags);

	if (READ_ONCE(ch->sig_events) != signals)
		tasklet_schedule(peer);
	return rc;
}

/*
 * The sender's next packet of the window, if any are left.  A full ring
 * (-EAGAIN: packets of 64 KiB in a window of 16 do not fit 256 KiB) defers
 * the packet to the next completion, by which time the server has read
 * some, as a driver would requeue the request.
 */
static void kmcl_bench_hv_send_next(struct kmcl_bench_hv *h)
{
	int rc;

	if (h->next >= h->count)
		return;
	rc = kmcl_bench_hv_send_on(h->client, &h->server_cb, h->payload, h->size,
				   (u64)(unsigned long)h, VM_PKT_DATA_INBAND, h->flags);
	if (rc == -EAGAIN) {
		h->deferred++;
		return;
	}
	h->next++;
	if (rc) {
		h->failed++;
		h->completed++;
	}
}

static void kmcl_bench_hv_server(struct tasklet_struct *t)
{
	struct kmcl_bench_hv *h = from_tasklet(h, t, server_cb);
	struct vmpacket_descriptor *desc;

	foreach_vmbus_pkt(desc, h->server) {
		if (hv_pkt_datalen(desc))
			h->seen += *(u8 *)hv_pkt_data(desc);
		WRITE_ONCE(h->received, h->received + 1);
		if (desc->flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED &&
		    kmcl_bench_hv_send_on(h->server, &h->client_cb, NULL, 0, desc->trans_id,
					  VM_PKT_COMP, 0))
			h->failed++;
	}
}

static void kmcl_bench_hv_client(struct tasklet_struct *t)
{
	struct kmcl_bench_hv *h = from_tasklet(h, t, client_cb);
	struct vmpacket_descriptor *desc;

	foreach_vmbus_pkt(desc, h->client) {
		if (desc->type != VM_PKT_COMP ||
		    vmbus_request_addr(h->client, desc->trans_id) != (u64)(unsigned long)h)
			h->failed++;
		WRITE_ONCE(h->completed, h->completed + 1);
		kmcl_bench_hv_send_next(h);
	}
	/* Deferred packets, now that the server has read some. */
	while (h->deferred) {
		u64 before = h->next;

		h->deferred--;
		kmcl_bench_hv_send_next(h);	/* counts itself again if full */
		if (h->next == before)
			break;
	}
}

void kmcl_bench_hv_free(struct kmcl_bench_hv *h)
{
	if (!h)
		return;
	tasklet_kill(&h->server_cb);
	tasklet_kill(&h->client_cb);
	if (h->client) {
		kfree(h->client->requestor.req_arr);
		bitmap_free(h->client->requestor.req_bitmap);
	}
	kmcl_hvi_channel_free(h->client);
	kmcl_hvi_channel_free(h->server);
	vfree(h->ring_a);
	vfree(h->ring_b);
	kfree(h);
}

struct kmcl_bench_hv *kmcl_bench_hv_new(void)
{
	struct kmcl_bench_hv *h = kzalloc_obj(*h, GFP_KERNEL);
	struct vmbus_requestor *r;
	u32 i;

	if (!h)
		return NULL;
	tasklet_setup(&h->server_cb, kmcl_bench_hv_server);
	tasklet_setup(&h->client_cb, kmcl_bench_hv_client);
	h->ring_a = vzalloc(HV_RING_PAGES * PAGE_SIZE);
	h->ring_b = vzalloc(HV_RING_PAGES * PAGE_SIZE);
	if (!h->ring_a || !h->ring_b)
		goto fail;
	h->client = kmcl_hvi_channel_new(h->ring_b, h->ring_a, HV_RING_PAGES, 65536 + 64);
	h->server = kmcl_hvi_channel_new(h->ring_a, h->ring_b, HV_RING_PAGES, 65536 + 64);
	if (!h->client || !h->server)
		goto fail;
	/* The requestor vmbus_open() sets up (vmbus_alloc_requestor()). */
	r = &h->client->requestor;
	r->req_arr = kcalloc(HV_REQUESTS, sizeof(u64), GFP_KERNEL);
	r->req_bitmap = bitmap_zalloc(HV_REQUESTS, GFP_KERNEL);
	if (!r->req_arr || !r->req_bitmap)
		goto fail;
	for (i = 0; i < HV_REQUESTS; i++)
		r->req_arr[i] = i + 1 < HV_REQUESTS ? i + 1 : U64_MAX;
	r->size = HV_REQUESTS;
	spin_lock_init(&r->req_lock);
	h->client->rqstor_size = HV_REQUESTS;
	h->client->next_request_id_callback = vmbus_next_request_id;
	h->client->request_addr_callback = vmbus_request_addr;
	return h;
fail:
	kmcl_bench_hv_free(h);
	return NULL;
}

/*
 * With a completion request: starts a window of @window packets of @size
 * bytes from @payload, each completion sending the next, @count in all.
 * kmcl_bench_hv_completed() tells how many completed.
 */
void kmcl_bench_hv_start(struct kmcl_bench_hv *h, const u8 *payload, u32 size, u64 count,
			 u32 window)
{
	u32 i;

	h->payload = payload;
	h->size = size;
	h->flags = VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED;
	h->count = count;
	h->next = 0;
	WRITE_ONCE(h->completed, 0);
	h->failed = 0;
	h->deferred = 0;
	local_bh_disable();
	for (i = 0; i < window; i++)
		kmcl_bench_hv_send_next(h);
	local_bh_enable();
}

u64 kmcl_bench_hv_completed(struct kmcl_bench_hv *h)
{
	return READ_ONCE(h->completed);
}

u64 kmcl_bench_hv_received(struct kmcl_bench_hv *h)
{
	return READ_ONCE(h->received);
}

u64 kmcl_bench_hv_failed(struct kmcl_bench_hv *h)
{
	return READ_ONCE(h->failed);
}

/*
 * Without a completion request: sends @count packets of @size bytes from a
 * loop, at most @ahead packets ahead of the server (running the pending
 * softirqs, the server's callback among them, while it waits or the ring
 * is full).  Returns 0, or the send's error.
 */
int kmcl_bench_hv_send_all(struct kmcl_bench_hv *h, const u8 *payload, u32 size, u64 count,
			   u64 ahead)
{
	u64 base = READ_ONCE(h->received);
	u64 sent = 0;
	int rc;

	while (sent < count) {
		if (READ_ONCE(h->received) + ahead < base + sent) {
			kmcl_bench_run_softirqs();
			continue;
		}
		rc = kmcl_bench_hv_send_on(h->client, &h->server_cb, payload, size, 0,
					   VM_PKT_DATA_INBAND, 0);
		if (rc == -EAGAIN) {
			kmcl_bench_run_softirqs();
			continue;
		}
		if (rc)
			return rc;
		sent++;
	}
	return 0;
}
