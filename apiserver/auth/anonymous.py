"""Anonymous requests for a few named paths only (Kubernetes 1.32's
AnonymousAuthConfigurableEndpoints: `anonymous.conditions[].path` in the
AuthenticationConfiguration).

A node joining with a bootstrap token must read kube-public/cluster-info
before it trusts the server, so it must not send the token yet: that one
read is anonymous (`system:anonymous` in `system:unauthenticated`), as in
kubeadm clusters where RBAC lets system:anonymous get that ConfigMap. Every
other request without credentials stays 401.

`AnonymousEndpoints` answers None (not mine) for anything but a GET of an
allowed path without an Authorization header; it goes last in the
authenticator Union. The authorizer still decides: RBAC needs a Role in
kube-public allowing `get` on configmaps/cluster-info bound to
system:anonymous (kubeadm's kubeadm:bootstrap-signer-clusterinfo).
"""
from __future__ import annotations

from apiserver.auth.authn import Authenticator
from apiserver.auth.user import ANONYMOUS, UserInfo
from machinery import bootstraptoken as bt

CLUSTER_INFO_PATH = f"/api/v1/namespaces/{bt.CLUSTER_INFO_NAMESPACE}/configmaps/{bt.CLUSTER_INFO}"


class AnonymousEndpoints(Authenticator):
    def __init__(self, paths=(CLUSTER_INFO_PATH,)):
        self.paths = frozenset(paths)

    async def http(self, request) -> UserInfo | None:
        if request.method not in ("GET", "HEAD") or request.headers.get("Authorization"):
            return None
        return ANONYMOUS if request.path.rstrip("/") in self.paths else None

    async def grpc(self, context) -> UserInfo | None:
        return None
