#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# scripts/ksft.sh DEST: installs kmcl's kselftest (tests/kselftest/kmcl)
# into DEST the kernel's way -- `make -C tools/testing/selftests
# TARGETS=kmcl install` -- with run_kselftest.sh, kselftest-list.txt and
# the modules in DEST/kmcl/modules.  The selftests framework files come from
# the kernel source (KSRC), copied with kmcl's directory into a private tree
# under out/ (the shared kernel cache is never written).
#
# Needs KDIR (kernel build directory) and KSRC (its source).
set -euo pipefail

dest=${1:?usage: ksft.sh DEST}
top=$(cd "$(dirname "$0")/.." && pwd)
: "${KDIR:?KDIR must name the kernel build directory}"
: "${KSRC:?KSRC must name the kernel source directory}"
command -v rsync >/dev/null || { echo "ksft.sh: lib.mk needs rsync (make setup)" >&2; exit 1; }

tree=$top/out/ksft-tree
sel=$tree/tools/testing/selftests
rm -rf "$tree"
mkdir -p "$sel" "$tree/scripts"
cp "$KSRC/scripts/subarch.include" "$tree/scripts/"
cp "$KSRC"/tools/testing/selftests/{Makefile,lib.mk,run_kselftest.sh} "$sel/"
cp -r "$KSRC/tools/testing/selftests/kselftest" "$sel/"
rsync -a --exclude '*.ko' "$top/tests/kselftest/kmcl/" "$sel/kmcl/"

rm -rf "$dest"
make --no-print-directory -C "$sel" TARGETS=kmcl KMCL_SRC="$top" KDIR="$KDIR" \
	KSFT_INSTALL_PATH="$dest" install
