"""Scheduling framework: statuses, the per-pod view plugins read, message
aggregation, and the plugin interfaces (kube-scheduler's framework/interface.go).

Shaped after kube-scheduler's framework but vectorised: a filter plugin does
not answer for one node, it answers for every node slot of the Snapshot
(snapshot.py) at once with a `FilterResult` — an int array `codes` (0 =
passes, k = statuses[k]). Plugins whose answer depends only on the pod's
shape and the nodes' static features (labels, taints, unschedulable, name)
are marked `static`; their answers are cached per "pod shape" and node-cache
generation (ShapeCache), so the replicas of one ReplicaSet pay for them
once. A score plugin returns a float array of 0-100 over the candidate slots
it is given (a batch, never a per-node Python loop).

Extension points, in cycle order (a plugin implements one or more):

* PreFilter(state, pod, snapshot) -> Status — once per attempt; may write to
  the CycleState; a non-success status makes the pod unschedulable on every
  node ("0/N nodes are available: <message>."). Its extensions add_pod /
  remove_pod adjust that state when preemption simulates victims.
* Filter(state, pod, snapshot) -> FilterResult — every node slot at once.
* PostFilter(state, pod, snapshot, result) — only when no node fits;
  DefaultPreemption picks victims and nominates a node.
* PreScore(state, pod, snapshot, idx) -> Status — once, over the candidates;
  computes what Score needs and writes it to the state; SKIP skips the
  plugin's Score (its row is all zeros).
* Score(state, pod, snapshot, idx) -> array of 0-100, weighted by the profile.
* PreBind(state, pod, node) -> Status, or an awaitable of one — after the pod
  is assumed on the node; an awaitable (volume binding waits for the PV
  controller) makes the binding asynchronous: Bind runs when all succeeded,
  a failure is reported through the Binder's result callback.
* Bind(state, pod, node, annotations, ctx) -> Status — the first plugin not
  answering SKIP binds.

Every plugin is a class with a `name` and a factory `new(args, handle)`
(kube-scheduler's PluginFactory); `args` is its pluginConfig entry, whose
keys it declares in `ARGS`. The registry (runtime.py) maps names to these
classes, profiles (config.py) say which run at which point.

Everything here is synchronous and runs on the scheduler's event loop
thread; no awaits happen while one pod is being decided, so the cache a
decision reads is consistent.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

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
    ERROR = 3                            # the attempt fails; the pod backs off
    SKIP = 4                             # PreScore: skip my Score; Bind: not mine


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
SKIP = Status(Code.SKIP)


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
    cpu: int                      # milli-cores, effective request (resources.pod_requests)
    mem: int                      # bytes
    nz_cpu: int                   # with kube-scheduler's non-zero defaults, for scoring
    nz_mem: int
    owner_uid: str                # the controller ownerReference's uid, or ""
    priority: int
    shape: bytes = b""            # identity of the static-filter inputs
    attempts: int = 0
    first_seen: float = 0.0       # monotonic time the scheduler first saw the pod
    parsed: dict = field(default_factory=dict)   # plugins' per-pod parses (constraints, terms)

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
    cpu, mem, nz_cpu, nz_mem = resources.pod_requests(pod)
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
        nz_cpu=nz_cpu, nz_mem=nz_mem,
        owner_uid=controller_uid(pod),
        priority=spec.priority if spec.HasField("priority") else 0,
        shape=shape)


def is_ours(pod: core_pb2.Pod, names=OUR_NAMES) -> bool:
    return pod.spec.scheduler_name in names


def needs_scheduling(pod: core_pb2.Pod, names=OUR_NAMES) -> bool:
    """Pending, not being deleted, and asking for one of `names`."""
    return (not pod.spec.node_name and is_ours(pod, names)
            and not pod.metadata.HasField("deletion_timestamp")
            and pod.status.phase not in ("Succeeded", "Failed"))


def aggregate_message(num_nodes: int, reason_counts: dict[str, int], pre_filter: str = "") -> str:
    """kube-scheduler's FitError message: `0/N nodes are available: ` and the
    histogram of reasons as "<count> <reason>", sorted as strings (Go's
    sort.Strings, i.e. by code point), joined by ", ", ending with "."; or,
    when a PreFilter plugin rejected the pod, its message instead."""
    msg = NO_NODE_AVAILABLE.format(num_nodes) + ":"
    if pre_filter:
        return f"{msg} {pre_filter}."
    parts = sorted(f"{n} {r}" for r, n in reason_counts.items() if n)
    if parts:
        msg += " " + ", ".join(parts) + "."
    elif num_nodes == 0:
        msg += " no nodes available to schedule pods."
    return msg


def single_reason(fail: np.ndarray, status: Status) -> FilterResult:
    """Helper for filters with one fixed reason."""
    return FilterResult(fail.astype(np.int32), [SUCCESS, status])


def normalize(raw: np.ndarray) -> np.ndarray:
    """kube-scheduler's DefaultNormalizeScore: scale so the best is 100."""
    top = raw.max() if raw.size else 0
    if top <= 0:
        return np.zeros_like(raw, dtype=np.float64)
    return raw * (100.0 / top)


