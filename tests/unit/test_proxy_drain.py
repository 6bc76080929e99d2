"""Zero-downtime deletion (nodeagent/drain.py): a pod is stopped only once every Ready node's proxy
reports (on its Lease) an EndpointSlice resourceVersion that no longer has the pod ready; bounded."""
from __future__ import annotations

import asyncio

from machinery import kinds
from machinery.fakeclient import FakeClient
from machinery.pb import core_pb2
from nodeagent.drain import (APPLIED_RV_ANNOTATION, DrainBarrier, inbound_connections, lagging_nodes,
                             pod_not_ready_rv)
from tests.unit.proxy_slices import endpoint_slice, ready, terminating


class Cache:
    def __init__(self, objs=()):
        self.objs = list(objs)

    def list(self, namespace=None):
        return list(self.objs)


def node(name, ready_=True):
    n = core_pb2.Node()
    n.metadata.name = name
    n.status.conditions.add(type="Ready", status="True" if ready_ else "False")
    return n


def pod(ip="10.244.1.3", uid="u3"):
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web-1", "default", uid
    p.status.pod_ip = ip
    return p


def slice_with(*eps, rv="50"):
    es = endpoint_slice("web", eps)
    for e in es.endpoints:
        e.target_ref.uid = "u" + e.addresses[0].rsplit(".", 1)[1]
    es.metadata.resource_version = rv
    return es


async def lease(client, name, rv=None):
    obj = kinds.new("Lease")
    obj.metadata.name, obj.metadata.namespace = name, "kube-node-lease"
    if rv is not None:
        obj.metadata.annotations[APPLIED_RV_ANNOTATION] = str(rv)
    try:
        await client.create(obj)
    except Exception:       # noqa: BLE001 - exists: update
        cur = client.stored("Lease", name, "kube-node-lease")
        cur.metadata.annotations[APPLIED_RV_ANNOTATION] = str(rv)
        await client.update(cur)


def test_the_pod_counts_as_gone_from_the_serving_set_only_when_no_slice_has_it_ready():
    assert pod_not_ready_rv(pod(), [slice_with(ready("10.244.1.2"), ready("10.244.1.3"))]) is None
    assert pod_not_ready_rv(pod(), [slice_with(ready("10.244.1.2"), terminating("10.244.1.3"), rv="51")]) == 51
    assert pod_not_ready_rv(pod(), [slice_with(ready("10.244.1.2"))]) == 0     # in no slice: no proxy serves it


def test_only_ready_nodes_that_report_are_waited_for():
    leases = []
    for name, rv in (("a", 40), ("b", 60), ("c", None)):
        obj = kinds.new("Lease")
        obj.metadata.name = name
        if rv:
            obj.metadata.annotations[APPLIED_RV_ANNOTATION] = str(rv)
        leases.append(obj)
    nodes = [node("a"), node("b"), node("c"), node("d", ready_=False)]
    assert lagging_nodes(nodes, leases, 50) == ["a"]
    assert lagging_nodes([node("a", ready_=False), node("b")], leases, 50) == []


async def test_waits_for_the_slice_update_and_every_proxy_then_returns():
    client = FakeClient()
    await lease(client, "a", 10)
    await lease(client, "b", 10)
    slices = Cache([slice_with(ready("10.244.1.2"), ready("10.244.1.3"), rv="50")])
    barrier = DrainBarrier(client, Cache([node("a"), node("b")]), slices, timeout=10, interval=0.01)
    task = asyncio.create_task(barrier.wait_pod_drained(pod(), budget=10))
    await asyncio.sleep(0.1)
    assert not task.done()                                    # still ready in the slice
    slices.objs = [slice_with(ready("10.244.1.2"), terminating("10.244.1.3"), rv="60")]
    await lease(client, "a", 60)
    await asyncio.sleep(0.1)
    assert not task.done()                                    # b has not applied rv 60 yet
    await lease(client, "b", 61)
    assert await asyncio.wait_for(task, 2) == "drained"


