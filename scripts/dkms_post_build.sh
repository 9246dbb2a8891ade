#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# DKMS POST_BUILD (dkms.conf): keeps what drivers that use kmcl build
# against.  DKMS runs this in its build directory
# ($dkms_tree/kmcl/<version>/build, about to be cleaned) after the build;
# kmcl's Module.symvers goes next to the built module in
# $dkms_tree/kmcl/<version>/<kernel>/<arch>/, which `dkms remove` deletes
# with it.  The header is in the DKMS source tree, /usr/src/kmcl-<version>/
# include/.  See Documentation/building.rst.
set -e
kernelver=${1:?usage: dkms_post_build.sh KERNELVER ARCH}
arch=${2:?usage: dkms_post_build.sh KERNELVER ARCH}
dest=../$kernelver/$arch
[ -d "$dest" ] || { echo "dkms_post_build.sh: no $dest" >&2; exit 1; }
cp Module.symvers "$dest/Module.symvers"
echo "kmcl: Module.symvers for $kernelver kept in $(cd "$dest" && pwd)"
