/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kmcl C glue: the C functions kmcl's Rust code calls.
 *
 * hv_vmbus exposes much of its API as macros and static inline functions
 * (include/linux/hyperv.h), which Rust cannot call.  Each is wrapped here
 * by a plain function; the Rust declarations live in rust/hv/mod.rs and
 * must match these prototypes exactly.
 */
#ifndef _KMCL_GLUE_H
#define _KMCL_GLUE_H

#include <linux/spinlock_types.h>
#include <linux/types.h>
#include <linux/uuid.h>

bool kmcl_hv_vmbus_present(void);

/* rust/glue/hv_glue.c: kmcl's drivers and channels on hv_vmbus. */
struct hv_device;
struct page;
struct vmbus_channel;
struct kmcl_hv_rings {
	void *out;
	void *in;
	u32 out_len;
	u32 in_len;
};

void *kmcl_hv_watch(const void *bus, const guid_t *type);
void kmcl_hv_unwatch(void *driver);
void kmcl_hv_rings(struct vmbus_channel *ch, struct kmcl_hv_rings *rings);
int kmcl_hv_open(struct vmbus_channel *ch, const void *link, u32 out_pages,
		 u32 in_pages, u32 max_pkt, struct kmcl_hv_rings *rings);
void kmcl_hv_close(struct vmbus_channel *ch);
bool kmcl_hv_signal(struct vmbus_channel *ch);
void kmcl_hv_set_low_latency(struct vmbus_channel *ch, bool on);
void kmcl_hv_on_channel(void *link);
bool kmcl_hv_bounces_external(struct vmbus_channel *ch);
int kmcl_hv_dma_map(struct hv_device *dev, struct page *page, u32 offset,
		    u32 len, u64 *addr);
void kmcl_hv_dma_unmap(struct hv_device *dev, u64 addr, u32 len);
struct kmcl_mdl;
void *kmcl_hv_gpadl_create(struct vmbus_channel *ch,
			   const struct kmcl_mdl *mdl, u32 *handle);
int kmcl_hv_gpadl_delete(struct vmbus_channel *ch, void *gpadl);
void *kmcl_hv_mmio_allocate(struct hv_device *dev, void **va, u64 *size,
			    u64 *start);
void kmcl_hv_mmio_free(void *mmio);
/* Defined in Rust (rust/transport/hyperv/vmbus.rs). */
int kmcl_host_probe(const void *bus, struct hv_device *dev,
		    struct vmbus_channel *channel, const guid_t *type,
		    const guid_t *instance);
void kmcl_host_subchannel(const void *bus, struct hv_device *dev,
			  struct vmbus_channel *sc, u16 index);
void kmcl_host_remove(const void *bus, struct hv_device *dev);
void kmcl_host_suspend(const void *bus, struct hv_device *dev);
void kmcl_host_resume(const void *bus, struct hv_device *dev);
void kmcl_host_interrupt(const void *link);
u32 kmcl_interrupt_cpu(void);
int kmcl_pin_current(u32 cpu);
bool kmcl_may_sleep(void);
void kmcl_might_sleep(void);
struct module;
void kmcl_refuse_atomic(const char *fn, const struct module *owner);
void kmcl_refuse_handle(const char *fn, const void *handle, const char *why);
void kmcl_test_bh_disable(void);
void kmcl_test_bh_enable(void);
unsigned long kmcl_spin_lock_irqsave(spinlock_t *lock);
bool kmcl_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);
void kmcl_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);

struct workqueue_struct;
struct workqueue_struct *kmcl_wq_alloc(bool bh);
void kmcl_wq_destroy(struct workqueue_struct *wq);
bool kmcl_queue_work_on(u32 cpu, struct workqueue_struct *wq,
			struct work_struct *work);
struct kmcl_timer;
struct kmcl_timer *kmcl_timer_new(void);
bool kmcl_timer_arm(struct kmcl_timer *t, struct workqueue_struct *wq,
		    void (*fn)(void *ctx), void *ctx, u32 usecs);
void *kmcl_timer_disarm(struct kmcl_timer *t);
void kmcl_timer_free(struct kmcl_timer *t);

struct module;
int kmcl_glue_watch_modules(void);
void kmcl_glue_unwatch_modules(void);
const u32 *kmcl_glue_c_layout(u32 *count);
/* Defined in Rust (rust/ffi/mod.rs). */
void kmcl_ffi_module_going(struct module *mod, const char *name);

/* rust/glue/pages.c: the pages behind a GPADL. */
struct page;
int kmcl_pages_lookup(const void *buf, u32 n, struct page **pages);
u64 kmcl_page_pfn(struct page *page);
int kmcl_pages_of_pfns(const u64 *pfns, u32 n, struct page **pages);
void kmcl_page_read(struct page *page, u32 offset, void *dst, u32 len);
void kmcl_page_write(struct page *page, u32 offset, const void *src, u32 len);
void kmcl_ring_copy(void *dst, const void *src, size_t len);

/*
 * rust/glue/hv_channel.c and hv_interop.c: hv_vmbus's ring code on kmcl's
 * rings (KUnit builds, and kmcl_bench.ko through bench/kmcl_shared.c).
 */
struct vmbus_channel;
struct vmtransfer_page_range;
struct vmbus_channel *kmcl_hvi_channel_new(void *inbound, void *outbound,
					   u32 pages, u32 max_pkt);
void kmcl_hvi_channel_free(struct vmbus_channel *ch);
int kmcl_hvi_send(struct vmbus_channel *ch, const void *buf, u32 len,
		  u64 requestid, u16 type, u32 flags);
int kmcl_hvi_send_mpb(struct vmbus_channel *ch, void *desc, u32 desc_size,
		      const void *buf, u32 len, u64 requestid);
int kmcl_hvi_recv_all(struct vmbus_channel *ch, u8 *out, u32 cap, u32 *used);
u32 kmcl_hvi_read_all(struct vmbus_channel *ch, u64 *bytes);
int kmcl_hvi_xfer_parse(const void *pkt, u32 len, u16 *set_id, u32 *count,
			struct vmtransfer_page_range *ranges, u32 cap);
int kmcl_hvi_xfer_build(void *out, u32 cap, u16 set_id,
			const struct vmtransfer_page_range *ranges, u32 count,
			u64 tid);
void kmcl_hvi_counters(struct vmbus_channel *ch, u64 *sig_events,
		       u64 *intr_out_empty, u64 *intr_in_full);
struct hv_device *kmcl_hvi_device_new(struct vmbus_channel *ch,
				      const guid_t *type,
				      const guid_t *instance);
void kmcl_hvi_device_free(struct hv_device *dev);
bool kmcl_hvi_bounces(struct hv_device *dev);
void kmcl_hvi_make_subchannel(struct vmbus_channel *sc,
			      struct vmbus_channel *primary, u16 index);
void kmcl_hvi_rescind(struct vmbus_channel *ch);
bool kmcl_hvi_low_latency(struct vmbus_channel *ch);
void kmcl_hvi_attach(struct vmbus_channel *ch, const void *link,
		     struct kmcl_hv_rings *rings);
void kmcl_hvi_detach(struct vmbus_channel *ch);
void kmcl_hvi_interrupt(struct vmbus_channel *ch);

#endif /* _KMCL_GLUE_H */
