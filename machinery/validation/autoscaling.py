"""HorizontalPodAutoscaler validation (pkg/apis/autoscaling/validation,
ValidateHorizontalPodAutoscaler): a named scale target, 1 <= minReplicas <=
maxReplicas, Resource/ContainerResource metrics with a well-formed target
(Utilization > 0, or a positive AverageValue), and behavior rules with
stabilization windows of 0..3600 s, a known selectPolicy and at least one
policy of a known type with a positive value and a period of 1..1800 s.
kctl computes only resource metrics (from metrics.k8s.io), so the Pods,
Object and External metric types are refused as unsupported."""
from __future__ import annotations

from machinery import quantity
from machinery.errors import FieldError, invalid, not_supported, required

METRIC_TYPES = ("Resource", "ContainerResource")
TARGET_TYPES = ("Utilization", "Value", "AverageValue")
POLICY_TYPES = ("Pods", "Percent")
SELECT_POLICIES = ("Max", "Min", "Disabled")
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600


def _target(t, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not t.type:
        errs.append(required(f"{path}.type", "must specify a metric target type"))
    elif t.type not in TARGET_TYPES:
        errs.append(not_supported(f"{path}.type", t.type, TARGET_TYPES))
    if t.type == "Utilization":
        if not t.HasField("average_utilization"):
            errs.append(required(f"{path}.averageUtilization", "must set averageUtilization for Utilization"))
        elif t.average_utilization <= 0:
            errs.append(invalid(f"{path}.averageUtilization", t.average_utilization, "must be greater than 0"))
    if t.type == "AverageValue":
        if not t.HasField("average_value"):
            errs.append(required(f"{path}.averageValue", "must set averageValue for AverageValue"))
        elif not quantity.is_valid(t.average_value):
            errs.append(invalid(f"{path}.averageValue", t.average_value, "must be a quantity"))
        elif quantity.parse(t.average_value) <= 0:
            errs.append(invalid(f"{path}.averageValue", t.average_value, "must be positive"))
    if t.type == "Value":
        errs.append(invalid(f"{path}.type", t.type, "a resource metric target must be Utilization or AverageValue"))
    return errs


def _metric(m, path: str) -> list[FieldError]:
    if not m.type:
        return [required(f"{path}.type", "must specify a metric source type")]
    if m.type not in METRIC_TYPES:
        return [not_supported(f"{path}.type", m.type, METRIC_TYPES)]
    field = "resource" if m.type == "Resource" else "containerResource"
    src = m.resource if m.type == "Resource" else m.container_resource
    if not m.HasField("resource" if m.type == "Resource" else "container_resource"):
        return [required(f"{path}.{field}", f"must populate information for the given metric source")]
    errs: list[FieldError] = []
    if not src.name:
        errs.append(required(f"{path}.{field}.name", "must specify a resource name"))
    elif src.name not in ("cpu", "memory"):
        errs.append(not_supported(f"{path}.{field}.name", src.name, ("cpu", "memory")))
    if m.type == "ContainerResource" and not m.container_resource.container:
        errs.append(required(f"{path}.containerResource.container", "must specify a container"))
    return errs + _target(src.target, f"{path}.{field}.target")


def _rules(r, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if r.HasField("stabilization_window_seconds") and not \
            0 <= r.stabilization_window_seconds <= MAX_STABILIZATION_WINDOW_SECONDS:
        errs.append(invalid(f"{path}.stabilizationWindowSeconds", r.stabilization_window_seconds,
                            f"must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"
                            if r.stabilization_window_seconds > 0 else "must be greater than or equal to zero"))
    if r.HasField("select_policy") and r.select_policy not in SELECT_POLICIES:
        errs.append(not_supported(f"{path}.selectPolicy", r.select_policy, SELECT_POLICIES))
    if not r.policies:
        errs.append(required(f"{path}.policies", "must specify at least one Policy"))
    for i, p in enumerate(r.policies):
        pp = f"{path}.policies[{i}]"
        if p.type not in POLICY_TYPES:
            errs.append(not_supported(f"{pp}.type", p.type, POLICY_TYPES))
        if p.value <= 0:
            errs.append(invalid(f"{pp}.value", p.value, "must be greater than zero"))
        if p.period_seconds <= 0:
            errs.append(invalid(f"{pp}.periodSeconds", p.period_seconds, "must be greater than zero"))
        elif p.period_seconds > MAX_PERIOD_SECONDS:
            errs.append(invalid(f"{pp}.periodSeconds", p.period_seconds,
                                f"must be less than or equal to {MAX_PERIOD_SECONDS}"))
    return errs


def validate_hpa(hpa) -> list[FieldError]:
    spec, errs = hpa.spec, []
    ref = spec.scale_target_ref
    if not ref.kind:
        errs.append(required("spec.scaleTargetRef.kind"))
    elif "/" in ref.kind or "%" in ref.kind:
        errs.append(invalid("spec.scaleTargetRef.kind", ref.kind, "may not contain '/' or '%'"))
    if not ref.name:
        errs.append(required("spec.scaleTargetRef.name"))
    elif "/" in ref.name or "%" in ref.name:
        errs.append(invalid("spec.scaleTargetRef.name", ref.name, "may not contain '/' or '%'"))
    if spec.HasField("min_replicas") and spec.min_replicas < 1:
        errs.append(invalid("spec.minReplicas", spec.min_replicas, "must be greater than or equal to 1"))
    if spec.max_replicas < 1:
        errs.append(invalid("spec.maxReplicas", spec.max_replicas, "must be greater than 0"))
    elif spec.HasField("min_replicas") and spec.max_replicas < spec.min_replicas:
        errs.append(invalid("spec.maxReplicas", spec.max_replicas, "must be greater than or equal to `minReplicas`"))
    for i, m in enumerate(spec.metrics):
        errs += _metric(m, f"spec.metrics[{i}]")
    if spec.HasField("behavior"):
        for f, j in (("scale_up", "scaleUp"), ("scale_down", "scaleDown")):
            if spec.behavior.HasField(f):
                errs += _rules(getattr(spec.behavior, f), f"spec.behavior.{j}")
    return errs
