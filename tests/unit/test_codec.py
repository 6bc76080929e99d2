"""Manifest <-> protobuf mapping (machinery/codec.py)."""

import pytest

from machinery import codec, kinds
from machinery.pb import apps_pb2, core_pb2
from tests import k8s_examples

@pytest.mark.parametrize("doc", k8s_examples.document_params())
def test_examples_round_trip_exactly(doc):
    k8s_examples.require()
    obj = codec.from_dict(doc)
    assert type(obj) is kinds.for_kind(doc["kind"]).message
    assert codec.to_dict(obj) == doc


def test_examples_are_found():
    k8s_examples.require()
    assert len(k8s_examples.document_params()) >= 40


def test_unknown_fields_are_all_named_with_paths():
    doc = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "bogus": 1},
           "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x", "colour": "red"}]}}}}
    with pytest.raises(codec.DecodeError) as ei:
        codec.from_dict(doc)
    fields = {i.field for i in ei.value.issues}
    assert fields == {"metadata.bogus", "spec.template.spec.containers[0].colour"}
    assert 'unknown field "spec.template.spec.containers[0].colour"' in str(ei.value)


@pytest.mark.parametrize("path,value,expect", [
    (("spec", "replicas"), "three", "expected integer"),
    (("spec", "replicas"), True, "expected integer"),
    (("spec", "replicas"), 1.5, "expected integer"),
    (("spec", "paused"), "yes", "expected boolean"),
    (("metadata", "name"), 12, "expected string"),
    (("metadata", "labels"), ["a"], "expected object"),
    (("spec", "template"), "x", "expected object"),
])
def test_wrong_types_name_the_field(path, value, expect):
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}
    doc[path[0]][path[1]] = value
    with pytest.raises(codec.DecodeError) as ei:
        codec.from_dict(doc)
    assert [i.field for i in ei.value.issues] == [".".join(path)]
    assert expect in ei.value.issues[0].message


def test_wrong_api_version_is_unknown_kind():
    with pytest.raises(codec.UnknownKindError, match='no matches for kind "Deployment" in version "extensions/v1beta1"'):
        codec.from_dict({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "x"}})


def test_missing_kind():
    with pytest.raises(codec.DecodeError, match="Kind"):
        codec.from_dict({"apiVersion": "v1", "metadata": {"name": "x"}})


def test_int_or_string_both_ways():
    svc = codec.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                           "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 81, "targetPort": "http"}]}})
    assert svc.spec.ports[0].target_port.int_val == 8080
    assert svc.spec.ports[1].target_port.str_val == "http"
    out = codec.to_dict(svc)
    assert [p["targetPort"] for p in out["spec"]["ports"]] == [8080, "http"]
    d = codec.from_dict({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                         "spec": {"strategy": {"rollingUpdate": {"maxSurge": "30%", "maxUnavailable": 0}}}})
    ru = d.spec.strategy.rolling_update
    assert ru.max_surge.str_val == "30%" and ru.max_unavailable.HasField("int_val")
    assert codec.to_dict(d)["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "30%", "maxUnavailable": 0}


def test_quantities_written_as_numbers_become_strings():
    pod = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "i",
                                                    "resources": {"requests": {"cpu": 0.5, "memory": 1024},
                                                                  "limits": {"cpu": 1}}}]}})
    res = pod.spec.containers[0].resources
    assert dict(res.requests) == {"cpu": "0.5", "memory": "1024"}
    assert dict(res.limits) == {"cpu": "1"}
    with pytest.raises(codec.DecodeError):  # numbers are only allowed where quantities are
        codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": 1}}})


def test_int64_and_acronym_fields_come_out_as_kubernetes_writes_them():
    pod = core_pb2.Pod()
    pod.metadata.name = "p"
    pod.metadata.generation = 3
    pod.spec.termination_grace_period_seconds = 30
    pod.status.pod_ip = "10.244.1.2"
    pod.status.host_ip = "172.30.0.11"
    out = codec.to_dict(pod)
    assert out["metadata"]["generation"] == 3
    assert out["spec"]["terminationGracePeriodSeconds"] == 30
    assert out["status"] == {"podIP": "10.244.1.2", "hostIP": "172.30.0.11"}
    assert out["apiVersion"] == "v1" and out["kind"] == "Pod"


def test_explicit_zero_replicas_is_kept():
    d = codec.from_dict({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                         "spec": {"replicas": 0}})
    assert d.spec.HasField("replicas") and d.spec.replicas == 0
    assert codec.to_dict(d)["spec"]["replicas"] == 0
    assert not apps_pb2.Deployment().spec.HasField("replicas")


def test_flow_style_and_markers():
    text = '---\n{apiVersion: v1, kind: Namespace, metadata: {name: dev}}\n...\n---\n# c\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n'
    docs = codec.load_documents(text)
    assert [codec.from_dict(d).metadata.name for d in docs] == ["dev", "b"]


def test_pack_unpack():
    ns = kinds.new("Namespace")
    ns.metadata.name = "x"
    back = codec.unpack(codec.pack(ns))
    assert back == ns


def test_fields_kubernetes_always_prints_are_kept_at_zero():
    pod = core_pb2.Pod()
    pod.metadata.name = "p"
    cs = pod.status.container_statuses.add(name="c", image="busybox")
    cs.state.terminated.reason = "Completed"
    out = codec.to_dict(pod)["status"]["containerStatuses"][0]
    assert out["restartCount"] == 0 and out["ready"] is False
    assert out["state"]["terminated"] == {"exitCode": 0, "reason": "Completed"}
    rs = apps_pb2.ReplicaSet()
    rs.status.ready_replicas = 0
    rs.status.observed_generation = 1
    assert codec.to_dict(rs)["status"]["replicas"] == 0
    # Absent parents stay absent: no status appears out of nothing.
    assert "status" not in codec.to_dict(core_pb2.Pod())


def test_zero_counts_kubernetes_always_prints_are_emitted():
    """No `omitempty` in Kubernetes' Go types: `disruptionsAllowed: 0`, `numberReady: 0` are printed."""
    from harness.objects import new_object
    obj = new_object("PodDisruptionBudget", "p")
    obj.status.observed_generation = 1
    pdb = codec.to_dict(obj)
    assert pdb["status"]["disruptionsAllowed"] == 0 and pdb["status"]["expectedPods"] == 0
    obj = new_object("DaemonSet", "d")
    obj.status.observed_generation = 1
    ds = codec.to_dict(obj)
    assert ds["status"]["numberReady"] == 0 and ds["status"]["desiredNumberScheduled"] == 0
