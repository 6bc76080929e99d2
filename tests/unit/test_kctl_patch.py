"""`kctl patch`: strategic (keyed lists), merge (RFC 7386) and json (RFC 6902) on a FakeClient."""
from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from kubectlish import common
from kubectlish.main import cli
from kubectlish.patch import apply_patch
from machinery import kinds
from machinery import codec
from machinery.fakeclient import FakeClient


@pytest.fixture
def fake(monkeypatch):
    f = FakeClient()
    monkeypatch.setattr(common, "CLIENT_FACTORY", lambda server: f)
    asyncio.run(f.create(codec.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default",
                                                                    "labels": {"a": "1", "b": "2"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "c", "image": "i:1", "env": [{"name": "X", "value": "1"}]},
                     {"name": "d", "image": "j:1"}]}}}})))
    return f


def kctl(*args):
    r = CliRunner().invoke(cli, ["--server", "fake:1", *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def get(fake):
    return asyncio.run(fake.get("deploy", "web", "default"))


def test_strategic_patch_merges_containers_by_name(fake):
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "j:2"}]}}},
             "metadata": {"labels": {"b": None}}}
    assert kctl("patch", "deploy", "web", "-p", json.dumps(patch))[1] == "deployment.apps/web patched\n"
    d = get(fake)
    assert [(c.name, c.image) for c in d.spec.template.spec.containers] == [("c", "i:1"), ("d", "j:2")]
    assert d.spec.template.spec.containers[0].env[0].value == "1"
    assert dict(d.metadata.labels) == {"a": "1"}
    assert kctl("patch", "deploy/web", "-p", json.dumps(patch))[1] == "deployment.apps/web patched (no change)\n"


def test_merge_patch_replaces_lists(fake):
    patch = {"spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "z", "image": "z"}]}}}}
    assert kctl("patch", "deploy", "web", "--type", "merge", "-p", json.dumps(patch))[0] == 0
    d = get(fake)
    assert d.spec.replicas == 4 and [c.name for c in d.spec.template.spec.containers] == ["z"]


def test_json_patch(fake):
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 2},
           {"op": "add", "path": "/metadata/labels/new", "value": "yes"},
           {"op": "remove", "path": "/spec/template/spec/containers/1"}]
    assert kctl("patch", "deploy", "web", "--type=json", "-p", json.dumps(ops))[0] == 0
    d = get(fake)
    assert d.spec.replicas == 2 and d.metadata.labels["new"] == "yes"
    assert [c.name for c in d.spec.template.spec.containers] == ["c"]
    code, _, err = kctl("patch", "deploy", "web", "--type=json", "-p", '[{"op": "remove", "path": "/nope/x"}]')
    assert code == 1 and "error in our request" in err and "/nope/x" in err


def test_unknown_field_in_patch_is_refused(fake):
    code, _, err = kctl("patch", "deploy", "web", "-p", '{"spec": {"replica": 3}}')
    assert code == 1 and 'unknown field "spec.replica"' in err


def test_kctl_patches_with_the_servers_code():
    """kctl patch runs machinery.patch (the apiserver's PATCH) client-side."""
    info = kinds.BY_KIND["Deployment"]
    assert apply_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}, "merge", info) == {"a": {"c": 2, "d": 3}}
    assert apply_patch({"l": [1, 2]}, [{"op": "add", "path": "/l/-", "value": 3}], "json", info) == {"l": [1, 2, 3]}
    assert apply_patch({"a~b": 1}, [{"op": "replace", "path": "/a~0b", "value": 2}], "json", info) == {"a~b": 2}
