"""Bounds on what one apiserver accepts at once, shared by gRPC and HTTP.

* In-flight requests, as kube-apiserver's max-in-flight filter (the
  filter it uses without API Priority and Fairness): at most
  `--max-requests-inflight` read-only requests (default 400) and
  `--max-mutating-requests-inflight` mutating ones (default 200) run at
  once; 0 lifts a limit. Long-running requests (watches, logs/exec/port
  streams to node agents) and health checks are not counted, as in
  Kubernetes. A request over the limit is refused at once with 429
  TooManyRequests "Too many requests, please try again later." and
  Retry-After: 1 (over gRPC: RESOURCE_EXHAUSTED carrying the same Status
  with retryAfterSeconds=1).
* Message sizes: a gRPC request may be at most MAX_REQUEST_BYTES (3 MiB,
  the HTTP body limit, Kubernetes' MaxRequestBodyBytes, and the limit
  machinery.safeyaml applies to a manifest); an object written to etcd
  at most MAX_OBJECT_BYTES (1.5 MiB, etcd's default --max-request-bytes),
  refused before etcd sees it with 413 RequestEntityTooLarge. Request
  bytes that are not the method's protobuf message are 400 BadRequest.
* Warnings (HTTP Warning headers): each at most 256 characters, 4 KiB in
  all, as kube-apiserver caps them, and at most 50 of them.
* Watches: each watcher is a cursor into the watch cache's ring (memory
  does not grow with a slow watcher; one that falls a ring behind ends
  with TooSlow), and each message it is sent must be taken by the client
  within `--watch-send-timeout` seconds (default 60): a watcher that stops
  reading is dropped (`sent_within`): its cursor is released and nothing
  more is queued for it; over HTTP its connection is closed at once; over
  gRPC the message already in flight cannot be taken back, so the 429
  TooManyRequests status follows it when the client reads again (or the
  call ends with the connection; keepalive finds dead peers).
"""
from __future__ import annotations

import asyncio
import inspect

import grpc
from google.protobuf.message import DecodeError
from aiohttp import web

from machinery import errors, safeyaml

MAX_REQUEST_BYTES = safeyaml.MAX_BYTES
MAX_OBJECT_BYTES = 3 * 512 * 1024
DEFAULT_MAX_INFLIGHT = 400
DEFAULT_MAX_MUTATING_INFLIGHT = 200
DEFAULT_WATCH_SEND_TIMEOUT = 60.0
RETRY_AFTER = 1
TOO_MANY = "Too many requests, please try again later."

# gRPC methods of kctl.v1.Api by class; anything else (Watch, the node
# agent proxy's streams) is long-running and not counted.
READ_METHODS = frozenset({"Get", "List", "Version"})
MUTATING_METHODS = frozenset({"Create", "Update", "UpdateStatus", "Delete", "Bind", "BindBatch", "Patch"})
EXEMPT_PATHS = ("/healthz", "/livez", "/readyz", "/version")


class Inflight:
    """Two counters with ceilings; `slot(mutating)` takes one or raises."""

    def __init__(self, max_requests: int = DEFAULT_MAX_INFLIGHT,
                 max_mutating: int = DEFAULT_MAX_MUTATING_INFLIGHT,
                 watch_send_timeout: float = DEFAULT_WATCH_SEND_TIMEOUT):
        self.limits = {False: max_requests, True: max_mutating}
        self.watch_send_timeout = watch_send_timeout
        self.current = {False: 0, True: 0}
        self.rejected = 0

    def acquire(self, mutating: bool) -> None:
        limit = self.limits[mutating]
        if limit and self.current[mutating] >= limit:
            self.rejected += 1
            raise errors.TooManyRequests(TOO_MANY, retry_after=RETRY_AFTER)
        self.current[mutating] += 1

    def release(self, mutating: bool) -> None:
        self.current[mutating] -= 1


MAX_WARNING_CHARS = 256
MAX_WARNINGS_BYTES = 4 * 1024
MAX_WARNINGS = 50


def capped_warnings(warnings) -> list[str]:
    """Warning headers as kube-apiserver bounds them (endpoints/filters/warning.go):
    each cut to 256 characters, at most 4 KiB in all, the rest dropped; and
    at most 50 headers (clients refuse responses with 100)."""
    out, total = [], 0
    for w in list(warnings)[:MAX_WARNINGS]:
        w = w if len(w) <= MAX_WARNING_CHARS else w[:MAX_WARNING_CHARS - 3] + "..."
        total += len(w)
        if total > MAX_WARNINGS_BYTES:
            break
        out.append(w)
    return out


