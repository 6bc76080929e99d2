"""Job and CronJob validation (pkg/apis/batch/validation): counts and
deadlines non-negative, completionMode and Indexed limits, podFailurePolicy
rules, the generated selector, restartPolicy Never/OnFailure; a CronJob's
schedule parsed by the same cron library the controller uses (croniter),
its timeZone known to the system's tz database, and `TZ=`/`CRON_TZ=` only
where Kubernetes still accepts it (kept unchanged on update)."""
from __future__ import annotations

import zoneinfo

from croniter import CroniterError, croniter

from machinery import selectors, workloads
from machinery.errors import FieldError, invalid, not_supported, required
from machinery.validation.common import IMMUTABLE_MSG, duplicates, non_negative, validate_selector_proto
from machinery.validation.meta import validate_template_meta
from machinery.validation.pod import validate_pod_spec

COMPLETION_MODES = ("NonIndexed", "Indexed")
RESTART_POLICIES = ("OnFailure", "Never")
ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")
EXIT_CODE_OPS = ("In", "NotIn")
CONCURRENCY = ("Allow", "Forbid", "Replace")
REPLACEMENT = ("TerminatingOrFailed", "Failed")
MAX_PARALLELISM_INDEXED = 100_000
MAX_RULES = 20
CRONJOB_NAME_MAX = 52
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")       # DNS1035LabelMaxLength - 11 (the job name gets a suffix)


