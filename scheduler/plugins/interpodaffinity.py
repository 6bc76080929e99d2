"""InterPodAffinity: required pod affinity / anti-affinity as a filter, and
preferred terms as a score, after kube-scheduler's interpodaffinity plugin
(filtering.go, scoring.go), both directions included.

PreFilter counts, per topology domain (value of a term's topologyKey):

* for each required affinity term of the incoming pod, the existing pods
  matching *all* its affinity terms (podMatchesAllAffinityTerms);
* for each required anti-affinity term, the existing pods matching it;
* for each existing pod's required anti-affinity term that matches the
  incoming pod, the existing pods carrying it (the other direction).

Pods are never walked: the incoming pod's terms become podindex Queries
(their namespaceSelector resolved into namespaces), whose per-slot columns
the pod index keeps; existing pods' terms are indexed once per distinct
term (podindex.TermEntry), so the reverse check costs one selector match
per distinct term. One np.bincount per term turns slots into domains.

Filter (dynamic, vectorised), first failing check wins, with Kubernetes'
reasons: "node(s) didn't match pod affinity rules" (unresolvable; also when
the node lacks a term's key; a pod matching its own terms may go first
when no pod matches anywhere), "node(s) didn't match pod anti-affinity
rules", "node(s) didn't satisfy existing pods anti-affinity rules".

Score: per domain, + weight for every existing pod matching a preferred
affinity term of the incoming pod, - weight for a preferred anti-affinity
term, and the symmetric sums of the existing pods' preferred terms (and
required affinity terms, at hardPodAffinityWeight, default 1) that match
the incoming pod; normalised to 0-100 between the candidates' min and max.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scheduler.cycle_state import StateData
from scheduler.framework import (SKIP, SUCCESS, Code, FilterPlugin, FilterResult, PodInfo, PreFilterPlugin,
                                 PreScorePlugin, ScorePlugin, Status)
from scheduler.podindex import (AFFINITY_PREFERRED, AFFINITY_REQUIRED, ANTI_PREFERRED, ANTI_REQUIRED, Query,
                                parse_term)

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"


def incoming_query(term, pod: PodInfo, snapshot) -> tuple[str, Query]:
    """(topologyKey, Query) of one of the incoming pod's terms, its
    namespaceSelector merged into the namespaces (as Kubernetes' PreFilter)."""
    t = parse_term(term, pod.namespace)
    namespaces = set(t.namespaces)
    if term.HasField("namespace_selector"):
        namespaces |= snapshot.namespaces_matching(t.ns_selector)
    return t.topology_key, Query(frozenset(namespaces), (t.selector,))


def _all_of(queries: list[Query]) -> Query:
    """One query matching pods that match every one of `queries`."""
    ns = frozenset.intersection(*(q.namespaces for q in queries))
    return Query(ns, tuple(s for q in queries for s in q.selectors))


@dataclass
class _Affinity(StateData):
    """Per term, pods counted in each slot's topology domain (per-slot arrays)."""
    aff_keys: list = field(default_factory=list)       # topology keys of required affinity terms
    aff_query: Query | None = None                    # existing pods matching all of them
    aff_counts: list = field(default_factory=list)
    self_match: bool = False
    anti: list = field(default_factory=list)          # (key, query)
    anti_counts: list = field(default_factory=list)
    existing: dict = field(default_factory=dict)      # key -> pods whose anti terms match us
    existing_terms: set = field(default_factory=set)  # term keys counted in `existing`

    def clone(self) -> "_Affinity":
        out = _Affinity(**self.__dict__)
        out.aff_counts = [c.copy() for c in self.aff_counts]
        out.anti_counts = [c.copy() for c in self.anti_counts]
        out.existing = {k: c.copy() for k, c in self.existing.items()}
        return out


def _bump(snapshot, key: str, per_slot: np.ndarray, slot: int, sign: int) -> None:
    """One pod more (or less) in the domain of `slot`."""
    col = snapshot.label_column(key)
    if col[slot] >= 0:
        per_slot[col == col[slot]] += sign


class InterPodAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "InterPodAffinity"
    static = False
    ARGS = frozenset({"hardPodAffinityWeight"})
    FILTER_KEY = "PreFilter" + name
    SCORE_KEY = "PreScore" + name
    statuses = [SUCCESS, Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (ERR_AFFINITY,), name),
                Status(Code.UNSCHEDULABLE, (ERR_ANTI_AFFINITY,), name),
                Status(Code.UNSCHEDULABLE, (ERR_EXISTING_ANTI_AFFINITY,), name)]

    def __init__(self, hard_weight: int = 1):
        self.hard_weight = hard_weight
        self._mult = {AFFINITY_PREFERRED: 1, ANTI_PREFERRED: -1, AFFINITY_REQUIRED: hard_weight}
        self._score_kinds = tuple(k for k, m in self._mult.items() if m)
        self._matches: dict = {}       # (namespace, labels, kinds) -> (term_version, [(key, entry)])

    @classmethod
    def new(cls, args: dict, handle) -> "InterPodAffinity":
        return cls(int(args.get("hardPodAffinityWeight", 1)))

    # ------------------------------------------------------------ filter

    def _matching_terms(self, pod: PodInfo, snapshot, kinds):
        """The existing pods' term entries of these kinds that match the pod,
        remembered per (namespace, labels) until a distinct term comes or goes."""
        labels_key = pod.parsed.get(self.name)
        if labels_key is None:
            labels_key = pod.parsed[self.name] = (pod.namespace, tuple(sorted(pod.pod.metadata.labels.items())))
        memo_key = (labels_key, kinds)
        version = snapshot.term_version
        hit = self._matches.get(memo_key)
        if hit is not None and hit[0] == version:
            return hit[1]
        labels, ns = pod.pod.metadata.labels, pod.namespace
        ns_labels = snapshot.namespace_labels(ns)
        out = [(k, e) for k, e in snapshot.pod_terms().items()
               if e.kind in kinds and e.term.matches(ns, labels, ns_labels)]
        if len(self._matches) > 4096:
            self._matches.clear()
        self._matches[memo_key] = (version, out)
        return out

    def pre_filter(self, state, pod: PodInfo, snapshot) -> Status:
        aff = pod.pod.spec.affinity
        if not snapshot.pod_terms() and not (aff.HasField("pod_affinity") or aff.HasField("pod_anti_affinity")):
            state.delete(self.FILTER_KEY)           # no term anywhere: nothing to check
            return SUCCESS
        req_aff = aff.pod_affinity.required_during_scheduling_ignored_during_execution
        req_anti = aff.pod_anti_affinity.required_during_scheduling_ignored_during_execution
        s = _Affinity()
        n = snapshot.num_slots
        for key, e in self._matching_terms(pod, snapshot, (ANTI_REQUIRED,)):
            k = e.term.topology_key
            per = snapshot.domain_counts(k, e.col[:n])
            s.existing[k] = per if k not in s.existing else s.existing[k] + per
            s.existing_terms.add(key)
        if req_aff:
            queries = [incoming_query(t, pod, snapshot) for t in req_aff]
            s.aff_keys = [k for k, _ in queries]
            s.aff_query = _all_of([q for _, q in queries])
            counts = snapshot.pod_counts(s.aff_query)
            s.aff_counts = [snapshot.domain_counts(k, counts) for k in s.aff_keys]
            s.self_match = s.aff_query.matches(pod.namespace, pod.pod.metadata.labels)
        for t in req_anti:
            key, q = incoming_query(t, pod, snapshot)
            s.anti.append((key, q))
            s.anti_counts.append(snapshot.domain_counts(key, snapshot.pod_counts(q)))
        if not (s.existing or s.aff_keys or s.anti):
            state.delete(self.FILTER_KEY)
            return SUCCESS
        state.write(self.FILTER_KEY, s)
        return SUCCESS

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        n = snapshot.num_slots
        codes = np.zeros(n, dtype=np.int32)
        s = state.read(self.FILTER_KEY)
        if s is None:
            return FilterResult(codes, self.statuses[:1])
        if s.aff_keys:
            missing = np.zeros(n, dtype=bool)
            exist = np.ones(n, dtype=bool)
            for key, per in zip(s.aff_keys, s.aff_counts):
                missing |= snapshot.label_column(key) < 0
                exist &= per > 0
            anywhere = any(per.any() for per in s.aff_counts)
            codes[missing | (~exist & (anywhere or not s.self_match))] = 1
        for code, arrays in ((2, s.anti_counts), (3, s.existing.values())):
            bad = np.zeros(n, dtype=bool)
            for per in arrays:
                bad |= per > 0
            codes[(codes == 0) & bad] = code
        return FilterResult(codes, self.statuses)

    def _update(self, state, pod: PodInfo, rec, slot: int, snapshot, sign: int) -> None:
        s = state.read(self.FILTER_KEY)
        if s is None:
            return
        md = rec.pod.metadata
        if s.aff_query is not None and s.aff_query.matches(md.namespace, md.labels):
            for key, per in zip(s.aff_keys, s.aff_counts):
                _bump(snapshot, key, per, slot, sign)
        for (key, q), per in zip(s.anti, s.anti_counts):
            if q.matches(md.namespace, md.labels):
                _bump(snapshot, key, per, slot, sign)
        terms = snapshot.pod_terms()
        for tk in rec.terms:
            if tk in s.existing_terms and tk in terms:
                key = terms[tk].term.topology_key
                _bump(snapshot, key, s.existing[key], slot, sign)

    def add_pod(self, state, pod: PodInfo, rec, slot: int, snapshot) -> None:
        self._update(state, pod, rec, slot, snapshot, 1)

    def remove_pod(self, state, pod: PodInfo, rec, slot: int, snapshot) -> None:
        self._update(state, pod, rec, slot, snapshot, -1)

    # ------------------------------------------------------------- score

    def pre_score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> Status:
        aff = pod.pod.spec.affinity
        if not snapshot.pod_terms() and not (aff.HasField("pod_affinity") or aff.HasField("pod_anti_affinity")):
            return SKIP
        parts = []      # (topology key, weight, per-slot pods)
        for sign, terms in ((1, aff.pod_affinity.preferred_during_scheduling_ignored_during_execution),
                            (-1, aff.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution)):
            for w in terms:
                key, q = incoming_query(w.pod_affinity_term, pod, snapshot)
                parts.append((key, sign * w.weight, snapshot.pod_counts(q)))
        mult = self._mult
        for _, e in self._matching_terms(pod, snapshot, self._score_kinds):
            weight = e.weight if e.kind != AFFINITY_REQUIRED else 1
            parts.append((e.term.topology_key, mult[e.kind] * weight, e.col[: snapshot.num_slots]))
        if not parts:
            return SKIP
        raw = np.zeros(len(idx))
        for key, weight, per_slot in parts:
            col, dom = snapshot.domain_sums(key, per_slot)
            if len(dom):
                c = col[idx]
                raw += np.where(c >= 0, weight * dom[np.maximum(c, 0)], 0.0)
        state.write(self.SCORE_KEY, _Raw(raw))
        return SUCCESS

    def score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> np.ndarray:
        pre = state.read(self.SCORE_KEY)
        if pre is None or not len(idx):
            return np.zeros(len(idx))
        lo, hi = pre.raw.min(), pre.raw.max()
        if hi - lo <= 0:
            return np.zeros(len(idx))
        return np.floor(100.0 * (pre.raw - lo) / (hi - lo))


@dataclass
class _Raw(StateData):
    raw: np.ndarray
