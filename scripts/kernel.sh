#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or locate) kmcl's test kernel in a cache outside the repository.
#
#   scripts/kernel.sh build [FLAVOUR]   build if missing, print nothing else on a hit
#   scripts/kernel.sh kdir  [FLAVOUR]   print the kernel build directory
#   scripts/kernel.sh src   [FLAVOUR]   print the kernel source directory
#
# FLAVOUR is "debug" (default: base + debug fragments, used by `make check`)
# or "fast" (base + fast fragments: no debugging, for benchmarks).  The build directory is
# keyed on the kernel package version, the fragments and the toolchain, so it
# is rebuilt only when one of them changes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CACHE=${KMCL_CACHE:-$HOME/.cache/kmcl}
RUSTC=${RUSTC:-/usr/bin/rustc}
RUSTDOC=${RUSTDOC:-/usr/bin/rustdoc}
BINDGEN=${BINDGEN:-$HOME/.cargo/bin/bindgen}
LLVM=${LLVM:--19}
JOBS=${JOBS:-$(($(nproc) + 1))}

cmd=${1:-build}
flavour=${2:-debug}

case "$flavour" in
debug) fragments="$here/kconfig/base.config $here/kconfig/debug.config" ;;
fast) fragments="$here/kconfig/base.config $here/kconfig/fast.config" ;;
*) echo "kernel.sh: unknown flavour '$flavour' (debug|fast)" >&2; exit 2 ;;
esac

kver=$(dpkg-query -W -f='${Version}' linux-source-7.3 2>/dev/null) || {
	echo "kernel.sh: linux-source-7.3 is not installed (run scripts/setup.sh)" >&2
	exit 1
}
tarball=/usr/src/linux-source-7.3.tar.xz
key=$({
	echo "$kver"
	cat $fragments
	"$RUSTC" --version
	"clang$LLVM" --version | head -1
	"$BINDGEN" --version
} | sha256sum | cut -c1-12)
src=$CACHE/src/linux-source-$kver
out=$CACHE/kernel-$flavour-$key

case "$cmd" in
kdir) echo "$out"; exit 0 ;;
src) echo "$src"; exit 0 ;;
esac
[ "$cmd" = build ] || { echo "kernel.sh: unknown command '$cmd'" >&2; exit 2; }

if [ -f "$out/.kmcl-built" ]; then
	exit 0
fi

say() { printf '[kernel] %s\n' "$*"; }
mkdir -p "$CACHE/src"
# One build per cache at a time: a second `make check` (another clone, the
# same machine) waits here instead of building into the same directories.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
	say "another kernel build holds $CACHE/.build.lock; waiting for it"
	flock 9
	# It may have built this kernel meanwhile.
	if [ -f "$out/.kmcl-built" ]; then
		say "built meanwhile: $out"
		exit 0
	fi
fi
if [ ! -f "$src/.kmcl-unpacked" ]; then
	say "unpacking $tarball ($kver) into $src"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -C "$src.tmp" -xf "$tarball" --strip-components=1
	mv "$src.tmp" "$src"
	touch "$src/.kmcl-unpacked"
fi

kmake() {
	make -C "$src" O="$out" LLVM="$LLVM" RUSTC="$RUSTC" RUSTDOC="$RUSTDOC" \
		BINDGEN="$BINDGEN" "$@"
}

if [ ! -f "$out/.kmcl-configured" ]; then
	say "configuring $flavour kernel in $out"
	rm -rf "$out"
	mkdir -p "$out"
	kmake -s tinyconfig >/dev/null
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" $fragments >/dev/null
	kmake -s olddefconfig >/dev/null

	# merge_config.sh -m does not resolve dependencies: check that every
	# option we asked for survived olddefconfig, so a silently dropped
	# option is an error rather than a kernel without it.
	missing=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=n)
			grep -q "^${line%%=*}=" "$out/.config" &&
				{ echo "  wanted off: $line" >&2; missing=1; } ;;
		CONFIG_*)
			grep -qx "$line" "$out/.config" ||
				{ echo "  not set: $line" >&2; missing=1; } ;;
		esac
	done < <(cat $fragments)
	if [ "$missing" -ne 0 ]; then
		echo "kernel.sh: the config fragments did not apply (see above)" >&2
		exit 1
	fi
	touch "$out/.kmcl-configured"
else
	# An interrupted build resumes where it stopped.
	say "resuming the $flavour kernel build in $out"
fi

say "building bzImage + modules with $JOBS jobs (about 6 to 13 minutes on 2 cores; log: $out/build.log)"
start=$(date +%s)
kmake -j"$JOBS" bzImage modules >"$out/build.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
	sleep 5
	now=$(date +%s)
	if [ $(((now - start) % 60)) -lt 5 ]; then
		say "$(((now - start) / 60)) min: $(grep -c '^  [A-Z]' "$out/build.log") build steps done"
	fi
done
if ! wait "$pid"; then
	grep -E 'error|Error' "$out/build.log" | head -20 >&2
	echo "kernel.sh: kernel build failed; full log: $out/build.log" >&2
	exit 1
fi
echo "$(($(date +%s) - start))" >"$out/.kmcl-build-seconds"
touch "$out/.kmcl-built"
say "kernel ready in $(cat "$out/.kmcl-build-seconds") s: $out"
