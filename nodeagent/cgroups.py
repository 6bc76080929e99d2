"""The cgroup directories of the runtime's containers, on v1/hybrid and pure v2 hosts.

A container's ``cgroupsPath`` is ``/PARENT/ID`` (PARENT defaults to "kctl"),
so runc creates ``<hierarchy>/PARENT/ID`` in every mounted hierarchy: on a
v1 or hybrid host every directory below ``/sys/fs/cgroup`` (cpu, memory,
..., unified) is one; on a pure v2 host (``cgroup.controllers`` exists at the
root, Debian 12's default) the root itself is the only one.

OOM detection, measured on this kernel (6.18, cgroup v1 + unified hybrid, the
memory controller bound to v1; ``unified`` only carries hugetlb, so there is
no ``memory.events`` there): the v1 ``memory.oom_control`` file of the
container's cgroup has an ``oom_kill N`` line, N = processes the
memory-cgroup OOM killer killed in that cgroup.  ``memory.events`` (v2) has
the same line on kernels with memory on the unified hierarchy; ``oom_killed``
reads both.

Removal only ever ``rmdir``s: a directory that is not empty (another
container still uses a shared parent) or busy is left alone.
"""
from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def hierarchies(root: Path | None = None) -> list[Path]:
    """The mounted cgroup hierarchies (see the module docstring); root defaults to CGROUP_ROOT."""
    root = CGROUP_ROOT if root is None else root
    if (root / "cgroup.controllers").exists():
        return [root]
    return [h for h in sorted(root.iterdir()) if h.is_dir() and not h.is_symlink()]


def dirs(rel: str) -> list[Path]:
    """The directory of the relative cgroup path REL ("kctl/node1/ID") in every hierarchy."""
    return [h / rel for h in hierarchies()]


def oom_killed(cgroup_dirs: list[Path]) -> bool:
    """Whether the memory-cgroup OOM killer killed a process in one of these directories."""
    for h in cgroup_dirs:
        for fname in ("memory.events", "memory.oom_control"):
            try:
                text = (h / fname).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and int(v) > 0:
                    return True
    return False


def rmdir(p: Path) -> None:
    """Remove an empty cgroup directory; missing, non-empty or busy ones are left alone."""
    try:
        p.rmdir()
    except OSError:
        pass  # gone already, or not empty / busy: another container still uses the parent


def prune(parent: str) -> None:
    """rmdir PARENT (each component of a nested "a/b" parent, deepest first) in every
    hierarchy where it is empty; non-empty ones are left alone."""
    parts = parent.split("/")
    for n in range(len(parts), 0, -1):
        for d in dirs("/".join(parts[:n])):
            rmdir(d)
