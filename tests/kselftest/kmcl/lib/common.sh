# SPDX-License-Identifier: GPL-2.0
#
# Helpers shared by kmcl's test programs (sourced, not run).

KUNIT_GLOB=/sys/module/kunit/parameters/filter_glob

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

# insmod_quiet KO [ARGS...]: load a module without running its KUnit
# suites (kunit.sh covers them).  Returns insmod's status.
insmod_quiet() {
	_old_glob=$(cat "$KUNIT_GLOB" 2>/dev/null)
	set_kunit_glob kmcl_no_suite
	insmod "$@"
	_rc=$?
	set_kunit_glob "$_old_glob"
	return $_rc
}

# check NAME COMMAND...: one KTAP result from a command's exit status
# (needs ktap_helpers.sh).
check() {
	name=$1
	shift
	if "$@"; then
		ktap_test_pass "$name"
	else
		ktap_test_fail "$name"
	fi
}
