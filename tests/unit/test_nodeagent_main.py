"""kctl-nodeagent's command line: required flags, proxy defaults, --masquerade-cidr, --cleanup-iptables."""
from __future__ import annotations

import pytest

from nodeagent.errors import AgentConfigError, NetworkError
from nodeagent.main import build_agent, enter_netns, parse_args

BASE = ["--kubeconfig", "/etc/kctl/node.conf", "--node-name", "n1", "--node-ip", "10.0.0.11", "--root-dir", "/tmp/x"]


def test_proxy_defaults_by_runtime():
    assert parse_args(BASE).proxy == "iptables"
    assert parse_args([*BASE, "--runtime", "fake"]).proxy == "none"
    assert parse_args([*BASE, "--proxy", "none"]).proxy == "none"
    assert parse_args([*BASE, "--runtime", "fake", "--proxy", "iptables"]).proxy == "iptables"


def test_masquerade_cidr():
    assert parse_args(BASE).masquerade_cidr == ""
    assert parse_args([*BASE, "--masquerade-cidr", "10.0.0.7/24"]).masquerade_cidr == "10.0.0.0/24"
    with pytest.raises(SystemExit):
        parse_args([*BASE, "--masquerade-cidr", "not-a-cidr"])


def test_required_flags_except_for_cleanup(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--node-name", "n1"])
    assert "--kubeconfig, --node-ip, --root-dir" in capsys.readouterr().err
    args = parse_args(["--cleanup-iptables", "--netns", "/var/run/netns/x"])
    assert args.cleanup_iptables and args.netns == "/var/run/netns/x"


def test_build_agent_proxy_wiring(tmp_path):
    from nodeagent.iptables import FakeIptables, IptablesRunner
    from machinery.fakeclient import FakeClient
    c = FakeClient()
    real = build_agent(c, node_name="n1", node_ip="192.0.2.1", root_dir=str(tmp_path / "a"), proxy="iptables",
                       masquerade_cidr="192.0.2.0/24")
    p = real.make_proxier("10.9.0.0/24")          # built only, nothing is run
    assert isinstance(p.runner, IptablesRunner) and p.masquerade_cidr == "192.0.2.0/24"
    assert p.pod_cidr == "10.9.0.0/24" and p.node_ip == "192.0.2.1"
    hollow = build_agent(c, node_name="h1", node_ip="192.0.2.2", root_dir=str(tmp_path / "b"), runtime="fake",
                         proxy="iptables")
    assert isinstance(hollow.make_proxier("10.9.1.0/24").runner, FakeIptables)
    assert build_agent(c, node_name="n2", node_ip="192.0.2.3", root_dir=str(tmp_path / "c"),
                       proxy="none").make_proxier is None
    with pytest.raises(AgentConfigError, match="proxy must be iptables or none"):
        build_agent(c, node_name="n3", node_ip="192.0.2.4", root_dir=str(tmp_path / "d"), proxy="ipvs")


def test_missing_node_netns_is_a_network_error(tmp_path):
    with pytest.raises(NetworkError, match="no-such-netns"):
        enter_netns(str(tmp_path / "no-such-netns"))
