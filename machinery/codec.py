"""Manifests (YAML/JSON as Kubernetes writes them) to protobuf objects and back.

protobuf's json_format does the bulk of the mapping (camelCase names,
Timestamps as RFC 3339). Around it sits one walk over the message
descriptors that does what json_format cannot:

* refuses unknown fields by their full path (`spec.template.spec.foo`) and
  reports wrong scalar types per field, all at once, before anything is sent
  (the first errors.MAX_CAUSES, then `and N more`; values shortened by
  errors.show_value);
* maps IntOrString fields between a bare scalar (`targetPort: 80`,
  `maxSurge: 25%`) and the IntOrString message;
* accepts quantities written as YAML numbers (`cpu: 1`, `cpu: 0.5`);
* passes free-form objects (google.protobuf.Struct: managedFields' fieldsV1)
  through as they are;
* on output turns int64 values back into numbers (json_format writes them
  as strings) and IntOrString back into scalars.

Text comes in through `load_documents`, i.e. machinery.safeyaml: size,
alias-expansion and depth limits apply before any value is built.
"""
from __future__ import annotations

import functools
import json
import re
import string
from dataclasses import dataclass

import yaml
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from machinery import kinds, safeyaml
from machinery.errors import DecodeError  # noqa: F401  (re-exported: codec.DecodeError)
from machinery.errors import cap_messages, show_value

INT_OR_STRING = "kctl.v1.IntOrString"
TIMESTAMP = "google.protobuf.Timestamp"
STRUCT = "google.protobuf.Struct"  # free-form JSON objects (managedFields[].fieldsV1)
# Fields whose string values are quantities and may be written as numbers.
QUANTITY_FIELDS = {
    "kctl.v1.ResourceRequirements.limits",
    "kctl.v1.ResourceRequirements.requests",
    "kctl.v1.NodeStatus.capacity",
    "kctl.v1.NodeStatus.allocatable",
    "kctl.v1.EmptyDirVolumeSource.size_limit",
    "kctl.v1.ResourceFieldSelector.divisor",
    "kctl.v1.PersistentVolumeSpec.capacity",
    "kctl.v1.VolumeResourceRequirements.limits",
    "kctl.v1.VolumeResourceRequirements.requests",
    "kctl.v1.PersistentVolumeClaimStatus.capacity",
    "kctl.v1.MetricTarget.value",
    "kctl.v1.MetricTarget.average_value",
    "kctl.v1.MetricValueStatus.value",
    "kctl.v1.MetricValueStatus.average_value",
}
# Fields Kubernetes serialises even when zero (no `omitempty` in its Go
# types): kubectl shows `restartCount: 0`, `ready: false`, `exitCode: 0`.
# proto3 drops zero scalars, so the output walk puts these back.
ALWAYS_EMITTED = {
    "kctl.v1.ContainerStatus.restart_count",
    "kctl.v1.ContainerStatus.ready",
    "kctl.v1.ContainerStateTerminated.exit_code",
    "kctl.v1.ReplicaSetStatus.replicas",
    "kctl.v1.StatefulSetStatus.replicas",
    "kctl.v1.StatefulSetStatus.available_replicas",
    "kctl.v1.HorizontalPodAutoscalerStatus.desired_replicas",
    "kctl.v1.PodDisruptionBudgetStatus.disruptions_allowed",
    "kctl.v1.PodDisruptionBudgetStatus.current_healthy",
    "kctl.v1.PodDisruptionBudgetStatus.desired_healthy",
    "kctl.v1.PodDisruptionBudgetStatus.expected_pods",
    "kctl.v1.DaemonSetStatus.current_number_scheduled",
    "kctl.v1.DaemonSetStatus.number_misscheduled",
    "kctl.v1.DaemonSetStatus.desired_number_scheduled",
    "kctl.v1.DaemonSetStatus.number_ready",
}
_INTS = (FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_SINT32,
         FD.TYPE_SINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64, FD.TYPE_SFIXED32, FD.TYPE_SFIXED64)
_INT64S = (FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_FIXED64, FD.TYPE_SFIXED64)
_TYPE_NAMES = {FD.TYPE_STRING: "string", FD.TYPE_BOOL: "boolean", FD.TYPE_DOUBLE: "number",
               FD.TYPE_FLOAT: "number"}


@dataclass
class DecodeIssue:
    field: str
    message: str

    def __str__(self):
        return f"{self.field}: {self.message}" if self.field else self.message


class UnknownKindError(DecodeError):
    pass


