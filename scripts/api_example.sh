#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds a copy of the C sample (samples/kmcl_echo_vsp.c) as a user of kmcl
# would, with the Kbuild lines and the make command pasted from
# Documentation/api.rst ("Building a module that uses kmcl"): the page's
# build command must work as written.  Needs KDIR and a built kmcl.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
: "${KDIR:?KDIR must name the kernel build directory}"
doc=$top/Documentation/api.rst
dir=$top/out/api-example
rm -rf "$dir"
mkdir -p "$dir"
cp "$top/samples/kmcl_echo_vsp.c" "$dir/my_vsc.c"
# The literal blocks after "give your module a ``Kbuild``" and "build it
# with": indented lines, up to the next blank line.
block() {
	awk -v start="$1" 'index($0, start) { f = 1; next }
		f == 1 && /^    / { print substr($0, 5); g = 1; next }
		g && !/^    / { exit }' "$doc"
}
block "give your module a \`\`Kbuild\`\`" >"$dir/Kbuild"
cmd=$(block "and build it with the kernel's toolchain" | sed 's/\\$//' | tr '\n' ' ')
[ -s "$dir/Kbuild" ] && [ -n "$cmd" ] || { echo "api_example.sh: no build snippet in $doc" >&2; exit 1; }
echo "Kbuild: $(tr '\n' ' ' <"$dir/Kbuild")"
echo "command: $cmd"
cd "$dir"
export KMCL=$top KDIR
eval "$cmd"
[ -f "$dir/my_vsc.ko" ] && echo "api_example.sh: my_vsc.ko built"
