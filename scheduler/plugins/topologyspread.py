"""PodTopologySpread: topologySpreadConstraints as a filter (DoNotSchedule)
and a score (ScheduleAnyway), after kube-scheduler's podtopologyspread
plugin (filtering.go, scoring.go, common.go).

A constraint counts the pods of the pod's namespace matching its
labelSelector (ANDed with the incoming pod's values of matchLabelKeys) per
topology domain (value of topologyKey), over the eligible nodes: nodes
having every constraint's topologyKey, matching the pod's nodeSelector /
required node affinity unless nodeAffinityPolicy is Ignore, and — with
nodeTaintsPolicy Honor — whose taints the pod tolerates.

Filter (dynamic, vectorised): a node fails with "node(s) didn't match pod
topology spread constraints (missing required label)" when it lacks the
key, or "node(s) didn't match pod topology spread constraints" when
`count(domain) + selfMatch - globalMin > maxSkew`; globalMin is 0 while
fewer domains than minDomains exist. PreFilter computes the per-domain
counts once per attempt (podindex columns + one np.bincount) into the
CycleState; AddPod/RemovePod adjust them when preemption simulates victims.

Score: per constraint `count * log(domains + 2) + maxSkew - 1` summed,
rounded, then flipped so the emptiest domain scores 100; nodes missing a
key score 0. Counts are the pods of the pod's controller when it has one
(as kube-scheduler does with owner references), else selector matches.

Default constraints (`pluginConfig` args `defaultingType`: System | List,
`defaultConstraints`): System adds kube-scheduler's system defaults (zone
maxSkew 5, hostname maxSkew 3, ScheduleAnyway) to pods with a controller
and no constraints of their own. kctl's default profile uses List with no
constraints, because OwnerSpread already spreads a controller's pods by
node and the existing behaviour stays as it was.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from machinery import selectors
from machinery.pb import core_pb2
from scheduler.cycle_state import StateData
from scheduler.framework import (SKIP, SUCCESS, Code, FilterPlugin, FilterResult, PodInfo, PreFilterPlugin,
                                 PreScorePlugin, ScorePlugin, ShapeCache, Status)
from scheduler.plugins.affinity import required_mask
from scheduler.plugins.taints import TaintToleration
from scheduler.podindex import Query

ERR_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
ERR_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
SYSTEM_DEFAULTS = ((ZONE, 5), (HOSTNAME, 3))


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    key: str
    query: Query
    min_domains: int
    honor_affinity: bool
    honor_taints: bool


def constraints_of(pod: core_pb2.Pod, action: str) -> list[Constraint]:
    """The pod's constraints with whenUnsatisfiable == action (matchLabelKeys
    folded into the selector, as Kubernetes' filterTopologySpreadConstraints)."""
    out = []
    labels = pod.metadata.labels
    for c in pod.spec.topology_spread_constraints:
        if c.when_unsatisfiable != action:
            continue
        sels = [selectors.from_field(c, "label_selector")]
        extra = {k: labels[k] for k in c.match_label_keys if k in labels}
        if extra:
            sels.append(selectors.from_map(extra))
        out.append(Constraint(c.max_skew, c.topology_key, Query(frozenset((pod.metadata.namespace,)), tuple(sels)),
                              c.min_domains if c.HasField("min_domains") else 1,
                              (c.node_affinity_policy or "Honor") == "Honor",
                              (c.node_taints_policy or "Ignore") == "Honor"))
    return out


def eligible(snapshot, pod: PodInfo, constraints, c: Constraint, require_all: bool = True) -> np.ndarray:
    """Nodes counted for constraint c (Kubernetes' nodeLabelsMatchSpreadConstraints
    and matchNodeInclusionPolicies)."""
    m = snapshot.valid().copy()
    if require_all:
        for other in constraints:
            m &= snapshot.label_column(other.key) >= 0
    if c.honor_affinity:
        aff = required_mask(snapshot, pod.pod.spec)
        if aff is not None:
            m &= aff
    if c.honor_taints:
        m &= TaintToleration().filter(None, pod, snapshot).codes == 0
    return m


