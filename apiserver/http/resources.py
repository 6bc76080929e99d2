"""The resource paths: `/api/v1/...` and `/apis/<group>/<version>/...`,
parsed into (kind, namespace, name, subresource) and translated into calls
on verbs.Verbs — get, list, watch, create, update, patch, delete and delete
collection. Kubernetes' query parameters map onto the shared verbs:
labelSelector/fieldSelector/limit/continue on lists, dryRun=All on writes,
fieldValidation (Strict|Warn|Ignore) on decoding, propagationPolicy,
gracePeriodSeconds and preconditions (query or DeleteOptions body) on
deletes. Subresources (status, scale, binding, eviction) are in
subresources.py, watch in watch.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web
from google.protobuf.message import Message

from apiserver import fieldmanager
from apiserver.fieldmanager import FieldManager, now_rfc3339
from apiserver.http import conversion, discovery, wire
from apiserver.http.conversion import Conversion
from apiserver.verbs import Verbs, parse_rv
from machinery import errors, kinds
from machinery import patch as patches
from machinery.patch import yamlbody
from machinery.pb import api_pb2

SUBRESOURCE_OF_NAMESPACE = ("status", "finalize")
PATCH_RETRIES = 8


@dataclass
class Target:
    info: kinds.KindInfo                 # the stored kind
    namespace: str
    name: str = ""
    sub: str = ""
    conv: Conversion | None = None       # the URL named another version of it (conversion.py)

    @property
    def ns(self) -> str:
        return (self.namespace or "default") if self.info.namespaced else ""

    @property
    def served(self) -> kinds.KindInfo:
        return self.conv.served if self.conv else self.info

    def encode(self, obj: Message) -> dict:
        """obj as JSON in the URL's version."""
        data = wire.to_json(obj)
        return self.conv.to_external(data) if self.conv else data

    def internal(self, data: dict, validation: str) -> tuple[dict, list[str]]:
        """A body in the URL's version as the stored version, and the warnings
        for the fields only the stored version has (Strict: 400)."""
        if self.conv is None:
            return data, []
        data, unknown = self.conv.to_internal(data)
        if unknown and validation == "Strict":
            raise errors.BadRequest(f'{self.info.kind} in version "{self.conv.version}" cannot be handled as a '
                                    f"{self.info.kind}: strict decoding error: "
                                    + ", ".join(f'unknown field "{u}"' for u in unknown),
                                    causes=[errors.FieldError("Invalid", u, detail="unknown field").to_cause()
                                            for u in unknown])
        return data, [f'unknown field "{u}"' for u in unknown] if validation == "Warn" else []


def not_found_path() -> errors.NotFound:
    return errors.NotFound("the server could not find the requested resource")


def parse(group: str, version: str, segs: list[str]) -> Target:
    if segs[0] == "namespaces" and len(segs) >= 3 and not (len(segs) == 3 and segs[2] in SUBRESOURCE_OF_NAMESPACE):
        ns, rest = segs[1], segs[2:]
    else:
        ns, rest = "", segs
    if len(rest) > 3 or not all(rest):
        raise not_found_path()
    info = next((i for i in kinds.KINDS if (i.group, i.version, i.plural) == (group, version, rest[0])), None)
    conv = conversion.find(group, version, rest[0]) if info is None else None
    info = conv.stored if conv else info
    if info is None or (ns and not info.namespaced):
        raise not_found_path()
    sub = rest[2] if len(rest) == 3 else ""
    if sub and sub not in [s[0] for s in discovery.subresources(info)]:
        raise not_found_path()
    return Target(info, ns, rest[1] if len(rest) > 1 else "", sub, conv)


def dry_run(request: web.Request, body_values=()) -> bool:
    values = request.query.getall("dryRun", []) + list(body_values or ())
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'Invalid dryRun value "{v}": supported values: "All"',
                                    causes=[errors.not_supported("dryRun", v, ["All"]).to_cause()])
    return bool(values)


def field_validation(request: web.Request) -> str:
    v = request.query.get("fieldValidation") or "Warn"
    if v not in wire.VALIDATION_MODES:
        raise errors.BadRequest(f'fieldValidation "{v}" is invalid: must be one of Ignore, Warn or Strict')
    return v


