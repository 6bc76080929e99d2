"""CronJob controller: schedule arithmetic pinned to Kubernetes' utils_test.go
and syncs on the FakeClient after cronjob_controllerv2_test.go
(TestControllerV2SyncCronJob)."""
from datetime import datetime, timezone

import pytest

from machinery import kinds, workloads

from controllers import cronjob as cjc
from tests.unit.test_controller_helpers import Clock, harness

T0 = datetime(2026, 1, 5, 10, 30, tzinfo=timezone.utc).timestamp()   # a Monday, 10:30 UTC
HOUR = 3600


class Events:
    def __init__(self):
        self.seen = []

    def event(self, obj, type_, reason, message):
        self.seen.append((type_, reason, message))

    def reasons(self):
        return [r for _, r, _ in self.seen]


def cron_obj(schedule="0 * * * *", policy="Allow", created=T0, **spec):
    cj = kinds.new("CronJob")
    cj.metadata.name, cj.metadata.namespace = "nightly", "default"
    cj.metadata.creation_timestamp.FromSeconds(int(created))
    cj.spec.schedule = schedule
    cj.spec.concurrency_policy = policy
    cj.spec.successful_jobs_history_limit = spec.pop("keep_ok", 3)
    cj.spec.failed_jobs_history_limit = spec.pop("keep_failed", 1)
    for k, v in spec.items():
        setattr(cj.spec, k, v)
    cj.spec.job_template.metadata.labels["team"] = "batch"
    t = cj.spec.job_template.spec.template
    t.spec.restart_policy = "OnFailure"
    t.spec.containers.add(name="main", image="busybox:1.36")
    return cj


# ------------------------------------------------------------ schedule maths

def test_most_recent_schedule_time_cases():
    """TestMostRecentScheduleTime: "not past the first schedule", "one schedule missed",
    "several missed, most recent returned", "with startingDeadlineSeconds"."""
    cj = cron_obj()
    tz = timezone.utc
    assert cjc.most_recent_schedule_time(cj, T0 + 10 * 60, "0 * * * *", tz, True)[1:] == (None, 0)
    assert cjc.most_recent_schedule_time(cj, T0 + 35 * 60, "0 * * * *", tz, True)[1:] == (T0 + 30 * 60, 0)
    _, recent, missed = cjc.most_recent_schedule_time(cj, T0 + 2 * HOUR + 35 * 60, "0 * * * *", tz, True)
    assert (recent, missed) == (T0 + 2 * HOUR + 30 * 60, 3)
    cj.spec.starting_deadline_seconds = 600
    _, recent, missed = cjc.most_recent_schedule_time(cj, T0 + 2 * HOUR + 35 * 60, "0 * * * *", tz, True)
    assert (recent, missed) == (T0 + 2 * HOUR + 30 * 60, 0)


def test_next_requeue_is_just_after_the_next_schedule_time():
    """TestNextScheduleTimeDuration: next slot plus the 100 ms NTP padding."""
    cj = cron_obj()
    assert cjc.next_requeue(cj, T0 + 60, "0 * * * *", timezone.utc) == pytest.approx(29 * 60 - 60 + 0.1 + 60)


def test_time_zone_and_legacy_tz_prefix():
    """A timeZone (or TZ= in an old object) moves the wall clock the schedule is read in."""
    cj = cron_obj("0 9 * * *", time_zone="Europe/Berlin")
    expr, tz = cjc.cron_schedule(cj)
    nxt = cjc.next_after(expr, tz, T0)
    assert datetime.fromtimestamp(nxt, timezone.utc).hour == 8          # 09:00 CET
    cj2 = cron_obj("TZ=America/New_York 0 9 * * *")
    expr, tz = cjc.cron_schedule(cj2)
    assert expr == "0 9 * * *" and datetime.fromtimestamp(cjc.next_after(expr, tz, T0), timezone.utc).hour == 14
    with pytest.raises(cjc.ScheduleError, match="unknown time zone Mars/Base"):
        cjc.cron_schedule(cron_obj(time_zone="Mars/Base"))


def test_job_name_and_template():
    """getJobFromTemplate2: NAME-<minutes since epoch>, template labels, scheduled-timestamp annotation."""
    cj = cron_obj()
    cj.metadata.uid = "u1"
    job = cjc.job_from_template(cj, T0 + 30 * 60, timezone.utc)
    assert job.metadata.name == f"nightly-{int(T0 + 30 * 60) // 60}"
    assert job.metadata.labels["team"] == "batch"
    assert job.metadata.annotations[workloads.CRONJOB_SCHEDULED_TIMESTAMP] == "2026-01-05T11:00:00+00:00"
    assert job.metadata.owner_references[0].kind == "CronJob" and job.metadata.owner_references[0].controller


# ------------------------------------------------------------------- syncs

