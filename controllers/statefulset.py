"""The StatefulSet controller (Kubernetes' pkg/controller/statefulset).

sync(key) reads the StatefulSet from the cache, claims its pods (selector,
controllerRef, and a name `SET-ORDINAL`: isMemberOf) and its
ControllerRevisions, then:

1. history: the revision whose data (`{"spec":{"template":...,"$patch":
   "replace"}}`) equals the current template is the update revision (new ->
   `NAME-<hash>` with revision max+1, a hash collision bumps
   status.collisionCount; an older equal one is bumped to max+1, a rollback).
   The current revision is the one named by status.currentRevision (or the
   update revision when there is none). The pods' `controller-revision-hash`
   label holds the revision's name, as in Kubernetes;
2. the walk of controllers/statefulset_control.py creates, fixes, deletes
   and updates pods and their claims;
3. the status (replicas, ready/available/current/updated, revisions,
   collisionCount, observedGeneration) is written — also after a failed walk
   — with completeRollingUpdate; then revisions beyond revisionHistoryLimit
   that neither a pod nor the current/update revision uses are deleted.

The history code is the DaemonSet controller's (the same ControllerRevision
shapes). Like Kubernetes' StatefulSet controller this one keeps no
expectations: pods have fixed names, so a stale cache makes a create fail
with AlreadyExists and the key is retried. Pure decisions live in
controllers/statefulset_util.py.
"""
from __future__ import annotations

import time

from machinery import codec, errors, selectors
from machinery.informer import key_of

from controllers import podutil
from controllers import statefulset_util as su
from controllers.base import Controller
from controllers.history import RevisionHistory
from controllers.replicaset import ensure_indexes
from controllers.statefulset_control import StatefulPodControl, Walk


class StatefulSetController(RevisionHistory, Controller):
    name = "statefulset"

    def __init__(self, client, factory, recorder=None, workers: int = 5, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock
        self.sts_inf = factory.informer("StatefulSet")
        self.pod_inf = factory.informer("Pod")
        self.cr_inf = factory.informer("ControllerRevision")
        self.pvc_inf = factory.informer("PersistentVolumeClaim")
        for inf in (self.sts_inf, self.pod_inf, self.cr_inf):
            ensure_indexes(inf)
        self.sts_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pod_inf.add_handler(self._pod_added, self._pod_updated, self._owner_of)
        self.cr_inf.add_handler(self._owner_of, lambda old, new: self._owner_of(new), self._owner_of)
        self.pvc_inf.add_handler(None, None, self._matching)
        self.pods = StatefulPodControl(client, self.pvc_inf.get, self.event)

    def informers(self):
        return [self.sts_inf, self.pod_inf, self.cr_inf, self.pvc_inf]

    # --------------------------------------------------------- handlers
    def _resolve(self, obj):
        ref = podutil.controller_ref(obj)
        if ref is None or ref.kind != "StatefulSet":
            return None
        sts = self.sts_inf.get(obj.metadata.namespace, ref.name)
        return sts if sts is not None and sts.metadata.uid == ref.uid else None

    def _owner_of(self, obj) -> None:
        sts = self._resolve(obj)
        if sts is not None:
            self.enqueue(sts)

    def _matching(self, obj) -> None:
        """An orphan pod (to adopt) or a deleted claim (a pod waiting on a stale claim) wakes matching sets."""
        for sts in self.sts_inf.list(obj.metadata.namespace):
            if sts.spec.HasField("selector") and selectors.from_proto(sts.spec.selector).matches(obj.metadata.labels):
                self.enqueue(sts)

    def _pod_added(self, pod) -> None:
        if podutil.controller_ref(pod) is None:
            self._matching(pod)
        else:
            self._owner_of(pod)

    def _pod_updated(self, old, pod) -> None:
        for p in (old, pod):
            self._owner_of(p)
        if podutil.controller_ref(pod) is None and old.metadata.labels != pod.metadata.labels:
            self._matching(pod)
        sts = self._resolve(pod)
        if sts is not None and sts.spec.min_ready_seconds > 0 and podutil.is_pod_ready(pod) \
                and not podutil.is_pod_ready(old):
            self.queue.add_after(key_of(sts), sts.spec.min_ready_seconds + 0.1)

    # ------------------------------------------------------------- sync
    async def sync(self, key: str) -> None:
        sts = self.sts_inf.get_by_key(key)
        if sts is None:
            return
        try:
            selector = selectors.from_field(sts.spec)
        except ValueError as exc:
            self.log.error("%s: invalid selector: %s", key, exc)
            return
        pods = [p for p in self.pod_inf.list(sts.metadata.namespace) if su.is_member_of(sts, p)]
        pods = await podutil.RefManager(self.client, sts, selector).claim(pods)
        update, old = await self.construct_history(sts, selector)
        current = next((c for c in old if c.metadata.name == sts.status.current_revision), update)
        walk = Walk(self.pods, sts, pods, current, update, self.clock())
        try:
            await walk.run()
        finally:
            status = await self.update_status(sts, walk, current, update)
        await self.truncate_history(sts, pods, old, {current.metadata.name, update.metadata.name})
        if sts.spec.min_ready_seconds > 0 and status.available_replicas != su.replicas(sts):
            self.queue.add_after(key, sts.spec.min_ready_seconds)

    async def update_status(self, sts, walk: Walk, current, update):
        st = codec.copy(sts.status)
        for k, v in walk.counts().items():
            setattr(st, k, v)
        st.observed_generation = sts.metadata.generation
        st.current_revision, st.update_revision = current.metadata.name, update.metadata.name
        if not st.HasField("collision_count"):
            st.collision_count = 0
        su.complete_rolling_update(sts, st)
        if st != sts.status:
            new = codec.copy(sts)
            new.status.CopyFrom(st)
            try:
                await self.client.update_status(new)
            except errors.NotFound:
                pass
        return st

    async def truncate_history(self, sts, pods, old, live: set) -> None:
        """truncateHistory: keep revisions in use, delete the oldest others beyond revisionHistoryLimit."""
        live |= {su.revision_of(p) for p in pods}
        history = sorted((c for c in old if c.metadata.name not in live), key=lambda c: c.revision)
        limit = sts.spec.revision_history_limit if sts.spec.HasField("revision_history_limit") else 10
        for cr in history[:max(0, len(history) - limit)]:
            try:
                await self.client.delete("ControllerRevision", cr.metadata.name, cr.metadata.namespace)
            except errors.NotFound:
                pass
