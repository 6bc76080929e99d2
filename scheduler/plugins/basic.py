"""NodeUnschedulable and NodeName filters."""
from __future__ import annotations

import numpy as np

from scheduler.framework import Code, FilterPlugin, FilterResult, PodInfo, Status, SUCCESS, single_reason
from scheduler.plugins.taints import tolerates

UNSCHEDULABLE_TAINT = ("node.kubernetes.io/unschedulable", "", "NoSchedule")
ERR_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_NODE_NAME = "node(s) didn't match the requested node name"


class NodeUnschedulable(FilterPlugin):
    """Nodes with spec.unschedulable (cordoned) refuse pods, unless the pod
    tolerates node.kubernetes.io/unschedulable:NoSchedule."""
    name = "NodeUnschedulable"
    status = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (ERR_UNSCHEDULABLE,), name)

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        if any(tolerates(t, UNSCHEDULABLE_TAINT) for t in pod.pod.spec.tolerations):
            return FilterResult(np.zeros(snapshot.num_slots, dtype=np.int32), [SUCCESS])
        return single_reason(snapshot.unschedulable(), self.status)


class NodeName(FilterPlugin):
    """A pod naming a node in spec.nodeName fits only that node."""
    name = "NodeName"
    status = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (ERR_NODE_NAME,), name)

    def filter(self, state, pod: PodInfo, snapshot) -> FilterResult:
        n = snapshot.num_slots
        want = pod.pod.spec.node_name
        if not want:
            return FilterResult(np.zeros(n, dtype=np.int32), [SUCCESS])
        fail = np.ones(n, dtype=bool)
        i = snapshot.slot(want)
        if i is not None:
            fail[i] = False
        return single_reason(fail, self.status)
