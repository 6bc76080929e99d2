"""ReplicaSet controller syncs on the FakeClient."""
from machinery import codec, errors, kinds
from machinery.pb import meta_pb2

from controllers.replicaset import ReplicaSetController
from tests.unit.test_controller_helpers import Clock, eventually, harness, rs_obj, set_ready


def rsc(h):
    return ReplicaSetController(h.client, h.factory, clock=h.clock or Clock())


def creates(h):
    return [a for a in h.client.actions if a[0] == "create" and a[1] == "Pod"]


async def test_creates_missing_pods_named_after_the_set_with_owner_ref():
    async with harness(rsc) as (h, c):
        rs = await h.client.create(rs_obj(replicas=5))
        await h.settle()
        await c.sync("default/web")
        pods = h.objs("Pod")
        assert len(pods) == 5
        for p in pods:
            assert p.metadata.name.startswith("web-") and len(p.metadata.name) == len("web-") + 5
            ref = p.metadata.owner_references[0]
            assert (ref.kind, ref.uid, ref.controller, ref.block_owner_deletion) == ("ReplicaSet", rs.metadata.uid, True, True)
        await h.settle()
        await c.sync("default/web")
        assert len(h.objs("Pod")) == 5
        st = h.objs("ReplicaSet")[0].status
        assert (st.replicas, st.fully_labeled_replicas, st.ready_replicas, st.observed_generation) == (5, 5, 0, 1)


async def test_expectations_prevent_over_creation_with_a_stale_cache():
    async with harness(rsc) as (h, c):
        await h.client.create(rs_obj(replicas=4))
        await h.settle()
        h.client.hold_watches("Pod")      # the pod cache lags: it sees nothing for now
        await c.sync("default/web")       # creates 4
        try:
            await c.sync("default/web")   # must not create again (its status write may conflict)
        except errors.Conflict:
            pass
        assert len(creates(h)) == 4
        assert c.expectations.pending("default/web")[0] == 4
        h.client.release_watches("Pod")
        await h.settle()
        assert c.expectations.satisfied("default/web")
        await c.sync("default/web")
        assert len(h.objs("Pod")) == 4


async def test_slow_start_stops_after_the_first_failing_batch():
    async with harness(rsc) as (h, c):
        await h.client.create(rs_obj(replicas=10))
        await h.settle()
        h.client.fail_next("create", errors.Invalid("quota exceeded"), times=1)
        try:
            await c.sync("default/web")
        except errors.ApiError:
            pass
        assert len(h.objs("Pod")) == 0                  # batch of 1 failed: no batch of 2 tried
        assert c.expectations.satisfied("default/web")  # failed + skipped creates lowered it
        [cond] = h.objs("ReplicaSet")[0].status.conditions
        assert (cond.type, cond.status, cond.reason) == ("ReplicaFailure", "True", "FailedCreate")
        await h.settle()
        await c.sync("default/web")                     # batches 1, 2, 4, 3
        assert len(h.objs("Pod")) == 10
        assert not h.objs("ReplicaSet")[0].status.conditions


async def test_scale_down_deletes_least_valuable_pods_first():
    clock = Clock()
    async with harness(rsc, clock=clock) as (h, c):
        rs = await h.client.create(rs_obj(replicas=4))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        pods = sorted(h.objs("Pod"), key=lambda p: p.metadata.name)
        # one unscheduled, one pending on a node, one running not ready, one ready
        for p in pods[1:]:
            await h.client.bind("default", p.metadata.name, "n1")
        await h.settle()
        pods = sorted(h.objs("Pod"), key=lambda p: p.metadata.name)
        await h.client.update_status(set_ready(pods[2], False, clock()))
        await h.client.update_status(set_ready(pods[3], True, clock() - 100))
        await h.settle()
        scaled = codec.copy(h.objs("ReplicaSet")[0]); scaled.spec.replicas = 1
        await h.client.update(scaled)
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        left = [p for p in h.objs("Pod") if not p.metadata.HasField("deletion_timestamp")]
        assert [p.metadata.name for p in left] == [pods[3].metadata.name]


async def test_adopts_matching_orphans_and_releases_pods_that_stop_matching():
    async with harness(rsc) as (h, c):
        rs = await h.client.create(rs_obj(replicas=2))
        orphan = kinds.new("Pod"); orphan.metadata.name = "orphan"; orphan.metadata.namespace = "default"
        orphan.metadata.labels["app"] = "web"; orphan.spec.containers.add(name="m", image="x")
        await h.client.create(orphan)
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        got = {p.metadata.name: p for p in h.objs("Pod")}
        assert len(got) == 2 and got["orphan"].metadata.owner_references[0].uid == rs.metadata.uid
        moved = codec.copy(got["orphan"]); moved.metadata.labels["app"] = "other"
        await h.client.update(moved)
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        got = {p.metadata.name: p for p in h.objs("Pod")}
        assert not got["orphan"].metadata.owner_references
        assert len(got) == 3            # a replacement for the released pod


async def test_pods_of_another_controller_are_left_alone():
    async with harness(rsc) as (h, c):
        await h.client.create(rs_obj(replicas=1))
        other = kinds.new("Pod"); other.metadata.name = "other"; other.metadata.namespace = "default"
        other.metadata.labels["app"] = "web"; other.spec.containers.add(name="m", image="x")
        other.metadata.owner_references.append(meta_pb2.OwnerReference(kind="ReplicaSet", name="x", uid="x-uid",
                                                                        controller=True, api_version="apps/v1"))
        await h.client.create(other)
        await h.settle()
        await c.sync("default/web")
        assert len(h.objs("Pod")) == 2


async def test_terminating_pods_do_not_count_and_are_replaced():
    async with harness(rsc) as (h, c):
        await h.client.create(rs_obj(replicas=2))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        victim = h.objs("Pod")[0]
        await h.client.bind("default", victim.metadata.name, "n1")
        await h.client.delete("Pod", victim.metadata.name, "default")      # graceful: stays Terminating
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        pods = h.objs("Pod")
        assert len(pods) == 3 and sum(1 for p in pods if p.metadata.HasField("deletion_timestamp")) == 1
        assert h.objs("ReplicaSet")[0].status.replicas == 2


async def test_min_ready_seconds_counts_available_later_and_requeues():
    clock = Clock()
    async with harness(rsc, clock=clock) as (h, c):
        await h.client.create(rs_obj(replicas=2, min_ready=10))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        for p in h.objs("Pod"):
            await h.client.update_status(set_ready(p, True, clock()))
        await h.settle()
        delayed, add_after = [], c.queue.add_after
        c.queue.add_after = lambda key, delay: (delayed.append(key), add_after(key, delay))
        await c.sync("default/web")
        st = h.objs("ReplicaSet")[0].status
        assert (st.ready_replicas, st.available_replicas) == (2, 0)
        assert "default/web" in delayed              # come back when minReadySeconds have passed
        await h.settle()
        clock.advance(11)
        await c.sync("default/web")
        assert h.objs("ReplicaSet")[0].status.available_replicas == 2


async def test_workers_converge_and_replace_deleted_pods():
    async with harness(rsc, workers=True) as (h, c):
        await h.client.create(rs_obj(replicas=3))
        await eventually(lambda: len(h.objs("Pod")) == 3)
        await h.client.delete("Pod", h.objs("Pod")[0].metadata.name, "default")
        await eventually(lambda: len(h.objs("Pod")) == 3 and
                         h.objs("ReplicaSet")[0].status.replicas == 3)
        assert len(creates(h)) == 4
