"""The lab supervisor's restart policy (deploy/lab/supervisor.py) on a fake
clock and fake processes: back-off 0.5 s doubling to 10 s, reset after 30 s
up; a unit stopped on purpose is not restarted until it is desired running
again; stopping is TERM then KILL after the grace; exits are recorded with
their code or signal; `shutdown` stops everything."""
from __future__ import annotations

import signal

import pytest

from deploy.lab.state import StateStore
from deploy.lab.supervisor import Backoff, Reconciler, describe_exit


class FakeProc:
    def __init__(self, pid: int):
        self.pid, self.returncode, self.signals = pid, None, []

    def poll(self):
        return self.returncode

    def send_signal(self, sig):
        self.signals.append(sig)

    def exit(self, rc: int):
        self.returncode = rc


class World:
    """A state file with supervised units, a clock and a process table."""

    def __init__(self, tmp_path, *names):
        self.now, self.pid, self.spawned = 1000.0, 100, []
        self.store = StateStore(str(tmp_path))
        self.store.update(lambda s: s.setdefault("procs", {}).update(
            {n: {"supervised": True, "desired": "running", "argv": ["x"], "log": "l", "restarts": 0,
                 "stop_grace": 2.0} for n in names}))
        self.rec = Reconciler(self.store, spawn=self.spawn, clock=lambda: self.now,
                              wall=lambda: 5000.0 + self.now, start_time=lambda pid: pid * 10)

    def spawn(self, name, rec):
        self.pid += 1
        proc = FakeProc(self.pid)
        self.spawned.append((name, proc))
        return proc

    def proc(self, name) -> FakeProc:
        return [p for n, p in self.spawned if n == name][-1]

    def unit(self, name) -> dict:
        return self.store.load()["procs"][name]

    def starts(self, name) -> int:
        return sum(1 for n, _ in self.spawned if n == name)

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.rec.step()

    def set(self, name, **fields):
        self.store.update(lambda s: s["procs"][name].update(fields))


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run():
    b = Backoff()
    assert [b.next_delay(0.1) for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert b.next_delay(29.9) == 10
    assert b.next_delay(30.0) == 0.5
    assert b.next_delay(1.0) == 1


def test_describe_exit():
    assert describe_exit(0) == {"code": 0}
    assert describe_exit(3) == {"code": 3}
    assert describe_exit(-signal.SIGKILL) == {"signal": "SIGKILL"}


def test_starts_every_unit_and_records_pid_and_state(tmp_path):
    w = World(tmp_path, "etcd", "apiserver")
    w.rec.step()
    for name in ("etcd", "apiserver"):
        u = w.unit(name)
        assert u["state"] == "running" and u["pid"] == w.proc(name).pid
        assert u["start_time"] == u["pid"] * 10 and u["restarts"] == 0
    w.rec.step()
    assert len(w.spawned) == 2  # nothing started twice


def test_crash_is_restarted_after_the_backoff_and_counted(tmp_path):
    w = World(tmp_path, "controller-manager")
    w.rec.step()
    w.proc("controller-manager").exit(-signal.SIGKILL)
    timer = w.advance(1.0)
    u = w.unit("controller-manager")
    assert u["state"] == "backoff" and u["pid"] is None
    assert u["last_exit"] == {"signal": "SIGKILL", "at": 6001.0}
    assert timer == pytest.approx(0.5)
    assert w.starts("controller-manager") == 1
    w.advance(0.49)
    assert w.starts("controller-manager") == 1
    w.advance(0.01)
    u = w.unit("controller-manager")
    assert w.starts("controller-manager") == 2
    assert u["state"] == "running" and u["restarts"] == 1 and u["pid"] == w.proc("controller-manager").pid


def test_crash_loop_backs_off_to_10s_and_a_30s_run_resets_it(tmp_path):
    w = World(tmp_path, "dns")
    w.rec.step()
    delays = []
    for _ in range(7):
        w.proc("dns").exit(1)
        w.advance(0.1)
        delays.append(w.unit("dns")["restart_in"])
        w.advance(delays[-1] - 0.01)
        assert w.unit("dns")["state"] == "backoff"
        w.advance(0.01)  # due: restarted
        assert w.unit("dns")["state"] == "running"
    assert delays == pytest.approx([0.5, 1, 2, 4, 8, 10, 10])
    assert w.unit("dns")["restarts"] == 7 and w.unit("dns")["last_exit"]["code"] == 1
    w.advance(30.0)            # stayed up 30 s
    w.proc("dns").exit(2)
    w.advance(0.1)
    assert w.unit("dns")["restart_in"] == 0.5


def test_stopped_on_purpose_is_terminated_then_killed_and_not_restarted(tmp_path):
    w = World(tmp_path, "scheduler")
    w.rec.step()
    proc = w.proc("scheduler")
    w.set("scheduler", desired="stopped")
    w.advance(0.1)
    assert proc.signals == [signal.SIGTERM] and w.unit("scheduler")["state"] == "stopping"
    w.advance(1.0)
    assert proc.signals == [signal.SIGTERM]          # still within the 2 s grace
    w.advance(1.0)
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL]
    proc.exit(-signal.SIGKILL)
    w.advance(0.1)
    u = w.unit("scheduler")
    assert u["state"] == "stopped" and u["pid"] is None and u["last_exit"]["signal"] == "SIGKILL"
    w.advance(60.0)
    assert w.starts("scheduler") == 1 and w.unit("scheduler")["restarts"] == 0
    # start: at once, no back-off, not counted as a restart
    w.set("scheduler", desired="running")
    w.advance(0.01)
    assert w.starts("scheduler") == 2 and w.unit("scheduler")["state"] == "running"
    assert w.unit("scheduler")["restarts"] == 0


