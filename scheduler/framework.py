"""Scheduling framework: statuses, the per-pod view plugins read, message
aggregation, and the plugin interfaces.

Shaped after kube-scheduler's framework but vectorised: a filter plugin does
not answer for one node, it answers for every node of the NodeCache at once
with a `FilterResult` — an int array `codes` (0 = passes, k = statuses[k])
over the cache's node slots. Plugins whose answer depends only on the node's
static features (labels, taints, unschedulable, name) are marked `static`;
their combined answer is cached per "pod shape" and node-cache generation, so
the replicas of one ReplicaSet pay for them once. Score plugins return a
float array of 0-100 over the candidate node slots they are given.

Everything here is synchronous and runs on the scheduler's event loop
thread; no awaits happen while one pod is being decided, so the cache a
decision reads is consistent.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from machinery.pb import core_pb2
from scheduler import resources

DEFAULT_SCHEDULER = "default-scheduler"
OUR_NAMES = frozenset({"", DEFAULT_SCHEDULER, "kctl-scheduler"})
NO_NODE_AVAILABLE = "0/{} nodes are available"


class Code(enum.IntEnum):
    SUCCESS = 0
    UNSCHEDULABLE = 1                    # might fit after something changes (resources)
    UNSCHEDULABLE_AND_UNRESOLVABLE = 2   # node features exclude it (taints, affinity)
    ERROR = 3


@dataclass(frozen=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code == Code.SUCCESS

    def message(self) -> str:
        return ", ".join(self.reasons)


SUCCESS = Status()


@dataclass
class FilterResult:
    """Per node slot: codes[i] == 0 passes, else statuses[codes[i]] says why.
    statuses[0] is always SUCCESS."""
    codes: np.ndarray
    statuses: list[Status]

    def status_at(self, i: int) -> Status:
        return self.statuses[int(self.codes[i])]


@dataclass
class PodInfo:
    """What the plugins need of a pod, parsed once per pod version."""
    pod: core_pb2.Pod
    key: str                      # namespace/name
    uid: str
    cpu: int                      # milli-cores, containers summed
    mem: int                      # bytes
    nz_cpu: int                   # with kube-scheduler's non-zero defaults, for scoring
    nz_mem: int
    owner_uid: str                # the controller ownerReference's uid, or ""
    priority: int
    shape: bytes = b""            # identity of the static-filter inputs
    attempts: int = 0
    first_seen: float = 0.0       # monotonic time the scheduler first saw the pod

    @property
    def namespace(self) -> str:
        return self.pod.metadata.namespace

    @property
    def name(self) -> str:
        return self.pod.metadata.name


def pod_key(pod: core_pb2.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def controller_uid(pod: core_pb2.Pod) -> str:
    for ref in pod.metadata.owner_references:
        if ref.HasField("controller") and ref.controller:
            return ref.uid
    return ""


def pod_info(pod: core_pb2.Pod) -> PodInfo:
    cpu, mem = resources.pod_requests(pod)
    spec = pod.spec
    shape = spec.node_name.encode()
    if spec.node_selector:
        shape += b"|s" + ",".join(f"{k}={v}" for k, v in sorted(spec.node_selector.items())).encode()
    if spec.HasField("affinity"):
        shape += b"|a" + spec.affinity.SerializeToString(deterministic=True)
    if spec.tolerations:
        shape += b"|t" + b"".join(t.SerializeToString(deterministic=True) for t in spec.tolerations)
    return PodInfo(
        pod=pod, key=pod_key(pod), uid=pod.metadata.uid, cpu=cpu, mem=mem,
        nz_cpu=cpu or resources.DEFAULT_MILLI_CPU, nz_mem=mem or resources.DEFAULT_MEMORY,
        owner_uid=controller_uid(pod),
        priority=spec.priority if spec.HasField("priority") else 0,
        shape=shape)


def is_ours(pod: core_pb2.Pod) -> bool:
    return pod.spec.scheduler_name in OUR_NAMES


def needs_scheduling(pod: core_pb2.Pod) -> bool:
    return (not pod.spec.node_name and is_ours(pod)
            and not pod.metadata.HasField("deletion_timestamp")
            and pod.status.phase not in ("Succeeded", "Failed"))


def aggregate_message(num_nodes: int, reason_counts: dict[str, int]) -> str:
    """kube-scheduler's FitError message: `0/N nodes are available: ` and the
    histogram of reasons as "<count> <reason>", sorted as strings (Go's
    sort.Strings, i.e. by code point), joined by ", ", ending with "."."""
    msg = NO_NODE_AVAILABLE.format(num_nodes) + ":"
    parts = sorted(f"{n} {r}" for r, n in reason_counts.items() if n)
    if parts:
        msg += " " + ", ".join(parts) + "."
    elif num_nodes == 0:
        msg += " no nodes available to schedule pods."
    return msg


class FilterPlugin:
    """A filter answers for all node slots at once (see module docstring)."""
    name = "Filter"
    static = True       # depends only on node features, cacheable per pod shape

    def filter(self, pod: PodInfo, cache) -> FilterResult:   # pragma: no cover - interface
        raise NotImplementedError

    def filter_node(self, pod: PodInfo, cache, node_name: str) -> Status:
        """The answer for one node (tests, decision records)."""
        return self.filter(pod, cache).status_at(cache.index[node_name])


class ScorePlugin:
    """score() returns 0-100 (float array) for the given candidate slots."""
    name = "Score"

    def score(self, pod: PodInfo, cache, idx: np.ndarray) -> np.ndarray:   # pragma: no cover
        raise NotImplementedError


def single_reason(fail: np.ndarray, status: Status) -> FilterResult:
    """Helper for filters with one fixed reason."""
    return FilterResult(fail.astype(np.int32), [SUCCESS, status])


def normalize(raw: np.ndarray) -> np.ndarray:
    """kube-scheduler's DefaultNormalizeScore: scale so the best is 100."""
    top = raw.max() if raw.size else 0
    if top <= 0:
        return np.zeros_like(raw, dtype=np.float64)
    return raw * (100.0 / top)


@dataclass
class Weights:
    least_allocated: float = 1.0
    balanced_allocation: float = 1.0
    node_affinity: float = 2.0
    owner_spread: float = 2.0


@dataclass
class Config:
    percentage_of_nodes_to_score: int = 0     # 0 = adaptive, like kube-scheduler
    weights: Weights = field(default_factory=Weights)
    batch_size: int = 128                     # bindings per BindBatch (etcd txn limit)
    binds_in_flight: int = 2                  # BindBatch calls outstanding at once
