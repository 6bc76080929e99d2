"""EndpointSlices: the reconciler (pure), the controller on the FakeClient, validation, kctl's table,
and the Endpoints controller's hostname rule (shared with the slices)."""
from __future__ import annotations

import time

from machinery import codec, kinds, validation
from machinery.pb import discovery_pb2

from controllers.endpoints import EndpointsController
from controllers.endpointslice import EndpointSliceController, SliceTracker
from controllers.endpointslice_reconciler import (CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, desired,
                                                  reconcile)
from kubectlish import printers
from tests.unit.test_controller_endpoints_gc import pod, service
from tests.unit.test_controller_helpers import harness, set_ready


def ready_pod(i, ready=True, terminating=False, node="n1", **kw):
    p = set_ready(pod(f"p{i}", **kw), ready, 0, ip=f"10.0.{i // 250}.{i % 250 + 1}", node=node)
    p.metadata.uid = f"uid-{i}"
    if terminating:
        p.metadata.deletion_timestamp.seconds = 1
    return p


def apply(plan, existing):
    """The slices after a plan (created ones get names)."""
    out = {es.metadata.name: es for es in existing}
    for es in plan.delete:
        out.pop(es.metadata.name)
    for es in plan.update:
        out[es.metadata.name] = es
    for i, es in enumerate(plan.create):
        es = codec.copy(es)
        es.metadata.name = f"{es.metadata.generate_name}{len(out)}x{i}"
        out[es.metadata.name] = es
    return list(out.values())


def addresses(slices):
    return sorted(a for es in slices for e in es.endpoints for a in e.addresses)


def test_250_pods_make_three_slices_of_at_most_100_with_kubernetes_labels_and_owner():
    svc = service()
    svc.metadata.uid = "svc-uid"
    pods = [ready_pod(i) for i in range(250)]
    plan = reconcile(svc, [], desired(svc, pods))
    assert not plan.update and not plan.delete
    assert sorted(len(es.endpoints) for es in plan.create) == [50, 100, 100]
    es = plan.create[0]
    assert es.metadata.generate_name == "web-" and es.address_type == "IPv4"
    assert dict(es.metadata.labels) == {"tier": "fe", SERVICE_NAME_LABEL: "web",
                                        MANAGED_BY_LABEL: "endpointslice-controller.k8s.io"}
    ref = es.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == \
        ("Service", "web", "svc-uid", True, True)
    assert [(p.name, p.port, p.protocol) for p in es.ports] == [("http", 8080, "TCP")]
    e = es.endpoints[0]
    assert (e.conditions.ready, e.conditions.serving, e.conditions.terminating) == (True, True, False)
    assert (e.node_name, e.target_ref.kind, e.target_ref.name, e.target_ref.uid) == ("n1", "Pod", "p0", "uid-0")
    assert not e.HasField("hostname")
    assert addresses(plan.create) == sorted(p.status.pod_ip for p in pods)


def test_max_endpoints_per_slice_is_a_parameter():
    svc = service()
    plan = reconcile(svc, [], desired(svc, [ready_pod(i) for i in range(7)]), max_per_slice=3)
    assert sorted(len(es.endpoints) for es in plan.create) == [1, 3, 3]


def test_terminating_pods_stay_not_ready_but_serving_and_unready_pods_are_not_serving():
    svc = service()
    want = desired(svc, [ready_pod(0, terminating=True), ready_pod(1, ready=False),
                         ready_pod(2, ready=False, terminating=True)])
    conds = {a: (e.conditions.ready, e.conditions.serving, e.conditions.terminating)
             for eps in want.values() for a, e in eps.items()}
    assert conds == {"10.0.0.1": (False, True, True), "10.0.0.2": (False, False, False),
                     "10.0.0.3": (False, False, True)}


def test_hostname_only_when_the_subdomain_names_the_service():
    svc = service()
    a, b = ready_pod(0), ready_pod(1)
    a.spec.hostname, a.spec.subdomain = "alpha", "web"
    b.spec.hostname, b.spec.subdomain = "beta", "other"
    hosts = {ad: e.hostname if e.HasField("hostname") else None
             for eps in desired(svc, [a, b]).values() for ad, e in eps.items()}
    assert hosts == {"10.0.0.1": "alpha", "10.0.0.2": None}


