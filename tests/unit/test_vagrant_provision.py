"""What the Vagrantfile's workers are provisioned with, end to end without a VM:
the Vagrantfile evaluated by Ruby (tests/deploy_units.py: vagrant_provisioners)
gives provision.sh's arguments; provision.sh hands every option but --hosts to
install-units.sh, which is run here (--root) to render kctl-nodeagent's unit
and env file; the resulting command line is parsed by kctl-nodeagent's own
argparse parser.

The points checked: workers masquerade pod traffic to the cluster's private
network (`--masquerade-cidr` = KCTL_SUBNET), or pods cannot reach kctl-dns and
the apiserver on cp, which routes no pod CIDR (deploy/README.md §1). And the HA
control plane (KCTL_CONTROL_PLANES=3): the Vagrantfile evaluated as `vagrant
up` also makes the PKI (deploy/vagrant/pki.py, for real), each cpI's bundle is
installed as provision.sh does, and the etcd, apiserver, scheduler, controller
manager, kctl-dns and node agent command lines rendered for every machine are
parsed: one etcd cluster over TLS whose certificates name each member, every
member in every apiserver's --etcd-servers, every apiserver in every client's
--apiserver. Starting those etcd members for real: tests/integration/
test_deploy_processes.py."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from machinery import kubeconfig as kc
from machinery import pki
from tests.deploy_units import VAGRANT, component_parser, expand_exec, flag_errors, flag_values, parse_unit, \
    rendered, run_install_units, vagrant_eval, vagrant_provisioners

pytestmark = pytest.mark.skipif(not shutil.which("ruby"), reason="ruby is not installed: the Vagrantfile's "
                                "provisioner arguments were NOT checked (apt-get install ruby)")


def provision_to_install_units(args: list[str]) -> tuple[str, list[str]]:
    """provision.sh's call: `install-units.sh ROLE --prefix /opt/kctl` + every option pair but --hosts."""
    role, rest = args[0], args[1:]
    pairs = [rest[i:i + 2] for i in range(0, len(rest), 2)]
    return role, ["--prefix", "/opt/kctl", *(x for flag, value in pairs if flag != "--hosts" for x in (flag, value))]


def install(root: Path, args: list[str], bundle: Path | None = None) -> Path:
    """What provision.sh does with one machine's arguments (and its PKI bundle), below root."""
    if bundle is not None:
        shutil.copytree(bundle, root / "etc/kctl/pki")
    run_install_units(root, *(lambda role, rest: (role, *rest))(*provision_to_install_units(args)))
    return root


def argv_of(root: Path, component: str) -> list[str]:
    unit, env = rendered(root, component)
    return expand_exec(unit["Service"]["ExecStart"][0], env)


def nodeagent_argv(tmp_path, args: list[str]) -> list[str]:
    assert args[0] == "worker"
    return argv_of(install(tmp_path / "root", args), "nodeagent")


@pytest.mark.parametrize("env,subnet,workers", [
    ({}, "192.168.56.0/24", ["worker1", "worker2"]),
    ({"KCTL_SUBNET": "10.77.0.5/24", "KCTL_WORKERS": "3"}, "10.77.0.0/24", ["worker1", "worker2", "worker3"]),
])
def test_workers_masquerade_pod_traffic_to_the_private_network(tmp_path, env, subnet, workers):
    provisioners = vagrant_provisioners(tmp_path, **env)
    assert sorted(provisioners) == ["cp"] + workers
    assert "--masquerade-cidr" not in provisioners["cp"]          # no node agent on cp
    for name in workers:
        argv = nodeagent_argv(tmp_path / name, provisioners[name])
        assert argv[0] == "/opt/kctl/.venv/bin/kctl-nodeagent"
        assert flag_errors("kctl-nodeagent", argv[1:]) == []
        parsed = component_parser("kctl-nodeagent").parse_args(argv[1:])
        assert (parsed.masquerade_cidr, parsed.node_name) == (subnet, name)
        assert parsed.node_ip.startswith(subnet.rsplit(".", 1)[0] + ".")


