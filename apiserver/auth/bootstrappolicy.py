"""Kubernetes' default ClusterRoles and ClusterRoleBindings
(plugin/pkg/auth/authorizer/rbac/bootstrappolicy), trimmed to the API kctl
serves, plus what kctl's own components need under their own identities.

* cluster-admin (everything; bound to system:masters), admin / edit / view
  (aggregated from system:aggregate-to-admin|edit|view and from any
  ClusterRole labelled `rbac.authorization.k8s.io/aggregate-to-*: "true"`),
  system:discovery, system:public-info-viewer, system:basic-user (bound to
  system:authenticated).
* system:kube-scheduler (user system:kube-scheduler) and
  system:kube-controller-manager (user system:kube-controller-manager):
  what kctl's scheduler and controllers call (the scheduler also updates
  pods: kctl records its decision in an annotation), with Kubernetes'
  system:volume-scheduler (bound to user system:kube-scheduler: the
  VolumeBinding plugin updates claims and volumes). kctl runs all controllers
  under one identity (kube-controller-manager without
  --use-service-account-credentials), so the role is the union of
  Kubernetes' per-controller roles: the garbage collector's and namespace
  controller's read/update/delete of everything plus creating what the
  controllers create, and the certificate controller's `approve` on the
  kubelet client signer and `sign` on the kubernetes.io signers (the
  `signers` resource the CertificateApproval/CertificateSigning admission
  plugins ask about).
* system:node: the rules the Node authorizer applies to nodes
  (NODE_RULES; no binding, as in Kubernetes), system:node-proxier (kctl's
  node agent is also the proxy, so it is bound to system:nodes as well as
  to user system:kube-proxy) and kctl's system:kctl:node-leases Role
  (nodes list the node Leases to coordinate draining, nodeagent/drain.py).
* system:kube-dns: what kctl-dns reads (CoreDNS' role), bound to the
  kube-system/kube-dns ServiceAccount and user system:kube-dns, and the
  system:kctl:kube-dns-register Role in kube-system (kctl-dns creates and
  keeps the kube-dns Service and Endpoints, and renews its own Lease there,
  clusterdns/register.py; Lease names carry the instance's address, so the
  rule cannot name them: it covers every Lease in kube-system, and the
  DNSRestriction admission plugin narrows it to kctl-dns-* ones).

Every object carries `kubernetes.io/bootstrapping: rbac-defaults` and
`rbac.authorization.kubernetes.io/autoupdate: "true"`; policy.py creates
and reconciles them at start.
"""
from __future__ import annotations

from machinery import csr, kinds
from machinery.pb import rbac_pb2

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
RW = READ + WRITE
LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
CORE, APPS, BATCH, AUTOSCALING, POLICY = "", "apps", "batch", "autoscaling", "policy"
COORD, DISCOVERY, STORAGE, SCHED = "coordination.k8s.io", "discovery.k8s.io", "storage.k8s.io", "scheduling.k8s.io"
AUTHZ, AUTHN, EVENTS = "authorization.k8s.io", "authentication.k8s.io", "events.k8s.io"
CERTS = "certificates.k8s.io"


def rule(verbs, groups=(), resources=(), names=(), urls=()) -> rbac_pb2.PolicyRule:
    return rbac_pb2.PolicyRule(verbs=list(verbs), api_groups=list(groups), resources=list(resources),
                               resource_names=list(names), non_resource_urls=list(urls))


def _meta(obj, name: str, namespace: str = "", labels=None):
    obj.api_version, obj.kind = kinds.RBAC_GROUP + "/v1", type(obj).__name__
    obj.metadata.name = name
    obj.metadata.namespace = namespace
    obj.metadata.labels.update({**LABEL, **(labels or {})})
    obj.metadata.annotations[AUTOUPDATE] = "true"
    return obj


