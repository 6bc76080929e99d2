"""Disruption controller syncs (after pkg/controller/disruption/disruption_test.go)
and the eviction decision (after pkg/registry/core/pod/storage/eviction_test.go)
on the FakeClient."""
import pytest

from machinery import disruption, errors, kinds

from controllers import podutil
from controllers.disruption import DisruptionController
from tests.unit.test_controller_helpers import Clock, harness, rs_obj, set_ready


def dc(h):
    return DisruptionController(h.client, h.factory, clock=h.clock)


def pdb_obj(min_available=None, max_unavailable=None, labels=None):
    p = kinds.new("PodDisruptionBudget")
    p.metadata.name, p.metadata.namespace = "web-pdb", "default"
    p.spec.selector.match_labels.update(labels or {"app": "web"})
    for field, v in (("min_available", min_available), ("max_unavailable", max_unavailable)):
        if isinstance(v, str):
            getattr(p.spec, field).str_val = v
        elif v is not None:
            getattr(p.spec, field).int_val = v
    return p


async def add_pods(h, n, owner=None, ready=True, start=0):
    out = []
    for i in range(start, start + n):
        p = kinds.new("Pod")
        p.metadata.name, p.metadata.namespace = f"web-{i}", "default"
        p.metadata.labels["app"] = "web"
        p.spec.containers.add(name="main", image="app:v1")
        if owner is not None:
            p.metadata.owner_references.append(podutil.owner_ref_for(owner))
        created = await h.client.create(p)
        if ready:
            created = await h.client.update_status(set_ready(created, True, h.clock()))
        out.append(created)
    return out


async def status(h, c):
    await h.settle()
    await c.sync("default/web-pdb")
    await h.settle()
    pdb = h.objs("PodDisruptionBudget")[0]
    st = pdb.status
    cond = {x.type: (x.status, x.reason) for x in st.conditions}
    return (st.current_healthy, st.desired_healthy, st.expected_pods, st.disruptions_allowed), cond, pdb


async def test_integer_min_available_counts_selected_pods():
    """An integer minAvailable counts the selected pods, controllers or not: 2 of 3 ready allows 1."""
    async with harness(dc, clock=Clock()) as (h, c):
        await h.client.create(pdb_obj(min_available=2))
        await add_pods(h, 3)
        counts, cond, pdb = await status(h, c)
        assert counts == (3, 2, 3, 1)
        assert cond == {"DisruptionAllowed": ("True", "SufficientPods")}
        assert pdb.status.observed_generation == pdb.metadata.generation


async def test_max_unavailable_uses_the_controllers_scale():
    """TestReplicaSet / TestIntegerMaxUnavailableWithScaling: expected pods come from
    spec.replicas (4), not from the 3 pods that exist; maxUnavailable 1 -> desired 3, none allowed."""
    async with harness(dc, clock=Clock()) as (h, c):
        rs = await h.client.create(rs_obj(replicas=4))
        await h.client.create(pdb_obj(max_unavailable=1))
        await add_pods(h, 3, owner=rs)
        counts, cond, _ = await status(h, c)
        assert counts == (3, 3, 4, 0)
        assert cond == {"DisruptionAllowed": ("False", "InsufficientPods")}


async def test_percentage_rounds_up_and_follows_the_deployment():
    """TestReplicationController "minAvailable 34%" and a ReplicaSet owned by a Deployment: 34% of 3
    rounds up to 2; the Deployment's replicas are the scale."""
    async with harness(dc, clock=Clock()) as (h, c):
        d = kinds.new("Deployment")
        d.metadata.name, d.metadata.namespace = "web", "default"
        d.spec.replicas = 3
        d = await h.client.create(d)
        rs = rs_obj(replicas=1)
        rs.metadata.owner_references.append(podutil.owner_ref_for(d))
        rs = await h.client.create(rs)
        await h.client.create(pdb_obj(min_available="34%"))
        await add_pods(h, 3, owner=rs)
        counts, _, _ = await status(h, c)
        assert counts == (3, 2, 3, 1)


async def test_unknown_controller_fails_safe():
    """A controller whose scale kctl cannot read (getExpectedScale's "found no controllers for pod"):
    SyncFailed, and no disruption is allowed (failSafe)."""
    async with harness(dc, clock=Clock()) as (h, c):
        job = kinds.new("Job")
        job.metadata.name, job.metadata.namespace, job.metadata.uid = "j", "default", "u-job"
        await h.client.create(pdb_obj(max_unavailable="50%"))
        await add_pods(h, 2, owner=job)
        counts, cond, pdb = await status(h, c)
        assert counts[3] == 0 and cond["DisruptionAllowed"][1] == "SyncFailed"
        assert next(x.message for x in pdb.status.conditions) == 'found no controllers for pod "web-0"'


