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

# ---------------------------------------------------------------------- pod


def _image_tag(image: str) -> str:
    """The tag of an image reference, "" when none (a digest counts as a tag)."""
    if "@" in image:
        return "@digest"
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


def _handler(h) -> None:
    if h.HasField("http_get"):
        if not h.http_get.path:
            h.http_get.path = "/"
        if not h.http_get.scheme:
            h.http_get.scheme = "HTTP"


def _probe(p) -> None:
    _handler(p)
    if p.timeout_seconds == 0:
        p.timeout_seconds = 1
    if p.period_seconds == 0:
        p.period_seconds = 10
    if p.success_threshold == 0:
        p.success_threshold = 1
    if p.failure_threshold == 0:
        p.failure_threshold = 3


def _container(c, host_network: bool) -> None:
    if not c.image_pull_policy:
        c.image_pull_policy = "Always" if _image_tag(c.image) in ("", "latest") else "IfNotPresent"
    if not c.termination_message_path:
        c.termination_message_path = "/dev/termination-log"
    if not c.termination_message_policy:
        c.termination_message_policy = "File"
    for port in c.ports:
        if not port.protocol:
            port.protocol = "TCP"
        if host_network and port.host_port == 0:
            port.host_port = port.container_port
    for ev in c.env:
        if ev.HasField("value_from") and ev.value_from.HasField("field_ref"):
            if not ev.value_from.field_ref.api_version:
                ev.value_from.field_ref.api_version = "v1"
    for f in ("liveness_probe", "readiness_probe", "startup_probe"):
        if c.HasField(f):
            _probe(getattr(c, f))
    if c.HasField("lifecycle"):
        for f in ("post_start", "pre_stop"):
            if c.lifecycle.HasField(f):
                _handler(getattr(c.lifecycle, f))
    # requests default to limits, resource by resource (SetDefaults_Pod)
    for name, limit in c.resources.limits.items():
        if name not in c.resources.requests:
            c.resources.requests[name] = limit


def default_pod_spec(spec) -> None:
    if not spec.dns_policy:
        spec.dns_policy = "ClusterFirst"
    if not spec.restart_policy:
        spec.restart_policy = "Always"
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = 30
    if not spec.scheduler_name:
        spec.scheduler_name = "default-scheduler"
    for c in list(spec.init_containers) + list(spec.containers):
        _container(c, spec.host_network)
    for t in spec.tolerations:
        if not t.operator:
            t.operator = "Equal"
    for v in spec.volumes:
        for src in ("secret", "config_map"):
            if v.HasField(src) and not getattr(v, src).HasField("default_mode"):
                getattr(v, src).default_mode = 0o644
        for p in v.projected.sources:          # SetDefaults_ServiceAccountTokenProjection: one hour
            if p.HasField("service_account_token") and not p.service_account_token.HasField("expiration_seconds"):
                p.service_account_token.expiration_seconds = 3600


def qos_class(spec) -> str:
    """Guaranteed / Burstable / BestEffort, from cpu and memory (GetPodQOS)."""
    requests: dict[str, list] = {}
    limits: dict[str, list] = {}
    guaranteed = True
    for c in spec.containers:
        for n, v in c.resources.requests.items():
            if n in ("cpu", "memory") and quantity.is_valid(v) and quantity.parse(v) != 0:
                requests.setdefault(n, []).append(v)
        have = set()
        for n, v in c.resources.limits.items():
            if n in ("cpu", "memory") and quantity.is_valid(v) and quantity.parse(v) != 0:
                limits.setdefault(n, []).append(v)
                have.add(n)
        if have != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for c in spec.containers:
            for n in ("cpu", "memory"):
                r, lim = c.resources.requests.get(n), c.resources.limits.get(n)
                if r is None or lim is None or not (quantity.is_valid(r) and quantity.is_valid(lim)) \
                        or quantity.compare(r, lim) != 0:
                    guaranteed = False
    return "Guaranteed" if guaranteed else "Burstable"


def _pod(pod) -> None:
    default_pod_spec(pod.spec)
    if not pod.status.phase:
        pod.status.phase = "Pending"
    if not pod.status.qos_class:
        pod.status.qos_class = qos_class(pod.spec)


# --------------------------------------------------------------------- apps

def _replica_set(rs) -> None:
    if not rs.spec.HasField("replicas"):
        rs.spec.replicas = 1
    if rs.spec.HasField("template"):
        default_pod_spec(rs.spec.template.spec)


def _deployment(d) -> None:
    spec = d.spec
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.strategy.type:
        spec.strategy.type = "RollingUpdate"
    if spec.strategy.type == "RollingUpdate":
        ru = spec.strategy.rolling_update
        if ru.max_unavailable.WhichOneof("value") is None:
            ru.max_unavailable.str_val = "25%"
        if ru.max_surge.WhichOneof("value") is None:
            ru.max_surge.str_val = "25%"
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = 600
    if spec.HasField("template"):
        default_pod_spec(spec.template.spec)


# ------------------------------------------------ workloads (issue 12)

