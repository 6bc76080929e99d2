"""The one-machine lab: a declarative topology realised with real namespaces.

Following Mininet (design §6.8): `LabSpec` declares the lab, `Lab` builds it,
starts processes in it, breaks and repairs links, and tears it all down
(`destroy` -> `cleanup.lab_down`, which works from the name alone).

Layout for ``LabSpec(name="kctl", nodes=3)`` and subnet S (say 172.30.0.0/24)::

    root netns                 netns klkctl-net            netns klkctl-node<i>
    klkctl-cp  S.1/24 ====veth==== klkctl-cpb ─┐
    (control plane binds here)                 ├ klkctl-br (bridge, no address)
                                 klkctl-n<i>b ─┘ ====veth==== eth0  S.(10+i)/24

* The control plane runs in the root namespace bound to S.1, so `kctl` on the
  host reaches the apiserver directly, and node agents reach it over the lab
  bridge (they cannot reach the host's 127.0.0.1, design §4).
* The root namespace gets exactly one new route: the connected route of S via
  ``klkctl-cp`` (plus the kernel's local-table entries for S.1 itself). IPv6 is
  disabled on that link (no link-local routes), so is forwarding of packets
  arriving on it, and its reverse-path filter is strict: a packet from the lab
  with a source outside S (an unmasqueraded pod IP) is dropped on arrival --
  otherwise the root netns would answer it through its default route, out of
  the machine. Node agents must therefore masquerade pod traffic to S (as
  kube's ip-masq / flannel do for traffic leaving the pod network).
* With an HA control plane (``LabSpec(control_planes=3)``) each control-plane
  "machine" cpI is its own netns ``klkctl-cp<I>`` on the bridge (port
  ``klkctl-c<I>b``, eth0 S.(1+I)/24: S.2, S.3, S.4), running its etcd member,
  apiserver, scheduler, controller manager and kctl-dns (controlplane.py);
  the root netns keeps S.1 as the host's address, where `kctl` talks from and
  the lab registry listens. A machine netns has lo and eth0 up, nothing else.
* Node namespaces have no default route: only S is reachable. Node agents add
  routes to other nodes' pod CIDRs (10.244.0.0/16) via node addresses. Each
  node netns has lo up, ip_forward=1 and bridge-nf-call-iptables=1.

Failure injection:

* `link_down(node)` downs the node's bridge port: the node is cut from
  everything (kill-node / NIC failure). Processes keep running.
* `partition(node)` cuts the node from the control-plane address(es) only, with
  DROP rules in a chain ``<prefix>part`` hooked first into INPUT, OUTPUT and
  FORWARD of the node netns. Chosen over downing the link because a real
  partition from the control plane leaves node-to-node (pod) traffic working,
  which is what node-lifecycle behaviour (NotReady, pods keep serving) should
  be tested against; it also covers pods on the node (FORWARD). The chain is
  not ``KCTL-*``, so the node agent's proxy never touches it.
  `partition("cp2")` cuts a control-plane machine from every other machine
  and node (DROP to/from S except S.1, the host, where tests and kctl stand).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network

from deploy.lab import naming, subnet as subnets
from deploy.lab.naming import LabError
from deploy.lab.netbuild import build_lock, build_network, idx
from deploy.lab.nsutil import list_netns, nsenter_argv, off_loop
from deploy.lab.procs import Supervisor
from deploy.lab.state import StateStore


ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True)
class LabSpec:
    """What to build. `subnet` None = pick a free 172.30.x.0/24 automatically.
    `zones`: node i (1-based) is labelled topology.kubernetes.io/zone =
    zones[(i - 1) % len(zones)] (none when empty), so topology spread and
    zone affinity can be seen on one machine."""

    name: str = "kctl"
    nodes: int = 3
    subnet: str | None = None
    zones: tuple[str, ...] = ("zone-a", "zone-b")
    control_planes: int = 1  # 1: the control plane in the root netns; odd N > 1: machines cp1..cpN


@dataclass(frozen=True)
class MachineInfo:
    """A control-plane machine of an HA lab (its own netns on the lab bridge)."""
    name: str           # cp1, cp2, ...
    index: int          # 1-based
    netns: str          # klkctl-cp1
    netns_path: str     # /var/run/netns/klkctl-cp1
    ip: str             # S.(1+index)
    prefixlen: int
    iface: str          # eth0
    bridge_port: str    # klkctl-c1b, in klkctl-net


@dataclass(frozen=True)
class NodeInfo:
    name: str           # Kubernetes node name: node1, node2, ...
    index: int          # 1-based
    netns: str          # netns name, e.g. klkctl-node1
    netns_path: str     # /var/run/netns/klkctl-node1 (for nsenter --net=)
    ip: str             # node address, e.g. 172.30.0.11
    prefixlen: int
    iface: str          # interface carrying `ip` inside the node netns (eth0)
    bridge_port: str    # its peer in the lab bridge (klkctl-n1b, in klkctl-net)
    run_dir: str        # /run/kctl-lab/<lab>/nodes/<node>: runc root, sockets, pod netns
    data_dir: str       # /var/lib/kctl-lab/<lab>/nodes/<node>: images, rootfs, overlays
    cgroup_parent: str  # /kctl-lab/<lab>/<node>: absolute parent of container cgroups
    pod_netns_prefix: str  # klkctl-node1-: name pod netns <this><pod-uid> in /var/run/netns
    labels: tuple[tuple[str, str], ...] = ()  # node labels the agent registers (zone, hostname)


def _iptables() -> str:
    return shutil.which("iptables") or "/usr/sbin/iptables"


class Lab:
    def __init__(self, spec: LabSpec = LabSpec()):
        naming.check_lab_name(spec.name)
        naming.check_nodes(spec.nodes)
        naming.check_control_planes(spec.control_planes)
        self.spec = spec
        self.name = spec.name
        self.prefix = naming.prefix(spec.name)
        self.state_dir = naming.state_dir(spec.name)
        self.data_dir = naming.data_dir(spec.name)
        self.store = StateStore(self.state_dir)
        self.procs = Supervisor(self.store, os.path.join(self.state_dir, "logs"))
        self.subnet: IPv4Network | None = None

    # -- addressing -----------------------------------------------------
    @classmethod
    def load(cls, name: str) -> "Lab":
        """A handle on an already built lab (e.g. for `kctl lab down/status`)."""
        state = StateStore(naming.state_dir(name)).load()
        if "spec" not in state or "subnet" not in state:
            raise LabError(f"lab {name} has no state (not built?)")
        lab = cls(LabSpec(**state["spec"]))
        lab.subnet = IPv4Network(state["subnet"])
        return lab

    @property
    def cp_address(self) -> str:
        """The control-plane address (root netns): bind apiserver etc. here."""
        return str(subnets.cp_address(self._subnet()))

    def _subnet(self) -> IPv4Network:
        if self.subnet is None:
            raise LabError(f"lab {self.name} is not built")
        return self.subnet

    @property
    def node_names(self) -> list[str]:
        return [naming.node_name(i) for i in range(1, self.spec.nodes + 1)]

    def node(self, name: str) -> NodeInfo:
        try:
            index = self.node_names.index(name) + 1
        except ValueError:
            raise LabError(f"lab {self.name} has no node {name!r}") from None
        ns = naming.node_netns(self.name, name)
        net = self._subnet()
        return NodeInfo(
            name=name, index=index, netns=ns, netns_path=naming.netns_path(ns),
            ip=str(subnets.node_address(net, index)), prefixlen=net.prefixlen,
            iface=naming.NODE_IFACE, bridge_port=naming.node_bridge_port(self.name, index),
            run_dir=naming.node_run_dir(self.name, name),
            data_dir=naming.node_data_dir(self.name, name),
            cgroup_parent=naming.cgroup_parent(self.name, name),
            pod_netns_prefix=ns + "-",
            labels=self.node_labels(name, index),
        )

    def node_labels(self, name: str, index: int) -> tuple[tuple[str, str], ...]:
        zones = tuple(self.spec.zones)
        zone = ((ZONE_LABEL, zones[(index - 1) % len(zones)]),) if zones else ()
        return zone + ((HOSTNAME_LABEL, name),)

    @property
    def nodes(self) -> list[NodeInfo]:
        return [self.node(n) for n in self.node_names]

    @property
    def machine_names(self) -> list[str]:
        """cp1..cpN of an HA lab; [] when the control plane is in the root netns."""
        n = self.spec.control_planes
        return [naming.machine_name(i) for i in range(1, n + 1)] if n > 1 else []

    def machine(self, name: str) -> MachineInfo:
        try:
            index = self.machine_names.index(name) + 1
        except ValueError:
            known = ", ".join(self.machine_names) or "none: its control plane is in the root netns"
            raise LabError(f"lab {self.name} has no control-plane machine {name!r} (machines: {known})") from None
        ns, net = naming.machine_netns(self.name, name), self._subnet()
        return MachineInfo(name=name, index=index, netns=ns, netns_path=naming.netns_path(ns),
                           ip=str(subnets.machine_address(net, index)), prefixlen=net.prefixlen,
                           iface=naming.NODE_IFACE, bridge_port=naming.machine_bridge_port(self.name, index))

    @property
    def machines(self) -> list[MachineInfo]:
        return [self.machine(m) for m in self.machine_names]

    @property
    def cp_addresses(self) -> list[str]:
        """Where the control plane listens: S.1, or S.2..S.(1+N) with machines."""
        return [m.ip for m in self.machines] or [self.cp_address]

    # -- build / destroy ------------------------------------------------
    @off_loop
    def exists(self) -> bool:
        """Anything of this lab on the machine (netns, root link, state)?"""
        from pyroute2 import IPRoute

        if list_netns(self.prefix) or os.path.exists(self.store.path):
            return True
        with IPRoute() as ipr:
            return bool(ipr.link_lookup(ifname=naming.cp_link(self.name)))

    def build(self) -> "Lab":
        """Create namespaces, bridge, veths, addresses, sysctls. All or nothing.

        Holds a machine-wide lock while choosing the subnet and creating the
        links, so concurrent builds of different labs pick different subnets.
        """
        with build_lock():
            if self.exists():
                raise LabError(f"lab {self.name} already exists: run lab down {self.name} first")
            in_use = subnets.host_networks() + subnets.recorded_lab_subnets(exclude=self.name)
            self.subnet = subnets.choose_subnet(in_use, self.spec.nodes, self.spec.subnet)
            try:
                self.store.update(self._initial_state)
                self._build_network()
                for n in self.nodes:
                    os.makedirs(n.run_dir, exist_ok=True)
                    os.makedirs(n.data_dir, exist_ok=True)
                self.store.update(lambda s: s.__setitem__("phase", "ready"))
            except BaseException as exc:
                self._undo(exc)
                raise
        return self

    def _undo(self, exc: BaseException) -> None:
        try:
            self.destroy()
        except Exception as cleanup_exc:  # keep the original error visible
            exc.add_note(f"cleanup after failed build also failed: {cleanup_exc}")

    def _initial_state(self, s: dict) -> None:
        s.update(
            name=self.name, prefix=self.prefix, spec=asdict(self.spec), phase="building",
            subnet=str(self.subnet), cp_address=self.cp_address,
            lab_netns=naming.lab_netns(self.name), bridge=naming.bridge_name(self.name),
            cp_link=naming.cp_link(self.name), state_dir=self.state_dir,
            data_dir=self.data_dir, cgroup_parent=naming.cgroup_parent(self.name),
            nodes={n.name: asdict(n) for n in self.nodes}, procs=s.get("procs", {}),
            machines={m.name: asdict(m) for m in self.machines},
        )

    def _build_network(self) -> None:
        build_network(self)  # netbuild.py


    def destroy(self) -> dict:
        """Remove everything of this lab (see cleanup.lab_down)."""
        from deploy.lab.cleanup import lab_down

        return lab_down(self.name)

    # -- processes ------------------------------------------------------
    def run_in_node(self, node: str, argv: list[str], *, name: str | None = None,
                    **popen_kwargs) -> subprocess.Popen:
        """Popen `argv` inside `node`'s network namespace only; PID recorded.

        The process shares mount, PID and cgroup namespaces with the host
        (design §4). `name` defaults to ``<node>/<argv0>-<n>``.
        """
        info = self.node(node)
        if name is None:
            name = f"{node}/{os.path.basename(argv[0])}-{len(self.procs.records())}"
        return self.procs.popen(name, argv, netns=info.netns_path, node=node, **popen_kwargs)

    def start(self, name: str, argv: list[str], *, node: str | None = None,
              env: dict | None = None, cwd: str | None = None) -> dict:
        """Start a supervised, detached component (log in <state_dir>/logs).

        With `node`, it runs in that node's netns; without, in the root netns
        (control-plane components, bound to `cp_address`).
        """
        netns = self.node(node).netns_path if node else None
        return self.procs.start(name, argv, env=env, netns=netns, node=node, cwd=cwd)

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        return self.procs.stop(name, timeout)

    def status(self) -> dict[str, dict]:
        return self.procs.status()

    def kill_node(self, node: str, timeout: float = 5.0) -> list[int]:
        """Kill every process of `node` (agent, conmon, containers)."""
        self.node(node)
        return self.procs.kill_node(self.name, node, timeout)

    # -- failure injection ----------------------------------------------
    def link_down(self, node: str) -> None:
        self._set_port(node, "down")

    def link_up(self, node: str) -> None:
        self._set_port(node, "up")

    @off_loop
    def _set_port(self, node: str, state: str) -> None:
        from pyroute2 import IPRoute

        info = self.place(node)
        with IPRoute(netns=naming.lab_netns(self.name)) as ipr:
            ipr.link("set", index=idx(ipr, info.bridge_port), state=state)
        self._mark(node, link=state)

    def place(self, target: str):
        """NodeInfo or MachineInfo of `target` (node1 / cp2)."""
        return self.machine(target) if target in self.machine_names else self.node(target)

    def partition_rules(self, target: str) -> list[list[str]]:
        """The rules of `target`'s partition chain: a node is cut from the
        control-plane address(es); a machine from the whole lab subnet except
        itself (its components talk to each other on its address) and the
        host's S.1 (RETURN first) -- every other machine and every node."""
        if target not in self.machine_names:
            self.node(target)
            return [[flag, cp, "-j", "DROP"] for cp in self.cp_addresses for flag in ("-d", "-s")]
        host, net, own = self.cp_address, str(self._subnet()), self.machine(target).ip
        return [["-s", own, "-d", own, "-j", "RETURN"]] + \
               [[flag, host, "-j", "RETURN"] for flag in ("-d", "-s")] + \
               [[flag, net, "-j", "DROP"] for flag in ("-d", "-s")]

    def partition(self, target: str) -> None:
        """Cut node `target` (and its pods) from the control plane, or machine
        `target` from the other machines and the nodes (partition_rules)."""
        info, chain = self.place(target), naming.partition_chain(self.name)
        ipt = lambda *a, check=True: _run_in(info.netns_path, [_iptables(), "-w", *a], check)  # noqa: E731
        if ipt("-N", chain, check=False).returncode != 0:
            ipt("-F", chain)
        for rule in self.partition_rules(target):
            ipt("-A", chain, *rule)
        for builtin in ("INPUT", "OUTPUT", "FORWARD"):
            if ipt("-C", builtin, "-j", chain, check=False).returncode != 0:
                ipt("-I", builtin, "1", "-j", chain)
        self._mark(target, partitioned=True)

    def heal(self, node: str) -> None:
        """Undo `partition(node)` (no-op if not partitioned); node or machine."""
        info, chain = self.place(node), naming.partition_chain(self.name)
        ipt = lambda *a: _run_in(info.netns_path, [_iptables(), "-w", *a], False)  # noqa: E731
        for builtin in ("INPUT", "OUTPUT", "FORWARD"):
            for _ in range(16):  # bounded: remove duplicate jumps too
                if ipt("-D", builtin, "-j", chain).returncode != 0:
                    break
        ipt("-F", chain)
        ipt("-X", chain)
        self._mark(node, partitioned=False)

    def _mark(self, node: str, **fields) -> None:
        self.store.update(lambda s: s.setdefault("faults", {}).setdefault(node, {}).update(fields))


def _run_in(ns_path: str, argv: list[str], check: bool) -> subprocess.CompletedProcess:
    res = subprocess.run(nsenter_argv(ns_path, argv), capture_output=True, text=True,
                         timeout=30)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(argv)} in {ns_path}: {res.stderr.strip()}")
    return res
