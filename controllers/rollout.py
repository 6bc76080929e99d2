"""Rollout strategies, scaling, status and conditions of the Deployment
controller (Kubernetes' deployment/rolling.go, recreate.go, sync.go,
progress.go), as a mixin of DeploymentController.

Every method works on `d`, a private copy of the cached Deployment, and
writes ReplicaSets with the resourceVersion it read (stale cache → Conflict
→ the key is retried). The arithmetic lives in deployment_util.py.

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

from machinery import codec, errors

from controllers import deployment_util as du
from controllers import podutil

MAX_INT32 = 2**31 - 1


class RolloutMixin:
    # ------------------------------------------------------------ conditions
    @staticmethod
    def has_progress_deadline(d) -> bool:
        return d.spec.HasField("progress_deadline_seconds") and d.spec.progress_deadline_seconds != MAX_INT32

    def set_condition(self, d, type_: str, status: str, reason: str, message: str, *, status_obj=None) -> None:
        """SetDeploymentCondition: unchanged status+reason is a no-op; an
        unchanged status keeps lastTransitionTime."""
        st = status_obj if status_obj is not None else d.status
        cur = next((c for c in st.conditions if c.type == type_), None)
        if cur is not None and cur.status == status and cur.reason == reason:
            return
        now = podutil.now_ts(self.clock)
        keep = [codec.copy(c) for c in st.conditions if c.type != type_]
        del st.conditions[:]
        st.conditions.extend(keep)
        c = st.conditions.add(type=type_, status=status, reason=reason, message=message)
        c.last_update_time.CopyFrom(now)
        if cur is not None and cur.status == status:
            c.last_transition_time.CopyFrom(cur.last_transition_time)
        else:
            c.last_transition_time.CopyFrom(now)

    @staticmethod
    def remove_condition(st, type_: str) -> None:
        keep = [codec.copy(c) for c in st.conditions if c.type != type_]
        del st.conditions[:]
        st.conditions.extend(keep)

    async def check_paused_conditions(self, d):
        if not self.has_progress_deadline(d):
            return d
        cond = podutil.condition(d, "Progressing")
        if cond is not None and cond.reason == "ProgressDeadlineExceeded":
            return d
        paused_cond = cond is not None and cond.reason == "DeploymentPaused"
        if d.spec.paused and not paused_cond:
            self.set_condition(d, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif not d.spec.paused and paused_cond:
            self.set_condition(d, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
        else:
            return d
        return codec.copy(await self.client.update_status(d))

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

    def capped_new_replicas(self, d, all_rss, new_rs) -> int:
        want = du.new_rs_new_replicas(d, all_rss, new_rs)
        if not du.is_rolling(d) or want <= du.replicas(new_rs):
            return want
        existing = sum(max(du.replicas(rs), rs.status.replicas) for rs in all_rss)
        room = du.replicas(d) + du.max_surge(d) - existing
        return min(want, du.replicas(new_rs) + max(room, 0))

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

    @staticmethod
    def _cap(rs):
        """A view of rs whose availability is at most its spec.replicas: right
        after a scale-down the status still counts the pods being deleted,
        and trusting it would scale the old sets down twice."""
        if rs.status.available_replicas <= du.replicas(rs):
            return rs
        view = codec.copy(rs)
        view.status.available_replicas = du.replicas(rs)
        return view

    @staticmethod
    def _replace(rss, written: dict) -> list:
        return [written.get(rs.metadata.name, rs) for rs in rss]

    async def sync_scale(self, d, rss) -> None:
        """Paused or scaling event: scale proportionally, no rollout."""
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, False)
        written = await self.scale(d, new_rs, old_rss)
        old_rss = self._replace(old_rss, written)
        if new_rs is not None:
            new_rs = written.get(new_rs.metadata.name, new_rs)
        if d.spec.paused:
            await self.cleanup(d, old_rss)
        await self.write_status(d, self.calculate_status(d, [*old_rss, new_rs], new_rs))

    async def sync_status_only(self, d, rss) -> None:
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, False)
        await self.write_status(d, self.calculate_status(d, [*old_rss, new_rs], new_rs))

    # ------------------------------------------------------------ strategies
    async def rollout_rolling(self, d, rss) -> None:
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, True)
        all_rss = [*old_rss, new_rs]
        target = du.replicas(new_rs)
        if du.replicas(new_rs) > du.replicas(d):
            target = du.replicas(d)
        elif du.replicas(new_rs) < du.replicas(d):
            target = self.capped_new_replicas(d, all_rss, new_rs)
        if target != du.replicas(new_rs):
            new_rs = await self.scale_rs(d, new_rs, target)
            await self.sync_rollout_status(d, [*old_rss, new_rs], new_rs)
            return
        plan = du.old_scale_down_plan(d, [self._cap(rs) for rs in du.active(old_rss)], self._cap(new_rs))
        if plan:
            written = {}
            for rs in old_rss:
                if rs.metadata.name in plan:
                    written[rs.metadata.name] = await self.scale_rs(d, rs, plan[rs.metadata.name])
            await self.sync_rollout_status(d, [*self._replace(old_rss, written), new_rs], new_rs)
            return
        if self.deployment_complete(d, d.status):
            await self.cleanup(d, old_rss)
        await self.sync_rollout_status(d, all_rss, new_rs)

    async def rollout_recreate(self, d, rss) -> None:
        new_rs, old_rss = await self.get_all_replica_sets(d, rss, False)
        active_old = du.active(old_rss)
        if active_old:
            written = {rs.metadata.name: await self.scale_rs(d, rs, 0) for rs in active_old}
            await self.sync_rollout_status(d, [*self._replace(old_rss, written), new_rs], new_rs)
            return
        if self.old_pods_running(d, new_rs, old_rss):
            await self.sync_rollout_status(d, [*old_rss, new_rs], new_rs)
            return
        if new_rs is None:
            new_rs, old_rss = await self.get_all_replica_sets(d, rss, True)
        if du.replicas(new_rs) != du.replicas(d):
            new_rs = await self.scale_rs(d, new_rs, du.replicas(d))
        if self.deployment_complete(d, d.status):
            await self.cleanup(d, old_rss)
        await self.sync_rollout_status(d, [*old_rss, new_rs], new_rs)

    def old_pods_running(self, d, new_rs, old_rss) -> bool:
        """Any pod of an old ReplicaSet still exists (terminating ones too) —
        Recreate starts new pods only when the old ones are gone."""
        if any(rs.status.replicas > 0 for rs in old_rss):
            return True
        by_rs = self.pods_by_rs(d, old_rss)
        for pods in by_rs.values():
            for p in pods:
                if p.status.phase not in ("Succeeded", "Failed"):
                    return True
        return False

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
    def calculate_status(self, d, all_rss, new_rs):
        rss = [rs for rs in all_rss if rs is not None]
        available = du.total_available(rss)
        st = codec.copy(d.status)
        st.observed_generation = d.metadata.generation
        st.replicas = du.total_actual(rss)
        st.updated_replicas = new_rs.status.replicas if new_rs is not None else 0
        st.ready_replicas = du.total_ready(rss)
        st.available_replicas = available
        st.unavailable_replicas = max(du.total_replicas(rss) - available, 0)
        if available >= du.replicas(d) - du.max_unavailable(d):
            self.set_condition(d, "Available", "True", "MinimumReplicasAvailable",
                               "Deployment has minimum availability.", status_obj=st)
        else:
            self.set_condition(d, "Available", "False", "MinimumReplicasUnavailable",
                               "Deployment does not have minimum availability.", status_obj=st)
        return st

    @staticmethod
    def deployment_complete(d, st) -> bool:
        n = du.replicas(d)
        return (st.updated_replicas == n and st.replicas == n and st.available_replicas == n
                and st.observed_generation >= d.metadata.generation)

    @staticmethod
    def deployment_progressing(d, st) -> bool:
        old = d.status
        return (st.updated_replicas > old.updated_replicas
                or (st.replicas - st.updated_replicas) < (old.replicas - old.updated_replicas)
                or st.ready_replicas > old.ready_replicas
                or st.available_replicas > old.available_replicas)

    def deployment_timed_out(self, d, st) -> bool:
        if not self.has_progress_deadline(d):
            return False
        cond = next((c for c in st.conditions if c.type == "Progressing"), None)
        if cond is None or cond.reason == "NewReplicaSetAvailable":
            return False
        if cond.reason == "ProgressDeadlineExceeded":
            return True
        return cond.last_update_time.seconds + d.spec.progress_deadline_seconds < self.clock()

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
        st = self.calculate_status(d, all_rss, new_rs)
        if not self.has_progress_deadline(d):
            self.remove_condition(st, "Progressing")
        cur = podutil.condition(d, "Progressing")
        complete = (st.replicas == st.updated_replicas and cur is not None
                    and cur.reason == "NewReplicaSetAvailable")
        if self.has_progress_deadline(d) and not complete:
            name = new_rs.metadata.name if new_rs is not None else ""
            if self.deployment_complete(d, st):
                self.set_condition(d, "Progressing", "True", "NewReplicaSetAvailable",
                                   f'ReplicaSet "{name}" has successfully progressed.', status_obj=st)
            elif self.deployment_progressing(d, st):
                msg = (f'ReplicaSet "{name}" is progressing.' if new_rs is not None
                       else f'Deployment "{d.metadata.name}" is progressing.')
                before = next((c for c in st.conditions if c.type == "Progressing"), None)
                before = codec.copy(before) if before is not None else None
                self.remove_condition(st, "Progressing")
                self.set_condition(d, "Progressing", "True", "ReplicaSetUpdated", msg, status_obj=st)
                if before is not None and before.status == "True":
                    c = next(c for c in st.conditions if c.type == "Progressing")
                    c.last_transition_time.CopyFrom(before.last_transition_time)
            elif self.deployment_timed_out(d, st):
                self.set_condition(d, "Progressing", "False", "ProgressDeadlineExceeded",
                                   f'ReplicaSet "{name}" has timed out progressing.', status_obj=st)
                if cur is None or cur.reason != "ProgressDeadlineExceeded":
                    self.event(d, "Warning", "ProgressDeadlineExceeded",
                               f'Deployment "{d.metadata.name}" has timed out progressing.')
        failure = next((c for rs in [new_rs, *all_rss] if rs is not None for c in rs.status.conditions
                        if c.type == "ReplicaFailure" and c.status == "True"), None)
        if failure is not None:          # surface a ReplicaSet's create/delete failure (getReplicaFailures)
            self.set_condition(d, "ReplicaFailure", failure.status, failure.reason, failure.message,
                               status_obj=st)
        else:
            self.remove_condition(st, "ReplicaFailure")
        if st == d.status:
            self.requeue_stuck(d, st)
            return
        await self.write_status(d, st)
        self.requeue_stuck(d, st)

    def requeue_stuck(self, d, st) -> None:
        """Come back when the progress deadline would pass (requeueStuckDeployment)."""
        cond = next((c for c in st.conditions if c.type == "Progressing"), None)
        if not self.has_progress_deadline(d) or cond is None:
            return
        if self.deployment_complete(d, st) or cond.reason in ("ProgressDeadlineExceeded", "NewReplicaSetAvailable"):
            return
        if cond.reason in ("DeploymentPaused",):
            return
        after = cond.last_update_time.seconds + d.spec.progress_deadline_seconds - self.clock()
        self.queue.add_after(f"{d.metadata.namespace}/{d.metadata.name}", max(after + 1.0, 0.2))
