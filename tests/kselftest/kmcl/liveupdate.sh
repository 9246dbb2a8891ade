#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Live update: an echo server is unloaded and loaded again while the Rust
# echo client (kmcl_echo_vsc) is connected with transactions in flight;
# once with the C server (kmcl_echo_vsp, through KMCL's interface table)
# and once with the Rust one (kmcl_echo_vsp_rs, through the safe wrapper).
# The first load holds every packet (hold=1); its unload saves them
# (SaveBegin/Continue/End, with the payload as the driver's state) into
# kmcl's stash and leaves the connection parked; the second load restores
# the save before Enable, takes the connection over and completes the
# restored packets.  The client sees a pause: no Suspend, no Closed, every
# packet echoed byte-exact.

. "$(dirname "$0")/lib/common.sh"
PACKETS=${PACKETS:-300}
WINDOW=16

ktap_print_header
need_modules kmcl kmcl_echo_vsp kmcl_echo_vsp_rs kmcl_echo_vsc
ktap_set_plan 16

insmod "$MODULES/kmcl.ko" || ktap_exit_fail_msg "insmod kmcl.ko failed"

# live_update VSP: one live update of the server module VSP.
live_update() {
	vsp=$1
	marker="kmcl-test: live update of $vsp $$"
	echo "$marker" >/dev/kmsg
	insmod "$MODULES/$vsp.ko" hold=1 live_update=1
	# The client's insmod runs its whole exchange: in the background, as
	# the server holds its first window of packets.
	insmod "$MODULES/kmcl_echo_vsc.ko" packets=$PACKETS window=$WINDOW stall_ms=60000 &
	client=$!
	held() {
		cat /sys/kernel/debug/kmcl/$vsp.*/state 2>/dev/null | grep -qx "packets in: $WINDOW"
	}
	n=0
	while ! held && [ $n -lt 60 ]; do
		sleep 1
		n=$((n + 1))
	done
	check "$vsp: the first server holds the client's $WINDOW packets in flight" held

	t0=$(date +%s)
	rmmod "$vsp"
	check "$vsp: its unload saves them for the next load" \
		logged "$vsp: saved $WINDOW packets in flight"
	check "$vsp: the client is still connected and loaded" \
		sh -c "grep -q '^kmcl_echo_vsc ' /proc/modules &&
			cat /sys/kernel/debug/kmcl/kmcl_echo_vsc.*/state | grep -qx 'state: connected, running'"

	insmod "$MODULES/$vsp.ko" live_update=1
	t1=$(date +%s)
	check "$vsp: the second server restores the save and takes the connection over" \
		logged "$vsp: restoring the previous load's state"
	wait $client
	rc=$?
	check "$vsp: the client's exchange completes (insmod exit $rc)" [ "$rc" -eq 0 ]
	check "$vsp: every packet, the $WINDOW in flight included, echoed byte-exact" \
		sh -c "log_since() { dmesg | awk -v m='$marker' 'f; index(\$0, m) { f = 1 }'; };
			log_since | grep -F 'kmcl_echo_vsc: $PACKETS of $PACKETS packets echoed byte-exact, 0 bad' |
			grep -qF 'synchronous request ok'"
	check "$vsp: the client saw no Suspend or Closed" sh -c "! dmesg | awk -v m='$marker' 'f; index(\$0, m) { f = 1 }' |
		grep -qF 'kmcl_echo_vsc: channel closed'"
	ktap_print_msg "$vsp: the server was away for about $((t1 - t0)) s"

	rmmod kmcl_echo_vsc
	rmmod "$vsp"
	check "$vsp: the restored server completed the $WINDOW restored packets" \
		logged "$vsp: echo interface withdrawn; $((PACKETS + 1 - WINDOW)) packets echoed, $WINDOW restored"
}

live_update kmcl_echo_vsp
live_update kmcl_echo_vsp_rs
rmmod kmcl
ktap_finished
