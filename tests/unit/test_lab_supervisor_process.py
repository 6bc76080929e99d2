"""The real supervisor process (`python -m deploy.lab.supervisor --name LAB`)
with `sleep` units, without a cluster: it survives its starter, restarts a
SIGKILLed unit, keeps a stopped one down until started, and `lab_down` stops
it first and leaves no unit behind -- also when the supervisor itself was
SIGKILLed. Needs root only for the lab's state dir under /run."""
from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest

from deploy.lab import lab_down, naming, units
from deploy.lab.procs import Supervisor, is_alive
from deploy.lab.state import StateStore
from tests.e2e.lab_fixtures import unique_lab_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab's state dir is under /run (root)")


@pytest.fixture
def fake_lab():
    name = unique_lab_name("sv")
    lab_down(name)
    state = naming.state_dir(name)
    store = StateStore(state)
    lab = SimpleNamespace(name=name, state_dir=state, store=store,
                          procs=Supervisor(store, os.path.join(state, "logs")),
                          node=lambda n: pytest.fail("no nodes here"))
    lab.start = lambda comp, argv, env=None: lab.procs.start(comp, argv, env=env)
    try:
        yield lab
    finally:
        lab_down(name)


def _eventually(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_restart_stop_start_and_down(fake_lab):
    lab = fake_lab
    sup = units.launch(lab)
    a = units.add(lab, "alpha", ["sleep", "300"])
    b = units.add(lab, "beta", ["sleep", "300"], stop_grace=1.0)
    assert is_alive(a["pid"], a["start_time"]) and is_alive(b["pid"], b["start_time"])

    assert units.kill(lab.store, "alpha") == a["pid"]
    again = _eventually("alpha restarted", lambda: (
        (u := units.unit(lab.store, "alpha"))["restarts"] == 1 and u["state"] == "running" and u))
    assert again["pid"] != a["pid"] and again["last_exit"]["signal"] == "SIGKILL"

    stopped = units.stop(lab.store, "beta")
    assert stopped["pid"] is None and stopped["last_exit"]["signal"] == "SIGTERM"
    assert not is_alive(b["pid"], b["start_time"])
    time.sleep(1.5)  # longer than the first back-off: still down
    assert units.unit(lab.store, "beta")["state"] == "stopped"
    started = units.start(lab.store, "beta")
    assert started["restarts"] == 0 and is_alive(started["pid"], started["start_time"])

    live = [(again["pid"], again["start_time"]), (started["pid"], started["start_time"]),
            (sup["pid"], sup["start_time"])]
    lab_down(lab.name)
    assert not [p for p, st in live if is_alive(p, st)]


def test_down_after_the_supervisor_crashed(fake_lab):
    lab = fake_lab
    sup = units.launch(lab)
    a = units.add(lab, "alpha", ["sleep", "300"])
    os.kill(sup["pid"], signal.SIGKILL)
    _eventually("supervisor gone", lambda: not is_alive(sup["pid"], sup["start_time"]))
    assert is_alive(a["pid"], a["start_time"])  # units outlive it, like containers a dead kubelet leaves
    with pytest.raises(naming.LabError, match="supervisor is not running"):
        units.stop(lab.store, "alpha")
    lab_down(lab.name)
    assert not is_alive(a["pid"], a["start_time"])
