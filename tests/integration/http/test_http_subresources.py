"""Subresources and the finer points of writes and watches over HTTP:
binding, status, scale with a stale resourceVersion, delete preconditions
and dryRun, BOOKMARKs, and client-go's watch-list (sendInitialEvents)."""
from __future__ import annotations

import json

from tests.integration.http.test_http_errors import POD, call

PODS = "/api/v1/namespaces/default/pods"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def test_binding_assigns_the_node_once(kube):
    call(kube, "POST", PODS, {**POD, "metadata": {"name": "b1"}})
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b1"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}}
    code, st, _ = call(kube, "POST", f"{PODS}/b1/binding", binding)
    assert (code, st["status"]) == (201, "Success")
    _, pod, _ = call(kube, "GET", f"{PODS}/b1")
    assert pod["spec"]["nodeName"] == "node-a"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in pod["status"]["conditions"])
    code, st, _ = call(kube, "POST", f"{PODS}/b1/binding", {**binding, "target": {"name": "node-b"}})
    assert (code, st["reason"]) == (409, "Conflict") and "already assigned" in st["message"]


def test_status_subresource_writes_status_only(kube):
    call(kube, "POST", PODS, {**POD, "metadata": {"name": "s1"}})
    patch = {"status": {"phase": "Running"}, "spec": {"nodeName": "sneaky"}}
    code, pod, _ = call(kube, "PATCH", f"{PODS}/s1/status", patch, content_type="application/merge-patch+json")
    assert code == 200 and pod["status"]["phase"] == "Running" and "nodeName" not in pod["spec"]
    code, pod, _ = call(kube, "PATCH", f"{PODS}/s1", {"status": {"phase": "Failed"}, "metadata": {"labels": {"l": "1"}}},
                        content_type="application/merge-patch+json")
    assert pod["status"]["phase"] == "Running" and pod["metadata"]["labels"] == {"l": "1"}
    _, got, _ = call(kube, "GET", f"{PODS}/s1/status")
    assert got["status"]["phase"] == "Running"


