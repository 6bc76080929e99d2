"""Running iptables for the service proxy: one real runner, one in-memory fake.

Backend: the real runner calls the *default* ``iptables``, ``iptables-save`` and
``iptables-restore`` binaries (resolved once with ``shutil.which``).  On Debian 12
these are the nf_tables flavour (``iptables -V`` says ``(nf_tables)``); the
legacy binaries exist too, but rules written by one backend are invisible to
the other, so mixing them would leave stale rules behind.  The lab, its cleanup
(deploy/lab/cleanup.py) and the proxy therefore all use the default binaries.
A different set (e.g. ``iptables-legacy``) can be chosen with ``binary=``, but
one runner always uses one backend for everything.

Network namespaces: the commands are spawned as child processes, and a child
inherits the network namespace of the thread that spawns it.  A node agent that
has entered a node's netns (``nsenter --net`` or an in-process ``setns``) just
uses ``IptablesRunner()``.  Tests and benchmarks that stay in the root netns
pass ``netns=NAME_OR_PATH``: every command is then prefixed with
``nsenter --net=PATH`` (only the network namespace changes; design §4).

Concurrency: every method is a coroutine wrapping one ``asyncio`` subprocess;
the runner holds no state, so it may be shared.  ``-w`` makes the legacy
backend wait for the xtables lock instead of failing (nft ignores it).

``FakeIptables`` keeps just enough state (chains per table, rules of built-in
chains) for unit tests of the Proxier and for hollow agents, which must never
touch the host's real tables.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass, field

from nodeagent.errors import IptablesError

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else f"/var/run/netns/{netns}"


def _restore_error(stderr: str, payload: str) -> str:
    """Point at the failing payload line: iptables-restore reports 'line N failed'."""
    m = re.search(r"line (\d+) failed", stderr)
    if not m:
        return stderr.strip()
    n = int(m.group(1))
    lines = payload.splitlines()
    context = "\n".join(f"{i + 1:6d}: {lines[i]}" for i in range(max(0, n - 3), min(len(lines), n + 1)))
    return f"{stderr.strip()}\n{context}"


class IptablesRunner:
    """Runs the real binaries, optionally inside another network namespace (see module doc)."""

    def __init__(self, *, netns: str | None = None, binary: str = "iptables", wait_seconds: int = 5):
        paths = {}
        for suffix in ("", "-save", "-restore"):
            path = shutil.which(binary + suffix) or shutil.which(binary + suffix, path="/usr/sbin:/sbin")
            if path is None:
                raise IptablesError(f"{binary}{suffix} not found")
            paths[suffix] = path
        self.iptables_bin, self.save_bin, self.restore_bin = paths[""], paths["-save"], paths["-restore"]
        self.netns = _netns_path(netns) if netns else None
        self.wait = str(wait_seconds)

    def _argv(self, *argv: str) -> list[str]:
        return (["nsenter", f"--net={self.netns}"] if self.netns else []) + list(argv)

    async def _exec(self, argv: list[str], stdin: str | None = None) -> Result:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except OSError as exc:
            raise IptablesError(f"{argv[0]}: {exc}") from exc
        return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    async def iptables(self, *args: str) -> Result:
        """``iptables -w N ARGS``; a non-zero exit is returned, not raised (``-C`` uses it)."""
        return await self._exec(self._argv(self.iptables_bin, "-w", self.wait, *args))

    async def conntrack(self, *args: str) -> Result:
        """``conntrack ARGS`` (e.g. ``-D -p udp --orig-dst VIP``); a non-zero exit is returned."""
        path = shutil.which("conntrack") or shutil.which("conntrack", path="/usr/sbin:/sbin")
        if path is None:
            raise IptablesError("conntrack not found")
        return await self._exec(self._argv(path, *args))

    async def conntrack_delete(self, deletions: list[tuple[str, ...]]) -> Result:
        """Every ``conntrack -D ARGS`` of DELETIONS in one process (``conntrack -R -``, conntrack-tools
        ≥ 1.4.6, reads one command per line): a rollout removes many endpoints in one sync, and one
        process each made that sync (and the applied version nodes wait for) slow on a loaded node.
        Exit 0 also when nothing matched; non-zero (stderr says why) when a line is invalid."""
        path = shutil.which("conntrack") or shutil.which("conntrack", path="/usr/sbin:/sbin")
        if path is None:
            raise IptablesError("conntrack not found")
        lines = "".join(" ".join(("-D", *args)) + "\n" for args in deletions)
        return await self._exec(self._argv(path, "-R", "-"), stdin=lines)

    async def save(self, table: str) -> str:
        r = await self._exec(self._argv(self.save_bin, "-t", table))
        if r.rc != 0:
            raise IptablesError(f"iptables-save -t {table}: {r.stderr.strip()}")
        return r.stdout

    async def restore(self, payload: str) -> None:
        """Apply PAYLOAD with ``--noflush``: only the chains it declares are flushed."""
        r = await self._exec(self._argv(self.restore_bin, "-w", self.wait, "--noflush"), stdin=payload)
        if r.rc != 0:
            raise IptablesError(f"iptables-restore: {_restore_error(r.stderr, payload)}")


# ---------------------------------------------------------------------------- fake

@dataclass
class FakeIptables:
    """In-memory stand-in: user chains per table (with rule counts) and built-in chain rules.

    ``calls`` records every call as a tuple (``("restore", payload)``,
    ``("save", table)``, ``("iptables", *args)``, ``("conntrack", *args)``; ``conntrack_delete`` adds
    ``("conntrack-batch", n)`` and then one ``("conntrack", "-D", *args)`` per deletion); ``fail_restore`` makes the
    next N restores fail.  Restore semantics follow ``--noflush``: a declared
    chain is created or flushed, ``-A`` appends, ``-X`` deletes.
    """
    chains: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {"filter": {}, "nat": {}})
    builtin: dict[tuple[str, str], list[tuple[str, ...]]] = field(default_factory=dict)
    calls: list[tuple] = field(default_factory=list)
    fail_restore: int = 0

    @property
    def restores(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "restore"]

    async def iptables(self, *args: str) -> Result:
        self.calls.append(("iptables", *args))
        a = list(args)
        table = "filter"
        if a[:1] == ["-t"]:
            table, a = a[1], a[2:]
        op, chain, spec = a[0], a[1], tuple(a[2:])
        rules = self.builtin.setdefault((table, chain), [])
        target = spec[spec.index("-j") + 1] if "-j" in spec else None
        if target and target.startswith("KCTL-") and target not in self.chains[table]:
            return Result(2, "", f"Couldn't load target `{target}'")
        if op == "-C":
            return Result(0 if spec in rules else 1, "", "")
        if op in ("-I", "-A"):
            rules.insert(0, spec) if op == "-I" else rules.append(spec)
            return Result(0, "", "")
        if op == "-D":
            if spec in rules:
                rules.remove(spec)
                return Result(0, "", "")
            return Result(1, "", "Bad rule")
        raise ValueError(f"fake iptables: unsupported {args}")

    async def conntrack(self, *args: str) -> Result:
        self.calls.append(("conntrack", *args))
        return Result(1, "", "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n")

    async def conntrack_delete(self, deletions: list[tuple[str, ...]]) -> Result:
        self.calls.append(("conntrack-batch", len(deletions)))
        self.calls += [("conntrack", "-D", *args) for args in deletions]
        return Result(0, "", "")

    async def save(self, table: str) -> str:
        self.calls.append(("save", table))
        lines = [f"*{table}"]
        lines += [f":{c} ACCEPT [0:0]" for c in BUILTIN_CHAINS[table]]
        lines += [f":{c} - [0:0]" for c in sorted(self.chains[table])]
        for (t, chain), rules in sorted(self.builtin.items()):
            if t == table:
                lines += [" ".join(["-A", chain, *(f'"{w}"' if " " in w else w for w in r)]) for r in rules]
        for c in sorted(self.chains[table]):
            lines += [f"-A {c} {r}" for r in self.chains[table][c]]
        return "\n".join(lines + ["COMMIT", ""])

    async def restore(self, payload: str) -> None:
        self.calls.append(("restore", payload))
        if self.fail_restore:
            self.fail_restore -= 1
            raise IptablesError("iptables-restore: line 1 failed (injected)")
        new = {t: {c: list(r) for c, r in cs.items()} for t, cs in self.chains.items()}
        table = None
        for line in payload.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                new[table][line[1:].split()[0]] = []
            elif line.startswith("-A "):
                _, chain, rest = line.split(" ", 2)
                if chain not in new[table]:
                    raise IptablesError(f"iptables-restore: chain {chain} not declared")
                new[table][chain].append(rest)
            elif line.startswith("-X "):
                new[table].pop(line.split()[1], None)
        self.chains = new

    def kctl_state(self) -> dict[str, list[str]]:
        """{table: sorted KCTL chains} plus hooks as "table/CHAIN -> target" strings."""
        out = {t: sorted(c for c in cs if c.startswith("KCTL-")) for t, cs in self.chains.items()}
        out["hooks"] = sorted(f"{t}/{c} -> {r[r.index('-j') + 1]}" for (t, c), rules in self.builtin.items()
                              for r in rules)
        return out


def which_backend(binary: str = "iptables") -> str:
    """'nf_tables' or 'legacy', as ``iptables -V`` says (for logs and the bench)."""
    path = shutil.which(binary) or ""
    try:
        real = os.path.realpath(path)
    except OSError:
        real = path
    return "nf_tables" if "nft" in real else "legacy" if "legacy" in real else os.path.basename(real)
