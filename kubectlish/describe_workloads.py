"""`kctl describe` for jobs, cronjobs, daemonsets, statefulsets and
poddisruptionbudgets, in kubectl's layout (JobDescriber, CronJobDescriber,
DaemonSetDescriber, StatefulSetDescriber, PodDisruptionBudgetDescriber). describe.describe_one dispatches here; each
describer gets the object, its events and the pods it controls.
"""
from __future__ import annotations

from kubectlish.describe_blocks import _map_lines, events_lines, pod_template_lines, when
from kubectlish.printers import NONE, format_selector, human_duration, ts_seconds
from machinery.tables_workloads import int_or_string

ANNOTATIONS_SKIPPED = ("kubectl.kubernetes.io/last-applied-configuration",)


def _head(obj, selector: str | None = None) -> list[str]:
    m = obj.metadata
    lines = [f"Name:\t{m.name}", f"Namespace:\t{m.namespace}"]
    if selector is not None:
        lines.append(f"Selector:\t{selector}")
    lines += _map_lines("Labels", m.labels)
    lines += _map_lines("Annotations", {k: v for k, v in m.annotations.items() if k not in ANNOTATIONS_SKIPPED})
    ctrl = next((o for o in m.owner_references if o.controller), None)
    if ctrl is not None:
        lines.append(f"Controlled By:\t{ctrl.kind}/{ctrl.name}")
    return lines


def _opt(spec, field: str, fmt=str, unset="<unset>") -> str:
    return fmt(getattr(spec, field)) if spec.HasField(field) else unset


def _pods_status(pods) -> str:
    phases: dict[str, int] = {}
    for p in pods:
        phases[p.status.phase or "Pending"] = phases.get(p.status.phase or "Pending", 0) + 1
    return (f"{phases.get('Running', 0)} Running / {phases.get('Pending', 0)} Waiting / "
            f"{phases.get('Succeeded', 0)} Succeeded / {phases.get('Failed', 0)} Failed")


def describe_job(j, events, pods=()) -> list[str]:
    spec, st = j.spec, j.status
    lines = _head(j, format_selector(spec.selector))
    lines.append(f"Parallelism:\t{_opt(spec, 'parallelism')}")
    lines.append(f"Completions:\t{_opt(spec, 'completions')}")
    if spec.completion_mode:
        lines.append(f"Completion Mode:\t{spec.completion_mode}")
    if spec.HasField("suspend"):
        lines.append(f"Suspend:\t{str(spec.suspend).lower()}")
    if spec.HasField("backoff_limit"):
        lines.append(f"Backoff Limit:\t{spec.backoff_limit}")
    if spec.HasField("ttl_seconds_after_finished"):
        lines.append(f"TTL Seconds After Finished:\t{spec.ttl_seconds_after_finished}")
    if st.HasField("start_time"):
        lines.append(f"Start Time:\t{when(st.start_time)}")
    if st.HasField("completion_time"):
        lines.append(f"Completed At:\t{when(st.completion_time)}")
        lines.append(f"Duration:\t{human_duration(ts_seconds(st.completion_time) - ts_seconds(st.start_time))}")
    if spec.HasField("active_deadline_seconds"):
        lines.append(f"Active Deadline Seconds:\t{spec.active_deadline_seconds}s")
    ready = f" ({st.ready} Ready)" if st.HasField("ready") else ""
    lines.append(f"Pods Statuses:\t{st.active} Active{ready} / {st.succeeded} Succeeded / {st.failed} Failed")
    if spec.completion_mode == "Indexed":
        lines.append(f"Completed Indexes:\t{st.completed_indexes or NONE}")
    lines += pod_template_lines(spec.template)
    return lines + events_lines(events)


def describe_cron_job(cj, events, pods=()) -> list[str]:
    spec, st = cj.spec, cj.status
    lines = _head(cj)
    lines += [f"Schedule:\t{spec.schedule}", f"Concurrency Policy:\t{spec.concurrency_policy}",
              f"Suspend:\t{_opt(spec, 'suspend', lambda v: str(v))}",
              f"Successful Job History Limit:\t{_opt(spec, 'successful_jobs_history_limit')}",
              f"Failed Job History Limit:\t{_opt(spec, 'failed_jobs_history_limit')}",
              f"Starting Deadline Seconds:\t{_opt(spec, 'starting_deadline_seconds', lambda v: f'{v}s')}"]
    jt = spec.job_template.spec
    lines.append(f"Selector:\t{format_selector(jt.selector) if jt.HasField('selector') else '<unset>'}")
    lines.append(f"Parallelism:\t{_opt(jt, 'parallelism')}")
    lines.append(f"Completions:\t{_opt(jt, 'completions')}")
    if jt.HasField("active_deadline_seconds"):
        lines.append(f"Active Deadline Seconds:\t{jt.active_deadline_seconds}s")
    lines += pod_template_lines(jt.template)
    lines.append(f"Last Schedule Time:\t{when(st.last_schedule_time) if st.HasField('last_schedule_time') else NONE}")
    active = ", ".join(r.name for r in st.active)
    lines.append(f"Active Jobs:\t{active or NONE}")
    return lines + events_lines(events)


