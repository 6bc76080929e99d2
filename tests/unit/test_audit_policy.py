"""The audit policy (apiserver/auditpolicy.py): Kubernetes' checker semantics
(first matching rule, users/groups/verbs/namespaces/resources/nonResourceURLs,
omitStages), strict loading with errors naming the field, the default
policy, and the events the audit log writes per level and stage."""
from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from apiserver import audit, auditpolicy as ap
from apiserver.auth.authz import Attributes
from apiserver.auth.user import UserInfo
from apiserver.main import parse_args, run

JANE = UserInfo("jane", groups=("devs", "system:authenticated"))
BOB = UserInfo("bob", groups=("ops",))


def policy(*rules, **top):
    return ap.parse({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top})


def res(verb="get", resource="pods", ns="default", group="", sub="", name="", user=JANE):
    return Attributes(user, verb, namespace=ns, api_group=group, resource=resource, subresource=sub, name=name)


def level(p, user, attrs):
    return p.evaluate(user, attrs).level


def test_first_matching_rule_wins_and_no_match_is_none():
    p = policy({"level": "None", "users": ["bob"]}, {"level": "RequestResponse", "verbs": ["create"]},
               {"level": "Metadata"})
    assert level(p, BOB, res("create")) == "None"
    assert level(p, JANE, res("create")) == "RequestResponse"
    assert level(p, JANE, res("get")) == "Metadata"
    assert level(policy({"level": "Metadata", "verbs": ["delete"]}), JANE, res("get")) == "None"


def test_users_groups_and_failed_authentication():
    p = policy({"level": "Request", "userGroups": ["ops"]}, {"level": "Metadata", "users": ["jane"]})
    assert level(p, BOB, res()) == "Request"
    assert level(p, JANE, res()) == "Metadata"
    assert level(p, None, res()) == "None"          # 401: no user, user rules never match


def test_resources_namespaces_and_subresources():
    p = policy({"level": "None", "resources": [{"group": "", "resources": ["secrets", "configmaps"]}]},
               {"level": "Request", "resources": [{"resources": ["pods/log"]}]},
               {"level": "RequestResponse", "resources": [{"resources": ["*/status"]}]},
               {"level": "Metadata", "resources": [{"group": "apps", "resources": ["deployments/*"]}]},
               {"level": "Request", "resources": [{"resources": ["pods"], "resourceNames": ["web"]}]},
               {"level": "Metadata", "namespaces": ["kube-system", ""]})
    assert level(p, JANE, res(resource="secrets")) == "None"
    assert level(p, JANE, res(sub="log")) == "Request"
    assert level(p, JANE, res(sub="exec")) == "None"
    assert level(p, JANE, res(resource="nodes", ns="", sub="status")) == "RequestResponse"
    assert level(p, JANE, res(resource="deployments", group="apps", sub="scale")) == "Metadata"
    assert level(p, JANE, res(resource="deployments", group="", sub="scale")) == "None"    # group differs
    assert level(p, JANE, res(name="web")) == "Request"
    assert level(p, JANE, res(name="db")) == "None"
    assert level(p, JANE, res(name="db", ns="kube-system")) == "Metadata"
    assert level(p, JANE, res(resource="nodes", ns="")) == "Metadata"        # "" is cluster scope
    assert level(p, JANE, Attributes(JANE, "get", resource_request=False, path="/version")) == "None"


def test_non_resource_urls():
    p = policy({"level": "Metadata", "nonResourceURLs": ["/healthz*", "/version"]})
    nr = lambda path: Attributes(JANE, "get", resource_request=False, path=path)   # noqa: E731
    assert level(p, JANE, nr("/healthz")) == level(p, JANE, nr("/healthz/etcd")) == "Metadata"
    assert level(p, JANE, nr("/version")) == "Metadata"
    assert level(p, JANE, nr("/versions")) == "None"
    assert level(p, JANE, res()) == "None"            # a resource request never matches URLs


def test_omit_stages_union_and_managed_fields():
    p = policy({"level": "Metadata", "verbs": ["get"], "omitStages": ["ResponseComplete"]},
               omitStages=["RequestReceived"],
               omitManagedFields=True)
    rule = p.evaluate(JANE, res())
    assert rule.omit_stages == {"RequestReceived", "ResponseComplete"} and rule.omit_managed_fields
    assert p.evaluate(JANE, None).omit_stages == {"RequestReceived"}


@pytest.mark.parametrize("doc, message", [
    ({"rules": [{"level": "Everything"}]},
     'rules[0].level: Unsupported value: "Everything": supported values: "None", "Metadata", "Request", '
     '"RequestResponse"'),
    ({"rules": [{}]}, "rules[0].level: Required value"),
    ({"rules": [{"level": "None", "lvel": "x"}]}, 'strict decoding error: unknown field "rules[0].lvel"'),
    ({"rules": [{"level": "None"}], "omitStage": []}, 'unknown field "omitStage"'),
    ({"rules": [{"level": "None", "resources": [{"group": "", "resource": ["pods"]}]}]},
     'unknown field "rules[0].resources[0].resource"'),
    ({"rules": [{"level": "None", "users": "bob"}]}, "rules[0].users: expected a list, got str"),
    ({"rules": [{"level": "None", "omitStages": ["Done"]}]},
     'rules[0].omitStages[0]: Invalid value: "Done": allowed stages are RequestReceived,ResponseStarted,'
     'ResponseComplete,Panic'),
    ({"rules": [{"level": "None", "nonResourceURLs": ["healthz"]}]},
     "non-resource URL rules must begin with a '/' character"),
    ({"rules": [{"level": "None", "nonResourceURLs": ["/a*b"]}]},
     "non-resource URL wildcards '*' must be the final character of the rule"),
    ({"rules": [{"level": "None", "nonResourceURLs": ["/a"], "namespaces": ["x"]}]},
     "rules cannot apply to both regular resources and non-resource URLs"),
    ({"rules": [{"level": "None", "resources": [{"resourceNames": ["x"]}]}]},
     "rules[0].resources[0].resourceNames: Invalid value"),
    ({"rules": [{"level": "None", "resources": [{"group": "apps/v1"}]}]}, "rules[0].resources[0].group"),
    ({"rules": []}, "loaded illegal policy with 0 rules"),
])
def test_bad_policies_name_the_field(doc, message):
    with pytest.raises(ap.PolicyError) as exc:
        ap.parse({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", **doc})
    assert message in str(exc.value)


def test_wrong_kind_and_version(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy",
                                 "rules": [{"level": "None"}]}))
    with pytest.raises(ap.PolicyError, match='must be "audit.k8s.io/v1"/"Policy", got "audit.k8s.io/v1beta1"'):
        ap.load(str(f))
    with pytest.raises(ap.PolicyError, match="No such file"):
        ap.load(str(tmp_path / "missing.yaml"))


