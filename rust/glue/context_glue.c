// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue for execution-context queries (macros in C).
 */
#include <linux/bottom_half.h>
#include <linux/cpumask.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/spinlock.h>

#include "kmcl_glue.h"

/*
 * The CPU the caller runs on if it runs in interrupt context (hard or
 * soft, where it cannot migrate), else U32_MAX (process context).
 */
u32 kmcl_interrupt_cpu(void)
{
	return in_task() ? U32_MAX : raw_smp_processor_id();
}

/* Lets the calling thread run on CPU @cpu only (tests). */
int kmcl_pin_current(u32 cpu)
{
	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	return set_cpus_allowed_ptr(current, cpumask_of(cpu));
}

/*
 * True if the caller may sleep: not in interrupt or softirq context,
 * bottom halves and interrupts enabled, and (where the kernel counts it)
 * no spinlock held and preemption enabled.
 */
bool kmcl_may_sleep(void)
{
	if (in_interrupt() || irqs_disabled())
		return false;
#ifdef CONFIG_PREEMPT_COUNT
	if (preempt_count())
		return false;
#endif
	return true;
}

/* might_sleep(), for the callers kmcl_may_sleep() let through. */
void kmcl_might_sleep(void)
{
	might_sleep();
}

/*
 * One rate-limited line for a call refused because its caller may not
 * sleep: the function, and the channel's owner module (or the task).
 */
void kmcl_refuse_atomic(const char *fn, const struct module *owner)
{
	pr_err_ratelimited("kmcl: %s called in atomic context by %s; refused with -EINVAL\n",
			   fn, owner ? owner->name : current->comm);
}

/*
 * One rate-limited line for a handle kmcl did not hand out, or no longer
 * holds, or of the wrong kind: the function, the handle and the caller.
 */
void kmcl_refuse_handle(const char *fn, const void *handle, const char *why)
{
	pr_err_ratelimited("kmcl: %s: %s handle %p from %s; refused with -EINVAL\n",
			   fn, why, handle, current->comm);
}

#ifdef KMCL_KUNIT
/* Tests: bottom halves off and on again. */
void kmcl_test_bh_disable(void)
{
	local_bh_disable();
}

void kmcl_test_bh_enable(void)
{
	local_bh_enable();
}
#endif

/*
 * spin_lock_irqsave() and friends for kmcl's IrqSpinLock (rust/sys/lock.rs):
 * macros, so called through these.
 */
unsigned long kmcl_spin_lock_irqsave(spinlock_t *lock)
	__acquires(lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

bool kmcl_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	unsigned long f;

	if (!spin_trylock_irqsave(lock, f))
		return false;
	*flags = f;
	return true;
}

void kmcl_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
	__releases(lock)
{
	spin_unlock_irqrestore(lock, flags);
}
