"""The Deployment controller (Kubernetes' pkg/controller/deployment).

sync(key) re-reads the Deployment from the cache and:
1. claims its ReplicaSets (adopt matching orphans, release non-matching);
2. if it is being deleted: status only (the garbage collector removes the
   ReplicaSets through their ownerReferences);
3. records Paused/Resumed in the Progressing condition;
4. paused, or a scaling event (spec.replicas differs from the desired-replicas
   annotation of an active ReplicaSet): `sync_scale` — proportional scaling,
   no rollout;
5. otherwise rolls out: Recreate (given the pods of each ReplicaSet, as
   Kubernetes passes its podMap) or RollingUpdate.

Steps 2-5 are controllers/rollout.py's `Rollout`, which this controller
builds from its client, clock, event recorder, workqueue and ReplicaSet
cache and calls with the claimed ReplicaSets; the dependency runs one way.
Every ReplicaSet write carries the cached resourceVersion, so a stale cache
yields Conflict (retry) instead of a wrong scale.

Handlers only enqueue the owning Deployment: ReplicaSet events (status
changes drive the rollout forward), pod deletions (Recreate waits for old
pods to be gone), and delayed re-adds for progress deadlines.
"""
from __future__ import annotations

import time

from machinery import codec, selectors

from controllers import deployment_util as du
from controllers import podutil
from controllers.base import Controller
from controllers.replicaset import ensure_indexes
from controllers.rollout import Rollout


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, client, factory, recorder=None, workers: int = 5, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.d_inf = factory.informer("Deployment")
        self.rs_inf = factory.informer("ReplicaSet")
        self.pod_inf = factory.informer("Pod")
        for inf in (self.d_inf, self.rs_inf, self.pod_inf):
            ensure_indexes(inf)
        self.d_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.rs_inf.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_inf.add_handler(None, None, self._pod_deleted)
        self.rollout = Rollout(client, clock=clock, event=self.event, requeue=self.queue.add_after,
                               cached_rs=self.rs_inf.get, log=self.log)

    def informers(self):
        return [self.d_inf, self.rs_inf, self.pod_inf]

    # --------------------------------------------------------- handlers
    def _owner(self, obj, ref):
        if ref is None or ref.kind != "Deployment":
            return None
        d = self.d_inf.get(obj.metadata.namespace, ref.name)
        return d if d is not None and d.metadata.uid == ref.uid else None

    def _matching(self, rs) -> list:
        out = []
        for d in self.d_inf.list(rs.metadata.namespace):
            try:
                if selectors.from_field(d.spec).matches(rs.metadata.labels):
                    out.append(d)
            except ValueError:
                continue
        return out

    def _rs_added(self, rs) -> None:
        d = self._owner(rs, podutil.controller_ref(rs))
        if d is not None:
            self.enqueue(d)
        elif podutil.controller_ref(rs) is None:
            for d in self._matching(rs):
                self.enqueue(d)

    def _rs_updated(self, old, rs) -> None:
        ref, old_ref = podutil.controller_ref(rs), podutil.controller_ref(old)
        if old_ref is not None and (ref is None or ref.uid != old_ref.uid):
            d = self._owner(old, old_ref)
            if d is not None:
                self.enqueue(d)
        if ref is not None:
            d = self._owner(rs, ref)
            if d is not None:
                self.enqueue(d)
        elif old.metadata.labels != rs.metadata.labels or old_ref is not None:
            for d in self._matching(rs):
                self.enqueue(d)

    def _rs_deleted(self, rs) -> None:
        d = self._owner(rs, podutil.controller_ref(rs))
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod) -> None:
        ref = podutil.controller_ref(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.rs_inf.get(pod.metadata.namespace, ref.name)
        if rs is None:
            return
        d = self._owner(rs, podutil.controller_ref(rs))
        if d is not None and d.spec.strategy.type == "Recreate":
            self.enqueue(d)

    # --------------------------------------------------------- sync
    async def sync(self, key: str) -> None:
        cached = self.d_inf.get_by_key(key)
        if cached is None:
            return
        d = codec.copy(cached)
        try:
            selector = selectors.from_field(d.spec)
        except ValueError as exc:
            self.event(d, "Warning", "SelectorParsingFailed", str(exc))
            return
        if selector.empty:
            self.event(d, "Warning", "SelectingAll", "This deployment is selecting all pods. "
                       "A non-empty selector is required.")
            if d.status.observed_generation < d.metadata.generation:
                d.status.observed_generation = d.metadata.generation
                await self.client.update_status(d)
            return
        rss = await self.claim_replica_sets(d, selector)
        if podutil.is_terminating(d):
            await self.rollout.sync_status_only(d, rss)
            return
        d = await self.rollout.check_paused_conditions(d)
        if d.spec.paused:
            await self.rollout.sync_scale(d, rss)
            return
        if du.is_scaling_event(d, rss):
            await self.rollout.sync_scale(d, rss)
            return
        if d.spec.strategy.type == "Recreate":
            await self.rollout.rollout_recreate(d, rss, self.pods_by_rs(d, rss))
        else:
            await self.rollout.rollout_rolling(d, rss)

    async def claim_replica_sets(self, d, selector) -> list:
        rss = self.rs_inf.list(d.metadata.namespace)
        return await podutil.RefManager(self.client, d, selector).claim(rss)

    def pods_by_rs(self, d, rss) -> dict[str, list]:
        """Pods (terminating ones included) of each ReplicaSet, by its UID."""
        uids = {rs.metadata.uid for rs in rss}
        out: dict[str, list] = {u: [] for u in uids}
        for p in self.pod_inf.list(d.metadata.namespace):
            ref = podutil.controller_ref(p)
            if ref is not None and ref.uid in uids:
                out[ref.uid].append(p)
        return out