def test_changes_update_in_place_fill_changed_slices_first_and_delete_emptied_ones():
    svc = service()
    pods = [ready_pod(i) for i in range(150)]
    slices = apply(reconcile(svc, [], desired(svc, pods)), [])
    assert reconcile(svc, slices, desired(svc, pods)).__bool__() is False       # steady state: no writes
    # one pod of the full slice goes, a new one comes: it takes the freed place, no new slice
    full = next(es for es in slices if len(es.endpoints) == 100)
    gone = full.endpoints[0].addresses[0]
    pods2 = [p for p in pods if p.status.pod_ip != gone] + [ready_pod(200)]
    plan = reconcile(svc, slices, desired(svc, pods2))
    assert not plan.create and not plan.delete and [es.metadata.name for es in plan.update] == [full.metadata.name]
    slices = apply(plan, slices)
    assert addresses(slices) == sorted(p.status.pod_ip for p in pods2)
    # the pods of the small slice all go: it is deleted
    small = next(es for es in slices if len(es.endpoints) == 50)
    left = {a for e in small.endpoints for a in e.addresses}
    plan = reconcile(svc, slices, desired(svc, [p for p in pods2 if p.status.pod_ip not in left]))
    assert [es.metadata.name for es in plan.delete] == [small.metadata.name] and not plan.update


def test_a_condition_change_rewrites_only_that_slice():
    svc = service()
    pods = [ready_pod(i) for i in range(150)]
    slices = apply(reconcile(svc, [], desired(svc, pods)), [])
    pods[120] = ready_pod(120, terminating=True)
    plan = reconcile(svc, slices, desired(svc, pods))
    assert len(plan.update) == 1 and not plan.create and not plan.delete
    e = next(e for e in plan.update[0].endpoints if e.addresses[0] == pods[120].status.pod_ip)
    assert (e.conditions.ready, e.conditions.terminating) == (False, True)


def test_no_endpoints_leaves_one_placeholder_slice_without_ports():
    svc = service()
    plan = reconcile(svc, [], desired(svc, []))
    assert len(plan.create) == 1 and not plan.create[0].ports and not plan.create[0].endpoints
    slices = apply(plan, [])
    assert not reconcile(svc, slices, desired(svc, []))               # the placeholder stays as is
    slices = apply(reconcile(svc, slices, desired(svc, [ready_pod(1)])), slices)
    assert len(slices) == 1 and addresses(slices) == ["10.0.0.2"]      # placeholder deleted, a real one
    plan = reconcile(svc, slices, desired(svc, []))
    assert len(plan.create) == 1 and len(plan.delete) == 1


def test_tracker_sees_a_cache_behind_our_writes():
    t = SliceTracker()
    es = kinds.new("EndpointSlice")
    es.metadata.name, es.metadata.resource_version = "web-abc", "7"
    t.wrote("default/web", es)
    assert t.stale("default/web", [])
    old = codec.copy(es)
    old.metadata.resource_version = "5"
    assert t.stale("default/web", [old]) and not t.stale("default/web", [es])
    t.deleted("default/web", "web-abc")
    assert t.stale("default/web", [es]) and not t.stale("default/web", [])


async def test_controller_writes_slices_follows_pods_and_deletes_them_with_the_service():
    async with harness(lambda h: EndpointSliceController(h.client, h.factory, max_endpoints_per_slice=2)) as (h, c):
        await h.client.create(service())
        for i in range(3):
            p = await h.client.create(pod(f"p{i}"))
            await h.client.update_status(set_ready(p, True, 0, ip=f"10.0.0.{i + 1}"))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        slices = h.client.objects("EndpointSlice")
        assert sorted(len(es.endpoints) for es in slices) == [1, 2]
        assert addresses(slices) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        assert all(es.metadata.labels[MANAGED_BY_LABEL] == CONTROLLER_NAME for es in slices)
        await c.sync("default/web")                       # steady: nothing written
        assert [es.metadata.resource_version for es in h.client.objects("EndpointSlice")] == \
            [es.metadata.resource_version for es in slices]
        # a slice of someone else's is left alone
        mine = kinds.new("EndpointSlice")
        mine.metadata.name, mine.metadata.namespace, mine.address_type = "manual", "default", "IPv4"
        mine.metadata.labels[SERVICE_NAME_LABEL] = "web"
        await h.client.create(mine)
        await h.client.delete("Service", "web", "default")
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        assert [es.metadata.name for es in h.client.objects("EndpointSlice")] == ["manual"]


