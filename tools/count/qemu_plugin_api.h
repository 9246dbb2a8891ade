/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The entry points of QEMU's TCG plugin API (API version 2 and later,
 * as QEMU documents them in include/qemu/qemu-plugin.h) that
 * kmcl_count.c uses.  A plugin's id is a 64-bit value; "install" gets the
 * guest's description, of which only the leading fields are read here.
 */
#ifndef KMCL_QEMU_PLUGIN_API_H
#define KMCL_QEMU_PLUGIN_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qemu_plugin_tb;
struct qemu_plugin_insn;

/* The leading fields of QEMU's qemu_info_t. */
struct qemu_info_head {
	const char *target_name;
	struct {
		int min;
		int cur;
	} version;
	bool system_emulation;
};

/* Callbacks read no guest registers. */
#define KMCL_QEMU_PLUGIN_CB_NO_REGS 0

void qemu_plugin_register_vcpu_tb_trans_cb(uint64_t id,
					   void (*cb)(uint64_t id, struct qemu_plugin_tb *tb));
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
					  void (*cb)(unsigned int vcpu, void *udata),
					  int flags, void *udata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
					    void (*cb)(unsigned int vcpu, void *udata),
					    int flags, void *udata);
void qemu_plugin_register_atexit_cb(uint64_t id, void (*cb)(uint64_t id, void *udata),
				    void *udata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *insn, void *dest, size_t len);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

#endif
