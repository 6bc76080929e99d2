"""The RBAC objects of node join, as Kubernetes' default policy and kubeadm
(cmd/kubeadm/app/phases/bootstraptoken/{node,clusterinfo}) make them; the
apiserver creates and reconciles them with the rest of the default policy
(apiserver/auth/policy.py), so a kctl cluster is joinable out of the box.

ClusterRoles (Kubernetes' bootstrap policy):
  system:node-bootstrapper                                   create/get/list/watch CSRs
  system:certificates.k8s.io:certificatesigningrequests:nodeclient      create .../nodeclient
  system:certificates.k8s.io:certificatesigningrequests:selfnodeclient  create .../selfnodeclient
  system:certificates.k8s.io:{kubelet-serving,kube-apiserver-client,
      kube-apiserver-client-kubelet,legacy-unknown}-approver      approve on signers/<that signer>

Bindings (kubeadm's names; the group is the one `kctl token create` gives
its tokens, machinery.bootstraptoken.DEFAULT_EXTRA_GROUP):
  kubeadm:kubelet-bootstrap                    node-bootstrapper -> the bootstrap tokens' group
  kubeadm:node-autoapprove-bootstrap           nodeclient        -> the bootstrap tokens' group
  kubeadm:node-autoapprove-certificate-rotation selfnodeclient   -> system:nodes
  kctl:controller-manager:kubelet-serving-approver  kubelet-serving-approver
      -> user system:kube-controller-manager (kctl's approver approves node serving
      certificates, controllers/csrserving.py; Kubernetes binds this role to nobody)
  Role + RoleBinding kubeadm:bootstrap-signer-clusterinfo in kube-public:
      get configmaps/cluster-info -> system:anonymous (`kctl join` reads it
      before it trusts the server, apiserver/auth/anonymous.py)

The controller manager's approver asks a SubjectAccessReview for
nodeclient/selfnodeclient (controllers/csrapproving.py); its `approve` and
`sign` grants on `signers` (asked by the CertificateApproval/Signing
admission plugins) are in system:kube-controller-manager
(bootstrappolicy.CERTIFICATE_CONTROLLER_SIGNERS). Nodes create and read
their renewal CSRs through the Node authorizer's rules (NODE_RULES).
"""
from __future__ import annotations

from apiserver.auth.bootstrappolicy import _meta, binding, cluster_role, rule
from machinery import bootstraptoken as bt, csr
from machinery.pb import rbac_pb2

CERTS = "certificates.k8s.io"
CSRS = "certificatesigningrequests"
NODE_BOOTSTRAPPER = "system:node-bootstrapper"
NODE_CLIENT = f"system:{CERTS}:{CSRS}:nodeclient"
SELF_NODE_CLIENT = f"system:{CERTS}:{CSRS}:selfnodeclient"
CLUSTER_INFO_ROLE = "kubeadm:bootstrap-signer-clusterinfo"
APPROVER_SIGNERS = (csr.KUBELET_SERVING, csr.KUBE_APISERVER_CLIENT, csr.KUBE_APISERVER_CLIENT_KUBELET,
                    csr.LEGACY_UNKNOWN)
KUBELET_SERVING_APPROVER = f"system:{CERTS}:kubelet-serving-approver"


def approver_role(signer: str) -> str:
    """Kubernetes' system:certificates.k8s.io:<signer name after kubernetes.io/>-approver."""
    return f"system:{CERTS}:{signer.split('/', 1)[1]}-approver"


def cluster_roles() -> list[rbac_pb2.ClusterRole]:
    return [cluster_role(NODE_BOOTSTRAPPER, rule(("create", "get", "list", "watch"), (CERTS,), (CSRS,))),
            cluster_role(NODE_CLIENT, rule(("create",), (CERTS,), (f"{CSRS}/nodeclient",))),
            cluster_role(SELF_NODE_CLIENT, rule(("create",), (CERTS,), (f"{CSRS}/selfnodeclient",))),
            *(cluster_role(approver_role(s), rule(("approve",), (CERTS,), ("signers",), names=(s,)))
              for s in APPROVER_SIGNERS)]


def cluster_role_bindings() -> list[rbac_pb2.ClusterRoleBinding]:
    crb, tokens = rbac_pb2.ClusterRoleBinding, ("Group", bt.DEFAULT_EXTRA_GROUP)
    return [binding(crb, "kubeadm:kubelet-bootstrap", NODE_BOOTSTRAPPER, tokens),
            binding(crb, "kubeadm:node-autoapprove-bootstrap", NODE_CLIENT, tokens),
            binding(crb, "kubeadm:node-autoapprove-certificate-rotation", SELF_NODE_CLIENT, ("Group", "system:nodes")),
            binding(crb, "kctl:controller-manager:kubelet-serving-approver", KUBELET_SERVING_APPROVER,
                    ("User", "system:kube-controller-manager"))]


def namespaced() -> list:
    role = _meta(rbac_pb2.Role(rules=[rule(("get",), ("",), ("configmaps",), names=(bt.CLUSTER_INFO,))]),
                 CLUSTER_INFO_ROLE, bt.CLUSTER_INFO_NAMESPACE)
    return [role, binding(rbac_pb2.RoleBinding, CLUSTER_INFO_ROLE, CLUSTER_INFO_ROLE, ("User", "system:anonymous"),
                          namespace=bt.CLUSTER_INFO_NAMESPACE, role_kind="Role")]


def objects() -> list:
    return [*cluster_roles(), *cluster_role_bindings(), *namespaced()]
