"""Pod defaulting (Kubernetes' SetDefaults_Pod, SetDefaults_PodSpec,
SetDefaults_Container, probes and handlers) and the pod's QoS class, for
machinery.defaults (which dispatches by kind) and the workload defaulters
(machinery/defaults_workloads.py, whose templates are pod specs).
"""
from __future__ import annotations

from machinery import quantity


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
    if not spec.HasField("enable_service_links"):
        spec.enable_service_links = True
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
