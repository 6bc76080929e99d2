"""The three-way merge of `kctl apply`: removed fields go, defaults and
allocated values stay, keyed lists merge item by item."""
from __future__ import annotations

import json

from kubectlish import merge


def test_field_removed_from_file_is_removed():
    last = {"spec": {"replicas": 3, "paused": True}}
    new = {"spec": {"replicas": 3}}
    live = {"spec": {"replicas": 3, "paused": True, "revisionHistoryLimit": 10}}
    out = merge.three_way(last, new, live)
    assert out == {"spec": {"replicas": 3, "revisionHistoryLimit": 10}}


def test_server_defaults_and_others_fields_are_kept():
    last = {"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 1}}
    new = {"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 2}}
    live = {"metadata": {"labels": {"app": "web", "team": "x"}, "uid": "u1", "resourceVersion": "7"},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 600}, "status": {"replicas": 1}}
    out = merge.three_way(last, new, live)
    assert out["spec"] == {"replicas": 2, "progressDeadlineSeconds": 600}
    assert out["metadata"]["labels"] == {"app": "web", "team": "x"}
    assert out["metadata"]["uid"] == "u1" and out["status"] == {"replicas": 1}


def test_label_removed_from_file_is_removed_but_foreign_label_stays():
    last = {"metadata": {"labels": {"app": "web", "tier": "fe"}}}
    new = {"metadata": {"labels": {"app": "web"}}}
    live = {"metadata": {"labels": {"app": "web", "tier": "fe", "added-by-hand": "1"}}}
    assert merge.three_way(last, new, live)["metadata"]["labels"] == {"app": "web", "added-by-hand": "1"}


def test_allocated_cluster_ip_and_node_port_are_kept():
    svc_file = {"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}],
                         "selector": {"app": "web"}}}
    live = {"spec": {"type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31234, "protocol": "TCP"}],
                     "selector": {"app": "web"}, "sessionAffinity": "None"}}
    out = merge.three_way(svc_file, svc_file, live)
    assert out == live
    # changing the target port keeps the node port too
    changed = {"spec": {**svc_file["spec"], "ports": [{"port": 80, "targetPort": 9090}]}}
    out = merge.three_way(svc_file, changed, live)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "nodePort": 31234, "protocol": "TCP"}]
    assert out["spec"]["clusterIP"] == "10.96.0.7"


def test_removed_port_goes_and_added_port_is_appended_in_file_order():
    last = {"spec": {"ports": [{"port": 80}, {"port": 443}]}}
    new = {"spec": {"ports": [{"port": 8080}, {"port": 80}]}}
    live = {"spec": {"ports": [{"port": 80, "nodePort": 30001}, {"port": 443, "nodePort": 30002}]}}
    out = merge.three_way(last, new, live)
    assert out["spec"]["ports"] == [{"port": 8080}, {"port": 80, "nodePort": 30001}]


