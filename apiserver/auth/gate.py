"""Where requests are authenticated and authorized, for both transports.

`Gate` holds the apiserver's Authenticator and Authorizer (and the audit
log, when there is one). Over gRPC it is
a server interceptor (innermost, so it receives decoded requests): it
authenticates the call, applies impersonation (`impersonate-*` metadata,
apiserver/auth/impersonation.py), sets `auth.current()` for the rest of the call and,
for the unary-request methods, authorizes the Attributes `grpc_attributes`
derives from the request (a Create/Update's object is decoded here once
and handed to the servicer: objects.unpack_request / take_unpacked). Methods whose request is a stream (exec, attach,
port-forward) are authenticated here and authorized by their servicer on
the first message (`Gate.authorize`). Over HTTP, `http_middlewares()`
returns the authenticate middleware (outermost after the Status one) and
the authorize middleware (after the in-flight limit), which uses
requestinfo.attributes; impersonation (`Impersonate-*` headers) is applied
in the first, right after authentication, as in Kubernetes' filter chain.

Auditing (apiserver/audit.py) wraps both: the HTTP audit middleware sits
between the Status middleware and authentication and reads what the inner
middlewares left on the request's `audit.Call` (user, attributes,
decision, annotations, bodies); the gRPC wrapper records the same for each
call. The RequestReceived stage is written once the user and attributes
are known, ResponseComplete at the end; the audit policy
(apiserver/auditpolicy.py) decides what is written.
"""
from __future__ import annotations

import dataclasses
import inspect

import grpc
from aiohttp import web

from apiserver import audit as auditing, objects
from apiserver.auth import authz, impersonation, requestinfo, reviews, user as users
from apiserver.auth.authn import Authenticator, Insecure
from apiserver.auth.authz import Attributes, Authorizer
from machinery import errors, kinds

UNAUTHORIZED = "Unauthorized"


def _object_attrs(user, verb: str, any_obj, sub: str = "") -> Attributes:
    info = kinds.BY_TYPE_URL.get(any_obj.type_url)
    if info is None:
        review = reviews.BY_TYPE_URL.get(any_obj.type_url)
        if review is not None:
            return reviews.grpc_attributes(user, review, any_obj)
        return Attributes(user, verb, resource="unknown")
    _, obj = objects.unpack_request(any_obj)          # the servicer takes this decode over
    ns = (obj.metadata.namespace or "default") if info.namespaced else ""
    # a create names no object, as a POST to the collection over HTTP (so resourceNames never grant it)
    return Attributes(user, verb, namespace=ns, api_group=info.group, resource=info.plural,
                      subresource=sub, name="" if verb == "create" else obj.metadata.name)


def _named_attrs(user, verb: str, kind: str, namespace: str, name: str, sub: str = "") -> Attributes:
    try:                          # a kind as the request names it; unknown: taken as a namespaced plural
        info = kinds.resolve(kind)
        group, plural, namespaced = info.group, info.plural, info.namespaced
    except kinds.UnknownKind:
        group, plural, namespaced = "", kind.lower(), True
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
    if method in ("List", "Watch"):      # a metadata.name field selector names the object, as over HTTP
        return [_named_attrs(user, method.lower(), request.kind, request.namespace,
                             requestinfo.selected_name(request.field_selector))]
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


def authenticated(who: users.UserInfo | None) -> users.UserInfo:
    """401 for nobody; everyone else is in system:authenticated, whatever the
    authenticator said (Kubernetes' AuthenticatedGroupAdder)."""
    if who is None:
        raise errors.Unauthorized(UNAUTHORIZED)
    if who.name == users.ANONYMOUS.name or who.in_group(users.AUTHENTICATED):
        return who
    return dataclasses.replace(who, groups=(*who.groups, users.AUTHENTICATED))


