#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kmcl.ko loads, says whether a VMBus host exists (checked against sysfs:
# hv_vmbus registers /sys/bus/vmbus only when it found a host), and unloads
# cleanly.

. "$(dirname "$0")/lib/common.sh"
KO=$MODULES/kmcl.ko

ktap_print_header
need_modules kmcl
ktap_set_plan 5

marker="kmcl-test: load_unload $$"
echo "$marker" >/dev/kmsg

if insmod "$KO"; then
	ktap_test_pass "insmod kmcl.ko succeeds"
else
	ktap_exit_fail_msg "insmod kmcl.ko failed"
fi

if grep -q '^kmcl ' /proc/modules; then
	ktap_test_pass "kmcl is listed in /proc/modules"
else
	ktap_test_fail "kmcl is listed in /proc/modules"
fi

if [ -d /sys/bus/vmbus ]; then
	want="kmcl: loaded; VMBus host present"
else
	want="kmcl: loaded; no VMBus host (hv_vmbus inactive), loopback only"
fi
if log_since "$marker" | grep -qF "$want"; then
	ktap_test_pass "load message reports the VMBus host correctly"
else
	ktap_print_msg "expected in dmesg: $want"
	ktap_test_fail "load message reports the VMBus host correctly"
fi

if rmmod kmcl && ! grep -q '^kmcl ' /proc/modules; then
	ktap_test_pass "rmmod kmcl removes the module"
else
	ktap_test_fail "rmmod kmcl removes the module"
fi

if log_since "$marker" | grep -qF "kmcl: unloaded"; then
	ktap_test_pass "unload message logged"
else
	ktap_test_fail "unload message logged"
fi

ktap_finished
