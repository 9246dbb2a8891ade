#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot kmcl's test kernel in QEMU (TCG: these machines have no usable KVM)
# with a busybox initramfs holding the built modules and the tests.
#
#   scripts/vm.sh check   run the kselftest suite; KTAP goes to ttyS1
#   scripts/vm.sh run     run the demo on the console
#   scripts/vm.sh bench   run the in-kernel benchmark on the console
#   scripts/vm.sh count   the benchmark's counted windows under QEMU's
#                         counting plugin (scripts/count.sh; VM_PLUGIN=.so)
#   scripts/vm.sh shell   an interactive shell on this terminal (make shell)
#
# Needs KDIR (kernel build dir) and KSRC (its source: the kselftest
# framework, see scripts/ksft.sh).
# KMCL_TESTS=a.sh,b.sh runs only those kselftest programs (check mode);
# KSFT_INSTALL=DIR boots with that kselftest installation.
# KMCL_APPEND adds words to the kernel command line (for experiments, e.g.
# kmemleak=off to see what kmemleak costs).  VM_PERF=1 puts the host's perf
# into the image (see BENCH_PROFILE in tests/vm/bench.sh).
# Logs are kept in out/vm-<mode>/: console.log (kernel console, ttyS0) and,
# for check, results.ktap (the guest's test output, ttyS1).
# Exit status: QEMU's, or 124 when the VM did not finish within VM_TIMEOUT.
set -euo pipefail

mode=${1:?usage: vm.sh check|run|bench|count|shell}
top=$(cd "$(dirname "$0")/.." && pwd)
: "${KDIR:?KDIR must name the kernel build directory}"
: "${KSRC:?KSRC must name the kernel source directory}"
VM_TIMEOUT=${VM_TIMEOUT:-900}
VM_MEM=${VM_MEM:-1G}
out=$top/out/vm-$mode
root=$out/initramfs

