"""Discovery, version, health and OpenAPI: what kubectl reads before it
does anything (design §7).

`/api`, `/apis` answer aggregated discovery
(apidiscovery.k8s.io/v2 APIGroupDiscoveryList) when the client's Accept
asks for it first, as kubectl does, and the legacy APIVersions /
APIGroupList otherwise; `/api/v1`, `/apis/<group>/<version>` list the
resources (APIResourceList) with their verbs, short names, singular names,
the `all` category and subresources. Everything is derived from
machinery.kinds (and conversion.py's older versions), so a kind added there
is discovered without a change here; the create-only review APIs
(authorization.k8s.io, authentication.k8s.io: apiserver/auth/reviews.py)
are listed from their own table, with the verb `create` only, as
Kubernetes lists them.
"""
from __future__ import annotations

import platform

from aiohttp import web

from apiserver.auth import reviews
from apiserver.http import conversion, metrics_routes, wire
from machinery import errors, kinds, openapi

KUBE_VERSION = ("1", "32", "v1.32.0")   # the Kubernetes API kctl's HTTP API emulates
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# Kubernetes' "all" category
IN_ALL = {"Pod", "Service", "ReplicaSet", "Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob"}
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def subresources(info: kinds.KindInfo) -> list[tuple[str, str, str, str, list[str]]]:
    """(name, group, version, kind, verbs) of each subresource of a kind."""
    out = []
    if info.has_status:
        out.append(("status", info.group, info.version, info.kind, ["get", "patch", "update"]))
    if info.kind == "CertificateSigningRequest":
        out.append(("approval", info.group, info.version, info.kind, ["get", "patch", "update"]))
    if info.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        out.append(("scale", "autoscaling", "v1", "Scale", ["get", "patch", "update"]))
    if info.kind == "ServiceAccount":
        out.append(("token", "authentication.k8s.io", "v1", "TokenRequest", ["create"]))
    if info.kind == "Pod":
        out.append(("binding", "", "v1", "Binding", ["create"]))
        out.append(("eviction", "policy", "v1", "Eviction", ["create"]))
        out.append(("log", "", "v1", "Pod", ["get"]))
        for sub, kind in (("exec", "PodExecOptions"), ("attach", "PodAttachOptions"),
                          ("portforward", "PodPortForwardOptions")):
            out.append((sub, "", "v1", kind, ["create", "get"]))
    return out


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def served() -> list[kinds.KindInfo]:
    """Every kind in every version served: the stored ones, then older versions (conversion.py)."""
    return list(kinds.KINDS) + [c.served for c in conversion.ALTERNATES]


def groups() -> dict[str, list[str]]:
    """Versions by group, the preferred (stored) version first."""
    out: dict[str, list[str]] = {}
    for group, version in [(i.group, i.version) for i in served()] + [(r.group, "v1") for r in reviews.ALL]:
        versions = out.setdefault(group, [])
        if version not in versions:
            versions.append(version)
    return out


def _reviews(group: str, version: str) -> list[reviews.Review]:
    return sorted((r for r in reviews.ALL if (r.group, "v1") == (group, version)), key=lambda r: r.plural)


def _review_resource(r: reviews.Review) -> dict:
    return {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ["create"]}


def _aggregated_review(r: reviews.Review) -> dict:
    return {"resource": r.plural, "singularResource": r.singular,
            "responseKind": {"group": r.group, "version": "v1", "kind": r.kind},
            "scope": "Namespaced" if r.namespaced else "Cluster", "verbs": ["create"]}


def resource_list(group: str, version: str) -> dict | None:
    infos = [i for i in served() if (i.group, i.version) == (group, version)]
    if not infos and not _reviews(group, version):
        return None
    resources = [_review_resource(r) for r in _reviews(group, version)]
    for info in infos:
        entry = {"name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
                 "kind": info.kind, "verbs": VERBS}
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.kind in IN_ALL:
            entry["categories"] = ["all"]
        resources.append(entry)
        for sub, g, v, kind, verbs in subresources(info):
            s = {"name": f"{info.plural}/{sub}", "singularName": "", "namespaced": info.namespaced,
                 "kind": kind, "verbs": verbs}
            if (g, v) != (info.group, info.version):
                s["group"], s["version"] = g, v
            resources.append(s)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": _gv(group, version),
            "resources": resources}


