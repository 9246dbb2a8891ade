#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make rustdoc`: HTML docs of kmcl's Rust API -- the safe wrapper
# include/kmcl/rust/kmcl.rs and its ABI module abi.rs -- in out/rustdoc/.
# The wrapper is a module each driver crate includes with #[path]; here a
# small crate root includes it, and rustdoc gets exactly the flags Kbuild
# gave rustc for the Rust sample (samples/.kmcl_echo_vsc.o.cmd), less the
# codegen outputs and the kernel's list of allowed unstable features (the
# nightly-only lint below needs one more).  Every warning fails the build,
# and so does any public item without documentation (missing_docs) or
# without a code example (rustdoc::all with missing_doc_code_examples);
# scripts/doc_examples.sh compiles those examples.
#
# Needs KDIR and the sample built against it (make samples).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
: "${KDIR:?KDIR must name the kernel build directory}"
cmd=$top/samples/.kmcl_echo_vsc.o.cmd
[ -f "$cmd" ] || { echo "rustdoc.sh: build the samples first (make samples)" >&2; exit 1; }
out=$top/out/rustdoc
src=$out/src
mkdir -p "$src"
cat >"$src/kmcl_api.rs" <<EOR
//! kmcl's Rust API: the safe wrapper drivers include with
//! \`#[path = ".../include/kmcl/rust/kmcl.rs"] mod kmcl;\` (see
//! Documentation/api.rst).
#[path = "$top/include/kmcl/rust/kmcl.rs"]
pub mod kmcl;
EOR

# The rustc flags of the sample's compile (the same target, cfgs, sanitizer
# ABI and extern crates), without its outputs and its source file.
read -r -a words < <(sed -n '1s/^savedcmd_[^ ]* := //p' "$cmd" | sed 's/ ; .*//')
flags=()
skip=0
for w in "${words[@]}"; do
	if [ "$skip" = 1 ]; then skip=0; continue; fi
	case "$w" in
	OBJTREE=* | RUST_MODFILE=* | */rustc | kmcl_echo_vsc.rs) ;;
	--emit=* | -Zbinary_dep_depinfo=* | -Dwarnings | -Zallow-features=*) ;;
	--out-dir | --crate-type) skip=1 ;;
	-Zcrate-attr=\'*\') flags+=("-Zcrate-attr=${w#-Zcrate-attr=}") ;;
	*) flags+=("$w") ;;
	esac
done
# Strip the shell quotes Kbuild put around one -Zcrate-attr.
for i in "${!flags[@]}"; do
	flags[i]=${flags[i]//\'/}
done
cd "$top/samples"
OBJTREE=$KDIR RUST_MODFILE=kmcl_api RUSTC_BOOTSTRAP=1 "${RUSTDOC:-/usr/bin/rustdoc}" \
	"${flags[@]}" --crate-type rlib --crate-name kmcl_api -o "$out" \
	-Zunstable-options '-Zcrate-attr=feature(rustdoc_missing_doc_code_examples)' \
	-Dwarnings -Dmissing_docs -Drustdoc::all -Drustdoc::missing_doc_code_examples \
	"$src/kmcl_api.rs"
echo "rustdoc: $out/kmcl_api/index.html"
