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
# counters; unloading the client ends the sub-channels.  Then the same
# with the Rust client (kmcl_net_vsc_rs, on the safe wrapper; its frames
# to the server go as one external-data range each instead of page
# buffers) against a fresh C server, 10,000 frames each way.  30,000 frames
# each way by default: sized for the debug kernel under TCG (the modules'
# own default is 100,000; set FRAMES to run that).

. "$(dirname "$0")/lib/common.sh"
FRAMES=${FRAMES:-30000}
CHANNELS=${CHANNELS:-4}
PER=$((FRAMES / CHANNELS))
# The Rust client's run: fewer frames (the same paths, a shorter run).
RS_FRAMES=${RS_FRAMES:-10000}
RS_PER=$((RS_FRAMES / CHANNELS))
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
need_modules kmcl kmcl_net_vsp kmcl_net_vsc kmcl_net_vsc_rs
ktap_set_plan 17

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

# The Rust client against a fresh C server.
marker="kmcl-test: net rust $$"
echo "$marker" >/dev/kmsg
insmod "$MODULES/kmcl_net_vsp.ko"
check "rust: the client (kmcl_net_vsc_rs) loads, opens $((CHANNELS - 1)) sub-channels and sends $RS_FRAMES frames" \
	insmod "$MODULES/kmcl_net_vsc_rs.ko" frames="$RS_FRAMES" channels="$CHANNELS"
check "rust: server to client: $RS_FRAMES transfer-page frames byte-exact over $CHANNELS channels" \
	wait_logged "kmcl_net_vsc_rs: $RS_FRAMES of $RS_FRAMES frames from the server byte-exact over $CHANNELS channels, 0 bad" 900
check "rust: client to server: $RS_FRAMES external-data and send-buffer frames byte-exact" \
	wait_logged_re "kmcl_net_vsp: $RS_FRAMES of $RS_FRAMES frames from the client byte-exact \(([1-9][0-9]*) by page buffers, ([1-9][0-9]*) in send-buffer sections\), 0 bad" 900
check "rust: every frame's transaction completed on both sides" \
	sh -c ". $KSFT_DIR/lib/common.sh; marker='$marker';
		wait_logged 'kmcl_net_vsc_rs: $RS_FRAMES of $RS_FRAMES frames to the server completed, 0 failed' 300 &&
		wait_logged 'kmcl_net_vsp: $RS_FRAMES of $RS_FRAMES frames to the client completed, 0 failed' 300"
check "rust: each of the $CHANNELS channels carried $RS_PER frames each way" \
	sh -c "[ \$(dmesg | awk -v m='$marker' 'f; index(\$0, m) { f = 1 }' |
		grep -cE 'kmcl_net_vs(p|c_rs): channel [0-9]: $RS_PER frames from the (server|client)') -eq $((2 * CHANNELS)) ]"
log_since "$marker" | grep -E 'kmcl_net_vs(p|c_rs): ' | sed 's/^/# /'
PER=$RS_PER
check "rust: debugfs: each client sub-channel names its index and counts $RS_PER packets in" each_sub kmcl_net_vsc_rs
rmmod kmcl_net_vsc_rs
rmmod kmcl_net_vsp
# no_channel_left: the server saw the client go and no channel is left.
no_channel_left() {
	logged 'kmcl_net_vsp: client disconnected' && [ -z "$(ls $DBG)" ]
}
check "rust: unloading the client and the server leaves no channel" no_channel_left

rmmod kmcl 2>/dev/null
ktap_finished