rm -rf "$out"
mkdir -p "$root"/{bin,usr/bin,dev,proc,sys,tmp,tests}
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$top/tests/vm/init" "$root/init"
cp "$top"/tests/vm/*.sh "$root/tests/"
# The kernel's kselftest runner bounds each test with /usr/bin/timeout
# --foreground (GNU); busybox's timeout has no --foreground.
install -m 0755 "$top/tests/vm/timeout" "$root/usr/bin/timeout"
# kmcl's kselftest, installed the kernel's way (with the modules it loads):
# /kselftest/run_kselftest.sh, /kselftest/kmcl/modules/*.ko.
# KSFT_INSTALL=DIR: use a kselftest installation made elsewhere (e.g. from a
# kernel tree, Documentation/testing.rst) instead.
if [ -n "${KSFT_INSTALL:-}" ]; then
	cp -a "$KSFT_INSTALL" "$root/kselftest"
else
	"$top/scripts/ksft.sh" "$root/kselftest" >"$out/ksft-install.log" 2>&1 ||
		{ tail -20 "$out/ksft-install.log" >&2; echo "vm.sh: installing the kselftest failed" >&2; exit 1; }
fi
[ -f "$root/kselftest/kmcl/modules/kmcl.ko" ] || { echo "vm.sh: kmcl.ko is not built" >&2; exit 1; }
ln -s kselftest/kmcl/modules "$root/kmcl"
# VM_PERF=1: the host's perf and its libraries, for profiling in the VM.
if [ "${VM_PERF:-0}" = 1 ]; then
	perf=$(command -v perf) || { echo "vm.sh: VM_PERF=1 needs perf (linux-perf)" >&2; exit 1; }
	for f in "$perf" $(ldd "$perf" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
	done
	[ -e "$root/lib64" ] || ln -s lib "$root/lib64"
fi
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initramfs.cpio.gz"

# CPU (VM_CPU overrides): QEMU's "max", and for the benchmark "max"
# without FSRM.  With FSRM the kernel's memcpy is `rep movsb`, which TCG
# executes a byte at a time (about 3 times slower than the kernel's
# unrolled copy at 64 KiB, Documentation/performance.rst); real CPUs with
# FSRM do not, so the benchmark hides it and every copy in its VM --
# kmcl's ring payload, hv_vmbus's -- is the unrolled one.  The debug
# kernel (check, run, shell) keeps "max": booted without FSRM it met an
# early-boot KASAN report (an interrupt during identify_cpu) in 3 of 7
# test boots here, against none of 9 with "max".
cpu=max
case $mode in bench | count) cpu=max,fsrm=off ;; esac
qemu=(qemu-system-x86_64 -machine q35,accel=tcg -cpu "${VM_CPU:-$cpu}" -m "$VM_MEM" -smp 2
	-kernel "$KDIR/arch/x86/boot/bzImage" -initrd "$out/initramfs.cpio.gz"
	-display none -monitor none -no-reboot)
# panic=-1 reboot=t: a panic resets the VM at once (a triple fault always
# works, other reboot methods can hang under TCG) and -no-reboot makes QEMU
# exit.  Only kmcl's KUnit suites run: the kernel's own would add a minute.
cmdline="console=ttyS0 panic=-1 reboot=t kunit.filter_glob=kmcl_* KMCL_VM=$mode ${KMCL_APPEND:-}"
# count: the benchmark (tests/vm/bench.sh, BENCH_COUNT) under the counting
# plugin, which writes what ran between the benchmark's markers.
if [ "$mode" = count ]; then
	: "${VM_PLUGIN:?VM_PLUGIN must name the counting plugin (scripts/count.sh builds it)}"
	qemu+=(-plugin "$VM_PLUGIN,out=$out/counts.raw")
	cmdline="console=ttyS0 panic=-1 reboot=t KMCL_VM=bench ${KMCL_APPEND:-}"
fi
# swiotlb=force (check mode): every DMA mapping bounces, as in an isolated
# (confidential) guest, so the stand-in host's isolated mode moves external
# data through real swiotlb bounce buffers (the VM has no other DMA device).
[ "$mode" = check ] && cmdline="$cmdline swiotlb=force"
# KMCL_TESTS=a.sh,b.sh: only those kselftest programs (check mode).
[ -n "${KMCL_TESTS:-}" ] && cmdline="$cmdline KMCL_TESTS=$KMCL_TESTS"

set +e
if [ "$mode" = shell ]; then
	echo "[vm] booting the test VM (TCG: about a minute); poweroff -f or Ctrl-A X leaves"
	"${qemu[@]}" -append "$cmdline" -serial mon:stdio
	rc=$?
elif [ "$mode" != check ]; then
	timeout -k 10 "$VM_TIMEOUT" "${qemu[@]}" -append "$cmdline" \
		-serial stdio </dev/null | tee "$out/console.log"
	rc=${PIPESTATUS[0]}
else
	# A kernel report logged while booting, before the tests began, comes
	# from the kernel under emulation, not from kmcl -- but it disables lock
	# debugging for the rest of the run. Keep that log and boot once more;
	# a second such boot fails the run (ktap_report.py sees the report).
	for attempt in 1 2; do
		: >"$out/results.ktap"
		timeout -k 10 "$VM_TIMEOUT" "${qemu[@]}" -append "$cmdline" \
			-serial "file:$out/console.log" -serial "file:$out/results.ktap" </dev/null &
		qpid=$!
		# Show each test's top-level result as it arrives; tail exits with QEMU.
		tail -n +1 -F --pid="$qpid" "$out/results.ktap" 2>/dev/null |
			grep --line-buffered -E '^(ok|not ok) |^Bail out' | sed -u 's/^/[vm] /' &
		wait "$qpid"
		rc=$?
		wait
		if [ "$attempt" -eq 1 ] &&
			boot=$(python3 "$top/scripts/ktap_report.py" --boot-reports "$out/console.log"); then
			break
		fi
		[ "$attempt" -eq 2 ] && break
		echo "[vm] the kernel reported a problem while booting, before any kmcl code ran:"
		echo "$boot" | head -3 | sed 's/^/[vm]   /'
		echo "[vm] log kept in out/vm-$mode/console-boot-report.log; booting again"
		mv "$out/console.log" "$out/console-boot-report.log"
	done
fi
set -e
[ "$rc" -eq 124 ] && echo "vm.sh: the VM did not finish within ${VM_TIMEOUT}s" >&2
exit "$rc"
