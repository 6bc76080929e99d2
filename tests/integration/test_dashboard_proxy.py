"""`kctl dashboard`'s forwarding against a real etcd + kctl-apiserver (HTTP
API on a free loopback port): GETs reach the kubeconfig's server, other
methods are refused with 405 (nothing written) unless --allow-writes, watch
streams are relayed chunk by chunk, over plain HTTP and over the page's
WebSocket; the Host and Origin guards; and the `kctl dashboard` command
itself as a process.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from harness.process import free_port
from kubectlish import dashboard
from harness.pki import session
from tests.integration.test_dashboard_browser import Dashboard, cluster, upstream_open  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def upstream(cluster):
    work, url, kubeconfig = cluster
    return url, kubeconfig, work


@contextlib.asynccontextmanager
async def dashboard_client(url: str, **kw):
    kw.setdefault("credentials", session().credentials())
    client = TestClient(TestServer(dashboard.make_app(dashboard.Options(url, **kw))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def upstream_get(url: str, path: str) -> int:
    try:
        with upstream_open(url + path) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_get_is_forwarded_to_the_kubeconfigs_server(upstream):
    url, kubeconfig, _ = upstream
    server, context = dashboard.http_server(str(kubeconfig), None, env={})
    assert (server, context) == (url, "kctl-test")
    async with dashboard_client(server) as client:
        r = await client.get("/api/v1/namespaces", headers={"Accept": "application/json"})
        assert r.status == 200
        names = [n["metadata"]["name"] for n in (await r.json())["items"]]
        assert "default" in names
        # Errors come back as the server's own Status.
        r = await client.get("/api/v1/namespaces/default/pods/nope")
        assert r.status == 404 and (await r.json())["reason"] == "NotFound"


async def test_writes_are_refused_unless_allowed(upstream):
    url, _, _ = upstream
    async with dashboard_client(url) as client:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = await client.request(method, "/api/v1/namespaces", json=namespace("ro"))
            body = await r.json()
            assert r.status == 405, (method, body)
            assert body["kind"] == "Status" and body["reason"] == "MethodNotAllowed"
            assert "read-only" in body["message"] and "--allow-writes" in body["message"]
        assert upstream_get(url, "/api/v1/namespaces/ro") == 404  # nothing was written
    async with dashboard_client(url, allow_writes=True) as client:
        r = await client.post("/api/v1/namespaces", json=namespace("rw"))
        assert r.status == 201, await r.text()
        assert upstream_get(url, "/api/v1/namespaces/rw") == 200


async def test_watch_is_relayed_as_it_happens(upstream):
    url, _, _ = upstream
    async with dashboard_client(url) as client:
        r = await client.get("/api/v1/namespaces")
        rv = (await r.json())["metadata"]["resourceVersion"]
        watch = await client.get(f"/api/v1/namespaces?watch=true&resourceVersion={rv}")
        assert watch.status == 200
        assert watch.headers.get("Transfer-Encoding") == "chunked"
        await asyncio.to_thread(create_upstream, url, "watched")
        line = await asyncio.wait_for(watch.content.readline(), 30)
        ev = json.loads(line)
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "watched")
        watch.close()
        # The server ends a watch (timeoutSeconds): the relayed response ends too.
        short = await client.get(f"/api/v1/namespaces?watch=true&resourceVersion={rv}&timeoutSeconds=1")
        body = await asyncio.wait_for(short.read(), 30)
        assert [json.loads(line)["type"] for line in body.splitlines()] == ["ADDED"]


def create_upstream(url: str, name: str) -> None:
    req = urllib.request.Request(url + "/api/v1/namespaces", data=json.dumps(namespace(name)).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    upstream_open(req).close()


async def test_streams_websocket_relays_watches_and_checks_origin(upstream):
    url, _, _ = upstream
    async with dashboard_client(url) as client:
        r = await client.get("/api/v1/namespaces")
        rv = (await r.json())["metadata"]["resourceVersion"]
        host = f"{client.host}:{client.port}"
        ws = await client.ws_connect("/dashboard/streams", headers={"Origin": f"http://{host}"})
        await ws.send_json({"op": "open", "id": 1, "path": f"/api/v1/namespaces?watch=true&resourceVersion={rv}"})
        await ws.send_json({"op": "open", "id": 2, "path": "/etc/passwd"})
        first = {m["id"]: m for m in [await ws.receive_json(timeout=30), await ws.receive_json(timeout=30)]}
        assert first[1] == {"id": 1, "status": 200}
        assert first[2]["status"] == 400 and first[2]["end"] and "/api/" in first[2]["error"]
        await asyncio.to_thread(create_upstream, url, "overws")
        text = ""
        while "\n" not in text:
            msg = await ws.receive_json(timeout=30)
            assert msg["id"] == 1
            text += msg["data"]
        ev = json.loads(text.splitlines()[0])
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "overws")
        await ws.send_json({"op": "close", "id": 1})
        await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await client.ws_connect("/dashboard/streams", headers={"Origin": "http://evil.example"})
        assert exc.value.status == 403


async def test_foreign_host_header_is_refused(upstream):
    url, _, _ = upstream
    async with dashboard_client(url) as client:
        r = await client.get("/api/v1/namespaces", headers={"Host": "evil.example:8001"})
        assert r.status == 403 and "--accept-hosts" in (await r.json())["message"]
        r = await client.get("/api/v1/namespaces", headers={"Host": "localhost:8001"})
        assert r.status == 200


async def test_unreachable_cluster_is_a_503_status():
    async with dashboard_client(f"http://127.0.0.1:{free_port()}") as client:
        r = await client.get("/api/v1/pods")
        body = await r.json()
        assert r.status == 503 and body["reason"] == "ServiceUnavailable" and "did not answer" in body["message"]


def test_kctl_dashboard_command_serves_the_page_and_the_api(upstream, tmp_path):
    url, kubeconfig, _ = upstream
    with Dashboard(tmp_path, kubeconfig) as dash:
        with urllib.request.urlopen(dash.url + "/", timeout=10) as r:
            assert b'type="module"' in r.read()
        with urllib.request.urlopen(dash.url + "/static/app.js", timeout=10) as r:
            assert b"Collection" in r.read()
        with urllib.request.urlopen(dash.url + "/dashboard/info", timeout=10) as r:
            assert json.loads(r.read()) == {"upstream": url, "readOnly": True, "lab": None, "labActions": []}
        with urllib.request.urlopen(dash.url + "/api/v1/namespaces/default", timeout=10) as r:
            assert json.loads(r.read())["metadata"]["name"] == "default"
        req = urllib.request.Request(dash.url + "/lab/kill-node/node2", method="POST",
                                     headers={"X-Kctl-Dashboard": "1"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code in (404, 405)  # no lab controls without --lab-controls
    assert "read-only: only GET is forwarded" in dash.log_path.read_text()
    with Dashboard(tmp_path / "ns", kubeconfig, "-n", "kube-system") as dash:
        pass
    assert f"{dash.url}/?namespace=kube-system " in dash.log_path.read_text()
