"""Create, get, list, update, delete and bind on etcd: one object = one txn.

Concurrency is optimistic, never locked: every write is an etcd txn whose
compare pins what the decision was based on — `create_revision == 0` for a
create, `mod_revision == <the revision read>` for an update/delete/bind, plus
"allocation key absent" for each ClusterIP/NodePort a Service takes and
"namespace key present" for objects in a namespace. A failed compare is
diagnosed from the txn's failure branch (which reads the same keys back in
the same round trip): AlreadyExists, NotFound, Conflict (the client's
resourceVersion is stale) or, for unconditional writes (no resourceVersion
given) and contended allocations, a silent retry on fresh data.

Updates without a resourceVersion are unconditional, as Kubernetes allows
for its built-in kinds (AllowUnconditionalUpdate); `kctl apply` sends the
resourceVersion it read, so it gets conflicts. An update that changes
nothing writes nothing (resourceVersion unchanged), as in Kubernetes.

Binding pods to nodes (one txn per bind, chunked txns for bind_batch) is in
apiserver/crudbind.py, a mixin of Store; the helpers both share (retry
bound, txn limits, NotFound/Conflict/Invalid) in apiserver/crudbase.py.

A write that names a FieldManager records its managedFields entry inside
the attempt, after defaulting, against the object that attempt read
(fieldmanager.py).
"""
from __future__ import annotations

import base64
import json
from typing import Callable

from google.protobuf.message import Message

from apiserver import admission, metrics, objects, registry
from apiserver import storage as st
from apiserver.allocators import Allocation, ServiceAllocator
from apiserver.crudbase import (MAX_ATTEMPTS, TXN_MAX_BYTES, TXN_MAX_OPS, _copy, conflict,  # noqa: F401
                                invalid, not_found)  # (re-exported)
from apiserver.crudbind import PodBinding
from apiserver.etcdlease import LeaseManager
from apiserver.fieldmanager import FieldManager
from machinery import errors, kinds
from machinery.pb import api_pb2

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")   # Kubernetes refuses to delete these


def _finalizers_pending(obj: Message) -> bool:
    if obj.metadata.finalizers:
        return True
    return isinstance(obj, kinds.BY_KIND["Namespace"].message) and bool(obj.spec.finalizers)


def _removable(obj: Message) -> bool:
    """A deleting object with nothing left to wait for (Kubernetes' rule)."""
    md = obj.metadata
    return (md.HasField("deletion_timestamp") and not _finalizers_pending(obj)
            and (not md.HasField("deletion_grace_period_seconds") or md.deletion_grace_period_seconds == 0))


