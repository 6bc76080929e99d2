"""metadata.managedFields: the proto field and the codec round trip."""
from machinery import codec

FIELDS_V1 = {"f:metadata": {"f:labels": {"f:app": {}}},
             "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                 'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}


def test_managed_fields_round_trip_through_the_codec():
    """fieldsV1 is free-form JSON (a Struct): keys such as `k:{"name":"app"}` and `.` survive."""
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "w", "managedFields": [
             {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
              "time": "2026-12-06T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": FIELDS_V1},
             {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
              "time": "2026-12-06T10:00:01Z", "fieldsType": "FieldsV1",
              "fieldsV1": {"f:status": {"f:replicas": {}}}, "subresource": "status"}]}}
    msg = codec.from_dict(d)
    assert msg.metadata.managed_fields[1].subresource == "status"
    assert codec.to_dict(msg)["metadata"] == d["metadata"]


def test_fields_v1_must_be_an_object():
    d = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "p", "managedFields": [{"manager": "m", "fieldsV1": "f:spec"}]}}
    try:
        codec.from_dict(d)
    except codec.DecodeError as exc:
        assert "metadata.managedFields[0].fieldsV1: expected object, got string" in str(exc)
    else:
        raise AssertionError("a string fieldsV1 was accepted")