# ------------------------------------------------------------------ the HA control plane

def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    """KCTL_CONTROL_PLANES=3, evaluated as `vagrant up` (the PKI made for real), every machine
    installed below its own root with its bundle: {machine: (provision.sh args, root)}."""
    scratch = tmp_path_factory.mktemp("ha")
    provisioners = vagrant_provisioners(scratch, "up", KCTL_CONTROL_PLANES="3")
    bundles = scratch / "pki" / "bundles"
    return {m: (args, install(scratch / m, args, bundles / m)) for m, args in provisioners.items()}, scratch


def test_ha_machines_and_addresses(ha):
    machines, _ = ha
    assert list(machines) == ["cp1", "cp2", "cp3", "worker1", "worker2"]
    cps = {m: arg(args, "--advertise-ip") for m, (args, _) in machines.items() if m.startswith("cp")}
    workers = {m: arg(args, "--node-ip") for m, (args, _) in machines.items() if m.startswith("worker")}
    # cp1 keeps the single control plane's .10, the others go downwards; the workers keep .11, .12.
    assert cps == {"cp1": "192.168.56.10", "cp2": "192.168.56.9", "cp3": "192.168.56.8"}
    assert workers == {"worker1": "192.168.56.11", "worker2": "192.168.56.12"}
    hosts = "cp1=192.168.56.10,cp2=192.168.56.9,cp3=192.168.56.8"
    for m in cps:
        args = machines[m][0]
        assert arg(args, "--control-plane-hosts") == hosts
        assert arg(args, "--hosts") == hosts + ",worker1=192.168.56.11,worker2=192.168.56.12"


def test_ha_etcd_members_form_one_cluster(ha):
    machines, _ = ha
    members = {}
    for m in ("cp1", "cp2", "cp3"):
        args, root = machines[m]
        ip = arg(args, "--advertise-ip")
        argv = argv_of(root, "etcd")
        assert argv[0] == "/usr/bin/etcd"
        flags = flag_values(argv[1:])
        assert flags["--name"] == m
        assert flags["--listen-peer-urls"] == flags["--initial-advertise-peer-urls"] == f"https://{ip}:2380"
        assert flags["--advertise-client-urls"] == f"https://{ip}:2379"
        assert f"https://{ip}:2379" in flags["--listen-client-urls"].split(",")
        for tls in ("--client-cert-auth", "--peer-client-cert-auth"):
            assert flags[tls] is True
        assert flags["--peer-trusted-ca-file"] == flags["--trusted-ca-file"] == "/etc/kctl/pki/etcd/ca.crt"
        members[m] = flags
        # The member's own certificate (its bundle's etcd/server.crt) names its address, not the others'.
        dns, ips = pki.sans(pki.load_cert((root / "etc/kctl/pki/etcd/server.crt").read_bytes()))
        assert m in dns and ip in ips and "127.0.0.1" in ips
        assert not ips & {arg(machines[o][0], "--advertise-ip") for o in machines if o.startswith("cp") and o != m}
        etcd_ca = pki.load_cert((root / "etc/kctl/pki/etcd/ca.crt").read_bytes())
        pki.verify_chain(pki.load_cert((root / "etc/kctl/pki/etcd/server.crt").read_bytes()), etcd_ca,
                         server_name=ip)
    clusters = {f["--initial-cluster"] for f in members.values()}
    assert len(clusters) == 1, clusters
    (cluster,) = clusters
    assert dict(p.split("=", 1) for p in cluster.split(",")) == {
        m: f["--initial-advertise-peer-urls"] for m, f in members.items()}
    cas = {(machines[m][1] / "etc/kctl/pki/etcd/ca.crt").read_bytes() for m in members}
    assert len(cas) == 1, "one etcd CA signs every member"
    # An N-member etcd is ready (sd_notify) only with a quorum: no start timeout on any member.
    for m in members:
        dropin = machines[m][1] / "etc/systemd/system/kctl-etcd.service.d/kctl-member.conf"
        assert parse_unit(dropin.read_text())["Service"]["TimeoutStartSec"] == ["infinity"]


