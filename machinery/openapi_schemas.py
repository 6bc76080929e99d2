"""OpenAPI schemas of kctl's kinds, generated from the protobuf descriptors.

The message descriptors say what fields exist and their types; the proto
comments (distilled by scripts/genproto.py into machinery/pb/docs.json) give
the descriptions (up to a `---` line, after which a comment speaks to
kctl's developers only, as in Kubernetes' Go comments), and a `+required`
marker line where Kubernetes' Go type has the field required (the field
goes into the schema's `required`).
How lists, maps and structs merge (`x-kubernetes-patch-strategy`,
`-patch-merge-key`, `-list-type`, `-list-map-keys`, `-map-type`) comes from
the one table machinery/patch/mergekeys.py keeps for strategic merge patch
and server-side apply.

Schemas are written in the OpenAPI v3 form the Kubernetes apiserver serves
(`/openapi/v3/apis/apps/v1`): named as Kubernetes names them
(`io.k8s.api.apps.v1.Deployment`, `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`),
a field that holds another schema is `{"allOf": [{"$ref": …}], "description": …}`,
camelCase property names as machinery/codec.py reads and writes them.
The codec's special cases have their Kubernetes types: IntOrString fields
refer to `io.k8s.apimachinery.pkg.util.intstr.IntOrString` (integer or
string), the codec's QUANTITY_FIELDS to `io.k8s.apimachinery.pkg.api.resource.Quantity`,
Timestamps to `io.k8s.apimachinery.pkg.apis.meta.v1.Time` (a date-time string),
managedFields' fieldsV1 (a google.protobuf.Struct) to `…meta.v1.FieldsV1`.
machinery/openapi.py puts them into documents; `to_v2` turns a v3 schema
into its Swagger 2.0 form.
"""
from __future__ import annotations

import functools
import json
import pathlib

from google.protobuf.descriptor import Descriptor, FieldDescriptor as FD

from machinery import codec, kinds, openapi_older
from machinery.openapi_meta import (FIELDS_V1, INT_OR_STRING, LIST_META, META, QUANTITY,
                                    TIME, fixed_schemas, list_schema)
from machinery.patch import mergekeys

REF_PREFIX = "#/components/schemas/"
DOCS_PATH = pathlib.Path(__file__).resolve().parent / "pb" / "docs.json"

# Where kctl's messages live in Kubernetes' Go packages: by proto file, with
# the exceptions that share a file with messages of another package.
_PACKAGE_BY_FILE = {
    "machinery/pb/meta.proto": META,
    "machinery/pb/core.proto": "io.k8s.api.core.v1",
    "machinery/pb/apps.proto": "io.k8s.api.apps.v1",
    "machinery/pb/storage.proto": "io.k8s.api.core.v1",
    "machinery/pb/batch.proto": "io.k8s.api.batch.v1",
    "machinery/pb/policy.proto": "io.k8s.api.policy.v1",
    "machinery/pb/scheduling.proto": "io.k8s.api.scheduling.v1",
    "machinery/pb/discovery.proto": "io.k8s.api.discovery.v1",
    "machinery/pb/autoscaling.proto": "io.k8s.api.autoscaling.v2",
    "machinery/pb/serviceaccount.proto": "io.k8s.api.authentication.v1",
    "machinery/pb/certificates.proto": "io.k8s.api.certificates.v1",
    "machinery/pb/rbac.proto": "io.k8s.api.rbac.v1",
}
_PACKAGE_BY_MESSAGE = {
    "kctl.v1.ObjectReference": "io.k8s.api.core.v1",
    "kctl.v1.Lease": "io.k8s.api.coordination.v1",
    "kctl.v1.LeaseSpec": "io.k8s.api.coordination.v1",
    "kctl.v1.StorageClass": "io.k8s.api.storage.v1",
    "kctl.v1.ServiceAccount": "io.k8s.api.core.v1",
}
_KIND_BY_MESSAGE = {k.message.DESCRIPTOR.full_name: k for k in kinds.KINDS}
_SPECIAL = {codec.INT_OR_STRING: INT_OR_STRING, codec.TIMESTAMP: TIME}
# A google.protobuf.Struct holds arbitrary JSON; the fields that use one
# name the Kubernetes type it stands for, any other is a free-form object.
STRUCT = "google.protobuf.Struct"
_STRUCT_FIELDS = {"kctl.v1.ManagedFieldsEntry.fields_v1": FIELDS_V1}
_INT32 = (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_UINT32, FD.TYPE_FIXED32)
_INT64 = (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64, FD.TYPE_UINT64, FD.TYPE_FIXED64)


