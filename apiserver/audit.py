"""The audit log (--audit-log-path): one JSON line per audited request and
stage, over both transports, in Kubernetes' audit.k8s.io/v1 Event format:

    {"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata",
     "auditID":"…","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods",
     "verb":"create","user":{"username":"jane","groups":[…]},"sourceIPs":["127.0.0.1"],
     "userAgent":"kubectl/…","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},
     "responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"…",
     "stageTimestamp":"…","annotations":{"authorization.k8s.io/decision":"allow", …}}

Which requests, at which level and stages, is the audit policy's answer
(apiserver/auditpolicy.py, --audit-policy-file); without a policy file,
writes and refusals (401/403) at Metadata, one ResponseComplete event each.
At Request level the event carries `requestObject` (the body as JSON; a
gRPC request as the object's Kubernetes JSON), at RequestResponse also
`responseObject`. A gRPC call's requestURI is its method
(`/kctl.v1.Api/Create`) and its code the HTTP code of the same outcome.

A `Call` follows one request (the gate creates it, apiserver/auth/gate.py);
while it runs it is the context's current call, so code deep in the request
(admission: Pod Security's `pod-security.kubernetes.io/audit-violations`)
adds annotations to its event with `annotate(key, value)`. Lines are
written synchronously and flushed: an event is on disk when the response
leaves.
"""
from __future__ import annotations

import contextvars
import datetime
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, json_format

from apiserver import auditpolicy
from apiserver.auth.authz import Attributes
from apiserver.auth.user import UserInfo
from machinery import codec, errors, safeyaml

BODY_KEY = "kctl.body"            # where apiserver.http.wire.read_body keeps the body it read

log = logging.getLogger(__name__)

GRPC_TO_HTTP = {grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
                grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
                grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409,
                grpc.StatusCode.OUT_OF_RANGE: 410, grpc.StatusCode.FAILED_PRECONDITION: 422,
                grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503,
                grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.UNIMPLEMENTED: 405}


def _now(t: float | None = None) -> str:
    """RFC 3339 with microseconds, of now or of `t` (seconds since the epoch)."""
    d = datetime.datetime.now(datetime.timezone.utc) if t is None else \
        datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _user(u: UserInfo) -> dict:
    out: dict = {"username": u.name}
    if u.uid:
        out["uid"] = u.uid
    if u.groups:
        out["groups"] = list(u.groups)
    if u.extra:
        out["extra"] = {k: list(v) for k, v in u.extra.items()}
    return out


def should_log(verb: str, code: int) -> bool:
    """Whether kctl's default policy (no --audit-policy-file) logs a request."""
    attrs = Attributes(UserInfo(""), verb) if verb else None
    return auditpolicy.DEFAULT.evaluate(None, attrs, code).level != auditpolicy.NONE


@dataclass
class Call:
    """What the audit log needs to know about one request."""
    uri: str
    received: float | str            # time.time() when it came (`now`), or RFC 3339 text
    user: UserInfo | None = None
    attrs: Attributes | None = None
    code: int = 0
    decision: str = ""
    reason: str = ""
    source_ip: str = ""
    user_agent: str = ""
    _audit_id: str = field(default="", repr=False)
    annotations: dict[str, str] = field(default_factory=dict)
    request_object: dict | None = None
    response_object: dict | None = None

    # Most requests are never logged: their ID and received time are only turned into text
    # when an event is written (a uuid4 and a strftime per request were ~2% of a create's CPU).
    @property
    def audit_id(self) -> str:
        if not self._audit_id:
            self._audit_id = str(uuid.uuid4())       # one ID for every stage of the request
        return self._audit_id

    @property
    def authenticated_user(self) -> UserInfo | None:
        """Who the policy asks about: the impersonator when there is one (Kubernetes
        evaluates the policy before impersonation)."""
        return self.user.impersonator if self.user is not None and self.user.impersonator else self.user


_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("kctl_audit_call", default=None)


def begin(call: Call) -> None:
    """Make `call` the current request's: the transports call it in the request's
    own task (aiohttp's handler task, the gRPC call's task)."""
    _current.set(call)


def begin_http(call: Call) -> contextvars.Token:
    """The same for an HTTP request, undone by `end_http` (a connection's requests may share a task)."""
    return _current.set(call)


def end_http(token: contextvars.Token) -> None:
    _current.reset(token)


def annotate(key: str, value: str) -> None:
    """Add an annotation to the current request's audit event (no-op outside a request)."""
    call = _current.get()
    if call is not None:
        call.annotations[key] = value


def _strip_managed_fields(obj: dict | None) -> dict | None:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) and "managedFields" in obj["metadata"]:
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    return obj


def _at_least(rule: auditpolicy.Rule, level: str) -> bool:
    return auditpolicy.LEVELS.index(rule.level) >= auditpolicy.LEVELS.index(level)


