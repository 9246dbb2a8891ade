#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kmcl.ko loads, says whether a VMBus host exists (checked against sysfs:
# hv_vmbus registers /sys/bus/vmbus only when it found a host), runs no
# test (no KUnit suite, no TAINT_TEST: the tests live in kmcl_kunit.ko),
# and unloads cleanly.

. "$(dirname "$0")/lib/common.sh"
KO=$MODULES/kmcl.ko

ktap_print_header
need_modules kmcl
ktap_set_plan 7

marker="kmcl-test: load_unload $$"
echo "$marker" >/dev/kmsg

# TAINT_TEST (bit 18): set by loading a module with KUnit suites.
TAINT_TEST=262144
tainted_before=$(cat /proc/sys/kernel/tainted)
if insmod "$KO"; then
	ktap_test_pass "insmod kmcl.ko succeeds"
else
	ktap_exit_fail_msg "insmod kmcl.ko failed"
fi
tainted_after=$(cat /proc/sys/kernel/tainted)

if [ $((tainted_before & TAINT_TEST)) -ne 0 ]; then
	ktap_test_skip "loading kmcl.ko does not taint the kernel as a test (TAINT_TEST was set before)"
elif [ $((tainted_after & TAINT_TEST)) -eq 0 ]; then
	ktap_test_pass "loading kmcl.ko does not taint the kernel as a test"
else
	ktap_test_fail "loading kmcl.ko does not taint the kernel as a test"
fi
suites=$(ls /sys/kernel/debug/kunit 2>/dev/null | grep '^kmcl_' | tr '\n' ' ')
check "kmcl.ko registers no KUnit suite (${suites:-none})" [ -z "$suites" ]

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
