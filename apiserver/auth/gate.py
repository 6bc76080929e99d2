"""Where requests are authenticated and authorized, for both transports.

`Gate` holds the apiserver's Authenticator and Authorizer. Over gRPC it is
a server interceptor (innermost, so it receives decoded requests): it
authenticates the call, sets `auth.current()` for the rest of the call and,
for the unary-request methods, authorizes the Attributes `grpc_attributes`
derives from the request. Methods whose request is a stream (exec, attach,
port-forward) are authenticated here and authorized by their servicer on
the first message (`Gate.authorize`). Over HTTP, `http_middlewares()`
returns the authenticate middleware (outermost after the Status one) and
the authorize middleware (after the in-flight limit), which uses
requestinfo.attributes.
"""
from __future__ import annotations

import inspect

import grpc
from aiohttp import web

from apiserver.auth import authz, requestinfo, user as users
from apiserver.auth.authn import Authenticator, Insecure
from apiserver.auth.authz import Attributes, Authorizer
from machinery import errors, kinds

UNAUTHORIZED = "Unauthorized"


def _plural(kind_name: str) -> tuple[str, str]:
    """(group, plural) of a kind as a request names it; ("", name) when unknown."""
    try:
        info = kinds.resolve(kind_name)
    except kinds.UnknownKind:
        return "", kind_name.lower()
    return info.group, info.plural


def _object_attrs(user, verb: str, any_obj, sub: str = "") -> Attributes:
    info = kinds.BY_TYPE_URL.get(any_obj.type_url)
    if info is None:
        return Attributes(user, verb, resource="unknown")
    obj = info.message()
    any_obj.Unpack(obj)
    ns = (obj.metadata.namespace or "default") if info.namespaced else ""
    return Attributes(user, verb, namespace=ns, api_group=info.group, resource=info.plural,
                      subresource=sub, name=obj.metadata.name)


def _named_attrs(user, verb: str, kind: str, namespace: str, name: str, sub: str = "") -> Attributes:
    group, plural = _plural(kind)
    try:
        namespaced = kinds.resolve(kind).namespaced
    except kinds.UnknownKind:
        namespaced = True
    ns = (namespace or ("default" if verb not in ("list", "watch") else "")) if namespaced else ""
    return Attributes(user, verb, namespace=ns, api_group=group, resource=plural, subresource=sub, name=name)


def grpc_attributes(user, method: str, request) -> list[Attributes] | None:
    """What a unary-request RPC asks to do (None: not a resource request we know)."""
    if method == "Create":
        return [_object_attrs(user, "create", request.object)]
    if method in ("Update", "UpdateStatus"):
        sub = (request.subresource or "status") if method == "UpdateStatus" else ""
        return [_object_attrs(user, "update", request.object, sub)]
    if method in ("Get", "Delete"):
        return [_named_attrs(user, method.lower(), request.kind, request.namespace, request.name)]
    if method in ("List", "Watch"):
        return [_named_attrs(user, method.lower(), request.kind, request.namespace, "")]
    if method == "Bind":
        return [Attributes(user, "create", namespace=request.namespace or "default", resource="pods",
                           subresource="binding", name=request.name)]
    if method == "BindBatch":
        return [Attributes(user, "create", namespace=b.namespace or "default", resource="pods",
                           subresource="binding", name=b.name) for b in request.bindings]
    if method == "CreateSubresource":
        return [_named_attrs(user, "create", request.kind, request.namespace, request.name, request.subresource)]
    if method == "Version":
        return [Attributes(user, "get", resource_request=False, path="/version")]
    if method == "Logs":
        return [Attributes(user, "get", namespace=request.namespace or "default", resource="pods",
                           subresource="log", name=request.pod)]
    if method in ("ListPodMetrics", "ListNodeMetrics"):
        pods = method == "ListPodMetrics"
        return [Attributes(user, "get" if request.name else "list", namespace=request.namespace if pods else "",
                           api_group="metrics.k8s.io", resource="pods" if pods else "nodes", name=request.name)]
    return None


class Gate(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator | None = None, authorizer: Authorizer | None = None):
        self.authenticator = authenticator or Insecure()
        self.authorizer = authorizer or authz.AlwaysAllow()

    # ---------------------------------------------------------- shared
    async def authorize(self, a: Attributes) -> None:
        """403 unless allowed (Kubernetes' message)."""
        await authz.check(self.authorizer, a)

    async def _grpc_user(self, context):
        try:
            who = await self.authenticator.grpc(context)
        except errors.Unauthorized as exc:
            await errors.abort(context, exc)
        if who is None:
            await errors.abort(context, errors.Unauthorized(UNAUTHORIZED))
        return who

    async def _grpc_admit(self, method: str, request, context):
        who = await self._grpc_user(context)
        users.set_current(who)
        try:
            for a in grpc_attributes(who, method, request) or ():
                await self.authorize(a)
        except errors.ApiError as exc:
            await errors.abort(context, exc)

    # ------------------------------------------------------------ gRPC
    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rpartition("/")[2]
        gate = self
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                await gate._grpc_admit(method, request, context)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner = handler.unary_stream
            if inspect.isasyncgenfunction(inner):
                async def stream(request, context):
                    await gate._grpc_admit(method, request, context)
                    async for msg in inner(request, context):
                        yield msg
            else:
                async def stream(request, context):
                    await gate._grpc_admit(method, request, context)
                    return await inner(request, context)
            return grpc.unary_stream_rpc_method_handler(stream, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)
        inner = handler.stream_stream or handler.stream_unary
        streaming_out = handler.stream_stream is not None
        if streaming_out and inspect.isasyncgenfunction(inner):
            async def bidi(requests, context):
                users.set_current(await gate._grpc_user(context))
                async for msg in inner(requests, context):
                    yield msg
        else:
            async def bidi(requests, context):
                users.set_current(await gate._grpc_user(context))
                return await inner(requests, context)
        make = grpc.stream_stream_rpc_method_handler if streaming_out else grpc.stream_unary_rpc_method_handler
        return make(bidi, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    # ------------------------------------------------------------ HTTP
    def http_middlewares(self) -> tuple:
        """(authenticate, authorize): the first goes right after the Status
        middleware, the second after the in-flight limit."""
        gate = self

        @web.middleware
        async def authenticate(request: web.Request, handler):
            who = await gate.authenticator.http(request)
            if who is None:
                raise errors.Unauthorized(UNAUTHORIZED)
            users.set_current(who)
            return await handler(request)

        @web.middleware
        async def authorize(request: web.Request, handler):
            await gate.authorize(requestinfo.attributes(users.current(), request.method, request.path,
                                                        request.query_string))
            return await handler(request)

        return authenticate, authorize
