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
* Node namespaces have no default route: only S is reachable. Node agents add
  routes to other nodes' pod CIDRs (10.244.0.0/16) via node addresses. Each
  node netns has lo up, ip_forward=1 and bridge-nf-call-iptables=1.

Failure injection:

* `link_down(node)` downs the node's bridge port: the node is cut from
  everything (kill-node / NIC failure). Processes keep running.
* `partition(node)` cuts the node from the control-plane address only, with
  DROP rules in a chain ``<prefix>part`` hooked first into INPUT, OUTPUT and
  FORWARD of the node netns. Chosen over downing the link because a real
  partition from the control plane leaves node-to-node (pod) traffic working,
  which is what node-lifecycle behaviour (NotReady, pods keep serving) should
  be tested against; it also covers pods on the node (FORWARD). The chain is
  not ``KCTL-*``, so the node agent's proxy never touches it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network

from deploy.lab import naming, subnet as subnets
from deploy.lab.naming import LabError
from deploy.lab.nsutil import create_netns, list_netns, nsenter_argv, off_loop, write_sysctl
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
        with _build_lock():
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
        )

    @off_loop
    def _build_network(self) -> None:
        from pyroute2 import IPRoute

        lab, net = self.name, self._subnet()
        labns = naming.lab_netns(lab)
        labns_path = create_netns(labns)
        node_paths = {n.name: create_netns(n.netns) for n in self.nodes}
        with contextlib.ExitStack() as stack:
            root = stack.enter_context(IPRoute())
            labipr = stack.enter_context(IPRoute(netns=labns))
            _up(labipr, "lo")
            # The lab bridge is a plain switch: its frames skip iptables.
            with contextlib.suppress(OSError):
                write_sysctl("net.bridge.bridge-nf-call-iptables", "0", labns_path)
            labipr.link("add", ifname=naming.bridge_name(lab), kind="bridge")
            br = _idx(labipr, naming.bridge_name(lab))
            labipr.link("set", index=br, state="up")

            # Control-plane veth: root end keeps S.1, peer goes into the bridge.
            cp, cpb = naming.cp_link(lab), naming.cp_bridge_port(lab)
            root.link("add", ifname=cp, kind="veth", peer=cpb)
            _move(root, cpb, labns_path)
            write_sysctl(f"net.ipv6.conf.{cp}.disable_ipv6", "1")
            write_sysctl(f"net.ipv4.conf.{cp}.forwarding", "0")
            # Strict reverse-path filter: a packet from the lab whose source
            # the root netns would route elsewhere (a pod IP that a node did
            # not masquerade) is dropped on arrival, so no reply to it can
            # leave through the host's default route.
            write_sysctl(f"net.ipv4.conf.{cp}.rp_filter", "1")
            root.addr("add", index=_idx(root, cp), address=self.cp_address,
                      prefixlen=net.prefixlen)
            root.link("set", index=_idx(root, cp), state="up")
            labipr.link("set", index=_idx(labipr, cpb), master=br, state="up")

            for n in self.nodes:
                tmp = f"{self.prefix}n{n.index}n"
                labipr.link("add", ifname=n.bridge_port, kind="veth", peer=tmp)
                _move(labipr, tmp, node_paths[n.name])
                with IPRoute(netns=n.netns) as nipr:
                    nipr.link("set", index=_idx(nipr, tmp), ifname=n.iface)
                    _up(nipr, "lo")
                    idx = _idx(nipr, n.iface)
                    nipr.addr("add", index=idx, address=n.ip, prefixlen=n.prefixlen)
                    nipr.link("set", index=idx, state="up")
                labipr.link("set", index=_idx(labipr, n.bridge_port), master=br, state="up")
                write_sysctl("net.ipv4.ip_forward", "1", n.netns_path)
                _bridge_nf(n.netns_path)

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

        info = self.node(node)
        with IPRoute(netns=naming.lab_netns(self.name)) as ipr:
            ipr.link("set", index=_idx(ipr, info.bridge_port), state=state)
        self._mark(node, link=state)

    def partition(self, node: str) -> None:
        """Cut `node` (and its pods) from the control-plane address only."""
        info, chain, cp = self.node(node), naming.partition_chain(self.name), self.cp_address
        ipt = lambda *a, check=True: _run_in(info.netns_path, [_iptables(), "-w", *a], check)  # noqa: E731
        if ipt("-N", chain, check=False).returncode != 0:
            ipt("-F", chain)
        ipt("-A", chain, "-d", cp, "-j", "DROP")
        ipt("-A", chain, "-s", cp, "-j", "DROP")
        for builtin in ("INPUT", "OUTPUT", "FORWARD"):
            if ipt("-C", builtin, "-j", chain, check=False).returncode != 0:
                ipt("-I", builtin, "1", "-j", chain)
        self._mark(node, partitioned=True)

    def heal(self, node: str) -> None:
        """Undo `partition(node)` (no-op if not partitioned)."""
        info, chain = self.node(node), naming.partition_chain(self.name)
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


@contextlib.contextmanager
def _build_lock(timeout: float = 120.0):
    """Machine-wide build lock (see naming.BUILD_LOCK); bounded wait."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.bind(naming.BUILD_LOCK)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise LabError(f"cannot take the lab build lock: {exc}") from exc
                time.sleep(0.05)
        yield
    finally:
        sock.close()


def _idx(ipr, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"link {ifname} not found")
    return found[0]


def _up(ipr, ifname: str) -> None:
    ipr.link("set", index=_idx(ipr, ifname), state="up")


def _move(ipr, ifname: str, ns_path: str) -> None:
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ipr.link("set", index=_idx(ipr, ifname), net_ns_fd=fd)
    finally:
        os.close(fd)


def _bridge_nf(ns_path: str) -> None:
    """bridge-nf-call-iptables=1 in a netns (loads br_netfilter if needed)."""
    key = "net.bridge.bridge-nf-call-iptables"
    if not os.path.exists("/proc/sys/net/bridge"):
        subprocess.run(["modprobe", "br_netfilter"], check=False, capture_output=True)
    try:
        write_sysctl(key, "1", ns_path)
    except FileNotFoundError as exc:
        raise LabError("br_netfilter unavailable: cannot set " + key) from exc


def _run_in(ns_path: str, argv: list[str], check: bool) -> subprocess.CompletedProcess:
    res = subprocess.run(nsenter_argv(ns_path, argv), capture_output=True, text=True,
                         timeout=30)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(argv)} in {ns_path}: {res.stderr.strip()}")
    return res