def _aggregated_resource(info: kinds.KindInfo) -> dict:
    r = {"resource": info.plural, "singularResource": info.singular,
         "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
         "scope": "Namespaced" if info.namespaced else "Cluster", "verbs": VERBS}
    if info.short_names:
        r["shortNames"] = list(info.short_names)
    if info.kind in IN_ALL:
        r["categories"] = ["all"]
    subs = [{"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs}
            for sub, g, v, kind, verbs in subresources(info)]
    if subs:
        r["subresources"] = subs
    return r


def aggregated(core: bool) -> dict:
    items = []
    for group, versions in groups().items():
        if (group == "") != core:
            continue
        items.append({"metadata": {"name": group},
                      "versions": [{"version": v, "freshness": "Current",
                                    "resources": [_aggregated_resource(i) for i in served()
                                                  if (i.group, i.version) == (group, v)]
                                    + [_aggregated_review(r) for r in _reviews(group, v)]}
                                   for v in versions]})
    if not core:
        items.append(metrics_routes.aggregated_item())
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def _wants_aggregated(request: web.Request) -> bool:
    first = request.headers.get("Accept", "").split(",")[0]
    return "as=APIGroupDiscoveryList" in first and "v=v2" in first


async def api(request: web.Request) -> web.Response:
    if _wants_aggregated(request):
        return wire.respond(aggregated(True), content_type=AGGREGATED)
    host = request.host or ""
    return wire.respond({"kind": "APIVersions", "versions": groups().get("", []),
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})


async def apis(request: web.Request) -> web.Response:
    if _wants_aggregated(request):
        return wire.respond(aggregated(False), content_type=AGGREGATED)
    out = []
    for group, versions in groups().items():
        if not group:
            continue
        gvs = [{"groupVersion": _gv(group, v), "version": v} for v in versions]
        out.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    out.append({k: v for k, v in metrics_routes.api_group().items() if k not in ("kind", "apiVersion")})
    return wire.respond({"kind": "APIGroupList", "apiVersion": "v1", "groups": out})


def group_version(group: str, version: str) -> web.Response | None:
    body = resource_list(group, version)
    return None if body is None else wire.respond(body)


async def api_group(request: web.Request) -> web.Response:
    """GET /apis/<group>: APIGroup."""
    group = request.match_info["group"]
    versions = groups().get(group)
    if not versions or not group:
        raise web.HTTPNotFound()
    gvs = [{"groupVersion": _gv(group, v), "version": v} for v in versions]
    return wire.respond({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs,
                         "preferredVersion": gvs[0]})


async def version(request: web.Request) -> web.Response:
    major, minor, git = KUBE_VERSION
    return wire.respond({"major": major, "minor": minor, "gitVersion": git, "gitCommit": "kctl",
                         "gitTreeState": "clean", "buildDate": "2026-12-01T00:00:00Z",
                         "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
                         "platform": f"{platform.system().lower()}/{platform.machine()}"})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def openapi_v3_index(request: web.Request) -> web.Response:
    return wire.respond(openapi.v3_index())


async def openapi_v3(request: web.Request) -> web.Response:
    tail = request.match_info["tail"].split("/")
    group, version = ("", tail[1]) if tail[0] == "api" and len(tail) == 2 else (
        (tail[1], tail[2]) if tail[0] == "apis" and len(tail) == 3 else (None, None))
    data = openapi.v3_document_bytes(group, version) if version else None
    if data is None:
        raise web.HTTPNotFound()
    etag = openapi.v3_etag(group, version)
    want = request.query.get("hash")
    if want and want != etag:
        raise web.HTTPMovedPermanently(f"{request.path}?hash={etag}")
    headers = {"ETag": f'"{etag}"'}
    if want:
        headers["Cache-Control"] = "public, immutable"
    return web.Response(body=data, content_type="application/json", headers=headers)


async def openapi_v2(request: web.Request) -> web.Response:
    """Swagger 2.0 as JSON. kubectl asks for it only as gnostic protobuf, when
    a manifest's kind is missing from the v3 documents (a kind kctl does not
    serve); kctl does not serve that encoding, and a 404 gets kubectl to say
    "failed to download openapi: the server could not find the requested
    resource" rather than fail to parse JSON as protobuf."""
    accept = request.headers.get("Accept", "")
    if accept and "json" not in accept and "*/*" not in accept:
        raise errors.NotFound("the server could not find the requested resource")
    return web.Response(body=openapi.v2_document_bytes(), content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [web.get("/version", version), web.get("/healthz", health), web.get("/livez", health),
            web.get("/readyz", health), web.get("/api", api), web.get("/apis", apis),
            web.get("/openapi/v3", openapi_v3_index), web.get("/openapi/v3/{tail:.+}", openapi_v3),
            web.get("/openapi/v2", openapi_v2)]
