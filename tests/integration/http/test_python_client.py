"""The official `kubernetes` Python client against the HTTP API: create,
read, list, replace, patch (strategic and merge), delete, watch resumed
from a resourceVersion, and a relist after a 410. Also: what the client
writes over HTTP, kctl reads over gRPC as the same object."""
from __future__ import annotations

import asyncio

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from machinery.client import Client


def pod(name: str, **labels) -> client.V1Pod:
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels or None),
                        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="busybox:1.36")]))


def namespace(k8s, name: str) -> str:
    client.CoreV1Api(k8s).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def test_create_read_list_replace_patch_delete(k8s):
    v1 = client.CoreV1Api(k8s)
    ns = namespace(k8s, "py-crud")
    created = v1.create_namespaced_pod(ns, pod("a", app="x"))
    v1.create_namespaced_pod(ns, pod("b", app="y"))
    assert created.metadata.uid and created.status.phase == "Pending"
    assert [p.metadata.name for p in v1.list_namespaced_pod(ns, label_selector="app=x").items] == ["a"]
    got = v1.read_namespaced_pod("a", ns)
    got.metadata.labels["tier"] = "front"
    replaced = v1.replace_namespaced_pod("a", ns, got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    stale = got                                                  # still carries the old resourceVersion
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_pod("a", ns, stale)
    assert exc.value.status == 409
    smp = v1.patch_namespaced_pod("a", ns, {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}})
    assert smp.spec.containers[0].image == "busybox:1.37"
    merged = v1.patch_namespaced_pod("a", ns, {"metadata": {"labels": {"tier": None}}},
                                     _content_type="application/merge-patch+json")
    assert merged.metadata.labels == {"app": "x"}
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(ns, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d"),
        spec=client.V1DeploymentSpec(replicas=1, selector=client.V1LabelSelector(match_labels={"app": "d"}),
                                     template=client.V1PodTemplateSpec(
                                         metadata=client.V1ObjectMeta(labels={"app": "d"}),
                                         spec=client.V1PodSpec(containers=[client.V1Container(
                                             name="c", image="nginx:1.27")])))))
    scale = apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 4}})
    assert (scale.spec.replicas, scale.status.selector) == (4, "app=d")
    v1.delete_namespaced_pod("b", ns)
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod("b", ns)
    assert exc.value.status == 404


def test_written_over_http_read_over_grpc_is_the_same_object(k8s, kube):
    v1 = client.CoreV1Api(k8s)
    ns = namespace(k8s, "py-grpc")
    created = v1.create_namespaced_pod(ns, pod("same", app="z"))

    async def read():
        async with Client(kube.apiserver.target) as c:
            return await c.get("Pod", "same", ns)
    over_grpc = asyncio.run(read())
    assert over_grpc.metadata.resource_version == created.metadata.resource_version
    assert over_grpc.metadata.uid == created.metadata.uid
    assert dict(over_grpc.metadata.labels) == {"app": "z"}


def test_watch_resumes_from_a_resource_version_and_relists_after_410(k8s, kube):
    v1 = client.CoreV1Api(k8s)
    ns = namespace(k8s, "py-watch")
    v1.create_namespaced_pod(ns, pod("w1"))
    rv = v1.list_namespaced_pod(ns).metadata.resource_version
    v1.create_namespaced_pod(ns, pod("w2"))
    v1.delete_namespaced_pod("w1", ns)
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", "w2"), ("DELETED", "w1")]

    kube.etcd.compact()
    kube.apiserver.restart()             # its watch cache starts after rv: rv is served from etcd, compacted
    with pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(v1.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=5):
            pass
    assert exc.value.status == 410
    fresh = v1.list_namespaced_pod(ns)                                  # relist, then watch from there
    assert [p.metadata.name for p in fresh.items] == ["w2"]
    v1.create_namespaced_pod(ns, pod("w3"))
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=fresh.metadata.resource_version,
                       timeout_seconds=5):
        assert (ev["type"], ev["object"].metadata.name) == ("ADDED", "w3")
        w.stop()
