/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kmcl_bench C glue, called from bench_main.rs.
 */
#ifndef KMCL_BENCH_GLUE_H
#define KMCL_BENCH_GLUE_H

#include <linux/types.h>

void kmcl_bench_run_softirqs(void);
void kmcl_bench_primitive(u32 which);
int kmcl_bench_pin(u32 cpu);

#endif
