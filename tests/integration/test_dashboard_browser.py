"""The dashboard page in a real headless browser (Debian's `chromium`) driven
by its DevTools protocol over a WebSocket (aiohttp), against a real etcd +
apiserver on loopback: the page lists then watches, so objects created
after it loaded appear without a reload; clicking a pod opens its panel
with the scheduler's decision record and "log not available" when the log
route does not answer.

`Browser` and `Dashboard` are also what tests/e2e/test_lab_dashboard.py
drives the lab with:

    with Dashboard(workdir, kubeconfig) as dash, Browser(workdir) as b:
        b.open(dash.url + "/?namespace=default")
        b.wait_for("document.querySelectorAll('[data-node]').length === 3", 30)
        b.screenshot(path)

`Browser` runs its own event loop on a thread, so tests call it
synchronously; JavaScript exceptions on the page are collected in
`b.errors` (a test asserts there are none).
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.process import Command, free_port, python_env
from tests.cluster import Cluster

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH, HEIGHT = 1400, 1000


def chromium_missing() -> bool:
    return not os.path.exists(CHROMIUM)


class Dashboard(Command):
    """`kctl dashboard` as a child process on a free loopback port."""

    def __init__(self, workdir, kubeconfig, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "kubectlish.main", "--kubeconfig", str(kubeconfig), "dashboard",
                "--port", str(self.port), *extra]
        super().__init__("dashboard", workdir, argv, ready_url=self.url + "/dashboard/info", env=python_env())

    def ready(self) -> bool:
        import urllib.request
        with urllib.request.urlopen(self.ready_url, timeout=1) as r:
            return r.status == 200


class Chromium(Command):
    """Headless chromium with its DevTools endpoint on a free loopback port.

    Stopped by PID, then its whole process group (its own session: zygote
    and renderers are its children, nothing else is in it)."""

    def __init__(self, workdir):
        self.port = free_port()
        profile = Path(workdir) / "chromium-profile"
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--no-default-browser-check", "--hide-scrollbars",
                f"--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={self.port}",
                f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
        super().__init__("chromium", workdir, argv, ready_url=f"http://127.0.0.1:{self.port}/json/version")

    def ready(self) -> bool:
        import urllib.request
        with urllib.request.urlopen(self.ready_url, timeout=1) as r:
            return r.status == 200

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        pid = self.pid
        super().stop(timeout, sig)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Browser:
    """One page of a headless chromium, driven over the DevTools protocol."""

    def __init__(self, workdir):
        self.chromium = Chromium(workdir)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cdp", daemon=True)
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.errors: list[str] = []
        self.session = self.ws = self.reader = None

    def __enter__(self) -> "Browser":
        self.chromium.start(timeout=60)
        self.thread.start()
        try:
            self._run(self._connect())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self):
        import aiohttp
        self.session = aiohttp.ClientSession()
        base = f"http://127.0.0.1:{self.chromium.port}"
        async with self.session.get(base + "/json/list") as r:
            pages = [t for t in await r.json() if t.get("type") == "page"]
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self.reader = asyncio.ensure_future(self._read())
        for method in ("Page.enable", "Runtime.enable"):
            await self._send(method)
        await self._send("Emulation.setDeviceMetricsOverride",
                         width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    async def _read(self):
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                d = data["params"]["exceptionDetails"]
                self.errors.append((d.get("exception") or {}).get("description") or d.get("text", ""))

    async def _send(self, method: str, **params):
        i = next(self.ids)
        fut = self.loop.create_future()
        self.pending[i] = fut
        await self.ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        data = await asyncio.wait_for(fut, 60)
        if "error" in data:
            raise AssertionError(f"{method}: {data['error']}")
        return data["result"]

    def call(self, method: str, **params):
        return self._run(self._send(method, **params))

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str | None = None):
        """Evaluate until truthy; the last value is in the failure message."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.eval(expression)
            except AssertionError as exc:  # page navigating
                last = str(exc)
            else:
                if last:
                    return last
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what or expression} (last: {last!r}); "
                             f"page errors: {self.errors}")

    def click(self, selector: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path) -> Path:
        res = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path = Path(path)
        path.write_bytes(base64.b64decode(res["data"]))
        return path

    def close(self) -> None:
        async def shutdown():
            if self.reader:
                self.reader.cancel()
            if self.ws:
                await self.ws.close()
            if self.session:
                await self.session.close()
        try:
            if self.thread.is_alive():
                self._run(shutdown(), 10)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
        finally:
            self.chromium.stop()


