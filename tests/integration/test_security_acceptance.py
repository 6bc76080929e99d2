"""Issue 14's acceptance table: identities x requests, over gRPC and HTTPS, on
a real etcd + apiserver (TLS, the harness's CA and ServiceAccount key).

    identity                      request                        expected (both transports)
    no certificate                list pods                      401
    jane (valid, no rights)       list pods                      403, Kubernetes' message
    viewer (ClusterRole view)     list pods / create configmap   200 / 403
    node1 (system:node:node1)     update node2                   403
                                  get the Secret of a pod on node2   403
                                  delete a pod of node2          403
                                  get the Secret of its own pod  200
    ServiceAccount token, expired list pods (HTTPS)              401

The gRPC port asks for a client certificate in the TLS handshake, so "no
certificate" is refused there before any call (machinery.client reports it
as 401 Unauthorized), and a bearer token never reaches it: the expired token
row is HTTPS only, and a token-only gRPC client is refused locally in one
line. Writes are dry runs (authorization comes first; nothing changes).

403s come from RBAC (viewer is bound to the `view` ClusterRole) and, for
node1, from the Node authorizer and NodeRestriction (--authorization-mode
Node,RBAC, the default).
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from harness import pki as harness_pki
from machinery import errors, kinds, kubeconfig
from machinery.client import Client
from tests.cluster import Cluster, free_port

NS = "acc"


def forbidden(user, verb, resource, namespace=NS, name=""):
    """Kubernetes' 403 message (apiserver/pkg/endpoints/handlers/responsewriters.forbiddenMessage)."""
    subject = f'{resource} "{name}"' if name else resource
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "" {where}'


# ------------------------------------------------------------------ set-up

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    work = tmp_path_factory.mktemp("acceptance")
    port = free_port()
    cluster = Cluster(work, apiserver_args=["--http-listen", f"127.0.0.1:{port}"]).start()
    try:
        store = harness_pki.session().store
        e = Env(cluster, f"https://127.0.0.1:{port}", store)
        asyncio.run(e.populate())
        yield e
    finally:
        cluster.stop()


class Env:
    def __init__(self, cluster, url, store):
        self.cluster, self.url, self.store = cluster, url, store
        self.target = cluster.apiserver.target
        self.ca = store.ca_pem()
        self.creds = {
            "none": kubeconfig.Credentials(self.ca),
            "jane": self._user("acc-jane"),
            "viewer": self._user("acc-viewer"),
            "node1": kubeconfig.select(store.node("node1")).credentials,
        }

    def _user(self, name):
        return kubeconfig.select(self.store.user(name)).credentials

    async def populate(self):
        """Namespace, node1/node2, a Secret used by a pod on each node, a ServiceAccount,
        viewer bound to the `view` ClusterRole."""
        async with Client(self.target, credentials=self.cluster.apiserver.credentials) as admin:
            ns = kinds.new("Namespace")
            ns.metadata.name = NS
            await admin.create(ns)
            for n in ("node1", "node2"):
                node = kinds.new("Node")
                node.metadata.name = n
                await admin.create(node)
                secret = kinds.new("Secret")
                secret.metadata.name, secret.metadata.namespace = f"s-{n}", NS
                secret.string_data["k"] = "v"
                await admin.create(secret)
                pod = kinds.new("Pod")
                pod.metadata.name, pod.metadata.namespace = f"p-{n}", NS
                pod.spec.node_name = n
                pod.spec.containers.add(name="c", image="busybox")
                vol = pod.spec.volumes.add(name="s")
                vol.secret.secret_name = f"s-{n}"
                await admin.create(pod)
            sa = kinds.new("ServiceAccount")
            sa.metadata.name, sa.metadata.namespace = "robot", NS
            self.sa = await admin.create(sa)
            self.node2 = await admin.get("Node", "node2")
        code, body = self.https("admin", "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "acc-viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "acc-viewer"}]})
        assert code == 201, body

    def expired_token(self) -> str:
        """A ServiceAccount token signed with the cluster's key, for a live account, expired an hour ago."""
        from apiserver.serviceaccount import keys, tokens
        key_set = keys.load(directory=self.store.dir)
        issuer = tokens.Issuer(key_set, clock=lambda: time.time() - 7200)
        token, exp = issuer.issue(NS, "robot", self.sa.metadata.uid, (), 3600)
        assert exp < time.time()
        return token

    # -- transports
    def https(self, who, method, path, body=None, token=None):
        """(status, Status or object) of an HTTPS request as `who` ("admin", a name of creds, or a token)."""
        creds = (self.cluster.apiserver.credentials if who == "admin" else
                 kubeconfig.Credentials(self.ca, token=token) if token else self.creds[who])
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", **creds.headers()})
        try:
            with urllib.request.urlopen(req, timeout=10, context=creds.ssl_context()) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def grpc(self, who, call):
        """(status, message) of a gRPC call as `who`: the HTTP code of the ApiError raised, else 200."""
        async def run():
            async with Client(self.target, credentials=self.creds[who], timeout=10) as c:
                await call(c)
        try:
            asyncio.run(run())
        except errors.ApiError as exc:
            return exc.http_code, exc.message
        return 200, ""


