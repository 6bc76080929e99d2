"""Binding pods to nodes on etcd: Store's bind and bind_batch (a mixin of
apiserver/crud.py's Store).

Why apart: a binding is the one write that is not a whole object from the
client but a node name set on a pod the store reads itself, and the
scheduler's batched form has its own txn rules; the rest of crud.py is the
generic create/get/list/update/delete.

How: ``bind`` is a read and a txn whose compare pins the pod's mod_revision
(retried on contention, like every write in crud.py). ``bind_batch`` binds
in chunks of ≤ TXN_MAX_OPS pods: one read txn and one write txn per chunk
(a mod_revision compare per pod; a chunk of very large pods is split to
stay under TXN_MAX_BYTES). A chunk whose write fails falls back to one
``bind`` per pod, so every binding gets its own answer. ``_bound`` is
Kubernetes' rule for what a binding may do (uid precondition, not deleting,
not yet assigned) and sets the PodScheduled condition.

The helpers it shares with crud.py (not_found, conflict, _copy, the retry
bound and txn limits) are in apiserver/crudbase.py.
"""
from __future__ import annotations

from google.protobuf.message import Message

from apiserver import objects, registry
from apiserver import storage as st
from apiserver.crudbase import MAX_ATTEMPTS, TXN_MAX_BYTES, TXN_MAX_OPS, _copy, conflict, not_found
from machinery import errors, kinds
from machinery.pb import api_pb2


class PodBinding:
    """Store's pod binding: bind one pod, or a batch in chunked txns."""

    @staticmethod
    def _bound(pod, b: api_pb2.BindRequest):
        pods = kinds.BY_KIND["Pod"]
        if b.uid and b.uid != pod.metadata.uid:
            raise conflict(pods, b.name, f"Precondition failed: UID in precondition: {b.uid}, "
                                         f"UID in object meta: {pod.metadata.uid}")
        if pod.metadata.HasField("deletion_timestamp"):
            raise conflict(pods, b.name, f"pod {b.name} is being deleted, cannot be assigned to a host")
        if pod.spec.node_name:
            raise conflict(pods, b.name, f'pod {b.name} is already assigned to node "{pod.spec.node_name}"')
        new = _copy(pod)
        new.spec.node_name = b.node_name
        for k, v in b.annotations.items():
            new.metadata.annotations[k] = v
        cond = next((c for c in new.status.conditions if c.type == "PodScheduled"), None)
        if cond is None:
            cond = new.status.conditions.add(type="PodScheduled")
        if cond.status != "True":
            cond.last_transition_time.CopyFrom(registry.now())
        cond.status, cond.reason, cond.message = "True", "", ""
        return new

    @staticmethod
    def _check_binding(b: api_pb2.BindRequest) -> None:
        if not b.name or not b.node_name:
            raise errors.BadRequest("a binding needs the pod's name and target node_name")

    async def bind(self, b: api_pb2.BindRequest) -> Message:
        self._check_binding(b)
        pods = kinds.BY_KIND["Pod"]
        ns = b.namespace or "default"
        k = objects.key(pods, ns, b.name)
        for _ in range(MAX_ATTEMPTS):
            pod, kv = await self._read(pods, ns, b.name)
            new = self._bound(pod, b)
            resp = await self.storage.txn([st.mod_is(k, kv.mod_revision)], [st.put(k, objects.encode(new))],
                                          operation="bind")
            if resp.succeeded:
                new.metadata.resource_version = str(resp.header.revision)
                return new
        raise conflict(pods, b.name, "too much contention, please try again")

    async def bind_batch(self, bindings) -> list[api_pb2.BindResult]:
        """Bindings in chunks of ≤ 128: one read txn and one write txn per
        chunk (a mod_revision compare per pod; a chunk of very large pods is
        split to stay under etcd's request size limit). A chunk whose write fails (one
        pod changed meanwhile) falls back to one bind per pod, so every
        binding gets its own answer."""
        pods = kinds.BY_KIND["Pod"]
        results = [api_pb2.BindResult() for _ in bindings]
        later: list[int] = []
        order = list(range(len(bindings)))
        for lo in range(0, len(order), TXN_MAX_OPS):
            chunk, keys, seen = [], [], set()
            for i in order[lo:lo + TXN_MAX_OPS]:
                b = bindings[i]
                k = objects.key(pods, b.namespace or "default", b.name)
                if k in seen:
                    later.append(i)                       # same pod twice: one txn may not touch it twice
                    continue
                seen.add(k)
                chunk.append(i)
                keys.append(k)
            if not chunk:
                continue
            kvs, _ = await self.storage.get_many(keys)
            groups: list[tuple[list, list, list[int]]] = [([], [], [])]
            size = 0
            for i, k, kv in zip(chunk, keys, kvs):
                b = bindings[i]
                try:
                    self._check_binding(b)
                    if kv is None:
                        raise not_found(pods, b.name)
                    raw = objects.encode(self._bound(objects.decode(pods, kv.value, kv.mod_revision), b))
                except errors.ApiError as err:
                    results[i].error.CopyFrom(err.to_status())
                    continue
                if size + len(raw) > TXN_MAX_BYTES and groups[-1][2]:
                    groups.append(([], [], []))          # stay under etcd's request size limit
                    size = 0
                size += len(raw) + len(k)
                compares, ops, staged = groups[-1]
                compares.append(st.mod_is(k, kv.mod_revision))
                ops.append(st.put(k, raw))
                staged.append(i)
            for compares, ops, staged in groups:
                if not ops:
                    continue
                resp = await self.storage.txn(compares, ops, operation="bind_batch")
                if resp.succeeded:
                    for i in staged:
                        results[i].ok = True
                        results[i].resource_version = str(resp.header.revision)
                else:
                    later.extend(staged)
        for i in later:
            try:
                pod = await self.bind(bindings[i])
                results[i].ok = True
                results[i].resource_version = pod.metadata.resource_version
            except errors.ApiError as err:
                if isinstance(err, errors.Unavailable):
                    raise
                results[i].error.CopyFrom(err.to_status())
        return results
