"""Minimal valid objects of every kind kctl serves, for checks (tests and benchmarks)."""
from __future__ import annotations


def new_object(kind: str, name: str, namespace: str = "", *, labels: dict | None = None, **_):
    """A minimal valid object of `kind` (every kind kctl serves), for tests."""
    from machinery import kinds
    obj = kinds.new(kind)
    obj.metadata.name = name
    info = kinds.BY_KIND[kind]
    if info.namespaced:
        obj.metadata.namespace = namespace or "default"
    for k, v in (labels or {}).items():
        obj.metadata.labels[k] = v
    if kind == "Pod":
        obj.spec.containers.add(name="main", image="busybox:1.36", command=["sleep", "3600"])
    elif kind in ("ReplicaSet", "Deployment"):
        obj.spec.replicas = 1
        obj.spec.selector.match_labels["app"] = name
        obj.spec.template.metadata.labels["app"] = name
        obj.spec.template.spec.containers.add(name="main", image="busybox:1.36")
    elif kind == "Service":
        obj.spec.selector["app"] = name
        obj.spec.ports.add(name="http", port=80)
    elif kind == "Endpoints":
        subset = obj.subsets.add()
        subset.addresses.add(ip="10.244.0.5")
        subset.ports.add(name="http", port=8080, protocol="TCP")
    elif kind == "Event":
        obj.involved_object.kind = "Pod"
        obj.involved_object.name = "x"
        obj.involved_object.namespace = obj.metadata.namespace
        obj.reason, obj.message, obj.type = "Tested", "a test event", "Normal"
        obj.source.component = "tests"
    elif kind == "Lease":
        obj.spec.holder_identity = "tests"
        obj.spec.lease_duration_seconds = 15
    elif kind == "Node":
        obj.spec.pod_cidr = "10.244.1.0/24"
    return obj
