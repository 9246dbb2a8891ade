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

ktap_set_plan 6
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
