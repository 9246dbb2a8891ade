# SPDX-License-Identifier: GPL-2.0
#
# Helpers shared by kmcl's test programs (sourced, not run).

KUNIT_GLOB=/sys/module/kunit/parameters/filter_glob

# log_since MARKER: the kernel log after the line holding MARKER.
log_since() {
	dmesg | awk -v m="$1" 'f; index($0, m) { f = 1 }'
}

# insmod_quiet KO [ARGS...]: load a module without running its KUnit
# suites (kunit.sh covers them).  Returns insmod's status.
insmod_quiet() {
	_old_glob=$(cat "$KUNIT_GLOB" 2>/dev/null)
	[ -w "$KUNIT_GLOB" ] && echo "kmcl_no_suite" >"$KUNIT_GLOB"
	insmod "$@"
	_rc=$?
	[ -w "$KUNIT_GLOB" ] && echo "$_old_glob" >"$KUNIT_GLOB"
	return $_rc
}
