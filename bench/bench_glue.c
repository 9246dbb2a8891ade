// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_bench C glue.
 */
#include <linux/bottom_half.h>
#include <linux/cpumask.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/spinlock.h>

#include "bench_glue.h"

/*
 * Runs the softirqs pending on this CPU, among them kmcl's receive work
 * (a BH work item).  A sender looping in process context calls this
 * instead of spinning, so the receiving side runs at once on the same CPU
 * rather than at the next interrupt: the benchmark then measures kmcl's
 * path, not the timer tick.
 */
void kmcl_bench_run_softirqs(void)
{
	local_bh_disable();
	local_bh_enable();
}

/*
 * Marks an edge of a counted window for tools/count/kmcl_count.c, the
 * QEMU plugin behind `make bench`'s per-packet counts: "xchg %bx,%bx"
 * changes nothing (Bochs's magic breakpoint; QEMU ignores it), so the
 * benchmark runs the same with and without the plugin.
 */
void kmcl_bench_mark(void)
{
#ifdef CONFIG_X86
	asm volatile("xchg %%bx, %%bx" ::: "memory");
#endif
}

static DEFINE_SPINLOCK(kmcl_bench_lock);

/* One round of a primitive, for the micro benchmark (micro=N). */
void kmcl_bench_primitive(u32 which)
{
	unsigned long flags;

	switch (which) {
	case 1:
		preempt_disable();
		preempt_enable();
		break;
	case 2:
		local_irq_save(flags);
		local_irq_restore(flags);
		break;
	case 3:
		spin_lock(&kmcl_bench_lock);
		spin_unlock(&kmcl_bench_lock);
		break;
	case 4:
		spin_lock_irqsave(&kmcl_bench_lock, flags);
		spin_unlock_irqrestore(&kmcl_bench_lock, flags);
		break;
	case 5:
		spin_lock_bh(&kmcl_bench_lock);
		spin_unlock_bh(&kmcl_bench_lock);
		break;
	default:
		break;
	}
}

/*
 * Lets the calling thread (insmod, running the benchmark) run on CPU @cpu
 * only, or anywhere again for U32_MAX.
 */
int kmcl_bench_pin(u32 cpu)
{
	if (cpu == U32_MAX)
		return set_cpus_allowed_ptr(current, cpu_possible_mask);
	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	return set_cpus_allowed_ptr(current, cpumask_of(cpu));
}

/*
 * Runs @fn(@arg) in a kernel thread bound to CPU @cpu (the raw ring's
 * reader on another CPU).  Returns the thread, with a reference for
 * kmcl_bench_thread_stop(), or an ERR_PTR.
 */
struct task_struct *kmcl_bench_thread_start(u32 cpu, int (*fn)(void *arg), void *arg)
{
	struct task_struct *t;

	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return ERR_PTR(-EINVAL);
	t = kthread_create_on_cpu(fn, arg, cpu, "kmcl_bench/%u");
	if (IS_ERR(t))
		return t;
	get_task_struct(t);
	wake_up_process(t);
	return t;
}

/*
 * Waits for a thread from kmcl_bench_thread_start() to end (@fn returns
 * once kthread_should_stop() or its work is done) and returns what @fn
 * returned.
 */
int kmcl_bench_thread_stop(struct task_struct *t)
{
	return kthread_stop_put(t);
}
