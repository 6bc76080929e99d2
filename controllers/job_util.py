"""The Job controller's pure decisions (Kubernetes' pkg/controller/job:
job_controller.go, indexed_job_utils.go, pod_failure_policy.go,
backoff_utils.go), kept apart from the I/O in controllers/job.py so the unit
tests can pin them to Kubernetes' own cases.

* which pods count as succeeded / failed (isPodFailed: with
  podReplacementPolicy Failed or a podFailurePolicy only phase Failed does,
  otherwise a pod being deleted that did not succeed counts as failed too);
* podFailurePolicy matching (FailJob / Ignore / Count, on exit codes and on
  pod conditions), with Kubernetes' messages;
* completed indexes in the "1,3-5,7" text form and back;
* the pod-failure back-off: 10 s doubling per failure since the last
  success, capped (6 min by default), measured from the last failure;
* the Job's conditions: FailureTarget / SuccessCriteriaMet first (Kubernetes
  1.31+), then Failed / Complete once no pod of the job still runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from machinery import workloads

from controllers import podutil

DEFAULT_BACKOFF = 10.0
MAX_BACKOFF = 360.0

# reasons and messages (pkg/apis/batch/types.go, job_controller.go)
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
POD_FAILURE_POLICY = "PodFailurePolicy"
FINISHED_TYPES = ("Complete", "Failed")


def has_tracking_finalizer(pod) -> bool:
    return workloads.JOB_TRACKING_FINALIZER in pod.metadata.finalizers


def only_replace_failed(job) -> bool:
    return job.spec.pod_replacement_policy == "Failed" or job.spec.HasField("pod_failure_policy")


def is_pod_failed(pod, job) -> bool:
    if pod.status.phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return podutil.is_terminating(pod) and pod.status.phase != "Succeeded"


def is_finished(job) -> bool:
    return any(c.type in FINISHED_TYPES and c.status == "True" for c in job.status.conditions)


def condition(job, type_: str):
    return next((c for c in job.status.conditions if c.type == type_ and c.status == "True"), None)


def finish_target(job):
    """(type, reason, message) of an interim FailureTarget / SuccessCriteriaMet condition, if any."""
    for t, final in (("FailureTarget", "Failed"), ("SuccessCriteriaMet", "Complete")):
        c = condition(job, t)
        if c is not None:
            return final, c.reason, c.message
    return None


def set_condition(status, type_: str, cstatus: str, reason: str, message: str, now_ts) -> bool:
    """Add or update a condition; True when something changed (lastTransitionTime moves on a status flip)."""
    c = next((c for c in status.conditions if c.type == type_), None)
    if c is None:
        c = status.conditions.add(type=type_)
    elif (c.status, c.reason, c.message) == (cstatus, reason, message):
        return False
    if c.status != cstatus:
        c.last_transition_time.CopyFrom(now_ts)
    c.status, c.reason, c.message = cstatus, reason, message
    c.last_probe_time.CopyFrom(now_ts)
    return True


# ------------------------------------------------------------ indexes

def completion_index(pod) -> int | None:
    raw = pod.metadata.annotations.get(workloads.COMPLETION_INDEX,
                                       pod.metadata.labels.get(workloads.COMPLETION_INDEX, ""))
    return int(raw) if raw.isdigit() else None


def parse_indexes(text: str, completions: int) -> set[int]:
    """"1,3-5,7" -> {1, 3, 4, 5, 7}; indexes out of range are dropped (parseIndexesFromString)."""
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            continue
        out.update(i for i in range(lo, hi + 1) if 0 <= i < completions)
    return out


def format_indexes(indexes) -> str:
    """{1, 3, 4, 5, 7} -> "1,3-5,7"; two in a row stay "1,2" (orderedIntervals.String)."""
    parts, run = [], []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(_interval(run))
        run = [i]
    if run:
        parts.append(_interval(run))
    return ",".join(parts)


def _interval(run: list[int]) -> str:
    if len(run) == 1:
        return str(run[0])
    return f"{run[0]},{run[-1]}" if len(run) == 2 else f"{run[0]}-{run[-1]}"


# --------------------------------------------------- pod failure policy

def _exit_code_matches(req, status) -> int | None:
    if req.HasField("container_name") and req.container_name != status.name:
        return None
    t = status.state.terminated if status.state.HasField("terminated") else None
    if t is None or t.exit_code == 0:
        return None
    hit = t.exit_code in req.values
    return t.exit_code if hit == (req.operator == "In") else None


@dataclass(frozen=True)
class PolicyDecision:
    count_failed: bool = True
    fail_job_message: str | None = None


def match_pod_failure_policy(job, pod) -> PolicyDecision:
    """matchPodFailurePolicy: the first rule that matches decides; no rule = Count."""
    md = pod.metadata
    for i, rule in enumerate(job.spec.pod_failure_policy.rules):
        msg = None
        if rule.HasField("on_exit_codes"):
            for cs in pod.status.container_statuses:
                code = _exit_code_matches(rule.on_exit_codes, cs)
                if code is not None:
                    msg = (f"Container {cs.name} for pod {md.namespace}/{md.name} failed with exit code "
                           f"{code} matching {rule.action} rule at index {i}")
                    break
        for pat in rule.on_pod_conditions:
            if msg is None and any(c.type == pat.type and c.status == (pat.status or "True")
                                   for c in pod.status.conditions):
                msg = f"Pod {md.namespace}/{md.name} has condition {pat.type} matching {rule.action} rule at index {i}"
        if msg is None:
            continue
        if rule.action == "FailJob":
            return PolicyDecision(True, msg)
        if rule.action == "Ignore":
            return PolicyDecision(False)
        return PolicyDecision(True)
    return PolicyDecision(True)


# -------------------------------------------------------------- back-off

def finish_time(pod, default: float) -> float:
    """When the pod finished: the latest container finishedAt, else `default`."""
    times = [cs.state.terminated.finished_at.seconds for cs in pod.status.container_statuses
             if cs.state.HasField("terminated") and cs.state.terminated.HasField("finished_at")]
    return float(max(times)) if times else default


@dataclass
class BackoffRecord:
    """backoffRecord: consecutive failures since the last success, and when the last one happened."""
    failures: int = 0
    last_failure: float = 0.0

    def observe(self, succeeded_at: list[float], failed_at: list[float]) -> None:
        last_success = max(succeeded_at, default=None)
        later = [t for t in failed_at if last_success is None or t > last_success]
        if last_success is not None:
            self.failures = 0
        self.failures += len(later)
        if later:
            self.last_failure = max(self.last_failure, *later)

    def remaining(self, now: float, base: float = DEFAULT_BACKOFF, cap: float = MAX_BACKOFF) -> float:
        """Seconds to wait before creating the next pod (getRemainingTime); 0 = now."""
        if self.failures == 0:
            return 0.0
        delay = min(base * 2 ** (self.failures - 1), cap)
        return max(0.0, self.last_failure + delay - now)


# --------------------------------------------------------- parallelism

def want_active(job, succeeded: int) -> int:
    """How many pods should run now (manageJob's wantActive)."""
    parallelism = job.spec.parallelism
    if not job.spec.HasField("completions"):
        return parallelism if succeeded == 0 else 0
    return max(0, min(parallelism, job.spec.completions - succeeded))


def past_backoff_on_failure(job, active_pods) -> bool:
    """restartPolicy OnFailure: container restarts count against backoffLimit (pastBackoffLimitOnFailure)."""
    if job.spec.template.spec.restart_policy != "OnFailure":
        return False
    restarts = sum(cs.restart_count for p in active_pods for cs in p.status.container_statuses)
    return job.spec.backoff_limit == 0 and restarts > 0 or restarts >= job.spec.backoff_limit > 0
