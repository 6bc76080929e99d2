"""Validation tables for ConfigMap, Secret, PersistentVolume,
PersistentVolumeClaim and StorageClass: each bad input yields Kubernetes'
field path, error type and message. Cases named `k8s:` are taken from
Kubernetes' own validation_test.go (TestValidateConfigMap,
TestValidateSecret, TestValidatePersistentVolumes, …)."""
import base64
import copy

import pytest

from machinery import codec, defaults, validation

B64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"},
      "data": {"color": "blue", "app.properties": "a=1\n"}, "binaryData": {"logo.png": "AAEC"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
          "data": {"password": B64("s3cret")}}
PV = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
      "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
               "hostPath": {"path": "/mnt/data"}, "storageClassName": "manual"}}
LOCAL_AFFINITY = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}
PVC = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
SC = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-path"},
      "provisioner": "kctl.io/local-path", "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"}
BASES = {"cm": CM, "secret": SECRET, "pv": PV, "pvc": PVC, "sc": SC}


def obj(base, **top):
    d = copy.deepcopy(BASES[base])
    for k, v in top.items():
        if v is None:
            d.pop(k, None)
        elif isinstance(v, dict) and isinstance(d.get(k), dict) and k == "spec":
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    o = codec.from_dict(d)
    defaults.apply_defaults(o)
    return o


def errors(o, old=None):
    return [str(e) for e in validation.validate(o, old)]


def test_bases_are_valid():
    for base in BASES:
        assert errors(obj(base)) == [], base


BAD_KEY = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
           "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")


