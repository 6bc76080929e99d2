"""Defaulting of API objects, after Kubernetes' SetDefaults_* functions
(pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go,
pkg/apis/batch/v1/defaults.go) plus the few
values Kubernetes' registry strategies fill on create (Pod phase Pending and
QoS class, Namespace phase Active), and the one conversion step Kubernetes
runs on every write: a Secret's stringData merged into data.

Order in the apiserver, on every create and update:

    defaults.apply_defaults(obj)     # fill what the user left out
    errs = validation.validate(obj, old)
    defaults.canonicalize(obj)       # only once the quantities are known valid

Pods live in defaults_pod.py, the workload kinds and HPAs in
defaults_workloads.py; this module dispatches by kind and holds the rest.

`apply_defaults` is idempotent and never fails: it only fills fields that are
unset (for proto3 scalars that means zero/empty) and leaves invalid input in
place for validation to report. `canonicalize` rewrites every resource
quantity to its canonical spelling (`0.5` -> `500m`) and skips any it cannot
parse.

Namespace: an empty metadata.namespace of a namespaced kind defaults to
`default` (what kubectl and the apiserver do for a request without one). An
apiserver serving a request for namespace X must therefore put X into the
object *before* calling apply_defaults.
"""
from __future__ import annotations

from machinery import kinds, quantity
from machinery.defaults_pod import _pod, default_pod_spec, qos_class  # noqa: F401  (re-exported)
from machinery.defaults_workloads import (_cron_job, _daemon_set, _deployment, _hpa, _job,  # noqa: F401
                                          _replica_set, _stateful_set, default_job_spec, hpa_scale_down_rules,
                                          hpa_scale_up_rules)

# ------------------------------------------------------------------- core

def _service(svc) -> None:
    spec = svc.spec
    if not spec.session_affinity:
        spec.session_affinity = "None"
    if spec.session_affinity == "ClientIP" and not spec.session_affinity_config.client_ip.HasField("timeout_seconds"):
        spec.session_affinity_config.client_ip.timeout_seconds = 10800
    if not spec.type:
        spec.type = "ClusterIP"
    for port in spec.ports:
        if not port.protocol:
            port.protocol = "TCP"
        tp = port.target_port
        if tp.WhichOneof("value") is None or (tp.WhichOneof("value") == "int_val" and tp.int_val == 0) \
                or (tp.WhichOneof("value") == "str_val" and tp.str_val == ""):
            tp.int_val = port.port
    if spec.type in ("NodePort", "LoadBalancer") and not spec.external_traffic_policy:
        spec.external_traffic_policy = "Cluster"
    if spec.type != "ExternalName":
        if not spec.internal_traffic_policy:
            spec.internal_traffic_policy = "Cluster"
        if spec.cluster_ip and not spec.cluster_ips:
            spec.cluster_ips.append(spec.cluster_ip)
        elif spec.cluster_ips and not spec.cluster_ip:
            spec.cluster_ip = spec.cluster_ips[0]
        if not spec.ip_family_policy:
            headless_no_selector = spec.cluster_ip == "None" and not spec.selector
            spec.ip_family_policy = "RequireDualStack" if headless_no_selector else "SingleStack"
        if not spec.ip_families:
            spec.ip_families.append("IPv4")


def _endpoints(ep) -> None:
    for subset in ep.subsets:
        for port in subset.ports:
            if not port.protocol:
                port.protocol = "TCP"


def _endpoint_slice(es) -> None:
    for port in es.ports:
        if not port.HasField("name"):
            port.name = ""
        if not port.HasField("protocol"):
            port.protocol = "TCP"


def _namespace(ns) -> None:
    if not ns.status.phase:
        ns.status.phase = "Active"


def _node(node) -> None:
    # SetDefaults_NodeStatus: allocatable defaults to capacity
    if not node.status.allocatable:
        for k, v in node.status.capacity.items():
            node.status.allocatable[k] = v


# ---------------------------------------------------- configuration, storage

def _secret(secret) -> None:
    """Kubernetes merges the write-only stringData into data when it converts
    a v1 Secret (its conversion runs before defaulting and validation on
    every write); stringData wins over data for the same key, and is never
    stored."""
    for k, v in secret.string_data.items():
        secret.data[k] = v.encode()
    secret.ClearField("string_data")
    if not secret.type:
        secret.type = "Opaque"


