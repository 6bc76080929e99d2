"""Pod network against the real kernel, inside throw-away node network namespaces."""

from __future__ import annotations

import asyncio
import ipaddress
import os

import pytest

from nodeagent.errors import IPAMExhausted, NetworkError
from nodeagent.ipam import IPAM
from nodeagent.netns import NETNS_RUN_DIR
from nodeagent.network import RTPROT_KCTL, NodeNetwork

from .conftest import needs_root, in_netns, leftovers, ping, pod_files, sh

pytestmark = [pytest.mark.root, needs_root]


def _node(ns: str) -> str:
    return f"{NETNS_RUN_DIR}/{ns}"


async def test_setup_sysctls_and_bridge_in_node_netns_only(node_netns, node_net):
    host_fwd = open("/proc/sys/net/ipv4/ip_forward").read()
    await node_net.setup()  # idempotent
    assert in_netns(_node(node_netns), "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert in_netns(_node(node_netns), "cat",
                    "/proc/sys/net/bridge/bridge-nf-call-iptables").stdout.strip() == "1"
    addr = in_netns(_node(node_netns), "ip", "-o", "-4", "addr", "show", "dev", "kctltbr0").stdout
    assert "10.250.1.1/24" in addr
    # the host's root namespace is untouched
    assert open("/proc/sys/net/ipv4/ip_forward").read() == host_fwd
    assert "kctltbr0" not in sh("ip", "-o", "link").stdout


async def test_two_sandboxes_on_one_bridge_ping_each_other(node_netns, node_net):
    a = await node_net.create_sandbox("pod-a", "a")
    b = await node_net.create_sandbox("pod-b", "b")
    assert a.ip != b.ip and a.gateway == b.gateway == "10.250.1.1"
    assert os.path.exists(a.netns_path) and a.netns_name.startswith(node_net.netns_prefix)
    inside = in_netns(a.netns_path, "ip", "-o", "-4", "addr").stdout
    assert any(ln.split()[1] == "eth0" and f"{a.ip}/24" in ln for ln in inside.splitlines())
    assert "default via 10.250.1.1 dev eth0" in in_netns(a.netns_path, "ip", "route").stdout
    assert ",UP," in in_netns(a.netns_path, "ip", "link", "show", "lo").stdout
    links = in_netns(_node(node_netns), "ip", "-d", "link", "show", a.veth_host).stdout
    assert "master kctltbr0" in links and "hairpin on" in links
    r = ping(a.netns_path, b.ip)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ping(b.netns_path, a.gateway)
    assert r.returncode == 0, r.stdout + r.stderr
    # create_sandbox is idempotent for an intact sandbox; the record survives for re-adoption
    assert await node_net.create_sandbox("pod-a", "a") == a
    assert node_net.get_sandbox("pod-a") == a
    await node_net.delete_sandbox("pod-a")
    await node_net.delete_sandbox("pod-a")  # idempotent
    await node_net.delete_sandbox("pod-b")
    assert leftovers(net=node_net, node_netns=node_netns) == []


def _links(netns: str) -> dict[str, str]:
    """{ifname: its `ip -o -d link` line} of a netns."""
    out = in_netns(netns, "ip", "-o", "-d", "link").stdout
    return {ln.split(":")[1].strip().split("@")[0]: ln for ln in out.splitlines()}


