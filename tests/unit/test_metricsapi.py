"""apiserver/metricsapi.py and apiserver/http/metrics_routes.py: rates over the
window between two scrapes (metrics-server's way), pods complete or absent,
label selectors, NotFound, and Kubernetes' JSON for `kubectl top`."""
import asyncio
import json
from types import SimpleNamespace

import pytest
from google.protobuf import any_pb2

from apiserver.http import discovery, metrics_routes
from apiserver.metricsapi import MetricsStore
from machinery import errors, kinds


def packed(obj):
    a = any_pb2.Any()
    a.Pack(obj)
    return a


class Verbs:
    def __init__(self, objs):
        self.objs = objs
        self.lists = []

    async def list(self, info, namespace="", *a, **kw):
        self.lists.append((info.kind, namespace))
        return SimpleNamespace(items=[packed(o) for o in self.objs if o.kind == info.kind
                                      and (not namespace or o.metadata.namespace == namespace)])


def node(name, **labels):
    n = kinds.new("Node")
    n.kind, n.metadata.name = "Node", name
    n.metadata.annotations["kctl.io/agent-endpoint"] = f"127.0.0.1:{len(name)}"
    n.metadata.labels.update(labels)
    return n


def pod(name, **labels):
    p = kinds.new("Pod")
    p.kind, p.metadata.name, p.metadata.namespace = "Pod", name, "default"
    p.metadata.labels.update(labels)
    return p


def t(s):
    return f"2026-12-06T10:00:{s:06.3f}Z"


def summary(sec, node_ns, pods):
    return {"node": {"nodeName": "n1", "cpu": {"time": t(sec), "usageCoreNanoSeconds": node_ns},
                     "memory": {"time": t(sec), "workingSetBytes": 1 << 30}},
            "pods": [{"podRef": {"namespace": "default", "name": name, "uid": name + "-uid"},
                      "containers": [{"name": c, "cpu": {"time": t(sec), "usageCoreNanoSeconds": ns},
                                      "memory": {"time": t(sec), "workingSetBytes": mem}}
                                     for c, ns, mem in ctrs]}
                     for name, ctrs in pods.items()]}


def store_with(samples, objs):
    store = MetricsStore(Verbs(objs), resolution_seconds=15)
    it = iter(samples)

    async def stats(endpoint):
        return next(it)
    store._stats = stats
    return store


def scrape(store, n=1):
    for _ in range(n):
        asyncio.run(store.scrape())


def test_rate_over_the_window_between_two_scrapes():
    s = store_with([summary(0, 0, {"web-1": [("app", 0, 1024)]}),
                    summary(10, 5_000_000_000, {"web-1": [("app", 2_000_000_000, 2048)]})],
                   [node("n1", zone="a"), pod("web-1", app="web")])
    scrape(s)
    assert s.node_metrics() == [] and s.pod_metrics() == []          # one sample: no rate yet
    scrape(s)
    (nm,) = s.node_metrics()
    assert nm.usage.cpu_nano_cores == 500_000_000 and nm.window_seconds == 10 and nm.usage.memory_bytes == 1 << 30
    (pm,) = s.pod_metrics("default")
    assert [(c.name, c.usage.cpu_nano_cores, c.usage.memory_bytes) for c in pm.containers] == \
        [("app", 200_000_000, 2048)]
    assert s.pod_metrics("default", label_selector="app=web") == [pm]
    assert s.pod_metrics("default", label_selector="app=db") == []
    assert s.node_metrics(label_selector="zone=b") == []
    with pytest.raises(errors.NotFound, match='podmetrics.metrics.k8s.io "nope" not found'):
        s.pod_metrics("default", "nope")
    with pytest.raises(errors.BadRequest):
        s.pod_metrics(label_selector="a in (")


def test_restarted_container_counter_and_unknown_pods_give_no_point():
    s = store_with([summary(0, 0, {"web-1": [("app", 9_000_000_000, 1)], "gone": [("app", 0, 1)]}),
                    summary(10, 1, {"web-1": [("app", 1_000, 1)], "gone": [("app", 5, 1)]})],
                   [node("n1"), pod("web-1")])
    scrape(s, 2)
    assert s.pod_metrics() == []


def test_failed_node_scrape_drops_its_points():
    samples = [summary(0, 0, {}), summary(10, 10, {})]
    s = store_with(samples, [node("n1")])
    scrape(s, 2)
    assert len(s.node_metrics()) == 1

    calls = []

    async def down(endpoint):
        calls.append(endpoint)
        raise ValueError("bad json")
    s._stats = down
    scrape(s)
    assert s.node_metrics() == []
    scrape(s)
    assert len(calls) == 1                  # backing off: not asked again within the resolution


def test_kubernetes_json_and_discovery():
    s = store_with([summary(0, 0, {"web-1": [("app", 0, 0)]}),
                    summary(10, 10, {"web-1": [("app", 1_230_000, 16 << 20)]})], [node("n1"), pod("web-1")])
    scrape(s, 2)
    pm = metrics_routes.pod_json(s.pod_metrics()[0])
    assert pm["kind"] == "PodMetrics" and pm["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert pm["window"] == "10s" and pm["timestamp"] == "2026-12-06T10:00:10Z"
    assert pm["containers"] == [{"name": "app", "usage": {"cpu": "123000n", "memory": "16384Ki"}}]
    nm = metrics_routes.node_json(s.node_metrics()[0])
    assert nm["usage"] == {"cpu": "1n", "memory": "1048576Ki"}
    groups = [i["metadata"]["name"] for i in discovery.aggregated(False)["items"]]
    assert "metrics.k8s.io" in groups
    rl = metrics_routes.resource_list()
    assert {r["name"]: r["kind"] for r in rl["resources"]} == {"nodes": "NodeMetrics", "pods": "PodMetrics"}
    assert json.dumps(rl)


def test_pods_are_listed_only_in_the_namespaces_the_nodes_report():
    other = pod("elsewhere")
    other.metadata.namespace = "other"
    store = store_with([summary(0, 0, {}), summary(0, 0, {"a": [("c", 0, 1)]})], [node("n1"), pod("a"), other])
    scrape(store)                                # the node reports no pods: no pod list at all
    assert store.verbs.lists == [("Node", "")]
    scrape(store)
    assert store.verbs.lists[1:] == [("Node", ""), ("Pod", "default")]
