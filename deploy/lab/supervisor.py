"""The lab's supervisor: restarts what crashed, leaves alone what was stopped.

``kctl lab up`` exits, the lab's components must not die with it and must
come back when they crash -- what systemd's ``Restart=always`` does for the
Vagrant cluster's units and the kubelet does for kubeadm's static pods. So
`up` starts ONE small process per lab, ``python -m deploy.lab.supervisor
--name LAB`` (detached, recorded in the state file as component
``supervisor``), and every component (etcd, apiserver, scheduler,
controller-manager, dns, registry, agent-<node>) is a *unit* it owns: its
child, so it learns the exact exit status (code or signal) from waitpid.

Why one per lab and not one per component: one Python process instead of
6 + nodes on a small machine, one owner of the back-off timers, and the shape
of a machine's init system (one systemd / one kubelet per machine). For an HA
control plane (``--control-planes 3``) the same module runs once per
control-plane "machine" (``--machine cp2`` selecting the units recorded with
``machine: cp2``, recorded itself as ``supervisor-cp2`` and running in that
machine's netns), so killing one machine's supervisor and units is
``kill-node`` for control planes. The host's supervisor (no ``--machine``)
owns exactly the units recorded without a machine.

Desired state lives in the lab's state file (``procs.<unit>.desired``:
``running`` or ``stopped``), written by `kctl lab start/stop/...`
(units.py) under the state lock, followed by SIGHUP to wake the supervisor.
The supervisor writes only what it observes: ``pid``, ``start_time``,
``state`` (running, backoff, stopping, stopped), ``restarts``, ``last_exit``
(code or signal, wall time). A unit that exits while desired ``running`` is
started again after a back-off (`Backoff`: 0.5 s doubling to 10 s, reset once
it stayed up 30 s); one desired ``stopped`` is not (a fault verb stopped it
on purpose). Stopping is SIGTERM, then SIGKILL after the unit's
``stop_grace``.

On SIGTERM the supervisor stops every unit (TERM, bounded wait, KILL) and
exits: `lab_down` stops it FIRST, so nothing restarts what `down` kills. If
it is SIGKILLed, its units keep running (own sessions, like containers when
a kubelet dies) and stay recorded by PID + start time, so `kctl lab down`
still finds and kills them.
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from deploy.lab import naming
from deploy.lab.nsutil import nsenter_argv
from deploy.lab.procs import proc_start_time
from deploy.lab.state import StateStore

DEFAULT_GRACE = 10.0
TICK = 1.0  # longest sleep between looks at the state file


@dataclass
class Backoff:
    """Restart delay of one unit: `initial` doubling to `maximum`; a run of
    at least `reset_after` seconds starts the sequence again."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0
    reset_after: float = 30.0
    failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.reset_after:
            self.failures = 0
        delay = min(self.initial * self.factor ** self.failures, self.maximum)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


def describe_exit(returncode: int) -> dict:
    """Popen returncode -> {"code": N} or {"signal": "SIGKILL"}."""
    if returncode < 0:
        try:
            return {"signal": signal.Signals(-returncode).name}
        except ValueError:
            return {"signal": f"signal {-returncode}"}
    return {"code": returncode}


