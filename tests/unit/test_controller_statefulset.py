"""StatefulSet controller: decisions pinned to Kubernetes' stateful_set_utils_test.go and
stateful_set_control_test.go cases, and syncs on the FakeClient (a hand-run kubelet readies pods)."""
from machinery import codec, kinds

from controllers import statefulset_util as su
from controllers.statefulset import StatefulSetController
from tests.unit.test_controller_helpers import Clock, harness, set_ready


def sts_obj(name="web", replicas=3, image="nginx:1", policy="OrderedReady", strategy="RollingUpdate",
            partition=None, claims=("www",), when_deleted="Retain", when_scaled="Retain"):
    s = kinds.new("StatefulSet")
    s.metadata.name, s.metadata.namespace, s.metadata.generation = name, "default", 1
    s.spec.replicas, s.spec.service_name, s.spec.pod_management_policy = replicas, "nginx", policy
    s.spec.selector.match_labels["app"] = name
    s.spec.template.metadata.labels["app"] = name
    c = s.spec.template.spec.containers.add(name="main", image=image)
    s.spec.update_strategy.type = strategy
    if partition is not None:
        s.spec.update_strategy.rolling_update.partition = partition
    for claim in claims:
        t = s.spec.volume_claim_templates.add()
        t.metadata.name = claim
        t.spec.access_modes.append("ReadWriteOnce")
        t.spec.resources.requests["storage"] = "1Gi"
        c.volume_mounts.add(name=claim, mount_path=f"/{claim}")
    s.spec.persistent_volume_claim_retention_policy.when_deleted = when_deleted
    s.spec.persistent_volume_claim_retention_policy.when_scaled = when_scaled
    s.spec.revision_history_limit = 10
    return s


# --------------------------------------------------------------- decisions

def test_new_pod_identity_and_storage():
    """TestUpdateIdentity / TestUpdateStorage / TestGetPersistentVolumeClaims / TestNewStatefulSetPod: name
    SET-ORD, hostname and subdomain, the pod-name and pod-index labels, one PVC per template named
    TEMPLATE-SET-ORD carrying the selector's labels, replacing a template volume of the same name."""
    s = sts_obj()
    s.spec.template.spec.volumes.add(name="www").empty_dir.SetInParent()
    s.spec.template.spec.volumes.add(name="cache").empty_dir.SetInParent()
    pod = su.new_pod(s, 2)
    assert (pod.metadata.name, pod.spec.hostname, pod.spec.subdomain) == ("web-2", "web-2", "nginx")
    assert pod.metadata.labels[su.POD_NAME_LABEL] == "web-2" and pod.metadata.labels[su.POD_INDEX_LABEL] == "2"
    assert pod.metadata.owner_references[0].kind == "StatefulSet" and pod.metadata.owner_references[0].controller
    vols = {v.name: v for v in pod.spec.volumes}
    assert vols["www"].persistent_volume_claim.claim_name == "www-web-2" and vols["cache"].HasField("empty_dir")
    [claim] = su.claims_for(s, 2).values()
    assert claim.metadata.name == "www-web-2" and dict(claim.metadata.labels) == {"app": "web"}
    assert su.identity_matches(s, pod) and su.storage_matches(s, pod)
    pod.metadata.labels[su.POD_NAME_LABEL] = "web-9"
    assert not su.identity_matches(s, pod)
    pod.spec.volumes[0].persistent_volume_claim.claim_name = "other"
    assert not su.storage_matches(s, pod)
    su.update_identity(s, pod)
    su.update_storage(s, pod)
    assert su.identity_matches(s, pod) and su.storage_matches(s, pod)


def test_ordinals_and_membership():
    """TestGetParentNameAndOrdinal / TestIsMemberOf / podInOrdinalRange with spec.ordinals.start."""
    s = sts_obj(replicas=2)
    s.spec.ordinals.start = 3
    pod = su.new_pod(s, 4)
    assert su.parent_and_ordinal(pod) == ("web", 4) and su.in_ordinal_range(pod, s)
    assert not su.in_ordinal_range(su.new_pod(s, 5), s) and not su.in_ordinal_range(su.new_pod(s, 2), s)
    other = su.new_pod(sts_obj(name="web-x"), 1)
    assert not su.is_member_of(s, other)
    other.metadata.name = "web"
    assert su.parent_and_ordinal(other) == ("", -1)


