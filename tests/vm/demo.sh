#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: load kmcl in the VM and show it working.
#
#  1. insmod kmcl_kunit.ko (kmcl's test build), which runs kmcl's KUnit
#     suites: channel pairs over the in-guest loopback VMBus (lifecycle,
#     echo traffic both ways, quotas, synchronous requests, deferral,
#     failures, the exported C ABI); then the production kmcl.ko.
#  2. Two separate driver modules use kmcl as any VMBus driver would: the
#     echo server kmcl_echo_vsp (C) offers an interface, the echo client
#     kmcl_echo_vsc (Rust) opens it; each sends PACKETS packets of random
#     sizes to the other and checks that every one comes back byte for byte.
#     While they run, a live view prints each channel's counters and ring
#     fill from debugfs every second; kmcl's trace events are recorded.
#  3. A summary, the channels' debugfs state files and a trace excerpt.
#  4. A live update: the server is unloaded and loaded again while the
#     client has packets in flight.  Then both ends in Rust: the echo server
#     kmcl_echo_vsp_rs with the Rust client, PACKETS packets each way.
#  5. The network-style pair (kmcl_net_vsp, kmcl_net_vsc, both C): receive
#     and send buffers shared as GPADLs, three sub-channels the server
#     offers and the client opens, NET_FRAMES frames each way over the four
#     channels (transfer pages one way, page buffers the other), checked
#     byte for byte; each sub-channel's debugfs state.
#  6. The storage-style pair (kmcl_stor_vsp, kmcl_stor_vsc, both C): the
#     client writes the server's RAM disk and reads it back over four
#     channels, each request's data an MDL chain of scattered pages.
#     Everything is unloaded again.

say() { echo "[kmcl-demo] $*"; }
PACKETS=${PACKETS:-30000}
DBG=/sys/kernel/debug/kmcl
T=/sys/kernel/tracing

# now: seconds since boot, with hundredths.
now() { cut -d ' ' -f 1 /proc/uptime; }

# live ELAPSED: one line per channel from its debugfs state file.
live() {
	for d in "$DBG"/*/; do
		[ -e "$d/state" ] || continue
		awk -v n="$(basename "$d")" -v t="$1" '
			/^packets out:/ { po = $3 } /^packets in:/ { pi = $3 }
			/^completions in:/ { ci = $3 }
			/^sends awaiting completion:/ { aw = $4 }
			/^sends queued now:/ { q = $4 }
			/^outgoing ring:/ { os = $4; ou = $10 }
			/^incoming ring:/ { is = $4; iu = $10 }
			END {
				printf "[live %5.1fs] %-16s out %6d in %6d completions in %6d awaiting %3d queued %3d ring fill out %3d%% in %3d%%\n",
					t, n, po, pi, ci, aw, q, os ? ou * 100 / os : 0, is ? iu * 100 / is : 0
			}' "$d/state"
	done
}

# Kernel messages below error level go to the log only (the demo prints
# the relevant ones itself).
dmesg -n 4
say "kernel $(uname -r); VMBus host: $([ -d /sys/bus/vmbus/devices ] && [ -n "$(ls /sys/bus/vmbus/devices 2>/dev/null)" ] && echo present || echo "none (loopback VMBus only)")"
if [ -f /kmcl/kmcl_kunit.ko ]; then
	say "insmod /kmcl/kmcl_kunit.ko (kmcl's test build: runs its KUnit suites on the loopback VMBus)"
	insmod /kmcl/kmcl_kunit.ko || { say "insmod failed"; exit 1; }
	for s in /sys/kernel/debug/kunit/kmcl_*; do
		[ -e "$s/results" ] || continue
		counts=$(sed -n 's/.*# [a-z_]*: pass:\([0-9]*\) fail:\([0-9]*\).*/\1 passed, \2 failed/p' "$s/results" | tail -n 1)
		say "  $(basename "$s"): $counts"
	done
	rmmod kmcl_kunit
fi
say "insmod /kmcl/kmcl.ko (the production module: no tests in it)"
insmod /kmcl/kmcl.ko || { say "insmod failed"; exit 1; }
dmesg | grep -E 'kmcl: loaded' | tail -n 1 | sed 's/^/    /'

# Record kmcl's trace events (ftrace) while the samples run.
[ -d $T/events ] || mount -t tracefs nodev $T 2>/dev/null
if [ -d $T/events/kmcl ]; then
	echo 4096 >$T/buffer_size_kb
	: >$T/trace
	echo 1 >$T/events/kmcl/enable
fi

say "insmod kmcl_echo_vsp.ko packets=$PACKETS (C echo server: offers the echo interface)"
insmod /kmcl/kmcl_echo_vsp.ko packets="$PACKETS" || { say "insmod failed"; exit 1; }
say "insmod kmcl_echo_vsc.ko packets=$PACKETS (Rust echo client: opens it; both send and check)"
start=$(now)
insmod /kmcl/kmcl_echo_vsc.ko packets="$PACKETS" &
client=$!
# Live view until both flows are done (the client's insmod returns when
# its packets came back; the server logs when its own did).
for _ in $(seq 300); do
	sleep 1
	t=$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')
	live "$t"
	if ! kill -0 "$client" 2>/dev/null &&
		dmesg | grep -q 'kmcl_echo_vsp: [0-9]* of'; then
		break
	fi
done
wait "$client" || { say "the client failed"; exit 1; }
end=$(now)
[ -d $T/events/kmcl ] && echo 0 >$T/events/kmcl/enable

say "summary"
dmesg | grep -E 'kmcl_echo_vs[pc]: [0-9]+ of' | sed 's/^\[[ 0-9.]*\] /    /'
awk -v a="$start" -v b="$end" -v n="$PACKETS" 'BEGIN {
	printf "    %d packets each way and their completions in %.1f s: %d round trips/s (TCG-emulated VM, debug kernel)\n",
		n, b - a, 2 * n / (b - a) }'