def spawn(name: str, rec: dict) -> subprocess.Popen:
    """Start unit `rec` detached: own session, stdin /dev/null, log appended;
    in its node's network namespace when it has one (nsenter execs, so the
    PID is the component's)."""
    argv = rec["argv"]
    cmd = nsenter_argv(rec["netns"], argv) if rec.get("netns") else list(argv)
    env = dict(os.environ)
    env.update(rec.get("env") or {})
    os.makedirs(os.path.dirname(rec["log"]), exist_ok=True)
    with open(rec["log"], "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=rec.get("cwd"), start_new_session=True, close_fds=True)


class Reconciler:
    """Brings the units' processes to their desired state, one `step()` at a
    time. Clock, process start and back-off are injectable (unit tests)."""

    def __init__(self, store: StateStore, *, spawn=spawn, clock=time.monotonic, wall=time.time,
                 backoff=Backoff, start_time=proc_start_time, machine: str | None = None):
        self.store, self.spawn, self.clock, self.wall = store, spawn, clock, wall
        self.new_backoff, self.start_time, self.machine = backoff, start_time, machine
        self.procs: dict[str, object] = {}         # unit -> running child (Popen-like)
        self.started: dict[str, float] = {}        # unit -> clock() at start
        self.backoffs: dict[str, Backoff] = {}
        self.next_start: dict[str, float] = {}     # unit -> clock() of the pending restart
        self.kill_at: dict[str, float] = {}        # unit -> clock() to SIGKILL a stopping unit

    def units(self, state: dict) -> dict[str, dict]:
        return {n: r for n, r in state.get("procs", {}).items()
                if r.get("supervised") and r.get("machine") == self.machine}

    def step(self) -> float:
        """Reap, compare with the desired state, act. Returns the seconds
        until the next timer (restart or kill), at most TICK."""
        exits = {n: p.poll() for n, p in self.procs.items()}
        exits = {n: rc for n, rc in exits.items() if rc is not None}
        now, changes = self.clock(), {}
        units = self.units(self.store.load())  # read AFTER reaping: a stop precedes its kill
        for name, rc in exits.items():
            del self.procs[name]
            self.kill_at.pop(name, None)
            ch = changes.setdefault(name, {})
            ch.update(pid=None, start_time=None, last_exit=dict(describe_exit(rc), at=self.wall()))
            if name in units and units[name].get("desired", "running") == "running":
                delay = self.backoffs.setdefault(name, self.new_backoff()).next_delay(
                    now - self.started.get(name, now))
                self.next_start[name] = now + delay
                ch.update(state="backoff", restart_in=delay)
            else:
                ch.update(state="stopped")
        for name in [n for n in self.next_start if n not in units]:  # unit removed meanwhile
            del self.next_start[name]
        for name, rec in units.items():
            if rec.get("desired", "running") == "running":
                self._want_running(name, rec, now, changes)
            else:
                self._want_stopped(name, rec, now, changes)
        if changes:
            self.store.update(lambda s: _apply(s, changes))
        timers = list(self.next_start.values()) + list(self.kill_at.values())
        return max(0.0, min([TICK] + [t - now for t in timers]))

    def _want_running(self, name: str, rec: dict, now: float, changes: dict) -> None:
        if name in self.procs:
            return
        due = self.next_start.get(name)
        if due is not None and now < due:
            return
        ch = changes.setdefault(name, {})
        if due is not None:  # a restart after a crash, not a first or manual start
            ch["restarts"] = rec.get("restarts", 0) + 1
        self.next_start.pop(name, None)
        try:
            proc = self.spawn(name, rec)
        except OSError as exc:  # e.g. the binary is gone: counts as a crash
            delay = self.backoffs.setdefault(name, self.new_backoff()).next_delay(0.0)
            self.next_start[name] = now + delay
            ch.update(state="backoff", restart_in=delay, pid=None,
                      last_exit={"error": str(exc), "at": self.wall()})
            return
        self.procs[name], self.started[name] = proc, now
        ch.update(pid=proc.pid, start_time=self.start_time(proc.pid), state="running",
                  started_at=self.wall(), restart_in=None)

    def _want_stopped(self, name: str, rec: dict, now: float, changes: dict) -> None:
        self.next_start.pop(name, None)
        self.backoffs.pop(name, None)
        proc = self.procs.get(name)
        if proc is None:
            if rec.get("state") != "stopped" or rec.get("pid") is not None:
                changes.setdefault(name, {}).update(state="stopped", pid=None, start_time=None,
                                                    restart_in=None)
            return
        if name not in self.kill_at:
            _signal(proc, signal.SIGTERM)
            self.kill_at[name] = now + float(rec.get("stop_grace", DEFAULT_GRACE))
            changes.setdefault(name, {}).update(state="stopping")
        elif now >= self.kill_at[name]:
            _signal(proc, signal.SIGKILL)

    def shutdown(self, grace: float = 5.0) -> None:
        """TERM every unit, wait up to `grace`, KILL the rest, record them stopped."""
        for proc in self.procs.values():
            _signal(proc, signal.SIGTERM)
        deadline = self.clock() + grace
        while self.procs and self.clock() < deadline:
            self._reap_quietly()
            time.sleep(0.05)
        for proc in self.procs.values():
            _signal(proc, signal.SIGKILL)
        while self.procs:
            self._reap_quietly()
            time.sleep(0.02)

    def _reap_quietly(self) -> None:
        gone = {n: p.poll() for n, p in self.procs.items()}
        gone = {n: rc for n, rc in gone.items() if rc is not None}
        for n in gone:
            del self.procs[n]
        if gone:
            at = self.wall()
            self.store.update(lambda s: _apply(s, {n: dict(state="stopped", pid=None, start_time=None,
                                                           last_exit=dict(describe_exit(rc), at=at))
                                                   for n, rc in gone.items()}))


def _signal(proc, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _apply(state: dict, changes: dict) -> None:
    """Merge observed fields into the units still recorded (a unit removed
    meanwhile stays removed)."""
    procs = state.get("procs", {})
    for name, fields in changes.items():
        if name in procs:
            procs[name].update(fields)


def run(name: str, machine: str | None = None) -> int:
    """The supervisor's main loop: wake on SIGCHLD, SIGHUP or a timer; exit on SIGTERM/SIGINT."""
    store = StateStore(naming.state_dir(name))
    rec = Reconciler(store, machine=machine)
    wake_r, wake_w = socket.socketpair()
    for s in (wake_r, wake_w):
        s.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    stop = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _f: stop.append(signum))
    _ready(store, record_name(machine))
    print(f"supervisor of lab {name}{' machine ' + machine if machine else ''} (pid {os.getpid()}) running", flush=True)
    while not stop:
        timeout = rec.step()
        if stop:
            break
        select.select([wake_r], [], [], timeout)
        try:
            while wake_r.recv(512):
                pass
        except BlockingIOError:
            pass
    print(f"supervisor: {signal.Signals(stop[0]).name}, stopping {len(rec.procs)} unit(s)", flush=True)
    rec.shutdown()
    return 0


def record_name(machine: str | None = None) -> str:
    """The supervisor's own record: ``supervisor``, or ``supervisor-<machine>``."""
    return f"supervisor-{machine}" if machine else "supervisor"


def _ready(store: StateStore, me_name: str = "supervisor", timeout: float = 30.0) -> None:
    """Mark our record ``running`` -- only now: a SIGHUP before the handler
    would have killed us. Our starter records us right after the fork, so
    the record may not be there yet."""
    me, deadline, done = os.getpid(), time.monotonic() + timeout, []

    def mark(s):
        rec = s.get("procs", {}).get(me_name)
        if rec and rec.get("pid") == me:
            rec["state"] = "running"
            done.append(True)
    while not done and time.monotonic() < deadline:
        store.update(mark)
        if not done:
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deploy.lab.supervisor", description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True, help="lab name")
    ap.add_argument("--machine", default=None, help="only the units of this control-plane machine")
    args = ap.parse_args(argv)
    naming.check_lab_name(args.name)
    return run(args.name, args.machine)


if __name__ == "__main__":
    sys.exit(main())
