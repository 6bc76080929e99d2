"""Several apiservers in a kubeconfig (HA control plane): the `kctl.dev/grpc`
extension's `servers` list, as written by `document()` and read by
`select()`, kctl and the components (machinery/kubeconfig.py)."""
from __future__ import annotations

import pytest
import yaml

from kubectlish import config
from machinery import client as apiclient, errors, kubeconfig, pki

SERVERS = ["10.0.0.2:6443", "10.0.0.3:6443", "10.0.0.4:6443"]


def write(tmp_path, grpc):
    path = tmp_path / "config"
    path.write_bytes(kubeconfig.dump(kubeconfig.document("ha", "admin", https_url="https://10.0.0.2:6444",
                                                         grpc=grpc)))
    return path


def test_document_writes_every_server_and_the_first_as_server(tmp_path):
    doc = yaml.safe_load(write(tmp_path, SERVERS).read_text())
    (ext,) = doc["clusters"][0]["cluster"]["extensions"]
    assert ext == {"name": "kctl.dev/grpc", "extension": {"server": SERVERS[0], "servers": SERVERS}}
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.0.0.2:6444"     # kubectl's: one URL


def test_one_server_keeps_the_old_format(tmp_path):
    doc = yaml.safe_load(write(tmp_path, "10.0.0.2:6443").read_text())
    assert doc["clusters"][0]["cluster"]["extensions"][0]["extension"] == {"server": "10.0.0.2:6443"}


def test_select_gives_all_servers(tmp_path):
    sel = kubeconfig.select(write(tmp_path, ",".join(SERVERS)))
    assert sel.grpc == ",".join(SERVERS) and sel.grpc_servers == SERVERS


async def test_kctl_and_a_component_client_use_all_of_them(tmp_path):
    path = write(tmp_path, SERVERS)
    assert config.resolve(server=None, kubeconfig=str(path), namespace=None, env={}).server == ",".join(SERVERS)
    async with apiclient.Client.for_component(str(path), None) as c:
        assert c.targets == SERVERS and c.endpoint == SERVERS[0]
    async with apiclient.Client.for_component(str(path), "127.0.0.1:1,127.0.0.2:1") as c:    # --apiserver a,b
        assert c.targets == ["127.0.0.1:1", "127.0.0.2:1"]


def test_servers_must_be_a_list_of_addresses(tmp_path):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({"clusters": [{"name": "c", "cluster": {"extensions": [
        {"name": "kctl.dev/grpc", "extension": {"server": "a:6443", "servers": "a:6443,b:6443"}}]}}]}))
    with pytest.raises(errors.ConfigError, match="servers must be a list of HOST:PORT"):
        kubeconfig.select(path)


def test_serving_certificate_covers_every_grpc_address():
    dns, ips = pki.Endpoints(grpc=",".join(SERVERS), https_url="https://10.0.0.2:6444").serving_sans()
    assert set(s.split(":")[0] for s in SERVERS) <= set(ips)


def test_config_set_cluster_accepts_several(tmp_path):
    from click.testing import CliRunner

    from kubectlish.main import cli
    path = tmp_path / "config"
    res = CliRunner().invoke(cli, ["--kubeconfig", str(path), "config", "set-cluster", "ha", "--server",
                                   "https://10.0.0.2:6444", "--grpc-server", ",".join(SERVERS)])
    assert res.exit_code == 0, res.output
    cluster = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]
    assert kubeconfig.grpc_server(cluster) == ",".join(SERVERS)


async def test_the_components_pass_a_comma_list_to_their_client():
    from clusterdns.main import parse_args as dns_args
    from controllers.main import parse_args as cm_args
    from nodeagent.main import parser as agent_parser
    from scheduler.main import parse_args as sched_args
    flag = ["--apiserver", "127.0.0.1:1,127.0.0.2:1"]
    for args in (sched_args(flag), cm_args(flag), dns_args(flag), agent_parser().parse_args(flag)):
        async with apiclient.Client.for_component(None, args.apiserver) as c:
            assert c.targets == ["127.0.0.1:1", "127.0.0.2:1"]


def test_a_joined_node_agent_kubeconfig_keeps_every_server():
    from machinery import certmanager
    doc = certmanager.kubeconfig_doc("https://10.0.0.2:6444", None, {}, ",".join(SERVERS))   # --apiserver a,b,c
    assert kubeconfig.grpc_server(doc["clusters"][0]["cluster"]) == ",".join(SERVERS)


def test_the_real_kubectl_reads_a_kubeconfig_with_every_server(tmp_path):
    """kubectl (pinned in the test extras) loads the HA kubeconfig: its
    `server` is the one HTTPS URL and the kctl.dev/grpc extension survives."""
    import json
    import pathlib
    import subprocess
    import sys
    kubectl = pathlib.Path(sys.executable).parent / "kubectl"
    out = subprocess.run([str(kubectl), "--kubeconfig", str(write(tmp_path, SERVERS)), "config", "view",
                          "-o", "json"], capture_output=True, text=True, timeout=60, check=True).stdout
    cluster = json.loads(out)["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.0.0.2:6444"
    assert cluster["extensions"][0]["extension"]["servers"] == SERVERS
