#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kmcl's trace events, read through ftrace as a user would: the events
# exist; KUnit cases that hit the transaction quota, the receive budget,
# PacketFail and a corrupt ring emit quota_hit, budget_hit and
# channel_failed; the echo samples' traffic shows up packet by packet, and
# the trace agrees with itself (every packet sent was fetched, every
# completion came back) and with the debugfs counters.

. "$(dirname "$0")/lib/common.sh"
PACKETS=${PACKETS:-300}
T=/sys/kernel/tracing

ktap_print_header
need_modules kmcl kmcl_kunit kmcl_echo_vsp kmcl_echo_vsc
ktap_set_plan 12

[ -d $T/events ] || mount -t tracefs nodev $T 2>/dev/null
[ -d $T/events ] || ktap_exit_fail_msg "no tracefs"

# 1: the events exist once kmcl is loaded.
insmod "$MODULES/kmcl.ko" || ktap_exit_fail_msg "insmod kmcl.ko failed"
events=$(ls $T/events/kmcl 2>/dev/null | grep '^kmcl_' | tr '\n' ' ')
echo "# events: $events"
check "7 kmcl trace events exist" \
	[ "$events" = "kmcl_batch_done kmcl_budget_hit kmcl_channel_failed kmcl_packet_fetched kmcl_packet_sent kmcl_quota_hit kmcl_state_change " ]
rmmod kmcl

# trace_on [MODULE]: clear the buffer and enable kmcl's events, also for a
# kmcl (or MODULE) loaded later (ftrace's ":mod:" form; a test build's
# KUnit cases run at load).
trace_on() {
	echo 0 >$T/tracing_on
	echo 8192 >$T/buffer_size_kb
	: >$T/trace
	echo ":mod:${1:-kmcl}" >$T/set_event
	echo 1 >$T/tracing_on
}
trace_off() {
	echo 0 >$T/tracing_on
	: >$T/set_event
	cat $T/trace >/tmp/trace.txt
	: >$T/trace
}
# ev NAME [PATTERN]: the trace lines of event NAME (matching PATTERN).
ev() {
	grep " kmcl_$1: " /tmp/trace.txt | grep -E -- "${2:-.}"
}

# 2-5: the quota, budget and failure events, from kmcl's own KUnit suites
# kmcl_channel_flow (transaction_quota*, the_receive_work_yields*) and
# kmcl_channel_failure (a_corrupt_ring*, packet_fail*, ...), run by the
# test build kmcl_kunit.ko (it and kmcl.ko export the same symbols: one at
# a time).
trace_on kmcl_kunit
old_glob=$(cat "$KUNIT_GLOB")
set_kunit_glob "kmcl_channel_f*"
insmod "$MODULES/kmcl_kunit.ko"
set_kunit_glob "$old_glob"
trace_off
rmmod kmcl_kunit
ev quota_hit | head -n 2 | sed 's/^/# /'
ev budget_hit | head -n 2 | sed 's/^/# /'
ev channel_failed | sed 's/^/# /'
check "quota_hit: delivery stopped at the quota of 4 with 4 held" \
	test -n "$(ev quota_hit 'outstanding=4 quota=4$')"
check "budget_hit: the receive work yielded after 128 packets" \
	test -n "$(ev budget_hit 'fetched=128$')"
check "channel_failed: PacketFail and a corrupt ring" \
	sh -c "grep -q ' kmcl_channel_failed: .*why=packet_fail$' /tmp/trace.txt &&
		grep -q ' kmcl_channel_failed: .*why=corrupt_ring$' /tmp/trace.txt"
over=$(ev batch_done | awk '{ for (i = 1; i <= NF; i++) { if ($i ~ /^fetched=/) f = substr($i, 9); if ($i ~ /^allowed=/) a = substr($i, 9) } if (f + 0 > a + 0) n++ } END { print n + 0 }')
check "batch_done: no run fetched more than it was allowed ($(ev batch_done | wc -l) runs)" \
	[ "$over" -eq 0 ]

# 6-12: the echo samples' traffic, packet by packet.
insmod "$MODULES/kmcl.ko" || ktap_exit_fail_msg "insmod kmcl.ko failed"
trace_on
insmod "$MODULES/kmcl_echo_vsp.ko" packets="$PACKETS"
insmod "$MODULES/kmcl_echo_vsc.ko" packets="$PACKETS"
for _ in $(seq 120); do
	dmesg | grep -qF "kmcl_echo_vsp: $PACKETS of $PACKETS packets" && break
	sleep 1
done
trace_off
DBG=/sys/kernel/debug/kmcl
c=$(sed -n 's/^id: //p' $DBG/kmcl_echo_vsc.*/state)
s=$(sed -n 's/^id: //p' $DBG/kmcl_echo_vsp.*/state)
c_in=$(sed -n 's/^packets in: //p' $DBG/kmcl_echo_vsc.*/state)
s_in=$(sed -n 's/^packets in: //p' $DBG/kmcl_echo_vsp.*/state)
echo "# client chan=$c server chan=$s; $(wc -l </tmp/trace.txt) trace lines"
ev state_change "chan=$c " | sed 's/.*kmcl_state_change: /# /'

steps=$(ev state_change "chan=$c " | sed 's/.* event=\([a-z_]*\) action=\([a-z_]*\)$/\1\/\2/' | tr '\n' ' ')
check "state_change: the client's open in KMCL order" \
	[ "$steps" = "enable/connect connected/opened opened_ok/started opened_ok/enable_incoming opened_ok/post_started " ]
# Data packets (type 6) the client sent, with a completion requested: the
# sample's packets and its synchronous request.
sent=$(ev packet_sent "chan=$c .*type=6 .*completion_requested=1" | wc -l)
check "packet_sent: the client sent $((PACKETS + 1)) data packets ($sent)" \
	[ "$sent" -eq $((PACKETS + 1)) ]
got=$(ev packet_fetched "chan=$s .*completion=0 " | wc -l)
check "packet_fetched: the server fetched each of them ($got)" \
	[ "$got" -eq "$sent" ]
ev packet_sent "chan=$c .*type=6 " | sed 's/.* tid=\([0-9]*\) .*/\1/' | sort -n >/tmp/tids.sent
ev packet_fetched "chan=$c .*completion=1 " | sed 's/.* tid=\([0-9]*\) .*/\1/' | sort -n >/tmp/tids.done
check "every transaction id the client sent came back in a completion" \
	sh -c "[ -s /tmp/tids.sent ] && cmp -s /tmp/tids.sent /tmp/tids.done"
check "packet_fetched agrees with debugfs (server in: $s_in, client in: $c_in)" \
	sh -c "[ $(ev packet_fetched "chan=$s .*completion=0 " | wc -l) -eq $s_in ] &&
		[ $(ev packet_fetched "chan=$c .*completion=0 " | wc -l) -eq $c_in ]"
sum=$(ev batch_done "chan=$s " | sed 's/.* fetched=\([0-9]*\) .*/\1/' | awk '{ n += $1 } END { print n + 0 }')
all=$(ev packet_fetched "chan=$s " | wc -l)
check "batch_done: the server's runs fetched $sum packets, as packet_fetched shows ($all)" \
	[ "$sum" -eq "$all" ]
rmmod kmcl_echo_vsc
rmmod kmcl_echo_vsp
rmmod kmcl
check "kmcl unloads with its trace events in use earlier" \
	sh -c "! grep -q '^kmcl ' /proc/modules"

ktap_finished
