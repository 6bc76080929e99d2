"""Deployment controller syncs on the FakeClient, and whole rollouts with the
ReplicaSet controller and a fake kubelet (invariants sampled on every change)."""
import asyncio

import pytest

from machinery import codec

from controllers import deployment_util as du
from controllers.deployment import DeploymentController
from controllers.replicaset import ReplicaSetController
from tests.unit.test_controller_helpers import Clock, deployment_obj, eventually, harness


def dc(h):
    return DeploymentController(h.client, h.factory, clock=h.clock or Clock())


def rsc(h):
    return ReplicaSetController(h.client, h.factory, clock=h.clock or Clock())


def rss(h):
    return sorted(h.objs("ReplicaSet"), key=lambda r: du.revision(r))


def live_pods(h):
    return [p for p in h.objs("Pod") if not p.metadata.HasField("deletion_timestamp")]


def cond(d, t):
    return next((c for c in d.status.conditions if c.type == t), None)


async def set_image(h, image, name="web", **spec):
    d = h.client.stored("Deployment", name)
    d.spec.template.spec.containers[0].image = image
    for k, v in spec.items():
        setattr(d.spec, k, v)
    return await h.client.update(d)


async def test_first_sync_creates_a_hashed_replica_set_with_revision_1():
    async with harness(dc) as (h, c):
        d = await h.client.create(deployment_obj(replicas=10))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        [rs] = h.objs("ReplicaSet")
        hash_ = rs.metadata.labels[du.POD_TEMPLATE_HASH]
        assert rs.metadata.name == f"web-{hash_}"
        assert rs.spec.selector.match_labels == {"app": "web", du.POD_TEMPLATE_HASH: hash_}
        assert rs.spec.template.metadata.labels[du.POD_TEMPLATE_HASH] == hash_
        assert du.replicas(rs) == 10
        assert rs.metadata.annotations[du.REVISION] == "1"
        assert rs.metadata.annotations[du.DESIRED_REPLICAS] == "10"
        assert rs.metadata.annotations[du.MAX_REPLICAS] == "13"
        assert rs.metadata.owner_references[0].uid == d.metadata.uid
        d = h.objs("Deployment")[0]
        assert d.metadata.annotations[du.REVISION] == "1"
        assert cond(d, "Progressing").reason == "NewReplicaSetCreated"
        # a second sync (e.g. after a restart) finds it again: nothing new
        await c.sync("default/web")
        assert len(h.objs("ReplicaSet")) == 1


async def test_proportional_scaling_mid_rollout_10_to_30_gives_20_and_13():
    async with harness(dc) as (h, c):
        await h.client.create(deployment_obj(replicas=10, surge=3, unavailable=2))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        # pretend the first ReplicaSet is fully available
        old = h.objs("ReplicaSet")[0]
        old.status.replicas = old.status.available_replicas = old.status.ready_replicas = 10
        await h.client.update_status(old)
        await set_image(h, "app:v2")
        await h.settle()
        await c.sync("default/web")       # new RS: 13 - 10 = 3
        await h.settle()
        await c.sync("default/web")       # old RS: 13 - 8 - 3 unavailable = 2 → old 8
        await h.settle()
        old, new = rss(h)
        assert (du.replicas(old), du.replicas(new)) == (8, 3)
        # more of the new one: both at status = spec, new has 5 not available
        new.spec.replicas = 5
        await h.client.update(new)
        await h.settle()
        for rs, n, avail in ((rss(h)[0], 8, 8), (rss(h)[1], 5, 0)):
            rs.status.replicas, rs.status.available_replicas = n, avail
            await h.client.update_status(rs)
        d = h.objs("Deployment")[0]
        d.status.replicas = 13
        await h.client.update_status(d)
        await h.settle()
        d = codec.copy(h.objs("Deployment")[0])
        d.spec.replicas = 30
        await h.client.update(d)
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        old, new = rss(h)
        assert (du.replicas(old), du.replicas(new)) == (20, 13)
        assert old.metadata.annotations[du.DESIRED_REPLICAS] == new.metadata.annotations[du.DESIRED_REPLICAS] == "30"
        assert new.metadata.annotations[du.MAX_REPLICAS] == "33"


