"""The OpenAPI documents the Kubernetes HTTP API serves, for kctl's kinds.

Entry points (pure; the HTTP layer only serves what they return):

* `v3_index()` – the `/openapi/v3` discovery document,
  `{"paths": {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=…"}}}`;
* `v3_document(group, version)` – the OpenAPI 3.0 document of one group
  version (`/openapi/v3/apis/apps/v1`), None for a group version kctl does
  not serve; `v3_document_bytes` is its JSON as served and `v3_etag` the
  hash in the index's URL and the document's ETag;
* `v2_document()` – the Swagger 2.0 document (`/openapi/v2`, JSON), and
  `v2_document_bytes()` its JSON as served.

How kubectl uses them (kubectl 1.32, k8s.io/client-go/openapi3 and
k8s.io/cli-runtime): `apply` looks in the group version's v3 document for
a PATCH operation whose `x-kubernetes-group-version-kind` is the object's
kind and whose parameters include `fieldValidation`; finding it, it sends
`fieldValidation=Strict` and leaves validation to the server. When that
operation accepts `application/strategic-merge-patch+json`, `apply` builds
its patch from the schema with that kind's `x-kubernetes-group-version-kind`
and the `x-kubernetes-patch-*` extensions of its fields. `explain` finds the
kind through the GET/POST/… operations on the resource's paths and walks the
schema's `$ref`s, printing `description`s.

The hash is what the Kubernetes apiserver (k8s.io/kube-openapi handler3)
uses: the upper-case hex SHA-512 of the document's JSON. Clients cache a
document under its URL, so the hash changes whenever the document does;
the server answers a request whose `hash` is stale with a 301 to the
current URL. Schemas come from machinery/openapi_schemas.py; this module
adds the paths and wraps both into documents.
"""
from __future__ import annotations

import functools
import hashlib
import json

from machinery import kinds
from machinery.openapi_meta import DELETE_OPTIONS, PATCH, STATUS
from machinery.openapi_schemas import (all_schemas, closure, gvk, kind_schema_name,
                                       list_schema_name, ref, refs, to_v2)

INFO = {"title": "Kubernetes", "version": "v1.32.0"}
PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
               "application/merge-patch+json", "application/strategic-merge-patch+json")
JSON = "application/json"
WATCH = "application/json;stream=watch"


def _query(name: str, description: str, kind: str = "string") -> dict:
    schema = {"type": kind, "uniqueItems": True}
    return {"name": name, "in": "query", "description": description, "schema": schema}


_P = {
    "dryRun": _query("dryRun", "When present, indicates that modifications should not be "
                     "persisted. An invalid or unrecognized dryRun directive will result in an "
                     "error response and no further processing of the request. Valid values "
                     "are: - All: all dry run stages will be processed"),
    "fieldManager": _query("fieldManager", "fieldManager is a name associated with the actor or "
                           "entity that is making these changes. The value must be less than or "
                           "128 characters long, and only contain printable characters."),
    "fieldValidation": _query(
        "fieldValidation", "fieldValidation instructs the server on how to handle objects in the "
        "request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - "
        "Ignore: ignores unknown fields; - Warn: sends a warning via the standard warning "
        "response header for each unknown field; - Strict: fails the request with a "
        "BadRequest error if any unknown fields would be dropped from the object."),
    "force": _query("force", "Force is going to \"force\" Apply requests. It means user will "
                    "re-acquire conflicting fields owned by other people. Force flag must be "
                    "unset for non-apply patch requests.", "boolean"),
    "labelSelector": _query("labelSelector", "A selector to restrict the list of returned "
                            "objects by their labels. Defaults to everything."),
    "fieldSelector": _query("fieldSelector", "A selector to restrict the list of returned "
                            "objects by their fields. Defaults to everything."),
    "limit": _query("limit", "limit is a maximum number of responses to return for a list "
                    "call. If more items exist, the server will set the `continue` field on "
                    "the list metadata to a value that can be used with the same initial query "
                    "to retrieve the next set of results.", "integer"),
    "continue": _query("continue", "The continue option should be set when retrieving more "
                       "results from the server, with the value the server returned."),
    "resourceVersion": _query("resourceVersion", "resourceVersion sets a constraint on what "
                              "resource versions a request may be served from."),
    "resourceVersionMatch": _query("resourceVersionMatch", "resourceVersionMatch determines "
                                   "how resourceVersion is applied to list calls."),
    "watch": _query("watch", "Watch for changes to the described resources and return them as "
                    "a stream of add, update, and remove notifications. Specify resourceVersion.",
                    "boolean"),
    "allowWatchBookmarks": _query("allowWatchBookmarks", "allowWatchBookmarks requests watch "
                                  "events with type \"BOOKMARK\".", "boolean"),
    "timeoutSeconds": _query("timeoutSeconds", "Timeout for the list/watch call. This limits "
                             "the duration of the call, regardless of any activity or "
                             "inactivity.", "integer"),
    "gracePeriodSeconds": _query("gracePeriodSeconds", "The duration in seconds before the "
                                 "object should be deleted. The value zero indicates delete "
                                 "immediately.", "integer"),
    "propagationPolicy": _query("propagationPolicy", "Whether and how garbage collection will "
                                "be performed: 'Orphan', 'Background' or 'Foreground'."),
}
_LIST = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
         "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "watch")
