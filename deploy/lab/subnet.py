"""Choosing the lab's node subnet and its address plan.

The lab's node network must not overlap any network the host already uses
(design §5): a lab address that shadows a real network would make the host
send that network's traffic into the lab, or lab traffic out of the machine.
We read every IPv4 route (all tables, except default routes, which overlap
everything by definition) and every IPv4 address of the root namespace with
pyroute2, add the cluster-internal ranges (pod CIDRs 10.244.0.0/16 and the
service CIDR 10.96.0.0/16, used inside node namespaces only) and the subnets
of other labs recorded on this machine, and take the first free candidate of
172.30.0.0/24, 172.30.1.0/24, ..., 172.31.255.0/24.

The pure part (`choose_subnet`, `networks_in_use`) takes plain data so unit
tests feed it fake route tables; `host_networks` is the only netlink call.

Address plan inside the chosen subnet (offsets from the network address):
  +1           control-plane address, on the root-namespace veth (with an HA
               control plane: the host's address, where kctl talks from)
  +2 .. +1+N   control-plane machines cp1..cpN of an HA lab, on eth0 in their netns
  +11, +12 ... node1, node2, ... (node i gets +10+i), on eth0 in the node netns
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network

from deploy.lab.naming import STATE_ROOT, LabError, check_nodes
from deploy.lab.nsutil import off_loop

CLUSTER_RANGES = (IPv4Network("10.244.0.0/16"), IPv4Network("10.96.0.0/16"))
CP_OFFSET = 1
NODE_OFFSET = 10


def candidates() -> Iterable[IPv4Network]:
    for second in (30, 31):
        for third in range(256):
            yield IPv4Network(f"172.{second}.{third}.0/24")


def networks_in_use(
    routes: Iterable[Mapping], addrs: Iterable[Mapping]
) -> list[IPv4Network]:
    """Networks covered by IPv4 routes and addresses, as netlink reports them.

    `routes` items need ``dst`` (None for default) and ``dst_len``; `addrs`
    items need ``address`` and ``prefixlen``. Default routes are skipped: they
    cover everything and say nothing about which addresses are local.
    """
    nets: list[IPv4Network] = []
    for r in routes:
        if r.get("family", socket.AF_INET) != socket.AF_INET:
            continue
        dst, plen = r.get("dst"), r.get("dst_len") or 0
        if not dst or plen == 0:
            continue
        nets.append(IPv4Network(f"{dst}/{plen}", strict=False))
    for a in addrs:
        if a.get("family", socket.AF_INET) != socket.AF_INET:
            continue
        addr = a.get("address") or a.get("local")
        if addr:
            nets.append(IPv4Network(f"{addr}/{a.get('prefixlen', 32)}", strict=False))
    return nets


@off_loop
def host_networks() -> list[IPv4Network]:
    """Every IPv4 network the root namespace routes or is addressed in."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        routes = list(ipr.get_routes(family=socket.AF_INET))
        addrs = list(ipr.get_addr(family=socket.AF_INET))
    return networks_in_use(routes, addrs)


def recorded_lab_subnets(state_root: str = STATE_ROOT, exclude: str | None = None):
    """Subnets of other labs whose state file exists (even if half torn down)."""
    nets = []
    try:
        names = os.listdir(state_root)
    except FileNotFoundError:
        return nets
    for name in names:
        if name == exclude:
            continue
        try:
            with open(os.path.join(state_root, name, "state.json")) as f:
                nets.append(IPv4Network(json.load(f)["subnet"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return nets


def check_capacity(subnet: IPv4Network, nodes: int) -> None:
    check_nodes(nodes)
    last = NODE_OFFSET + nodes  # offset of the last node address
    if last >= subnet.num_addresses - 1:
        raise LabError(f"subnet {subnet} too small for {nodes} nodes (need +{last})")


def choose_subnet(
    in_use: Iterable[IPv4Network],
    nodes: int,
    explicit: str | IPv4Network | None = None,
) -> IPv4Network:
    """The lab subnet: `explicit` if it is free, else the first free candidate.

    Raises LabError if the explicit subnet overlaps a network in use or a
    cluster range, or if no candidate is free.
    """
    used = list(in_use) + list(CLUSTER_RANGES)
    if explicit is not None:
        try:
            net = IPv4Network(explicit, strict=True)
        except ValueError as exc:
            raise LabError(f"invalid subnet {explicit!r}: {exc}") from exc
        clash = [u for u in used if net.overlaps(u)]
        if clash:
            raise LabError(f"subnet {net} overlaps {', '.join(map(str, clash))}")
        check_capacity(net, nodes)
        return net
    for net in candidates():
        if not any(net.overlaps(u) for u in used):
            check_capacity(net, nodes)
            return net
    raise LabError("no free 172.30-31.x.0/24 subnet; pass an explicit subnet")


def cp_address(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + CP_OFFSET


def machine_address(subnet: IPv4Network, index: int) -> IPv4Address:
    """Address of control-plane machine `index` (1-based) of an HA lab."""
    return subnet.network_address + CP_OFFSET + index


def node_address(subnet: IPv4Network, index: int) -> IPv4Address:
    """Address of node `index` (1-based)."""
    return subnet.network_address + NODE_OFFSET + index


def as_network(value) -> IPv4Network:
    return ipaddress.IPv4Network(value)
