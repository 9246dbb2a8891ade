#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Per-packet counts from the counting plugin's output (make bench).

Reads what tools/count/kmcl_count.c wrote (counts.raw: for every marked
window, each translation block that ran, its executions and its static
counts), the VM console (the benchmark's COUNT lines naming the windows, in
order, and the KSYM lines with the module symbols), and the kernel's
System.map.  For each window it writes, per packet: instructions, atomic
read-modify-writes, fences, indirect calls, interrupt-flag changes, calls
to the kernel's spinlock functions (entries of `_raw_spin_lock*` and
`_raw_spin_trylock*`), and the functions that entered most translated
blocks (under TCG the time follows the blocks more than the instructions),
with their instructions, calls and atomics.

usage: count_report.py COUNTS.RAW CONSOLE.LOG SYSTEM.MAP OUT.TXT [OUT.CSV]
"""
import bisect
import csv
import re
import subprocess
import sys
from collections import defaultdict

LOCK_RE = re.compile(r"^_raw_(spin|read|write)_(try)?lock(_irqsave|_irq_disable|_irq|_bh)?$")
TOP = 24
# Rust's helpers around them (their callers are the Rust code).
HELPER_RE = re.compile(r"^rust_helper_(spin_lock|spin_unlock|krealloc|kvrealloc|kfree)")
# Allocator entry points whose callers the report names.
ALLOC_FUNCS = {"krealloc_node_align_noprof", "__kmalloc_noprof", "kfree", "kmem_cache_alloc_noprof",
               "__kmalloc_node_track_caller_noprof"}


def read_symbols(system_map, console):
    syms = {}
    with open(system_map) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                syms[int(parts[0], 16)] = parts[2]
    core_shift = 0
    text = None
    for line in open(console, errors="replace"):
        m = re.search(r"KSYM ([0-9a-f]+) ([tT]) (\S+)(?:\s+\[(\S+)\])?", line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        if m.group(4):
            syms[addr] = f"{m.group(3)} [{m.group(4)}]"
        elif m.group(3) == "_text":
            text = addr
    if text is not None:
        linked = [a for a, n in syms.items() if n == "_text"]
        if linked:
            core_shift = text - linked[0]
    if core_shift:
        sys.exit("count_report: the kernel was relocated (KASLR); boot with nokaslr")
    addrs = sorted(syms)
    return addrs, [syms[a] for a in addrs]


def read_windows(raw):
    """The dump at each marker: {mark: [(vaddr, execs, insns, atomics, fences, icalls, irq)]}."""
    marks = {}
    cur = None
    for line in open(raw):
        p = line.split()
        if p[0] == "mark":
            cur = marks.setdefault(int(p[1]), [])
        elif p[0] == "tb" and cur is not None:
            cur.append((int(p[1], 16),) + tuple(int(x) for x in p[2:8]) + (int(p[8], 16),))
    return marks


def read_names(console):
    names = []
    for line in open(console, errors="replace"):
        m = re.search(r"COUNT kind=(\S+) wait=(\d) size=(\d+) packets=(\d+)", line)
        if m:
            names.append((m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
    return names


def demangler(names):
    """Readable names: Rust's v0 symbols through binutils' c++filt (which
    knows them), crate hashes dropped, shortened to fit a line."""
    names = sorted(set(names))
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        out = names
    table = {}
    for raw, nice in zip(names, out):
        nice = re.sub(r"\[[0-9a-f]{16}\]", "", nice)
        table[raw] = nice if len(nice) <= 120 else nice[:117] + "..."
    return lambda n: table.get(n, n)


def main():
    raw, console, system_map, out_txt = sys.argv[1:5]
    out_csv = sys.argv[5] if len(sys.argv) > 5 else None
    addrs, names = read_symbols(system_map, console)
    marks = read_windows(raw)
    windows = read_names(console)

    def symbol(vaddr):
        i = bisect.bisect_right(addrs, vaddr) - 1
        if i < 0:
            return "?", False
        return names[i], addrs[i] == vaddr

    rows = []
    lines = []
    tops = []
    calls_from = []
    for k, (kind, wait, size, packets) in enumerate(windows):
        tbs = marks.get(2 * k + 1)
        if tbs is None:
            sys.exit(f"count_report: no plugin data for window {k} ({kind} wait={wait} size={size})")
        tot = [0] * 5
        locks = 0
        blocks = 0
        per_fn = defaultdict(lambda: [0, 0, 0, 0])  # instructions, calls, atomics, blocks
        callers = defaultdict(lambda: defaultdict(int))  # callee -> caller -> calls
        for vaddr, execs, insns, atomics, fences, icalls, irq, callee in tbs:
            if callee:
                target, entry = symbol(callee)
                if entry:
                    callers[target][symbol(vaddr)[0]] += execs
            blocks += execs
            for i, v in enumerate((insns, atomics, fences, icalls, irq)):
                tot[i] += execs * v
            name, entry = symbol(vaddr)
            per_fn[name][0] += execs * insns
            per_fn[name][2] += execs * atomics
            per_fn[name][3] += execs
            if entry:
                per_fn[name][1] += execs
                if LOCK_RE.match(name.split(" ")[0]):
                    locks += execs
        row = {
            "kind": kind, "wait": wait, "size": size, "packets": packets,
            "insns": tot[0] / packets, "atomics": tot[1] / packets, "fences": tot[2] / packets,
            "indirect_calls": tot[3] / packets, "irq_flag_changes": tot[4] / packets,
            "spinlock_calls": locks / packets, "blocks": blocks / packets,
        }
        rows.append(row)
        label = "kmcl full path" if kind == "full" else "minimal hv_vmbus driver"
        lines.append(f"{label}, {'with' if wait else 'without'} completion requests, {size} B, {packets} packets")
        lines.append("  per packet: {insns:.0f} instructions in {blocks:.0f} translated blocks, "
                     "{atomics:.2f} atomics, {fences:.2f} fences, "
                     "{indirect_calls:.2f} indirect calls, {spinlock_calls:.2f} spinlock calls, "
                     "{irq_flag_changes:.2f} interrupt-flag changes".format(**row))
        # Under TCG time follows the blocks entered more than the
        # instructions: the functions that enter most come first.
        top = sorted(per_fn.items(), key=lambda kv: (-kv[1][3], -kv[1][0]))[:TOP]
        tops.append((len(lines), top, packets))
        # Where the spinlock and allocator calls come from.
        for callee in sorted(callers):
            base = callee.split(" ")[0]
            if not (LOCK_RE.match(base) or base in ALLOC_FUNCS or HELPER_RE.match(base)):
                continue
            for caller, n in sorted(callers[callee].items(), key=lambda kv: -kv[1]):
                if n / packets >= 0.05:
                    calls_from.append((len(lines), callee, caller, n / packets))
        lines.append("")

    nice = demangler([name for _, top, _ in tops for name, _ in top]
                     + [c for _, _, c, _ in calls_from])
    inserts = defaultdict(list)
    for at, top, packets in tops:
        inserts[at] += [f"    {blocks / packets:6.1f} blocks {insns / packets:7.1f} insns "
                        f"{calls / packets:5.2f} calls {atomics / packets:5.2f} atomics  {nice(name)}"
                        for name, (insns, calls, atomics, blocks) in top]
    for at, callee, caller, n in calls_from:
        inserts[at].append(f"    {n:6.2f} calls of {callee} from {nice(caller)}")
    for at in sorted(inserts, reverse=True):
        lines[at:at] = inserts[at]
    header = (f"{'window':<28} {'insns':>7} {'blocks':>7} {'atomics':>8} {'fences':>7} "
              f"{'icalls':>7} {'locks':>6} {'irq':>5}")
    table = [header]
    for r in rows:
        name = f"{'kmcl' if r['kind'] == 'full' else 'hv_vmbus'} {'wait' if r['wait'] else 'nowait'} {r['size']} B"
        table.append(f"{name:<28} {r['insns']:7.0f} {r['blocks']:7.0f} {r['atomics']:8.2f} {r['fences']:7.2f} "
                     f"{r['indirect_calls']:7.2f} {r['spinlock_calls']:6.2f} {r['irq_flag_changes']:5.2f}")
    text = "\n".join(["Per packet, counted by QEMU's TCG plugin tools/count/kmcl_count.c",
                      "(both vCPUs, everything the window ran: sender, receive work, idle)", ""]
                     + table + [""] + lines)
    with open(out_txt, "w") as f:
        f.write(text + "\n")
    if out_csv:
        with open(out_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    print("\n".join(table))
    if len(rows) == 0:
        sys.exit("count_report: no counted windows in the console log")


if __name__ == "__main__":
    main()
