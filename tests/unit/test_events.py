"""EventRecorder: naming, namespaces, aggregation, merging of bursts, bounded queue, retries."""
import asyncio
import re

import pytest

from machinery import errors, kinds
from machinery.events import EventRecorder
from machinery.fakeclient import FakeClient


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


def pod(name="web-1", ns="prod"):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, ns, "uid-" + name
    return p


def node(name="n1"):
    n = kinds.new("Node")
    n.metadata.name, n.metadata.uid = name, "uid-" + name
    return n


@pytest.fixture
async def recorder():
    made = []

    def make(client, **kw):
        r = EventRecorder(client, "kctl-scheduler", "cp-1", **kw)
        made.append(asyncio.ensure_future(r.run()))
        return r
    yield make
    for t in made:
        t.cancel()
    await asyncio.gather(*made, return_exceptions=True)


async def events(c, ns=""):
    return (await c.list("Event", ns))[0]


async def test_first_event_is_created_with_reference_source_and_name(recorder):
    c, clock = FakeClient(), Clock()
    r = recorder(c, clock=clock)
    r.event(pod(), "Normal", "Scheduled", "Successfully assigned prod/web-1 to n1")
    r.event(node(), "Warning", "NodeNotReady", "Node n1 status is now: NodeNotReady")
    await asyncio.wait_for(r.flush(), 5)
    (ev,) = await events(c, "prod")
    assert re.fullmatch(r"web-1\.[0-9a-f]{16}", ev.metadata.name)
    assert ev.involved_object.kind == "Pod" and ev.involved_object.uid == "uid-web-1"
    assert ev.involved_object.namespace == "prod" and ev.involved_object.name == "web-1"
    assert (ev.type, ev.reason, ev.count) == ("Normal", "Scheduled", 1)
    assert (ev.source.component, ev.source.host) == ("kctl-scheduler", "cp-1")
    assert ev.first_timestamp == ev.last_timestamp
    assert ev.first_timestamp.ToSeconds() == int(clock.now)
    (nev,) = await events(c, "default")           # cluster-scoped object: default namespace
    assert nev.involved_object.kind == "Node" and nev.involved_object.namespace == ""


async def test_repeats_within_window_update_count_and_last_timestamp(recorder):
    c, clock = FakeClient(), Clock()
    r = recorder(c, clock=clock, window=600)
    p = pod()
    r.event(p, "Warning", "FailedScheduling", "0/3 nodes are available")
    await r.flush()
    for i in range(3):
        clock.now += 10
        r.event(p, "Warning", "FailedScheduling", "0/3 nodes are available")
        await r.flush()
    r.event(p, "Warning", "FailedScheduling", "0/4 nodes are available")   # another message
    await r.flush()
    evs = sorted(await events(c, "prod"), key=lambda e: e.message)
    assert [(e.message, e.count) for e in evs] == [("0/3 nodes are available", 4),
                                                   ("0/4 nodes are available", 1)]
    agg = evs[0]
    assert agg.last_timestamp.ToSeconds() - agg.first_timestamp.ToSeconds() == 30
    creates = [a for a in c.actions if a[0] == "create"]
    assert len(creates) == 2
    clock.now += 601                                # outside the window: a new Event
    r.event(p, "Warning", "FailedScheduling", "0/3 nodes are available")
    await r.flush()
    assert len(await events(c, "prod")) == 3


async def test_burst_is_merged_before_writing(recorder):
    c = FakeClient()
    r = recorder(c)
    for _ in range(100):
        r.event(pod(), "Normal", "Pulled", "image already present")
    await r.flush()
    (ev,) = await events(c, "prod")
    assert ev.count == 100
    assert len([a for a in c.actions if a[0] in ("create", "update")]) <= 2


async def test_distinct_objects_are_distinct_events(recorder):
    c = FakeClient()
    r = recorder(c)
    r.event(pod("a"), "Normal", "Started", "started")
    r.event(pod("b"), "Normal", "Started", "started")
    await r.flush()
    assert sorted(e.involved_object.name for e in await events(c)) == ["a", "b"]


