"""JSON on the wire: request bodies in, objects, lists, Tables and
metav1.Status out. Pure functions over the shared codec, no I/O except
reading a request body under the size limit.
"""
from __future__ import annotations

import json
import re

import yaml
from aiohttp import web
from google.protobuf import any_pb2
from google.protobuf.message import Message

from apiserver import limits
from apiserver.http import k8sproto
from machinery import codec, errors, kinds, safeyaml, tables

MAX_BODY = 3 * 1024 * 1024          # Kubernetes' limit on a request body (3 MiB)
JSON = "application/json"
YAML = "application/yaml"
TABLE_ACCEPT = re.compile(r"as=Table", re.I)
META_V1 = "meta.k8s.io/v1"
VALIDATION_MODES = ("Strict", "Warn", "Ignore")


# ---------------------------------------------------------------- Status

def status_of(err: errors.ApiError) -> dict:
    """metav1.Status for an ApiError: the same reason, code and causes the
    gRPC error carries (err.to_status())."""
    st = err.to_status()
    details = {}
    if st.details.name:
        details["name"] = st.details.name
    if st.details.group:
        details["group"] = st.details.group
    if st.details.kind:
        details["kind"] = st.details.kind
    if st.details.causes:
        details["causes"] = [{k: v for k, v in (("reason", c.reason), ("message", c.message),
                                                ("field", c.field)) if v} for c in st.details.causes]
    if st.details.retry_after_seconds:
        details["retryAfterSeconds"] = st.details.retry_after_seconds
    out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": st.message, "reason": st.reason, "code": st.code}
    if details:
        out["details"] = details
    return out


def error_response(err: errors.ApiError) -> web.Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return web.json_response(status_of(err), status=err.http_code, headers=headers, dumps=dumps)


def success_status(details: dict | None = None) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            **({"details": details} if details else {})}


def dumps(data) -> str:
    return json.dumps(data, separators=(",", ":"))


def respond(data, status: int = 200, warnings: list[str] | None = None,
            content_type: str = JSON) -> web.Response:
    resp = web.Response(text=dumps(data), status=status, content_type=content_type.split(";")[0])
    if ";" in content_type:
        resp.headers["Content-Type"] = content_type
    for w in limits.capped_warnings(warnings or ()):
        text = w.replace("\\", "\\\\").replace('"', '\\"')
        resp.headers.add("Warning", f'299 - "{text}"')
    return resp


# ----------------------------------------------------------------- bodies

async def read_body(request: web.Request) -> bytes:
    """The request body, refused with 413 above MAX_BODY (before reading it
    all when Content-Length says so)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large()
    chunks, size = [], 0
    while size <= MAX_BODY:              # read(n) returns what has arrived: loop to the end
        chunk = await request.content.read(MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BODY:
        raise too_large()
    body = b"".join(chunks)
    request["kctl.body"] = body           # for the audit log's requestObject (apiserver.audit.http_objects)
    return body


def too_large() -> errors.RequestEntityTooLarge:
    return errors.RequestEntityTooLarge(f"the request body is larger than the limit of {MAX_BODY} bytes")


def parse_document(body: bytes, content_type: str) -> dict:
    """A JSON (or YAML) request body as a dict; 415 for other media types, 400 if
    malformed. The protobuf bodies of kubectl's typed calls are read by k8sproto."""
    mt = (content_type or JSON).split(";")[0].strip().lower()
    if mt == k8sproto.MEDIA_TYPE:
        return k8sproto.decode(body)
    if mt not in (JSON, YAML, "application/x-yaml", "text/yaml", "*/*", ""):
        raise errors.UnsupportedMediaType(
            f'the body of the request was in an unknown format - accepted media types include: '
            f'{JSON}, {YAML}')
    try:
        data = safeyaml.load_json(body) if mt in (JSON, "*/*", "") else safeyaml.load_one(body)
    except ValueError as exc:             # safeyaml's DecodeErrors: syntax, depth, aliases, UTF-8
        raise errors.BadRequest(f"the body of the request could not be decoded: {exc}") from None
    if not isinstance(data, dict):
        raise errors.BadRequest("the body of the request must be a JSON object")
    return data


