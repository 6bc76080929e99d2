"""The PV controller's decisions (controllers/pvmatch.py, tables) and its
syncs on the FakeClient (controllers/pvbinder.py, pvprotection.py). Cases
named `k8s:` follow Kubernetes' index_test.go (TestMatchVolume) and
binder_test.go (TestSync) by name."""
import pytest

from machinery import codec, kinds
from controllers import pvmatch as m
from controllers.pvbinder import PersistentVolumeController, ensure_default_class
from controllers.pvprotection import PVCProtectionController, PVProtectionController
from tests.unit.test_controller_helpers import harness

RWO, ROX, RWX = "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"


def pv(name, size="10Gi", modes=(RWO,), cls="", labels=None, claim=None, uid="", phase="Available",
       node=None, policy="Retain"):
    v = kinds.new("PersistentVolume")
    v.metadata.name = name
    v.metadata.labels.update(labels or {})
    v.spec.capacity["storage"] = size
    v.spec.access_modes.extend(modes)
    v.spec.storage_class_name = cls
    v.spec.host_path.path = f"/mnt/{name}"
    v.spec.persistent_volume_reclaim_policy = policy
    v.spec.volume_mode = "Filesystem"
    if claim:
        v.spec.claim_ref.namespace, v.spec.claim_ref.name, v.spec.claim_ref.uid = "default", claim, uid
    if node:
        t = v.spec.node_affinity.required.node_selector_terms.add()
        t.match_expressions.add(key=m.HOSTNAME_LABEL, operator="In", values=[node])
    v.status.phase = phase
    return v


def pvc(name="data", size="1Gi", modes=(RWO,), cls=None, selector=None, volume="", uid="uid-data", ann=None):
    c = kinds.new("PersistentVolumeClaim")
    c.metadata.name, c.metadata.namespace, c.metadata.uid = name, "default", uid
    c.metadata.annotations.update(ann or {})
    c.spec.access_modes.extend(modes)
    c.spec.resources.requests["storage"] = size
    if cls is not None:
        c.spec.storage_class_name = cls
    if selector:
        c.spec.selector.match_labels.update(selector)
    c.spec.volume_name = volume
    c.spec.volume_mode = "Filesystem"
    return c


def node(name, **ann):
    n = kinds.new("Node")
    n.metadata.name = name
    n.metadata.labels[m.HOSTNAME_LABEL] = name
    n.metadata.annotations.update(ann)
    return n


def sc(name="local-path", provisioner=m.LOCAL_PATH, mode="WaitForFirstConsumer", default=False, **params):
    s = kinds.new("StorageClass")
    s.metadata.name = name
    s.provisioner, s.volume_binding_mode, s.reclaim_policy = provisioner, mode, "Delete"
    s.parameters.update(params)
    if default:
        s.metadata.annotations[m.DEFAULT_CLASS_ANNOTATION] = "true"
    return s


VOLUMES = [pv("gce-pd-1", "1Gi", (RWO,)), pv("gce-pd-5", "5Gi", (RWO,)), pv("gce-pd-10", "10Gi", (RWO,)),
           pv("nfs-1", "1Gi", (RWO, ROX, RWX)), pv("nfs-5", "5Gi", (RWO, ROX, RWX)),
           pv("gold-5", "5Gi", (RWO,), cls="gold"), pv("labelled-15", "15Gi", (RWO,), labels={"tier": "db"}),
           pv("taken-2", "2Gi", (RWO,), claim="other", uid="uid-other", phase="Bound"),
           pv("mine-20", "20Gi", (RWO,), claim="prebound", phase="Available")]


