"""Table columns of the workload kinds (Job, CronJob, DaemonSet, StatefulSet,
PodDisruptionBudget, ControllerRevision), as kubectl's printers.go prints
them; machinery.tables adds them to its PRINTERS, shared by `kctl get` and
the apiserver's server-side Tables.
"""
from __future__ import annotations

from machinery.tables import (NONE, Printer, _all, _cols, _containers, age, format_labels, format_selector,
                              human_duration, now, ts_seconds)


def _true(obj, type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in obj.status.conditions)


def job_status(j) -> str:
    """printJob's STATUS column."""
    for cond, word in (("Complete", "Complete"), ("Failed", "Failed")):
        if _true(j, cond):
            return word
    if j.metadata.HasField("deletion_timestamp"):
        return "Terminating"
    for cond in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _true(j, cond):
            return cond
    return "Running"


def job_completions(j) -> str:
    s = j.status.succeeded
    if j.spec.HasField("completions"):
        return f"{s}/{j.spec.completions}"
    if j.spec.HasField("parallelism") and j.spec.parallelism > 1:
        return f"{s}/1 of {j.spec.parallelism}"
    return f"{s}/1"


def job_duration(j, at) -> str:
    start = ts_seconds(j.status.start_time)
    if start is None:
        return ""
    end = ts_seconds(j.status.completion_time)
    return human_duration((end if end is not None else (at if at is not None else now())) - start)


def _job(j, wide, at):
    row = [j.metadata.name, job_status(j), job_completions(j), job_duration(j, at),
           age(j.metadata.creation_timestamp, at)]
    return row + [*_containers(j.spec.template), format_selector(j.spec.selector)]


def _cron_job(cj, wide, at):
    spec, st = cj.spec, cj.status
    last = age(st.last_schedule_time, at) if st.HasField("last_schedule_time") else NONE
    row = [cj.metadata.name, spec.schedule, spec.time_zone if spec.HasField("time_zone") else NONE,
           (str(spec.suspend) if spec.HasField("suspend") else NONE), str(len(st.active)), last,
           age(cj.metadata.creation_timestamp, at)]
    jt = spec.job_template.spec
    return row + [*_containers(jt.template), format_selector(jt.selector if jt.HasField("selector") else None)]


def _daemon_set(d, wide, at):
    st = d.status
    row = [d.metadata.name, str(st.desired_number_scheduled), str(st.current_number_scheduled),
           str(st.number_ready), str(st.updated_number_scheduled), str(st.number_available),
           format_labels(d.spec.template.spec.node_selector), age(d.metadata.creation_timestamp, at)]
    return row + [*_containers(d.spec.template), format_selector(d.spec.selector)]


def _stateful_set(s, wide, at):
    """printStatefulSet: READY is readyReplicas/spec.replicas; wide adds containers and images."""
    row = [s.metadata.name, f"{s.status.ready_replicas}/{s.spec.replicas}", age(s.metadata.creation_timestamp, at)]
    return row + [*_containers(s.spec.template)]


def int_or_string(v) -> str:
    kind = v.WhichOneof("value")
    return "N/A" if kind is None else str(getattr(v, kind))


def _pdb(p, wide, at):
    return [p.metadata.name, int_or_string(p.spec.min_available), int_or_string(p.spec.max_unavailable),
            str(p.status.disruptions_allowed), age(p.metadata.creation_timestamp, at)]


def _controller_revision(cr, wide, at):
    ref = next((r for r in cr.metadata.owner_references if r.controller), None)
    controller = NONE
    if ref is not None:
        group = ref.api_version.rpartition("/")[0]
        controller = f"{ref.kind.lower()}.{group}/{ref.name}" if group else f"{ref.kind.lower()}/{ref.name}"
    return [cr.metadata.name, controller, str(cr.revision), age(cr.metadata.creation_timestamp, at)]


WIDE = "CONTAINERS|IMAGES|SELECTOR"
WORKLOAD_PRINTERS = {
    "Job": Printer(_cols("NAME|STATUS|COMPLETIONS|DURATION|AGE", WIDE), _all(_job)),
    "CronJob": Printer(_cols("NAME|SCHEDULE|TIMEZONE|SUSPEND|ACTIVE|LAST SCHEDULE|AGE", WIDE), _all(_cron_job)),
    "DaemonSet": Printer(_cols("NAME|DESIRED|CURRENT|READY|UP-TO-DATE|AVAILABLE|NODE SELECTOR|AGE", WIDE),
                         _all(_daemon_set)),
    "StatefulSet": Printer(_cols("NAME|READY|AGE", "CONTAINERS|IMAGES"), _all(_stateful_set)),
    "PodDisruptionBudget": Printer(_cols("NAME|MIN AVAILABLE|MAX UNAVAILABLE|ALLOWED DISRUPTIONS|AGE"), _all(_pdb)),
    "ControllerRevision": Printer(_cols("NAME|CONTROLLER|REVISION|AGE"), _all(_controller_revision)),
}
