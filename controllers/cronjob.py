"""The CronJob controller (Kubernetes' pkg/controller/cronjob, the v2 controller).

sync(key) reads the CronJob and the Jobs it controls and:

1. reconciles status.active: finished Jobs leave it ("SawCompletedJob"),
   Jobs that went missing leave it ("MissingJob", after a live GET), an
   unfinished Job of ours that is not listed is reported ("UnexpectedJob");
   the latest completionTime of a succeeded Job becomes lastSuccessfulTime;
2. unless suspended, finds the most recent unmet schedule time since
   lastScheduleTime (or creation), in spec.timeZone (or a legacy `TZ=` /
   `CRON_TZ=` prefix of the schedule; else the process' local zone), with
   croniter for the cron arithmetic; more than 100 missed start times are
   reported ("TooManyMissedTimes") and only the latest is considered;
   startingDeadlineSeconds both bounds the search and skips a start that is
   too late ("MissSchedule");
3. applies concurrencyPolicy: Forbid skips while a Job is active
   ("JobAlreadyActive"), Replace deletes the active Jobs first;
4. creates the Job `NAME-<scheduled unix time / 60>` (the name is the lock
   against a second Job for the same time after a crash), annotated with
   batch.kubernetes.io/cronjob-scheduled-timestamp, adds it to
   status.active and sets lastScheduleTime;
5. deletes the oldest finished Jobs beyond successfulJobsHistoryLimit /
   failedJobsHistoryLimit, and comes back 100 ms after the next schedule time.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

from machinery import codec, errors, kinds, workloads
from machinery.informer import BY_CONTROLLER
from machinery.pb import meta_pb2
from machinery.validation.batch import parse_schedule

from controllers import podutil
from controllers.base import Controller
from controllers.job_util import condition as job_condition
from controllers.job_util import is_finished
from controllers.replicaset import ensure_indexes

NEXT_SCHEDULE_DELTA = 0.1
MANY_MISSED = 100


class ScheduleError(errors.ControlFlow):
    """The schedule or time zone cannot be used (reported as an event, not retried)."""


def cron_schedule(cj, local_tz=None):
    """(croniter expression, tzinfo) of a CronJob; raises ScheduleError."""
    expr, tz_name = parse_schedule(cj.spec.schedule)
    if cj.spec.HasField("time_zone"):
        tz_name = cj.spec.time_zone
    try:
        tz = ZoneInfo(tz_name) if tz_name else (local_tz or datetime.now().astimezone().tzinfo)
    except (KeyError, ValueError) as exc:
        raise ScheduleError(f"invalid timeZone: {tz_name!r}: unknown time zone {tz_name}") from exc
    if not croniter.is_valid(expr):
        raise ScheduleError(f"unparseable schedule: {cj.spec.schedule!r} : not a cron expression")
    return expr, tz


def next_after(expr: str, tz, t: float) -> float:
    """The first schedule time strictly after t (cron.Schedule.Next)."""
    return croniter(expr, datetime.fromtimestamp(t, tz)).get_next(float)


def most_recent_schedule_time(cj, now: float, expr: str, tz, with_deadline: bool):
    """(earliest, most recent unmet time or None, missed count) — mostRecentScheduleTime."""
    earliest = float(cj.metadata.creation_timestamp.seconds)
    if cj.status.HasField("last_schedule_time"):
        earliest = float(cj.status.last_schedule_time.seconds)
    if with_deadline and cj.spec.HasField("starting_deadline_seconds"):
        earliest = max(earliest, now - cj.spec.starting_deadline_seconds)
    t1 = next_after(expr, tz, earliest)
    t2 = next_after(expr, tz, t1)
    if now < t1:
        return earliest, None, 0
    if now < t2:
        return earliest, t1, 0
    between = round(t2 - t1)
    if between < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    missed = int(now - t1) // between + 1
    recent, t = None, next_after(expr, tz, t1 + (missed - 2) * between)
    while t <= now:
        recent, t = t, next_after(expr, tz, t)
    return earliest, recent, missed


def next_requeue(cj, now: float, expr: str, tz) -> float:
    """Seconds until 100 ms after the next schedule time (nextScheduleTimeDuration)."""
    try:
        earliest, recent, missed = most_recent_schedule_time(cj, now, expr, tz, False)
    except ScheduleError:
        earliest, recent, missed = now, now, 0
    if recent is None:
        recent = earliest if missed == 0 else now
    return next_after(expr, tz, recent) + NEXT_SCHEDULE_DELTA - now


def job_name(cj, scheduled: float) -> str:
    return f"{cj.metadata.name}-{int(scheduled) // 60}"


def job_from_template(cj, scheduled: float, tz):
    """getJobFromTemplate2: the template's metadata and spec, named and owned."""
    job = kinds.new("Job")
    t = cj.spec.job_template
    job.metadata.name, job.metadata.namespace = job_name(cj, scheduled), cj.metadata.namespace
    job.metadata.labels.update(t.metadata.labels)
    job.metadata.annotations.update(t.metadata.annotations)
    job.metadata.annotations[workloads.CRONJOB_SCHEDULED_TIMESTAMP] = \
        datetime.fromtimestamp(scheduled, tz).isoformat()
    job.metadata.owner_references.append(podutil.owner_ref_for(cj))
    job.spec.CopyFrom(t.spec)
    return job