# ---------------------------------------------------------------- the tests

pytestmark = pytest.mark.skipif(chromium_missing(), reason="chromium missing (scripts/test.sh installs it)")

NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}}
DECISION = {"v": 1, "time": "2026-12-06T10:00:00Z", "node": "n1", "nodes": 1, "feasible": 1, "scored": 1,
            "filtered": [], "scores": [{"node": "n1", "total": 190, "plugins": {"LeastAllocated": 95}}]}


DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def pod(name: str, node: str = "n1") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"scheduler.kctl.io/decision": json.dumps(DECISION)}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                                                       "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("dash")
    port = free_port()
    cp = Cluster(work, apiserver_args=["--http-listen", f"127.0.0.1:{port}"]).start()
    url = f"https://127.0.0.1:{port}"
    kubeconfig = cp.apiserver.kubeconfig          # the harness's admin certificate, context "kctl-test"
    try:
        yield work, url, kubeconfig
    finally:
        cp.stop()


def post(url: str, path: str, body: dict) -> dict:
    import urllib.request
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with upstream_open(req) as r:
        return json.loads(r.read())


def upstream_open(req):
    """urlopen of the apiserver's HTTPS API as the harness's admin."""
    import urllib.request
    from harness.pki import session
    return urllib.request.urlopen(req, timeout=10, context=session().credentials().ssl_context())


