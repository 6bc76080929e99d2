"""The HorizontalPodAutoscaler controller (Kubernetes' pkg/controller/podautoscaler,
horizontal.go's reconcileAutoscaler).

Every HPA is synced when it changes and every ``sync_period`` (15 s, as
--horizontal-pod-autoscaler-sync-period). One sync:

1. reads the scale of ``scaleTargetRef`` (any kind with ``spec.replicas`` and
   ``spec.selector``: Deployment, ReplicaSet, StatefulSet; the kind is
   looked up in machinery.kinds). Failing: AbleToScale False FailedGetScale;
2. a target at 0 replicas (with minReplicas > 0) disables autoscaling
   (ScalingActive False ScalingDisabled); a target outside
   [minReplicas, maxReplicas] is brought back inside;
3. otherwise each metric's proposal comes from the pods the target selects
   and their PodMetrics (metrics.k8s.io through machinery/metricsclient.py)
   by controllers/hpa_calc.py; the largest wins; a metric that fails makes
   ScalingActive False (FailedGetResourceMetric) unless other metrics still
   allow a scale-up, as computeReplicasForMetrics decides;
4. controllers/hpa_behavior.py stabilizes and rate-limits the proposal
   (AbleToScale and ScalingLimited conditions);
5. a changed count is written to the target (``spec.replicas``, optimistic
   concurrency: a conflict retries the key), with the event
   ``New size: 4; reason: cpu resource utilization (percentage of request)
   above target``, and the status (currentReplicas, desiredReplicas,
   currentMetrics, conditions, lastScaleTime) is written when it changed.
"""
from __future__ import annotations

import math
import time

from google.protobuf import timestamp_pb2

from machinery import codec, errors, kinds, metricsclient, quantity, selectors
from machinery.pb import autoscaling_pb2

from controllers import hpa_calc
from controllers.base import Controller
from controllers.hpa_behavior import Normalizer

SYNC_PERIOD = 15.0


def _stamp(t: float) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(t), nanos=int((t - int(t)) * 1e9))


def set_condition(st, type_: str, status: str, reason: str, message: str, now: float) -> None:
    c = next((c for c in st.conditions if c.type == type_), None)
    if c is None:
        c = st.conditions.add(type=type_)
    if c.status != status:
        c.last_transition_time.CopyFrom(_stamp(now))
    c.status, c.reason, c.message = status, reason, message


def metric_name(spec) -> str:
    src = spec.resource if spec.type == "Resource" else spec.container_resource
    what = "resource" if spec.type == "Resource" else "container resource"
    if src.target.type == "Utilization":
        return f"{src.name} {what} utilization (percentage of request)"
    return f"{src.name} {what}"


def pod_metric_values(items, resource: str, container: str = "") -> dict[str, hpa_calc.PodMetric]:
    """PodMetrics -> per pod milli-values (CPU ceil'd to millicores, memory in milli-bytes)."""
    out = {}
    for pm in items:
        total, found = 0, False
        for c in pm.containers:
            if container and c.name != container:
                continue
            found = True
            total += math.ceil(c.usage.cpu_nano_cores / 1e6) if resource == "cpu" else c.usage.memory_bytes * 1000
        if found:
            out[pm.name] = hpa_calc.PodMetric(total, pm.timestamp.seconds + pm.timestamp.nanos / 1e9,
                                              pm.window_seconds)
    return out