async def _watch_invariants(h, replicas, surge, unavail, samples):
    async for ev in h.client.watch("Pod"):
        pods = live_pods(h)
        total = len(pods)
        available = sum(1 for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions))
        samples.append((total, available))
        assert total <= replicas + surge, f"{total} pods > {replicas}+{surge}"


async def _rollout(h, image, replicas=10, surge=3, unavail=2):
    samples = []
    watcher = asyncio.create_task(_watch_invariants(h, replicas, surge, unavail, samples))
    await asyncio.sleep(0.05)
    await set_image(h, image)

    def done():
        d = h.objs("Deployment")[0]
        pods = live_pods(h)
        return (d.status.updated_replicas == replicas and d.status.available_replicas == replicas
                and d.status.replicas == replicas and len(pods) == replicas
                and all(p.spec.containers[0].image == image for p in pods))
    await eventually(done, 30, f"rollout to {image}")
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert samples and max(t for t, _ in samples) <= replicas + surge
    assert min(a for _, a in samples) >= replicas - unavail
    return samples


async def test_rolling_update_end_to_end_within_bounds_then_rollback_reuses_the_old_set():
    async with harness(rsc, dc, workers=True, kubelet=True) as (h, r, c):
        await h.client.create(deployment_obj(replicas=10, surge=3, unavailable=2))
        await eventually(lambda: h.objs("Deployment") and h.objs("Deployment")[0].status.available_replicas == 10, 20)
        samples = await _rollout(h, "app:v2")
        assert max(t for t, _ in samples) > 10          # it did surge
        d = h.objs("Deployment")[0]
        assert d.metadata.annotations[du.REVISION] == "2"
        await eventually(lambda: cond(h.objs("Deployment")[0], "Progressing").reason == "NewReplicaSetAvailable")
        assert cond(h.objs("Deployment")[0], "Available").status == "True"
        # rollback: the old template again → the old ReplicaSet is reused with the next revision
        await _rollout(h, "app:v1")
        sets = rss(h)
        assert len(sets) == 2
        v1 = next(rs for rs in sets if rs.spec.template.spec.containers[0].image == "app:v1")
        assert du.replicas(v1) == 10 and v1.metadata.annotations[du.REVISION] == "3"
        assert v1.metadata.annotations[du.REVISION_HISTORY] == "1"
        assert h.objs("Deployment")[0].metadata.annotations[du.REVISION] == "3"


async def test_rollover_mid_rollout_and_history_limit():
    async with harness(rsc, dc, workers=True, kubelet=True) as (h, r, c):
        await h.client.create(deployment_obj(replicas=6, surge=2, unavailable=1, history=1))
        await eventually(lambda: h.objs("Deployment") and h.objs("Deployment")[0].status.available_replicas == 6, 20)
        await set_image(h, "app:v2")
        await eventually(lambda: len(h.objs("ReplicaSet")) == 2)
        await _rollout(h, "app:v3", replicas=6, surge=2, unavail=1)
        # only one old ReplicaSet is kept (revisionHistoryLimit 1)
        await eventually(lambda: len(h.objs("ReplicaSet")) == 2, 10, "cleanup")
        assert {rs.spec.template.spec.containers[0].image for rs in h.objs("ReplicaSet")} >= {"app:v3"}


