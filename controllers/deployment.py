"""The Deployment controller (Kubernetes' pkg/controller/deployment).

sync(key) re-reads the Deployment from the cache and:
1. claims its ReplicaSets (adopt matching orphans, release non-matching);
2. if it is being deleted: status only (the garbage collector removes the
   ReplicaSets through their ownerReferences);
3. records Paused/Resumed in the Progressing condition;
4. paused, or a scaling event (spec.replicas differs from the desired-replicas
   annotation of an active ReplicaSet): `sync()` — proportional scaling, no
   rollout (controllers/rollout.py);
5. otherwise rolls out: Recreate or RollingUpdate (controllers/rollout.py).

The ReplicaSet of the current template is found by template equality
(ignoring pod-template-hash); a missing one is created as
`<deployment>-<hash>` with the hash label in its selector and template. The
name is deterministic, so a controller restarted mid-rollout finds the
ReplicaSet it had created (AlreadyExists → reuse) and creates nothing twice;
and every ReplicaSet write carries the cached resourceVersion, so a stale
cache yields Conflict (retry) instead of a wrong scale.

Handlers only enqueue the owning Deployment: ReplicaSet events (status
changes drive the rollout forward), pod deletions (Recreate waits for old
pods to be gone), and delayed re-adds for progress deadlines.
"""
from __future__ import annotations

import time

from machinery import codec, errors, kinds, selectors
from machinery.informer import key_of

from controllers import deployment_util as du
from controllers import podutil
from controllers.base import Controller
from controllers.replicaset import ensure_indexes
from controllers.rollout import RolloutMixin


