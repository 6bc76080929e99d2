"""The offline Vagrant lab's host rules, without booting anything (deploy/vagrant/host.py, box.py).

The networks the lab defines are isolated by construction (no <forward>, DNS
off, no DHCP router), the lab refuses to start next to a forwarding libvirt
network, the Vagrantfile's offline mode wires vagrant-libvirt to those
networks on TCG with a 256 MiB translation cache. tests/e2e/test_vagrant.py
boots it for real.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deploy.vagrant import box, cycle, host
from machinery.errors import ConfigError, HostError

VAGRANT_DIR = Path(host.__file__).parent
NETS = host.Subnets(ipaddress.IPv4Network("192.168.121.0/24"), ipaddress.IPv4Network("192.168.56.0/24"))


@pytest.mark.parametrize("kind", ["management", "cluster"])
def test_rendered_networks_are_isolated(kind):
    net = NETS.management if kind == "management" else NETS.cluster
    xml = host.render_network(kind, f"kctl-vagrant-{kind}", "kctlv-x", net)
    root = ET.fromstring(xml)
    assert root.find("forward") is None
    assert root.find("dns").get("enable") == "no"
    assert root.find("ip").get("address") == str(net.network_address + 1)
    dhcp = root.find("ip/dhcp")
    if kind == "management":   # vagrant-libvirt learns the VM's address from the DHCP lease
        assert dhcp.find("range").get("start") == str(net.network_address + 100)
        assert not list(root.iter("option"))
    else:
        assert dhcp is None
    assert host.isolation_problems(xml) == []


@pytest.mark.parametrize("xml, problem", [
    ("<network><name>n</name><forward mode='nat'/><dns enable='no'/></network>", "forwards (<forward mode='nat'>)"),
    ("<network><name>n</name><forward/><dns enable='no'/></network>", "forwards"),
    ("<network><name>n</name></network>", "DNS server is on"),
    ("<network><name>n</name><dns enable='no'/><ip address='10.0.0.1'><dhcp><range start='10.0.0.2' "
     "end='10.0.0.9'/></dhcp></ip><dnsmasq:options><option number='3'/></dnsmasq:options></network>"
     .replace("dnsmasq:", ""), "hands out a router"),
])
def test_isolation_problems_names_each_rule(xml, problem):
    problems = host.isolation_problems(xml)
    assert any(problem in p for p in problems), problems
    with pytest.raises(HostError, match="isolated networks only"):
        host.check_isolated("n", xml)


def test_preflight_refuses_any_forwarding_network(monkeypatch):
    xmls = {"default": "<network><name>default</name><forward mode='nat'/></network>",
            "iso": "<network><name>iso</name><dns enable='no'/></network>"}

    def fake_virsh(*args, check=True, timeout=120):
        if args[0] == "net-list":
            return "\n".join(xmls) + "\n"
        return xmls[args[1]]
    monkeypatch.setattr(host, "virsh", fake_virsh)
    with pytest.raises(HostError, match=r"default forward traffic .*\(virsh net-destroy default\)"):
        host.preflight()
    del xmls["default"]
    host.preflight()


def test_subnets_from_env():
    assert host.Subnets.from_env({}) == NETS
    with pytest.raises(ConfigError, match="KCTL_MGMT_SUBNET 192.168.56.0/25 overlaps KCTL_SUBNET"):
        host.Subnets.from_env({"KCTL_MGMT_SUBNET": "192.168.56.0/25"})
    with pytest.raises(ConfigError, match="KCTL_SUBNET: must be a network"):
        host.Subnets.from_env({"KCTL_SUBNET": "192.168.56.1/24"})


def test_opt_out_and_box_inputs(monkeypatch, tmp_path):
    assert cycle.cannot_run_reason({"KCTL_VAGRANT_TEST": "0"}).startswith("turned off with KCTL_VAGRANT_TEST=0")
    assert not (cycle.cannot_run_reason({}) or "").startswith("turned off")      # on by default
    # The box's cache key covers the pins install.sh installs and the build backend,
    # and the key baked into the box (vagrant's own, where vagrant is installed).
    pins = box.python_pins()
    assert any(p.startswith("grpcio==") for p in pins) and any(p.startswith("setuptools") for p in pins)
    key = tmp_path / "vagrant.pub"
    key.write_text("ssh-rsa AAAA one\n")
    monkeypatch.setattr(box, "vagrant_pub", lambda: key)
    first = box.inputs_digest()
    assert len(first) == 12 and box.inputs_digest() == first
    key.write_text("ssh-rsa AAAA two\n")
    assert box.inputs_digest() != first


def _validate(tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KCTL_", "VAGRANT_"))}
    environ.update(VAGRANT_HOME=str(tmp_path / "vagrant.d"), VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"),
                   VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_CWD=str(VAGRANT_DIR),
                   KCTL_VAGRANT_CACHE=str(tmp_path / "cache"), **env)
    return subprocess.run(["vagrant", "validate", "--ignore-provider"], capture_output=True, text=True,
                          timeout=180, env=environ, cwd=VAGRANT_DIR)


@pytest.mark.skipif(not shutil.which("vagrant"), reason="vagrant is not installed (deploy/vagrant/install-host.sh)")
def test_vagrantfile_offline_mode(tmp_path):
    missing = _validate(tmp_path, KCTL_OFFLINE="1")
    assert missing.returncode != 0 and "needs the built box" in missing.stdout + missing.stderr
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache/box.json").write_text(json.dumps({"name": "kctl-bookworm-x", "path": "/nonexistent.box",
                                                         "hash": "x"}))
    res = _validate(tmp_path)   # auto: the built box exists -> offline
    assert res.returncode == 0, res.stdout + res.stderr
    bad = _validate(tmp_path, KCTL_OFFLINE="maybe")
    assert bad.returncode != 0 and "KCTL_OFFLINE must be 0 or 1" in bad.stdout + bad.stderr


def test_vagrantfile_offline_settings():
    """What the offline libvirt provider block must say (the hard rules of the lab)."""
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    for line in ['lv.driver = "qemu"', 'lv.cpu_mode = "custom"', 'lv.cpu_model = "qemu64"',
                 f'lv.management_network_name = "{host.MGMT_NET}"', 'lv.management_network_mode = "none"',
                 f'lv.storage_pool_name = "{host.POOL}"', f'lv.default_prefix = "{host.PREFIX}"',
                 "<tb-cache unit='MiB'>256</tb-cache>", "%w[ssse3 sse4.1 sse4.2 popcnt cx16]", 'libvirt__forward_mode: "none"',
                 f'OFFLINE ? "{host.CLUSTER_NET}"']:
        assert line in text, line
    # vagrant-libvirt writes each feature as <NAME/>: the injected entry must render as valid XML.
    feature = "tcg><tb-cache unit='MiB'>256</tb-cache></tcg><pae"
    features = ET.fromstring(f"<features><acpi/><{feature}/></features>")
    assert features.find("tcg/tb-cache").text == "256" and features.find("pae") is not None


@pytest.mark.parametrize("script", ["install-host.sh", "kctl-vagrant"])
def test_wrapper_scripts_parse(script):
    shell = "bash" if script.endswith(".sh") else "sh"
    res = subprocess.run([shell, "-n", str(VAGRANT_DIR / script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.access(VAGRANT_DIR / script, os.X_OK)


# ------------------------------------------------------------------ the wrapper and an HA control plane

def test_machine_names_and_control_plane_counts():
    assert cycle.machines(2) == ["cp", "worker1", "worker2"]
    assert cycle.machines(1, 3) == ["cp1", "cp2", "cp3", "worker1"]
    for n in (1, 3, 5, 9):
        assert cycle.check_control_planes(n) == n
    for n in (0, 2, 4, 11, -1):
        with pytest.raises(ConfigError, match="--control-planes: 1 or an odd number from 3 to 9"):
            cycle.check_control_planes(n)


def test_later_commands_use_the_layout_of_up(tmp_path, monkeypatch):
    """`up --control-planes 3` records its layout; `status`, `down` (vagrant destroy) and `vagrant ...`
    then define every VM of that lab, whatever the caller's environment says."""
    monkeypatch.setattr(host, "STATE", tmp_path)
    monkeypatch.setattr(cycle, "LAYOUT", tmp_path / "dot" / "kctl-layout.json")
    monkeypatch.setenv("KCTL_WORKERS", "7")
    monkeypatch.delenv("KCTL_CONTROL_PLANES", raising=False)
    assert cycle.layout() == {}
    assert cycle.vagrant_env()["KCTL_WORKERS"] == "7" and "KCTL_CONTROL_PLANES" not in cycle.vagrant_env()
    # up, as far as it goes without libvirt: the layout is written before `vagrant up` runs
    calls = []
    monkeypatch.setattr(cycle, "missing_host_tools", lambda: [])
    monkeypatch.setattr(box, "ensure_box", lambda log: Path("/nonexistent/kctl.box"))
    for name in ("start_daemons", "preflight", "define_networks", "define_pool"):
        monkeypatch.setattr(host, name, lambda *a, **k: [])
    monkeypatch.setattr(cycle, "_logged", lambda cmd, env, timeout, log: calls.append((cmd, env)) or
                        subprocess.CompletedProcess(cmd, 0))
    cycle.up(2, log=lambda line: None, control_planes=3)
    assert cycle.layout() == {"workers": 2, "control_planes": 3}
    (cmd, env), = calls
    assert cmd == ["vagrant", "up", "--provider=libvirt"]
    assert (env["KCTL_WORKERS"], env["KCTL_CONTROL_PLANES"]) == ("2", "3")
    # status lists the lab's machines; down destroys them all
    lines = []
    monkeypatch.setattr(host, "libvirt_up", lambda: False)
    monkeypatch.setattr(cycle.subprocess, "run", lambda cmd, env, **kw: calls.append((cmd, env)) or
                        subprocess.CompletedProcess(cmd, 0))
    cycle.status(log=lines.append)
    assert lines[0] == "lab: cp1 cp2 cp3 worker1 worker2"
    assert calls[-1][0] == ["vagrant", "status"] and calls[-1][1]["KCTL_CONTROL_PLANES"] == "3"
    monkeypatch.setattr(cycle.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(host, "cleanup", lambda log: None)
    cycle.down(log=lambda line: None)
    assert calls[-1][0] == ["vagrant", "destroy", "-f"]
    assert (calls[-1][1]["KCTL_WORKERS"], calls[-1][1]["KCTL_CONTROL_PLANES"]) == ("2", "3")
    assert cycle.layout() == {} and not (tmp_path / "dot").exists()
    with pytest.raises(ConfigError, match="not 2"):
        cycle.up(2, log=lambda line: None, control_planes=2)
    assert calls[-1][0] == ["vagrant", "destroy", "-f"], "a refused count starts nothing"


def test_pki_command_for_an_ha_control_plane(tmp_path, capsys):
    from deploy.vagrant import __main__ as cli, pki as vagrant_pki
    from machinery import pki
    cps = "cp1=10.9.0.10,cp2=10.9.0.9,cp3=10.9.0.8"
    assert cli.main(["pki", str(tmp_path), cps, "worker1=10.9.0.11"]) == 0
    bundles = tmp_path / "bundles"
    assert sorted(p.name for p in bundles.iterdir()) == ["cp1", "cp2", "cp3", "worker1"]
    same = {f: {(bundles / m / f).read_bytes() for m in ("cp1", "cp2", "cp3")}
            for f in vagrant_pki.CP_FILES if not f.startswith("etcd/server")}
    assert all(len(v) == 1 for v in same.values()), "the shared CA, sa.key, serving cert, kubeconfigs"
    members = {m: pki.sans(pki.load_cert((bundles / m / "etcd/server.crt").read_bytes()))
               for m in ("cp1", "cp2", "cp3")}
    assert {m: sorted(ips) for m, (_, ips) in members.items()} == {
        "cp1": ["10.9.0.10", "127.0.0.1"], "cp2": ["10.9.0.9", "127.0.0.1"], "cp3": ["10.9.0.8", "127.0.0.1"]}
    # Running it again changes nothing.
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert cli.main(["pki", str(tmp_path), cps, "worker1=10.9.0.11"]) == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    capsys.readouterr()
    for bad, message in (("cp1=10.9.0.10,cp1=10.9.0.9", "NAME of its own"), ("cp1=10.9.0.10,cp2=10.9.0.10",
                         "an address is given twice"), ("cp1=10.9.0.300", "not an IPv4 address"), ("nope", "nope")):
        assert cli.main(["pki", str(tmp_path / "bad"), bad]) == 1
        assert message in capsys.readouterr().err
