"""ReplicaSets and the garbage collector on the real apiserver: adoption of
orphans, `kctl delete --cascade=orphan|foreground`."""
from machinery import kinds

from tests.integration.test_controllers_sim import cluster, kctl, until


def replica_set(name="web", replicas=3):
    rs = kinds.new("ReplicaSet")
    rs.metadata.name, rs.metadata.namespace = name, "default"
    rs.spec.replicas = replicas
    rs.spec.selector.match_labels["app"] = name
    rs.spec.template.metadata.labels["app"] = name
    rs.spec.template.spec.containers.add(name="main", image="app:v1")
    return rs


def orphan_pod(name, app="web"):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.labels["app"] = app
    p.spec.containers.add(name="main", image="app:v1")
    return p


def ready(p):
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)


async def pods(client):
    items, _ = await client.list("Pod", "default")
    return items


async def test_adopts_an_orphan_then_orphan_and_foreground_cascades(client, apiserver):
    async with cluster(client, nodes=("n1", "n2")):
        await client.create(orphan_pod("stray"))
        rs = await client.create(replica_set(replicas=3))

        async def three_ready():
            ps = [p for p in await pods(client) if not p.metadata.HasField("deletion_timestamp")]
            r = await client.get("ReplicaSet", "web", "default")
            return len(ps) == 3 and all(ready(p) for p in ps) and r.status.ready_replicas == 3 \
                and r.status.available_replicas == 3 and r.status.observed_generation == r.metadata.generation
        await until(three_ready, "3 ready pods")
        got = {p.metadata.name: p for p in await pods(client)}
        assert "stray" in got                                   # adopted, counted, not replaced
        ref = got["stray"].metadata.owner_references[0]
        assert (ref.uid, ref.controller, ref.block_owner_deletion) == (rs.metadata.uid, True, True)
        assert all(n.startswith("web-") for n in got if n != "stray")

        code, out = await kctl(apiserver.target, "delete", "rs", "web", "--cascade=orphan")
        assert code == 0, out

        async def orphaned():
            rss, _ = await client.list("ReplicaSet", "default")
            ps = await pods(client)
            return not rss and len(ps) == 3 and all(not p.metadata.owner_references for p in ps)
        await until(orphaned, "pods left without owner")

        # a new set adopts them all again; foreground deletion removes the pods before the set
        await client.create(replica_set(replicas=3))

        async def adopted():
            ps = await pods(client)
            return len(ps) == 3 and all(p.metadata.owner_references for p in ps)
        await until(adopted, "re-adopted")
        code, out = await kctl(apiserver.target, "delete", "rs", "web", "--cascade=foreground")
        assert code == 0, out

        async def all_gone():
            rss, _ = await client.list("ReplicaSet", "default")
            return not rss and not await pods(client)
        await until(all_gone, "foreground deletion finished")


async def test_released_pod_is_replaced(client):
    async with cluster(client, nodes=("n1",)):
        await client.create(replica_set(replicas=2))

        async def two():
            ps = [p for p in await pods(client) if ready(p)]
            return len(ps) == 2
        await until(two, "2 ready pods")
        p = (await pods(client))[0]
        p.metadata.labels["app"] = "debug"                      # take it out of the set
        await client.update(p)

        async def replaced():
            ps = await pods(client)
            mine = [q for q in ps if q.metadata.labels.get("app") == "web"]
            released = next(q for q in ps if q.metadata.name == p.metadata.name)
            return len(mine) == 2 and not released.metadata.owner_references
        await until(replaced, "released and replaced")
