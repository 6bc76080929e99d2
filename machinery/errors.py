"""The project's error types and their translation to and from gRPC.

One exception tree, as httpx has one: every error kctl raises on purpose is
a `KctlError`. Each boundary has one family below it, and code at a
boundary translates the foreign error with `raise ... from exc`:

    KctlError
    ├── ApiError        the API's Status model (NotFound, Conflict, Invalid, ...):
    │                   apiserver, client, informers; also gRPC and HTTP codes
    ├── DecodeError     a manifest or value that cannot become an object
    │                   (codec, quantities, JSONPath); also a ValueError
    ├── ConfigError     a configuration that cannot be used (kubeconfig, flags,
    │                   an agent's pod config such as a missing Secret)
    ├── HostError       the host refused an operation: subprocesses, netlink,
    │                   files (node agent runtime/images/network/iptables, lab)
    ├── ControlFlow     internal signals that end a task (leadership lost,
    │                   queue shut down, a component's task ended)
    └── (directly)      errors no family fits: kinds.UnknownKind (also a
                        LookupError), runner.ComponentFailed (a component's task
                        died), kubectlish's Failed (a kctl command that cannot finish)

An ApiError carries what Kubernetes' metav1.Status carries: a reason
(NotFound, Conflict, Invalid, ...), the HTTP-style code kubectl users know,
a message, and for Invalid the per-field causes. On the wire it is a gRPC
status code plus a kctl.v1.Status in the standard rich-error trailer
(grpc-status-details-bin, via grpcio-status), so the translation happens in
exactly two functions: `abort()` on the server and `from_rpc_error()` on the
client.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any as _AnyT

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from machinery.pb import api_pb2


# --------------------------------------------------------------- field errors

_CAUSE_REASON = {
    "Invalid": "FieldValueInvalid",
    "Required": "FieldValueRequired",
    "NotSupported": "FieldValueNotSupported",
    "Duplicate": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
    "TooLong": "FieldValueTooLong",
    "TooMany": "FieldValueTooMany",
    "NotFound": "FieldValueNotFound",
}

_NO_VALUE = object()


# Values echoed in errors stay small whatever arrives: a string shows its
# first MAX_VALUE_CHARS characters then `...(truncated N chars)`, a list or
# map its first items up to about MAX_SHOWN_CHARS then `... (N more)`; a
# message lists at most MAX_CAUSES causes, and no more than about
# MAX_MESSAGE_CHARS of them, then `and N more` (the causes likewise), so an
# error stays under 2 KB whatever the input.
MAX_VALUE_CHARS = 64
MAX_SHOWN_CHARS = 256
MAX_CAUSES = 10
MAX_MESSAGE_CHARS = 1400


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            return json.dumps(value[:MAX_VALUE_CHARS]) + f"...(truncated {len(value) - MAX_VALUE_CHARS} chars)"
        return json.dumps(value)
    return _scalar(str(value))


def show_value(value) -> str:
    """A value the way Kubernetes' field errors render it (JSON-ish), shortened."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return _scalar(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        items = sorted(value.items(), key=lambda kv: str(kv[0])) if len(value) <= 1000 else list(value.items())
        return _bounded("{", "}", (f"{_scalar(str(k))}: {show_value(v)}" for k, v in items), len(items))
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and hasattr(value, "__iter__"):
        return _bounded("[", "]", (show_value(v) for v in value), len(value))
    return _scalar(str(value))


def _bounded(open_: str, close: str, parts, total: int) -> str:
    out, size = [], 0
    for part in parts:
        if size > MAX_SHOWN_CHARS:
            break
        out.append(part)
        size += len(part) + 2
    more = f", ... ({total - len(out)} more)" if total > len(out) else ""
    return open_ + ", ".join(out) + more + close


def cap_messages(parts: list[str], limit: int = MAX_CAUSES, budget: int = MAX_MESSAGE_CHARS) -> list[str]:
    """The first messages, at most `limit` of them and (after the first)
    no more than `budget` characters in all, each cut at 2 * MAX_SHOWN_CHARS;
    then `and N more` for the rest."""
    cut, out, size = 2 * MAX_SHOWN_CHARS, [], 0
    for p in parts[:limit]:
        p = p if len(p) <= cut else p[:cut] + f"...(truncated {len(p) - cut} chars)"
        if out and size + len(p) > budget:
            break
        out.append(p)
        size += len(p) + 2
    return out + ([f"and {len(parts) - len(out)} more"] if len(parts) > len(out) else [])


_show = show_value


