#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything kmcl needs on a Debian 12 (bookworm) machine: the
# backports suites, the Rust-enabled 7.3 kernel source, the kernel's Rust
# toolchain, clang/LLVM 19, QEMU and busybox for the test VM, bindgen and
# cargo-fuzz.
#
# Idempotent: when everything is present it returns in about a second.
set -euo pipefail

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

BINDGEN_VERSION=${BINDGEN_VERSION:-0.73.2}
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}

# package -> suite it must come from ("" = default candidate)
PKGS_DEFAULT="clang-19 lld-19 llvm-19 libclang-19-dev flex bison bc libelf-dev
libssl-dev cpio busybox-static rustc-web rust-web-src rust-web-clippy cargo-web
rustfmt-web gcc g++ libc6-dev ca-certificates git xz-utils make python3 perl kmod gzip
rsync python3-sphinx"
PKGS_TRIXIE_BPO="linux-source-7.3"
PKGS_BOOKWORM_BPO="qemu-system-x86"

missing_pkgs() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || printf '%s ' "$p"
	done
}

bindgen_ok() {
	local v
	v=$("$CARGO_HOME/bin/bindgen" --version 2>/dev/null) || return 1
	[ "$v" = "bindgen $BINDGEN_VERSION" ]
}

# cargo-fuzz runs the host fuzz targets (rust/host/fuzz) with Debian's rustc
# (RUSTC_BOOTSTRAP=1, no sanitizer: the fuzzed code has no unsafe).
fuzz_ok() {
	local v
	v=$("$CARGO_HOME/bin/cargo-fuzz" --version 2>/dev/null) || return 1
	[ "$v" = "cargo-fuzz $CARGO_FUZZ_VERSION" ]
}

need_default=$(missing_pkgs $PKGS_DEFAULT)
need_trixie=$(missing_pkgs $PKGS_TRIXIE_BPO)
need_bpo=$(missing_pkgs $PKGS_BOOKWORM_BPO)

if [ -z "$need_default$need_trixie$need_bpo" ] && bindgen_ok && fuzz_ok; then
	exit 0
fi

[ "$(id -u)" -eq 0 ] || die "installing packages needs root; missing: $need_default$need_trixie$need_bpo"
command -v apt-get >/dev/null || die "apt-get not found: kmcl's setup supports Debian 12 (bookworm)"

if [ -n "$need_default$need_trixie$need_bpo" ]; then
	src=/etc/apt/sources.list.d/kmcl-backports.sources
	if [ ! -f "$src" ]; then
		say "adding bookworm-backports and trixie-backports (NotAutomatic) to apt"
		cat >"$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	fi
	# rustc-web comes from bookworm-security; minimal installs may lack it.
	sec=/etc/apt/sources.list.d/kmcl-security.sources
	if ! grep -rqs 'bookworm-security' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		say "adding bookworm-security to apt"
		cat >"$sec" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	fi
	say "apt-get update"
	apt-get update -q || die "apt-get update failed"
	export DEBIAN_FRONTEND=noninteractive
	if [ -n "$need_default" ]; then
		say "installing: $need_default"
		apt-get install -y -q --no-install-recommends $need_default ||
			die "could not install: $need_default"
	fi
	if [ -n "$need_trixie" ]; then
		say "installing from trixie-backports: $need_trixie"
		apt-get install -y -q --no-install-recommends -t trixie-backports $need_trixie ||
			die "could not install from trixie-backports: $need_trixie"
	fi
	if [ -n "$need_bpo" ]; then
		say "installing from bookworm-backports: $need_bpo"
		apt-get install -y -q --no-install-recommends -t bookworm-backports $need_bpo ||
			die "could not install from bookworm-backports: $need_bpo"
	fi
fi

if ! bindgen_ok; then
	# Debian's cargo-web with the kernel's own rustc: no rustup needed.
	say "cargo install bindgen-cli $BINDGEN_VERSION (about 2-3 minutes)"
	RUSTC=/usr/bin/rustc CARGO_HOME=$CARGO_HOME /usr/bin/cargo install --locked \
		--version "$BINDGEN_VERSION" bindgen-cli ||
		die "cargo install bindgen-cli failed"
fi
if ! fuzz_ok; then
	say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (about a minute)"
	RUSTC=/usr/bin/rustc CARGO_HOME=$CARGO_HOME /usr/bin/cargo install --locked \
		--version "$CARGO_FUZZ_VERSION" cargo-fuzz ||
		die "cargo install cargo-fuzz failed"
fi
say "toolchain ready"
