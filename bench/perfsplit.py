"""The machine's CPU by process, from a system-wide perf recording: who ran, in user space or
in the kernel, and through what the kernel was entered.

    sudo PYTHONPATH=$PWD .venv/bin/python bench/lab.py --trials 1 --perf /tmp/warm.perf
    perf script -i /tmp/warm.perf -F comm,pid,tid,ip,sym,dso | .venv/bin/python bench/perfsplit.py 'runc:[2:INIT]' etcd

(`lab.py --perf` records the warm 30-replica apply, every CPU, with call graphs; any
`perf record -a -g` works.)  Prints each process name's share of the busy samples (the idle
task, `swapper`, left out; kernel threads' numbers folded: `kworker/u8:2` is `kworker/uN:N`;
with `pid,tid` in the fields a helper thread counts for its process, named by its main thread:
grpc's `event_engine` threads for the apiserver or agent that runs them),
split user / kernel; for the names given, their kernel samples by entry (the system call, a
page fault, an interrupt) and their user samples by binary or library.  Ends with
`RESULT busy_samples=N top=NAME:PERCENT,...`.
"""
from __future__ import annotations

import collections
import re
import sys
from dataclasses import dataclass, field

IDLE = "swapper"
FRAME = re.compile(r"\s+[0-9a-f]+ (.*) \((.*)\)$")
HEADER = re.compile(r"^(\S.*?)\s+(\d+)/(\d+)\s*$")          # comm pid/tid (with -F comm,pid,tid,...)


@dataclass
class Split:
    by_comm: collections.Counter = field(default_factory=collections.Counter)
    kernel: collections.Counter = field(default_factory=collections.Counter)      # comm -> samples
    entries: collections.Counter = field(default_factory=collections.Counter)     # (comm, entry)
    binaries: collections.Counter = field(default_factory=collections.Counter)    # (comm, dso)

    @property
    def busy(self) -> int:
        return sum(self.by_comm.values())


def samples(lines):
    """(comm, pid, tid, [(symbol, dso), ...] leaf first) per sample of `perf script -F
    comm[,pid,tid],ip,sym,dso` (pid and tid None without them)."""
    head, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if head is not None:
                yield (*head, frames)
            head, frames = None, []
        elif not line[0].isspace():
            if head is not None:
                yield (*head, frames)
            m = HEADER.match(line)
            head, frames = ((m.group(1), int(m.group(2)), int(m.group(3))) if m
                            else (line.split()[0], None, None)), []
        else:
            m = FRAME.match(line)
            if m:
                frames.append((re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)), m.group(2)))
    if head is not None:
        yield (*head, frames)


def entry(frames) -> str:
    """Through what a kernel sample entered the kernel: its system call, else a page fault, an
    interrupt, the system call path itself, else the outermost kernel frame (a kernel thread's)."""
    for sym, _ in frames:
        m = re.match(r"__(?:x64|do)_sys_(\w+)", sym)
        if m:
            return m.group(1)
    kernel = [sym for sym, dso in frames if dso.startswith("[kernel")]
    if any("page_fault" in sym for sym in kernel):
        return "page fault"
    outer = kernel[-1] if kernel else "?"
    if outer.startswith("entry_SYSCALL"):
        return "system call entry/exit"
    if outer.startswith(("asm_sysvec", "asm_common_interrupt")):
        return "interrupt"
    return outer


def split(lines) -> Split:
    out = Split()
    seen = [s for s in samples(lines) if s[0] != IDLE]
    # a helper thread (a name no process's main thread ever had) counts for its process, named
    # as its main thread most often was; a main thread keeps its own name (exec renames it)
    mains: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for comm, pid, tid, _ in seen:
        if pid is not None and pid == tid:
            mains[pid][comm] += 1
    main_names = {c for names in mains.values() for c in names}
    for comm, pid, _, frames in seen:
        if comm not in main_names and mains.get(pid):
            comm = mains[pid].most_common(1)[0][0]
        comm = re.sub(r"\d+", "N", comm) if comm.startswith(("kworker", "ksoftirqd", "migration")) else comm
        out.by_comm[comm] += 1
        if frames and frames[0][1].startswith("[kernel"):
            out.kernel[comm] += 1
            out.entries[(comm, entry(frames))] += 1
        else:
            out.binaries[(comm, frames[0][1] if frames else "?")] += 1
    return out


def report(s: Split, detail: list[str], top: int = 20) -> str:
    if not s.busy:
        return "no busy samples\nRESULT busy_samples=0 top="
    pct = lambda n: 100.0 * n / s.busy  # noqa: E731
    rows = [f"{s.busy} busy samples; by process (user + kernel):"]
    for comm, n in s.by_comm.most_common(top):
        rows.append(f"  {pct(n):5.1f}%  {comm:<22} user {pct(n - s.kernel[comm]):5.1f}%  kernel {pct(s.kernel[comm]):5.1f}%")
    for comm in detail:
        rows.append(f"{comm}: kernel by entry")
        rows += [f"  {pct(n):5.1f}%  {e}" for (c, e), n in s.entries.most_common() if c == comm and pct(n) >= 0.1]
        rows.append(f"{comm}: user by binary")
        rows += [f"  {pct(n):5.1f}%  {b}" for (c, b), n in s.binaries.most_common() if c == comm and pct(n) >= 0.1]
    rows.append(f"RESULT busy_samples={s.busy} top=" + ",".join(
        f"{c}:{pct(n):.1f}" for c, n in s.by_comm.most_common(8)))
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    print(report(split(sys.stdin), argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
