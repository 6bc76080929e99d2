"""The ReplicaSet controller (Kubernetes' pkg/controller/replicaset).

sync(key): read the ReplicaSet from the cache; claim the active pods of its
namespace (adopt matching orphans, release owned pods whose labels stopped
matching); if its expectations are satisfied, create or delete pods to match
spec.replicas; then write the status it computes from the claimed pods.

Creation goes in slow-start batches (1, 2, 4, ...): a quota or validation
error stops after the first failure instead of hammering the apiserver.
Deletion picks the least valuable pods first (podutil.deletion_rank).

Expectations (controllers/expectations.py) make over-creation impossible:
before N creates the sync records "expect N adds"; the pod handlers lower it
as the pods show up in the cache; until then further syncs only refresh the
status. Deletes record the UIDs they remove. Pods with a deletionTimestamp
no longer count (FilterActivePods), so a graceful delete is replaced at once.

Pods are named by generateName `<rs-name>-` (the apiserver adds 5 random
characters).
"""
from __future__ import annotations

import asyncio
import time

from machinery import codec, errors, kinds, selectors
from machinery.informer import BY_CONTROLLER, BY_NAMESPACE, index_by_controller_uid, index_by_namespace, key_of

from controllers import podutil
from controllers.base import Controller
from controllers.expectations import Expectations

BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1


def ensure_indexes(inf) -> None:
    if BY_NAMESPACE not in inf._indexers:
        inf.add_index(BY_NAMESPACE, index_by_namespace)
    if BY_CONTROLLER not in inf._indexers:
        inf.add_index(BY_CONTROLLER, index_by_controller_uid)


def replicas_of(obj) -> int:
    return obj.spec.replicas if obj.spec.HasField("replicas") else 1


def pod_from_template(rs) -> "kinds.BY_KIND['Pod'].message":
    pod = kinds.new("Pod")
    t = rs.spec.template
    pod.metadata.generate_name = rs.metadata.name + "-"
    pod.metadata.namespace = rs.metadata.namespace
    pod.metadata.labels.update(t.metadata.labels)
    pod.metadata.annotations.update(t.metadata.annotations)
    pod.metadata.finalizers.extend(t.metadata.finalizers)
    pod.metadata.owner_references.append(podutil.owner_ref_for(rs))
    pod.spec.CopyFrom(t.spec)
    return pod


