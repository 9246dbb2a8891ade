#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: load kmcl in the VM and show what it does.

say() { echo "[kmcl-demo] $*"; }

say "kernel $(uname -r); VMBus bus registered: $([ -d /sys/bus/vmbus ] && echo yes || echo no)"
say "insmod /kmcl/kmcl.ko"
insmod /kmcl/kmcl.ko || { say "insmod failed"; exit 1; }
say "kmcl in /proc/modules: $(grep '^kmcl ' /proc/modules)"
for s in /sys/kernel/debug/kunit/kmcl_*; do
	[ -e "$s/results" ] || continue
	say "KUnit suite $(basename "$s"): $(tail -n 1 "$s/results")"
done
say "rmmod kmcl"
rmmod kmcl || { say "rmmod failed"; exit 1; }
say "kernel log from kmcl:"
dmesg | grep 'kmcl' | sed 's/^/    /'
say "done"
