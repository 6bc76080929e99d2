"""StatefulSets on a real apiserver (etcd + apiserver subprocesses) with the
real scheduler and controller manager in-process and simulated nodes
(tests/integration/test_controllers_sim.py): ordered creation (web-1 only
after web-0 is Running and Ready, observed on a watch), a claim per ordinal,
a deleted pod coming back with its name and claim, scale down highest
ordinal first, a partitioned rolling update, then rollout history and undo;
`kctl` shows the set; the claim retention policy with the garbage collector;
the same set on hollow node agents.
"""
import asyncio

from machinery import kinds

from controllers import statefulset_util as su
from tests.integration.test_controllers_sim import cluster, kctl, until

HELD = "web:held"          # SimNodes keeps pods of a held image not ready until released


def headless():
    svc = kinds.new("Service")
    svc.metadata.name, svc.metadata.namespace = "nginx", "default"
    svc.spec.cluster_ip = "None"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(name="http", port=80, protocol="TCP")
    return svc


def web(replicas=3, image=HELD, claims=True):
    s = kinds.new("StatefulSet")
    s.metadata.name, s.metadata.namespace = "web", "default"
    s.spec.replicas, s.spec.service_name = replicas, "nginx"
    s.spec.selector.match_labels["app"] = "web"
    s.spec.template.metadata.labels["app"] = "web"
    c = s.spec.template.spec.containers.add(name="nginx", image=image)
    if not claims:
        return s
    c.volume_mounts.add(name="www", mount_path="/usr/share/nginx/html")
    t = s.spec.volume_claim_templates.add()
    t.metadata.name = "www"
    t.spec.access_modes.append("ReadWriteOnce")
    t.spec.storage_class_name = "local-path"
    t.spec.resources.requests["storage"] = "1Gi"
    return s


class Recorder:
    """Pod events in order: ("ADDED", name) and ("READY", name) the first time a pod is Running+Ready."""

    def __init__(self, client):
        self.client, self.seen, self.ready = client, [], set()

    async def run(self):
        async for ev in self.client.watch("Pod", "default"):
            p = ev.object
            if ev.type == "ADDED":
                self.seen.append(("ADDED", p.metadata.name))
            elif ev.type == "DELETED":
                self.seen.append(("DELETED", p.metadata.name))
                self.ready.discard(p.metadata.uid)
            if ev.type != "DELETED" and su.is_running_and_ready(p) and p.metadata.uid not in self.ready:
                self.ready.add(p.metadata.uid)
                self.seen.append(("READY", p.metadata.name))

    def index(self, item):
        return self.seen.index(item)


async def pods(client):
    items, _ = await client.list("Pod", "default")
    return sorted((p for p in items if not p.metadata.HasField("deletion_timestamp")), key=su.ordinal)


async def all_ready(client, n, image=None):
    ps = await pods(client)
    ok = len(ps) == n and all(su.is_running_and_ready(p) for p in ps) and \
        (image is None or all(p.spec.containers[0].image == image for p in ps))
    return ps if ok else None


