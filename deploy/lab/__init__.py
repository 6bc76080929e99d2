"""The one-machine lab: nodes as network namespaces on one bridge.

Public API (see topology.py for the layout and address plan, naming.py for
the naming, path and cgroup conventions every component in the lab follows,
cleanup.py for what `lab_down` removes; cluster.py runs a whole kctl cluster
on a lab — `kctl lab up/down` — with kubeconfig.py for its kubeconfig entries
and faults.py for kill-node, stop-agent, partition and the like; its
components are units of the lab's supervisor, supervisor.py, driven through
units.py: restarted with back-off when they crash, left down when stopped;
controlplane.py starts the control plane on the host or, with
``--control-planes N``, on N control-plane machines, one supervisor each)::

    from deploy.lab import Lab, LabSpec, lab_down

    lab = Lab(LabSpec(name="kctl", nodes=3)).build()
    lab.cp_address                      # bind the control plane here (root netns)
    lab.node("node1")                   # NodeInfo: netns_path, ip, run_dir, ...
    lab.start("apiserver", [...])       # detached, logged, PID recorded
    lab.start("agent-node1", [...], node="node1")
    lab.partition("node1"); lab.heal("node1")
    Lab(LabSpec(name="ha", control_planes=3))  # machines cp1..cp3: lab.machine("cp2").ip == S.3
    Lab.load("kctl")                    # a handle on a built lab, from its state
    lab_down("kctl")                    # works from the name alone, idempotent

Every call is synchronous and may block for up to a few seconds (stop waits
for processes). From async code prefer ``await asyncio.to_thread(...)``;
calling directly also works (pyroute2 work then runs on a helper thread).
"""

from deploy.lab.cleanup import lab_down
from deploy.lab.naming import LabError
from deploy.lab.procs import Supervisor
from deploy.lab.subnet import choose_subnet, host_networks
from deploy.lab.topology import Lab, LabSpec, NodeInfo

__all__ = ["Lab", "LabSpec", "NodeInfo", "LabError", "Supervisor", "lab_down",
           "choose_subnet", "host_networks"]
