#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make bench` in the VM: load kmcl without its KUnit suites, then the
# benchmark module, which logs "kmcl_bench: RESULT ..." lines while it
# loads.

say() { echo "[kmcl-bench] $*"; }

[ -w /sys/module/kunit/parameters/filter_glob ] &&
	echo kmcl_no_suite >/sys/module/kunit/parameters/filter_glob
say "kernel $(uname -r)"
insmod /kmcl/kmcl.ko || { say "insmod kmcl.ko failed"; exit 1; }
# BENCH_COUNT=N: only the counted windows (scripts/count.sh, which runs the
# VM with QEMU's counting plugin): the module symbols first, for
# scripts/count_report.py to name the code the plugin counted.
if [ -n "${BENCH_COUNT:-}" ]; then
	# The module announces itself and waits 5 s before its first window:
	# its symbols and kmcl's are read meanwhile.
	insmod /kmcl/kmcl_bench.ko count="$BENCH_COUNT" &
	pid=$!
	i=0
	until dmesg | grep -q 'COUNT start'; do
		i=$((i + 1))
		[ "$i" -gt 600 ] && break
		sleep 0.1
	done
	grep -E '^[0-9a-f]+ [tT] ' /proc/kallsyms | grep -E '\[(kmcl|kmcl_bench)\]$' |
		sed 's/^/KSYM /'
	grep -E ' T (_stext|_text)$' /proc/kallsyms | sed 's/^/KSYM /'
	wait "$pid"
	rc=$?
	rmmod kmcl_bench 2>/dev/null
	rmmod kmcl
	exit "$rc"
fi
# BENCH_PROFILE=N: only the ring and the full path without completions, N
# packets of BENCH_SIZE bytes (default 64); with VM_PERF=1 on the host sampled by perf, whose
# report goes to the console.  Nothing else runs.
if [ -n "${BENCH_PROFILE:-}" ]; then
	PATH=$PATH:/usr/bin
	if command -v perf >/dev/null; then
		say "profiling the 64-B full path without completions ($BENCH_PROFILE packets)"
		perf record -q -e cpu-clock -F 4000 -a -g -o /tmp/perf.data -- \
			insmod /kmcl/kmcl_bench.ko profile="$BENCH_PROFILE" profile_size="${BENCH_SIZE:-64}"
		rc=$?
		perf report -i /tmp/perf.data --stdio --no-children --sort sym \
			--percent-limit 0.5 -g none 2>/dev/null | grep -v '^$'
		perf report -i /tmp/perf.data --stdio --children --sort sym \
			--percent-limit 0.4 -g none 2>/dev/null | grep -v '^$'
	else
		insmod /kmcl/kmcl_bench.ko profile="$BENCH_PROFILE" profile_size="${BENCH_SIZE:-64}"
		rc=$?
	fi
	rmmod kmcl_bench 2>/dev/null
	rmmod kmcl
	exit "$rc"
fi
# BENCH_MICRO=N: only the cost of primitives under emulation.
if [ -n "${BENCH_MICRO:-}" ]; then
	insmod /kmcl/kmcl_bench.ko micro="$BENCH_MICRO"
	rc=$?
	rmmod kmcl_bench 2>/dev/null
	rmmod kmcl
	exit "$rc"
fi
say "running kmcl_bench (a few minutes under emulation)"
insmod /kmcl/kmcl_bench.ko packets="${BENCH_PACKETS:-100000}"
rc=$?
rmmod kmcl_bench 2>/dev/null

# Memory per channel pair with default settings (4+4 ring pages): what
# 64 connected pairs take, from /proc/meminfo.
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
sync
free0=$(meminfo MemFree) slab0=$(meminfo Slab) vm0=$(meminfo VmallocUsed)
if insmod /kmcl/kmcl_bench.ko hold=64; then
	free1=$(meminfo MemFree) slab1=$(meminfo Slab) vm1=$(meminfo VmallocUsed)
	echo "kmcl-bench: MEMORY pairs=64 memfree_kb=$((free0 - free1)) slab_kb=$((slab1 - slab0)) vmalloc_kb=$((vm1 - vm0))" >/dev/kmsg
	rmmod kmcl_bench
fi
rmmod kmcl
if [ "$rc" -eq 0 ] && dmesg | grep -q 'kmcl_bench: RESULT done'; then
	say "done"
	exit 0
fi
say "the benchmark failed (insmod status $rc)"
exit 1
