"""Helpers of the fault suite (tests/e2e/test_lab_ha.py): the lab's control
plane seen as units per machine, faults on them, and the probes the
assertions need.

* Units: every control-plane component is a unit of the lab's supervisor;
  with `--control-planes N` (N > 1) each cp machine has its own (the record
  says ``machine: cpI``). `cp_units` finds them by component and machine,
  whatever the unit names are; `crash_and_hold` is a crash that stays down
  (desired stopped, then SIGKILL: what `kctl lab kill-node` does to an
  agent) so a test can see the others carry on without it.
* etcd: the leader as most members report it (deploy.lab.faults), and each
  member's own copy (`/v3/kv/range` serializable, over etcd's JSON gateway)
  to see that a member has caught up, without trusting the apiserver.
* `Writer`: a client of its own (all apiserver endpoints) creating
  ConfigMaps ``PREFIX-00000``, ``-00001`` ... one after another, until
  stopped. A failed create is retried with the same name until it is acked
  (AlreadyExists counts: the earlier attempt did reach etcd), so the names
  form a gap-free sequence in creation order: every acked one must be
  readable at the end, and a watcher must see each exactly once, in order.
* `watch_process`: a watcher in a process of its own (tests/e2e/ha_watch.py),
  so `ss` tells which apiserver its connection goes to.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from deploy.lab import faults, units
from deploy.lab.procs import kill_all
from machinery import errors
from tests.cluster import REPO, new_object
from tests.e2e.lab_fixtures import Api, wait_for

CP_COMPONENTS = ("etcd", "apiserver", "scheduler", "controller-manager", "dns")
START_ORDER = CP_COMPONENTS
STOP_ORDER = ("controller-manager", "scheduler", "dns", "apiserver", "etcd")


# ------------------------------------------------------------ units

def procs(lab) -> dict:
    return lab.topology.store.load()["procs"]


def cp_units(lab, component: str | None = None) -> dict[str, tuple[str, str | None]]:
    """{unit name: (component, machine)} of the control plane (machine None
    on a one-control-plane lab), optionally of one component."""
    out = {}
    for name, rec in procs(lab).items():
        if not rec.get("supervised"):
            continue
        comp = next((c for c in CP_COMPONENTS if name == c or name.startswith(c + "-")
                     or name.endswith("-" + c)), None)
        if comp and (component is None or comp == component):
            out[name] = (comp, rec.get("machine"))
    return out


def unit_of(lab, component: str, machine: str | None) -> str:
    names = [n for n, (_, m) in cp_units(lab, component).items() if m == machine]
    assert len(names) == 1, f"{component} of machine {machine}: units {names} in {sorted(procs(lab))}"
    return names[0]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def crash_and_hold(lab, unit: str) -> int:
    """SIGKILL `unit` after telling its supervisor it is down on purpose:
    a crash that is not repaired until `start(lab, unit)`. Returns the PID."""
    rec = procs(lab)[unit]
    assert rec.get("state") == "running" and rec.get("pid"), f"{unit} is not running: {rec}"
    units.hold(lab.topology.store, unit)
    kill_all([rec["pid"]])
    units.wait(lab.topology.store, unit, "stopped", 30)
    return rec["pid"]


def start(lab, unit: str) -> dict:
    """Start a unit stopped on purpose; an apiserver also until it accepts connections."""
    rec = faults.start_component(lab.name, unit)
    if cp_units(lab).get(unit, ("",))[0] == "apiserver":
        host, _, port = flag(rec["argv"], "--listen").rpartition(":")
        wait_for(f"{unit} listening", lambda: _accepts(host, int(port)), 30)
    return rec


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def stop_control_plane(lab) -> list[str]:
    """Stop every control-plane unit of every machine (TERM), leaves first; returns them."""
    by_comp = sorted(cp_units(lab).items(), key=lambda kv: STOP_ORDER.index(kv[1][0]))
    for name, _ in by_comp:
        faults.stop_component(lab.name, name)
    return [n for n, _ in by_comp]


def start_control_plane(lab, names: list[str]) -> None:
    comps = cp_units(lab)
    for name in sorted(names, key=lambda n: START_ORDER.index(comps[n][0])):
        start(lab, name)


# ------------------------------------------------------------ etcd

def etcd_urls(lab) -> dict[str, str]:
    """{etcd unit: client URL} (deploy.lab.faults asks each member)."""
    return {unit_of(lab, "etcd", m): st["url"] for m, st in faults.etcd_members(lab.name).items()}


def etcd_leader(lab, not_: str | None = None) -> str | None:
    """The etcd unit that leads as most members say (faults.etcd_leader);
    None while unknown or while it is still `not_` (the one we faulted)."""
    machine = faults.etcd_leader(lab.name)
    unit = unit_of(lab, "etcd", machine) if machine else None
    return unit if unit != not_ else None


def etcd_count(url: str, prefix: str) -> tuple[int, int]:
    """(keys under `prefix`, revision) in THIS member's copy (serializable read)."""
    key = prefix.encode()
    end = key[:-1] + bytes([key[-1] + 1])
    body = {"key": base64.b64encode(key).decode(), "range_end": base64.b64encode(end).decode(),
            "count_only": True, "serializable": True}
    req = urllib.request.Request(url + "/v3/kv/range", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3) as r:  # noqa: S310 - a lab address
        res = json.loads(r.read())
    return int(res.get("count", 0)), int(res["header"]["revision"])


