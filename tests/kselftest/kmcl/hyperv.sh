#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kmcl on a real VMBus host: opens Hyper-V's heartbeat channel through kmcl
# (kmcl_hv_smoke.ko, KMCL_TRANSPORT_HOST) and answers the host's IC version
# negotiation and a heartbeat.  KTAP output; exits 4 (kselftest SKIP) where
# no VMBus host offers a heartbeat device, as on machines without Hyper-V.
#
# Run as part of the suite (run_kselftest.sh, see Documentation/testing.rst)
# or alone, as root in a Hyper-V/Azure guest running a Rust-enabled kernel
# that kmcl was built for (see Documentation/hyperv.rst):
#   ./hyperv.sh [DIR]
# DIR holds kmcl.ko and kmcl_hv_smoke.ko (default: the suite's modules/, or
# $KMCL_MODULES).
#
# The heartbeat device is normally bound to hv_utils: it is unbound for the
# test and bound back afterwards (the host's heartbeat monitor may notice a
# gap of a few seconds).
#
# KMCL_SMOKE_PM_TEST=1 adds a hibernation dry run (the kernel's pm_test
# "core" level, CONFIG_PM_DEBUG and hibernation support needed): hv_vmbus
# suspends and resumes every device without writing an image, so kmcl's
# .suspend closes the heartbeat client's channel and .resume lets it open
# it again, which must then answer heartbeats again.  It pauses the whole
# guest for a few seconds; where it cannot run it is reported as skipped.
# This step has not yet run on a real host.

. "$(dirname "$0")/lib/common.sh"
DIR=${1:-$MODULES}
HEARTBEAT=57164f39-9115-4e78-ab55-382f3bd5422d
DEVICES=/sys/bus/vmbus/devices

ktap_print_header

dev=
for d in "$DEVICES"/*; do
	[ "$(cat "$d/class_id" 2>/dev/null)" = "{$HEARTBEAT}" ] && dev=${d##*/}
done
if [ -z "$dev" ]; then
	ktap_skip_all "no VMBus host: no heartbeat device in $DEVICES"
	exit "$KSFT_SKIP"
fi

ktap_set_plan 8
marker="kmcl-test: hyperv smoke $$"
echo "$marker" >/dev/kmsg

# Free the device from its driver (hv_utils), remembering it; only kmcl's
# driver for the heartbeat type may bind it meanwhile (driver_override, as
# Documentation/hyperv.rst shows).
echo "kmcl-$HEARTBEAT" >"$DEVICES/$dev/driver_override"
driver=
if [ -e "$DEVICES/$dev/driver" ]; then
	driver=$(basename "$(readlink "$DEVICES/$dev/driver")")
	echo "$dev" >"$DEVICES/$dev/driver/unbind"
fi
ktap_print_msg "heartbeat device $dev (was bound to ${driver:-nothing})"

loaded_kmcl=
if ! grep -q '^kmcl ' /proc/modules; then
	insmod "$DIR/kmcl.ko" && loaded_kmcl=1
fi
check "kmcl is loaded" grep -q '^kmcl ' /proc/modules

insmod "$DIR/kmcl_hv_smoke.ko"
check "a kmcl client channel opened the heartbeat channel" logged "heartbeat channel opened through kmcl"
check "the device is bound to kmcl's driver" \
	test "$(basename "$(readlink "$DEVICES/$dev/driver")")" = "kmcl-$HEARTBEAT"
check "the host's IC version negotiation was answered" logged "negotiated IC framework"
check "a heartbeat was answered" logged "answered heartbeat"

# The guest says whether it is isolated (confidential): external data then
# goes through bounce buffers (Documentation/hyperv.rst).
log_since "$marker" | grep -E 'kmcl: .*VMBus host|Isolation Config|confidential VMBus' | sed 's/^/# /'
dmesg | grep -E 'Hyper-V: Isolation Config|Establishing connection to the confidential VMBus' | sed 's/^/# /'

pm_dry_run() {
	_m="kmcl-test: hyperv pm_test $$"
	echo "$_m" >/dev/kmsg
	echo core >/sys/power/pm_test || return 1
	echo disk >/sys/power/state
	_rc=$?
	echo none >/sys/power/pm_test
	[ "$_rc" -eq 0 ] || return 1
	# Suspended (the channel closed), resumed (opened again), answering.
	_saved=$marker
	marker=$_m
	wait_logged "heartbeat channel opened through kmcl" 30 &&
		wait_logged "after reopening" 30
	_rc=$?
	marker=$_saved
	return "$_rc"
}
pm_no_error() {
	! log_since "kmcl-test: hyperv pm_test $$" | grep -E 'kmcl(_hv_smoke)?: .*(error|failed|refused)'
}
if [ "${KMCL_SMOKE_PM_TEST:-0}" = 1 ] && [ -w /sys/power/pm_test ] &&
	grep -qw disk /sys/power/state; then
	check "hibernation dry run: the channel closed, opened again and answers heartbeats" pm_dry_run
	check "no kmcl error in the dry run" pm_no_error
else
	ktap_test_skip "hibernation dry run (KMCL_SMOKE_PM_TEST=1, CONFIG_PM_DEBUG and hibernation needed)"
	ktap_test_skip "no kmcl error in the dry run"
fi
rmmod kmcl_hv_smoke 2>/dev/null

# Give the device back: leave kmcl's driver, bind the old one.
[ -e "$DEVICES/$dev/driver" ] && echo "$dev" >"$DEVICES/$dev/driver/unbind"
echo >"$DEVICES/$dev/driver_override"
[ -n "$loaded_kmcl" ] && rmmod kmcl
if [ -n "$driver" ]; then
	echo "$dev" >"/sys/bus/vmbus/drivers/$driver/bind"
	check "the heartbeat device is back with $driver" \
		test "$(basename "$(readlink "$DEVICES/$dev/driver")")" = "$driver"
else
	ktap_test_skip "the device had no driver to give it back to"
fi
ktap_finished