_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_DELETE = ("dryRun", "gracePeriodSeconds", "propagationPolicy")


def _path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "description": description, "required": True,
            "schema": {"type": "string", "uniqueItems": True}}


def _content(schema_name: str, types=(JSON,)) -> dict:
    return {t: {"schema": ref(schema_name)} for t in types}


def _op(info, action: str, op_id: str, description: str, params, response: str,
        request: str | None = None, codes=("200",), request_types=(JSON,),
        response_types=(JSON,)) -> dict:
    op = {"operationId": op_id, "description": description,
          "tags": [f"{info.group.split('.')[0] or 'core'}_{info.version}"],
          "parameters": [_P[p] for p in params],
          "responses": {**{c: {"description": _STATUS_TEXT[c],
                               "content": _content(response, response_types)} for c in codes},
                        "401": {"description": "Unauthorized"}},
          "x-kubernetes-action": action,
          "x-kubernetes-group-version-kind": gvk(info)}
    if request is not None:
        op["requestBody"] = {"content": _content(request, request_types), "required": True}
    return op


_STATUS_TEXT = {"200": "OK", "201": "Created", "202": "Accepted"}


def _op_id(verb: str, info, suffix: str = "", namespaced: bool | None = None,
           infix: str = "") -> str:
    """Kubernetes' operation ids: listCoreV1NamespacedPod, deleteAppsV1CollectionNamespacedDeployment."""
    group = (info.group.split(".")[0] or "core").capitalize()
    ns = "Namespaced" if (info.namespaced if namespaced is None else namespaced) else ""
    return f"{verb}{group}{info.version.capitalize()}{infix}{ns}{info.kind}{suffix}"


def kind_paths(info: kinds.KindInfo) -> dict[str, dict]:
    """The path items of one kind: collection, object, status and (for
    namespaced kinds) the all-namespaces list, with their operations."""
    prefix = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    ns = "/namespaces/{namespace}" if info.namespaced else ""
    collection = f"{prefix}{ns}/{info.plural}"
    kind, lst = kind_schema_name(info), list_schema_name(info)
    common = [_path_param("namespace", "object name and auth scope, such as for teams and "
                          "projects")] if info.namespaced else []
    named = [_path_param("name", f"name of the {info.kind}")] + common
    paths = {
        collection: {
            **({"parameters": common} if common else {}),
            "get": _op(info, "list", _op_id("list", info), f"list or watch objects of kind "
                       f"{info.kind}", _LIST, lst, response_types=(JSON, WATCH)),
            "post": _op(info, "post", _op_id("create", info), f"create a {info.kind}", _WRITE,
                        kind, kind, ("200", "201", "202")),
            "delete": _op(info, "deletecollection", _op_id("delete", info, infix="Collection"),
                f"delete collection of {info.kind}", _LIST + _DELETE, STATUS, DELETE_OPTIONS),
        },
        collection + "/{name}": {
            "parameters": named,
            "get": _op(info, "get", _op_id("read", info), f"read the specified {info.kind}",
                       (), kind),
            "put": _op(info, "put", _op_id("replace", info), f"replace the specified "
                       f"{info.kind}", _WRITE, kind, kind, ("200", "201")),
            "patch": _op(info, "patch", _op_id("patch", info), f"partially update the "
                         f"specified {info.kind}", _WRITE + ("force",), kind, PATCH,
                         ("200", "201"), request_types=PATCH_TYPES),
            "delete": _op(info, "delete", _op_id("delete", info), f"delete a {info.kind}",
                          _DELETE, kind, DELETE_OPTIONS, ("200", "202")),
        },
    }
    if info.has_status:
        paths[collection + "/{name}/status"] = {
            "parameters": named,
            "get": _op(info, "get", _op_id("read", info, "Status"),
                       f"read status of the specified {info.kind}", (), kind),
            "put": _op(info, "put", _op_id("replace", info, "Status"),
                       f"replace status of the specified {info.kind}", _WRITE, kind, kind,
                       ("200", "201")),
            "patch": _op(info, "patch", _op_id("patch", info, "Status"),
                         f"partially update status of the specified {info.kind}",
                         _WRITE + ("force",), kind, PATCH, ("200", "201"),
                         request_types=PATCH_TYPES),
        }
    if info.namespaced:
        paths[f"{prefix}/{info.plural}"] = {
            "get": _op(info, "list", _op_id("list", info, "ForAllNamespaces", False),
                       f"list or watch objects of kind {info.kind}", _LIST, lst,
                       response_types=(JSON, WATCH)),
        }
    return paths