@pytest.mark.parametrize("claim,want", [
    # k8s: TestMatchVolume "successful-match-gce-10" → the smallest that fits
    (pvc(size="8G"), "gce-pd-10"),
    (pvc(size="1Gi"), "gce-pd-1"),
    # k8s: "successful-match-with-class"
    (pvc(size="1G", cls="gold"), "gold-5"),
    # k8s: "successful-no-match-due-to-label" / "successful-match-with-selector"
    (pvc(size="1G", selector={"tier": "db"}), "labelled-15"),
    (pvc(size="1G", selector={"tier": "web"}), None),
    # k8s: "successful-match-nfs-5" (access modes decide)
    (pvc(size="3G", modes=(RWX,)), "nfs-5"),
    (pvc(size="100Gi"), None),                          # nothing big enough
    (pvc(size="1Gi", cls="silver"), None),              # no volume of that class
    # a volume pre-bound to the claim wins even though smaller ones fit
    (pvc(name="prebound", size="1Gi"), "mine-20"),
])
def test_best_match(claim, want):
    got = m.best_match(claim, VOLUMES)
    assert (got.metadata.name if got else None) == want


def test_best_match_honours_the_selected_node_and_skips_deleting_volumes():
    local = [pv("on-a", "5Gi", node="a"), pv("on-b", "1Gi", node="b"), pv("anywhere", "50Gi")]
    assert m.best_match(pvc(), local, node("a")).metadata.name == "on-a"
    assert m.best_match(pvc(), local, node("c")).metadata.name == "anywhere"
    going = pv("going", "1Gi")
    going.metadata.deletion_timestamp.FromSeconds(1)
    assert m.best_match(pvc(), [going]) is None


def test_unsatisfied_reasons():
    assert m.unsatisfied(pv("a", cls="x"), pvc()) == "storageClassName does not match"
    assert m.unsatisfied(pv("a", modes=(ROX,)), pvc()) == "incompatible accessMode"
    assert m.unsatisfied(pv("a", "1Mi"), pvc()) == "requested PV is too small"
    assert m.unsatisfied(pv("a"), pvc()) == ""


def test_default_class_is_the_newest_annotated_one():
    a, b, c = sc("a", default=True), sc("b", default=True), sc("c")
    a.metadata.creation_timestamp.seconds, b.metadata.creation_timestamp.seconds = 20, 10
    assert m.default_class([a, b, c]).metadata.name == "a"
    assert m.default_class([c]) is None


def test_local_path_volume_shape():
    claim = pvc(size="2Gi", cls="local-path")
    v = m.local_path_volume(claim, sc(nodePath="/srv/vols/"), node("n2"))
    assert v.metadata.name == "pvc-uid-data"
    assert v.spec.host_path.path == "/srv/vols/pvc-uid-data_default_data"
    assert v.spec.host_path.type == "DirectoryOrCreate"
    assert v.spec.capacity["storage"] == "2Gi" and list(v.spec.access_modes) == [RWO]
    assert v.spec.persistent_volume_reclaim_policy == "Delete" and v.spec.storage_class_name == "local-path"
    assert (v.spec.claim_ref.name, v.spec.claim_ref.uid) == ("data", "uid-data")
    assert m.node_matches(v, node("n2")) and not m.node_matches(v, node("n3"))
    assert v.metadata.annotations[m.PROVISIONED_BY] == m.LOCAL_PATH
    own = m.local_path_volume(claim, sc(), node("n2", **{m.LOCAL_PATH_DIR_ANNOTATION: "/var/lib/kctl-lab/x/n2/storage"}))
    assert own.spec.host_path.path.startswith("/var/lib/kctl-lab/x/n2/storage/pvc-uid-data_")
    assert m.local_path_volume(claim, sc(), node("n2")).spec.host_path.path.startswith(m.DEFAULT_NODE_PATH + "/")


def test_pods_using_claims():
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = "db", "default"
    p.spec.volumes.add(name="d").persistent_volume_claim.claim_name = "data"
    assert m.claims_of_pod(p) == ["default/data"] and m.pod_uses_claim(p, pvc())
    p.status.phase = "Succeeded"
    assert not m.pod_uses_claim(p, pvc())


# ----------------------------------------------------------- controller

def binder(h):
    return PersistentVolumeController(h.client, h.factory, default_class=False)


async def created(h, *objs):
    out = [await h.client.create(o) for o in objs]
    await h.settle()
    return out


