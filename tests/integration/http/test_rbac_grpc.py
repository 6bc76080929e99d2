"""Who may do what over gRPC and through kctl: the same rules as over HTTP
(test_rbac.py), with each token's identity as a client certificate of the
cluster CA (tests/integration/http/rbacsetup.py), impersonation in the call's
metadata, node restrictions, LocalSubjectAccessReview, and kctl's `auth`,
`--as`, `apply` and `create rolebinding`."""
from __future__ import annotations

from machinery import errors, kinds
from tests.integration.http.rbacsetup import JANE_LIST_DEFAULT, grpc_as, grpc_error, rk  # noqa: F401 (fixture)
from tests.integration.kctl_helpers import kctl


def test_grpc_same_rules(rk):
    e = grpc_error(rk, "jane-token", lambda c: c.list("Pod", "default"))
    assert isinstance(e, errors.Forbidden) and e.message == JANE_LIST_DEFAULT
    items, _ = grpc_as(rk, "jane-token", lambda c: c.list("Pod", "team"))
    assert [p.metadata.name for p in items] == ["p1", "p2"]
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "c", "team"
    e = grpc_error(rk, "jane-token", lambda c: c.create(cm))
    assert e.message == ('configmaps is forbidden: User "jane" cannot create resource "configmaps" in API group "" '
                         'in the namespace "team"')           # a create names no object, as over HTTP
    e = grpc_error(rk, "bogus", lambda c: c.list("Pod", "team"))
    assert isinstance(e, errors.Unauthorized)
    # impersonation in metadata
    items, _ = grpc_as(rk, "imp-token", lambda c: c.list("Pod", "team"), impersonate_user="jane")
    assert len(items) == 2
    e = grpc_error(rk, "jane-token", lambda c: c.list("Pod", "team"), impersonate_user="imp")
    assert 'User "jane" cannot impersonate resource "users"' in e.message


def test_grpc_node_restrictions(rk):
    e = grpc_error(rk, "node1-token", lambda c: c.get("Secret", "s2", "team"))
    assert e.message.endswith("no relationship found between node 'node1' and this object")
    assert grpc_as(rk, "node2-token", lambda c: c.get("Secret", "s2", "team")).metadata.name == "s2"

    async def touch_node2(c):
        n = await c.get("Node", "node2")
        n.metadata.labels["x"] = "y"
        return await c.update(n)
    e = grpc_error(rk, "node1-token", touch_node2)
    assert e.message == 'nodes "node2" is forbidden: node "node1" is not allowed to modify node "node2"'
    e = grpc_error(rk, "node1-token", lambda c: c.delete("Pod", "p2", "team"))
    assert e.message == 'pods "p2" is forbidden: node "node1" can only delete pods with spec.nodeName set to itself'


def _local_review(namespace: str, user: str, verb: str, resource: str, spec_namespace: str | None = None):
    from machinery.pb import authorization_pb2 as apb
    r = apb.LocalSubjectAccessReview(api_version="authorization.k8s.io/v1", kind="LocalSubjectAccessReview")
    r.metadata.namespace = namespace
    r.spec.user = user
    ra = r.spec.resource_attributes
    ra.verb, ra.resource, ra.namespace = verb, resource, namespace if spec_namespace is None else spec_namespace
    return r


def test_grpc_local_subject_access_review(rk):
    """A namespace admin (lead: admin in team) asks over gRPC what jane may do in
    team; jane (view) may not ask; the namespaces must agree."""
    out = grpc_as(rk, None, lambda c: c.review(_local_review("team", "jane", "list", "pods")), impersonate_user="lead")
    assert out.status.allowed and out.kind == "LocalSubjectAccessReview"
    out = grpc_as(rk, None, lambda c: c.review(_local_review("team", "jane", "create", "pods")),
                  impersonate_user="lead")
    assert not out.status.allowed
    e = grpc_error(rk, "jane-token", lambda c: c.review(_local_review("team", "jane", "list", "pods")))
    assert isinstance(e, errors.Forbidden) and e.message == (
        'localsubjectaccessreviews.authorization.k8s.io is forbidden: User "jane" cannot create resource '
        '"localsubjectaccessreviews" in API group "authorization.k8s.io" in the namespace "team"')
    e = grpc_error(rk, None, lambda c: c.review(_local_review("team", "jane", "list", "pods", "other")))
    assert isinstance(e, errors.Invalid) and "must match metadata.namespace" in e.message
    e = grpc_error(rk, None, lambda c: c.review(_local_review("", "jane", "list", "pods")))
    assert isinstance(e, errors.BadRequest) and e.message == "namespace is required on this type"


def test_kctl_auth_and_as(rk):
    r = kctl(rk.apiserver.target, "auth", "can-i", "create", "pods")
    assert (r.code, r.out.strip()) == (0, "yes")
    r = kctl(rk.apiserver.target, "--as", "jane", "auth", "can-i", "create", "pods", "-n", "team")
    assert (r.code, r.out.strip()) == (1, "no")
    r = kctl(rk.apiserver.target, "auth", "can-i", "list", "pods", "-n", "team", "--as", "jane")
    assert (r.code, r.out.strip()) == (0, "yes")
    r = kctl(rk.apiserver.target, "get", "pods", "-n", "default", "--as", "jane")
    assert r.code == 1 and f"Error from server (Forbidden): {JANE_LIST_DEFAULT}" in r.err
    r = kctl(rk.apiserver.target, "auth", "whoami", "--as", "jane", "--as-group", "devs")
    assert r.out.split("\n")[1].split() == ["Username", "jane"] and "[devs system:authenticated]" in r.out
    r = kctl(rk.apiserver.target, "auth", "can-i", "--list", "-n", "team", "--as", "jane")
    assert r.code == 0 and "selfsubjectaccessreviews.authorization.k8s.io" in r.out


def test_kctl_apply_and_get_rbac(rk):
    role = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-writer, namespace: team}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [create, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: jane-cm, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-writer}
subjects: [{kind: User, name: jane}, {kind: ServiceAccount, name: robot}]
"""
    r = kctl(rk.apiserver.target, "apply", "-f", "-", input=role)
    assert r.code == 0 and "role.rbac.authorization.k8s.io/cm-writer created" in r.out
    r = kctl(rk.apiserver.target, "get", "rolebindings", "-n", "team", "-o", "wide")
    line = next(ln for ln in r.out.splitlines() if ln.startswith("jane-cm"))
    assert line.split()[1:] == ["Role/cm-writer", line.split()[2], "jane", "robot"]
    assert "cluster-admin" in kctl(rk.apiserver.target, "get", "clusterroles").out
    r = kctl(rk.apiserver.target, "create", "rolebinding", "bob-cm", "--role=cm-writer", "--user=bob", "-n", "team")
    assert (r.code, r.out.strip()) == (0, "rolebinding.rbac.authorization.k8s.io/bob-cm created")
    bad = kctl(rk.apiserver.target, "apply", "-f", "-", input=role.replace("verbs: [create, get]", "verbs: []"))
    assert bad.code == 1 and "rules[0].verbs: Required value: verbs must contain at least one value" in bad.err
