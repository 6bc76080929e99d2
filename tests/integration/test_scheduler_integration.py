"""The scheduler on a real etcd + apiserver with hollow nodes (Node objects
only; nothing runs the pods)."""
import asyncio
import json

import pytest

from machinery import errors
from machinery.leaderelection import LeaderElector
from scheduler import decision, hollow
from scheduler.scheduler import Scheduler


async def until(pred, what, attempts=1200, delay=0.05):
    """Poll an async predicate (a liveness guard, not a timing assertion)."""
    for _ in range(attempts):
        if await pred():
            return
        await asyncio.sleep(delay)
    raise AssertionError(f"never reached: {what}")


@pytest.fixture
async def start(client):
    tasks = []

    def _start(c=None):
        s = Scheduler(c or client)
        tasks.append(asyncio.create_task(s.run()))
        return s

    yield _start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def all_pods(client):
    items, _ = await client.list("Pod", "default")
    return {p.metadata.name: p for p in items}


async def create_all(client, objs, parallel=50):
    sem = asyncio.Semaphore(parallel)

    async def one(o):
        async with sem:
            await client.create(o)
    await asyncio.gather(*(one(o) for o in objs))


def scheduled_cond(p):
    return next((c for c in p.status.conditions if c.type == "PodScheduled"), None)


async def test_pods_land_only_where_they_fit(client, start):
    await create_all(client, [hollow.node("small", cpu="1", memory="1Gi"),
                              hollow.node("large", cpu="4", memory="8Gi"),
                              hollow.node("tainted", cpu="16", taints=[("node.kubernetes.io/unreachable", "", "NoExecute")])])
    start()
    await create_all(client, [hollow.pod("fits-small", cpu="500m", memory="512Mi"),
                              hollow.pod("needs-large", cpu="3", memory="2Gi"),
                              hollow.pod("too-big", cpu="8")])

    async def done():
        ps = await all_pods(client)
        return ps["needs-large"].spec.node_name and ps["fits-small"].spec.node_name and \
            (c := scheduled_cond(ps["too-big"])) is not None and c.reason == "Unschedulable"
    await until(done, "placements")
    ps = await all_pods(client)
    assert ps["needs-large"].spec.node_name == "large"
    assert ps["fits-small"].spec.node_name in ("small", "large")
    assert ps["too-big"].spec.node_name == ""
    cond = scheduled_cond(ps["too-big"])
    assert cond.status == "False"
    assert cond.message == ("0/3 nodes are available: 1 node(s) had untolerated taint "
                            "{node.kubernetes.io/unreachable: }, 2 Insufficient cpu. preemption: 0/3 nodes are "
                            "available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found "
                            "for incoming pod.")
    rec = json.loads(ps["too-big"].metadata.annotations[decision.ANNOTATION])
    assert rec["node"] is None and {f["reason"] for f in rec["filtered"]} == {
        "Insufficient cpu", "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"}
    bound = json.loads(ps["needs-large"].metadata.annotations[decision.ANNOTATION])
    assert bound["node"] == "large" and bound["scores"][0]["node"] == "large"

    async def event_seen():
        evs, _ = await client.list("Event", "default")
        return {(e.reason, e.involved_object.name) for e in evs} >= {
            ("FailedScheduling", "too-big"), ("Scheduled", "needs-large")}
    await until(event_seen, "events")
    evs, _ = await client.list("Event", "default")
    msgs = {e.reason: e.message for e in evs if e.involved_object.name in ("too-big", "needs-large")}
    assert msgs["Scheduled"] == "Successfully assigned default/needs-large to large"
    assert msgs["FailedScheduling"] == cond.message


async def test_500_pods_at_once_never_overcommit(client, start):
    nodes = [hollow.node(f"n{i}", cpu="4", memory="64Gi", pods="110") for i in range(10)]
    await create_all(client, nodes)
    start()
    await create_all(client, [hollow.pod(f"p{i:03}", cpu="100m", memory="64Mi") for i in range(500)], parallel=100)

    async def settled():
        ps = await all_pods(client)
        bound = sum(1 for p in ps.values() if p.spec.node_name)
        failed = sum(1 for p in ps.values() if (c := scheduled_cond(p)) and c.reason == "Unschedulable")
        return bound == 400 and failed == 100
    await until(settled, "400 bound, 100 unschedulable")
    per_node = {}
    for p in (await all_pods(client)).values():
        if p.spec.node_name:
            per_node[p.spec.node_name] = per_node.get(p.spec.node_name, 0) + 100
    assert per_node == {f"n{i}": 4000 for i in range(10)}   # exactly full, never more


