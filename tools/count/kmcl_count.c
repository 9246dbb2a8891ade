// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_count: a QEMU TCG plugin that counts what the guest executes
 * between two markers, for the benchmark's per-packet counts
 * (scripts/count.sh, Documentation/performance.rst).
 *
 * Every translation block (TB) gets a record: its guest address, how many
 * instructions it has, and how many of them are atomic read-modify-writes
 * (a LOCK prefix, or XCHG with a memory operand, which locks implicitly),
 * fences (MFENCE, LFENCE, SFENCE), indirect calls (CALL through a register
 * or memory) and interrupt-flag changes (CLI, STI, POPF).  Each execution
 * of the TB adds one to its count.  The guest marks the edges of a
 * measured window with "xchg %bx,%bx" (a no-op, Bochs's magic
 * breakpoint); at each marker the plugin writes every TB that ran since the
 * previous marker and clears the counts:
 *
 *   mark <n>
 *   tb <vaddr hex> <executions> <insns> <atomics> <fences> <icalls> <irq> <callee hex>
 *   ...
 *
 * scripts/count_report.py maps the TB addresses to functions (entries of
 * a TB that starts a function are calls to it: spinlock calls are counted
 * that way; a TB that ends with a direct CALL names its callee, so calls
 * are also counted by caller) and divides by the packets of the window.
 *
 * Plugin argument: out=<file> (default: kmcl-count.txt).
 *
 * qemu_plugin_api.h declares the few entry points of QEMU's plugin API
 * this needs (Debian ships the plugin-enabled QEMU but not its header).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "classify.h"
#include "qemu_plugin_api.h"

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 2;

struct tb_rec {
	uint64_t vaddr;
	uint64_t execs;		/* since the last marker */
	uint64_t calls;		/* target of a direct CALL ending the TB, or 0 */
	uint32_t insns;
	struct kmcl_insn_counts c;
	struct tb_rec *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tb_rec *all;	/* every TB translated (under lock) */
static FILE *out;
static uint64_t marks;

static void on_exec(unsigned int vcpu, void *udata)
{
	struct tb_rec *r = udata;

	(void)vcpu;
	__atomic_fetch_add(&r->execs, 1, __ATOMIC_RELAXED);
}

static void dump(void)
{
	struct tb_rec *r;

	fprintf(out, "mark %llu\n", (unsigned long long)marks++);
	for (r = all; r; r = r->next) {
		uint64_t e = __atomic_exchange_n(&r->execs, 0, __ATOMIC_RELAXED);

		if (e)
			fprintf(out, "tb %llx %llu %u %u %u %u %u %llx\n",
				(unsigned long long)r->vaddr, (unsigned long long)e,
				r->insns, r->c.atomics, r->c.fences, r->c.icalls, r->c.irq,
				(unsigned long long)r->calls);
	}
	fflush(out);
}

static void on_marker(unsigned int vcpu, void *udata)
{
	(void)vcpu;
	(void)udata;
	pthread_mutex_lock(&lock);
	dump();
	pthread_mutex_unlock(&lock);
}

static void on_translate(uint64_t id, struct qemu_plugin_tb *tb)
{
	size_t i, n = qemu_plugin_tb_n_insns(tb);
	struct tb_rec *r = calloc(1, sizeof(*r));

	(void)id;
	if (!r)
		return;
	r->vaddr = qemu_plugin_tb_vaddr(tb);
	r->insns = n;
	for (i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
		uint8_t b[16];
		size_t len = qemu_plugin_insn_data(insn, b, sizeof(b));

		if (kmcl_is_marker(b, len))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker,
							       KMCL_QEMU_PLUGIN_CB_NO_REGS, NULL);
		else
			kmcl_classify(b, len, &r->c);
		/* A direct CALL rel32 (it ends its TB): its target. */
		if (i == n - 1 && len == 5 && b[0] == 0xe8) {
			int32_t rel;

			memcpy(&rel, b + 1, sizeof(rel));
			r->calls = qemu_plugin_insn_vaddr(insn) + 5 + (int64_t)rel;
		}
	}
	qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, KMCL_QEMU_PLUGIN_CB_NO_REGS, r);
	pthread_mutex_lock(&lock);
	r->next = all;
	all = r;
	pthread_mutex_unlock(&lock);
}

static void on_atexit(uint64_t id, void *udata)
{
	(void)id;
	(void)udata;
	fclose(out);
}

EXPORT int qemu_plugin_install(uint64_t id, const struct qemu_info_head *info, int argc,
			       char **argv)
{
	const char *path = "kmcl-count.txt";
	int i;

	if (strcmp(info->target_name, "x86_64") != 0) {
		fprintf(stderr, "kmcl_count: x86_64 guests only\n");
		return -1;
	}
	for (i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			path = argv[i] + 4;
	out = fopen(path, "w");
	if (!out) {
		perror(path);
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, on_atexit, NULL);
	return 0;
}
