"""Resource arithmetic: pod requests and node allocatable as integers
(milli-CPU, bytes, pod count), via machinery/quantity."""
from __future__ import annotations

from functools import lru_cache

from machinery import quantity
from machinery.pb import core_pb2

# Quantity strings repeat endlessly ("100m", "128Mi"); parse each once.
milli_value = lru_cache(maxsize=4096)(quantity.milli_value)
value = lru_cache(maxsize=4096)(quantity.value)

# kube-scheduler scores pods without requests as if they asked for this much
# (pkg/scheduler/util: DefaultMilliCPURequest, DefaultMemoryRequest).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
DEFAULT_PODS = 0        # allocatable "pods" absent: nothing fits, like Kubernetes


def pod_requests(pod: core_pb2.Pod) -> tuple[int, int]:
    """(milli-CPU, memory bytes) requested: containers summed (no init
    containers in our API)."""
    cpu = mem = 0
    for c in pod.spec.containers:
        req = c.resources.requests
        if req:
            q = req.get("cpu")
            if q:
                cpu += milli_value(q)
            q = req.get("memory")
            if q:
                mem += value(q)
    return cpu, mem


def node_allocatable(node: core_pb2.Node) -> tuple[int, int, int]:
    """(milli-CPU, memory bytes, pods); allocatable, else capacity."""
    alloc = node.status.allocatable or node.status.capacity
    cpu = milli_value(alloc["cpu"]) if "cpu" in alloc else 0
    mem = value(alloc["memory"]) if "memory" in alloc else 0
    pods = value(alloc["pods"]) if "pods" in alloc else DEFAULT_PODS
    return cpu, mem, pods