def _daemon_set(ds) -> None:
    spec = ds.spec
    if not spec.update_strategy.type:
        spec.update_strategy.type = "RollingUpdate"
    if spec.update_strategy.type == "RollingUpdate":
        ru = spec.update_strategy.rolling_update
        if ru.max_unavailable.WhichOneof("value") is None:
            ru.max_unavailable.int_val = 1
        if ru.max_surge.WhichOneof("value") is None:
            ru.max_surge.int_val = 0
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    if spec.HasField("template"):
        default_pod_spec(spec.template.spec)


def _stateful_set(sts) -> None:
    """SetDefaults_StatefulSet (apps/v1)."""
    spec = sts.spec
    if not spec.pod_management_policy:
        spec.pod_management_policy = "OrderedReady"
    if not spec.update_strategy.type:
        spec.update_strategy.type = "RollingUpdate"
    if spec.update_strategy.type == "RollingUpdate" and not spec.update_strategy.rolling_update.HasField("partition"):
        spec.update_strategy.rolling_update.partition = 0
    policy = spec.persistent_volume_claim_retention_policy
    policy.when_deleted = policy.when_deleted or "Retain"
    policy.when_scaled = policy.when_scaled or "Retain"
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    for pvc in spec.volume_claim_templates:
        _persistent_volume_claim(pvc)
    if spec.HasField("template"):
        default_pod_spec(spec.template.spec)


def default_job_spec(spec) -> None:
    """SetDefaults_Job's spec part (also used by `kctl create job --from`)."""
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        spec.backoff_limit = 6
    if not spec.completion_mode:
        spec.completion_mode = "NonIndexed"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.pod_replacement_policy:
        spec.pod_replacement_policy = "Failed" if spec.HasField("pod_failure_policy") else "TerminatingOrFailed"
    for rule in spec.pod_failure_policy.rules:
        for pattern in rule.on_pod_conditions:
            if not pattern.status:
                pattern.status = "True"
    if spec.HasField("template"):
        default_pod_spec(spec.template.spec)


def _job(job) -> None:
    default_job_spec(job.spec)
    if not job.metadata.labels:
        job.metadata.labels.update(job.spec.template.metadata.labels)


def _cron_job(cj) -> None:
    spec = cj.spec
    if not spec.concurrency_policy:
        spec.concurrency_policy = "Allow"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = 3
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = 1
    if spec.job_template.spec.HasField("template"):
        default_pod_spec(spec.job_template.spec.template.spec)


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


def hpa_scale_up_rules(rules=None):
    """autoscaling/v2 GenerateHPAScaleUpRules: no stabilization, Max of 4 pods or 100 % per 60 s."""
    return _hpa_rules(rules, 0, [("Pods", 4, 60), ("Percent", 100, 60)])


def hpa_scale_down_rules(rules=None):
    """autoscaling/v2 GenerateHPAScaleDownRules: 300 s stabilization, 100 % per 15 s."""
    return _hpa_rules(rules, 300, [("Percent", 100, 15)])


def _hpa_rules(rules, window: int, policies):
    from machinery.pb import autoscaling_pb2
    out = autoscaling_pb2.HPAScalingRules()
    if rules is not None:
        out.CopyFrom(rules)
    if not out.HasField("stabilization_window_seconds"):
        out.stabilization_window_seconds = window
    if not out.HasField("select_policy"):
        out.select_policy = "Max"
    if not out.policies:
        for t, v, p in policies:
            out.policies.add(type=t, value=v, period_seconds=p)
    return out


def _hpa(hpa) -> None:
    """autoscaling/v2 SetDefaults_HorizontalPodAutoscaler: minReplicas 1, 80 % CPU when no
    metric is given, and the default rules filled into a behavior that is set."""
    spec = hpa.spec
    if not spec.HasField("min_replicas"):
        spec.min_replicas = 1
    if not spec.metrics:
        m = spec.metrics.add(type="Resource")
        m.resource.name = "cpu"
        m.resource.target.type = "Utilization"
        m.resource.target.average_utilization = 80
    if spec.HasField("behavior"):
        b = spec.behavior
        b.scale_up.CopyFrom(hpa_scale_up_rules(b.scale_up if b.HasField("scale_up") else None))
        b.scale_down.CopyFrom(hpa_scale_down_rules(b.scale_down if b.HasField("scale_down") else None))


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


def canonicalize(obj) -> None:
    """Rewrite every resource quantity to Kubernetes' canonical form, in place."""
    kind = kinds.of(obj).kind
    if kind == "Pod":
        canonicalize_pod_spec(obj.spec)
    elif kind in ("ReplicaSet", "Deployment", "DaemonSet", "StatefulSet", "Job"):
        if obj.spec.HasField("template"):
            canonicalize_pod_spec(obj.spec.template.spec)
    elif kind == "CronJob":
        if obj.spec.job_template.spec.HasField("template"):
            canonicalize_pod_spec(obj.spec.job_template.spec.template.spec)
    elif kind == "Node":
        _canon_map(obj.status.capacity)
        _canon_map(obj.status.allocatable)
    elif kind == "PersistentVolume":
        _canon_map(obj.spec.capacity)
    elif kind == "PersistentVolumeClaim":
        _canon_map(obj.spec.resources.requests)
        _canon_map(obj.spec.resources.limits)
        _canon_map(obj.status.capacity)
