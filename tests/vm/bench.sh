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
say "running kmcl_bench (a few minutes under emulation)"
insmod /kmcl/kmcl_bench.ko packets="${BENCH_PACKETS:-20000}"
rc=$?
rmmod kmcl_bench 2>/dev/null
rmmod kmcl
if [ "$rc" -eq 0 ] && dmesg | grep -q 'kmcl_bench: RESULT done'; then
	say "done"
	exit 0
fi
say "the benchmark failed (insmod status $rc)"
exit 1
