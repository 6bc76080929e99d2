"""NodeResourcesFit (filter) and the LeastAllocated / BalancedAllocation
scores, all vectorised over the cache's arrays.

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
    statuses = _statuses(name)

    def filter(self, pod: PodInfo, cache) -> FilterResult:
        n = cache.n
        codes = (cache.free_pods[:n] <= 0).astype(np.int32)
        if pod.cpu > 0:
            codes |= (cache.free_cpu[:n] < pod.cpu).astype(np.int32) << 1
        if pod.mem > 0:
            codes |= (cache.free_mem[:n] < pod.mem).astype(np.int32) << 2
        return FilterResult(codes, self.statuses)

    @staticmethod
    def fits(pod: PodInfo, cache, mask: np.ndarray) -> np.ndarray:
        """mask & fits, without the reasons (the fast path)."""
        n = cache.n
        out = mask & (cache.free_pods[:n] > 0)
        if pod.cpu > 0:
            out &= cache.free_cpu[:n] >= pod.cpu
        if pod.mem > 0:
            out &= cache.free_mem[:n] >= pod.mem
        return out



class LeastAllocated(ScorePlugin):
    """Mean over cpu and memory of (allocatable - requested) / allocatable,
    requested including this pod, with kube-scheduler's non-zero defaults
    for pods without requests."""
    name = "LeastAllocated"

    def score(self, pod: PodInfo, cache, idx: np.ndarray) -> np.ndarray:
        f_cpu = (cache.nz_cpu[idx] + pod.nz_cpu) * cache.inv_cpu[idx]
        f_mem = (cache.nz_mem[idx] + pod.nz_mem) * cache.inv_mem[idx]
        # fractions are >= 0, so 1 - f <= 1: only the lower bound needs clipping
        return (np.maximum(1.0 - f_cpu, 0.0) + np.maximum(1.0 - f_mem, 0.0)) * 50.0


class BalancedAllocation(ScorePlugin):
    """(1 - std(cpu fraction, memory fraction)) * 100, fractions capped at 1:
    prefers nodes whose cpu and memory usage stay alike."""
    name = "BalancedAllocation"

    def score(self, pod: PodInfo, cache, idx: np.ndarray) -> np.ndarray:
        f_cpu = np.minimum((cache.req_cpu[idx] + pod.cpu) * cache.inv_cpu[idx], 1.0)
        f_mem = np.minimum((cache.req_mem[idx] + pod.mem) * cache.inv_mem[idx], 1.0)
        return (1.0 - np.abs(f_cpu - f_mem) * 0.5) * 100.0
