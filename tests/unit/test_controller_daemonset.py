"""DaemonSet controller: per-node decisions pinned to Kubernetes'
daemon_controller_test.go / update_test.go cases, and syncs on the FakeClient."""
from machinery import codec, kinds, workloads

from controllers import daemonset_util as du
from controllers.daemonset import DaemonSetController
from tests.unit.test_controller_helpers import Clock, harness, set_ready


def node(name, labels=None, taints=()):
    n = kinds.new("Node")
    n.metadata.name = name
    n.metadata.labels.update(labels or {})
    for key, effect in taints:
        n.spec.taints.add(key=key, effect=effect)
    return n


def ds_obj(name="agent", image="agent:v1", surge=0, unavailable=1, strategy="RollingUpdate"):
    d = kinds.new("DaemonSet")
    d.metadata.name, d.metadata.namespace, d.metadata.generation = name, "default", 1
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image=image)
    d.spec.update_strategy.type = strategy
    if strategy == "RollingUpdate":
        d.spec.update_strategy.rolling_update.max_surge.int_val = surge
        d.spec.update_strategy.rolling_update.max_unavailable.int_val = unavailable
    d.spec.revision_history_limit = 10
    return d


# --------------------------------------------------------------- decisions

def test_daemon_pods_get_the_automatic_tolerations_and_a_node_pin():
    """NewPod: AddOrUpdateDaemonPodTolerations (every automatic toleration) and
    ReplaceDaemonSetPodNodeNameNodeAffinity (one metadata.name term)."""
    ds = ds_obj()
    ds.spec.template.spec.host_network = True
    pod = du.new_pod(ds, "n7", "h1")
    tols = {(t.key, t.operator, t.effect) for t in pod.spec.tolerations}
    assert tols == {("node.kubernetes.io/not-ready", "Exists", "NoExecute"),
                    ("node.kubernetes.io/unreachable", "Exists", "NoExecute"),
                    ("node.kubernetes.io/disk-pressure", "Exists", "NoSchedule"),
                    ("node.kubernetes.io/memory-pressure", "Exists", "NoSchedule"),
                    ("node.kubernetes.io/pid-pressure", "Exists", "NoSchedule"),
                    ("node.kubernetes.io/unschedulable", "Exists", "NoSchedule"),
                    ("node.kubernetes.io/network-unavailable", "Exists", "NoSchedule")}
    [term] = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert [(f.key, f.operator, list(f.values)) for f in term.match_fields] == [("metadata.name", "In", ["n7"])]
    assert du.target_node(pod) == "n7" and not pod.spec.node_name
    assert pod.metadata.labels[workloads.CONTROLLER_REVISION_HASH] == "h1"


def test_should_run_follows_selectors_affinity_and_taints():
    """TestNodeShouldRunDaemonPod's kinds of cases: a nodeSelector mismatch, a NoSchedule taint (no
    new pod, an existing one stays), a NoExecute taint (both false), a tolerated not-ready taint,
    required node affinity."""
    ds = ds_obj()
    assert du.should_run(node("a"), ds) == (True, True)
    ds.spec.template.spec.node_selector["disk"] = "ssd"
    assert du.should_run(node("a"), ds) == (False, False)
    assert du.should_run(node("a", {"disk": "ssd"}), ds) == (True, True)
    ds = ds_obj()
    assert du.should_run(node("a", taints=[("dedicated", "NoSchedule")]), ds) == (False, True)
    assert du.should_run(node("a", taints=[("dedicated", "NoExecute")]), ds) == (False, False)
    assert du.should_run(node("a", taints=[("node.kubernetes.io/not-ready", "NoExecute")]), ds) == (True, True)
    ds.spec.template.spec.tolerations.add(key="dedicated", operator="Exists")
    assert du.should_run(node("a", taints=[("dedicated", "NoExecute")]), ds) == (True, True)
    aff = ds.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    aff.node_selector_terms.add().match_expressions.add(key="zone", operator="In", values=["z1"])
    assert du.should_run(node("a", {"zone": "z2"}), ds) == (False, False)


