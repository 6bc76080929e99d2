"""One scheduling decision: filter all nodes, score a sample, pick the best.

`Algorithm.schedule(pod)` is synchronous and cheap at 5,000 nodes:

1. static filters (unschedulable, node name, taints, affinity) — their
   combined per-slot codes are cached per pod shape (framework.PodInfo.shape)
   and cache generation, so replicas of one template pay once;
2. NodeResourcesFit over the int64 arrays (dynamic, every pod);
3. the feasible slots, rotated from where the previous pod stopped, cut to
   kube-scheduler's numFeasibleNodesToFind (adaptive percentageOfNodesToScore:
   max(5, 50 - nodes/125) %, never fewer than 100 nodes);
4. weighted scores over those candidates; the highest total wins, ties
   broken at random (kube-scheduler's selectHost does the same).

It returns a ScheduleResult with what the decision record and the
FailedScheduling message need (reason histogram, a few node names per
reason, top candidates with per-plugin scores). The caller assumes the pod
in the cache before anything awaits.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from scheduler import plugins
from scheduler.cache import NodeCache
from scheduler.framework import Code, Config, PodInfo, Status, SUCCESS, aggregate_message

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
MAX_REASONS_LISTED = 5
NAMES_PER_REASON = 3
TOP_SCORED = 5
_REMOVED = Status(Code.ERROR, (), "removed")       # free slots


@dataclass
class ScheduleResult:
    node: str | None
    num_nodes: int
    feasible: int
    scored: int
    reasons: dict[str, int] = field(default_factory=dict)         # reason -> node count
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few node names
    top: list[tuple[str, float, dict[str, float]]] = field(default_factory=list)

    def message(self) -> str:
        return aggregate_message(self.num_nodes, self.reasons)


def num_feasible_nodes_to_find(num_nodes: int, percentage: int) -> int:
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(MIN_FEASIBLE_NODES_PERCENTAGE, 50 - num_nodes // 125)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Algorithm:
    def __init__(self, cache: NodeCache, config: Config | None = None, *, rng: random.Random | None = None):
        self.cache = cache
        self.config = config or Config()
        self.static_filters = plugins.static_filters()
        self.fit = plugins.NodeResourcesFit()
        w = self.config.weights
        self.affinity_score = plugins.NodeAffinityScore()
        self.scorers = [(plugins.LeastAllocated(), w.least_allocated),
                        (plugins.BalancedAllocation(), w.balanced_allocation),
                        (self.affinity_score, w.node_affinity),
                        (plugins.OwnerSpread(), w.owner_spread)]
        self.rng = rng or random.Random()
        self._next_start = 0
        self._shapes: dict[bytes, tuple] = {}

    # ----------------------------------------------------------- filters

    def _static(self, pod: PodInfo):
        """(codes, statuses, preferred-affinity raw scores, codes == 0) for the
        pod's shape, cached per shape and cache generation."""
        cache = self.cache
        hit = self._shapes.get(pod.shape)
        if hit is not None and hit[0] == cache.generation and hit[1] == cache.n:
            return hit[2], hit[3], hit[4], hit[5]
        n = cache.n
        codes = np.where(cache.valid[:n], 0, 1).astype(np.int32)
        statuses = [SUCCESS, _REMOVED]
        for p in self.static_filters:
            r = p.filter(pod, cache)
            if len(r.statuses) == 1:
                continue
            take = (codes == 0) & (r.codes != 0)
            codes[take] = r.codes[take] + (len(statuses) - 1)
            statuses.extend(r.statuses[1:])
        raw = plugins.affinity.preferred_raw(cache, pod.pod.spec)
        if len(self._shapes) > 4096:
            self._shapes.clear()
        ok = codes == 0
        self._shapes[pod.shape] = (cache.generation, n, codes, statuses, raw, ok)
        return codes, statuses, raw, ok

    def filter(self, pod: PodInfo):
        """Per slot: static codes, their statuses, fit codes, feasible mask."""
        codes, statuses, raw, ok = self._static(pod)
        fit = self.fit.filter(pod, self.cache)
        feasible = ok & (fit.codes == 0)
        return codes, statuses, fit, feasible, raw

    def node_status(self, pod: PodInfo, node: str) -> Status:
        """The filter verdict for one node (tests, debugging)."""
        codes, statuses, fit, _, _ = self.filter(pod)
        i = self.cache.index[node]
        if codes[i]:
            return statuses[codes[i]]
        return fit.statuses[fit.codes[i]]

    # ----------------------------------------------------------- schedule

    def schedule(self, pod: PodInfo) -> ScheduleResult:
        cache = self.cache
        codes, statuses, raw, ok = self._static(pod)
        result = ScheduleResult(None, len(cache), 0, 0)
        idx = np.flatnonzero(self.fit.fits(pod, cache, ok))
        result.feasible = len(idx)
        if result.feasible < result.num_nodes:
            self._histogram(result, codes, statuses, self.fit.filter(pod, cache), ok)
        if not len(idx):
            return result
        k = num_feasible_nodes_to_find(len(cache), self.config.percentage_of_nodes_to_score)
        if len(idx) > k:
            pos = int(np.searchsorted(idx, self._next_start))
            if pos + k <= len(idx):
                idx = idx[pos:pos + k]
            else:
                idx = np.concatenate((idx[pos:], idx[:k - (len(idx) - pos)]))
        self._next_start = (int(idx[-1]) + 1) % max(cache.n, 1)
        result.scored = len(idx)
        names_p, weights, rows = [], [], []
        for plugin, weight in self.scorers:
            if not weight:
                continue
            if plugin is self.affinity_score:
                rows.append(plugin.score(pod, cache, idx, raw))
            else:
                rows.append(plugin.score(pod, cache, idx))
            names_p.append(plugin.name)
            weights.append(weight)
        if rows:
            scores = np.vstack(rows)                      # plugins x candidates
            total = np.asarray(weights) @ scores
        else:
            scores, total = np.zeros((0, len(idx))), np.zeros(len(idx))
        best = np.flatnonzero(total == total.max())
        pick = int(best[self.rng.randrange(len(best))]) if len(best) > 1 else int(best[0])
        result.node = cache.names[idx[pick]]
        # argsort, not argpartition: scores have few distinct values (ties
        # everywhere on an empty cluster) and introselect degrades on them.
        order = np.argsort(-total, kind="stable")[:TOP_SCORED]
        if pick not in order:
            order = np.concatenate(([pick], order[:-1]))
        names = [cache.names[i] for i in idx[order].tolist()]
        totals = np.round(total[order], 1).tolist()
        per = np.round(scores[:, order], 1).T.tolist()    # candidates x plugins
        for k, name in enumerate(names):
            result.top.append((name, totals[k], dict(zip(names_p, per[k]))))
        return result

    def _histogram(self, result: ScheduleResult, codes, statuses, fit, static_ok) -> None:
        names = self.cache.names
        counts = np.bincount(codes, minlength=2)
        for code in np.flatnonzero(counts[2:]) + 2:
            self._count(result, statuses[code].reasons, int(counts[code]),
                        lambda c=code: np.flatnonzero(codes == c), names)
        fcodes = np.where(static_ok, fit.codes, 0)
        fcounts = np.bincount(fcodes, minlength=8)
        for code in np.flatnonzero(fcounts[1:]) + 1:
            self._count(result, fit.statuses[code].reasons, int(fcounts[code]),
                        lambda c=code: np.flatnonzero(fcodes == c), names)

    @staticmethod
    def _count(result, reasons, n, where, names) -> None:
        for reason in reasons:
            result.reasons[reason] = result.reasons.get(reason, 0) + n
            ex = result.examples.setdefault(reason, [])
            if len(ex) < NAMES_PER_REASON:
                for i in where()[: NAMES_PER_REASON - len(ex)]:
                    ex.append(names[i])