def cluster_role(name: str, *rules, labels=None, aggregate: str = "") -> rbac_pb2.ClusterRole:
    r = _meta(rbac_pb2.ClusterRole(rules=list(rules)), name, labels=labels)
    if aggregate:
        sel = r.aggregation_rule.cluster_role_selectors.add()
        sel.match_labels[AGGREGATE_TO + aggregate] = "true"
    return r


def _subject(kind: str, name: str, namespace: str = "") -> rbac_pb2.Subject:
    group = "" if kind == "ServiceAccount" else kinds.RBAC_GROUP
    return rbac_pb2.Subject(kind=kind, api_group=group, name=name, namespace=namespace)


def binding(cls, name: str, role: str, *subjects, namespace: str = "", role_kind: str = "ClusterRole"):
    b = _meta(cls(subjects=[_subject(*s) for s in subjects]), name, namespace)
    b.role_ref.api_group, b.role_ref.kind, b.role_ref.name = kinds.RBAC_GROUP, role_kind, role
    return b


EVENTS_RULE = rule(("create", "update", "patch"), (CORE, EVENTS), ("events",))

NODE_RULES = [
    rule(("create",), (AUTHN,), ("tokenreviews",)),
    rule(("create",), (AUTHZ,), ("subjectaccessreviews", "localsubjectaccessreviews")),
    rule(READ, (CORE,), ("services",)),
    rule(("create", "get", "list", "watch"), (CORE,), ("nodes",)),
    rule(("update", "patch"), (CORE,), ("nodes/status",)),
    rule(("update", "patch"), (CORE,), ("nodes",)),
    EVENTS_RULE,
    rule(READ, (CORE,), ("pods",)),
    rule(("create", "delete"), (CORE,), ("pods",)),
    rule(("update", "patch"), (CORE,), ("pods/status",)),
    rule(("create",), (CORE,), ("pods/eviction",)),
    rule(READ, (CORE,), ("secrets", "configmaps")),
    rule(("get",), (CORE,), ("persistentvolumeclaims", "persistentvolumes")),
    rule(("get",), (CORE,), ("endpoints",)),
    rule(("update", "patch"), (CORE,), ("persistentvolumeclaims/status",)),
    rule(("get", "create", "update", "patch", "delete"), (COORD,), ("leases",)),
    rule(("create",), (CORE,), ("serviceaccounts/token",)),
    rule(("create", "get", "list", "watch"), ("certificates.k8s.io",), ("certificatesigningrequests",)),  # renewal
]

_VIEW_CORE = ("pods", "pods/status", "pods/log", "services", "services/status", "endpoints", "persistentvolumeclaims",
              "persistentvolumeclaims/status", "configmaps", "serviceaccounts", "replicationcontrollers",
              "replicationcontrollers/scale", "replicationcontrollers/status", "limitranges", "resourcequotas",
              "resourcequotas/status", "bindings", "events", "namespaces", "namespaces/status")
_APPS = ("controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
         "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
         "statefulsets/scale", "statefulsets/status")
_APPS_WRITE = ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
               "replicasets/scale", "statefulsets", "statefulsets/scale")


# system:controller:certificate-controller's signer grants (CertificateApproval and
# CertificateSigning admission, apiserver/admission_csr.py): it auto-approves node
# client requests and signs for Kubernetes' well-known signers.
CERTIFICATE_CONTROLLER_SIGNERS = (
    rule(("approve",), (CERTS,), ("signers",), names=(csr.KUBE_APISERVER_CLIENT_KUBELET,)),
    rule(("sign",), (CERTS,), ("signers",), names=(csr.LEGACY_UNKNOWN, csr.KUBE_APISERVER_CLIENT,
                                                    csr.KUBE_APISERVER_CLIENT_KUBELET, csr.KUBELET_SERVING)))


