#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a kmcl VM run: nested KTAP results plus the kernel console log.

Usage: ktap_report.py RESULTS.ktap CONSOLE.log
       ktap_report.py --boot-reports CONSOLE.log

Prints one line per leaf test (PASS/FAIL/SKIP), one FAIL per kernel report
found in the console log (oops, BUG, WARNING, KASAN, lockdep, hung task,
kmemleak), and ends with "vm: N passed, N failed, N skipped".  Exits 1 when
anything failed, the VM did not finish, or a plan was not met.

With --boot-reports, prints the kernel reports logged before the guest
started its tests (BOOT_MARKER), that is before any kmcl code ran, and exits
1 if there are any.
"""

import re
import sys

RESULT = re.compile(r"^(?P<indent>\s*)(?P<ok>ok|not ok) (?P<num>\d+)\s*(?P<rest>.*)$")
PLAN = re.compile(r"^(?P<indent>\s*)1\.\.(?P<n>\d+)")
HEADER = re.compile(r"^(?P<indent>\s*)# (?P<kind>Subtest: |selftests: )(?P<name>.*)$")
FINISHED = re.compile(r"^kmcl-vm: finished rc=(\d+)")

# Kernel log lines that mean the kernel found a bug, ours or one we caused.
KERNEL_REPORTS = [
    re.compile(p)
    for p in (
        r"\bBUG:",  # KASAN, sleeping in atomic, NULL deref, bad page ...
        r"\bWARNING:",  # WARN_ON, lockdep, suspicious RCU usage
        r"\bOops\b",
        r"general protection fault",
        r"kernel BUG at",
        r"Kernel panic",
        r"UBSAN:",
        r"INFO: task .* blocked for more than",
        r"unreferenced object 0x",
        r"suspected memory leaks?",
        r"Bail out!",
    )
]
TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
BOOT_MARKER = "kmcl-vm: tests begin"


def kernel_reports(lines):
    """The lines of `lines` that are kernel bug reports, timestamps removed."""
    out = []
    for line in lines:
        text = TIMESTAMP.sub("", line.rstrip("\n"))
        if any(p.search(text) for p in KERNEL_REPORTS):
            out.append(text)
    return out


def boot_reports(console_path):
    with open(console_path, errors="replace") as f:
        lines = f.readlines()
    boot = []
    for line in lines:
        if BOOT_MARKER in line:
            break
        boot.append(line)
    found = kernel_reports(boot)
    for text in found:
        print(text)
    return 1 if found else 0


def leaf_results(lines):
    """Yield (status, name) for every leaf result in a nested KTAP stream.

    In KTAP a parent's result line follows its subtests' results, which are
    indented deeper, so a result line is a parent exactly when the previous
    result line was indented deeper than it.
    """
    prev_indent = None
    failed_below = {}  # indent -> a failure was seen deeper since the last result at this indent
    # indent -> (name, kind) announced by "# Subtest:" (KTAP: printed at the
    # subtests' indentation) or "# selftests:" (kselftest runner: printed at
    # the program's own indentation, before its nested output).
    headers = {}
    for line in lines:
        h = HEADER.match(line.rstrip("\n"))
        if h:
            indent = len(h.group("indent"))
            headers = {k: v for k, v in headers.items() if k < indent}
            headers[indent] = (h.group("name").strip(), h.group("kind"))
            continue
        m = RESULT.match(line.rstrip("\n"))
        if not m:
            continue
        indent = len(m.group("indent"))
        ok = m.group("ok") == "ok"
        rest = m.group("rest")
        name = rest.split(" # ")[0].lstrip("- ").strip()
        directive = rest.split(" # ", 1)[1] if " # " in rest else ""
        is_parent = prev_indent is not None and prev_indent > indent
        child_failed = any(v for k, v in failed_below.items() if k > indent)
        for k in [k for k in failed_below if k > indent]:
            del failed_below[k]
        prefix = [
            name_kind[0]
            for k, name_kind in sorted(headers.items())
            if k < indent or (k == indent and name_kind[1] == "Subtest: ")
        ]
        full = " / ".join(prefix + [name])
        if not is_parent:
            if not ok:
                yield "FAIL", full
            elif directive.upper().startswith("SKIP"):
                yield "SKIP", full
            else:
                yield "PASS", full
        elif not ok and not child_failed:
            # A test program that failed without a failing subtest
            # (crashed, timed out, missed its plan) is one failure.
            yield "FAIL", f"{full} ({directive or 'failed'})"
        if not ok:
            failed_below[indent] = True
        prev_indent = indent


def main():
    if sys.argv[1] == "--boot-reports":
        return boot_reports(sys.argv[2])
    results_path, console_path = sys.argv[1], sys.argv[2]
    with open(results_path, errors="replace") as f:
        results = f.readlines()
    with open(console_path, errors="replace") as f:
        console = f.readlines()

    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for status, name in leaf_results(results):
        counts[status] += 1
        print(f"{status} {name}")

    # Top-level plan: every planned test program must have reported.
    plan = None
    top = 0
    for line in results:
        m = PLAN.match(line)
        if m and not m.group("indent") and plan is None:
            plan = int(m.group("n"))
        m = RESULT.match(line)
        if m and not m.group("indent"):
            top += 1
    if plan is None:
        counts["FAIL"] += 1
        print("FAIL vm: the guest printed no KTAP plan")
    elif top < plan:
        counts["FAIL"] += plan - top
        print(f"FAIL vm: {plan - top} of {plan} planned test programs did not report")

    if not any(FINISHED.match(l) for l in results):
        counts["FAIL"] += 1
        print("FAIL vm: the guest did not finish (crash, hang or timeout; see console.log)")

    reports = kernel_reports(console)
    for text in reports[:20]:
        print(f"FAIL kernel log: {text}")
    if len(reports) > 20:
        print(f"FAIL kernel log: ... and {len(reports) - 20} more report lines")
    counts["FAIL"] += len(reports)

    line = f"vm: {counts['PASS']} passed, {counts['FAIL']} failed"
    if counts["SKIP"]:
        line += f", {counts['SKIP']} skipped"
    print(line)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
