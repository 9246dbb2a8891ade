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
void kmcl_bench_mark(void);

struct task_struct;
struct task_struct *kmcl_bench_thread_start(u32 cpu, int (*fn)(void *arg), void *arg);
int kmcl_bench_thread_stop(struct task_struct *t);

/* bench/hv_driver.c: a minimal driver on hv_vmbus, the full path's peer. */
struct kmcl_bench_hv;
struct kmcl_bench_hv *kmcl_bench_hv_new(void);
void kmcl_bench_hv_free(struct kmcl_bench_hv *h);
void kmcl_bench_hv_start(struct kmcl_bench_hv *h, const u8 *payload, u32 size, u64 count,
			 u32 window);
u64 kmcl_bench_hv_completed(struct kmcl_bench_hv *h);
u64 kmcl_bench_hv_received(struct kmcl_bench_hv *h);
u64 kmcl_bench_hv_failed(struct kmcl_bench_hv *h);
int kmcl_bench_hv_send_all(struct kmcl_bench_hv *h, const u8 *payload, u32 size, u64 count,
			   u64 ahead);

#endif
