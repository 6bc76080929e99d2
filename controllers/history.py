"""ControllerRevision history, shared by the DaemonSet and StatefulSet
controllers (Kubernetes' pkg/controller/history + each controller's
constructHistory): the revision whose data equals the current template
(`{"spec":{"template":...,"$patch":"replace"}}`) is the current one; none
-> a new `NAME-<hash>` with revision max+1 (a hash collision bumps
status.collisionCount and retries on the next sync); an older one that
matches again (a rollback) gets revision max+1; unused old revisions beyond
revisionHistoryLimit are deleted.

A mixin: the controller provides `self.client` and `self.cr_inf` (the
ControllerRevision informer).
"""
from __future__ import annotations

from machinery import codec, errors, kinds, workloads

from controllers import podutil
from controllers.daemonset_util import revision_hash


class RevisionHistory:
    async def construct_history(self, ds, selector):
        crs = await podutil.RefManager(self.client, ds, selector).claim(self.cr_inf.list(ds.metadata.namespace))
        data = workloads.daemonset_patch(ds)
        current = [c for c in crs if c.data == data]
        old = [c for c in crs if c.data != data]
        next_rev = max((c.revision for c in old), default=0) + 1
        if not current:
            return await self.snapshot(ds, data, next_rev), old
        cur = max(current, key=lambda c: c.revision)
        if cur.revision < next_rev:
            bumped = codec.copy(cur)
            bumped.revision = next_rev
            cur = await self.client.update(bumped)
        return cur, old

    async def snapshot(self, ds, data, revision: int):
        count = ds.status.collision_count if ds.status.HasField("collision_count") else 0
        hash_ = revision_hash(data, count)
        cr = kinds.new("ControllerRevision")
        cr.metadata.name, cr.metadata.namespace = f"{ds.metadata.name}-{hash_}", ds.metadata.namespace
        cr.metadata.labels.update(ds.spec.template.metadata.labels)
        cr.metadata.labels[workloads.CONTROLLER_REVISION_HASH] = hash_
        cr.metadata.annotations.update(ds.metadata.annotations)
        cr.metadata.owner_references.append(podutil.owner_ref_for(ds))
        cr.data.CopyFrom(data)
        cr.revision = revision
        try:
            return await self.client.create(cr)
        except errors.AlreadyExists:
            existing = await self.client.get("ControllerRevision", cr.metadata.name, cr.metadata.namespace)
            if existing.data == data:
                return existing
        new = codec.copy(ds)                  # a hash collision: try the next name on the next sync
        new.status.collision_count = count + 1
        await self.client.update_status(new)
        raise errors.Conflict(f"hash collision for controller revision {cr.metadata.name}")

    async def cleanup_history(self, ds, old, pods) -> None:
        live = {p.metadata.labels.get(workloads.CONTROLLER_REVISION_HASH) for p in pods}
        limit = ds.spec.revision_history_limit if ds.spec.HasField("revision_history_limit") else 10
        unused = sorted((c for c in old if c.metadata.labels.get(workloads.CONTROLLER_REVISION_HASH) not in live),
                        key=lambda c: c.revision)
        for cr in unused[:max(0, len(unused) - limit)]:
            try:
                await self.client.delete("ControllerRevision", cr.metadata.name, cr.metadata.namespace)
            except errors.NotFound:
                pass
