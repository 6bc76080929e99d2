"""An HTTP request -> authorization Attributes, as Kubernetes'
apiserver/pkg/endpoints/request.RequestInfoFactory does it:

    /api/v1/namespaces/NS/pods/NAME/log     get pods/log "NAME" in NS
    /apis/apps/v1/deployments?watch=true    watch deployments (all namespaces)
    /api/v1/namespaces/NS                   the namespace NS itself (resource "namespaces")
    /version, /healthz, /openapi/v3, ...    non-resource: the lower-case method is the verb

Verbs: GET on a collection is `list` (`watch` with ?watch=true), on a name
`get`; POST `create`; PUT `update`; PATCH `patch`; DELETE on a name
`delete`, on a collection `deletecollection`. A `fieldSelector` of
`metadata.name=X` on a list or watch names X, as Kubernetes does, so a
grant on one name also allows watching it. Opening pods' exec, attach or
portforward needs `create` whatever the method (Kubernetes checks create
for WebSocket GETs as well).
"""
from __future__ import annotations

from urllib.parse import parse_qs

from apiserver.auth.authz import Attributes
from apiserver.auth.user import UserInfo

NAMESPACE_SUBRESOURCES = ("status", "finalize")
CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")
METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "GET": "get", "HEAD": "get",
                "DELETE": "delete"}


def selected_name(field_selector: str) -> str:
    """X of a `metadata.name=X` (or `==X`) term of a field selector, else ""."""
    for sel in (field_selector or "").split(","):
        key, eq, value = sel.partition("=")
        if eq and key.strip() == "metadata.name":
            return value.lstrip("=").strip()
    return ""


def attributes(user: UserInfo, method: str, path: str, query: str = "") -> Attributes:
    parts = [p for p in path.split("/") if p]
    q = parse_qs(query)
    verb = METHOD_VERBS.get(method.upper(), method.lower())
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(user, method.lower(), resource_request=False, path=path or "/")
    if not rest:                                        # /api/v1, /apis/apps/v1: discovery
        return Attributes(user, method.lower(), resource_request=False, path=path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        if len(rest) >= 3 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]                             # /namespaces/NS/RESOURCE...
        # else /namespaces/NS[/status|/finalize]: the namespace itself
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = "/".join(rest[2:]) if len(rest) > 2 else ""
    if not name:
        if verb == "get":
            verb = "watch" if q.get("watch", [""])[0].lower() in ("true", "1") else "list"
        elif verb == "delete":
            verb = "deletecollection"
        if verb in ("list", "watch"):
            name = selected_name(q.get("fieldSelector", [""])[0])
    if resource == "pods" and sub in CONNECT_SUBRESOURCES:
        verb = "create"       # a WebSocket GET opens a stream too: Kubernetes requires create
    return Attributes(user, verb, namespace=namespace, api_group=group, api_version=version,
                      resource=resource, subresource=sub, name=name)
