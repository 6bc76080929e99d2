"""The disruption controller (Kubernetes' pkg/controller/disruption): the
status of every PodDisruptionBudget.

sync(key) takes the pods the PDB selects and computes, like Kubernetes:

* expectedPods and desiredHealthy: for an integer minAvailable, the number
  of selected pods and minAvailable; for maxUnavailable or a percentage,
  the sum of the scales of the pods' controllers (a ReplicaSet owned by a
  Deployment counts the Deployment's replicas, each controller once),
  percentages rounded up; a pod whose controller has no scale we know makes
  it unknown ("found no controllers for pod ..."), a pod without any
  controller is left out and reported ("UnmanagedPods");
* currentHealthy: selected pods that are Ready, not terminating, and not
  in status.disruptedPods (evicted, deletion not yet seen; entries older
  than 2 minutes are dropped, and the key comes back when the next expires);
* disruptionsAllowed = currentHealthy - desiredHealthy (0 when negative or
  when no pod is expected), observedGeneration, and the DisruptionAllowed
  condition (SufficientPods / InsufficientPods; SyncFailed with every
  disruption forbidden when the computation fails).

Handlers only enqueue: a PDB change its own key; a pod change the PDBs of
its namespace that select it (old and new labels); a ReplicaSet or
Deployment change (a scale) every PDB of its namespace.
"""
from __future__ import annotations

import math
import time

from machinery import codec, disruption, errors, selectors
from machinery.informer import key_of

from controllers import podutil
from controllers.base import Controller

DELETION_TIMEOUT = 120.0
SCALED_KINDS = ("ReplicaSet", "Deployment", "StatefulSet")


class ScaleUnknown(errors.ControlFlow):
    """The expected pod count cannot be computed (reported in the PDB's condition)."""


def scaled(v, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)."""
    if v.WhichOneof("value") == "str_val":
        return math.ceil(int(v.str_val.rstrip("%")) * total / 100)
    return v.int_val


class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, client, factory, recorder=None, workers: int = 2, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock
        self.pdb_inf = factory.informer("PodDisruptionBudget")
        self.pod_inf = factory.informer("Pod")
        self.owner_infs = {k: factory.informer(k) for k in SCALED_KINDS}
        self.pdb_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.pod_inf.add_handler(self._pod, lambda old, new: (self._pod(old), self._pod(new)), self._pod)
        for inf in self.owner_infs.values():
            inf.add_handler(self._namespace, lambda old, new: self._namespace(new), self._namespace)

    def informers(self):
        return [self.pdb_inf, self.pod_inf, *self.owner_infs.values()]

    def _pod(self, pod) -> None:
        for pdb in self.pdb_inf.list(pod.metadata.namespace):
            if disruption.selects(pdb, pod):
                self.enqueue(pdb)

    def _namespace(self, obj) -> None:
        for pdb in self.pdb_inf.list(obj.metadata.namespace):
            self.enqueue(pdb)

    # ------------------------------------------------------------ scale
    def _scale_of(self, ref, namespace: str):
        """(uid, scale) of a pod's controller, following a ReplicaSet up to its Deployment."""
        if ref.kind not in SCALED_KINDS:
            return None
        obj = self.owner_infs[ref.kind].get(namespace, ref.name)
        if obj is None or obj.metadata.uid != ref.uid:
            return None
        up = podutil.controller_ref(obj)
        if ref.kind == "ReplicaSet" and up is not None and up.kind == "Deployment":
            found = self._scale_of(up, namespace)
            if found is not None:
                return found
        return obj.metadata.uid, obj.spec.replicas if obj.spec.HasField("replicas") else 1

    def expected_scale(self, pdb, pods) -> int:
        """SUM of the scales of the pods' controllers; pods without one are only reported."""
        scales: dict[str, int] = {}
        seen: set[str] = set()
        unmanaged = []
        for pod in pods:
            ref = podutil.controller_ref(pod)
            if ref is None:
                unmanaged.append(pod.metadata.name)
                continue
            if ref.uid in seen:
                continue
            found = self._scale_of(ref, pod.metadata.namespace)
            if found is None:
                raise ScaleUnknown(f'found no controllers for pod "{pod.metadata.name}"')
            seen.add(ref.uid)
            scales[found[0]] = found[1]
        if unmanaged:
            self.event(pdb, "Warning", "UnmanagedPods",
                       f"Pods selected by this PodDisruptionBudget (selector: "
                       f"{selectors.proto_to_string(pdb.spec.selector)}) were found to be unmanaged. As a result, "
                       "the status of the PDB cannot be calculated correctly, which may result in undefined "
                       'behavior. To account for these pods please set ".spec.minAvailable" field of the PDB '
                       "to an integer value.")
        return sum(scales.values())

    def expected_and_desired(self, pdb, pods) -> tuple[int, int]:
        spec = pdb.spec
        if spec.max_unavailable.WhichOneof("value") is not None:
            expected = self.expected_scale(pdb, pods)
            return expected, max(0, expected - scaled(spec.max_unavailable, expected))
        if spec.min_available.WhichOneof("value") == "int_val":
            return len(pods), spec.min_available.int_val
        if spec.min_available.WhichOneof("value") == "str_val":
            expected = self.expected_scale(pdb, pods)
            return expected, scaled(spec.min_available, expected)
        return len(pods), 0

    # ------------------------------------------------------------- sync
    async def sync(self, key: str) -> None:
        pdb = self.pdb_inf.get_by_key(key)
        if pdb is None:
            return
        now = self.clock()
        pods = [p for p in self.pod_inf.list(pdb.metadata.namespace) if disruption.selects(pdb, p)]
        st = codec.copy(pdb.status)
        by_name = {p.metadata.name: p for p in pods}
        recheck = None
        for name, ts in list(st.disrupted_pods.items()):
            pod = by_name.get(name)
            expires = ts.seconds + DELETION_TIMEOUT
            if pod is None or podutil.is_terminating(pod) or expires < now:
                del st.disrupted_pods[name]
            else:
                recheck = expires if recheck is None else min(recheck, expires)
        try:
            expected, desired = self.expected_and_desired(pdb, pods)
        except ScaleUnknown as exc:
            self.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                       f"Failed to calculate the number of expected pods: {exc}")
            st.disruptions_allowed = 0
            st.observed_generation = pdb.metadata.generation
            disruption.set_condition(st, disruption.DISRUPTION_ALLOWED, "False", disruption.SYNC_FAILED,
                                     str(exc), pdb.metadata.generation, now)
        else:
            healthy = sum(1 for p in pods if podutil.is_pod_ready(p) and not podutil.is_terminating(p)
                          and p.metadata.name not in st.disrupted_pods)
            allowed = healthy - desired
            st.current_healthy, st.desired_healthy, st.expected_pods = healthy, desired, expected
            st.disruptions_allowed = allowed if expected > 0 and allowed > 0 else 0
            st.observed_generation = pdb.metadata.generation
            disruption.allowed_condition(st, pdb.metadata.generation, now)
        if st != pdb.status:
            new = codec.copy(pdb)
            new.status.CopyFrom(st)
            try:
                await self.client.update_status(new)
            except errors.NotFound:
                return
        if recheck is not None:
            self.queue.add_after(key_of(pdb), max(0.05, recheck - now + 0.05))
