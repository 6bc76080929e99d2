"""Pods by labels and by affinity terms, per node slot: what pod topology
spread and inter-pod affinity count, kept so a decision reads arrays instead
of walking pods.

kube-scheduler's PreFilters walk every pod of every node on every attempt.
Here the node cache (cache.py) feeds every bound or assumed pod into a
PodIndex, which keeps:

* label groups: pods with the same namespace and labels (the replicas of
  one template) share a group id; per group, a sparse {slot: count}.
* tracked queries: a `Query` (a namespace set, or None for all, and label
  selectors ANDed) asked for once gets an int32 column of matching pods per
  slot, built from the groups and then kept up to date on every pod add and
  remove (per group, the list of columns it feeds is cached). The least
  recently used queries are dropped beyond MAX_TRACKED.
* affinity terms of existing pods: every distinct (kind, weight, namespace
  of the pod, term) gets a column counting the pods carrying it per slot,
  so the "existing pods' anti-affinity" check and the symmetric scores cost
  one selector match per distinct term, not per pod.

Terminating pods (deletionTimestamp set) are grouped apart and match no
query, as kube-scheduler does not count them for spreading.

Not thread-safe; used only by the cache on the scheduler's event loop.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

import numpy as np

from machinery import selectors
from machinery.selectors import LabelSelector

MAX_TRACKED = 512
# kinds of existing pods' terms
ANTI_REQUIRED, ANTI_PREFERRED, AFFINITY_REQUIRED, AFFINITY_PREFERRED = "anti", "anti-pref", "aff", "aff-pref"


class Query(NamedTuple):
    """Pods in `namespaces` (None: any) whose labels match every selector."""
    namespaces: frozenset | None
    selectors: tuple[LabelSelector, ...]

    def matches(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return all(s.matches(labels) for s in self.selectors)


@dataclass(frozen=True)
class Term:
    """A parsed PodAffinityTerm of a pod in `owner_ns`: Kubernetes'
    AffinityTerm.Matches(pod, nsLabels)."""
    selector: LabelSelector
    namespaces: frozenset
    ns_selector: LabelSelector
    topology_key: str

    def matches(self, namespace: str, labels: Mapping[str, str], ns_labels: Mapping[str, str]) -> bool:
        if namespace not in self.namespaces and not self.ns_selector.matches(ns_labels):
            return False
        return self.selector.matches(labels)


def parse_term(term, owner_ns: str) -> Term:
    """A PodAffinityTerm with Kubernetes' defaults: no namespaces and no
    namespaceSelector mean the pod's own namespace; a nil namespaceSelector
    matches nothing, an empty one every namespace."""
    ns_sel = selectors.from_field(term, "namespace_selector")
    namespaces = frozenset(term.namespaces)
    if not namespaces and not term.HasField("namespace_selector"):
        namespaces = frozenset((owner_ns,))
    return Term(selectors.from_field(term, "label_selector"), namespaces, ns_sel, term.topology_key)


@dataclass
class TermEntry:
    kind: str
    weight: int
    term: Term
    col: np.ndarray
    total: int = 0


@dataclass
class _Tracked:
    query: Query
    col: np.ndarray


@dataclass
class _Group:
    namespace: str
    labels: dict
    live: bool                                   # not terminating
    slots: dict = field(default_factory=dict)    # slot -> pods


def term_keys(pod) -> tuple:
    """Keys of the pod's affinity terms (kind, weight, namespace, term bytes)."""
    aff = pod.spec.affinity
    if not (aff.HasField("pod_affinity") or aff.HasField("pod_anti_affinity")):
        return ()
    ns = pod.metadata.namespace
    out = []
    for kind, weighted, terms in (
            (ANTI_REQUIRED, False, aff.pod_anti_affinity.required_during_scheduling_ignored_during_execution),
            (ANTI_PREFERRED, True, aff.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution),
            (AFFINITY_REQUIRED, False, aff.pod_affinity.required_during_scheduling_ignored_during_execution),
            (AFFINITY_PREFERRED, True, aff.pod_affinity.preferred_during_scheduling_ignored_during_execution)):
        for t in terms:
            if weighted:
                out.append((kind, t.weight, ns, t.pod_affinity_term.SerializeToString(deterministic=True)))
            else:
                out.append((kind, 1, ns, t.SerializeToString(deterministic=True)))
    return tuple(out)