async def test_full_queue_drops_instead_of_blocking():
    c = FakeClient()
    r = EventRecorder(c, "ctl", max_queue=3)        # writer not running
    for i in range(10):
        r.event(pod(f"p{i}"), "Normal", "X", "m")
    r.event(pod("p0"), "Normal", "X", "m")          # already queued: merged, not dropped
    assert r.dropped == 7
    task = asyncio.ensure_future(r.run())
    await asyncio.wait_for(r.flush(), 5)
    task.cancel()
    evs = await events(c)
    assert sorted((e.involved_object.name, e.count) for e in evs) == [("p0", 2), ("p1", 1), ("p2", 1)]


async def test_retries_then_drops_and_recovers_from_deleted_event(recorder):
    c = FakeClient()
    r = recorder(c, retries=2, retry_delay=0.01)
    c.fail_next("create", errors.Unavailable("down"), times=2)
    r.event(pod(), "Normal", "A", "m")
    await asyncio.wait_for(r.flush(), 5)
    assert len(await events(c)) == 1                # third attempt succeeded
    c.fail_next("create", errors.Unavailable("down"), times=3)
    r.event(pod(), "Normal", "B", "m")
    await asyncio.wait_for(r.flush(), 5)
    assert [e.reason for e in await events(c)] == ["A"]     # dropped after 3 attempts
    (ev,) = await events(c)
    await c.delete("Event", ev.metadata.name, ev.metadata.namespace)
    r.event(pod(), "Normal", "A", "m")              # aggregated Event is gone: created again
    await asyncio.wait_for(r.flush(), 5)
    (ev2,) = await events(c)
    assert ev2.reason == "A" and ev2.count == 1 and ev2.metadata.name != ev.metadata.name


async def test_invalid_type_is_dropped(recorder):
    c = FakeClient()
    r = recorder(c)
    r.event(pod(), "Bad", "X", "m")
    await r.flush()
    assert await events(c) == []


async def test_many_similar_messages_are_combined(recorder):
    c, clock = FakeClient(), Clock()
    r = recorder(c, clock=clock, max_similar=3)
    p = pod()
    for i in range(6):
        clock.now += 1
        r.event(p, "Warning", "FailedScheduling", f"0/{i} nodes are available")
        await r.flush()
    evs = sorted(await events(c, "prod"), key=lambda e: e.first_timestamp.seconds)
    assert [e.count for e in evs] == [1, 1, 4]         # 2 distinct, then one combined Event
    assert evs[2].message == "(combined from similar events): 0/5 nodes are available"
    r.event(p, "Normal", "Scheduled", "assigned")     # another reason is not combined
    await r.flush()
    assert any(e.message == "assigned" for e in await events(c, "prod"))


async def test_components_share_one_recorder_but_keep_their_own_source(recorder):
    """A controller manager's controllers write through one queue and writer,
    each under its own source component, and their events never merge."""
    c, clock = FakeClient(), Clock()
    r = recorder(c, clock=clock)
    rs, deploy = r.for_component("replicaset-controller"), r.for_component("deployment-controller")
    p = pod()
    rs.event(p, "Normal", "SuccessfulCreate", "Created pod: web-1")
    deploy.eventf(p, "Normal", "SuccessfulCreate", "Created pod: %s", "web-1")    # same text, other source
    rs.event(p, "Normal", "SuccessfulCreate", "Created pod: web-1")                # merged with the first
    await asyncio.wait_for(r.flush(), 5)
    got = sorted((e.source.component, e.reporting_component, e.source.host, e.count) for e in await events(c, "prod"))
    assert got == [("deployment-controller", "deployment-controller", "cp-1", 1),
                   ("replicaset-controller", "replicaset-controller", "cp-1", 2)]


def test_every_controller_that_records_events_has_kubernetes_source_name():
    from controllers import main as cm
    from machinery.fakeclient import FakeClient as FC
    args = cm.parse_args(["--controllers", "*"])
    tasks, ctrls = cm.build(FC(), args)
    for t in tasks.values():          # coroutines never started
        t.close()
    sources = {name: c.recorder.component for name, c in ctrls.items()}
    assert sources["horizontalpodautoscaling"] == "horizontal-pod-autoscaler"
    assert sources["replicaset"] == "replicaset-controller" and sources["nodelifecycle"] == "node-controller"
    assert sources["deployment"] == "deployment-controller" and sources["disruption"] == "controllermanager"
    assert all(c.recorder.recorder is ctrls["replicaset"].recorder.recorder for c in ctrls.values())
