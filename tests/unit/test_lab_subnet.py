"""Subnet selection for the lab, with fake route/address tables."""

import json
import socket
from ipaddress import IPv4Address, IPv4Network

import pytest

from deploy.lab import naming
from deploy.lab.subnet import (
    CLUSTER_RANGES,
    check_capacity,
    choose_subnet,
    cp_address,
    networks_in_use,
    node_address,
    recorded_lab_subnets,
)

# What pyroute2 reports on the build machine (all tables).
HOST_ROUTES = [
    {"dst": None, "dst_len": 0, "table": 254},                # default via 192.0.2.1
    {"dst": "192.0.2.0", "dst_len": 24, "table": 254},
    {"dst": "127.0.0.0", "dst_len": 8, "table": 255},
    {"dst": "127.0.0.1", "dst_len": 32, "table": 255},
    {"dst": "192.0.2.2", "dst_len": 32, "table": 255},
    {"dst": "192.0.2.255", "dst_len": 32, "table": 255},
]
HOST_ADDRS = [
    {"address": "127.0.0.1", "prefixlen": 8},
    {"address": "192.0.2.2", "prefixlen": 24},
]


def net(s):
    return IPv4Network(s)


def test_networks_in_use_skips_default_and_ipv6():
    routes = HOST_ROUTES + [{"family": socket.AF_INET6, "dst": "fd00::", "dst_len": 64}]
    used = networks_in_use(routes, HOST_ADDRS)
    assert net("0.0.0.0/0") not in used
    assert net("192.0.2.0/24") in used and net("127.0.0.0/8") in used
    assert all(n.version == 4 for n in used)


def test_host_networks_give_first_candidate():
    used = networks_in_use(HOST_ROUTES, HOST_ADDRS)
    assert choose_subnet(used, 3) == net("172.30.0.0/24")


def test_skips_candidates_overlapping_routes():
    routes = HOST_ROUTES + [
        {"dst": "172.30.0.0", "dst_len": 24},      # another lab / docker
        {"dst": "172.30.1.128", "dst_len": 25},    # partial overlap
        {"dst": "172.30.2.7", "dst_len": 32},      # a host route
    ]
    assert choose_subnet(networks_in_use(routes, HOST_ADDRS), 3) == net("172.30.3.0/24")


def test_skips_candidates_overlapping_addresses_without_route():
    addrs = HOST_ADDRS + [{"address": "172.30.0.9", "prefixlen": 32}]
    assert choose_subnet(networks_in_use(HOST_ROUTES, addrs), 3) == net("172.30.1.0/24")


def test_wide_route_covers_all_172_30_candidates():
    routes = HOST_ROUTES + [{"dst": "172.16.0.0", "dst_len": 12}]  # all of RFC1918 172/12
    with pytest.raises(naming.LabError, match="no free"):
        choose_subnet(networks_in_use(routes, HOST_ADDRS), 3)


def test_moves_to_172_31_when_172_30_is_taken():
    routes = HOST_ROUTES + [{"dst": "172.30.0.0", "dst_len": 16}]
    assert choose_subnet(networks_in_use(routes, HOST_ADDRS), 3) == net("172.31.0.0/24")


def test_explicit_subnet_accepted_when_free():
    used = networks_in_use(HOST_ROUTES, HOST_ADDRS)
    assert choose_subnet(used, 3, "10.123.4.0/24") == net("10.123.4.0/24")
    assert choose_subnet(used, 3, "192.168.50.0/26") == net("192.168.50.0/26")


@pytest.mark.parametrize("bad", ["192.0.2.0/24", "192.0.0.0/16", "127.1.0.0/24",
                                 "10.244.3.0/24", "10.96.0.0/24", "10.0.0.0/8"])
def test_explicit_subnet_refused_when_overlapping(bad):
    used = networks_in_use(HOST_ROUTES, HOST_ADDRS)
    with pytest.raises(naming.LabError, match="overlaps"):
        choose_subnet(used, 3, bad)


@pytest.mark.parametrize("bad", ["172.30.0.1/24", "not-a-net", "fd00::/64"])
def test_explicit_subnet_must_be_an_ipv4_network(bad):
    with pytest.raises(naming.LabError):
        choose_subnet([], 3, bad)


def test_cluster_ranges_refused_even_on_an_empty_host():
    assert net("10.244.0.0/16") in CLUSTER_RANGES and net("10.96.0.0/16") in CLUSTER_RANGES
    for inside in ("10.244.0.0/24", "10.96.128.0/24", "10.96.0.0/12"):
        with pytest.raises(naming.LabError, match="overlaps"):
            choose_subnet([], 3, inside)


def test_capacity():
    check_capacity(net("172.30.0.0/24"), 99)
    check_capacity(net("192.168.0.0/27"), 20)  # last node .30, broadcast .31
    with pytest.raises(naming.LabError, match="too small"):
        check_capacity(net("192.168.0.0/28"), 5)  # node5 would be .15 = broadcast
    with pytest.raises(naming.LabError):
        check_capacity(net("172.30.0.0/24"), 0)
    with pytest.raises(naming.LabError):
        check_capacity(net("172.30.0.0/24"), naming.MAX_NODES + 1)
    with pytest.raises(naming.LabError, match="too small"):
        choose_subnet([], 5, "192.168.0.0/28")


def test_address_plan():
    s = net("172.30.7.0/24")
    assert cp_address(s) == IPv4Address("172.30.7.1")
    assert [node_address(s, i) for i in (1, 2, 3)] == [
        IPv4Address("172.30.7.11"), IPv4Address("172.30.7.12"), IPv4Address("172.30.7.13")]


def test_recorded_lab_subnets(tmp_path):
    for name, subnet in (("a", "172.30.0.0/24"), ("b", "172.30.5.0/24")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.json").write_text(json.dumps({"subnet": subnet}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    got = recorded_lab_subnets(str(tmp_path), exclude="b")
    assert got == [net("172.30.0.0/24")]
    assert recorded_lab_subnets(str(tmp_path / "missing")) == []
    used = networks_in_use(HOST_ROUTES, HOST_ADDRS) + got
    assert choose_subnet(used, 3) == net("172.30.1.0/24")


def test_lab_names_and_interface_lengths():
    for bad in ("", "UPPER", "has-dash", "toolongname", "a b"):
        with pytest.raises(naming.LabError):
            naming.prefix(bad)
    longest = "abcdefgh"
    names = [naming.cp_link(longest), naming.cp_bridge_port(longest),
             naming.bridge_name(longest), naming.node_bridge_port(longest, naming.MAX_NODES),
             f"{naming.prefix(longest)}n{naming.MAX_NODES}n"]
    assert all(len(n) <= 15 for n in names), names
    # No lab's prefix is a prefix of another lab's.
    assert not naming.prefix("kctl2").startswith(naming.prefix("kctl"))
