"""Deployments on the real apiserver with the real scheduler, the controller
manager in-process, and simulated node agents (tests/integration/test_controllers_sim.py)."""
import asyncio

from machinery import codec
from machinery.informer import Informer

from tests.integration.test_controllers_sim import cluster, deployment, kctl, until


def ready(p) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


class PodSampler:
    """Samples (live pods, ready live pods) after every pod event, from a watch-fed cache."""

    def __init__(self, client):
        self.inf = Informer(client, "Pod")
        self.samples: list[tuple[int, int]] = []
        self.created: dict[str, str] = {}      # pod name -> image, every pod ever seen
        self.inf.add_handler(self._ev, lambda o, n: self._ev(n), self._ev)
        self.task = asyncio.create_task(self.inf.run())

    def _ev(self, pod):
        self.created.setdefault(pod.metadata.name, pod.spec.containers[0].image)
        live = [p for p in self.inf.list("default") if not p.metadata.HasField("deletion_timestamp")]
        self.samples.append((len(live), sum(1 for p in live if ready(p))))

    def live(self):
        return [p for p in self.inf.list("default") if not p.metadata.HasField("deletion_timestamp")]

    async def stop(self):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def get_d(client, name="web"):
    return await client.get("Deployment", name, "default")


def cond(d, t):
    return next((c for c in d.status.conditions if c.type == t), None)


async def rolled_out(client, image, n=10):
    d = await get_d(client)
    pods, _ = await client.list("Pod", "default")
    live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
    return (d.status.observed_generation >= d.metadata.generation and d.status.updated_replicas == n
            and d.status.available_replicas == n and d.status.replicas == n and len(live) == n
            and all(p.spec.containers[0].image == image and ready(p) for p in live))


async def set_image(client, image):
    d = await get_d(client)
    d.spec.template.spec.containers[0].image = image
    await client.update(d)


async def test_rolling_update_stays_within_bounds_and_undo_restores_the_previous_template(client, apiserver):
    async with cluster(client):
        await client.create(deployment(replicas=10, surge=3, unavailable=2))
        await until(lambda: rolled_out(client, "app:v1"), "initial rollout")
        sampler = PodSampler(client)
        await sampler.inf.wait_synced()
        try:
            await set_image(client, "app:v2")
            await until(lambda: rolled_out(client, "app:v2"), "rollout to v2")
            assert max(t for t, _ in sampler.samples) <= 13
            assert min(r for _, r in sampler.samples) >= 8
            assert max(t for t, _ in sampler.samples) > 10            # it surged
            assert sum(1 for img in sampler.created.values() if img == "app:v2") == 10
            d = await get_d(client)
            assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
            await until(lambda: _progress_reason(client, "NewReplicaSetAvailable"), "complete condition")

            sampler.samples.clear()
            code, out = await kctl(apiserver.target, "rollout", "undo", "deployment/web")
            assert code == 0, out
            await until(lambda: rolled_out(client, "app:v1"), "rollback to v1")
            assert max(t for t, _ in sampler.samples) <= 13
            assert min(r for _, r in sampler.samples) >= 8
            rss, _ = await client.list("ReplicaSet", "default")
            assert len(rss) == 2                                        # the old set was reused
            v1 = next(rs for rs in rss if rs.spec.template.spec.containers[0].image == "app:v1")
            assert v1.spec.replicas == 10 and v1.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
            code, out = await kctl(apiserver.target, "rollout", "history", "deployment/web")
            assert code == 0 and "2" in out and "3" in out, out
        finally:
            await sampler.stop()


async def scaled_paused(client, n):
    d = await get_d(client)
    pods, _ = await client.list("Pod", "default")
    live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
    return (d.status.available_replicas == n and d.status.updated_replicas == 0 and len(live) == n
            and all(p.spec.containers[0].image == "app:v1" and ready(p) for p in live))


async def _progress_reason(client, reason):
    c = cond(await get_d(client), "Progressing")
    return c is not None and c.reason == reason