class Store(PodBinding):
    """The apiserver's objects in etcd; binding pods to nodes (bind,
    bind_batch) is PodBinding's part (apiserver/crudbind.py)."""

    def __init__(self, storage: st.Storage, allocator: ServiceAllocator, *, ttls: dict[str, int] | None = None):
        """`ttls`: kind -> seconds an object of it lives after its last create
        or update (Events: --event-ttl), by an etcd lease (apiserver/etcdlease.py)."""
        self.storage = storage
        self.allocator = allocator
        self.ttls = {kind: ttl for kind, ttl in (ttls or {}).items() if ttl > 0}
        self.leases = LeaseManager(storage.grant_lease)
        # (kind, key) -> the watch cache's newest KeyValue or None (WatchCache.current): where
        # an update starts; None (unit tests, no cache) reads etcd every time.
        self.cached: Callable[[str, bytes], st.KeyValue | None] | None = None
        # Namespaces seen terminating by the namespace watch (watchcache feeds it).
        self.terminating_namespaces: set[str] = set()

    async def _lease(self, info: kinds.KindInfo) -> int:
        """The etcd lease a write of this kind attaches its key to (0: none).
        Like Kubernetes' TTLFunc of Events, every create and update renews it."""
        ttl = self.ttls.get(info.kind)
        return await self.leases.lease(ttl) if ttl else 0

    # --------------------------------------------------------------- read
    async def get(self, info: kinds.KindInfo, namespace: str, name: str):
        kv, _ = await self.storage.get(objects.key(info, namespace, name))
        if kv is None:
            raise not_found(info, name)
        return objects.to_any(info, kv.value, kv.mod_revision)

    async def _read(self, info, namespace, name) -> tuple[Message, st.KeyValue]:
        kv = await self._read_kv(info, objects.key(info, namespace, name), name)
        return objects.decode(info, kv.value, kv.mod_revision), kv

    async def _read_kv(self, info, k: bytes, name: str) -> st.KeyValue:
        kv, _ = await self.storage.get(k)
        if kv is None:
            raise not_found(info, name)
        return kv

    async def list(self, info: kinds.KindInfo, flt: objects.Filter, limit: int = 0,
                   continue_token: str = "", revision: int = 0) -> api_pb2.ListResponse:
        """Objects matching flt, at `revision` (0: the latest; a compacted one is Expired)."""
        start = None
        if continue_token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(continue_token))
                start, revision = base64.b64decode(tok["start"]), int(tok["rev"])
            except (ValueError, KeyError, TypeError):
                raise errors.BadRequest("invalid continue token") from None
            if not start.startswith(flt.key_prefix):
                raise errors.BadRequest("continue token does not belong to this list")
        kvs, rev, more = await self.storage.range(flt.key_prefix, start=start, revision=revision,
                                                  limit=max(0, limit))
        resp = api_pb2.ListResponse(resource_version=str(revision or rev))
        to_any, matches = objects.to_any, flt.matches_raw
        resp.items.extend(to_any(info, kv.value, kv.mod_revision) for kv in kvs if matches(kv.value))
        if more and kvs:
            resp.continue_token = base64.urlsafe_b64encode(json.dumps(
                {"start": base64.b64encode(kvs[-1].key + b"\x00").decode(), "rev": revision or rev}).encode()).decode()
        return resp

    # ------------------------------------------------------------- create
    async def create(self, obj: Message, dry_run: bool = False,
                     manager: FieldManager | None = None) -> tuple[Message, list[str]]:
        info = kinds.of(obj)
        strat = registry.strategy(info)
        ns = (obj.metadata.namespace or "default") if info.namespaced else ""
        obj.metadata.namespace = ns
        strat.default(obj)
        if manager is not None:
            obj = manager.track(None, obj)
        strat.prepare_for_create(obj, ns)
        generated = not obj.metadata.name and bool(obj.metadata.generate_name)
        if generated:
            obj.metadata.name = registry.generate_name(obj.metadata.generate_name)
        await admission.mutate(admission.Request(admission.CREATE, info, obj, store=self, dry_run=dry_run))
        problems = strat.validate(obj)
        if problems:
            raise invalid(info, obj.metadata.name or obj.metadata.generate_name, problems)
        admitted = await admission.validate(admission.Request(admission.CREATE, info, obj, store=self,
                                                              dry_run=dry_run))
        strat.canonicalize(obj)
        name = obj.metadata.name
        if ns in self.terminating_namespaces:
            raise errors.Forbidden(f'{info.plural} "{name}" is forbidden: unable to create new content in '
                                   f"namespace {ns} because it is being terminated",
                                   kind=info.plural, name=name, group=info.group)
        ns_key = objects.key(kinds.BY_KIND["Namespace"], "", ns) if ns else None
        avoid: set[bytes] = set()
        base = _copy(obj)
        for _ in range(MAX_ATTEMPTS):
            picked_name = obj.metadata.name
            obj = _copy(base)                      # a retry starts from the request, not from failed picks
            obj.metadata.name = picked_name
            k = objects.key(info, ns, obj.metadata.name)
            alloc, warnings = await self._allocate(info, obj, None, k, avoid)
            compares = [st.absent(k)] + ([st.present(ns_key)] if ns_key else []) + alloc.compares
            failure = [st.get(k)] + ([st.get(ns_key)] if ns_key else []) + [st.get(x) for x in alloc.new_keys]
            if dry_run:
                kvs, _ = await self.storage.get_many([k] + ([ns_key] if ns_key else []))
                if kvs[0] is not None:
                    raise errors.AlreadyExists(f'{info.resource} "{obj.metadata.name}" already exists',
                                               kind=info.plural, name=obj.metadata.name, group=info.group)
                if ns_key and kvs[1] is None:
                    raise not_found(kinds.BY_KIND["Namespace"], ns)
                return obj, admitted + warnings
            lease = await self._lease(info)
            resp = await self.storage.txn(compares, [st.put(k, objects.encode(obj), lease)] + alloc.ops, failure,
                                          operation="create")
            if resp.succeeded:
                obj.metadata.resource_version = str(resp.header.revision)
                return obj, admitted + warnings
            reads = [r.response_range.kvs for r in resp.responses]
            if reads[0]:
                if generated:
                    obj.metadata.name = registry.generate_name(obj.metadata.generate_name)
                    continue
                raise errors.AlreadyExists(f'{info.resource} "{obj.metadata.name}" already exists',
                                           kind=info.plural, name=obj.metadata.name, group=info.group)
            if ns_key and not reads[1]:
                raise not_found(kinds.BY_KIND["Namespace"], ns)
            self._taken(alloc, reads[-len(alloc.new_keys):] if alloc.new_keys else [], avoid)
        raise errors.ApiError(f"could not create {info.resource} {name}: too much contention, try again")

    async def _allocate(self, info, obj, old, k: bytes, avoid: set[bytes]):
        if info.kind != "Service":
            return Allocation(), []
        return await self.allocator.plan(obj, old, k, avoid)

    @staticmethod
    def _taken(alloc, reads, avoid: set[bytes]) -> None:
        for k, r in zip(alloc.new_keys, reads):
            if r:
                avoid.add(k)

    # ------------------------------------------------------------- update
    async def update(self, obj: Message, *, status: bool = False, dry_run: bool = False,
                     subresource: str = "", manager: FieldManager | None = None) -> tuple[Message, list[str]]:
        """A spec update, or with status=True a status-like subresource:
        subresource "status" (the default) or a kind's own ("approval")."""
        info = kinds.of(obj)
        sub = (subresource or "status") if status else ""
        strat = registry.strategy(info)
        if status and not info.has_status:
            raise errors.MethodNotAllowed(f"{info.resource} have no status subresource")
        ns = (obj.metadata.namespace or "default") if info.namespaced else ""
        name = obj.metadata.name
        if not name:
            raise invalid(info, "", [errors.required("metadata.name", "name is required")])
        k = objects.key(info, ns, name)
        want_rv = obj.metadata.resource_version
        avoid: set[bytes] = set()
        original = _copy(obj)
        # Start from the watch cache's copy when it has one, as Kubernetes' GuaranteedUpdate
        # starts from the cacher's object: no etcd read.  That copy may be behind etcd, so,
        # as there, every conclusion drawn from it alone (an error, "nothing changed") is
        # checked against etcd's copy first; a write is safe anyway (the txn compares the
        # revision, and its failure branch reads the current copy for the next attempt).
        kv = None if dry_run or self.cached is None else self.cached(info.kind, k)
        current = kv is None
        if kv is not None:
            metrics.UPDATE_READS.labels("cache").inc()
        for _ in range(MAX_ATTEMPTS):
            if kv is None:
                kv, current = await self._read_kv(info, k, name), True
                metrics.UPDATE_READS.labels("etcd").inc()
            old = objects.decode(info, kv.value, kv.mod_revision)
            try:
                new, warnings, alloc = await self._prepare_update(
                    info, strat, original, old, kv, k, ns, want_rv, sub, status, dry_run, manager, avoid)
            except errors.ApiError:
                if current:
                    raise
                fresh = await self._read_kv(info, k, name)
                metrics.UPDATE_READS.labels("etcd").inc()
                if fresh.mod_revision == kv.mod_revision:
                    raise                                             # the copy was current after all
                kv, current = fresh, True
                continue
            remove = _removable(new)
            raw = objects.encode(new)
            if raw == kv.value and not remove and not self.storage.stale(kv):
                if not current:                                      # only etcd's copy can say so
                    kv = None
                    continue
                return old, warnings                                  # no-op: nothing written
            if dry_run:
                new.metadata.resource_version = str(kv.mod_revision)
                return new, warnings
            if remove:
                success = [st.delete(k)] + (ServiceAllocator.release(old) if info.kind == "Service" else [])
            else:
                success = [st.put(k, raw, await self._lease(info))] + alloc.ops
            resp = await self.storage.txn([st.mod_is(k, kv.mod_revision)] + alloc.compares, success,
                                          [st.get(k)] + [st.get(x) for x in alloc.new_keys], operation="update")
            if resp.succeeded:
                new.metadata.resource_version = str(resp.header.revision)
                return new, warnings
            reads = [r.response_range.kvs for r in resp.responses]
            if not reads[0]:
                raise not_found(info, name)
            if reads[0][0].mod_revision != kv.mod_revision:
                if want_rv:
                    raise conflict(info, name)
                kv, current = reads[0][0], True                       # unconditional: retry on fresh data
                continue
            current = True                                            # the compare matched etcd's copy
            self._taken(alloc, reads[1:], avoid)
        raise conflict(info, name, "too much contention, please try again")

    async def _prepare_update(self, info, strat, original, old, kv, k, ns, want_rv, sub, status, dry_run,
                              manager, avoid) -> tuple[Message, list[str], Allocation]:
        """One attempt's new object from the client's and `old` (etcd's copy at kv): the
        resourceVersion precondition, defaulting, admission, validation, managedFields and,
        for a spec update, the Service allocations; raises what the client is to get."""
        name = original.metadata.name
        if want_rv and want_rv != str(kv.mod_revision):
            raise conflict(info, name)
        new = _copy(original)
        new.metadata.namespace = ns
        req = admission.Request(admission.UPDATE, info, new, old, sub, self, dry_run)
        if status:
            strat.prepare_for_status_update(new, old, sub)
            problems = strat.validate_status(new, old, sub)
        else:
            strat.default(new)
            await admission.mutate(req)
            strat.prepare_for_update(new, old)
            problems = strat.validate(new, old)
        if manager is not None:                  # against the object the txn compares with
            new = manager.track(old, new)
        if problems:
            raise invalid(info, name, problems)
        admitted = await admission.validate(req)
        strat.canonicalize(new, status_only=status)     # a status write keeps the rest as stored
        if status:
            alloc, warnings = Allocation(), []
        else:
            alloc, warnings = await self._allocate(info, new, old, k, avoid)
        return new, admitted + warnings, alloc

    # ------------------------------------------------------------- delete
    async def delete(self, req: api_pb2.DeleteRequest, info: kinds.KindInfo) -> tuple[Message, bool]:
        strat = registry.strategy(info)
        ns = (req.namespace or "default") if info.namespaced else ""
        name = req.name
        k = objects.key(info, ns, name)
        pre = req.preconditions
        requested = req.grace_period_seconds if req.HasField("grace_period_seconds") else None
        policy = req.propagation_policy
        dry_run = req.dry_run
        if info.kind == "Namespace" and name in PROTECTED_NAMESPACES:
            raise errors.Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                                   kind="namespaces", name=name)
        if policy and policy not in ("Background", "Foreground", "Orphan"):
            raise errors.BadRequest(f"unsupported propagationPolicy {policy!r}: "
                                    "supported values: Background, Foreground, Orphan")
        for _ in range(MAX_ATTEMPTS):
            obj, kv = await self._read(info, ns, name)
            md = obj.metadata
            if pre.uid and pre.uid != md.uid:
                raise conflict(info, name, f"Precondition failed: UID in precondition: {pre.uid}, "
                                           f"UID in object meta: {md.uid}")
            if pre.resource_version and pre.resource_version != str(kv.mod_revision):
                raise conflict(info, name, f"Precondition failed: ResourceVersion in precondition: "
                                           f"{pre.resource_version}, ResourceVersion in object meta: {kv.mod_revision}")
            await admission.validate(admission.Request(admission.DELETE, info, None, obj, "", self, dry_run))
            new = _copy(obj)
            grace = strat.grace_period(obj, requested)
            finalizer = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(policy)
            if finalizer and finalizer not in new.metadata.finalizers:
                new.metadata.finalizers.append(finalizer)
            if info.kind == "Namespace":
                new.status.phase = "Terminating"
                if not md.HasField("deletion_timestamp") and "kubernetes" not in new.spec.finalizers:
                    new.spec.finalizers.append("kubernetes")
            pending = _finalizers_pending(new) or grace > 0
            if not pending:
                if dry_run:
                    return obj, True
                success = [st.delete(k)] + (ServiceAllocator.release(obj) if info.kind == "Service" else [])
                resp = await self.storage.txn([st.mod_is(k, kv.mod_revision)], success, operation="delete")
                if resp.succeeded:
                    obj.metadata.resource_version = str(resp.header.revision)
                    return obj, True
                continue
            nmd = new.metadata
            deadline = int(registry.now().seconds) + grace
            if not md.HasField("deletion_timestamp"):
                nmd.deletion_timestamp.seconds = deadline
                nmd.deletion_grace_period_seconds = grace
                nmd.generation = md.generation + 1
            elif grace < (md.deletion_grace_period_seconds if md.HasField("deletion_grace_period_seconds") else 0):
                nmd.deletion_timestamp.seconds = min(deadline, md.deletion_timestamp.seconds)
                nmd.deletion_grace_period_seconds = grace
            raw = objects.encode(new)
            if raw == kv.value or dry_run:
                return (obj if raw == kv.value else new), False
            resp = await self.storage.txn([st.mod_is(k, kv.mod_revision)], [st.put(k, raw)], operation="delete")
            if resp.succeeded:
                new.metadata.resource_version = str(resp.header.revision)
                return new, False
        raise conflict(info, name, "too much contention, please try again")
