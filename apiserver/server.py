"""The gRPC servicer (kctl.v1.Api): request decoding, metrics, and the one
place where ApiErrors become gRPC statuses (errors.abort, which attaches
the rich kctl.v1.Status).

Each RPC runs as its own task on grpc.aio's event loop; nothing here holds
state across requests except the Store (stateless over etcd) and the watch
cache, whose concurrency story is in watchcache.py. A Watch handler is one
task per client that reads the ring at its own pace and writes with gRPC's
flow control, so a slow client only slows itself.
"""
from __future__ import annotations

import logging
import platform
import time

from google.protobuf import any_pb2

from apiserver import metrics, objects
from apiserver.crud import Store
from apiserver.watchcache import BOOKMARK, Bookmark, WatchCache, convert
from machinery import errors, kinds
from machinery.pb import api_pb2, api_pb2_grpc

log = logging.getLogger(__name__)

VERSION = "v0.1.0-kctl"
BOOKMARK_INTERVAL = 10.0


def _kind(name: str) -> kinds.KindInfo:
    try:
        return kinds.resolve(name)
    except kinds.UnknownKind as exc:
        raise errors.NotFound(str(exc)) from None


def _label(kind: str) -> str:
    """The metrics label for what a request named (`po` and `pods` count as Pod)."""
    try:
        return kinds.resolve(kind).kind if kind else ""
    except kinds.UnknownKind:
        return "unknown"


def _unpack(a: any_pb2.Any):
    info = kinds.BY_TYPE_URL.get(a.type_url)
    if info is None:
        raise errors.BadRequest(f"unknown object type {a.type_url or '(empty)'}")
    obj = info.message()
    if not a.Unpack(obj):
        raise errors.BadRequest(f"cannot decode {a.type_url}")
    return info, obj


async def fail_rpc(context, exc: Exception, what: str):
    """End an RPC with exc: ApiErrors as they are, anything else as a logged internal error."""
    if isinstance(exc, errors.ApiError):
        if isinstance(exc, errors.Unavailable):
            log.warning("%s: %s", what, exc.message)
        await errors.abort(context, exc)
    log.exception("%s failed", what)
    await errors.abort(context, errors.ApiError(f"internal error: {type(exc).__name__}: {exc}"))


