"""The lab's topology on real namespaces, links and processes: addresses and
sysctls, the root namespace's routes and filters, reachability between nodes,
host and control plane, and the failure injection (link down, partition,
kill node). Teardown and crash clean-up: test_lab_cleanup.py.

Traffic goes only to addresses inside namespaces these tests create. Every
wait is bounded (subprocess timeouts, socket timeouts, bounded retries);
nothing asserts on durations. The lab is torn down in a finalizer, also when
the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from deploy.lab import Lab, LabSpec, naming
from deploy.lab.nsutil import list_netns, netns_inode, read_sysctl
from deploy.lab.procs import is_alive, proc_start_time
from tests.e2e.topology_helpers import (CLIENT, PORT, eventually_ping, eventually_tcp_get, in_ns,  # noqa: F401
                                        lab, ping, root_routes, routes_before, sleeper, start_server, tcp_get)

pytestmark = [
    pytest.mark.root, pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, links)"),
]


@pytest.fixture
def node1_server(lab):
    proc = start_server(lab, "node1", "hello-from-node1")
    yield proc
    lab.stop("node1/server", timeout=2)
    proc.stdout.close()


# -- topology --------------------------------------------------------------

def test_netns_addresses_and_sysctls(lab):
    from pyroute2 import IPRoute

    assert lab.cp_address == str(lab.subnet.network_address + 1)
    assert set(list_netns(lab.prefix)) == {naming.lab_netns(lab.name)} | {
        n.netns for n in lab.nodes}
    for i, node in enumerate(lab.nodes, start=1):
        assert node.ip == str(lab.subnet.network_address + 10 + i)
        with IPRoute(netns=node.netns) as ipr:
            addrs = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(family=socket.AF_INET)}
            assert (node.ip, lab.subnet.prefixlen) in addrs
            lo = ipr.get_links(ipr.link_lookup(ifname="lo")[0])[0]
            assert lo.get("flags") & 1  # IFF_UP
            routes = [(r.get("dst"), r.get("dst_len"), r.get("gateway"))
                      for r in ipr.get_routes(family=socket.AF_INET, table=254)]
            assert routes == [(str(lab.subnet.network_address), lab.subnet.prefixlen, None)]
        assert read_sysctl("net.ipv4.ip_forward", node.netns_path) == "1"
        assert read_sysctl("net.bridge.bridge-nf-call-iptables", node.netns_path) == "1"
    st = lab.store.load()
    assert st["subnet"] == str(lab.subnet) and st["phase"] == "ready"
    assert set(st["nodes"]) == {"node1", "node2", "node3"}


def test_root_namespace_gets_only_the_connected_route(lab, routes_before):
    cp = naming.cp_link(lab.name)
    net = lab.subnet
    ours = {r for r in root_routes() if r[6] == cp
            or (r[0] == socket.AF_INET and r[5] and IPv4Address(r[5]) in net)
            or (r[0] == socket.AF_INET and r[3] and
                IPv4Network(f"{r[3]}/{r[4]}", strict=False).overlaps(net))}
    main = {r for r in ours if r[1] != 255}
    assert main == {(socket.AF_INET, 254, 1, str(net.network_address), net.prefixlen, None, cp)}
    local = ours - main  # the kernel's local/broadcast entries for .1 itself
    assert all(r[2] in (2, 3) and IPv4Address(r[3]) in net and r[4] == 32 for r in local)
    # No default route, nothing to the cluster ranges, no IPv6 (link-local) route.
    new = root_routes() - routes_before
    assert not [r for r in new if r[4] == 0]
    for cluster in ("10.244.0.0/16", "10.96.0.0/16"):
        assert not [r for r in new if r[0] == socket.AF_INET and r[3] and
                    IPv4Network(f"{r[3]}/{r[4]}", strict=False).overlaps(IPv4Network(cluster))]
    assert not [r for r in ours if r[0] == socket.AF_INET6]


def test_root_namespace_refuses_foreign_sources_from_the_lab(lab):
    """An unmasqueraded pod packet must not be answered via the default route.

    Checked with a route lookup (``ip route get ... iif``), which applies the
    reverse-path filter without sending anything.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    cp = naming.cp_link(lab.name)
    assert read_sysctl(f"net.ipv4.conf.{cp}.rp_filter") == "1"
    assert read_sysctl(f"net.ipv4.conf.{cp}.forwarding") == "0"
    assert read_sysctl(f"net.ipv6.conf.{cp}.disable_ipv6") == "1"
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=cp)[0]
        ok = ipr.route("get", dst=lab.cp_address, src=lab.node("node1").ip, iif=idx)
        assert ok[0]["type"] == 2  # RTN_LOCAL: delivered to the control plane
        for foreign in ("10.244.1.2", "10.96.0.10", "198.51.100.7"):
            with pytest.raises(NetlinkError):
                ipr.route("get", dst=lab.cp_address, src=foreign, iif=idx)


def test_nodes_ping_each_other_and_the_control_plane(lab):
    for src in lab.nodes:
        for dst in [lab.cp_address] + [n.ip for n in lab.nodes if n is not src]:
            assert eventually_ping(src, dst), f"{src.name} -> {dst}"


def test_host_reaches_nodes(lab):
    for node in lab.nodes:
        assert eventually_ping(None, node.ip), node.name


def test_tcp_from_host_to_node_server(lab, node1_server):
    assert eventually_tcp_get(lab.node("node1").ip) == "hello-from-node1"


