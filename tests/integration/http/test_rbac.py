"""Who may do what over HTTP, end to end (gRPC and kctl: test_rbac_grpc.py): a real etcd and kctl-apiserver (TLS, the
harness's CA) with the default authorizers (system:masters, Node, RBAC),
static tokens for distinct identities (--token-auth-file) and an audit
log, driven by the real kubectl, the official Python client and kctl's
gRPC client/CLI. kubectl uses the admin's certificate (CN
kubernetes-admin, system:masters) and acts as other users with --as
(impersonation); the Python client carries the tokens over HTTPS; gRPC
requires a client certificate in the handshake (a token never reaches
it), so there each identity has its own certificate of the cluster CA
with the token's user and groups (`grpc_as`).

Identities: jane (no bindings but `view` in namespace team), imp (may
impersonate jane only), node1/node2 (system:node:NAME in system:nodes).
A new RoleBinding takes effect when the watch cache delivers it, so tests
wait for it with can-i before asserting (the cluster, the identities and
the gRPC helpers: rbacsetup.py)."""
from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from harness import pki as harness_pki
from tests.integration.http.rbacsetup import JANE_LIST_DEFAULT, grpc_error, rk  # noqa: F401 (fixture)
from tests.integration.kctl_helpers import kctl

# ------------------------------------------------------------------ HTTP: kubectl

def test_kubectl_user_without_bindings_gets_kubernetes_403(rk):
    r = rk.as_("jane", "get", "pods", "-n", "default")
    assert r.returncode == 1
    assert f"Error from server (Forbidden): {JANE_LIST_DEFAULT}" in r.stderr


def test_kubectl_view_lists_but_cannot_create(rk):
    assert "p1" in rk.as_("jane", "get", "pods", "-n", "team").stdout
    r = rk.as_("jane", "auth", "can-i", "create", "pods", "-n", "team")
    assert (r.returncode, r.stdout.strip()) == (1, "no")
    r = rk.as_("jane", "create", "configmap", "c", "-n", "team", "--from-literal=a=b")
    assert r.returncode == 1
    assert ('configmaps is forbidden: User "jane" cannot create resource "configmaps" in API group "" '
            'in the namespace "team"') in r.stderr
    r = rk.as_("jane", "get", "secrets", "-n", "team")
    assert 'cannot list resource "secrets"' in r.stderr


def test_kubectl_auth_can_i_whoami_and_impersonation(rk):
    assert rk.ok("auth", "can-i", "create", "pods").strip() == "yes"           # kubernetes-admin, a master
    assert rk.ok("auth", "can-i", "list", "pods", "-n", "team", "--as", "jane").strip() == "yes"
    r = rk.kubectl("auth", "can-i", "delete", "pods", "-n", "team", "--as", "jane")
    assert (r.returncode, r.stdout.strip()) == (1, "no")
    r = rk.kubectl("get", "pods", "-n", "default", "--as", "jane")
    assert JANE_LIST_DEFAULT in r.stderr
    out = rk.ok("auth", "can-i", "--list", "-n", "team", "--as", "jane")           # SelfSubjectRulesReview
    assert any(ln.split()[0] == "pods" and "[get list watch]" in ln for ln in out.splitlines()[1:] if ln.split())
    out = rk.ok("auth", "whoami", "--as", "jane", "--as-group", "devs")
    assert out.split("\n")[1].split() == ["Username", "jane"] and "[devs system:authenticated]" in out


def _api(rk, token, **headers):
    cfg = client.Configuration()
    cfg.host = rk.url
    cfg.ssl_ca_cert = str(harness_pki.session().ca_file)
    if token:
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    else:                                               # None: the admin's certificate (files, as the client wants)
        admin = harness_pki.session().credentials()
        cfg.cert_file, cfg.key_file = str(rk.workdir / "admin.crt"), str(rk.workdir / "admin.key")
        (rk.workdir / "admin.crt").write_bytes(admin.cert_pem)
        (rk.workdir / "admin.key").write_bytes(admin.key_pem)
    api = client.ApiClient(cfg)
    for k, v in headers.items():
        api.set_default_header(k, v)
    return api


def _message(exc) -> str:
    return json.loads(exc.value.body)["message"]


