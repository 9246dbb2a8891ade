// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue: kmcl's own workqueues (alloc_workqueue() is a macro).
 */
#include <linux/cpumask.h>
#include <linux/preempt.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "kmcl_glue.h"

/*
 * One queue for process-context work, one BH queue (softirq context, the
 * replacement for tasklets).  Destroying them at module exit waits for all
 * work kmcl queued.
 */
struct workqueue_struct *kmcl_wq_alloc(bool bh)
{
	if (bh)
		return alloc_workqueue("kmcl_bh", WQ_BH | WQ_PERCPU, 0);
	return alloc_workqueue("kmcl", WQ_UNBOUND, 0);
}

void kmcl_wq_destroy(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}

/*
 * Queues @work on @wq on CPU @cpu if that CPU is online, else where
 * queue_work() would (a channel's target processor).  Preemption stays off
 * from the check to the queueing, so the CPU cannot go offline in between
 * (unplugging runs stop_machine); BH work queued on a CPU before it goes
 * offline is run by workqueue_softirq_dead().
 */
bool kmcl_queue_work_on(u32 cpu, struct workqueue_struct *wq,
			struct work_struct *work)
{
	int target = WORK_CPU_UNBOUND;
	bool queued;

	preempt_disable();
	if (cpu < nr_cpu_ids && cpu_online(cpu))
		target = cpu;
	queued = queue_work_on(target, wq, work);
	preempt_enable();
	return queued;
}

/*
 * A one-shot timer on kmcl's process queue (a delayed work): kmcl's
 * loopback signal coalescing (VmbChannelSetInterruptLatency).  The Rust
 * side (rust/queues.rs) gives each arming a reference it owns until the
 * callback runs or the timer is disarmed.
 */
struct kmcl_timer {
	struct delayed_work dw;
	void (*fn)(void *ctx);
	void *ctx;
};

static void kmcl_timer_fire(struct work_struct *work)
{
	struct kmcl_timer *t = container_of(to_delayed_work(work), struct kmcl_timer, dw);

	t->fn(t->ctx);
}

struct kmcl_timer *kmcl_timer_new(void)
{
	struct kmcl_timer *t = kzalloc_obj(*t, GFP_KERNEL);

	if (t)
		INIT_DELAYED_WORK(&t->dw, kmcl_timer_fire);
	return t;
}

/*
 * Arms @t to call @fn(@ctx) on @wq after @usecs (at least one tick); the
 * caller arms it only when it is not armed.  False: not armed, because a
 * disarm is cancelling it right now (@fn will not get @ctx).
 */
bool kmcl_timer_arm(struct kmcl_timer *t, struct workqueue_struct *wq,
		    void (*fn)(void *ctx), void *ctx, u32 usecs)
{
	t->fn = fn;
	t->ctx = ctx;
	return queue_delayed_work(wq, &t->dw, max(usecs_to_jiffies(usecs), 1UL));
}

/*
 * Disarms @t, waiting for a running callback; returns the context of the
 * arming whose callback will now never run, or NULL.
 */
void *kmcl_timer_disarm(struct kmcl_timer *t)
{
	return cancel_delayed_work_sync(&t->dw) ? t->ctx : NULL;
}

/* Frees a disarmed @t. */
void kmcl_timer_free(struct kmcl_timer *t)
{
	kfree(t);
}