async def test_a_dead_node_never_blocks_longer_than_the_timeout_or_the_budget():
    client = FakeClient()
    await lease(client, "dead", 1)
    slices = Cache([slice_with(terminating("10.244.1.3"), rv="60")])
    barrier = DrainBarrier(client, Cache([node("dead")]), slices, timeout=0.3, interval=0.01)
    assert await asyncio.wait_for(barrier.wait_pod_drained(pod(), budget=10), 5) == "timeout"
    barrier.timeout = 3600
    assert await asyncio.wait_for(barrier.wait_pod_drained(pod(), budget=0.05), 5) == "timeout"
    assert await barrier.wait_pod_drained(pod(ip="10.244.9.9", uid="zz"), budget=10) == "not-served"


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0AF40102:1F90 0AF40203:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0AF40102:1F90 0AF40203:C351 08 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0AF40102:1F90 0AF40203:C352 06 00000000:00000000 00:00000000 00000000     0        0 4 1
   4: 0AF40102:9C40 0A600001:01BB 01 00000000:00000000 00:00000000 00000000     0        0 5 1
"""


def test_inbound_connections_are_the_open_ones_on_listening_ports():
    # ESTABLISHED and CLOSE_WAIT on the listening port 8080 count; TIME_WAIT and the pod's own
    # outgoing connection (local port 40000) do not
    text = PROC_NET_TCP
    assert inbound_connections(text) == 2
    assert inbound_connections(text.replace(" 0A 0", " 07 0")) == 0          # nothing listens


async def test_the_proxier_reports_the_slices_version_it_applied_and_not_a_failed_one():
    import pytest
    from nodeagent.errors import ProxyError
    from nodeagent.iptables import FakeIptables
    from nodeagent.proxy import Proxier
    from tests.unit.proxy_slices import service
    reported = []
    fake = FakeIptables()
    p = Proxier(fake, node_ip="172.30.0.11", on_applied=reported.append)
    state = ([service("web", "10.96.0.10")], [slice_with(ready("10.244.1.2"))])
    assert await p.sync(*state, rv=5) is True and p.applied_rv == 5
    assert await p.sync(*state, rv=7) is False and p.applied_rv == 7      # nothing to change: still applied
    fake.fail_restore = 1
    with pytest.raises(ProxyError):
        await p.sync([], [], rv=9)
    assert p.applied_rv == 7 and reported == [5, 7]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


async def _until_proxies_applied(connections: dict, budget: float = 28):
    """A barrier (timeout 10 s, connection_timeout 10 s, on CLOCK) whose proxies step ends at t=8 with
    CONNECTIONS["n"] connections open; returns (clock, task)."""
    client, clock = FakeClient(), Clock()
    await lease(client, "a", 10)
    slices = Cache([slice_with(terminating("10.244.1.3"), rv="60")])
    barrier = DrainBarrier(client, Cache([node("a")]), slices, timeout=10, connection_timeout=10, interval=0.01,
                           clock=clock, read_inbound=lambda pid: connections["n"])
    task = asyncio.create_task(barrier.wait_pod_drained(pod(), budget=budget, netns_pid=1234))
    await asyncio.sleep(0.05)               # started at t=0, waiting for the Lease
    clock.now = 8.0
    await lease(client, "a", 60)
    for _ in range(100):                    # until the barrier has seen the Lease and reads connections
        await asyncio.sleep(0.01)
    assert not task.done()
    return clock, task


async def test_open_connections_get_a_budget_of_their_own_after_a_slow_proxies_step():
    connections = {"n": 3}
    clock, task = await _until_proxies_applied(connections)
    clock.now = 15.0                        # past the proxies' 10 s: requests in flight still finish
    await asyncio.sleep(0.2)
    assert not task.done()
    connections["n"] = 0
    assert await asyncio.wait_for(task, 5) == "drained"


async def test_connections_still_open_at_their_bound_are_a_warning_and_the_pod_is_stopped(caplog):
    connections = {"n": 3}
    clock, task = await _until_proxies_applied(connections)
    clock.now = 18.5                        # 10 s after the proxies step
    assert await asyncio.wait_for(task, 5) == "timeout"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("3 connections still open" in m and "stopping it anyway" in m for m in warnings), warnings


async def test_the_connection_wait_is_cut_to_the_budget():
    connections = {"n": 1}
    clock, task = await _until_proxies_applied(connections, budget=12)
    clock.now = 12.5                        # budget (12 s) over, connection_timeout (10 s) not
    assert await asyncio.wait_for(task, 5) == "timeout"


async def test_a_pod_no_proxy_serves_does_not_wait_for_connections():
    barrier = DrainBarrier(FakeClient(), Cache([node("a")]), Cache([]), read_inbound=lambda pid: 1 / 0)
    assert await asyncio.wait_for(barrier.wait_pod_drained(pod(), budget=28, netns_pid=1234), 5) == "not-served"