def test_ha_apiservers_reach_every_member(ha):
    from apiserver import etcdendpoints
    machines, _ = ha
    clients = {f"https://{arg(machines[m][0], '--advertise-ip')}:2379" for m in ("cp1", "cp2", "cp3")}
    for m in ("cp1", "cp2", "cp3"):
        args, root = machines[m]
        argv = argv_of(root, "apiserver")
        assert flag_errors("kctl-apiserver", argv[1:]) == []
        parsed = component_parser("kctl-apiserver").parse_args(argv[1:])
        servers = parsed.etcd_servers.split(",")
        assert set(servers) == clients and len(servers) == 3
        assert servers[0] == f"https://{arg(args, '--advertise-ip')}:2379", "its own member first"
        assert etcdendpoints.parse_servers(parsed.etcd_servers) == ("https://", [s[len("https://"):] for s in servers])
        # Every apiserver serves every cp address (clients fail over to any of them).
        cert = pki.load_cert((root / "etc/kctl/pki/apiserver.crt").read_bytes())
        assert pki.covers(cert, ips=[arg(machines[c][0], "--advertise-ip") for c in ("cp1", "cp2", "cp3")])


def test_ha_every_client_gets_every_apiserver(ha):
    machines, _ = ha
    apiservers = [f"{arg(machines[m][0], '--advertise-ip')}:6443" for m in ("cp1", "cp2", "cp3")]
    for m, (args, root) in machines.items():
        comps = ["scheduler", "controller-manager", "dns"] if m.startswith("cp") else ["nodeagent"]
        for comp in comps:
            argv = argv_of(root, comp)
            assert flag_errors(f"kctl-{comp}", argv[1:]) == []
            parsed = component_parser(f"kctl-{comp}").parse_args(argv[1:])
            listed = parsed.apiserver.split(",")
            assert sorted(listed) == sorted(apiservers), (m, comp, listed)
            if m.startswith("cp"):
                assert listed[0] == f"{arg(args, '--advertise-ip')}:6443", "its own apiserver first"
        # ... and every kubeconfig of the machine's bundle lists them all (kctl.dev/grpc servers).
        confs = sorted((root / "etc/kctl/pki").glob("*.conf"))
        assert [c.name for c in confs] == (["admin.conf", "controller-manager.conf", "dns.conf", "scheduler.conf"]
                                           if m.startswith("cp") else ["node.conf"])
        for conf in confs:
            assert kc.select(conf).grpc_servers == apiservers, conf
    for w in ("worker1", "worker2"):
        parsed = component_parser("kctl-nodeagent").parse_args(argv_of(machines[w][1], "nodeagent")[1:])
        assert parsed.insecure_registry == ["192.168.56.10:5000"], "the registry is cp1's"


def test_ha_registry_on_the_first_control_plane_only(ha):
    machines, _ = ha
    for m in ("cp1", "cp2", "cp3"):
        units = sorted(p.name for p in (machines[m][1] / "etc/systemd/system").glob("*.service"))
        expected = ["kctl-apiserver", "kctl-controller-manager", "kctl-dns", "kctl-etcd", "kctl-scheduler"]
        if m == "cp1":
            expected.append("kctl-registry")
        assert units == sorted(f"{u}.service" for u in expected), m


