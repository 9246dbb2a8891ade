#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Per-packet counts of instructions, atomics, fences, indirect calls and
# spinlock calls on kmcl's full path and on the minimal hv_vmbus driver
# (bench/hv_driver.c), at 64 B and 4 KiB, with and without completion
# requests: the benchmark's counted windows (kmcl_bench count=N) in the VM
# under QEMU's TCG plugin tools/count/kmcl_count.c.  Part of `make bench`
# (after the timed runs: the plugin slows the VM down); alone:
#
#   KDIR=... KSRC=... scripts/count.sh     (modules built against KDIR)
#
# BENCH_COUNT sets the packets per window (default 20000).  Output:
# out/bench/counts.txt and counts.csv.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
: "${KDIR:?KDIR must name the kernel build directory}"
mkdir -p out/count out/bench
cc -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden \
	-o out/count/kmcl_count.so tools/count/kmcl_count.c
VM_PLUGIN=$top/out/count/kmcl_count.so VM_TIMEOUT=${VM_TIMEOUT:-1800} \
	KMCL_APPEND="nokaslr BENCH_COUNT=${BENCH_COUNT:-20000}" \
	scripts/vm.sh count | grep --line-buffered -E 'COUNT|kmcl-bench|count failed' |
	sed -u 's/^/[count]   /'
python3 scripts/count_report.py out/vm-count/counts.raw out/vm-count/console.log \
	"$KDIR/System.map" out/bench/counts.txt out/bench/counts.csv | sed 's/^/[count]   /'
