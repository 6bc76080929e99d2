"""Snapshot: the narrow, read-only view of the nodes that plugins use.

kube-scheduler hands plugins a Snapshot of NodeInfos (node, allocatable,
requested, pods). Ours is vectorised: a node is a *slot* (cache.py) and
every per-node quantity is a numpy array over the slots `0..num_slots-1`
(slots of removed nodes are not `valid()` and hold zeros), so a plugin
answers for all nodes, or for the candidate slots `idx` it is given, with a
few array expressions. `node_info(name)` gives the per-node view (a
NodeInfo) where one node is wanted.

The Snapshot reads the NodeCache live rather than copying it: a decision
runs synchronously on the event loop, so nothing changes under it, and
copying 5,000 rows per pod would cost more than the decision. Arrays
returned are views — plugins must not write to them.

Pods: `pod_counts(query)` gives the pods per slot matching a podindex.Query
(kept incrementally by the cache), `domain_sums` / `domain_counts` turn a
per-slot array into per-topology-domain sums with one np.bincount,
`pod_terms()` the existing pods' affinity terms, `pods_on(slot)` the pods of
a node (preemption), `simulate()` releases and restores a pod's resources
for preemption's dry runs.

Resources are integers: milli-CPU, memory bytes, pod count. `free()` is
allocatable - requested (kept up to date by the cache); `nonzero_requested()`
counts pods without requests at kube-scheduler's defaults (100m, 200Mi), for
scoring; `inverse_allocatable()` is 1/allocatable (huge where it is 0), so
scores multiply instead of divide.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np

from machinery.pb import core_pb2


class Resources(NamedTuple):
    cpu: Any         # milli-CPU   (an int, or an array over slots)
    memory: Any      # bytes
    pods: Any        # count


@dataclass(frozen=True)
class NodeInfo:
    """One node as plugins see it (kube-scheduler's NodeInfo)."""
    node: core_pb2.Node
    slot: int
    allocatable: Resources
    requested: Resources

    @property
    def name(self) -> str:
        return self.node.metadata.name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.node.metadata.labels


class Snapshot:
    __slots__ = ("_cache",)

    def __init__(self, cache):
        self._cache = cache

    # ------------------------------------------------------------ slots

    @property
    def num_slots(self) -> int:
        """Length of every per-slot array."""
        return self._cache.n

    def __len__(self) -> int:
        """Number of nodes."""
        return len(self._cache)

    @property
    def generation(self) -> int:
        """Changes whenever a static feature of any node changes."""
        return self._cache.generation

    @property
    def names(self) -> list[str | None]:
        """Node name per slot (None for a free slot)."""
        return self._cache.names

    def slot(self, name: str) -> int | None:
        return self._cache.index.get(name)

    def valid(self) -> np.ndarray:
        return self._cache.valid[: self._cache.n]

    def node_info(self, name: str) -> NodeInfo:
        c = self._cache
        i = c.index[name]
        return NodeInfo(c.nodes[i], i,
                        Resources(int(c.alloc_cpu[i]), int(c.alloc_mem[i]), int(c.alloc_pods[i])),
                        Resources(int(c.req_cpu[i]), int(c.req_mem[i]), int(c.req_pods[i])))

    # --------------------------------------------------- static features

    def unschedulable(self) -> np.ndarray:
        return self._cache.unschedulable[: self._cache.n]

    @property
    def taint_groups(self) -> list[tuple]:
        """Distinct (key, value, effect) tuples of NoSchedule/NoExecute taints
        (the readiness taint included), by group id."""
        return self._cache.taint_groups

    def taint_group(self) -> np.ndarray:
        """Taint group id per slot."""
        return self._cache.taint_group[: self._cache.n]

    def label_column(self, key: str) -> np.ndarray:
        """Value id of label `key` per slot, -1 where absent."""
        col = self._cache.label_cols.get(key)
        if col is None:
            return np.full(self._cache.n, -1, dtype=np.int32)
        return col[: self._cache.n]

    def label_ids(self, key: str) -> Mapping[str, int]:
        """Value → id for label `key`."""
        return self._cache.label_ids.get(key, {})

    def label_values(self, key: str) -> list[str]:
        """Id → value for label `key`."""
        return self._cache.label_values.get(key, [])

    def unique_label(self, key: str) -> bool:
        """Every node having label `key` has its own value (kubernetes.io/hostname):
        a domain is then one node. Cached per generation."""
        memo = self._cache.unique_labels
        hit = memo.get(key)
        if hit is not None and hit[0] == self.generation:
            return hit[1]
        col = self.label_column(key)
        present = col[(col >= 0) & self.valid()]
        unique = len(np.unique(present)) == len(present)
        memo[key] = (self.generation, unique)
        return unique

    def domain_counts(self, key: str, per_slot: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per slot: the sum of `per_slot` over the slot's domain (the slots
        sharing its value of `key`, within `mask`); 0 where the key is absent.
        One node per domain (unique_label) needs no bincount."""
        col = self.label_column(key)
        has = (col >= 0) & self.valid()
        if self.unique_label(key):
            return np.where(has & mask if mask is not None else has, per_slot, 0)
        _, dom = self.domain_sums(key, per_slot, mask)
        return np.where(has, dom[np.maximum(col, 0)], 0)

    def domain_sums(self, key: str, per_slot: np.ndarray, mask: np.ndarray | None = None):
        """(label column of `key`, sum of `per_slot` per value id over the
        valid slots that have the label and pass `mask`): counts per
        topology domain, one np.bincount."""
        col = self.label_column(key)
        take = (col >= 0) & self.valid()
        if mask is not None:
            take &= mask
        nvals = max(len(self.label_values(key)), 1)       # never empty: col[i] may index it
        return col, np.bincount(col[take], weights=per_slot[take], minlength=nvals)

    # -------------------------------------------------------- resources

    def _view(self, cpu, memory, pods) -> Resources:
        n = self._cache.n
        return Resources(cpu[:n], memory[:n], None if pods is None else pods[:n])

    def allocatable(self) -> Resources:
        c = self._cache
        return self._view(c.alloc_cpu, c.alloc_mem, c.alloc_pods)

    def requested(self) -> Resources:
        """Sum over the pods bound or assumed on each node."""
        c = self._cache
        return self._view(c.req_cpu, c.req_mem, c.req_pods)

    def free(self) -> Resources:
        c = self._cache
        return self._view(c.free_cpu, c.free_mem, c.free_pods)

    def nonzero_requested(self) -> Resources:
        c = self._cache
        return self._view(c.nz_cpu, c.nz_mem, c.req_pods)

    def inverse_allocatable(self) -> Resources:
        """1 / allocatable cpu and memory (pods: None)."""
        c = self._cache
        return self._view(c.inv_cpu, c.inv_mem, None)

    # ------------------------------------------------------------- pods

    def owner_counts(self, owner_uid: str) -> np.ndarray | None:
        """Pods per slot whose controller ownerReference has this uid
        (assumed ones included); None when there are none."""
        col = self._cache.owner_counts.get(owner_uid)
        return None if col is None else col[: self._cache.n]

    def pod_counts(self, query) -> np.ndarray:
        """Pods per slot matching a podindex.Query (namespaces, selectors),
        assumed ones included, terminating ones not."""
        return self._cache.pod_index.counts(query)[: self._cache.n]

    def pod_terms(self) -> dict:
        """The existing pods' affinity terms: key -> podindex.TermEntry
        (kind, weight, parsed term, pods carrying it per slot)."""
        return self._cache.pod_index.terms

    @property
    def term_version(self) -> int:
        """Changes whenever a distinct existing-pod term appears or goes."""
        return self._cache.pod_index.term_version

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self._cache.namespace_labels.get(namespace, {})

    def namespaces_matching(self, selector) -> set[str]:
        """Names of the known namespaces whose labels match a LabelSelector."""
        return {ns for ns, labels in self._cache.namespace_labels.items() if selector.matches(labels)}

    def simulate(self, rec, sign: int) -> None:
        """Release (-1) or restore (+1) a pod's resources on its slot, for
        preemption's dry runs; every release is restored before the
        decision ends."""
        self._cache.apply_resources(rec, sign)

    def pods_on(self, slot: int) -> list:
        """The cache's PodRecords on a slot (preemption)."""
        c = self._cache
        return [c.pods[u] for u in c.slot_pods.get(slot, ())]