def _pod_failure_policy(pfp, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(pfp.rules) > MAX_RULES:
        errs.append(FieldError("TooMany", f"{path}.rules", len(pfp.rules),
                               f"must have at most {MAX_RULES} items"))
    for i, rule in enumerate(pfp.rules):
        rp = f"{path}.rules[{i}]"
        if rule.action not in ACTIONS:
            errs.append(not_supported(f"{rp}.action", rule.action, ACTIONS) if rule.action
                        else required(f"{rp}.action", ""))
        elif rule.action == "FailIndex":        # kctl has no backoffLimitPerIndex
            errs.append(invalid(f"{rp}.action", rule.action, "requires the backoffLimitPerIndex to be set"))
        has_codes, has_conds = rule.HasField("on_exit_codes"), len(rule.on_pod_conditions) > 0
        if has_codes and has_conds:
            errs.append(invalid(rp, "", "specifying both OnExitCodes and OnPodConditions is not supported"))
        elif not has_codes and not has_conds:
            errs.append(invalid(rp, "", "specifying one of OnExitCodes and OnPodConditions is required"))
        if has_codes:
            ec, ep = rule.on_exit_codes, f"{rp}.onExitCodes"
            if ec.operator not in EXIT_CODE_OPS:
                errs.append(not_supported(f"{ep}.operator", ec.operator, EXIT_CODE_OPS))
            if not ec.values:
                errs.append(invalid(f"{ep}.values", [], "at least one value is required"))
            errs += duplicates(f"{ep}.values[%d]", list(ec.values))
            for j, v in enumerate(ec.values):
                if ec.operator == "In" and v == 0:
                    errs.append(invalid(f"{ep}.values[{j}]", 0, "must not be 0 for the In operator"))
                if j and v < ec.values[j - 1] and v != ec.values[j - 1]:
                    errs.append(invalid(f"{ep}.values[{j}]", v, "must be ordered"))
        for j, pat in enumerate(rule.on_pod_conditions):
            cp = f"{rp}.onPodConditions[{j}]"
            if not pat.type:
                errs.append(required(f"{cp}.type", ""))
            if pat.status not in ("True", "False", "Unknown"):
                errs.append(not_supported(f"{cp}.status", pat.status, ("True", "False", "Unknown")))
    return errs


def validate_job_spec(spec, path: str, *, template_only: bool = False) -> list[FieldError]:
    """ValidateJobSpec; template_only for a CronJob's jobTemplate (no selector yet)."""
    errs: list[FieldError] = []
    for f, j in (("parallelism", "parallelism"), ("completions", "completions"),
                 ("active_deadline_seconds", "activeDeadlineSeconds"), ("backoff_limit", "backoffLimit"),
                 ("ttl_seconds_after_finished", "ttlSecondsAfterFinished")):
        if spec.HasField(f):
            errs += non_negative(f"{path}.{j}", getattr(spec, f))
    mode = spec.completion_mode
    if mode and mode not in COMPLETION_MODES:
        errs.append(not_supported(f"{path}.completionMode", mode, COMPLETION_MODES))
    if mode == "Indexed":
        if not spec.HasField("completions"):
            errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
        if spec.parallelism > MAX_PARALLELISM_INDEXED:
            errs.append(invalid(f"{path}.parallelism", spec.parallelism,
                                f"must be less than or equal to {MAX_PARALLELISM_INDEXED} "
                                "when completion mode is Indexed"))
    if spec.pod_replacement_policy and spec.pod_replacement_policy not in REPLACEMENT:
        errs.append(not_supported(f"{path}.podReplacementPolicy", spec.pod_replacement_policy, REPLACEMENT))
    restart = spec.template.spec.restart_policy
    if spec.HasField("pod_failure_policy"):
        errs += _pod_failure_policy(spec.pod_failure_policy, f"{path}.podFailurePolicy")
        if restart == "OnFailure":
            errs.append(invalid(f"{path}.template.spec.restartPolicy", restart,
                                'only "Never" is supported when podFailurePolicy is specified'))
        if spec.pod_replacement_policy and spec.pod_replacement_policy != "Failed":
            errs.append(not_supported(f"{path}.podReplacementPolicy", spec.pod_replacement_policy, ("Failed",)))
    sel = None
    if template_only:
        if spec.HasField("selector"):
            errs.append(invalid(f"{path}.selector", selectors.proto_to_string(spec.selector),
                                "`selector` will be auto-generated"))
        if spec.HasField("manual_selector") and spec.manual_selector:
            errs.append(not_supported(f"{path}.manualSelector", True, ("nil", "false")))
    elif not spec.HasField("selector"):
        errs.append(required(f"{path}.selector", ""))
    else:
        serrs = validate_selector_proto(spec.selector, f"{path}.selector")
        errs += serrs
        sel = None if serrs else selectors.from_proto(spec.selector)
    if not spec.HasField("template"):
        return errs + [required(f"{path}.template", "")]
    tp = f"{path}.template"
    errs += validate_template_meta(spec.template.metadata, f"{tp}.metadata")
    if sel is not None and not sel.matches(spec.template.metadata.labels):
        errs.append(invalid(f"{tp}.metadata.labels", dict(spec.template.metadata.labels),
                            "`selector` does not match template `labels`"))
    errs += validate_pod_spec(spec.template.spec, f"{tp}.spec")
    if restart not in RESTART_POLICIES:
        errs.append(not_supported(f"{tp}.spec.restartPolicy", restart, RESTART_POLICIES) if restart
                    else required(f"{tp}.spec.restartPolicy", ""))
    return errs


def _generated_selector(job) -> list[FieldError]:
    """validateGeneratedSelector: the labels the apiserver generated carry this job's UID."""
    if (job.spec.HasField("manual_selector") and job.spec.manual_selector) or not job.metadata.uid:
        return []
    uid, errs = job.metadata.uid, []
    labels = job.spec.template.metadata.labels
    for key in (workloads.CONTROLLER_UID, workloads.LEGACY_CONTROLLER_UID):
        if labels.get(key) != uid:
            errs.append(invalid(f"spec.template.metadata.labels[{key}]", labels.get(key, ""),
                                f"must be '{uid}'"))
    if job.spec.selector.match_labels.get(workloads.CONTROLLER_UID) != uid:
        errs.append(invalid(f"spec.selector.matchLabels[{workloads.CONTROLLER_UID}]",
                            job.spec.selector.match_labels.get(workloads.CONTROLLER_UID, ""),
                            f"must be '{uid}'"))
    return errs


def validate_job(job) -> list[FieldError]:
    return validate_job_spec(job.spec, "spec") + _generated_selector(job)


def validate_job_update(new, old) -> list[FieldError]:
    """ValidateJobSpecUpdate: what identifies the work may not change."""
    errs: list[FieldError] = []
    ns, os_ = new.spec, old.spec
    for f, j in (("completions", "completions"), ("selector", "selector"), ("completion_mode", "completionMode"),
                 ("pod_failure_policy", "podFailurePolicy"), ("manual_selector", "manualSelector")):
        a = getattr(ns, f) if (f == "completion_mode" or ns.HasField(f)) else None
        b = getattr(os_, f) if (f == "completion_mode" or os_.HasField(f)) else None
        if a != b:
            errs.append(invalid(f"spec.{j}", "", IMMUTABLE_MSG))
    # the template may change only while the job is suspended and never started
    suspended = ns.HasField("suspend") and ns.suspend and not old.status.HasField("start_time")
    if ns.template != os_.template and not suspended:
        errs.append(invalid("spec.template", "", IMMUTABLE_MSG))
    return errs


def validate_job_status(st) -> list[FieldError]:
    errs: list[FieldError] = []
    for f, j in (("active", "active"), ("succeeded", "succeeded"), ("failed", "failed")):
        errs += non_negative(f"status.{j}", getattr(st, f))
    for f, j in (("ready", "ready"), ("terminating", "terminating")):
        if st.HasField(f):
            errs += non_negative(f"status.{j}", getattr(st, f))
    return errs


# ----------------------------------------------------------------- CronJob

def parse_schedule(schedule: str, default_tz: str | None = None):
    """(cron expression, tz name or None) with a leading `TZ=`/`CRON_TZ=` split off."""
    text = schedule.strip()
    tz = default_tz
    if text.startswith(("TZ=", "CRON_TZ=")):
        head, _, text = text.partition(" ")
        tz = head.split("=", 1)[1]
    return text.strip(), tz


def schedule_errors(schedule: str) -> list[str]:
    """robfig/cron ParseStandard's verdict, in its words where they exist: five fields or one
    descriptor (@yearly, @monthly, @weekly, @daily, @midnight, @hourly)."""
    expr, tz = parse_schedule(schedule)
    problems = []
    fields = expr.split()
    if expr.startswith("@"):
        if expr not in DESCRIPTORS:
            problems.append(f"unrecognized descriptor: {expr}")
    elif len(fields) != 5:
        problems.append(f"expected exactly 5 fields, found {len(fields)}: [{expr}]")
    else:
        try:
            croniter(expr)
        except CroniterError as exc:
            problems.append(str(exc))
    if tz is not None and not _known_zone(tz):
        problems.append(f"provided bad location {tz}: unknown time zone {tz}")
    return problems


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _tz_in_schedule(cj, allow: bool) -> list[FieldError]:
    """validateScheduleFormat's TZ rules: never on create; on update only if the old schedule had it."""
    sched = cj.spec.schedule
    if "TZ" not in sched:
        return []
    if not allow:
        return [invalid("spec.schedule", sched, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    if cj.spec.HasField("time_zone"):
        return [invalid("spec.schedule", sched, "cannot use both timeZone field and TZ or CRON_TZ in schedule")]
    return []


def validate_cron_job_create(cj) -> list[FieldError]:
    errs = []
    if len(cj.metadata.name) > CRONJOB_NAME_MAX:
        errs.append(invalid("metadata.name", cj.metadata.name, f"must be no more than {CRONJOB_NAME_MAX} characters"))
    return errs + _tz_in_schedule(cj, allow=False)


def validate_cron_job_update(new, old) -> list[FieldError]:
    return _tz_in_schedule(new, allow="TZ" in old.spec.schedule)


def validate_cron_job(cj) -> list[FieldError]:
    spec, errs = cj.spec, []
    if not spec.schedule:
        errs.append(required("spec.schedule", ""))
    else:
        errs += [invalid("spec.schedule", spec.schedule, m) for m in schedule_errors(spec.schedule)]
    if spec.HasField("time_zone"):
        tz = spec.time_zone
        if not tz:
            errs.append(invalid("spec.timeZone", tz, "timeZone must be nil or non-empty string"))
        elif tz.lower() == "local":
            errs.append(invalid("spec.timeZone", tz,
                                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
        elif not _known_zone(tz):
            errs.append(invalid("spec.timeZone", tz, f"unknown time zone {tz}"))
    if spec.concurrency_policy not in CONCURRENCY:
        errs.append(not_supported("spec.concurrencyPolicy", spec.concurrency_policy, CONCURRENCY)
                    if spec.concurrency_policy else required("spec.concurrencyPolicy", ""))
    for f, j in (("starting_deadline_seconds", "startingDeadlineSeconds"),
                 ("successful_jobs_history_limit", "successfulJobsHistoryLimit"),
                 ("failed_jobs_history_limit", "failedJobsHistoryLimit")):
        if spec.HasField(f):
            errs += non_negative(f"spec.{j}", getattr(spec, f))
    jt = spec.job_template
    errs += validate_template_meta(jt.metadata, "spec.jobTemplate.metadata")
    errs += validate_job_spec(jt.spec, "spec.jobTemplate.spec", template_only=True)
    return errs