def test_versioned_pod_below_the_partition_keeps_the_current_revision():
    """newVersionedStatefulSetPod: ordinals < partition at the current revision, the rest at the update one."""
    cur, upd = sts_obj(image="v1", partition=2), sts_obj(image="v2", partition=2)
    assert su.versioned_pod(cur, upd, "web-a", "web-b", 1).metadata.labels[su.REVISION_LABEL] == "web-a"
    p = su.versioned_pod(cur, upd, "web-a", "web-b", 2)
    assert p.metadata.labels[su.REVISION_LABEL] == "web-b" and p.spec.containers[0].image == "v2"


def test_claim_owner_refs_follow_the_retention_policy():
    """TestUpdateClaimOwnerRefForSetAndPod's four policy combinations, for a pod in range and a condemned one."""
    def refs(deleted, scaled, ordinal):
        s = sts_obj(replicas=2, when_deleted=deleted, when_scaled=scaled)
        s.metadata.uid = "set-uid"
        pod = su.new_pod(s, ordinal)
        pod.metadata.uid = f"pod-{ordinal}"
        claim = next(iter(su.claims_for(s, ordinal).values()))
        return sorted((r.kind, r.uid) for r in su.claim_owner_refs(claim, s, pod))
    assert refs("Retain", "Retain", 0) == [] and refs("Retain", "Retain", 5) == []
    assert refs("Delete", "Retain", 0) == [("StatefulSet", "set-uid")] == refs("Delete", "Retain", 5)
    assert refs("Retain", "Delete", 0) == [] and refs("Retain", "Delete", 5) == [("Pod", "pod-5")]
    assert refs("Delete", "Delete", 0) == [("StatefulSet", "set-uid")]
    assert refs("Delete", "Delete", 5) == [("Pod", "pod-5")]


def test_stale_claim_and_max_unavailable():
    """hasStaleOwnerRef (a claim owned by an earlier pod of the name) and getStatefulSetMaxUnavailable."""
    s = sts_obj(replicas=10)
    pod = su.new_pod(s, 1)
    claim = next(iter(su.claims_for(s, 1).values()))
    claim.metadata.owner_references.add(kind="Pod", name="web-1", uid="old")
    assert su.has_stale_owner_ref(claim, pod)
    pod.metadata.uid = "old"
    assert not su.has_stale_owner_ref(claim, pod)
    assert su.max_unavailable(s) is None
    s.spec.update_strategy.rolling_update.max_unavailable.str_val = "25%"
    assert su.max_unavailable(s) == 3
    s.spec.update_strategy.rolling_update.max_unavailable.int_val = 0
    assert su.max_unavailable(s) == 1


# ------------------------------------------------------------------- syncs

class Recorder:
    def __init__(self):
        self.seen = []

    def event(self, obj, type_, reason, message):
        self.seen.append((reason, message))


def ssc(h):
    return StatefulSetController(h.client, h.factory, Recorder(), clock=h.clock)


async def run(h, c, name="web"):
    await h.settle()
    await c.sync(f"default/{name}")
    await h.settle()


def live(h):
    return sorted((p for p in h.objs("Pod") if not p.metadata.HasField("deletion_timestamp")),
                  key=su.ordinal)


def names(h):
    return [p.metadata.name for p in live(h)]


async def kubelet(h, ready=True, only=None):
    """Run (and ready) every pod; finish graceful deletions."""
    for p in h.objs("Pod"):
        if p.metadata.HasField("deletion_timestamp"):
            await h.client.delete("Pod", p.metadata.name, "default", grace_period=0)
        elif p.status.phase != "Running" and (only is None or p.metadata.name in only):
            if not p.spec.node_name:          # bound pods are deleted gracefully
                p.spec.node_name = "n1"
                p = await h.client.update(p)
            await h.client.update_status(set_ready(p, ready, h.clock()))
    await h.settle()


async def converge(h, c, rounds=12):
    for _ in range(rounds):
        await run(h, c)
        await kubelet(h)


def status(h):
    return h.client.stored("StatefulSet", "web").status


def events(c):
    return c.recorder.seen


