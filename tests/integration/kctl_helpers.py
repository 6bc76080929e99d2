"""Helpers for kctl's integration tests: one real etcd + apiserver per test
module (tests.cluster, the same processes the shared fixtures start; a
module scope keeps these tests quick), and `kctl(...)` running the CLI
in-process with click's CliRunner against it."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass

from click.testing import CliRunner

from kubectlish.main import cli


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __repr__(self):
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


def kctl(server: str, *args: str, input: str | None = None) -> Result:
    runner = CliRunner()
    r = runner.invoke(cli, ["--server", server, *args], input=input, catch_exceptions=False)
    return Result(r.exit_code, r.stdout, r.stderr)


def kctl_subprocess(*args: str, env: dict | None = None, timeout: float = 60, input: str | None = None) -> Result:
    """The real console script, as a user runs it."""
    exe = os.path.join(os.path.dirname(sys.executable), "kctl")
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([exe, *args], capture_output=True, text=True, env=e, timeout=timeout, input=input)
    return Result(p.returncode, p.stdout, p.stderr)


def call(server: str, coro_fn):
    """Run `await coro_fn(client)` with a fresh Client (for setup and checks)."""
    from machinery.client import Client

    async def main():
        async with Client(server) as c:
            return await coro_fn(c)
    return asyncio.run(main())


def cluster_fixture():
    """A module-scoped pytest fixture yielding the apiserver's host:port."""
    import pytest

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        from tests.cluster import Cluster
        c = Cluster(tmp_path_factory.mktemp("kctl"))
        c.start()
        try:
            yield c.apiserver.target
        finally:
            c.stop()
    return server


def whoami(https_url: str, token: str) -> tuple[int, str]:
    """(status, username) of a SelfSubjectReview over HTTPS with a bearer token, trusting the
    harness's cluster CA and sending no client certificate (any authenticated user may ask)."""
    import json
    import urllib.error
    import urllib.request

    from harness import pki as harness_pki
    from machinery import kubeconfig
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
    req = urllib.request.Request(https_url + "/apis/authentication.k8s.io/v1/selfsubjectreviews", data=body,
                                 method="POST", headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json"})
    ctx = kubeconfig.Credentials(harness_pki.session().store.ca_pem()).ssl_context()
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return resp.status, json.loads(resp.read())["status"]["userInfo"]["username"]
    except urllib.error.HTTPError as exc:
        return exc.code, ""
