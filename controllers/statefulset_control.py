"""One StatefulSet sync's actions (Kubernetes' stateful_set_control.go
updateStatefulSet and stateful_pod_control.go), on a pod control that talks
to the apiserver.

`update_replicas` walks the set as Kubernetes does:

1. replicas[] holds one pod per ordinal in [start, start+replicas): the
   live one, or a new one at the revision `versioned_pod` picks; pods of the
   set outside the range are condemned (highest ordinal first);
2. each replica in ordinal order: a Failed/Succeeded pod is deleted (it
   comes back on a later sync); a missing pod is created — its PVCs first,
   never recreated while a claim is still owned by an earlier pod of that
   name (the whenScaled=Delete garbage collection in flight); with
   OrderedReady ("monotonic") the walk stops at a pod just created, one
   terminating, or one not Running+Ready (and available); a pod whose
   identity, storage or claim owner references drifted is updated;
3. condemned pods get their claims' retention owner refs, then are deleted
   in decreasing ordinal order — OrderedReady one at a time, each only after
   its predecessors are Running+Ready (the first unhealthy pod may go);
   Parallel all at once;
4. RollingUpdate: the highest ordinal ≥ partition not at the update
   revision is deleted (to be recreated at the new revision), waiting for
   each to be healthy again; with maxUnavailable, up to that many pods
   (counting the ones already unhealthy) at a time. OnDelete stops at 3.

The status is computed from the replicas and the condemned pods.
"""
from __future__ import annotations

import asyncio

from machinery import codec, errors

from controllers import podutil
from controllers import statefulset_util as su


class StatefulPodControl:
    """Pod and claim writes with the set's events, worded as Kubernetes' recordPodEvent and
    recordClaimEvent ("create Pod web-0 in StatefulSet web successful")."""

    def __init__(self, client, claims, event):
        self.client, self.claims, self.event = client, claims, event   # claims(ns, name) -> cached PVC

    def _pod_event(self, verb: str, sts, pod, err=None) -> None:
        if err is None:
            self.event(sts, "Normal", f"Successful{verb.title()}",
                       f"{verb} Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} successful")
        else:
            self.event(sts, "Warning", f"Failed{verb.title()}",
                       f"{verb} Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} failed error: {err}")

    def _claim_event(self, verb: str, sts, pod, claim, err=None) -> None:
        if err is None:
            self.event(sts, "Normal", f"Successful{verb.title()}", f"{verb} Claim {claim.metadata.name} Pod "
                       f"{pod.metadata.name} in StatefulSet {sts.metadata.name} success")
        else:
            self.event(sts, "Warning", f"Failed{verb.title()}", f"{verb} Claim {claim.metadata.name} for Pod "
                       f"{pod.metadata.name} in StatefulSet {sts.metadata.name} failed error: {err}")

    async def create_missing_claims(self, sts, pod) -> None:
        """createPersistentVolumeClaims: a claim that exists is left alone (never resized or replaced)."""
        problems = []
        for claim in su.claims_for(sts, su.ordinal(pod)).values():
            have = self.claims(claim.metadata.namespace, claim.metadata.name)
            if have is not None:
                if podutil.is_terminating(have):
                    problems.append(f"pvc {claim.metadata.name} is being deleted")
                continue
            try:
                await self.client.create(claim)
            except errors.AlreadyExists:
                continue
            except errors.ApiError as exc:
                self._claim_event("create", sts, pod, claim, exc)
                problems.append(f"failed to create PVC {claim.metadata.name}: {exc}")
                continue
            self._claim_event("create", sts, pod, claim)
        if problems:
            raise errors.Conflict("; ".join(problems))

    async def claim_is_stale(self, sts, pod) -> bool:
        """PodClaimIsStale: with whenScaled=Delete, a claim still owned by an earlier pod blocks creation."""
        if sts.spec.persistent_volume_claim_retention_policy.when_scaled != "Delete":
            return False
        return any(c is not None and su.has_stale_owner_ref(c, pod)
                   for c in (self.claims(x.metadata.namespace, x.metadata.name)
                             for x in su.claims_for(sts, su.ordinal(pod)).values()))

    async def fix_claim_owners(self, sts, pod) -> None:
        """UpdatePodClaimForRetentionPolicy: set the claims' owner refs the retention policy wants."""
        for claim in su.claims_for(sts, su.ordinal(pod)).values():
            have = self.claims(claim.metadata.namespace, claim.metadata.name)
            if have is None or su.claim_matches_policy(have, sts, pod):
                continue
            new = codec.copy(have)
            del new.metadata.owner_references[:]
            new.metadata.owner_references.extend(su.claim_owner_refs(have, sts, pod))
            try:
                await self.client.update(new)
            except errors.NotFound:
                continue

    def claims_match_policy(self, sts, pod) -> bool:
        for claim in su.claims_for(sts, su.ordinal(pod)).values():
            have = self.claims(claim.metadata.namespace, claim.metadata.name)
            if have is not None and not su.claim_matches_policy(have, sts, pod):
                return False
        return True

    async def create_pod(self, sts, pod):
        """CreateStatefulPod: the claims first, then the pod, then the claims' retention owner refs."""
        try:
            await self.create_missing_claims(sts, pod)
        except errors.ApiError as exc:
            self._pod_event("create", sts, pod, exc)
            raise
        try:
            made = await self.client.create(pod)
        except errors.AlreadyExists:
            raise
        except errors.ApiError as exc:
            self._pod_event("create", sts, pod, exc)
            raise
        await self.fix_claim_owners(sts, made)
        self._pod_event("create", sts, pod)
        return made

    async def update_pod(self, sts, pod) -> None:
        """UpdateStatefulPod: restore identity and storage (creating missing claims), then write."""
        new = codec.copy(pod)
        if not su.identity_matches(sts, new):
            su.update_identity(sts, new)
        if not su.storage_matches(sts, new):
            su.update_storage(sts, new)
            await self.create_missing_claims(sts, new)
        await self.fix_claim_owners(sts, new)
        if new == pod:
            return
        try:
            await self.client.update(new)
        except errors.ApiError as exc:
            self._pod_event("update", sts, pod, exc)
            raise
        self._pod_event("update", sts, pod)

    async def delete_pod(self, sts, pod) -> None:
        try:
            await self.client.delete("Pod", pod.metadata.name, pod.metadata.namespace, uid=pod.metadata.uid)
        except errors.NotFound:
            return
        except errors.ApiError as exc:
            self._pod_event("delete", sts, pod, exc)
            raise
        self._pod_event("delete", sts, pod)


