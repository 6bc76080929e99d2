"""Rollout strategies, scaling and the new ReplicaSet of the Deployment
controller (Kubernetes' deployment/rolling.go, recreate.go, sync.go).

The dependency runs one way: DeploymentController (controllers/deployment.py)
owns a `Rollout` built from what it needs — the API client, the clock, an
event callback, a requeue callback, the ReplicaSet cache lookup — and calls
it with the Deployment and the ReplicaSets it claimed (plus, for Recreate,
the pods of each ReplicaSet), as Kubernetes' syncDeployment passes
`rsList`/`podMap` to rolloutRolling/rolloutRecreate. A Rollout knows
nothing of the controller: it uses only the callbacks it was given and the
arguments of each call. What to write lives in pure functions:
deployment_status.py (status, conditions) and deployment_util.py (the
arithmetic).

Every method works on `d`, a private copy of the cached Deployment, and
writes ReplicaSets with the resourceVersion it read (stale cache → Conflict
→ the key is retried). The ReplicaSet of the current template is found by
template equality (ignoring pod-template-hash); a missing one is created as
`<deployment>-<hash>` with the hash label in its selector and template. The
name is deterministic, so a controller restarted mid-rollout finds the
ReplicaSet it had created (AlreadyExists → reuse) and creates nothing twice.

Two deliberate differences from Kubernetes (both only make it more careful):
an old ReplicaSet's availability is read as min(status.availableReplicas,
spec.replicas), because right after a scale-down its status still counts the
pods being deleted; and the new ReplicaSet is scaled up
only while the replicas that *exist* (max of spec and status per ReplicaSet)
leave room under replicas + maxSurge. Kubernetes counts spec.replicas only,
so an old ReplicaSet that was just scaled down but whose pods are not yet
deleted can briefly coexist with the new pods (total > replicas + maxSurge
for a moment). Waiting for the old ReplicaSet's status closes that window.
"""
from __future__ import annotations

import logging
from typing import Callable

from machinery import codec, errors, kinds
from machinery.informer import key_of

from controllers import deployment_status as ds
from controllers import deployment_util as du
from controllers import podutil


# ------------------------------------------------------------ pure helpers

def capped_new_replicas(d, all_rss, new_rs) -> int:
    want = du.new_rs_new_replicas(d, all_rss, new_rs)
    if not du.is_rolling(d) or want <= du.replicas(new_rs):
        return want
    existing = sum(max(du.replicas(rs), rs.status.replicas) for rs in all_rss)
    room = du.replicas(d) + du.max_surge(d) - existing
    return min(want, du.replicas(new_rs) + max(room, 0))


def _cap(rs):
    """A view of rs whose availability is at most its spec.replicas: right
    after a scale-down the status still counts the pods being deleted,
    and trusting it would scale the old sets down twice."""
    if rs.status.available_replicas <= du.replicas(rs):
        return rs
    view = codec.copy(rs)
    view.status.available_replicas = du.replicas(rs)
    return view


def _replace(rss, written: dict) -> list:
    return [written.get(rs.metadata.name, rs) for rs in rss]


def find_new(d, rss):
    for rs in du.sort_oldest_first(rss):
        if du.templates_equal(rs.spec.template, d.spec.template):
            return rs
    return None


def find_old(rss, new_rs) -> list:
    return [rs for rs in rss if new_rs is None or rs.metadata.uid != new_rs.metadata.uid]


def old_pods_running(new_rs, old_rss, pod_map: dict[str, list]) -> bool:
    """Any pod of an old ReplicaSet still exists (terminating ones too) —
    Recreate starts new pods only when the old ones are gone. pod_map holds
    the pods of each ReplicaSet by its UID (oldPodsRunning)."""
    if any(rs.status.replicas > 0 for rs in old_rss):
        return True
    for uid, pods in pod_map.items():
        if new_rs is not None and uid == new_rs.metadata.uid:
            continue
        if any(p.status.phase not in ("Succeeded", "Failed") for p in pods):
            return True
    return False


def set_new_rs_annotations(d, rs, new_revision: int, exists: bool) -> bool:
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


def new_replica_set(d, old_rss, new_revision: int):
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
    rs.spec.replicas = capped_new_replicas(d, list(old_rss) + [rs], rs)
    set_new_rs_annotations(d, rs, new_revision, False)
    return rs


# ------------------------------------------------------------ the writer

