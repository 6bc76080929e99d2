"""The API's verbs, once, for every transport.

The gRPC servicer (server.py) and the HTTP API (http/) are thin
translations of their wire formats into calls on `Verbs`: create, get,
list, update (and status update), delete, bind, version and watch. Here
sits what both need beyond the Store: resolving what a request named into
a kind, counting and timing every request (one set of Prometheus metrics,
whatever the transport), and turning the watch cache's events into
`kctl.v1.WatchEvent`s (an initial state replay for rv 0 / unset, BOOKMARKs
when asked, selectors applied). Errors are ApiErrors; each transport turns
them into its own status (gRPC rich status, metav1.Status JSON). Writes
carry the FieldManager each transport names (fieldmanager.py), so
managedFields are recorded the same way over gRPC and HTTP.

Objects travel as `google.protobuf.Any` holding etcd's bytes plus the
resourceVersion suffix (objects.with_rv), so what one transport writes the
other reads back byte for byte, with the same resourceVersion.
"""
from __future__ import annotations

import contextlib
import platform
import time
from typing import AsyncIterator

from google.protobuf import any_pb2
from google.protobuf.message import Message

from apiserver import limits, metrics, objects
from apiserver.crud import Store
from apiserver.fieldmanager import FieldManager
from apiserver.watchcache import Bookmark, WatchCache, convert
from machinery import errors, kinds
from machinery.pb import api_pb2

VERSION = "v0.1.0-kctl"
BOOKMARK, ERROR = "BOOKMARK", "ERROR"
BOOKMARK_INTERVAL = 10.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def kind_of(name: str) -> kinds.KindInfo:
    """The kind a request named (`po`, `pods`, `Pod`); NotFound if kctl has none."""
    try:
        return kinds.resolve(name)
    except kinds.UnknownKind as exc:
        raise errors.NotFound(str(exc)) from None


def label(kind) -> str:
    """The metrics label for what a request named (`po` and `pods` count as Pod)."""
    if isinstance(kind, kinds.KindInfo):
        return kind.kind
    try:
        return kinds.resolve(kind).kind if kind else ""
    except kinds.UnknownKind:
        return "unknown"


def parse_rv(text: str) -> int | None:
    """A request's resourceVersion: None when unset; BadRequest when not a revision."""
    try:
        rv = int(text) if text else None
        if rv is not None and rv < 0:
            raise ValueError(text)
    except ValueError:
        raise errors.BadRequest(f"invalid resourceVersion {text!r}") from None
    return rv


