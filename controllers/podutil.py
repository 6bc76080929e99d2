"""Pod and owner-reference helpers shared by the controllers (Kubernetes'
pkg/api/v1/pod and pkg/controller/controller_utils.go, controller_ref_manager.go)."""
from __future__ import annotations

import asyncio
import logging
import time

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import codec, errors, kinds
from machinery.pb import meta_pb2

log = logging.getLogger("kctl.controllers")


def now_ts(clock=time.time) -> Timestamp:
    return Timestamp(seconds=int(clock()))


def condition(obj, type_: str):
    return next((c for c in obj.status.conditions if c.type == type_), None)


def is_pod_ready(pod) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.status == "True"


def is_pod_available(pod, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least min_ready_seconds (podutil.IsPodAvailable)."""
    c = condition(pod, "Ready")
    if c is None or c.status != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    return c.last_transition_time.seconds + min_ready_seconds <= now


def is_terminating(obj) -> bool:
    return obj.metadata.HasField("deletion_timestamp")


def is_pod_active(pod) -> bool:
    """Counts towards a controller's replicas (FilterActivePods)."""
    return pod.status.phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def controller_ref(obj) -> meta_pb2.OwnerReference | None:
    return next((r for r in obj.metadata.owner_references if r.controller), None)


def owner_ref_for(owner, block: bool = True) -> meta_pb2.OwnerReference:
    info = kinds.of(owner)
    return meta_pb2.OwnerReference(api_version=info.api_version, kind=info.kind, name=owner.metadata.name,
                                   uid=owner.metadata.uid, controller=True, block_owner_deletion=block)


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod, now: float, related_on_node: int = 0):
    """Sort key: smaller = delete first (controller.ActivePodsWithRanks):
    unassigned < assigned; Pending < Unknown < Running; not ready < ready;
    more sibling pods on the same node first; ready for less time first;
    more restarts first; newer first."""
    ready = is_pod_ready(pod)
    c = condition(pod, "Ready")
    ready_since = c.last_transition_time.seconds if (ready and c is not None) else 0
    restarts = max((s.restart_count for s in pod.status.container_statuses), default=0)
    return (1 if pod.spec.node_name else 0, _PHASE_RANK.get(pod.status.phase, 0), 1 if ready else 0,
            -related_on_node, -ready_since, -restarts, -pod.metadata.creation_timestamp.seconds,
            pod.metadata.name)


async def set_owner_refs(client, obj, refs) -> None:
    """Write obj's ownerReferences (Conflict/NotFound propagate; the sync retries)."""
    new = codec.copy(obj)
    del new.metadata.owner_references[:]
    new.metadata.owner_references.extend(refs)
    await client.update(new)


async def remove_finalizer(client, obj, finalizer: str) -> None:
    """Write obj without `finalizer` (gone already: nothing to do)."""
    new = codec.copy(obj)
    keep = [f for f in new.metadata.finalizers if f != finalizer]
    del new.metadata.finalizers[:]
    new.metadata.finalizers.extend(keep)
    try:
        await client.update(new)
    except errors.NotFound:
        pass


async def delete_pods(client, expectations, key: str, pods) -> list[BaseException]:
    """Delete pods concurrently (UID precondition) under deletion expectations: a pod already
    gone or replaced, or a failed delete, is observed at once. Returns the errors."""
    expectations.expect_deletions(key, [p.metadata.uid for p in pods])

    async def one(p):
        try:
            await client.delete("Pod", p.metadata.name, p.metadata.namespace, uid=p.metadata.uid)
        except (errors.NotFound, errors.Conflict):
            expectations.deletion_observed(key, p.metadata.uid)
        except Exception:
            expectations.deletion_observed(key, p.metadata.uid)
            raise
    results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]


class RefManager:
    """Adopt orphans that match, release owned ones that stopped matching
    (ControllerRefManager.ClaimObject). `can_adopt` is re-checked against the
    apiserver (not the cache) once per claim, as Kubernetes'
    RecheckDeletionTimestamp does, so a deleted-and-recreated owner never
    adopts with a stale UID."""

    def __init__(self, client, owner, selector):
        self.client, self.owner, self.selector = client, owner, selector
        self._can_adopt: bool | None = None

    async def can_adopt(self) -> bool:
        if self._can_adopt is None:
            o = self.owner
            try:
                fresh = await self.client.get(kinds.of(o), o.metadata.name, o.metadata.namespace)
            except errors.NotFound:
                self._can_adopt = False
            else:
                self._can_adopt = fresh.metadata.uid == o.metadata.uid and not is_terminating(fresh)
        return self._can_adopt

    async def claim(self, objs) -> list:
        owner_uid = self.owner.metadata.uid
        claimed = []
        for obj in objs:
            ref = controller_ref(obj)
            matches = self.selector.matches(obj.metadata.labels)
            if ref is not None:
                if ref.uid != owner_uid:
                    continue
                if matches:
                    claimed.append(obj)
                elif not is_terminating(self.owner):
                    try:
                        await set_owner_refs(self.client, obj,
                                             [r for r in obj.metadata.owner_references if r.uid != owner_uid])
                    except errors.NotFound:
                        pass
                continue
            if not matches or is_terminating(self.owner) or is_terminating(obj):
                continue
            if not await self.can_adopt():
                continue
            try:
                refs = list(obj.metadata.owner_references) + [owner_ref_for(self.owner)]
                await set_owner_refs(self.client, obj, refs)
            except errors.NotFound:
                continue
            adopted = codec.copy(obj)
            adopted.metadata.owner_references.append(owner_ref_for(self.owner))
            claimed.append(adopted)
        return claimed
