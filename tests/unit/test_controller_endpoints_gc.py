"""Endpoints, garbage collector and namespace controller syncs on the FakeClient."""
from machinery import codec, kinds
from machinery.client import WatchEvent
from machinery.pb import meta_pb2

from controllers.endpoints import EndpointsController
from controllers.garbagecollector import GarbageCollector
from controllers.namespace import NamespaceController
from tests.unit.test_controller_helpers import harness, set_ready


def service(name="web", target="http"):
    s = kinds.new("Service")
    s.metadata.name, s.metadata.namespace = name, "default"
    s.metadata.labels["tier"] = "fe"
    s.spec.selector["app"] = name
    sp = s.spec.ports.add(name="http", port=80, protocol="TCP")
    if isinstance(target, str):
        sp.target_port.str_val = target
    else:
        sp.target_port.int_val = target
    return s


def pod(name, app="web", port_name="http", port=8080):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.labels["app"] = app
    c = p.spec.containers.add(name="m", image="x")
    if port_name:
        c.ports.add(name=port_name, container_port=port, protocol="TCP")
    return p


async def test_endpoints_split_ready_and_not_ready_and_resolve_named_ports():
    async with harness(lambda h: EndpointsController(h.client, h.factory)) as (h, c):
        await h.client.create(service())
        for name, ready, port, ip in (("a", True, 8080, "10.0.0.1"), ("b", False, 9090, "10.0.0.2"),
                                      ("c", True, 8080, "10.0.0.3")):
            p = await h.client.create(pod(name, port=port))
            await h.client.bind("default", name, "n1")
            p = h.client.stored("Pod", name)
            await h.client.update_status(set_ready(p, ready, 0, ip=ip))
        nop = await h.client.create(pod("noport", port_name=""))       # lacks the named port: skipped
        await h.client.update_status(set_ready(nop, True, 0, ip="10.0.0.4"))
        await h.client.create(pod("other", app="other"))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        ep = h.client.stored("Endpoints", "web")
        assert dict(ep.metadata.labels) == {"tier": "fe", "endpointslice.kubernetes.io/skip-mirror": "true"}
        by_port = {s.ports[0].port: s for s in ep.subsets}
        assert set(by_port) == {8080, 9090}
        assert [a.ip for a in by_port[8080].addresses] == ["10.0.0.1", "10.0.0.3"]
        assert [a.ip for a in by_port[9090].not_ready_addresses] == ["10.0.0.2"]
        a = by_port[8080].addresses[0]
        assert (a.target_ref.kind, a.target_ref.name, a.node_name) == ("Pod", "a", "n1")
        assert by_port[8080].ports[0].name == "http"
        # readiness flips → moves to notReadyAddresses
        await h.client.update_status(set_ready(h.client.stored("Pod", "a"), False, 0, ip="10.0.0.1"))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        ep = h.client.stored("Endpoints", "web")
        s8080 = next(s for s in ep.subsets if s.ports[0].port == 8080)
        assert [x.ip for x in s8080.addresses] == ["10.0.0.3"] and [x.ip for x in s8080.not_ready_addresses] == ["10.0.0.1"]
        await h.client.delete("Service", "web", "default")
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        assert h.client.stored("Endpoints", "web") is None


def owned(kind, name, owner, block=True):
    o = kinds.new(kind)
    o.metadata.name, o.metadata.namespace = name, "default"
    info = kinds.of(owner)
    o.metadata.owner_references.append(meta_pb2.OwnerReference(
        api_version=info.api_version, kind=info.kind, name=owner.metadata.name, uid=owner.metadata.uid,
        controller=True, block_owner_deletion=block))
    if kind == "Pod":
        o.spec.containers.add(name="m", image="x")
    return o


async def chain(h):
    from tests.unit.test_controller_helpers import deployment_obj, rs_obj
    d = await h.client.create(deployment_obj())
    rs = await h.client.create(owned("ReplicaSet", "web-1", d))
    rs2 = codec.copy(rs)
    rs2.spec.CopyFrom(rs_obj().spec)
    rs = await h.client.update(rs2)
    p = await h.client.create(owned("Pod", "web-1-x", rs))
    await h.settle()
    return d, rs, p


def gc(h):
    return GarbageCollector(h.client, h.factory)


async def test_background_cascade_deletes_dependents_of_a_deleted_owner():
    async with harness(gc, workers=True) as (h, c):
        await chain(h)
        await h.client.delete("Deployment", "web", "default")
        from tests.unit.test_controller_helpers import eventually
        await eventually(lambda: not h.client.objects("ReplicaSet") and not h.client.objects("Pod"), 10)


async def test_orphan_finalizer_strips_owner_references_then_itself():
    async with harness(gc, workers=True) as (h, c):
        d, rs, p = await chain(h)
        dd = h.client.stored("Deployment", "web")
        dd.metadata.finalizers.append("orphan")
        await h.client.update(dd)
        await h.client.delete("Deployment", "web", "default")
        from tests.unit.test_controller_helpers import eventually
        await eventually(lambda: not h.client.objects("Deployment"), 10)
        [rs] = h.client.objects("ReplicaSet")
        assert not rs.metadata.owner_references
        assert len(h.client.objects("Pod")) == 1


async def test_foreground_deletes_dependents_first():
    async with harness(gc, workers=True) as (h, c):
        await chain(h)
        dd = h.client.stored("Deployment", "web")
        dd.metadata.finalizers.append("foregroundDeletion")
        await h.client.update(dd)
        await h.client.delete("Deployment", "web", "default")
        from tests.unit.test_controller_helpers import eventually
        await eventually(lambda: not h.client.objects("Deployment"), 10)
        assert not h.client.objects("ReplicaSet") and not h.client.objects("Pod")


async def test_an_owner_missing_only_from_the_cache_is_checked_live():
    async with harness(gc) as (h, c):
        d, rs, p = await chain(h)
        gone = h.client.stored("Deployment", "web")       # the cache lost it; the apiserver has it
        c.infs["Deployment"].apply(WatchEvent("DELETED", gone, ""))
        await c.sync("ReplicaSet/default/web-1")
        assert h.client.objects("ReplicaSet")


async def test_namespace_controller_empties_then_finalizes():
    async with harness(lambda h: NamespaceController(h.client, h.factory, recheck=0.05)) as (h, c):
        ns = kinds.new("Namespace"); ns.metadata.name = "team"
        ns.spec.finalizers.append("kubernetes")
        ns.metadata.finalizers.append("test/hold")      # the fake does not model namespace finalization
        await h.client.create(ns)
        p = pod("p1"); p.metadata.namespace = "team"
        await h.client.create(p)
        await h.client.delete("Namespace", "team")     # the fake keeps it (finalizer) with a deletionTimestamp
        await h.settle()
        await c.sync("team")
        await h.settle()
        assert not h.client.objects("Pod")
        await c.sync("team")
        await h.settle()
        [ns] = h.client.objects("Namespace")
        assert list(ns.spec.finalizers) == []           # the real apiserver now removes it