class HPAController(Controller):
    name = "horizontal-pod-autoscaler"

    def __init__(self, client, factory, recorder=None, workers: int = 1, *, clock=time.time,
                 sync_period: float = SYNC_PERIOD, metrics=None, downscale_window: float | None = None):
        super().__init__(client, factory, recorder, workers)
        self.clock, self.sync_period = clock, sync_period
        self.metrics = metrics or (lambda ns, sel: metricsclient.pod_metrics(client, ns, label_selector=sel))
        self.normalizer = Normalizer() if downscale_window is None else Normalizer(downscale_window)
        self.hpa_inf = factory.informer("HorizontalPodAutoscaler")
        self.pod_inf = factory.informer("Pod")
        self.hpa_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), None)

    def informers(self):
        return [self.hpa_inf, self.pod_inf]

    async def sync(self, key: str) -> None:
        hpa = self.hpa_inf.get_by_key(key)
        if hpa is None:
            self.normalizer.forget(key)
            return
        self.queue.add_after(key, self.sync_period)
        await self.reconcile(key, hpa)

    async def _target(self, hpa):
        ref = hpa.spec.scale_target_ref
        info = kinds.for_kind(ref.kind, ref.api_version or None)
        return await self.client.get(info.kind, ref.name, hpa.metadata.namespace)

    async def reconcile(self, key: str, old) -> None:
        hpa, now = codec.copy(old), self.clock()
        st = hpa.status
        try:
            target = await self._target(hpa)
        except errors.KctlError as exc:
            msg = getattr(exc, "message", str(exc))
            set_condition(st, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {msg}", now)
            self.event(hpa, "Warning", "FailedGetScale", msg)
            await self._write_status(old, hpa)
            return
        set_condition(st, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now)
        spec = hpa.spec
        current = target.spec.replicas if target.spec.HasField("replicas") else 1
        lo = spec.min_replicas if spec.HasField("min_replicas") else 1
        reason, statuses = "", None
        if current == 0 and lo != 0:
            desired = 0
            set_condition(st, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero", now)
        elif current > spec.max_replicas:
            desired, reason = spec.max_replicas, "Current number of replicas above Spec.MaxReplicas"
        elif current < lo:
            desired, reason = lo, "Current number of replicas below Spec.MinReplicas"
        else:
            try:
                proposal, name, statuses = await self.compute(hpa, target, current, now)
            except hpa_calc.MetricsError:
                await self._write_status(old, hpa, current=current)
                return
            set_condition(st, "ScalingActive", "True", "ValidMetricFound",
                          f"the HPA was able to successfully calculate a replica count from {name}", now)
            out = self.normalizer.normalize(key, hpa, current, proposal, now)
            set_condition(st, "AbleToScale", "True", *out.able, now)
            set_condition(st, "ScalingLimited", "True" if out.limited else "False", *out.limit, now)
            desired = out.replicas
            reason = f"{name} above target" if desired > current else "All metrics below target"
        if desired != current:
            await self._rescale(hpa, target, current, desired, reason, now)
            self.normalizer.record_scale(key, hpa, current, desired, now)
        await self._write_status(old, hpa, current=current, desired=desired, statuses=statuses)

    async def _rescale(self, hpa, target, current: int, desired: int, reason: str, now: float) -> None:
        target.spec.replicas = desired
        try:
            await self.client.update(target)
        except errors.ApiError as exc:
            set_condition(hpa.status, "AbleToScale", "False", "FailedUpdateScale",
                          f"the HPA controller was unable to update the target scale: {exc.message}", now)
            self.event(hpa, "Warning", "FailedRescale", f"New size: {desired}; reason: {reason}; error: {exc.message}")
            raise
        set_condition(hpa.status, "AbleToScale", "True", "SucceededRescale",
                      f"the HPA controller was able to update the target scale to {desired}", now)
        self.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
        hpa.status.last_scale_time.CopyFrom(_stamp(now))

    async def _write_status(self, old, hpa, *, current: int | None = None, desired: int | None = None,
                            statuses=None) -> None:
        st = hpa.status
        if current is not None:
            st.current_replicas = current
        if desired is not None:
            st.desired_replicas = desired
        if statuses is not None:
            del st.current_metrics[:]
            st.current_metrics.extend(statuses)
        st.observed_generation = hpa.metadata.generation
        if st != old.status:
            await self.client.update_status(hpa)

    # ---------------------------------------------------------- metrics
    async def compute(self, hpa, target, current: int, now: float):
        """computeReplicasForMetrics: (replicas, metric name, MetricStatus list)."""
        sel = selectors.from_proto(target.spec.selector if target.spec.HasField("selector") else None)
        ns = hpa.metadata.namespace
        pods = [p for p in self.pod_inf.list(ns) if sel.matches(p.metadata.labels)]
        best, best_name, statuses, invalid, first_err = -1, "", [], 0, None
        for spec in hpa.spec.metrics:
            try:
                replicas, status = await self._one(spec, current, pods, ns, str(sel), now)
            except hpa_calc.MetricsError as exc:
                invalid += 1
                first_err = first_err or (spec, exc)
                statuses.append(autoscaling_pb2.MetricStatus())
                continue
            statuses.append(status)
            if replicas > best:
                best, best_name = replicas, metric_name(spec)
        n = len(hpa.spec.metrics)
        if invalid and (invalid >= n or best < current):
            spec, exc = first_err
            reason = "FailedGet" + ("Resource" if spec.type == "Resource" else "ContainerResource") + "Metric"
            message = str(exc) if n == 1 else f"invalid metrics ({invalid} invalid out of {n}), first error is: {exc}"
            set_condition(hpa.status, "ScalingActive", "False", reason,
                          f"the HPA was unable to compute the replica count: {message}", now)
            self.event(hpa, "Warning", reason if n == 1 else "FailedComputeMetricsReplicas", message)
            raise hpa_calc.MetricsError(message)
        return best, best_name, statuses

    async def _one(self, spec, current: int, pods, ns: str, sel: str, now: float):
        src = spec.resource if spec.type == "Resource" else spec.container_resource
        container = spec.container_resource.container if spec.type == "ContainerResource" else ""
        try:
            items = await self.metrics(ns, sel)
        except errors.ApiError as exc:
            raise hpa_calc.MetricsError(f"unable to get metrics for resource {src.name}: {exc.message}") from exc
        metrics = pod_metric_values(items, src.name, container)
        if not metrics:
            raise hpa_calc.MetricsError(f"unable to get metrics for resource {src.name}: no metrics returned from "
                                        "resource metrics API")
        status = autoscaling_pb2.MetricStatus(type=spec.type)
        out = status.resource if spec.type == "Resource" else status.container_resource
        out.name = src.name
        if spec.type == "ContainerResource":
            out.container = container
        if src.target.type == "Utilization":
            replicas, util, raw = hpa_calc.resource_replicas(current, src.target.average_utilization, src.name, pods,
                                                             metrics, now, container)
            out.current.average_utilization = util
        else:
            replicas, raw = hpa_calc.raw_replicas(current, quantity.milli_value(src.target.average_value), src.name,
                                                  pods, metrics, now)
        out.current.average_value = quantity.canonical(f"{raw}m")
        return replicas, status
