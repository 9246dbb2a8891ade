#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Run last: kmemleak finds no leaked object allocated by kmcl or its test
# and sample modules (a report whose backtrace names a kmcl module).  SKIP
# without kmemleak (CONFIG_DEBUG_KMEMLEAK).  kmcl's test VM clears kmemleak's
# list before the suite, so there any leak counts.

. "$(dirname "$0")/lib/common.sh"
KMEMLEAK=/sys/kernel/debug/kmemleak

ktap_print_header
if [ ! -w "$KMEMLEAK" ] || ! echo scan >"$KMEMLEAK" 2>/dev/null; then
	ktap_skip_all "no kmemleak (CONFIG_DEBUG_KMEMLEAK, debugfs)"
	exit "$KSFT_SKIP"
fi
ktap_set_plan 1
# Two scans: an object is reported only once it looked unreferenced twice.
sleep 1
echo scan >"$KMEMLEAK"
leaks=$(cat "$KMEMLEAK")
if [ "${KMCL_KMEMLEAK_ALL:-0}" = 1 ]; then
	ours=$leaks
else
	# One report per "unreferenced object" paragraph; keep kmcl's.
	ours=$(echo "$leaks" | awk '/^unreferenced object/ { if (r ~ /kmcl/) printf "%s", r; r = "" }
		{ r = r $0 "\n" } END { if (r ~ /kmcl/) printf "%s", r }')
fi
if [ -z "$ours" ]; then
	ktap_test_pass "kmemleak: no leaks after the suite"
else
	echo "$ours" | sed 's/^/# /'
	ktap_test_fail "kmemleak: no leaks after the suite"
fi
ktap_finished