def _is_map(f) -> bool:
    return f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _pytype(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _scalar_in(f, v, path, issues, quantity=False):
    """Check/convert one scalar for field f; returns the JSON value or None."""
    t = f.type
    if t == FD.TYPE_STRING:
        if isinstance(v, str):
            return v
        if quantity and isinstance(v, (int, float)) and not isinstance(v, bool):
            return repr(v) if isinstance(v, float) else str(v)
        issues.append(DecodeIssue(path, f"expected string, got {_pytype(v)} {show_value(v)}"))
        return None
    if t in _INTS:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            issues.append(DecodeIssue(path, f"expected integer, got {_pytype(v)} {show_value(v)}"))
            return None
        v = int(v)
        if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32) and not -2**31 <= v < 2**31:
            issues.append(DecodeIssue(path, f"value {v} out of range for int32"))
            return None
        return v
    if t == FD.TYPE_BOOL:
        if not isinstance(v, bool):
            issues.append(DecodeIssue(path, f"expected boolean, got {_pytype(v)} {show_value(v)}"))
            return None
        return v
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            issues.append(DecodeIssue(path, f"expected number, got {_pytype(v)}"))
            return None
        return v
    if t == FD.TYPE_BYTES:
        return _base64_in(v, path, issues)
    return v


_B64 = frozenset(string.ascii_letters + string.digits + "+/")


def _base64_in(v, path, issues):
    """Bytes are standard base64 with padding in JSON/YAML (Go's
    encoding/json): say where the first bad byte is, as Go does."""
    if not isinstance(v, str):
        issues.append(DecodeIssue(path, f"expected base64 string, got {_pytype(v)} {show_value(v)}"))
        return None
    text = v.replace("\r", "").replace("\n", "")
    body = text.rstrip("=")
    bad = next((i for i, ch in enumerate(body) if ch not in _B64), None)
    if bad is None and (len(text) % 4 or len(text) - len(body) > 2):
        bad = len(text) - len(text) % 4 if len(text) % 4 else len(body)
    if bad is not None:
        issues.append(DecodeIssue(path, f"illegal base64 data at input byte {bad}"))
        return None
    return text


def _value_in(f, v, path, issues):
    if f.type == FD.TYPE_MESSAGE:
        name = f.message_type.full_name
        if name == INT_OR_STRING:
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                issues.append(DecodeIssue(path, f"expected integer or string, got {_pytype(v)}"))
                return None
            return {"intVal": v} if isinstance(v, int) else {"strVal": v}
        if name == TIMESTAMP:
            if not isinstance(v, str):
                issues.append(DecodeIssue(path, f"expected an RFC 3339 time, got {_pytype(v)}"))
                return None
            return v
        if not isinstance(v, dict):
            issues.append(DecodeIssue(path, f"expected object, got {_pytype(v)}"))
            return None
        if name == STRUCT:
            return v
        return _message_in(f.message_type, v, path, issues)
    return _scalar_in(f, v, path, issues, quantity=f.full_name in QUANTITY_FIELDS)


def _message_in(desc, data: dict, path: str, issues: list) -> dict:
    by_json = {f.json_name: f for f in desc.fields}
    out = {}
    for key, v in data.items():
        p = _join(path, str(key))
        f = by_json.get(key) if isinstance(key, str) else None
        if f is None:
            issues.append(DecodeIssue(p, "unknown field"))
            continue
        if v is None:
            continue  # null means "unset", as in Kubernetes
        if _is_map(f):
            if not isinstance(v, dict):
                issues.append(DecodeIssue(p, f"expected object, got {_pytype(v)}"))
                continue
            vf = f.message_type.fields_by_name["value"]
            m = {}
            for mk, mv in v.items():
                mp = f"{p}[{mk}]" if not isinstance(mk, str) or "." in mk or "/" in mk else _join(p, mk)
                if not isinstance(mk, str):
                    issues.append(DecodeIssue(mp, f"map keys must be strings, got {_pytype(mk)}"))
                    continue
                if mv is None:
                    issues.append(DecodeIssue(mp, "expected string, got null"))
                    continue
                conv = (_value_in(vf, mv, mp, issues) if vf.type == FD.TYPE_MESSAGE
                        else _scalar_in(vf, mv, mp, issues, quantity=f.full_name in QUANTITY_FIELDS))
                if conv is not None:
                    m[mk] = conv
            out[key] = m
        elif f.is_repeated:
            if not isinstance(v, list):
                issues.append(DecodeIssue(p, f"expected array, got {_pytype(v)}"))
                continue
            items = []
            for i, item in enumerate(v):
                ip = f"{p}[{i}]"
                if item is None:
                    issues.append(DecodeIssue(ip, "null is not allowed in a list"))
                    continue
                conv = _value_in(f, item, ip, issues)
                if conv is not None:
                    items.append(conv)
            out[key] = items
        else:
            conv = _value_in(f, v, p, issues)
            if conv is not None:
                out[key] = conv
    return out