@functools.cache
def _docs() -> dict[str, str]:
    return json.loads(DOCS_PATH.read_text())


def doc(full_name: str) -> tuple[str, dict[str, list[str]]]:
    """(description, markers) of a message or field: the comment's paragraphs
    before any `---` line, with their lines joined as Kubernetes' descriptions
    are, and its `+name=value` marker lines as {name: [values]} (`+required`
    gives {"required": [""]})."""
    paragraphs, current, markers, internal = [], [], {}, False
    for line in _docs().get(full_name, "").splitlines():
        line = line.strip()
        if line.startswith("+"):
            name, _, value = line[1:].partition("=")
            markers.setdefault(name, []).append(value)
        elif line == "---" or internal:
            internal = True  # the rest of the text speaks to kctl's developers
        elif line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs), markers


def schema_name(desc: Descriptor) -> str:
    """Kubernetes' name of the schema of a message (`io.k8s.api.apps.v1.Deployment`)."""
    if desc.full_name in _SPECIAL:
        return _SPECIAL[desc.full_name]
    package = _PACKAGE_BY_MESSAGE.get(desc.full_name) or _PACKAGE_BY_FILE[desc.file.name]
    return f"{package}.{desc.name}"


def kind_schema_name(info: kinds.KindInfo) -> str:
    return openapi_older.NAMES.get((info.api_version, info.kind)) or schema_name(info.message.DESCRIPTOR)


def list_schema_name(info: kinds.KindInfo) -> str:
    return kind_schema_name(info) + "List"


def ref(name: str) -> dict:
    return {"$ref": REF_PREFIX + name}


def gvk(info: kinds.KindInfo, kind: str | None = None) -> dict:
    return {"group": info.group, "kind": kind or info.kind, "version": info.version}


def _scalar(f) -> dict:
    if f.type in _INT32:
        return {"type": "integer", "format": "int32"}
    if f.type in _INT64:
        return {"type": "integer", "format": "int64"}
    if f.type == FD.TYPE_BOOL:
        return {"type": "boolean"}
    if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return {"type": "number", "format": "double"}
    if f.type == FD.TYPE_BYTES:
        return {"type": "string", "format": "byte"}
    return {"type": "string"}


def _value(f, quantity: bool) -> dict:
    """The schema of one value of field f (one item of a list, one map value)."""
    if f.type == FD.TYPE_MESSAGE and f.message_type.full_name == STRUCT:
        if f.full_name in _STRUCT_FIELDS:
            return ref(_STRUCT_FIELDS[f.full_name])
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if f.type == FD.TYPE_MESSAGE:
        return ref(schema_name(f.message_type))
    return ref(QUANTITY) if quantity else _scalar(f)


def _is_map(f) -> bool:
    return f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def field_schema(f) -> dict:
    quantity = f.full_name in codec.QUANTITY_FIELDS
    description, _ = doc(f.full_name)
    if _is_map(f):
        schema = {"type": "object",
                  "additionalProperties": _value(f.message_type.fields_by_name["value"], quantity)}
    elif f.is_repeated:
        item = _value(f, quantity)
        if "$ref" in item:
            item = {"allOf": [item], "default": {}}
        schema = {"type": "array", "items": item}
        list_type, keys = mergekeys.list_type(f.containing_type, f.json_name)
        schema["x-kubernetes-list-type"] = list_type
        if keys:
            schema["x-kubernetes-list-map-keys"] = list(keys)
    else:
        schema = _value(f, quantity)
        if "$ref" in schema and description:
            schema = {"allOf": [schema]}
    meta = mergekeys.patch_meta(f.containing_type, f.json_name)
    if meta is not None:
        strategy, merge_key = meta
        schema["x-kubernetes-patch-strategy"] = strategy
        if merge_key:
            schema["x-kubernetes-patch-merge-key"] = merge_key
    if _is_map(f) and mergekeys.is_atomic_map(f.containing_type, f.json_name):
        schema["x-kubernetes-map-type"] = "atomic"
    if description:
        schema["description"] = description
    return schema