say "modules holding kmcl: $(ls /sys/module/kmcl/holders | tr '\n' ' ')"
for d in "$DBG"/*/; do
	say "debugfs: $d""state"
	sed 's/^/    /' "$d/state"
done

if grep -q ' kmcl_' $T/trace 2>/dev/null; then
	say "trace excerpt (/sys/kernel/tracing, events/kmcl)"
	grep ' kmcl_state_change: ' $T/trace | head -n 12 | sed 's/^ *//; s/^/    /'
	grep -m 6 -E ' kmcl_packet_(sent|fetched): ' $T/trace | sed 's/^ *//; s/^/    /'
	echo "    ..."
	grep ' kmcl_batch_done: ' $T/trace | awk '
		{ for (i = 1; i <= NF; i++) if ($i ~ /^fetched=/) { f = substr($i, 9) + 0 } n++; s += f; if (f > m) m = f }
		END { if (n) printf "    receive runs: %d, packets per run: %.1f on average, %d at most\n", n, s / n, m }'
	echo "    events recorded: $(grep -c ' kmcl_' $T/trace) (budget hits: $(grep -c ' kmcl_budget_hit: ' $T/trace), quota hits: $(grep -c ' kmcl_quota_hit: ' $T/trace); the buffer keeps the newest)"
	: >$T/trace
fi

say "rmmod kmcl_echo_vsc kmcl_echo_vsp"
rmmod kmcl_echo_vsc && rmmod kmcl_echo_vsp || { say "rmmod failed"; exit 1; }
# Live update (Documentation/save-restore.rst): the server is replaced
# while the client has packets in flight.
say "live update: insmod kmcl_echo_vsp.ko hold=1 live_update=1 (holds what the client sends)"
insmod /kmcl/kmcl_echo_vsp.ko hold=1 live_update=1 || { say "insmod failed"; exit 1; }
insmod /kmcl/kmcl_echo_vsc.ko packets=2000 window=16 stall_ms=60000 &
client=$!
echo "kmcl-demo: live update" >/dev/kmsg
n=0
until cat $DBG/kmcl_echo_vsp.*/state 2>/dev/null | grep -qx 'packets in: 16' || [ $n -ge 30 ]; do
	sleep 1
	n=$((n + 1))
done
live "$(now)"
say "rmmod kmcl_echo_vsp: it saves the 16 packets it holds; the client stays connected"
rmmod kmcl_echo_vsp || { say "rmmod failed"; exit 1; }
dmesg | grep 'kmcl_echo_vsp: saved' | tail -n 1 | sed 's/^/    /'
live "$(now)"
say "insmod kmcl_echo_vsp.ko live_update=1: restores them and takes the connection over"
insmod /kmcl/kmcl_echo_vsp.ko live_update=1 || { say "insmod failed"; exit 1; }
wait $client || { say "the client's exchange failed"; exit 1; }
since_lu() { dmesg | awk 'f; index($0, "kmcl-demo: live update") { f = 1 }'; }
since_lu | grep -E 'kmcl_echo_vsp: restoring|kmcl_echo_vsc: 2000 of' | sed 's/^/    /'
since_lu | grep -q 'kmcl_echo_vsc: channel closed' && { say "the client saw its channel close"; exit 1; }
since_lu | grep -q 'kmcl_echo_vsc: 2000 of 2000 packets echoed byte-exact, 0 bad' ||
	{ say "the client's packets were not all echoed"; exit 1; }
rmmod kmcl_echo_vsc && rmmod kmcl_echo_vsp || { say "rmmod failed"; exit 1; }

# Both ends in Rust: the Rust echo server with the Rust client.
echo "kmcl-demo: rust pair" >/dev/kmsg
since_rs() { dmesg | awk 'f; index($0, "kmcl-demo: rust pair") { f = 1 }'; }
say "Rust pair: insmod kmcl_echo_vsp_rs.ko packets=$PACKETS; insmod kmcl_echo_vsc.ko packets=$PACKETS"
insmod /kmcl/kmcl_echo_vsp_rs.ko packets="$PACKETS" || { say "insmod failed"; exit 1; }
insmod /kmcl/kmcl_echo_vsc.ko packets="$PACKETS" || { say "insmod failed"; exit 1; }
for _ in $(seq 120); do
	since_rs | grep -q 'kmcl_echo_vsp_rs: [0-9]* of [0-9]* packets to the client' && break
	sleep 1
