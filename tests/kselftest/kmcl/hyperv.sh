#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The real-VMBus-host smoke test (tests/hyperv/smoke.sh, copied into the
# test VM by scripts/vm.sh): SKIP where no VMBus host exists, as in kmcl's
# QEMU/TCG test VM.
exec sh /tests/hyperv/smoke.sh /kmcl