async def test_paused_deployment_scales_but_does_not_roll_out():
    async with harness(rsc, dc, workers=True, kubelet=True) as (h, r, c):
        await h.client.create(deployment_obj(replicas=4))
        await eventually(lambda: h.objs("Deployment") and h.objs("Deployment")[0].status.available_replicas == 4, 20)
        d = codec.copy(h.objs("Deployment")[0])
        d.spec.paused = True
        await h.client.update(d)
        await eventually(lambda: cond(h.objs("Deployment")[0], "Progressing").reason == "DeploymentPaused")
        await set_image(h, "app:v2", replicas=6)
        await eventually(lambda: len(live_pods(h)) == 6 and h.objs("Deployment")[0].status.available_replicas == 6, 20)
        assert len(h.objs("ReplicaSet")) == 1
        assert all(p.spec.containers[0].image == "app:v1" for p in live_pods(h))
        d = codec.copy(h.objs("Deployment")[0])
        d.spec.paused = False
        await h.client.update(d)
        await eventually(lambda: all(p.spec.containers[0].image == "app:v2" for p in live_pods(h))
                         and len(live_pods(h)) == 6 and h.objs("Deployment")[0].status.updated_replicas == 6, 20)


async def test_recreate_waits_for_old_pods_to_be_gone():
    async with harness(rsc, dc, workers=True, kubelet=True) as (h, r, c):
        await h.client.create(deployment_obj(replicas=3, strategy="Recreate"))
        await eventually(lambda: h.objs("Deployment") and h.objs("Deployment")[0].status.available_replicas == 3, 20)
        seen_mixed = []

        async def watch():
            async for ev in h.client.watch("Pod"):
                images = {p.spec.containers[0].image for p in h.objs("Pod")}
                if len(images) > 1:
                    seen_mixed.append(images)
        w = asyncio.create_task(watch())
        await set_image(h, "app:v2")
        await eventually(lambda: len(live_pods(h)) == 3 and all(p.spec.containers[0].image == "app:v2"
                                                                for p in live_pods(h)), 20)
        w.cancel()
        await asyncio.gather(w, return_exceptions=True)
        assert not seen_mixed


async def test_progress_deadline_exceeded_for_pods_that_never_get_ready():
    clock = Clock()
    async with harness(rsc, dc, workers=True, kubelet=True, clock=clock) as (h, r, c):
        await h.client.create(deployment_obj(replicas=3, deadline=5))
        await eventually(lambda: h.objs("Deployment") and h.objs("Deployment")[0].status.available_replicas == 3, 20)
        await set_image(h, "kctl/never-ready")
        await eventually(lambda: h.objs("Deployment")[0].status.updated_replicas >= 1, 20)
        await asyncio.sleep(0.3)
        assert cond(h.objs("Deployment")[0], "Progressing").status == "True"
        clock.advance(10)
        c.queue.add("default/web")
        await eventually(lambda: cond(h.objs("Deployment")[0], "Progressing").reason == "ProgressDeadlineExceeded", 10)
        d = h.objs("Deployment")[0]
        assert cond(d, "Progressing").status == "False"
        assert d.status.available_replicas >= 3 - 2      # old pods still serve (maxUnavailable 2)


async def test_scaling_without_template_change_is_a_scaling_event():
    async with harness(rsc, dc, workers=True, kubelet=True) as (h, r, c):
        await h.client.create(deployment_obj(replicas=2))
        await eventually(lambda: h.objs("Deployment") and h.objs("Deployment")[0].status.available_replicas == 2, 20)
        d = codec.copy(h.objs("Deployment")[0])
        d.spec.replicas = 5
        await h.client.update(d)
        await eventually(lambda: h.objs("Deployment")[0].status.available_replicas == 5, 20)
        [rs] = h.objs("ReplicaSet")
        assert rs.metadata.annotations[du.DESIRED_REPLICAS] == "5"
        assert rs.metadata.annotations[du.REVISION] == "1"


