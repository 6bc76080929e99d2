"""`kctl-controller-manager` as a real process: flags, leader election,
metrics, and a SIGKILL + restart in the middle of a rollout."""
import asyncio
import sys
import urllib.request

from tests.cluster import Process, free_port
from tests.integration.test_controllers_sim import SimNodes, deployment, until


class ControllerManager(Process):
    def __init__(self, workdir, target, name="cm"):
        super().__init__(name, workdir)
        self.target = target
        self.metrics_port = free_port()

    def command(self):
        return [sys.executable, "-m", "controllers.main", "--apiserver", self.target, "--leader-elect",
                "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "0.3s",
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--identity", self.name]

    def ready(self):
        return bool(self.metrics())

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1) as r:
            return r.read().decode()


def ready(p):
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


async def test_process_leader_election_metrics_and_kill_mid_rollout_creates_no_extra_pod(client, apiserver, tmp_path):
    from scheduler.scheduler import Scheduler
    sim = SimNodes(client)
    await sim.add("n1", "n2")
    await sim.start()
    sched = asyncio.create_task(Scheduler(client).run())
    first = ControllerManager(tmp_path, apiserver.target, "cm-a")
    second = ControllerManager(tmp_path, apiserver.target, "cm-b")
    created: dict[str, str] = {}          # every pod ever seen, from a watch
    from machinery.informer import Informer
    pods_inf = Informer(client, "Pod")
    pods_inf.add_handler(lambda p: created.setdefault(p.metadata.name, p.spec.containers[0].image))
    watcher = asyncio.create_task(pods_inf.run())
    try:
        await asyncio.to_thread(first.start)
        await client.create(deployment(replicas=10, surge=3, unavailable=2))

        async def rolled(image):
            d = await client.get("Deployment", "web", "default")
            pods, _ = await client.list("Pod", "default")
            live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
            return (d.status.updated_replicas == 10 and d.status.available_replicas == 10 and len(live) == 10
                    and all(p.spec.containers[0].image == image and ready(p) for p in live))
        await until(lambda: rolled("app:v1"), "first rollout")
        lease = await client.get("Lease", "kube-controller-manager", "kube-system")
        assert lease.spec.holder_identity == "cm-a"
        text = await asyncio.to_thread(first.metrics)
        assert 'kctl_workqueue_adds_total{name="replicaset"}' in text
        assert 'kctl_workqueue_work_duration_seconds_count{name="deployment"}' in text
        assert "kctl_nodelifecycle_monitor_duration_seconds_count" in text
        assert "kctl_nodelifecycle_disruption_mode 0.0" in text

        await asyncio.to_thread(second.start)          # a standby
        sim.hold_ready.add("app:v2")                    # the rollout stops at new 5 / old 8
        d = await client.get("Deployment", "web", "default")
        d.spec.template.spec.containers[0].image = "app:v2"
        await client.update(d)

        def v2_created():
            return sum(1 for img in created.values() if img == "app:v2")

        async def stuck():
            pods, _ = await client.list("Pod", "default")
            images = [p.spec.containers[0].image for p in pods if not p.metadata.HasField("deletion_timestamp")]
            return images.count("app:v2") == 5 and images.count("app:v1") == 8
        await until(stuck, "rollout under way")
        first.kill()                                    # SIGKILL: no lease release

        async def taken_over():
            lease = await client.get("Lease", "kube-controller-manager", "kube-system")
            return lease.spec.holder_identity == "cm-b"
        await until(taken_over, "the standby leads")
        await asyncio.sleep(1.5)                        # the new leader has synced its caches and looked
        assert v2_created() == 5 and await stuck()
        sim.release("app:v2")
        await until(lambda: rolled("app:v2"), "rollout finished by the standby", timeout=90)
        assert sum(1 for img in created.values() if img == "app:v2") == 10
    finally:
        sched.cancel()
        watcher.cancel()
        await asyncio.gather(sched, watcher, return_exceptions=True)
        await sim.stop()
        for p in (first, second):
            await asyncio.to_thread(p.stop)
