"""Job and TTL-after-finished controller syncs on the FakeClient, and the Job
controller's pure decisions pinned to Kubernetes' own test cases
(pkg/controller/job/*_test.go)."""
import pytest

from machinery import codec, errors, kinds, workloads

from controllers import job_util as ju
from controllers.job import JobController
from controllers.ttlafterfinished import TTLAfterFinishedController
from tests.unit.test_controller_helpers import Clock, harness


def jc(h):
    return JobController(h.client, h.factory, clock=h.clock)


def job_obj(name="pi", completions=3, parallelism=2, backoff=6, indexed=False, restart="Never"):
    j = kinds.new("Job")
    j.metadata.name, j.metadata.namespace = name, "default"
    if completions is not None:
        j.spec.completions = completions
    j.spec.parallelism = parallelism
    j.spec.backoff_limit = backoff
    j.spec.completion_mode = "Indexed" if indexed else "NonIndexed"
    j.spec.pod_replacement_policy = "TerminatingOrFailed"
    j.spec.template.spec.restart_policy = restart
    j.spec.template.spec.containers.add(name="main", image="busybox:1.36")
    return j


async def create_job(h, job):
    """As the apiserver does: the UID first, then the generated selector."""
    created = await h.client.create(job)
    workloads.generate_job_selector(created)
    return await h.client.update(created)


async def finish(h, pod, phase="Succeeded", exit_code=0, at=None):
    p = codec.copy(pod)
    p.status.phase = phase
    cs = p.status.container_statuses.add(name="main")
    cs.state.terminated.exit_code = exit_code if phase == "Failed" else 0
    cs.state.terminated.finished_at.FromSeconds(int(at if at is not None else h.clock()))
    await h.client.update_status(p)


def pods(h):
    return sorted(h.objs("Pod"), key=lambda p: p.metadata.name)


def running(h):
    return [p for p in pods(h) if p.status.phase in ("Pending", "Running")
            and not p.metadata.HasField("deletion_timestamp")]


def the_job(h, name="pi"):
    return next(j for j in h.objs("Job") if j.metadata.name == name)


def conds(job):
    return {c.type: (c.status, c.reason) for c in job.status.conditions}


async def step(h, c, key="default/pi"):
    await h.settle()
    await c.sync(key)
    await h.settle()


# ------------------------------------------------------------- decisions

@pytest.mark.parametrize("indexes,text", [
    ((), ""), ((0,), "0"), ((1, 2), "1,2"), ((1, 3, 4, 5, 7), "1,3-5,7"), ((0, 1, 2, 3, 9, 10), "0-3,9,10")])
def test_completed_indexes_text_form(indexes, text):
    """TestCalculateSucceededIndexes / orderedIntervals.String: three or more in a row compress."""
    assert ju.format_indexes(indexes) == text
    assert ju.parse_indexes(text, 100) == set(indexes)


@pytest.mark.parametrize("prev,completions,want", [
    ("0-5,8-10", 8, {0, 1, 2, 3, 4, 5}), ("0-5,8-10", 10, {0, 1, 2, 3, 4, 5, 8, 9}), ("0,1-foo,bar", 4, {0})])
def test_parse_indexes_drops_out_of_range_and_junk(prev, completions, want):
    """TestCalculateSucceededIndexes "prev interval out of range", "prev interval partially out of
    range", "corrupted interval"."""
    assert ju.parse_indexes(prev, completions) == want


def test_backoff_doubles_from_the_last_failure_and_resets_on_success():
    """TestGetRemainingBackoffTime / backoffRecord: 10 s, 20 s, 40 s ... capped; a success resets."""
    r = ju.BackoffRecord()
    r.observe([], [100.0])
    assert r.remaining(105.0) == 5.0
    r.observe([], [110.0])
    assert r.remaining(110.0) == 20.0
    for t in range(10):
        r.observe([], [120.0 + t])
    assert r.remaining(129.0) == ju.MAX_BACKOFF
    r.observe([200.0], [])
    assert r.remaining(200.0) == 0.0


def _failed_pod(code, cond=None):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = "p", "default"
    p.status.phase = "Failed"
    p.status.container_statuses.add(name="main").state.terminated.exit_code = code
    if cond:
        p.status.conditions.add(type=cond, status="True")
    return p


def _policy(job, action, op=None, values=(), cond=None):
    r = job.spec.pod_failure_policy.rules.add(action=action)
    if op:
        r.on_exit_codes.operator = op
        r.on_exit_codes.values.extend(values)
    if cond:
        r.on_pod_conditions.add(type=cond, status="True")


