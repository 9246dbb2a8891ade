// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue: kmcl's own workqueues (alloc_workqueue() is a macro).
 */
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