class PodIndex:
    def __init__(self, capacity: int):
        self.cap = capacity
        self._group_ids: dict[tuple, int] = {}
        self.groups: list[_Group] = []
        self._tracked: OrderedDict[Query, _Tracked] = OrderedDict()
        self._feeds: dict[int, list[np.ndarray]] = {}      # group id -> columns it feeds
        self.terms: dict[tuple, TermEntry] = {}
        self.term_version = 0                             # changes when a term kind appears or goes

    # ------------------------------------------------------------ upkeep

    def grow(self, new: int) -> None:
        def grown(col):
            out = np.zeros(new, dtype=col.dtype)
            out[: self.cap] = col
            return out
        for t in self._tracked.values():
            t.col = grown(t.col)
        for e in self.terms.values():
            e.col = grown(e.col)
        self._feeds.clear()
        self.cap = new

    def clear_slot(self, slot: int) -> None:
        """The node of this slot is gone (its pods become orphans)."""
        for g in self.groups:
            g.slots.pop(slot, None)
        for t in self._tracked.values():
            t.col[slot] = 0
        for e in self.terms.values():
            e.total -= int(e.col[slot])
            e.col[slot] = 0

    def group_of(self, pod) -> int:
        md = pod.metadata
        live = not md.HasField("deletion_timestamp")
        key = (md.namespace, tuple(sorted(md.labels.items())), live)
        gid = self._group_ids.get(key)
        if gid is None:
            gid = self._group_ids[key] = len(self.groups)
            self.groups.append(_Group(md.namespace, dict(md.labels), live))
        return gid

    def _cols_of(self, gid: int) -> list[np.ndarray]:
        cols = self._feeds.get(gid)
        if cols is None:
            g = self.groups[gid]
            cols = self._feeds[gid] = ([t.col for t in self._tracked.values()
                                        if t.query.matches(g.namespace, g.labels)] if g.live else [])
        return cols

    def apply(self, slot: int, gid: int, terms: tuple, sign: int, term_source=None) -> None:
        """Account (sign=1) or release (-1) one pod on `slot`; `term_source`
        parses a term key the first time it is seen."""
        slots = self.groups[gid].slots
        left = slots.get(slot, 0) + sign
        if left:
            slots[slot] = left
        else:
            slots.pop(slot, None)
        for col in self._cols_of(gid):
            col[slot] += sign
        for key in terms:
            e = self.terms.get(key)
            if e is None:
                if sign < 0:
                    continue
                kind, weight, ns, raw = key
                e = self.terms[key] = TermEntry(kind, weight, term_source(key), np.zeros(self.cap, dtype=np.int32))
                self.term_version += 1
            e.col[slot] += sign
            e.total += sign
            if e.total <= 0:
                del self.terms[key]
                self.term_version += 1

    # ------------------------------------------------------------- reads

    def counts(self, query: Query) -> np.ndarray:
        """Matching pods per slot (full capacity; callers slice to n)."""
        t = self._tracked.get(query)
        if t is not None:
            self._tracked.move_to_end(query)
            return t.col
        col = np.zeros(self.cap, dtype=np.int32)
        for g in self.groups:
            if g.live and g.slots and query.matches(g.namespace, g.labels):
                np.add.at(col, np.fromiter(g.slots.keys(), dtype=np.int64, count=len(g.slots)),
                          np.fromiter(g.slots.values(), dtype=np.int32, count=len(g.slots)))
        self._tracked[query] = _Tracked(query, col)
        if len(self._tracked) > MAX_TRACKED:
            self._tracked.popitem(last=False)
        self._feeds.clear()
        return col
