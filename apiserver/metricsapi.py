"""The resource metrics API (metrics.k8s.io/v1beta1), served by the apiserver
itself, the way metrics-server serves it.

Why here: kctl has no API aggregation, and the apiserver already reaches
every node agent (apiserver/nodeproxy.py); `kubectl top`, `kctl top` and the
HorizontalPodAutoscaler only need the latest window in memory.

How: ``MetricsStore.run`` scrapes every node every ``resolution`` seconds
(15 s, metrics-server's default; kctl-apiserver --metric-resolution)
through ``NodeAgent.Stats`` on the Node's ``kctl.io/agent-endpoint``
(nodes scraped concurrently, each with a timeout). Like metrics-server it
keeps the previous scrape's cumulative CPU counters and computes the rate
over the window between the two agent samples (their timestamps, so the
window is exact); a node that fails to answer is retried with a doubling
back-off (up to 5 min) so that thousands of hollow nodes without an agent
service cost little; ``--metric-resolution 0`` turns scraping off; the first scrape of a container gives no point yet, a
counter that went backwards (a restarted container) gives none either. A
pod has metrics only when every container of it has a point. A node whose
scrape fails loses its points (and its pods') until it answers again.

Reads are served from memory: ``MetricsServicer`` over gRPC (proto/metrics.proto,
used by the HPA controller and `kctl top`) and apiserver/http/metrics_routes.py
over HTTP (Kubernetes' JSON, for `kubectl top`). Label selectors select by
the labels of the pod or node objects, read from storage at each scrape
(pods only in the namespaces the nodes report pods of).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta, timezone

import grpc

from apiserver.nodeproxy import agent_channel, agent_endpoint
from apiserver.server import fail_rpc
from machinery import errors, kinds, selectors
from machinery.pb import metrics_pb2, metrics_pb2_grpc, node_pb2, node_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_RESOLUTION = 15.0
SCRAPE_TIMEOUT = 5.0
MAX_BACKOFF = 300.0
NODE, POD = kinds.BY_KIND["Node"], kinds.BY_KIND["Pod"]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(rfc3339: str) -> int:
    """Whole microseconds since the epoch (exact: a float of ~1.8e9 s would blur the window)."""
    return (datetime.fromisoformat(rfc3339.replace("Z", "+00:00")) - _EPOCH) // timedelta(microseconds=1)


def _unpack(info, a):
    m = info.message()
    a.Unpack(m)
    return m


class _Rates:
    """Cumulative CPU counters of the previous scrape -> rate points (see the module docstring)."""

    def __init__(self) -> None:
        self.last: dict[tuple, tuple[int, int]] = {}
        self.points: dict[tuple, tuple[float, float, int]] = {}    # key -> (time, window, nanocores)

    def observe(self, key: tuple, stats: dict) -> tuple[float, float, int] | None:
        cpu = stats.get("cpu") or {}
        if "usageCoreNanoSeconds" not in cpu or "time" not in cpu:
            return None
        t, cum = _micros(cpu["time"]), int(cpu["usageCoreNanoSeconds"])
        prev = self.last.get(key)
        if prev is None or t > prev[0]:
            self.last[key] = (t, cum)
            if prev is not None and cum >= prev[1]:
                self.points[key] = (t / 1e6, (t - prev[0]) / 1e6, (cum - prev[1]) * 1_000_000 // (t - prev[0]))
            elif prev is not None:
                self.points.pop(key, None)                          # counter reset: no point this time
        return self.points.get(key)

    def forget(self, keep: set[tuple]) -> None:
        for d in (self.last, self.points):
            for k in set(d) - keep:
                del d[k]


def _ts(msg, t: float) -> None:
    msg.timestamp.seconds = int(t)
    msg.timestamp.nanos = int((t - int(t)) * 1e9)


class MetricsStore:
    """The latest NodeMetrics and PodMetrics (see the module docstring)."""

    def __init__(self, verbs, resolution_seconds: float = DEFAULT_RESOLUTION, credentials=None) -> None:
        self.verbs = verbs
        self.credentials = credentials      # towards the agents (machinery.kubeconfig.Credentials)
        self.resolution = resolution_seconds
        self.rates = _Rates()
        self.nodes: dict[str, metrics_pb2.NodeMetrics] = {}
        self.pods: dict[tuple[str, str], metrics_pb2.PodMetrics] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._retry: dict[str, tuple[float, int]] = {}         # endpoint -> (next attempt, failures)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            await ch.close()

    async def _call_stats(self, endpoint: str, request: node_pb2.StatsRequest) -> node_pb2.StatsResponse:
        ch = self._channels.get(endpoint)
        if ch is None:
            ch = self._channels[endpoint] = agent_channel(endpoint, self.credentials)
        return await node_pb2_grpc.NodeAgentStub(ch).Stats(request, timeout=SCRAPE_TIMEOUT)

    async def _stats(self, endpoint: str) -> dict:
        return json.loads((await self._call_stats(endpoint, node_pb2.StatsRequest(summary=True))).summary_json)

    async def node_stats(self, name: str, resource_metrics: bool) -> node_pb2.StatsResponse:
        """One node's summary or /metrics/resource text, fetched now (the kubelet's proxied paths)."""
        node = _unpack(NODE, await self.verbs.get(NODE, "", name))
        ep = agent_endpoint(node)
        if not ep:
            raise errors.Unavailable(f'node "{name}" has no agent endpoint')
        try:
            return await self._call_stats(ep, node_pb2.StatsRequest(summary=not resource_metrics,
                                                                    resource_metrics=resource_metrics))
        except grpc.RpcError as exc:
            raise errors.Unavailable(f'error trying to reach node "{name}" ({ep}): {exc.code().name}') from exc

    async def _scrape_node(self, node) -> dict | None:
        ep = agent_endpoint(node)
        now = time.monotonic()
        if not ep or self._retry.get(ep, (0.0, 0))[0] > now:
            return None
        try:
            summary = await self._stats(ep)
        except (grpc.RpcError, ValueError) as exc:
            failures = self._retry.get(ep, (0.0, 0))[1] + 1
            self._retry[ep] = (now + min(MAX_BACKOFF, self.resolution * 2 ** (failures - 1)), failures)
            log.debug("scraping node %s (%s) failed: %s", node.metadata.name, ep, exc)
            return None
        self._retry.pop(ep, None)
        return summary

    async def scrape(self) -> None:
        """One scrape of every node; replaces the served points."""
        node_objs = [_unpack(NODE, a) for a in (await self.verbs.list(NODE)).items]
        summaries = await asyncio.gather(*(self._scrape_node(n) for n in node_objs))
        pod_labels = await self._pod_labels(summaries)
        nodes: dict[str, metrics_pb2.NodeMetrics] = {}
        pods: dict[tuple[str, str], metrics_pb2.PodMetrics] = {}
        keep: set[tuple] = set()
        for node, summary in zip(node_objs, summaries):
            if summary is None:
                continue
            name = node.metadata.name
            keep.add(("node", name))
            point = self.rates.observe(("node", name), summary.get("node", {}))
            if point is not None:
                nm = metrics_pb2.NodeMetrics(name=name, labels=dict(node.metadata.labels), window_seconds=point[1])
                _ts(nm, point[0])
                nm.usage.cpu_nano_cores = point[2]
                nm.usage.memory_bytes = int(summary["node"].get("memory", {}).get("workingSetBytes", 0))
                nodes[name] = nm
            for p in summary.get("pods", []):
                pm = self._pod(p, keep, pod_labels)
                if pm is not None:
                    pods[(pm.namespace, pm.name)] = pm
        self.rates.forget(keep)
        self.nodes, self.pods = nodes, pods

    async def _pod_labels(self, summaries) -> dict[tuple[str, str], dict]:
        """The labels of the pods in the namespaces the summaries report pods of: no
        list (and no decode of every pod, which blocked the event loop for ~0.2 s per
        10,000 pods) when the nodes report none."""
        namespaces = {p.get("podRef", {}).get("namespace", "") for s in summaries if s for p in s.get("pods", [])}
        out = {}
        for ns in sorted(namespaces):
            for a in (await self.verbs.list(POD, ns)).items:
                pod = _unpack(POD, a)
                out[(pod.metadata.namespace, pod.metadata.name)] = dict(pod.metadata.labels)
        return out

    def _pod(self, p: dict, keep: set, pod_labels: dict) -> metrics_pb2.PodMetrics | None:
        ref = p.get("podRef", {})
        ns, name, uid = ref.get("namespace", ""), ref.get("name", ""), ref.get("uid", "")
        if (ns, name) not in pod_labels or not p.get("containers"):
            return None                                 # deleted since: metrics-server drops it too
        pm = metrics_pb2.PodMetrics(namespace=ns, name=name, labels=pod_labels[(ns, name)])
        complete = True
        for c in p["containers"]:
            key = ("pod", ns, name, uid, c["name"])
            keep.add(key)
            point = self.rates.observe(key, c)
            if point is None:
                complete = False
                continue
            cm = pm.containers.add(name=c["name"])
            cm.usage.cpu_nano_cores = point[2]
            cm.usage.memory_bytes = int(c.get("memory", {}).get("workingSetBytes", 0))
            _ts(pm, point[0])
            pm.window_seconds = point[1]
        return pm if complete else None

    async def run(self) -> None:
        if self.resolution <= 0:                    # scraping off; a returning task would stop the server
            await asyncio.Event().wait()
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.scrape()
                except errors.ApiError as exc:
                    log.warning("metrics scrape: %s", exc.message)
                await asyncio.sleep(max(0.0, self.resolution - (time.monotonic() - started)))
        finally:
            await self.close()

    # -------------------------------------------------------------- reads
    def node_metrics(self, name: str = "", label_selector: str = "") -> list[metrics_pb2.NodeMetrics]:
        sel = _selector(label_selector)
        if name:
            nm = self.nodes.get(name)
            if nm is None:
                raise errors.NotFound(f'nodemetrics.metrics.k8s.io "{name}" not found')
            return [nm]
        return [self.nodes[n] for n in sorted(self.nodes) if sel.matches(self.nodes[n].labels)]

    def pod_metrics(self, namespace: str = "", name: str = "",
                    label_selector: str = "") -> list[metrics_pb2.PodMetrics]:
        sel = _selector(label_selector)
        if name:
            pm = self.pods.get((namespace or "default", name))
            if pm is None:
                raise errors.NotFound(f'podmetrics.metrics.k8s.io "{name}" not found')
            return [pm]
        return [self.pods[k] for k in sorted(self.pods)
                if (not namespace or k[0] == namespace) and sel.matches(self.pods[k].labels)]


def _selector(s: str) -> selectors.LabelSelector:
    try:
        return selectors.parse_label_selector(s)
    except ValueError as exc:
        raise errors.BadRequest(f"unable to parse requirement: {exc}") from None


class MetricsServicer(metrics_pb2_grpc.MetricsServicer):
    def __init__(self, store: MetricsStore) -> None:
        self.store = store

    async def ListPodMetrics(self, request, context):
        try:
            items = self.store.pod_metrics(request.namespace, request.name, request.label_selector)
        except errors.ApiError as exc:
            await fail_rpc(context, exc, "ListPodMetrics")
        return metrics_pb2.PodMetricsList(items=items)

    async def ListNodeMetrics(self, request, context):
        try:
            items = self.store.node_metrics(request.name, request.label_selector)
        except errors.ApiError as exc:
            await fail_rpc(context, exc, "ListNodeMetrics")
        return metrics_pb2.NodeMetricsList(items=items)
