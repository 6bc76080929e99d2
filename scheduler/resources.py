"""Resource arithmetic: pod requests and node allocatable as integers
(milli-CPU, bytes, pod count), via machinery/quantity."""
from __future__ import annotations

from machinery.pb import core_pb2

try:  # machinery/quantity.py is written by another engineer
    from machinery.quantity import milli_value, value
except ImportError:  # pragma: no cover - fallback until it lands
    import math
    from decimal import Decimal

    _SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
               "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
               "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}

    def _dec(s: str) -> Decimal:
        s = str(s).strip()
        for suf in sorted(_SUFFIX, key=len, reverse=True):
            if suf and s.endswith(suf):
                return Decimal(s[: -len(suf)]) * Decimal(_SUFFIX[suf])
        return Decimal(s)

    def milli_value(s) -> int:
        return int(math.ceil(_dec(s) * 1000))

    def value(s) -> int:
        return int(math.ceil(_dec(s)))

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
