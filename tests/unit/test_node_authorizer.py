"""The Node authorizer's graph (a node reads only what its pods use) and
the NodeRestriction admission plugin (a node writes only its own things)."""
import asyncio

import pytest

from apiserver import admission
from apiserver.admission_noderestriction import NodeRestriction
from apiserver.auth import UserInfo
from apiserver.auth.authz import Attributes
from apiserver.auth.index import ObjectIndex
from apiserver.auth.node import NodeAuthorizer, NodeGraph, node_name
from machinery import codec, errors, kinds

N1 = UserInfo("system:node:node1", groups=("system:nodes", "system:authenticated"))


def pod(name, node, ns="default", **spec):
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                                     "envFrom": [{"configMapRef": {"name": f"{name}-env"}}],
                                     "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": f"{name}-key",
                                                                                          "key": "k"}}}]}],
                                     "volumes": [{"name": "s", "secret": {"secretName": f"{name}-secret"}},
                                                 {"name": "d", "persistentVolumeClaim": {"claimName": f"{name}-pvc"}},
                                                 {"name": "p", "projected": {"sources": [
                                                     {"configMap": {"name": f"{name}-proj"}}]}}],
                                     **spec}})


def claim(name, volume, ns="default"):
    return codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": name, "namespace": ns}, "spec": {"volumeName": volume}})


@pytest.fixture
def node_authz():
    pods, claims = ObjectIndex("Pod"), ObjectIndex("PersistentVolumeClaim")
    graph = NodeGraph(pods, claims)
    pods.put(pod("a", "node1"))
    pods.put(pod("b", "node2"))
    claims.put(claim("a-pvc", "pv-a"))
    claims.put(claim("b-pvc", "pv-b"))
    return NodeAuthorizer(graph), pods


def decide(z, **kw):
    return asyncio.run(z.authorize(Attributes(N1, **kw)))


def test_node_identity():
    assert node_name(N1) == "node1"
    assert node_name(UserInfo("system:node:node1")) is None          # not in system:nodes
    assert node_name(UserInfo("jane", groups=("system:nodes",))) is None


@pytest.mark.parametrize("resource,name,ok", [
    ("secrets", "a-secret", True), ("secrets", "a-key", True), ("configmaps", "a-env", True),
    ("configmaps", "a-proj", True), ("persistentvolumeclaims", "a-pvc", True),
    ("secrets", "b-secret", False), ("configmaps", "b-env", False), ("persistentvolumeclaims", "b-pvc", False),
])
def test_reads_only_what_its_pods_use(node_authz, resource, name, ok):
    z, _ = node_authz
    d = decide(z, verb="get", namespace="default", resource=resource, name=name)
    assert d.allowed is ok
    if not ok:
        assert d.reason == "no relationship found between node 'node1' and this object"


def test_persistent_volumes_through_claims_and_graph_follows_pod_moves(node_authz):
    z, pods = node_authz
    assert decide(z, verb="get", resource="persistentvolumes", name="pv-a").allowed
    assert not decide(z, verb="get", resource="persistentvolumes", name="pv-b").allowed
    pods.put(pod("b", "node1"))                     # b now on node1 (an update of the index)
    assert decide(z, verb="get", namespace="default", resource="secrets", name="b-secret").allowed
    pods.remove("default", "a")
    assert not decide(z, verb="get", namespace="default", resource="secrets", name="a-secret").allowed


def test_verbs_and_leases(node_authz):
    z, _ = node_authz
    assert not decide(z, verb="list", namespace="default", resource="secrets").allowed
    assert not decide(z, verb="update", namespace="default", resource="secrets", name="a-secret").allowed
    lease = dict(namespace="kube-node-lease", api_group="coordination.k8s.io", resource="leases")
    assert decide(z, verb="update", name="node1", **lease).allowed
    assert decide(z, verb="create", **lease).allowed
    d = decide(z, verb="update", name="node2", **lease)
    assert not d.allowed and d.reason == "can only access node lease with the same name as the requesting node"
    # everything else: the static node rules
    assert decide(z, verb="update", resource="nodes", subresource="status", name="node1").allowed
    assert decide(z, verb="watch", resource="pods").allowed
    assert not decide(z, verb="delete", resource="nodes", name="node1").allowed
    assert not asyncio.run(z.authorize(Attributes(UserInfo("jane"), "get", resource="pods"))).allowed


def _admit(op, obj, old=None, sub="", user=N1):
    info = kinds.of(obj if obj is not None else old)
    return asyncio.run(NodeRestriction().validate(admission.Request(op, info, obj, old, sub, user=user)))


def node(name, labels=None, taints=()):
    return codec.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
                            "spec": {"taints": list(taints)}})


@pytest.mark.parametrize("op,obj,old,sub,message", [
    ("UPDATE", node("node2"), node("node2"), "", 'nodes "node2" is forbidden: node "node1" is not allowed to modify node "node2"'),
    ("UPDATE", node("node2"), node("node2"), "status", 'nodes "node2" is forbidden: node "node1" is not allowed to modify node "node2"'),
    ("CREATE", node("node2"), None, "", 'nodes "node2" is forbidden: node "node1" is not allowed to modify node "node2"'),
    ("CREATE", node("node1", {"node-restriction.kubernetes.io/x": "1"}), None, "",
     'nodes "node1" is forbidden: node "node1" is not allowed to set the following labels: node-restriction.kubernetes.io/x'),
    ("UPDATE", node("node1", {"a.node-restriction.kubernetes.io/x": "1"}), node("node1"), "",
     'nodes "node1" is forbidden: node "node1" is not allowed to modify labels: a.node-restriction.kubernetes.io/x'),
    ("UPDATE", node("node1"), node("node1", taints=[{"key": "k", "effect": "NoSchedule"}]), "",
     'nodes "node1" is forbidden: node "node1" is not allowed to modify taints'),
    ("DELETE", None, pod("b", "node2"), "", 'pods "b" is forbidden: node "node1" can only delete pods with spec.nodeName set to itself'),
    ("UPDATE", pod("b", "node2"), pod("b", "node2"), "status",
     'pods "b" is forbidden: node "node1" can only update pod status for pods with spec.nodeName set to itself'),
    ("CREATE", pod("c", "node1"), None, "",
     'pods "c" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "node1" can only create mirror pods'),
])
def test_node_restriction_refuses(op, obj, old, sub, message):
    with pytest.raises(errors.Forbidden) as exc:
        _admit(op, obj, old, sub)
    assert exc.value.message == message


def test_node_restriction_allows_its_own_and_ignores_others():
    _admit("UPDATE", node("node1", {"x": "1"}), node("node1"))
    _admit("UPDATE", node("node1"), node("node1"), "status")
    _admit("UPDATE", pod("a", "node1"), pod("a", "node1"), "status")
    _admit("DELETE", None, pod("a", "node1"))
    _admit("UPDATE", node("node2"), node("node2"), user=UserInfo("jane"))


def test_grpc_list_with_a_name_selector_names_the_object(node_authz):
    from apiserver.auth.gate import grpc_attributes
    from machinery.pb import api_pb2
    z, _ = node_authz
    req = api_pb2.ListRequest(kind="Secret", namespace="default", field_selector="metadata.name=a-secret")
    [a] = grpc_attributes(N1, "Watch", req)
    assert (a.verb, a.resource, a.name) == ("watch", "secrets", "a-secret")
    assert asyncio.run(z.authorize(a)).allowed
    [a] = grpc_attributes(N1, "List", api_pb2.ListRequest(kind="Secret", namespace="default"))
    assert not asyncio.run(z.authorize(a)).allowed