def test_pod_failure_policy_first_matching_rule_decides():
    """TestMatchPodFailurePolicy: "ignore rule matched for exit codes", "FailJob rule matched for exit
    codes", "no rule matched" (default Count), "ignore rule matched for pod conditions"."""
    job = job_obj()
    _policy(job, "Ignore", "In", [1, 2])
    _policy(job, "FailJob", "NotIn", [1, 2, 3])
    _policy(job, "Ignore", cond="DisruptionTarget")
    assert ju.match_pod_failure_policy(job, _failed_pod(2)) == ju.PolicyDecision(False)
    d = ju.match_pod_failure_policy(job, _failed_pod(42))
    assert d.fail_job_message == ("Container main for pod default/p failed with exit code 42 "
                                  "matching FailJob rule at index 1")
    assert ju.match_pod_failure_policy(job, _failed_pod(3)) == ju.PolicyDecision(True)
    assert ju.match_pod_failure_policy(job, _failed_pod(0, "DisruptionTarget")) == ju.PolicyDecision(False)


def test_is_pod_failed_follows_pod_replacement_policy():
    """isPodFailed: a deleted, unfinished pod counts as failed unless only Failed pods are replaced."""
    job, pod = job_obj(), kinds.new("Pod")
    pod.status.phase = "Running"
    pod.metadata.deletion_timestamp.FromSeconds(1)
    assert ju.is_pod_failed(pod, job)
    job.spec.pod_replacement_policy = "Failed"
    assert not ju.is_pod_failed(pod, job)


# ------------------------------------------------------------------ syncs

async def test_runs_parallelism_pods_counts_successes_and_completes():
    """TestControllerSyncJob "too few active pods" then "job finish": pods carry the tracking
    finalizer, successes pass through uncountedTerminatedPods, Complete follows SuccessCriteriaMet."""
    async with harness(jc, clock=Clock()) as (h, c):
        job = await create_job(h, job_obj(completions=3, parallelism=2))
        await step(h, c)
        ps = running(h)
        assert len(ps) == 2
        for p in ps:
            assert workloads.JOB_TRACKING_FINALIZER in p.metadata.finalizers
            assert p.metadata.labels[workloads.CONTROLLER_UID] == job.metadata.uid
            assert p.metadata.labels[workloads.JOB_NAME] == "pi"
            ref = p.metadata.owner_references[0]
            assert (ref.kind, ref.uid, ref.controller) == ("Job", job.metadata.uid, True)
        st = the_job(h).status
        assert (st.active, st.succeeded) == (2, 0) and st.HasField("start_time")
        await finish(h, ps[0])
        await step(h, c)
        st = the_job(h).status
        assert (st.active, st.succeeded, list(st.uncounted_terminated_pods.succeeded)) == (2, 1, [])
        assert not [p for p in pods(h) if p.status.phase == "Succeeded"
                    and workloads.JOB_TRACKING_FINALIZER in p.metadata.finalizers]
        for p in running(h):
            await finish(h, p)
        await step(h, c)
        j = the_job(h)
        assert j.status.succeeded == 3 and j.status.active == 0
        assert conds(j) == {"SuccessCriteriaMet": ("True", "CompletionsReached"),
                            "Complete": ("True", "CompletionsReached")}
        assert j.status.HasField("completion_time")
        await step(h, c)
        assert the_job(h).status.succeeded == 3


async def test_stale_cache_never_counts_a_pod_twice():
    """finalizer expectations: until the cache shows the finalizer gone, the pod is not counted again."""
    async with harness(jc, clock=Clock()) as (h, c):
        await create_job(h, job_obj(completions=2, parallelism=1))
        await step(h, c)
        await finish(h, running(h)[0])
        await h.settle()
        h.client.hold_watches("Pod")
        await c.sync("default/pi")
        try:
            await c.sync("default/pi")         # its status write may conflict (the job cache lags)
        except errors.Conflict:
            pass
        assert the_job(h).status.succeeded == 1
        h.client.release_watches("Pod")
        await step(h, c)
        assert the_job(h).status.succeeded == 1


