"""Node join's RBAC objects (apiserver/auth/joinpolicy.py) evaluated by the
RBAC authorizer: what kubeadm's bindings grant bootstrap tokens, nodes and
anonymous readers of cluster-info, and nothing more."""
from __future__ import annotations

import pytest

from apiserver.auth import joinpolicy
from apiserver.auth.authz import Attributes
from apiserver.auth.user import ANONYMOUS
from machinery import bootstraptoken as bt, codec, defaults, validation
from tests.unit.test_rbac import _as, _rbac, allowed

TOKEN = _as("system:bootstrap:abcdef", "system:bootstrappers", bt.DEFAULT_EXTRA_GROUP)
OTHER_TOKEN = _as("system:bootstrap:zzzzzz", "system:bootstrappers")          # no kubeadm group
NODE = _as("system:node:n1", "system:nodes")
JANE = _as("jane")


def csr(user, verb="create", sub="", name=""):
    return Attributes(user, verb, api_group="certificates.k8s.io", resource="certificatesigningrequests",
                      subresource=sub, name=name)


def cm(user, name, ns=bt.CLUSTER_INFO_NAMESPACE):
    return Attributes(user, "get", namespace=ns, resource="configmaps", name=name)


@pytest.mark.parametrize("a, ok", [
    (csr(TOKEN), True), (csr(TOKEN, "get", name="node-csr-x"), True), (csr(TOKEN, "watch"), True),
    (csr(TOKEN, sub="nodeclient"), True), (csr(TOKEN, sub="selfnodeclient"), False),
    (csr(TOKEN, "delete", name="node-csr-x"), False),
    (csr(OTHER_TOKEN), False), (csr(OTHER_TOKEN, sub="nodeclient"), False),
    (csr(NODE, sub="selfnodeclient"), True), (csr(NODE, sub="nodeclient"), False),
    (csr(JANE, sub="nodeclient"), False),
    (cm(ANONYMOUS, bt.CLUSTER_INFO), True), (cm(ANONYMOUS, "other"), False),
    (cm(ANONYMOUS, bt.CLUSTER_INFO, ns="default"), False),
    (Attributes(ANONYMOUS, "list", namespace=bt.CLUSTER_INFO_NAMESPACE, resource="configmaps"), False),
])
def test_grants(a, ok):
    assert allowed(_rbac(*joinpolicy.objects()), a) is ok


def test_objects_are_valid_and_named_as_kubeadm_names_them():
    names = set()
    for obj in joinpolicy.objects():
        o = codec.copy(obj)
        defaults.apply_defaults(o)
        assert validation.validate(o) == [], obj.metadata.name
        names.add((type(obj).__name__, obj.metadata.namespace, obj.metadata.name))
    assert names == {
        ("ClusterRole", "", "system:node-bootstrapper"),
        ("ClusterRole", "", "system:certificates.k8s.io:certificatesigningrequests:nodeclient"),
        ("ClusterRole", "", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"),
        ("ClusterRole", "", "system:certificates.k8s.io:kubelet-serving-approver"),
        ("ClusterRole", "", "system:certificates.k8s.io:kube-apiserver-client-approver"),
        ("ClusterRole", "", "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver"),
        ("ClusterRole", "", "system:certificates.k8s.io:legacy-unknown-approver"),
        ("ClusterRoleBinding", "", "kctl:controller-manager:kubelet-serving-approver"),
        ("ClusterRoleBinding", "", "kubeadm:kubelet-bootstrap"),
        ("ClusterRoleBinding", "", "kubeadm:node-autoapprove-bootstrap"),
        ("ClusterRoleBinding", "", "kubeadm:node-autoapprove-certificate-rotation"),
        ("Role", "kube-public", "kubeadm:bootstrap-signer-clusterinfo"),
        ("RoleBinding", "kube-public", "kubeadm:bootstrap-signer-clusterinfo")}
