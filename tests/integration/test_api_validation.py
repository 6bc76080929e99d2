"""Invalid objects are refused with every violated field listed, and leave
etcd untouched (its revision, read directly from etcd, does not move)."""
from __future__ import annotations

import pytest

from machinery import errors
from tests.cluster import new_object


def _pod(name="p"):
    return new_object("Pod", name)


def _set(obj, fn):
    fn(obj)
    return obj


def _container(p):
    return p.spec.containers[0]


CASES = [
    # (id, object factory, expected field paths, message fragment)
    ("pod-name-uppercase", lambda: _pod("Bad_Name"), ["metadata.name"], "RFC 1123 subdomain"),
    ("pod-name-too-long", lambda: _pod("a" * 254), ["metadata.name"], "must be no more than 253 characters"),
    ("namespace-name", lambda: new_object("Namespace", "UPPER"), ["metadata.name"], "RFC 1123 label"),
    ("service-name-digit", lambda: new_object("Service", "1svc"), ["metadata.name"], "DNS-1035 label"),
    ("label-key", lambda: _set(_pod(), lambda p: p.metadata.labels.__setitem__("bad key", "v")),
     ["metadata.labels"], "name part must consist of"),
    ("label-value", lambda: _set(_pod(), lambda p: p.metadata.labels.__setitem__("app", "-bad-")),
     ["metadata.labels"], "a valid label must be an empty string"),
    ("cpu-quantity", lambda: _set(_pod(), lambda p: _container(p).resources.requests.__setitem__("cpu", "abc")),
     ["spec.containers[0].resources.requests[cpu]"], "quantities must match the regular expression"),
    ("memory-quantity", lambda: _set(_pod(), lambda p: _container(p).resources.limits.__setitem__("memory", "12XB")),
     ["spec.containers[0].resources.limits[memory]"], "quantities must match"),
    ("request-over-limit", lambda: _set(_pod(), lambda p: (_container(p).resources.requests.__setitem__("cpu", "2"),
                                                           _container(p).resources.limits.__setitem__("cpu", "1"))),
     ["spec.containers[0].resources.requests[cpu]"], "must be less than or equal to cpu limit"),
    ("container-port", lambda: _set(_pod(), lambda p: _container(p).ports.add(container_port=70000)),
     ["spec.containers[0].ports[0].containerPort"], "must be between 1 and 65535"),
    ("service-port", lambda: _set(new_object("Service", "s"), lambda s: setattr(s.spec.ports[0], "port", 0)),
     ["spec.ports[0].port"], "must be between 1 and 65535"),
    ("target-port", lambda: _set(new_object("Service", "s"),
                                 lambda s: setattr(s.spec.ports[0].target_port, "int_val", 99999)),
     ["spec.ports[0].targetPort"], "must be between 1 and 65535"),
    ("restart-policy", lambda: _set(_pod(), lambda p: setattr(p.spec, "restart_policy", "Sometimes")),
     ["spec.restartPolicy"], 'Unsupported value: "Sometimes"'),
    ("duplicate-container", lambda: _set(_pod(), lambda p: p.spec.containers.add(name="main", image="x")),
     ["spec.containers[1].name"], "Duplicate value"),
    ("probe-period", lambda: _set(_pod(), lambda p: (setattr(_container(p).liveness_probe, "period_seconds", -1),
                                                     _container(p).liveness_probe.exec.command.append("true"))),
     ["spec.containers[0].livenessProbe.periodSeconds"], "must be greater than or equal to 0"),
    ("negative-replicas", lambda: _set(new_object("Deployment", "d"), lambda d: setattr(d.spec, "replicas", -1)),
     ["spec.replicas"], "must be greater than or equal to 0"),
    ("selector-mismatch", lambda: _set(new_object("Deployment", "d"),
                                       lambda d: d.spec.template.metadata.labels.__setitem__("app", "other")),
     ["spec.template.metadata.labels"], "`selector` does not match template `labels`"),
    ("max-surge", lambda: _set(new_object("Deployment", "d"),
                               lambda d: setattr(d.spec.strategy.rolling_update.max_surge, "str_val", "abc%")),
     ["spec.strategy.rollingUpdate.maxSurge"], "a valid percent string"),
    ("no-name", lambda: _pod(""), ["metadata.name"], "name or generateName is required"),
]


@pytest.mark.parametrize("factory,fields,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_invalid_create_is_refused_and_writes_nothing(shared_client, shared_etcd, factory, fields, fragment):
    client, etcd = shared_client, shared_etcd
    obj = factory()
    before = etcd.revision()
    with pytest.raises(errors.Invalid) as exc:
        await client.create(obj)
    assert exc.value.reason == "Invalid"
    got_fields = [c.field for c in exc.value.causes]
    for f in fields:
        assert f in got_fields
    assert fragment in exc.value.message
    kind = type(obj).__name__
    assert exc.value.message.startswith(f'{kind}{".apps" if kind == "Deployment" else ""} "')
    assert etcd.revision() == before
    # also as a dry run
    with pytest.raises(errors.Invalid):
        await client.create(factory(), dry_run=True)
    assert etcd.revision() == before


async def test_every_violation_is_listed(client, etcd):
    p = _pod("Bad_Name")
    p.metadata.labels["bad key"] = "v"
    p.spec.restart_policy = "Sometimes"
    p.spec.containers[0].resources.requests["cpu"] = "lots"
    before = etcd.revision()
    with pytest.raises(errors.Invalid) as exc:
        await client.create(p)
    fields = {c.field for c in exc.value.causes}
    assert {"metadata.name", "metadata.labels", "spec.restartPolicy",
            "spec.containers[0].resources.requests[cpu]"} <= fields
    assert exc.value.message.startswith('Pod "Bad_Name" is invalid: [')
    assert etcd.revision() == before


async def test_invalid_update_writes_nothing(client, etcd):
    d = await client.create(new_object("Deployment", "ok"))
    d.spec.replicas = -3
    d.metadata.labels["also bad"] = "x"
    before = etcd.revision()
    with pytest.raises(errors.Invalid) as exc:
        await client.update(d)
    assert {c.field for c in exc.value.causes} >= {"spec.replicas", "metadata.labels"}
    assert etcd.revision() == before
    pod = await client.create(_pod("immutable"))
    pod.spec.restart_policy = "Never"
    with pytest.raises(errors.Invalid) as exc:
        await client.update(pod)
    assert "pod updates may not change fields" in exc.value.message


async def test_invalid_status_update(client, etcd):
    pod = await client.create(_pod("st"))
    pod.status.phase = "Dancing"
    before = etcd.revision()
    with pytest.raises(errors.Invalid) as exc:
        await client.update_status(pod)
    assert [c.field for c in exc.value.causes] == ["status.phase"]
    assert etcd.revision() == before
