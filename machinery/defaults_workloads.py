"""Defaulting of the workload kinds and HPAs (Kubernetes' apps/v1,
batch/v1 and autoscaling/v2 SetDefaults_*), for machinery.defaults, which
dispatches by kind. Their pod templates are defaulted as pods are
(machinery/defaults_pod.py).
"""
from __future__ import annotations

from machinery.defaults_pod import default_pod_spec

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
    from machinery.defaults import _persistent_volume_claim   # the PVC defaulter (defaults imports this module)
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