def _json_body(raw: bytes | None, content_type: str):
    """A request or response body (JSON, a JSON or merge patch, YAML, Kubernetes
    protobuf) as JSON for the event; None when empty or undecodable."""
    if not raw:
        return None
    from apiserver.http import wire          # the HTTP side's decoders
    mt = content_type.split(";")[0].strip().lower()
    try:
        if mt.endswith("json") or not mt:
            return safeyaml.load_json(raw)
        if mt.endswith("yaml"):
            return safeyaml.load_one(raw)
        return wire.parse_document(raw, content_type)
    except (errors.KctlError, ValueError):
        return None


def http_objects(rule: auditpolicy.Rule, call: Call, request, response) -> auditpolicy.Rule:
    """Fill `call`'s requestObject/responseObject from an aiohttp request and
    response when `rule`'s level asks for them (the body the handler read,
    kept by apiserver.http.wire.read_body; a JSON response's body)."""
    if _at_least(rule, auditpolicy.REQUEST):
        call.request_object = _json_body(request.get(BODY_KEY), request.headers.get("Content-Type", ""))
    if rule.level == auditpolicy.REQUEST_RESPONSE and isinstance(getattr(response, "body", None), bytes):
        call.response_object = _json_body(response.body, response.content_type or "")
    return rule


def _message_json(msg) -> dict | None:
    """A gRPC message as JSON: the Kubernetes JSON of the object it carries, if any."""
    if msg is None:
        return None
    any_obj = getattr(msg, "object", None)
    if isinstance(any_obj, any_pb2.Any) and any_obj.type_url:
        try:
            return codec.to_dict(codec.unpack(any_obj))
        except errors.KctlError:
            pass                              # not a kind (a review): its protobuf JSON
    return json_format.MessageToDict(msg)


def grpc_objects(rule: auditpolicy.Rule, call: Call, request, response) -> auditpolicy.Rule:
    """The same for a gRPC call's request and (unary) response messages."""
    if _at_least(rule, auditpolicy.REQUEST):
        call.request_object = _message_json(request)
    if rule.level == auditpolicy.REQUEST_RESPONSE:
        call.response_object = _message_json(response)
    return rule


class AuditLog:
    def __init__(self, path: str, policy: auditpolicy.Policy = auditpolicy.DEFAULT):
        self.path = path
        self.policy = policy
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8", buffering=1)   # noqa: SIM115 - held for the process

    def close(self) -> None:
        self._file.close()

    def rule(self, call: Call) -> auditpolicy.Rule:
        return self.policy.evaluate(call.authenticated_user, call.attrs, call.code)

    def record(self, call: Call, stage: str = auditpolicy.COMPLETE, rule: auditpolicy.Rule | None = None) -> None:
        """Write `call`'s event for `stage` if the policy logs it."""
        rule = rule or self.rule(call)
        if rule.level != auditpolicy.NONE and stage not in rule.omit_stages:
            self.write(self.event(call, rule, stage))

    def event(self, call: Call, rule: auditpolicy.Rule, stage: str = auditpolicy.COMPLETE) -> dict:
        user, attrs = call.user, call.attrs
        ev: dict = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": rule.level,
                    "auditID": call.audit_id, "stage": stage, "requestURI": call.uri,
                    "verb": attrs.verb if attrs is not None else "",
                    "user": _user(user) if user is not None else {}}
        if user is not None and user.impersonator is not None:
            ev["user"] = _user(user.impersonator)
            ev["impersonatedUser"] = _user(user)
        ev["sourceIPs"] = [call.source_ip] if call.source_ip else []
        if call.user_agent:
            ev["userAgent"] = call.user_agent
        if attrs is not None and attrs.resource_request:
            ref = {"resource": attrs.resource, "namespace": attrs.namespace, "name": attrs.name,
                   "apiGroup": attrs.api_group, "apiVersion": attrs.api_version, "subresource": attrs.subresource}
            ev["objectRef"] = {k: v for k, v in ref.items() if v}
        if stage != auditpolicy.RECEIVED:
            ev["responseStatus"] = {"metadata": {}, "code": call.code}
        if _at_least(rule, auditpolicy.REQUEST) and call.request_object is not None and stage != auditpolicy.RECEIVED:
            ev["requestObject"] = (_strip_managed_fields(call.request_object) if rule.omit_managed_fields
                                   else call.request_object)
        if rule.level == auditpolicy.REQUEST_RESPONSE and call.response_object is not None \
                and stage != auditpolicy.RECEIVED:
            ev["responseObject"] = (_strip_managed_fields(call.response_object) if rule.omit_managed_fields
                                    else call.response_object)
        ev["requestReceivedTimestamp"] = call.received if isinstance(call.received, str) else _now(call.received)
        ev["stageTimestamp"] = _now()
        annotations = dict(call.annotations)
        if call.decision and stage != auditpolicy.RECEIVED:
            annotations["authorization.k8s.io/decision"] = call.decision
            annotations["authorization.k8s.io/reason"] = call.reason
        if annotations:
            ev["annotations"] = annotations
        return ev

    def write(self, ev: dict) -> None:
        line = json.dumps(ev, separators=(",", ":"), sort_keys=False)
        with self._lock:
            try:
                self._file.write(line + "\n")
            except OSError as exc:
                log.error("audit log %s: %s", self.path, exc)


now = time.time     # a Call's `received`: formatted only when an event is written