def _peer_ip(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` -> the address."""
    kind, _, rest = (peer or "").partition(":")
    return rest.rpartition(":")[0].strip("[]") if kind in ("ipv4", "ipv6") else ""


class Gate(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator | None = None, authorizer: Authorizer | None = None,
                 audit: auditing.AuditLog | None = None):
        self.authenticator = authenticator or Insecure()
        self.authorizer = authorizer or authz.AlwaysAllow()
        self.audit = audit

    # ---------------------------------------------------------- shared
    async def authorize(self, a: Attributes, call: auditing.Call | None = None) -> None:
        """403 unless allowed (Kubernetes' message)."""
        d = await self.authorizer.authorize(a)
        if call is not None:
            call.attrs, call.decision, call.reason = a, "allow" if d.allowed else "forbid", d.reason
        if not d.allowed:
            raise authz.forbidden(a, d.reason)

    async def authorize_stream(self, a: Attributes, method: str) -> None:
        """For gRPC streams authorized by their servicer on the first message
        (exec, attach, port-forward): authorize and audit the opening (code 101
        when allowed, as Kubernetes logs an upgraded connection; 403 when not)."""
        call = auditing.Call(method, auditing.now(), user=a.user)
        try:
            await self.authorize(a, call)
            call.code = 101
        except errors.ApiError as exc:
            call.code = exc.http_code
            raise
        finally:
            self._record(call)

    def _record(self, call: auditing.Call) -> None:
        if self.audit is not None:
            self.audit.record(call)

    def _received(self, call: auditing.Call) -> None:
        """The RequestReceived stage: the user and attributes are known, nothing is decided yet."""
        if self.audit is not None:
            self.audit.record(call, auditing.auditpolicy.RECEIVED)

    async def _grpc_user(self, context, call: auditing.Call):
        try:
            who = authenticated(await self.authenticator.grpc(context))
            call.user = who
            who = await impersonation.impersonate(who, context.invocation_metadata() or (), self.authorizer)
            call.user = who
        except errors.ApiError as exc:
            call.code = exc.http_code
            await errors.abort(context, exc)
        return who

    async def _grpc_admit(self, method: str, request, context, call: auditing.Call):
        who = await self._grpc_user(context, call)
        users.set_current(who)
        try:
            wanted = grpc_attributes(who, method, request) or ()
            call.attrs = wanted[0] if wanted else None
            self._received(call)
            for a in wanted:
                await self.authorize(a, call)
        except errors.ApiError as exc:
            call.code = exc.http_code
            await errors.abort(context, exc)

    def _grpc_call(self, details, context) -> auditing.Call:
        """The audit Call of a gRPC call, current for the call's task (each RPC has its own)."""
        call = auditing.Call(details.method, auditing.now(), source_ip=_peer_ip(context.peer()),
                             user_agent=dict(context.invocation_metadata() or ()).get("user-agent", ""))
        auditing.begin(call)
        return call

    def _grpc_done(self, call: auditing.Call, context, method: str, request=None, response=None) -> None:
        if not call.code:
            code = context.code() if hasattr(context, "code") else None
            call.code = auditing.GRPC_TO_HTTP.get(code, 500) if code is not None else (
                201 if method == "Create" else 200)
        if self.audit is not None:
            self.audit.record(call, rule=auditing.grpc_objects(self.audit.rule(call), call, request, response))

    # ------------------------------------------------------------ gRPC
    def _guarded(self, inner, details, method: str):
        """A unary-request handler that is admitted first and audited after."""
        async def guarded(request, context):
            call, response = self._grpc_call(details, context), None
            try:
                await self._grpc_admit(method, request, context, call)
                response = await inner(request, context)
                return response
            finally:
                self._grpc_done(call, context, method, request, response)
        return guarded

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rpartition("/")[2]
        gate = self
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._guarded(handler.unary_unary, details, method),
                                                       request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner = handler.unary_stream
            if inspect.isasyncgenfunction(inner):
                async def stream(request, context):
                    call = gate._grpc_call(details, context)
                    try:
                        await gate._grpc_admit(method, request, context, call)
                        async for msg in inner(request, context):
                            yield msg
                    finally:
                        gate._grpc_done(call, context, method, request)
            else:
                stream = self._guarded(inner, details, method)
            return grpc.unary_stream_rpc_method_handler(stream, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)
        inner = handler.stream_stream or handler.stream_unary
        streaming_out = handler.stream_stream is not None
        if streaming_out and inspect.isasyncgenfunction(inner):
            async def bidi(requests, context):
                users.set_current(await gate._grpc_user(context, gate._grpc_call(details, context)))
                async for msg in inner(requests, context):
                    yield msg
        else:
            async def bidi(requests, context):
                users.set_current(await gate._grpc_user(context, gate._grpc_call(details, context)))
                return await inner(requests, context)
        make = grpc.stream_stream_rpc_method_handler if streaming_out else grpc.stream_unary_rpc_method_handler
        return make(bidi, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    # ------------------------------------------------------------ HTTP
    def http_middlewares(self) -> tuple:
        """(audit, authenticate, authorize): the first two go right after the
        Status middleware, the last after the in-flight limit."""
        gate = self

        @web.middleware
        async def audit(request: web.Request, handler):
            if gate.audit is None:
                return await handler(request)
            call = auditing.Call(request.path_qs, auditing.now(), source_ip=request.remote or "",
                                 user_agent=request.headers.get("User-Agent", ""))
            request["kctl.audit"] = call
            token, response = auditing.begin_http(call), None
            try:
                response = await handler(request)
                call.code = response.status
                return response
            except errors.ApiError as exc:
                call.code = exc.http_code
                raise
            except web.HTTPException as exc:
                call.code = exc.status
                raise
            except Exception:
                call.code = 500
                raise
            finally:
                auditing.end_http(token)
                if call.attrs is None and call.user is not None:
                    call.attrs = requestinfo.attributes(call.user, request.method, request.path,
                                                        request.query_string)
                gate.audit.record(call, rule=auditing.http_objects(gate.audit.rule(call), call, request, response))

        @web.middleware
        async def authenticate(request: web.Request, handler):
            who = authenticated(await gate.authenticator.http(request))
            call = request.get("kctl.audit")
            if call is not None:
                call.user = who
            who = await impersonation.impersonate(who, request.headers.items(), gate.authorizer)
            if call is not None:
                call.user = who
                call.attrs = requestinfo.attributes(who, request.method, request.path, request.query_string)
                gate._received(call)
            users.set_current(who)
            return await handler(request)

        @web.middleware
        async def authorize(request: web.Request, handler):
            await gate.authorize(requestinfo.attributes(users.current(), request.method, request.path,
                                                        request.query_string), request.get("kctl.audit"))
            return await handler(request)

        return audit, authenticate, authorize
