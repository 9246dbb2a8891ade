// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue for execution-context queries (macros in C).
 */
#include <linux/preempt.h>

#include "kmcl_glue.h"

/* True in process context: not in hard or soft interrupt context. */
bool kmcl_in_task(void)
{
	return in_task();
}
