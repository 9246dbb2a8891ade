#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Developer tool: run `make check` (or another target) the way a fresh
# Debian 12 machine would, in a debootstrapped bookworm chroot that has
# only make and git, with an empty kmcl cache.  Proves that setup installs
# everything kmcl needs.  Takes about as long as a first `make check`.
#
#   scripts/cold-check.sh [ROOT] [TARGET]     (defaults: /tmp/kmcl-coldroot check)
set -euo pipefail

root=${1:-/tmp/kmcl-coldroot}
target=${2:-check}
top=$(cd "$(dirname "$0")/.." && pwd)

[ "$(id -u)" -eq 0 ] || { echo "cold-check.sh: needs root" >&2; exit 1; }
if [ ! -x "$root/usr/bin/apt-get" ]; then
	command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
	debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
if [ ! -x "$root/usr/bin/make" ]; then
	chroot "$root" apt-get install -y -q --no-install-recommends make git ca-certificates
fi
# The machine's own local CAs (e.g. of a registry proxy) belong to the
# machine, not to kmcl: a fresh machine has them, so the chroot gets them.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
	chroot "$root" update-ca-certificates >/dev/null
fi
rm -rf "$root/root/kmcl"
git clone -q "$top" "$root/root/kmcl"

for fs in proc sys dev dev/pts; do
	mountpoint -q "$root/$fs" || mount --bind "/$fs" "$root/$fs"
done
trap 'for fs in dev/pts dev sys proc; do umount "$root/$fs" 2>/dev/null || true; done' EXIT

chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	bash -c "cd /root/kmcl && time make $target"