async def test_indexed_job_runs_each_index_once():
    """TestControllerSyncJob "indexed job start" / "indexed job completed": names, annotation, label,
    env, hostname; completedIndexes as text."""
    async with harness(jc, clock=Clock()) as (h, c):
        await create_job(h, job_obj(completions=5, parallelism=2, indexed=True))
        await step(h, c)
        ps = running(h)
        assert sorted(p.metadata.annotations[workloads.COMPLETION_INDEX] for p in ps) == ["0", "1"]
        p0 = next(p for p in ps if p.metadata.labels[workloads.COMPLETION_INDEX] == "0")
        assert p0.metadata.name.startswith("pi-0-") and p0.spec.hostname == "pi-0"
        env = {e.name: e.value_from.field_ref.field_path for e in p0.spec.containers[0].env}
        assert env == {"JOB_COMPLETION_INDEX": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
        seen = []
        while not ju.is_finished(the_job(h)):
            for p in running(h):
                seen.append(int(p.metadata.annotations[workloads.COMPLETION_INDEX]))
                await finish(h, p)
            await step(h, c)
            assert len(running(h)) <= 2
        assert sorted(seen) == [0, 1, 2, 3, 4]
        j = the_job(h)
        assert (j.status.completed_indexes, j.status.succeeded) == ("0-4", 5)
        assert conds(j)["Complete"] == ("True", "CompletionsReached")


async def test_backoff_limit_exceeded_fails_the_job_after_backoff_delays():
    """TestControllerSyncJob "too many job failures" and TestJobBackoff: the replacement waits 10 s,
    then 20 s; failed > backoffLimit -> FailureTarget, then Failed once no pod runs."""
    async with harness(jc, clock=Clock()) as (h, c):
        await create_job(h, job_obj(completions=1, parallelism=1, backoff=1))
        await step(h, c)
        await finish(h, running(h)[0], "Failed", 1)
        await step(h, c)
        assert the_job(h).status.failed == 1 and not running(h)       # back-off: 10 s
        h.clock.advance(10)
        await step(h, c)
        assert len(running(h)) == 1
        await finish(h, running(h)[0], "Failed", 1)
        await step(h, c)
        j = the_job(h)
        assert j.status.failed == 2
        assert conds(j) == {"FailureTarget": ("True", "BackoffLimitExceeded"),
                            "Failed": ("True", "BackoffLimitExceeded")}
        assert not j.status.HasField("completion_time")


async def test_pod_failure_policy_fail_job_deletes_the_other_pods():
    """TestSyncJobWithJobPodFailurePolicy "job marked already as failure target ... FailJob"."""
    async with harness(jc, clock=Clock()) as (h, c):
        j = job_obj(completions=3, parallelism=3)
        j.spec.pod_replacement_policy = "Failed"
        _policy(j, "FailJob", "In", [42])
        await create_job(h, j)
        await step(h, c)
        ps = running(h)
        await finish(h, ps[0], "Failed", 42)
        await step(h, c)
        job = the_job(h)
        assert conds(job)["FailureTarget"][1] == "PodFailurePolicy"
        assert "Failed" not in conds(job)                  # two pods still terminating
        assert all(p.metadata.HasField("deletion_timestamp") for p in running(h) + pods(h)[1:]
                   if p.status.phase != "Failed")
        for p in pods(h):
            if p.metadata.HasField("deletion_timestamp"):
                await finish(h, p, "Failed", 137)
        await step(h, c)
        await step(h, c)
        job = the_job(h)
        assert conds(job)["Failed"][1] == "PodFailurePolicy"
        msg = next(x.message for x in job.status.conditions if x.type == "Failed")
        assert msg.endswith("failed with exit code 42 matching FailJob rule at index 0")


async def test_active_deadline_fails_the_job():
    """TestSyncJobPastDeadline "activeDeadlineSeconds less than single pod execution"."""
    async with harness(jc, clock=Clock()) as (h, c):
        j = job_obj(completions=1, parallelism=1)
        j.spec.active_deadline_seconds = 10
        await create_job(h, j)
        await step(h, c)
        assert len(running(h)) == 1
        h.clock.advance(11)
        await step(h, c)
        await step(h, c)
        job = the_job(h)
        assert conds(job)["FailureTarget"] == ("True", "DeadlineExceeded")
        assert job.status.failed == 1                      # the deleted pod counts as failed
        await step(h, c)
        assert conds(the_job(h))["Failed"] == ("True", "DeadlineExceeded")


async def test_suspend_deletes_pods_and_resume_restarts_the_clock():
    """TestControllerSyncJob "suspending a job with satisfied expectations" / "resuming a suspended job"."""
    async with harness(jc, clock=Clock()) as (h, c):
        await create_job(h, job_obj(completions=4, parallelism=2))
        await step(h, c)
        j = the_job(h)
        j.spec.suspend = True
        await h.client.update(j)
        await step(h, c)
        await step(h, c)                                   # the pods' deletion shows up
        j = the_job(h)
        assert conds(j)["Suspended"] == ("True", "JobSuspended") and not j.status.HasField("start_time")
        assert not running(h) and j.status.failed == 0
        j.spec.suspend = False
        await h.client.update(j)
        h.clock.advance(5)
        await step(h, c)
        j = the_job(h)
        assert conds(j)["Suspended"] == ("False", "JobResumed")
        assert j.status.start_time.seconds == int(h.clock()) and len(running(h)) == 2


async def test_pods_of_a_deleted_job_lose_their_finalizer():
    """The orphan path (cleanupPodFinalizers): no pod stays stuck on the tracking finalizer."""
    async with harness(jc, clock=Clock(), workers=True) as (h, c):
        await create_job(h, job_obj(completions=2, parallelism=2))
        await h.settle()
        c.enqueue_key("default/pi")

        async def two():
            await h.settle()
            return len(running(h)) == 2
        from tests.unit.test_controller_helpers import eventually
        await eventually(two)
        await h.client.delete("Job", "pi", "default")
        await eventually(lambda: all(not p.metadata.finalizers for p in h.objs("Pod")), what="finalizers gone")


async def test_ttl_after_finished_deletes_the_job_when_its_time_is_up():
    """TestTimeLeft "Job finished with TTL": not before finish + ttl, then with foreground propagation."""
    async with harness(lambda h: TTLAfterFinishedController(h.client, h.factory, clock=h.clock),
                       clock=Clock()) as (h, c):
        j = job_obj()
        j.spec.ttl_seconds_after_finished = 30
        job = await create_job(h, j)
        job.status.conditions.add(type="Complete", status="True").last_transition_time.FromSeconds(int(h.clock()))
        await h.client.update_status(job)
        await step(h, c)
        assert h.objs("Job")
        h.clock.advance(31)
        await step(h, c)
        assert ("delete", "Job", "default", "pi") in h.client.actions
        assert not h.objs("Job")


async def test_a_lost_status_write_after_the_finalizer_went_still_counts_once():
    """trackJobStatusAndRemoveFinalizers / flushUncountedAndRemoveFinalizers: the UID recorded in
    uncountedTerminatedPods before the finalizer is removed is counted by a later sync."""
    async with harness(jc, clock=Clock()) as (h, c):
        await create_job(h, job_obj(completions=2, parallelism=1))
        await step(h, c)
        await finish(h, running(h)[0])
        await h.settle()
        real, calls = h.client.update_status, []

        async def second_write_fails(obj):
            calls.append(obj)
            if len(calls) == 2:
                raise errors.Unavailable("etcd is down")
            return await real(obj)
        h.client.update_status = second_write_fails
        with pytest.raises(errors.Unavailable):
            await c.sync("default/pi")
        h.client.update_status = real
        st = the_job(h).status
        assert (st.succeeded, len(st.uncounted_terminated_pods.succeeded)) == (0, 1)
        assert not [p for p in pods(h) if p.metadata.finalizers and p.status.phase == "Succeeded"]
        await step(h, c)
        st = the_job(h).status
        assert (st.succeeded, len(st.uncounted_terminated_pods.succeeded), st.active) == (1, 0, 1)
        await step(h, c)
        assert len(pods(h)) == 2                       # one replacement, never two


async def test_indexed_job_deletes_pods_with_bad_or_repeated_indexes():
    """TestControllerSyncJob "indexed job some pods without index", "indexed job repeated indexes" and
    "indexed job with indexes outside of range": such pods are deleted (and that sync creates nothing)."""
    from controllers.job import pod_for
    async with harness(jc, clock=Clock()) as (h, c):
        job = await create_job(h, job_obj(completions=3, parallelism=3, indexed=True))
        bad = [pod_for(job, 1), pod_for(job, 1), pod_for(job, 7), pod_for(job, 0)]
        bad[0].metadata.annotations[workloads.COMPLETION_INDEX] = "invalid"
        bad[0].metadata.labels.pop(workloads.COMPLETION_INDEX)
        for p in bad:
            h.clock.advance(1)
            await h.client.create(p)
        await step(h, c)
        left = sorted(p.metadata.annotations[workloads.COMPLETION_INDEX] for p in running(h))
        assert left == ["0", "1"]
        assert not [a for a in h.client.actions if a[0] == "create" and a[1] == "Pod"][len(bad):]
        await step(h, c)                 # the deleted pods count as failed (isPodFailed): back-off
        h.clock.advance(60)
        await step(h, c)
        assert sorted(p.metadata.annotations[workloads.COMPLETION_INDEX] for p in running(h)) == ["0", "1", "2"]
