"""Building a lab's network: namespaces, the bridge, veths, addresses, sysctls.

`Lab.build()` (topology.py, which describes the layout) calls `build_network`
while it holds `build_lock()`, the machine-wide lock that keeps two
concurrent builds from choosing the same free subnet. Every step uses
pyroute2 (netlink); `off_loop` runs it on a helper thread when called from
async code. Undoing a half-built network is `cleanup.lab_down`'s job: it finds
everything by the lab's name prefix.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import time

from deploy.lab import naming
from deploy.lab.naming import LabError
from deploy.lab.nsutil import create_netns, off_loop, write_sysctl


@off_loop
def build_network(topo) -> None:
    """Create the lab's namespaces, bridge, veths, addresses and sysctls (topology.py's layout)."""
    from pyroute2 import IPRoute

    lab, net = topo.name, topo.subnet
    labns = naming.lab_netns(lab)
    labns_path = create_netns(labns)
    node_paths = {n.name: create_netns(n.netns) for n in topo.nodes}
    machine_paths = {m.name: create_netns(m.netns) for m in topo.machines}
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(IPRoute())
        labipr = stack.enter_context(IPRoute(netns=labns))
        _up(labipr, "lo")
        # The lab bridge is a plain switch: its frames skip iptables.
        with contextlib.suppress(OSError):
            write_sysctl("net.bridge.bridge-nf-call-iptables", "0", labns_path)
        labipr.link("add", ifname=naming.bridge_name(lab), kind="bridge")
        br = idx(labipr, naming.bridge_name(lab))
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
        root.addr("add", index=idx(root, cp), address=topo.cp_address,
                  prefixlen=net.prefixlen)
        root.link("set", index=idx(root, cp), state="up")
        labipr.link("set", index=idx(labipr, cpb), master=br, state="up")

        for m in topo.machines:
            _plug(labipr, br, m, f"{topo.prefix}c{m.index}n", machine_paths[m.name])
        for n in topo.nodes:
            _plug(labipr, br, n, f"{topo.prefix}n{n.index}n", node_paths[n.name])
            write_sysctl("net.ipv4.ip_forward", "1", n.netns_path)
            _bridge_nf(n.netns_path)


@contextlib.contextmanager
def build_lock(timeout: float = 120.0):
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


def idx(ipr, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"link {ifname} not found")
    return found[0]


def _up(ipr, ifname: str) -> None:
    ipr.link("set", index=idx(ipr, ifname), state="up")


def _plug(labipr, br: int, place, tmp: str, ns_path: str) -> None:
    """A veth from the lab bridge (port `place.bridge_port`) into the netns of
    `place` (NodeInfo / MachineInfo), renamed `place.iface` there, addressed
    `place.ip`, up with lo."""
    from pyroute2 import IPRoute

    labipr.link("add", ifname=place.bridge_port, kind="veth", peer=tmp)
    _move(labipr, tmp, ns_path)
    with IPRoute(netns=place.netns) as ipr:
        ipr.link("set", index=idx(ipr, tmp), ifname=place.iface)
        _up(ipr, "lo")
        eth = idx(ipr, place.iface)
        ipr.addr("add", index=eth, address=place.ip, prefixlen=place.prefixlen)
        ipr.link("set", index=eth, state="up")
    labipr.link("set", index=idx(labipr, place.bridge_port), master=br, state="up")


def _move(ipr, ifname: str, ns_path: str) -> None:
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ipr.link("set", index=idx(ipr, ifname), net_ns_fd=fd)
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
