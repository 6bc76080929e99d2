"""Patch metadata (mergekeys.py) against kctl's protos, and FieldsV1 paths
(fieldpath.py) as structured-merge-diff encodes and prints them."""
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD

from machinery import kinds
from machinery.patch import fieldpath, mergekeys
from machinery.pb import apps_pb2, core_pb2, discovery_pb2, meta_pb2

MESSAGES = {d.full_name: d for mod in (meta_pb2, core_pb2, apps_pb2, discovery_pb2)
            for d in mod.DESCRIPTOR.message_types_by_name.values()}


def _field(name, json_name):
    return next((f for f in MESSAGES[name].fields if f.json_name == json_name), None)


@pytest.mark.parametrize("table", [mergekeys.PATCH_META, mergekeys.LIST_TYPES,
                                   dict.fromkeys(mergekeys.VALUE_STRUCTS | mergekeys.NULL_LISTS, ("", None))])
def test_every_table_entry_names_a_real_field_and_real_keys(table):
    for (msg, json_name), meta in table.items():
        f = _field(msg, json_name)
        assert f is not None, (msg, json_name)
        keys = meta[1] if isinstance(meta[1], tuple) else ((meta[1],) if meta[1] else ())
        for key in keys:
            assert f.type == FD.TYPE_MESSAGE and _field(f.message_type.full_name, key) is not None, key


@pytest.mark.parametrize("msg,field,expected", [
    (core_pb2.PodSpec.DESCRIPTOR, "containers", ("merge", "name")),
    (core_pb2.PodSpec.DESCRIPTOR, "volumes", ("merge,retainKeys", "name")),
    (core_pb2.Container.DESCRIPTOR, "volumeMounts", ("merge", "mountPath")),
    (core_pb2.Container.DESCRIPTOR, "ports", ("merge", "containerPort")),
    (core_pb2.ServiceSpec.DESCRIPTOR, "ports", ("merge", "port")),
    (meta_pb2.ObjectMeta.DESCRIPTOR, "ownerReferences", ("merge", "uid")),
    (meta_pb2.ObjectMeta.DESCRIPTOR, "finalizers", ("merge", None)),
    (apps_pb2.DeploymentSpec.DESCRIPTOR, "strategy", ("retainKeys", None)),
    (apps_pb2.DeploymentStatus.DESCRIPTOR, "conditions", ("merge", "type")),
    (core_pb2.PodSpec.DESCRIPTOR, "tolerations", None),       # atomic in Kubernetes too
    (core_pb2.Container.DESCRIPTOR, "args", None),
])
def test_patch_meta_is_kubernetes_struct_tags(msg, field, expected):
    assert mergekeys.patch_meta(msg, field) == expected
    assert mergekeys.patch_meta(msg.full_name, field) == expected


def test_every_repeated_field_of_every_kind_has_an_apply_list_type():
    """Walk each kind: every repeated field resolves to atomic, set or map,
    and every map list's keys exist on its item."""
    seen = set()

    def walk(desc):
        if desc.full_name in seen:
            return
        seen.add(desc.full_name)
        for f in desc.fields:
            t = fieldpath.field_type(desc, f.json_name)
            if t.kind == "list":
                assert t.list_kind in ("atomic", "set", "map")
                if t.list_kind == "map":
                    assert all(_field(t.elem.desc.full_name, k) for k in t.keys)
            for sub in (t, t.elem):
                if sub is not None and sub.kind == "struct":
                    walk(sub.desc)

    for info in kinds.KINDS:
        walk(info.message.DESCRIPTOR)
    assert "kctl.v1.Container" in seen and "kctl.v1.ObjectMeta" in seen


def test_zero_object_holds_the_value_structs():
    assert mergekeys.zero_object(apps_pb2.Deployment.DESCRIPTOR) == {
        "metadata": {}, "spec": {"template": {"metadata": {}, "spec": {"containers": None}}, "strategy": {}},
        "status": {}}


def test_container_ports_are_keyed_with_the_protocol_default():
    t = fieldpath.field_type(core_pb2.Container.DESCRIPTOR, "ports")
    assert (t.list_kind, t.keys, t.key_defaults) == ("map", ("containerPort", "protocol"),
                                                     (("protocol", "TCP"),))
    pe = fieldpath.item_element(t, {"containerPort": 80})
    assert fieldpath.element_key(pe) == 'k:{"containerPort":80,"protocol":"TCP"}'
    assert fieldpath.path_string([("f", "ports"), pe]) == '.ports[containerPort=80,protocol="TCP"]'


# A deployment's managedFields shaped as kube-apiserver writes them for
# `kubectl create deployment web --image=nginx --port=80`.
KUBERNETES_FIELDS_V1 = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {}, "f:selector": {},
        "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
        "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                    "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
                        ".": {}, "f:containerPort": {}, "f:protocol": {}}},
                    "f:resources": {}, "f:terminationMessagePath": {},
                    "f:terminationMessagePolicy": {}}},
                "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}}}


def test_kubernetes_fields_v1_round_trips():
    paths = fieldpath.from_fields_v1(KUBERNETES_FIELDS_V1)
    assert ((("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "containers"),
             ("k", (("name", "nginx"),)), ("f", "ports"),
             ("k", (("containerPort", 80), ("protocol", "TCP"))))) in paths
    assert ((("f", "metadata"), ("f", "labels"))) in paths           # the "." member
    assert fieldpath.to_fields_v1(paths) == KUBERNETES_FIELDS_V1


@pytest.mark.parametrize("path,text,key", [
    ([("f", "spec"), ("f", "replicas")], ".spec.replicas", "f:replicas"),
    ([("f", "metadata"), ("f", "finalizers"), ("v", "a<b")], '.metadata.finalizers[="a<b"]', 'v:"a\\u003cb"'),
    ([("f", "spec"), ("f", "containers"), ("k", (("name", "app"),)), ("f", "image")],
     '.spec.containers[name="app"].image', "f:image"),
    ([("f", "x"), ("i", 3)], ".x[3]", "i:3"),
])
def test_path_strings_and_element_keys(path, text, key):
    assert fieldpath.path_string(path) == text
    assert fieldpath.element_key(path[-1]) == key
    assert fieldpath.parse_element(key) == path[-1]


@pytest.mark.parametrize("bad", ["x:1", "f", 'k:["a"]', "i:one"])
def test_malformed_path_elements_are_refused(bad):
    with pytest.raises(ValueError):
        fieldpath.parse_element(bad)