@dataclass
class FieldError:
    """One violated rule: `spec.replicas: Invalid value: -1: must be ...`."""
    type: str            # Invalid, Required, NotSupported, Duplicate, Forbidden, TooLong, NotFound
    field: str
    value: _AnyT = _NO_VALUE
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def body(self) -> str:
        if self.type == "Invalid":
            s = "Invalid value"
            if self.value is not _NO_VALUE:
                s += f": {_show(self.value)}"
        elif self.type == "Required":
            s = "Required value"
        elif self.type == "NotSupported":
            s = "Unsupported value"
            if self.value is not _NO_VALUE:
                s += f": {_show(self.value)}"
        elif self.type == "Duplicate":
            s = "Duplicate value"
            if self.value is not _NO_VALUE:
                s += f": {_show(self.value)}"
        elif self.type == "Forbidden":
            s = "Forbidden"
        elif self.type == "TooMany":
            s = f"Too many: {_show(self.value)}"
        elif self.type == "TooLong":
            s = "Too long"
        elif self.type == "NotFound":
            s = "Not found"
            if self.value is not _NO_VALUE:
                s += f": {_show(self.value)}"
        else:
            s = self.type
        if self.detail:
            s += f": {self.detail}"
        return s

    def to_cause(self) -> api_pb2.StatusCause:
        return api_pb2.StatusCause(reason=_CAUSE_REASON.get(self.type, self.type),
                                   message=self.body(), field=self.field)


def invalid(field, value, detail=""): return FieldError("Invalid", field, value, detail)
def required(field, detail=""): return FieldError("Required", field, detail=detail)
def forbidden(field, detail): return FieldError("Forbidden", field, detail=detail)
def duplicate(field, value): return FieldError("Duplicate", field, value)
def too_many(field, n, limit): return FieldError("TooMany", field, n, f"must have at most {limit} items")
def too_long(field, limit): return FieldError("TooLong", field, detail=f"may not be more than {limit} bytes")


def not_supported(field, value, supported):
    return FieldError("NotSupported", field, value,
                      "supported values: " + ", ".join(json.dumps(s) for s in supported))


# ----------------------------------------------------------------- the tree

class KctlError(Exception):
    """Root of every error kctl raises on purpose."""


class DecodeError(KctlError, ValueError):
    """Input that cannot become an object; `issues` name every field."""

    def __init__(self, message: str = "", issues: list | None = None):
        super().__init__(message)
        self.issues = issues or []


class ConfigError(KctlError):
    """A configuration that cannot be used; the message says what to fix."""


class HostError(KctlError):
    """The host refused an operation (a subprocess, netlink, the filesystem)."""


class ControlFlow(KctlError):
    """An internal signal that ends a task; never shown to a user as a failure."""


# ----------------------------------------------------------------- ApiError

class ApiError(KctlError):
    reason = "InternalError"
    http_code = 500
    grpc_code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, kind: str = "", name: str = "", group: str = "",
                 causes: list[api_pb2.StatusCause] | None = None, retry_after: int = 0):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group
        self.causes = list(causes or [])
        self.retry_after = retry_after

    def to_status(self) -> api_pb2.Status:
        return api_pb2.Status(
            message=self.message, reason=self.reason, code=self.http_code,
            details=api_pb2.StatusDetails(name=self.name, kind=self.kind, group=self.group,
                                          causes=self.causes, retry_after_seconds=self.retry_after))

    @staticmethod
    def from_status(st: api_pb2.Status) -> "ApiError":
        cls = _BY_REASON.get(st.reason, ApiError)
        err = cls(st.message, kind=st.details.kind, name=st.details.name, group=st.details.group,
                  causes=list(st.details.causes), retry_after=st.details.retry_after_seconds)
        return err


class NotFound(ApiError):
    reason, http_code, grpc_code = "NotFound", 404, grpc.StatusCode.NOT_FOUND


class AlreadyExists(ApiError):
    reason, http_code, grpc_code = "AlreadyExists", 409, grpc.StatusCode.ALREADY_EXISTS


class Conflict(ApiError):
    reason, http_code, grpc_code = "Conflict", 409, grpc.StatusCode.ABORTED


class Invalid(ApiError):
    reason, http_code, grpc_code = "Invalid", 422, grpc.StatusCode.INVALID_ARGUMENT

    @classmethod
    def of(cls, resource: str, name: str, errors: list[FieldError], kind: str = "", group: str = ""):
        """Kubernetes' message: `Deployment.apps "web" is invalid: <errors>`, at
        most MAX_CAUSES errors, then `and N more` (also as the last cause)."""
        parts = cap_messages([str(e) for e in errors[:MAX_CAUSES]])
        shown = len(parts) - (len(parts) > 1 and parts[-1].startswith("and ") and parts[-1].endswith(" more"))
        if len(errors) > shown:
            parts[shown:] = [f"and {len(errors) - shown} more"]
        body = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        causes = [e.to_cause() for e in errors[:shown]]
        if len(errors) > shown:
            causes.append(api_pb2.StatusCause(reason="FieldValueInvalid", field="",
                                              message=f"and {len(errors) - shown} more"))
        return cls(f'{resource} "{name}" is invalid: {body}', kind=kind, name=name, group=group,
                   causes=causes)


