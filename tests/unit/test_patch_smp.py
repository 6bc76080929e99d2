"""Strategic merge patch (machinery/patch/smp.py): Kubernetes' own cases from
strategicpatch/patch_test.go (data in test_patch_smp_k8s_cases.yaml), then
kctl's types navigated through their proto descriptors."""
import copy
import json
import pathlib

import pytest
import yaml

from machinery import errors, kinds
from machinery.patch import apply_patch, smp
from machinery.patch.goerrors import Unprocessable

CASES = yaml.safe_load((pathlib.Path(__file__).parent / "test_patch_smp_k8s_cases.yaml").read_text())

# patch_test.go's MergeItem and RetainKeysMergeItem, as their struct tags say.
MERGE_ITEM = smp.StructSchema({})
RETAIN_KEYS_ITEM = smp.StructSchema({})
MERGE_ITEM.fields.update({
    "mergingList": (MERGE_ITEM, "merge", "name"),
    "nonMergingList": (MERGE_ITEM, "", ""),
    "mergingIntList": (None, "merge", ""),
    "nonMergingIntList": (None, "", ""),
    "mergeItemPtr": (MERGE_ITEM, "merge", "name"),
    "simpleMap": (None, "", ""),
    "replacingItem": (None, "replace", ""),
    "retainKeysMap": (RETAIN_KEYS_ITEM, "retainKeys", ""),
    "retainKeysMergingList": (MERGE_ITEM, "merge,retainKeys", "name"),
})
RETAIN_KEYS_ITEM.fields.update({
    "simpleMap": (None, "", ""),
    "mergingIntList": (None, "merge", ""),
    "mergingList": (MERGE_ITEM, "merge", "name"),
    "nonMergingList": (MERGE_ITEM, "", ""),
})

K8S_CHECKS = [pytest.param(check, id=f"{case['description']}[{check['apply']}]")
              for case in CASES for check in case["checks"]]


def test_the_kubernetes_cases_are_all_there():
    """126 cases from patch_test.go, 241 patch applications in all."""
    assert len(CASES) == 126
    assert len(K8S_CHECKS) == 241


@pytest.mark.parametrize("check", K8S_CHECKS)
def test_kubernetes_patch_test_go_case(check):
    """Each case of Kubernetes' TestStrategicMergePatch / TestCustomStrategicMergePatch:
    applying the patch Kubernetes generated yields Kubernetes' result, list order included."""
    before = copy.deepcopy(check["to"])
    if "error" in check:
        with pytest.raises(errors.ApiError) as exc:
            smp.strategic_merge(check["to"], check["patch"], MERGE_ITEM)
        assert check["error"] in exc.value.message
        return
    got = smp.strategic_merge(check["to"], check["patch"], MERGE_ITEM)
    assert json.dumps(got, sort_keys=True) == json.dumps(check["result"], sort_keys=True)
    assert check["to"] == before


# ------------------------------------------------------------ kctl's types

DEPLOY = kinds.BY_KIND["Deployment"]
POD = kinds.BY_KIND["Pod"]
SMP = "application/strategic-merge-patch+json"


def deployment(containers, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"replicas": 2, **spec,
                     "template": {"spec": {"containers": containers}}}}


def smp_apply(obj, patch, info=DEPLOY):
    return apply_patch(SMP, obj, json.dumps(patch).encode(), info)


def test_kubectl_client_side_apply_patch_from_design_md():
    """The patch kubectl apply sends (design.md §7): update app, drop the sidecar."""
    live = deployment([{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                       {"name": "sidecar", "image": "busybox"}])
    before = copy.deepcopy(live)
    out = smp_apply(live, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"image": "nginx:1.28", "name": "app"},
                       {"$patch": "delete", "name": "sidecar"}]}}}})
    assert out["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "image": "nginx:1.28", "ports": [{"containerPort": 80}]}]
    assert live == before


@pytest.mark.parametrize("patch,expected", [
    # env merges by name; the item not named in the patch stays; with no
    # $setElementOrder a new item goes first (mergeSortedSlice), as in Kubernetes
    ({"env": [{"name": "B", "value": "2"}]}, [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]),
    ({"env": [{"name": "A", "value": "9"}]}, [{"name": "A", "value": "9"}]),
    # $setElementOrder decides
    ({"$setElementOrder/env": [{"name": "A"}, {"name": "B"}], "env": [{"name": "B", "value": "2"}]},
     [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
    # $patch: replace inside the list replaces the whole list
    ({"env": [{"name": "C", "value": "3"}, {"$patch": "replace"}]}, [{"name": "C", "value": "3"}]),
    # $patch: delete by key
    ({"env": [{"name": "A", "$patch": "delete"}]}, None),
])
def test_env_merges_by_name(patch, expected):
    live = deployment([{"name": "app", "image": "x", "env": [{"name": "A", "value": "1"}]}])
    out = smp_apply(live, {"spec": {"template": {"spec": {"containers": [{"name": "app", **patch}]}}}})
    assert out["spec"]["template"]["spec"]["containers"][0].get("env") == (expected or [])


def test_container_ports_merge_by_container_port_alone():
    """Kubernetes' quirk (kubernetes/kubernetes#39188): patchMergeKey is
    containerPort, so a UDP port with the number of a TCP one merges into it."""
    live = deployment([{"name": "app", "image": "x",
                        "ports": [{"containerPort": 53, "protocol": "TCP"}]}])
    out = smp_apply(live, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 80}]}]}}}})
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 53, "protocol": "UDP"}, {"containerPort": 80}]