async def test_statefulset_lifecycle(client, apiserver):
    async with cluster(client) as (sim, _cp):
        rec = Recorder(client)
        watcher = asyncio.create_task(rec.run())
        sim.hold_ready.add(HELD)
        try:
            await client.create(headless())
            await client.create(web())
            await until(lambda: _has(rec, ("ADDED", "web-0")), "web-0 created")
            sts = await until(lambda: _status(client, lambda s: s.replicas == 1), "status counts web-0")
            assert sts.status.ready_replicas == 0
            sim.release(HELD)
            ps = await until(lambda: all_ready(client, 3), "3 ready pods")
            # Ordered: each pod is created only after its predecessor was Running and Ready.
            assert rec.index(("READY", "web-0")) < rec.index(("ADDED", "web-1"))
            assert rec.index(("READY", "web-1")) < rec.index(("ADDED", "web-2"))
            for i, p in enumerate(ps):
                assert (p.metadata.name, p.spec.hostname, p.spec.subdomain) == (f"web-{i}", f"web-{i}", "nginx")
                assert p.metadata.labels[su.POD_NAME_LABEL] == p.metadata.name
                assert p.metadata.labels[su.POD_INDEX_LABEL] == str(i)
                vol = next(v for v in p.spec.volumes if v.name == "www")
                assert vol.persistent_volume_claim.claim_name == f"www-web-{i}"
            claims = {c.metadata.name: c for c in (await client.list("PersistentVolumeClaim", "default"))[0]}
            assert sorted(claims) == ["www-web-0", "www-web-1", "www-web-2"]
            sts = await until(lambda: _status(client, lambda s: s.ready_replicas == 3 and s.current_revision),
                              "status: 3 ready")
            assert sts.status.current_revision == sts.status.update_revision == \
                ps[0].metadata.labels[su.REVISION_LABEL]

            # A deleted pod comes back with the same name and the same claim.
            old = next(p for p in ps if p.metadata.name == "web-1")
            await client.delete("Pod", "web-1", "default")

            async def back():
                ps = await all_ready(client, 3)
                p1 = next((p for p in ps or () if p.metadata.name == "web-1"), None)
                return p1 if p1 is not None and p1.metadata.uid != old.metadata.uid else None
            p1 = await until(back, "web-1 recreated")
            assert next(v for v in p1.spec.volumes if v.name == "www").persistent_volume_claim.claim_name \
                == "www-web-1"
            c1 = await client.get("PersistentVolumeClaim", "www-web-1", "default")
            assert c1.metadata.uid == claims["www-web-1"].metadata.uid

            # Scale down: the highest ordinal goes first; the claims stay (Retain).
            mark = len(rec.seen)
            code, out = await kctl(apiserver.target, "scale", "sts/web", "--replicas", "1")
            assert code == 0 and "statefulset.apps/web scaled" in out, out
            await until(lambda: all_ready(client, 1), "one pod left")
            await until(lambda: _has(rec, ("DELETED", "web-1"), mark), "web-1 deletion observed")
            assert [e for e in rec.seen[mark:] if e[0] == "DELETED"] == [("DELETED", "web-2"), ("DELETED", "web-1")]
            assert [p.metadata.name for p in await pods(client)] == ["web-0"]
            assert len((await client.list("PersistentVolumeClaim", "default"))[0]) == 3

            # A partitioned rolling update: only ordinals >= 2 move to the new revision.
            s = await client.get("StatefulSet", "web", "default")
            s.spec.replicas = 3
            s.spec.update_strategy.rolling_update.partition = 2
            s.spec.template.spec.containers[0].image = "web:v2"
            await client.update(s)

            async def partitioned():
                ps = await all_ready(client, 3)
                images = [p.spec.containers[0].image for p in ps or ()]
                return ps if images == [HELD, HELD, "web:v2"] else None
            ps = await until(partitioned, "web-2 updated, web-0 and web-1 not")
            st = (await until(lambda: _status(client, lambda s: s.updated_replicas == 1 and s.ready_replicas == 3),
                              "status: 1 updated")).status
            assert st.current_revision != st.update_revision == ps[2].metadata.labels[su.REVISION_LABEL]
            assert ps[0].metadata.labels[su.REVISION_LABEL] == st.current_revision
            code, out = await kctl(apiserver.target, "rollout", "status", "sts/web", "--timeout", "60s")
            assert code == 0 and "partitioned roll out complete: 1 new pods have been updated..." in out, out
            code, out = await kctl(apiserver.target, "get", "sts", "web")
            assert code == 0 and out.split("\n")[1].split()[:2] == ["web", "3/3"], out

            # Partition 0 finishes the update (the update revision becomes current); undo goes back.
            s = await client.get("StatefulSet", "web", "default")
            s.spec.update_strategy.rolling_update.partition = 0
            await client.update(s)
            await until(lambda: all_ready(client, 3, "web:v2"), "all at web:v2")
            st = (await until(lambda: _status(client, lambda s: s.current_revision == s.update_revision
                                              and s.updated_replicas == 3), "update complete")).status
            code, out = await kctl(apiserver.target, "rollout", "history", "sts/web")
            assert code == 0 and [ln.split()[0] for ln in out.splitlines()[2:]] == ["1", "2"], out
            code, out = await kctl(apiserver.target, "rollout", "undo", "sts/web")
            assert code == 0 and "statefulset.apps/web rolled back" in out, out
            await until(lambda: all_ready(client, 3, HELD), "all back at the first template")
            code, out = await kctl(apiserver.target, "rollout", "history", "sts/web")
            assert [ln.split()[0] for ln in out.splitlines()[2:]] == ["2", "3"], out   # revision 1 became 3
            back = (await until(lambda: _status(client, lambda s: s.current_revision == s.update_revision
                                                and s.updated_replicas == 3), "undo complete")).status
            assert back.update_revision != st.update_revision
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def _has(rec, item, start=0):
    return item in rec.seen[start:]


