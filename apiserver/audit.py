"""The audit log (--audit-log-path): one JSON line per request that writes
and per request refused with 401 or 403, over both transports, in
Kubernetes' audit.k8s.io/v1 Event format at the Metadata level (who, what,
on which object, with which outcome; never bodies):

    {"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata",
     "auditID":"…","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods",
     "verb":"create","user":{"username":"jane","groups":[…]},"sourceIPs":["127.0.0.1"],
     "userAgent":"kubectl/…","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},
     "responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"…",
     "stageTimestamp":"…","annotations":{"authorization.k8s.io/decision":"allow"}}

A gRPC call's requestURI is its method (`/kctl.v1.Api/Create`) and its
code the HTTP code of the same outcome. Reads that succeed are not
logged (Kubernetes' common policy for a teaching cluster: writes and
refusals are what one audits). Lines are written synchronously and
flushed: an event is on disk when the response leaves.
"""
from __future__ import annotations

import datetime
import json
import logging
import threading
import uuid

import grpc

from apiserver.auth.authz import READ_VERBS, Attributes
from apiserver.auth.user import UserInfo

log = logging.getLogger(__name__)

GRPC_TO_HTTP = {grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
                grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
                grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409,
                grpc.StatusCode.OUT_OF_RANGE: 410, grpc.StatusCode.FAILED_PRECONDITION: 422,
                grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503,
                grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.UNIMPLEMENTED: 405}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    return code in (401, 403) or (verb not in READ_VERBS and verb not in ("", "head", "options"))


class AuditLog:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8", buffering=1)   # noqa: SIM115 - held for the process

    def close(self) -> None:
        self._file.close()

    def event(self, *, uri: str, verb: str, code: int, user: UserInfo | None, attrs: Attributes | None,
              received: str, source_ip: str = "", user_agent: str = "", decision: str = "",
              reason: str = "") -> dict:
        ev: dict = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                    "auditID": str(uuid.uuid4()), "stage": "ResponseComplete", "requestURI": uri, "verb": verb,
                    "user": _user(user) if user is not None else {}}
        if user is not None and user.impersonator is not None:
            ev["user"] = _user(user.impersonator)
            ev["impersonatedUser"] = _user(user)
        ev["sourceIPs"] = [source_ip] if source_ip else []
        if user_agent:
            ev["userAgent"] = user_agent
        if attrs is not None and attrs.resource_request:
            ref = {"resource": attrs.resource, "namespace": attrs.namespace, "name": attrs.name,
                   "apiGroup": attrs.api_group, "apiVersion": attrs.api_version, "subresource": attrs.subresource}
            ev["objectRef"] = {k: v for k, v in ref.items() if v}
        ev["responseStatus"] = {"metadata": {}, "code": code}
        ev["requestReceivedTimestamp"] = received
        ev["stageTimestamp"] = _now()
        if decision:
            ev["annotations"] = {"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": reason}
        return ev

    def write(self, ev: dict) -> None:
        line = json.dumps(ev, separators=(",", ":"), sort_keys=False)
        with self._lock:
            try:
                self._file.write(line + "\n")
            except OSError as exc:
                log.error("audit log %s: %s", self.path, exc)


now = _now
