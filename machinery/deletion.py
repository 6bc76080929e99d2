"""How long a deleted object waits before it is removed: the graceful
deletion rule the apiserver applies (apiserver/registry.py) and the unit
tests' FakeClient imitates (machinery/fakeclient.py), kept in one place so
the two cannot drift apart.

Kubernetes deletes only pods gracefully: a pod's containers get
terminationGracePeriodSeconds (or the grace a DELETE asks for) to stop. A pod
that never reached a node, or whose containers have all finished, has
nothing to stop and goes at once; so does every other kind (finalizers aside,
which are not a grace period).
"""
from __future__ import annotations

DEFAULT_POD_GRACE = 30      # seconds, Kubernetes' default terminationGracePeriodSeconds


def pod_grace_period(pod, requested: int | None) -> int:
    """Seconds of graceful deletion for `pod`; 0 removes it at once.

    `requested` is the DELETE's gracePeriodSeconds (None: not given); a
    negative value counts as 0."""
    if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
        return 0
    if requested is not None:
        return max(0, requested)
    if pod.spec.HasField("termination_grace_period_seconds"):
        return max(0, pod.spec.termination_grace_period_seconds)
    return DEFAULT_POD_GRACE