async def test_pause_stops_the_rollout_and_resume_finishes_it(client, apiserver):
    async with cluster(client):
        await client.create(deployment(replicas=4, surge=1, unavailable=0))
        await until(lambda: rolled_out(client, "app:v1", 4), "initial rollout")
        code, out = await kctl(apiserver.target, "rollout", "pause", "deployment/web")
        assert code == 0, out
        await until(lambda: _progress_reason(client, "DeploymentPaused"), "paused condition")
        await set_image(client, "app:v2")
        code, out = await kctl(apiserver.target, "scale", "deployment/web", "--replicas=6")
        assert code == 0, out
        await until(lambda: scaled_paused(client, 6), "scaled while paused")
        await asyncio.sleep(1.0)
        rss, _ = await client.list("ReplicaSet", "default")
        assert len(rss) == 1                                            # no rollout while paused
        code, out = await kctl(apiserver.target, "rollout", "resume", "deployment/web")
        assert code == 0, out
        await until(lambda: rolled_out(client, "app:v2", 6), "rollout after resume")


async def test_progress_deadline_exceeded_for_pods_that_never_get_ready(client, apiserver):
    async with cluster(client):
        await client.create(deployment(replicas=3, surge=1, unavailable=0, deadline=3))
        await until(lambda: rolled_out(client, "app:v1", 3), "initial rollout")
        await set_image(client, "kctl/never-ready")
        await until(lambda: _progress_reason(client, "ProgressDeadlineExceeded"), "deadline exceeded")
        d = await get_d(client)
        assert cond(d, "Progressing").status == "False"
        assert d.status.available_replicas == 3                          # maxUnavailable 0: old pods serve
        code, out = await kctl(apiserver.target, "rollout", "status", "deployment/web", "--timeout=20s")
        assert code != 0 and "exceeded its progress deadline" in out, out


async def test_restarting_the_controller_manager_mid_rollout_creates_no_extra_pod(client):
    async with cluster(client) as (sim, cp):
        await client.create(deployment(replicas=10, surge=3, unavailable=2))
        await until(lambda: rolled_out(client, "app:v1"), "initial rollout")
        sampler = PodSampler(client)
        await sampler.inf.wait_synced()
        try:
            sim.hold_ready.add("app:v2")            # the rollout cannot get past its first step
            await set_image(client, "app:v2")
            # new 3 (surge), old 10 → 8 (2 may be unavailable), new 3 → 5 (13 in all); then stuck
            def stuck():
                images = [p.spec.containers[0].image for p in sampler.live()]
                return images.count("app:v2") == 5 and images.count("app:v1") == 8
            await until(stuck, "rollout stopped at new 5 / old 8")
            await cp.stop_controllers()
            cp.start_controllers()                  # a fresh manager: new caches, no expectations
            await asyncio.sleep(1.5)
            assert sum(1 for img in sampler.created.values() if img == "app:v2") == 5
            assert stuck()
            sim.release("app:v2")
            await until(lambda: rolled_out(client, "app:v2"), "rollout to v2 after restart")
            assert sum(1 for img in sampler.created.values() if img == "app:v2") == 10
            assert max(t for t, _ in sampler.samples) <= 13
            assert min(r for _, r in sampler.samples) >= 8
        finally:
            await sampler.stop()


async def test_deleting_a_deployment_removes_its_replica_sets_and_pods(client, apiserver):
    async with cluster(client):
        await client.create(deployment(replicas=5))
        await until(lambda: rolled_out(client, "app:v1", 5), "rollout")
        await set_image(client, "app:v2")
        await until(lambda: rolled_out(client, "app:v2", 5), "second revision")
        code, out = await kctl(apiserver.target, "delete", "deployment", "web")
        assert code == 0, out

        async def gone():
            rss, _ = await client.list("ReplicaSet", "default")
            pods, _ = await client.list("Pod", "default")
            return not rss and not pods
        await until(gone, "replica sets and pods gone")


async def test_recreate_replaces_all_pods_without_overlap(client):
    async with cluster(client):
        await client.create(deployment(replicas=4, strategy="Recreate"))
        await until(lambda: rolled_out(client, "app:v1", 4), "rollout")
        sampler = PodSampler(client)
        await sampler.inf.wait_synced()
        mixed = []
        sampler.inf.add_handler(lambda p: mixed.append(1) if len({q.spec.containers[0].image
                                                               for q in sampler.inf.list("default")}) > 1 else None)
        try:
            await set_image(client, "app:v2")
            await until(lambda: rolled_out(client, "app:v2", 4), "recreate to v2")
            assert not mixed
        finally:
            await sampler.stop()
