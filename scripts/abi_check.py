#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Checks the Rust ABI description against the C header, by bindgen.

include/kmcl/rust/abi.rs is the one Rust description of kmcl's C ABI (the
wrapper's extern declarations, the callback types, the structures and the
interface tables); include/kmcl/kmcl.h is the C one.  This runs bindgen
over kmcl.h (with stand-in <linux/types.h> and <linux/uuid.h> defining the
kernel's fixed-size types, so no kernel tree is needed) and compares, after
mapping C names to abi.rs's names:

  - every function: present on both sides, same parameter types, same
    return type;
  - every callback typedef (kmcl_evt_*) with abi.rs's Evt* type;
  - every structure abi.rs names with "C `struct kmcl_...`": the same fields
    in the same order with the same types (an interface table's field is
    abi.rs's function type, bindgen's Option of the same function pointer:
    the same ABI; kmcl fills every field).

Layouts (sizes, offsets) are KUnit's job (rust/api/tests/layout.rs); this
checks what layouts cannot: which functions exist and their signatures.

  abi_check.py [--bindgen PATH] [--self-test]

--self-test also checks that the comparison finds a changed parameter type,
a changed return type, a missing function, a changed callback and a
changed structure field (each made on a copy of abi.rs, in memory).
Exit status 0 when they agree; 1 with one line per difference.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(TOP, "include/kmcl/kmcl.h")
ABI = os.path.join(TOP, "include/kmcl/rust/abi.rs")

STAND_INS = {
    "linux/types.h": """
typedef unsigned char u8; typedef unsigned short u16;
typedef unsigned int u32; typedef unsigned long long u64;
typedef signed char s8; typedef short s16; typedef int s32; typedef long long s64;
typedef u8 __u8; typedef u16 __u16; typedef u32 __u32; typedef u64 __u64;
#define bool _Bool
typedef unsigned long size_t;
#define NULL ((void *)0)
#define true 1
#define false 0
""",
    "linux/uuid.h": "typedef struct { __u8 b[16]; } guid_t;\n",
}


def bindgen(binary):
    """bindgen's Rust for kmcl.h's kmcl_* functions and types."""
    with tempfile.TemporaryDirectory() as inc:
        os.makedirs(os.path.join(inc, "linux"))
        for name, text in STAND_INS.items():
            with open(os.path.join(inc, name), "w") as f:
                f.write(text)
        out = subprocess.run(
            [binary, HEADER, "--allowlist-function", "kmcl_.*",
             "--allowlist-type", "kmcl_.*", "--no-layout-tests", "--use-core",
             "--no-doc-comments", "--", "-I" + inc, "-nostdinc", "-D__KERNEL__"],
            check=True, capture_output=True, text=True)
        return out.stdout


def split_top(text, sep=","):
    """Splits at `sep` outside (), <> and []."""
    parts, depth, cur = [], 0, ""
    for i, ch in enumerate(text):
        if ch in "(<[":
            depth += 1
        elif ch in ")]" or (ch == ">" and text[i - 1:i] != "-"):
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def camel(snake):
    return "".join(w[:1].upper() + w[1:] for w in snake.split("_"))


class Names:
    """C type names as abi.rs spells them."""

    def __init__(self, abi_text):
        self.map = {"guid_t": "Guid", "module": "Module", "page": "Page"}
        # "(C `struct kmcl_x`...)" above "pub struct Name".
        for m in re.finditer(r"C `struct (\w+)`(?:(?!pub struct)[\s\S])*?pub struct (\w+)",
                             abi_text):
            self.map[m.group(1)] = m.group(2)

    def c_type(self, name):
        if name in self.map:
            return self.map[name]
        if name.startswith("kmcl_evt_"):
            rest = name[len("kmcl_evt_"):]
            if rest.startswith("channel_"):
                rest = rest[len("channel_"):]
            return "Evt" + camel(rest)
        if name.startswith("kmcl_"):
            return camel(name)
        return name


def norm(ty, names=None):
    """One spelling for a type: tokens one space apart, no paths, no
    parameter names in function pointer types, kernel integer names, and
    (with `names`) abi.rs's type names."""
    ty = re.sub(r"::core::ffi::|::core::option::|core::ffi::|::std::os::raw::", "", ty)
    ty = ty.replace("unsafe extern \"C\" fn", "fn")
    ty = re.sub(r"(?<=[(,])\s*\w+\s*:(?!:)", "", ty)
    ty = re.sub(r"\b(u8|u16|u32|u64|s8|s16|s32|s64)_\b", r"\1", ty)
    ty = re.sub(r"\b__([us](?:8|16|32|64))\b", r"\1", ty)
    ty = re.sub(r"\b(\d+)usize\b", r"\1", ty)
    tokens = re.findall(r"->|\w+|\S", ty)
    tokens = [t for k, t in enumerate(tokens)
              if not (t == "," and k + 1 < len(tokens) and tokens[k + 1] in ")>")]
    while tokens and tokens[-1] == ",":
        tokens.pop()
    if names is not None:
        tokens = [names.c_type(t) if (t.startswith("kmcl_") or t in names.map) else t
                  for t in tokens]
    return " ".join(tokens)


def params(arglist):
    """The types of a parameter list 'a: T, b: U'."""
    out = []
    for p in split_top(arglist):
        _, _, ty = p.partition(":")
        out.append(ty.strip())
    return out


def parse_fn_sig(args, ret):
    return ([norm(t) for t in params(args)], norm(ret if ret else "()"))


def c_side(text, names):
    """Functions, callbacks and structures of bindgen's output."""
    text = strip_comments(text)
    fns, cbs, structs = {}, {}, {}
    for m in re.finditer(r"pub fn (\w+)\s*\((.*?)\)\s*(?:->\s*([^;{]+?))?\s*;", text, re.S):
        fns[m.group(1)] = tuple(normalize_sig(parse_fn_sig(m.group(2), m.group(3)), names))
    for m in re.finditer(r"pub type (kmcl_evt_\w+)\s*=\s*(.*?);", text, re.S):
        cbs[names.c_type(m.group(1))] = norm(m.group(2), names)
    for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
        fields = []
        for f in split_top(m.group(2)):
            f = re.sub(r"^pub\s+", "", f)
            name, _, ty = f.partition(":")
            fields.append((name.strip(), norm(ty, names)))
        structs[names.c_type(m.group(1))] = fields
    return fns, cbs, structs


def normalize_sig(sig, names):
    args, ret = sig
    return [norm(a, names) for a in args], norm(ret, names)


def rust_side(text):
    """Functions (with their Fn* types), callbacks and structures of abi.rs."""
    text = strip_comments(text)
    fns, fn_types, cbs, structs = {}, {}, {}, {}
    body = text[text.index("kmcl_functions! {"):]
    for m in re.finditer(r"(Fn\w+)\s*=\s*(kmcl_\w+)\s*\((.*?)\)\s*(?:->\s*([^;]+?))?\s*;", body,
                         re.S):
        sig = parse_fn_sig(m.group(3), m.group(4))
        fns[m.group(2)] = sig
        fn_types[m.group(1)] = norm("fn(%s)%s" % (", ".join(sig[0]),
                                                  "" if sig[1] == norm("()") else " -> " + sig[1]))
    for m in re.finditer(r"pub type (Evt\w+)\s*=\s*(.*?);", text, re.S):
        cbs[m.group(1)] = norm(m.group(2))
    for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
        fields = []
        for f in split_top(m.group(2)):
            f = re.sub(r"#\[[^\]]*\]\s*", "", f)
            f = re.sub(r"^pub\s+", "", f)
            name, _, ty = f.partition(":")
            fields.append((name.strip(), norm(ty)))
        structs[m.group(1)] = fields
    return fns, fn_types, cbs, structs


def compare(c_text, abi_text):
    """The differences, one line each."""
    names = Names(abi_text)
    c_fns, c_cbs, c_structs = c_side(c_text, names)
    r_fns, r_fn_types, r_cbs, r_structs = rust_side(abi_text)
    diffs = []
    for name in sorted(set(c_fns) | set(r_fns)):
        if name not in r_fns:
            diffs.append(f"{name}: in kmcl.h, not in abi.rs")
        elif name not in c_fns:
            diffs.append(f"{name}: in abi.rs, not in kmcl.h")
        else:
            (ca, cr), (ra, rr) = c_fns[name], r_fns[name]
            if len(ca) != len(ra):
                diffs.append(f"{name}: {len(ca)} parameters in kmcl.h, {len(ra)} in abi.rs")
            for i, (c, r) in enumerate(zip(ca, ra)):
                if c != r:
                    diffs.append(f"{name}: parameter {i + 1} is {c} in kmcl.h, {r} in abi.rs")
            if cr != rr:
                diffs.append(f"{name}: returns {cr} in kmcl.h, {rr} in abi.rs")
    for name in sorted(c_cbs):
        if name not in r_cbs:
            diffs.append(f"{name}: callback type not in abi.rs")
        elif c_cbs[name] != r_cbs[name]:
            diffs.append(f"{name}: {c_cbs[name]} in kmcl.h, {r_cbs[name]} in abi.rs")
    for name in sorted(c_structs):
        cf = c_structs[name]
        if name not in r_structs or [n for n, _ in cf] == ["_unused"]:
            continue  # not described in abi.rs, or opaque
        rf = r_structs[name]
        if [n for n, _ in cf] != [n for n, _ in rf]:
            diffs.append(f"{name}: fields {[n for n, _ in cf]} in kmcl.h, "
                         f"{[n for n, _ in rf]} in abi.rs")
            continue
        for (fname, ct), (_, rt) in zip(cf, rf):
            rt_fn = r_fn_types.get(rt)
            if rt_fn is not None:
                # A table field: abi.rs's Fn* type; bindgen's Option of it.
                ok = ct == norm("Option<%s>" % rt_fn)
            else:
                ok = ct == rt
            if not ok:
                diffs.append(f"{name}.{fname}: {ct} in kmcl.h, {rt} in abi.rs")
    # What was compared, for the log.
    stats = (len(c_fns), len(c_cbs),
             sum(1 for s in c_structs
                 if s in r_structs and [n for n, _ in c_structs[s]] != ["_unused"]))
    return diffs, stats


def mutate(abi_text, old, new):
    assert old in abi_text, old
    return abi_text.replace(old, new, 1)


def self_test(c_text, abi_text):
    """The comparison must find each kind of difference."""
    cases = [
        ("a parameter type", "kmcl_channel_delete_gpadl(channel: *mut KmclChannel,\n        gpadl: u32)",
         "kmcl_channel_delete_gpadl(channel: *mut KmclChannel,\n        gpadl: u16)"),
        ("a return type", "kmcl_channel_sizeof_packet(channel: *mut KmclChannel) -> u32;",
         "kmcl_channel_sizeof_packet(channel: *mut KmclChannel) -> u64;"),
        ("a missing function", "FnChannelStart = kmcl_channel_start(", "FnChannelStart = kmcl_channel_begin("),
        ("a callback", "EvtSubchannelOffered = Option<unsafe extern \"C\" fn(primary: *mut KmclChannel, index: u16)>",
         "EvtSubchannelOffered = Option<unsafe extern \"C\" fn(primary: *mut KmclChannel, index: u32)>"),
        ("a structure field", "    pub nr_pages: u32,", "    pub nr_pages: u64,"),
    ]
    bad = 0
    base, _ = compare(c_text, abi_text)
    for what, old, new in cases:
        diffs, _ = compare(c_text, mutate(abi_text, old, new))
        diffs = [d for d in diffs if d not in base]
        if diffs:
            print(f"abi_check: self-test: a changed {what} is found: {diffs[0]}")
        else:
            print(f"abi_check: self-test: a changed {what} is NOT found")
            bad += 1
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bindgen", default=os.environ.get(
        "BINDGEN", os.path.expanduser("~/.cargo/bin/bindgen")))
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    c_text = bindgen(a.bindgen)
    with open(ABI) as f:
        abi_text = f.read()
    diffs, (nf, nc, ns) = compare(c_text, abi_text)
    for d in diffs:
        print("abi_check: " + d)
    bad = len(diffs)
    if a.self_test:
        bad += self_test(c_text, abi_text)
    if bad:
        print(f"abi_check: {len(diffs)} differences between kmcl.h and abi.rs")
        return 1
    print(f"abi_check: kmcl.h and abi.rs agree: {nf} functions, {nc} callback types, "
          f"{ns} structures (bindgen {subprocess.run([a.bindgen, '--version'], capture_output=True, text=True).stdout.split()[-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