def make(events):
    return lambda h: cjc.CronJobController(h.client, h.factory, events, clock=h.clock, local_tz=timezone.utc)


async def run(h, c):
    await h.settle()
    await c.sync("default/nightly")
    await h.settle()


def jobs(h):
    return sorted(h.objs("Job"), key=lambda j: j.metadata.name)


def cj_of(h):
    return h.objs("CronJob")[0]


async def finish_job(h, job, ok=True, at=None):
    job.status.conditions.add(type="Complete" if ok else "Failed", status="True")
    job.status.start_time.FromSeconds(int(at or h.clock()))
    if ok:
        job.status.completion_time.FromSeconds(int(at or h.clock()))
    await h.client.update_status(job)


async def test_creates_a_job_when_it_is_time_and_not_before():
    """"never ran, not time, A" creates nothing; "never ran, is time, A" creates one and lists it."""
    ev = Events()
    async with harness(make(ev), clock=Clock(T0)) as (h, c):
        await h.client.create(cron_obj())
        h.clock.advance(60)
        await run(h, c)
        assert not jobs(h)
        h.clock.advance(30 * 60)
        await run(h, c)
        [job] = jobs(h)
        st = cj_of(h).status
        assert [r.name for r in st.active] == [job.metadata.name]
        assert st.last_schedule_time.seconds == int(T0 + 30 * 60)
        assert ev.reasons() == ["SuccessfulCreate"]
        await run(h, c)
        assert len(jobs(h)) == 1                       # the same time is never started twice


async def test_forbid_skips_while_active_and_replace_replaces():
    """"prev ran but done, is time, F" vs "still active, is time, F" (JobAlreadyActive) and "..., R"."""
    ev = Events()
    async with harness(make(ev), clock=Clock(T0)) as (h, c):
        await h.client.create(cron_obj(policy="Forbid"))
        h.clock.advance(31 * 60)
        await run(h, c)
        h.clock.advance(HOUR)
        await run(h, c)
        assert len(jobs(h)) == 1 and "JobAlreadyActive" in ev.reasons()
        cj = cj_of(h)
        cj.spec.concurrency_policy = "Replace"
        await h.client.update(cj)
        await run(h, c)
        [job] = jobs(h)
        assert job.metadata.name == f"nightly-{int(T0 + 90 * 60) // 60}"
        assert [r.name for r in cj_of(h).status.active] == [job.metadata.name]
        assert "SuccessfulDelete" in ev.reasons()


async def test_finished_jobs_leave_active_and_history_is_trimmed():
    """"SawCompletedJob", lastSuccessfulTime, and cleanupFinishedJobs with limits 1/1."""
    ev = Events()
    async with harness(make(ev), clock=Clock(T0)) as (h, c):
        await h.client.create(cron_obj(keep_ok=1, keep_failed=1))
        h.clock.advance(31 * 60)
        for i in range(3):
            await run(h, c)
            [job] = [j for j in jobs(h) if not j.status.conditions]
            await finish_job(h, job, ok=(i != 1))
            await run(h, c)
            h.clock.advance(HOUR)
        st = cj_of(h).status
        assert not st.active and st.last_successful_time.seconds == int(T0 + 31 * 60 + 2 * HOUR)
        kept = [(j.metadata.name, j.status.conditions[0].type) for j in jobs(h)]
        assert kept == [(f"nightly-{int(T0 + 90 * 60) // 60}", "Failed"),
                        (f"nightly-{int(T0 + 150 * 60) // 60}", "Complete")]
        assert ev.reasons().count("SawCompletedJob") == 3


async def test_suspend_and_missed_deadline_start_nothing():
    """"never ran, is time, suspended" and "never ran, is time, past deadline": a start older than
    startingDeadlineSeconds is skipped (the search window begins at now - deadline)."""
    ev = Events()
    async with harness(make(ev), clock=Clock(T0)) as (h, c):
        await h.client.create(cron_obj(suspend=True, starting_deadline_seconds=60))
        h.clock.advance(45 * 60)
        await run(h, c)
        assert not jobs(h) and not ev.seen
        cj = cj_of(h)
        cj.spec.suspend = False
        await h.client.update(cj)
        await run(h, c)
        assert not jobs(h) and not ev.seen
        assert not cj_of(h).status.HasField("last_schedule_time")


async def test_too_many_missed_start_times_start_only_the_latest():
    """"too many missed start times" (> 100): warn, then start the most recent one only."""
    ev = Events()
    async with harness(make(ev), clock=Clock(T0)) as (h, c):
        await h.client.create(cron_obj("* * * * *"))
        h.clock.advance(2 * 24 * HOUR + 5)
        await run(h, c)
        assert "TooManyMissedTimes" in ev.reasons()
        [job] = jobs(h)
        assert job.metadata.name == f"nightly-{int(T0 + 2 * 24 * HOUR) // 60}"
