// SPDX-License-Identifier: GPL-2.0
/*
 * Checks kmcl_count's instruction classes (classify.h) on encodings
 * whose class is known (as GNU as assembles them).  make check builds and
 * runs it; exit status 0 when every case holds.
 */
#include <stdio.h>

#include "classify.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct insn_case {
	const char *text;
	uint8_t bytes[8];
	size_t len;
	struct kmcl_insn_counts want;
	bool marker;
};

static const struct insn_case cases[] = {
	{ "lock addl $0x0,-0x4(%rsp)", { 0xf0, 0x83, 0x44, 0x24, 0xfc, 0x00 }, 6,
	  { 1, 0, 0, 0 }, false },
	{ "lock cmpxchg %edx,(%rdi)", { 0xf0, 0x0f, 0xb1, 0x17 }, 4, { 1, 0, 0, 0 }, false },
	{ "lock xadd %rax,(%rdi)", { 0xf0, 0x48, 0x0f, 0xc1, 0x07 }, 5, { 1, 0, 0, 0 }, false },
	{ "xchg %rax,(%rdi)", { 0x48, 0x87, 0x07 }, 3, { 1, 0, 0, 0 }, false },
	{ "xchg %al,(%rdi)", { 0x86, 0x07 }, 2, { 1, 0, 0, 0 }, false },
	{ "xchg %rax,%rbx", { 0x48, 0x87, 0xc3 }, 3, { 0, 0, 0, 0 }, false },
	{ "mfence", { 0x0f, 0xae, 0xf0 }, 3, { 0, 1, 0, 0 }, false },
	{ "lfence", { 0x0f, 0xae, 0xe8 }, 3, { 0, 1, 0, 0 }, false },
	{ "sfence", { 0x0f, 0xae, 0xf8 }, 3, { 0, 1, 0, 0 }, false },
	{ "clflush (%rax)", { 0x0f, 0xae, 0x38 }, 3, { 0, 0, 0, 0 }, false },
	{ "call *%rax", { 0xff, 0xd0 }, 2, { 0, 0, 1, 0 }, false },
	{ "call *%r11", { 0x41, 0xff, 0xd3 }, 3, { 0, 0, 1, 0 }, false },
	{ "call *0x18(%r8)", { 0x41, 0xff, 0x50, 0x18 }, 4, { 0, 0, 1, 0 }, false },
	{ "jmp *%rax", { 0xff, 0xe0 }, 2, { 0, 0, 0, 0 }, false },
	{ "incl (%rax)", { 0xff, 0x00 }, 2, { 0, 0, 0, 0 }, false },
	{ "call rel32", { 0xe8, 0x00, 0x00, 0x00, 0x00 }, 5, { 0, 0, 0, 0 }, false },
	{ "cli", { 0xfa }, 1, { 0, 0, 0, 1 }, false },
	{ "sti", { 0xfb }, 1, { 0, 0, 0, 1 }, false },
	{ "popf", { 0x9d }, 1, { 0, 0, 0, 1 }, false },
	{ "pushf", { 0x9c }, 1, { 0, 0, 0, 0 }, false },
	{ "mov (%rdi),%rax", { 0x48, 0x8b, 0x07 }, 3, { 0, 0, 0, 0 }, false },
	{ "rep movsb", { 0xf3, 0xa4 }, 2, { 0, 0, 0, 0 }, false },
	{ "xchg %bx,%bx (marker)", { 0x66, 0x87, 0xdb }, 3, { 0, 0, 0, 0 }, true },
	{ "xchg %ebx,%ebx", { 0x87, 0xdb }, 2, { 0, 0, 0, 0 }, false },
};

int main(void)
{
	size_t i, bad = 0, n = ARRAY_SIZE(cases);

	for (i = 0; i < n; i++) {
		const struct insn_case *t = &cases[i];
		struct kmcl_insn_counts got = { 0 };
		bool marker = kmcl_is_marker(t->bytes, t->len);

		kmcl_classify(t->bytes, t->len, &got);
		if (got.atomics != t->want.atomics || got.fences != t->want.fences ||
		    got.icalls != t->want.icalls || got.irq != t->want.irq || marker != t->marker) {
			printf("classify_test: %s: atomics %u fences %u icalls %u irq %u",
			       t->text, got.atomics, got.fences, got.icalls, got.irq);
			printf(" marker %d\n", marker);
			bad++;
		}
	}
	printf("classify_test: %zu of %zu encodings classified as expected\n", n - bad, n);
	return bad != 0;
}