async def _status(client, pred):
    s = await client.get("StatefulSet", "web", "default")
    return s if s.status.observed_generation == s.metadata.generation and pred(s.status) else None


async def test_statefulset_on_hollow_node_agents(client, tmp_path):
    """The real node agent code (fake containers) runs the set's pods: they come up in order, each
    container with the pod's stable hostname (and the FQDN of the headless Service the agent writes
    into /etc/hosts), and a deleted pod comes
    back under its name. No volumeClaimTemplates here: the agent does not mount claims yet
    (nodeagent/podspec.py refuses PVC volumes), the simulated-node test above covers them."""
    from tests.integration.test_controllers_hollow import Hollow
    from tests.integration.test_controllers_sim import ControlPlane
    cp = ControlPlane(client)
    await cp.start()
    hollow = Hollow(client, tmp_path)
    for i, n in enumerate(("h0", "h1")):
        hollow.start(n, i)
    rec = Recorder(client)
    watcher = asyncio.create_task(rec.run())
    try:
        await client.create(headless())
        await client.create(web(replicas=2, image="web:v1", claims=False))
        ps = await until(lambda: all_ready(client, 2), "2 ready pods on the agents", timeout=90)
        assert rec.index(("READY", "web-0")) < rec.index(("ADDED", "web-1"))
        from nodeagent import podfiles
        ctrs = [c.cfg for a in hollow.agents.values() for c in a.runtime._ctrs.values()]
        for p in ps:
            [cfg] = [c for c in ctrs if c.labels.get("kctl.io/pod-uid") == p.metadata.uid]
            assert cfg.hostname == p.metadata.name          # the container's hostname is its stable name
            fqdn = f"{podfiles.pod_hostname(p)}.{podfiles.pod_domain(p, 'cluster.local')}"
            assert fqdn == f"{p.metadata.name}.nginx.default.svc.cluster.local"   # its /etc/hosts line
        old = ps[0]
        await client.delete("Pod", "web-0", "default")

        async def back():
            ps = await all_ready(client, 2)
            return ps if ps and ps[0].metadata.uid != old.metadata.uid else None
        ps = await until(back, "web-0 back", timeout=90)
        assert ps[0].metadata.name == "web-0" and ps[0].spec.hostname == "web-0"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await hollow.stop()
        await cp.stop()


async def test_claim_retention_policy_with_the_garbage_collector(client, apiserver):
    """persistentVolumeClaimRetentionPolicy through owner references and the real garbage collector:
    whenScaled=Delete removes the claim of a scaled-down ordinal, whenDeleted=Delete the rest with the set;
    a scale up after a scale down waits for the old claim to go and starts on a fresh one."""
    async with cluster(client) as _:
        s = web(replicas=3, image="web:v1")
        s.spec.persistent_volume_claim_retention_policy.when_deleted = "Delete"
        s.spec.persistent_volume_claim_retention_policy.when_scaled = "Delete"
        await client.create(s)
        await until(lambda: all_ready(client, 3), "3 ready pods")

        async def claims(names):
            items, _ = await client.list("PersistentVolumeClaim", "default")
            have = sorted(c.metadata.name for c in items if not c.metadata.HasField("deletion_timestamp"))
            return {c.metadata.name: c.metadata.uid for c in items} if have == names else None
        first = await until(lambda: claims(["www-web-0", "www-web-1", "www-web-2"]), "3 claims")
        code, out = await kctl(apiserver.target, "scale", "sts/web", "--replicas", "2")
        assert code == 0, out
        await until(lambda: claims(["www-web-0", "www-web-1"]), "the scaled-down claim collected")
        code, out = await kctl(apiserver.target, "scale", "sts/web", "--replicas", "3")
        assert code == 0, out
        await until(lambda: all_ready(client, 3), "web-2 back")
        again = await until(lambda: claims(["www-web-0", "www-web-1", "www-web-2"]), "3 claims again")
        assert again["www-web-2"] != first["www-web-2"] and again["www-web-0"] == first["www-web-0"]
        await client.delete("StatefulSet", "web", "default")

        async def none_left():
            items, _ = await client.list("PersistentVolumeClaim", "default")
            return not items
        await until(none_left, "the claims go with the set")