async def slow_start(n: int, initial: int, fn) -> int:
    """Call fn() n times in batches of initial, 2*initial, ... concurrently
    within a batch; stop after a batch with an error. Returns the successes."""
    done = 0
    batch = min(n, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        for r in results:
            if isinstance(r, asyncio.CancelledError):
                raise r
        errs = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(errs)
        if errs:
            raise _BatchFailed(done, len(errs), errs[0]) from errs[0]
        batch = min(2 * batch, n - done)
    return done


class _BatchFailed(errors.ControlFlow):
    """slow_start's signal to its caller: a batch failed; `first` is the first error."""

    def __init__(self, done, failed, first):
        super().__init__(str(first))
        self.done, self.failed, self.first = done, failed, first


class ReplicaSetController(Controller):
    name = "replicaset"

    def __init__(self, client, factory, recorder=None, workers: int = 5, *, clock=time.time,
                 burst_replicas: int = BURST_REPLICAS):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock
        self.burst = burst_replicas
        self.expectations = Expectations()
        self.rs_inf = factory.informer("ReplicaSet")
        self.pod_inf = factory.informer("Pod")
        for inf in (self.rs_inf, self.pod_inf):
            ensure_indexes(inf)
        self.rs_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._rs_deleted)
        self.pod_inf.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def informers(self):
        return [self.rs_inf, self.pod_inf]

    # --------------------------------------------------------- handlers
    def _rs_deleted(self, rs) -> None:
        self.expectations.delete(key_of(rs))
        self.enqueue(rs)

    def _resolve(self, pod, ref):
        if ref is None or ref.kind != "ReplicaSet":
            return None
        rs = self.rs_inf.get(pod.metadata.namespace, ref.name)
        return rs if rs is not None and rs.metadata.uid == ref.uid else None

    def _matching_sets(self, pod) -> list:
        return [rs for rs in self.rs_inf.list(pod.metadata.namespace)
                if rs.spec.HasField("selector") and selectors.from_proto(rs.spec.selector).matches(pod.metadata.labels)]

    def _pod_added(self, pod) -> None:
        if podutil.is_terminating(pod):
            self._pod_deleted(pod)
            return
        ref = podutil.controller_ref(pod)
        if ref is not None:
            rs = self._resolve(pod, ref)
            if rs is not None:
                self.expectations.creation_observed(key_of(rs))
                self.enqueue(rs)
            return
        for rs in self._matching_sets(pod):
            self.enqueue(rs)

    def _pod_updated(self, old, pod) -> None:
        labels_changed = old.metadata.labels != pod.metadata.labels
        if podutil.is_terminating(pod):
            self._pod_deleted(pod)
            if labels_changed:
                self._pod_deleted(old)
            return
        ref, old_ref = podutil.controller_ref(pod), podutil.controller_ref(old)
        if old_ref is not None and (ref is None or ref.uid != old_ref.uid):
            rs = self._resolve(old, old_ref)
            if rs is not None:
                self.enqueue(rs)
        if ref is not None:
            rs = self._resolve(pod, ref)
            if rs is not None:
                self.enqueue(rs)
                if (rs.spec.min_ready_seconds > 0 and podutil.is_pod_ready(pod)
                        and not podutil.is_pod_ready(old)):
                    self.queue.add_after(key_of(rs), rs.spec.min_ready_seconds + 0.1)
            return
        if labels_changed or old_ref is not None:
            for rs in self._matching_sets(pod):
                self.enqueue(rs)

    def _pod_deleted(self, pod) -> None:
        ref = podutil.controller_ref(pod)
        rs = self._resolve(pod, ref) if ref is not None else None
        if rs is None:
            return
        self.expectations.deletion_observed(key_of(rs), pod.metadata.uid)
        self.enqueue(rs)

    # --------------------------------------------------------- sync
    async def sync(self, key: str) -> None:
        rs = self.rs_inf.get_by_key(key)
        if rs is None:
            self.expectations.delete(key)
            return
        try:
            selector = selectors.from_field(rs.spec)
        except ValueError as exc:
            self.log.error("%s: invalid selector: %s", key, exc)
            return
        need_sync = self.expectations.satisfied(key)
        pods = [p for p in self.pod_inf.list(rs.metadata.namespace) if podutil.is_pod_active(p)]
        pods = await podutil.RefManager(self.client, rs, selector).claim(pods)
        manage_error = None
        if need_sync and not podutil.is_terminating(rs):
            try:
                await self.manage_replicas(key, rs, pods)
            except Exception as exc:  # status is still written; the error retries the key
                manage_error = exc
        await self.update_status(rs, pods, manage_error)
        if manage_error is not None:
            raise manage_error

    async def manage_replicas(self, key: str, rs, pods) -> None:
        diff = len(pods) - replicas_of(rs)
        if diff < 0:
            n = min(-diff, self.burst)
            self.expectations.expect_creations(key, n)
            template = pod_from_template(rs)

            async def create_one():
                try:
                    await self.client.create(codec.copy(template))
                except Exception:
                    self.expectations.creation_observed(key)
                    raise
            try:
                done = await slow_start(n, SLOW_START_INITIAL_BATCH, create_one)
            except _BatchFailed as exc:
                # failed creates lowered the expectations themselves; the skipped ones never ran
                self.expectations.creation_observed(key, n - exc.done - exc.failed)
                if isinstance(exc.first, errors.Forbidden) and "being terminated" in str(exc.first):
                    return
                self.event(rs, "Warning", "FailedCreate", f"Error creating: {exc.first}")
                raise exc.first
            self.event(rs, "Normal", "SuccessfulCreate", f"Created {done} pod(s)")
            self.log.info("%s: created %d pod(s)", key, done)
        elif diff > 0:
            n = min(diff, self.burst)
            victims = self.pods_to_delete(pods, n)
            errs = await podutil.delete_pods(self.client, self.expectations, key, victims)
            self.event(rs, "Normal", "SuccessfulDelete",
                       "Deleted pod(s): " + ", ".join(p.metadata.name for p in victims))
            if errs:
                raise errs[0]

    def pods_to_delete(self, pods, n: int) -> list:
        now = self.clock()
        per_node: dict[str, int] = {}
        for p in pods:
            if p.spec.node_name:
                per_node[p.spec.node_name] = per_node.get(p.spec.node_name, 0) + 1
        ranked = sorted(pods, key=lambda p: podutil.deletion_rank(p, now, per_node.get(p.spec.node_name, 0)))
        return ranked[:n]

    # --------------------------------------------------------- status
    def calculate_status(self, rs, pods, manage_error=None):
        now = self.clock()
        st = type(rs.status)()
        st.CopyFrom(rs.status)
        template_labels = rs.spec.template.metadata.labels
        st.replicas = len(pods)
        st.fully_labeled_replicas = sum(
            1 for p in pods if all(p.metadata.labels.get(k) == v for k, v in template_labels.items()))
        st.ready_replicas = sum(1 for p in pods if podutil.is_pod_ready(p))
        st.available_replicas = sum(1 for p in pods if podutil.is_pod_available(p, rs.spec.min_ready_seconds, now))
        st.observed_generation = rs.metadata.generation
        failure = next((c for c in st.conditions if c.type == "ReplicaFailure"), None)
        if manage_error is not None and failure is None:
            diff = len(pods) - replicas_of(rs)
            c = st.conditions.add(type="ReplicaFailure", status="True",
                                  reason="FailedCreate" if diff < 0 else "FailedDelete",
                                  message=str(manage_error)[:1024])
            c.last_transition_time.CopyFrom(podutil.now_ts(self.clock))
        elif manage_error is None and failure is not None:
            keep = [codec.copy(c) for c in st.conditions if c.type != "ReplicaFailure"]
            del st.conditions[:]
            st.conditions.extend(keep)
        return st

    async def update_status(self, rs, pods, manage_error=None) -> None:
        st = self.calculate_status(rs, pods, manage_error)
        if st != rs.status:
            new = codec.copy(rs)
            new.status.CopyFrom(st)
            try:
                try:
                    await self.client.update_status(new)
                except errors.Conflict:
                    # the spec moved on (a scale): retry once on the fresh object, as
                    # Kubernetes' updateReplicaSetStatus does; the spec change enqueues us anyway
                    fresh = await self.client.get("ReplicaSet", rs.metadata.name, rs.metadata.namespace)
                    fresh.status.CopyFrom(st)
                    await self.client.update_status(fresh)
            except errors.NotFound:
                return
        # minReadySeconds: come back when the next ready pod becomes available.
        mrs = rs.spec.min_ready_seconds
        if mrs > 0 and st.ready_replicas > st.available_replicas:
            now = self.clock()
            waits = [c.last_transition_time.seconds + mrs - now for p in pods
                     if (c := podutil.condition(p, "Ready")) is not None and c.status == "True"
                     and c.last_transition_time.seconds + mrs > now]
            if waits:
                self.queue.add_after(key_of(rs), max(0.05, min(waits) + 0.05))