def test_containers_merge_by_name_keeping_defaults():
    last = {"containers": [{"name": "a", "image": "nginx:1", "env": [{"name": "X", "value": "1"}]}]}
    new = {"containers": [{"name": "a", "image": "nginx:2"}]}
    live = {"containers": [{"name": "a", "image": "nginx:1", "env": [{"name": "X", "value": "1"}],
                            "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}]}
    out = merge.three_way(last, new, live)
    assert out["containers"] == [{"name": "a", "image": "nginx:2", "imagePullPolicy": "IfNotPresent",
                                  "terminationMessagePath": "/dev/termination-log"}]


def test_container_removed_from_file_is_removed():
    last = {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}
    new = {"containers": [{"name": "a", "image": "x"}]}
    live = {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}
    assert merge.three_way(last, new, live)["containers"] == [{"name": "a", "image": "x"}]


def test_atomic_lists_are_replaced():
    last = {"args": ["a", "b"], "tolerations": [{"key": "k", "operator": "Exists"}]}
    new = {"args": ["c"], "tolerations": []}
    live = {"args": ["a", "b"], "tolerations": [{"key": "k", "operator": "Exists"}]}
    out = merge.three_way(last, new, live)
    assert out == {"args": ["c"], "tolerations": []}


def test_merge_keys_follow_kubernetes_patch_metadata():
    """initContainers merge by name and keep server defaults; taints are
    atomic upstream (+listType=atomic), so the file's list replaces the live one."""
    last = {"initContainers": [{"name": "i", "image": "x:1"}], "taints": [{"key": "a", "effect": "NoSchedule"}]}
    new = {"initContainers": [{"name": "i", "image": "x:2"}], "taints": [{"key": "b", "effect": "NoSchedule"}]}
    live = {"initContainers": [{"name": "i", "image": "x:1", "imagePullPolicy": "IfNotPresent"}],
            "taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "c", "effect": "NoExecute"}]}
    out = merge.three_way(last, new, live)
    assert out["initContainers"] == [{"name": "i", "image": "x:2", "imagePullPolicy": "IfNotPresent"}]
    assert out["taints"] == [{"key": "b", "effect": "NoSchedule"}]


def test_no_last_applied_behaves_like_create_over_live():
    new = {"spec": {"replicas": 2}}
    live = {"spec": {"replicas": 1, "paused": True}}
    assert merge.three_way(None, new, live) == {"spec": {"replicas": 2, "paused": True}}


def test_null_in_file_removes_the_field():
    assert merge.three_way({}, {"spec": {"paused": None}}, {"spec": {"paused": True}}) == {"spec": {}}


def test_strip_server_fields_and_annotation():
    got = {"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"},
           "metadata": {"name": "p", "uid": "u", "resourceVersion": "3", "generation": 1,
                        "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [],
                        "annotations": {merge.LAST_APPLIED: "{}"}, "labels": {"a": "b"}}}
    assert merge.strip_server_fields(got) == {"apiVersion": "v1", "kind": "Pod",
                                              "metadata": {"name": "p", "labels": {"a": "b"}}}
    assert "status" in got  # input untouched


def test_last_applied_annotation_round_trip():
    m = {"kind": "Pod", "metadata": {"name": "p"}}
    w = merge.with_last_applied(m)
    as_kubectl = {"kind": "Pod", "metadata": {"annotations": {}, "name": "p"}}
    assert json.loads(w["metadata"]["annotations"][merge.LAST_APPLIED]) == as_kubectl
    assert merge.read_last_applied(w) == as_kubectl
    assert merge.read_last_applied({"metadata": {"annotations": {merge.LAST_APPLIED: "not json"}}}) is None


def test_last_applied_is_byte_for_byte_what_kubectl_writes():
    """kubectl 1.37's annotation for the same manifest (captured), so neither tool
    sees a change after the other applied it."""
    m = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default",
                                                         "annotations": {"note": "é"}},
         "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "a && b > /x"]}]}}
    assert merge.last_applied_json(merge.with_last_applied(m)) == (
        '{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"note":"é"},"name":"p","namespace":"default"},'
        '"spec":{"containers":[{"command":["sh","-c","a \\u0026\\u0026 b \\u003e /x"],"image":"busybox",'
        '"name":"c"}]}}\n')


def test_quantities_are_written_in_canonical_form():
    new = {"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"},
                                                               "limits": {"cpu": "1"}}}]}}
    live = {"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                                                "limits": {"cpu": "1"}}}]}}
    assert merge.three_way(new, new, live) == live


def test_service_type_change_drops_allocated_node_ports():
    last = {"kind": "Service", "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    new = {"kind": "Service", "spec": {"ports": [{"port": 80}]}}
    live = {"kind": "Service", "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "externalTrafficPolicy": "Cluster",
                                        "ports": [{"port": 80, "nodePort": 30007, "protocol": "TCP"}]}}
    out = merge.three_way(last, new, live)
    assert out["spec"] == {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "TCP"}]}
    # staying NodePort keeps them
    assert merge.three_way(last, last, live)["spec"]["ports"][0]["nodePort"] == 30007
