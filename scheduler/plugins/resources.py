"""NodeResourcesFit (filter) and the LeastAllocated / BalancedAllocation
scores, all vectorised over the snapshot's resource arrays.

Fit is dynamic (it changes with every assumed pod) so it is computed for
every pod, as three comparisons over int64 arrays. The reasons are
kube-scheduler's: "Too many pods", "Insufficient cpu", "Insufficient
memory"; one node can fail several, each counts in the aggregated message.
CPU and memory are only checked when the pod requests them.
"""
from __future__ import annotations

import numpy as np

from scheduler.framework import Code, FilterPlugin, FilterResult, PodInfo, ScorePlugin, Status, SUCCESS

TOO_MANY_PODS = "Too many pods"
INSUFFICIENT_CPU = "Insufficient cpu"
INSUFFICIENT_MEMORY = "Insufficient memory"
_BITS = ((1, TOO_MANY_PODS), (2, INSUFFICIENT_CPU), (4, INSUFFICIENT_MEMORY))


def _statuses(name: str) -> list[Status]:
    out = [SUCCESS]
    for code in range(1, 8):
        out.append(Status(Code.UNSCHEDULABLE, tuple(r for b, r in _BITS if code & b), name))
    return out


class NodeResourcesFit(FilterPlugin):
    name = "NodeResourcesFit"
    static = False
    cheap_feasible = True
    statuses = _statuses(name)

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        free = snapshot.free()
        codes = (free.pods <= 0).astype(np.int32)
        if pod.cpu > 0:
            codes |= (free.cpu < pod.cpu).astype(np.int32) << 1
        if pod.mem > 0:
            codes |= (free.memory < pod.mem).astype(np.int32) << 2
        return FilterResult(codes, self.statuses)

    def feasible(self, state, pod: PodInfo, snapshot, mask: np.ndarray) -> np.ndarray:
        """mask & fits, without the reasons (the fast path)."""
        free = snapshot.free()
        out = mask & (free.pods > 0)
        if pod.cpu > 0:
            out &= free.cpu >= pod.cpu
        if pod.mem > 0:
            out &= free.memory >= pod.mem
        return out


class LeastAllocated(ScorePlugin):
    """Mean over cpu and memory of (allocatable - requested) / allocatable,
    requested including this pod, with kube-scheduler's non-zero defaults
    for pods without requests."""
    name = "LeastAllocated"

    def score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> np.ndarray:
        req, inv = snapshot.nonzero_requested(), snapshot.inverse_allocatable()
        f_cpu = (req.cpu[idx] + pod.nz_cpu) * inv.cpu[idx]
        f_mem = (req.memory[idx] + pod.nz_mem) * inv.memory[idx]
        # fractions are >= 0, so 1 - f <= 1: only the lower bound needs clipping
        return (np.maximum(1.0 - f_cpu, 0.0) + np.maximum(1.0 - f_mem, 0.0)) * 50.0


class BalancedAllocation(ScorePlugin):
    """(1 - std(cpu fraction, memory fraction)) * 100, fractions capped at 1:
    prefers nodes whose cpu and memory usage stay alike."""
    name = "BalancedAllocation"

    def score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> np.ndarray:
        req, inv = snapshot.requested(), snapshot.inverse_allocatable()
        f_cpu = np.minimum((req.cpu[idx] + pod.cpu) * inv.cpu[idx], 1.0)
        f_mem = np.minimum((req.memory[idx] + pod.mem) * inv.memory[idx], 1.0)
        return (1.0 - np.abs(f_cpu - f_mem) * 0.5) * 100.0
