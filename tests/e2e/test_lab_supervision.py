"""The lab supervises what it starts (issue 17), end to end on a real 3-node lab.

One lab for the module (named per run, tests/e2e/lab_fixtures.py), torn down
whatever happens; the tests run in file order: the controller manager is
SIGKILLed in the middle of a rolling update of examples/echo.yaml (6
replicas, maxSurge 1) and the supervisor restarts it, the rollout finishes
and a watch never sees more than 7 pods; `kctl lab stop scheduler` keeps it
down (a new pod stays Pending) until `kctl lab start scheduler`; a node
agent's process is SIGKILLed and restarted while its pods keep running
untouched (same pods, same container processes, no restarts); `kctl lab
status` shows the restart counts and last exits; `kctl lab down` leaves
nothing, the supervisor included.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from deploy.lab import naming
from deploy.lab.procs import is_alive, pids_in_cgroups
from tests.e2e.lab_fixtures import (lab, lab_traces, missing_tools, nodes, pods, ready,  # noqa: F401
                                    wait_for, watch_live_pods)

LAB_TAG = "sv"
pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo.yaml"
SELECTOR = "app=echo"
REPLICAS, MAX_SURGE = 6, 1
NEW_IMAGE = "docker.io/kctl/echo:latest"  # same image, another reference: a new template


def echo_ready(lab) -> list:
    ps = [p for p in pods(lab, SELECTOR) if ready(p)]
    return ps if len(ps) == REPLICAS else []


def snapshot(lab) -> dict[str, tuple[str, int]]:
    """{pod uid: (node, restart count)} of the live echo pods."""
    return {p.metadata.uid: (p.spec.node_name, sum(cs.restart_count for cs in p.status.container_statuses))
            for p in pods(lab, SELECTOR) if not p.metadata.HasField("deletion_timestamp")}


def unit(lab, name: str) -> dict:
    return lab.topology.store.load()["procs"][name]


def test_controller_manager_killed_mid_rollout_is_restarted_and_the_rollout_finishes(lab):
    lab.kctl("apply", "-f", str(ECHO))
    wait_for("6 ready replicas", lambda: echo_ready(lab), 120)
    counts: list[int] = []
    task = watch_live_pods(lab, SELECTOR, counts)
    try:
        time.sleep(0.5)
        before = unit(lab, "controller-manager")
        lab.kctl("set", "image", "deployment/echo", f"echo={NEW_IMAGE}")

        def updated():
            new = [p for p in pods(lab, SELECTOR) if p.spec.containers[0].image == NEW_IMAGE]
            return 1 <= len(new) < REPLICAS
        wait_for("the rollout under way", updated, 60, interval=0.05)
        out = lab.lab("kill", "controller-manager").stdout
        assert f"(pid {before['pid']}) killed with SIGKILL" in out, out
        wait_for("the controller manager restarted",
                 lambda: unit(lab, "controller-manager")["restarts"] == 1
                 and unit(lab, "controller-manager")["state"] == "running", 30)
        after = unit(lab, "controller-manager")
        assert after["pid"] != before["pid"] and is_alive(after["pid"], after["start_time"])
        assert after["last_exit"]["signal"] == "SIGKILL"
        lab.kctl("rollout", "status", "deployment/echo", "--timeout", "120s", timeout=150)
        wait_for("6 ready replicas of the new image",
                 lambda: len([p for p in echo_ready(lab) if p.spec.containers[0].image == NEW_IMAGE]) == REPLICAS
                 and len(pods(lab, SELECTOR)) == REPLICAS, 60)
        time.sleep(0.5)
    finally:
        task.cancel()
    print(f"\nrollout with the controller manager killed: {len(counts)} watch samples, "
          f"at most {max(counts)} live pods (bound {REPLICAS + MAX_SURGE})")
    assert max(counts) <= REPLICAS + MAX_SURGE, counts
    row = lab.lab("status").stdout
    assert re.search(r"^controller-manager\s+\d+\s+running\s+1\s+signal SIGKILL, \d+s ago\s+root netns$",
                     row, re.M), row


PENDING_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: waits-for-scheduler
spec:
  containers:
  - name: echo
    image: kctl/echo:latest
"""


