"""kubectlish/dashboard.py without a cluster: where the HTTP API URL comes
from, the command's flag rules, the read-only refusal, and the lab routes
(with a stand-in for `kctl lab` that prints its arguments)."""
from __future__ import annotations

import sys

import click
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from kubectlish import dashboard
from kubectlish.main import cli
from machinery.errors import ConfigError


def kubeconfig(tmp_path, clusters: dict, current: str | None = "a"):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "contexts": [{"name": n, "context": {"cluster": n}} for n in clusters]}))
    return str(path)


def test_http_server_is_the_clusters_server_url(tmp_path):
    path = kubeconfig(tmp_path, {"a": {"server": "http://10.0.0.1:8080/", "extensions": [
        {"name": "kctl.dev/grpc", "extension": {"server": "10.0.0.1:6443"}}]}, "b": {"server": "https://h:1"}})
    assert dashboard.http_server(path, None, env={}) == ("http://10.0.0.1:8080", "a")
    assert dashboard.http_server(path, "b", env={}) == ("https://h:1", "b")
    assert dashboard.http_server(None, "b", env={"KUBECONFIG": path}) == ("https://h:1", "b")


def test_http_server_errors_say_why(tmp_path):
    grpc_only = kubeconfig(tmp_path, {"a": {"server": "10.0.0.1:6443"}})
    with pytest.raises(ConfigError, match=r'server "10.0.0.1:6443" is not an http\(s\):// URL.*--http-listen'):
        dashboard.http_server(grpc_only, None, env={})
    with pytest.raises(ConfigError, match='context "nope" does not exist'):
        dashboard.http_server(grpc_only, "nope", env={})
    with pytest.raises(ConfigError, match="no such file"):
        dashboard.http_server(str(tmp_path / "missing"), None, env={})
    two = kubeconfig(tmp_path, {"a": {"server": "http://a"}, "b": {"server": "http://b"}}, current=None)
    with pytest.raises(ConfigError, match="no current-context"):
        dashboard.http_server(two, None, env={})


def test_lab_name_from_the_labs_context():
    assert dashboard.lab_from_context("kctl-lab-db1") == "db1"
    assert dashboard.lab_from_context("prod") is None
    assert dashboard.lab_from_context(None) is None


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_command_flag_rules(tmp_path):
    path = kubeconfig(tmp_path, {"a": {"server": "http://127.0.0.1:1"}})
    r = run(["--kubeconfig", path, "dashboard", "--lab", "x"])
    assert r.exit_code == 2 and "--lab needs --lab-controls" in r.output
    r = run(["--kubeconfig", path, "dashboard", "--lab-controls"])
    assert r.exit_code == 2 and "no lab" in r.output
    r = run(["--kubeconfig", path, "dashboard", "--accept-hosts", "("])
    assert r.exit_code == 2 and "not a regular expression" in r.output
    grpc_only = kubeconfig(tmp_path, {"a": {"server": "127.0.0.1:6443"}})
    r = run(["--kubeconfig", grpc_only, "dashboard"])
    assert r.exit_code == 1 and "not an http(s):// URL" in r.output


def test_compile_hosts_rejects_bad_patterns():
    with pytest.raises(click.BadParameter):
        dashboard.compile_hosts("ok,(")
    assert [p.pattern for p in dashboard.compile_hosts(r"^a$,,^b$")] == ["^a$", "^b$"]


async def client_for(**kw) -> TestClient:
    # The upstream is never contacted by these tests (nothing listens on port 9).
    client = TestClient(TestServer(dashboard.make_app(dashboard.Options("http://127.0.0.1:9", **kw))))
    await client.start_server()
    return client


async def test_non_get_is_refused_here():
    client = await client_for()
    try:
        r = await client.delete("/apis/apps/v1/namespaces/default/deployments/web")
        body = await r.json()
        assert r.status == 405 and body["reason"] == "MethodNotAllowed" and body["code"] == 405
    finally:
        await client.close()


ECHO_ARGS = [sys.executable, "-c", "import sys; print(' '.join(sys.argv[1:])); sys.exit(sys.argv[1] == 'heal')"]


async def test_lab_routes_run_kctl_lab_with_the_labs_name():
    client = await client_for(lab="db1", lab_argv=ECHO_ARGS)
    ok = {"X-Kctl-Dashboard": "1"}
    try:
        r = await client.post("/lab/kill-node/node2", headers=ok)
        assert r.status == 200
        assert await r.json() == {"action": "kill-node", "node": "node2", "exitCode": 0,
                                  "output": "kill-node --name db1 node2"}
        r = await client.post("/lab/heal/node2", headers=ok)
        assert r.status == 500 and (await r.json())["exitCode"] == 1
        r = await client.post("/lab/kill-node/node2")
        assert r.status == 403 and "X-Kctl-Dashboard" in (await r.json())["message"]
        r = await client.post("/lab/rm-rf/node2", headers=ok)
        assert r.status == 404 and "unknown lab action" in (await r.json())["message"]
        r = await client.post("/lab/kill-node/Node_2", headers=ok)
        assert r.status == 400 and "node: invalid name" in (await r.json())["message"]
        r = await client.get("/dashboard/info")
        assert (await r.json())["lab"] == "db1" and "partition" in (await r.json())["labActions"]
    finally:
        await client.close()


async def test_no_lab_routes_without_lab_controls():
    client = await client_for(lab_argv=ECHO_ARGS)
    try:
        r = await client.post("/lab/kill-node/node2", headers={"X-Kctl-Dashboard": "1"})
        assert r.status in (404, 405)
        assert (await (await client.get("/dashboard/info")).json())["labActions"] == []
    finally:
        await client.close()
