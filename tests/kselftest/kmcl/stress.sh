#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Stress, for STRESS_SECONDS:
#  - on CPU 0, kmcl_bench stress=...: 32 channel pairs with packets in
#    flight (three of four ask for a completion, one does not; one of five
#    carries external data, which the servers keep until the next) while
#    channels are paused, started, disabled (running, paused, or right
#    after Enable, before they ran), enabled again, and servers begin
#    saves that must fail (a kept packet with external data cannot be
#    saved) and give every packet back, at random.  Every
#    send's routine must run exactly once, with success or -ENODEV, none
#    while its channel is disabled (after Disable returned), and the
#    servers' receive counts must agree with the clients' sends and
#    completions;
#  - on CPU 1 at the same time, the sample drivers (kmcl_echo_vsp,
#    kmcl_echo_vsc) loaded, run and unloaded over and over: every cycle must
#    echo all its packets byte-exact, and the server must have echoed what
#    the client sent.
# kmemleak (the runner's last test) and the kernel-log scan cover leaks and
# reports.

. "$(dirname "$0")/lib/common.sh"
SECONDS_=${STRESS_SECONDS:-60}
CYCLE_PACKETS=200

ktap_print_header
need_modules kmcl kmcl_bench kmcl_echo_vsp kmcl_echo_vsc
ktap_set_plan 8

marker="kmcl-test: stress $$"
echo "$marker" >/dev/kmsg

uptime_s() { cut -d. -f1 /proc/uptime; }

# reload_loop: sample driver cycles until SECONDS_ have passed; writes
# "cycles failures" to /tmp/reload.
reload_loop() {
	n=0
	bad=0
	end=$(($(uptime_s) + SECONDS_))
	while [ "$(uptime_s)" -lt "$end" ]; do
		insmod "$MODULES/kmcl_echo_vsp.ko" || bad=$((bad + 1))
		insmod "$MODULES/kmcl_echo_vsc.ko" packets=$CYCLE_PACKETS window=32 || bad=$((bad + 1))
		rmmod kmcl_echo_vsc || bad=$((bad + 1))
		rmmod kmcl_echo_vsp || bad=$((bad + 1))
		n=$((n + 1))
	done
	echo "$n $bad" >/tmp/reload
}

insmod "$MODULES/kmcl.ko" || ktap_exit_fail_msg "insmod kmcl.ko failed"
reload_loop &
loop=$!
# The loop and the modules it loads run on CPU 1, the stress on CPU 0.
[ "$(nproc)" -ge 2 ] && taskset -p 2 $loop >/dev/null
if taskset 1 insmod "$MODULES/kmcl_bench.ko" stress="$SECONDS_"; then
	ktap_test_pass "stress run completes ($SECONDS_ s)"
else
	ktap_test_fail "stress run completes ($SECONDS_ s)"
fi
wait $loop
line=$(log_since "$marker" | grep -o 'RESULT kind=stress.*' | tail -n 1)
ktap_print_msg "$line"
field() { echo "$line" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
sent=$(field sent)
ok=$(field ok)
written=$(field written)
enodev=$(field enodev)
late=$(field late)
other=$(field other)
received=$(field received)
reconnects=$(field reconnects)
if [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$sent" -eq $((ok + written + enodev)) ] && [ "$other" -eq 0 ]; then
	ktap_test_pass "every send's routine ran exactly once ($sent sends: $ok completed, $written written without a completion request, $enodev -ENODEV)"
else
	ktap_test_fail "every send's routine ran exactly once"
fi
if [ -n "$late" ] && [ "$late" -eq 0 ] && [ "$(field paused_disables)" -gt 0 ] && [ "$(field early_disables)" -gt 0 ]; then
	ktap_test_pass "no routine ran after its channel's Disable returned ($(field paused_disables) Disables of paused channels, $(field early_disables) of channels that had not run)"
else
	ktap_test_fail "no routine ran after its channel's Disable returned (late: $late)"
fi
if [ -n "$(field saves_failed)" ] && [ "$(field saves_failed)" -gt 0 ] && [ "$(field saves_made)" -eq 0 ]; then
	ktap_test_pass "$(field saves_failed) saves failed (a packet with external data held) and gave every packet back: delivery went on"
else
	ktap_test_fail "failed saves give the packets back (failed: $(field saves_failed), made: $(field saves_made))"
fi
if [ -n "$received" ] && [ "$ok" -le "$received" ] && [ "$received" -le "$sent" ]; then
	ktap_test_pass "servers received $received: no fewer than completed ($ok), no more than sent ($sent)"
else
	ktap_test_fail "servers' receive counts agree with the clients'"
fi
if [ -n "$reconnects" ] && [ "$reconnects" -gt 0 ] && [ "$enodev" -gt 0 ]; then
	ktap_test_pass "channels were disabled under traffic ($reconnects reconnects)"
else
	ktap_test_fail "channels were disabled under traffic"
fi
read -r cycles failures </tmp/reload
echoed=$(log_since "$marker" | grep -c "kmcl_echo_vsc: $CYCLE_PACKETS of $CYCLE_PACKETS packets echoed byte-exact, 0 bad")
served=$(log_since "$marker" | grep -c "kmcl_echo_vsp: client disconnected; $((CYCLE_PACKETS + 1)) packets echoed")
ktap_print_msg "sample driver cycles on CPU 1: $cycles, failed steps $failures, clean echo runs $echoed, server counts matching $served"
if [ "$cycles" -gt 0 ] && [ "$failures" -eq 0 ] && [ "$echoed" -eq "$cycles" ]; then
	ktap_test_pass "sample drivers loaded, run and unloaded $cycles times under the stress, every echo byte-exact"
else
	ktap_test_fail "sample driver reload cycles under the stress"
fi
if [ "$served" -eq "$cycles" ] && ! grep -q '^kmcl_echo' /proc/modules; then
	ktap_test_pass "the server echoed what the client sent in every cycle; no sample left loaded"
else
	ktap_test_fail "server and client counts agree in every cycle"
fi
rmmod kmcl_bench 2>/dev/null
rmmod kmcl
ktap_finished