# ------------------------------------------------------------------ requests

def node2_update(e):
    node = kinds.new("Node")
    node.CopyFrom(e.node2)
    node.metadata.labels["touched"] = "yes"
    return node


def configmap():
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "made", NS
    return cm


REQUESTS = {
    "list pods": (lambda e: lambda c: c.list("Pod", NS),
                  lambda e: ("GET", f"/api/v1/namespaces/{NS}/pods", None)),
    "create configmap": (lambda e: lambda c: c.create(configmap(), dry_run=True),
                         lambda e: ("POST", f"/api/v1/namespaces/{NS}/configmaps?dryRun=All",
                                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made"}})),
    "update node2": (lambda e: lambda c: c.update(node2_update(e), dry_run=True),
                     lambda e: ("PUT", "/api/v1/nodes/node2?dryRun=All", _json(node2_update(e)))),
    "get secret of node2's pod": (lambda e: lambda c: c.get("Secret", "s-node2", NS),
                                  lambda e: ("GET", f"/api/v1/namespaces/{NS}/secrets/s-node2", None)),
    "get secret of node1's pod": (lambda e: lambda c: c.get("Secret", "s-node1", NS),
                                  lambda e: ("GET", f"/api/v1/namespaces/{NS}/secrets/s-node1", None)),
    "delete pod of node2": (lambda e: lambda c: c.delete("Pod", "p-node2", NS, dry_run=True),
                            lambda e: ("DELETE", f"/api/v1/namespaces/{NS}/pods/p-node2?dryRun=All", None)),
}


def _json(obj):
    from machinery import codec
    return codec.to_dict(obj)


# (identity, request, expected code, expected message or None)
TABLE = [
    ("none", "list pods", 401, None),
    ("jane", "list pods", 403, forbidden("acc-jane", "list", "pods")),
    ("viewer", "list pods", 200, None),
    ("viewer", "create configmap", 403, forbidden("acc-viewer", "create", "configmaps")),
    ("node1", "update node2", 403,                            # NodeRestriction
     'nodes "node2" is forbidden: node "node1" is not allowed to modify node "node2"'),
    ("node1", "get secret of node2's pod", 403,               # the Node authorizer
     forbidden("system:node:node1", "get", "secrets", name="s-node2")
     + ": no relationship found between node 'node1' and this object"),
    ("node1", "delete pod of node2", 403,                     # NodeRestriction
     'pods "p-node2" is forbidden: node "node1" can only delete pods with spec.nodeName set to itself'),
    ("node1", "get secret of node1's pod", 200, None),
]


@pytest.mark.parametrize("transport", ["grpc", "https"])
@pytest.mark.parametrize("who, request_name, code, message", TABLE,
                         ids=[f"{r[0]}-{r[1].replace(' ', '-')}" for r in TABLE])
def test_identity_x_request(env, transport, who, request_name, code, message):
    grpc_call, http_call = REQUESTS[request_name]
    if transport == "grpc":
        got, body_message = env.grpc(who, grpc_call(env))
    else:
        method, path, body = http_call(env)
        got, out = env.https(who, method, path, body)
        body_message = out.get("message", "") if got >= 300 else ""
        if got >= 300:
            assert out.get("kind") == "Status" and out.get("code") == got, out
    assert got == code, (who, request_name, transport, body_message)
    if code == 401:
        assert "Unauthorized" in body_message or body_message == "Unauthorized", body_message
    if message:
        assert body_message == message
    elif code == 403:
        assert " is forbidden: " in body_message, body_message


def test_an_expired_serviceaccount_token_is_401(env):
    token = env.expired_token()
    code, out = env.https(None, "GET", f"/api/v1/namespaces/{NS}/pods", token=token)
    assert (code, out.get("reason"), out.get("message")) == (401, "Unauthorized", "Unauthorized"), out
    # the same account's live token works (so it is the expiry that is refused)
    async def fresh():
        async with Client(env.target, credentials=env.cluster.apiserver.credentials) as admin:
            from machinery.pb import serviceaccount_pb2
            req = serviceaccount_pb2.TokenRequest(api_version="authentication.k8s.io/v1", kind="TokenRequest")
            return await admin.create_token(NS, "robot", req)
    live = asyncio.run(fresh()).status.token
    code, out = env.https(None, "GET", f"/api/v1/namespaces/{NS}/pods", token=live)
    assert code == 403 and out["message"] == forbidden("system:serviceaccount:acc:robot", "list", "pods"), out


def test_a_token_alone_never_reaches_the_grpc_port(env):
    with pytest.raises(errors.ConfigError, match="^a bearer token cannot authenticate over gRPC"):
        Client(env.target, credentials=kubeconfig.Credentials(env.ca, token=env.expired_token()))
