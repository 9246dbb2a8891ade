#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs kmcl's KUnit suites: they are compiled only into the test build,
# kmcl_kunit.ko (the production kmcl.ko has none).  KUnit executes a
# module's suites when the module is loaded; their KTAP is read back from
# debugfs (/sys/kernel/debug/kunit/<suite>/results) and emitted here, one
# subtest per suite, so every test case is counted.  SKIP without
# kmcl_kunit.ko or a kernel with CONFIG_KUNIT.

. "$(dirname "$0")/lib/common.sh"
KUNIT=/sys/kernel/debug/kunit

ktap_print_header
need_modules kmcl_kunit
[ -d /sys/module/kunit ] || {
	ktap_skip_all "the kernel has no KUnit (CONFIG_KUNIT)"
	exit "$KSFT_SKIP"
}
[ -d "$KUNIT" ] || ktap_exit_fail_msg "no $KUNIT (CONFIG_KUNIT_DEBUGFS)"
grep -q '^kmcl ' /proc/modules && ktap_exit_fail_msg "kmcl.ko is loaded: kmcl_kunit.ko exports the same symbols"
insmod "$MODULES/kmcl_kunit.ko" || ktap_exit_fail_msg "insmod kmcl_kunit.ko failed"

suites=$(ls "$KUNIT" | grep '^kmcl_')
n=$(echo $suites | wc -w)
if [ "$n" -eq 0 ]; then
	rmmod kmcl_kunit
	ktap_exit_fail_msg "kmcl_kunit.ko registered no KUnit suite"
fi
ktap_set_plan "$n"

for s in $suites; do
	# Drop the file's own "KTAP version 1" and "1..1" lines and renumber
	# its closing result line so the suites form one list.
	awk -v num="$KTAP_TESTNO" 'NR <= 2 { next }
		/^(not )?ok 1 / { sub(/ok 1 /, "ok " num " ") } { print }' "$KUNIT/$s/results"
	if grep -q '^ok 1 ' "$KUNIT/$s/results"; then
		KTAP_CNT_PASS=$((KTAP_CNT_PASS + 1))
	else
		KTAP_CNT_FAIL=$((KTAP_CNT_FAIL + 1))
	fi
	KTAP_TESTNO=$((KTAP_TESTNO + 1))
done

rmmod kmcl_kunit || ktap_print_msg "rmmod kmcl_kunit failed"
ktap_finished
