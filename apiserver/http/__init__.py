"""The Kubernetes HTTP API of kctl-apiserver, next to gRPC in the same
event loop, so that the real kubectl and the official client libraries
drive a kctl cluster unchanged.

aiohttp serves it; everything below the wire is shared with the gRPC
servicer through apiserver.verbs (decoding via machinery.codec, defaulting,
validation, storage, the watch cache, the error model): an object written
over HTTP and read over gRPC is the same object with the same
resourceVersion. The package is a translation only:

* discovery.py     /version, /healthz|livez|readyz, /api, /apis (plain
                   and aggregated discovery), /openapi/v2 and /openapi/v3
* resources.py     GET/LIST/POST/PUT/PATCH/DELETE and delete collection
* watch.py         ?watch=true as chunked JSON lines
* subresources.py  scale, binding, eviction, serviceaccounts' token (status is in resources.py)
* streams.py       pods' log, exec and attach (WebSocket), through the
                   node proxy (apiserver/nodeproxy.py)
* portforward.py   pods' portforward (WebSocket, SPDY/3.1 tunnelled)
* metrics_routes.py metrics.k8s.io/v1beta1 (read-only, from apiserver/metricsapi.py)
* review_routes.py  SelfSubjectAccessReview & co. (create-only, apiserver/auth/reviews.py)
* wire.py          JSON bodies in; objects, lists, Tables, Status out
* conversion.py    older versions served next to the stored one (autoscaling/v1 HPA)

Errors are metav1.Status JSON built from the same Status a gRPC error
carries (errors.ApiError.to_status). Bodies over 3 MiB are refused with
413 (Kubernetes' limit), unknown media types with 415, malformed JSON with
400; nothing is written in any of these cases.

Plain HTTP without authentication, like Kubernetes' old insecure port: the
listen address defaults to loopback (127.0.0.1:8080, the address kubectl
tries when it has no kubeconfig at all).
"""
from __future__ import annotations

import logging

from aiohttp import web

from apiserver import limits
from apiserver.auth.gate import Gate
from apiserver.http import discovery, metrics_routes, review_routes, wire
from apiserver.http.resources import Resources, Target, not_found_path, parse
from apiserver.http.portforward import PortForward
from apiserver.http.streams import Streams
from apiserver.http.subresources import Subresources
from apiserver.http.watch import watch, watching
from apiserver.verbs import Verbs
from machinery import errors

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8080"
STREAMS = {"log": ("GET",), "exec": ("GET", "POST"), "attach": ("GET", "POST"), "portforward": ("GET", "POST")}


