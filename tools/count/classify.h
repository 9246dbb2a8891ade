/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What kmcl_count.c counts of one x86-64 instruction, from its bytes: an
 * atomic read-modify-write (a LOCK prefix, or XCHG with a memory operand,
 * which locks implicitly), a fence (MFENCE, LFENCE, SFENCE), an indirect
 * call (CALL through a register or memory), an interrupt-flag change (CLI,
 * STI, POPF); and the benchmark's marker, "xchg %bx,%bx".
 * classify_test.c checks them on known encodings.
 */
#ifndef KMCL_COUNT_CLASSIFY_H
#define KMCL_COUNT_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kmcl_insn_counts {
	uint32_t atomics, fences, icalls, irq;
};

static inline bool kmcl_is_prefix(uint8_t b)
{
	return b == 0xf0 || b == 0xf2 || b == 0xf3 || b == 0x66 || b == 0x67 ||
	       b == 0x2e || b == 0x3e || b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65;
}

/* Adds what the instruction @b (@n bytes) is to @c. */
static inline void kmcl_classify(const uint8_t *b, size_t n, struct kmcl_insn_counts *c)
{
	size_t i = 0;
	bool lock_prefix = false;

	/* Legacy prefixes, then at most one REX prefix. */
	while (i < n && kmcl_is_prefix(b[i])) {
		lock_prefix |= b[i] == 0xf0;
		i++;
	}
	if (i < n && (b[i] & 0xf0) == 0x40)
		i++;
	if (i >= n)
		return;
	if (lock_prefix) {
		c->atomics++;
		return;
	}
	switch (b[i]) {
	case 0x86:
	case 0x87:	/* XCHG r/m, r: locked when r/m is memory */
		if (i + 1 < n && (b[i + 1] >> 6) != 3)
			c->atomics++;
		return;
	case 0xfa:	/* CLI */
	case 0xfb:	/* STI */
	case 0x9d:	/* POPF */
		c->irq++;
		return;
	case 0xff:	/* group 5: /2 is CALL r/m */
		if (i + 1 < n && ((b[i + 1] >> 3) & 7) == 2)
			c->icalls++;
		return;
	case 0x0f:	/* 0F AE /5 /6 /7 with a register operand: fences */
		if (i + 2 < n && b[i + 1] == 0xae && b[i + 2] >= 0xe8)
			c->fences++;
		return;
	}
}

/* Whether @b (@n bytes) is the benchmark's marker, "xchg %bx,%bx". */
static inline bool kmcl_is_marker(const uint8_t *b, size_t n)
{
	return n == 3 && b[0] == 0x66 && b[1] == 0x87 && b[2] == 0xdb;
}

#endif
