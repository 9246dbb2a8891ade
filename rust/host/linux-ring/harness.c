// SPDX-License-Identifier: GPL-2.0
/*
 * Drives Linux's ring code (built for user space by build.rs) for the
 * side-by-side benchmark: one channel whose outbound and inbound rings are
 * the same pages, written with vmbus_sendpacket_getid() as a driver sends
 * and read with foreach_vmbus_pkt() as a driver's channel callback reads.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include <linux/hyperv.h>

/* The memfd behind the pages hv_ringbuffer_init() is given. */
static struct {
	struct page *base;
	int fd;
} arena;

/* vmap(): the pages mapped in a row, as the kernel maps a ring twice. */
void *vmap(struct page **pages, unsigned int count, unsigned long flags, int prot)
{
	char *va = mmap(NULL, count * PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned int i;

	(void)flags;
	(void)prot;
	if (va == MAP_FAILED)
		return NULL;
	for (i = 0; i < count; i++) {
		off_t off = (off_t)(pages[i] - arena.base) * PAGE_SIZE;

		if (mmap(va + i * PAGE_SIZE, PAGE_SIZE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, arena.fd, off) == MAP_FAILED)
			return NULL;
	}
	return va;
}

/* Rings are freed with the process: the benchmark makes a few. */
void vunmap(const void *addr)
{
	(void)addr;
}

struct lr_ring {
	struct vmbus_channel ch;
	u64 signals;
	/* lr_read_some(): the packet peeked at and not yet read. */
	struct vmpacket_descriptor *desc;
};

void vmbus_setevent(struct vmbus_channel *channel)
{
	((struct lr_ring *)channel)->signals++;
}

/* A channel whose rings are one ring of @data_bytes (a page multiple). */
struct lr_ring *lr_new(u32 data_bytes, u32 max_pkt)
{
	u32 pages = data_bytes / PAGE_SIZE + 1;
	struct lr_ring *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	arena.fd = memfd_create("kmcl-linux-ring", 0);
	if (arena.fd < 0 || ftruncate(arena.fd, (off_t)pages * PAGE_SIZE))
		return NULL;
	arena.base = mmap(NULL, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			  arena.fd, 0);
	if (arena.base == MAP_FAILED)
		return NULL;
	hv_ringbuffer_pre_init(&r->ch);
	if (hv_ringbuffer_init(&r->ch.outbound, arena.base, pages, 0, false) ||
	    hv_ringbuffer_init(&r->ch.inbound, arena.base, pages, max_pkt, false))
		return NULL;
	return r;
}

/* vmbus_sendpacket(): 0, or -EAGAIN when the ring is full. */
int lr_send(struct lr_ring *r, const void *buf, u32 len, u64 id, bool completion)
{
	return vmbus_sendpacket_getid(&r->ch, (void *)buf, len, id, NULL, VM_PKT_DATA_INBAND,
				      completion ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0);
}

/*
 * A channel callback's loop: every packet there is, each copied out of the
 * ring by hv_pkt_iter_first(); the read index is published at the end.
 * Returns the packets; adds their payload bytes to @bytes.
 */
u32 lr_read_all(struct lr_ring *r, u64 *bytes)
{
	struct vmpacket_descriptor *desc;
	u32 n = 0;

	foreach_vmbus_pkt(desc, &r->ch) {
		*bytes += hv_pkt_datalen(desc) + (desc->trans_id & 0);
		n++;
	}
	return n;
}

/*
 * A polling reader with a budget, as netvsc's NAPI poll reads: up to
 * @budget packets, keeping the one it peeked at for the next call; the
 * read index is published when the ring is empty (hv_pkt_iter_next) and
 * after each budget.  Returns the packets read.
 */
u32 lr_read_some(struct lr_ring *r, u32 budget, u64 *bytes)
{
	u32 n = 0;

	if (!r->desc)
		r->desc = hv_pkt_iter_first(&r->ch);
	while (r->desc && n < budget) {
		*bytes += hv_pkt_datalen(r->desc) + (r->desc->trans_id & 0);
		n++;
		r->desc = hv_pkt_iter_next(&r->ch, r->desc);
	}
	if (r->desc)
		hv_pkt_iter_close(&r->ch);
	return n;
}

u64 lr_signals(struct lr_ring *r)
{
	return r->signals;
}