async def test_k8s_sync_claim_binds_the_smallest_fitting_volume_both_ways():
    async with harness(binder) as (h, c):
        await created(h, pv("big", "10Gi"), pv("small", "2Gi"), pvc(size="1Gi", cls=""))
        await c.sync("claim:default/data")
        await h.settle()
        vol = h.client.stored("PersistentVolume", "small", "")
        claim = h.client.stored("PersistentVolumeClaim", "data")
        assert vol.spec.claim_ref.uid == claim.metadata.uid and vol.status.phase == "Bound"
        assert vol.metadata.annotations[m.BOUND_BY_CONTROLLER] == "yes"
        assert claim.spec.volume_name == "small" and claim.status.phase == "Bound"
        assert dict(claim.status.capacity) == {"storage": "2Gi"} and list(claim.status.access_modes) == [RWO]
        assert claim.metadata.annotations[m.BIND_COMPLETED] == "yes"
        writes = len(h.client.actions)
        await c.sync("claim:default/data")                        # idempotent: nothing more to write
        await c.sync("volume:small")
        assert [a for a in h.client.actions[writes:] if a[0] != "get"] == []
        assert h.client.stored("PersistentVolume", "big", "").status.phase == "Available"


async def test_claim_without_class_gets_the_default_class_then_waits_for_a_consumer():
    async with harness(binder) as (h, c):
        await created(h, sc(default=True), pvc())
        await c.sync("claim:default/data")
        await h.settle()
        claim = h.client.stored("PersistentVolumeClaim", "data")
        assert claim.spec.storage_class_name == "local-path"
        await c.sync("claim:default/data")
        await h.settle()
        claim = h.client.stored("PersistentVolumeClaim", "data")
        assert claim.status.phase == "Pending" and not claim.spec.volume_name
        assert h.client.objects("PersistentVolume") == []


async def test_selected_node_provisions_a_pinned_volume_that_then_binds():
    async with harness(binder) as (h, c):
        await created(h, sc(), node("n1"), pvc(cls="local-path", ann={m.SELECTED_NODE: "n1"}))
        for _ in range(3):                                        # annotate, provision, bind
            await c.sync("claim:default/data")
            await h.settle()
        claim = h.client.stored("PersistentVolumeClaim", "data")
        vol = h.client.stored("PersistentVolume", f"pvc-{claim.metadata.uid}", "")
        assert claim.metadata.annotations[m.STORAGE_PROVISIONER] == m.LOCAL_PATH
        assert m.node_matches(vol, node("n1")) and not m.node_matches(vol, node("n2"))
        assert claim.spec.volume_name == vol.metadata.name and claim.status.phase == "Bound"
        assert vol.status.phase == "Bound"


class Recorder:
    def __init__(self):
        self.seen = []

    def event(self, obj, type_, reason, message):
        self.seen.append((obj.metadata.name, type_, reason, message))


def zonal(zones):
    """The local-path class restricted to nodes labelled with one of `zones`."""
    s = sc()
    s.allowed_topologies.add().match_label_expressions.add(key="topology.kubernetes.io/zone", values=zones)
    return s


async def test_allowed_topologies_refuse_a_selected_node_outside_them():
    recorder = Recorder()
    async with harness(lambda h: PersistentVolumeController(h.client, h.factory, recorder, default_class=False)) \
            as (h, c):
        outside, inside = node("n1"), node("n2")
        outside.metadata.labels["topology.kubernetes.io/zone"] = "b"
        inside.metadata.labels["topology.kubernetes.io/zone"] = "a"
        await created(h, zonal(["a"]), outside, inside,
                      pvc("x", cls="local-path", uid="ux", ann={m.SELECTED_NODE: "n1"}),
                      pvc("y", cls="local-path", uid="uy", ann={m.SELECTED_NODE: "n2"}))
        for _ in range(3):
            await c.sync("claim:default/x")
            await c.sync("claim:default/y")
            await h.settle()
        assert {v.spec.claim_ref.name for v in h.client.objects("PersistentVolume")} == {"y"}
        assert h.client.stored("PersistentVolumeClaim", "x").status.phase == "Pending"
        assert h.client.stored("PersistentVolumeClaim", "y").status.phase == "Bound"
        assert ("x", "Warning", "ProvisioningFailed", 'failed to provision volume with StorageClass "local-path": '
                'selected node "n1" is not in the allowed topologies of the class') in recorder.seen


