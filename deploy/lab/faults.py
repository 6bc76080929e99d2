"""Faults injected into a running lab cluster, by lab name (`kctl lab
kill-node/start-node/stop-agent/start-agent/partition/heal`): what a node's
power, network link or agent does; and stop/start/kill of any component
(`kctl lab stop|start|kill COMPONENT [--machine cpI]`). Components are units
of the lab's supervisors (supervisor.py): a stop tells it "down on purpose"
(not restarted until start), a kill is a crash it repairs with back-off.

An HA lab (``--control-planes N``) adds its control-plane machines as
targets: `kill_machine`/`start_machine` (power: its bridge port, its
supervisor and every process in its netns), `partition`/`heal` of a machine
(cut from the other machines and the nodes; the host S.1 still reaches it),
and `etcd_members`/`etcd_leader` to aim at the leader. This module is the
Python API the fault suite (tests/e2e/test_lab_ha.py) calls; every function
takes the lab name first and is synchronous (HA.md lists the signatures).
"""
from __future__ import annotations

import time

from deploy.lab import controlplane, naming, units
from deploy.lab.naming import LabError
from deploy.lab.topology import Lab


def _agent_record(lab: Lab, node: str) -> dict | None:
    lab.node(node)  # LabError for an unknown node
    return lab.procs.records().get(f"agent-{node}")


def _set_link(lab: Lab, node: str, state: str) -> None:
    """Down/up the port of a node or machine on the lab bridge with `ip -n` (fork+exec).

    Not Lab.link_down/up: those open ``IPRoute(netns=...)``, which forks a
    helper *without* exec; in a process that already runs gRPC threads (a
    test or benchmark holding an API client) that child can hang for good.
    """
    import subprocess

    info = lab.place(node)
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


def resolve(lab: Lab, comp: str, machine: str | None = None) -> str:
    """The unit name of COMPONENT as typed (apiserver, ..., agent-node1 or
    node1, apiserver-cp2) on `machine`; LabError naming what exists."""
    if comp in lab.node_names:
        comp = f"agent-{comp}"
    if machine is not None:
        lab.machine(machine)  # LabError naming the machines
        if comp not in controlplane.COMPONENTS:
            raise LabError(f"{comp} does not run on a control-plane machine (those run "
                           f"{', '.join(controlplane.COMPONENTS)}); drop --machine")
        comp = controlplane.unit_name(comp, machine)
    elif lab.machine_names and comp in controlplane.COMPONENTS:
        raise LabError(f"lab {lab.name} runs {comp} on each of its control-plane machines "
                       f"{', '.join(lab.machine_names)}: say which with --machine")
    units.unit(lab.store, comp)  # LabError naming the known components
    return comp


def unit_name(name: str, comp: str, machine: str | None = None) -> str:
    """("apiserver", "cp2") -> "apiserver-cp2" (checked against the lab's units)."""
    return resolve(Lab.load(name), comp, machine)


def component(name: str, comp: str, machine: str | None = None) -> tuple[Lab, str]:
    """(lab, unit name) for COMPONENT as typed (see `resolve`)."""
    lab = Lab.load(name)
    return lab, resolve(lab, comp, machine)


def stop_component(name: str, comp: str, grace: float = 10.0, *, machine: str | None = None) -> dict:
    """Stopped on purpose: TERM, KILL after `grace`; not restarted until `start`."""
    lab, comp = component(name, comp, machine)
    return units.stop(lab.store, comp, grace=grace)


def start_component(name: str, comp: str, *, machine: str | None = None) -> dict:
    lab, comp = component(name, comp, machine)
    return units.start(lab.store, comp)


def kill_component(name: str, comp: str, *, machine: str | None = None) -> int:
    """A crash (SIGKILL); the supervisor restarts it after its back-off. Returns the PID."""
    lab, comp = component(name, comp, machine)
    return units.kill(lab.store, comp)


def partition(name: str, target: str) -> None:
    """Node: cut from the control plane. Machine (cp2): cut from the other machines and the nodes."""
    Lab.load(name).partition(target)


def heal(name: str, target: str) -> None:
    Lab.load(name).heal(target)


# ------------------------------------------------- control-plane machines

def control_planes(name: str) -> list[str]:
    """The machines of an HA lab (cp1..cpN); [] when its control plane is in the root netns."""
    return Lab.load(name).machine_names


def machine_address(name: str, machine: str) -> str:
    return Lab.load(name).machine(machine).ip


def apiservers(name: str) -> list[str]:
    """Every apiserver's gRPC endpoint (HOST:PORT), in machine order."""
    return controlplane.apiservers(Lab.load(name))


def machine_units(lab: Lab, machine: str) -> dict[str, dict]:
    return {n: r for n, r in lab.procs.records().items() if r.get("supervised") and r.get("machine") == machine}


def kill_machine(name: str, machine: str) -> list[int]:
    """Power off control-plane machine `machine`: its bridge port goes down,
    then its supervisor and every process in its netns are SIGKILLed (the
    supervisor first, so it restarts nothing). Its units keep desired
    ``running``: `start_machine` boots them again, from their data (etcd's
    member rejoins with its data dir). Returns PIDs that survived (empty)."""
    from deploy.lab.nsutil import netns_inode
    from deploy.lab.procs import is_alive, kill_all, pids_in_netns, sweep

    lab = Lab.load(name)
    info = lab.machine(machine)
    _set_link(lab, machine, "down")
    sup = lab.procs.records().get(units.supervisor_of(machine)) or {}
    if sup.get("pid") and is_alive(sup["pid"], sup.get("start_time")):
        kill_all([sup["pid"]])
    left = sweep(lambda: pids_in_netns([netns_inode(info.netns_path)]))
    at = time.time()

    def mark(s):
        for n, r in s.get("procs", {}).items():
            if r.get("supervised") and r.get("machine") == machine and r.get("pid"):
                r.update(pid=None, start_time=None, state="down", last_exit={"signal": "SIGKILL", "at": at})
    lab.store.update(mark)
    return left


def start_machine(name: str, machine: str, timeout: float = 30.0) -> dict[str, dict]:
    """Boot a killed machine: link up, its supervisor again, which starts every
    unit desired running; waits until they run. Returns {unit: record}."""
    from deploy.lab.procs import is_alive

    lab = Lab.load(name)
    lab.machine(machine)
    sup = lab.procs.records().get(units.supervisor_of(machine)) or {}
    if sup.get("pid") and is_alive(sup["pid"], sup.get("start_time")):
        raise LabError(f"{machine} is running (its supervisor is pid {sup['pid']}); kill-machine it first")
    _set_link(lab, machine, "up")
    units.launch(lab, machine)
    return {n: units.wait(lab.store, n, "running", timeout)
            for n, r in machine_units(lab, machine).items() if r.get("desired", "running") == "running"}


def etcd_members(name: str) -> dict[str, dict]:
    """{machine: {"url", "id", "leader_id", "healthy"}} of an HA lab's etcd ({} with one control plane)."""
    return controlplane.etcd_members(Lab.load(name))


def etcd_leader(name: str) -> str | None:
    """The machine whose etcd member leads, as most reachable members report (None: no leader known)."""
    return controlplane.leader_of(etcd_members(name))
