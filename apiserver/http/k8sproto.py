"""The few Kubernetes protobuf bodies kubectl sends that kctl reads.

client-go's typed clients (Kubernetes 1.31+) encode request bodies as
`application/vnd.kubernetes.protobuf`: the magic `k8s\\0` then a
runtime.Unknown {typeMeta{apiVersion, kind}, raw, ...} whose `raw` is the
object in the wire format of k8s.io/api's generated.proto. kctl's own
protos are not wire-compatible with those, so only the messages kubectl's
typed calls need here are described, with the field numbers of
k8s.io/api and k8s.io/apimachinery (proto2): policy/v1 Eviction (kubectl
drain) and meta/v1 DeleteOptions (typed deletes). Fields not listed are
skipped by the protobuf parser. The result is the JSON form, so the rest
of the HTTP layer sees what a JSON client would have sent. Any other kind
is 415: its JSON form is always accepted.
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from machinery import errors

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "int64": _F.TYPE_INT64, "bool": _F.TYPE_BOOL}
# message -> [(json name, number, type or message name, repeated)]
_MESSAGES = {
    "TypeMeta": [("apiVersion", 1, "string", False), ("kind", 2, "string", False)],
    "Unknown": [("typeMeta", 1, "TypeMeta", False), ("raw", 2, "bytes", False),
                ("contentEncoding", 3, "string", False), ("contentType", 4, "string", False)],
    "ObjectMeta": [("name", 1, "string", False), ("generateName", 2, "string", False),
                   ("namespace", 3, "string", False), ("uid", 5, "string", False),
                   ("resourceVersion", 6, "string", False)],
    "Preconditions": [("uid", 1, "string", False), ("resourceVersion", 2, "string", False)],
    "DeleteOptions": [("gracePeriodSeconds", 1, "int64", False), ("preconditions", 2, "Preconditions", False),
                      ("orphanDependents", 3, "bool", False), ("propagationPolicy", 4, "string", False),
                      ("dryRun", 5, "string", True)],
    "Eviction": [("metadata", 1, "ObjectMeta", False), ("deleteOptions", 2, "DeleteOptions", False)],
}
_READABLE = {"Eviction": "policy/v1", "DeleteOptions": "meta.k8s.io/v1"}


def _build() -> dict:
    fd = descriptor_pb2.FileDescriptorProto(name="kctl_k8s_wire.proto", package="k8swire", syntax="proto2")
    for name, fields in _MESSAGES.items():
        m = fd.message_type.add(name=name)
        for json_name, number, typ, repeated in fields:
            f = m.field.add(name=json_name, number=number, json_name=json_name,
                            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if typ in _SCALARS:
                f.type = _SCALARS[typ]
            else:
                f.type, f.type_name = _F.TYPE_MESSAGE, f".k8swire.{typ}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"k8swire.{name}"))
            for name in _MESSAGES}


_CLASSES = _build()


def _to_dict(msg) -> dict:
    out = {}
    for field, value in msg.ListFields():
        if field.message_type is not None:
            out[field.name] = _to_dict(value)
        else:
            out[field.name] = list(value) if field.is_repeated else value
    return out


def decode(body: bytes) -> dict:
    """A protobuf request body as the JSON object a JSON client would send."""
    if not body.startswith(MAGIC):
        raise errors.BadRequest("the protobuf body does not start with the Kubernetes magic number")
    try:
        unknown = _CLASSES["Unknown"].FromString(body[len(MAGIC):])
        kind = unknown.typeMeta.kind
        if kind not in _READABLE:
            raise errors.UnsupportedMediaType(
                f"kctl reads {kind or 'this kind'} as application/json only, not as {MEDIA_TYPE}")
        out = _to_dict(_CLASSES[kind].FromString(unknown.raw))
    except DecodeError as exc:
        raise errors.BadRequest(f"the protobuf body could not be decoded: {exc}") from None
    return {"apiVersion": unknown.typeMeta.apiVersion or _READABLE[kind], "kind": kind, **out}
