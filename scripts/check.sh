#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check`: every kmcl test, ending with "N passed, N failed".
#
#   1. host: cargo test of the protocol layer (each test counts), the fuzz
#      targets, the counting plugin's classifier (tools/count)
#   2. style: rustfmt and checkpatch.pl on our sources
#   3. build: test kernel (cached), kmcl modules with warnings as errors,
#      and the same under clippy (CLIPPY=1)
#   4. vm: the kselftest suite (with KUnit results) in QEMU, plus a scan of
#      the kernel log for oops/BUG/WARNING/KASAN/lockdep/kmemleak reports
#
# Logs are kept in out/.  Exits non-zero on any failure.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
mkdir -p out
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
CARGO=/usr/bin/cargo
KFLAVOUR=${KFLAVOUR:-debug}

passed=0
failed=0
skipped=0
step() { printf '\n== %s\n' "$*"; }
result() { # NAME STATUS
	if [ "$2" -eq 0 ]; then
		passed=$((passed + 1)); echo "PASS $1"
	else
		failed=$((failed + 1)); echo "FAIL $1"
	fi
}
# A step that stops the run early (the kernel or a module does not build)
# leaves the VM suite unrun: say how many tests that hides, from the last
# complete run on this machine ($KMCL_CACHE/check-vm-tests).
KMCL_CACHE=${KMCL_CACHE:-$HOME/.cache/kmcl}
vm_count_file=$KMCL_CACHE/check-vm-tests
vm_ran=0
finish() {
	local line="$passed passed, $failed failed"
	[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
	if [ "$vm_ran" -eq 0 ]; then
		echo
		if [ -s "$vm_count_file" ]; then
			echo "NOT RUN: the VM suite ($(cat "$vm_count_file") tests in the last complete run on this machine)"
		else
			echo "NOT RUN: the VM suite (no complete run on this machine to count its tests)"
		fi
	fi
	echo
	echo "$line"
	[ "$failed" -eq 0 ]
	exit
}

step "host: cargo test (rust/host: the protocol layer built for the host)"
$CARGO test --manifest-path rust/host/Cargo.toml 2>&1 | tee out/host-test.log
host_rc=${PIPESTATUS[0]}
read -r hp hf < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' out/host-test.log)
passed=$((passed + hp))
failed=$((failed + hf))
if [ "$host_rc" -ne 0 ] && [ "$hf" -eq 0 ]; then
	result "host: cargo test ran (build failed?)" 1
fi

step "host: fuzz targets: corpus replay plus ${KMCL_FUZZ_SECONDS:-10} s each (make fuzz runs 300 s)"
while read -r line; do
	echo "$line"
	case "$line" in
	"PASS "*) passed=$((passed + 1)) ;;
	"FAIL "*) failed=$((failed + 1)) ;;
	esac
done < <(scripts/fuzz.sh "${KMCL_FUZZ_SECONDS:-10}" 2>&1)

step "host: the counting plugin (tools/count: make bench's per-packet counts)"
# Its instruction classes on known encodings, and the plugin itself builds
# (QEMU loads it only in make bench).
if cc -O2 -Wall -Wextra -Werror -o out/count-classify-test tools/count/classify_test.c &&
	out/count-classify-test; then
	result "count plugin: instruction classes of known encodings" 0
else
	result "count plugin: instruction classes of known encodings" 1
fi
cc -O2 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden \
	-o out/kmcl_count.so tools/count/kmcl_count.c
result "count plugin: builds" $?

step "style: rustfmt --check"
rustfmt_out=$(git ls-files -co --exclude-standard '*.rs' | xargs /usr/bin/rustfmt --check --color never --edition 2021 2>&1)
rc=$?
[ -n "$rustfmt_out" ] && echo "$rustfmt_out" | head -40
result "rustfmt: all Rust sources formatted" $rc

step "build: test kernel ($KFLAVOUR)"
if ! scripts/kernel.sh build "$KFLAVOUR"; then
	result "test kernel builds" 1
	finish
fi
KDIR=$(scripts/kernel.sh kdir "$KFLAVOUR")
KSRC=$(scripts/kernel.sh src "$KFLAVOUR")
export KDIR KSRC

step "style: checkpatch.pl on C sources"
# rust/glue/exports.c exports functions defined in Rust, so its exports
# cannot follow their definitions (checkpatch's EXPORT_SYMBOL rule).  The
# trace header uses TRACE_EVENT's customary layout (TP_PROTO on its own
# line, "TP_STRUCT__entry(" ending a line), which --strict flags as checks.
# rust/host/linux-ring/shim/ is user-space code standing in for kernel
# facilities (typedefs, barriers, locks) for the host build of Linux's ring
# code: it defines what checkpatch expects kernel code to use.
cfiles=$(git ls-files -co --exclude-standard '*.c' '*.h' |
	grep -v -e '^rust/glue/exports.c$' -e '^rust/glue/kmcl_trace.h$' \
		-e '^rust/host/linux-ring/shim/')
{
	perl "$KSRC/scripts/checkpatch.pl" --no-tree --quiet --show-types --strict \
		--ignore SPDX_LICENSE_TAG -f $cfiles &&
	perl "$KSRC/scripts/checkpatch.pl" --no-tree --quiet --show-types --strict \
		--ignore SPDX_LICENSE_TAG,EXPORT_SYMBOL -f rust/glue/exports.c &&
	perl "$KSRC/scripts/checkpatch.pl" --no-tree --quiet --show-types --strict \
		--ignore SPDX_LICENSE_TAG,PARENTHESIS_ALIGNMENT,OPEN_ENDED_LINE \
		-f rust/glue/kmcl_trace.h
}
result "checkpatch: C glue clean" $?