async def test_naked_pod_with_a_percentage_allows_nothing():
    """TestNakedPod / TestStatusForUnmanagedPod: minAvailable 28% over a pod without controller: no
    disruption, but no error either (the pod is reported as unmanaged)."""
    async with harness(dc, clock=Clock()) as (h, c):
        await h.client.create(pdb_obj(min_available="28%"))
        counts, cond, _ = await status(h, c)
        assert counts[3] == 0
        await add_pods(h, 1)
        counts, cond, _ = await status(h, c)
        assert counts == (1, 0, 0, 0) and cond == {"DisruptionAllowed": ("False", "InsufficientPods")}


async def test_integer_max_unavailable_follows_the_scale():
    """TestIntegerMaxUnavailableWithScaling: RS of 7, maxUnavailable 2, one ready pod -> (0, 1, 5, 7);
    scaled to 5 -> (0, 1, 3, 5)."""
    async with harness(dc, clock=Clock()) as (h, c):
        rs = await h.client.create(rs_obj(replicas=7))
        await h.client.create(pdb_obj(max_unavailable=2))
        await add_pods(h, 1, owner=rs)
        counts, _, _ = await status(h, c)
        assert (counts[3], counts[0], counts[1], counts[2]) == (0, 1, 5, 7)
        rs = h.objs("ReplicaSet")[0]
        rs.spec.replicas = 5
        await h.client.update(rs)
        counts, _, _ = await status(h, c)
        assert (counts[3], counts[0], counts[1], counts[2]) == (0, 1, 3, 5)


async def test_rogue_pod_without_controller_counts_as_healthy():
    """TestReplicationController (with a ReplicaSet): 34% of 3 -> 2 desired, 3 ready allow 1; a rogue
    ready pod without controller raises allowed disruptions to 2."""
    async with harness(dc, clock=Clock()) as (h, c):
        rs = await h.client.create(rs_obj(replicas=3))
        await h.client.create(pdb_obj(min_available="34%"))
        await add_pods(h, 3, owner=rs)
        counts, _, _ = await status(h, c)
        assert (counts[3], counts[0], counts[1], counts[2]) == (1, 3, 2, 3)
        await add_pods(h, 1, start=9)
        counts, _, _ = await status(h, c)
        assert counts[3] == 2


async def test_eviction_spends_the_budget_then_answers_429():
    """TestEviction "matching pdbs with disruptions allowed" then "... with no disruptions allowed";
    the evicted pod is not counted healthy until it is gone (disruptedPods)."""
    async with harness(dc, clock=Clock()) as (h, c):
        await h.client.create(pdb_obj(min_available=2))
        pods = await add_pods(h, 3)
        await status(h, c)
        await disruption.admit_eviction(h.client, pods[0], clock=h.clock)
        pdb = h.objs("PodDisruptionBudget")[0]
        assert pdb.status.disruptions_allowed == 0 and "web-0" in pdb.status.disrupted_pods
        with pytest.raises(errors.TooManyRequests) as exc:
            await disruption.admit_eviction(h.client, pods[1], clock=h.clock)
        assert str(exc.value) == "Cannot evict pod as it would violate the pod's disruption budget."
        assert exc.value.causes[0].reason == "DisruptionBudget"
        assert exc.value.causes[0].message == "The disruption budget web-pdb needs 2 healthy pods and has 3 currently"
        counts, _, _ = await status(h, c)                 # web-0 still there but already disrupted
        assert counts == (2, 2, 3, 0)
        h.clock.advance(121)                              # never deleted: the entry expires
        counts, _, pdb = await status(h, c)
        assert counts == (3, 2, 3, 1) and not pdb.status.disrupted_pods


async def test_eviction_cases_without_spending_the_budget():
    """canIgnorePDB (pending pod), no matching PDB, unready pod with a healthy budget, more than one PDB,
    and a PDB whose status is not current yet."""
    async with harness(dc, clock=Clock()) as (h, c):
        pending = (await add_pods(h, 1, ready=False, start=10))[0]
        await disruption.admit_eviction(h.client, pending)             # Pending: always
        [running] = await add_pods(h, 1, start=11)
        await disruption.admit_eviction(h.client, running)             # no PDB yet
        await h.client.create(pdb_obj(min_available=1))
        with pytest.raises(errors.TooManyRequests, match="disruption budget") as exc:
            await disruption.admit_eviction(h.client, running)         # status not computed yet
        assert "is still being processed by the server" in exc.value.causes[0].message
        await status(h, c)
        unready = codec_unready(running)
        await disruption.admit_eviction(h.client, unready, dry_run=True)
        second = pdb_obj(min_available=1)
        second.metadata.name = "other"
        await h.client.create(second)
        with pytest.raises(errors.ApiError, match="more than one PodDisruptionBudget"):
            await disruption.admit_eviction(h.client, running)


def codec_unready(pod):
    p = set_ready(pod, False, 0)
    p.status.phase = "Running"
    return p
