"""What the Vagrantfile's workers are provisioned with, end to end without a VM:
the Vagrantfile evaluated by Ruby (tests/deploy_units.py: vagrant_provisioners)
gives provision.sh's arguments; provision.sh hands every option but --hosts to
install-units.sh, which is run here (--root) to render kctl-nodeagent's unit
and env file; the resulting command line is parsed by kctl-nodeagent's own
argparse parser.

The point checked: workers masquerade pod traffic to the cluster's private
network (`--masquerade-cidr` = KCTL_SUBNET), or pods cannot reach kctl-dns and
the apiserver on cp, which routes no pod CIDR (deploy/README.md §1)."""
from __future__ import annotations

import shutil

import pytest

from tests.deploy_units import component_parser, expand_exec, flag_errors, rendered, run_install_units, \
    vagrant_provisioners

pytestmark = pytest.mark.skipif(not shutil.which("ruby"), reason="ruby is not installed: the Vagrantfile's "
                                "provisioner arguments were NOT checked (apt-get install ruby)")


def provision_to_install_units(args: list[str]) -> tuple[str, list[str]]:
    """provision.sh's call: `install-units.sh ROLE --prefix /opt/kctl` + every option pair but --hosts."""
    role, rest = args[0], args[1:]
    pairs = [rest[i:i + 2] for i in range(0, len(rest), 2)]
    return role, ["--prefix", "/opt/kctl", *(x for flag, value in pairs if flag != "--hosts" for x in (flag, value))]


def nodeagent_argv(tmp_path, args: list[str]) -> list[str]:
    role, unit_args = provision_to_install_units(args)
    assert role == "worker"
    root = tmp_path / "root"
    run_install_units(root, role, *unit_args)
    unit, env = rendered(root, "nodeagent")
    return expand_exec(unit["Service"]["ExecStart"][0], env)


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