def test_single_control_plane_unchanged(tmp_path):
    """KCTL_CONTROL_PLANES=1 (the default) is today's layout: machine cp at .10, single-member etcd
    "kctl" with its peer URL on loopback, the apiserver on that member, the components on cp's apiserver."""
    for env in ({}, {"KCTL_CONTROL_PLANES": "1"}):
        provisioners = vagrant_provisioners(tmp_path, "up", **env)
        assert list(provisioners) == ["cp", "worker1", "worker2"]
        cp = provisioners["cp"]
        assert "--control-plane-hosts" not in cp and arg(cp, "--advertise-ip") == "192.168.56.10"
        assert arg(provisioners["worker1"], "--apiserver") == "192.168.56.10:6443"
    root = install(tmp_path / "cp", cp, tmp_path / "pki/bundles/cp")
    etcd = flag_values(argv_of(root, "etcd")[1:])
    assert (etcd["--name"], etcd["--initial-cluster"], etcd["--advertise-client-urls"], etcd["--listen-peer-urls"]) \
        == ("kctl", "kctl=https://127.0.0.1:2380", "https://127.0.0.1:2379", "https://127.0.0.1:2380")
    assert etcd["--listen-client-urls"] == "https://127.0.0.1:2379,https://192.168.56.10:2379"
    assert arg(argv_of(root, "apiserver"), "--etcd-servers") == "https://127.0.0.1:2379"
    for comp in ("scheduler", "controller-manager", "dns"):
        assert arg(argv_of(root, comp), "--apiserver") == "192.168.56.10:6443"
    assert (root / "etc/systemd/system/kctl-registry.service").is_file()
    assert not (root / "etc/systemd/system/kctl-etcd.service.d").exists()
    assert kc.select(root / "etc/kctl/pki/admin.conf").grpc_servers == ["192.168.56.10:6443"]


@pytest.mark.parametrize("value, message", [
    ("2", "KCTL_CONTROL_PLANES must be 1 or an odd number from 3 to 9"),
    ("11", "KCTL_CONTROL_PLANES must be 1 or an odd number from 3 to 9"),
    ("0", "KCTL_CONTROL_PLANES must be 1 or an odd number from 3 to 9"),
    ("three", "KCTL_CONTROL_PLANES must be an integer"),
])
def test_bad_control_plane_counts_are_refused(tmp_path, value, message):
    res = vagrant_eval(tmp_path, KCTL_CONTROL_PLANES=value)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_control_planes_need_room_below_the_workers(tmp_path):
    res = vagrant_eval(tmp_path, KCTL_CONTROL_PLANES="9", KCTL_SUBNET="10.1.2.0/29")
    assert res.returncode != 0 and "has no room for" in res.stderr, res.stderr
    ok = vagrant_provisioners(tmp_path, KCTL_CONTROL_PLANES="9", KCTL_WORKERS="1")
    assert arg(ok["cp9"], "--advertise-ip") == "192.168.56.2"     # .1 is the host's


def test_provision_sh_places_each_control_plane(ha):
    """provision.sh's own argument handling (its lines from KCTL= up to the first step, run by bash with
    each cp's Vagrantfile arguments): only cp1 pushes the images (its registry is every worker's), and
    only the machines that complete etcd's quorum (cp2, cp3 of 3) wait for their apiserver."""
    machines, _ = ha
    text = (VAGRANT / "provision.sh").read_text()
    head = text[text.index("\nKCTL="):text.index("\nstep()")]
    show = 'echo "$CP_INDEX $CP_COUNT $REGISTRY $APISERVER $((CP_INDEX <= CP_COUNT / 2 ? 0 : 1))"'
    seen = {}
    for m in ("cp1", "cp2", "cp3"):
        res = subprocess.run(["bash", "-c", f"set -euo pipefail\n{head}\n{show}", "provision.sh", *machines[m][0]],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        seen[m] = res.stdout.split()
    assert seen == {"cp1": ["1", "3", "192.168.56.10:5000", "192.168.56.10:6443", "0"],
                    "cp2": ["2", "3", "192.168.56.10:5000", "192.168.56.9:6443", "1"],
                    "cp3": ["3", "3", "192.168.56.10:5000", "192.168.56.8:6443", "1"]}
    assert 'if ((CP_INDEX == 1)); then\n        step "images into the registry' in text
    assert "if ((CP_INDEX <= CP_COUNT / 2)); then" in text
