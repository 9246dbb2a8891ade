# SPDX-License-Identifier: GPL-2.0
#
# Helpers shared by kmcl's test programs (sourced, not run).  Paths are
# relative to the test directory, as in any kselftest installation:
#   ../kselftest/ktap_helpers.sh   the kernel's KTAP helpers
#   modules/                       kmcl's modules (lib.mk's TEST_GEN_MODS_DIR)
# KMCL_MODULES names another module directory (e.g. a build tree's).

KSFT_DIR=$(cd "$(dirname "$0")" && pwd)
. "$KSFT_DIR/../kselftest/ktap_helpers.sh"
MODULES=${KMCL_MODULES:-$KSFT_DIR/modules}
KUNIT_GLOB=/sys/module/kunit/parameters/filter_glob

# need_modules NAME...: skips the whole test unless $MODULES holds NAME.ko
# for every NAME (call after ktap_print_header).
need_modules() {
	for _m in "$@"; do
		if [ ! -f "$MODULES/$_m.ko" ]; then
			ktap_skip_all "$_m.ko not in $MODULES (build kmcl's modules; see Documentation/testing.rst)"
			exit "$KSFT_SKIP"
		fi
	done
}

# set_kunit_glob GLOB: which KUnit suites/cases the next insmod runs.
# Written without a newline: KUnit would take it as part of the glob.
set_kunit_glob() {
	[ -w "$KUNIT_GLOB" ] && printf '%s' "$1" >"$KUNIT_GLOB"
}

# log_since MARKER: the kernel log after the line holding MARKER.
log_since() {
	dmesg | awk -v m="$1" 'f; index($0, m) { f = 1 }'
}

# logged TEXT: whether TEXT was logged since $marker.
logged() {
	log_since "$marker" | grep -qF "$1"
}

# wait_logged TEXT SECONDS: waits until TEXT is logged since $marker.
wait_logged() {
	_n=0
	while ! logged "$1"; do
		[ "$_n" -ge "$2" ] && return 1
		sleep 1
		_n=$((_n + 1))
	done
}

# wait_logged_re REGEX SECONDS: waits until REGEX (an extended regular
# expression) is logged since $marker.
wait_logged_re() {
	_n=0
	while ! log_since "$marker" | grep -qE "$1"; do
		[ "$_n" -ge "$2" ] && return 1
		sleep 1
		_n=$((_n + 1))
	done
}

# check NAME COMMAND...: one KTAP result from a command's exit status.
check() {
	name=$1
	shift
	if "$@"; then
		ktap_test_pass "$name"
	else
		ktap_test_fail "$name"
	fi
}
