"""A Deployment's status and conditions, as pure functions (Kubernetes'
deployment/sync.go calculateStatus, progress.go, and the condition helpers
of deployment/util).

Nothing here reads a cache or writes to the API: each function takes the
Deployment, the ReplicaSets and the time it needs and returns what the
controller should write, so controllers/rollout.py decides *when* to write
and this module decides *what*. `now` is seconds since the epoch (the
controller's clock).

Conditions (SetDeploymentCondition): setting a condition whose status and
reason are unchanged is a no-op; a changed reason with an unchanged status
keeps lastTransitionTime.
"""
from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from machinery import codec

from controllers import deployment_util as du
from controllers import podutil

MAX_INT32 = 2**31 - 1


def has_progress_deadline(d) -> bool:
    return d.spec.HasField("progress_deadline_seconds") and d.spec.progress_deadline_seconds != MAX_INT32


def set_condition(st, type_: str, status: str, reason: str, message: str, now: float) -> None:
    """SetDeploymentCondition on the status `st` (see the module doc)."""
    cur = next((c for c in st.conditions if c.type == type_), None)
    if cur is not None and cur.status == status and cur.reason == reason:
        return
    ts = Timestamp(seconds=int(now))
    remove_condition(st, type_)
    c = st.conditions.add(type=type_, status=status, reason=reason, message=message)
    c.last_update_time.CopyFrom(ts)
    if cur is not None and cur.status == status:
        c.last_transition_time.CopyFrom(cur.last_transition_time)
    else:
        c.last_transition_time.CopyFrom(ts)


def remove_condition(st, type_: str) -> None:
    keep = [codec.copy(c) for c in st.conditions if c.type != type_]
    del st.conditions[:]
    st.conditions.extend(keep)


def paused_condition(d, now: float) -> bool:
    """Record Paused/Resumed in d's Progressing condition (checkPausedConditions);
    True when d.status changed and must be written."""
    if not has_progress_deadline(d):
        return False
    cond = podutil.condition(d, "Progressing")
    if cond is not None and cond.reason == "ProgressDeadlineExceeded":
        return False
    paused_cond = cond is not None and cond.reason == "DeploymentPaused"
    if d.spec.paused and not paused_cond:
        set_condition(d.status, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now)
    elif not d.spec.paused and paused_cond:
        set_condition(d.status, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", now)
    else:
        return False
    return True


def calculate_status(d, all_rss, new_rs, now: float):
    """The status the ReplicaSets give d (calculateStatus), with its Available condition."""
    rss = [rs for rs in all_rss if rs is not None]
    available = du.total_available(rss)
    st = codec.copy(d.status)
    st.observed_generation = d.metadata.generation
    st.replicas = du.total_actual(rss)
    st.updated_replicas = new_rs.status.replicas if new_rs is not None else 0
    st.ready_replicas = du.total_ready(rss)
    st.available_replicas = available
    st.unavailable_replicas = max(du.total_replicas(rss) - available, 0)
    if available >= du.replicas(d) - du.max_unavailable(d):
        set_condition(st, "Available", "True", "MinimumReplicasAvailable",
                      "Deployment has minimum availability.", now)
    else:
        set_condition(st, "Available", "False", "MinimumReplicasUnavailable",
                      "Deployment does not have minimum availability.", now)
    return st


def deployment_complete(d, st) -> bool:
    n = du.replicas(d)
    return (st.updated_replicas == n and st.replicas == n and st.available_replicas == n
            and st.observed_generation >= d.metadata.generation)


def deployment_progressing(d, st) -> bool:
    old = d.status
    return (st.updated_replicas > old.updated_replicas
            or (st.replicas - st.updated_replicas) < (old.replicas - old.updated_replicas)
            or st.ready_replicas > old.ready_replicas
            or st.available_replicas > old.available_replicas)


def deployment_timed_out(d, st, now: float) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = next((c for c in st.conditions if c.type == "Progressing"), None)
    if cond is None or cond.reason == "NewReplicaSetAvailable":
        return False
    if cond.reason == "ProgressDeadlineExceeded":
        return True
    return cond.last_update_time.seconds + d.spec.progress_deadline_seconds < now


def rollout_status(d, all_rss, new_rs, now: float):
    """syncRolloutStatus' computation: (the new status, True when the progress
    deadline passed just now — the controller then records an event)."""
    st = calculate_status(d, all_rss, new_rs, now)
    if not has_progress_deadline(d):
        remove_condition(st, "Progressing")
    cur = podutil.condition(d, "Progressing")
    complete = (st.replicas == st.updated_replicas and cur is not None
                and cur.reason == "NewReplicaSetAvailable")
    timed_out_now = False
    if has_progress_deadline(d) and not complete:
        name = new_rs.metadata.name if new_rs is not None else ""
        if deployment_complete(d, st):
            set_condition(st, "Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{name}" has successfully progressed.', now)
        elif deployment_progressing(d, st):
            msg = (f'ReplicaSet "{name}" is progressing.' if new_rs is not None
                   else f'Deployment "{d.metadata.name}" is progressing.')
            before = next((c for c in st.conditions if c.type == "Progressing"), None)
            before = codec.copy(before) if before is not None else None
            remove_condition(st, "Progressing")
            set_condition(st, "Progressing", "True", "ReplicaSetUpdated", msg, now)
            if before is not None and before.status == "True":
                c = next(c for c in st.conditions if c.type == "Progressing")
                c.last_transition_time.CopyFrom(before.last_transition_time)
        elif deployment_timed_out(d, st, now):
            set_condition(st, "Progressing", "False", "ProgressDeadlineExceeded",
                          f'ReplicaSet "{name}" has timed out progressing.', now)
            timed_out_now = cur is None or cur.reason != "ProgressDeadlineExceeded"
    failure = next((c for rs in [new_rs, *all_rss] if rs is not None for c in rs.status.conditions
                    if c.type == "ReplicaFailure" and c.status == "True"), None)
    if failure is not None:          # surface a ReplicaSet's create/delete failure (getReplicaFailures)
        set_condition(st, "ReplicaFailure", failure.status, failure.reason, failure.message, now)
    else:
        remove_condition(st, "ReplicaFailure")
    return st, timed_out_now


def requeue_after(d, st, now: float) -> float | None:
    """Seconds until the progress deadline would pass (requeueStuckDeployment),
    or None when there is nothing to come back for."""
    cond = next((c for c in st.conditions if c.type == "Progressing"), None)
    if not has_progress_deadline(d) or cond is None:
        return None
    if deployment_complete(d, st) or cond.reason in ("ProgressDeadlineExceeded", "NewReplicaSetAvailable"):
        return None
    if cond.reason in ("DeploymentPaused",):
        return None
    after = cond.last_update_time.seconds + d.spec.progress_deadline_seconds - now
    return max(after + 1.0, 0.2)
