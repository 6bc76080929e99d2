"""The OpenAPI documents generated from the proto descriptors (machinery/openapi.py)."""
import hashlib
import json
import pathlib

import pytest

from machinery import codec, kinds, openapi, openapi_schemas
from machinery.openapi_meta import INT_OR_STRING, QUANTITY, TIME

ROOT = pathlib.Path(__file__).resolve().parents[2]
REF = "#/components/schemas/"
GVS = sorted({(k.group, k.version) for k in kinds.KINDS + kinds.OLDER_VERSIONS})


def _doc(info):
    return openapi.v3_document(info.group, info.version)


def _resolve(schema, schemas, prefix=REF):
    """Follow allOf/$ref to the named schema, as kubectl's explain and patch code do."""
    while True:
        if "allOf" in schema:
            schema = schema["allOf"][0]
        elif "$ref" in schema:
            schema = schemas[schema["$ref"][len(prefix):]]
        else:
            return schema


def _walk(schema_name, schemas, path=(), seen=()):
    """(path, property schema, resolved schema) of every property reachable, cycles cut."""
    schema = schemas[schema_name]
    for prop, sub in schema.get("properties", {}).items():
        yield (*path, prop), sub
        target = sub.get("items", sub)
        name = _ref_name(target)
        if name and name not in seen:
            yield from _walk(name, schemas, (*path, prop), (*seen, name))


def _ref_name(schema):
    if "allOf" in schema:
        schema = schema["allOf"][0]
    ref = schema.get("$ref", "")
    return ref[len(REF):] if ref.startswith(REF) else None


# ------------------------------------------------------------------ index