async def test_the_pods_eth0_is_ifindex_2_up_with_its_mac_address_and_route(node_netns, node_net):
    sb = await node_net.create_sandbox("pod-e", "e")
    eth0 = in_netns(sb.netns_path, "ip", "-o", "link", "show", "eth0").stdout
    assert eth0.startswith("2: eth0@") and ",UP," in eth0 and "LOWER_UP" in eth0
    assert "link/ether 0a:58:" + ":".join(f"{int(o):02x}" for o in sb.ip.split(".")) in eth0
    assert set(_links(sb.netns_path)) == {"lo", "eth0"}
    assert f"inet {sb.ip}/24" in in_netns(sb.netns_path, "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert "default via 10.250.1.1 dev eth0" in in_netns(sb.netns_path, "ip", "route").stdout
    host = _links(_node(node_netns))[sb.veth_host]
    assert "master kctltbr0" in host and ",UP," in host and "hairpin on" in host
    r = ping(sb.netns_path, sb.gateway)
    assert r.returncode == 0, r.stdout + r.stderr
    await node_net.delete_sandbox("pod-e")
    assert leftovers(net=node_net, node_netns=node_netns) == []


async def test_eth0_gets_another_ifindex_when_2_is_taken(node_netns, node_net, monkeypatch):
    """With ipip/sit loaded the kernel gives every new netns tunl0, sit0... at ifindex 2 and up:
    eth0's add then fails with EEXIST, and eth0 is made with an index the kernel picks.  (Here
    the wanted index is made lo's, 1, which is taken in every netns.)"""
    import nodeagent.network
    monkeypatch.setattr(nodeagent.network, "ETH0_IFINDEX", 1)
    sb = await node_net.create_sandbox("pod-i")
    eth0 = in_netns(sb.netns_path, "ip", "-o", "link", "show", "eth0").stdout
    assert eth0.startswith("2: eth0@") and ",UP," in eth0
    assert f"inet {sb.ip}/24" in in_netns(sb.netns_path, "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert "default via 10.250.1.1 dev eth0" in in_netns(sb.netns_path, "ip", "route").stdout
    assert "hairpin on" in _links(_node(node_netns))[sb.veth_host]
    r = ping(sb.netns_path, sb.gateway)
    assert r.returncode == 0, r.stdout + r.stderr
    await node_net.delete_sandbox("pod-i")
    assert leftovers(net=node_net, node_netns=node_netns) == []


async def test_leftovers_of_a_crashed_attempt_are_replaced(node_netns, node_net):
    """A crash can leave the pod's netns (made first) or, if its netns file was removed by
    hand, a host-end veth of the pod's name, without a sandbox record: create_sandbox still
    builds a complete sandbox, and nothing of the old parts stays."""
    netns_name, veth = node_net._names("pod-c1")
    stale = f"{NETNS_RUN_DIR}/{netns_name}"
    sh("ip", "netns", "add", netns_name)
    sh("ip", "-n", netns_name, "link", "add", "stale0", "type", "veth", "peer", "name", "stale1")
    sb = await node_net.create_sandbox("pod-c1")
    assert sb.netns_path == stale and set(_links(stale)) == {"lo", "eth0"}   # a new netns
    _, veth2 = node_net._names("pod-c2")
    in_netns(_node(node_netns), "ip", "link", "add", veth2, "type", "veth", "peer", "name", "kctlxpeer",
             check=True)
    sb2 = await node_net.create_sandbox("pod-c2")
    links = _links(_node(node_netns))
    assert "kctlxpeer" not in links and "master kctltbr0" in links[sb2.veth_host]
    r = ping(sb.netns_path, sb2.ip)
    assert r.returncode == 0, r.stdout + r.stderr
    for uid in ("pod-c1", "pod-c2"):
        await node_net.delete_sandbox(uid)
    assert leftovers(net=node_net, node_netns=node_netns) == []


async def test_a_bridge_recreated_after_setup_is_found_again(node_netns, node_net):
    """The bridge's ifindex is remembered from setup(); a bridge deleted and made again (new
    index) is looked up again, a missing one is a NetworkError that leaves nothing behind."""
    node = _node(node_netns)
    in_netns(node, "ip", "link", "del", "kctltbr0", check=True)
    in_netns(node, "ip", "link", "add", "kctltbr0", "type", "bridge", check=True)
    in_netns(node, "ip", "link", "set", "kctltbr0", "up", check=True)
    sb = await node_net.create_sandbox("pod-r")
    assert "master kctltbr0" in _links(node)[sb.veth_host]
    await node_net.delete_sandbox("pod-r")
    in_netns(node, "ip", "link", "del", "kctltbr0", check=True)
    with pytest.raises(NetworkError, match="bridge kctltbr0 missing"):
        await node_net.create_sandbox("pod-r2")
    assert leftovers(net=node_net, node_netns=node_netns) == []
    await node_net.setup()


async def test_a_burst_of_sandboxes_is_built_in_parallel_threads(node_netns, node_net):
    """Sandboxes of different pods are created concurrently (several worker threads, each with
    its own netlink handle in the node netns): every one complete, distinct IPs, all removed."""
    sbs = await asyncio.gather(*(node_net.create_sandbox(f"burst-{i}") for i in range(8)))
    assert len({s.ip for s in sbs}) == 8
    assert len(node_net._handles) > 2          # the node thread plus more than one sandbox thread
    for sb in sbs:
        inside = in_netns(sb.netns_path, "ip", "-o", "-4", "addr").stdout
        assert f"{sb.ip}/24" in inside
        assert "master kctltbr0" in in_netns(_node(node_netns), "ip", "link", "show", sb.veth_host).stdout
    r = ping(sbs[0].netns_path, sbs[-1].ip)
    assert r.returncode == 0, r.stdout + r.stderr
    await asyncio.gather(*(node_net.delete_sandbox(s.pod_uid) for s in sbs))
    assert leftovers(net=node_net, node_netns=node_netns) == []


async def test_ipam_unique_persistent_and_released(node_netns, make_node_net):
    net = await make_node_net(node_netns, "10.250.2.0/29", bridge="kctltbr1", tag="i")
    hosts = {str(h) for h in ipaddress.ip_network("10.250.2.0/29").hosts()} - {"10.250.2.1"}
    sbs = [await net.create_sandbox(f"p{i}") for i in range(3)]
    ips = [s.ip for s in sbs]
    assert len(set(ips)) == 3 and set(ips) <= hosts
    assert net.list_allocations() == {s.ip: s.pod_uid for s in sbs}
    # "restart": a new NodeNetwork on the same state dir sees the same allocations
    state_dir = net.state_dir
    net.close()
    net2 = NodeNetwork("kctltbr1", "10.250.2.0/29", state_dir, net.netns_prefix,
                       node_netns=node_netns)
    try:
        assert net2.list_allocations() == {s.ip: s.pod_uid for s in sbs}
        more = [await net2.create_sandbox(f"q{i}") for i in range(2)]
        assert {m.ip for m in more}.isdisjoint(ips) and len({m.ip for m in more}) == 2
        with pytest.raises(IPAMExhausted):
            await net2.create_sandbox("one-too-many")
        assert "one-too-many" not in net2.list_allocations().values()
        await net2.delete_sandbox("p1")
        again = await net2.create_sandbox("r0")
        assert again.ip == sbs[1].ip  # released address is reusable
    finally:
        await net2.teardown()
    assert leftovers(net=net2, node_netns=node_netns) == []


async def test_failed_sandbox_leaves_nothing(node_netns, tmp_path):
    net = NodeNetwork("kctltnobr", "10.250.5.0/24", tmp_path / "n", f"kctltest-fail{os.getpid()}-",
                      node_netns=node_netns)  # setup() not run: no bridge
    try:
        with pytest.raises(NetworkError, match="bridge"):
            await net.create_sandbox("pod-f")
        assert leftovers(net=net, node_netns=node_netns) == []
        assert net.get_sandbox("pod-f") is None
    finally:
        net.close()


def test_ipam_file_per_ip(tmp_path):
    ipam = IPAM("10.250.3.0/30", tmp_path)  # only .2 is allocatable (.1 is the gateway)
    assert ipam.allocate("x") == "10.250.3.2"
    assert ipam.allocate("x") == "10.250.3.2"  # same owner gets its IP back
    assert (tmp_path / "ipam" / "10.250.3.2").read_text().strip() == "x"
    with pytest.raises(IPAMExhausted):
        IPAM("10.250.3.0/30", tmp_path).allocate("y")
    assert ipam.release("x") == ["10.250.3.2"]
    assert ipam.list_allocations() == {}


def test_ipam_finds_an_owners_ip_after_a_crash_and_in_an_older_state_dir(tmp_path):
    """The owner's claim file links its IP files; a state dir written before those existed
    (IP files only) gets them at start, and a claim left by a crash holds no IP."""
    old = tmp_path / "ipam"
    old.mkdir()
    (old / "10.250.6.3").write_text("old-pod\n")       # an older agent's allocation
    ipam = IPAM("10.250.6.0/29", tmp_path)
    assert ipam.owned_by("old-pod") == ["10.250.6.3"]
    assert ipam.allocate("old-pod") == "10.250.6.3"
    assert ipam.allocate("new-pod") == "10.250.6.2"      # the lowest free address
    # a crash after the claim file was written, before the link: no IP, and allocate goes on
    ipam.owners.joinpath(ipam._key("crashed")).write_text("crashed\n")
    assert ipam.owned_by("crashed") == []
    assert ipam.allocate("crashed") == "10.250.6.4"
    assert IPAM("10.250.6.0/29", tmp_path).list_allocations() == \
        {"10.250.6.2": "new-pod", "10.250.6.3": "old-pod", "10.250.6.4": "crashed"}
    for owner in ("old-pod", "new-pod", "crashed"):
        ipam.release(owner)
    assert ipam.list_allocations() == {} and list(ipam.owners.iterdir()) == []


def test_ipam_concurrent_allocators_never_share_an_ip(tmp_path):
    """Four allocators (as if four agent processes) race on one state dir."""
    from concurrent.futures import ThreadPoolExecutor
    ipams = [IPAM("10.250.4.0/26", tmp_path) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        ips = list(pool.map(lambda i: ipams[i % 4].allocate(f"owner-{i}"), range(60)))
    assert len(set(ips)) == 60
    assert ipams[0].list_allocations() == {ip: f"owner-{i}" for i, ip in enumerate(ips)}
    assert ipams[1].allocate("late") not in ips  # 62 hosts - gateway = 61: one was left
    with pytest.raises(IPAMExhausted):
        ipams[2].allocate("later")


async def test_sync_routes_only_touches_ours(node_netns, node_net):
    node = _node(node_netns)
    in_netns(node, "ip", "link", "add", "kctltdum", "type", "bridge", check=True)
    try:
        in_netns(node, "ip", "addr", "add", "10.250.9.1/24", "dev", "kctltdum", check=True)
        in_netns(node, "ip", "link", "set", "kctltdum", "up", check=True)
        in_netns(node, "ip", "route", "add", "10.250.99.0/24", "via", "10.250.9.99", check=True)
        res = await node_net.sync_routes({"10.250.9.2": "10.250.20.0/24",
                                          "10.250.9.3": "10.250.30.0/24",
                                          "10.250.9.4": "10.250.1.0/24"})  # own CIDR: skipped
        assert len(res["added"]) == 2
        routes = in_netns(node, "ip", "route", "show", "proto", str(RTPROT_KCTL)).stdout
        assert "10.250.20.0/24 via 10.250.9.2" in routes and "10.250.30.0/24 via 10.250.9.3" in routes
        assert (await node_net.sync_routes({"10.250.9.2": "10.250.20.0/24",
                                            "10.250.9.3": "10.250.30.0/24"})) == \
            {"added": [], "removed": []}
        res = await node_net.sync_routes({"10.250.9.5": "10.250.20.0/24"})  # moved + one gone
        routes = in_netns(node, "ip", "route", "show", "proto", str(RTPROT_KCTL)).stdout
        assert "10.250.20.0/24 via 10.250.9.5" in routes and "10.250.30.0/24" not in routes
        all_routes = in_netns(node, "ip", "route").stdout
        assert "10.250.99.0/24 via 10.250.9.99" in all_routes  # not ours: untouched
        await node_net.sync_routes({})
        assert in_netns(node, "ip", "route", "show", "proto", str(RTPROT_KCTL)).stdout == ""
    finally:
        in_netns(node, "ip", "link", "del", "kctltdum")


async def test_two_nodes_pod_to_pod_via_host_gw_routes(make_netns, make_node_net):
    na, nb = make_netns("na"), make_netns("nb")
    sh("ip", "-n", na, "link", "add", "ktlinka", "type", "veth", "peer", "name", "ktlinkb",
       "netns", nb)
    sh("ip", "-n", na, "addr", "add", "10.250.100.1/24", "dev", "ktlinka")
    sh("ip", "-n", nb, "addr", "add", "10.250.100.2/24", "dev", "ktlinkb")
    sh("ip", "-n", na, "link", "set", "ktlinka", "up")
    sh("ip", "-n", nb, "link", "set", "ktlinkb", "up")
    neta = await make_node_net(na, "10.250.11.0/24", bridge="kctltbr0", tag="a")
    netb = await make_node_net(nb, "10.250.12.0/24", bridge="kctltbr0", tag="b")
    routes = {"10.250.100.1": "10.250.11.0/24", "10.250.100.2": "10.250.12.0/24"}
    await neta.sync_routes(routes)
    await netb.sync_routes(routes)
    pa = await neta.create_sandbox("pod-on-a")
    pb = await netb.create_sandbox("pod-on-b")
    r = ping(pa.netns_path, pb.ip)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ping(pb.netns_path, pa.ip)
    assert r.returncode == 0, r.stdout + r.stderr
    await neta.teardown()
    await netb.teardown()
    assert leftovers(net=neta, node_netns=na) == [] and leftovers(net=netb, node_netns=nb) == []
    assert "10.250.12.0/24" not in in_netns(_node(na), "ip", "route").stdout


def test_pod_files(tmp_path):
    files = pod_files(tmp_path / "pod", "web-0", "10.250.1.7")
    assert set(files) == {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
    hosts = open(files["/etc/hosts"]).read()
    assert "127.0.0.1\tlocalhost" in hosts and "10.250.1.7\tweb-0" in hosts
    assert open(files["/etc/hostname"]).read() == "web-0\n"
    resolv = open(files["/etc/resolv.conf"]).read()
    assert "nameserver 10.96.0.10" in resolv and "search default.svc.cluster.local" in resolv
