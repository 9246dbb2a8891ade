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
#     kmcl_echo_vsc (Rust) opens it and checks that every packet comes back
#     byte for byte.
#  3. Everything is unloaded again.

say() { echo "[kmcl-demo] $*"; }
PACKETS=${PACKETS:-5000}

say "kernel $(uname -r); VMBus host: $([ -d /sys/bus/vmbus ] && echo present || echo "none (loopback VMBus only)")"
say "insmod /kmcl/kmcl.ko (runs kmcl's KUnit suites on the loopback VMBus)"
insmod /kmcl/kmcl.ko || { say "insmod failed"; exit 1; }
for s in /sys/kernel/debug/kunit/kmcl_*; do
	[ -e "$s/results" ] || continue
	counts=$(sed -n 's/.*# [a-z_]*: pass:\([0-9]*\) fail:\([0-9]*\).*/\1 passed, \2 failed/p' "$s/results" | tail -n 1)
	say "  $(basename "$s"): $counts"
done
dmesg | grep -E 'kmcl: (loaded|echo both ways)' | sed 's/^/    /'

say "insmod kmcl_echo_vsp.ko (C echo server: offers the echo interface)"
insmod /kmcl/kmcl_echo_vsp.ko || { say "insmod failed"; exit 1; }
say "insmod kmcl_echo_vsc.ko packets=$PACKETS (Rust echo client: sends and checks)"
start=$(date +%s)
insmod /kmcl/kmcl_echo_vsc.ko packets="$PACKETS" || { say "insmod failed"; exit 1; }
say "  took $(( $(date +%s) - start )) s (QEMU TCG, KASAN kernel)"
say "modules holding kmcl: $(ls /sys/module/kmcl/holders | tr '\n' ' ')"
say "rmmod kmcl_echo_vsc kmcl_echo_vsp"
rmmod kmcl_echo_vsc && rmmod kmcl_echo_vsp || { say "rmmod failed"; exit 1; }
dmesg | grep -E 'kmcl_echo_(vsp|vsc):' | sed 's/^/    /'
say "rmmod kmcl"
rmmod kmcl || { say "rmmod failed"; exit 1; }
dmesg | grep 'kmcl: unloaded' | tail -n 1 | sed 's/^/    /'
say "done"