def test_revision_data_and_hash():
    """getPatch / HashControllerRevision: the data replaces the template; a collision count changes
    the hash; the template comes back out of the data."""
    ds = ds_obj()
    data = du.patch_of(ds)
    assert data["spec"]["template"]["$patch"] == "replace"
    h = du.revision_hash(data)
    assert h == du.revision_hash(du.patch_of(ds_obj())) and h != du.revision_hash(data, 1)
    cr = kinds.new("ControllerRevision")
    cr.data.CopyFrom(data)
    assert du.template_from_revision(cr) == ds.spec.template


# ------------------------------------------------------------------- syncs

def dsc(h):
    return DaemonSetController(h.client, h.factory, clock=h.clock)


async def run(h, c):
    await h.settle()
    await c.sync("default/agent")
    await h.settle()


def live(h):
    return [p for p in h.objs("Pod") if not p.metadata.HasField("deletion_timestamp")]


def per_node(h):
    out = {}
    for p in live(h):
        out.setdefault(du.target_node(p), []).append(p)
    return out


async def kubelet(h):
    """Bind, run and ready every pod; finish graceful deletions."""
    for p in h.objs("Pod"):
        if p.metadata.HasField("deletion_timestamp"):
            await h.client.delete("Pod", p.metadata.name, "default", grace_period=0)
        elif p.status.phase != "Running":
            p.spec.node_name = du.target_node(p)
            await h.client.update(p)
            fresh = h.client.stored("Pod", p.metadata.name)
            await h.client.update_status(set_ready(fresh, True, h.clock(), node=du.target_node(p)))
    await h.settle()


async def test_one_pod_per_node_follows_nodes_coming_and_going():
    """TestSimpleDaemonSetLaunchesPods, TestOneNodeDaemonLaunchesPod, TestSelectorDaemonDeletesUnselectedPods,
    and a deleted node losing its pod (getUnscheduledPodsWithoutNode)."""
    async with harness(dsc, clock=Clock()) as (h, c):
        for n in ("n1", "n2", "n3"):
            await h.client.create(node(n))
        await h.client.create(ds_obj())
        await run(h, c)
        assert {k: len(v) for k, v in per_node(h).items()} == {"n1": 1, "n2": 1, "n3": 1}
        [cr] = h.objs("ControllerRevision")
        assert cr.revision == 1 and all(p.metadata.labels[workloads.CONTROLLER_REVISION_HASH]
                                        == cr.metadata.labels[workloads.CONTROLLER_REVISION_HASH] for p in live(h))
        await kubelet(h)
        await run(h, c)
        st = h.objs("DaemonSet")[0].status
        assert (st.desired_number_scheduled, st.current_number_scheduled, st.number_ready,
                st.updated_number_scheduled, st.number_available, st.number_unavailable) == (3, 3, 3, 3, 3, 0)
        await h.client.create(node("n4"))
        await run(h, c)
        assert set(per_node(h)) == {"n1", "n2", "n3", "n4"}
        ds = h.objs("DaemonSet")[0]
        ds.spec.template.spec.node_selector["role"] = "edge"
        n1 = h.client.stored("Node", "n1", "")
        n1.metadata.labels["role"] = "edge"
        await h.client.update(n1)
        await h.client.update(ds)
        for _ in range(4):                  # delete elsewhere, replace n1's pod (maxUnavailable 1)
            await run(h, c)
            await kubelet(h)
        assert set(per_node(h)) == {"n1"} and len(live(h)) == 1
        await h.client.delete("Node", "n1", "")
        await run(h, c)
        assert not live(h)


async def test_noexecute_taint_evicts_and_failed_pods_are_replaced():
    """TestTaintedNodeDaemonDoesNotLaunchIntolerantPod / TestDaemonKillFailedPods."""
    async with harness(dsc, clock=Clock()) as (h, c):
        await h.client.create(node("n1"))
        await h.client.create(node("n2", taints=[("dedicated", "NoSchedule")]))
        await h.client.create(ds_obj())
        await run(h, c)
        assert set(per_node(h)) == {"n1"}
        await kubelet(h)
        [p] = live(h)
        p.status.phase = "Failed"
        await h.client.update_status(p)
        await run(h, c)
        await kubelet(h)
        await run(h, c)
        [q] = live(h)
        assert q.metadata.uid != p.metadata.uid
        n1 = h.client.stored("Node", "n1", "")
        n1.spec.taints.add(key="dedicated", effect="NoExecute")
        await h.client.update(n1)
        await run(h, c)
        assert not live(h)