def int_param(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise errors.BadRequest(f"invalid {name} {text!r}: must be an integer") from None


def manager(request: web.Request, options_kind: str = "UpdateOptions") -> str:
    """The field manager: ?fieldManager, else the User-Agent's program name (Kubernetes' default)."""
    return fieldmanager.named(request.query.get("fieldManager", ""), request.headers.get("User-Agent", ""),
                              options_kind)


class Resources:
    def __init__(self, verbs: Verbs):
        self.verbs = verbs

    # ---------------------------------------------------------------- reads
    async def read(self, t: Target) -> Message:
        async with self.verbs.measured("get", t.info):
            return wire.any_to_message(await self.verbs.get(t.info, t.ns, t.name))

    def one(self, request: web.Request, t: Target, obj: Message, status: int = 200,
            warnings=None) -> web.Response:
        if wire.wants_table(request):
            include = request.query.get("includeObject", "Metadata")
            return wire.respond(wire.table(t.info, [obj], include, encode=t.encode), status, warnings,
                                wire.TABLE_TYPE)
        return wire.respond(t.encode(obj), status, warnings)

    async def get(self, request: web.Request, t: Target) -> web.Response:
        return self.one(request, t, await self.read(t))

    async def list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        limit = int_param(request, "limit") or 0
        rv_match = q.get("resourceVersionMatch", "")
        if rv_match and rv_match not in ("Exact", "NotOlderThan"):
            raise errors.BadRequest(f'resourceVersionMatch "{rv_match}" is invalid: supported values: '
                                    '"Exact", "NotOlderThan"')
        if rv_match and not q.get("resourceVersion"):
            raise errors.BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
        # Exact: the state at that revision (410 once compacted); otherwise the latest,
        # which is never older than a given resourceVersion (NotOlderThan, "0": any).
        exact = parse_rv(q.get("resourceVersion", "")) if rv_match == "Exact" else 0
        async with self.verbs.measured("list", t.info):
            resp = await self.verbs.list(t.info, t.namespace, q.get("labelSelector", ""),
                                         q.get("fieldSelector", ""), limit, q.get("continue", ""), exact)
        objs = [wire.any_to_message(a) for a in resp.items]
        if wire.wants_table(request):
            body = wire.table(t.info, objs, q.get("includeObject", "Metadata"), resp.resource_version,
                              resp.continue_token, encode=t.encode)
            return wire.respond(body, content_type=wire.TABLE_TYPE)
        return wire.respond(wire.list_json(t.served, objs, resp.resource_version, resp.continue_token,
                                           t.encode))

    # --------------------------------------------------------------- writes
    async def decode(self, request: web.Request, t: Target) -> tuple[Message, list[str]]:
        body = await wire.read_body(request)
        data = wire.parse_document(body, request.headers.get("Content-Type", wire.JSON))
        data, dropped = t.internal(data, field_validation(request))
        obj, warnings = wire.decode(data, t.info, field_validation(request))
        warnings = dropped + warnings
        if t.info.namespaced:
            if obj.metadata.namespace and t.namespace and obj.metadata.namespace != t.namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace "
                                        "sent on the request")
            obj.metadata.namespace = t.namespace or obj.metadata.namespace
        return obj, warnings

    @staticmethod
    def field_manager(request: web.Request, t: Target, options_kind: str = "UpdateOptions") -> FieldManager:
        """Who this write is recorded as in managedFields (the Store tracks it)."""
        return FieldManager(manager(request, options_kind), t.sub)

    async def create(self, request: web.Request, t: Target) -> web.Response:
        obj, warnings = await self.decode(request, t)
        dry, who = dry_run(request), self.field_manager(request, t, "CreateOptions")
        async with self.verbs.measured("create", t.info):
            out, more = await self.verbs.create(obj, dry_run=dry, manager=who)
        return self.one(request, t, out, 201, warnings + list(more))

    async def update(self, request: web.Request, t: Target) -> web.Response:
        obj, warnings = await self.decode(request, t)
        if obj.metadata.name != t.name:
            raise errors.BadRequest("the name of the object "
                                    f"({obj.metadata.name}) does not match the name on the URL ({t.name})")
        return await self.write(request, t, obj, warnings, manager=self.field_manager(request, t))

    async def write(self, request, t: Target, obj: Message, warnings=(), dry=None,
                    manager: FieldManager | None = None) -> web.Response:
        status = t.sub in ("status", "approval")     # a CSR's approval is a status write too
        dry = dry_run(request) if dry is None else dry
        async with self.verbs.measured("update_status" if status else "update", t.info):
            out, more = await self.verbs.update(obj, status=status, dry_run=dry, subresource=t.sub,
                                                manager=manager)
        return self.one(request, t, out, 200, list(warnings) + list(more))

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        body = await wire.read_body(request)
        ctype = request.headers.get("Content-Type", "")
        if patches.media_type(ctype) not in patches.PATCH_TYPES:
            raise patches.unsupported_media_type()
        dry, validation = dry_run(request), field_validation(request)
        apply = patches.media_type(ctype) == patches.APPLY_PATCH_YAML
        force = request.query.get("force") in ("true", "1")
        if apply and not request.query.get("fieldManager"):
            raise errors.BadRequest("fieldManager is required for apply requests",
                                    causes=[errors.required("fieldManager").to_cause()])
        dropped: list[str] = []
        if apply and t.conv is not None:     # apply works in the stored version: convert the config once
            config = yamlbody.load(body)
            if isinstance(config, dict):
                config, dropped = t.internal(config, validation)
                body = json.dumps(config).encode()
        for _ in range(PATCH_RETRIES):
            try:
                current = await self.read(t)
            except errors.NotFound:
                if not apply or t.sub:
                    raise
                current = None
            original = None if current is None else wire.to_json(current) if apply else t.encode(current)
            patched = patches.apply_patch(ctype, original, body, t.info, manager=manager(request, "PatchOptions"),
                                          force=force, now=now_rfc3339())
            md = patched.setdefault("metadata", {})
            if t.info.namespaced:
                md.setdefault("namespace", t.ns)
            if md.get("name", t.name) != t.name:
                raise errors.BadRequest(f"the name of the object ({md.get('name')}) does not match the name "
                                        f"on the URL ({t.name})")
            md["name"] = t.name
            if not apply:                        # merge, JSON and strategic patches apply in the URL's version
                patched, dropped = t.internal(patched, validation)
            if validation == "Strict":
                obj, warnings = patches.decode_patched(ctype, patched, body, t.info), []
            else:
                obj, warnings = wire.decode(patched, t.info, validation)
            warnings = dropped + warnings
            if current is None:
                async with self.verbs.measured("create", t.info):
                    out, more = await self.verbs.create(obj, dry_run=dry)
                return self.one(request, t, out, 201, warnings + list(more))
            pinned = md.get("resourceVersion") != original["metadata"].get("resourceVersion")
            try:
                return await self.write(request, t, obj, warnings, dry,
                                        None if apply else self.field_manager(request, t, "PatchOptions"))
            except errors.Conflict:
                if pinned:            # the patch named a resourceVersion: its conflict is the client's
                    raise
        raise errors.Conflict(f'Operation cannot be fulfilled on {t.info.resource} "{t.name}": '
                              "too much contention, please try again")

    # -------------------------------------------------------------- deletes
    async def delete_request(self, request: web.Request, t: Target, name: str) -> api_pb2.DeleteRequest:
        body = await wire.read_body(request)
        opts = wire.parse_document(body, request.headers.get("Content-Type", wire.JSON)) if body.strip() else {}
        req = api_pb2.DeleteRequest(kind=t.info.kind, namespace=t.ns, name=name)
        grace = opts.get("gracePeriodSeconds", int_param(request, "gracePeriodSeconds"))
        if grace is not None:
            if isinstance(grace, bool) or not isinstance(grace, int):
                raise errors.BadRequest("gracePeriodSeconds must be an integer",
                                        causes=[errors.invalid("gracePeriodSeconds", grace).to_cause()])
            req.grace_period_seconds = max(grace, 0)
        policy = opts.get("propagationPolicy") or request.query.get("propagationPolicy", "")
        orphan = opts.get("orphanDependents", request.query.get("orphanDependents"))
        if orphan in (True, "true") and not policy:
            policy = "Orphan"
        req.propagation_policy = policy or ""
        pre = opts.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise errors.BadRequest("preconditions must be an object")
        req.preconditions.uid = pre.get("uid") or ""
        req.preconditions.resource_version = pre.get("resourceVersion") or ""
        req.dry_run = dry_run(request, opts.get("dryRun"))
        return req

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        req = await self.delete_request(request, t, t.name)
        async with self.verbs.measured("delete", t.info):
            obj, deleted = await self.verbs.delete(req)
        return self.one(request, t, obj, 200 if deleted else 202)

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        async with self.verbs.measured("list", t.info):
            resp = await self.verbs.list(t.info, t.namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))
        template = await self.delete_request(request, t, "")
        gone = []
        for a in resp.items:
            obj = wire.any_to_message(a)
            req = api_pb2.DeleteRequest()
            req.CopyFrom(template)
            req.namespace, req.name = obj.metadata.namespace, obj.metadata.name
            try:
                async with self.verbs.measured("delete", t.info):
                    out, _ = await self.verbs.delete(req)
            except errors.NotFound:
                continue
            gone.append(out)
        return wire.respond(wire.list_json(t.served, gone, resp.resource_version, encode=t.encode))

