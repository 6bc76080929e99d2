"""NodeAffinity: nodeSelector and required node affinity (filter), preferred
node affinity (score).

Requirements are evaluated column-wise over the cache's label columns
(value ids per node slot), so one `In` over 5,000 nodes is one np.isin.
Semantics follow Kubernetes: nodeSelector AND required terms; terms are
ORed, the expressions of a term ANDed; a term with no expressions matches
nothing; NotIn and DoesNotExist match nodes without the label; Gt/Lt compare
integers (a label that is not an integer does not match); matchFields
supports metadata.name with In/NotIn.
"""
from __future__ import annotations

import numpy as np

from machinery.pb import core_pb2
from scheduler.framework import (Code, FilterPlugin, FilterResult, PodInfo, ScorePlugin, Status,
                                 SUCCESS, normalize, single_reason)

ERR_AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def _int(s: str) -> float:
    try:
        return float(int(s))
    except ValueError:
        return np.nan


def _column(cache, key: str) -> np.ndarray:
    col = cache.label_cols.get(key)
    if col is None:
        return np.full(cache.n, -1, dtype=np.int32)
    return col[: cache.n]


def _ids(cache, key: str, values) -> list[int]:
    ids = cache.label_ids.get(key, {})
    return [ids[v] for v in values if v in ids]


def requirement_mask(cache, req: core_pb2.NodeSelectorRequirement) -> np.ndarray:
    col = _column(cache, req.key)
    op = req.operator
    if op == "In":
        return np.isin(col, _ids(cache, req.key, req.values))
    if op == "NotIn":
        return ~np.isin(col, _ids(cache, req.key, req.values))
    if op == "Exists":
        return col >= 0
    if op == "DoesNotExist":
        return col < 0
    if op in ("Gt", "Lt"):
        if len(req.values) != 1 or np.isnan(bound := _int(req.values[0])):
            return np.zeros(cache.n, dtype=bool)
        nums = np.array([_int(v) for v in cache.label_values.get(req.key, [])] + [np.nan])
        vals = nums[col]          # -1 (absent) picks the trailing NaN
        with np.errstate(invalid="ignore"):
            return vals > bound if op == "Gt" else vals < bound
    return np.zeros(cache.n, dtype=bool)


def field_mask(cache, req: core_pb2.NodeSelectorRequirement) -> np.ndarray:
    if req.key != "metadata.name" or req.operator not in ("In", "NotIn"):
        return np.zeros(cache.n, dtype=bool)
    m = np.zeros(cache.n, dtype=bool)
    for v in req.values:
        i = cache.index.get(v)
        if i is not None:
            m[i] = True
    return m if req.operator == "In" else ~m


def term_mask(cache, term: core_pb2.NodeSelectorTerm) -> np.ndarray:
    if not term.match_expressions and not term.match_fields:
        return np.zeros(cache.n, dtype=bool)
    m = np.ones(cache.n, dtype=bool)
    for req in term.match_expressions:
        m &= requirement_mask(cache, req)
    for req in term.match_fields:
        m &= field_mask(cache, req)
    return m


def required_mask(cache, spec: core_pb2.PodSpec) -> np.ndarray | None:
    """Nodes matching nodeSelector and required affinity; None = all."""
    m = None
    for key, value in spec.node_selector.items():
        col = _column(cache, key)
        ids = cache.label_ids.get(key, {})
        mk = col == ids[value] if value in ids else np.zeros(cache.n, dtype=bool)
        m = mk if m is None else m & mk
    na = spec.affinity.node_affinity
    if na.HasField("required_during_scheduling_ignored_during_execution"):
        terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
        tm = np.zeros(cache.n, dtype=bool)
        for term in terms:
            tm |= term_mask(cache, term)
        m = tm if m is None else m & tm
    return m


class NodeAffinity(FilterPlugin):
    name = "NodeAffinity"
    status = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (ERR_AFFINITY,), name)

    def filter(self, pod: PodInfo, cache) -> FilterResult:
        m = required_mask(cache, pod.pod.spec)
        if m is None:
            return FilterResult(np.zeros(cache.n, dtype=np.int32), [SUCCESS])
        return single_reason(~m, self.status)


def preferred_raw(cache, spec: core_pb2.PodSpec) -> np.ndarray | None:
    """Sum of the weights of matching preferred terms per slot; None if the
    pod has no preferences."""
    terms = spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    if not terms:
        return None
    raw = np.zeros(cache.n, dtype=np.float64)
    for t in terms:
        if t.weight:
            raw += t.weight * term_mask(cache, t.preference)
    return raw


class NodeAffinityScore(ScorePlugin):
    """Preferred node affinity, normalised so the best candidate gets 100.
    The raw per-slot sums come from the framework's per-shape cache
    (`raw`), or are computed here."""
    name = "NodeAffinity"

    def score(self, pod: PodInfo, cache, idx: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
        if raw is None:
            raw = preferred_raw(cache, pod.pod.spec)
        if raw is None:
            return np.zeros(len(idx))
        return normalize(raw[idx])
