"""Who wrote which fields: the `Update` entries of `metadata.managedFields`
that every create and update records, whatever the transport (Kubernetes'
FieldManager.UpdateNoErrors in the write handlers).

The manager is the request's field manager (`?fieldManager=` over HTTP,
`field_manager` over gRPC), else the client's user agent up to its first
`/` (Kubernetes' prefixFromUserAgent: `kubectl/v1.32.0 (linux/amd64)` is
"kubectl", kctl's components send `kctl-controller-manager`,
`kctl-nodeagent/<node>`; gRPC appends its own `grpc-python-asyncio/…`
after a space, which is cut off too). An explicit field manager is validated
as Kubernetes' ValidateFieldManager does (≤ 128 bytes, printable).

The Store calls `FieldManager.track(old, new)` inside its write, after
defaulting (Kubernetes decodes with defaults before the field manager runs,
so a creator owns the defaulted fields too) and against the very object the
etcd txn compares with, so an unconditional update retried on fresh data is
tracked against that data. The bookkeeping itself is machinery.patch.ssa's
update_entries (track_update's managedFields only: the object stays a
message, only its managedFields list is rebuilt, from cached Struct bytes
and parsed times); server-side apply (HTTP only) records its own `Apply` entry
and passes no FieldManager.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from machinery import codec, errors, kinds
from machinery.patch import ssa

MAX_LENGTH = 128          # validation.FieldManagerMaxLength
UNKNOWN = "unknown"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_user_agent(user_agent: str) -> str:
    """prefixFromUserAgent: the text before the first `/`, printable
    characters only, at most 128 bytes; gRPC's own suffix (after a space) is dropped."""
    prefix = (user_agent or "").split(" grpc-", 1)[0].split("/", 1)[0]
    out, size = [], 0
    for ch in prefix:
        if not ch.isprintable():
            continue
        size += len(ch.encode())
        if size > MAX_LENGTH:
            break
        out.append(ch)
    return "".join(out)


def validate(name: str, options_kind: str) -> None:
    """ValidateFieldManager, as a 422 on the request's options (`CreateOptions`, `UpdateOptions`, `PatchOptions`)."""
    problems = []
    if len(name.encode()) > MAX_LENGTH:
        problems.append(errors.too_long("fieldManager", MAX_LENGTH))
    problems += [errors.invalid("fieldManager", name, f"invalid character {ch!r} (at position {i})")
                 for i, ch in enumerate(name) if not ch.isprintable()][:1]
    if problems:
        raise errors.Invalid.of(f"{options_kind}.meta.k8s.io", "", problems, kind=options_kind,
                                group="meta.k8s.io")


def named(explicit: str, user_agent: str, options_kind: str = "UpdateOptions") -> str:
    """managerOrUserAgent: the explicit field manager (validated), else the user agent's prefix."""
    if explicit:
        validate(explicit, options_kind)
        return explicit
    return from_user_agent(user_agent) or UNKNOWN


@dataclass(frozen=True)
class FieldManager:
    """A writer: `name` records an `Update` entry (on `subresource`, if any)."""
    name: str
    subresource: str = ""

    def track(self, old: Message | None, new: Message) -> Message:
        """new (modified in place and returned) with managedFields recording
        that this manager wrote it over old (None: a create)."""
        how = {"manager": self.name, "operation": "Update", "info": kinds.of(new), "now": now_rfc3339(),
               "subresource": self.subresource}
        if old is None and not new.metadata.managed_fields:       # a create: entries by the object's shape
            entries = ssa.create_entries(_shape(new), lambda: codec.to_dict(new), **how)
        else:       # a subresource's write: what it sends as managedFields is not read (ssa._tracked)
            drop = _fields_named(type(new), ssa.ignored_tops(how["info"], self.subresource))
            entries = ssa.update_entries(_as_dict(old, drop=drop) if old is not None else None,
                                         _as_dict(new, managed=not self.subresource, drop=drop), **how)
        return set_managed_fields(new, entries)


# The managedFields entries a write sets come back as the next write's old ones (and in what a
# client sends back): their JSON form, ~2/3 of a Pod's codec.to_dict, is made once per entry.
ENTRIES_CACHE = 1024
_entries_json: dict[bytes, dict] = {}


def _as_dict(msg: Message, managed: bool = True, drop: tuple[str, ...] = ()) -> dict:
    """codec.to_dict(msg), its managedFields entries from the cache (or left out: managed=False),
    without the top-level fields `drop` names (message field names: what ssa does not compare,
    e.g. a status write's spec, the larger part of a Pod).  The entries are shared: for readers
    only (ssa.update_entries reads them)."""
    fields = msg.metadata.managed_fields
    if not len(fields) and not any(msg.HasField(name) for name in drop):
        return codec.to_dict(msg)
    bare = type(msg)()
    bare.CopyFrom(msg)
    bare.metadata.ClearField("managed_fields")
    for name in drop:
        bare.ClearField(name)
    out = codec.to_dict(bare)
    if managed and len(fields):
        out.setdefault("metadata", {})["managedFields"] = [_entry_json(e) for e in fields]
    return out


@lru_cache(maxsize=64)
def _fields_named(msg_type, json_names: tuple[str, ...]) -> tuple[str, ...]:
    """The message fields of msg_type with these JSON names (singular message fields only, the
    ones HasField/ClearField take: a kind's spec and status)."""
    by_json = {f.json_name: f for f in msg_type.DESCRIPTOR.fields}
    return tuple(by_json[n].name for n in json_names
                 if n in by_json and by_json[n].cpp_type == FD.CPPTYPE_MESSAGE and not by_json[n].is_repeated)