def test_stop_recorded_before_the_kill_wins_over_the_restart(tmp_path):
    """kill-node: desired stopped is written, then the agent is SIGKILLed;
    the supervisor must not restart it."""
    w = World(tmp_path, "agent-node1")
    w.rec.step()
    w.set("agent-node1", desired="stopped")
    w.proc("agent-node1").exit(-signal.SIGKILL)
    w.advance(0.1)
    w.advance(20.0)
    assert w.starts("agent-node1") == 1 and w.unit("agent-node1")["state"] == "stopped"


def test_stop_during_backoff_cancels_the_restart(tmp_path):
    w = World(tmp_path, "etcd")
    w.rec.step()
    w.proc("etcd").exit(1)
    w.advance(0.1)
    w.set("etcd", desired="stopped")
    w.advance(5.0)
    assert w.starts("etcd") == 1 and w.unit("etcd")["state"] == "stopped"


def test_spawn_failure_is_a_crash_with_backoff(tmp_path):
    w = World(tmp_path, "registry")

    def broken(name, rec):
        raise FileNotFoundError("no such file: /usr/bin/docker-registry")
    w.rec.spawn = broken
    assert w.rec.step() == pytest.approx(0.5)
    u = w.unit("registry")
    assert u["state"] == "backoff" and "docker-registry" in u["last_exit"]["error"]
    w.rec.spawn = w.spawn
    w.advance(0.5)
    assert w.unit("registry")["state"] == "running" and w.unit("registry")["restarts"] == 1


def test_unsupervised_and_removed_records_are_left_alone(tmp_path):
    w = World(tmp_path, "apiserver")
    w.store.update(lambda s: s["procs"].__setitem__("node1/sleep", {"pid": 1, "start_time": 1}))
    w.rec.step()
    assert [n for n, _ in w.spawned] == ["apiserver"]
    assert w.unit("node1/sleep") == {"pid": 1, "start_time": 1}
    w.proc("apiserver").exit(1)
    w.store.update(lambda s: s["procs"].pop("apiserver"))
    assert w.advance(0.1) == 1.0  # no timer left for a unit that is gone
    assert "apiserver" not in w.store.load()["procs"]


def test_shutdown_terms_then_kills_and_records_stopped(tmp_path):
    w = World(tmp_path, "etcd", "apiserver")
    w.rec.step()
    etcd, api = w.proc("etcd"), w.proc("apiserver")
    etcd.send_signal = lambda sig: (etcd.signals.append(sig), etcd.exit(-sig))
    api.send_signal = lambda sig: (api.signals.append(sig), sig == signal.SIGKILL and api.exit(-sig))
    w.rec.clock = iter([0.0, 0.0, 10.0, 10.0, 10.0]).__next__  # the grace passes at once
    w.rec.shutdown(grace=5.0)
    assert etcd.signals == [signal.SIGTERM] and api.signals == [signal.SIGTERM, signal.SIGKILL]
    assert w.unit("etcd")["last_exit"]["signal"] == "SIGTERM"
    assert w.unit("apiserver")["last_exit"]["signal"] == "SIGKILL"
    assert all(w.unit(n)["state"] == "stopped" and w.unit(n)["pid"] is None for n in ("etcd", "apiserver"))


def test_status_columns():
    from deploy.lab.cli import component_state, last_exit

    assert last_exit(None, 100.0) == "-"
    assert last_exit({"signal": "SIGKILL", "at": 88.4}, 100.0) == "signal SIGKILL, 12s ago"
    assert last_exit({"code": 1, "at": 97.0}, 100.0) == "code 1, 3s ago"
    assert last_exit({"error": "no such file", "at": 97.0}, 100.0) == "not started, 3s ago"
    assert component_state({"supervised": True, "state": "backoff"}) == "backoff"
    assert component_state({"supervised": True, "state": "running", "alive": False}) == "dead"
    assert component_state({"supervised": True, "state": "running", "alive": True}) == "running"
    assert component_state({"alive": True}) == "running" and component_state({}) == "dead"


def test_a_machine_supervisor_owns_only_its_machines_units(tmp_path):
    """HA control planes: one supervisor per control-plane machine (--machine)."""
    w = World(tmp_path, "apiserver-cp1", "apiserver-cp2")
    w.set("apiserver-cp1", machine="cp1")
    w.set("apiserver-cp2", machine="cp2")
    w.rec.machine = "cp2"
    w.rec.step()
    assert [n for n, _ in w.spawned] == ["apiserver-cp2"]
    assert "state" not in w.unit("apiserver-cp1")


def test_the_hosts_supervisor_owns_only_units_without_a_machine(tmp_path):
    """The host's supervisor (no --machine: registry, node agents) never starts a
    control-plane machine's unit: killing a machine must leave its units down."""
    w = World(tmp_path, "registry", "etcd-cp1")
    w.set("etcd-cp1", machine="cp1")
    w.rec.step()
    assert [n for n, _ in w.spawned] == ["registry"]


def test_a_machine_supervisor_records_itself_under_its_machine():
    from deploy.lab.supervisor import record_name
    assert record_name(None) == "supervisor" and record_name("cp2") == "supervisor-cp2"
