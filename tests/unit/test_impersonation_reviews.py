"""Impersonation (Kubernetes' filter: one `impersonate` check per asked
item), the review APIs' answers, and audit events."""
import asyncio
import json

import pytest

from apiserver.audit import AuditLog, Call, should_log
from apiserver.auth import UserInfo, authz
from apiserver.auth import bootstrappolicy as bp
from apiserver.auth.authz import Attributes
from apiserver.auth.impersonation import impersonate, requests
from apiserver.auth.rbac import RBAC
from apiserver.auth.reviews import BY_PATH, Reviews, decode, to_json
from machinery import errors

BOB = UserInfo("bob", groups=("system:authenticated",))


def _rbac(*rules):
    z = RBAC()
    z.cluster_roles.put(bp.cluster_role("imp", *rules))
    z.cluster_role_bindings.put(bp.binding(bp.rbac_pb2.ClusterRoleBinding, "imp", "imp", ("User", "bob")))
    return z


def run(coro):
    return asyncio.run(coro)


def test_requests_parse_headers_and_metadata():
    asks = requests([("Impersonate-User", "system:serviceaccount:ns:robot"), ("impersonate-group", "g1"),
                     ("Impersonate-Extra-Scopes%2Fx", "a"), ("Impersonate-Uid", "42"), ("Accept", "x")])
    assert [(a.kind, a.name, a.namespace, a.field_path) for a in asks] == [
        ("ServiceAccount", "robot", "ns", ""), ("Group", "g1", "", ""), ("UserExtra", "a", "", "scopes/x"),
        ("UID", "42", "", "")]
    assert requests([("Accept", "x")]) == []
    with pytest.raises(errors.BadRequest) as exc:
        requests([("Impersonate-Group", "system:masters")])
    assert exc.value.message == "requested [{Group  system:masters    }] without impersonating a user"


def test_impersonation_needs_the_impersonate_verb_per_item():
    z = _rbac(bp.rule(["impersonate"], [""], ["users"], names=["jane"]))
    who = run(impersonate(BOB, [("Impersonate-User", "jane")], z))
    assert who.name == "jane" and who.groups == ("system:authenticated",) and who.impersonator == BOB
    with pytest.raises(errors.Forbidden) as exc:
        run(impersonate(BOB, [("Impersonate-User", "alice")], z))
    assert exc.value.message == ('users "alice" is forbidden: User "bob" cannot impersonate resource "users" '
                                 'in API group "" at the cluster scope')
    with pytest.raises(errors.Forbidden) as exc:
        run(impersonate(BOB, [("Impersonate-User", "jane"), ("Impersonate-Group", "system:masters")], z))
    assert 'cannot impersonate resource "groups"' in exc.value.message
    assert run(impersonate(BOB, [], z)) is BOB


def test_service_account_impersonation_gets_its_groups():
    z = _rbac(bp.rule(["impersonate"], [""], ["serviceaccounts"]))
    who = run(impersonate(BOB, [("impersonate-user", "system:serviceaccount:team:robot")], z))
    assert who.name == "system:serviceaccount:team:robot"
    assert who.groups == ("system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated")
    with pytest.raises(errors.Forbidden) as exc:
        run(impersonate(UserInfo("eve"), [("impersonate-user", "system:serviceaccount:team:robot")], z))
    assert exc.value.message.startswith('serviceaccounts "robot" is forbidden: User "eve" cannot impersonate '
                                        'resource "serviceaccounts" in API group "" in the namespace "team"')


def test_self_subject_access_review_and_validation():
    z = authz.Chain(authz.Superuser(), _rbac(bp.rule(["get", "list"], [""], ["pods"])))
    reviews = Reviews(z)
    ssar = BY_PATH[("authorization.k8s.io", "selfsubjectaccessreviews")]
    obj = decode(ssar, {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "a"}}})
    out = to_json(run(reviews.review(ssar, obj, BOB)))
    assert out["status"] == {"allowed": True, "reason": out["status"]["reason"]}
    obj = decode(ssar, {"spec": {"resourceAttributes": {"verb": "create", "resource": "pods"}}})
    out = to_json(run(reviews.review(ssar, obj, BOB)))
    assert out["status"] == {"allowed": False} and out["kind"] == "SelfSubjectAccessReview"
    with pytest.raises(errors.Invalid) as exc:
        run(reviews.review(ssar, decode(ssar, {"spec": {}}), BOB))
    assert "exactly one of nonResourceAttributes or resourceAttributes must be specified" in exc.value.message
    sar = BY_PATH[("authorization.k8s.io", "subjectaccessreviews")]
    obj = decode(sar, {"spec": {"user": "bob", "resourceAttributes": {"verb": "get", "resource": "pods"}}})
    assert run(reviews.review(sar, obj, UserInfo("admin"))).status.allowed
    with pytest.raises(errors.Invalid):
        run(reviews.review(sar, decode(sar, {"spec": {"resourceAttributes": {"verb": "get"}}}), BOB))


def test_self_subject_review_and_rules_review():
    z = _rbac(bp.rule(["get"], [""], ["pods"]), bp.rule(["get"], urls=["/healthz"]))
    reviews = Reviews(z, [lambda u, ns: z.rules_for(u, ns).rules])
    ssr = BY_PATH[("authentication.k8s.io", "selfsubjectreviews")]
    out = to_json(run(reviews.review(ssr, decode(ssr, {}), BOB)))
    assert out["status"]["userInfo"] == {"username": "bob", "groups": ["system:authenticated"]}
    ssrr = BY_PATH[("authorization.k8s.io", "selfsubjectrulesreviews")]
    out = to_json(run(reviews.review(ssrr, decode(ssrr, {"spec": {"namespace": "a"}}), BOB)))
    assert out["status"]["resourceRules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    assert out["status"]["nonResourceRules"] == [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]


def test_audit_events(tmp_path):
    log = AuditLog(str(tmp_path / "audit.log"))
    jane = UserInfo("jane", groups=("g",), impersonator=BOB)
    a = Attributes(jane, "create", namespace="ns", resource="pods", api_version="v1")
    log.record(Call("/api/v1/namespaces/ns/pods", "2026-01-01T00:00:00.000000Z", user=jane, attrs=a, code=403,
                    source_ip="127.0.0.1", decision="forbid"))
    log.close()
    ev = json.loads((tmp_path / "audit.log").read_text().splitlines()[0])
    assert ev["apiVersion"] == "audit.k8s.io/v1" and ev["kind"] == "Event" and ev["level"] == "Metadata"
    assert ev["user"] == {"username": "bob", "groups": ["system:authenticated"]}
    assert ev["impersonatedUser"] == {"username": "jane", "groups": ["g"]}
    assert ev["objectRef"] == {"resource": "pods", "namespace": "ns", "apiVersion": "v1"}
    assert ev["responseStatus"]["code"] == 403 and ev["stage"] == "ResponseComplete"
    assert should_log("create", 201) and should_log("get", 403) and not should_log("list", 200)


def test_every_authenticated_user_is_in_system_authenticated():
    from apiserver.auth.gate import authenticated
    node = authenticated(UserInfo("system:node:n1", groups=("system:nodes",)))
    assert node.groups == ("system:nodes", "system:authenticated")
    assert authenticated(BOB) is BOB
    with pytest.raises(errors.Unauthorized):
        authenticated(None)