def describe_daemon_set(d, events, pods=()) -> list[str]:
    st = d.status
    lines = [f"Name:\t{d.metadata.name}", f"Namespace:\t{d.metadata.namespace}",
             f"Selector:\t{format_selector(d.spec.selector)}"]
    ns = d.spec.template.spec.node_selector
    lines.append(f"Node-Selector:\t{','.join(f'{k}={v}' for k, v in sorted(ns.items())) or NONE}")
    lines += _head(d)[2:]
    lines += [f"Desired Number of Nodes Scheduled:\t{st.desired_number_scheduled}",
              f"Current Number of Nodes Scheduled:\t{st.current_number_scheduled}",
              f"Number of Nodes Scheduled with Up-to-date Pods:\t{st.updated_number_scheduled}",
              f"Number of Nodes Scheduled with Available Pods:\t{st.number_available}",
              f"Number of Nodes Misscheduled:\t{st.number_misscheduled}",
              f"Pods Status:\t{_pods_status(pods)}"]
    lines += pod_template_lines(d.spec.template)
    return lines + events_lines(events)


def _claim_template_lines(templates) -> list[str]:
    """describeVolumeClaimTemplates."""
    if not templates:
        return [f"Volume Claims:\t{NONE}"]
    lines = ["Volume Claims:"]
    for pvc in templates:
        spec = pvc.spec
        lines += [f"  Name:\t{pvc.metadata.name}",
                  f"  StorageClass:\t{spec.storage_class_name if spec.HasField('storage_class_name') else ''}"]
        lines += _map_lines("Labels", pvc.metadata.labels, "  ")
        lines += _map_lines("Annotations", pvc.metadata.annotations, "  ")
        lines += [f"  Capacity:\t{spec.resources.requests.get('storage', '<default>')}",
                  f"  Access Modes:\t[{' '.join(spec.access_modes)}]"]
    return lines


def describe_stateful_set(s, events, pods=()) -> list[str]:
    spec, us = s.spec, s.spec.update_strategy
    lines = [f"Name:\t{s.metadata.name}", f"Namespace:\t{s.metadata.namespace}",
             f"CreationTimestamp:\t{when(s.metadata.creation_timestamp)}",
             f"Selector:\t{format_selector(spec.selector)}"]
    lines += _head(s)[2:]
    lines += [f"Replicas:\t{spec.replicas if spec.HasField('replicas') else 1} desired | {s.status.replicas} total",
              f"Update Strategy:\t{us.type}"]
    if us.HasField("rolling_update") and us.rolling_update.HasField("partition"):
        lines.append(f"  Partition:\t{us.rolling_update.partition}")
        if us.rolling_update.max_unavailable.WhichOneof("value") is not None:
            lines.append(f"  MaxUnavailable:\t{int_or_string(us.rolling_update.max_unavailable)}")
    lines.append(f"Pods Status:\t{_pods_status(pods)}")
    lines += pod_template_lines(spec.template)
    return lines + _claim_template_lines(spec.volume_claim_templates) + events_lines(events)


def describe_pdb(p, events, pods=()) -> list[str]:
    spec, st = p.spec, p.status
    lines = [f"Name:\t{p.metadata.name}", f"Namespace:\t{p.metadata.namespace}"]
    if spec.min_available.WhichOneof("value") is not None:
        lines.append(f"Min available:\t{int_or_string(spec.min_available)}")
    if spec.max_unavailable.WhichOneof("value") is not None:
        lines.append(f"Max unavailable:\t{int_or_string(spec.max_unavailable)}")
    lines.append(f"Selector:\t{format_selector(spec.selector) if spec.HasField('selector') else NONE}")
    lines += ["Status:", f"    Allowed disruptions:\t{st.disruptions_allowed}", f"    Current:\t{st.current_healthy}",
              f"    Desired:\t{st.desired_healthy}", f"    Total:\t{st.expected_pods}"]
    return lines + events_lines(events)


DESCRIBERS = {"Job": describe_job, "CronJob": describe_cron_job, "DaemonSet": describe_daemon_set,
              "StatefulSet": describe_stateful_set, "PodDisruptionBudget": describe_pdb}