@pytest.mark.parametrize("base,edits,want", [
    # k8s: TestValidateConfigMap "invalid key" / "leading dot-dot" / "dot-dot key" / "space in key"
    ("cm", {"data": {"a*b": "x"}}, [f'data[a*b]: Invalid value: "a*b": {BAD_KEY}']),
    ("cm", {"data": {"..dot": "x"}}, ["data[..dot]: Invalid value: \"..dot\": must not start with '..'"]),
    ("cm", {"data": {"..": "x"}}, ["data[..]: Invalid value: \"..\": must not be '..'"]),
    ("cm", {"data": {".": "x"}}, ["data[.]: Invalid value: \".\": must not be '.'"]),
    ("cm", {"data": {"a b": "x"}}, [f'data[a b]: Invalid value: "a b": {BAD_KEY}']),
    ("cm", {"binaryData": {"a/b": "AA=="}}, [f'binaryData[a/b]: Invalid value: "a/b": {BAD_KEY.replace("(e.g.", "(e.g.")}']),
    ("cm", {"data": {"k" * 254: "x"}}, None),                                  # too long: two messages
    ("cm", {"data": {"logo.png": "x"}},
     ['data[logo.png]: Invalid value: "logo.png": duplicate of key present in binaryData']),
    ("cm", {"data": {"big": "x" * (1024 * 1024 + 1)}}, [": Too long: may not be more than 1048576 bytes"]),
    ("secret", {"data": {"a*b": B64("x")}}, [f'data[a*b]: Invalid value: "a*b": {BAD_KEY}']),
    ("secret", {"data": {"big": B64("x" * (1024 * 1024 + 1))}},
     ["data: Too long: may not be more than 1048576 bytes"]),
    # k8s: TestValidateSecret "tls: missing key / cert"
    ("secret", {"type": "kubernetes.io/tls", "data": {"tls.crt": B64("c")}}, ["data[tls.key]: Required value"]),
    ("secret", {"type": "kubernetes.io/tls", "data": {}},
     ["data[tls.crt]: Required value", "data[tls.key]: Required value"]),
    ("secret", {"type": "kubernetes.io/dockerconfigjson", "data": {}}, ["data[.dockerconfigjson]: Required value"]),
    ("secret", {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": B64("{bad")}}, None),
    # k8s: TestValidateSecret "basic-auth: missing username and password" (its literal `%s` path)
    ("secret", {"type": "kubernetes.io/basic-auth", "data": {}},
     ["data[%s][username]: Required value", "data[%s][password]: Required value"]),
    ("secret", {"type": "kubernetes.io/basic-auth", "data": {"username": ""}}, []),
    ("secret", {"type": "kubernetes.io/ssh-auth", "data": {}}, ["data[%s][ssh-privatekey]: Required value"]),
    ("secret", {"type": "kubernetes.io/service-account-token"},
     ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]),
    ("secret", {"type": "example.com/custom"}, []),
])
def test_config_rules(base, edits, want):
    got = errors(obj(base, **edits))
    if want is None:
        assert got, edits
    else:
        assert got == want


def test_secret_string_data_merges_into_data_and_wins():
    s = obj("secret", stringData={"password": "plain", "user": "admin"})
    assert dict(s.data) == {"password": b"plain", "user": b"admin"}
    assert not s.string_data and s.type == "Opaque"
    assert "stringData" not in codec.to_dict(s)
    bad = obj("secret", stringData={"bad key": "x"})
    assert errors(bad) == [f'data[bad key]: Invalid value: "bad key": {BAD_KEY}']


def test_secret_data_prints_as_base64_and_round_trips():
    s = obj("secret", data={"bin": base64.b64encode(b"\x00\xff\x10").decode(), "empty": ""})
    d = codec.to_dict(s)
    assert d["data"] == {"bin": "AP8Q", "empty": ""}
    assert codec.from_dict(d) == s


def test_bad_base64_is_refused_with_the_field_path():
    with pytest.raises(codec.DecodeError, match=r"data\.password: illegal base64 data at input byte 3"):
        codec.from_dict({**SECRET, "data": {"password": "abc!def="}})


@pytest.mark.parametrize("base,change,want", [
    ("cm", {"data": {"color": "red"}}, ["data: Forbidden: field is immutable when `immutable` is set"]),
    ("cm", {"immutable": False}, ["immutable: Forbidden: field is immutable when `immutable` is set"]),
    ("cm", {"binaryData": {}}, ["binaryData: Forbidden: field is immutable when `immutable` is set"]),
    ("secret", {"data": {"password": B64("other")}},
     ["data: Forbidden: field is immutable when `immutable` is set"]),
    ("secret", {"metadata": {"name": "db", "namespace": "default", "labels": {"a": "b"}}}, []),
])
def test_immutable_objects_keep_their_data(base, change, want):
    old = obj(base, immutable=True)
    new = obj(base, **{"immutable": True, **change})
    assert errors(new, old) == want
    mutable = obj(base)
    assert errors(obj(base, **change), mutable) == []


def test_secret_type_is_immutable():
    old = obj("secret")
    new = obj("secret", type="kubernetes.io/basic-auth", data={"username": B64("u")})
    assert errors(new, old) == ['type: Invalid value: "kubernetes.io/basic-auth": field is immutable']


# ------------------------------------------------------------------- PV

@pytest.mark.parametrize("spec,want", [
    # k8s: TestValidatePersistentVolumes "missing-accessmodes", "unexpected-capacity", "missing-capacity"
    ({"accessModes": []}, ["spec.accessModes: Required value"]),
    ({"accessModes": ["fakemode"]}, ['spec.accessModes: Unsupported value: "fakemode": supported values: '
                                     '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"']),
    ({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]},
     ["spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"]),
    ({"capacity": {}}, ["spec.capacity: Required value"]),
    ({"capacity": {"storage": "10Gi", "memory": "1Gi"}}, None),
    ({"capacity": {"storage": "-1Gi"}}, ['spec.capacity[storage]: Invalid value: "-1Gi": '
                                          'must be greater than or equal to 0']),
    # k8s: "invalid-persistent-volume-reclaim-policy"
    ({"persistentVolumeReclaimPolicy": "fakeReclaimPolicy"},
     ['spec.persistentVolumeReclaimPolicy: Unsupported value: "fakeReclaimPolicy": '
      'supported values: "Delete", "Recycle", "Retain"']),
    ({"hostPath": None}, ["spec: Required value: must specify a volume type"]),
    ({"local": {"path": "/mnt/disk"}, "nodeAffinity": LOCAL_AFFINITY},
     ["spec.local: Forbidden: may not specify more than 1 volume type"]),
    ({"hostPath": {"path": "/a/../b"}}, ['spec.hostPath.path: Invalid value: "/a/../b": must not contain \'..\'']),
    # k8s: "local volume requires node affinity"
    ({"hostPath": None, "local": {"path": "/mnt/disk"}},
     ["spec.nodeAffinity: Required value: Local volume requires node affinity"]),
    ({"hostPath": None, "local": {"path": "/mnt/disk"}, "nodeAffinity": LOCAL_AFFINITY}, []),
    ({"nodeAffinity": {}}, ["spec.nodeAffinity.required: Required value: must specify required node constraints"]),
    ({"storageClassName": "Bad_Class"}, None),
    ({"volumeMode": "Sideways"}, ['spec.volumeMode: Unsupported value: "Sideways": supported values: '
                                  '"Block", "Filesystem"']),
])
def test_persistent_volume_rules(spec, want):
    d = copy.deepcopy(PV)
    for k, v in spec.items():
        if v is None:
            d["spec"].pop(k)
        else:
            d["spec"][k] = v
    got = errors(defaulted(d))
    assert got if want is None else got == want


def defaulted(d):
    o = codec.from_dict(d)
    defaults.apply_defaults(o)
    return o


def test_pv_defaults_and_update_rules():
    pv = obj("pv")
    assert pv.spec.persistent_volume_reclaim_policy == "Retain" and pv.spec.volume_mode == "Filesystem"
    moved = obj("pv", spec={"hostPath": {"path": "/elsewhere"}})
    assert errors(moved, pv) == ["spec.persistentvolumesource: Forbidden: "
                                 "spec.persistentvolumesource is immutable after creation"]
    bound = obj("pv", spec={"claimRef": {"namespace": "default", "name": "data"}})
    assert errors(bound, pv) == []


# ------------------------------------------------------------------ PVC

@pytest.mark.parametrize("spec,want", [
    # k8s: TestValidatePersistentVolumeClaim "missing-access-modes", "no-resource-requests", "negative-storage-request"
    ({"accessModes": []}, ["spec.accessModes: Required value: at least 1 access mode is required"]),
    ({"resources": {}}, ["spec.resources[storage]: Required value"]),
    ({"resources": {"requests": {"storage": "-10G"}}},
     ['spec.resources.requests[storage]: Invalid value: "-10G": must be greater than zero']),
    ({"resources": {"requests": {"storage": "0"}}},
     ['spec.resources.requests[storage]: Invalid value: "0": must be greater than zero']),
    ({"selector": {"matchExpressions": [{"key": "k", "operator": "InValid", "values": ["v"]}]}},
     ['spec.selector.matchExpressions[0].operator: Invalid value: "InValid": not a valid selector operator']),
    ({"storageClassName": ""}, []),
    ({"storageClassName": "gold"}, []),
])
def test_persistent_volume_claim_rules(spec, want):
    d = copy.deepcopy(PVC)
    d["spec"].update(spec)
    assert errors(defaulted(d)) == want


def test_pvc_spec_is_immutable_except_binding_and_growth():
    old = obj("pvc")
    msg = ("spec: Forbidden: spec is immutable after creation except resources.requests and "
           "volumeAttributesClassName for bound claims")
    assert errors(obj("pvc", spec={"accessModes": ["ReadWriteMany"]}), old) == [msg]
    assert errors(obj("pvc", spec={"volumeName": "pv1", "storageClassName": "local-path"}), old) == []
    assert errors(obj("pvc", spec={"resources": {"requests": {"storage": "2Gi"}}}), old) == [msg]
    bound = obj("pvc", spec={"volumeName": "pv1"})
    bound.status.phase = "Bound"
    assert errors(obj("pvc", spec={"volumeName": "pv2"}), bound) == [msg]
    assert errors(obj("pvc", spec={"volumeName": "pv1", "resources": {"requests": {"storage": "2Gi"}}}),
                  bound) == []
    assert errors(obj("pvc", spec={"volumeName": "pv1", "resources": {"requests": {"storage": "500Mi"}}}),
                  bound) == ["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]


def test_volume_status_phases():
    pvc, pv = obj("pvc"), obj("pv")
    pvc2, pv2 = obj("pvc"), obj("pv")
    pvc2.status.phase, pv2.status.phase = "Available", "Lost"
    assert [str(e) for e in validation.validate_status_update(pvc2, pvc)] == [
        'status.phase: Unsupported value: "Available": supported values: "Pending", "Bound", "Lost"']
    assert [str(e) for e in validation.validate_status_update(pv2, pv)] == [
        'status.phase: Unsupported value: "Lost": supported values: '
        '"Pending", "Available", "Bound", "Released", "Failed"']


# ---------------------------------------------------------- StorageClass

@pytest.mark.parametrize("edits,want", [
    # k8s: TestValidateStorageClass "namespace is present", "invalid provisioner", "missing provisioner"
    ({"provisioner": None}, ["provisioner: Required value"]),
    ({"provisioner": "kubernetes.io/invalid/provisioner"}, None),
    ({"reclaimPolicy": "Recycle"}, ['reclaimPolicy: Unsupported value: "Recycle": supported values: '
                                    '"Delete", "Retain"']),
    ({"volumeBindingMode": "Later"}, ['volumeBindingMode: Unsupported value: "Later": supported values: '
                                      '"Immediate", "WaitForFirstConsumer"']),
    ({"volumeBindingMode": None, "reclaimPolicy": None}, []),
])
def test_storage_class_rules(edits, want):
    got = errors(obj("sc", **edits))
    assert got if want is None else got == want


def test_storage_class_defaults_and_immutables():
    sc = obj("sc", volumeBindingMode=None, reclaimPolicy=None)
    assert (sc.volume_binding_mode, sc.reclaim_policy) == ("Immediate", "Delete")
    old = obj("sc")
    new = obj("sc", provisioner="x.io/y", parameters={"a": "b"}, reclaimPolicy="Retain",
              volumeBindingMode="Immediate")
    assert errors(new, old) == ["parameters: Forbidden: updates to parameters are forbidden.",
                                "provisioner: Forbidden: updates to provisioner are forbidden.",
                                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
                                'volumeBindingMode: Invalid value: "Immediate": field is immutable']
    annotated = obj("sc", metadata={"name": "local-path",
                                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}})
    assert errors(annotated, old) == []