async def test_selectors_affinity_and_taints(client, start):
    await create_all(client, [
        hollow.node("ssd-a", labels={"disk": "ssd", "zone": "a"}),
        hollow.node("hdd-b", labels={"disk": "hdd", "zone": "b"}),
        hollow.node("gpu", labels={"zone": "c", "gen": "7"}, taints=[("dedicated", "gpu", "NoSchedule")]),
        hollow.node("cordoned", labels={"zone": "d"}, unschedulable=True)])
    start()
    await create_all(client, [
        hollow.pod("sel", node_selector={"disk": "ssd"}),
        hollow.require(hollow.pod("notin"), [("zone", "NotIn", ["a", "c", "d"])]),
        hollow.require(hollow.pod("gt", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                                       "effect": "NoSchedule"}]), [("gen", "Gt", ["5"])]),
        hollow.require(hollow.pod("gt-untolerated"), [("gen", "Gt", ["5"])]),
        hollow.pod("cordon-only", node_selector={"zone": "d"}),
    ])

    async def done():
        ps = await all_pods(client)
        return all(ps[n].spec.node_name for n in ("sel", "notin", "gt")) and all(
            (c := scheduled_cond(ps[n])) is not None and c.reason == "Unschedulable"
            for n in ("gt-untolerated", "cordon-only"))
    await until(done, "placements")
    ps = await all_pods(client)
    assert (ps["sel"].spec.node_name, ps["notin"].spec.node_name, ps["gt"].spec.node_name) == ("ssd-a", "hdd-b", "gpu")
    assert scheduled_cond(ps["gt-untolerated"]).message == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: "
        "4 Preemption is not helpful for scheduling.")
    assert scheduled_cond(ps["cordon-only"]).message == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: "
        "4 Preemption is not helpful for scheduling.")


async def test_replicas_spread_across_nodes(client, start):
    await create_all(client, [hollow.node(f"n{i}", cpu="8", memory="16Gi") for i in range(4)])
    start()
    await create_all(client, [hollow.pod(f"web-{i}", cpu="100m", owner_uid="rs-web") for i in range(8)])

    async def done():
        return all(p.spec.node_name for p in (await all_pods(client)).values())
    await until(done, "all bound")
    counts = {}
    for p in (await all_pods(client)).values():
        counts[p.spec.node_name] = counts.get(p.spec.node_name, 0) + 1
    assert counts == {f"n{i}": 2 for i in range(4)}


async def test_becomes_schedulable_when_a_node_is_added(client, start):
    await client.create(hollow.node("tiny", cpu="500m"))
    start()
    await client.create(hollow.pod("p", cpu="2"))

    async def unschedulable():
        c = scheduled_cond((await all_pods(client))["p"])
        return c is not None and c.reason == "Unschedulable"
    await until(unschedulable, "unschedulable")
    await client.create(hollow.node("big", cpu="4"))

    async def bound():
        return (await all_pods(client))["p"].spec.node_name == "big"
    await until(bound, "bound to the new node")


async def test_leader_failover_binds_pending_pods(client, apiserver):
    from machinery.client import Client
    clients = [Client(apiserver.target) for _ in range(2)]
    electors = [LeaderElector(c, "kube-scheduler", f"sched-{i}", lease_duration=3, renew_deadline=2,
                              retry_period=0.5, release_on_cancel=False) for i, c in enumerate(clients)]
    runs = [asyncio.create_task(e.run(lambda c=c: Scheduler(c).run())) for e, c in zip(electors, clients)]
    try:
        await client.create(hollow.node("n1", cpu="8"))
        await client.create(hollow.pod("before"))

        async def bound(name):
            return (await all_pods(client))[name].spec.node_name == "n1"
        await until(lambda: bound("before"), "bound by the first leader")
        leader = next(i for i, e in enumerate(electors) if e.is_leader)
        runs[leader].cancel()                       # a crash: the lease is not released
        await asyncio.gather(runs[leader], return_exceptions=True)
        await create_all(client, [hollow.pod(f"after-{i}") for i in range(20)])
        for i in range(20):
            await until(lambda i=i: bound(f"after-{i}"), "bound by the standby")
        assert electors[1 - leader].is_leader
        lease = await client.get("Lease", "kube-scheduler", "kube-system")
        assert lease.spec.holder_identity == f"sched-{1 - leader}"
    finally:
        for t in runs:
            t.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for c in clients:
            await c.close()
