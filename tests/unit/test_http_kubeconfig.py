"""One kubeconfig for kubectl and kctl: `server` is the HTTP URL kubectl
uses, kctl's gRPC address comes from the kctl.dev/grpc extension (or the
conventions of kubectlish/config.py)."""
from __future__ import annotations

import yaml

from kubectlish import config


def _write(tmp_path, cluster: dict) -> str:
    p = tmp_path / "config"
    p.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
        "users": [{"name": "lab", "user": {}}]}))
    return str(p)


def test_grpc_address_from_the_extension(tmp_path):
    path = _write(tmp_path, {"server": "http://10.0.0.1:8080",
                             "extensions": [{"name": "kctl.dev/grpc", "extension": {"server": "10.0.0.1:7443"}}]})
    assert config.resolve(server=None, kubeconfig=path, namespace=None, env={}).server == "10.0.0.1:7443"


def test_http_url_without_extension_means_the_default_grpc_port(tmp_path):
    path = _write(tmp_path, {"server": "http://10.0.0.1:8080"})
    assert config.resolve(server=None, kubeconfig=path, namespace=None, env={}).server == "10.0.0.1:6443"


def test_bare_address_is_still_the_grpc_address(tmp_path):
    path = _write(tmp_path, {"server": "10.0.0.9:6443"})
    assert config.resolve(server=None, kubeconfig=path, namespace=None, env={}).server == "10.0.0.9:6443"


def test_lab_writes_both_addresses_and_links_kube_config(tmp_path, monkeypatch):
    from deploy.lab.cluster import write_kubeconfig
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = write_kubeconfig("t", "10.0.0.1:6443", http="http://10.0.0.1:8080")
    data = yaml.safe_load(open(path))
    assert data["clusters"][0]["cluster"]["server"] == "http://10.0.0.1:8080"
    assert config.resolve(server=None, kubeconfig=None, namespace=None, env={}).server == "10.0.0.1:6443"
    kube = tmp_path / ".kube" / "config"
    assert kube.is_symlink() and str(kube.resolve()) == str((tmp_path / ".kctl" / "config").resolve())


def test_lab_leaves_an_existing_kube_config_alone(tmp_path, monkeypatch):
    from deploy.lab.cluster import write_kubeconfig
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("mine\n")
    write_kubeconfig("t", "10.0.0.1:6443", http="http://10.0.0.1:8080")
    assert (tmp_path / ".kube" / "config").read_text() == "mine\n"