# ------------------------------------------------------------ write load

class Writer:
    """ConfigMaps PREFIX-00000, -00001, ... created in sequence until stop()."""

    def __init__(self, lab, prefix: str, namespace: str = "default"):
        self.api = Api(lab.servers, lab.kubeconfig)
        self.prefix, self.namespace = prefix, namespace
        self.acked: list[tuple[int, float]] = []     # (seq, monotonic time of the ack)
        self.failures: list[str] = []                # errors of attempts that were retried
        self._stopping = threading.Event()
        self.future = asyncio.run_coroutine_threadsafe(self._run(), self.api.loop)

    def name(self, seq: int) -> str:
        return f"{self.prefix}-{seq:05d}"

    async def _run(self) -> None:
        seq = 0
        unsure = False      # an attempt of `seq` failed on our side: it may have reached etcd all the same
        while not self._stopping.is_set() or unsure:      # so stop() ends only with seq acked or never sent
            cm = new_object("ConfigMap", self.name(seq), self.namespace)
            cm.data["seq"] = str(seq)
            try:
                await self.api.client.create(cm)
            except errors.AlreadyExists:
                pass  # an attempt that failed on our side did reach etcd
            except errors.ApiError as exc:
                self.failures.append(f"{self.name(seq)}: {type(exc).__name__}: {exc}")
                unsure = True
                await asyncio.sleep(0.1)
                continue
            unsure = False
            self.acked.append((seq, time.monotonic()))
            seq += 1

    def count(self) -> int:
        return len(self.acked)

    def wait_more(self, n: int, what: str, timeout: float = 60) -> None:
        """Wait until `n` more writes are acked than now (the load goes on)."""
        target = self.count() + n
        wait_for(what, lambda: self.count() >= target or self.future.done(), timeout)
        assert not self.future.done(), f"the write load ended: {self.future.exception()!r}"

    def stop(self) -> list[int]:
        """Stop the load; returns the acked sequence numbers."""
        self._stopping.set()
        try:
            self.future.result(60)
        finally:
            self.api.close()
        return [s for s, _ in self.acked]

    def missing(self, lab) -> list[str]:
        """Acked writes that cannot be read back (or read back wrong), through the API."""
        out = []
        for seq, _ in self.acked:
            try:
                cm = lab.api(lambda c, s=seq: c.get("ConfigMap", self.name(s), self.namespace))
            except errors.NotFound:
                out.append(self.name(seq))
                continue
            if cm.data.get("seq") != str(seq):
                out.append(f"{self.name(seq)} has seq {cm.data.get('seq')!r}")
        return out


# ------------------------------------------------------------ watcher process

class WatchProcess:
    """tests/e2e/ha_watch.py on ConfigMaps of `namespace`: one line per event."""

    def __init__(self, lab, namespace: str = "default"):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.ha_watch", lab.kubeconfig, namespace, lab.servers],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lab.env, cwd=REPO)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_for("the watcher listening", lambda: any(l.startswith("WATCHING") for l in self.lines)
                 or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, self.stop()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def added(self, prefix: str) -> list[str]:
        return [l.split()[1] for l in self.lines if l.startswith("ADDED ") and l.split()[1].startswith(prefix)]

    def connected_to(self) -> set[str]:
        """The apiserver addresses (HOST:PORT) the watcher has TCP connections to."""
        out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True,
                             timeout=10).stdout
        peers = (line.split()[3] for line in out.splitlines() if f"pid={self.proc.pid}," in line)
        return {p.replace("[::ffff:", "").replace("]", "") for p in peers}  # IPv4-mapped: [::ffff:S.2]:6443

    def stop(self) -> str:
        """Stop it; returns its stderr (and stdout lines it printed last) for messages."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(10)
        return self.proc.stderr.read() + "\n".join(self.lines[-5:])


def apiserver_addresses(lab) -> dict[str, str]:
    """{apiserver unit: its gRPC HOST:PORT}."""
    return {name: flag(procs(lab)[name]["argv"], "--listen") for name in cp_units(lab, "apiserver")}


# ------------------------------------------------------------ leader election

def lease_holder(lab, lease: str) -> str:
    obj = lab.api(lambda c: c.get("Lease", lease, "kube-system"))
    return obj.spec.holder_identity


def leading_unit(lab, component: str, identity: str) -> str | None:
    """The unit of `component` whose log says `identity` started leading (the
    identity is the hostname, the same on every lab machine, plus a random part)."""
    for name in cp_units(lab, component):
        with open(procs(lab)[name]["log"], errors="replace") as f:
            if re.search(rf"{re.escape(identity)}: started leading", f.read()):
                return name
    return None
