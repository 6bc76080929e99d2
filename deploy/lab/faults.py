"""Faults injected into a running lab cluster, by lab name (`kctl lab
kill-node/start-node/stop-agent/start-agent/partition/heal`): what a node's
power, network link or agent does; and stop/start/kill of any component
(`kctl lab stop|start|kill COMPONENT`). Components are units of the lab's
supervisor (supervisor.py): a stop tells it "down on purpose" (not
restarted until start), a kill is a crash it repairs with back-off.
"""
from __future__ import annotations

from deploy.lab import naming, units
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
    plug). The supervisor is told first that the agent is down on purpose
    (desired stopped), so it does not restart it. The node's pod network
    namespaces and files stay, as a disk keeps its state: `start_node` boots
    a fresh agent that finds them. Returns PIDs that survived (should be empty).
    """
    from deploy.lab.procs import is_alive, kill_all

    lab = Lab.load(name)
    rec = _agent_record(lab, node)
    _set_link(lab, node, "down")
    if rec:
        units.hold(lab.store, f"agent-{node}")
    if rec and rec.get("pid") and is_alive(rec["pid"], rec.get("start_time")):
        kill_all([rec["pid"]])
    return lab.kill_node(node, timeout=1.0)


def start_agent(name: str, node: str) -> dict:
    """Start the agent of `node` again (the supervisor runs the argv `up` used)."""
    lab = Lab.load(name)
    if _agent_record(lab, node) is None:
        raise LabError(f"{node} has no agent")
    return units.start(lab.store, f"agent-{node}")


def start_node(name: str, node: str) -> dict:
    """Boot a killed node again: link up, then a fresh agent that finds its old state."""
    lab = Lab.load(name)
    _set_link(lab, node, "up")
    return start_agent(name, node)


def stop_agent(name: str, node: str, grace: float = 2.0) -> None:
    """The agent dies (TERM, KILL after `grace`) and stays down until
    start-agent; its containers keep running."""
    lab = Lab.load(name)
    rec = _agent_record(lab, node)
    if not rec or rec.get("desired") == "stopped":
        raise LabError(f"the agent of {node} is not running")
    units.stop(lab.store, f"agent-{node}", grace=grace)


def component(name: str, comp: str) -> tuple[Lab, str]:
    """(lab, unit name) for COMPONENT as typed: apiserver, ..., agent-node1 or node1."""
    lab = Lab.load(name)
    if comp in lab.node_names:
        comp = f"agent-{comp}"
    units.unit(lab.store, comp)  # LabError naming the known components
    return lab, comp


def stop_component(name: str, comp: str, grace: float = 10.0) -> dict:
    """Stopped on purpose: TERM, KILL after `grace`; not restarted until `start`."""
    lab, comp = component(name, comp)
    return units.stop(lab.store, comp, grace=grace)


def start_component(name: str, comp: str) -> dict:
    lab, comp = component(name, comp)
    return units.start(lab.store, comp)


def kill_component(name: str, comp: str) -> int:
    """A crash (SIGKILL); the supervisor restarts it after its back-off. Returns the PID."""
    lab, comp = component(name, comp)
    return units.kill(lab.store, comp)


def partition(name: str, node: str) -> None:
    Lab.load(name).partition(node)


def heal(name: str, node: str) -> None:
    Lab.load(name).heal(node)
