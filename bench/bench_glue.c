// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_bench C glue.
 */
#include <linux/bottom_half.h>

void kmcl_bench_run_softirqs(void);

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
