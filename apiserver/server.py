"""The gRPC servicer (kctl.v1.Api): a thin translation of RPCs into calls on
verbs.Verbs (shared with the HTTP API), and the one place where ApiErrors
become gRPC statuses (errors.abort, which attaches the rich kctl.v1.Status).

Each RPC runs as its own task on grpc.aio's event loop; nothing here holds
state across requests except the Store (stateless over etcd) and the watch
cache, whose concurrency story is in watchcache.py. A Watch handler is one
task per client that reads the ring at its own pace and writes with gRPC's
flow control, so a slow client only slows itself; a client that takes no
message for --watch-send-timeout seconds is dropped (apiserver.limits).
"""
from __future__ import annotations

import logging

from apiserver import limits, objects
from apiserver.fieldmanager import grpc_field_manager
from apiserver.auth import current, reviews
from apiserver.verbs import Verbs, kind_of
from machinery import errors, kinds
from machinery.pb import api_pb2, api_pb2_grpc, serviceaccount_pb2

log = logging.getLogger(__name__)


async def fail_rpc(context, exc: Exception, what: str):
    """End an RPC with exc: ApiErrors as they are, anything else as a logged internal error."""
    if isinstance(exc, errors.ApiError):
        if isinstance(exc, errors.Unavailable):
            log.warning("%s: %s", what, exc.message)
        await errors.abort(context, exc)
    log.exception("%s failed", what)
    await errors.abort(context, errors.ApiError(f"internal error: {type(exc).__name__}: {exc}"))


def _kind_of_any(a) -> str:
    info = kinds.BY_TYPE_URL.get(a.type_url)
    return info.kind if info else ""


class ApiServicer(api_pb2_grpc.ApiServicer):
    def __init__(self, verbs: Verbs):
        self.verbs = verbs

    async def _run(self, context, verb, kind, fn):
        """Run a unary RPC: measured by Verbs, errors translated here."""
        try:
            async with self.verbs.measured(verb, kind):
                return await fn()
        except Exception as exc:  # noqa: BLE001 - translated in one place
            await fail_rpc(context, exc, f"{verb} {kind}")

    # ------------------------------------------------------------- CRUD
    async def Create(self, request, context):
        review = reviews.BY_TYPE_URL.get(request.object.type_url)
        if review is not None:                   # create-only reviews (apiserver/auth/reviews.py)
            return await self._run(context, "create", review.kind, lambda: self._review(review, request))

        async def go():
            _, obj = objects.take_unpacked(request.object)   # decoded by the auth gate
            out, warnings = await self.verbs.create(obj, dry_run=request.dry_run,
                                                    manager=grpc_field_manager(request, context, "", "CreateOptions"))
            return api_pb2.ObjectResponse(object=objects.pack(out), warnings=warnings)
        return await self._run(context, "create", _kind_of_any(request.object), go)

    async def _review(self, review, request):
        if getattr(self.verbs, "reviews", None) is None:
            raise errors.MethodNotAllowed(f"{review.plural}.{review.group} is not served")
        obj = review.message()
        request.object.Unpack(obj)
        out = await self.verbs.reviews.review(review, obj, current())
        return api_pb2.ObjectResponse(object=objects.pack(out))

    async def Get(self, request, context):
        async def go():
            obj = await self.verbs.get(kind_of(request.kind), request.namespace, request.name)
            return api_pb2.ObjectResponse(object=obj)
        return await self._run(context, "get", request.kind, go)

    async def List(self, request, context):
        async def go():
            return await self.verbs.list(kind_of(request.kind), request.namespace, request.label_selector,
                                         request.field_selector, request.limit, request.continue_token)
        return await self._run(context, "list", request.kind, go)

    async def _update(self, request, context, status: bool):
        async def go():
            _, obj = objects.take_unpacked(request.object)   # decoded by the auth gate
            manager = grpc_field_manager(request, context, "status" if status else "", "UpdateOptions")
            out, warnings = await self.verbs.update(obj, status=status, dry_run=request.dry_run,
                                                    subresource=request.subresource if status else "",
                                                    manager=manager)
            return api_pb2.ObjectResponse(object=objects.pack(out), warnings=warnings)
        return await self._run(context, "update_status" if status else "update",
                               _kind_of_any(request.object), go)

    async def Update(self, request, context):
        return await self._update(request, context, False)

    async def UpdateStatus(self, request, context):
        return await self._update(request, context, True)

    async def Delete(self, request, context):
        async def go():
            obj, deleted = await self.verbs.delete(request)
            return api_pb2.DeleteResponse(object=objects.pack(obj), deleted=deleted)
        return await self._run(context, "delete", request.kind, go)

    async def Bind(self, request, context):
        async def go():
            return api_pb2.ObjectResponse(object=objects.pack(await self.verbs.bind(request)))
        return await self._run(context, "bind", "Pod", go)

    async def BindBatch(self, request, context):
        async def go():
            return api_pb2.BindBatchResponse(results=await self.verbs.bind_batch(request.bindings))
        return await self._run(context, "bind_batch", "Pod", go)

    async def CreateSubresource(self, request, context):
        """serviceaccounts/token: a TokenRequest in, the TokenRequest with its token out."""
        async def go():
            if (kind_of(request.kind).kind, request.subresource) != ("ServiceAccount", "token"):
                raise errors.NotFound(f"the server could not find the requested resource "
                                      f"({request.kind}/{request.subresource})")
            tr = serviceaccount_pb2.TokenRequest()
            if not request.object.Unpack(tr):
                raise errors.BadRequest(f"the body must be a TokenRequest, not {request.object.type_url}")
            out = await self.verbs.token_requests.create(request.namespace, request.name, tr, request.dry_run)
            return api_pb2.ObjectResponse(object=objects.pack(out))
        return await self._run(context, "create", "ServiceAccount", go)

    async def Version(self, request, context):
        return await self._run(context, "version", "", self.verbs.version)

    # ------------------------------------------------------------ watch
    async def Watch(self, request, context):
        try:
            events = await self.verbs.watch(request)
        except Exception as exc:  # noqa: BLE001
            await fail_rpc(context, exc, f"watch {request.kind}")
        try:
            async for ev in events:        # a write the client does not take in time ends the watch
                await limits.sent_within(context.write(ev), self.verbs, request.kind)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, errors.ApiError):
                log.info("watch %s ended: %s", request.kind, exc.message)
            if isinstance(exc, limits.Stalled):
                await events.aclose()            # release the cursor now; the status waits for the
                await exc.settled()              # message in flight (one write at a time)
            await fail_rpc(context, exc, f"watch {request.kind}")
