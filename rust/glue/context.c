// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue for execution-context queries (macros in C).
 */
#include <linux/cpumask.h>
#include <linux/preempt.h>
#include <linux/sched.h>

#include "kmcl_glue.h"

/* True in process context: not in hard or soft interrupt context. */
bool kmcl_in_task(void)
{
	return in_task();
}

/* Lets the calling thread run on CPU @cpu only (tests). */
int kmcl_pin_current(u32 cpu)
{
	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	return set_cpus_allowed_ptr(current, cpumask_of(cpu));
}
