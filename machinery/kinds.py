"""The registry of kinds: names kubectl users type, API groups, scope, and
the protobuf message of each kind. Everything that maps between a word on
the command line, a manifest's apiVersion/kind, an etcd key prefix and a
message class goes through here."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from google.protobuf.message import Message

from machinery.errors import KctlError
from machinery.pb import (apps_pb2, autoscaling_pb2, batch_pb2, certificates_pb2, core_pb2, discovery_pb2, policy_pb2,
                          rbac_pb2, scheduling_pb2, serviceaccount_pb2, storage_pb2)


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    singular: str
    group: str            # "" for core, "apps", "coordination.k8s.io"
    version: str
    namespaced: bool
    message: type
    short_names: tuple[str, ...] = field(default=())
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """kubectl's `plural.group` name (`deployments.apps`, `pods`)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_singular(self) -> str:
        """The name kubectl prints in `deployment.apps/web created`."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    @property
    def type_url(self) -> str:
        return "type.googleapis.com/" + self.message.DESCRIPTOR.full_name


RBAC_GROUP = "rbac.authorization.k8s.io"

KINDS: tuple[KindInfo, ...] = (
    KindInfo("Namespace", "namespaces", "namespace", "", "v1", False, core_pb2.Namespace, ("ns",)),
    KindInfo("Node", "nodes", "node", "", "v1", False, core_pb2.Node, ("no",)),
    KindInfo("Pod", "pods", "pod", "", "v1", True, core_pb2.Pod, ("po",)),
    KindInfo("Service", "services", "service", "", "v1", True, core_pb2.Service, ("svc",)),
    KindInfo("Endpoints", "endpoints", "endpoints", "", "v1", True, core_pb2.Endpoints, ("ep",), has_status=False),
    KindInfo("Event", "events", "event", "", "v1", True, core_pb2.Event, ("ev",), has_status=False),
    KindInfo("ReplicaSet", "replicasets", "replicaset", "apps", "v1", True, apps_pb2.ReplicaSet, ("rs",)),
    KindInfo("Deployment", "deployments", "deployment", "apps", "v1", True, apps_pb2.Deployment, ("deploy",)),
    KindInfo("Lease", "leases", "lease", "coordination.k8s.io", "v1", True, apps_pb2.Lease, (), has_status=False),
    KindInfo("ConfigMap", "configmaps", "configmap", "", "v1", True, storage_pb2.ConfigMap, ("cm",), has_status=False),
    KindInfo("Secret", "secrets", "secret", "", "v1", True, storage_pb2.Secret, (), has_status=False),
    KindInfo("PersistentVolume", "persistentvolumes", "persistentvolume", "", "v1", False,
             storage_pb2.PersistentVolume, ("pv",)),
    KindInfo("PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", "", "v1", True,
             storage_pb2.PersistentVolumeClaim, ("pvc",)),
    KindInfo("StorageClass", "storageclasses", "storageclass", "storage.k8s.io", "v1", False,
             storage_pb2.StorageClass, ("sc",), has_status=False),
    # workloads beyond Deployments (issue 12)
    KindInfo("DaemonSet", "daemonsets", "daemonset", "apps", "v1", True, apps_pb2.DaemonSet, ("ds",)),
    KindInfo("StatefulSet", "statefulsets", "statefulset", "apps", "v1", True, apps_pb2.StatefulSet, ("sts",)),
    KindInfo("ControllerRevision", "controllerrevisions", "controllerrevision", "apps", "v1", True,
             apps_pb2.ControllerRevision, (), has_status=False),
    KindInfo("Job", "jobs", "job", "batch", "v1", True, batch_pb2.Job, ()),
    KindInfo("CronJob", "cronjobs", "cronjob", "batch", "v1", True, batch_pb2.CronJob, ("cj",)),
    KindInfo("PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", "policy", "v1", True,
             policy_pb2.PodDisruptionBudget, ("pdb",)),
    # scheduling.k8s.io (priorities for the scheduler's queue and preemption)
    KindInfo("PriorityClass", "priorityclasses", "priorityclass", "scheduling.k8s.io", "v1", False,
             scheduling_pb2.PriorityClass, ("pc",), has_status=False),
    # autoscaling (HorizontalPodAutoscaler, controllers/hpa.py; issue 13)
    KindInfo("HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", "autoscaling", "v2",
             True, autoscaling_pb2.HorizontalPodAutoscaler, ("hpa",)),
    # discovery.k8s.io (EndpointSlices, maintained by controllers/endpointslice.py)
    KindInfo("EndpointSlice", "endpointslices", "endpointslice", "discovery.k8s.io", "v1", True,
             discovery_pb2.EndpointSlice, (), has_status=False),
    # identities of pods (issue 14): tokens from serviceaccounts/token (apiserver/serviceaccount/)
    KindInfo("ServiceAccount", "serviceaccounts", "serviceaccount", "", "v1", True,
             serviceaccount_pb2.ServiceAccount, ("sa",), has_status=False),
    # node join (issue 14): approved and signed by the controller manager (controllers/csr*.py)
    KindInfo("CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest",
             "certificates.k8s.io", "v1", False, certificates_pb2.CertificateSigningRequest, ("csr",)),
    # rbac.authorization.k8s.io (who may do what; apiserver/auth/rbac.py evaluates them)
    KindInfo("Role", "roles", "role", RBAC_GROUP, "v1", True, rbac_pb2.Role, (), has_status=False),
    KindInfo("ClusterRole", "clusterroles", "clusterrole", RBAC_GROUP, "v1", False, rbac_pb2.ClusterRole, (),
             has_status=False),
    KindInfo("RoleBinding", "rolebindings", "rolebinding", RBAC_GROUP, "v1", True, rbac_pb2.RoleBinding, (),
             has_status=False),
    KindInfo("ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", RBAC_GROUP, "v1", False,
             rbac_pb2.ClusterRoleBinding, (), has_status=False),
)

BY_KIND = {k.kind: k for k in KINDS}
BY_TYPE_URL = {k.type_url: k for k in KINDS}
BY_MESSAGE = {k.message: k for k in KINDS}

_ALIASES: dict[str, KindInfo] = {}
for _k in KINDS:
    for _name in (_k.kind, _k.plural, _k.singular, *_k.short_names):
        _ALIASES[_name.lower()] = _k
        if _k.group:
            _ALIASES[f"{_name.lower()}.{_k.group}"] = _k


class UnknownKind(KctlError, LookupError):
    pass


def resolve(name: str) -> KindInfo:
    """Resolve what a user typed (`po`, `pods`, `Deployment`, `deployments.apps`)."""
    info = _ALIASES.get(name.lower())
    if info is None:
        raise UnknownKind(f'the server doesn\'t have a resource type "{name}"')
    return info


def lookup(kind) -> KindInfo:
    """A KindInfo from whatever a caller holds: a KindInfo, a kind's message
    class, or a name a user would type (see resolve)."""
    if isinstance(kind, KindInfo):
        return kind
    if isinstance(kind, type):
        return of(kind)
    return resolve(kind)



# Kinds the HTTP API also serves in an older version, converted on the wire
# (apiserver/http/conversion.py; schemas in machinery/openapi_older.py).
# Storage, gRPC and kctl know only the versions in KINDS.
OLDER_VERSIONS: tuple[KindInfo, ...] = (replace(BY_KIND["HorizontalPodAutoscaler"], version="v1"),)


def for_kind(kind: str, api_version: str | None = None) -> KindInfo:
    """Look up a manifest's kind; api_version, when given, must match."""
    info = BY_KIND.get(kind)
    if info is None or (api_version is not None and api_version != info.api_version):
        raise UnknownKind(f'no matches for kind "{kind}" in version "{api_version or ""}"')
    return info


def of(obj_or_cls) -> KindInfo:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    try:
        return BY_MESSAGE[cls]
    except KeyError:
        raise UnknownKind(f"{cls.__name__} is not an API kind") from None


def new(info_or_kind: KindInfo | str) -> Message:
    info = BY_KIND[info_or_kind] if isinstance(info_or_kind, str) else info_or_kind
    obj = info.message()
    obj.api_version = info.api_version
    obj.kind = info.kind
    return obj
