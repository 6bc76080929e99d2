"""The lab's topology and cleanup, on real namespaces, links and processes.

Traffic goes only to addresses inside namespaces these tests create. Every
wait is bounded (subprocess timeouts, socket timeouts, bounded retries);
nothing asserts on durations. Each lab is torn down in a finalizer, also when
the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from deploy.lab import Lab, LabSpec, lab_down, naming
from deploy.lab.nsutil import (
    list_netns, mounts_under, netns_inode, nsenter_argv, read_mountinfo, read_sysctl)
from deploy.lab.procs import is_alive, proc_start_time

pytestmark = [
    pytest.mark.root, pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, links)"),
]

PORT = 18080
SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(sys.argv[2].encode())
        c.close()
""")
CLIENT = textwrap.dedent("""
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
        c.settimeout(2)
        print(c.recv(100).decode())
""")


# -- helpers ---------------------------------------------------------------

def in_ns(node, argv, timeout=10):
    return subprocess.run(nsenter_argv(node.netns_path, argv), capture_output=True,
                          text=True, timeout=timeout)


def ping(node, addr) -> bool:
    """One echo, 1 s wait; node=None pings from the root namespace."""
    argv = ["busybox", "ping", "-c", "1", "-W", "1", str(addr)]
    res = subprocess.run(argv if node is None else nsenter_argv(node.netns_path, argv),
                         capture_output=True, timeout=10)
    return res.returncode == 0


def eventually_ping(node, addr, tries=5) -> bool:
    return any(ping(node, addr) for _ in range(tries))


def tcp_get(addr, port=PORT) -> str:
    with socket.create_connection((str(addr), port), timeout=2) as c:
        c.settimeout(2)
        return c.recv(100).decode()


def eventually_tcp_get(addr, port=PORT, tries=10) -> str:
    last = None
    for _ in range(tries):
        try:
            return tcp_get(addr, port)
        except OSError as exc:
            last = exc
    raise AssertionError(f"{addr}:{port} unreachable after {tries} tries: {last}")


def start_server(lab, node, text):
    proc = lab.run_in_node(node, [sys.executable, "-c", SERVER, str(PORT), text],
                           name=f"{node}/server", stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"  # EOF ("") if it died
    return proc


def sleeper(ns_path=None):
    """A detached `sleep 300`, returned once it runs (inside `ns_path`, if given).

    Waits for its "ready" line: right after Popen, nsenter may not have
    joined the namespace yet.
    """
    argv = ["sh", "-c", "echo ready; exec sleep 300"]
    p = subprocess.Popen(nsenter_argv(ns_path, argv) if ns_path else argv,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout.readline().strip() == "ready"
    p.stdout.close()
    return p


def root_routes():
    """(family, table, type, dst, dst_len, gateway, oif name) of every route."""
    from pyroute2 import IPRoute

    out = set()
    with IPRoute() as ipr:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=fam):
                out.add((fam, r.get("table"), r["type"], r.get("dst"), r.get("dst_len"),
                         r.get("gateway"), names.get(r.get("oif"))))
    return out


def root_links(prefix):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [link.get("ifname") for link in ipr.get_links()
                if (link.get("ifname") or "").startswith(prefix)]


def assert_no_trace(name, subnet, pids):
    pfx = naming.prefix(name)
    assert list_netns(pfx) == []
    assert root_links(pfx) == []
    dirs = [naming.state_dir(name), naming.data_dir(name)]
    assert mounts_under(dirs) == []
    assert [m for m in read_mountinfo() if os.path.basename(m["mountpoint"]).startswith(pfx)] == []
    assert not any(os.path.exists(d) for d in dirs)
    assert [p for p, st in pids if is_alive(p, st)] == []
    cg = naming.cgroup_parent(name).lstrip("/")
    assert [h for h in os.listdir(naming.CGROUP_FS)
            if os.path.exists(os.path.join(naming.CGROUP_FS, h, cg))] == []
    net = IPv4Network(subnet)
    assert [r for r in root_routes() if r[0] == socket.AF_INET and r[3]
            and IPv4Network(f"{r[3]}/{r[4]}", strict=False).overlaps(net)] == []


@pytest.fixture(scope="module")
def routes_before():
    return root_routes()


@pytest.fixture(scope="module")
def lab(routes_before):
    lab_down("e2etopo")  # leftovers of an earlier, killed run
    lab = Lab(LabSpec(name="e2etopo", nodes=3))
    try:
        lab.build()
        yield lab
    finally:
        lab_down("e2etopo")


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
    assert set(list_netns(lab.prefix)) == {naming.lab_netns("e2etopo")} | {
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
    cp = naming.cp_link("e2etopo")
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

    cp = naming.cp_link("e2etopo")
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
        assert rules.count(naming.partition_chain("e2etopo")) == 1
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
    assert naming.partition_chain("e2etopo") not in in_ns(n1, ["iptables", "-S"]).stdout


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
        Lab(LabSpec(name="e2etopo", nodes=1)).build()
    assert eventually_ping(lab.node("node1"), lab.cp_address)  # untouched


# -- teardown --------------------------------------------------------------

def _populate(lab, name):
    """Things a running lab has: components, conmon, containers, mounts, cgroups."""
    from pyroute2 import netns as pr_netns

    n1 = lab.node("node1")
    recs = [lab.start("apiserver", ["sleep", "300"]),
            lab.start("agent-node1", ["sleep", "300"], node="node1")]
    stray = [sleeper(n1.netns_path)]
    pod_ns = n1.pod_netns_prefix + "pod1"
    pr_netns.create(pod_ns)
    stray.append(sleeper(naming.netns_path(pod_ns)))
    # A pod netns bind-mounted under the node's run dir (the other convention).
    nsdir = os.path.join(n1.run_dir, "netns")
    os.makedirs(nsdir)
    open(os.path.join(nsdir, "pod2"), "w").close()
    subprocess.run(["mount", "--bind", f"/proc/{stray[1].pid}/ns/net",
                    os.path.join(nsdir, "pod2")], check=True, timeout=10)
    # Overlay-like mounts, nested, under the node's data dir.
    ovl = os.path.join(n1.data_dir, "containers", "c1", "rootfs")
    os.makedirs(ovl)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", ovl], check=True, timeout=10)
    os.makedirs(os.path.join(ovl, "proc"))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(ovl, "proc")],
                   check=True, timeout=10)
    # A container in the node's cgroup subtree, in two hierarchies.
    ctr = subprocess.Popen(["sleep", "300"], start_new_session=True)
    for h in ("pids", "unified"):
        d = os.path.join(naming.CGROUP_FS, h, n1.cgroup_parent.lstrip("/"), "pod1", "c1")
        os.makedirs(d)
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(ctr.pid))
    stray.append(ctr)
    idents = [(r["pid"], r["start_time"]) for r in recs]
    idents += [(p.pid, proc_start_time(p.pid)) for p in stray]
    return idents, stray