async def test_immediate_local_path_and_unknown_class_stay_pending():
    async with harness(binder) as (h, c):
        await created(h, sc("fast", mode="Immediate"), pvc("a", cls="fast", uid="ua"),
                      pvc("b", cls="nope", uid="ub"), pvc("c", cls="", uid="uc"))
        for name in "abc":
            await c.sync(f"claim:default/{name}")
        await h.settle()
        assert {x.metadata.name: x.status.phase for x in h.client.objects("PersistentVolumeClaim")} == \
            {"a": "Pending", "b": "Pending", "c": "Pending"}
        assert h.client.objects("PersistentVolume") == []


async def test_k8s_volume_released_then_reclaimed_by_policy():
    async with harness(binder) as (h, c):
        await created(h, pv("keep", claim="gone", uid="u1", phase="Bound"),
                      pv("drop", claim="gone2", uid="u2", phase="Bound", policy="Delete"),
                      pv("free"))
        for name in ("keep", "drop", "free"):
            await c.sync(f"volume:{name}")
            await h.settle()
        assert h.client.stored("PersistentVolume", "keep", "").status.phase == "Released"
        assert h.client.stored("PersistentVolume", "drop", "").status.phase == "Released"
        await c.sync("volume:drop")
        await c.sync("volume:keep")
        await h.settle()
        assert h.client.stored("PersistentVolume", "drop", "") is None
        assert h.client.stored("PersistentVolume", "keep", "").status.phase == "Released"
        assert h.client.stored("PersistentVolume", "free", "").status.phase == "Available"


def local_path_pv(name="pvc-1", **change):
    v = pv(name, claim="gone", uid="u1", phase="Bound", policy=change.get("policy", "Delete"),
           node=change.get("node", "n1"))
    if change.get("provisioner", m.LOCAL_PATH):
        v.metadata.annotations[m.PROVISIONED_BY] = change.get("provisioner", m.LOCAL_PATH)
    v.spec.host_path.path = change.get("path", f"/agent/storage/{name}_default_gone")
    return v


@pytest.mark.parametrize("change, removed", [
    ({}, True),
    ({"policy": "Retain"}, False),
    ({"provisioner": ""}, False),                           # made by hand
    ({"provisioner": "x.io/other"}, False),
    ({"node": None}, False),                                # not pinned to a node
    ({"path": "/agent/storage/data"}, False),               # not the directory made for it
    ({"path": "/agent/storage/pvc-2_default_gone"}, False),  # another volume's directory
    ({"path": "/pvc-1_default_gone"}, False),               # the parent would be /
    ({"path": "relative/pvc-1_x_y"}, False),
])
def test_local_path_cleanup_only_for_the_directory_made_for_a_delete_volume(change, removed):
    from controllers.localpathcleanup import data_dir
    assert data_dir(local_path_pv(**change)) == (("n1", "/agent/storage/pvc-1_default_gone") if removed else None)


async def test_local_path_volume_data_removed_by_a_helper_pod_on_its_node_before_the_pv_goes():
    from controllers import localpathcleanup as lp
    recorder = Recorder()
    async with harness(lambda h: PersistentVolumeController(h.client, h.factory, recorder, default_class=False)) \
            as (h, c):
        await created(h, local_path_pv())
        for _ in range(3):                               # Released, then the helper pod
            await c.sync("volume:pvc-1")
            await h.settle()
        helper = h.client.stored("Pod", "cleanup-pvc-1", "kube-system")
        assert helper.spec.node_name == "n1" and helper.spec.restart_policy == "Never"
        assert list(helper.spec.containers[0].command) == ["rm", "-rf", "/storage/pvc-1_default_gone"]
        assert helper.spec.volumes[0].host_path.path == "/agent/storage"
        assert helper.metadata.labels[lp.VOLUME_LABEL] == "pvc-1"
        assert h.client.stored("PersistentVolume", "pvc-1", "").status.phase == "Released"   # not yet
        helper.status.phase = "Failed"
        await h.client.update_status(helper)
        await h.settle()
        await c.sync("volume:pvc-1")
        await h.settle()
        assert ("pvc-1", "Warning", "VolumeFailedDelete",
                "removing /agent/storage/pvc-1_default_gone on node n1 failed; retrying") in recorder.seen
        await c.sync("volume:pvc-1")                     # a new helper pod
        await h.settle()
        helper = h.client.stored("Pod", "cleanup-pvc-1", "kube-system")
        assert helper.status.phase != "Failed"
        helper.status.phase = "Succeeded"
        await h.client.update_status(helper)
        await h.settle()
        await c.sync("volume:pvc-1")
        await h.settle()
        assert h.client.stored("PersistentVolume", "pvc-1", "") is None
        assert h.client.stored("Pod", "cleanup-pvc-1", "kube-system") is None


