"""apiserver.auth: request attributes (Kubernetes' RequestInfo), the 403
message, the authorizer chain, and the identity context variable."""
import asyncio

import pytest

from apiserver.auth import LOOPBACK, UNSECURED, UserInfo, acting_as, current
from apiserver.auth import authz
from apiserver.auth.gate import grpc_attributes
from apiserver.auth.requestinfo import attributes
from machinery import errors
from machinery.pb import api_pb2

JANE = UserInfo("jane", groups=("system:authenticated",))


@pytest.mark.parametrize("method,path,query,want", [
    ("GET", "/api/v1/namespaces/ns/pods/x/log", "", ("get", "", "pods", "log", "ns", "x")),
    ("GET", "/apis/apps/v1/deployments", "watch=true", ("watch", "apps", "deployments", "", "", "")),
    ("GET", "/apis/apps/v1/namespaces/a/deployments", "", ("list", "apps", "deployments", "", "a", "")),
    ("GET", "/api/v1/namespaces/ns", "", ("get", "", "namespaces", "", "ns", "ns")),
    ("PUT", "/api/v1/namespaces/ns/status", "", ("update", "", "namespaces", "status", "ns", "ns")),
    ("DELETE", "/api/v1/namespaces/ns/pods", "", ("deletecollection", "", "pods", "", "ns", "")),
    ("DELETE", "/api/v1/namespaces/ns/pods/p", "", ("delete", "", "pods", "", "ns", "p")),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", "", ("patch", "apps", "deployments", "scale", "ns", "d")),
    ("POST", "/api/v1/namespaces", "", ("create", "", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", "fieldSelector=metadata.name%3Dweb", ("list", "", "pods", "", "ns", "web")),
    ("GET", "/api/v1/namespaces/ns/pods/p/exec", "command=true", ("create", "", "pods", "exec", "ns", "p")),
    ("POST", "/api/v1/namespaces/ns/pods/p/portforward", "", ("create", "", "pods", "portforward", "ns", "p")),
])
def test_request_info(method, path, query, want):
    a = attributes(JANE, method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == want


@pytest.mark.parametrize("path", ["/version", "/api", "/apis", "/api/v1", "/openapi/v3", "/healthz"])
def test_non_resource(path):
    a = attributes(JANE, "GET", path)
    assert not a.resource_request and a.verb == "get" and a.path == path


def test_forbidden_messages_are_kubernetes_wording():
    a = authz.Attributes(JANE, "get", namespace="default", resource="pods", name="web")
    assert authz.forbidden(a).message == ('pods "web" is forbidden: User "jane" cannot get resource "pods" '
                                          'in API group "" in the namespace "default"')
    a = authz.Attributes(JANE, "list", api_group="", resource="nodes")
    assert authz.forbidden(a).message == ('nodes is forbidden: User "jane" cannot list resource "nodes" '
                                          'in API group "" at the cluster scope')
    a = authz.Attributes(JANE, "create", namespace="ns", resource="pods", subresource="exec", name="p")
    assert 'cannot create resource "pods/exec"' in authz.forbidden(a).message
    a = authz.Attributes(JANE, "get", resource_request=False, path="/metrics")
    err = authz.forbidden(a, "no RBAC policy matched")
    assert err.message == 'forbidden: User "jane" cannot get path "/metrics": no RBAC policy matched'
    assert isinstance(err, errors.Forbidden)


class Fixed(authz.Authorizer):
    def __init__(self, verdict, reason=""):
        self.d = authz.Decision(verdict, reason)

    async def authorize(self, a):
        return self.d


def test_chain_first_opinion_wins_and_silence_denies():
    a = authz.Attributes(JANE, "get", resource="pods")
    run = asyncio.run
    assert run(authz.Chain(Fixed(authz.NO_OPINION), Fixed(authz.ALLOW)).authorize(a)).allowed
    assert not run(authz.Chain(Fixed(authz.DENY, "no"), Fixed(authz.ALLOW)).authorize(a)).allowed
    d = run(authz.Chain(Fixed(authz.NO_OPINION, "r1"), Fixed(authz.NO_OPINION)).authorize(a))
    assert not d.allowed and d.reason == "r1"
    with pytest.raises(errors.Forbidden):
        run(authz.check(authz.Chain(), a))
    run(authz.check(None, a))            # no authorizer: allowed


def test_identity_context():
    assert current() is LOOPBACK
    with acting_as(JANE):
        assert current() is JANE
    assert current() is LOOPBACK and UNSECURED.in_group("system:masters")


def test_grpc_attributes():
    req = api_pb2.GetRequest(kind="po", name="web")
    (a,) = grpc_attributes(JANE, "Get", req)
    assert (a.verb, a.resource, a.namespace, a.name) == ("get", "pods", "default", "web")
    (a,) = grpc_attributes(JANE, "List", api_pb2.ListRequest(kind="deployments"))
    assert (a.verb, a.api_group, a.resource, a.namespace) == ("list", "apps", "deployments", "")
    (a,) = grpc_attributes(JANE, "Watch", api_pb2.WatchRequest(kind="nodes"))
    assert (a.verb, a.resource, a.namespace) == ("watch", "nodes", "")
    (a,) = grpc_attributes(JANE, "Bind", api_pb2.BindRequest(namespace="n", name="p", node_name="x"))
    assert (a.verb, a.resource, a.subresource) == ("create", "pods", "binding")
    (a,) = grpc_attributes(JANE, "Version", api_pb2.VersionRequest())
    assert not a.resource_request and a.path == "/version"
