"""Builders for hollow nodes and pending pods (tests and bench/scheduler.py).

A hollow node is only a Node object: capacity/allocatable and Ready=True.
No agent runs behind it; the scheduler only binds.
"""
from __future__ import annotations

from machinery import kinds
from machinery.pb import core_pb2, meta_pb2


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
         labels: dict | None = None, taints: list[tuple[str, str, str]] | None = None,
         ready: str = "True", unschedulable: bool = False) -> core_pb2.Node:
    n = kinds.new("Node")
    n.metadata.name = name
    n.metadata.labels["kubernetes.io/hostname"] = name
    n.metadata.labels.update(labels or {})
    n.spec.unschedulable = unschedulable
    for key, value, effect in taints or ():
        n.spec.taints.add(key=key, value=value, effect=effect)
    res = {"cpu": cpu, "memory": memory, "pods": pods}
    n.status.capacity.update(res)
    n.status.allocatable.update(res)
    if ready is not None:
        n.status.conditions.add(type="Ready", status=ready, reason="KubeletReady" if ready == "True" else "")
    return n


def pod(name: str, *, namespace: str = "default", cpu: str = "", memory: str = "",
        node_selector: dict | None = None, tolerations: list[dict] | None = None,
        owner_uid: str = "", uid: str = "", node_name: str = "", scheduler_name: str = "",
        labels: dict | None = None, containers: int = 1) -> core_pb2.Pod:
    p = kinds.new("Pod")
    p.metadata.name = name
    p.metadata.namespace = namespace
    p.metadata.uid = uid or f"uid-{namespace}-{name}"
    p.metadata.labels.update(labels or {})
    if owner_uid:
        p.metadata.owner_references.append(meta_pb2.OwnerReference(
            api_version="apps/v1", kind="ReplicaSet", name="rs-" + owner_uid, uid=owner_uid,
            controller=True))
    p.spec.node_name = node_name
    p.spec.scheduler_name = scheduler_name
    p.spec.node_selector.update(node_selector or {})
    for t in tolerations or ():
        p.spec.tolerations.add(**t)
    for i in range(containers):
        c = p.spec.containers.add(name=f"c{i}", image="busybox")
        if cpu:
            c.resources.requests["cpu"] = cpu
        if memory:
            c.resources.requests["memory"] = memory
    return p


def require(p: core_pb2.Pod, *terms: list[tuple[str, str, list[str]]]) -> core_pb2.Pod:
    """Add required node affinity: each term is a list of (key, op, values)."""
    ns = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    for term in terms:
        t = ns.node_selector_terms.add()
        for key, op, values in term:
            t.match_expressions.add(key=key, operator=op, values=values)
    return p


def prefer(p: core_pb2.Pod, weight: int, exprs: list[tuple[str, str, list[str]]]) -> core_pb2.Pod:
    t = p.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution.add(weight=weight)
    for key, op, values in exprs:
        t.preference.match_expressions.add(key=key, operator=op, values=values)
    return p