class DeploymentController(RolloutMixin, Controller):
    name = "deployment"

    def __init__(self, client, factory, recorder=None, workers: int = 5, *, clock=time.time):
        super().__init__(client, factory, recorder, workers)
        self.clock = clock
        self.d_inf = factory.informer("Deployment")
        self.rs_inf = factory.informer("ReplicaSet")
        self.pod_inf = factory.informer("Pod")
        for inf in (self.d_inf, self.rs_inf, self.pod_inf):
            ensure_indexes(inf)
        self.d_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.rs_inf.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_inf.add_handler(None, None, self._pod_deleted)

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
            await self.sync_status_only(d, rss)
            return
        d = await self.check_paused_conditions(d)
        if d.spec.paused:
            await self.sync_scale(d, rss)
            return
        if du.is_scaling_event(d, rss):
            await self.sync_scale(d, rss)
            return
        if d.spec.strategy.type == "Recreate":
            await self.rollout_recreate(d, rss)
        else:
            await self.rollout_rolling(d, rss)

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

    # ------------------------------------------------- new / old ReplicaSets
    @staticmethod
    def find_new(d, rss):
        for rs in du.sort_oldest_first(rss):
            if du.templates_equal(rs.spec.template, d.spec.template):
                return rs
        return None

    def find_old(self, d, rss, new_rs) -> list:
        return [rs for rs in rss if new_rs is None or rs.metadata.uid != new_rs.metadata.uid]

    def _set_new_rs_annotations(self, d, rs, new_revision: int, exists: bool) -> bool:
        """SetNewReplicaSetAnnotations: copy the deployment's annotations, bump
        the revision (a reused old ReplicaSet — a rollback — gets the next
        revision and keeps its old numbers in revision-history)."""
        changed = False
        ann = rs.metadata.annotations
        for k, v in du.copyable_annotations(d).items():
            if ann.get(k) != v:
                ann[k] = v
                changed = True
        old = du.revision(rs)
        if old < new_revision:
            if old:
                hist = [h for h in ann.get(du.REVISION_HISTORY, "").split(",") if h]
                ann[du.REVISION_HISTORY] = ",".join(hist + [str(old)])
            ann[du.REVISION] = str(new_revision)
            changed = True
        if not exists:
            for k, v in du.replica_annotations(d).items():
                ann[k] = v
            changed = True
        return changed

    async def _set_deployment_revision(self, d, revision: str) -> None:
        """The revision annotation is metadata: written with update(), which
        keeps status; status is written separately with update_status()."""
        if d.metadata.annotations.get(du.REVISION) == revision:
            return
        new = codec.copy(d)
        new.metadata.annotations[du.REVISION] = revision
        written = await self.client.update(new)
        d.metadata.CopyFrom(written.metadata)

    async def get_all_replica_sets(self, d, rss, create: bool):
        """(new_rs or None, old_rss), creating the new one when asked
        (getAllReplicaSetsAndSyncRevision)."""
        new_rs = self.find_new(d, rss)
        old_rss = self.find_old(d, rss, new_rs)
        new_revision = du.max_revision(old_rss) + 1
        if new_rs is not None:
            rs = codec.copy(new_rs)
            changed = self._set_new_rs_annotations(d, rs, new_revision, True)
            if changed or rs.spec.min_ready_seconds != d.spec.min_ready_seconds:
                rs.spec.min_ready_seconds = d.spec.min_ready_seconds
                rs = await self.client.update(rs)
            await self._set_deployment_revision(d, rs.metadata.annotations.get(du.REVISION, ""))
            if self.has_progress_deadline(d) and podutil.condition(d, "Progressing") is None:
                self.set_condition(d, "Progressing", "True", "FoundNewReplicaSet",
                                   f'Found new replica set "{rs.metadata.name}"')
                d.CopyFrom(await self.client.update_status(d))
            return rs, old_rss
        if not create:
            return None, old_rss
        rs = self.new_replica_set(d, old_rss, new_revision)
        try:
            created = await self.client.create(rs)
            made = True
        except errors.AlreadyExists:
            made = False
            created = self.rs_inf.get(d.metadata.namespace, rs.metadata.name)
            if created is None:
                created = await self.client.get("ReplicaSet", rs.metadata.name, d.metadata.namespace)
            ref = podutil.controller_ref(created)
            if not (ref is not None and ref.uid == d.metadata.uid
                    and du.templates_equal(created.spec.template, d.spec.template)):
                d.status.collision_count = (d.status.collision_count if d.status.HasField("collision_count")
                                            else 0) + 1
                await self.client.update_status(d)
                raise errors.Conflict(f"hash collision for {rs.metadata.name}; collisionCount bumped")
        except errors.ApiError as exc:
            if self.has_progress_deadline(d):
                self.set_condition(d, "Progressing", "False", "ReplicaSetCreateError",
                                   f'Failed to create new replica set "{rs.metadata.name}": {exc}')
                await self.client.update_status(d)
            raise
        if made:
            self.log.info("%s: created replica set %s (%d)", key_of(d), created.metadata.name,
                          du.replicas(created))
            if du.replicas(created) > 0:
                self.event(d, "Normal", "ScalingReplicaSet",
                           f"Scaled up replica set {created.metadata.name} to {du.replicas(created)}")
        await self._set_deployment_revision(d, str(new_revision) if made else
                                            created.metadata.annotations.get(du.REVISION, str(new_revision)))
        if made and self.has_progress_deadline(d):
            self.set_condition(d, "Progressing", "True", "NewReplicaSetCreated",
                               f'Created new replica set "{created.metadata.name}"')
            d.CopyFrom(await self.client.update_status(d))
        return created, old_rss

    def new_replica_set(self, d, old_rss, new_revision: int):
        collision = d.status.collision_count if d.status.HasField("collision_count") else 0
        h = du.template_hash(d.spec.template, collision)
        rs = kinds.new("ReplicaSet")
        rs.metadata.name = f"{d.metadata.name}-{h}"
        rs.metadata.namespace = d.metadata.namespace
        rs.metadata.labels.update(d.spec.template.metadata.labels)
        rs.metadata.labels[du.POD_TEMPLATE_HASH] = h
        rs.metadata.owner_references.append(podutil.owner_ref_for(d))
        rs.spec.min_ready_seconds = d.spec.min_ready_seconds
        rs.spec.selector.CopyFrom(d.spec.selector)
        rs.spec.selector.match_labels[du.POD_TEMPLATE_HASH] = h
        rs.spec.template.CopyFrom(d.spec.template)
        rs.spec.template.metadata.labels[du.POD_TEMPLATE_HASH] = h
        rs.spec.replicas = 0
        rs.spec.replicas = self.capped_new_replicas(d, list(old_rss) + [rs], rs)
        self._set_new_rs_annotations(d, rs, new_revision, False)
        return rs