async def test_k8s_claim_lost_when_its_volume_disappears_and_prebound_claim_binds():
    async with harness(binder) as (h, c):
        lost = pvc("lost", volume="vanished", uid="ul")
        await created(h, lost, pv("wanted", "5Gi"), pvc("pre", volume="wanted", uid="up"))
        stored = h.client.stored("PersistentVolumeClaim", "lost")
        stored.status.phase = "Bound"
        await h.client.update_status(stored)
        await h.settle()
        await c.sync("claim:default/lost")
        await c.sync("claim:default/pre")
        await h.settle()
        assert h.client.stored("PersistentVolumeClaim", "lost").status.phase == "Lost"
        pre = h.client.stored("PersistentVolumeClaim", "pre")
        assert pre.status.phase == "Bound"
        assert h.client.stored("PersistentVolume", "wanted", "").spec.claim_ref.uid == pre.metadata.uid


async def test_ensure_default_class_is_idempotent_and_respects_an_existing_default():
    async with harness(binder) as (h, c):
        await ensure_default_class(h.client)
        await ensure_default_class(h.client)
        [made] = h.client.objects("StorageClass")
        assert made.metadata.name == "local-path" and made.volume_binding_mode == "WaitForFirstConsumer"
        assert made.reclaim_policy == "Delete" and m.is_default_class(made)
    async with harness(binder) as (h, c):
        await created(h, sc("gold", provisioner="x.io/y", default=True))
        await ensure_default_class(h.client)
        assert [s.metadata.name for s in h.client.objects("StorageClass")] == ["gold"]


async def test_protection_finalizers_wait_for_pods_and_binding():
    make = (lambda h: PVCProtectionController(h.client, h.factory),
            lambda h: PVProtectionController(h.client, h.factory))
    async with harness(*make) as (h, pvcp, pvp):
        claim = pvc()
        claim.metadata.finalizers.append("kubernetes.io/pvc-protection")
        vol = pv("v", phase="Bound")
        vol.metadata.finalizers.append("kubernetes.io/pv-protection")
        pod = kinds.new("Pod")
        pod.metadata.name, pod.metadata.namespace = "db", "default"
        pod.spec.containers.add(name="m", image="x")
        pod.spec.volumes.add(name="d").persistent_volume_claim.claim_name = "data"
        await created(h, claim, vol, pod)
        await h.client.delete("PersistentVolumeClaim", "data", "default")
        await h.client.delete("PersistentVolume", "v")
        await h.settle()
        await pvcp.sync("default/data")
        await pvp.sync("v")
        assert h.client.stored("PersistentVolumeClaim", "data") is not None      # the pod still uses it
        assert h.client.stored("PersistentVolume", "v", "") is not None          # still Bound
        await h.client.delete("Pod", "db", "default", grace_period=0)
        stored = codec.copy(h.client.stored("PersistentVolume", "v", ""))
        stored.status.phase = "Released"
        await h.client.update_status(stored)
        await h.settle()
        await pvcp.sync("default/data")
        await pvp.sync("v")
        assert h.client.stored("PersistentVolumeClaim", "data") is None
        assert h.client.stored("PersistentVolume", "v", "") is None
