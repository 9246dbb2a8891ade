#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The sample drivers, separate modules using kmcl's exported API: the C
# echo server (kmcl_echo_vsp) and the Rust echo client (kmcl_echo_vsc)
# each send PACKETS packets of random sizes (1 byte to the maximum packet
# size) to the other, which echoes them as completion payloads, checked
# byte for byte; then the Rust echo server (kmcl_echo_vsp_rs) does the
# same with the Rust client; kmcl stays loaded while they use it; a module
# unloaded with its channel still allocated is cleaned up by kmcl.

. "$(dirname "$0")/lib/common.sh"
PACKETS=${PACKETS:-100000}

loaded() {
	grep -q "^$1 " /proc/modules
}

ktap_print_header
need_modules kmcl kmcl_echo_vsp kmcl_echo_vsc kmcl_echo_vsp_rs
ktap_set_plan 22

marker="kmcl-test: samples $$"
echo "$marker" >/dev/kmsg

insmod "$MODULES/kmcl.ko" || ktap_exit_fail_msg "insmod kmcl.ko failed"


# 1-4: echo both ways between the C server and the Rust client.
check "C echo server (kmcl_echo_vsp) loads and offers" \
	sh -c "insmod $MODULES/kmcl_echo_vsp.ko packets=$PACKETS && dmesg | grep -qF 'kmcl_echo_vsp: echo interface offered'"
check "Rust echo client (kmcl_echo_vsc) loads: $PACKETS packets to the server" \
	insmod "$MODULES/kmcl_echo_vsc.ko" packets=$PACKETS
check "client to server: every packet and a synchronous request echoed byte-exact" \
	sh -c "dmesg | grep -F 'kmcl_echo_vsc: $PACKETS of $PACKETS packets echoed byte-exact, 0 bad' | grep -qF 'synchronous request ok'"
check "server to client: every packet echoed byte-exact" \
	wait_logged "kmcl_echo_vsp: $PACKETS of $PACKETS packets to the client echoed byte-exact, 0 bad" 600
log_since "$marker" | grep -E 'kmcl_echo_vs[pc]: [0-9]+ of' | sed 's/^/# /'

# 5-7: debugfs shows each channel's state and counters.
DBG=/sys/kernel/debug/kmcl
vsc_state=$(cat $DBG/kmcl_echo_vsc.*/state 2>/dev/null)
vsp_state=$(cat $DBG/kmcl_echo_vsp.*/state 2>/dev/null)
echo "$vsc_state" | sed 's/^/# vsc: /'
has() { echo "$1" | grep -qxF "$2"; }
check "debugfs: the client's state file shows role, state and counters" \
	sh -c "echo '$vsc_state' | grep -qx 'role: client' &&
		echo '$vsc_state' | grep -qx 'state: connected, running' &&
		echo '$vsc_state' | grep -qx 'packets in: $PACKETS' &&
		echo '$vsc_state' | grep -qx 'completions in: $((PACKETS + 1))' &&
		echo '$vsc_state' | grep -qx 'packets out: $((2 * PACKETS + 1))' &&
		echo '$vsc_state' | grep -q '^incoming ring: size 131072 ' &&
		echo '$vsc_state' | grep -q '^bytes in: [1-9][0-9]*$' &&
		echo '$vsc_state' | grep -q '^signals sent: [1-9][0-9]*$' &&
		echo '$vsc_state' | grep -q '^signals received: [1-9][0-9]*$'"
check "debugfs: the server's state file shows its role and the echo interface" \
	sh -c "echo '$vsp_state' | grep -qx 'role: server' &&
		echo '$vsp_state' | grep -qx 'interface type: 6b6d636c-6563-686f-8a11-000000000001'"

# 4-5: module references keep kmcl loaded while its users are.
holders=$(ls /sys/module/kmcl/holders 2>/dev/null | sort | tr '\n' ' ')
check "kmcl's holders are the two samples ($holders)" \
	[ "$holders" = "kmcl_echo_vsc kmcl_echo_vsp " ]
rmmod kmcl 2>/dev/null
check "rmmod kmcl is refused while the samples use it" loaded kmcl

# 6-7: orderly unload.
rmmod kmcl_echo_vsc
check "unloading the client closes the server's connection" \
	logged "kmcl_echo_vsp: client disconnected; $((PACKETS + 1)) packets echoed"
rmmod kmcl_echo_vsp
check "unloading the server withdraws its offer" \
	logged "kmcl_echo_vsp: echo interface withdrawn"
check "debugfs: no channel directories are left" \
	sh -c "[ -z \"\$(ls $DBG)\" ]"

# The Rust echo server with the Rust client: both drivers in Rust.
marker="kmcl-test: samples rust pair $$"
echo "$marker" >/dev/kmsg
check "Rust echo server (kmcl_echo_vsp_rs) loads and offers" \
	sh -c "insmod $MODULES/kmcl_echo_vsp_rs.ko packets=$PACKETS && dmesg | grep -qF 'kmcl_echo_vsp_rs: echo interface offered'"
rust_client_echoed() {
	insmod "$MODULES/kmcl_echo_vsc.ko" packets="$PACKETS" &&
		log_since "$marker" | grep -F "kmcl_echo_vsc: $PACKETS of $PACKETS packets echoed byte-exact, 0 bad" |
		grep -qF 'synchronous request ok'
}
check "Rust client to Rust server: every packet and a synchronous request echoed byte-exact" \
	rust_client_echoed
check "Rust server to Rust client: every packet echoed byte-exact" \
	wait_logged "kmcl_echo_vsp_rs: $PACKETS of $PACKETS packets to the client echoed byte-exact, 0 bad" 600
log_since "$marker" | grep -E 'kmcl_echo_vs[pc](_rs)?: [0-9]+ of' | sed 's/^/# /'
rmmod kmcl_echo_vsc
rmmod kmcl_echo_vsp_rs
rust_server_done() {
	logged "kmcl_echo_vsp_rs: client disconnected; $((PACKETS + 1)) packets echoed" &&
		logged "kmcl_echo_vsp_rs: echo interface withdrawn; $((PACKETS + 1)) packets echoed"
}
check "the Rust server saw the client leave and withdrew its offer" rust_server_done

# 8-11: a module that leaves its channel allocated.
marker="kmcl-test: samples leak $$"
echo "$marker" >/dev/kmsg
insmod "$MODULES/kmcl_echo_vsp.ko" leak=1
check "a client connects to the leaking server" insmod "$MODULES/kmcl_echo_vsc.ko" packets=10
rmmod kmcl_echo_vsp
check "kmcl frees the channel of a module unloaded without cleanup" \
	logged "kmcl: module kmcl_echo_vsp was unloaded with 1 channel(s) not cleaned up"
check "the client sees the connection close" \
	logged "kmcl_echo_vsc: channel closed"
rmmod kmcl_echo_vsc
check "the client unloads afterwards" sh -c "! grep -q '^kmcl_echo_vsc ' /proc/modules"

# 12: no server: the client gives up and fails to load.
check "the client fails to load without a server" \
	sh -c "! insmod $MODULES/kmcl_echo_vsc.ko packets=1 wait_ms=500 2>/dev/null"
check "and says why" logged "kmcl_echo_vsc: no echo server"

# 14: kmcl unloads once nobody uses it.
check "rmmod kmcl succeeds afterwards" sh -c "rmmod kmcl && ! grep -q '^kmcl ' /proc/modules"

ktap_finished