@pytest.mark.parametrize("replicas,surge,unavailable,bounds", [
    (10, "25%", "25%", (13, 8)),      # surge rounds up (3), unavailable down (2)
    (10, 3, 2, (13, 8)),
    (5, 0, 1, (5, 4)),                # no surge: replace one at a time
    (7, "50%", 0, (11, 7)),           # never below 7 available
    (4, "10%", "10%", (5, 4)),        # 0.4 → surge 1, unavailable 0
    (3, 0, 0, (3, 2)),                # both zero: unavailable becomes 1
])
async def test_rollout_invariants_for_rounding_cases(replicas, surge, unavailable, bounds):
    async with harness(rsc, dc, workers=True, kubelet=True) as (h, r, c):
        await h.client.create(deployment_obj(replicas=replicas, surge=surge, unavailable=unavailable))
        await eventually(lambda: h.objs("Deployment") and
                         h.objs("Deployment")[0].status.available_replicas == replicas, 20)
        samples = await _rollout(h, "app:v2", replicas, bounds[0] - replicas, replicas - bounds[1])
        assert max(t for t, _ in samples) <= bounds[0]
        assert min(a for _, a in samples) >= bounds[1]


async def test_available_condition_false_below_minimum():
    clock = Clock()
    async with harness(rsc, dc, workers=True, clock=clock) as (h, r, c):
        # no kubelet: pods never get ready
        await h.client.create(deployment_obj(replicas=4, surge=1, unavailable=1))
        await eventually(lambda: h.objs("Deployment") and cond(h.objs("Deployment")[0], "Available") is not None
                         and h.objs("Deployment")[0].status.replicas == 4, 10)
        d = h.objs("Deployment")[0]
        assert (cond(d, "Available").status, cond(d, "Available").reason) == ("False", "MinimumReplicasUnavailable")
        assert d.status.unavailable_replicas == 4 and d.status.available_replicas == 0


async def test_rollout_runs_without_a_controller_from_what_it_is_given():
    """Rollout depends only on what it is handed: a client, a clock, an event
    and a requeue callback, the ReplicaSets and (Recreate) the pod map."""
    from machinery import kinds
    from machinery.fakeclient import FakeClient
    from controllers.rollout import Rollout, new_replica_set
    client, events, requeued = FakeClient(), [], []
    r = Rollout(client, clock=Clock(), event=lambda obj, *ev: events.append(ev),
                requeue=lambda key, delay: requeued.append(key), cached_rs=lambda ns, name: None)
    d = await client.create(deployment_obj(replicas=2, strategy="Recreate"))
    old = new_replica_set(deployment_obj(replicas=2, strategy="Recreate", image="app:v0"), [], 1)
    old.metadata.uid, old.spec.replicas = "old-uid", 0          # scaled down already
    pod = kinds.new("Pod")
    pod.status.phase = "Running"
    await r.rollout_recreate(codec.copy(d), [old], {"old-uid": [pod]})
    assert not client.objects("ReplicaSet")                      # its pod still runs: wait
    d = await client.get("Deployment", "web", "default")
    await r.rollout_recreate(d, [old], {"old-uid": []})
    [rs] = client.objects("ReplicaSet")                          # gone: the new set is created
    assert du.replicas(rs) == 2 and rs.metadata.annotations[du.REVISION] == "2"
    assert events == [("Normal", "ScalingReplicaSet", f"Scaled up replica set {rs.metadata.name} to 2")]
    assert requeued[-1] == "default/web"                         # come back at the progress deadline


def test_status_and_requeue_are_pure_functions_of_their_inputs():
    from controllers import deployment_status as ds
    d = deployment_obj(replicas=3, deadline=60)
    st, timed_out = ds.rollout_status(d, [], None, 1000.0)
    assert (st.replicas, cond_of(st, "Available").status, timed_out) == (0, "False", False)
    assert cond_of(st, "Progressing") is None                    # nothing progressed yet
    ds.set_condition(d.status, "Progressing", "True", "ReplicaSetUpdated", "", 1000.0)
    st, timed_out = ds.rollout_status(d, [], None, 1061.0)        # the deadline has passed
    assert cond_of(st, "Progressing").reason == "ProgressDeadlineExceeded" and timed_out
    assert ds.requeue_after(d, d.status, 1030.0) == 31.0         # deadline at 1060, one second later
    assert ds.requeue_after(d, st, 1061.0) is None


def cond_of(st, t):
    return next((c for c in st.conditions if c.type == t), None)
