#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The storage-style sample pair (kmcl_stor_vsp, kmcl_stor_vsc; see
# samples/kmcl_stor.h): the client opens CHANNELS-1 sub-channels the
# server offers, writes the server's 4 MiB RAM disk in requests of 1 to
# 32 sectors and reads it back with READS requests at random places,
# round-robin over the channels; each request's data is an MDL chain of
# one to four scattered pieces of pages.  The server checks every byte
# written, the client every byte read and every completion's status.
# 10,000 reads by default, sized for the debug kernel under TCG (about
# 30 s; the module's own default is 20,000).

. "$(dirname "$0")/lib/common.sh"
READS=${READS:-10000}
CHANNELS=${CHANNELS:-4}
DBG=/sys/kernel/debug/kmcl

# each_sub: every client sub-channel says which one it is and completed
# requests.
each_sub() {
	_files=$(ls $DBG/kmcl_stor_vsc_sub.*/state 2>/dev/null)
	[ "$(echo "$_files" | grep -c .)" -eq $((CHANNELS - 1)) ] || return 1
	for _f in $_files; do
		grep -qE '^sub-channel [1-9][0-9]* of channel [0-9]+$' "$_f" &&
			grep -qE '^completions in: [1-9][0-9]*$' "$_f" || return 1
	done
}

ktap_print_header
need_modules kmcl kmcl_stor_vsp kmcl_stor_vsc
ktap_set_plan 7

marker="kmcl-test: stor $$"
echo "$marker" >/dev/kmsg
grep -q '^kmcl ' /proc/modules || insmod "$MODULES/kmcl.ko"

check "the server (kmcl_stor_vsp) loads and offers its RAM disk" \
	sh -c "insmod $MODULES/kmcl_stor_vsp.ko && dmesg | grep -qF 'kmcl_stor_vsp: storage-style interface offered'"
check "the client (kmcl_stor_vsc) loads and opens $((CHANNELS - 1)) sub-channels" \
	insmod "$MODULES/kmcl_stor_vsc.ko" reads="$READS" channels="$CHANNELS"
check "client: every read byte-exact, every request completed with status 0" \
	wait_logged_re "kmcl_stor_vsc: [1-9][0-9]* writes and $READS reads over $CHANNELS channels: $READS reads byte-exact, 0 bad, 0 failed" 900
check "server: every write byte-exact, every request served" \
	wait_logged_re "kmcl_stor_vsp: [1-9][0-9]* requests served: [1-9][0-9]* writes byte-exact, 0 bad, $READS reads, 0 failed" 300
check "every channel carried requests, the same count on both sides" \
	sh -c "log_since() { dmesg | awk -v m='$marker' 'f; index(\$0, m) { f = 1 }'; };
		c=\$(log_since | sed -n 's/.*kmcl_stor_vsc: \\(channel [0-9]*: [1-9][0-9]* requests\\)/\\1/p' | sort);
		s=\$(log_since | sed -n 's/.*kmcl_stor_vsp: \\(channel [0-9]*: [1-9][0-9]* requests\\)/\\1/p' | sort);
		[ \$(echo \"\$c\" | grep -c .) -eq $CHANNELS ] && [ \"\$c\" = \"\$s\" ]"
log_since "$marker" | grep -E 'kmcl_stor_vs[pc]: ' | sed 's/^/# /'
check "debugfs: each client sub-channel names its index and counts its completions" each_sub

rmmod kmcl_stor_vsc
rmmod kmcl_stor_vsp
check "unloading both ends every channel" \
	sh -c "dmesg | grep -qF 'kmcl_stor_vsp: client disconnected' && [ -z \"\$(ls $DBG)\" ]"
rmmod kmcl 2>/dev/null
ktap_finished
