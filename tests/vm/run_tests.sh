#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kselftest-style runner inside the VM: runs every test program in
# /tests/kmcl in name order and prints one KTAP document in which each
# program's own KTAP output is nested (indented) as its subtests.  A last
# test checks kmemleak for leaks left behind by all of them.

TEST_TIMEOUT=${TEST_TIMEOUT:-600}
KMEMLEAK=/sys/kernel/debug/kmemleak

cd /tests/kmcl || exit 1
# KMCL_TESTS (kernel command line, e.g. KMCL_APPEND=KMCL_TESTS=trace.sh,kunit.sh
# scripts/vm.sh check) runs only those programs: for working on one test.
if [ -n "${KMCL_TESTS:-}" ]; then
	tests=$(echo "$KMCL_TESTS" | tr , ' ')
else
	tests=$(ls *.sh | sort)
fi
n=$(echo $tests | wc -w)
[ -w "$KMEMLEAK" ] && n=$((n + 1))

echo "KTAP version 1"
echo "1..$n"

# Forget what boot left behind: report only what the tests leak.
[ -w "$KMEMLEAK" ] && echo clear >"$KMEMLEAK"

i=0
failed=0
for t in $tests; do
	i=$((i + 1))
	echo "# selftests: kmcl: $t"
	{ timeout -s KILL "$TEST_TIMEOUT" sh "./$t" 2>&1; echo $? >/tmp/rc; } | sed 's/^/  /'
	rc=$(cat /tmp/rc)
	case "$rc" in
	0) echo "ok $i selftests: kmcl: $t" ;;
	4) echo "ok $i selftests: kmcl: $t # SKIP" ;;
	137) echo "not ok $i selftests: kmcl: $t # TIMEOUT ${TEST_TIMEOUT}s"; failed=1 ;;
	*) echo "not ok $i selftests: kmcl: $t # exit=$rc"; failed=1 ;;
	esac
done

if [ -w "$KMEMLEAK" ]; then
	i=$((i + 1))
	# Two scans: an object is reported only once it looked unreferenced twice.
	echo scan >"$KMEMLEAK"
	sleep 1
	echo scan >"$KMEMLEAK"
	leaks=$(cat "$KMEMLEAK")
	if [ -z "$leaks" ]; then
		echo "ok $i kmemleak: no leaks after the suite"
	else
		echo "$leaks" | sed 's/^/# /'
		echo "not ok $i kmemleak: no leaks after the suite"
		failed=1
	fi
fi
exit $failed
