#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: load kmcl in the VM and show it working.
#
#  1. insmod kmcl.ko, which runs kmcl's KUnit suites: channel pairs over the
#     in-guest loopback VMBus (lifecycle, echo traffic both ways, quotas,
#     synchronous requests, deferral, failures, the exported C ABI).
#  2. Two separate driver modules use kmcl as any VMBus driver would: the
#     echo server kmcl_echo_vsp (C) offers an interface, the echo client
#     kmcl_echo_vsc (Rust) opens it; each sends PACKETS packets of random
#     sizes to the other and checks that every one comes back byte for byte.
#  3. Everything is unloaded again.

say() { echo "[kmcl-demo] $*"; }
PACKETS=${PACKETS:-20000}

say "kernel $(uname -r); VMBus host: $([ -d /sys/bus/vmbus ] && echo present || echo "none (loopback VMBus only)")"
say "insmod /kmcl/kmcl.ko (runs kmcl's KUnit suites on the loopback VMBus)"
insmod /kmcl/kmcl.ko || { say "insmod failed"; exit 1; }
for s in /sys/kernel/debug/kunit/kmcl_*; do
	[ -e "$s/results" ] || continue
	counts=$(sed -n 's/.*# [a-z_]*: pass:\([0-9]*\) fail:\([0-9]*\).*/\1 passed, \2 failed/p' "$s/results" | tail -n 1)
	say "  $(basename "$s"): $counts"
done
dmesg | grep -E 'kmcl: (loaded|echo both ways)' | sed 's/^/    /'

say "insmod kmcl_echo_vsp.ko packets=$PACKETS (C echo server: offers the echo interface)"
insmod /kmcl/kmcl_echo_vsp.ko packets="$PACKETS" || { say "insmod failed"; exit 1; }
say "insmod kmcl_echo_vsc.ko packets=$PACKETS (Rust echo client: opens it; both send and check)"
insmod /kmcl/kmcl_echo_vsc.ko packets="$PACKETS" || { say "insmod failed"; exit 1; }
for _ in $(seq 60); do
	dmesg | grep -q 'kmcl_echo_vsp: [0-9]* of' && break
	sleep 1
done
say "modules holding kmcl: $(ls /sys/module/kmcl/holders | tr '\n' ' ')"
for d in /sys/kernel/debug/kmcl/*/; do
	say "debugfs: $d""state"
	sed 's/^/    /' "$d/state"
done
say "rmmod kmcl_echo_vsc kmcl_echo_vsp"
rmmod kmcl_echo_vsc && rmmod kmcl_echo_vsp || { say "rmmod failed"; exit 1; }
say "rmmod kmcl"
rmmod kmcl || { say "rmmod failed"; exit 1; }
dmesg | grep 'kmcl: unloaded' | tail -n 1 | sed 's/^/    /'
say "done"
