"""Deletion: graceful pod deletion, finalizers, propagation policies,
preconditions, namespaces."""
from __future__ import annotations

import pytest

from machinery import errors
from tests.cluster import new_object


async def _bound_pod(client, name, grace=None):
    p = new_object("Pod", name)
    if grace is not None:
        p.spec.termination_grace_period_seconds = grace
    await client.create(p)
    return await client.bind("default", name, "node-1")


async def test_unbound_pod_goes_at_once(client):
    await client.create(new_object("Pod", "unbound"))
    obj, deleted = await client.delete("Pod", "unbound")
    assert deleted and obj.metadata.name == "unbound"
    with pytest.raises(errors.NotFound):
        await client.get("Pod", "unbound")


async def test_graceful_deletion_of_bound_pod(client):
    await _bound_pod(client, "g", grace=45)
    obj, deleted = await client.delete("Pod", "g")
    assert not deleted
    md = obj.metadata
    assert md.deletion_grace_period_seconds == 45
    assert md.deletion_timestamp.seconds - md.creation_timestamp.seconds >= 45
    stored = await client.get("Pod", "g")
    assert stored.metadata.deletion_timestamp == md.deletion_timestamp
    assert stored.metadata.generation == 2
    # A shorter grace period shortens it; a longer one does not extend it.
    obj, _ = await client.delete("Pod", "g", grace_period=10)
    assert obj.metadata.deletion_grace_period_seconds == 10
    obj, _ = await client.delete("Pod", "g", grace_period=60)
    assert obj.metadata.deletion_grace_period_seconds == 10
    # Binding a deleting pod is refused; status updates still work (the agent reports).
    stored = await client.get("Pod", "g")
    stored.status.phase = "Running"
    await client.update_status(stored)
    # The node agent, once the containers are stopped: grace 0 removes it.
    _, deleted = await client.delete("Pod", "g", grace_period=0)
    assert deleted
    with pytest.raises(errors.NotFound):
        await client.get("Pod", "g")


async def test_default_grace_is_30_seconds(client):
    p = new_object("Pod", "dflt")
    await client.create(p)
    await client.bind("default", "dflt", "node-1")
    obj, deleted = await client.delete("Pod", "dflt")
    assert not deleted and obj.metadata.deletion_grace_period_seconds == 30


async def test_force_delete_bound_pod(client):
    await _bound_pod(client, "forced")
    _, deleted = await client.delete("Pod", "forced", grace_period=0)
    assert deleted


async def test_finished_pod_goes_at_once(client):
    p = await _bound_pod(client, "done")
    p.status.phase = "Succeeded"
    await client.update_status(p)
    _, deleted = await client.delete("Pod", "done")
    assert deleted


async def test_finalizers_block_removal_until_cleared(client):
    d = new_object("Deployment", "fin")
    d.metadata.finalizers.append("example.com/protect")
    await client.create(d)
    obj, deleted = await client.delete("Deployment", "fin")
    assert not deleted and obj.metadata.HasField("deletion_timestamp")
    assert obj.metadata.deletion_grace_period_seconds == 0
    # still there, and deleting again changes nothing
    again, deleted = await client.delete("Deployment", "fin")
    assert not deleted and again.metadata.resource_version == obj.metadata.resource_version
    current = await client.get("Deployment", "fin")
    current.metadata.labels["still"] = "here"
    current = await client.update(current)              # a deleting object can still be updated
    del current.metadata.finalizers[:]
    out = await client.update(current)                  # the last finalizer gone: removed
    assert out.metadata.HasField("deletion_timestamp")
    with pytest.raises(errors.NotFound):
        await client.get("Deployment", "fin")


async def test_graceful_pod_with_finalizer(client):
    p = new_object("Pod", "both")
    p.metadata.finalizers.append("example.com/wait")
    await client.create(p)
    await client.bind("default", "both", "node-1")
    _, deleted = await client.delete("Pod", "both")
    assert not deleted
    _, deleted = await client.delete("Pod", "both", grace_period=0)   # the agent is done
    assert not deleted                                                 # the finalizer still holds it
    cur = await client.get("Pod", "both")
    assert cur.metadata.deletion_grace_period_seconds == 0
    del cur.metadata.finalizers[:]
    await client.update(cur)
    with pytest.raises(errors.NotFound):
        await client.get("Pod", "both")


@pytest.mark.parametrize("policy,finalizer", [("Orphan", "orphan"), ("Foreground", "foregroundDeletion")])
async def test_propagation_policies_add_finalizers(client, policy, finalizer):
    await client.create(new_object("ReplicaSet", "rs"))
    obj, deleted = await client.delete("ReplicaSet", "rs", propagation=policy)
    assert not deleted and list(obj.metadata.finalizers) == [finalizer]
    assert (await client.get("ReplicaSet", "rs")).metadata.HasField("deletion_timestamp")


async def test_background_is_immediate(client):
    await client.create(new_object("ReplicaSet", "rs"))
    _, deleted = await client.delete("ReplicaSet", "rs", propagation="Background")
    assert deleted


async def test_preconditions(client):
    d = await client.create(new_object("Deployment", "pre"))
    with pytest.raises(errors.Conflict) as exc:
        await client.delete("Deployment", "pre", uid="not-the-uid")
    assert "Precondition failed: UID in precondition: not-the-uid" in exc.value.message
    with pytest.raises(errors.Conflict) as exc:
        await client.delete("Deployment", "pre", resource_version="1")
    assert "Precondition failed: ResourceVersion in precondition: 1" in exc.value.message
    _, deleted = await client.delete("Deployment", "pre", uid=d.metadata.uid,
                                     resource_version=d.metadata.resource_version)
    assert deleted


async def test_delete_missing(client):
    with pytest.raises(errors.NotFound) as exc:
        await client.delete("Service", "ghost")
    assert exc.value.message == 'services "ghost" not found'


async def test_namespace_terminates_and_is_removed_when_finalized(client):
    await client.create(new_object("Namespace", "team"))
    ns, deleted = await client.delete("Namespace", "team")
    assert not deleted
    assert ns.status.phase == "Terminating" and list(ns.spec.finalizers) == ["kubernetes"]
    # What the namespace controller does once the namespace is empty:
    ns = await client.get("Namespace", "team")
    del ns.spec.finalizers[:]
    await client.update(ns)
    with pytest.raises(errors.NotFound):
        await client.get("Namespace", "team")


async def test_system_namespaces_cannot_be_deleted(client):
    for name in ("default", "kube-system", "kube-public"):
        with pytest.raises(errors.Forbidden) as exc:
            await client.delete("Namespace", name)
        assert exc.value.message == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
    assert (await client.get("Namespace", "default")).status.phase == "Active"
