"""Resource arithmetic: pod requests and node allocatable as integers
(milli-CPU, bytes, pod count), via machinery/quantity.

A pod's requests are Kubernetes' effective requests: init containers and
native sidecars count as kube-scheduler counts them (see pod_requests)."""
from __future__ import annotations

from functools import lru_cache

from machinery import quantity
from machinery.initstatus import is_sidecar
from machinery.pb import core_pb2

# Quantity strings repeat endlessly ("100m", "128Mi"); parse each once.
milli_value = lru_cache(maxsize=4096)(quantity.milli_value)
value = lru_cache(maxsize=4096)(quantity.value)

# kube-scheduler scores pods without requests as if they asked for this much
# (pkg/scheduler/util: DefaultMilliCPURequest, DefaultMemoryRequest).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
DEFAULT_PODS = 0        # allocatable "pods" absent: nothing fits, like Kubernetes


def _container(c) -> tuple[int, int, int, int]:
    """(cpu, mem, non-zero cpu, non-zero mem) of one container: a request
    that is absent counts as the default for scoring, one set to 0 stays 0
    (applyNonMissing in component-helpers/resource)."""
    req = c.resources.requests
    if not req:
        return 0, 0, DEFAULT_MILLI_CPU, DEFAULT_MEMORY
    q = req.get("cpu")
    cpu = milli_value(q) if q else 0
    nz_cpu = cpu if q is not None else DEFAULT_MILLI_CPU
    q = req.get("memory")
    mem = value(q) if q else 0
    nz_mem = mem if q is not None else DEFAULT_MEMORY
    return cpu, mem, nz_cpu, nz_mem


def pod_requests(pod: core_pb2.Pod) -> tuple[int, int, int, int]:
    """(milli-CPU, memory bytes, and both with kube-scheduler's non-zero
    defaults per container) the pod asks a node for, computed as Kubernetes'
    PodRequests (component-helpers/resource, KEP-753): the app containers
    and native sidecars summed, or, when larger, the effective init request:
    the largest of what each init container needs while it runs, i.e. its
    own request plus the sidecars started before it."""
    cpu = mem = nz_cpu = nz_mem = 0
    for c in pod.spec.containers:
        c_cpu, c_mem, c_nz_cpu, c_nz_mem = _container(c)
        cpu, mem, nz_cpu, nz_mem = cpu + c_cpu, mem + c_mem, nz_cpu + c_nz_cpu, nz_mem + c_nz_mem
    if not pod.spec.init_containers:
        return cpu, mem, nz_cpu, nz_mem
    tot = [cpu, mem, nz_cpu, nz_mem]
    sidecars = [0, 0, 0, 0]
    peak = [0, 0, 0, 0]
    for c in pod.spec.init_containers:
        r = _container(c)
        if is_sidecar(c):
            tot = [t + v for t, v in zip(tot, r)]
            sidecars = [t + v for t, v in zip(sidecars, r)]
            use = sidecars
        else:
            use = [v + w for v, w in zip(r, sidecars)]
        peak = [max(v, w) for v, w in zip(peak, use)]
    cpu, mem, nz_cpu, nz_mem = (max(v, w) for v, w in zip(tot, peak))
    return cpu, mem, nz_cpu, nz_mem


def node_allocatable(node: core_pb2.Node) -> tuple[int, int, int]:
    """(milli-CPU, memory bytes, pods); allocatable, else capacity."""
    alloc = node.status.allocatable or node.status.capacity
    cpu = milli_value(alloc["cpu"]) if "cpu" in alloc else 0
    mem = value(alloc["memory"]) if "memory" in alloc else 0
    pods = value(alloc["pods"]) if "pods" in alloc else DEFAULT_PODS
    return cpu, mem, pods