class Verbs:
    def __init__(self, store: Store, cache: WatchCache, bookmark_interval: float = BOOKMARK_INTERVAL):
        self.store = store
        self.cache = cache
        self.bookmark_interval = bookmark_interval

    @contextlib.asynccontextmanager
    async def measured(self, verb: str, kind=""):
        """Count a request by kind/verb/code and time it (the code is the gRPC
        status name, the same for either transport)."""
        t0 = time.perf_counter()
        code = "OK"
        try:
            yield
        except Exception as exc:
            code = exc.grpc_code.name if isinstance(exc, errors.ApiError) else "INTERNAL"
            raise
        finally:
            kind = label(kind)
            metrics.REQUESTS.labels(kind, verb, code).inc()
            metrics.REQUEST_DURATION.labels(kind, verb).observe(time.perf_counter() - t0)

    # ------------------------------------------------------------- CRUD
    async def create(self, obj: Message, dry_run: bool = False,
                     manager: FieldManager | None = None) -> tuple[Message, list[str]]:
        limits.check_object_size(obj)
        return await self.store.create(obj, dry_run=dry_run, manager=manager)

    async def get(self, info: kinds.KindInfo, namespace: str, name: str) -> any_pb2.Any:
        ns = (namespace or "default") if info.namespaced else ""
        return await self.store.get(info, ns, name)

    async def list(self, info: kinds.KindInfo, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   revision: int = 0) -> api_pb2.ListResponse:
        flt = objects.Filter(info, namespace, label_selector, field_selector)
        return await self.store.list(info, flt, limit, continue_token, revision)

    async def update(self, obj: Message, *, status: bool = False, dry_run: bool = False,
                     subresource: str = "", manager: FieldManager | None = None) -> tuple[Message, list[str]]:
        limits.check_object_size(obj)
        return await self.store.update(obj, status=status, dry_run=dry_run, subresource=subresource,
                                       manager=manager)

    async def delete(self, request: api_pb2.DeleteRequest) -> tuple[Message, bool]:
        return await self.store.delete(request, kind_of(request.kind))

    async def bind(self, request: api_pb2.BindRequest) -> Message:
        return await self.store.bind(request)

    async def bind_batch(self, bindings) -> list[api_pb2.BindResult]:
        return await self.store.bind_batch(bindings)

    async def version(self) -> api_pb2.VersionResponse:
        try:
            etcd_version = await self.store.storage.version()
        except errors.Unavailable:
            etcd_version = "unavailable"
        return api_pb2.VersionResponse(git_version=VERSION, etcd_version=etcd_version,
                                       platform=f"{platform.system().lower()}/{platform.machine()}")

    # ------------------------------------------------------------ watch
    async def watch(self, request: api_pb2.WatchRequest,
                    initial_events_end: bool = False) -> AsyncIterator[api_pb2.WatchEvent]:
        """Check a watch request and open it: errors in the request (or a
        cache that is not ready) are raised here, before any event; errors
        while streaming (Expired, TooSlow) end the returned iterator.
        With initial_events_end (Kubernetes' sendInitialEvents, used by
        client-go's watch-list), the replay of the current state is followed
        by a BOOKMARK annotated `k8s.io/initial-events-end: "true"`."""
        kind = request.kind
        try:
            info = kind_of(kind)
            flt = objects.Filter(info, request.namespace, request.label_selector, request.field_selector)
            rv = parse_rv(request.resource_version)
            cache = self.cache[info.kind]
            await cache.wait_ready(self.store.storage.timeout)
        except Exception as exc:
            code = exc.grpc_code.name if isinstance(exc, errors.ApiError) else "INTERNAL"
            metrics.REQUESTS.labels(label(kind), "watch", code).inc()
            raise
        metrics.REQUESTS.labels(info.kind, "watch", "OK").inc()
        return self._events(info, flt, cache, rv, request.allow_bookmarks, initial_events_end)

    @staticmethod
    def _bookmark(info: kinds.KindInfo, revision: int, end_of_initial: bool = False) -> api_pb2.WatchEvent:
        empty = info.message(api_version=info.api_version, kind=info.kind)
        empty.metadata.resource_version = str(revision)
        if end_of_initial:
            empty.metadata.annotations[INITIAL_EVENTS_END] = "true"
        return api_pb2.WatchEvent(type=BOOKMARK, resource_version=str(revision), object=objects.pack(empty))

    async def _events(self, info, flt, cache, rv, allow_bookmarks,
                      initial_events_end=False) -> AsyncIterator[api_pb2.WatchEvent]:
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
                if initial_events_end:
                    yield self._bookmark(info, start, True)
            interval = self.bookmark_interval if allow_bookmarks else None
            trigger = flt.fields.exact(cache.trigger_path) if flt.fields and cache.trigger_path else None
            async for ev in cache.stream(rv, interval, trigger):
                if isinstance(ev, Bookmark):
                    yield self._bookmark(info, ev.revision)
                    continue
                seen = convert(ev, flt)
                if seen is None:
                    continue
                yield ev.encoded(seen, lambda type_, raw, ev=ev: api_pb2.WatchEvent(
                    type=type_, resource_version=str(ev.revision),
                    object=any_pb2.Any(type_url=type_url, value=objects.with_rv(raw, ev.revision))))
        finally:
            metrics.WATCHES.labels(info.kind).dec()
