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


def test_build_agent_proxy_wiring(tmp_path, monkeypatch):
    from nodeagent import statedir
    from nodeagent.iptables import FakeIptables, IptablesRunner
    from machinery.fakeclient import FakeClient
    asked = []                     # a unit test mounts nothing: the state dir stays a plain directory
    monkeypatch.setattr(statedir, "ensure_tmpfs", lambda path: asked.append(path) or path)
    c = FakeClient()
    real = build_agent(c, node_name="n1", node_ip="192.0.2.1", root_dir=str(tmp_path / "a"), proxy="iptables",
                       masquerade_cidr="192.0.2.0/24")
    assert asked == [str(tmp_path / "a" / "run")]
    assert real.runtime.state_dir == tmp_path / "a" / "run" and real.runtime.ctrs == tmp_path / "a" / "run" / "containers"
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


async def test_hollow_nodes_get_one_identity_each(tmp_path, capsys):
    from harness.pki import session
    from machinery import pki
    from nodeagent.main import hollow_clients
    confs = [session().node_kubeconfig(f"hx-{i}", f"10.98.1.{i + 1}") for i in range(3)]
    hollow = ["--node-name", "hx", "--node-ip", "10.98.1.1", "--root-dir", str(tmp_path), "--runtime", "fake",
              "--hollow-nodes", "3", "--apiserver", "127.0.0.1:1"]
    args = parse_args([*hollow, "--hollow-kubeconfig-dir", str(confs[0].parent)])   # no --kubeconfig needed
    clients = hollow_clients(args)
    assert [pki.subject(pki.load_cert(c.credentials.cert_pem))[0] for c in clients] == \
        ["system:node:hx-0", "system:node:hx-1", "system:node:hx-2"]
    for c in clients:
        await c.close()
    with pytest.raises(SystemExit):
        parse_args([*BASE, "--hollow-kubeconfig-dir", str(tmp_path)])
    assert "--hollow-kubeconfig-dir needs --hollow-nodes" in capsys.readouterr().err
    args = parse_args([*hollow, "--hollow-nodes", "4", "--hollow-kubeconfig-dir", str(confs[0].parent)])
    from machinery.errors import ConfigError
    with pytest.raises(ConfigError, match="hx-3.conf"):
        hollow_clients(args)                                       # hx-3 has no certificate there