# ------------------------------------------------------------------ plugins

class Plugin:
    """Base of every plugin: a name, the pluginConfig args it accepts, and
    the factory the registry calls."""
    name = "Plugin"
    ARGS: frozenset[str] = frozenset()

    @classmethod
    def new(cls, args: dict, handle: "Handle") -> "Plugin":
        """kube-scheduler's PluginFactory; `args` has only keys in ARGS
        (config.py checks them)."""
        return cls()


class PreFilterPlugin(Plugin):
    def pre_filter(self, state, pod: PodInfo, snapshot) -> Status:   # pragma: no cover - interface
        raise NotImplementedError

    # PreFilterExtensions (kube-scheduler's AddPod / RemovePod): preemption
    # simulates adding or removing `rec` (a cache PodRecord) on `slot` by
    # adjusting what pre_filter wrote to a cloned CycleState.
    def add_pod(self, state, pod: PodInfo, rec, slot: int, snapshot) -> None:
        pass

    def remove_pod(self, state, pod: PodInfo, rec, slot: int, snapshot) -> None:
        pass


class FilterPlugin(Plugin):
    """A filter answers for all node slots at once (see module docstring)."""
    static = True       # depends only on the pod's shape and node features: cacheable
    cheap_feasible = False   # feasible() is cheaper than filter() (else the algorithm keeps filter's answer)

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:   # pragma: no cover - interface
        raise NotImplementedError

    def feasible(self, state, pod: PodInfo, snapshot, mask: np.ndarray) -> np.ndarray:
        """mask & passes, without the reasons (a dynamic filter's fast path)."""
        return mask & (self.filter(state, pod, snapshot).codes == 0)

    def filter_node(self, state, pod: PodInfo, snapshot, node_name: str) -> Status:
        """The answer for one node (tests, decision records)."""
        return self.filter(state, pod, snapshot).status_at(snapshot.slot(node_name))


class PostFilterPlugin(Plugin):
    """Runs when no node fits (kube-scheduler's PostFilter): may make room,
    e.g. DefaultPreemption. `result` is the failed ScheduleResult; the
    answer is a PostFilterResult or None (nothing done)."""

    def post_filter(self, state, pod: PodInfo, snapshot, result):   # pragma: no cover - interface
        raise NotImplementedError


class PreScorePlugin(Plugin):
    def pre_score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> Status:   # pragma: no cover
        raise NotImplementedError


class ScorePlugin(Plugin):
    """score() returns 0-100 (float array) for the given candidate slots."""

    def score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> np.ndarray:   # pragma: no cover
        raise NotImplementedError


class PreBindPlugin(Plugin):
    def pre_bind(self, state, pod: PodInfo, node: str):   # pragma: no cover - interface
        """SUCCESS, a failing Status, or an awaitable resolving to one."""
        raise NotImplementedError


class BindPlugin(Plugin):
    def bind(self, state, pod: PodInfo, node: str, annotations: dict, ctx) -> Status:   # pragma: no cover
        raise NotImplementedError


# the configuration's names for the extension points, in cycle order
EXTENSION_POINTS: dict[str, type[Plugin]] = {
    "preFilter": PreFilterPlugin, "filter": FilterPlugin, "postFilter": PostFilterPlugin,
    "preScore": PreScorePlugin,
    "score": ScorePlugin, "preBind": PreBindPlugin, "bind": BindPlugin}


def points_of(cls: type) -> tuple[str, ...]:
    """The extension points a plugin class implements."""
    return tuple(p for p, base in EXTENSION_POINTS.items() if issubclass(cls, base))


@dataclass
class Handle:
    """What the framework gives plugin factories (kube-scheduler's
    framework.Handle): the shared snapshot, for bind plugins the binder, for
    PostFilter plugins the framework (to re-run filters on a simulated
    state), the evictor (the scheduler's graceful pod deletion) and the
    PodDisruptionBudget lister, and the storage listers (claims, volumes,
    classes) volume plugins read."""
    snapshot: Any
    binder: Any = None
    framework: Any = None
    evictor: Any = None
    pdbs: Any = None            # () -> PodDisruptionBudgets, for preemption
    storage: Any = None


class ShapeCache:
    """Values that depend only on a pod's shape and the nodes' static
    features, kept per shape while the snapshot's generation (and slot
    count) stay the same."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._entries: dict[bytes, tuple] = {}

    def get(self, shape: bytes, snapshot, compute: Callable[[], Any]) -> Any:
        hit = self._entries.get(shape)
        gen, n = snapshot.generation, snapshot.num_slots
        if hit is not None and hit[0] == gen and hit[1] == n:
            return hit[2]
        value = compute()
        if len(self._entries) > self.limit:
            self._entries.clear()
        self._entries[shape] = (gen, n, value)
        return value