def test_scale_put_with_a_stale_resource_version_is_409(kube):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sc"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sc"}},
                    "template": {"metadata": {"labels": {"app": "sc"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    call(kube, "POST", DEPLOYS, dep)
    _, scale, _ = call(kube, "GET", f"{DEPLOYS}/sc/scale")
    assert (scale["kind"], scale["apiVersion"], scale["spec"]["replicas"]) == ("Scale", "autoscaling/v1", 1)
    scale["spec"]["replicas"] = 3
    code, out, _ = call(kube, "PUT", f"{DEPLOYS}/sc/scale", scale)
    assert code == 200 and out["spec"]["replicas"] == 3
    code, st, _ = call(kube, "PUT", f"{DEPLOYS}/sc/scale", {**scale, "spec": {"replicas": 7}})   # old RV
    assert (code, st["reason"]) == (409, "Conflict")
    code, st, _ = call(kube, "PATCH", f"{DEPLOYS}/sc/scale", {"spec": {"replicas": -1}},
                       content_type="application/merge-patch+json")
    assert code == 422 and st["details"]["causes"][0]["field"] == "spec.replicas"
    assert call(kube, "GET", f"{DEPLOYS}/sc")[1]["spec"]["replicas"] == 3


def test_delete_preconditions_and_dry_run(kube):
    code, pod, _ = call(kube, "POST", PODS, {**POD, "metadata": {"name": "d1"}})
    code, st, _ = call(kube, "DELETE", f"{PODS}/d1", {"preconditions": {"uid": "not-the-uid"}})
    assert (code, st["reason"]) == (409, "Conflict") and "Precondition failed: UID" in st["message"]
    code, out, _ = call(kube, "DELETE", f"{PODS}/d1?dryRun=All")
    assert code == 200 and call(kube, "GET", f"{PODS}/d1")[0] == 200
    code, st, _ = call(kube, "DELETE", f"{PODS}/d1", {"propagationPolicy": "Sideways"})
    assert code == 400 and "propagationPolicy" in st["message"]
    code, out, _ = call(kube, "DELETE", f"{PODS}/d1", {"preconditions": {"uid": pod["metadata"]["uid"]},
                                                    "gracePeriodSeconds": 0})
    assert code == 200 and call(kube, "GET", f"{PODS}/d1")[0] == 404


def watch_lines(kube, query: str, until=None) -> list[dict]:
    """The watch's events until the server ends it (timeoutSeconds), or up to the first for which
    `until` is true."""
    events = []
    with kube.urlopen(f"{kube.url}{PODS}?watch=true&{query}", timeout=60) as r:
        for line in r:
            events.append(json.loads(line))
            if until is not None and until(events[-1]):
                break
    return events


def test_bookmarks_and_watch_list(kube):
    _, created, _ = call(kube, "POST", PODS, {**POD, "metadata": {"name": "w1"}})
    rv = created["metadata"]["resourceVersion"]
    call(kube, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",   # etcd moves on,
                                              "metadata": {"name": "bookmarked"}})       # pods do not
    # a bookmark comes once the watch cache has heard of the newer revision from etcd (a progress
    # notification, every second here): seconds under load, so wait for it up to the watch's end
    events = watch_lines(kube, f"resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=30",
                         until=lambda e: e["type"] == "BOOKMARK")
    marks = [e for e in events if e["type"] == "BOOKMARK"]
    assert [e["type"] for e in events] == ["BOOKMARK"] * len(events) and marks
    assert marks[0]["object"]["kind"] == "Pod"
    assert int(marks[0]["object"]["metadata"]["resourceVersion"]) > int(rv)
    events = watch_lines(kube, "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
                               "&timeoutSeconds=2")
    names = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert "w1" in names
    end = next(i for i, e in enumerate(events) if e["type"] == "BOOKMARK")
    assert end == len(names)                                             # right after the initial state
    assert events[end]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    code, st, _ = call(kube, "GET", f"{PODS}?watch=true&sendInitialEvents=true")
    assert (code, st["reason"]) == (422, "Invalid")


def test_eviction_honours_the_pod_disruption_budget(kube):
    """policy/v1 Eviction: 429 while the budget allows no disruption (the pod stays), then
    allowed and spent once the budget's status allows one (Kubernetes' EvictionREST)."""
    ready = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    for name in ("pdb-a", "pdb-b"):
        call(kube, "POST", PODS, {**POD, "metadata": {"name": name, "labels": {"app": "pdbt"}}})
        call(kube, "PATCH", f"{PODS}/{name}/status", ready, content_type="application/merge-patch+json")
    pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
    code, _, _ = call(kube, "POST", pdbs, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                           "metadata": {"name": "pdbt"},
                                           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "pdbt"}}}})
    assert code == 201

    def budget(allowed):
        st = {"status": {"observedGeneration": 1, "currentHealthy": 2, "desiredHealthy": 2 - allowed,
                         "expectedPods": 2, "disruptionsAllowed": allowed}}
        code, _, _ = call(kube, "PATCH", f"{pdbs}/pdbt/status", st, content_type="application/merge-patch+json")
        assert code == 200
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "pdb-a"}}
    budget(0)
    code, st, _ = call(kube, "POST", f"{PODS}/pdb-a/eviction", eviction)
    assert (code, st["reason"]) == (429, "TooManyRequests")
    assert "Cannot evict pod as it would violate the pod's disruption budget." in st["message"]
    assert call(kube, "GET", f"{PODS}/pdb-a")[0] == 200
    budget(1)
    code, st, _ = call(kube, "POST", f"{PODS}/pdb-a/eviction", eviction)
    assert (code, st["status"]) == (201, "Success")
    assert call(kube, "GET", f"{PODS}/pdb-a")[0] == 404
    _, pdb, _ = call(kube, "GET", f"{pdbs}/pdbt")
    assert pdb["status"]["disruptionsAllowed"] == 0 and "pdb-a" in pdb["status"]["disruptedPods"]