def test_python_client_tokens_and_impersonation(rk):
    assert client.AuthenticationV1Api(_api(rk, "imp-token", **{"Impersonate-User": "jane"})) \
        .create_self_subject_review(client.V1SelfSubjectReview()).status.user_info.username == "jane"
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(_api(rk, "imp-token", **{"Impersonate-User": "bob"})).list_namespaced_pod("team")
    assert exc.value.status == 403 and _message(exc) == (
        'users "bob" is forbidden: User "imp" cannot impersonate resource "users" in API group "" '
        "at the cluster scope")
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(_api(rk, "jane-token", **{"Impersonate-User": "jane"})).list_namespaced_pod("team")
    assert 'User "jane" cannot impersonate resource "users"' in _message(exc)
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(_api(rk, "jane-token")).list_namespaced_pod("default")
    assert exc.value.status == 403 and _message(exc) == JANE_LIST_DEFAULT
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(_api(rk, "bogus")).list_namespaced_pod("default")
    assert exc.value.status == 401


def test_kubectl_reads_rbac_objects(rk):
    out = rk.ok("get", "clusterroles", "view", "admin", "cluster-admin")
    assert out.split("\n")[0].split() == ["NAME", "CREATED", "AT"]
    out = rk.ok("get", "rolebinding", "jane-view", "-n", "team", "-o", "wide")
    assert out.split("\n")[1].split()[:2] == ["jane-view", "ClusterRole/view"] and "jane" in out
    view = json.loads(rk.ok("get", "clusterrole", "view", "-o", "json"))        # aggregated
    assert any("pods" in r["resources"] for r in view["rules"])
    assert view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"] == {
        "rbac.authorization.k8s.io/aggregate-to-view": "true"}


def test_no_escalation_without_the_rights_or_bind(rk):
    out = rk.ok("--as", "lead", "create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob", "-n", "team")
    assert "rolebinding.rbac.authorization.k8s.io/bob-view created" in out
    r = rk.as_("lead", "create", "rolebinding", "bob-root", "--clusterrole=cluster-admin", "--user=bob", "-n", "team")
    assert r.returncode == 1
    assert ('rolebindings.rbac.authorization.k8s.io "bob-root" is forbidden: user "lead" '
            '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}') in r.stderr
    r = rk.as_("lead", "create", "role", "node-reader", "--verb=get", "--resource=nodes", "-n", "team")
    assert r.returncode == 1 and 'roles.rbac.authorization.k8s.io "node-reader" is forbidden' in r.stderr
    assert '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}' in r.stderr
    rk.ok("create", "role", "node-reader", "--verb=get", "--resource=nodes", "-n", "team")     # the admin may
    assert rk.as_("lead", "create", "role", "pod-reader", "--verb=get", "--resource=pods", "-n", "team") \
        .returncode == 0


def test_view_cannot_exec_over_either_transport(rk):
    want = ('pods "p1" is forbidden: User "jane" cannot create resource "pods/exec" in API group "" '
            'in the namespace "team"')
    r = rk.as_("jane", "exec", "p1", "-n", "team", "--", "true")
    assert r.returncode == 1 and want in r.stderr
    r = kctl(rk.apiserver.target, "--as", "jane", "exec", "p1", "-n", "team", "--", "true")
    assert r.code == 1 and want in r.err
    events = [json.loads(line) for line in rk.audit_log.read_text().splitlines()]
    assert [e["responseStatus"]["code"] for e in events
            if e["requestURI"] == "/kctl.v1.NodeAgent/exec" and e["impersonatedUser"]["username"] == "jane"] == [403]


# ---------------------------------------------------------- HTTP: Python client

