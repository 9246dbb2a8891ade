#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The network-style sample pair (kmcl_net_vsp, kmcl_net_vsc; see
# samples/kmcl_net.h): the client shares a receive and a send buffer as
# GPADLs and opens CHANNELS-1 sub-channels the server offers; FRAMES frames
# of random sizes go each way, round-robin over the channels -- server to
# client as transfer-page packets into the receive buffer, client to
# server as page buffers (multi-range external data) or send-buffer
# sections -- every byte checked; debugfs shows each sub-channel's
# counters; unloading the client ends the sub-channels.  30,000 frames
# each way by default: sized for the debug kernel under TCG (the modules'
# own default is 100,000; set FRAMES to run that).

. "$(dirname "$0")/lib/common.sh"
FRAMES=${FRAMES:-30000}
CHANNELS=${CHANNELS:-4}
PER=$((FRAMES / CHANNELS))
DBG=/sys/kernel/debug/kmcl

# subs NAME: the debugfs state files of NAME's sub-channels.
subs() {
	ls $DBG/"$1"_sub.*/state 2>/dev/null
}

# each_sub NAME: every sub-channel of NAME says which one it is and
# carried PER frames in.
each_sub() {
	_files=$(subs "$1")
	[ "$(echo "$_files" | grep -c .)" -eq $((CHANNELS - 1)) ] || return 1
	for _f in $_files; do
		grep -qE '^sub-channel [1-9][0-9]* of channel [0-9]+$' "$_f" &&
			grep -qx "packets in: $PER" "$_f" || return 1
	done
}

ktap_print_header
need_modules kmcl kmcl_net_vsp kmcl_net_vsc
ktap_set_plan 10

marker="kmcl-test: net $$"
echo "$marker" >/dev/kmsg
grep -q '^kmcl ' /proc/modules || insmod "$MODULES/kmcl.ko"

check "the server (kmcl_net_vsp) loads and offers" \
	sh -c "insmod $MODULES/kmcl_net_vsp.ko && dmesg | grep -qF 'kmcl_net_vsp: network-style interface offered'"
check "the client (kmcl_net_vsc) loads: buffers shared, $((CHANNELS - 1)) sub-channels opened" \
	insmod "$MODULES/kmcl_net_vsc.ko" frames="$FRAMES" channels="$CHANNELS"
check "server to client: $FRAMES transfer-page frames byte-exact over $CHANNELS channels" \
	wait_logged "kmcl_net_vsc: $FRAMES of $FRAMES frames from the server byte-exact over $CHANNELS channels, 0 bad" 900
check "client to server: $FRAMES page-buffer and send-buffer frames byte-exact" \
	wait_logged_re "kmcl_net_vsp: $FRAMES of $FRAMES frames from the client byte-exact \(([1-9][0-9]*) by page buffers, ([1-9][0-9]*) in send-buffer sections\), 0 bad" 900
check "every frame's transaction completed on both sides" \
	sh -c ". $KSFT_DIR/lib/common.sh; marker='$marker';
		wait_logged 'kmcl_net_vsc: $FRAMES of $FRAMES frames to the server completed, 0 failed' 300 &&
		wait_logged 'kmcl_net_vsp: $FRAMES of $FRAMES frames to the client completed, 0 failed' 300"
check "each of the $CHANNELS channels carried $PER frames each way" \
	sh -c "[ \$(dmesg | awk -v m='$marker' 'f; index(\$0, m) { f = 1 }' |
		grep -cE 'kmcl_net_vs[pc]: channel [0-9]: $PER frames from the (server|client)') -eq $((2 * CHANNELS)) ]"
log_since "$marker" | grep -E 'kmcl_net_vs[pc]: ' | sed 's/^/# /'
check "debugfs: each client sub-channel names its index and counts $PER packets in" each_sub kmcl_net_vsc
check "debugfs: each server sub-channel names its index and counts $PER packets in" each_sub kmcl_net_vsp
subs kmcl_net_vsc | head -1 | xargs cat 2>/dev/null | sed 's/^/# vsc sub: /'

rmmod kmcl_net_vsc
check "unloading the client closes the server's primary and sub-channels" \
	sh -c "dmesg | grep -qF 'kmcl_net_vsp: client disconnected' && [ -z \"\$(ls -d $DBG/kmcl_net_vsp_sub.* 2>/dev/null)\" ]"
rmmod kmcl_net_vsp
check "unloading the server withdraws its offer; no channel is left" \
	sh -c "dmesg | grep -qF 'kmcl_net_vsp: network-style interface withdrawn' && [ -z \"\$(ls $DBG)\" ]"

rmmod kmcl 2>/dev/null
ktap_finished
