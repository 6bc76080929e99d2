"""Faults injected into a running lab cluster, by lab name (`kctl lab
kill-node/start-node/stop-agent/start-agent/partition/heal`): what a node's
power, network link or agent does, with the agent's argv from cluster.json
so a node boots again as `up` started it.
"""
from __future__ import annotations

from deploy.lab import naming
from deploy.lab.cluster import load_cluster
from deploy.lab.naming import LabError
from deploy.lab.topology import Lab


def _agent_record(lab: Lab, node: str) -> dict | None:
    lab.node(node)  # LabError for an unknown node
    return lab.procs.records().get(f"agent-{node}")


def _set_link(lab: Lab, node: str, state: str) -> None:
    """Down/up the node's port on the lab bridge with `ip -n` (fork+exec).

    Not Lab.link_down/up: those open ``IPRoute(netns=...)``, which forks a
    helper *without* exec; in a process that already runs gRPC threads (a
    test or benchmark holding an API client) that child can hang for good.
    """
    import subprocess

    info = lab.node(node)
    res = subprocess.run(["ip", "-n", naming.lab_netns(lab.name), "link", "set", info.bridge_port, state],
                         capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise LabError(f"ip link set {info.bridge_port} {state}: {res.stderr.strip()}")
    lab.store.update(lambda s: s.setdefault("faults", {}).setdefault(node, {}).update(link=state))


def kill_node(name: str, node: str) -> list[int]:
    """Power off: the link goes down, the agent and every container die at once.

    In that order, so nothing the node does while dying reaches the control
    plane; everything is SIGKILLed (no graceful shutdown, like pulling the
    plug). The node's pod network namespaces and files stay, as a disk keeps
    its state: `start_node` boots a fresh agent that finds them.
    Returns PIDs that survived (should be empty).
    """
    from deploy.lab.procs import is_alive, kill_all

    lab = Lab.load(name)
    rec = _agent_record(lab, node)
    _set_link(lab, node, "down")
    if rec and is_alive(rec["pid"], rec.get("start_time")):
        kill_all([rec["pid"]])
    return lab.kill_node(node, timeout=1.0)


def start_agent(name: str, node: str) -> dict:
    """Start a fresh agent on `node` with the argv `up` used; returns its record."""
    lab = Lab.load(name)
    info = load_cluster(name)
    status = lab.status().get(f"agent-{node}")
    if status and status.get("alive"):
        raise LabError(f"the agent of {node} is already running (pid {status['pid']})")
    return lab.start(f"agent-{node}", info["agents"][node], node=node)


def start_node(name: str, node: str) -> dict:
    """Boot a killed node again: link up, then a fresh agent that finds its old state."""
    lab = Lab.load(name)
    _set_link(lab, node, "up")
    return start_agent(name, node)


def stop_agent(name: str, node: str, grace: float = 2.0) -> None:
    """The agent dies (TERM, KILL after `grace`); its containers keep running."""
    lab = Lab.load(name)
    rec = _agent_record(lab, node)
    if not rec or not lab.status().get(f"agent-{node}", {}).get("alive"):
        raise LabError(f"the agent of {node} is not running")
    lab.stop(f"agent-{node}", timeout=grace)


def partition(name: str, node: str) -> None:
    Lab.load(name).partition(node)


def heal(name: str, node: str) -> None:
    Lab.load(name).heal(node)
