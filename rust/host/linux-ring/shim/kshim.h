/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel facilities drivers/hv/ring_buffer.c uses, for a user-space
 * build of it (kmcl's side-by-side ring benchmark).  Barriers and one-time
 * accesses are the x86-64 kernel's; the ring lock is a real spin lock (the
 * kernel's also disables interrupts, which user space cannot); vmap() maps
 * the ring's pages twice in a row as the kernel does, with a memfd.
 */
#ifndef KSHIM_H
#define KSHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define U64_MAX UINT64_MAX
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define HV_HYP_PAGE_SIZE 4096
#define ALIGN(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define __packed __attribute__((packed))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define min(a, b) ((a) < (b) ? (a) : (b))
#define BUILD_BUG_ON(c) _Static_assert(!(c), #c)
#define EXPORT_SYMBOL(s)
#define EXPORT_SYMBOL_GPL(s)
#define KBUILD_MODNAME "hv_vmbus"
#define pr_err_ratelimited(...) ((void)0)

#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
/* x86-64: smp_mb() is a locked add, smp_rmb() a compiler barrier. */
#define virt_mb() __asm__ __volatile__("lock addl $0,-4(%%rsp)" ::: "memory", "cc")
#define virt_rmb() __asm__ __volatile__("" ::: "memory")
#define virt_load_acquire(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)

#define GFP_KERNEL 0
#define kzalloc(n, gfp) calloc(1, (n))
#define kzalloc_objs(t, n) ((t *)calloc((n), sizeof(t)))
#define kfree(p) free(p)

struct page {
	char bytes[4096];
};
#define VM_MAP 0
#define PAGE_KERNEL 0
#define pgprot_decrypted(p) (p)
void *vmap(struct page **pages, unsigned int count, unsigned long flags, int prot);
void vunmap(const void *addr);

struct reciprocal_value {
	u32 m;
	u8 sh1, sh2;
};
static inline struct reciprocal_value reciprocal_value(u32 d)
{
	struct reciprocal_value r = { d, 0, 0 };
	return r;
}

typedef struct {
	int locked;
} spinlock_t;
#define spin_lock_init(l) ((l)->locked = 0)
#define spin_lock_irqsave(l, flags)                                          \
	do {                                                                 \
		(flags) = 0;                                                 \
		while (__atomic_exchange_n(&(l)->locked, 1, __ATOMIC_ACQUIRE)) \
			__builtin_ia32_pause();                              \
	} while (0)
#define spin_unlock_irqrestore(l, flags)                                    \
	do {                                                                \
		(void)(flags);                                              \
		__atomic_store_n(&(l)->locked, 0, __ATOMIC_RELEASE);        \
	} while (0)
#define spin_is_locked(l) __atomic_load_n(&(l)->locked, __ATOMIC_RELAXED)

struct mutex {
	int unused;
};
#define mutex_init(m) ((void)(m))
#define mutex_lock(m) ((void)(m))
#define mutex_unlock(m) ((void)(m))

struct kvec {
	void *iov_base;
	size_t iov_len;
};

/* drivers/hv/hyperv_vmbus.h: the debug delay is off in production. */
enum delay { INTERRUPT_DELAY = 0, MESSAGE_DELAY = 1 };
struct vmbus_channel;
static inline void hv_debug_delay_test(struct vmbus_channel *channel, enum delay d)
{
	(void)channel;
	(void)d;
}
void vmbus_setevent(struct vmbus_channel *channel);

#endif
