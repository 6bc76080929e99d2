"""The service proxy against real iptables (default backend) in a mini node built of namespaces.

See conftest.py for the topology.  Every test declares the whole desired state
with ``Proxier.sync`` (a fresh Proxier each time, as after an agent restart),
so the tests do not depend on each other's order; leftovers of a previous test
are exactly the "stale chains" the sync must delete.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from machinery.pb import core_pb2
from nodeagent.iptables import IptablesRunner
from nodeagent.proxy import Proxier
from nodeagent.proxyrules import HOOKS, ServicePortInfo

from .conftest import GATEWAY, NODE_IP, NODE_SUBNET, OUT_IP, POD_IPS, POD_NET, in_ns, needs_root, ns_path

pytestmark = [pytest.mark.root, needs_root]

NAMES = {"pod0", "pod1", "pod2"}
WEB_VIP, UDP_VIP, EMPTY_VIP, OTHER_VIP = "10.97.0.10", "10.97.0.53", "10.97.0.11", "10.97.0.12"


def svc(name, vip, *ports):
    """ports: (port name, port, protocol, nodePort)."""
    s = core_pb2.Service()
    s.metadata.namespace, s.metadata.name = "default", name
    s.spec.cluster_ip = vip
    s.spec.type = "NodePort" if any(p[3] for p in ports) else "ClusterIP"
    for pname, port, proto, node_port in ports:
        s.spec.ports.add(name=pname, port=port, protocol=proto, node_port=node_port)
    return s


def eps(name, ips, *ports):
    e = core_pb2.Endpoints()
    e.metadata.namespace, e.metadata.name = "default", name
    sub = e.subsets.add()
    for ip in ips:
        sub.addresses.add(ip=ip)
    for pname, port, proto in ports:
        sub.ports.add(name=pname, port=port, protocol=proto)
    return e


def web(ips=POD_IPS, node_port=30080):
    return svc("web", WEB_VIP, ("http", 80, "TCP", node_port)), eps("web", ips, ("http", 8080, "TCP"))


@pytest.fixture
def proxier(mini_node):
    return Proxier(IptablesRunner(netns=mini_node.node), node_ip=NODE_IP, pod_cidr=POD_NET,
                   masquerade_cidr=NODE_SUBNET, node_name="itest")


def names(replies):
    assert all(not r.startswith("ERR") for r in replies), replies
    return {r.split()[0] for r in replies}


async def test_clusterip_load_balances_across_all_three_pods(mini_node, proxier):
    s, e = web()
    await proxier.sync([s], [e])
    replies = mini_node.connect(mini_node.pods[1], WEB_VIP, 80, count=60)
    assert names(replies) == NAMES
    # pod1 -> VIP -> another pod keeps pod1's source; pod1 -> VIP -> pod1 (hairpin) is masqueraded
    for r in replies:
        name, peer = r.split()
        assert peer == (GATEWAY if name == "pod1" else POD_IPS[1]), r


async def test_hairpin_pod_reaches_itself_through_the_vip(mini_node, proxier):
    s, e = web(ips=[POD_IPS[0]])
    await proxier.sync([s], [e])
    # without hairpin mode + the masquerade mark the reply would go pod0 -> pod0 directly and be dropped
    assert mini_node.connect(mini_node.pods[0], WEB_VIP, 80, count=5) == [f"pod0 {GATEWAY}"] * 5


async def test_nodeport_on_the_node_ip_from_outside(mini_node, proxier):
    s, e = web()
    await proxier.sync([s], [e])
    replies = mini_node.connect(mini_node.out, NODE_IP, 30080, count=60)
    assert names(replies) == NAMES
    # OUT has no route to the pods: the replies come back only because the request was masqueraded
    assert {r.split()[1] for r in replies} == {GATEWAY}


async def test_client_ip_session_affinity_sticks_to_one_pod(mini_node, proxier):
    s, e = web()
    s.spec.session_affinity = "ClientIP"
    await proxier.sync([s], [e])
    for pod in mini_node.pods:
        assert len(names(mini_node.connect(pod, WEB_VIP, 80, count=20))) == 1   # random would spread 20
    s.spec.session_affinity = "None"
    await proxier.sync([s], [e])
    assert names(mini_node.connect(mini_node.pods[0], WEB_VIP, 80, count=60)) == NAMES


async def test_node_itself_and_pods_reach_clusterip_and_nodeport(mini_node, proxier):
    s, e = web()
    await proxier.sync([s], [e])
    # the node's own connections (nat OUTPUT) come from outside the pod CIDR: masqueraded
    from_node = mini_node.connect(mini_node.node, WEB_VIP, 80, count=30)
    assert names(from_node) <= NAMES and {r.split()[1] for r in from_node} == {GATEWAY}
    from_node = mini_node.connect(mini_node.node, NODE_IP, 30080, count=30)
    assert names(from_node) <= NAMES and {r.split()[1] for r in from_node} == {GATEWAY}
    # a pod using the NodePort of its own node keeps its source unless it lands on itself
    for r in mini_node.connect(mini_node.pods[2], NODE_IP, 30080, count=30):
        name, peer = r.split()
        assert peer == (GATEWAY if name == "pod2" else POD_IPS[2]), r


async def test_udp_clusterip(mini_node, proxier):
    s = svc("dns", UDP_VIP, ("dns", 53, "UDP", 0))
    e = eps("dns", POD_IPS, ("dns", 8053, "UDP"))
    await proxier.sync([s], [e])
    replies = mini_node.connect(mini_node.pods[2], UDP_VIP, 53, count=60, proto="udp")
    assert names(replies) == NAMES


async def test_udp_flow_leaves_a_removed_endpoint(mini_node, proxier):
    s = svc("dns", UDP_VIP, ("dns", 53, "UDP", 0))
    await proxier.sync([s], [eps("dns", POD_IPS, ("dns", 8053, "UDP"))])
    first = mini_node.connect(mini_node.pods[0], UDP_VIP, 53, count=3, proto="udp", sport=40053)
    assert len(names(first)) == 1                         # one flow, one endpoint (conntrack)
    [stuck] = names(first)
    keep = [ip for i, ip in enumerate(POD_IPS) if f"pod{i}" != stuck]
    await proxier.sync([s], [eps("dns", keep, ("dns", 8053, "UDP"))])
    # the removed pod's server still runs: without the conntrack -D the same flow would still reach it
    after = mini_node.connect(mini_node.pods[0], UDP_VIP, 53, count=3, proto="udp", sport=40053)
    assert len(names(after)) == 1 and stuck not in names(after)


async def test_service_without_endpoints_is_refused(mini_node, proxier):
    s, e = web()
    empty = svc("empty", EMPTY_VIP, ("http", 80, "TCP", 30081))
    await proxier.sync([s, empty], [e])
    # the VIP is routed towards OUT, which would silently drop it: only the REJECT rule can refuse it
    assert mini_node.connect(mini_node.pods[0], EMPTY_VIP, 80, count=3) == ["ERR:ECONNREFUSED"] * 3
    assert mini_node.connect(mini_node.out, NODE_IP, 30081) == ["ERR:ECONNREFUSED"]
    counters = mini_node.save("filter", counters=True)
    hits = {line.split()[2]: int(line[1:].split(":")[0]) for line in counters.splitlines()
            if "default/empty:http has no endpoints" in line}
    assert hits["KCTL-SERVICES"] >= 3 and hits["KCTL-EXTERNAL-SERVICES"] >= 1


async def test_removing_an_endpoint_takes_it_out(mini_node, proxier):
    s, e = web()
    await proxier.sync([s], [e])
    assert names(mini_node.connect(mini_node.pods[2], WEB_VIP, 80, count=60)) == NAMES
    s, e = web(ips=POD_IPS[:2])
    assert await proxier.sync([s], [e]) is True
    assert names(mini_node.connect(mini_node.pods[2], WEB_VIP, 80, count=60)) == {"pod0", "pod1"}
    assert names(mini_node.connect(mini_node.out, NODE_IP, 30080, count=30)) <= {"pod0", "pod1"}
    gone = ServicePortInfo("default", "web", "http", "tcp", WEB_VIP, 80, 30080, ()).sep_chain(POD_IPS[2], 8080)
    assert gone not in mini_node.save("nat")


async def test_deleting_a_service_removes_its_chains(mini_node, proxier):
    s, e = web()
    other = svc("other", OTHER_VIP, ("http", 80, "TCP", 0))
    other_eps = eps("other", POD_IPS[:1], ("http", 8080, "TCP"))
    await proxier.sync([s, other], [e, other_eps])
    info = ServicePortInfo("default", "web", "http", "tcp", WEB_VIP, 80, 30080, ())
    web_chains = [info.svc_chain, info.ext_chain, *(info.sep_chain(ip, 8080) for ip in POD_IPS)]
    nat = mini_node.save("nat")
    assert all(f":{c} " in nat for c in web_chains)
    await proxier.sync([other], [other_eps])
    nat = mini_node.save("nat")
    assert [c for c in web_chains if c in nat] == []
    assert WEB_VIP not in nat and "30080" not in nat
    assert mini_node.connect(mini_node.pods[1], OTHER_VIP, 80) == [f"pod0 {POD_IPS[1]}"]
    assert mini_node.connect(mini_node.pods[1], WEB_VIP, 80, timeout=1.0) == ["ERR:timeout"]


async def test_pod_egress_to_the_masquerade_cidr_leaves_with_the_node_ip(mini_node, proxier):
    await proxier.sync([], [])
    assert mini_node.connect(mini_node.pods[0], OUT_IP, 9000) == [f"out {NODE_IP}"]


async def test_hooks_are_added_once_across_restarts_and_unchanged_state_is_skipped(mini_node, proxier):
    s, e = web()
    assert await proxier.sync([s], [e]) is True
    assert await proxier.sync([s], [e]) is False
    restarted = Proxier(IptablesRunner(netns=mini_node.node), node_ip=NODE_IP, pod_cidr=POD_NET,
                        masquerade_cidr=NODE_SUBNET)
    assert await restarted.sync([s], [e]) is True
    text = mini_node.save("nat") + mini_node.save("filter")
    hooks = [line for line in text.splitlines()
             if line.split()[:1] == ["-A"] and line.split()[1] in ("PREROUTING", "OUTPUT", "POSTROUTING",
                                                                   "INPUT", "FORWARD")]
    assert len(hooks) == len(HOOKS), hooks
    assert names(mini_node.connect(mini_node.pods[0], WEB_VIP, 80, count=30)) <= NAMES


async def test_cleanup_leaves_no_kctl_chain_or_hook(mini_node, proxier):
    s, e = web()
    await proxier.sync([s], [e])
    removed = await proxier.cleanup()
    assert "nat/PREROUTING -> KCTL-SERVICES" in removed
    assert "KCTL" not in mini_node.save("nat") + mini_node.save("filter")
    assert mini_node.connect(mini_node.pods[1], WEB_VIP, 80, timeout=1.0) == ["ERR:timeout"]
    assert await proxier.cleanup() == []
    # and the host's own tables were never touched
    root = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "KCTL" not in root


async def test_a_retransmitted_syn_follows_the_rules_not_a_removed_endpoint(mini_node, proxier):
    """The rollout e2e's lost request: a SYN the endpoint dropped (a full listen queue)
    is sent again a second later along its conntrack entry. Once the endpoint left the
    rules, the proxy deletes that unanswered entry, so the retransmission reaches a
    current endpoint instead of a pod that may have stopped by then."""
    s, e = web(ips=[POD_IPS[2]])
    await proxier.sync([s], [e])
    drop = ("INPUT", "-p", "tcp", "--dport", "8080", "--syn", "-j", "DROP")
    in_ns(mini_node.pods[2], "iptables", "-I", *drop)   # pod2 drops SYNs, as a full accept queue does
    try:
        client = subprocess.Popen(["nsenter", f"--net={ns_path(mini_node.out)}", sys.executable,
                                   str(mini_node.tmp / "client.py"), "tcp", NODE_IP, "30080", "1", "8", "0"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            while "SYN_SENT" not in in_ns(mini_node.node, "conntrack", "-L", "-p", "tcp", "--dst-nat",
                                          POD_IPS[2], check=False).stdout:
                if client.poll() is not None:
                    break
            s, e = web(ips=[POD_IPS[0]])
            await proxier.sync([s], [e])                  # pod2 leaves the rules (its pod is being deleted)
            out, _ = client.communicate(timeout=20)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        [reply] = json.loads(out)
        assert reply.split()[0] == "pod0", reply          # without the conntrack -D: ERR:timeout (pod2 again)
    finally:
        in_ns(mini_node.pods[2], "iptables", "-D", *drop, check=False)
