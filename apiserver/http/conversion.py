"""Kinds served over HTTP in a second, older version: today autoscaling/v1
HorizontalPodAutoscaler next to the stored autoscaling/v2 (`kubectl
autoscale` of kubectl ≤ 1.32 and v1 clients use it).

Only the HTTP layer sees the old version. A request to
`/apis/autoscaling/v1/...horizontalpodautoscalers` is parsed into the
stored kind (resources.Target.info, autoscaling/v2) plus a `Conversion`;
bodies are converted to v2 before decoding (`to_internal`) and every
object is converted to v1 on the way out (`to_external`), so storage,
validation, the watch cache and gRPC see v2 only, as Kubernetes' storage
version does. Patches are applied to the v1 form of the live object.

The HPA conversion is Kubernetes' pkg/apis/autoscaling/v1/conversion.go:
the CPU utilization metric maps to `targetCPUUtilizationPercentage` (and
`currentCPUUtilizationPercentage` in status); every other metric, the
current metrics, the conditions and the behavior travel in the
`autoscaling.alpha.kubernetes.io/*` annotations (metrics in autoscaling/v1's
v2beta1-style MetricSpec form), which the way back reads and removes, so a
v1 client's read-modify-write keeps what it cannot see. v2-only fields sent
in a v1 body are unknown fields (Strict: 400; Warn: a warning).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from typing import Callable

from machinery import kinds

METRICS = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP = (METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR)

# v1 (v2beta1-style) metric field -> v2 path, per source type; "{v}" is target/current.
_SOURCES = {
    "resource": {"name": "name", "{V}AverageUtilization": "{v}.averageUtilization",
                 "{V}AverageValue": "{v}.averageValue"},
    "containerResource": {"name": "name", "container": "container",
                          "{V}AverageUtilization": "{v}.averageUtilization", "{V}AverageValue": "{v}.averageValue"},
    "pods": {"metricName": "metric.name", "selector": "metric.selector", "{V}AverageValue": "{v}.averageValue"},
    "object": {"target": "describedObject", "metricName": "metric.name", "selector": "metric.selector",
               "{V}Value": "{v}.value", "averageValue": "{v}.averageValue"},
    "external": {"metricName": "metric.name", "metricSelector": "metric.selector", "{V}Value": "{v}.value",
                 "{V}AverageValue": "{v}.averageValue"},
}


def _fields(source: str, spec: bool) -> dict[str, str]:
    v, big = ("target", "target") if spec else ("current", "current")
    return {k.replace("{V}", big): p.replace("{v}", v) for k, p in _SOURCES[source].items()}


def _get(d: dict, path: str):
    for part in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _put(d: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        d = d.setdefault(part, {})
    d[last] = value


def metric_to_v1(m: dict, spec: bool) -> dict:
    """A v2 MetricSpec (spec) or MetricStatus as autoscaling/v1's MetricSpec/MetricStatus."""
    kind = m.get("type", "")
    source = next((s for s in _SOURCES if s.lower() == kind.lower()), None)
    out = {"type": kind}
    if source and isinstance(m.get(source), dict):
        out[source] = {k: _get(m[source], p) for k, p in _fields(source, spec).items()
                       if _get(m[source], p) is not None}
    return out


def metric_to_v2(m: dict, spec: bool) -> dict:
    kind = m.get("type", "") if isinstance(m, dict) else ""
    source = next((s for s in _SOURCES if s.lower() == kind.lower()), None)
    out = {"type": kind}
    if source and isinstance(m.get(source), dict):
        inner: dict = {}
        for k, p in _fields(source, spec).items():
            if m[source].get(k) is not None:
                _put(inner, p, m[source][k])
        if spec:
            t = inner.setdefault("target", {})
            t["type"] = ("Utilization" if "averageUtilization" in t else
                         "Value" if "value" in t and "averageValue" not in t else
                         "AverageValue" if "averageValue" in t else "Value")
        out[source] = inner
    return out


def _is_cpu_utilization(m: dict, spec: bool) -> bool:
    r = m.get("resource") or {}
    value = (r.get("target") or {}) if spec else (r.get("current") or {})
    return m.get("type") == "Resource" and r.get("name") == "cpu" and value.get("averageUtilization") is not None