def _drop(data, path: str) -> None:
    """Remove the field at a codec issue path (`spec.containers[0].foo`)."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    cur = data
    for p in parts[:-1]:
        cur = cur[int(p[1:-1])] if p.startswith("[") else cur.get(p)
        if cur is None:
            return
    last = parts[-1] if parts else ""
    if isinstance(cur, dict):
        cur.pop(last, None)


def decode(data: dict, info: kinds.KindInfo, validation: str = "Strict") -> tuple[Message, list[str]]:
    """A request object: its kind must be the URL's; unknown fields refused
    (Strict, 400), reported in Warning headers (Warn) or dropped (Ignore);
    wrong types are always 400, naming every field."""
    data.setdefault("apiVersion", info.api_version)
    data.setdefault("kind", info.kind)
    if data.get("kind") != info.kind or data.get("apiVersion") != info.api_version:
        raise errors.BadRequest(f"the API version in the data ({data.get('apiVersion')}) does not match the "
                                f"expected API version ({info.api_version})"
                                if data.get("kind") == info.kind else
                                f"the kind in the data ({data.get('kind')}) does not match the expected "
                                f"kind ({info.kind})")
    warnings: list[str] = []
    try:
        return codec.from_dict(data), warnings
    except codec.DecodeError as exc:
        issues = getattr(exc, "issues", [])
        unknown = [i.field for i in issues if i.message == "unknown field"]
        if validation == "Strict" or not unknown or len(unknown) != len(issues):
            raise errors.BadRequest(str(exc), kind=info.plural, group=info.group,
                                    name=str((data.get("metadata") or {}).get("name", "")),
                                    causes=[errors.FieldError("Invalid", i.field, detail=i.message).to_cause()
                                            for i in issues[:errors.MAX_CAUSES]]) from None
    for path in unknown:
        _drop(data, path)
        if validation == "Warn":
            warnings.append(f'unknown field "{path}"')
    try:
        return codec.from_dict(data), warnings
    except codec.DecodeError as exc:
        raise errors.BadRequest(str(exc)) from None


# ---------------------------------------------------------------- objects

def any_to_message(a: any_pb2.Any) -> Message:
    info = kinds.BY_TYPE_URL[a.type_url]
    obj = info.message()
    a.Unpack(obj)
    return obj


def to_json(obj: Message) -> dict:
    return codec.to_dict(obj)


def list_json(info: kinds.KindInfo, items: list[Message], rv: str, cont: str = "", encode=to_json) -> dict:
    meta = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": f"{info.kind}List", "apiVersion": info.api_version, "metadata": meta,
            "items": [encode(o) for o in items]}


# ----------------------------------------------------------------- Tables

def wants_table(request: web.Request) -> bool:
    return bool(TABLE_ACCEPT.search(request.headers.get("Accept", "")))


def _partial(obj: Message) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": META_V1, "metadata": to_json(obj)["metadata"]}


def table(info: kinds.KindInfo, objs: list[Message], include: str = "Metadata", rv: str = "",
          cont: str = "", columns: bool = True, encode=to_json) -> dict:
    """metav1.Table with the shared column definitions (machinery.tables)."""
    printer = tables.PRINTERS[info.kind]
    rows = []
    for o in objs:
        row = {"cells": printer.cells(o, None)}
        if include == "Object":
            row["object"] = encode(o)
        elif include != "None":
            row["object"] = _partial(o)
        rows.append(row)
    meta = {"resourceVersion": rv} if rv else {}
    if cont:
        meta["continue"] = cont
    out = {"kind": "Table", "apiVersion": META_V1, "metadata": meta, "rows": rows}
    if columns:
        out["columnDefinitions"] = [
            {"name": c.name, "type": c.type, "format": "name" if i == 0 and c.name == "NAME" else c.format,
             "description": tables.column_description(c), "priority": c.priority}
            for i, c in enumerate(printer.columns)]
    return out


TABLE_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
