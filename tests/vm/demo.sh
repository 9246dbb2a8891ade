#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: load kmcl in the VM and show what it does.  Loading kmcl runs
# its KUnit suites, which drive channel pairs over the in-guest loopback
# VMBus (lifecycle, echo traffic both ways, quotas, synchronous requests,
# deferral, failure handling); the demo summarises them and shows kmcl's
# own log lines, including the traffic counters.

say() { echo "[kmcl-demo] $*"; }

say "kernel $(uname -r); VMBus host: $([ -d /sys/bus/vmbus ] && echo present || echo "none (loopback VMBus only)")"
say "insmod /kmcl/kmcl.ko (runs kmcl's KUnit suites on the loopback VMBus)"
insmod /kmcl/kmcl.ko || { say "insmod failed"; exit 1; }
for s in /sys/kernel/debug/kunit/kmcl_*; do
	[ -e "$s/results" ] || continue
	counts=$(sed -n 's/.*# [a-z_]*: pass:\([0-9]*\) fail:\([0-9]*\).*/\1 passed, \2 failed/p' "$s/results" | tail -n 1)
	say "  $(basename "$s"): $counts"
done
say "kmcl's log:"
dmesg | grep -E 'kmcl: (loaded|echo|a driver|unloaded)' | sed 's/^/    /'
say "rmmod kmcl"
rmmod kmcl || { say "rmmod failed"; exit 1; }
dmesg | grep 'kmcl: unloaded' | sed 's/^/    /'
say "done"