def _entry_json(entry: Message) -> dict:
    key = entry.SerializeToString(deterministic=True)
    data = _entries_json.get(key)
    if data is None:
        data = codec.to_dict(entry)
        if len(_entries_json) >= ENTRIES_CACHE:
            _entries_json.clear()
        _entries_json[key] = data
    return data


@lru_cache(maxsize=8)
def _server_owned(meta_type) -> tuple[str, ...]:
    """The fields of a metadata message that ssa.SERVER_OWNED names (by their JSON names)."""
    return tuple(f.name for f in meta_type.DESCRIPTOR.fields if f.json_name in ssa.SERVER_OWNED)


_PLACEHOLDER = {FD.CPPTYPE_STRING: "x", FD.CPPTYPE_BOOL: True, FD.CPPTYPE_INT32: 1, FD.CPPTYPE_INT64: 1,
                FD.CPPTYPE_UINT32: 1, FD.CPPTYPE_UINT64: 1, FD.CPPTYPE_FLOAT: 1.0, FD.CPPTYPE_DOUBLE: 1.0}


def _hollow(msg: Message) -> None:
    """Every scalar set outside a list or map replaced by one placeholder of its type, in place.
    A create's field set depends on which fields are set, and on values only where they are
    list keys, set members or map keys: all inside lists and maps, which stay as they are (as
    does an Any, whose type names its fields)."""
    for fd, value in msg.ListFields():
        if fd.is_repeated:                       # lists and maps
            continue
        if fd.cpp_type == FD.CPPTYPE_MESSAGE:
            if fd.message_type.full_name != "google.protobuf.Any":
                _hollow(value)
        elif fd.type == FD.TYPE_BYTES:
            setattr(msg, fd.name, b"x")
        elif fd.cpp_type in _PLACEHOLDER:        # enums keep their value
            setattr(msg, fd.name, _PLACEHOLDER[fd.cpp_type])


def _shape(new: Message) -> bytes:
    """A create's cache key for its managedFields entries: the object's bytes without the
    server-owned metadata (name, uid, ...) and with its scalars hollowed (_hollow), equal for
    every pod of a template and every event a component records of one kind (they differ in
    names, messages and times).  ~10 us; the dict ssa keys by costs ~20-70 (a defaulted pod),
    an Event's entries ~180."""
    shape = type(new)()
    shape.CopyFrom(new)
    for name in _server_owned(type(shape.metadata)):
        shape.metadata.ClearField(name)
    _hollow(shape)
    return shape.SerializeToString(deterministic=True)


def with_managed_fields(obj: Message, tracked: dict) -> Message:
    """obj with the managedFields of `tracked` (a manifest dict of the same object)."""
    return set_managed_fields(obj, (tracked.get("metadata") or {}).get("managedFields") or [])


# The same few field sets come back write after write (every pod of a template, every
# status update of a kind): their Struct is built once and copied as bytes after.
FIELDS_V1_CACHE = 1024
_fields_v1: dict[str, bytes] = {}


def _fields_v1_bytes(tree) -> bytes:
    key = repr(tree)
    raw = _fields_v1.get(key)
    if raw is None:
        s = struct_pb2.Struct()
        s.update(tree)
        raw = s.SerializeToString()
        if len(_fields_v1) >= FIELDS_V1_CACHE:
            _fields_v1.clear()
        _fields_v1[key] = raw
    return raw


@lru_cache(maxsize=256)
def _time(text: str) -> tuple[int, int]:
    """An entry's RFC 3339 time as (seconds, nanos); ValueError as Timestamp.FromJsonString's."""
    t = timestamp_pb2.Timestamp()
    t.FromJsonString(text)
    return t.seconds, t.nanos


def set_managed_fields(obj: Message, entries: list[dict]) -> Message:
    """obj with these managedFields entries (dicts as in a manifest): only that list
    is built, not the whole object decoded again."""
    obj.metadata.ClearField("managed_fields")
    try:           # built directly: the generic decoder cost ~2/3 of an HTTP create's tracking
        for e in entries:
            m = obj.metadata.managed_fields.add(
                manager=e.get("manager", ""), operation=e.get("operation", ""),
                api_version=e.get("apiVersion", ""), fields_type=e.get("fieldsType", ""),
                subresource=e.get("subresource", ""))
            if e.get("time"):
                m.time.seconds, m.time.nanos = _time(e["time"])
            if e.get("fieldsV1") is not None:
                m.fields_v1.MergeFromString(_fields_v1_bytes(e["fieldsV1"]))
        return obj
    except (ValueError, TypeError, AttributeError):     # an entry the client sent malformed:
        obj.metadata.ClearField("managed_fields")       # the decoder names the field and the rule
    info = kinds.of(obj)
    part = codec.from_dict({"apiVersion": info.api_version, "kind": info.kind,
                            "metadata": {"managedFields": entries}})
    obj.metadata.managed_fields.extend(part.metadata.managed_fields)
    return obj


def grpc_field_manager(request, context, subresource: str, options_kind: str) -> FieldManager:
    """The FieldManager of a gRPC Create/Update: its field_manager, else the `user-agent` metadata."""
    agent = next((v for k, v in context.invocation_metadata() or () if k == "user-agent"), "")
    return FieldManager(named(request.field_manager, agent, options_kind), subresource)
