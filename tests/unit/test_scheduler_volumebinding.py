"""VolumeBinding's decisions, with kube-scheduler's volume_binding_test.go case names."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from machinery import kinds
from machinery.fakeclient import FakeClient
from scheduler import hollow
from scheduler.algorithm import Algorithm
from scheduler.cache import NodeCache
from scheduler.cycle_state import CycleState
from scheduler.framework import Code, pod_info
from scheduler.plugins.volumebinding import (ERR_BIND_CONFLICT, ERR_NODE_CONFLICT, ERR_PV_NOT_EXIST, SELECTED_NODE,
                                             StorageListers, VolumeBinding)
from scheduler.snapshot import Snapshot

WAIT, IMMEDIATE, PROVISIONED = "wait-sc", "immediate-sc", "local-path"


class Store:
    """An informer's get/list over a FakeClient's stored objects."""

    def __init__(self, client, kind):
        self.client, self.kind = client, kind

    def get(self, ns, name):
        return self.client.stored(self.kind, name, ns or "")

    def list(self):
        return self.client.objects(self.kind)


def sc(name, mode="WaitForFirstConsumer", provisioner="kubernetes.io/no-provisioner"):
    s = kinds.new("StorageClass")
    s.metadata.name, s.provisioner, s.volume_binding_mode = name, provisioner, mode
    return s


def pvc(name, cls=WAIT, bound="", phase="", size="1Gi", selected=""):
    c = kinds.new("PersistentVolumeClaim")
    c.metadata.name, c.metadata.namespace = name, "default"
    c.spec.storage_class_name = cls
    c.spec.access_modes.append("ReadWriteOnce")
    c.spec.resources.requests["storage"] = size
    c.spec.volume_name = bound
    c.status.phase = phase or ("Bound" if bound else "Pending")
    if selected:
        c.metadata.annotations[SELECTED_NODE] = selected
    return c


def pv(name, cls=WAIT, affinity=None, size="1Gi", phase="Available"):
    v = kinds.new("PersistentVolume")
    v.metadata.name = name
    v.spec.storage_class_name = cls
    v.spec.access_modes.append("ReadWriteOnce")
    v.spec.capacity["storage"] = size
    v.spec.host_path.path = f"/data/{name}"
    v.status.phase = phase
    for key, values in (affinity or {}).items():
        term = v.spec.node_affinity.required.node_selector_terms.add()
        term.match_expressions.add(key=key, operator="In", values=values)
    return v


def pod_with(*claims):
    p = hollow.pod("pod-a")
    for c in claims:
        p.spec.volumes.add(name=c).persistent_volume_claim.claim_name = c
    return p


def setup(pvcs=(), pvs=(), nodes=("node-a",), node_labels=None):
    client = FakeClient()
    client.seed(sc(WAIT), sc(IMMEDIATE, mode="Immediate"), sc(PROVISIONED, provisioner="kctl.io/local-path"),
                *pvcs, *pvs)
    cache = NodeCache()
    for n in nodes:
        cache.set_node(hollow.node(n, labels=(node_labels or {}).get(n)))
    storage = StorageListers(client, Store(client, "PersistentVolumeClaim"), Store(client, "PersistentVolume"),
                             Store(client, "StorageClass"))
    return client, cache, VolumeBinding(storage, bind_timeout=2.0)


def decide(plugin, cache, p):
    """(PreFilter status, per-node filter reasons)."""
    state, snap, pi = CycleState(), Snapshot(cache), pod_info(p)
    st = plugin.pre_filter(state, pi, snap)
    if not st.ok:
        return st, {}
    return st, {name: plugin.filter_node(state, pi, snap, name).reasons for name in cache.index}


def test_pod_has_not_pvcs():
    _, cache, plugin = setup()
    state = CycleState()
    assert plugin.pre_filter(state, pod_info(hollow.pod("pod-a")), Snapshot(cache)).ok
    assert state.read(plugin.STATE_KEY) is None                  # skipped: Filter answers at once
    mask = np.ones(1, dtype=bool)
    assert plugin.feasible(state, pod_info(hollow.pod("pod-a")), Snapshot(cache), mask) is mask


def test_all_bound():
    _, cache, plugin = setup([pvc("pvc-a", bound="pv-a")], [pv("pv-a")])
    st, v = decide(plugin, cache, pod_with("pvc-a"))
    assert st.ok and v == {"node-a": ()}


@pytest.mark.parametrize("name, claims, message", [
    ("PVC does not exist", [], 'persistentvolumeclaim "pvc-a" not found'),
    ("Part of PVCs do not exist", [pvc("pvc-a", bound="pv-a")], 'persistentvolumeclaim "pvc-b" not found'),
    ("immediate claims not bound", [pvc("pvc-a", cls=IMMEDIATE), pvc("pvc-b", cls=IMMEDIATE)],
     "pod has unbound immediate PersistentVolumeClaims"),
    ("pv not found claim lost", [pvc("pvc-a", bound="pv-a", phase="Lost"), pvc("pvc-b", bound="pv-a", phase="Lost")],
     'persistentvolumeclaim "pvc-a" bound to non-existent persistentvolume "pv-a"'),
])
def test_pre_filter_rejections(name, claims, message):
    _, cache, plugin = setup(claims, [pv("pv-a")] if "Part" in name else [])
    st, _ = decide(plugin, cache, pod_with("pvc-a", "pvc-b"))
    assert st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE and st.reasons == (message,), name


def test_unbound_claims_no_matches():
    _, cache, plugin = setup([pvc("pvc-a")])
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {"node-a": (ERR_BIND_CONFLICT,)}


def test_bound_and_unbound_unsatisfied():
    _, cache, plugin = setup([pvc("pvc-a", bound="pv-a"), pvc("pvc-b")], [pv("pv-a", affinity={"foo": ["bar"]})],
                             node_labels={"node-a": {"foo": "barbar"}})
    assert decide(plugin, cache, pod_with("pvc-a", "pvc-b"))[1] == {"node-a": (ERR_NODE_CONFLICT, ERR_BIND_CONFLICT)}


def test_pv_not_found():
    _, cache, plugin = setup([pvc("pvc-a", bound="pv-a")])
    st, v = decide(plugin, cache, pod_with("pvc-a"))
    assert st.ok and v == {"node-a": (ERR_PV_NOT_EXIST,)}


def test_bound_volume_node_affinity_picks_its_node():
    _, cache, plugin = setup([pvc("pvc-a", bound="pv-a")], [pv("pv-a", affinity={"kubernetes.io/hostname": ["node-b"]})],
                             nodes=("node-a", "node-b", "node-c"))
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {
        "node-a": (ERR_NODE_CONFLICT,), "node-b": (), "node-c": (ERR_NODE_CONFLICT,)}


def test_local_volumes_match_only_their_nodes():
    """'local volumes with close capacity are preferred', filter half: node-c has no fitting volume."""
    _, cache, plugin = setup([pvc("pvc-a", size="50Gi")],
                             [pv("pv-a-0", size="200Gi", affinity={"kubernetes.io/hostname": ["node-a"]}),
                              pv("pv-b-0", size="100Gi", affinity={"kubernetes.io/hostname": ["node-b"]}),
                              pv("pv-c-small", size="10Gi", affinity={"kubernetes.io/hostname": ["node-c"]})],
                             nodes=("node-a", "node-b", "node-c"))
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {"node-a": (), "node-b": (), "node-c": (ERR_BIND_CONFLICT,)}


def test_provisioned_claims_fit_every_node_until_a_node_is_selected():
    _, cache, plugin = setup([pvc("pvc-a", cls=PROVISIONED)], nodes=("node-a", "node-b"))
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {"node-a": (), "node-b": ()}
    _, cache, plugin = setup([pvc("pvc-a", cls=PROVISIONED, selected="node-b")], nodes=("node-a", "node-b"))
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {"node-a": (ERR_BIND_CONFLICT,), "node-b": ()}


def test_data_on_a_dead_node_keeps_the_pod_pending_with_the_reasons():
    client, cache, plugin = setup([pvc("pvc-a", bound="pv-a")],
                                  [pv("pv-a", affinity={"kubernetes.io/hostname": ["node-a"]})], nodes=("node-b",))
    cache.set_node(hollow.node("node-a", ready="Unknown"))
    algo = Algorithm(cache, storage=plugin.storage)
    res = algo.schedule(pod_info(pod_with("pvc-a")))
    assert res.node is None
    assert res.message() == ("0/2 nodes are available: 1 node(s) had untolerated taint "
                             "{node.kubernetes.io/unreachable: }, 1 node(s) had volume node affinity conflict.")


async def test_pre_bind_selects_the_node_and_waits_for_the_binding():
    client, cache, plugin = setup([pvc("pvc-a", cls=PROVISIONED)], nodes=("node-a", "node-b"))
    state, pi = CycleState(), pod_info(pod_with("pvc-a"))
    assert plugin.pre_filter(state, pi, Snapshot(cache)).ok
    task = asyncio.ensure_future(plugin.pre_bind(state, pi, "node-b"))
    for _ in range(50):
        await asyncio.sleep(0.02)
        claim = client.stored("PersistentVolumeClaim", "pvc-a")
        if claim.metadata.annotations.get(SELECTED_NODE):
            break
    assert claim.metadata.annotations[SELECTED_NODE] == "node-b" and not task.done()
    claim.spec.volume_name, claim.status.phase = "pvc-uid", "Bound"      # what the PV controller does
    client.seed(claim)
    assert (await task).ok


async def test_pre_bind_times_out():
    _, cache, plugin = setup([pvc("pvc-a", cls=PROVISIONED)])
    plugin.bind_timeout = 0.3
    state, pi = CycleState(), pod_info(pod_with("pvc-a"))
    plugin.pre_filter(state, pi, Snapshot(cache))
    st = await plugin.pre_bind(state, pi, "node-a")
    assert st.code == Code.ERROR and "timed out waiting for the condition" in st.message()
    bound_state = CycleState()
    _, cache, plugin = setup([pvc("pvc-a", bound="pv-a")], [pv("pv-a")])
    plugin.pre_filter(bound_state, pi, Snapshot(cache))
    assert plugin.pre_bind(bound_state, pi, "node-a").ok          # nothing to bind: synchronous


class Binder:
    def __init__(self):
        self.items, self.results = [], []

    def submit(self, item):
        self.items.append(item)

    def on_result(self, item, err):
        self.results.append((item.name, item.node, str(err)))


async def test_framework_binds_after_an_asynchronous_pre_bind_or_reports_its_failure():
    client, cache, plugin = setup([pvc("pvc-a", cls=PROVISIONED)])
    binder = Binder()
    algo = Algorithm(cache, storage=plugin.storage, binder=binder)
    algo.framework.pre_binds[0].bind_timeout = 0.3
    pi = pod_info(pod_with("pvc-a"))
    res = algo.schedule(pi)
    assert res.node == "node-a" and algo.bind(res, pi, {}, "ctx").ok and binder.items == []
    await asyncio.wait_for(asyncio.gather(*algo.framework._binding), 5)
    assert binder.items == [] and binder.results == [
        ("pod-a", "node-a", "VolumeBinding: binding volumes: timed out waiting for the condition (0.3s)")]
    claim = client.stored("PersistentVolumeClaim", "pvc-a")
    claim.spec.volume_name, claim.status.phase = "pv-x", "Bound"
    client.seed(claim, pv("pv-x", cls=PROVISIONED, phase="Bound"))
    res = algo.schedule(pod_info(pod_with("pvc-a")))
    assert algo.bind(res, pi, {}, "ctx").ok and [i.node for i in binder.items] == ["node-a"]   # bound: at once


def zonal_class(name="zonal", *terms):
    """A local-path class whose allowedTopologies are `terms` ({label: [values]} each)."""
    s = sc(name, provisioner="kctl.io/local-path")
    for term in terms:
        t = s.allowed_topologies.add()
        for key, values in term.items():
            t.match_label_expressions.add(key=key, values=values)
    return s


ZONE = "topology.kubernetes.io/zone"


def test_allowed_topologies_restrict_where_a_volume_can_be_provisioned():
    """checkVolumeProvisions: a node outside the class's topologies cannot get a new volume."""
    nodes = ("node-a", "node-b", "node-c", "node-d")
    labels = {"node-a": {ZONE: "a"}, "node-b": {ZONE: "b"}, "node-c": {ZONE: "c", "rack": "r1"}}
    client, cache, plugin = setup([pvc("pvc-a", cls="zonal")], nodes=nodes, node_labels=labels)
    client.seed(zonal_class("zonal", {ZONE: ["a", "b"]}, {ZONE: ["c"], "rack": ["r2"]}))
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {
        "node-a": (), "node-b": (), "node-c": (ERR_BIND_CONFLICT,), "node-d": (ERR_BIND_CONFLICT,)}


def test_allowed_topologies_do_not_restrict_existing_volumes():
    """An available volume of the class may serve the claim on its own node, outside the topologies."""
    client, cache, plugin = setup([pvc("pvc-a", cls="zonal")],
                                  [pv("pv-b", cls="zonal", affinity={"kubernetes.io/hostname": ["node-b"]})],
                                  nodes=("node-a", "node-b", "node-c"),
                                  node_labels={"node-a": {ZONE: "a"}, "node-b": {ZONE: "b"}})
    client.seed(zonal_class("zonal", {ZONE: ["a"]}))
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {
        "node-a": (), "node-b": (), "node-c": (ERR_BIND_CONFLICT,)}


def test_no_allowed_topologies_admit_every_node():
    client, cache, plugin = setup([pvc("pvc-a", cls="zonal")], nodes=("node-a", "node-b"),
                                  node_labels={"node-a": {ZONE: "a"}})
    client.seed(zonal_class("zonal"))
    assert decide(plugin, cache, pod_with("pvc-a"))[1] == {"node-a": (), "node-b": ()}
