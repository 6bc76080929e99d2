"""The client side of the lab's supervisor (supervisor.py): add units, start,
stop and kill them, by lab name, from `kctl lab up` and the fault verbs.

A request is a write of the unit's ``desired`` field in the state file
(under its lock) and a SIGHUP to the supervisor, then a bounded wait until
the supervisor reports the state asked for. `kill` is the one exception: it
is a crash, so it SIGKILLs the recorded PID (start time checked) and leaves
the restart to the supervisor.
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


def launch(lab, timeout: float = 30.0) -> dict:
    """Start the supervisor of `lab` (detached, recorded as component ``supervisor``).

    With an HA control plane there will be one per control-plane machine
    (``supervisor-cp2``, ``--machine cp2``, owning the units recorded with
    ``machine: cp2``); `lab_down` already stops every ``supervisor[-*]`` first.
    """
    import deploy
    root = str(Path(deploy.__file__).resolve().parent.parent)  # this checkout first on the path
    env = {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    lab.start(SUPERVISOR, [sys.executable, "-m", "deploy.lab.supervisor", "--name", lab.name], env=env)
    deadline = time.monotonic() + timeout
    while True:
        rec = _supervisor_alive(lab.store)
        if rec.get("state") == "running":  # its signal handlers are in place
            return rec
        if time.monotonic() >= deadline:
            raise LabError(f"the lab's supervisor did not start in {timeout:g}s (log {rec.get('log')})")
        time.sleep(0.05)


def _supervisor_alive(store) -> dict:
    rec = store.load().get("procs", {}).get(SUPERVISOR)
    if not rec or not rec.get("pid") or not is_alive(rec["pid"], rec.get("start_time")):
        raise LabError("the lab's supervisor is not running (`kctl lab down`, then `up` again)")
    return rec


def _wake(store) -> None:
    rec = _supervisor_alive(store)
    try:
        os.kill(rec["pid"], signal.SIGHUP)
    except ProcessLookupError:
        raise LabError("the lab's supervisor is not running") from None


def add(lab, name: str, argv: list[str], *, node: str | None = None, env: dict | None = None,
        stop_grace: float = 10.0, timeout: float = 15.0) -> dict:
    """Make `name` a supervised unit of `lab` and wait until it runs."""
    netns = lab.node(node).netns_path if node else None
    log = os.path.join(lab.state_dir, "logs", f"{name}.log")
    unit = {"supervised": True, "desired": "running", "argv": list(argv), "node": node,
            "netns": netns, "env": env or {}, "log": log, "stop_grace": stop_grace,
            "restarts": 0, "pid": None, "start_time": None, "state": "pending"}

    def put(s):
        procs = s.setdefault("procs", {})
        if name in procs:
            raise LabError(f"component {name} already exists")
        procs[name] = unit
    lab.store.update(put)
    _wake(lab.store)
    return wait(lab.store, name, "running", timeout)


def unit(store, name: str) -> dict:
    rec = store.load().get("procs", {}).get(name)
    if not rec or not rec.get("supervised"):
        known = sorted(n for n, r in store.load().get("procs", {}).items() if r.get("supervised"))
        raise LabError(f"no component {name!r}; known: {', '.join(known)}")
    return rec


def set_desired(store, name: str, desired: str, *, stop_grace: float | None = None) -> None:
    unit(store, name)

    def put(s):
        rec = s["procs"][name]
        rec["desired"] = desired
        if stop_grace is not None:
            rec["stop_grace"] = stop_grace
    store.update(put)
    _wake(store)


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