def test_a_bad_policy_file_stops_the_apiserver_at_start(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n")
    args = parse_args(["--audit-policy-file", str(f), "--audit-log-path", str(tmp_path / "a.log"),
                       "--cert-dir", str(tmp_path / "pki")])
    with pytest.raises(SystemExit) as exc:
        asyncio.run(run(args))
    assert str(f) in str(exc.value) and 'rules[0].level: Unsupported value: "Loud"' in str(exc.value)
    assert not (tmp_path / "pki").exists()           # refused before anything was created


def test_default_policy_is_writes_and_refusals_at_metadata():
    d = ap.DEFAULT
    assert d.evaluate(JANE, res("create"), 201).level == "Metadata"
    assert d.evaluate(JANE, res("get"), 403).level == "Metadata"
    assert d.evaluate(None, None, 401).level == "Metadata"
    assert d.evaluate(JANE, res("list"), 200).level == "None"
    assert "RequestReceived" in d.evaluate(JANE, res("create"), 201).omit_stages


def test_events_per_level_and_stage(tmp_path):
    p = policy({"level": "RequestResponse", "verbs": ["update"], "omitManagedFields": True},
               {"level": "Request", "verbs": ["create"]}, {"level": "Metadata"})
    log = audit.AuditLog(str(tmp_path / "audit.log"), p)
    obj = {"kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [{"manager": "kubectl"}]}}
    for verb in ("get", "create", "update"):
        call = audit.Call(f"/api/v1/namespaces/default/configmaps/{verb}", "t0", user=JANE, attrs=res(verb),
                          code=200, request_object=obj, response_object=obj)
        call.annotations["example.com/a"] = "b"
        log.record(call, ap.RECEIVED)
        call.decision = "allow"
        log.record(call)
    log.close()
    events = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(e["verb"], e["stage"], e["level"]) for e in events] == [
        ("get", "RequestReceived", "Metadata"), ("get", "ResponseComplete", "Metadata"),
        ("create", "RequestReceived", "Request"), ("create", "ResponseComplete", "Request"),
        ("update", "RequestReceived", "RequestResponse"), ("update", "ResponseComplete", "RequestResponse")]
    got, received, create, update = events[1], events[2], events[3], events[5]
    assert "requestObject" not in got and "responseObject" not in got
    assert "responseStatus" not in received and "requestObject" not in received
    assert received["auditID"] == create["auditID"]
    assert create["requestObject"] == obj and "responseObject" not in create
    assert update["requestObject"] == update["responseObject"] == {"kind": "ConfigMap", "metadata": {"name": "c"}}
    assert received["annotations"] == {"example.com/a": "b"}
    assert create["annotations"] == {"example.com/a": "b", "authorization.k8s.io/decision": "allow",
                                     "authorization.k8s.io/reason": ""}


def test_annotate_reaches_the_current_call_only():
    audit.annotate("k", "ignored")                    # no request: nothing happens
    call = audit.Call("/x", "t0")
    token = audit.begin_http(call)
    audit.annotate("pod-security.kubernetes.io/audit-violations", "would violate ...")
    audit.end_http(token)
    audit.annotate("k", "after")
    assert call.annotations == {"pod-security.kubernetes.io/audit-violations": "would violate ..."}


def test_a_calls_id_and_received_time_become_text_only_in_an_event(tmp_path):
    """The gate stamps a request with time.time() and no ID; an event written for it
    carries the received time as RFC 3339 with microseconds and one uuid4 for all stages,
    and requests of one moment still get different IDs."""
    import uuid
    log = audit.AuditLog(str(tmp_path / "audit.log"), policy({"level": "Metadata"}))
    call = audit.Call("/api/v1/namespaces/default/configmaps", 1796637600.25, user=JANE,
                      attrs=res("create"), code=201)
    other = audit.Call("/api/v1/namespaces/default/configmaps", 1796637600.25, user=JANE,
                       attrs=res("create"), code=201)
    assert call._audit_id == ""                          # nothing made while nobody asked
    log.record(call, ap.RECEIVED)
    log.record(call)
    log.record(other)
    log.close()
    received, complete, second = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert received["requestReceivedTimestamp"] == complete["requestReceivedTimestamp"] \
        == "2026-12-07T10:00:00.250000Z"
    assert received["auditID"] == complete["auditID"] == call.audit_id
    assert uuid.UUID(call.audit_id).version == 4 and second["auditID"] != call.audit_id
    assert isinstance(audit.now(), float)