class BadRequest(ApiError):
    reason, http_code, grpc_code = "BadRequest", 400, grpc.StatusCode.INVALID_ARGUMENT


class Forbidden(ApiError):
    reason, http_code, grpc_code = "Forbidden", 403, grpc.StatusCode.PERMISSION_DENIED


class Expired(ApiError):
    """The requested resourceVersion is older than what can be served (410 Gone)."""
    reason, http_code, grpc_code = "Expired", 410, grpc.StatusCode.OUT_OF_RANGE


class Unavailable(ApiError):
    reason, http_code, grpc_code = "ServiceUnavailable", 503, grpc.StatusCode.UNAVAILABLE


class Timeout(ApiError):
    reason, http_code, grpc_code = "Timeout", 504, grpc.StatusCode.DEADLINE_EXCEEDED


class MethodNotAllowed(ApiError):
    reason, http_code, grpc_code = "MethodNotAllowed", 405, grpc.StatusCode.UNIMPLEMENTED


class NotAcceptable(ApiError):
    reason, http_code, grpc_code = "NotAcceptable", 406, grpc.StatusCode.INVALID_ARGUMENT


class RequestEntityTooLarge(ApiError):
    reason, http_code, grpc_code = "RequestEntityTooLarge", 413, grpc.StatusCode.RESOURCE_EXHAUSTED


class UnsupportedMediaType(ApiError):
    reason, http_code, grpc_code = "UnsupportedMediaType", 415, grpc.StatusCode.INVALID_ARGUMENT


class TooManyRequests(ApiError):
    reason, http_code, grpc_code = "TooManyRequests", 429, grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthorized(ApiError):
    reason, http_code, grpc_code = "Unauthorized", 401, grpc.StatusCode.UNAUTHENTICATED


_BY_REASON = {c.reason: c for c in (NotFound, AlreadyExists, Conflict, Invalid, BadRequest,
                                    Forbidden, Expired, Unavailable, Timeout, MethodNotAllowed,
                                    NotAcceptable, RequestEntityTooLarge, UnsupportedMediaType,
                                    TooManyRequests, Unauthorized)}
_BY_GRPC = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.INVALID_ARGUMENT: BadRequest,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
    grpc.StatusCode.OUT_OF_RANGE: Expired,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
    grpc.StatusCode.UNIMPLEMENTED: MethodNotAllowed,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooManyRequests,
    grpc.StatusCode.UNAUTHENTICATED: Unauthorized,
}


# ------------------------------------------------------------ gRPC boundary

def to_rich_status(err: ApiError) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(err.to_status())
    st = status_pb2.Status(code=err.grpc_code.value[0], message=err.message, details=[detail])
    return rpc_status.to_status(st)


async def abort(context, err: ApiError):
    """Server side: end the RPC with this error (never returns)."""
    await context.abort_with_status(to_rich_status(err))


def from_rpc_error(exc: grpc.RpcError, target: str = "") -> ApiError:
    """Client side: rebuild the ApiError from a failed RPC."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    md = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in (md or ()):
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            for d in st.details:
                if d.Is(api_pb2.Status.DESCRIPTOR):
                    inner = api_pb2.Status()
                    d.Unpack(inner)
                    return ApiError.from_status(inner)
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or ""):
        # gRPC's own size check (`Sent/Received message larger than max (N vs. M)`)
        return RequestEntityTooLarge(f"Request entity too large: {_short(details)}")
    if code == grpc.StatusCode.UNAVAILABLE:
        where = f" at {target}" if target else ""
        return Unavailable(f"cannot reach the apiserver{where}: {_short(details)}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Timeout(f"the apiserver{' at ' + target if target else ''} did not answer in time")
    cls = _BY_GRPC.get(code, ApiError)
    return cls(details or code.name)


def _short(details: str | None) -> str:
    """gRPC's connection errors are long; keep the part a person needs."""
    if not details:
        return "unavailable"
    for marker in ("Connection refused", "connection refused", "No route to host",
                   "Network is unreachable", "Connection reset", "Deadline Exceeded",
                   "Name or service not known", "DNS resolution failed"):
        if marker in details:
            return marker.lower()
    return details.splitlines()[0][:200]