def from_dict(data: dict, *, source: str = "") -> Message:
    """Turn one manifest document into its kind's message.

    Raises UnknownKindError for kinds kctl does not serve and DecodeError
    listing every unknown field and wrong type otherwise."""
    if not isinstance(data, dict):
        raise DecodeError(f"expected an object at the top of the document, got {_pytype(data)}")
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    if not kind or not isinstance(kind, str):
        raise DecodeError("Object 'Kind' is missing", [DecodeIssue("kind", "Required value")])
    if not api_version or not isinstance(api_version, str):
        raise DecodeError("Object 'apiVersion' is missing", [DecodeIssue("apiVersion", "Required value")])
    try:
        info = kinds.for_kind(kind, api_version)
    except kinds.UnknownKind as exc:
        raise UnknownKindError(str(exc)) from None
    issues: list[DecodeIssue] = []
    prepared = _message_in(info.message.DESCRIPTOR, data, "", issues)
    if issues:
        unknown = [i.field for i in issues if i.message == "unknown field"]
        others = [str(i) for i in issues if i.message != "unknown field"]
        parts = cap_messages([f'unknown field "{u}"' for u in unknown] + others)
        raise DecodeError(f"{kind} in version \"{api_version}\" cannot be handled as a {kind}: "
                          f"strict decoding error: " + ", ".join(parts), issues)
    msg = info.message()
    try:
        json_format.ParseDict(prepared, msg)
    except json_format.ParseError as exc:
        raise DecodeError(f"{kind} in version \"{api_version}\" cannot be handled as a {kind}: {exc}",
                          [DecodeIssue("", str(exc))]) from None
    return msg


# ------------------------------------------------------------------- output

@functools.cache
def _out_fields(desc) -> tuple[dict, tuple]:
    """A message's fields by JSON name, and those always emitted (cached per type)."""
    return ({f.json_name: f for f in desc.fields},
            tuple(f for f in desc.fields if f.full_name in ALWAYS_EMITTED))


def _message_out(desc, data: dict) -> dict:
    by_json, always = _out_fields(desc)
    for f in always:
        if f.json_name not in data:
            data[f.json_name] = f.default_value
    for key, v in list(data.items()):
        f = by_json.get(key)
        if f is None:
            continue
        if _is_map(f):
            vf = f.message_type.fields_by_name["value"]
            if vf.type == FD.TYPE_MESSAGE:
                data[key] = {mk: _one_out(vf, mv) for mk, mv in v.items()}
            elif vf.type in _INT64S:
                data[key] = {mk: int(mv) for mk, mv in v.items()}
        elif f.is_repeated:
            data[key] = [_one_out(f, item) for item in v]
        else:
            data[key] = _one_out(f, v)
    return data


def _one_out(f, v):
    if f.type == FD.TYPE_MESSAGE:
        name = f.message_type.full_name
        if name == INT_OR_STRING:
            return v.get("intVal", v.get("strVal", 0))
        if name in (TIMESTAMP, STRUCT):
            return v
        return _message_out(f.message_type, v)
    if f.type in _INT64S:
        return int(v)
    return v


def to_dict(msg: Message) -> dict:
    """The manifest form of an object (camelCase keys, scalars as Kubernetes writes them)."""
    d = json_format.MessageToDict(msg)
    d = _message_out(msg.DESCRIPTOR, d)
    info = kinds.BY_MESSAGE.get(type(msg))
    if info is not None:
        d["apiVersion"] = info.api_version
        d["kind"] = info.kind
    return d


class _Dumper(yaml.SafeDumper):
    """SafeDumper that double-quotes strings holding U+0085 (NEL): PyYAML
    writes them single-quoted, where a reader folds NEL into a space; and
    quotes `y`/`n` (both found by tests/unit/test_fuzz_codec.py)."""


def _str(dumper, s: str):
    if "\x85" in s:
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style='"')
    return yaml.SafeDumper.represent_str(dumper, s)


_Dumper.add_representer(str, _str)
# go-yaml v2 (kubectl) reads y/Y/n/N as booleans: write such strings quoted, as go-yaml does
_Dumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def to_yaml(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True)


def to_json(data) -> str:
    return json.dumps(data, indent=4, sort_keys=True)


def load_documents(text: str | bytes, source: str = "") -> list:
    """All non-empty documents of a YAML/JSON stream (`---` and `...` markers,
    block or flow style), read by machinery.safeyaml under its size, alias
    and depth limits. Raises DecodeError (one line naming `source`) on
    syntax errors and refusals."""
    return safeyaml.load_all(text, source)


# ----------------------------------------------------------- Any wrapping

def pack(obj: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(obj)
    return a


def unpack(a: any_pb2.Any) -> Message:
    info = kinds.BY_TYPE_URL.get(a.type_url)
    if info is None:
        raise kinds.UnknownKind(f"unknown object type {a.type_url}")
    obj = info.message()
    a.Unpack(obj)
    return obj


def copy(obj: Message) -> Message:
    new = type(obj)()
    new.CopyFrom(obj)
    return new
