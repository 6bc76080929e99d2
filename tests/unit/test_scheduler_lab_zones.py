"""The one-machine lab labels its nodes with zones (LabSpec.zones) and
hostnames, so topology spread is visible there; the agents register them."""
from ipaddress import IPv4Network

from deploy.lab.cluster import agent_argv
from deploy.lab.topology import Lab, LabSpec


def lab(**kw):
    lab = Lab(LabSpec(name="zt", **kw))
    lab.subnet = IPv4Network("172.30.9.0/24")      # as after build(), without building
    return lab


def test_nodes_take_zones_round_robin_and_their_hostname():
    got = {n.name: dict(n.labels) for n in lab(nodes=3).nodes}
    assert got == {f"node{i}": {"topology.kubernetes.io/zone": z, "kubernetes.io/hostname": f"node{i}"}
                   for i, z in ((1, "zone-a"), (2, "zone-b"), (3, "zone-a"))}
    assert dict(lab(nodes=2, zones=()).node("node2").labels) == {"kubernetes.io/hostname": "node2"}
    assert dict(lab(nodes=3, zones=["east", "west", "north"]).node("node3").labels)[
        "topology.kubernetes.io/zone"] == "north"


def test_agent_registers_the_labels():
    argv = agent_argv("zt", lab(nodes=2), "node2", "172.30.9.1:6443", "172.30.9.1:5000")
    i = argv.index("--node-labels")
    assert argv[i + 1] == "topology.kubernetes.io/zone=zone-b,kubernetes.io/hostname=node2"