def test_stopped_scheduler_stays_down_until_started(lab):
    out = lab.lab("stop", "scheduler").stdout
    assert "scheduler stopped" in out, out
    stopped = unit(lab, "scheduler")
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    assert stopped["last_exit"].get("signal") == "SIGTERM" or stopped["last_exit"].get("code") == 0, stopped
    lab.kctl("apply", "-f", "-", input=PENDING_POD)
    time.sleep(3)  # six times the first back-off: a crashed unit would be back by now
    pod = lab.api(lambda c: c.get("Pod", "waits-for-scheduler", "default"))
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    assert unit(lab, "scheduler")["state"] == "stopped" and unit(lab, "scheduler")["restarts"] == 0
    assert re.search(r"^scheduler\s+-\s+stopped\s+0\s", lab.lab("status").stdout, re.M)
    assert re.search(r"not stopped", lab.lab("start", "apiserver", check=False).stderr)
    out = lab.lab("start", "scheduler").stdout
    assert "scheduler started" in out, out
    wait_for("the pod scheduled and running", lambda: ready(
        lab.api(lambda c: c.get("Pod", "waits-for-scheduler", "default"))), 60)
    assert unit(lab, "scheduler")["restarts"] == 0  # a start on purpose is not a restart
    lab.kctl("delete", "pod", "waits-for-scheduler")


def test_killed_agent_is_restarted_and_its_pods_keep_running(lab):
    wait_for("6 ready replicas", lambda: echo_ready(lab), 60)
    node = next(p.spec.node_name for p in echo_ready(lab))
    cgroup = lab.node(node).cgroup_parent
    before_pods, before_procs = snapshot(lab), set(pids_in_cgroups(cgroup))
    assert before_procs
    agent = unit(lab, f"agent-{node}")
    out = lab.lab("kill", node).stdout  # NODE is short for agent-NODE
    assert f"(pid {agent['pid']}) killed" in out, out
    wait_for(f"agent-{node} restarted", lambda: unit(lab, f"agent-{node}")["restarts"] == 1
             and unit(lab, f"agent-{node}")["state"] == "running", 30)
    again = unit(lab, f"agent-{node}")
    # still in the node's network namespace
    assert os.stat(f"/proc/{again['pid']}/ns/net").st_ino == os.stat(lab.node(node).netns_path).st_ino
    wait_for(f"{node} Ready", lambda: nodes(lab)[node] == "True", 30)
    time.sleep(3)  # the new agent has synced its pods by now
    assert snapshot(lab) == before_pods
    assert before_procs <= set(pids_in_cgroups(cgroup))  # the same container processes
    assert echo_ready(lab)
    assert re.search(rf"^agent-{node}\s+\d+\s+running\s+1\s+signal SIGKILL, \d+s ago\s+{node}$",
                     lab.lab("status").stdout, re.M)

    # stop-agent is "on purpose": not restarted until start-agent
    other = next(n for n in ("node1", "node2", "node3") if n != node)
    lab.lab("stop-agent", other)
    time.sleep(1.5)
    assert unit(lab, f"agent-{other}")["state"] == "stopped"
    lab.lab("start-agent", other)
    assert unit(lab, f"agent-{other}")["state"] == "running"
    wait_for(f"{other} Ready", lambda: nodes(lab)[other] == "True", 30)


def test_lab_down_stops_the_supervisor_first_and_leaves_nothing(lab):
    procs = lab.topology.store.load()["procs"]
    sup = procs["supervisor"]
    assert is_alive(sup["pid"], sup["start_time"])
    recorded = [(r["pid"], r["start_time"]) for r in procs.values() if r.get("pid")]
    containers = pids_in_cgroups(naming.cgroup_parent(lab.name))
    assert len(recorded) == 1 + 6 + 3 and containers
    lab.api.close()
    res = lab.lab("down")
    assert f'lab "{lab.name}" is down' in res.stdout
    traces = lab_traces(lab.name, markers=(lab.info["apiserver"], lab.info["registry"],
                                           f"deploy.lab.supervisor --name {lab.name}"))
    assert not any(traces.values()), traces
    assert not [p for p, st in recorded if is_alive(p, st)]
    assert not [p for p in containers if is_alive(p)]
    assert lab.lab("down").returncode == 0
