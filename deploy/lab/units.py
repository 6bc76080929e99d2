"""The client side of the lab's supervisor (supervisor.py): add units, start,
stop and kill them, by lab name, from `kctl lab up` and the fault verbs.

A request is a write of the unit's ``desired`` field in the state file
(under its lock) and a SIGHUP to the supervisor, then a bounded wait until
the supervisor reports the state asked for. `kill` is the one exception: it
is a crash, so it SIGKILLs the recorded PID (start time checked) and leaves
the restart to the supervisor.

An HA lab has one supervisor per control-plane machine: a unit recorded with
``machine: cpI`` belongs to ``supervisor-cpI`` (started in that machine's
netns by `launch(lab, "cpI")`), every other unit to the host's ``supervisor``;
requests wake the owner.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from deploy.lab.naming import LabError
from deploy.lab.procs import is_alive

SUPERVISOR = "supervisor"


def launch(lab, machine: str | None = None, timeout: float = 30.0) -> dict:
    """Start the supervisor of `lab` (detached, recorded as component ``supervisor``),
    or of its control-plane machine `machine` (``supervisor-cp2``, ``--machine cp2``,
    in that machine's netns, owning the units recorded with ``machine: cp2``);
    `lab_down` stops every ``supervisor[-*]`` first."""
    import deploy
    root = str(Path(deploy.__file__).resolve().parent.parent)  # this checkout first on the path
    env = {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "deploy.lab.supervisor", "--name", lab.name]
    if machine:
        sup = supervisor_of(machine)
        lab.procs.start(sup, [*argv, "--machine", machine], env=env, netns=lab.machine(machine).netns_path)
        lab.store.update(lambda s: s["procs"][sup].update(machine=machine))
    else:
        lab.start(SUPERVISOR, argv, env=env)
    deadline = time.monotonic() + timeout
    while True:
        rec = _supervisor_alive(lab.store, machine)
        if rec.get("state") == "running":  # its signal handlers are in place
            return rec
        if time.monotonic() >= deadline:
            raise LabError(f"the lab's supervisor did not start in {timeout:g}s (log {rec.get('log')})")
        time.sleep(0.05)


def supervisor_of(machine: str | None) -> str:
    """The record name of the supervisor owning the units of `machine` (None: the host)."""
    return f"{SUPERVISOR}-{machine}" if machine else SUPERVISOR


def _supervisor_alive(store, machine: str | None = None) -> dict:
    sup = supervisor_of(machine)
    rec = store.load().get("procs", {}).get(sup)
    if not rec or not rec.get("pid") or not is_alive(rec["pid"], rec.get("start_time")):
        hint = f"`kctl lab start-machine {machine}`" if machine else "`kctl lab down`, then `up` again"
        raise LabError(f"the lab's supervisor {sup} is not running ({hint})")
    return rec


def _wake(store, machine: str | None = None) -> None:
    rec = _supervisor_alive(store, machine)
    try:
        os.kill(rec["pid"], signal.SIGHUP)
    except ProcessLookupError:
        raise LabError(f"the lab's supervisor {supervisor_of(machine)} is not running") from None


def add(lab, name: str, argv: list[str], *, node: str | None = None, machine: str | None = None,
        env: dict | None = None, stop_grace: float = 10.0, timeout: float = 15.0) -> dict:
    """Make `name` a supervised unit of `lab` (of its control-plane machine
    `machine`, in that netns) and wait until it runs."""
    netns = lab.node(node).netns_path if node else lab.machine(machine).netns_path if machine else None
    log = os.path.join(lab.state_dir, "logs", f"{name}.log")
    unit = {"supervised": True, "desired": "running", "argv": list(argv), "node": node, "machine": machine,
            "netns": netns, "env": env or {}, "log": log, "stop_grace": stop_grace,
            "restarts": 0, "pid": None, "start_time": None, "state": "pending"}

    def put(s):
        procs = s.setdefault("procs", {})
        if name in procs:
            raise LabError(f"component {name} already exists")
        procs[name] = unit
    lab.store.update(put)
    _wake(lab.store, machine)
    return wait(lab.store, name, "running", timeout)


def unit(store, name: str) -> dict:
    rec = store.load().get("procs", {}).get(name)
    if not rec or not rec.get("supervised"):
        known = sorted(n for n, r in store.load().get("procs", {}).items() if r.get("supervised"))
        raise LabError(f"no component {name!r}; known: {', '.join(known)}")
    return rec


def set_desired(store, name: str, desired: str, *, stop_grace: float | None = None) -> None:
    machine = unit(store, name).get("machine")

    def put(s):
        rec = s["procs"][name]
        rec["desired"] = desired
        if stop_grace is not None:
            rec["stop_grace"] = stop_grace
    store.update(put)
    _wake(store, machine)


def wait(store, name: str, state: str, timeout: float) -> dict:
    """Wait until unit `name` is in `state` (running: with a live PID)."""
    deadline = time.monotonic() + timeout
    while True:
        rec = unit(store, name)
        if rec.get("state") == state and (state != "running" or is_alive(rec["pid"], rec["start_time"])):
            return rec
        if time.monotonic() >= deadline:
            raise LabError(f"{name} is {rec.get('state')}, not {state}, after {timeout:g}s"
                           + (f" (last exit {rec['last_exit']})" if rec.get("last_exit") else ""))
        time.sleep(0.05)


def start(store, name: str, timeout: float = 15.0) -> dict:
    """Desired running again; returns the running unit."""
    if unit(store, name).get("desired") == "running":
        raise LabError(f"{name} is not stopped (it is {unit(store, name).get('state')}); "
                       "a crashed component restarts by itself")
    set_desired(store, name, "running")
    return wait(store, name, "running", timeout)


def stop(store, name: str, grace: float | None = None, timeout: float = 30.0) -> dict:
    """Stopped on purpose: TERM, KILL after the grace; not restarted until `start`."""
    set_desired(store, name, "stopped", stop_grace=grace)
    return wait(store, name, "stopped", timeout)


def hold(store, name: str) -> None:
    """Desired stopped without waiting (the caller kills it itself: kill-node)."""
    set_desired(store, name, "stopped", stop_grace=0.0)


def kill(store, name: str, sig: int = signal.SIGKILL) -> int:
    """A crash: `sig` to the unit's process; the supervisor restarts it. Returns the PID."""
    rec = unit(store, name)
    if rec.get("state") != "running" or not rec.get("pid") or not is_alive(rec["pid"], rec.get("start_time")):
        raise LabError(f"{name} is not running (it is {rec.get('state')})")
    try:
        os.kill(rec["pid"], sig)
    except ProcessLookupError:
        raise LabError(f"{name} (pid {rec['pid']}) exited meanwhile") from None
    return rec["pid"]