def test_service_ports_with_one_number_and_two_protocols_collapse_as_in_kubernetes():
    """kubernetes/kubernetes#103544: patching a Service's 443/TCP and 443/UDP
    ports with themselves yields two 443/UDP ports, as Kubernetes does."""
    ports = [{"name": "https-tcp", "port": 443, "protocol": "TCP", "targetPort": 8443},
             {"name": "http3-quic", "port": 443, "protocol": "UDP", "targetPort": 8443}]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": ports}}
    out = smp_apply(svc, {"spec": {"ports": ports}}, kinds.BY_KIND["Service"])
    assert out["spec"]["ports"] == [ports[1], ports[1]]


def test_atomic_lists_are_replaced_whole():
    """args and tolerations have no patch strategy in Kubernetes: replaced."""
    live = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x", "args": ["1", "2"]}],
                     "tolerations": [{"key": "a", "operator": "Exists"}]}}
    out = smp_apply(live, {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}],
                                    "containers": [{"name": "a", "args": ["3"]}]}}, POD)
    assert out["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert out["spec"]["containers"][0]["args"] == ["3"]


def test_null_deletes_and_maps_merge():
    live = deployment([{"name": "app", "image": "x"}])
    out = smp_apply(live, {"metadata": {"labels": {"tier": None, "new": "y"}}, "spec": {"replicas": None}})
    assert out["metadata"]["labels"] == {"app": "web", "new": "y"}
    assert "replicas" not in out["spec"]


def test_finalizers_merge_as_a_primitive_set_and_delete_from_primitive_list():
    live = deployment([{"name": "app", "image": "x"}])
    live["metadata"]["finalizers"] = ["a", "b"]
    out = smp_apply(live, {"metadata": {"finalizers": ["b", "c"]}})
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    out = smp_apply(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]


def test_owner_references_merge_by_uid():
    live = deployment([{"name": "app", "image": "x"}])
    live["metadata"]["ownerReferences"] = [{"uid": "1", "name": "a", "kind": "K", "apiVersion": "v1"}]
    out = smp_apply(live, {"metadata": {"ownerReferences": [{"uid": "2", "name": "b", "kind": "K",
                                                             "apiVersion": "v1"}]}})
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["2", "1"]


def test_retain_keys_on_the_deployment_strategy():
    """kubectl switches RollingUpdate to Recreate with $retainKeys (retainKeys strategy)."""
    live = deployment([{"name": "app", "image": "x"}],
                      strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}})
    out = smp_apply(live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_on_volumes():
    """volumes are merge,retainKeys: switching a volume's source drops the old one."""
    live = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x"}],
                     "volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}}
    out = smp_apply(live, {"spec": {"volumes": [
        {"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/d"}}]}}, POD)
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/d"}},
                                      {"name": "w", "emptyDir": {}}]


@pytest.mark.parametrize("patch,cls,message", [
    ({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, errors.BadRequest,
     "map: map[image:x] does not contain declared merge key: name"),
    ({"spec": {"template": {"spec": {"containers": [{"name": "app", "$patch": "merge"}]}}}},
     errors.BadRequest, "merging lists cannot yet be specified in the patch"),
    ({"spec": {"$patch": "bogus"}}, errors.BadRequest, "unknown patch type: bogus in map: map[$patch:bogus]"),
    ({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, errors.BadRequest,
     "invalid patch format of retainKeys"),
    ({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}, errors.BadRequest,
     "invalid patch format of primitive list"),
    ({"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "app"}}}}},
     errors.BadRequest, "expected a []interface {}, but received a map[string]interface {}"),
    ({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}],
                                     "containers": [{"name": "other"}]}}}}, errors.BadRequest,
     "The order in patch list:\n[map[name:other]]\n doesn't match $setElementOrder list:\n[map[name:app]]\n"),
])
def test_malformed_patches_answer_kubernetes_errors(patch, cls, message):
    live = deployment([{"name": "app", "image": "x"}], strategy={"type": "RollingUpdate"})
    with pytest.raises(cls) as exc:
        smp_apply(live, patch)
    assert exc.value.message == message


def test_a_list_of_lists_is_422():
    """ErrNoListOfLists is one of the two errors Kubernetes answers with 422."""
    with pytest.raises(Unprocessable) as exc:
        smp.strategic_merge({"a": [[1]]}, {"a": [[2]]}, smp.StructSchema({"a": (None, "merge", "")}))
    assert (exc.value.http_code, exc.value.reason) == (422, "Invalid")


@pytest.mark.parametrize("body,message", [
    (b"{", "invalid JSON patch"),
    (b"[1]", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
])
def test_bodies_that_are_not_a_json_object_are_400(body, message):
    with pytest.raises(errors.BadRequest) as exc:
        apply_patch(SMP + "; charset=utf-8", deployment([]), body, DEPLOY)
    assert exc.value.message == message


def test_unknown_media_type_is_415_with_kubernetes_message():
    with pytest.raises(errors.UnsupportedMediaType) as exc:
        apply_patch("application/json", deployment([]), b"{}", DEPLOY)
    assert exc.value.http_code == 415
    assert exc.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml")