async def test_rolling_update_respects_max_unavailable_and_undo_reuses_the_revision():
    """TestDaemonSetUpdatesPods (maxUnavailable 1: one node at a time) and constructHistory's
    rollback case (the old revision gets the next number)."""
    async with harness(dsc, clock=Clock()) as (h, c):
        for n in ("n1", "n2", "n3"):
            await h.client.create(node(n))
        await h.client.create(ds_obj())
        await run(h, c)
        await kubelet(h)
        ds = h.objs("DaemonSet")[0]
        ds.spec.template.spec.containers[0].image = "agent:v2"
        await h.client.update(ds)
        rounds = 0
        while True:
            await run(h, c)
            images = [p.spec.containers[0].image for p in live(h)]
            assert images.count("agent:v1") >= 2 - rounds or rounds >= 2
            unavailable = 3 - sum(1 for p in live(h) if p.status.phase == "Running")
            assert unavailable <= 1
            await kubelet(h)
            rounds += 1
            if sorted(p.spec.containers[0].image for p in live(h)) == ["agent:v2"] * 3 and \
                    len(live(h)) == 3 and all(p.status.phase == "Running" for p in live(h)):
                break
            assert rounds < 20
        revs = sorted((cr.revision, du.template_from_revision(cr).spec.containers[0].image)
                      for cr in h.objs("ControllerRevision"))
        assert revs == [(1, "agent:v1"), (2, "agent:v2")]
        ds = h.objs("DaemonSet")[0]
        ds.spec.template.CopyFrom(du.template_from_revision(
            next(cr for cr in h.objs("ControllerRevision") if cr.revision == 1)))
        await h.client.update(ds)
        await run(h, c)
        revs = sorted((cr.revision, du.template_from_revision(cr).spec.containers[0].image)
                      for cr in h.objs("ControllerRevision"))
        assert revs == [(2, "agent:v2"), (3, "agent:v1")]


async def test_max_surge_starts_the_new_pod_before_deleting_the_old():
    """TestDaemonSetUpdatesPodsWithMaxSurge: with maxSurge 1 a node briefly runs old and new."""
    async with harness(dsc, clock=Clock()) as (h, c):
        await h.client.create(node("n1"))
        await h.client.create(ds_obj(surge=1, unavailable=0))
        await run(h, c)
        await kubelet(h)
        ds = h.objs("DaemonSet")[0]
        ds.spec.template.spec.containers[0].image = "agent:v2"
        await h.client.update(ds)
        await run(h, c)
        assert sorted(p.spec.containers[0].image for p in live(h)) == ["agent:v1", "agent:v2"]
        await kubelet(h)
        await run(h, c)
        await kubelet(h)
        assert [p.spec.containers[0].image for p in live(h)] == ["agent:v2"]


async def test_on_delete_replaces_only_deleted_pods():
    """OnDelete (TestDaemonSetUpdatesPods with OnDelete): no pod is touched until it is deleted."""
    async with harness(dsc, clock=Clock()) as (h, c):
        await h.client.create(node("n1"))
        await h.client.create(ds_obj(strategy="OnDelete"))
        await run(h, c)
        await kubelet(h)
        ds = h.objs("DaemonSet")[0]
        ds.spec.template.spec.containers[0].image = "agent:v2"
        await h.client.update(ds)
        await run(h, c)
        [p] = live(h)
        assert p.spec.containers[0].image == "agent:v1"
        await h.client.delete("Pod", p.metadata.name, "default", grace_period=0)
        await run(h, c)
        assert [q.spec.containers[0].image for q in live(h)] == ["agent:v2"]
        assert codec.copy(h.objs("DaemonSet")[0]).status.updated_number_scheduled == 0