def test_page_lists_then_watches_and_opens_a_pod(cluster, tmp_path):
    work, url, kubeconfig = cluster
    post(url, "/api/v1/nodes", NODE)
    post(url, "/api/v1/namespaces/default/pods", pod("first"))
    with Dashboard(tmp_path, kubeconfig) as dash, Browser(tmp_path) as b:
        b.open(dash.url + "/?namespace=default")
        b.wait_for("document.querySelector('[data-node=\"n1\"] [data-pod=\"default/first\"]') !== null", 30,
                   "the listed pod inside its node")
        assert b.eval("document.querySelector('[data-node=\"n1\"]').dataset.ready") == "True"
        assert b.eval("document.querySelectorAll('.labbtn').length") == 0  # no lab controls without the flag
        assert b.eval("document.getElementById('mode').textContent") == "read-only"
        # CPU bar: 500m of 2 requested.
        assert "500m / 2" in b.eval("document.querySelector('[data-node=\"n1\"] .bar').textContent")
        # Created after the page loaded: arrives by the watch, no reload.
        marker = b.eval("window.__marker = Math.random()")
        post(url, "/api/v1/namespaces/default/pods", pod("second"))
        b.wait_for("document.querySelector('[data-pod=\"default/second\"]') !== null", 30, "the watched pod")
        # The page holds more watches than a browser's 6 connections per host: a late one works too.
        post(url, "/apis/apps/v1/namespaces/default/deployments", DEPLOYMENT)
        b.wait_for("document.querySelector('[data-deployment=\"web\"]') !== null", 30, "the watched Deployment")
        assert b.eval("window.__marker") == marker, "the page was reloaded"
        b.click('[data-pod="default/first"]')
        text = b.wait_for("document.querySelector('#panel:not([hidden]) [data-panel-pod]') && "
                          "!document.querySelector('#panel').textContent.includes('loading log') && "
                          "document.querySelector('#panel').textContent", 30, "the pod panel")
        assert "LeastAllocated" in text and "190" in text, text
        assert "log not available" in text or "(empty log)" in text, text
        assert "pod=default%2Ffirst" in b.eval("location.search")
        b.screenshot(tmp_path / "pod-panel.png")
        # The namespace selector: another namespace's pod shows only under "all namespaces"; the URL follows.
        post(url, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
        post(url, "/api/v1/namespaces/other/pods", {**pod("third"), "metadata": {"name": "third", "namespace": "other"}})
        b.wait_for("[...document.querySelectorAll('#namespace option')].some(o => o.value === 'other')", 30,
                   "namespace 'other' in the selector")
        assert b.eval("document.querySelector('[data-pod=\"other/third\"]')") is None
        b.eval("(s => { s.value = ''; s.dispatchEvent(new Event('change')); })(document.getElementById('namespace'))")
        b.wait_for("document.querySelector('[data-pod=\"other/third\"]') !== null", 30, "the pod of 'other'")
        assert "namespace=&" in b.eval("location.search") or b.eval("location.search").endswith("namespace=")
        assert b.errors == []


MODEL_CHECKS = """(async () => {
  const m = await import('/static/model.js');
  const pod = (phase, ready, extra = {}) => ({ metadata: { name: 'p', ...extra }, spec: { nodeName: 'n', containers: [] },
    status: { phase, conditions: [{ type: 'Ready', status: ready }], containerStatuses: [{ restartCount: 2 }] } });
  const rs = (name, rev, replicas) => ({ metadata: { name, uid: name, ownerReferences: [{ uid: 'd' }],
    annotations: { 'deployment.kubernetes.io/revision': rev } }, spec: { replicas }, status: { replicas } });
  const d = { metadata: { uid: 'd', annotations: { 'deployment.kubernetes.io/revision': '3' } } };
  return {
    quantities: ['100m', '2', '128Mi', '1Gi', '1e3', '1k', 'x', undefined].map(m.quantity),
    states: [pod('Running', 'True'), pod('Running', 'False'), pod('Pending', 'False'), pod('Failed', 'False'),
             pod('Succeeded', 'False'), pod('Running', 'True', { deletionTimestamp: 'now' })].map(p => m.podState(p).cls),
    restarts: m.podState(pod('Running', 'True')).restarts,
    nodes: [{ status: { conditions: [{ type: 'Ready', status: 'Unknown' }] }, spec: { unschedulable: true,
               taints: [{ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' }, { key: 'gpu', value: 'x', effect: 'NoExecute' }] } },
            { status: { conditions: [{ type: 'Ready', status: 'True' }] }, spec: {} }].map(n => {
      const s = m.nodeState(n); return [s.label, s.cordoned, s.taints]; }),
    requested: m.requested([{ status: { phase: 'Running' }, spec: { containers: [{ resources: { requests: { cpu: '250m', memory: '64Mi' } } }] } },
                            { status: { phase: 'Succeeded' }, spec: { containers: [{ resources: { requests: { cpu: '1' } } }] } }]),
    rollout: m.replicaSetsOf(d, [rs('old1', '1', 0), rs('old2', '2', 3), rs('new', '3', 3)], []).map(x => [x.rs.metadata.name, x.isNew]),
  };
})()"""


def test_model_functions_in_the_browser(cluster, tmp_path):
    """model.js's pure functions, run by the browser itself."""
    work, url, kubeconfig = cluster
    with Dashboard(tmp_path, kubeconfig) as dash, Browser(tmp_path) as b:
        b.open(dash.url + "/static/index.html")
        b.wait_for("document.readyState === 'complete'", 30)
        r = b.eval(MODEL_CHECKS)
    assert r["quantities"] == [0.1, 2, 128 * 2 ** 20, 2 ** 30, 1000, 1000, 0, 0]
    assert r["states"] == ["ready", "notready", "pending", "failed", "succeeded", "terminating"]
    assert r["restarts"] == 2
    assert r["nodes"] == [["NotReady", True, ["gpu=x:NoExecute"]], ["Ready", False, []]]
    assert r["requested"] == {"cpu": 0.25, "memory": 64 * 2 ** 20}
    # The new ReplicaSet first, old ones only while they still have replicas.
    assert r["rollout"] == [["new", True], ["old2", False]]