async def _run_for_all(items, fn, monotonic: bool) -> bool:
    """runForAll: in order, stopping at the first "exit"; in parallel (Parallel policy) all at once."""
    if monotonic:
        for i in range(len(items)):
            if await fn(i):
                return True
        return False
    results = await asyncio.gather(*(fn(i) for i in range(len(items))), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return False


class Walk:
    """One updateStatefulSet pass; `status` holds the counts when `run()` returns."""

    def __init__(self, pc: StatefulPodControl, sts, pods, current, update, now: float):
        self.pc, self.sts, self.now = pc, sts, now
        self.cur_name, self.upd_name = current.metadata.name, update.metadata.name
        self.current_set, self.update_set = su.apply_revision(sts, current), su.apply_revision(sts, update)
        self.monotonic = sts.spec.pod_management_policy != "Parallel"
        start, n = su.start_ordinal(sts), su.replicas(sts)
        self.replicas: list = [None] * n
        self.condemned: list = []
        for p in pods:
            if su.in_ordinal_range(p, sts):
                self.replicas[su.ordinal(p) - start] = p
            elif su.ordinal(p) >= 0:
                self.condemned.append(p)
        for i in range(n):
            if self.replicas[i] is None:
                self.replicas[i] = su.versioned_pod(self.current_set, self.update_set, self.cur_name,
                                                    self.upd_name, start + i)
        self.condemned.sort(key=su.ordinal, reverse=True)
        unhealthy = [p for p in self.replicas + self.condemned if not su.is_healthy(p)]
        self.first_unhealthy = unhealthy[0] if unhealthy else None

    def counts(self) -> dict:
        return su.compute_status(self.replicas + self.condemned, self.sts.spec.min_ready_seconds,
                                 self.cur_name, self.upd_name, self.now)

    def _available(self, pod) -> bool:
        return su.is_running_and_available(pod, self.sts.spec.min_ready_seconds, self.now)

    async def process_replica(self, i: int) -> bool:
        pod, m = self.replicas[i], self.monotonic
        if su.is_failed(pod) or su.is_succeeded(pod):
            if not podutil.is_terminating(pod):
                await self.pc.delete_pod(self.sts, pod)
            return True
        if not su.is_created(pod):
            if await self.pc.claim_is_stale(self.sts, pod):
                return True
            self.replicas[i] = await self.pc.create_pod(self.sts, pod)
            return m
        if pod.status.phase == "Pending":
            await self.pc.create_missing_claims(self.sts, pod)
        if m and (podutil.is_terminating(pod) or not su.is_running_and_ready(pod) or not self._available(pod)):
            return True
        if su.identity_matches(self.sts, pod) and su.storage_matches(self.sts, pod) \
                and self.pc.claims_match_policy(self.update_set, pod):
            return False
        await self.pc.update_pod(self.update_set, pod)
        return False

    async def process_condemned(self, i: int) -> bool:
        pod, m = self.condemned[i], self.monotonic
        if podutil.is_terminating(pod):
            return m
        if m and pod is not self.first_unhealthy and (not su.is_running_and_ready(pod) or not self._available(pod)):
            return True
        await self.pc.delete_pod(self.sts, pod)
        return True

    async def run(self) -> None:
        if podutil.is_terminating(self.sts):
            return
        if await _run_for_all(self.replicas, self.process_replica, self.monotonic):
            return
        for pod in self.condemned:
            if not self.pc.claims_match_policy(self.sts, pod):
                await self.pc.fix_claim_owners(self.sts, pod)
        if await _run_for_all(self.condemned, self.process_condemned, self.monotonic):
            return
        if self.sts.spec.update_strategy.type == "OnDelete":
            return
        await self.rolling_update()

    async def rolling_update(self) -> None:
        partition = self.sts.spec.update_strategy.rolling_update.partition
        limit = su.max_unavailable(self.sts)
        if limit is None:                     # the classic one-at-a-time walk
            for pod in reversed(self.replicas[partition:]):
                if su.revision_of(pod) != self.upd_name and not podutil.is_terminating(pod):
                    await self.pc.delete_pod(self.sts, pod)
                    return
                if not su.is_healthy(pod):
                    return
            return
        budget = limit - sum(1 for p in self.replicas if not su.is_healthy(p))
        for pod in reversed(self.replicas[partition:]):
            if budget <= 0:
                return
            if su.revision_of(pod) != self.upd_name and not podutil.is_terminating(pod):
                await self.pc.delete_pod(self.sts, pod)
                budget -= 1
