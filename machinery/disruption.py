"""PodDisruptionBudget semantics shared by the disruption controller and the
Eviction API (Kubernetes' pkg/registry/core/pod/storage/eviction.go and
pkg/apis/policy helpers).

`decide_eviction(pod, list_pdbs, write_status)` is the one decision an
eviction makes before the pod is deleted (`admit_eviction(client, pod)` is
the same through a client):

* a pod that is Succeeded, Failed, Pending or already terminating may always
  be evicted (canIgnorePDB);
* no PDB in the pod's namespace selects it -> allowed; more than one -> 500
  "This pod has more than one PodDisruptionBudget, which the eviction
  subresource does not support.";
* a pod that is not Ready is let go without spending the budget when the
  PDB says `unhealthyPodEvictionPolicy: AlwaysAllow`, or (IfHealthyBudget,
  the default) when the application is healthy enough already
  (currentHealthy >= desiredHealthy > 0);
* otherwise the PDB's status must be current (observedGeneration) and allow
  a disruption, else 429 TooManyRequests "Cannot evict pod as it would
  violate the pod's disruption budget." with a DisruptionBudget cause; an
  allowed eviction decrements status.disruptionsAllowed and records the pod
  in status.disruptedPods (so the controller does not count it healthy
  before the deletion shows), written with the PDB's resourceVersion; a
  conflict re-reads and decides again.

The HTTP Eviction endpoint (with the apiserver's verbs) and `kctl drain`
(with its client) call it; dry_run decides without writing. `set_condition` is metav1's SetStatusCondition for the PDB's
DisruptionAllowed condition, used here and by controllers/disruption.py.
"""
from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import codec, errors, selectors
from machinery.pb import api_pb2

EVICTION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_PDBS = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
MAX_DISRUPTED_PODS = 2000
CONFLICT_RETRIES = 5
DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT, INSUFFICIENT, SYNC_FAILED = "SufficientPods", "InsufficientPods", "SyncFailed"


def is_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def can_ignore_pdb(pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed", "Pending") or pod.metadata.HasField("deletion_timestamp")


def selects(pdb, pod) -> bool:
    """A nil selector selects nothing; an empty one every pod of the namespace."""
    if not pdb.spec.HasField("selector"):
        return False
    return selectors.from_proto(pdb.spec.selector).matches(pod.metadata.labels)


def set_condition(status, type_: str, cstatus: str, reason: str, message: str, generation: int, now: float) -> None:
    """meta.SetStatusCondition: lastTransitionTime moves only when the status flips."""
    c = next((c for c in status.conditions if c.type == type_), None)
    if c is None or c.status != cstatus:
        if c is None:
            c = status.conditions.add(type=type_)
        c.last_transition_time.CopyFrom(Timestamp(seconds=int(now)))
    c.status, c.reason, c.message, c.observed_generation = cstatus, reason, message, generation


def allowed_condition(status, generation: int, now: float) -> None:
    """UpdateDisruptionAllowedCondition."""
    if status.disruptions_allowed > 0:
        set_condition(status, DISRUPTION_ALLOWED, "True", SUFFICIENT, "", generation, now)
    else:
        set_condition(status, DISRUPTION_ALLOWED, "False", INSUFFICIENT, "", generation, now)


def _too_many(message: str) -> errors.TooManyRequests:
    return errors.TooManyRequests(EVICTION_MESSAGE, causes=[
        api_pb2.StatusCause(reason="DisruptionBudget", message=message)])


def check_and_decrement(pdb, pod_name: str, now: float, dry_run: bool = False):
    """checkAndDecrement: the PDB with one disruption spent, or an ApiError."""
    st = pdb.status
    if st.observed_generation < pdb.metadata.generation:
        raise _too_many(f"The disruption budget {pdb.metadata.name} is still being processed by the server.")
    if st.disruptions_allowed < 0:
        raise errors.Forbidden("pdb disruptions allowed is negative")
    if len(st.disrupted_pods) > MAX_DISRUPTED_PODS:
        raise errors.Forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if st.disruptions_allowed == 0:
        raise _too_many(f"The disruption budget {pdb.metadata.name} needs {st.desired_healthy} healthy pods "
                        f"and has {st.current_healthy} currently")
    new = codec.copy(pdb)
    new.status.disruptions_allowed -= 1
    if new.status.disruptions_allowed == 0:
        allowed_condition(new.status, new.status.observed_generation, now)
    if not dry_run:
        new.status.disrupted_pods[pod_name].CopyFrom(Timestamp(seconds=int(now)))
    return new


async def decide_eviction(pod, list_pdbs, write_status, *, dry_run: bool = False, clock=time.time) -> None:
    """Raise if evicting `pod` now would violate its PodDisruptionBudget; else spend the budget.

    `list_pdbs()` returns the PDBs of the pod's namespace, `write_status(pdb)` writes a PDB's
    status with its resourceVersion as precondition (errors.Conflict when stale): the
    apiserver passes its own verbs, a client its list and update_status."""
    if can_ignore_pdb(pod):
        return
    for _ in range(CONFLICT_RETRIES):
        matching = [p for p in await list_pdbs() if selects(p, pod)]
        if not matching:
            return
        if len(matching) > 1:
            raise errors.ApiError(MULTIPLE_PDBS)
        pdb = matching[0]
        if not is_ready(pod):
            policy = pdb.spec.unhealthy_pod_eviction_policy if pdb.spec.HasField(
                "unhealthy_pod_eviction_policy") else "IfHealthyBudget"
            if policy == "AlwaysAllow":
                return
            if pdb.status.current_healthy >= pdb.status.desired_healthy > 0:
                return
        new = check_and_decrement(pdb, pod.metadata.name, clock(), dry_run)
        if dry_run:
            return
        try:
            await write_status(new)
            return
        except errors.Conflict:
            continue
    raise _too_many("The disruption budget changed while the eviction was decided; try again.")


async def admit_eviction(client, pod, *, dry_run: bool = False, clock=time.time) -> None:
    """decide_eviction through a client (machinery.client.Client or the FakeClient)."""
    async def list_pdbs():
        items, _rv = await client.list("PodDisruptionBudget", pod.metadata.namespace)
        return items
    await decide_eviction(pod, list_pdbs, client.update_status, dry_run=dry_run, clock=clock)
