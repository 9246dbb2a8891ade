#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a kmcl VM run: the kselftest results plus the kernel console log.

Usage: ktap_report.py RESULTS.ktap CONSOLE.log
       ktap_report.py --boot-reports CONSOLE.log

RESULTS.ktap is what the kernel's run_kselftest.sh printed in the VM.  Its
runner prefixes each test program's own KTAP with "# "; that is turned back
into nested KTAP (RESULTS.nested.ktap) and parsed by the kernel's own
parser, `kunit.py parse` (KSRC/tools/testing/kunit), which prints a line per
test and counts the leaf tests (a program that failed without a failing
subtest, or missed its plan, counts as a failure).  kmcl's own checks follow:
one FAIL per kernel report in the console log (oops, BUG, WARNING, KASAN,
lockdep, hung task, kmemleak) and one if the guest did not finish.  Ends
with "vm: N passed, N failed, N skipped"; exits 1 when anything failed.

With --boot-reports, prints the kernel reports logged before the guest
started its tests (BOOT_MARKER), that is before any kmcl code ran, and exits
1 if there are any.
"""

import os
import re
import subprocess
import sys

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


SELFTEST_HEADER = re.compile(r"^# selftests: \S+: ")
SELFTEST_RESULT = re.compile(r"^(ok|not ok) \d+ selftests: ")


def nest(lines):
    """run_kselftest.sh output as nested KTAP: each program's "# "-prefixed
    output, between its "# selftests:" header and its result line, indented
    as its subtests."""
    out = []
    inside = False
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("TAP version"):
            out.append("KTAP version 1")
        elif SELFTEST_HEADER.match(line):
            inside = True
            out.append(line)
        elif SELFTEST_RESULT.match(line):
            inside = False
            out.append(line)
        elif inside and line.startswith("# "):
            out.append("  " + line[2:])
        elif inside and line == "#":
            out.append("")
        else:
            out.append(line)
    return out


def kunit_parse(nested_path):
    """`kunit.py parse` of the nested KTAP: (its output, passed, failed,
    skipped); no summary line counts as one failure."""
    ksrc = os.environ.get("KSRC")
    if not ksrc:
        sys.exit("ktap_report.py: KSRC must name the kernel source (for kunit.py)")
    kunit = os.path.join(ksrc, "tools/testing/kunit/kunit.py")
    run = subprocess.run([sys.executable, kunit, "parse", nested_path],
                         capture_output=True, text=True, check=False)
    text = run.stdout + run.stderr
    m = None
    for m in re.finditer(r"Ran (\d+) tests: (.*)", text):
        pass
    counts = {"passed": 0, "failed": 0, "crashed": 0, "skipped": 0, "errors": 0}
    if m:
        for part in m.group(2).split(","):
            k, _, v = part.strip().partition(": ")
            if k in counts:
                counts[k] = int(v)
    bad = counts["failed"] + counts["crashed"] + counts["errors"]
    if not m:
        text += "\nFAIL vm: kunit.py parse found no results"
        bad += 1
    return text, counts["passed"], bad, counts["skipped"]


def main():
    if sys.argv[1] == "--boot-reports":
        return boot_reports(sys.argv[2])
    results_path, console_path = sys.argv[1], sys.argv[2]
    with open(results_path, errors="replace") as f:
        results = f.readlines()
    with open(console_path, errors="replace") as f:
        console = f.readlines()

    nested_path = os.path.abspath(os.path.splitext(results_path)[0] + ".nested.ktap")
    with open(nested_path, "w") as f:
        f.write("\n".join(nest(results)) + "\n")
    text, passed, failed, skipped = kunit_parse(nested_path)
    print(text.rstrip())

    if not any(FINISHED.match(l) for l in results):
        failed += 1
        print("FAIL vm: the guest did not finish (crash, hang or timeout; see console.log)")

    reports = kernel_reports(console)
    for text in reports[:20]:
        print(f"FAIL kernel log: {text}")
    if len(reports) > 20:
        print(f"FAIL kernel log: ... and {len(reports) - 20} more report lines")
    failed += len(reports)

    line = f"vm: {passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
