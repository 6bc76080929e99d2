"""The controller manager with HOLLOW node agents (nodeagent.main.build_agent
runtime="fake": the real agent code, fake containers) and the real scheduler,
all in this process, on a real apiserver.

The agents get no --pod-cidr: they wait for the controller manager's node
IPAM to give them one. Killing a node = cancelling its agent task (no more
lease renewals, nobody finishes its pods' deletions)."""
import asyncio

from machinery import kinds
from machinery.informer import Informer
from nodeagent.main import build_agent

from tests.integration.test_controllers_sim import ControlPlane, deployment, kctl, until


def ready(p):
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


class Hollow:
    def __init__(self, client, tmp_path):
        self.client, self.tmp = client, tmp_path
        self.tasks: dict[str, asyncio.Task] = {}
        self.agents = {}

    def start(self, name, i):
        a = build_agent(self.client, node_name=name, node_ip=f"10.99.0.{i + 1}", root_dir=str(self.tmp / name),
                        runtime="fake", heartbeat_interval=0.5, crashloop_base=0.2)
        self.agents[name] = a
        self.tasks[name] = asyncio.create_task(a.run())

    async def kill(self, name):
        t = self.tasks.pop(name)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)

    async def stop(self):
        for name in list(self.tasks):
            await self.kill(name)


async def live(client):
    pods, _ = await client.list("Pod", "default")
    return [p for p in pods if not p.metadata.HasField("deletion_timestamp")]


async def test_hollow_cluster_rollout_undo_node_loss_and_endpoints(client, apiserver, tmp_path):
    cp = ControlPlane(client)
    await cp.start()
    hollow = Hollow(client, tmp_path)
    names = ["h0", "h1", "h2"]
    for i, n in enumerate(names):
        hollow.start(n, i)
    samples, created = [], {}
    inf = Informer(client, "Pod")

    def on_pod(p):
        created.setdefault(p.metadata.name, p.spec.containers[0].image)
        pods = [q for q in inf.list("default") if not q.metadata.HasField("deletion_timestamp")]
        samples.append((len(pods), sum(1 for q in pods if ready(q))))
    inf.add_handler(on_pod, lambda o, n: on_pod(n), on_pod)
    watcher = asyncio.create_task(inf.run())
    try:
        async def nodes_ready():
            nodes, _ = await client.list("Node")
            return len(nodes) == 3 and all(n.spec.pod_cidr and any(c.type == "Ready" and c.status == "True"
                                                                   for c in n.status.conditions) for n in nodes)
        await until(nodes_ready, "3 hollow nodes Ready with pod CIDRs from node IPAM")
        nodes, _ = await client.list("Node")
        assert len({n.spec.pod_cidr for n in nodes}) == 3

        svc = kinds.new("Service")
        svc.metadata.name, svc.metadata.namespace = "web", "default"
        svc.spec.selector["app"] = "web"
        sp = svc.spec.ports.add(name="http", port=80, protocol="TCP")
        sp.target_port.str_val = "http"
        await client.create(svc)
        await client.create(deployment(replicas=10, surge=3, unavailable=2))

        async def rolled(image):
            d = await client.get("Deployment", "web", "default")
            pods = await live(client)
            return (d.status.updated_replicas == 10 and d.status.available_replicas == 10 and len(pods) == 10
                    and all(p.spec.containers[0].image == image and ready(p) for p in pods))
        await until(lambda: rolled("app:v1"), "v1 on hollow nodes")

        async def endpoints_match():
            try:
                ep = await client.get("Endpoints", "web", "default")
            except Exception:  # noqa: BLE001 - not yet
                return False
            ips = sorted(a.ip for s in ep.subsets for a in s.addresses)
            return ips == sorted(p.status.pod_ip for p in await live(client)) and len(ips) == 10
        await until(endpoints_match, "endpoints = the 10 pod IPs")

        samples.clear()
        d = await client.get("Deployment", "web", "default")
        d.spec.template.spec.containers[0].image = "app:v2"
        await client.update(d)
        await until(lambda: rolled("app:v2"), "v2 on hollow nodes")
        assert max(t for t, _ in samples) <= 13 and min(r for _, r in samples) >= 8
        assert sum(1 for img in created.values() if img == "app:v2") == 10

        samples.clear()
        code, out = await kctl(apiserver.target, "rollout", "undo", "deployment/web")
        assert code == 0, out
        await until(lambda: rolled("app:v1"), "undo to v1")
        assert max(t for t, _ in samples) <= 13 and min(r for _, r in samples) >= 8

        # a node dies: its pods are evicted and replaced on the two others
        victims = {p.metadata.name for p in await live(client) if p.spec.node_name == "h0"}
        assert victims
        await hollow.kill("h0")

        async def replaced():
            pods = await live(client)
            return (len(pods) == 10 and all(ready(p) and p.spec.node_name in ("h1", "h2") for p in pods)
                    and not victims & {p.metadata.name for p in pods})
        await until(replaced, "pods of h0 replaced on h1/h2", timeout=90)
        await until(endpoints_match, "endpoints follow")

        # everything goes silent: nothing is evicted
        before = {p.metadata.name for p in await live(client)}
        await hollow.kill("h1")
        await hollow.kill("h2")

        async def all_unknown():
            nodes, _ = await client.list("Node")
            return all(c.status == "Unknown" for n in nodes for c in n.status.conditions if c.type == "Ready")
        await until(all_unknown, "all nodes Unknown", timeout=30)
        await asyncio.sleep(4.0)               # twice the eviction timeout
        assert {p.metadata.name for p in await live(client)} == before
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await hollow.stop()
        await cp.stop()
