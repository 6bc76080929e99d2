"""Bad input over HTTP gets what Kubernetes gives: the code, a
metav1.Status naming the field, and nothing written (checked by reading
back)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e1"},
       "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}
PODS = "/api/v1/namespaces/default/pods"


def call(kube, method: str, path: str, body=None, content_type: str = "application/json",
         headers: dict | None = None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(kube.url + path, data=data, method=method,
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with kube.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), e.headers


def absent(kube, name: str) -> bool:
    return call(kube, "GET", f"{PODS}/{name}")[0] == 404


def test_malformed_json_is_400_and_writes_nothing(kube):
    code, st, _ = call(kube, "POST", PODS, b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e1"')
    assert (code, st["kind"], st["reason"], st["code"]) == (400, "Status", "BadRequest", 400)
    assert absent(kube, "e1")


def test_unknown_field_strict_is_400_naming_it_warn_answers_with_a_warning(kube):
    bad = json.loads(json.dumps(POD))
    bad["metadata"]["name"] = "e2"
    bad["spec"]["containers"][0]["imagePullPolice"] = "Always"
    code, st, _ = call(kube, "POST", PODS + "?fieldValidation=Strict", bad)
    assert code == 400 and 'unknown field "spec.containers[0].imagePullPolice"' in st["message"]
    assert st["details"]["causes"][0]["field"] == "spec.containers[0].imagePullPolice"
    assert absent(kube, "e2")
    code, obj, headers = call(kube, "POST", PODS + "?fieldValidation=Warn", bad)
    assert code == 201 and obj["metadata"]["name"] == "e2"
    assert headers.get_all("Warning") == ['299 - "unknown field \\"spec.containers[0].imagePullPolice\\""']
    code, st, _ = call(kube, "POST", PODS + "?fieldValidation=Loose", bad)
    assert code == 400 and "fieldValidation" in st["message"]


def test_wrong_type_is_400_naming_the_field(kube):
    bad = {**POD, "metadata": {"name": "e3"}, "spec": {"containers": [{"name": "main", "image": 7}]}}
    code, st, _ = call(kube, "POST", PODS, bad)
    assert code == 400 and st["details"]["causes"][0]["field"] == "spec.containers[0].image"
    assert absent(kube, "e3")


def test_invalid_object_is_422_with_field_causes(kube):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
           "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "y"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    code, st, _ = call(kube, "POST", "/apis/apps/v1/namespaces/default/deployments", dep)
    assert (code, st["reason"]) == (422, "Invalid")
    assert st["message"].startswith('Deployment.apps "bad" is invalid: ')
    fields = {c["field"] for c in st["details"]["causes"]}
    assert {"spec.replicas", "spec.template.metadata.labels"} <= fields
    assert call(kube, "GET", "/apis/apps/v1/namespaces/default/deployments/bad")[0] == 404


def test_not_found_and_unknown_paths_are_404(kube):
    code, st, _ = call(kube, "GET", f"{PODS}/nope")
    assert (code, st["reason"], st["details"]) == (404, "NotFound", {"name": "nope", "kind": "pods"})
    assert call(kube, "GET", "/api/v1/namespaces/default/gizmos")[0] == 404
    assert call(kube, "GET", "/apis/example.com/v1/widgets")[0] == 404
    assert call(kube, "GET", "/apis/apps/v1/gizmos")[0] == 404


def test_conflicts_are_409(kube):
    first = {**POD, "metadata": {"name": "e4"}}
    code, created, _ = call(kube, "POST", PODS, first)
    assert code == 201
    code, st, _ = call(kube, "POST", PODS, first)
    assert (code, st["reason"]) == (409, "AlreadyExists")
    stale = {**created, "metadata": {**created["metadata"], "labels": {"x": "1"}, "resourceVersion": "1"}}
    code, st, _ = call(kube, "PUT", f"{PODS}/e4", stale)
    assert (code, st["reason"]) == (409, "Conflict")
    assert "labels" not in call(kube, "GET", f"{PODS}/e4")[1]["metadata"]


def test_body_over_3_mib_is_413_and_unknown_media_type_415(kube):
    huge = {**POD, "metadata": {"name": "e5", "annotations": {"a": "x" * (3 * 1024 * 1024)}}}
    code, st, _ = call(kube, "POST", PODS, huge)
    assert (code, st["reason"]) == (413, "RequestEntityTooLarge")
    code, st, _ = call(kube, "POST", PODS, {**POD, "metadata": {"name": "e5"}}, content_type="text/plain")
    assert (code, st["reason"]) == (415, "UnsupportedMediaType")
    code, st, _ = call(kube, "PATCH", f"{PODS}/e4", b"{}", content_type="application/x-made-up")
    assert code == 415
    assert absent(kube, "e5")


def test_watch_from_a_compacted_revision_ends_with_a_410_error_event(kube):
    code, created, _ = call(kube, "POST", PODS, {**POD, "metadata": {"name": "e6"}})
    old = created["metadata"]["resourceVersion"]
    call(kube, "DELETE", f"{PODS}/e6")
    call(kube, "POST", PODS, {**POD, "metadata": {"name": "e7"}})       # compact past the delete too
    kube.etcd.compact()
    kube.apiserver.restart()
    with kube.urlopen(f"{kube.url}{PODS}?watch=true&resourceVersion={old}&timeoutSeconds=5",
                      timeout=10) as r:
        lines = [json.loads(x) for x in r.read().splitlines()]
    assert [ev["type"] for ev in lines] == ["ERROR"]
    assert (lines[0]["object"]["code"], lines[0]["object"]["reason"]) == (410, "Expired")


@pytest.mark.parametrize("path,method", [(f"{PODS}/e4/scale", "GET"), ("/api/v1", "POST")])
def test_unserved_verbs_are_refused(kube, path, method):
    assert call(kube, method, path, b"{}" if method == "POST" else None)[0] in (404, 405)


def test_apply_patch_needs_a_field_manager_and_refuses_a_yaml_bomb(kube):
    apply = "application/apply-patch+yaml"
    body = b"apiVersion: v1\nkind: Pod\nmetadata: {name: e8}\nspec: {containers: [{name: c, image: i}]}\n"
    code, st, _ = call(kube, "PATCH", f"{PODS}/e8", body, content_type=apply)
    assert code == 400 and st["details"]["causes"][0]["field"] == "fieldManager"
    bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n".encode()
        for p, c in zip("abcdefgh", "bcdefghi")) + b"apiVersion: v1\nkind: Pod\nmetadata: {name: e8}\n"
    code, st, _ = call(kube, "PATCH", f"{PODS}/e8?fieldManager=t", bomb, content_type=apply)
    assert 400 <= code < 500 and st["kind"] == "Status"
    assert absent(kube, "e8")
    code, pod, _ = call(kube, "PATCH", f"{PODS}/e8?fieldManager=t", body, content_type=apply)
    assert code == 201 and pod["metadata"]["managedFields"][0]["manager"] == "t"
