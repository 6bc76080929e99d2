"""Node lifecycle and node IPAM syncs on the FakeClient."""
from machinery import kinds

from controllers.nodeipam import NodeIpamController
from controllers.nodelifecycle import NOT_READY, UNREACHABLE, NodeLifecycleController, eviction_delay
from tests.unit.test_controller_helpers import Clock, harness, set_ready


class Mono(Clock):
    pass


def node(name, ready="True"):
    n = kinds.new("Node")
    n.metadata.name = name
    n.status.conditions.add(type="Ready", status=ready, reason="KubeletReady")
    return n


def lease(name, t):
    l = kinds.new("Lease")
    l.metadata.name, l.metadata.namespace = name, "kube-node-lease"
    l.spec.holder_identity = name
    l.spec.renew_time.FromSeconds(int(t))
    return l


def pod(name, node_name, tolerations=()):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = name, "default"
    p.spec.containers.add(name="m", image="x")
    p.spec.node_name = node_name
    for t in tolerations:
        p.spec.tolerations.add(**t)
    return p


async def setup(h, names, pods_per_node=1):
    for n in names:
        await h.client.create(node(n))
        await h.client.create(lease(n, 1))
        for i in range(pods_per_node):
            p = await h.client.create(pod(f"{n}-p{i}", n))
            await h.client.update_status(set_ready(p, True, 0, node=n))
    await h.settle()


async def renew(h, name, t):
    l = h.client.stored("Lease", name, "kube-node-lease")
    l.spec.renew_time.FromSeconds(int(t))
    await h.client.update(l)


def get(h, kind, name, ns=""):
    return h.client.stored(kind, name, ns)


def nlc_factory(clock, mono):
    return lambda h: NodeLifecycleController(h.client, h.factory, grace=4, eviction_timeout=2,
                                             clock=clock, monotonic=mono)


