#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Misuses of the Rust wrapper that must not compile: each
# tests/compile-fail/NAME.rs is a small driver module that breaks one
# lifetime the wrapper makes a compile error (a packet's external data or
# payload used after the packet was completed, a borrowed channel or a
# GPADL used after the channel was dropped, a borrowed channel kept beyond
# its callback).  Each is built as an out-of-tree module
# against kmcl's Module.symvers; the build must fail with the error code its
# "// expect: EXXXX" line names (not merely fail).  The same file with the
# misuse removed is what a driver writes.  Needs KDIR and a built kmcl.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
: "${KDIR:?KDIR must name the kernel build directory}"
out=$top/out/compile-fail
fails=0
for src in "$top"/tests/compile-fail/*.rs; do
	name=$(basename "$src" .rs)
	expect=$(sed -n 's|^// expect: \(E[0-9]*\)$|\1|p' "$src")
	dir=$out/$name
	rm -rf "$dir"
	mkdir -p "$dir"
	cp "$src" "$dir/kmcl_cf.rs"
	echo "obj-m := kmcl_cf.o" >"$dir/Kbuild"
	# The wrapper is included by a path relative to the copy.
	sed -i "s|#\[path = \"[./]*include/kmcl/rust/kmcl.rs\"\]|#[path = \"$top/include/kmcl/rust/kmcl.rs\"]|" "$dir/kmcl_cf.rs"
	log=$dir/build.log
	if make -C "$KDIR" LLVM="${LLVM:--19}" RUSTC="${RUSTC:-/usr/bin/rustc}" \
		M="$dir" KBUILD_EXTRA_SYMBOLS="$top/Module.symvers" modules >"$log" 2>&1; then
		echo "compile-fail: $name compiled, but must not ($expect expected)"
		fails=$((fails + 1))
	elif [ -z "$expect" ] || ! grep -q "error\[$expect\]" "$log"; then
		echo "compile-fail: $name failed without error[$expect]:"
		grep -m 5 '^error' "$log" | sed 's/^/    /'
		fails=$((fails + 1))
	else
		echo "compile-fail: $name refused with error[$expect], as it must be"
	fi
done
exit $((fails > 0))