async def test_endpoints_controller_sets_hostname_for_the_subdomain_rule():
    async with harness(lambda h: EndpointsController(h.client, h.factory)) as (h, c):
        await h.client.create(service())
        for name, sub, ip in (("a", "web", "10.0.0.1"), ("b", "nope", "10.0.0.2")):
            p = pod(name)
            p.spec.hostname, p.spec.subdomain = f"host-{name}", sub
            p = await h.client.create(p)
            await h.client.update_status(set_ready(p, True, 0, ip=ip))
        await h.settle()
        await c.sync("default/web")
        ep = h.client.stored("Endpoints", "web")
        assert {a.ip: a.hostname for a in ep.subsets[0].addresses} == {"10.0.0.1": "host-a", "10.0.0.2": ""}


def _slice(**kw):
    es = kinds.new("EndpointSlice")
    es.metadata.name, es.metadata.namespace = "web-x", "default"
    es.address_type = kw.get("address_type", "IPv4")
    return es


def test_validation_follows_kubernetes():
    es = _slice()
    es.endpoints.add(addresses=["10.0.0.1"], hostname="ok", node_name="n1")
    es.ports.add(name="http", port=80, protocol="TCP")
    assert validation.validate(es) == []
    bad = _slice(address_type="IPv5")
    bad.endpoints.add(addresses=[])
    bad.endpoints.add(addresses=["::1"], hostname="Not_A_Label")
    bad.ports.add(name="a", port=0, protocol="TCP")
    bad.ports.add(name="a", port=80, protocol="ICMP")
    bad.ports.add(name="b", port=81)
    errs = {(f.field, f.type) for f in validation.validate(bad)}
    assert errs == {("addressType", "NotSupported"), ("endpoints[0].addresses", "Required"),
                    ("endpoints[1].hostname", "Invalid"), ("ports[0].port", "Invalid"),
                    ("ports[1].name", "Duplicate"), ("ports[1].protocol", "NotSupported"),
                    ("ports[2].protocol", "Required")}
    v4 = _slice()
    v4.endpoints.add(addresses=["fe80::1"])
    assert [str(f) for f in validation.validate(v4)] == \
        ['endpoints[0].addresses[0]: Invalid value: "fe80::1": must be a valid IPv4 address']
    many = _slice()
    for i in range(1001):
        many.endpoints.add(addresses=[f"10.0.{i // 250}.{i % 250 + 1}"])
    assert [str(f) for f in validation.validate(many)] == ["endpoints: Too many: 1001: must have at most 1000 items"]
    changed = codec.copy(es)
    changed.address_type = "IPv6"
    changed.ClearField("endpoints")
    assert [f.field for f in validation.validate(changed, es)] == ["addressType"]


def test_kctl_table_has_kubectls_columns():
    es = _slice()
    es.metadata.creation_timestamp.seconds = int(time.time()) - 90
    for i in range(5):
        es.endpoints.add(addresses=[f"10.0.0.{i + 1}"])
    es.ports.add(name="http", port=8080, protocol="TCP")
    es.ports.add(name="named", protocol="TCP")
    empty = _slice()
    empty.metadata.name = "web-y"
    empty.metadata.creation_timestamp.seconds = int(time.time()) - 90
    assert printers.table("EndpointSlice", [es, empty]).splitlines() == [
        "NAME    ADDRESSTYPE   PORTS        ENDPOINTS                                AGE",
        "web-x   IPv4          8080,named   10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...   90s",
        "web-y   IPv4          <unset>      <unset>                                  90s",
    ]
    assert kinds.resolve("endpointslices").api_version == "discovery.k8s.io/v1"
    assert isinstance(kinds.new("EndpointSlice"), discovery_pb2.EndpointSlice)