def group_versions() -> list[tuple[str, str]]:
    """Every (group, version) kctl serves, core first."""
    return sorted({(k.group, k.version) for k in _served()})


def _served() -> tuple[kinds.KindInfo, ...]:
    return kinds.KINDS + kinds.OLDER_VERSIONS


def gv_path(group: str, version: str) -> str:
    """The index key of a group version: `api/v1`, `apis/apps/v1`."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _paths(infos) -> dict[str, dict]:
    paths: dict[str, dict] = {}
    for info in infos:
        paths.update(kind_paths(info))
    return dict(sorted(paths.items()))


@functools.cache
def v3_document_bytes(group: str, version: str) -> bytes | None:
    """The v3 document of a group version as served (compact JSON, sorted keys)."""
    infos = [k for k in _served() if (k.group, k.version) == (group, version)]
    if not infos:
        return None
    paths = _paths(infos)
    roots = refs(paths) | {kind_schema_name(i) for i in infos}
    doc = {"openapi": "3.0.0", "info": INFO, "paths": paths,
           "components": {"schemas": closure(roots, all_schemas())}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def v3_document(group: str, version: str) -> dict | None:
    """The OpenAPI 3.0 document of one group version (`""`/`"v1"` is the core API)."""
    data = v3_document_bytes(group, version)
    return None if data is None else json.loads(data)


def v3_etag(group: str, version: str) -> str | None:
    """The hash of a group version's document, as in its index URL and ETag."""
    data = v3_document_bytes(group, version)
    return None if data is None else hashlib.sha512(data).hexdigest().upper()


def v3_index() -> dict:
    """The `/openapi/v3` document: every served group version and its document's URL."""
    return {"paths": {gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{gv_path(g, v)}"
                                                           f"?hash={v3_etag(g, v)}"}
                      for g, v in group_versions()}}


def _op_to_v2(op: dict) -> dict:
    out = {k: v for k, v in op.items() if k not in ("parameters", "requestBody", "responses")}
    params = [_param_to_v2(p) for p in op.get("parameters", [])]
    if "requestBody" in op:
        content = op["requestBody"]["content"]
        out["consumes"] = list(content)
        params.insert(0, {"name": "body", "in": "body", "required": True,
                          "schema": to_v2(next(iter(content.values()))["schema"])})
    out["parameters"] = params
    produces, responses = [], {}
    for code, response in op["responses"].items():
        responses[code] = {"description": response["description"]}
        for media, body in response.get("content", {}).items():
            responses[code]["schema"] = to_v2(body["schema"])
            if media not in produces:
                produces.append(media)
    out["produces"] = produces
    out["responses"] = responses
    out["schemes"] = ["https"]
    return out


def _param_to_v2(p: dict) -> dict:
    return {**{k: v for k, v in p.items() if k != "schema"}, **p["schema"]}


@functools.cache
def v2_document_bytes() -> bytes:
    """The v2 document as served (compact JSON, sorted keys)."""
    paths = {}
    for path, item in _paths(_served()).items():
        paths[path] = {method: ([_param_to_v2(p) for p in value] if method == "parameters"
                                else _op_to_v2(value)) for method, value in item.items()}
    doc = {"swagger": "2.0", "info": INFO, "paths": paths,
           "definitions": to_v2(all_schemas())}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def v2_document() -> dict:
    """The Swagger 2.0 document of every kind (`/openapi/v2`), definitions named as in v3."""
    return json.loads(v2_document_bytes())