class Rollout:
    """The writing half of the Deployment controller (see the module doc).

    client: the API client; clock() -> seconds; event(obj, type, reason,
    message) records an Event; requeue(key, delay) asks for a later sync;
    cached_rs(namespace, name) -> the cached ReplicaSet or None."""

    def __init__(self, client, *, clock: Callable[[], float], event: Callable, requeue: Callable,
                 cached_rs: Callable, log: logging.Logger | None = None):
        self.client, self.clock, self.event, self.requeue = client, clock, event, requeue
        self.cached_rs = cached_rs
        self.log = log or logging.getLogger("kctl.controllers.deployment")

    # ------------------------------------------------------------ entry points
    async def check_paused_conditions(self, d):
        if not ds.paused_condition(d, self.clock()):
            return d
        return codec.copy(await self.client.update_status(d))

    async def sync_scale(self, d, rss) -> None:
        """Paused or scaling event: scale proportionally, no rollout (sync)."""
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, False)
        written = await self.scale(d, new_rs, old_rss)
        old_rss = _replace(old_rss, written)
        if new_rs is not None:
            new_rs = written.get(new_rs.metadata.name, new_rs)
        if d.spec.paused:
            await self.cleanup(d, old_rss)
        await self.write_status(d, ds.calculate_status(d, [*old_rss, new_rs], new_rs, self.clock()))

    async def sync_status_only(self, d, rss) -> None:
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, False)
        await self.write_status(d, ds.calculate_status(d, [*old_rss, new_rs], new_rs, self.clock()))

    async def rollout_rolling(self, d, rss) -> None:
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, True)
        all_rss = [*old_rss, new_rs]
        target = du.replicas(new_rs)
        if du.replicas(new_rs) > du.replicas(d):
            target = du.replicas(d)
        elif du.replicas(new_rs) < du.replicas(d):
            target = capped_new_replicas(d, all_rss, new_rs)
        if target != du.replicas(new_rs):
            new_rs = await self.scale_rs(d, new_rs, target)
            await self.sync_rollout_status(d, [*old_rss, new_rs], new_rs)
            return
        plan = du.old_scale_down_plan(d, [_cap(rs) for rs in du.active(old_rss)], _cap(new_rs))
        if plan:
            written = {}
            for rs in old_rss:
                if rs.metadata.name in plan:
                    written[rs.metadata.name] = await self.scale_rs(d, rs, plan[rs.metadata.name])
            await self.sync_rollout_status(d, [*_replace(old_rss, written), new_rs], new_rs)
            return
        if ds.deployment_complete(d, d.status):
            await self.cleanup(d, old_rss)
        await self.sync_rollout_status(d, all_rss, new_rs)

    async def rollout_recreate(self, d, rss, pod_map: dict[str, list]) -> None:
        """pod_map: the pods (terminating ones included) of each ReplicaSet, by its UID."""
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, False)
        active_old = du.active(old_rss)
        if active_old:
            written = {rs.metadata.name: await self.scale_rs(d, rs, 0) for rs in active_old}
            await self.sync_rollout_status(d, [*_replace(old_rss, written), new_rs], new_rs)
            return
        if old_pods_running(new_rs, old_rss, pod_map):
            await self.sync_rollout_status(d, [*old_rss, new_rs], new_rs)
            return
        if new_rs is None:
            new_rs, old_rss = await self.get_all_replica_sets(d, rss, True)
        if du.replicas(new_rs) != du.replicas(d):
            new_rs = await self.scale_rs(d, new_rs, du.replicas(d))
        if ds.deployment_complete(d, d.status):
            await self.cleanup(d, old_rss)
        await self.sync_rollout_status(d, [*old_rss, new_rs], new_rs)

    # ------------------------------------------------------------ scaling
    async def scale_rs(self, d, rs, size: int):
        """Set a ReplicaSet's replicas and desired/max annotations; returns the written RS."""
        ann = du.replica_annotations(d)
        if du.replicas(rs) == size and all(rs.metadata.annotations.get(k) == v for k, v in ann.items()):
            return rs
        new = codec.copy(rs)
        old_size = du.replicas(rs)
        new.spec.replicas = size
        new.metadata.annotations.update(ann)
        written = await self.client.update(new)
        if size != old_size:
            verb = "up" if size > old_size else "down"
            self.event(d, "Normal", "ScalingReplicaSet",
                       f"Scaled {verb} replica set {rs.metadata.name} to {size} from {old_size}")
            self.log.info("%s/%s: scaled %s %s %d -> %d", d.metadata.namespace, d.metadata.name, verb,
                          rs.metadata.name, old_size, size)
        return written

    async def scale(self, d, new_rs, old_rss) -> dict:
        """The scale() step (scaling event or paused): returns {name: written RS}."""
        plan = du.scale_plan(d, new_rs, old_rss)
        everything = {rs.metadata.name: rs for rs in [*old_rss, new_rs] if rs is not None}
        written = {}
        for name, size in plan.items():
            written[name] = await self.scale_rs(d, everything[name], size)
        for rs in du.active(everything.values()):
            if rs.metadata.name not in written:
                written[rs.metadata.name] = await self.scale_rs(d, rs, du.replicas(rs))
        return written

    async def cleanup(self, d, old_rss) -> None:
        """Delete old, empty ReplicaSets beyond revisionHistoryLimit, oldest revision first."""
        if not d.spec.HasField("revision_history_limit"):
            return
        alive = [rs for rs in old_rss if rs is not None and not podutil.is_terminating(rs)]
        diff = len(alive) - d.spec.revision_history_limit
        if diff <= 0:
            return
        for rs in sorted(alive, key=lambda r: (du.revision(r), r.metadata.creation_timestamp.seconds))[:diff]:
            if (rs.status.replicas != 0 or du.replicas(rs) != 0
                    or rs.metadata.generation > rs.status.observed_generation):
                continue
            try:
                await self.client.delete("ReplicaSet", rs.metadata.name, rs.metadata.namespace,
                                         uid=rs.metadata.uid)
                self.log.info("cleaned up old replica set %s/%s", rs.metadata.namespace, rs.metadata.name)
            except (errors.NotFound, errors.Conflict):
                pass

    # ------------------------------------------------------------ status
    async def write_status(self, d, st) -> None:
        if st == d.status:
            return
        new = codec.copy(d)
        new.status.CopyFrom(st)
        try:
            d.CopyFrom(await self.client.update_status(new))
        except errors.NotFound:
            pass

    async def sync_rollout_status(self, d, all_rss, new_rs) -> None:
        now = self.clock()
        st, timed_out = ds.rollout_status(d, all_rss, new_rs, now)
        if timed_out:
            self.event(d, "Warning", "ProgressDeadlineExceeded",
                       f'Deployment "{d.metadata.name}" has timed out progressing.')
        if st != d.status:
            await self.write_status(d, st)
        after = ds.requeue_after(d, st, self.clock())
        if after is not None:
            self.requeue(key_of(d), after)

    # ------------------------------------------------- new / old ReplicaSets
    async def _set_deployment_revision(self, d, revision: str) -> None:
        """The revision annotation is metadata: written with update(), which
        keeps status; status is written separately with update_status()."""
        if d.metadata.annotations.get(du.REVISION) == revision:
            return
        new = codec.copy(d)
        new.metadata.annotations[du.REVISION] = revision
        written = await self.client.update(new)
        d.metadata.CopyFrom(written.metadata)

    async def _progressing(self, d, reason: str, message: str) -> None:
        ds.set_condition(d.status, "Progressing", "True", reason, message, self.clock())
        d.CopyFrom(await self.client.update_status(d))

    async def get_all_replica_sets(self, d, rss, create: bool):
        """(new_rs or None, old_rss), creating the new one when asked
        (getAllReplicaSetsAndSyncRevision)."""
        new_rs = find_new(d, rss)
        old_rss = find_old(rss, new_rs)
        new_revision = du.max_revision(old_rss) + 1
        if new_rs is not None:
            rs = codec.copy(new_rs)
            changed = set_new_rs_annotations(d, rs, new_revision, True)
            if changed or rs.spec.min_ready_seconds != d.spec.min_ready_seconds:
                rs.spec.min_ready_seconds = d.spec.min_ready_seconds
                rs = await self.client.update(rs)
            await self._set_deployment_revision(d, rs.metadata.annotations.get(du.REVISION, ""))
            if ds.has_progress_deadline(d) and podutil.condition(d, "Progressing") is None:
                await self._progressing(d, "FoundNewReplicaSet", f'Found new replica set "{rs.metadata.name}"')
            return rs, old_rss
        if not create:
            return None, old_rss
        created, made = await self._create_new(d, new_replica_set(d, old_rss, new_revision))
        await self._set_deployment_revision(d, str(new_revision) if made else
                                            created.metadata.annotations.get(du.REVISION, str(new_revision)))
        if made and ds.has_progress_deadline(d):
            await self._progressing(d, "NewReplicaSetCreated",
                                    f'Created new replica set "{created.metadata.name}"')
        return created, old_rss

    async def _create_new(self, d, rs):
        """Create the new ReplicaSet: (the ReplicaSet, True if this call made it).
        One that exists already is reused when it is d's with d's template;
        otherwise the hash collided: collisionCount is bumped and Conflict raised."""
        try:
            created = await self.client.create(rs)
        except errors.AlreadyExists:
            created = self.cached_rs(d.metadata.namespace, rs.metadata.name)
            if created is None:
                created = await self.client.get("ReplicaSet", rs.metadata.name, d.metadata.namespace)
            ref = podutil.controller_ref(created)
            if not (ref is not None and ref.uid == d.metadata.uid
                    and du.templates_equal(created.spec.template, d.spec.template)):
                d.status.collision_count = (d.status.collision_count if d.status.HasField("collision_count")
                                            else 0) + 1
                await self.client.update_status(d)
                raise errors.Conflict(f"hash collision for {rs.metadata.name}; collisionCount bumped")
            return created, False
        except errors.ApiError as exc:
            if ds.has_progress_deadline(d):
                ds.set_condition(d.status, "Progressing", "False", "ReplicaSetCreateError",
                                 f'Failed to create new replica set "{rs.metadata.name}": {exc}', self.clock())
                await self.client.update_status(d)
            raise
        self.log.info("%s: created replica set %s (%d)", key_of(d), created.metadata.name,
                      du.replicas(created))
        if du.replicas(created) > 0:
            self.event(d, "Normal", "ScalingReplicaSet",
                       f"Scaled up replica set {created.metadata.name} to {du.replicas(created)}")
        return created, True
