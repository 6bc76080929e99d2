"""metrics.k8s.io/v1beta1 over HTTP: NodeMetrics and PodMetrics in
Kubernetes' JSON (what metrics-server serves and `kubectl top` reads), from
the apiserver's in-memory MetricsStore (apiserver/metricsapi.py).

The kubelet's own paths through the node proxy, fetched from the node's
agent on each request: ``/api/v1/nodes/NAME/proxy/stats/summary`` (JSON)
and ``/api/v1/nodes/NAME/proxy/metrics/resource`` (Prometheus text), as
`kubectl get --raw` reads them.

Read-only: get and list (``labelSelector`` honoured), by node name, by
namespace and pod name, or across namespaces; any other method is 405.
CPU is written in nanocores (``12345n``) and memory in bytes (``Ki`` when
a whole number of KiB), as metrics-server's quantities print. The group is
listed in discovery (``DISCOVERY``, read by apiserver/http/discovery.py),
which is how kubectl decides the metrics API is available.
"""
from __future__ import annotations

from aiohttp import web

from apiserver.http import wire
from machinery import errors

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GV = f"{GROUP}/{VERSION}"
VERBS = ["get", "list"]
RESOURCES = [("nodes", "node", False, "NodeMetrics"), ("pods", "pod", True, "PodMetrics")]


def resource_list() -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV,
            "resources": [{"name": r, "singularName": s, "namespaced": ns, "kind": k, "verbs": VERBS}
                          for r, s, ns, k in RESOURCES]}


def api_group() -> dict:
    gv = {"groupVersion": GV, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


def aggregated_item() -> dict:
    """This group in aggregated discovery (apidiscovery.k8s.io/v2)."""
    return {"metadata": {"name": GROUP},
            "versions": [{"version": VERSION, "freshness": "Current",
                          "resources": [{"resource": r, "singularResource": s,
                                         "responseKind": {"group": GROUP, "version": VERSION, "kind": k},
                                         "scope": "Namespaced" if ns else "Cluster", "verbs": VERBS}
                                        for r, s, ns, k in RESOURCES]}]}


def cpu(nanocores: int) -> str:
    return f"{nanocores}n"


def memory(n: int) -> str:
    return f"{n // 1024}Ki" if n and n % 1024 == 0 else str(n)


def _time(ts) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def node_json(nm) -> dict:
    return {"kind": "NodeMetrics", "apiVersion": GV,
            "metadata": {"name": nm.name, "creationTimestamp": _time(nm.timestamp), "labels": dict(nm.labels)},
            "timestamp": _time(nm.timestamp), "window": _window(nm.window_seconds),
            "usage": {"cpu": cpu(nm.usage.cpu_nano_cores), "memory": memory(nm.usage.memory_bytes)}}


def pod_json(pm) -> dict:
    return {"kind": "PodMetrics", "apiVersion": GV,
            "metadata": {"name": pm.name, "namespace": pm.namespace, "creationTimestamp": _time(pm.timestamp),
                         "labels": dict(pm.labels)},
            "timestamp": _time(pm.timestamp), "window": _window(pm.window_seconds),
            "containers": [{"name": c.name, "usage": {"cpu": cpu(c.usage.cpu_nano_cores),
                                                      "memory": memory(c.usage.memory_bytes)}}
                           for c in pm.containers]}


def _list(kind: str, items: list[dict]) -> dict:
    return {"kind": kind, "apiVersion": GV, "metadata": {}, "items": items}


def routes(store) -> list[web.RouteDef]:
    """The group's routes; register them before the generic /apis/{group}/{version} ones."""
    def get_only(fn):
        async def handler(request: web.Request) -> web.Response:
            if request.method not in ("GET", "HEAD"):
                raise errors.MethodNotAllowed(f"the server does not allow this method on the requested resource")
            return wire.respond(fn(request, request.query.get("labelSelector", "")))
        return handler

    def nodes(request, sel):
        name = request.match_info.get("name", "")
        items = [node_json(n) for n in store.node_metrics(name, sel)]
        return items[0] if name else _list("NodeMetricsList", items)

    def pods(request, sel):
        name = request.match_info.get("name", "")
        items = [pod_json(p) for p in store.pod_metrics(request.match_info.get("ns", ""), name, sel)]
        return items[0] if name else _list("PodMetricsList", items)

    async def node_stats(request: web.Request) -> web.Response:
        resp = await store.node_stats(request.match_info["name"], request.match_info["what"] == "metrics/resource")
        if resp.resource_metrics:
            return web.Response(text=resp.resource_metrics, content_type="text/plain", charset="utf-8")
        return web.Response(body=resp.summary_json, content_type="application/json")

    base = f"/apis/{GROUP}/{VERSION}"
    return [web.get("/api/v1/nodes/{name}/proxy/{what:stats/summary|metrics/resource}", node_stats),
            web.route("*", f"/apis/{GROUP}", get_only(lambda r, s: api_group())),
            web.route("*", base, get_only(lambda r, s: resource_list())),
            web.route("*", f"{base}/nodes", get_only(nodes)),
            web.route("*", base + "/nodes/{name}", get_only(nodes)),
            web.route("*", f"{base}/pods", get_only(pods)),
            web.route("*", base + "/namespaces/{ns}/pods", get_only(pods)),
            web.route("*", base + "/namespaces/{ns}/pods/{name}", get_only(pods))]