done
since_rs | grep -E 'kmcl_echo_vs(c|p_rs): [0-9]+ of' | sed 's/^\[[ 0-9.]*\] /    /'
since_rs | grep -q "kmcl_echo_vsp_rs: $PACKETS of $PACKETS packets to the client echoed byte-exact, 0 bad" ||
	{ say "the Rust server's packets were not all echoed"; exit 1; }
rmmod kmcl_echo_vsc && rmmod kmcl_echo_vsp_rs || { say "rmmod failed"; exit 1; }

NET_FRAMES=${NET_FRAMES:-4000}
echo "kmcl-demo: net" >/dev/kmsg
since_net() { dmesg | awk 'f; index($0, "kmcl-demo: net") { f = 1 }'; }
say "network-style pair: insmod kmcl_net_vsp.ko; insmod kmcl_net_vsc.ko frames=$NET_FRAMES channels=4"
insmod /kmcl/kmcl_net_vsp.ko || { say "insmod failed"; exit 1; }
start=$(now)
insmod /kmcl/kmcl_net_vsc.ko frames="$NET_FRAMES" channels=4 || { say "insmod failed"; exit 1; }
for _ in $(seq 300); do
	[ "$(since_net | grep -cE 'kmcl_net_vs[pc]: [0-9]+ of [0-9]+ frames (from|to) the')" -ge 4 ] && break
	sleep 1
done
end=$(now)
since_net | grep -E 'kmcl_net_vs[pc]: ([0-9]+ of|channel|sending)' | sed 's/^\[[ 0-9.]*\] /    /'
awk -v a="$start" -v b="$end" -v n="$NET_FRAMES" 'BEGIN {
	printf "    %d frames each way over 4 channels in %.1f s (TCG-emulated VM, debug kernel)\n", n, b - a }'
for f in "$DBG"/kmcl_net_vsc_sub.*/state; do
	[ -e "$f" ] || continue
	say "debugfs: $f (a client sub-channel)"
	grep -E '^((role|state|packets (in|out)|completions (in|out)|transfer-page sets):|sub-channel )' "$f" | sed 's/^/    /'
	break
done
since_net | grep -qE "kmcl_net_vsc: $NET_FRAMES of $NET_FRAMES frames from the server byte-exact over 4 channels, 0 bad" &&
	since_net | grep -qE "kmcl_net_vsp: $NET_FRAMES of $NET_FRAMES frames from the client byte-exact .*, 0 bad" ||
	{ say "the network-style frames were not all byte-exact"; exit 1; }
rmmod kmcl_net_vsc && rmmod kmcl_net_vsp || { say "rmmod failed"; exit 1; }

STOR_READS=${STOR_READS:-2000}
echo "kmcl-demo: stor" >/dev/kmsg
since_stor() { dmesg | awk 'f; index($0, "kmcl-demo: stor") { f = 1 }'; }
say "storage-style pair: insmod kmcl_stor_vsp.ko; insmod kmcl_stor_vsc.ko reads=$STOR_READS channels=4"
insmod /kmcl/kmcl_stor_vsp.ko || { say "insmod failed"; exit 1; }
insmod /kmcl/kmcl_stor_vsc.ko reads="$STOR_READS" channels=4 || { say "insmod failed"; exit 1; }
for _ in $(seq 300); do
	since_stor | grep -q 'kmcl_stor_vsc: [0-9]* writes and' && break
	sleep 1
done
since_stor | grep -E 'kmcl_stor_vs[pc]: ([0-9]+ (writes|requests)|writing|channel)' | sed 's/^\[[ 0-9.]*\] /    /'
since_stor | grep -qE "kmcl_stor_vsc: [0-9]+ writes and $STOR_READS reads over 4 channels: $STOR_READS reads byte-exact, 0 bad, 0 failed" ||
	{ say "the storage-style requests did not all succeed"; exit 1; }
rmmod kmcl_stor_vsc && rmmod kmcl_stor_vsp || { say "rmmod failed"; exit 1; }

say "rmmod kmcl"
rmmod kmcl || { say "rmmod failed"; exit 1; }
dmesg | grep 'kmcl: unloaded' | tail -n 1 | sed 's/^/    /'
# The patterns scripts/ktap_report.py looks for (KASAN and lockdep report
# as BUG:/WARNING:).
reports=$(dmesg | grep -cE 'BUG:|WARNING:|Oops|general protection fault|kernel BUG at|UBSAN:|blocked for more than')
say "kernel reports (BUG/WARNING/Oops, incl. KASAN and lockdep) in the log: $reports"
say "done"
[ "$reports" -eq 0 ]
