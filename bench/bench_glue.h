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

struct task_struct;
struct task_struct *kmcl_bench_thread_start(u32 cpu, int (*fn)(void *arg), void *arg);
int kmcl_bench_thread_stop(struct task_struct *t);

#endif
