"""Node lifecycle, node IPAM, endpoints, garbage collection of namespaces on
the real apiserver, with the real scheduler and simulated node agents."""
import asyncio

from machinery import kinds

from tests.integration.test_controllers_sim import cluster, deployment, kctl, until


def ready(p) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


async def live_pods(client, ns="default"):
    pods, _ = await client.list("Pod", ns)
    return [p for p in pods if not p.metadata.HasField("deletion_timestamp")]


async def node_ready(client, name):
    n = await client.get("Node", name)
    c = next((c for c in n.status.conditions if c.type == "Ready"), None)
    return c.status if c else None


async def test_killed_node_goes_unknown_and_its_pods_are_replaced_on_the_others(client):
    async with cluster(client, nodes=("n1", "n2", "n3")) as (sim, cp):
        await client.create(deployment(replicas=6, surge=1, unavailable=0))

        async def spread():
            pods = await live_pods(client)
            return len(pods) == 6 and all(ready(p) for p in pods) and \
                len({p.spec.node_name for p in pods}) == 3
        await until(spread, "6 ready pods on 3 nodes")
        victims = {p.metadata.name for p in await live_pods(client) if p.spec.node_name == "n1"}
        sim.silence("n1")
        await until(lambda: _eq(node_ready(client, "n1"), "Unknown"), "n1 Ready=Unknown", timeout=30)
        n1 = await client.get("Node", "n1")
        cond = next(c for c in n1.status.conditions if c.type == "Ready")
        assert (cond.reason, cond.message) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        # The taint is a separate write that follows the status update.
        async def tainted():
            n = await client.get("Node", "n1")
            return ("node.kubernetes.io/unreachable", "NoExecute") in {(t.key, t.effect) for t in n.spec.taints}
        await until(tainted, "n1 tainted unreachable:NoExecute", timeout=10)

        async def replaced():
            pods = await live_pods(client)
            return (len(pods) == 6 and all(ready(p) and p.spec.node_name in ("n2", "n3") for p in pods)
                    and not victims & {p.metadata.name for p in pods})
        await until(replaced, "pods replaced on n2/n3", timeout=60)
        # the evicted pods are Terminating (their node cannot confirm), not gone
        pods, _ = await client.list("Pod", "default")
        assert victims <= {p.metadata.name for p in pods if p.metadata.HasField("deletion_timestamp")}
        # the node comes back: Ready again, taints gone, its agent finishes the deletions
        sim.revive("n1")
        await until(lambda: _eq(node_ready(client, "n1"), "True"), "n1 Ready again", timeout=30)

        async def clean():
            n = await client.get("Node", "n1")
            pods, _ = await client.list("Pod", "default")
            return not n.spec.taints and not victims & {p.metadata.name for p in pods}
        await until(clean, "taints removed and evicted pods gone")


async def _eq(coro, value):
    return (await coro) == value


async def test_silencing_all_nodes_evicts_nothing(client):
    async with cluster(client, nodes=("n1", "n2", "n3")) as (sim, cp):
        await client.create(deployment(replicas=6, surge=1, unavailable=0))

        async def up():
            pods = await live_pods(client)
            return len(pods) == 6 and all(ready(p) for p in pods)
        await until(up, "6 ready pods")
        before = {p.metadata.name for p in await live_pods(client)}
        for n in ("n1", "n2", "n3"):
            sim.silence(n)

        async def all_unknown():
            return all([await node_ready(client, n) == "Unknown" for n in ("n1", "n2", "n3")])
        await until(all_unknown, "all nodes Unknown", timeout=30)

        async def marked_not_ready():
            return not any(ready(p) for p in await live_pods(client))
        await until(marked_not_ready, "pods marked not ready")
        await asyncio.sleep(4.0)       # well past the 2 s eviction timeout
        pods, _ = await client.list("Pod", "default")
        assert {p.metadata.name for p in pods} == before
        assert not any(p.metadata.HasField("deletion_timestamp") for p in pods)
        events, _ = await client.list("Event", "default")
        assert any(e.reason == "EvictionsStopped" for e in events)


async def test_nodes_get_distinct_pod_cidrs(client):
    async with cluster(client, nodes=("n1", "n2", "n3", "n4"), scheduler=False):
        async def allocated():
            nodes, _ = await client.list("Node")
            return len(nodes) == 4 and all(n.spec.pod_cidr for n in nodes)
        await until(allocated, "pod CIDRs")
        nodes, _ = await client.list("Node")
        cidrs = [n.spec.pod_cidr for n in nodes]
        assert len(set(cidrs)) == 4 and all(c.startswith("10.244.") and c.endswith("/24") for c in cidrs)
        assert all(list(n.spec.pod_cidrs) == [n.spec.pod_cidr] for n in nodes)


async def test_endpoints_follow_readiness(client):
    async with cluster(client, nodes=("n1", "n2")) as (sim, cp):
        svc = kinds.new("Service")
        svc.metadata.name, svc.metadata.namespace = "web", "default"
        svc.spec.selector["app"] = "web"
        sp = svc.spec.ports.add(name="http", port=80, protocol="TCP")
        sp.target_port.str_val = "http"
        await client.create(svc)
        d = deployment(replicas=4, surge=1, unavailable=0)
        d.spec.template.spec.tolerations.add(key="node.kubernetes.io/unreachable", operator="Exists",
                                             effect="NoExecute", toleration_seconds=120)
        await client.create(d)

        async def addresses():
            try:
                ep = await client.get("Endpoints", "web", "default")
            except Exception:  # noqa: BLE001 - not created yet
                return None
            ready_ips = sorted(a.ip for s in ep.subsets for a in s.addresses)
            not_ready = sorted(a.ip for s in ep.subsets for a in s.not_ready_addresses)
            ports = {p.port for s in ep.subsets for p in s.ports}
            return ready_ips, not_ready, ports

        async def four_ready():
            got = await addresses()
            pods = await live_pods(client)
            return got and len(got[0]) == 4 and not got[1] and got[2] == {8080} and \
                sorted(p.status.pod_ip for p in pods) == got[0]
        await until(four_ready, "4 ready addresses on 8080")
        # n1 dies: its pods are marked not ready → they move to notReadyAddresses
        on_n1 = {p.status.pod_ip for p in await live_pods(client) if p.spec.node_name == "n1"}
        assert on_n1
        sim.silence("n1")

        async def moved():
            got = await addresses()
            return got and on_n1 == set(got[1]) and not on_n1 & set(got[0])
        await until(moved, "n1's pods in notReadyAddresses", timeout=30)
        sim.revive("n1")                # its agent reports them ready again
        await until(four_ready, "all 4 ready again")
        await client.delete("Service", "web", "default")

        async def ep_gone():
            return await addresses() is None
        await until(ep_gone, "endpoints deleted with the service")


async def test_deleting_a_namespace_deletes_everything_in_it(client, apiserver):
    async with cluster(client, nodes=("n1",)):
        ns = kinds.new("Namespace")
        ns.metadata.name = "team"
        await client.create(ns)
        d = deployment(replicas=2)
        d.metadata.namespace = "team"
        await client.create(d)

        async def running():
            pods = await live_pods(client, "team")
            return len(pods) == 2 and all(ready(p) for p in pods)
        await until(running, "pods in team")
        code, out = await kctl(apiserver.target, "delete", "namespace", "team")
        assert code == 0, out

        async def gone():
            nss, _ = await client.list("Namespace")
            return "team" not in {n.metadata.name for n in nss}
        await until(gone, "namespace removed")
        for kind in ("Deployment", "ReplicaSet", "Pod"):
            items, _ = await client.list(kind, "team")
            assert not items, kind