# The public header's kernel-doc must parse without a warning, and every
# exported function must have a full kernel-doc comment (kernel-doc skips a
# one-line "/** name() - ... */" silently: count what it renders).
kdoc_out=$("$KSRC/scripts/kernel-doc" -none -Wall include/kmcl/kmcl.h 2>&1)
[ -n "$kdoc_out" ] && echo "$kdoc_out" | head -20
result "kernel-doc -Wall: include/kmcl/kmcl.h clean" "$([ -z "$kdoc_out" ]; echo $?)"
exported=$(sed -n 's/^EXPORT_SYMBOL_NS_GPL(\([a-z0-9_]*\),.*/\1/p' rust/glue/exports.c | sort)
documented=$("$KSRC/scripts/kernel-doc" -rst include/kmcl/kmcl.h 2>/dev/null |
	sed -n 's/^\.\. c:function:: [^(]*[ *]\([a-z_][a-z0-9_]*\) *(.*/\1/p' | sort)
undocumented=$(comm -23 <(echo "$exported") <(echo "$documented"))
[ -n "$undocumented" ] && echo "exported without a kernel-doc comment: $undocumented"
result "kernel-doc: all $(echo "$exported" | wc -l) exported functions documented in full" \
	"$([ -z "$undocumented" ] && [ -n "$exported" ]; echo $?)"

step "build: clippy (CLIPPY=1, warnings are errors)"
make --no-print-directory KDIR="$KDIR" KRUSTFLAGS=-Dwarnings clippy >out/clippy.log 2>&1
rc=$?
grep -qi 'warning' out/clippy.log && rc=1
[ "$rc" -ne 0 ] && tail -40 out/clippy.log
result "clippy: kmcl builds clippy-clean" $rc

step "build: kmcl.ko, its test build kmcl_kunit.ko, the samples, the benchmark and Hyper-V smoke modules (warnings are errors)"
# Exported: the kselftest install (scripts/ksft.sh, run by vm.sh) builds
# the same modules again and must find them up to date.
export KCFLAGS=-Werror KRUSTFLAGS=-Dwarnings
make --no-print-directory KDIR="$KDIR" modules kunit-module samples bench-module hyperv-module 2>&1 |
	tee out/modules.log
rc=${PIPESTATUS[0]}
# objtool and modpost report problems as warnings that -Werror misses.
if grep -qi 'warning' out/modules.log; then
	grep -i 'warning' out/modules.log | head -20
	rc=1
fi
result "build: kmcl.ko, kmcl_kunit.ko, the samples, kmcl_bench and kmcl_hv_smoke build warning-free against the test kernel" $rc
[ "$rc" -eq 0 ] || finish

step "build: a driver as Documentation/api.rst says (scripts/api_example.sh)"
scripts/api_example.sh >out/api-example.log 2>&1
rc=$?
[ "$rc" -ne 0 ] && tail -20 out/api-example.log
result "api.rst: its build command builds a module that uses kmcl, as pasted" $rc

step "build: misuses of the Rust wrapper must not compile (scripts/compile_fail.sh)"
scripts/compile_fail.sh >out/compile-fail.log 2>&1
rc=$?
sed 's/^/  /' out/compile-fail.log
result "compile-fail: $(ls tests/compile-fail/*.rs | wc -l) lifetime misuses refused by the compiler with the expected error" $rc

step "build: the Rust wrapper's documentation examples (scripts/doc_examples.sh)"
scripts/doc_examples.sh >out/doc-examples.log 2>&1
rc=$?
sed 's/^/  /' out/doc-examples.log
result "doc examples: every example in the wrapper's documentation compiles" $rc

step "abi: abi.rs against a bindgen run over kmcl.h (scripts/abi_check.py)"
scripts/abi_check.py --self-test >out/abi-check.log 2>&1
rc=$?
sed 's/^/  /' out/abi-check.log
result "abi: every function, callback type and structure of kmcl.h has the same signature in abi.rs" $rc

step "docs: sphinx-build -W (make docs)"
make --no-print-directory docs KSRC="$KSRC" >out/docs.log 2>&1
rc=$?
[ "$rc" -ne 0 ] && tail -20 out/docs.log
result "docs: Documentation/ and the API reference build warning-free" $rc

step "docs: rustdoc of the Rust wrapper (make rustdoc)"
make --no-print-directory rustdoc KDIR="$KDIR" >out/rustdoc.log 2>&1
rc=$?
grep -qi 'warning' out/rustdoc.log && rc=1
[ "$rc" -ne 0 ] && tail -20 out/rustdoc.log
result "rustdoc: the Rust wrapper's docs build warning-free, every public item documented with an example" $rc

step "vm: kselftest suite in QEMU (TCG; logs in out/vm-check/)"
scripts/vm.sh check
vm_rc=$?
python3 scripts/ktap_report.py out/vm-check/results.ktap out/vm-check/console.log |
	tee out/vm-report.txt
read -r vp vf vs < <(sed -n 's/^vm: \([0-9]*\) passed, \([0-9]*\) failed\(, \([0-9]*\) skipped\)\?$/\1 \2 \4/p' out/vm-report.txt)
vm_ran=1
total=$(sed -n 's/.*Testing complete\. Ran \([0-9]*\) tests.*/\1/p' out/vm-report.txt | tail -n 1)
[ "$vm_rc" -eq 0 ] && [ -n "$total" ] && mkdir -p "$KMCL_CACHE" && echo "$total" >"$vm_count_file"
passed=$((passed + ${vp:-0}))
failed=$((failed + ${vf:-1}))
skipped=$((skipped + ${vs:-0}))
if [ "$vm_rc" -ne 0 ]; then
	result "vm: QEMU exited cleanly (status $vm_rc)" 1
fi
finish
