"""Process records for lab components: start, record, find, stop by PID.

(Restarting what crashes is the lab supervisor's job, supervisor.py: the
cluster's components are its units, recorded here with ``supervised: true``
and a PID that is None while they are down. `Supervisor` below only starts
and stops processes on request -- test helpers, the supervisor itself.)

A lab outlives the command that built it (``kctl lab up`` returns, the
control plane and node agents keep running), so components are started
detached (``start_new_session=True``, stdin from /dev/null, stdout+stderr to
``<state_dir>/logs/<name>.log``) and remembered only in the state file: name,
PID, and the process start time from ``/proc/PID/stat`` (field 22). A PID is
only ever signalled if its start time still matches, so a recycled PID is
never hit.

Processes are found and killed only by recorded PID, by network namespace
(``/proc/PID/ns/net`` inode equal to the netns file's inode: conmon and
anything else started by a node agent inside its node netns, which are not
our children) or by cgroup (``/kctl-lab/<lab>/<node>`` in any hierarchy:
containers, which live in pod namespaces). Never by name pattern.

Stopping is TERM, a bounded wait, then KILL (a PID-1 ``sleep`` ignores TERM).
Children of this Python process are reaped while waiting, so a dead child is
not mistaken for a live zombie.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping

from deploy.lab import naming
from deploy.lab.naming import CGROUP_FS, LabError
from deploy.lab.nsutil import mounts_under, netns_inode, nsenter_argv, nsfs_inodes
from deploy.lab.state import StateStore
from machinery.procstat import is_alive, proc_start_time  # noqa: F401  (the lab's modules import them from here)

Ident = tuple[int, int | None]  # (pid, start time or None = unknown)


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pids_in_netns(inodes: Iterable[int]) -> list[int]:
    """Processes whose network namespace is one of `inodes` (never ourselves)."""
    wanted = {i for i in inodes if i}
    if not wanted:
        return []
    me, found = os.getpid(), []
    for pid in all_pids():
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in wanted:
                found.append(pid)
        except OSError:
            continue
    return found


def cgroup_dirs(cgroup_path: str) -> list[str]:
    """The directories of absolute cgroup path `cgroup_path` in every hierarchy."""
    try:
        hierarchies = sorted(os.listdir(CGROUP_FS))
    except FileNotFoundError:
        return []
    dirs = []
    for h in hierarchies:
        d = os.path.join(CGROUP_FS, h, cgroup_path.lstrip("/"))
        if os.path.isdir(d):
            dirs.append(d)
    return dirs


def pids_in_cgroups(cgroup_path: str) -> list[int]:
    """Processes in cgroup `cgroup_path` or below, in any hierarchy."""
    me, found = os.getpid(), set()
    for top in cgroup_dirs(cgroup_path):
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" not in files:
                continue
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    found.update(int(x) for x in f.read().split())
            except (OSError, ValueError):
                continue
    found.discard(me)
    return sorted(found)


def terminate(idents: Iterable[Ident], timeout: float = 5.0, children=None) -> list[int]:
    """TERM every recorded process, wait up to `timeout`, KILL the rest; bounded.

    Returns PIDs still alive at the end (should be empty; a process in
    uninterruptible sleep can outlive SIGKILL for a while).
    """
    # A record without start time was dead when recorded: never signal its
    # PID, it may belong to someone else by now.
    live = [(p, st) for p, st in idents if st is not None and is_alive(p, st)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid, st in live:
            if is_alive(pid, st):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while True:
            for pid, _ in live:
                child = (children or {}).get(pid)
                if child is not None:
                    child.poll()
            live = [(p, st) for p, st in live if is_alive(p, st)]
            if not live or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if not live:
            return []
    return [p for p, _ in live]


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL processes found by netns/cgroup (ours to kill, no grace)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def sweep(find, rounds: int = 50) -> list[int]:
    """KILL whatever `find()` returns until it returns nothing (bounded).

    Repeats because a dying agent or conmon may still spawn a child.
    Returns what is left after `rounds` attempts.
    """
    left: list[int] = []
    for _ in range(rounds):
        left = [p for p in find() if is_alive(p)]
        if not left:
            return []
        kill_all(left)
        time.sleep(0.05)
    return [p for p in find() if is_alive(p)]


class Supervisor:
    """Starts, records, stops lab components; records live in the state file."""

    def __init__(self, store: StateStore, log_dir: str):
        self.store = store
        self.log_dir = log_dir
        self._children: dict[int, subprocess.Popen] = {}

    # -- starting -------------------------------------------------------
    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        netns: str | None = None,
        node: str | None = None,
        cwd: str | None = None,
    ) -> dict:
        """Start component `name` detached; return its record.

        `env` is added to this process's environment. `netns` is a path
        (``/var/run/netns/X``): the process enters only that network
        namespace. `node` tags the record, for ``kill_node``.
        """
        self._check_free(name)
        os.makedirs(self.log_dir, exist_ok=True)
        log = os.path.join(self.log_dir, f"{name.replace('/', '_')}.log")
        full_env = dict(os.environ)
        full_env.update(env or {})
        cmd = nsenter_argv(netns, argv) if netns else list(argv)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=full_env, cwd=cwd, start_new_session=True, close_fds=True,
            )
        return self.record(name, proc, argv=argv, node=node, netns=netns, log=log)

    def popen(self, name: str, argv: list[str], *, netns: str | None = None,
              node: str | None = None, **popen_kwargs) -> subprocess.Popen:
        """Like subprocess.Popen (caller owns pipes etc.), but recorded."""
        self._check_free(name)
        cmd = nsenter_argv(netns, argv) if netns else list(argv)
        proc = subprocess.Popen(cmd, **popen_kwargs)
        self.record(name, proc, argv=argv, node=node, netns=netns)
        return proc

    def record(self, name: str, proc: subprocess.Popen | int, *, argv=None,
               node=None, netns=None, log=None) -> dict:
        """Record an already running process (Popen or PID) under `name`."""
        pid = proc if isinstance(proc, int) else proc.pid
        if not isinstance(proc, int):
            self._children[pid] = proc
        rec = {
            "pid": pid, "start_time": proc_start_time(pid), "argv": list(argv or []),
            "node": node, "netns": netns, "log": log, "started_at": time.time(),
        }
        self.store.update(lambda s: s.setdefault("procs", {}).__setitem__(name, rec))
        return rec

    def _check_free(self, name: str) -> None:
        rec = self.store.load().get("procs", {}).get(name)
        if rec and rec.get("supervised"):
            raise LabError(f"component {name} is supervised: start it with `kctl lab start {name}`")
        if rec and rec.get("pid") and is_alive(rec["pid"], rec["start_time"]):
            raise LabError(f"component {name} already running (pid {rec['pid']})")

    # -- inspecting -----------------------------------------------------
    def records(self) -> dict[str, dict]:
        return self.store.load().get("procs", {})

    def status(self) -> dict[str, dict]:
        """Every recorded component with ``alive`` (start time checked)."""
        out = {}
        for name, rec in self.records().items():
            child = self._children.get(rec["pid"])
            if child is not None:
                child.poll()
            out[name] = dict(rec, alive=bool(rec.get("pid")) and is_alive(rec["pid"], rec["start_time"]))
        return out

    # -- stopping -------------------------------------------------------
    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """TERM, wait `timeout`, KILL; forget the record. False if unknown."""
        rec = self.records().get(name)
        if rec is None:
            return False
        if rec.get("supervised"):
            raise LabError(f"{name} is supervised: stop it with `kctl lab stop {name}`")
        left = terminate([(rec["pid"], rec["start_time"])], timeout, self._children)
        if left:
            raise LabError(f"{name} (pid {rec['pid']}) survived SIGKILL")
        self.store.update(lambda s: s.get("procs", {}).pop(name, None))
        return True

    def stop_all(self, timeout: float = 5.0, node: str | None = None) -> list[int]:
        """Stop every recorded component (of `node` only, if given).

        A supervised unit (supervisor.py) keeps its record: whoever stops it
        marks it desired ``stopped`` first (units.hold), so it is not restarted.
        """
        recs = {n: r for n, r in self.records().items() if node is None or r.get("node") == node}
        left = terminate([(r["pid"], r["start_time"]) for r in recs.values() if r.get("pid")], timeout,
                         self._children)
        self.store.update(lambda s: [s.get("procs", {}).pop(n, None) for n, r in recs.items()
                                     if not r.get("supervised")])
        return left

    def kill_node(self, lab: str, node: str, timeout: float = 5.0) -> list[int]:
        """Kill everything of one node: recorded PIDs, netns members, cgroups.

        Covers the agent (recorded), conmon and helpers (in the node netns, or
        in a pod netns named ``<prefix><node>-*``) and containers (in the
        node's cgroup subtree). Returns PIDs that could not be killed.
        """
        left = self.stop_all(timeout, node=node)
        ns_paths = [naming.netns_path(naming.node_netns(lab, node))]
        ns_paths += [naming.netns_path(n) for n in _pod_netns(lab, node)]

        node_dirs = [naming.node_run_dir(lab, node), naming.node_data_dir(lab, node)]

        def find() -> list[int]:
            inodes = [netns_inode(p) for p in ns_paths]
            inodes += nsfs_inodes(mounts_under(node_dirs))
            return pids_in_netns(inodes) + pids_in_cgroups(naming.cgroup_parent(lab, node))

        return left + sweep(find)


def _pod_netns(lab: str, node: str) -> list[str]:
    from deploy.lab.nsutil import list_netns

    return list_netns(naming.node_netns(lab, node) + "-")
