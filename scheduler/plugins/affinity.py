"""NodeAffinity: nodeSelector and required node affinity (filter), preferred
node affinity (PreScore computes the per-slot sums into the CycleState,
Score normalises them over the candidates).

Requirements are evaluated column-wise over the snapshot's label columns
(value ids per node slot), so one `In` over 5,000 nodes is one np.isin.
Semantics follow Kubernetes: nodeSelector AND required terms; terms are
ORed, the expressions of a term ANDed; a term with no expressions matches
nothing; NotIn and DoesNotExist match nodes without the label; Gt/Lt compare
integers (a label that is not an integer does not match); matchFields
supports metadata.name with In/NotIn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from machinery.pb import core_pb2
from scheduler.cycle_state import StateData
from scheduler.framework import (SKIP, SUCCESS, Code, FilterPlugin, FilterResult, PodInfo, PreScorePlugin,
                                 ScorePlugin, ShapeCache, Status, normalize, single_reason)

ERR_AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def _int(s: str) -> float:
    try:
        return float(int(s))
    except ValueError:
        return np.nan


def _ids(snapshot, key: str, values) -> list[int]:
    ids = snapshot.label_ids(key)
    return [ids[v] for v in values if v in ids]


def requirement_mask(snapshot, req: core_pb2.NodeSelectorRequirement) -> np.ndarray:
    col = snapshot.label_column(req.key)
    op = req.operator
    if op == "In":
        return np.isin(col, _ids(snapshot, req.key, req.values))
    if op == "NotIn":
        return ~np.isin(col, _ids(snapshot, req.key, req.values))
    if op == "Exists":
        return col >= 0
    if op == "DoesNotExist":
        return col < 0
    if op in ("Gt", "Lt"):
        if len(req.values) != 1 or np.isnan(bound := _int(req.values[0])):
            return np.zeros(snapshot.num_slots, dtype=bool)
        nums = np.array([_int(v) for v in snapshot.label_values(req.key)] + [np.nan])
        vals = nums[col]          # -1 (absent) picks the trailing NaN
        with np.errstate(invalid="ignore"):
            return vals > bound if op == "Gt" else vals < bound
    return np.zeros(snapshot.num_slots, dtype=bool)


def field_mask(snapshot, req: core_pb2.NodeSelectorRequirement) -> np.ndarray:
    n = snapshot.num_slots
    if req.key != "metadata.name" or req.operator not in ("In", "NotIn"):
        return np.zeros(n, dtype=bool)
    m = np.zeros(n, dtype=bool)
    for v in req.values:
        i = snapshot.slot(v)
        if i is not None:
            m[i] = True
    return m if req.operator == "In" else ~m


def term_mask(snapshot, term: core_pb2.NodeSelectorTerm) -> np.ndarray:
    if not term.match_expressions and not term.match_fields:
        return np.zeros(snapshot.num_slots, dtype=bool)
    m = np.ones(snapshot.num_slots, dtype=bool)
    for req in term.match_expressions:
        m &= requirement_mask(snapshot, req)
    for req in term.match_fields:
        m &= field_mask(snapshot, req)
    return m


def required_mask(snapshot, spec: core_pb2.PodSpec) -> np.ndarray | None:
    """Nodes matching nodeSelector and required affinity; None = all."""
    m = None
    n = snapshot.num_slots
    for key, value in spec.node_selector.items():
        ids = snapshot.label_ids(key)
        mk = snapshot.label_column(key) == ids[value] if value in ids else np.zeros(n, dtype=bool)
        m = mk if m is None else m & mk
    na = spec.affinity.node_affinity
    if na.HasField("required_during_scheduling_ignored_during_execution"):
        terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
        tm = np.zeros(n, dtype=bool)
        for term in terms:
            tm |= term_mask(snapshot, term)
        m = tm if m is None else m & tm
    return m


def preferred_raw(snapshot, spec: core_pb2.PodSpec) -> np.ndarray | None:
    """Sum of the weights of matching preferred terms per slot; None if the
    pod has no preferences."""
    terms = spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    if not terms:
        return None
    raw = np.zeros(snapshot.num_slots, dtype=np.float64)
    for t in terms:
        if t.weight:
            raw += t.weight * term_mask(snapshot, t.preference)
    return raw


@dataclass
class _Preferred(StateData):
    raw: np.ndarray          # per slot; read only, so the shallow clone shares it


class NodeAffinity(FilterPlugin, PreScorePlugin, ScorePlugin):
    """Filter: nodeSelector and required terms (static). PreScore: the raw
    preferred-term sums per slot, cached per pod shape (they depend only on
    labels), written to the CycleState; SKIP when the pod has no
    preferences. Score: those sums over the candidates, normalised so the
    best gets 100."""
    name = "NodeAffinity"
    status = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (ERR_AFFINITY,), name)
    STATE_KEY = "PreScore" + name

    def __init__(self):
        self._preferred = ShapeCache()

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        m = required_mask(snapshot, pod.pod.spec)
        if m is None:
            return FilterResult(np.zeros(snapshot.num_slots, dtype=np.int32), [SUCCESS])
        return single_reason(~m, self.status)

    def pre_score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> Status:
        raw = self._preferred.get(pod.shape, snapshot, lambda: preferred_raw(snapshot, pod.pod.spec))
        if raw is None:
            return SKIP
        state.write(self.STATE_KEY, _Preferred(raw))
        return SUCCESS

    def score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> np.ndarray:
        pre = state.read(self.STATE_KEY)
        raw = pre.raw if pre is not None else preferred_raw(snapshot, pod.pod.spec)
        if raw is None:
            return np.zeros(len(idx))
        return normalize(raw[idx])
