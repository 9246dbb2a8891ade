#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Stress: 32 channel pairs with packets in flight while channels are
# paused, started, disabled and enabled again at random for STRESS_SECONDS
# (kmcl_bench stress=...).  Every send's completion routine must run
# exactly once, with success or -ENODEV; kmemleak (the runner's last test)
# and the kernel-log scan cover leaks and reports.

. /tests/ktap_helpers.sh
. "$(dirname "$0")/lib/common.sh"
DIR=/kmcl
SECONDS_=${STRESS_SECONDS:-10}

ktap_print_header
ktap_set_plan 3

marker="kmcl-test: stress $$"
echo "$marker" >/dev/kmsg

insmod_quiet "$DIR/kmcl.ko" || ktap_exit_fail_msg "insmod kmcl.ko failed"
if insmod "$DIR/kmcl_bench.ko" stress="$SECONDS_"; then
	ktap_test_pass "stress run completes ($SECONDS_ s)"
else
	ktap_test_fail "stress run completes ($SECONDS_ s)"
fi
line=$(log_since "$marker" | grep -o 'RESULT kind=stress.*' | tail -n 1)
ktap_print_msg "$line"
sent=$(echo "$line" | sed -n 's/.* sent=\([0-9]*\).*/\1/p')
ok=$(echo "$line" | sed -n 's/.* ok=\([0-9]*\).*/\1/p')
enodev=$(echo "$line" | sed -n 's/.* enodev=\([0-9]*\).*/\1/p')
other=$(echo "$line" | sed -n 's/.* other=\([0-9]*\).*/\1/p')
reconnects=$(echo "$line" | sed -n 's/.* reconnects=\([0-9]*\).*/\1/p')
if [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$sent" -eq $((ok + enodev)) ] && [ "$other" -eq 0 ]; then
	ktap_test_pass "every send's routine ran exactly once ($sent sends: $ok ok, $enodev -ENODEV)"
else
	ktap_test_fail "every send's routine ran exactly once"
fi
if [ -n "$reconnects" ] && [ "$reconnects" -gt 0 ] && [ "$enodev" -gt 0 ]; then
	ktap_test_pass "channels were disabled under traffic ($reconnects reconnects)"
else
	ktap_test_fail "channels were disabled under traffic"
fi
rmmod kmcl_bench 2>/dev/null
rmmod kmcl
ktap_finished
