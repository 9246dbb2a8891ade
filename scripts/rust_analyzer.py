#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Completes the rust-project.json that the kernel's `make rust-analyzer`
wrote for kmcl's crates (kmcl_main, the Rust sample, the benchmark).

Usage: rust_analyzer.py RUST-PROJECT.JSON

- Each kmcl crate's source root also holds include/kmcl/rust/, where the
  Rust wrapper (kmcl.rs) and the ABI (abi.rs) live: the crates include them
  with #[path], which rust-analyzer resolves only inside a source root.
- kmcl_main gets `kmcl_kunit`, so the KUnit suites and test hooks of the
  test build (kmcl_kunit.ko) are analysed too.
"""

import json
import os
import sys

KMCL_CRATES = {"kmcl_main", "kmcl_echo_vsc", "bench_main"}


def main():
    path = sys.argv[1]
    top = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        project = json.load(f)
    found = set()
    for crate in project["crates"]:
        name = crate.get("display_name")
        if name not in KMCL_CRATES:
            continue
        found.add(name)
        root = os.path.join(top, crate["root_module"])
        crate["root_module"] = root
        crate["is_workspace_member"] = True
        crate["source"] = {
            "include_dirs": [os.path.dirname(root), os.path.join(top, "include/kmcl/rust")],
            "exclude_dirs": [],
        }
        if name == "kmcl_main":
            crate.setdefault("cfg", []).append("kmcl_kunit")
    missing = KMCL_CRATES - found
    if missing:
        sys.exit(f"rust_analyzer.py: no crate {', '.join(sorted(missing))} in {path}")
    with open(path, "w") as f:
        json.dump(project, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
