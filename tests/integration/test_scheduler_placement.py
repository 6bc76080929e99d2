"""Placement on a real etcd + apiserver with hollow nodes: topology spread
over zones, anti-affinity one pod per node, and a high-priority pod
preempting a low-priority one (PriorityClasses resolved by the apiserver's
Priority admission; the test plays the kubelet that finishes the victim's
graceful deletion)."""
import json

from machinery import kinds
from scheduler import decision, hollow

from tests.integration.test_scheduler_integration import (all_pods, create_all, scheduled_cond,  # noqa: F401
                                                           start, until)

ZONE = "topology.kubernetes.io/zone"


def zoned_nodes(zones=3, per_zone=2, cpu="8"):
    return [hollow.node(f"n-{z}-{i}", cpu=cpu, labels={ZONE: f"zone-{z}"})
            for z in range(zones) for i in range(per_zone)]


def spread_pod(name, key=ZONE, app="web"):
    p = hollow.pod(name, cpu="100m", labels={"app": app})
    c = p.spec.topology_spread_constraints.add(max_skew=1, topology_key=key, when_unsatisfiable="DoNotSchedule")
    c.label_selector.match_labels["app"] = app
    return p


async def test_spread_over_zones(client, start):
    await create_all(client, zoned_nodes())
    start()
    # one at a time: each decision sees the previous binding (the cache counts assumed pods anyway)
    await create_all(client, [spread_pod(f"web-{i}") for i in range(9)] + [spread_pod("norack", key="rack")])

    async def done():
        ps = await all_pods(client)
        return all(ps[f"web-{i}"].spec.node_name for i in range(9)) and \
            (c := scheduled_cond(ps["norack"])) is not None and c.reason == "Unschedulable"
    await until(done, "spread placements")
    ps = await all_pods(client)
    per_zone = {}
    for i in range(9):
        z = ps[f"web-{i}"].spec.node_name.split("-")[1]
        per_zone[z] = per_zone.get(z, 0) + 1
    assert per_zone == {"0": 3, "1": 3, "2": 3}
    assert scheduled_cond(ps["norack"]).message == (
        "0/6 nodes are available: 6 node(s) didn't match pod topology spread constraints (missing required "
        "label). preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling.")
    rec = json.loads(ps["norack"].metadata.annotations[decision.ANNOTATION])
    assert rec["filtered"][0]["reason"].startswith("node(s) didn't match pod topology spread constraints")


async def test_anti_affinity_one_pod_per_node(client, start):
    await create_all(client, [hollow.node(f"n{i}", cpu="8") for i in range(3)])
    start()
    pods = []
    for i in range(4):
        p = hollow.pod(f"db-{i}", cpu="100m", labels={"app": "db"})
        t = p.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution.add(
            topology_key="kubernetes.io/hostname")
        t.label_selector.match_labels["app"] = "db"
        pods.append(p)
    await create_all(client, pods)

    async def done():
        ps = await all_pods(client)
        bound = [p for p in ps.values() if p.spec.node_name]
        waiting = [p for p in ps.values() if (c := scheduled_cond(p)) is not None and c.reason == "Unschedulable"]
        return len(bound) == 3 and len(waiting) == 1
    await until(done, "three bound, one unschedulable")
    ps = await all_pods(client)
    assert sorted(p.spec.node_name for p in ps.values() if p.spec.node_name) == ["n0", "n1", "n2"]
    loser = next(p for p in ps.values() if not p.spec.node_name)
    assert scheduled_cond(loser).message == (
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are "
        "available: 3 No preemption victims found for incoming pod.")


def priority_class(name, value, **kw):
    pc = kinds.new("PriorityClass")
    pc.metadata.name = name
    pc.value = value
    for k, v in kw.items():
        setattr(pc, k, v)
    return pc


async def test_high_priority_pod_preempts_a_low_priority_one(client, start):
    await create_all(client, [priority_class("low", 10), priority_class("high", 1000, description="important")])
    system = await client.get("PriorityClass", "system-node-critical")
    assert system.value == 2_000_001_000
    await create_all(client, [hollow.node("n1", cpu="2"), hollow.node("n2", cpu="2")])
    start()
    lows = []
    for i in range(2):
        p = hollow.pod(f"low-{i}", cpu="2")
        p.spec.priority_class_name = "low"
        lows.append(p)
    await create_all(client, lows)

    async def lows_bound():
        ps = await all_pods(client)
        return all(ps[f"low-{i}"].spec.node_name for i in range(2))
    await until(lows_bound, "low-priority pods bound")
    ps = await all_pods(client)
    assert ps["low-0"].spec.priority == 10 and ps["low-0"].spec.preemption_policy == "PreemptLowerPriority"
    high = hollow.pod("high", cpu="2")
    high.spec.priority_class_name = "high"
    await client.create(high)

    async def nominated():
        ps = await all_pods(client)
        return ps["high"].status.nominated_node_name and any(
            ps[f"low-{i}"].metadata.HasField("deletion_timestamp") for i in range(2))
    await until(nominated, "a victim terminating and the preemptor nominated")
    ps = await all_pods(client)
    node = ps["high"].status.nominated_node_name
    victim = next(ps[f"low-{i}"] for i in range(2) if ps[f"low-{i}"].metadata.HasField("deletion_timestamp"))
    other = next(ps[f"low-{i}"] for i in range(2) if ps[f"low-{i}"] is not victim)
    assert victim.spec.node_name == node and not other.metadata.HasField("deletion_timestamp")
    assert ps["high"].spec.node_name == "" and ps["high"].spec.priority == 1000
    rec = json.loads(ps["high"].metadata.annotations[decision.ANNOTATION])
    assert rec["preemption"]["nominated"] == node
    assert rec["preemption"]["victims"] == [f"default/{victim.metadata.name} (priority 10)"]
    events, _ = await client.list("Event", "default")
    assert any(e.reason == "Preempted" and e.involved_object.name == victim.metadata.name
               and e.message == f"Preempted by pod default/high on node {node}" for e in events)
    # the kubelet's part: the victim's containers stopped, the pod goes away
    await client.delete("Pod", victim.metadata.name, "default", grace_period=0)

    async def high_bound():
        return (await all_pods(client))["high"].spec.node_name == node
    await until(high_bound, "the preemptor bound to its nominated node")
    assert (await all_pods(client))[other.metadata.name].spec.node_name


async def test_preempt_never_pod_waits(client, start):
    await client.create(priority_class("polite", 1000, preemption_policy="Never"))
    await create_all(client, [hollow.node("n1", cpu="1")])
    start()
    await client.create(hollow.pod("low", cpu="1"))

    async def low_bound():
        return (await all_pods(client))["low"].spec.node_name != ""
    await until(low_bound, "low bound")
    p = hollow.pod("polite", cpu="1")
    p.spec.priority_class_name = "polite"
    await client.create(p)

    async def refused():
        c = scheduled_cond((await all_pods(client))["polite"])
        return c is not None and c.reason == "Unschedulable"
    await until(refused, "polite unschedulable")
    ps = await all_pods(client)
    assert scheduled_cond(ps["polite"]).message == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.")
    assert not ps["low"].metadata.HasField("deletion_timestamp") and not ps["polite"].status.nominated_node_name