async def test_ordered_ready_creates_claims_then_pods_one_at_a_time():
    """TestStatefulSetControl "CreatesPods"/ScaleUp with OrderedReady: web-1 waits for web-0 to be Running and
    Ready; each pod's PVC exists before the pod; status and revisions follow."""
    async with harness(ssc, clock=Clock()) as (h, c):
        await h.client.create(sts_obj())
        await run(h, c)
        assert names(h) == ["web-0"] and [x.metadata.name for x in h.objs("PersistentVolumeClaim")] == ["www-web-0"]
        await run(h, c)
        assert names(h) == ["web-0"]                 # not Running+Ready yet: no web-1
        await kubelet(h, ready=False)
        await run(h, c)
        assert names(h) == ["web-0"]
        await kubelet(h)
        p = h.client.stored("Pod", "web-0")
        await h.client.update_status(set_ready(p, True, h.clock()))
        await converge(h, c)
        assert names(h) == ["web-0", "web-1", "web-2"]
        assert sorted(x.metadata.name for x in h.objs("PersistentVolumeClaim")) == ["www-web-0", "www-web-1",
                                                                                   "www-web-2"]
        [cr] = h.objs("ControllerRevision")
        st = status(h)
        assert (st.replicas, st.ready_replicas, st.available_replicas, st.current_replicas, st.updated_replicas) \
            == (3, 3, 3, 3, 3)
        assert st.current_revision == st.update_revision == cr.metadata.name and st.observed_generation == 1
        assert all(p.metadata.labels[su.REVISION_LABEL] == cr.metadata.name for p in live(h))
        assert ("SuccessfulCreate", "create Pod web-0 in StatefulSet web successful") in events(c)
        assert ("SuccessfulCreate", "create Claim www-web-0 Pod web-0 in StatefulSet web success") in events(c)


async def test_parallel_creates_all_at_once_and_scales_down_all_at_once():
    """TestStatefulSetControl with the Parallel policy (burst): no waiting on readiness either way."""
    async with harness(ssc, clock=Clock()) as (h, c):
        await h.client.create(sts_obj(policy="Parallel"))
        await run(h, c)
        assert names(h) == ["web-0", "web-1", "web-2"]
        s = h.client.stored("StatefulSet", "web")
        s.spec.replicas = 0
        await h.client.update(s)
        await run(h, c)
        assert names(h) == []


async def test_deleted_pod_comes_back_with_its_name_and_claim_and_scale_down_is_reverse():
    """ReplacesPods, RecreatesFailedPod and scaleDownStatefulSetControl (one at a time, highest ordinal first,
    claims kept by the default Retain policy)."""
    async with harness(ssc, clock=Clock()) as (h, c):
        await h.client.create(sts_obj())
        await converge(h, c)
        claim = h.client.stored("PersistentVolumeClaim", "www-web-1")
        await h.client.delete("Pod", "web-1", "default", grace_period=0)
        await converge(h, c, 3)
        assert names(h) == ["web-0", "web-1", "web-2"]
        assert h.client.stored("PersistentVolumeClaim", "www-web-1").metadata.uid == claim.metadata.uid
        failed = codec.copy(h.client.stored("Pod", "web-2"))
        failed.status.phase = "Failed"
        await h.client.update_status(failed)
        await converge(h, c, 3)
        assert h.client.stored("Pod", "web-2").status.phase == "Running"
        s = h.client.stored("StatefulSet", "web")
        s.spec.replicas = 1
        await h.client.update(s)
        await run(h, c)
        assert names(h) == ["web-0", "web-1"]          # web-2 first, then wait for it to go
        await run(h, c)
        assert names(h) == ["web-0", "web-1"]
        await converge(h, c, 3)
        assert names(h) == ["web-0"] and len(h.objs("PersistentVolumeClaim")) == 3
        assert ("SuccessfulDelete", "delete Pod web-2 in StatefulSet web successful") in events(c)


async def _update_image(h, image, partition=None):
    s = h.client.stored("StatefulSet", "web")
    s.spec.template.spec.containers[0].image = image
    if partition is not None:
        s.spec.update_strategy.rolling_update.partition = partition
    s.metadata.generation += 1
    await h.client.update(s)


def images(h):
    return {p.metadata.name: p.spec.containers[0].image for p in live(h)}


async def test_rolling_update_with_partition_and_completion():
    """TestStatefulSetControlRollingUpdateWithPartition: only ordinals >= partition get the new revision, the
    current revision stays until the partition drops to 0 and every pod is updated and ready."""
    async with harness(ssc, clock=Clock()) as (h, c):
        await h.client.create(sts_obj(partition=2))
        await converge(h, c)
        first = status(h).current_revision
        await _update_image(h, "nginx:2")
        await converge(h, c)
        assert images(h) == {"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:2"}
        st = status(h)
        assert st.current_revision == first != st.update_revision and (st.current_replicas, st.updated_replicas) \
            == (2, 1)
        await h.client.delete("Pod", "web-0", "default", grace_period=0)    # below the partition: old revision
        await converge(h, c, 3)
        assert images(h)["web-0"] == "nginx:1"
        await _update_image(h, "nginx:2", partition=0)
        await converge(h, c)
        assert set(images(h).values()) == {"nginx:2"}
        st = status(h)
        assert st.current_revision == st.update_revision and st.current_replicas == st.updated_replicas == 3


