"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the apply body's
YAML reader: results, and the status Kubernetes answers for bad patches."""
import copy
import json

import pytest
import yaml

from machinery import errors, kinds
from machinery.patch import apply_patch, jsonpatches, yamlbody
from machinery.patch.goerrors import Unprocessable

DEPLOY = kinds.BY_KIND["Deployment"]
LIVE = {"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": "nginx", "args": ["a", "b"]}]}}}}


def patch(ct, body, live=LIVE):
    before = copy.deepcopy(live)
    out = apply_patch(ct, live, body if isinstance(body, bytes) else json.dumps(body).encode(), DEPLOY)
    assert live == before
    return out


# ----------------------------------------------------------- RFC 7386

@pytest.mark.parametrize("target,p,result", [
    # RFC 7386 Appendix A, a selection
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_rfc7386_examples(target, p, result):
    assert jsonpatches.merge_patch(target, p) == result


def test_merge_patch_scales_a_deployment():
    """kubectl scale sends a merge patch (design.md §7)."""
    out = patch("application/merge-patch+json", {"spec": {"replicas": 5}, "metadata": {"labels": None}})
    assert out["spec"]["replicas"] == 5 and "labels" not in out["metadata"]
    assert out["spec"]["template"] == LIVE["spec"]["template"]


@pytest.mark.parametrize("body,message", [
    (b"{not json", "invalid JSON patch"),
    (b'{"spec": {"replicas": NaN}}', "invalid JSON patch"),
    (b"null", "Invalid JSON Patch"),
    (b"[1]", "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"),
    (b"5", "error decoding patch: json: cannot unmarshal number into Go value of type map[string]interface {}"),
])
def test_bad_merge_patches_are_400(body, message):
    with pytest.raises(errors.BadRequest) as exc:
        patch("application/merge-patch+json", body)
    assert exc.value.message == message


# ----------------------------------------------------------- RFC 6902

def test_json_patch_operations():
    out = patch("application/json-patch+json", [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/tier", "value": "fe"},
        {"op": "remove", "path": "/metadata/labels/app"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "c"},
        {"op": "copy", "from": "/spec/replicas", "path": "/spec/minReadySeconds"},
        {"op": "move", "from": "/metadata/labels", "path": "/metadata/annotations"},
    ])
    assert out["spec"]["replicas"] == 3 and out["spec"]["minReadySeconds"] == 3
    assert out["metadata"] == {"name": "web", "annotations": {"tier": "fe"}}
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["a", "b", "c"]


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/spec/replicas", "value": 9}],
    [{"op": "remove", "path": "/spec/nothing"}],
    [{"op": "replace", "path": "/spec/template/spec/containers/5/image", "value": "x"}],
    [{"op": "frobnicate", "path": "/spec"}],
    [{"path": "/spec"}],
])
def test_json_patch_that_cannot_apply_is_422(ops):
    """Kubernetes answers NewGenericServerResponse(422): reason Invalid, fixed message."""
    with pytest.raises(Unprocessable) as exc:
        patch("application/json-patch+json", ops)
    assert (exc.value.http_code, exc.value.reason) == (422, "Invalid")
    assert exc.value.message == "the server rejected our request due to an error in our request"


@pytest.mark.parametrize("body,cls,message", [
    (b"[{", errors.BadRequest, "invalid JSON patch"),
    (b'{"op": "add"}', errors.BadRequest,
     "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"),
    (b'["add"]', errors.BadRequest,
     "error decoding patch: json: cannot unmarshal string into Go struct field of type handlers.jsonPatchOp"),
    (json.dumps([{"op": "test", "path": "/kind", "value": "Deployment"}] * 10001).encode(),
     errors.RequestEntityTooLarge,
     "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"),
])
def test_malformed_json_patches(body, cls, message):
    with pytest.raises(cls) as exc:
        patch("application/json-patch+json", body)
    assert exc.value.message == message


# ------------------------------------------------------ the apply body

def test_yaml_body_reads_like_go_yaml():
    """Timestamps stay strings, keys become strings, YAML 1.1 booleans."""
    data = yamlbody.load(b"a: 2026-12-06T10:00:00Z\n1: x\nb: yes\nc: [1, 2.5]\nd: [y, N, off, yy]\n")
    assert data == {"a": "2026-12-06T10:00:00Z", "1": "x", "b": True, "c": [1, 2.5],
                    "d": [True, False, False, "yy"]}
    assert yaml.safe_load("y") == "y"          # the shared SafeLoader is left alone
    assert yamlbody.load(b'{"json": "too"}') == {"json": "too"}


BILLION_LAUGHS = b"""
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, b"a: &x [*x]\n"])
def test_yaml_bombs_and_recursive_aliases_are_refused(body):
    with pytest.raises(errors.BadRequest) as exc:
        yamlbody.load(body)
    assert exc.value.message == "error encoding patch: yaml: document contains excessive aliasing"


def test_modest_aliases_are_fine():
    assert yamlbody.load(b"a: &x {k: v}\nb: *x\n") == {"a": {"k": "v"}, "b": {"k": "v"}}


@pytest.mark.parametrize("body,cls,message", [
    (b"a: [", errors.BadRequest, "error encoding patch: yaml: "),
    (b"a: 1\n---\nb: 2\n", errors.BadRequest, "error encoding patch: yaml: expected a single document"),
    (b"x" * (3 * 1024 * 1024 + 1), errors.RequestEntityTooLarge,
     "Request entity too large: limit is 3145728"),
])
def test_bad_yaml_bodies(body, cls, message):
    with pytest.raises(cls) as exc:
        yamlbody.load(body)
    assert exc.value.message.startswith(message)


# ------------------------------------------------------ decode_patched

def test_decode_patched_returns_the_message():
    from machinery.patch import decode_patched
    out = patch("application/merge-patch+json", {"spec": {"replicas": 4}})
    msg = decode_patched("application/merge-patch+json", out, b"", DEPLOY)
    assert msg.spec.replicas == 4 and msg.metadata.name == "web"


@pytest.mark.parametrize("ct,body,message", [
    ("application/strategic-merge-patch+json", b'{"spec":{"bogus":1}}',
     ' "" is invalid: patch: Invalid value: "map[spec:map[bogus:1]]": strict decoding error: '
     'unknown field "spec.bogus"'),
    ("application/merge-patch+json", b'{"metadata":{"labels":null},"spec":{"replicas":"x"}}',
     # the echoed patch result is cut at 64 characters (errors.MAX_VALUE_CHARS)
     ' "" is invalid: patch: Invalid value: "{\\"apiVersion\\":\\"apps/v1\\",\\"kind\\":\\"Deployment\\",'
     '\\"metadata\\":{\\"name\\":\\""...(truncated 115 chars): '
     'spec.replicas: expected integer, got string "x"'),
])
def test_a_patch_whose_result_does_not_decode_is_422(ct, body, message):
    """patch.go applyPatchToObject / jsonPatcher: NewInvalid(GroupKind{}, "", patch: Invalid value)."""
    from machinery.patch import decode_patched
    out = apply_patch(ct, LIVE, body, DEPLOY)
    with pytest.raises(errors.Invalid) as exc:
        decode_patched(ct, out, body, DEPLOY)
    assert exc.value.http_code == 422
    assert exc.value.message == message
    assert exc.value.causes[0].field == "patch"
