"""OwnerSpread: spread the pods of one controller (ReplicaSet, ...) across
nodes, like kube-scheduler's SelectorSpread by node: among the candidates,
100 * (max - count) / max, where count is the number of pods of the same
controller ownerReference uid on the node (assumed ones included)."""
from __future__ import annotations

import numpy as np

from scheduler.framework import PodInfo, ScorePlugin


class OwnerSpread(ScorePlugin):
    name = "OwnerSpread"

    def score(self, state, pod: PodInfo, snapshot, idx: np.ndarray) -> np.ndarray:
        if not pod.owner_uid:
            return np.zeros(len(idx))
        col = snapshot.owner_counts(pod.owner_uid)
        if col is None:
            return np.full(len(idx), 100.0)
        counts = col[idx].astype(np.float64)
        top = counts.max() if counts.size else 0
        if top <= 0:
            return np.full(len(idx), 100.0)
        return (top - counts) * (100.0 / top)
