#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: build what is needed, boot the test VM, load kmcl and show it
# working.  The console log is kept in out/vm-run/console.log.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
KFLAVOUR=${KFLAVOUR:-debug}

scripts/kernel.sh build "$KFLAVOUR"
KDIR=$(scripts/kernel.sh kdir "$KFLAVOUR")
KSRC=$(scripts/kernel.sh src "$KFLAVOUR")
export KDIR KSRC
echo "[run] building kmcl against $KDIR"
make --no-print-directory KDIR="$KDIR" modules samples
echo "[run] booting the VM (QEMU TCG, debug kernel: about a minute)"
scripts/vm.sh run
if ! grep -q '^kmcl-vm: finished rc=0' out/vm-run/console.log; then
	echo "[run] the demo did not complete; see out/vm-run/console.log" >&2
	exit 1
fi
echo "[run] done; console log: out/vm-run/console.log"