def hpa_to_v1(obj: dict) -> dict:
    """An autoscaling/v2 HorizontalPodAutoscaler (manifest dict) as autoscaling/v1."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v1"
    spec, status = out.get("spec") or {}, out.get("status") or {}
    notes: dict[str, str] = {}
    metrics = spec.pop("metrics", None) or []
    cpu = next((m for m in metrics if _is_cpu_utilization(m, True)), None)
    if cpu is not None:
        spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    others = [metric_to_v1(m, True) for m in metrics if m is not cpu]
    if others:
        notes[METRICS] = json.dumps(others, separators=(",", ":"))
    if spec.get("behavior") is not None:
        notes[BEHAVIOR] = json.dumps(spec.pop("behavior"), separators=(",", ":"))
    current = status.pop("currentMetrics", None) or []
    for m in current:
        if _is_cpu_utilization(m, False):
            status["currentCPUUtilizationPercentage"] = m["resource"]["current"]["averageUtilization"]
    if current:
        notes[CURRENT_METRICS] = json.dumps([metric_to_v1(m, False) for m in current], separators=(",", ":"))
    if status.get("conditions"):
        notes[CONDITIONS] = json.dumps(status.pop("conditions"), separators=(",", ":"))
    status.pop("conditions", None)
    if notes:
        out.setdefault("metadata", {}).setdefault("annotations", {}).update(notes)
    return out


V2_ONLY = (("spec", "metrics"), ("spec", "behavior"), ("status", "currentMetrics"), ("status", "conditions"))


def _annotation(annotations: dict, key: str, default=None):
    try:
        return json.loads(annotations[key])
    except (KeyError, TypeError, ValueError):       # Kubernetes ignores an unreadable annotation too
        return default


def hpa_to_v2(obj: dict) -> tuple[dict, list[str]]:
    """An autoscaling/v1 HorizontalPodAutoscaler as autoscaling/v2, and the
    v2-only fields it carried (unknown in v1, removed)."""
    out = copy.deepcopy(obj)
    if out.get("apiVersion") in (None, "autoscaling/v1"):
        out["apiVersion"] = "autoscaling/v2"
    unknown = []
    for part, name in V2_ONLY:
        if isinstance(out.get(part), dict) and name in out[part]:
            del out[part][name]
            unknown.append(f"{part}.{name}")
    md = out.get("metadata") if isinstance(out.get("metadata"), dict) else {}
    notes = md.get("annotations") if isinstance(md.get("annotations"), dict) else {}
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else None
    status = out.get("status") if isinstance(out.get("status"), dict) else None
    if spec is not None:
        metrics = [metric_to_v2(m, True) for m in _annotation(notes, METRICS, []) if isinstance(m, dict)]
        cpu = spec.pop("targetCPUUtilizationPercentage", None)
        if cpu is not None:
            metrics.append({"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}})
        if metrics:
            spec["metrics"] = metrics
        behavior = _annotation(notes, BEHAVIOR)
        if isinstance(behavior, dict):
            spec["behavior"] = behavior
    if status is not None:
        cpu = status.pop("currentCPUUtilizationPercentage", None)
        current = _annotation(notes, CURRENT_METRICS)
        if isinstance(current, list):        # the annotation carries more than the percentage
            status["currentMetrics"] = [metric_to_v2(m, False) for m in current if isinstance(m, dict)]
        elif cpu is not None:
            status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": cpu}}}]
        conditions = _annotation(notes, CONDITIONS)
        if isinstance(conditions, list):
            status["conditions"] = conditions
    for key in ROUND_TRIP:
        notes.pop(key, None)
    if not notes and isinstance(md, dict):
        md.pop("annotations", None)
    return out, unknown


@dataclasses.dataclass(frozen=True)
class Conversion:
    """A stored kind served in another version over HTTP."""
    served: kinds.KindInfo               # the kind in the served version (kinds.OLDER_VERSIONS)
    to_external: Callable[[dict], dict]
    to_internal: Callable[[dict], tuple[dict, list[str]]]

    @property
    def stored(self) -> kinds.KindInfo:
        return kinds.BY_KIND[self.served.kind]

    @property
    def version(self) -> str:
        return self.served.version


_CONVERTERS = {"HorizontalPodAutoscaler": (hpa_to_v1, hpa_to_v2)}
ALTERNATES = tuple(Conversion(info, *_CONVERTERS[info.kind]) for info in kinds.OLDER_VERSIONS)


def find(group: str, version: str, plural: str) -> Conversion | None:
    return next((c for c in ALTERNATES if (c.served.group, c.version, c.served.plural) == (group, version, plural)),
                None)
