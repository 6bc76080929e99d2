"""Keys, stored bytes and selectors: what the apiserver does to objects
regardless of kind.

etcd layout: `/registry/<plural>/<namespace>/<name>` for namespaced kinds,
`/registry/<plural>/<name>` for cluster-scoped ones; the value is the
serialized protobuf message with apiVersion/kind filled and
metadata.resourceVersion empty (the revision is etcd's mod_revision).

Output without re-serialising: protobuf merges a repeated occurrence of a
message field into the earlier one, so `stored + encode(metadata{rv})` is a
valid encoding of the stored object with resourceVersion set. Lists and
watches therefore ship etcd's bytes plus a dozen bytes, and parse an object
only when a selector needs to look inside it (after a cheap substring
pre-check).

A Create/Update request's object arrives as a google.protobuf.Any. The gRPC
auth gate must decode it to learn the namespace and name it authorizes,
and the servicer needs it decoded to write it: `unpack_request` (the gate)
remembers what it decoded for the rest of the call (a ContextVar: the gate
and the servicer run in the RPC's one task), and `take_unpacked` (the
servicer) takes it over instead of decoding the same bytes again.
"""
from __future__ import annotations

import contextvars
import re

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from machinery import errors, kinds

from machinery import selectors

ROOT = "/registry"


def key(info: kinds.KindInfo, namespace: str, name: str) -> bytes:
    if info.namespaced:
        return f"{ROOT}/{info.plural}/{namespace}/{name}".encode()
    return f"{ROOT}/{info.plural}/{name}".encode()


def prefix(info: kinds.KindInfo, namespace: str = "") -> bytes:
    if info.namespaced and namespace:
        return f"{ROOT}/{info.plural}/{namespace}/".encode()
    return f"{ROOT}/{info.plural}/".encode()


def name_of_key(info: kinds.KindInfo, k: bytes) -> tuple[str, str]:
    """(namespace, name) from a key."""
    rest = k.decode()[len(ROOT) + len(info.plural) + 2:]
    if info.namespaced:
        ns, _, name = rest.partition("/")
        return ns, name
    return "", rest


def rv_suffix(revision: int) -> bytes:
    rv = str(revision).encode()
    inner = b"\x2a" + bytes([len(rv)]) + rv          # ObjectMeta.resource_version (5)
    return b"\x1a" + bytes([len(inner)]) + inner      # <Kind>.metadata (3)


def with_rv(raw: bytes, revision: int) -> bytes:
    return raw + rv_suffix(revision)


def encode(obj: Message) -> bytes:
    """Stored form: resourceVersion cleared, deterministic (so equal objects
    have equal bytes, which is how no-op updates are detected)."""
    rv = obj.metadata.resource_version
    obj.metadata.resource_version = ""
    try:
        return obj.SerializeToString(deterministic=True)
    finally:
        obj.metadata.resource_version = rv


def decode(info: kinds.KindInfo, raw: bytes, revision: int) -> Message:
    try:
        obj = info.message.FromString(raw)
    except DecodeError as exc:
        raise errors.ApiError(f"internal error: a stored {info.singular} (revision {revision}) "
                              f"cannot be decoded: {exc}") from exc
    obj.metadata.resource_version = str(revision)
    return obj


def to_any(info: kinds.KindInfo, raw: bytes, revision: int) -> any_pb2.Any:
    return any_pb2.Any(type_url=info.type_url, value=with_rv(raw, revision))


def pack(obj: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(obj)
    return a


def unpack(a: any_pb2.Any) -> tuple[kinds.KindInfo, Message]:
    """A request's object: BadRequest for a type kctl does not serve or bytes that do not decode."""
    info = kinds.BY_TYPE_URL.get(a.type_url)
    if info is None:
        raise errors.BadRequest(f"unknown object type {a.type_url or '(empty)'}")
    obj = info.message()
    try:
        if a.Unpack(obj):
            return info, obj
    except DecodeError:
        pass
    raise errors.BadRequest(f"cannot decode {a.type_url}")


# (the Any, what unpack made of it) for the call in progress; see the module docstring
_UNPACKED: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("kctl_unpacked", default=None)


def unpack_request(a: any_pb2.Any) -> tuple[kinds.KindInfo, Message]:
    """unpack(a), remembered for `take_unpacked` later in the same call."""
    out = unpack(a)
    _UNPACKED.set((a, out))
    return out


def take_unpacked(a: any_pb2.Any) -> tuple[kinds.KindInfo, Message]:
    """What `unpack_request` made of this very Any in this call (then forgotten, as the
    caller may change it), else unpack(a)."""
    held = _UNPACKED.get()
    if held is not None:
        _UNPACKED.set(None)
        if held[0] is a:
            return held[1]
    return unpack(a)


# -------------------------------------------------------------- selectors

_TERM = re.compile(r"^\s*([^!=\s]+)\s*(==|=)\s*([^\s,()]+)\s*$")


def _split_terms(s: str) -> list[str]:
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _needles(s: str) -> list[bytes]:
    """Values an object's bytes must contain to match equality terms."""
    found = []
    for term in _split_terms(s or ""):
        m = _TERM.match(term)
        if m and m.group(3) and "\\" not in m.group(3):   # escaped values are left to the real match
            found.append(m.group(3).encode())
    return found


class Filter:
    """A List/Watch request's namespace, label and field selectors."""

    def __init__(self, info: kinds.KindInfo, namespace: str = "", label_selector: str = "",
                 field_selector: str = ""):
        self.info = info
        self.namespace = namespace if info.namespaced else ""
        self.key_prefix = prefix(info, self.namespace)
        self.labels = self.fields = None
        try:
            if label_selector.strip():
                self.labels = selectors.parse_label_selector(label_selector)
            if field_selector.strip():
                self.fields = selectors.parse_field_selector(field_selector, info.kind)
        except ValueError as exc:
            raise errors.BadRequest(str(exc)) from None
        self.needles = _needles(label_selector) + _needles(field_selector)
        self.everything = self.labels is None and self.fields is None

    def maybe(self, raw: bytes) -> bool:
        """Cheap pre-check on stored bytes: False means certainly no match."""
        return all(n in raw for n in self.needles)

    def matches(self, obj: Message) -> bool:
        if self.labels is not None and not self.labels.matches(obj.metadata.labels):
            return False
        if self.fields is not None and not self.fields.matches(obj):
            return False
        return True

    def matches_raw(self, raw: bytes, parsed=None) -> bool:
        if self.everything:
            return True
        if not self.maybe(raw):
            return False
        try:
            return self.matches(parsed if parsed is not None else self.info.message.FromString(raw))
        except DecodeError:      # a value no kctl apiserver wrote: no selector matches it
            return False
