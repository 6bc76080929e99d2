"""Subresources over HTTP: `scale` (autoscaling/v1 Scale of Deployments, StatefulSets and
ReplicaSets: GET, PUT, PATCH), `binding` and `eviction` of pods (POST), `token` of
ServiceAccounts (POST a TokenRequest: apiserver/serviceaccount/tokenrequest.py).
`status` is the plain object path with the status verb (resources.py).

A Scale is a view: reading it reads the object, writing it is an update
of the object's spec.replicas through the same verbs (so a stale
resourceVersion in the Scale is a 409 like any update). An eviction is
decided against the pod's PodDisruptionBudget first (machinery.disruption:
429 TooManyRequests when it would break the budget, the budget spent with
a resourceVersion precondition otherwise), then it is a delete of the pod
with the Eviction's deleteOptions; a binding is the Bind verb the scheduler
uses over gRPC.
"""
from __future__ import annotations

from aiohttp import web

from apiserver.http import wire
from apiserver.http.resources import Resources, Target, dry_run
from apiserver.serviceaccount import tokenrequest
from machinery import codec, disruption, errors, kinds, tables
from machinery import patch as patches
from machinery.pb import api_pb2


def scale_of(obj) -> dict:
    md = wire.to_json(obj)["metadata"]
    keep = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md}
    replicas = obj.spec.replicas if obj.spec.HasField("replicas") else 1
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": keep,
            "spec": {"replicas": replicas},
            "status": {"replicas": obj.status.replicas, "selector": tables.format_selector(obj.spec.selector)}}


def _replicas(scale: dict) -> int:
    if not isinstance(scale, dict) or scale.get("kind", "Scale") != "Scale":
        raise errors.BadRequest("the body must be an autoscaling/v1 Scale")
    r = (scale.get("spec") or {}).get("replicas", 0)
    if isinstance(r, bool) or not isinstance(r, int):
        raise errors.BadRequest("spec.replicas must be an integer",
                                causes=[errors.invalid("spec.replicas", r).to_cause()])
    if r < 0:
        raise errors.Invalid.of("Scale.autoscaling", scale.get("metadata", {}).get("name", ""),
                                [errors.invalid("spec.replicas", r, "must be greater than or equal to 0")])
    return r


class Subresources:
    def __init__(self, res: Resources):
        self.res = res
        self.verbs = res.verbs

    async def get_scale(self, request: web.Request, t: Target) -> web.Response:
        return wire.respond(scale_of(await self.res.read(t)))

    async def write_scale(self, request: web.Request, t: Target) -> web.Response:
        body = await wire.read_body(request)
        obj = await self.res.read(t)
        if request.method == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            mt = patches.media_type(ctype)
            if mt not in (patches.MERGE_PATCH, patches.STRATEGIC_MERGE_PATCH, patches.JSON_PATCH):
                raise patches.unsupported_media_type()
            mt = patches.MERGE_PATCH if mt == patches.STRATEGIC_MERGE_PATCH else mt   # a Scale has no lists
            scale = patches.apply_patch(mt, scale_of(obj), body, t.info)
        else:
            scale = wire.parse_document(body, request.headers.get("Content-Type", wire.JSON))
        replicas = _replicas(scale)
        want_rv = (scale.get("metadata") or {}).get("resourceVersion")
        obj.spec.replicas = replicas
        obj.metadata.resource_version = want_rv if request.method == "PUT" and want_rv else ""
        async with self.verbs.measured("update", t.info):          # spec.replicas: the scaler's now
            out, _ = await self.verbs.update(obj, dry_run=dry_run(request),
                                             manager=self.res.field_manager(request, t))
        return wire.respond(scale_of(out))

    async def eviction(self, request: web.Request, t: Target) -> web.Response:
        body = wire.parse_document(await wire.read_body(request), request.headers.get("Content-Type", wire.JSON))
        if body.get("kind", "Eviction") != "Eviction":
            raise errors.BadRequest(f"the body must be a policy/v1 Eviction, not {body.get('kind')}")
        name = (body.get("metadata") or {}).get("name", t.name)
        if name != t.name:
            raise errors.BadRequest(f"name in URL does not match name in Eviction object ({name} != {t.name})")
        opts = body.get("deleteOptions") or {}
        req = api_pb2.DeleteRequest(kind="Pod", namespace=t.ns, name=t.name)
        if isinstance(opts.get("gracePeriodSeconds"), int):
            req.grace_period_seconds = max(opts["gracePeriodSeconds"], 0)
        pre = opts.get("preconditions") or {}
        req.preconditions.uid = pre.get("uid") or ""
        req.preconditions.resource_version = pre.get("resourceVersion") or ""
        req.dry_run = dry_run(request, opts.get("dryRun"))
        pod = await self.res.read(t)
        pdb_info = kinds.BY_KIND["PodDisruptionBudget"]

        async def list_pdbs():
            return [codec.unpack(a) for a in (await self.verbs.list(pdb_info, t.ns)).items]

        async def write_status(pdb):
            await self.verbs.update(pdb, status=True)
        async with self.verbs.measured("evict", t.info):
            await disruption.decide_eviction(pod, list_pdbs, write_status, dry_run=req.dry_run)
            await self.verbs.delete(req)
        return wire.respond(wire.success_status(), 201)

    async def binding(self, request: web.Request, t: Target) -> web.Response:
        body = wire.parse_document(await wire.read_body(request), request.headers.get("Content-Type", wire.JSON))
        target = body.get("target") or {}
        md = body.get("metadata") or {}
        if md.get("name", t.name) != t.name:
            raise errors.BadRequest(f"name in URL does not match name in Binding object "
                                    f"({md.get('name')} != {t.name})")
        if not target.get("name"):
            raise errors.Invalid.of("Binding", t.name, [errors.required("target.name")])
        b = api_pb2.BindRequest(namespace=t.ns, name=t.name, uid=md.get("uid") or "", node_name=target["name"])
        for k, v in (md.get("annotations") or {}).items():
            b.annotations[k] = str(v)
        async with self.verbs.measured("bind", t.info):
            await self.verbs.bind(b)
        return wire.respond(wire.success_status(), 201)


    async def token(self, request: web.Request, t: Target) -> web.Response:
        """POST serviceaccounts/NAME/token: an authentication.k8s.io/v1 TokenRequest (kubectl create token)."""
        body = wire.parse_document(await wire.read_body(request), request.headers.get("Content-Type", wire.JSON))
        tr = tokenrequest.from_json(body)
        async with self.verbs.measured("create", t.info):
            out = await self.verbs.token_requests.create(t.ns, t.name, tr, dry_run(request))
        return wire.respond(tokenrequest.to_json(out), 201)