def _persistent_volume(pv) -> None:
    if not pv.spec.persistent_volume_reclaim_policy:
        pv.spec.persistent_volume_reclaim_policy = "Retain"
    if not pv.spec.volume_mode:
        pv.spec.volume_mode = "Filesystem"


def _persistent_volume_claim(pvc) -> None:
    if not pvc.spec.volume_mode:
        pvc.spec.volume_mode = "Filesystem"


def _storage_class(sc) -> None:
    if not sc.HasField("reclaim_policy"):
        sc.reclaim_policy = "Delete"
    if not sc.HasField("volume_binding_mode"):
        sc.volume_binding_mode = "Immediate"


def _priority_class(pc) -> None:
    if not pc.HasField("preemption_policy"):
        pc.preemption_policy = "PreemptLowerPriority"


def _subjects(binding) -> None:
    """rbac/v1 SetDefaults_Subject: Users and Groups are in the RBAC API group."""
    for s in binding.subjects:
        if not s.api_group and s.kind in ("User", "Group"):
            s.api_group = kinds.RBAC_GROUP


def _role_binding(binding) -> None:
    _subjects(binding)
    if not binding.role_ref.api_group:
        binding.role_ref.api_group = kinds.RBAC_GROUP


_DEFAULTERS = {
    "RoleBinding": _role_binding,
    "ClusterRoleBinding": _role_binding,
    "HorizontalPodAutoscaler": _hpa,
    "PriorityClass": _priority_class,
    "Secret": _secret,
    "PersistentVolume": _persistent_volume,
    "PersistentVolumeClaim": _persistent_volume_claim,
    "StorageClass": _storage_class,
    "Pod": _pod,
    "ReplicaSet": _replica_set,
    "Deployment": _deployment,
    "Service": _service,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpoint_slice,
    "Namespace": _namespace,
    "Node": _node,
    "DaemonSet": _daemon_set,
    "StatefulSet": _stateful_set,
    "Job": _job,
    "CronJob": _cron_job,
}


def apply_defaults(obj) -> None:
    """Fill defaults in place (idempotent). Sets apiVersion/kind if missing."""
    info = kinds.of(obj)
    if not obj.api_version:
        obj.api_version = info.api_version
    if not obj.kind:
        obj.kind = info.kind
    if info.namespaced and not obj.metadata.namespace:
        obj.metadata.namespace = "default"
    fn = _DEFAULTERS.get(info.kind)
    if fn is not None:
        fn(obj)


# ----------------------------------------------------------- canonical form

def _canon_map(m) -> None:
    for k, v in list(m.items()):
        if quantity.is_valid(v):
            m[k] = quantity.canonical(v)


def canonicalize_pod_spec(spec) -> None:
    """Canonical quantities of one pod spec (also used to compare specs semantically)."""
    for c in spec.containers:
        _canon_map(c.resources.limits)
        _canon_map(c.resources.requests)
        for ev in c.env:
            r = ev.value_from.resource_field_ref
            if r.divisor and quantity.is_valid(r.divisor):
                r.divisor = quantity.canonical(r.divisor)
    for v in spec.volumes:
        if v.HasField("empty_dir") and v.empty_dir.size_limit and quantity.is_valid(v.empty_dir.size_limit):
            v.empty_dir.size_limit = quantity.canonical(v.empty_dir.size_limit)


def _canonicalize_status(kind: str, obj) -> None:
    if kind == "Node":
        _canon_map(obj.status.capacity)
        _canon_map(obj.status.allocatable)
    elif kind == "PersistentVolumeClaim":
        _canon_map(obj.status.capacity)


def canonicalize(obj, status_only: bool = False) -> None:
    """Rewrite every resource quantity to Kubernetes' canonical form, in place.  status_only:
    only those under status (a status write keeps everything else as stored, canonical)."""
    kind = kinds.of(obj).kind
    _canonicalize_status(kind, obj)
    if status_only:
        return
    if kind == "Pod":
        canonicalize_pod_spec(obj.spec)
    elif kind in ("ReplicaSet", "Deployment", "DaemonSet", "StatefulSet", "Job"):
        if obj.spec.HasField("template"):
            canonicalize_pod_spec(obj.spec.template.spec)
    elif kind == "CronJob":
        if obj.spec.job_template.spec.HasField("template"):
            canonicalize_pod_spec(obj.spec.job_template.spec.template.spec)
    elif kind == "PersistentVolume":
        _canon_map(obj.spec.capacity)
    elif kind == "PersistentVolumeClaim":
        _canon_map(obj.spec.resources.requests)
        _canon_map(obj.spec.resources.limits)