def test_index_lists_every_served_group_version_with_its_hash():
    index = openapi.v3_index()
    assert set(index["paths"]) == {"api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1", "apis/batch/v1",
                                   "apis/policy/v1", "apis/storage.k8s.io/v1", "apis/scheduling.k8s.io/v1",
                                   "apis/discovery.k8s.io/v1", "apis/autoscaling/v2", "apis/autoscaling/v1",
                                   "apis/certificates.k8s.io/v1", "apis/rbac.authorization.k8s.io/v1"}
    for group, version in GVS:
        key = f"apis/{group}/{version}" if group else f"api/{version}"
        data = openapi.v3_document_bytes(group, version)
        digest = hashlib.sha512(data).hexdigest().upper()
        assert index["paths"][key] == {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        assert openapi.v3_etag(group, version) == digest


def test_unknown_group_version_has_no_document():
    assert openapi.v3_document("example.com", "v1") is None
    assert openapi.v3_document("apps", "v2") is None
    assert openapi.v3_etag("example.com", "v1") is None


def test_documents_are_fresh_copies():
    doc = openapi.v3_document("apps", "v1")
    doc["components"]["schemas"].clear()
    assert openapi.v3_document("apps", "v1")["components"]["schemas"]


# ------------------------------------------------------------------ structure

@pytest.mark.parametrize("group,version", GVS)
def test_every_v3_ref_resolves_within_its_document(group, version):
    doc = openapi.v3_document(group, version)
    assert doc["openapi"].startswith("3.")
    names = openapi_schemas.refs(doc)
    assert names and names <= set(doc["components"]["schemas"])


def test_every_v2_ref_resolves():
    doc = openapi.v2_document()
    assert doc["swagger"] == "2.0"
    assert json.loads(openapi.v2_document_bytes()) == doc
    assert "#/components/" not in str(doc)
    found = openapi_schemas.refs(_v2_as_v3(doc))
    assert found and found <= set(doc["definitions"])


def _v2_as_v3(node):
    if isinstance(node, dict):
        return {k: (REF + v[len("#/definitions/"):] if k == "$ref" else _v2_as_v3(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_v2_as_v3(n) for n in node]
    return node


def test_v2_and_v3_agree_on_definitions():
    v2 = openapi.v2_document()["definitions"]
    v3 = {}
    for group, version in GVS:
        v3.update(openapi.v3_document(group, version)["components"]["schemas"])
    assert set(v2) == set(v3)
    for name, schema in v3.items():
        assert set(v2[name].get("properties", {})) == set(schema.get("properties", {})), name
        assert v2[name].get("required") == schema.get("required"), name
        assert v2[name].get("x-kubernetes-group-version-kind") == \
            schema.get("x-kubernetes-group-version-kind"), name
    assert v2[INT_OR_STRING]["type"] == "string" and v2[INT_OR_STRING]["format"] == "int-or-string"
    assert v2[QUANTITY]["type"] == "string"
    # v2 writes a reference as a $ref next to its description, without allOf
    strategy = v2["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
    assert "allOf" not in strategy and strategy["description"]


def test_v2_paths_have_bodies_and_responses():
    doc = openapi.v2_document()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    body = [p for p in patch["parameters"] if p["in"] == "body"]
    assert body == [{"name": "body", "in": "body", "required": True,
                     "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}]
    assert {"name": "fieldValidation", "in": "query", "type": "string"}.items() <= \
        next(p for p in patch["parameters"] if p["name"] == "fieldValidation").items()
    assert patch["responses"]["200"]["schema"] == {"$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"}


# ------------------------------------------------------------------ kinds

@pytest.mark.parametrize("info", kinds.KINDS, ids=lambda k: k.kind)
def test_every_kind_has_its_gvk_schema_and_list(info):
    schemas = _doc(info)["components"]["schemas"]
    gvk = {"group": info.group, "kind": info.kind, "version": info.version}
    matching = [n for n, s in schemas.items() if gvk in s.get("x-kubernetes-group-version-kind", [])]
    prefix = f"io.k8s.api.{info.group.split('.')[0] or 'core'}.{info.version}."
    assert matching == [prefix + info.kind]
    lst = schemas[prefix + info.kind + "List"]
    assert lst["x-kubernetes-group-version-kind"] == [{**gvk, "kind": info.kind + "List"}]
    assert lst["properties"]["items"]["items"]["allOf"] == [{"$ref": REF + prefix + info.kind}]


@pytest.mark.parametrize("info", kinds.KINDS, ids=lambda k: k.kind)
def test_patch_operation_supports_field_validation_and_strategic_merge(info):
    """What cli-runtime's queryParamVerifierV3 and kubectl apply's patcher look for."""
    doc = _doc(info)
    gvk = {"group": info.group, "kind": info.kind, "version": info.version}
    patches = [(p, item["patch"]) for p, item in doc["paths"].items()
               if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk]
    path, op = patches[0]
    assert path.endswith(f"/{info.plural}/{{name}}")
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in op["parameters"])
    assert "application/strategic-merge-patch+json" in op["requestBody"]["content"]
    assert "application/apply-patch+yaml" in op["requestBody"]["content"]


@pytest.mark.parametrize("info", kinds.KINDS, ids=lambda k: k.kind)
def test_explain_finds_the_kind_through_the_resource_paths(info):
    """kubectl explain looks for the GVK on the operations of these four paths."""
    prefix = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    ns = f"{prefix}/namespaces/{{namespace}}/{info.plural}"
    searched = [f"{prefix}/{info.plural}", f"{prefix}/{info.plural}/{{name}}", ns, ns + "/{name}"]
    paths = _doc(info)["paths"]
    gvks = [op["x-kubernetes-group-version-kind"] for p in searched if p in paths
            for m, op in paths[p].items() if m in ("get", "post", "put", "patch", "delete")]
    assert gvks and all(g["kind"] == info.kind for g in gvks)
    item = paths[(ns if info.namespaced else f"{prefix}/{info.plural}") + "/{name}"]
    assert [p["name"] for p in item["parameters"]] == (["name", "namespace"] if info.namespaced
                                                       else ["name"])


def test_operation_ids_follow_kubernetes():
    paths = openapi.v3_document("", "v1")["paths"]
    assert paths["/api/v1/namespaces/{namespace}/pods"]["get"]["operationId"] == "listCoreV1NamespacedPod"
    assert paths["/api/v1/namespaces/{namespace}/pods"]["delete"]["operationId"] == \
        "deleteCoreV1CollectionNamespacedPod"
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert paths["/api/v1/nodes/{name}/status"]["patch"]["operationId"] == "patchCoreV1NodeStatus"
    assert "/api/v1/namespaces/{namespace}/events/{name}/status" not in paths
    lease = openapi.v3_document("coordination.k8s.io", "v1")["paths"]
    assert lease["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["put"][
        "operationId"] == "replaceCoordinationV1NamespacedLease"


# ------------------------------------------------------------------ schemas

def test_schema_names_follow_kubernetes_packages():
    names = openapi_schemas.all_schemas()
    for expected in ("io.k8s.api.core.v1.ObjectReference", "io.k8s.api.coordination.v1.LeaseSpec",
                     "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                     "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
                     "io.k8s.api.core.v1.PodTemplateSpec", "io.k8s.api.apps.v1.DeploymentStrategy"):
        assert expected in names
    assert not [n for n in names if "kctl" in n or "google" in n]


def test_golden_deployment_spec_shape():
    schemas = openapi_schemas.all_schemas()
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["type"] == "object"
    assert spec["required"] == ["selector", "template"]
    assert spec["description"] == ("DeploymentSpec is the specification of the desired "
                                   "behavior of the Deployment.")
    assert spec["properties"]["strategy"] == {
        "allOf": [{"$ref": REF + "io.k8s.api.apps.v1.DeploymentStrategy"}],
        "description": "The deployment strategy to use to replace existing pods with new ones.",
        "x-kubernetes-patch-strategy": "retainKeys"}
    assert spec["properties"]["replicas"]["type"] == "integer"
    assert spec["properties"]["replicas"]["format"] == "int32"
    assert spec["properties"]["paused"]["type"] == "boolean"
    rolling = schemas["io.k8s.api.apps.v1.RollingUpdateDeployment"]["properties"]["maxSurge"]
    assert rolling["allOf"] == [{"$ref": REF + INT_OR_STRING}]
    assert "25%" in rolling["description"]


def test_golden_special_types():
    schemas = openapi_schemas.all_schemas()
    assert schemas[INT_OR_STRING]["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schemas[INT_OR_STRING]["x-kubernetes-int-or-string"] is True
    assert schemas[INT_OR_STRING]["format"] == "int-or-string"
    assert schemas[QUANTITY]["oneOf"] == [{"type": "string"}, {"type": "number"}]
    assert schemas[TIME] == {**schemas[TIME], "type": "string", "format": "date-time"}
    meta = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["creationTimestamp"]["allOf"] == [{"$ref": REF + TIME}]
    assert meta["labels"]["type"] == "object"
    assert meta["labels"]["additionalProperties"] == {"type": "string"}
    assert meta["generation"]["format"] == "int64"
    limits = schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"$ref": REF + QUANTITY}
    divisor = schemas["io.k8s.api.core.v1.ResourceFieldSelector"]["properties"]["divisor"]
    assert divisor["allOf"] == [{"$ref": REF + QUANTITY}]
    assert schemas["io.k8s.api.core.v1.ContainerPort"]["properties"]["hostIP"]["type"] == "string"


def test_golden_list_fields_carry_patch_metadata():
    schemas = openapi_schemas.all_schemas()
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["items"] == {"allOf": [{"$ref": REF + "io.k8s.api.core.v1.Container"}],
                                   "default": {}}
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    env = schemas["io.k8s.api.core.v1.Container"]["properties"]["env"]
    assert env["x-kubernetes-patch-merge-key"] == "name"
    args = schemas["io.k8s.api.core.v1.Container"]["properties"]["args"]
    assert args["items"] == {"type": "string"}
    assert "x-kubernetes-patch-merge-key" not in args
    assert args["x-kubernetes-list-type"] == "atomic"


def test_property_names_are_the_codec_json_names():
    """Every key of real manifests, read and written back by the codec, is a schema property."""
    schemas = openapi_schemas.all_schemas()
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs += codec.load_documents(path.read_text())
    assert docs
    for data in docs:
        obj = codec.from_dict(data)
        name = openapi_schemas.kind_schema_name(kinds.of(obj))
        _assert_keys_in_schema(codec.to_dict(obj), schemas[name], schemas, name)


def _assert_keys_in_schema(value, schema, schemas, path):
    schema = _resolve(schema, schemas)
    if isinstance(value, dict):
        if "additionalProperties" in schema:
            for k, v in value.items():
                _assert_keys_in_schema(v, schema["additionalProperties"], schemas, f"{path}[{k}]")
            return
        for k, v in value.items():
            assert k in schema.get("properties", {}), f"{path}.{k} is not in the schema"
            _assert_keys_in_schema(v, schema["properties"][k], schemas, f"{path}.{k}")
    elif isinstance(value, list):
        assert schema["type"] == "array", path
        for i, v in enumerate(value):
            _assert_keys_in_schema(v, schema["items"], schemas, f"{path}[{i}]")
    elif isinstance(value, bool):
        assert schema.get("type") == "boolean", path
    elif isinstance(value, int):
        assert schema.get("type") == "integer" or {"type": "integer"} in schema.get("oneOf", []), path
    elif isinstance(value, str):
        assert schema.get("type") == "string" or {"type": "string"} in schema.get("oneOf", []), path


DOCUMENTED = ["io.k8s.api.apps.v1.Deployment", "io.k8s.api.apps.v1.ReplicaSet",
              "io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.Node",
              "io.k8s.api.core.v1.Namespace"]


@pytest.mark.parametrize("kind", DOCUMENTED)
def test_every_field_of_the_main_kinds_is_documented(kind):
    schemas = openapi_schemas.all_schemas()
    missing = [".".join(p) for p, sub in _walk(kind, schemas) if not sub.get("description")]
    assert missing == []
    for name in (kind, kind + "Spec", kind + "Status"):
        if name in schemas:
            assert schemas[name]["description"], name
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["description"]


def test_descriptions_have_no_markers_or_comment_syntax():
    for name, schema in openapi_schemas.all_schemas().items():
        for prop, sub in schema.get("properties", {}).items():
            text = sub.get("description", "")
            assert "+required" not in text and "//" not in text.replace("://", ""), (name, prop)


def test_doc_splits_paragraphs_and_markers(monkeypatch):
    monkeypatch.setattr(openapi_schemas, "_docs", lambda: {
        "x.Y.z": "First line\ncontinues here.\n\nSecond paragraph.\n+required\n+listMapKey=a\n+listMapKey=b"})
    text, markers = openapi_schemas.doc("x.Y.z")
    assert text == "First line continues here.\n\nSecond paragraph."
    assert markers == {"required": [""], "listMapKey": ["a", "b"]}
    assert openapi_schemas.doc("x.Y.absent") == ("", {})


def test_doc_leaves_out_developer_notes_after_three_dashes(monkeypatch):
    monkeypatch.setattr(openapi_schemas, "_docs", lambda: {"x.Y": "For users.\n---\nFor us.\n+required"})
    assert openapi_schemas.doc("x.Y") == ("For users.", {"required": [""]})


def test_developer_notes_stay_out_of_the_documents():
    desc = openapi_schemas.all_schemas()["io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"]
    assert desc["description"].startswith("ManagedFieldsEntry is a workflow-id")
    assert "machinery/" not in desc["description"]


def test_to_v2_rewrites_refs_allof_and_oneof():
    v3 = {"a": {"allOf": [{"$ref": REF + "N"}], "default": {}, "description": "d"},
          "b": {"oneOf": [{"type": "integer"}, {"type": "string"}], "format": "int-or-string"},
          "c": {"items": {"$ref": REF + "M"}}}
    assert openapi_schemas.to_v2(v3) == {
        "a": {"$ref": "#/definitions/N", "description": "d"},
        "b": {"type": "string", "format": "int-or-string"},
        "c": {"items": {"$ref": "#/definitions/M"}}}


def test_managed_fields_and_free_form_structs():
    schemas = openapi_schemas.all_schemas()
    managed = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["managedFields"]
    assert managed["items"]["allOf"] == [{"$ref": REF + "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"}]
    assert managed["x-kubernetes-list-type"] == "atomic"
    entry = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"]["properties"]
    assert entry["fieldsV1"]["allOf"] == [{"$ref": REF + "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"}]
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"]["type"] == "object"
    assert not [n for n in schemas if n.startswith("google")]
    from google.protobuf import struct_pb2
    other = openapi_schemas.field_schema(struct_pb2.Value.DESCRIPTOR.fields_by_name["struct_value"])
    assert other == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