async def test_mirroring_copies_hand_written_endpoints_of_selectorless_services():
    from controllers.endpointslicemirroring import MIRRORING_CONTROLLER, EndpointSliceMirroringController
    from tests.unit.test_dns_feed import endpoints
    async with harness(lambda h: EndpointSliceMirroringController(h.client, h.factory)) as (h, c):
        svc = service("db")
        svc.spec.selector.clear()
        await h.client.create(svc)
        await h.client.create(endpoints("db", [("10.0.0.5", "db-0")], not_ready=["10.0.0.6"]))
        await h.settle()
        await c.sync("default/db")
        await h.settle()
        [es] = h.client.objects("EndpointSlice")
        assert es.metadata.labels[MANAGED_BY_LABEL] == MIRRORING_CONTROLLER
        assert es.metadata.labels[SERVICE_NAME_LABEL] == "db"
        assert [(e.addresses[0], e.conditions.ready, e.hostname) for e in es.endpoints] == \
            [("10.0.0.5", True, "db-0"), ("10.0.0.6", False, "")]
        # Endpoints written by the Endpoints controller carry skip-mirror: their mirror goes
        ep = h.client.stored("Endpoints", "db")
        ep.metadata.labels["endpointslice.kubernetes.io/skip-mirror"] = "true"
        await h.client.update(ep)
        await h.settle()
        await c.sync("default/db")
        await h.settle()
        assert h.client.objects("EndpointSlice") == []


async def test_endpoints_never_written_from_a_cache_behind_our_own_write():
    """Kubernetes' staleEndpointsTracker: a sync whose cache has not seen our last write comes back
    later instead of sending an update the apiserver would refuse with a Conflict."""
    async with harness(lambda h: EndpointsController(h.client, h.factory)) as (h, c):
        await h.client.create(service())
        p = await h.client.create(pod("a"))
        await h.client.update_status(set_ready(p, True, 0, ip="10.0.0.1"))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        await h.client.update_status(set_ready(h.client.stored("Pod", "a"), False, 0, ip="10.0.0.1"))
        await h.settle()
        await c.sync("default/web")                           # writes: a is not ready
        written = h.client.stored("Endpoints", "web").metadata.resource_version
        behind = codec.copy(h.client.stored("Endpoints", "web"))
        behind.metadata.resource_version = str(int(written) - 1)
        c.ep_inf._set(behind)                                 # the watch event of our write not in yet
        await h.client.update_status(set_ready(h.client.stored("Pod", "a"), True, 0, ip="10.0.0.1"))
        c.pod_inf._set(h.client.stored("Pod", "a"))
        await c.sync("default/web")                           # stale: no update sent, no Conflict
        assert h.client.stored("Endpoints", "web").metadata.resource_version == written
        await h.settle()
        await c.sync("default/web")
        assert [a.ip for a in h.client.stored("Endpoints", "web").subsets[0].addresses] == ["10.0.0.1"]


async def test_objects_deleted_by_someone_else_are_made_again():
    async with harness(lambda h: EndpointsController(h.client, h.factory),
                       lambda h: EndpointSliceController(h.client, h.factory)) as (h, ep, es):
        await h.client.create(service())
        p = await h.client.create(pod("a"))
        await h.client.update_status(set_ready(p, True, 0, ip="10.0.0.1"))
        await h.settle()
        await ep.sync("default/web")
        await es.sync("default/web")
        await h.settle()
        await h.client.delete("Endpoints", "web", "default")
        for s in h.client.objects("EndpointSlice"):
            await h.client.delete("EndpointSlice", s.metadata.name, "default")
        await h.settle()
        await ep.sync("default/web")
        await es.sync("default/web")
        await h.settle()
        assert [a.ip for a in h.client.stored("Endpoints", "web").subsets[0].addresses] == ["10.0.0.1"]
        assert addresses(h.client.objects("EndpointSlice")) == ["10.0.0.1"]


def test_tracker_keeps_nothing_of_services_it_forgot():
    t = SliceTracker()
    t.seen_deleted("default/gone", "gone-abc")              # never written by us: nothing to track
    assert t._written == {}
    es = kinds.new("EndpointSlice")
    es.metadata.name, es.metadata.resource_version = "web-abc", "7"
    t.wrote("default/web", es)
    t.seen_deleted("default/web", "web-abc")                # deleted by someone else: not stale
    assert not t.stale("default/web", [])
    t.forget("default/web")
    t.seen_deleted("default/web", "web-abc")                # the event after our own delete_all
    assert t._written == {}
