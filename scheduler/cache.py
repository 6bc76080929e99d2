"""The scheduler's node cache: nodes as rows of numpy arrays.

Each node owns a slot i; allocatable and requested CPU (milli), memory
(bytes) and pod count live in int64 arrays indexed by slot, so resource fit
for all nodes is one vectorised expression and assuming a pod is three
scalar additions. Static node features are stored so filters can run once
per distinct value rather than once per node:

* taints: every node points at a "taint group" (the tuple of its
  NoSchedule/NoExecute taints, plus an implicit node.kubernetes.io/not-ready
  or /unreachable taint when its Ready condition is not True, as the node
  lifecycle controller would add). Thousands of nodes share a few groups.
* labels: one int32 column per label key holding a value id per slot (-1 =
  absent); a selector requirement is an np.isin over that column.

`generation` changes whenever a static feature of any node changes (added,
removed, labels, taints, readiness, unschedulable); filter results that
depend only on those are cached by the framework under it.

Pods: every pod bound to a node (seen through the watch) or assumed by the
scheduler (decided, binding in flight) is accounted on its node. `assume`
before binding, `forget` when the binding fails, `add_pod` when the bound
pod arrives through the watch (confirming an assumption), `remove_pod` on
deletion or when it terminates. Pods bound to nodes not (yet) in the cache
are kept as orphans and attached when the node appears. A preemptor
waiting for its victims holds a `nominate()`d reservation on its node
(released before each new attempt).

Every pod also feeds the PodIndex (podindex.py): pods per slot by label
query and the existing pods' affinity terms, for topology spread and
inter-pod affinity; `slot_pods` lists the pods of a slot for preemption.

Not thread-safe: used only from the scheduler's event loop, never across an
await in the middle of an update.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from machinery.pb import core_pb2
from scheduler import podindex, resources

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
FILTER_EFFECTS = ("NoSchedule", "NoExecute")

_INT_ARRAYS = ("alloc_cpu", "alloc_mem", "alloc_pods", "req_cpu", "req_mem", "req_pods",
               "nz_cpu", "nz_mem", "free_cpu", "free_mem", "free_pods")   # free = alloc - req
_FLOAT_ARRAYS = ("inv_cpu", "inv_mem")   # 1/allocatable (huge when 0), for scores
_HUGE = 1e30


def same_placement(a: core_pb2.Pod, b: core_pb2.Pod) -> bool:
    """Nothing the pod index keeps differs (labels, namespace, terminating,
    affinity terms)."""
    return (a.metadata.labels == b.metadata.labels
            and a.metadata.HasField("deletion_timestamp") == b.metadata.HasField("deletion_timestamp")
            and a.spec.affinity == b.spec.affinity)


@dataclass(slots=True)
class PodRecord:
    uid: str
    node: str
    slot: int          # -1 while the node is unknown
    cpu: int
    mem: int
    nz_cpu: int
    nz_mem: int
    owner: str
    assumed: bool
    pod: core_pb2.Pod       # for preemption (priority, start time) and the pod index
    gid: int = 0            # label group (podindex)
    terms: tuple = ()       # affinity term keys (podindex)
    nominated: bool = False  # a preemptor's reservation on its nominated node, not bound


def effective_taints(node: core_pb2.Node) -> tuple[tuple[str, str, str], ...]:
    """The taints the filter considers, in node order, plus the implicit
    readiness taint."""
    taints = [(t.key, t.value, t.effect) for t in node.spec.taints if t.effect in FILTER_EFFECTS]
    ready = "Unknown" if node.status.conditions else "False"
    for c in node.status.conditions:
        if c.type == "Ready":
            ready = c.status
            break
    if ready != "True":
        key = NOT_READY if ready == "False" else UNREACHABLE
        if not any(t[0] == key for t in taints):
            taints.append((key, "", "NoSchedule"))
    return tuple(taints)


class NodeCache:
    def __init__(self, capacity: int = 64):
        self.cap = max(1, capacity)
        self.n = 0                                  # slots in use are < n
        self.index: dict[str, int] = {}
        self.names: list[str | None] = []
        self.nodes: list[core_pb2.Node | None] = []
        self._free: list[int] = []
        self.generation = 0
        self.valid = np.zeros(self.cap, dtype=bool)
        self.unschedulable = np.zeros(self.cap, dtype=bool)
        self.taint_group = np.zeros(self.cap, dtype=np.int32)
        for a in _INT_ARRAYS:
            setattr(self, a, np.zeros(self.cap, dtype=np.int64))
        for a in _FLOAT_ARRAYS:
            setattr(self, a, np.zeros(self.cap, dtype=np.float64))
        self.taint_groups: list[tuple] = [()]
        self._taint_group_ids: dict[tuple, int] = {(): 0}
        self.label_cols: dict[str, np.ndarray] = {}
        self.label_ids: dict[str, dict[str, int]] = {}
        self.label_values: dict[str, list[str]] = {}
        self._static_sig: list[tuple | None] = []
        self.pods: dict[str, PodRecord] = {}
        self._orphans: dict[str, set[str]] = {}
        self.owner_counts: dict[str, np.ndarray] = {}
        self.pod_index = podindex.PodIndex(self.cap)
        self.slot_pods: dict[int, set[str]] = {}           # slot -> uids (preemption)
        self.namespace_labels: dict[str, dict] = {}        # fed by the scheduler's namespace informer
        self.unique_labels: dict[str, tuple] = {}          # Snapshot.unique_label's memo

    # ------------------------------------------------------------ nodes

    def __len__(self) -> int:
        return len(self.index)

    def _grow(self) -> None:
        new = self.cap * 2

        def grown(arr, fill=0):
            out = np.full(new, fill, dtype=arr.dtype)
            out[: self.cap] = arr
            return out

        for a in ("valid", "unschedulable", "taint_group", *_INT_ARRAYS, *_FLOAT_ARRAYS):
            setattr(self, a, grown(getattr(self, a)))
        for k, col in self.label_cols.items():
            self.label_cols[k] = grown(col, -1)
        for k, col in self.owner_counts.items():
            self.owner_counts[k] = grown(col)
        self.pod_index.grow(new)
        self.cap = new

    def _slot_for(self, name: str) -> int:
        if self._free:
            i = self._free.pop()
        else:
            if self.n == self.cap:
                self._grow()
            i = self.n
            self.n += 1
            self.names.append(None)
            self.nodes.append(None)
            self._static_sig.append(None)
        self.index[name] = i
        self.names[i] = name
        return i

    def _taint_group_id(self, taints: tuple) -> int:
        gid = self._taint_group_ids.get(taints)
        if gid is None:
            gid = len(self.taint_groups)
            self.taint_groups.append(taints)
            self._taint_group_ids[taints] = gid
        return gid

    def _set_labels(self, i: int, labels) -> None:
        for key in labels:
            if key not in self.label_cols:
                self.label_cols[key] = np.full(self.cap, -1, dtype=np.int32)
                self.label_ids[key] = {}
                self.label_values[key] = []
        for key, col in self.label_cols.items():
            v = labels.get(key)
            if v is None:
                col[i] = -1
                continue
            ids = self.label_ids[key]
            vid = ids.get(v)
            if vid is None:
                vid = ids[v] = len(self.label_values[key])
                self.label_values[key].append(v)
            col[i] = vid

    def set_node(self, node: core_pb2.Node) -> None:
        """Add or update a node."""
        name = node.metadata.name
        i = self.index.get(name)
        new = i is None
        if new:
            i = self._slot_for(name)
        self.nodes[i] = node
        self.valid[i] = True
        cpu, mem, pods = resources.node_allocatable(node)
        self.alloc_cpu[i], self.alloc_mem[i], self.alloc_pods[i] = cpu, mem, pods
        self.free_cpu[i] = cpu - self.req_cpu[i]
        self.free_mem[i] = mem - self.req_mem[i]
        self.free_pods[i] = pods - self.req_pods[i]
        self.inv_cpu[i] = 1.0 / cpu if cpu > 0 else _HUGE
        self.inv_mem[i] = 1.0 / mem if mem > 0 else _HUGE
        taints = effective_taints(node)
        labels = tuple(sorted(node.metadata.labels.items()))
        sig = (labels, taints, node.spec.unschedulable)
        if sig != self._static_sig[i]:
            self._static_sig[i] = sig
            self.unschedulable[i] = node.spec.unschedulable
            self.taint_group[i] = self._taint_group_id(taints)
            self._set_labels(i, node.metadata.labels)
            self.generation += 1
        if new:
            for uid in self._orphans.pop(name, ()):
                rec = self.pods.get(uid)
                if rec is not None and rec.node == name:
                    rec.slot = i
                    self._apply(rec, 1)

    def remove_node(self, name: str) -> None:
        i = self.index.pop(name, None)
        if i is None:
            return
        for uid, rec in self.pods.items():
            if rec.slot == i:
                rec.slot = -1
                self._orphans.setdefault(name, set()).add(uid)
        self.valid[i] = False
        self.unschedulable[i] = False
        self.taint_group[i] = 0
        for a in (*_INT_ARRAYS, *_FLOAT_ARRAYS):
            getattr(self, a)[i] = 0
        for col in self.label_cols.values():
            col[i] = -1
        for col in self.owner_counts.values():
            col[i] = 0
        self.pod_index.clear_slot(i)
        self.slot_pods.pop(i, None)
        self.names[i] = None
        self.nodes[i] = None
        self._static_sig[i] = None
        self._free.append(i)
        self.generation += 1

    # ------------------------------------------------------------- pods

    def _apply(self, rec: PodRecord, sign: int) -> None:
        i = rec.slot
        if i < 0:
            return
        self.apply_resources(rec, sign)
        self.pod_index.apply(i, rec.gid, rec.terms, sign, self._parse_term)
        uids = self.slot_pods.setdefault(i, set())
        if sign > 0:
            uids.add(rec.uid)
        else:
            uids.discard(rec.uid)
        if rec.owner:
            col = self.owner_counts.get(rec.owner)
            if col is None:
                col = self.owner_counts[rec.owner] = np.zeros(self.cap, dtype=np.int32)
            col[i] += sign
            if sign < 0 and not col.any():
                del self.owner_counts[rec.owner]

    def apply_resources(self, rec: PodRecord, sign: int) -> None:
        """Only the resource rows of rec's slot (also preemption's dry runs:
        release victims with -1, restore them with +1)."""
        i = rec.slot
        self.req_cpu[i] += sign * rec.cpu
        self.req_mem[i] += sign * rec.mem
        self.req_pods[i] += sign
        self.free_cpu[i] -= sign * rec.cpu
        self.free_mem[i] -= sign * rec.mem
        self.free_pods[i] -= sign
        self.nz_cpu[i] += sign * rec.nz_cpu
        self.nz_mem[i] += sign * rec.nz_mem

    def _parse_term(self, key: tuple) -> podindex.Term:
        kind, weight, ns, raw = key
        return podindex.parse_term(core_pb2.PodAffinityTerm.FromString(raw), ns)

    def _add(self, uid: str, node: str, cpu, mem, nz_cpu, nz_mem, owner, assumed, pod, memo=None) -> None:
        slot = self.index.get(node, -1)
        if memo is not None and "cache" in memo:      # a PodInfo assumed again: parsed once
            gid, terms = memo["cache"]
        else:
            gid, terms = self.pod_index.group_of(pod), podindex.term_keys(pod)
            if memo is not None:
                memo["cache"] = (gid, terms)
        rec = PodRecord(uid, node, slot, cpu, mem, nz_cpu, nz_mem, owner, assumed, pod, gid, terms)
        self.pods[uid] = rec
        if slot < 0:
            self._orphans.setdefault(node, set()).add(uid)
        else:
            self._apply(rec, 1)

    def assume(self, pi, node: str) -> None:
        """Account a pod the scheduler decided to bind (pi: framework.PodInfo)."""
        self.remove_pod(pi.uid)
        self._add(pi.uid, node, pi.cpu, pi.mem, pi.nz_cpu, pi.nz_mem, pi.owner_uid, True, pi.pod, pi.parsed)

    def forget(self, uid: str) -> None:
        """The binding failed: release an assumed pod (no-op if confirmed)."""
        rec = self.pods.get(uid)
        if rec is not None and rec.assumed:
            self.remove_pod(uid)

    def is_assumed(self, uid: str) -> bool:
        rec = self.pods.get(uid)
        return rec is not None and rec.assumed and not rec.nominated

    def nominate(self, pi, node: str) -> None:
        """Reserve room for a preemptor on its nominated node while its
        victims terminate, so lesser pods do not take it."""
        self.assume(pi, node)
        self.pods[pi.uid].nominated = True

    def release_nomination(self, uid: str) -> str | None:
        """Drop a preemptor's reservation (before it is decided again);
        the node it held, or None."""
        rec = self.pods.get(uid)
        if rec is None or not rec.nominated:
            return None
        self.remove_pod(uid)
        return rec.node

    def add_pod(self, pod: core_pb2.Pod) -> None:
        """A pod with spec.nodeName from the watch (added or updated)."""
        from scheduler.framework import controller_uid   # avoid an import cycle
        uid = pod.metadata.uid
        node = pod.spec.node_name
        if pod.status.phase in ("Succeeded", "Failed"):
            self.remove_pod(uid)
            return
        rec = self.pods.get(uid)
        if rec is not None and rec.node == node and (rec.pod is pod or same_placement(rec.pod, pod)):
            rec.assumed = rec.nominated = False
            rec.pod = pod
            return
        cpu, mem, nz_cpu, nz_mem = resources.pod_requests(pod)
        self.remove_pod(uid)
        self._add(uid, node, cpu, mem, nz_cpu, nz_mem, controller_uid(pod), False, pod)

    def remove_pod(self, uid: str) -> None:
        rec = self.pods.pop(uid, None)
        if rec is None:
            return
        if rec.slot < 0:
            s = self._orphans.get(rec.node)
            if s is not None:
                s.discard(uid)
        else:
            self._apply(rec, -1)

    # ---------------------------------------------------------- helpers

    def owner_column(self, owner: str) -> np.ndarray | None:
        return self.owner_counts.get(owner)

    def node_summary(self, name: str) -> dict:
        i = self.index[name]
        return {"cpu": (int(self.req_cpu[i]), int(self.alloc_cpu[i])),
                "memory": (int(self.req_mem[i]), int(self.alloc_mem[i])),
                "pods": (int(self.req_pods[i]), int(self.alloc_pods[i]))}
