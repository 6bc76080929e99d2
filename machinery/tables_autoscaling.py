"""Table columns of HorizontalPodAutoscaler, as kubectl's printers.go prints
them (printHorizontalPodAutoscaler, formatHPAMetrics): NAME REFERENCE TARGETS
MINPODS MAXPODS REPLICAS AGE, TARGETS like ``cpu: 12%/50%`` (current/target,
``<unknown>`` before the first metric reading, at most two metrics then
``+ N more...``); machinery.tables adds them to its PRINTERS."""
from __future__ import annotations

from machinery import quantity
from machinery.tables import Printer, _all, _cols, age

UNKNOWN = "<unknown>"
MAX_SHOWN = 2


def _q(s: str) -> str:
    return quantity.canonical(s) if quantity.is_valid(s) else s


def _one(spec, status) -> str:
    src = spec.resource if spec.type == "Resource" else spec.container_resource
    cur = None
    if status is not None and status.type == spec.type:
        cur = (status.resource if spec.type == "Resource" else status.container_resource).current
    prefix = f"{src.name}" if spec.type == "Resource" else f"{src.name}({src.container})"
    if src.target.HasField("average_value"):
        current = _q(cur.average_value) if cur is not None and cur.HasField("average_value") else UNKNOWN
        return f"{prefix}: {current}/{_q(src.target.average_value)}"
    current = f"{cur.average_utilization}%" if cur is not None and cur.HasField("average_utilization") else UNKNOWN
    target = f"{src.target.average_utilization}%" if src.target.HasField("average_utilization") else "<auto>"
    return f"{prefix}: {current}/{target}"


def format_hpa_metrics(specs, statuses) -> str:
    if not specs:
        return "<none>"
    shown = [_one(s, statuses[i] if i < len(statuses) else None)
             for i, s in enumerate(specs) if s.type in ("Resource", "ContainerResource")]
    text = ", ".join(shown[:MAX_SHOWN])
    return f"{text} + {len(shown) - MAX_SHOWN} more..." if len(shown) > MAX_SHOWN else text


def _hpa(h, wide, at):
    ref = h.spec.scale_target_ref
    return [h.metadata.name, f"{ref.kind}/{ref.name}", format_hpa_metrics(h.spec.metrics, h.status.current_metrics),
            str(h.spec.min_replicas) if h.spec.HasField("min_replicas") else "<unset>", str(h.spec.max_replicas),
            str(h.status.current_replicas), age(h.metadata.creation_timestamp, at)]


AUTOSCALING_PRINTERS = {
    "HorizontalPodAutoscaler": Printer(_cols("NAME|REFERENCE|TARGETS|MINPODS|MAXPODS|REPLICAS|AGE"), _all(_hpa)),
}
