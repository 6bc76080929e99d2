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


def test_opt_out_and_box_inputs(monkeypatch):
    assert cycle.cannot_run_reason({"KCTL_VAGRANT_TEST": "0"}).startswith("opt-in with KCTL_VAGRANT_TEST=1")
    assert cycle.cannot_run_reason({}).startswith("opt-in with KCTL_VAGRANT_TEST=1")
    # The box's cache key covers the pins install.sh installs and the build backend.
    pins = box.python_pins()
    assert any(p.startswith("grpcio==") for p in pins) and any(p.startswith("setuptools") for p in pins)
    assert len(box.inputs_digest()) == 12


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