def test_python_client_node_restrictions(rk):
    v1 = client.CoreV1Api(_api(rk, "node1-token"))
    assert v1.read_namespaced_secret("s1", "team").data["k"]
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_secret("s2", "team")
    assert exc.value.status == 403 and _message(exc) == (
        'secrets "s2" is forbidden: User "system:node:node1" cannot get resource "secrets" in API group "" in '
        "the namespace \"team\": no relationship found between node 'node1' and this object")
    with pytest.raises(ApiException) as exc:
        v1.patch_node("node2", {"metadata": {"labels": {"x": "y"}}})
    assert _message(exc) == ('nodes "node2" is forbidden: node "node1" is not allowed '
                                                     'to modify node "node2"')
    with pytest.raises(ApiException) as exc:
        v1.delete_namespaced_pod("p2", "team")
    assert _message(exc) == ('pods "p2" is forbidden: node "node1" can only delete pods '
                                                     "with spec.nodeName set to itself")
    assert v1.patch_node("node1", {"metadata": {"labels": {"x": "y"}}}).metadata.labels["x"] == "y"
    lsar = client.AuthorizationV1Api(_api(rk, "node1-token", **{"Impersonate-User": "lead"}))
    with pytest.raises(ApiException) as exc:                    # a node may not impersonate
        lsar.create_namespaced_local_subject_access_review("team", client.V1LocalSubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(user="jane", resource_attributes=client.V1ResourceAttributes(
                verb="list", resource="pods", namespace="team"))))
    assert exc.value.status == 403
    admin = client.AuthorizationV1Api(_api(rk, None))
    out = admin.create_namespaced_local_subject_access_review("team", client.V1LocalSubjectAccessReview(
        metadata=client.V1ObjectMeta(namespace="team"),
        spec=client.V1SubjectAccessReviewSpec(user="jane", resource_attributes=client.V1ResourceAttributes(
            verb="list", resource="pods", namespace="team"))))
    assert out.status.allowed is True and out.kind == "LocalSubjectAccessReview"
    with pytest.raises(ApiException) as exc:
        admin.create_namespaced_local_subject_access_review("team", client.V1LocalSubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(user="jane", resource_attributes=client.V1ResourceAttributes(
                verb="list", resource="pods", namespace="other"))))
    assert exc.value.status == 422 and "must match metadata.namespace" in _message(exc)
    review = client.AuthorizationV1Api(v1.api_client).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(verb="get", resource="secrets", namespace="team",
                                                            name="s2"))))
    assert review.status.allowed is False


# ------------------------------------------------------------------ gRPC


def test_discovery_lists_the_review_apis(rk):
    """kubectl api-resources/api-versions show authorization.k8s.io and
    authentication.k8s.io with their create-only reviews, as Kubernetes does."""
    rk.clear_cache()
    res = rk.ok("api-resources", "--api-group=authorization.k8s.io")
    rows = [line.split() for line in res.splitlines()[1:]]
    assert rows == [["localsubjectaccessreviews", "authorization.k8s.io/v1", "true", "LocalSubjectAccessReview"],
                    ["selfsubjectaccessreviews", "authorization.k8s.io/v1", "false", "SelfSubjectAccessReview"],
                    ["selfsubjectrulesreviews", "authorization.k8s.io/v1", "false", "SelfSubjectRulesReview"],
                    ["subjectaccessreviews", "authorization.k8s.io/v1", "false", "SubjectAccessReview"]]
    assert "selfsubjectreviews" in rk.ok("api-resources", "--api-group=authentication.k8s.io", "-o", "name")
    assert rk.ok("api-resources", "--api-group=authorization.k8s.io", "-o", "wide").splitlines()[1].split()[-1] \
        == "create"
    assert {"authorization.k8s.io/v1", "authentication.k8s.io/v1"} <= set(rk.ok("api-versions").split())


# ------------------------------------------------------------------ audit

def test_audit_log_has_writes_and_denials_from_both_transports(rk):
    rk.as_("jane", "get", "pods", "-n", "default")
    grpc_error(rk, "jane-token", lambda c: c.list("Pod", "default"))
    events = [json.loads(line) for line in rk.audit_log.read_text().splitlines()]
    for ev in events:
        assert ev["apiVersion"] == "audit.k8s.io/v1" and ev["kind"] == "Event" and ev["level"] == "Metadata"
        assert ev["stage"] == "ResponseComplete" and ev["auditID"] and ev["requestReceivedTimestamp"]
    denied = [e for e in events if e["responseStatus"]["code"] == 403 and e["user"]["username"] == "jane"
              and e.get("objectRef", {}).get("resource") == "pods" and e["verb"] == "list"]
    assert {e["requestURI"].startswith("/kctl.v1.Api/") for e in denied} == {True, False}
    created = [e for e in events if e["verb"] == "create" and e.get("objectRef", {}).get("resource") == "rolebindings"]
    assert created and created[0]["responseStatus"]["code"] == 201
    assert created[0]["user"]["username"] == "kubernetes-admin"
    imp = [e for e in events if "impersonatedUser" in e]
    assert imp and imp[0]["impersonatedUser"]["username"] == "jane"
    assert not [e for e in events if e["verb"] in ("get", "list", "watch") and e["responseStatus"]["code"] < 400]
