"""Validation of updates (what may change, what is immutable, set-once
fields), of status updates, and of every shared Kubernetes example after
defaulting: each yields exactly the Kubernetes field path and error type."""

import pytest

from machinery import codec, defaults, validation
from tests import k8s_examples
from tests.unit.validation_objects import C0, build, errors


# ------------------------------------------------------------------ updates

def test_pod_update_allows_image_tolerations_and_deadline():
    old = build("pod", ("spec.nodeName", "node-1"), ("spec.activeDeadlineSeconds", 100))
    new = build("pod", ("spec.nodeName", "node-1"), ("spec.activeDeadlineSeconds", 50), (f"{C0}.image", "nginx:1.26"),
                ("spec.tolerations", [{"key": "k", "operator": "Exists"}]))
    assert errors(new, old) == []


@pytest.mark.parametrize("edits, etype, field", [
    ([("spec.restartPolicy", "Never")], "Forbidden", "spec"),
    ([(f"{C0}.ports.0.containerPort", 81)], "Forbidden", "spec"),
    ([("spec.nodeName", "node-2")], "Forbidden", "spec"),
    ([("metadata.name", "web2")], "Invalid", "metadata.name"),
])
def test_pod_update_forbidden(edits, etype, field):
    old = build("pod")
    errs = errors(build("pod", *edits), old)
    assert [(e.type, e.field) for e in errs] == [(etype, field)]
    if field == "spec":
        assert errs[0].detail.startswith("pod updates may not change fields other than `spec.containers[*].image`")


def test_pod_update_compares_quantities_by_value():
    old = build("pod", (f"{C0}.resources.requests.cpu", "500m"))
    defaults.canonicalize(old)                       # as stored by the apiserver
    new = build("pod", (f"{C0}.resources.requests.cpu", "0.5"))
    assert errors(new, old) == []
    errs = errors(build("pod", (f"{C0}.resources.requests.cpu", "0.4")), old)
    assert [(e.type, e.field) for e in errs] == [("Forbidden", "spec")]
    assert errs[0].detail.endswith("changed: containers")


def test_pod_update_tolerations_only_additions_and_deadline_only_shrinks():
    old = build("pod", ("spec.tolerations", [{"key": "k", "operator": "Exists"}]), ("spec.activeDeadlineSeconds", 10))
    errs = errors(build("pod", ("spec.activeDeadlineSeconds", 20)), old)
    assert {(e.type, e.field) for e in errs} == {("Forbidden", "spec.tolerations"),
                                                 ("Invalid", "spec.activeDeadlineSeconds")}


def test_selector_is_immutable():
    old = build("deploy")
    new = build("deploy", ("spec.selector.matchLabels", {"app": "web", "tier": "fe"}),
                ("spec.template.metadata.labels", {"app": "web", "tier": "fe"}))
    errs = errors(new, old)
    assert [(e.type, e.field, e.detail) for e in errs] == [("Invalid", "spec.selector", "field is immutable")]
    assert errors(build("deploy", ("spec.replicas", 5)), old) == []


def test_service_cluster_ip_immutable_once_set():
    old = build("svc", ("spec.clusterIP", "10.96.0.10"))
    assert errors(build("svc", ("spec.clusterIP", "10.96.0.10"), ("spec.ports.0.port", 8080)), old) == []
    errs = errors(build("svc", ("spec.clusterIP", "10.96.0.11")), old)
    assert [(e.type, e.field) for e in errs] == [("Invalid", "spec.clusterIP")]
    # allocation on create: an old object without clusterIP may get one
    assert errors(build("svc", ("spec.clusterIP", "10.96.0.11")), build("svc")) == []


def test_node_pod_cidr_set_once():
    old = build("node", ("spec.podCIDR", ""))
    assert errors(build("node"), old) == []
    errs = errors(build("node", ("spec.podCIDR", "10.244.2.0/24")), build("node"))
    assert [(e.type, e.field) for e in errs] == [("Forbidden", "spec.podCIDR")]


# ------------------------------------------------------------------- status

def test_status_updates():
    old = build("pod", ("spec.nodeName", "n1"))
    new = build("pod", ("spec.nodeName", "n1"), ("status", {"phase": "Running", "podIP": "10.244.1.5",
                                                           "podIPs": [{"ip": "10.244.1.5"}]}))
    assert validation.validate_status_update(new, old) == []
    bad = build("pod", ("spec.nodeName", "n1"), ("status", {"phase": "Running", "podIP": "10.244.1"}))
    assert [e.field for e in validation.validate_status_update(bad, old)] == ["status.podIP"]
    done = build("pod", ("status", {"phase": "Succeeded"}))
    again = build("pod", ("status", {"phase": "Running"}))
    assert [e.field for e in validation.validate_status_update(again, done)] == ["status.phase"]

    rs = build("rs", ("status", {"replicas": 2, "readyReplicas": 3, "availableReplicas": 1}))
    errs = validation.validate_status_update(rs, build("rs"))
    assert [(e.field, e.detail) for e in errs] == [("status.readyReplicas", "cannot be greater than status.replicas")]
    d = build("deploy", ("status", {"replicas": -1}))
    assert [e.field for e in validation.validate_status_update(d, build("deploy"))][0] == "status.replicas"


# --------------------------------------------------------- shared examples

@pytest.mark.parametrize("doc", k8s_examples.document_params())
def test_shared_examples_default_and_validate(doc):
    k8s_examples.require()
    obj = codec.from_dict(doc)
    defaults.apply_defaults(obj)
    assert [str(e) for e in validation.validate(obj)] == []
    again = codec.copy(obj)
    defaults.apply_defaults(again)
    assert again == obj
    defaults.canonicalize(again)
    assert validation.validate(again) == []