def test_tcp_from_node_to_control_plane_server(lab):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((lab.cp_address, 0))
    srv.listen(4)
    srv.settimeout(10)
    port = srv.getsockname()[1]

    def serve_one():
        try:
            c, _ = srv.accept()
            c.sendall(b"hello-from-cp")
            c.close()
        except OSError:
            pass

    t = threading.Thread(target=serve_one)
    t.start()
    try:
        res = in_ns(lab.node("node2"), [sys.executable, "-c", CLIENT, lab.cp_address, str(port)])
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "hello-from-cp"
    finally:
        srv.close()
        t.join(timeout=15)


def test_run_in_node_enters_only_the_network_namespace(lab):
    proc = lab.run_in_node("node3", ["sh", "-c", "echo ready; exec sleep 60"],
                           name="node3/sleep", stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.stdout.close()
        me, pid = os.getpid(), proc.pid
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns_inode(lab.node("node3").netns_path)
        for ns in ("mnt", "pid", "uts", "ipc"):
            assert os.stat(f"/proc/{pid}/ns/{ns}").st_ino == os.stat(f"/proc/{me}/ns/{ns}").st_ino
        rec = lab.status()["node3/sleep"]
        assert rec["pid"] == pid and rec["node"] == "node3" and rec["alive"]
        assert rec["start_time"] == proc_start_time(pid)
    finally:
        assert lab.stop("node3/sleep", timeout=2)
    assert proc.poll() is not None
    assert "node3/sleep" not in lab.status()


# -- failure injection -----------------------------------------------------

def test_link_down_cuts_node_and_link_up_restores(lab, node1_server):
    n1, n2 = lab.node("node1"), lab.node("node2")
    assert eventually_tcp_get(n1.ip) == "hello-from-node1"
    lab.link_down("node1")
    try:
        with pytest.raises(OSError):
            tcp_get(n1.ip)
        assert not ping(n2, n1.ip)
        assert not ping(n1, lab.cp_address)
        assert node1_server.poll() is None  # the node's process keeps running
    finally:
        lab.link_up("node1")
    assert eventually_tcp_get(n1.ip) == "hello-from-node1"
    assert eventually_ping(n2, n1.ip)
    assert lab.store.load()["faults"]["node1"]["link"] == "up"


def test_partition_cuts_only_the_control_plane(lab, node1_server):
    n1, n2 = lab.node("node1"), lab.node("node2")
    assert eventually_tcp_get(n1.ip) == "hello-from-node1"
    lab.partition("node1")
    try:
        lab.partition("node1")  # idempotent: no duplicate jumps
        rules = in_ns(n1, ["iptables", "-S", "INPUT"]).stdout
        assert rules.count(naming.partition_chain(lab.name)) == 1
        with pytest.raises(OSError):
            tcp_get(n1.ip)
        assert not ping(n1, lab.cp_address)
        assert eventually_ping(n1, n2.ip)          # node-to-node still works
        res = in_ns(n2, [sys.executable, "-c", CLIENT, n1.ip, str(PORT)])
        assert res.stdout.strip() == "hello-from-node1"
        assert node1_server.poll() is None
    finally:
        lab.heal("node1")
    assert eventually_tcp_get(n1.ip) == "hello-from-node1"
    assert eventually_ping(n1, lab.cp_address)
    assert naming.partition_chain(lab.name) not in in_ns(n1, ["iptables", "-S"]).stdout


def test_kill_node_kills_recorded_netns_and_cgroup_processes(lab):
    from pyroute2 import netns as pr_netns

    node, other = lab.node("node2"), lab.node("node3")
    agent = lab.start("agent-node2", ["sleep", "300"], node="node2")
    survivor = lab.start("agent-node3", ["sleep", "300"], node="node3")
    # "conmon": in the node netns, detached, not recorded.
    conmon = sleeper(node.netns_path)
    # "container": in a pod netns named by the convention, not recorded.
    pod_ns = node.pod_netns_prefix + "pod1"
    pr_netns.create(pod_ns)
    ctr = sleeper(naming.netns_path(pod_ns))
    # "container" in the node's cgroup subtree, root netns.
    cg = subprocess.Popen(["sleep", "300"], start_new_session=True)
    cg_dir = os.path.join(naming.CGROUP_FS, "pids", node.cgroup_parent.lstrip("/"), "c1")
    try:
        os.makedirs(cg_dir)
        with open(os.path.join(cg_dir, "cgroup.procs"), "w") as f:
            f.write(str(cg.pid))
        assert os.path.exists(agent["log"])
        assert lab.kill_node("node2", timeout=2) == []
        for p in (conmon, ctr, cg):
            assert p.wait(timeout=10) == -signal.SIGKILL
        assert not is_alive(agent["pid"], agent["start_time"])
        assert "agent-node2" not in lab.status()
        assert lab.status()["agent-node3"]["alive"]
        assert is_alive(survivor["pid"], survivor["start_time"])
        assert eventually_ping(other, lab.cp_address)
    finally:
        for p in (conmon, ctr, cg):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        lab.stop("agent-node3", timeout=2)
        pr_netns.remove(pod_ns)
        for d in (cg_dir, os.path.dirname(cg_dir)):
            if os.path.isdir(d):
                os.rmdir(d)


def test_build_refuses_an_existing_lab(lab):
    with pytest.raises(naming.LabError, match="already exists"):
        Lab(LabSpec(name=lab.name, nodes=1)).build()
    assert eventually_ping(lab.node("node1"), lab.cp_address)  # untouched
