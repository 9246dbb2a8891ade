#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: kmcl's benchmarks (not part of `make check`).
#
#  1. The host ring benchmark (criterion, rust/host/benches/ring.rs).
#  2. The in-kernel benchmark (bench/bench_main.rs) in the VM, on the
#     non-debug ("fast") test kernel: KASAN and kmemleak would measure
#     themselves.  Built on first use (about 6 to 13 minutes on 2 cores), cached.
#  3. kmcl's ring beside Linux's ring code on the host (rust/host/linux-ring:
#     drivers/hv/ring_buffer.c from that kernel's source, built for user
#     space), out/bench/linux-ring.csv.
#  4. scripts/bench_report.py: table, out/bench/results.csv,
#     out/bench/throughput.svg, out/bench/report.txt.
#  5. scripts/count.sh: per-packet counts of instructions, atomics, fences,
#     indirect calls and spinlock calls on kmcl's full path and on the
#     minimal hv_vmbus driver (QEMU's TCG plugin tools/count/kmcl_count.c),
#     out/bench/counts.txt (appended to report.txt) and counts.csv.
#
# BENCH_PACKETS sets the packets per in-VM measurement (default 100000).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
mkdir -p out/bench

echo "[bench] host ring benchmark (criterion; about 2 minutes)"
# The memcpy baseline uses glibc's vector copy at every size: on these
# (virtualised) CPUs its `rep movsb` path for large copies is ~16x slower
# (measured 1.4 vs 22 GiB/s at 64 KiB), which would flatter the ring.
GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2147483647 /usr/bin/cargo bench --manifest-path rust/host/Cargo.toml --bench ring -- --noplot 2>&1 |
	tee out/bench/host.log | grep -E '^(ring|memcpy)|time:' | sed 's/^/[bench]   /'

echo "[bench] test kernel without debugging options (fast flavour)"
scripts/kernel.sh build fast
KDIR=$(scripts/kernel.sh kdir fast)
KSRC=$(scripts/kernel.sh src fast)
export KDIR KSRC
echo "[bench] kmcl's ring beside Linux's ring code (user-space build of $KSRC/drivers/hv/ring_buffer.c)"
KMCL_LINUX_SRC=$KSRC GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2147483647 \
	/usr/bin/cargo run --quiet --release --manifest-path rust/host/linux-ring/Cargo.toml -- out/bench \
	2>out/bench/linux-ring.log | sed 's/^/[bench]   /' ||
	{ tail -20 out/bench/linux-ring.log; exit 1; }
echo "[bench] building kmcl and kmcl_bench against $KDIR"
make --no-print-directory KDIR="$KDIR" modules bench-module >out/bench/build.log 2>&1 ||
	{ tail -20 out/bench/build.log; exit 1; }
echo "[bench] in-kernel benchmark in the VM (QEMU TCG)"
VM_TIMEOUT=${VM_TIMEOUT:-1800} KMCL_APPEND="BENCH_PACKETS=${BENCH_PACKETS:-100000}" \
	scripts/vm.sh bench | grep --line-buffered -E 'RESULT|kmcl-bench' | sed -u 's/^/[bench]   /'
# kmcl.ko was built for the fast kernel: the next `make check` rebuilds it.
echo
python3 scripts/bench_report.py --criterion rust/host/target/criterion \
	--console out/vm-bench/console.log --out out/bench
echo "[bench] per-packet counts in the VM under QEMU's counting plugin (about 2 minutes)"
scripts/count.sh
{ echo; cat out/bench/counts.txt; } >>out/bench/report.txt
echo "[bench] results: out/bench/ (report.txt, results.csv, throughput.svg, counts.txt, counts.csv)"
