"""apiserver.fieldmanager: naming the field manager (explicit or from the user
agent, Kubernetes' prefixFromUserAgent / ValidateFieldManager) and the
Update entries FieldManager.track records."""
from __future__ import annotations

import pytest

from apiserver import fieldmanager as fm
from machinery import codec, errors

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment",
          "metadata": {"name": "web", "namespace": "default"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}


@pytest.mark.parametrize("agent, name", [
    ("kubectl/v1.32.0 (linux/amd64) kubernetes/abc", "kubectl"),
    ("kctl grpc-python-asyncio/1.85.0 grpc-c/50.0.0 (linux; chttp2)", "kctl"),
    ("kctl-nodeagent/n1 grpc-python-asyncio/1.85.0 grpc-c/50.0.0 (linux; chttp2)", "kctl-nodeagent"),
    ("OpenAPI-Generator/31.0.0/python", "OpenAPI-Generator"),
    ("a\x00b\tc", "abc"),
    ("x" * 300, "x" * 128),
    ("", "unknown"),
])
def test_manager_from_user_agent(agent, name):
    assert fm.named("", agent) == name


def test_explicit_manager_wins_and_is_validated():
    assert fm.named("kctl-edit", "kctl grpc-python-asyncio/1.85.0") == "kctl-edit"
    with pytest.raises(errors.Invalid) as e:
        fm.named("m" * 129, "kctl", "CreateOptions")
    assert e.value.message == ('CreateOptions.meta.k8s.io "" is invalid: fieldManager: Too long: '
                               'may not be more than 128 bytes')
    with pytest.raises(errors.Invalid) as e:
        fm.named("bad\nname", "kctl")
    assert "fieldManager: Invalid value" in e.value.message and "(at position 3)" in e.value.message


def entries(obj):
    return [(e["manager"], e["operation"], e.get("subresource", ""), e["fieldsV1"])
            for e in codec.to_dict(obj)["metadata"].get("managedFields", [])]


def test_create_then_update_moves_a_changed_field_to_its_writer():
    created = fm.FieldManager("kctl-client-side-apply").track(None, codec.from_dict(DEPLOY))
    [(who, op, sub, fields)] = entries(created)
    assert (who, op, sub) == ("kctl-client-side-apply", "Update", "")
    assert "f:replicas" in fields["f:spec"]
    edited = codec.copy(created)
    edited.spec.replicas = 7
    edited = fm.FieldManager("kubectl-edit").track(created, edited)
    got = {e[0]: e[3] for e in entries(edited)}
    assert got["kubectl-edit"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in got["kctl-client-side-apply"]["f:spec"]


def test_an_unchanged_write_records_nothing():
    created = fm.FieldManager("a").track(None, codec.from_dict(DEPLOY))
    again = fm.FieldManager("b").track(created, codec.copy(created))
    assert entries(again) == entries(created)
