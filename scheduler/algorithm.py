"""One scheduling decision for one profile: filter all nodes, score a
sample, pick the best.

`Algorithm.schedule(pod)` is synchronous and cheap at 5,000 nodes. It makes
the attempt's CycleState and runs the profile's Framework (runtime.py):

1. PreFilter plugins (a rejection makes every node fail with its message);
2. static filters (by default unschedulable, node name, taints, affinity) —
   their per-slot answers are cached per pod shape (framework.PodInfo.shape)
   and snapshot generation, so replicas of one template pay once;
3. dynamic filters on every pod: NodeResourcesFit through its cheap
   `feasible()` (three comparisons over the int64 arrays); PodTopologySpread
   and InterPodAffinity through `filter()` over what their PreFilter put in
   the CycleState, whose answers are kept for the reasons. The reasons are
   only counted (in the profile's filter order, a node under its first
   failing filter) when some node does not fit;
4. the feasible slots, rotated from where the previous pod stopped, cut to
   kube-scheduler's numFeasibleNodesToFind (adaptive percentageOfNodesToScore:
   max(5, 50 - nodes/125) %, never fewer than 100 nodes);
5. PreScore, then weighted Score plugins over those candidates (one batch
   call each); the highest total wins, ties broken at random
   (kube-scheduler's selectHost does the same).

When no node fits, the scheduler calls `post_filter()`: the PostFilter
plugins (DefaultPreemption) get the failed result, including each node's
first failing status code (`fail_codes`: preemption only helps where it was
Unschedulable, not UnschedulableAndUnresolvable).

It returns a ScheduleResult with what the decision record and the
FailedScheduling message need (reason histogram, a few node names per
reason, top candidates with per-plugin scores) and the CycleState, which
the caller hands to `bind()` after assuming the pod in the cache, before
anything awaits. A plugin's ERROR status ends the attempt with
`result.error` set (the scheduler backs the pod off).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from scheduler import plugins
from scheduler.cache import NodeCache
from scheduler.config import Profile, default_profile
from scheduler.cycle_state import CycleState
from scheduler.framework import SUCCESS, Code, FilterResult, Handle, PodInfo, ShapeCache, Status, aggregate_message
from scheduler.runtime import Framework, Registry
from scheduler.snapshot import Snapshot

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
MAX_REASONS_LISTED = 5
NAMES_PER_REASON = 3
TOP_SCORED = 5


@dataclass
class ScheduleResult:
    node: str | None
    num_nodes: int
    feasible: int
    scored: int
    reasons: dict[str, int] = field(default_factory=dict)         # reason -> node count
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few node names
    top: list[tuple[str, float, dict[str, float]]] = field(default_factory=list)
    pre_filter: str = ""             # a PreFilter plugin's rejection message
    error: Status | None = None      # a plugin failed: the attempt is an error
    state: CycleState | None = None
    fail_codes: np.ndarray | None = None   # per slot: Code of the first failing filter (0: passed)
    preemption: dict | None = None   # DefaultPreemption's outcome, for the record and the message

    def message(self) -> str:
        msg = aggregate_message(self.num_nodes, self.reasons, self.pre_filter)
        if self.preemption and self.preemption.get("message"):
            msg += " preemption: " + self.preemption["message"]
        return msg


def num_feasible_nodes_to_find(num_nodes: int, percentage: int) -> int:
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(MIN_FEASIBLE_NODES_PERCENTAGE, 50 - num_nodes // 125)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Algorithm:
    def __init__(self, cache: NodeCache, profile: Profile | None = None, *, percentage_of_nodes_to_score: int = 0,
                 registry: Registry | None = None, binder=None, rng: random.Random | None = None, evictor=None,
                 pdbs=None, storage=None):
        self.snapshot = Snapshot(cache)
        self.profile = profile or default_profile()
        pct = self.profile.percentage_of_nodes_to_score
        self.percentage = percentage_of_nodes_to_score if pct is None else pct
        self.framework = Framework(self.profile, registry or plugins.in_tree_registry(),
                                   Handle(self.snapshot, binder, evictor=evictor, pdbs=pdbs, storage=storage))
        self.weights = self.framework.weights
        self.rng = rng or random.Random()
        # dynamic filters preceded only by static ones: if their feasible()
        # removed no node, they have nothing to add to the histogram
        first_dynamic = next((i for i, f in enumerate(self.framework.filters) if not f.static),
                             len(self.framework.filters))
        self._after_statics = {f.name for f in self.framework.filters[first_dynamic:first_dynamic + 1]}
        self._all_pass = FilterResult(np.zeros(0, dtype=np.int32), [SUCCESS])
        self._next_start = 0
        self._shapes = ShapeCache()

    # ----------------------------------------------------------- filters

    def _static(self, state: CycleState, pod: PodInfo):
        """(answer of each static filter or None where all pass, nodes that
        pass them all), cached per shape and snapshot generation."""
        return self._shapes.get(pod.shape, self.snapshot, lambda: self._run_static(state, pod))

    def _run_static(self, state: CycleState, pod: PodInfo):
        ok = self.snapshot.valid().copy()
        answers: list[FilterResult | None] = []
        for p in self.framework.static_filters:
            r = p.filter(state, pod, self.snapshot)
            if len(r.statuses) == 1:
                answers.append(None)
                continue
            ok &= r.codes == 0
            answers.append(r)
        return answers, ok

    def _answers(self, state: CycleState, pod: PodInfo, known: dict | None = None):
        """(plugin, FilterResult or None) in the profile's filter order;
        `known` holds dynamic answers this attempt already computed."""
        static = iter(self._static(state, pod)[0])
        known = known or {}
        for p in self.framework.filters:
            if p.static:
                yield p, next(static)
            else:
                r = known.get(p.name)
                yield p, r if r is not None else p.filter(state, pod, self.snapshot)

    def node_status(self, pod: PodInfo, node: str) -> Status:
        """The filter verdict for one node (tests, debugging)."""
        state = CycleState()
        st = self.framework.run_pre_filter(state, pod, self.snapshot)
        if not st.ok:
            return st
        i = self.snapshot.slot(node)
        for _, r in self._answers(state, pod):
            if r is not None and r.codes[i]:
                return r.status_at(i)
        return SUCCESS

    # ----------------------------------------------------------- schedule

    def schedule(self, pod: PodInfo) -> ScheduleResult:
        snap, fw = self.snapshot, self.framework
        state = CycleState()
        result = ScheduleResult(None, len(snap), 0, 0, state=state)
        st = fw.run_pre_filter(state, pod, snap)
        if not st.ok:
            if st.code == Code.ERROR:
                result.error = st
            else:
                result.pre_filter = st.message()
            return result
        _, feasible = self._static(state, pod)
        known = {}
        for f in fw.dynamic_filters:
            if f.cheap_feasible:
                before = np.count_nonzero(feasible)
                feasible = f.feasible(state, pod, snap, feasible)
                if f.name in self._after_statics and np.count_nonzero(feasible) == before:
                    known[f.name] = self._all_pass        # nothing to count for it in the histogram
            else:                      # the reasons cost no more: keep them for the histogram
                r = known[f.name] = f.filter(state, pod, snap)
                if len(r.statuses) > 1:
                    feasible = feasible & (r.codes == 0)
        idx = np.flatnonzero(feasible)
        result.feasible = len(idx)
        if result.feasible < result.num_nodes:
            self._histogram(result, state, pod, known, codes=not len(idx))
        if not len(idx):
            return result
        k = num_feasible_nodes_to_find(len(snap), self.percentage)
        if len(idx) > k:
            pos = int(np.searchsorted(idx, self._next_start))
            if pos + k <= len(idx):
                idx = idx[pos:pos + k]
            else:
                idx = np.concatenate((idx[pos:], idx[:k - (len(idx) - pos)]))
        self._next_start = (int(idx[-1]) + 1) % max(snap.num_slots, 1)
        result.scored = len(idx)
        st = fw.run_pre_score(state, pod, snap, idx)
        if not st.ok:
            result.error = st
            return result
        names_p, weights, rows, skipped = fw.run_score(state, pod, snap, idx)
        if rows:
            scores = np.vstack(rows)                      # plugins x candidates
            total = np.asarray(weights) @ scores
        else:
            scores, total = np.zeros((0, len(idx))), np.zeros(len(idx))
        best = np.flatnonzero(total == total.max())
        pick = int(best[self.rng.randrange(len(best))]) if len(best) > 1 else int(best[0])
        result.node = snap.names[idx[pick]]
        # argsort, not argpartition: scores have few distinct values (ties
        # everywhere on an empty cluster) and introselect degrades on them.
        order = np.argsort(-total, kind="stable")[:TOP_SCORED]
        if pick not in order:
            order = np.concatenate(([pick], order[:-1]))
        names = [snap.names[i] for i in idx[order].tolist()]
        totals = np.round(total[order], 1).tolist()
        per = np.round(scores[:, order], 1).T.tolist()    # candidates x plugins
        zeros = dict.fromkeys(skipped, 0.0)
        for k, name in enumerate(names):
            result.top.append((name, totals[k], {**dict(zip(names_p, per[k])), **zeros}))
        return result

    def post_filter(self, result: ScheduleResult, pod: PodInfo):
        """PostFilter plugins (preemption) for a pod no node fits; a
        PreFilter rejection or an error skips them."""
        if result.node is not None or result.pre_filter or result.error is not None:
            return None
        return self.framework.run_post_filter(result.state, pod, self.snapshot, result)

    def bind(self, result: ScheduleResult, pod: PodInfo, annotations: dict, ctx) -> Status:
        """Run the profile's Bind plugins for a decided (and assumed) pod."""
        return self.framework.run_bind(result.state, pod, result.node, annotations, ctx)

    def _histogram(self, result: ScheduleResult, state: CycleState, pod: PodInfo, known=None,
                   codes: bool = True) -> None:
        """Count every node that failed under the reasons of its first
        failing filter, in the profile's order; with `codes` (no node fits:
        preemption needs them) also the per-slot status codes."""
        names = self.snapshot.names
        failed = ~self.snapshot.valid()
        fail_codes = result.fail_codes = np.zeros(len(failed), dtype=np.int8) if codes else None
        for _, r in self._answers(state, pod, known):
            if r is None or len(r.statuses) == 1:
                continue
            new = (r.codes != 0) & ~failed
            if not new.any():
                continue
            if fail_codes is not None:
                fail_codes[new] = np.array([int(st.code) for st in r.statuses], dtype=np.int8)[r.codes[new]]
            counts = np.bincount(r.codes[new], minlength=len(r.statuses))
            for code in np.flatnonzero(counts[1:]) + 1:
                self._count(result, r.statuses[code].reasons, int(counts[code]),
                            lambda c=code: np.flatnonzero(new & (r.codes == c)), names)
            failed |= new

    @staticmethod
    def _count(result, reasons, n, where, names) -> None:
        for reason in reasons:
            result.reasons[reason] = result.reasons.get(reason, 0) + n
            ex = result.examples.setdefault(reason, [])
            if len(ex) < NAMES_PER_REASON:
                for i in where()[: NAMES_PER_REASON - len(ex)]:
                    ex.append(names[i])