def test_lab_down_leaves_no_trace_and_runs_twice(lab):
    name = "e2edown"
    lab_down(name)
    other = Lab(LabSpec(name=name, nodes=2))
    stray = []
    try:
        other.build()
        assert other.subnet != lab.subnet  # picked a free subnet next to e2etopo
        subnet = str(other.subnet)
        idents, stray = _populate(other, name)
        report = lab_down(name)
        assert {p for p, _ in idents} <= set(report["killed"])
        for p in stray:
            assert p.wait(timeout=10) == -signal.SIGKILL
        assert_no_trace(name, subnet, idents)
        again = lab_down(name)
        assert not any(again[k] for k in ("killed", "unmounted", "netns", "links", "dirs"))
        assert_no_trace(name, subnet, idents)
        # The other lab is untouched.
        assert eventually_ping(lab.node("node1"), lab.cp_address)
    finally:
        for p in stray:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        lab_down(name)


CRASHER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from deploy.lab import Lab, LabSpec
    from pyroute2 import netns
    lab = Lab(LabSpec(name=sys.argv[1], nodes=2)).build()
    lab.start("apiserver", ["sleep", "300"])
    lab.start("agent-node1", ["sleep", "300"], node="node1")
    lab.start("agent-node2", ["sleep", "300"], node="node2")
    n2 = lab.node("node2")
    netns.create(n2.pod_netns_prefix + "pod9")
    lab.partition("node1")
    print(lab.subnet, flush=True)
    sys.stdin.read()  # wait to be SIGKILLed
""")


def test_crash_is_fully_cleaned_by_name(lab):
    name = "e2ecrash"
    lab_down(name)
    builder = subprocess.Popen(
        [sys.executable, "-c", CRASHER, name, os.getcwd()], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        subnet = builder.stdout.readline().strip()
        assert subnet, "builder failed"
        recs = Lab.load(name).status()
        assert {"apiserver", "agent-node1", "agent-node2"} <= set(recs)
        idents = [(r["pid"], r["start_time"]) for r in recs.values()]
        # The crash: the builder dies without cleanup, a component is SIGKILLed,
        # and one namespace is already gone.
        builder.kill()
        builder.wait(timeout=10)
        os.kill(recs["agent-node2"]["pid"], signal.SIGKILL)
        from pyroute2 import netns as pr_netns

        pr_netns.remove(naming.node_netns(name, "node2"))
        lab_down(name)
        assert_no_trace(name, subnet, idents)
        lab_down(name)
        assert_no_trace(name, subnet, idents)
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait(timeout=10)
        builder.stdin.close()
        builder.stdout.close()
        lab_down(name)


def test_failed_build_leaves_no_trace(monkeypatch):
    from deploy.lab import topology

    name = "e2efail"
    lab_down(name)

    def broken(ns_path):
        raise naming.LabError("injected failure after the links exist")

    monkeypatch.setattr(topology, "_bridge_nf", broken)
    half = Lab(LabSpec(name=name, nodes=2, subnet="172.31.250.0/24"))
    try:
        with pytest.raises(naming.LabError, match="injected"):
            half.build()
        assert_no_trace(name, "172.31.250.0/24", [])
    finally:
        lab_down(name)


async def test_usable_from_async_code():
    """pyroute2's sync API fails on a thread running an event loop; the lab
    moves those calls to a helper thread (blocking, like every Lab call)."""
    name = "e2easync"
    lab_down(name)
    try:
        small = Lab(LabSpec(name=name, nodes=1)).build()
        small.link_down("node1")
        small.link_up("node1")
        assert eventually_ping(small.node("node1"), small.cp_address)
    finally:
        lab_down(name)
    assert list_netns(naming.prefix(name)) == []


def test_concurrent_builds_pick_distinct_subnets():
    names = ["e2econa", "e2econb"]
    labs = [Lab(LabSpec(name=n, nodes=1)) for n in names]
    errors = []

    def build(lab):
        try:
            lab.build()
        except Exception as exc:  # reported below
            errors.append(exc)

    for n in names:
        lab_down(n)
    threads = [threading.Thread(target=build, args=(lab,)) for lab in labs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert labs[0].subnet != labs[1].subnet
        assert not labs[0].subnet.overlaps(labs[1].subnet)
        for lab in labs:
            assert eventually_ping(lab.node("node1"), lab.cp_address)
    finally:
        for n in names:
            lab_down(n)