async def test_on_delete_updates_only_deleted_pods_and_rollback_reuses_the_revision():
    """TestStatefulSetControlOnDeleteUpdate, and a rollback bumping the old ControllerRevision's revision."""
    async with harness(ssc, clock=Clock()) as (h, c):
        await h.client.create(sts_obj(strategy="OnDelete"))
        await converge(h, c)
        await _update_image(h, "nginx:2")
        await converge(h, c)
        assert set(images(h).values()) == {"nginx:1"}
        await h.client.delete("Pod", "web-1", "default", grace_period=0)
        await converge(h, c, 3)
        assert images(h) == {"web-0": "nginx:1", "web-1": "nginx:2", "web-2": "nginx:1"}
        await _update_image(h, "nginx:1")
        await converge(h, c, 2)
        crs = sorted(h.objs("ControllerRevision"), key=lambda x: x.revision)
        assert [x.revision for x in crs] == [2, 3] and crs[-1].metadata.name == status(h).update_revision


async def test_max_unavailable_deletes_several_at_once():
    """TestStatefulSetControlRollingUpdateWithMaxUnavailable: maxUnavailable 2 takes down the two highest."""
    async with harness(ssc, clock=Clock()) as (h, c):
        s = sts_obj(replicas=4)
        s.spec.update_strategy.rolling_update.max_unavailable.int_val = 2
        await h.client.create(s)
        await converge(h, c)
        await _update_image(h, "nginx:2")
        await run(h, c)
        assert names(h) == ["web-0", "web-1"]
        await converge(h, c)
        assert set(images(h).values()) == {"nginx:2"}


async def test_retention_policy_sets_owner_refs_on_claims():
    """StatefulSetAutoDeletePVC: whenDeleted=Delete -> the set owns every claim; whenScaled=Delete -> a condemned
    pod owns its claim before it is deleted, and a new pod waits while a claim is still owned by an old one."""
    async with harness(ssc, clock=Clock()) as (h, c):
        await h.client.create(sts_obj(replicas=2, when_deleted="Delete", when_scaled="Delete"))
        await converge(h, c)
        uid = h.client.stored("StatefulSet", "web").metadata.uid
        for x in h.objs("PersistentVolumeClaim"):
            assert [(r.kind, r.uid) for r in x.metadata.owner_references] == [("StatefulSet", uid)]
        pod1 = h.client.stored("Pod", "web-1")
        s = h.client.stored("StatefulSet", "web")
        s.spec.replicas = 1
        await h.client.update(s)
        await run(h, c)
        claim = h.client.stored("PersistentVolumeClaim", "www-web-1")
        assert [(r.kind, r.uid) for r in claim.metadata.owner_references] == [("Pod", pod1.metadata.uid)]
        await converge(h, c, 2)
        s = h.client.stored("StatefulSet", "web")
        s.spec.replicas = 2
        await h.client.update(s)
        await converge(h, c, 2)
        assert names(h) == ["web-0"]                 # the claim of the old web-1 is not collected yet
        await h.client.delete("PersistentVolumeClaim", "www-web-1", "default")
        await converge(h, c, 3)
        assert names(h) == ["web-0", "web-1"]


async def test_disruption_budget_reads_a_statefulsets_scale():
    """disruption_test.go TestStatefulSetController: a StatefulSet's spec.replicas is the expected scale of
    a maxUnavailable budget over its pods (3 replicas, 2 ready pods, maxUnavailable 1 -> none allowed)."""
    from controllers.disruption import DisruptionController
    from tests.unit.test_controller_disruption import add_pods, pdb_obj, status

    async with harness(lambda h: DisruptionController(h.client, h.factory, clock=h.clock), clock=Clock()) as (h, c):
        s = await h.client.create(sts_obj(replicas=3))
        await h.client.create(pdb_obj(max_unavailable=1))
        await add_pods(h, 2, owner=s)
        counts, cond, _ = await status(h, c)
        assert counts == (2, 2, 3, 0) and cond == {"DisruptionAllowed": ("False", "InsufficientPods")}