def check_object_size(obj) -> None:
    """Refuse an object etcd would refuse (its serialised size over MAX_OBJECT_BYTES)."""
    size = obj.ByteSize()
    if size > MAX_OBJECT_BYTES:
        raise errors.RequestEntityTooLarge(
            f"Request entity too large: the object is {size} bytes, the limit is {MAX_OBJECT_BYTES}")


class Stalled(errors.TooManyRequests):
    """A watcher that stopped taking events; `pending` is the write still in flight."""

    def __init__(self, message: str, *, pending=None, **kw):
        super().__init__(message, **kw)
        self.pending = pending

    async def settled(self) -> None:
        """Wait for the write in flight to leave (or fail): only then can a
        gRPC status be sent."""
        if self.pending is not None:
            await asyncio.wait({self.pending})


async def sent_within(write, verbs, what: str):
    """Await one watch write, for at most the watch send timeout of the
    limiter on `verbs` (none without one); a stalled client is dropped."""
    limiter = getattr(verbs, "limiter", None)
    timeout = limiter.watch_send_timeout if limiter is not None else 0
    if not timeout:
        return await write
    # One task, one future and one timer per write, rather than asyncio.wait's sets, callbacks and
    # extra future: with 1,000 watchers every event is 1,000 of these (bench/README.md, fan-out).
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(write)
    waiter = loop.create_future()

    def wake(_=None) -> None:
        if not waiter.done():
            waiter.set_result(None)
    task.add_done_callback(wake)
    timer = loop.call_later(timeout, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    if task.done():
        return task.result()
    # Not cancelled: gRPC cannot take back a message it started to send (the
    # status can only follow it: Stalled.settled()).
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    raise Stalled(f"watch of {what} closed: the client took no event for {timeout:g}s",
                  retry_after=RETRY_AFTER, pending=task)


# ------------------------------------------------------------------ gRPC

class GrpcInflight(grpc.aio.ServerInterceptor):
    """Guards on kctl.v1.Api's methods: the in-flight limit on its unary
    methods, and request bytes that do not parse as the method's message
    answered 400 BadRequest (gRPC's own handling is UNKNOWN plus a logged
    traceback)."""

    def __init__(self, limiter: Inflight):
        self.limiter = limiter

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        service, _, method = details.method.rpartition("/")
        if handler is None or not service.endswith("kctl.v1.Api") or handler.request_streaming:
            return handler
        decode = handler.request_deserializer
        if handler.unary_unary is not None:
            slot = method in MUTATING_METHODS if method in READ_METHODS | MUTATING_METHODS else None
            inner, limiter = handler.unary_unary, self.limiter

            async def unary(raw, context):
                request = await _decoded(decode, raw, method, context)
                if slot is None:
                    return await inner(request, context)
                try:
                    limiter.acquire(slot)
                except errors.TooManyRequests as exc:
                    await errors.abort(context, exc)
                try:
                    return await inner(request, context)
                finally:
                    limiter.release(slot)

            return grpc.unary_unary_rpc_method_handler(unary, response_serializer=handler.response_serializer)
        inner = handler.unary_stream
        if inspect.isasyncgenfunction(inner):
            async def stream(raw, context):
                async for msg in inner(await _decoded(decode, raw, method, context), context):
                    yield msg
        else:
            async def stream(raw, context):
                return await inner(await _decoded(decode, raw, method, context), context)
        return grpc.unary_stream_rpc_method_handler(stream, response_serializer=handler.response_serializer)


async def _decoded(decode, raw: bytes, method: str, context):
    try:
        return decode(raw) if decode is not None else raw
    except DecodeError:
        await errors.abort(context, errors.BadRequest(f"cannot decode the {method} request: "
                                                      "the message is not valid protobuf"))


# ------------------------------------------------------------------ HTTP

def _long_running(request: web.Request) -> bool:
    q = request.query
    return (q.get("watch", "").lower() in ("true", "1") or request.path.endswith(("/log", "/exec", "/attach",
                                                                                 "/portforward", "/proxy")))


def http_middlewares(limiter: Inflight | None) -> list:
    """The HTTP API's limiter middleware (none when there is no limiter);
    it sits inside the Status middleware, which turns its 429 into a
    metav1.Status with a Retry-After header."""
    if limiter is None:
        return []

    @web.middleware
    async def inflight(request: web.Request, handler):
        if request.path in EXEMPT_PATHS or _long_running(request):
            return await handler(request)
        mutating = request.method not in ("GET", "HEAD", "OPTIONS")
        limiter.acquire(mutating)
        try:
            return await handler(request)
        finally:
            limiter.release(mutating)

    return [inflight]