@dataclass
class _Spread(StateData):
    """Per constraint: label column, eligible mask, matching pods per domain,
    domains present, self match."""
    constraints: list
    cols: list
    masks: list
    domains: list         # float arrays over value ids (cloned: preemption changes them)
    present: list
    self_match: list

    def clone(self) -> "_Spread":
        return _Spread(self.constraints, self.cols, self.masks, [d.copy() for d in self.domains],
                       self.present, self.self_match)

    def update(self, rec, slot: int, namespace: str, sign: int) -> None:
        if rec.pod.metadata.namespace != namespace:
            return
        for i, c in enumerate(self.constraints):
            v = self.cols[i][slot]
            if v >= 0 and self.masks[i][slot] and c.query.matches(namespace, rec.pod.metadata.labels):
                self.domains[i][v] += sign


class PodTopologySpread(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "PodTopologySpread"
    static = False
    ARGS = frozenset({"defaultingType", "defaultConstraints"})
    FILTER_KEY = "PreFilter" + name
    SCORE_KEY = "PreScore" + name
    statuses = [SUCCESS, Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (ERR_MISSING_LABEL,), name),
                Status(Code.UNSCHEDULABLE, (ERR_CONSTRAINTS,), name)]

    def __init__(self, system_defaulted: bool = False, default_constraints=()):
        self.system_defaulted = system_defaulted
        self.default_constraints = tuple(default_constraints)    # (key, maxSkew) pairs
        self._shapes = ShapeCache()

    @classmethod
    def new(cls, args: dict, handle) -> "PodTopologySpread":
        kind = args.get("defaultingType", "List")
        if kind == "System":
            return cls(True, SYSTEM_DEFAULTS)
        return cls(False, [(c["topologyKey"], int(c.get("maxSkew", 1)))
                           for c in args.get("defaultConstraints", ())
                           if c.get("whenUnsatisfiable", "ScheduleAnyway") == "ScheduleAnyway"])

    # ------------------------------------------------------------ filter

    def _hard(self, pod: PodInfo) -> list[Constraint]:
        cs = pod.parsed.get(self.FILTER_KEY)
        if cs is None:
            cs = pod.parsed[self.FILTER_KEY] = constraints_of(pod.pod, "DoNotSchedule")
        return cs

    def _static(self, pod: PodInfo, snapshot, cs) -> list:
        """Per constraint (label column, eligible mask, domains present):
        node features only, so cached per pod shape and constraints."""
        key = pod.parsed.get("shape" + self.name)
        if key is None:
            key = pod.parsed["shape" + self.name] = pod.shape + b"|tsc" + b"".join(
                c.SerializeToString(deterministic=True) for c in pod.pod.spec.topology_spread_constraints)

        def compute():
            out = []
            for c in cs:
                m = eligible(snapshot, pod, cs, c)
                col, nodes = snapshot.domain_sums(c.key, np.ones(snapshot.num_slots), m)
                out.append((col, m, nodes > 0))
            return out
        return self._shapes.get(key, snapshot, compute)

    def pre_filter(self, state, pod: PodInfo, snapshot) -> Status:
        cs = self._hard(pod) if pod.pod.spec.topology_spread_constraints else ()
        if not cs:
            state.delete(self.FILTER_KEY)
            return SUCCESS
        s = _Spread(cs, [], [], [], [], [])
        ns, labels = pod.namespace, pod.pod.metadata.labels
        for c, (col, m, present) in zip(cs, self._static(pod, snapshot, cs)):
            s.cols.append(col)
            s.masks.append(m)
            s.domains.append(snapshot.domain_sums(c.key, snapshot.pod_counts(c.query), m)[1])
            s.present.append(present)
            s.self_match.append(int(c.query.matches(ns, labels)))
        state.write(self.FILTER_KEY, s)
        return SUCCESS

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        codes = np.zeros(snapshot.num_slots, dtype=np.int32)
        s = state.read(self.FILTER_KEY)
        if s is None:
            return FilterResult(codes, self.statuses[:1])
        for i, c in enumerate(s.constraints):
            col, dom, present = s.cols[i], s.domains[i], s.present[i]
            n_domains = int(present.sum())
            min_match = dom[present].min() if n_domains and n_domains >= c.min_domains else 0
            open_ = codes == 0
            missing = col < 0
            skew = dom[np.maximum(col, 0)] + s.self_match[i] - min_match
            codes[open_ & missing] = 1
            codes[open_ & ~missing & (skew > c.max_skew)] = 2
        return FilterResult(codes, self.statuses)

    def add_pod(self, state, pod: PodInfo, rec, slot: int, snapshot) -> None:
        s = state.read(self.FILTER_KEY)
        if s is not None:
            s.update(rec, slot, pod.namespace, 1)

    def remove_pod(self, state, pod: PodInfo, rec, slot: int, snapshot) -> None:
        s = state.read(self.FILTER_KEY)
        if s is not None:
            s.update(rec, slot, pod.namespace, -1)

    # ------------------------------------------------------------- score

    def _soft(self, pod: PodInfo) -> list[Constraint]:
        if pod.pod.spec.topology_spread_constraints:
            cs = pod.parsed.get(self.SCORE_KEY)
            if cs is None:
                cs = pod.parsed[self.SCORE_KEY] = constraints_of(pod.pod, "ScheduleAnyway")
            return cs
        if not self.default_constraints or not pod.owner_uid:
            return []
        q = Query(frozenset((pod.namespace,)), (selectors.NOTHING,))
        return [Constraint(skew, key, q, 1, True, False) for key, skew in self.default_constraints]

    def pre_score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> Status:
        cs = self._soft(pod)
        if not cs:
            return SKIP
        require_all = bool(pod.pod.spec.topology_spread_constraints) or not self.system_defaulted
        ignored = np.zeros(len(idx), dtype=bool)
        if require_all:
            for c in cs:
                ignored |= snapshot.label_column(c.key)[idx] < 0
        owner = None
        if pod.owner_uid:
            owner = snapshot.owner_counts(pod.owner_uid)
            owner = np.zeros(snapshot.num_slots, dtype=np.int32) if owner is None else owner
        raw = np.zeros(len(idx))
        for c in cs:
            per_slot = owner if owner is not None else snapshot.pod_counts(c.query)
            col = snapshot.label_column(c.key)
            has = col[idx] >= 0
            kept = idx[~ignored]
            if c.key == HOSTNAME:
                size, cnt = len(kept), per_slot[idx]
            else:
                size = len(np.unique(col[kept][col[kept] >= 0]))
                _, dom = snapshot.domain_sums(c.key, per_slot, eligible(snapshot, pod, cs, c, require_all))
                cnt = dom[np.maximum(col[idx], 0)] if len(dom) else np.zeros(len(idx))
            raw += np.where(has, cnt * math.log(size + 2) + (c.max_skew - 1), 0.0)
        state.write(self.SCORE_KEY, _Scores(np.round(raw), ignored))
        return SUCCESS

    def score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> np.ndarray:
        pre = state.read(self.SCORE_KEY)
        if pre is None:
            return np.zeros(len(idx))
        raw, ignored = pre.raw, pre.ignored
        kept = raw[~ignored]
        if not kept.size:
            return np.zeros(len(idx))
        lo, hi = kept.min(), kept.max()
        if hi == 0:
            out = np.full(len(idx), 100.0)
        else:
            out = np.floor(100 * (hi + lo - raw) / hi)
        out[ignored] = 0.0
        return out


@dataclass
class _Scores(StateData):
    raw: np.ndarray
    ignored: np.ndarray