def _rfc1123z(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, client, factory, recorder=None, workers: int = 5, *, clock=time.time, local_tz=None):
        super().__init__(client, factory, recorder, workers)
        self.clock, self.local_tz = clock, local_tz
        self.cj_inf = factory.informer("CronJob")
        self.job_inf = factory.informer("Job")
        for inf in (self.cj_inf, self.job_inf):
            ensure_indexes(inf)
        self.cj_inf.add_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.job_inf.add_handler(self._job_changed, lambda old, new: self._job_changed(new), self._job_changed)

    def informers(self):
        return [self.cj_inf, self.job_inf]

    def _job_changed(self, job) -> None:
        ref = podutil.controller_ref(job)
        if ref is not None and ref.kind == "CronJob":
            self.queue.add(f"{job.metadata.namespace}/{ref.name}")

    async def sync(self, key: str) -> None:
        cj = self.cj_inf.get_by_key(key)
        if cj is None:
            return
        jobs = [j for j in self.job_inf.by_index(BY_CONTROLLER, cj.metadata.uid)]
        new = codec.copy(cj)
        requeue = None
        await self._reconcile_active(new, jobs)
        if not podutil.is_terminating(cj):
            try:
                requeue = await self._schedule(new)
            except ScheduleError as exc:
                self.event(cj, "Warning", "InvalidSchedule", str(exc))
        if new.status != cj.status:
            try:
                await self.client.update_status(new)
            except errors.NotFound:
                return
        await self._cleanup_finished(new, jobs)
        if requeue is not None:
            self.queue.add_after(key, max(0.05, requeue))

    # ----------------------------------------------------------- active
    async def _reconcile_active(self, cj, jobs) -> None:
        st = cj.status
        active = {r.uid for r in st.active}
        for j in jobs:
            uid = j.metadata.uid
            if uid not in active and not is_finished(j):
                self.event(cj, "Warning", "UnexpectedJob",
                           f"Saw a job that the controller did not create or forgot: {j.metadata.name}")
            elif uid in active and is_finished(j):
                done = "Complete" if job_condition(j, "Complete") is not None else "Failed"
                self._drop_active(st, uid)
                self.event(cj, "Normal", "SawCompletedJob", f"Saw completed job: {j.metadata.name}, condition: {done}")
            if job_condition(j, "Complete") is not None and j.status.HasField("completion_time"):
                if not st.HasField("last_successful_time") or \
                        j.status.completion_time.seconds > st.last_successful_time.seconds:
                    st.last_successful_time.CopyFrom(j.status.completion_time)
        present = {j.metadata.uid for j in jobs}
        for ref in list(st.active):
            if ref.uid in present:
                continue
            try:
                await self.client.get("Job", ref.name, ref.namespace)
            except errors.NotFound:
                self.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref.name}")
                self._drop_active(st, ref.uid)

    @staticmethod
    def _drop_active(st, uid: str) -> None:
        keep = [codec.copy(r) for r in st.active if r.uid != uid]
        del st.active[:]
        st.active.extend(keep)

    # --------------------------------------------------------- schedule
    async def _schedule(self, cj) -> float | None:
        if cj.spec.HasField("suspend") and cj.spec.suspend:
            return None
        expr, tz = cron_schedule(cj, self.local_tz)
        now = self.clock()
        _, scheduled, missed = most_recent_schedule_time(cj, now, expr, tz, True)
        if scheduled is None:
            return next_requeue(cj, now, expr, tz)
        if missed > MANY_MISSED:
            self.event(cj, "Warning", "TooManyMissedTimes", "too many missed start times. Set or decrease "
                       ".spec.startingDeadlineSeconds or check clock skew")
        if cj.spec.HasField("starting_deadline_seconds") and scheduled + cj.spec.starting_deadline_seconds < now:
            self.event(cj, "Warning", "MissSchedule",
                       f"Missed scheduled time to start a job: {_rfc1123z(scheduled)}")
            return next_requeue(cj, now, expr, tz)
        name = job_name(cj, scheduled)
        if any(r.name == name for r in cj.status.active) or \
                (cj.status.HasField("last_schedule_time") and cj.status.last_schedule_time.seconds == int(scheduled)):
            return next_requeue(cj, now, expr, tz)
        if cj.spec.concurrency_policy == "Forbid" and cj.status.active:
            self.event(cj, "Normal", "JobAlreadyActive",
                       "Not starting job because prior execution is running and concurrency policy is Forbid")
            return next_requeue(cj, now, expr, tz)
        if cj.spec.concurrency_policy == "Replace":
            for ref in list(cj.status.active):
                await self._delete_job(cj, ref.name)
                self._drop_active(cj.status, ref.uid)
        try:
            job = await self.client.create(job_from_template(cj, scheduled, tz))
        except errors.AlreadyExists:
            job = await self.client.get("Job", name, cj.metadata.namespace)
            ref = podutil.controller_ref(job)
            if ref is None or ref.uid != cj.metadata.uid or any(r.uid == job.metadata.uid for r in cj.status.active):
                return next_requeue(cj, now, expr, tz)
        except errors.ApiError as exc:
            self.event(cj, "Warning", "FailedCreate", f"Error creating job: {exc}")
            raise
        else:
            self.event(cj, "Normal", "SuccessfulCreate", f"Created job {job.metadata.name}")
        cj.status.active.append(meta_pb2.ObjectReference(
            kind="Job", namespace=job.metadata.namespace, name=job.metadata.name, uid=job.metadata.uid,
            api_version="batch/v1", resource_version=job.metadata.resource_version))
        cj.status.last_schedule_time.FromSeconds(int(scheduled))
        return next_requeue(cj, now, expr, tz)

    async def _delete_job(self, cj, name: str) -> None:
        try:
            await self.client.delete("Job", name, cj.metadata.namespace, propagation="Background")
        except errors.NotFound:
            return
        self.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {name}")

    # ---------------------------------------------------------- history
    async def _cleanup_finished(self, cj, jobs) -> None:
        active = {r.uid for r in cj.status.active}
        finished = [j for j in jobs if is_finished(j) and j.metadata.uid not in active
                    and not podutil.is_terminating(j)]
        for want_complete, field in ((True, "successful_jobs_history_limit"), (False, "failed_jobs_history_limit")):
            if not cj.spec.HasField(field):
                continue
            group = [j for j in finished if (job_condition(j, "Complete") is not None) == want_complete]
            group.sort(key=lambda j: (j.status.start_time.seconds if j.status.HasField("start_time")
                                      else j.metadata.creation_timestamp.seconds, j.metadata.name))
            for j in group[:max(0, len(group) - getattr(cj.spec, field))]:
                await self._delete_job(cj, j.metadata.name)
