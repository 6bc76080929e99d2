"""harness.etcd's command lines: one member of an N-member cluster, and the
one-member etcd the single-control-plane lab runs."""
from __future__ import annotations

import pytest

from harness.etcd import etcd_argv, etcd_cluster_argv, initial_cluster

PEERS = {"cp1": "http://10.0.0.2:2380", "cp2": "http://10.0.0.3:2380", "cp3": "http://10.0.0.4:2380"}


def flags(argv: list[str]) -> dict[str, str]:
    return dict(zip(argv[1::2], argv[2::2]))


def test_a_member_of_three():
    argv = etcd_cluster_argv("cp2", "/var/lib/etcd", "http://10.0.0.3:2379", PEERS["cp2"], PEERS,
                             token="lab-x", etcd_bin="etcd")
    assert argv[0] == "etcd"
    assert flags(argv) == {
        "--name": "cp2", "--data-dir": "/var/lib/etcd",
        "--listen-client-urls": "http://10.0.0.3:2379", "--advertise-client-urls": "http://10.0.0.3:2379",
        "--listen-peer-urls": "http://10.0.0.3:2380", "--initial-advertise-peer-urls": "http://10.0.0.3:2380",
        "--initial-cluster": "cp1=http://10.0.0.2:2380,cp2=http://10.0.0.3:2380,cp3=http://10.0.0.4:2380",
        "--initial-cluster-state": "new", "--initial-cluster-token": "lab-x"}


def test_a_member_missing_from_its_cluster_is_refused():
    with pytest.raises(ValueError, match="etcd member 'cp4': its peer URL http://10.0.0.5:2380 is not in"):
        etcd_cluster_argv("cp4", "/d", "http://10.0.0.5:2379", "http://10.0.0.5:2380", PEERS)


def test_one_member_on_loopback():
    f = flags(etcd_argv("kllab", "/d", 2379, 2380, "etcd"))
    assert f["--initial-cluster"] == "kllab=http://127.0.0.1:2380"
    assert f["--listen-client-urls"] == "http://127.0.0.1:2379"
    assert initial_cluster({"a": "http://h:1"}) == "a=http://h:1"


def test_free_ports_are_below_the_ephemeral_range():
    """Outgoing connections take ports from the ephemeral range: a port from
    there can be gone by the time etcd or the apiserver binds it."""
    from harness.process import ephemeral_low, free_port
    ports = {free_port() for _ in range(50)}
    assert all(1024 <= p < ephemeral_low() for p in ports)
    assert len(ports) > 40                                   # random, not one port again and again
