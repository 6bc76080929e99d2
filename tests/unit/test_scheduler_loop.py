"""The Scheduler against machinery/fakeclient: binds, unschedulable
bookkeeping, retries when a node is added, bind failures forgotten."""
import asyncio
import json

import pytest

from machinery import errors
from machinery.fakeclient import FakeClient
from scheduler import decision, hollow
from scheduler.scheduler import Scheduler


async def until(pred, what="condition"):
    for _ in range(2000):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached: {what}")


@pytest.fixture
async def fake():
    return FakeClient()


@pytest.fixture
async def running(fake):
    s = Scheduler(fake)
    task = asyncio.create_task(s.run())
    yield s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def pods(fake):
    return {p.metadata.name: p for p in fake.objects("Pod")}


async def test_binds_where_it_fits_with_decision_and_event(fake, running):
    await fake.create(hollow.node("small", cpu="1"))
    await fake.create(hollow.node("big", cpu="8"))
    await fake.create(hollow.pod("p", cpu="2"))
    await until(lambda: pods(fake)["p"].spec.node_name, "bound")
    p = pods(fake)["p"]
    assert p.spec.node_name == "big"
    rec = json.loads(p.metadata.annotations[decision.ANNOTATION])
    assert rec["node"] == "big" and rec["filtered"] == [
        {"reason": "Insufficient cpu", "count": 1, "nodes": ["small"]}]
    await until(lambda: any(e.reason == "Scheduled" for e in fake.objects("Event")), "event")
    ev = next(e for e in fake.objects("Event") if e.reason == "Scheduled")
    assert ev.message == "Successfully assigned default/p to big" and ev.type == "Normal"
    assert running.metrics.value("kctl_scheduler_schedule_attempts_total", result="scheduled") == 1


async def test_unschedulable_then_node_added(fake, running):
    await fake.create(hollow.node("n1", cpu="1"))
    await fake.create(hollow.pod("p", cpu="2"))
    msg = ("0/1 nodes are available: 1 Insufficient cpu. "
           "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    await until(lambda: any(c.reason == "Unschedulable" for c in pods(fake)["p"].status.conditions), "status")
    cond = next(c for c in pods(fake)["p"].status.conditions if c.type == "PodScheduled")
    assert (cond.status, cond.reason, cond.message) == ("False", "Unschedulable", msg)
    rec = json.loads(pods(fake)["p"].metadata.annotations[decision.ANNOTATION])
    assert rec["node"] is None and rec["feasible"] == 0
    await until(lambda: any(e.reason == "FailedScheduling" for e in fake.objects("Event")), "event")
    ev = next(e for e in fake.objects("Event") if e.reason == "FailedScheduling")
    assert ev.type == "Warning" and ev.message == msg
    await until(lambda: running.metrics.value("kctl_scheduler_pending_pods", queue="unschedulable") == 1,
                "pending gauge")
    assert running.metrics.value("kctl_scheduler_schedule_attempts_total", result="unschedulable") == 1
    await fake.create(hollow.node("n2", cpu="4"))
    await until(lambda: pods(fake)["p"].spec.node_name == "n2", "bound after node add")


async def test_bind_failure_is_forgotten_and_retried(fake, running):
    await fake.create(hollow.node("n1", cpu="1"))
    await until(lambda: len(running.cache) == 1, "node seen")
    fake.fail_next("bind", errors.Unavailable("etcd down"))
    await fake.create(hollow.pod("p", cpu="1"))
    await until(lambda: pods(fake)["p"].spec.node_name == "n1", "bound on retry")
    assert running.metrics.value("kctl_scheduler_schedule_attempts_total", result="error") == 1
    await until(lambda: not running.cache.is_assumed("uid-default-p"), "confirmed")
    assert running.cache.node_summary("n1")["cpu"] == (1000, 1000)


async def test_never_overcommits(fake, running):
    for i in range(3):
        await fake.create(hollow.node(f"n{i}", cpu="2", pods="110"))
    for i in range(10):
        await fake.create(hollow.pod(f"p{i}", cpu="500m", owner_uid="rs"))
    await until(lambda: sum(1 for p in pods(fake).values() if p.spec.node_name) == 10, "all bound")
    per_node = {}
    for p in pods(fake).values():
        per_node[p.spec.node_name] = per_node.get(p.spec.node_name, 0) + 1
    assert sorted(per_node.values()) == [3, 3, 4]


async def test_ignores_other_schedulers_and_bound_pods(fake, running):
    await fake.create(hollow.node("n1"))
    await fake.create(hollow.pod("other", scheduler_name="someone-else"))
    await fake.create(hollow.pod("mine", scheduler_name="kctl-scheduler"))
    await fake.create(hollow.pod("given", node_name="n1", cpu="1"))
    await until(lambda: pods(fake)["mine"].spec.node_name == "n1", "mine bound")
    assert pods(fake)["other"].spec.node_name == ""
    assert running.cache.node_summary("n1")["cpu"][0] == 1000
    assert not any(a[0] == "bind" and a[3] in ("other", "given") for a in fake.actions)


async def test_bind_not_found_is_dropped_not_retried(fake, running):
    await fake.create(hollow.node("n1"))
    await until(lambda: len(running.cache) == 1, "node seen")
    fake.fail_next("bind", errors.NotFound('pods "p" not found'))
    await fake.create(hollow.pod("p"))
    await until(lambda: not fake.pending_failures("bind") and running.binder.batches == 1, "bind attempted")
    assert "uid-default-p" not in running.cache.pods          # assumption forgotten
    assert running.queue.where("default/p") is None            # and not retried
    assert running.cache.node_summary("n1")["pods"] == (0, 110)
    assert pods(fake)["p"].spec.node_name == ""


def test_bind_conflict_for_a_pod_bound_elsewhere_is_dropped(fake):
    from scheduler.binder import BindItem
    from scheduler.framework import pod_info
    from scheduler.queue import QueuedPod
    s = Scheduler(fake)
    s._node_added(hollow.node("n1"))
    s._node_added(hollow.node("n2"))
    pending = hollow.pod("p")
    s._pod_added(pending)
    qp = s.queue.pop_nowait()
    s.cache.assume(qp.info, "n2")
    s.queue.done(qp.key)
    s._pod_updated(pending, hollow.pod("p", node_name="n1"))   # another scheduler won
    s._on_bound(BindItem("default", "p", qp.info.uid, "n2", {}, qp),
                errors.Conflict('pod p is already assigned to node "n1"'))
    assert s.queue.where("default/p") is None
    assert s.cache.pods["uid-default-p"].node == "n1" and not s.cache.is_assumed("uid-default-p")
    assert s.cache.node_summary("n2")["pods"][0] == 0 and s.cache.node_summary("n1")["pods"][0] == 1


async def test_deleted_pod_releases_node_resources_and_retries_waiting_pods(fake, running):
    await fake.create(hollow.node("n1", cpu="1"))
    await fake.create(hollow.pod("first", cpu="1"))
    await until(lambda: pods(fake)["first"].spec.node_name == "n1", "first bound")
    await fake.create(hollow.pod("second", cpu="1"))
    await until(lambda: running.queue.where("default/second") == "unschedulable", "second waits")
    await fake.delete("Pod", "first", "default", grace_period=0)
    await until(lambda: pods(fake)["second"].spec.node_name == "n1", "second bound after delete")