class ApiServicer(api_pb2_grpc.ApiServicer):
    def __init__(self, store: Store, cache: WatchCache, bookmark_interval: float = BOOKMARK_INTERVAL):
        self.store = store
        self.cache = cache
        self.bookmark_interval = bookmark_interval

    async def _run(self, context, verb, kind, fn):
        """Run a unary RPC: count it by kind/verb/code, time it, translate errors."""
        t0 = time.perf_counter()
        code = "OK"
        kind = _label(kind)
        try:
            return await fn()
        except Exception as exc:  # noqa: BLE001 - translated in one place
            code = exc.grpc_code.name if isinstance(exc, errors.ApiError) else "INTERNAL"
            await fail_rpc(context, exc, f"{verb} {kind}")
        finally:
            metrics.REQUESTS.labels(kind, verb, code).inc()
            metrics.REQUEST_DURATION.labels(kind, verb).observe(time.perf_counter() - t0)

    # ------------------------------------------------------------- CRUD
    async def Create(self, request, context):
        kind = kinds.BY_TYPE_URL.get(request.object.type_url)

        async def go():
            info, obj = _unpack(request.object)
            out, warnings = await self.store.create(obj, dry_run=request.dry_run)
            return api_pb2.ObjectResponse(object=objects.pack(out), warnings=warnings)
        return await self._run(context, "create", kind.kind if kind else "", go)

    async def Get(self, request, context):
        async def go():
            info = _kind(request.kind)
            ns = (request.namespace or "default") if info.namespaced else ""
            return api_pb2.ObjectResponse(object=await self.store.get(info, ns, request.name))
        return await self._run(context, "get", request.kind, go)

    async def List(self, request, context):
        async def go():
            info = _kind(request.kind)
            flt = objects.Filter(info, request.namespace, request.label_selector, request.field_selector)
            return await self.store.list(info, flt, request.limit, request.continue_token)
        return await self._run(context, "list", request.kind, go)

    async def _update(self, request, context, status: bool):
        kind = kinds.BY_TYPE_URL.get(request.object.type_url)

        async def go():
            info, obj = _unpack(request.object)
            out, warnings = await self.store.update(obj, status=status, dry_run=request.dry_run)
            return api_pb2.ObjectResponse(object=objects.pack(out), warnings=warnings)
        return await self._run(context, "update_status" if status else "update", kind.kind if kind else "", go)

    async def Update(self, request, context):
        return await self._update(request, context, False)

    async def UpdateStatus(self, request, context):
        return await self._update(request, context, True)

    async def Delete(self, request, context):
        async def go():
            info = _kind(request.kind)
            obj, deleted = await self.store.delete(request, info)
            return api_pb2.DeleteResponse(object=objects.pack(obj), deleted=deleted)
        return await self._run(context, "delete", request.kind, go)

    async def Bind(self, request, context):
        async def go():
            return api_pb2.ObjectResponse(object=objects.pack(await self.store.bind(request)))
        return await self._run(context, "bind", "Pod", go)

    async def BindBatch(self, request, context):
        async def go():
            return api_pb2.BindBatchResponse(results=await self.store.bind_batch(request.bindings))
        return await self._run(context, "bind_batch", "Pod", go)

    async def Version(self, request, context):
        async def go():
            try:
                etcd_version = await self.store.storage.version()
            except errors.Unavailable:
                etcd_version = "unavailable"
            return api_pb2.VersionResponse(git_version=VERSION, etcd_version=etcd_version,
                                           platform=f"{platform.system().lower()}/{platform.machine()}")
        return await self._run(context, "version", "", go)

    # ------------------------------------------------------------ watch
    async def Watch(self, request, context):
        kind = request.kind
        try:
            info = _kind(kind)
            kind = info.kind
            flt = objects.Filter(info, request.namespace, request.label_selector, request.field_selector)
            rv_text = request.resource_version
            try:
                rv = int(rv_text) if rv_text else None
                if rv is not None and rv < 0:
                    raise ValueError(rv_text)
            except ValueError:
                raise errors.BadRequest(f"invalid resourceVersion {rv_text!r}") from None
            cache = self.cache[info.kind]
            await cache.wait_ready(self.store.storage.timeout)
        except Exception as exc:  # noqa: BLE001
            metrics.REQUESTS.labels(_label(kind), "watch",
                                    getattr(getattr(exc, "grpc_code", None), "name", "INTERNAL")).inc()
            await fail_rpc(context, exc, f"watch {kind}")
        metrics.REQUESTS.labels(info.kind, "watch", "OK").inc()
        metrics.WATCHES.labels(info.kind).inc()
        type_url = info.type_url
        try:
            if rv is None or rv == 0:
                # The current state as ADDED events, consistent with revision `start`.
                kvs, start, _ = await self.store.storage.range(flt.key_prefix)
                for kv in kvs:
                    if flt.matches_raw(kv.value):
                        yield api_pb2.WatchEvent(type="ADDED", resource_version=str(kv.mod_revision),
                                                 object=any_pb2.Any(type_url=type_url,
                                                                    value=objects.with_rv(kv.value, kv.mod_revision)))
                rv = start
            interval = self.bookmark_interval if request.allow_bookmarks else None
            trigger = flt.fields.exact(cache.trigger_path) if flt.fields and cache.trigger_path else None
            async for ev in cache.stream(rv, interval, trigger):
                if isinstance(ev, Bookmark):
                    empty = info.message(api_version=info.api_version, kind=info.kind)
                    empty.metadata.resource_version = str(ev.revision)
                    yield api_pb2.WatchEvent(type=BOOKMARK, resource_version=str(ev.revision),
                                             object=objects.pack(empty))
                    continue
                seen = convert(ev, flt)
                if seen is None:
                    continue
                yield api_pb2.WatchEvent(type=seen[0], resource_version=str(ev.revision),
                                         object=any_pb2.Any(type_url=type_url,
                                                            value=objects.with_rv(seen[1], ev.revision)))
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, errors.ApiError):
                log.info("watch %s ended: %s", info.plural, exc.message)
            await fail_rpc(context, exc, f"watch {kind}")
        finally:
            metrics.WATCHES.labels(info.kind).dec()