def message_schema(desc: Descriptor) -> dict:
    description, _ = doc(desc.full_name)
    schema = {"type": "object",
              "properties": {f.json_name: field_schema(f) for f in desc.fields}}
    required = [f.json_name for f in desc.fields if "required" in doc(f.full_name)[1]]
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    if mergekeys.is_atomic_struct(desc):
        schema["x-kubernetes-map-type"] = "atomic"
    info = _KIND_BY_MESSAGE.get(desc.full_name)
    if info is not None:
        schema["x-kubernetes-group-version-kind"] = [gvk(info)]
    return schema


def _messages(roots) -> list[Descriptor]:
    """Every message reachable from roots, maps' entries and special types excluded."""
    seen, order, stack = set(), [], list(roots)
    while stack:
        desc = stack.pop()
        if desc.full_name in seen or desc.full_name in _SPECIAL or desc.full_name == STRUCT:
            continue
        seen.add(desc.full_name)
        if not desc.GetOptions().map_entry:
            order.append(desc)
        stack.extend(f.message_type for f in desc.fields if f.type == FD.TYPE_MESSAGE)
    return order


@functools.cache
def _all_schemas() -> dict[str, dict]:
    schemas = dict(fixed_schemas())
    for desc in _messages(k.message.DESCRIPTOR for k in kinds.KINDS):
        schemas[schema_name(desc)] = message_schema(desc)
    for info in kinds.KINDS:
        schemas[list_schema_name(info)] = list_schema(
            info.kind, ref(kind_schema_name(info)), ref(LIST_META), gvk(info, info.kind + "List"))
    schemas.update(openapi_older.schemas())
    return schemas


def all_schemas() -> dict[str, dict]:
    """Every schema kctl serves, by name (a fresh copy each call)."""
    return json.loads(json.dumps(_all_schemas()))


def refs(node) -> set[str]:
    """The schema names a schema (or any JSON value) refers to."""
    found, stack = set(), [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            r = n.get("$ref")
            if isinstance(r, str) and r.startswith(REF_PREFIX):
                found.add(r[len(REF_PREFIX):])
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return found


def closure(roots, schemas: dict[str, dict]) -> dict[str, dict]:
    """The schemas named in roots and everything they refer to, transitively."""
    out, stack = {}, list(roots)
    while stack:
        name = stack.pop()
        if name not in out:
            out[name] = schemas[name]
            stack.extend(refs(schemas[name]))
    return dict(sorted(out.items()))


def to_v2(node, prefix: str = "#/definitions/"):
    """A v3 schema (or operation part) in its Swagger 2.0 form: refs point
    into `definitions`, `allOf: [{$ref}]` becomes a `$ref` next to the
    description, and v3-only `oneOf` type alternatives become `type: string`
    (how Kubernetes' v2 document writes IntOrString and Quantity)."""
    if isinstance(node, list):
        return [to_v2(n, prefix) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
            out[key] = prefix + value[len(REF_PREFIX):]
        elif key == "allOf" and len(value) == 1 and "$ref" in value[0]:
            out.update(to_v2(value[0], prefix))
        elif key == "oneOf" and all(set(v) == {"type"} for v in value):
            out["type"] = "string"
        elif key == "default" and "allOf" in node:
            continue  # v2 puts nothing next to a $ref but its description
        else:
            out[key] = to_v2(value, prefix)
    return out
