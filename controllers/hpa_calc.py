"""The HPA's replica calculator (Kubernetes' pkg/controller/podautoscaler,
replica_calculator.go and metrics/utilization.go): from per-pod resource
metrics and the pods the target selects, the replica count one metric asks for.

* ``group_pods``: pods being deleted or Failed are ignored; Pending pods are
  unready; a pod without a metric is missing; for CPU a pod is also unready
  when it has no Ready condition or start time, or, within the CPU
  initialization period (5 min) after its start, when it is not Ready or its
  metric window began before its last readiness transition, or, after it,
  when it is not Ready and never was (its readiness last changed within 30 s
  of its start).
* ``resource_replicas`` (Utilization: usage as a percentage of the summed
  requests) and ``raw_replicas`` (AverageValue): the usage ratio against the
  target; within the tolerance (10 %) nothing changes; without unready or
  missing pods the answer is ceil(ratio * ready pods); otherwise the ratio is
  recomputed with missing pods at 100 % of their request, or of the target
  when it is above 100 % (on a scale-down) or 0 (on a scale-up; for
  AverageValue also at exactly the target), and unready pods at 0 on a scale-up, and no change
  is made if that flips the direction or falls within the tolerance.

Values are milli-units (millicores; milli-bytes for memory), as Kubernetes'
MilliValue(). Errors are ``MetricsError`` with Kubernetes' messages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from machinery import errors, quantity

TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = 300.0
DELAY_OF_INITIAL_READINESS_STATUS = 30.0


class MetricsError(errors.ControlFlow):
    """A metric could not be turned into a replica count (reported in the HPA's conditions)."""


@dataclass
class PodMetric:
    value: int               # milli-units
    timestamp: float
    window: float


def _ready_condition(pod):
    return next((c for c in pod.status.conditions if c.type == "Ready"), None)


def _ts(t) -> float:
    return t.seconds + t.nanos / 1e9


def group_pods(pods, metrics: dict[str, PodMetric], resource: str, now: float,
               cpu_init: float = CPU_INITIALIZATION_PERIOD,
               readiness_delay: float = DELAY_OF_INITIAL_READINESS_STATUS) -> tuple[int, set, set, set]:
    """(ready pod count, unready, missing, ignored) as groupPods computes them."""
    ready, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        name = pod.metadata.name
        if pod.metadata.HasField("deletion_timestamp") or pod.status.phase == "Failed":
            ignored.add(name)
            continue
        if pod.status.phase == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            cond = _ready_condition(pod)
            if cond is None or not pod.status.HasField("start_time"):
                unready.add(name)
                continue
            start, transition = _ts(pod.status.start_time), _ts(cond.last_transition_time)
            if start + cpu_init > now:
                bad = cond.status == "False" or metric.timestamp < transition + metric.window
            else:
                bad = cond.status == "False" and start + readiness_delay > transition
            if bad:
                unready.add(name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def pod_requests(pods, resource: str, container: str = "") -> dict[str, int]:
    """Per pod, the milli-value of the summed requests (of one container when given)."""
    out = {}
    for pod in pods:
        total = 0
        for c in pod.spec.containers:
            if container and c.name != container:
                continue
            req = c.resources.requests.get(resource)
            if req is None:
                raise MetricsError(f"missing request for {resource} in container {c.name} of Pod {pod.metadata.name}")
            total += quantity.milli_value(req)
        out[pod.metadata.name] = total
    return out


def utilization_ratio(metrics: dict[str, PodMetric], requests: dict[str, int], target: int) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (ratio, utilization %, average raw value)."""
    used = req = n = 0
    for name, m in metrics.items():
        if name in requests:
            used, req, n = used + m.value, req + requests[name], n + 1
    if req == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = int(used * 100 / req)
    return utilization / target, utilization, used // n


def _average_ratio(metrics: dict[str, PodMetric], target: int) -> tuple[float, int]:
    """GetMetricUtilizationRatio: (ratio, average value)."""
    avg = sum(m.value for m in metrics.values()) // len(metrics)
    return avg / target, avg


def _common(current: int, pods, metrics: dict[str, PodMetric], resource: str, now: float, ratio_fn,
            missing_value, zero_at_target: bool, **timing) -> tuple[int, float]:
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    metrics = dict(metrics)
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now, **timing)
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricsError("did not receive metrics for any ready pods")
    ratio, first = ratio_fn(metrics)
    rebalance = bool(unready) and ratio > 1.0
    if not rebalance and not missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current, first
        return math.ceil(ratio * ready), first
    if missing and (ratio != 1.0 or zero_at_target):
        for name in missing:
            metrics[name] = PodMetric(missing_value(name) if ratio < 1.0 else 0, now, 0)
    if rebalance:
        for name in unready:
            metrics[name] = PodMetric(0, now, 0)
    new_ratio, _ = ratio_fn(metrics)
    if abs(1.0 - new_ratio) <= TOLERANCE or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current, first
    replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, first
    return replicas, first


def resource_replicas(current: int, target_utilization: int, resource: str, pods, metrics: dict[str, PodMetric],
                      now: float, container: str = "", **timing) -> tuple[int, int, int]:
    """GetResourceReplicas: (replicas, utilization %, average raw milli-value); timing overrides
    group_pods' cpu_init and readiness_delay."""
    requests = pod_requests(pods, resource, container)
    raw = []

    def ratio_fn(m):
        r, util, avg = utilization_ratio(m, requests, target_utilization)
        raw.append(avg)
        return r, util
    fallback = max(100, target_utilization)        # a missing pod uses its request (or the target, when above 100 %)
    replicas, util = _common(current, pods, metrics, resource, now, ratio_fn,
                             lambda name: requests[name] * fallback // 100, False, **timing)
    return replicas, util, raw[0]


def raw_replicas(current: int, target_milli: int, resource: str, pods, metrics: dict[str, PodMetric],
                 now: float, **timing) -> tuple[int, int]:
    """GetRawResourceReplicas (AverageValue): (replicas, average milli-value)."""
    return _common(current, pods, metrics, resource, now, lambda m: _average_ratio(m, target_milli),
                   lambda name: target_milli, True, **timing)
