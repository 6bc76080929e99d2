"""TaintToleration filter: a node's NoSchedule/NoExecute taints (and the
implicit readiness taint, see cache.effective_taints) must all be tolerated.
Evaluated once per taint group, not once per node."""
from __future__ import annotations

import numpy as np

from machinery.pb import core_pb2
from scheduler.framework import Code, FilterPlugin, FilterResult, PodInfo, Status, SUCCESS

ERR_UNTOLERATED = "node(s) had untolerated taint {{{}: {}}}"


def tolerates(t: core_pb2.Toleration, taint: tuple[str, str, str]) -> bool:
    """Kubernetes' Toleration.ToleratesTaint: empty effect matches every
    effect, empty key (with Exists) every key; Equal (or empty) compares the
    value, Exists ignores it."""
    key, value, effect = taint
    if t.effect and t.effect != effect:
        return False
    if t.key and t.key != key:
        return False
    if t.operator in ("", "Equal"):
        return t.value == value
    return t.operator == "Exists"


def first_untolerated(tolerations, taints) -> tuple[str, str, str] | None:
    for taint in taints:
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


class TaintToleration(FilterPlugin):
    name = "TaintToleration"

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        tolerations = pod.pod.spec.tolerations
        statuses = [SUCCESS]
        by_reason: dict[str, int] = {}
        groups = snapshot.taint_groups
        group_codes = np.zeros(len(groups), dtype=np.int32)
        for gid, taints in enumerate(groups):
            bad = first_untolerated(tolerations, taints)
            if bad is None:
                continue
            reason = ERR_UNTOLERATED.format(bad[0], bad[1])
            code = by_reason.get(reason)
            if code is None:
                code = by_reason[reason] = len(statuses)
                statuses.append(Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (reason,), self.name))
            group_codes[gid] = code
        if len(statuses) == 1:
            return FilterResult(np.zeros(snapshot.num_slots, dtype=np.int32), statuses)
        return FilterResult(group_codes[snapshot.taint_group()], statuses)
