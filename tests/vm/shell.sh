#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make shell`: kmcl.ko and the echo samples loaded, then an interactive
# busybox shell on the console.  The modules are in /kmcl (the kselftest's
# modules/ directory); the suite itself is /kselftest/run_kselftest.sh.

dmesg -n 4
insmod /kmcl/kmcl.ko && echo "[kmcl-shell] kmcl.ko loaded"
insmod /kmcl/kmcl_echo_vsp.ko packets=100 && insmod /kmcl/kmcl_echo_vsc.ko packets=100 &&
	echo "[kmcl-shell] kmcl_echo_vsp and kmcl_echo_vsc loaded (100 packets echoed each way)"
cat <<'EOT'
[kmcl-shell] try:
  ls /sys/kernel/debug/kmcl/; cat /sys/kernel/debug/kmcl/*/state
  echo 1 >/sys/kernel/tracing/events/kmcl/enable; cat /sys/kernel/tracing/trace
  ls /kmcl; rmmod kmcl_echo_vsc kmcl_echo_vsp kmcl; insmod /kmcl/kmcl_kunit.ko
  /kselftest/run_kselftest.sh -t kmcl:samples.sh
  poweroff -f    (or Ctrl-A X) to leave
EOT
exec setsid cttyhack sh -l