class Api:
    """The resource routes of one apiserver."""

    def __init__(self, verbs: Verbs, proxy=None):
        self.verbs = verbs
        self.res = Resources(verbs)
        self.sub = Subresources(self.res)
        self.streams = Streams(proxy) if proxy is not None else None
        self.ports = PortForward(proxy) if proxy is not None else None

    async def core(self, request: web.Request) -> web.StreamResponse:
        return await self.dispatch(request, "", request.match_info["version"], request.match_info.get("tail", ""))

    async def grouped(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return await self.dispatch(request, m["group"], m["version"], m.get("tail", ""))

    async def dispatch(self, request: web.Request, group: str, version: str, tail: str) -> web.StreamResponse:
        segs = [s for s in tail.split("/")] if tail else []
        if not segs:
            if request.method != "GET":
                raise errors.MethodNotAllowed(f"the server does not allow this method on the requested resource")
            found = discovery.group_version(group, version)
            if found is None:
                raise not_found_path()
            return found
        t = parse(group, version, segs)
        handler = self.handler(request, t)
        if handler is None:
            raise errors.MethodNotAllowed(f"the server does not allow this method on the requested resource",
                                          kind=t.info.plural, name=t.name)
        return await handler(request, t)

    def handler(self, request: web.Request, t: Target):
        method, res, sub = request.method, self.res, self.sub
        if not t.name:
            return {"GET": (lambda r, t: watch(r, self.verbs, t)) if watching(request) else res.list,
                    "POST": res.create, "DELETE": res.delete_collection}.get(method)
        if t.sub == "scale":
            return {"GET": sub.get_scale, "PUT": sub.write_scale, "PATCH": sub.write_scale}.get(method)
        if t.sub == "eviction":
            return sub.eviction if method == "POST" else None
        if t.sub == "binding":
            return sub.binding if method == "POST" else None
        if t.sub == "token" and t.info.kind == "ServiceAccount":
            return sub.token if method == "POST" else None
        if t.sub in STREAMS:
            if self.streams is None:
                return None
            owner = self.ports if t.sub == "portforward" else self.streams
            return getattr(owner, t.sub) if method in STREAMS[t.sub] else None
        if t.sub:   # status
            return {"GET": res.get, "PUT": res.update, "PATCH": res.patch}.get(method)
        return {"GET": res.get, "PUT": res.update, "PATCH": res.patch, "DELETE": res.delete}.get(method)


@web.middleware
async def statuses(request: web.Request, handler) -> web.StreamResponse:
    """Every failure as a metav1.Status: ApiErrors as they are, aiohttp's
    own HTTP errors by code, anything else a logged 500."""
    try:
        return await handler(request)
    except errors.ApiError as exc:
        if isinstance(exc, errors.Unavailable):
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        return wire.error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        cls = {404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.RequestEntityTooLarge}.get(
            exc.status, errors.BadRequest)
        text = "the server could not find the requested resource" if exc.status == 404 else exc.reason
        return wire.error_response(cls(text))
    except Exception as exc:  # noqa: BLE001 - the one place internal errors become 500s
        log.exception("%s %s failed", request.method, request.path_qs)
        return wire.error_response(errors.ApiError(f"internal error: {type(exc).__name__}: {exc}"))


def make_app(verbs: Verbs, proxy=None, metrics=None, gate: Gate | None = None) -> web.Application:
    """The HTTP API's application. `gate` authenticates and authorizes
    (apiserver.auth); the default is the pre-TLS behaviour (everyone is
    system:unsecured, everything allowed)."""
    api = Api(verbs, proxy)
    audit, authenticate, authorize = (gate or Gate()).http_middlewares()
    app = web.Application(middlewares=[statuses, audit, authenticate,
                                       *limits.http_middlewares(getattr(verbs, "limiter", None)), authorize],
                          client_max_size=wire.MAX_BODY)
    app.add_routes(discovery.routes())
    if metrics is not None:
        app.add_routes(metrics_routes.routes(metrics))
    if getattr(verbs, "reviews", None) is not None:      # authorization/authentication reviews (create-only)
        app.add_routes(review_routes.routes(verbs))
    app.add_routes([web.get("/apis/{group}", discovery.api_group),
                    web.route("*", "/api/{version}", api.core),
                    web.route("*", "/api/{version}/{tail:.*}", api.core),
                    web.route("*", "/apis/{group}/{version}", api.grouped),
                    web.route("*", "/apis/{group}/{version}/{tail:.*}", api.grouped)])
    return app


async def serve(verbs: Verbs, listen: str, proxy=None, metrics=None, gate: Gate | None = None,
                ssl_context=None) -> web.AppRunner:
    """Bind and start serving on HOST:PORT (HTTPS with `ssl_context`); returns the runner
    to clean up. `proxy` (the apiserver's NodeProxy) serves pods' log/exec/attach/portforward,
    `metrics` the metrics.k8s.io API."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_app(verbs, proxy, metrics, gate), access_log=None, handle_signals=False,
                           shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port), reuse_address=True,
                       ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"kctl-apiserver: cannot listen on {listen} (HTTP): {exc}") from None
    log.info("serving the Kubernetes HTTP API on %s://%s", "https" if ssl_context else "http", listen)
    return runner