async def test_silent_node_goes_unknown_gets_tainted_pods_not_ready_then_evicted():
    clock, mono = Clock(), Mono(0)
    async with harness(nlc_factory(clock, mono), clock=clock) as (h, c):
        await setup(h, ["a", "b", "c"])
        await c.monitor_once()
        for t in range(1, 5):
            mono.advance(1.5); clock.advance(1.5)
            for n in ("b", "c"):
                await renew(h, n, 100 + t)
            await h.settle()
            await c.monitor_once()
            await h.settle()
        a = get(h, "Node", "a")
        ready = next(x for x in a.status.conditions if x.type == "Ready")
        assert (ready.status, ready.reason, ready.message) == ("Unknown", "NodeStatusUnknown",
                                                               "Kubelet stopped posting node status.")
        assert {(t.key, t.effect) for t in a.spec.taints} == {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
        pa = get(h, "Pod", "a-p0", "default")
        assert next(x for x in pa.status.conditions if x.type == "Ready").status == "False"
        assert next(x for x in get(h, "Pod", "b-p0", "default").status.conditions if x.type == "Ready").status == "True"
        assert not pa.metadata.HasField("deletion_timestamp")
        clock.advance(2.5); mono.advance(0.1)
        await c.monitor_once()
        await h.settle()
        pa = get(h, "Pod", "a-p0", "default")
        assert pa is None or pa.metadata.HasField("deletion_timestamp")
        assert not c.disrupted
        # the node speaks again: Ready again, taints gone
        await renew(h, "a", 500)
        await h.settle()
        await c.monitor_once()
        await h.settle()
        await c.monitor_once()
        await h.settle()
        a = get(h, "Node", "a")
        assert next(x for x in a.status.conditions if x.type == "Ready").status == "True"
        assert not a.spec.taints


async def test_all_nodes_silent_is_disruption_mode_and_evicts_nothing():
    clock, mono = Clock(), Mono(0)
    async with harness(nlc_factory(clock, mono), clock=clock) as (h, c):
        await setup(h, ["a", "b", "c"])
        await c.monitor_once()
        for _ in range(10):
            mono.advance(1.5); clock.advance(1.5)
            await c.monitor_once()
            await h.settle()
        assert c.disrupted
        assert all(not p.metadata.HasField("deletion_timestamp") for p in h.client.objects("Pod"))
        assert len(h.client.objects("Pod")) == 3


def test_eviction_delay_follows_tolerations():
    taint = kinds.new("Node").spec.taints.add(key=UNREACHABLE, effect="NoExecute")
    assert eviction_delay(pod("p", "a"), [taint], 2) == 2
    assert eviction_delay(pod("p", "a", [dict(key=UNREACHABLE, operator="Exists", effect="NoExecute",
                                              toleration_seconds=7)]), [taint], 2) == 7
    assert eviction_delay(pod("p", "a", [dict(operator="Exists")]), [taint], 2) is None
    assert eviction_delay(pod("p", "a", [dict(key=NOT_READY, operator="Exists")]), [taint], 2) == 2


async def test_node_ipam_allocates_distinct_ranges_rebuilds_and_releases():
    def ipam(h):
        return NodeIpamController(h.client, h.factory, cluster_cidr="10.244.0.0/16", node_mask=24)
    async with harness(ipam) as (h, c):
        taken = node("old")
        taken.spec.pod_cidr = "10.244.0.0/24"
        await h.client.create(taken)
        for n in ("a", "b"):
            await h.client.create(node(n))
        await h.settle()
        for n in ("old", "a", "b"):
            await c.sync(n)
        await h.settle()
        cidrs = {n.metadata.name: n.spec.pod_cidr for n in h.client.objects("Node")}
        assert cidrs["old"] == "10.244.0.0/24"
        assert len(set(cidrs.values())) == 3 and all(v.endswith("/24") for v in cidrs.values())
        assert list(get(h, "Node", "a").spec.pod_cidrs) == [cidrs["a"]]
        await h.client.delete("Node", "a")
        await h.settle()
        await h.client.create(node("c"))
        await h.settle()
        await c.sync("c")
        await h.settle()
        assert get(h, "Node", "c").spec.pod_cidr == cidrs["a"]      # released range reused


async def test_pods_of_a_deleted_node_are_force_deleted():
    clock, mono = Clock(), Mono(0)
    async with harness(nlc_factory(clock, mono), clock=clock) as (h, c):
        await setup(h, ["a", "b"])
        await h.client.delete("Node", "a")
        await h.settle()
        await c.monitor_once()
        await h.settle()
        assert {p.metadata.name for p in h.client.objects("Pod")} == {"b-p0"}


async def test_a_restarted_controller_does_not_declare_a_dead_node_ready():
    clock, mono = Clock(), Mono(0)
    async with harness(nlc_factory(clock, mono), clock=clock) as (h, c):
        await setup(h, ["a", "b", "c"])
        dead = get(h, "Node", "a")
        dead.status.conditions[0].status, dead.status.conditions[0].reason = "Unknown", "NodeStatusUnknown"
        await h.client.update_status(dead)
        await h.settle()
        await c.monitor_once()              # fresh controller: every node gets a grace period...
        await h.settle()
        ready = next(x for x in get(h, "Node", "a").status.conditions if x.type == "Ready")
        assert ready.status == "Unknown"    # ...but no heartbeat was heard, so "a" stays Unknown


async def test_the_monitor_wakes_at_the_grace_and_eviction_deadlines_not_a_period_later():
    clock, mono = Clock(), Mono(0)
    async with harness(nlc_factory(clock, mono), clock=clock) as (h, c):
        await setup(h, ["a", "b", "c"])
        await c.monitor_once()
        assert c.wake_in() == 0.5                          # every grace period ends 4 s from now
        mono.advance(3.8); clock.advance(3.8)
        for n in ("b", "c"):
            await renew(h, n, 200)
        await h.settle()
        assert abs(c.wake_in() - (0.2 + 0.01)) < 1e-9      # a's ends in 0.2 s: just after it, not at 0.5
        mono.advance(0.21); clock.advance(0.21)
        await c.monitor_once()                             # silent for 4.01 s > grace: Unknown, tainted
        await h.settle()
        assert get(h, "Node", "a").spec.taints
        mono.advance(0.5); clock.advance(1.7)              # the eviction is due 2 s after the taint
        assert abs(c.wake_in() - 0.3) < 1e-6
        assert not get(h, "Pod", "a-p0", "default").metadata.HasField("deletion_timestamp")
        clock.advance(0.3)
        await c.monitor_once()
        await h.settle()
        pa = get(h, "Pod", "a-p0", "default")
        assert pa is None or pa.metadata.HasField("deletion_timestamp")
        assert c.wake_in() <= 0.5                          # past deadlines never make it spin
        assert c.wake_in() >= 0.01


async def test_a_node_silent_for_less_than_grace_is_never_judged_at_its_deadline():
    clock, mono = Clock(), Mono(0)
    async with harness(nlc_factory(clock, mono), clock=clock) as (h, c):
        await setup(h, ["a", "b", "c"])
        await c.monitor_once()
        mono.advance(4.0); clock.advance(4.0)              # exactly grace: not MORE than grace
        await c.monitor_once()
        await h.settle()
        assert not get(h, "Node", "a").spec.taints
        assert abs(c.wake_in() - 0.01) < 1e-9
