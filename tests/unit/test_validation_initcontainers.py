"""Init containers and sidecars in pod validation (validateInitContainers in
pkg/apis/core/validation): one name space with the app containers, restartPolicy
only Always and only on init containers, no probes or lifecycle on plain init containers."""
from __future__ import annotations

import pytest

from tests.unit.validation_objects import build, errors

INIT = {"name": "setup", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent",
        "terminationMessagePolicy": "File"}
PROBE = {"exec": {"command": ["true"]}}


def test_init_containers_and_a_sidecar_are_valid():
    side = {**INIT, "name": "proxy", "restartPolicy": "Always", "startupProbe": PROBE,
            "readinessProbe": PROBE, "lifecycle": {"postStart": PROBE}}
    assert errors(build("pod", ("spec.initContainers", [INIT, side]))) == []


@pytest.mark.parametrize("init, etype, field", [
    ({**INIT, "name": "app"}, "Duplicate", "spec.initContainers[0].name"),
    ({**INIT, "restartPolicy": "OnFailure"}, "NotSupported", "spec.initContainers[0].restartPolicy"),
    ({**INIT, "livenessProbe": PROBE}, "Forbidden", "spec.initContainers[0].livenessProbe"),
    ({**INIT, "startupProbe": PROBE}, "Forbidden", "spec.initContainers[0].startupProbe"),
    ({**INIT, "lifecycle": {"postStart": PROBE}}, "Forbidden", "spec.initContainers[0].lifecycle"),
    ({**INIT, "image": ""}, "Required", "spec.initContainers[0].image"),
])
def test_invalid_init_containers(init, etype, field):
    errs = errors(build("pod", ("spec.initContainers", [init])))
    assert [(e.type, e.field) for e in errs] == [(etype, field)], [str(e) for e in errs]


def test_restart_policy_is_forbidden_on_app_containers():
    errs = errors(build("pod", ("spec.containers.0.restartPolicy", "Always")))
    assert [(e.type, e.field) for e in errs] == [("Forbidden", "spec.containers[0].restartPolicy")]
    assert "may not be set for non-init containers" in str(errs[0])


def test_two_init_containers_with_one_name():
    errs = errors(build("pod", ("spec.initContainers", [INIT, INIT])))
    assert [(e.type, e.field) for e in errs] == [("Duplicate", "spec.initContainers[1].name")]


def test_sidecar_proxy_example_decodes_defaults_and_validates():
    import pathlib

    from machinery import codec, defaults, validation
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "sidecar-proxy.yaml"
    docs = codec.load_documents(path.read_text())
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    for doc in docs:
        obj = codec.from_dict(doc)
        defaults.apply_defaults(obj)
        assert [str(e) for e in validation.validate(obj)] == []
    spec = codec.from_dict(docs[0]).spec.template.spec
    assert [c.restart_policy for c in spec.init_containers] == ["", "Always"]