def cluster_roles() -> list[rbac_pb2.ClusterRole]:
    agg = {f"{AGGREGATE_TO}{n}": "true" for n in ("admin",)}
    return [
        cluster_role("cluster-admin", rule(("*",), ("*",), ("*",)), rule(("*",), urls=("*",))),
        cluster_role("system:discovery", rule(("get",), urls=(
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
            "/version", "/version/"))),
        cluster_role("system:public-info-viewer", rule(("get",), urls=(
            "/healthz", "/livez", "/readyz", "/version", "/version/"))),
        cluster_role("system:basic-user",
                     rule(("create",), (AUTHZ,), ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
                     rule(("create",), (AUTHN,), ("selfsubjectreviews",))),
        cluster_role("admin", aggregate="admin"),
        cluster_role("edit", labels=agg, aggregate="edit"),
        cluster_role("view", labels={f"{AGGREGATE_TO}edit": "true"}, aggregate="view"),
        cluster_role("system:aggregate-to-admin",
                     rule(("create",), (AUTHZ,), ("localsubjectaccessreviews",)),
                     rule(RW, (kinds.RBAC_GROUP,), ("roles", "rolebindings")),
                     labels=agg),
        cluster_role("system:aggregate-to-edit",
                     rule(RW, (CORE,), ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy")),
                     rule(("create",), (CORE,), ("pods/eviction",)),
                     rule(RW, (CORE,), ("configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                                        "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                                        "services/proxy")),
                     rule(("create",), (CORE,), ("serviceaccounts/token",)),
                     rule(("impersonate",), (CORE,), ("serviceaccounts",)),
                     rule(RW, (APPS,), _APPS_WRITE),
                     rule(RW, (AUTOSCALING,), ("horizontalpodautoscalers",)),
                     rule(RW, (BATCH,), ("cronjobs", "jobs")),
                     rule(RW, (POLICY,), ("poddisruptionbudgets",)),
                     labels={f"{AGGREGATE_TO}edit": "true"}),
        cluster_role("system:aggregate-to-view",
                     rule(READ, (CORE,), _VIEW_CORE),
                     rule(READ, (DISCOVERY,), ("endpointslices",)),
                     rule(READ, (APPS,), _APPS),
                     rule(READ, (AUTOSCALING,), ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
                     rule(READ, (BATCH,), ("cronjobs", "cronjobs/status", "jobs", "jobs/status")),
                     rule(READ, (POLICY,), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
                     rule(READ, ("metrics.k8s.io",), ("pods", "nodes")),
                     labels={f"{AGGREGATE_TO}view": "true"}),
        cluster_role("system:kube-scheduler",
                     EVENTS_RULE,
                     rule(("create",), (COORD,), ("leases",)),
                     rule(("get", "update"), (COORD,), ("leases",), names=("kube-scheduler",)),
                     rule(READ, (CORE,), ("nodes", "namespaces", "services", "replicationcontrollers",
                                          "persistentvolumeclaims", "persistentvolumes")),
                     rule(READ + ("delete",), (CORE,), ("pods",)),
                     rule(("update", "patch"), (CORE,), ("pods",)),     # kctl's scheduling-decision annotation
                     rule(("create",), (CORE,), ("bindings", "pods/binding")),
                     rule(("patch", "update"), (CORE,), ("pods/status",)),
                     rule(READ, (APPS,), ("replicasets", "statefulsets")),
                     rule(READ, (POLICY,), ("poddisruptionbudgets",)),
                     rule(READ, (STORAGE,), ("storageclasses", "csinodes", "csidrivers", "csistoragecapacities")),
                     rule(READ, (SCHED,), ("priorityclasses",)),
                     rule(("create",), (AUTHN,), ("tokenreviews",)),
                     rule(("create",), (AUTHZ,), ("subjectaccessreviews",))),
        cluster_role("system:volume-scheduler",            # the scheduler's VolumeBinding binds claims
                     rule(READ + ("update", "patch"), (CORE,), ("persistentvolumes", "persistentvolumeclaims")),
                     rule(READ, (STORAGE,), ("storageclasses",))),
        cluster_role("system:kube-controller-manager",
                     rule(READ + ("update", "patch", "delete", "deletecollection"), ("*",), ("*",)),
                     rule(("create",), (CORE,), ("pods", "endpoints", "events", "persistentvolumes",
                                                 "persistentvolumeclaims", "pods/eviction", "pods/binding",
                                                 "serviceaccounts", "configmaps")),   # default SA, kube-root-ca.crt,
                                                                                      # cluster-info
                     rule(("create",), (APPS,), ("replicasets", "controllerrevisions")),
                     rule(("create",), (BATCH,), ("jobs",)),
                     rule(("create",), (DISCOVERY,), ("endpointslices",)),
                     rule(("create",), (COORD,), ("leases",)),
                     rule(("create",), (STORAGE,), ("storageclasses",)),      # kctl's local-path default class
                     EVENTS_RULE,
                     rule(("create",), (AUTHN,), ("tokenreviews",)),
                     rule(("create",), (AUTHZ,), ("subjectaccessreviews",)),
                     *CERTIFICATE_CONTROLLER_SIGNERS),
        cluster_role("system:node", *NODE_RULES),
        cluster_role("system:node-proxier",
                     rule(("list", "watch"), (CORE,), ("services", "endpoints")),
                     rule(("get", "list", "watch"), (CORE,), ("nodes",)),
                     rule(("list", "watch"), (DISCOVERY,), ("endpointslices",)),
                     EVENTS_RULE),
        cluster_role("system:kube-dns",
                     rule(("list", "watch"), (CORE,), ("endpoints", "services", "pods", "namespaces")),
                     rule(("list", "watch"), (DISCOVERY,), ("endpointslices",))),
    ]


def cluster_role_bindings() -> list[rbac_pb2.ClusterRoleBinding]:
    crb = rbac_pb2.ClusterRoleBinding
    return [
        binding(crb, "cluster-admin", "cluster-admin", ("Group", "system:masters")),
        binding(crb, "system:discovery", "system:discovery", ("Group", "system:authenticated")),
        binding(crb, "system:basic-user", "system:basic-user", ("Group", "system:authenticated")),
        binding(crb, "system:public-info-viewer", "system:public-info-viewer", ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated")),
        binding(crb, "system:kube-scheduler", "system:kube-scheduler", ("User", "system:kube-scheduler")),
        binding(crb, "system:volume-scheduler", "system:volume-scheduler", ("User", "system:kube-scheduler")),
        binding(crb, "system:kube-controller-manager", "system:kube-controller-manager",
                ("User", "system:kube-controller-manager")),
        binding(crb, "system:node", "system:node"),
        binding(crb, "system:node-proxier", "system:node-proxier", ("User", "system:kube-proxy"),
                ("Group", "system:nodes")),
        binding(crb, "system:kube-dns", "system:kube-dns", *DNS_SUBJECTS),
    ]


DNS_SUBJECTS = (("ServiceAccount", "kube-dns", "kube-system"), ("User", "system:kube-dns"))


def namespaced() -> list:
    """Roles and RoleBindings in system namespaces: nodes list the node Leases;
    kctl-dns registers itself as the kube-system/kube-dns Service and its Endpoints
    (with a Lease per instance)."""
    leases = _meta(rbac_pb2.Role(rules=[rule(("list", "watch"), (COORD,), ("leases",))]),
                   "system:kctl:node-leases", "kube-node-lease")
    dns = _meta(rbac_pb2.Role(rules=[rule(("create",), (CORE,), ("services", "endpoints")),
                                     *(rule(("get", "update", "patch"), (CORE,), (r,), names=("kube-dns",))
                                       for r in ("services", "endpoints")),
                                     rule(("create", "get", "list", "update", "delete"), (COORD,), ("leases",))]),
                "system:kctl:kube-dns-register", "kube-system")
    return [leases, binding(rbac_pb2.RoleBinding, "system:kctl:node-leases", "system:kctl:node-leases",
                            ("Group", "system:nodes"), namespace="kube-node-lease", role_kind="Role"),
            dns, binding(rbac_pb2.RoleBinding, "system:kctl:kube-dns-register", "system:kctl:kube-dns-register",
                         *DNS_SUBJECTS, namespace="kube-system", role_kind="Role")]
