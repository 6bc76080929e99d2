"""CRUD on every kind through a real apiserver on a real etcd, and the
server-set fields: uid, creationTimestamp, generation, status rules,
generateName, namespaces, dry run, no-op updates."""
from __future__ import annotations

import asyncio

import pytest

from machinery import errors, kinds
from tests.cluster import new_object

# Every kind (the storage kinds' finalizers, encryption and binding are in
# tests/integration/test_storage_api.py besides).
ALL_KINDS = [info.kind for info in kinds.KINDS]


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_crud_every_kind(shared_client, shared_etcd, kind):
    client, etcd = shared_client, shared_etcd
    info = kinds.BY_KIND[kind]
    obj = new_object(kind, "crud-1")
    created = await client.create(obj)
    md = created.metadata
    assert md.uid and md.resource_version and md.generation == 1
    assert md.creation_timestamp.seconds > 0 and md.creation_timestamp.nanos == 0
    assert created.api_version == info.api_version and created.kind == kind
    assert int(md.resource_version) == etcd.revision()
    stored = etcd.get_raw(f"/registry/{info.plural}/{'default/' if info.namespaced else ''}crud-1")
    if kind == "Secret":                 # encrypted at rest (tests/integration/test_secrets_encryption.py)
        assert stored.startswith(b"k8s:enc:") and b"value" not in stored
    else:
        assert info.message.FromString(stored).metadata.uid == md.uid

    got = await client.get(kind, "crud-1", "default")
    assert got.metadata.uid == md.uid and got.metadata.resource_version == md.resource_version
    assert got.kind == kind and got.api_version == info.api_version

    items, list_rv = await client.list(kind, "default")
    assert "crud-1" in [i.metadata.name for i in items]
    assert int(list_rv) >= int(md.resource_version)

    got.metadata.labels["touched"] = "yes"
    updated = await client.update(got)
    assert updated.metadata.labels["touched"] == "yes"
    assert int(updated.metadata.resource_version) > int(md.resource_version)
    assert updated.metadata.uid == md.uid

    with pytest.raises(errors.Conflict):
        await client.update(got)   # got still carries the old resourceVersion

    _, deleted = await client.delete(kind, "crud-1", "default")
    if kind == "Namespace":
        assert not deleted       # Terminating until the namespace controller empties it
        ns = await client.get("Namespace", "crud-1")
        assert ns.status.phase == "Terminating" and ns.metadata.HasField("deletion_timestamp")
        return
    if kind in ("PersistentVolume", "PersistentVolumeClaim"):
        assert not deleted       # the protection finalizer holds it until its controller lets go
        held = await client.get(kind, "crud-1", "default")
        assert held.metadata.HasField("deletion_timestamp") and held.metadata.finalizers
        return
    assert deleted
    with pytest.raises(errors.NotFound) as exc:
        await client.get(kind, "crud-1", "default")
    assert exc.value.message == f'{info.resource} "crud-1" not found'


async def test_error_messages_are_kubernetes(client):
    d = new_object("Deployment", "web")
    first = await client.create(d)
    with pytest.raises(errors.AlreadyExists) as exc:
        await client.create(new_object("Deployment", "web"))
    assert exc.value.message == 'deployments.apps "web" already exists'
    first.spec.replicas = 3
    await client.update(first)
    with pytest.raises(errors.Conflict) as exc:
        await client.update(first)
    assert exc.value.message == ('Operation cannot be fulfilled on deployments.apps "web": the object has been '
                                 'modified; please apply your changes to the latest version and try again')
    with pytest.raises(errors.NotFound) as exc:
        await client.get("Pod", "x")
    assert exc.value.message == 'pods "x" not found'
    with pytest.raises(errors.NotFound):
        await client.update(new_object("Pod", "never-created"))


async def test_generation_rules(client):
    d = await client.create(new_object("Deployment", "gen"))
    assert d.metadata.generation == 1
    d.metadata.labels["a"] = "b"                      # metadata only
    d = await client.update(d)
    assert d.metadata.generation == 1
    d.spec.replicas = 5                               # spec
    d = await client.update(d)
    assert d.metadata.generation == 2
    d.status.replicas = 5                             # status via Update: ignored
    d = await client.update(d)
    assert d.metadata.generation == 2 and d.status.replicas == 0
    d.status.replicas = 5
    d.status.observed_generation = 2
    d = await client.update_status(d)
    assert d.metadata.generation == 2 and d.status.replicas == 5
    d.spec.template.spec.containers[0].image = "busybox:1.37"
    d = await client.update(d)
    assert d.metadata.generation == 3 and d.status.replicas == 5   # status kept by Update


async def test_update_status_keeps_spec_and_metadata(client):
    pod = await client.create(new_object("Pod", "st"))
    assert pod.status.phase == "Pending"
    pod.status.phase = "Running"
    pod.status.pod_ip = "10.244.1.7"
    pod.metadata.labels["sneaky"] = "1"
    pod.spec.containers[0].image = "other:1"
    out = await client.update_status(pod)
    assert out.status.phase == "Running" and out.status.pod_ip == "10.244.1.7"
    assert "sneaky" not in out.metadata.labels
    assert out.spec.containers[0].image == "busybox:1.36"
    with pytest.raises(errors.ApiError):
        await client.update_status(new_object("Event", "no-status-here"))


async def test_create_ignores_client_status_and_server_fields(client):
    d = new_object("Deployment", "fresh")
    d.status.replicas = 7
    d.metadata.uid = "forged"
    d.metadata.generation = 9
    d.metadata.resource_version = "12345"
    out = await client.create(d)
    assert out.status.replicas == 0 and out.metadata.uid != "forged" and out.metadata.generation == 1


async def test_generate_name(client):
    names = set()
    for _ in range(5):
        p = new_object("Pod", "")
        p.metadata.generate_name = "web-"
        out = await client.create(p)
        assert out.metadata.name.startswith("web-") and len(out.metadata.name) == len("web-") + 5
        names.add(out.metadata.name)
    assert len(names) == 5


async def test_missing_and_terminating_namespace(client):
    with pytest.raises(errors.NotFound) as exc:
        await client.create(new_object("Pod", "p", "nowhere"))
    assert exc.value.message == 'namespaces "nowhere" not found'
    await client.create(new_object("Namespace", "doomed"))
    await client.create(new_object("Pod", "p", "doomed"))
    await client.delete("Namespace", "doomed")
    # The terminating state reaches the server's namespace view through its watch.
    for _ in range(200):
        try:
            await client.create(new_object("Pod", "late", "doomed"))
        except errors.Forbidden as exc:
            assert "because it is being terminated" in exc.message
            break
        await client.delete("Pod", "late", "doomed", grace_period=0)
        await asyncio.sleep(0.02)
    else:
        pytest.fail("creating in a terminating namespace was never refused")


async def test_system_namespaces_exist(client):
    items, _ = await client.list("Namespace")
    names = {n.metadata.name for n in items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    assert all(n.status.phase == "Active" for n in items)


async def test_dry_run_writes_nothing(client, etcd):
    before = etcd.revision()
    out = await client.create(new_object("Deployment", "dry"), dry_run=True)
    assert out.metadata.uid and out.metadata.generation == 1
    assert etcd.revision() == before
    with pytest.raises(errors.NotFound):
        await client.get("Deployment", "dry")
    d = await client.create(new_object("Deployment", "dry"))
    rev = etcd.revision()
    d.spec.replicas = 4
    out = await client.update(d, dry_run=True)
    assert out.spec.replicas == 4 and out.metadata.generation == 2
    _, deleted = await client.delete("Deployment", "dry", dry_run=True)
    assert deleted and etcd.revision() == rev
    assert (await client.get("Deployment", "dry")).spec.replicas == 1


async def test_noop_update_writes_nothing(client, etcd):
    d = await client.create(new_object("Deployment", "same"))
    rev = etcd.revision()
    again = await client.update(d)
    assert again.metadata.resource_version == d.metadata.resource_version
    assert etcd.revision() == rev
    dry = await client.update(d, dry_run=True)
    assert dry == again


async def test_unconditional_update_without_resource_version(client):
    d = await client.create(new_object("Deployment", "uncond"))
    d.metadata.resource_version = ""
    d.spec.replicas = 2
    out = await client.update(d)
    assert out.spec.replicas == 2


async def test_cluster_scoped_ignores_namespace(client):
    n = new_object("Node", "node-a")
    n.metadata.namespace = ""
    out = await client.create(n)
    assert out.metadata.namespace == ""
    assert (await client.get("Node", "node-a")).metadata.name == "node-a"


async def test_quantities_canonical_on_output(client):
    p = new_object("Pod", "q")
    p.spec.containers[0].resources.requests["cpu"] = "0.5"
    p.spec.containers[0].resources.requests["memory"] = "131072Ki"
    out = await client.create(p)
    assert out.spec.containers[0].resources.requests["cpu"] == "500m"
    assert out.spec.containers[0].resources.requests["memory"] == "128Mi"


async def test_list_pagination(client, apiserver):
    for i in range(7):
        await client.create(new_object("Lease", f"l{i}"))
    import grpc
    from machinery.pb import api_pb2, api_pb2_grpc
    names, token = [], ""
    async with apiserver.aio_channel() as channel:   # the raw API: limit/continue
        stub = api_pb2_grpc.ApiStub(channel)
        while True:
            resp = await stub.List(api_pb2.ListRequest(kind="Lease", namespace="default", limit=3,
                                                       continue_token=token))
            names += [a.type_url for a in resp.items]
            token = resp.continue_token
            if not token:
                break
    assert len(names) == 7


async def test_version(client):
    v = await client.version()
    assert v.etcd_version.startswith("3.")


async def test_object_too_large_for_etcd(client, apiserver):
    p = new_object("Pod", "huge")
    p.spec.containers[0].args.extend(["x" * 100_000] * 20)      # 2 MB: over etcd's 1.5 MiB limit
    with pytest.raises(errors.RequestEntityTooLarge) as exc:     # 413, as Kubernetes maps etcd's limit
        await client.create(p)
    assert "too large" in exc.value.message and "1572864" in exc.value.message
    assert (await client.create(new_object("Pod", "small"))).metadata.name == "small"
    assert "Traceback" not in apiserver.log_path.read_text()


async def test_update_of_an_earlier_incarnation_is_refused(client):
    first = await client.create(new_object("Deployment", "reborn"))
    await client.delete("Deployment", "reborn")
    await client.create(new_object("Deployment", "reborn"))
    first.metadata.resource_version = ""                  # unconditional, but the uid is stale
    with pytest.raises(errors.Invalid) as exc:
        await client.update(first)
    assert "metadata.uid" in [c.field for c in exc.value.causes]


async def test_status_writes_canonicalize_status_quantities_and_keep_the_spec(client):
    """A status write canonicalizes the quantities under status (a Node's capacity) and keeps
    everything else as stored (a Pod's spec: canonical since its create)."""
    n = new_object("Node", "node-q")
    n.metadata.namespace = ""
    n = await client.create(n)
    n.status.capacity["memory"] = "2048Ki"
    n.status.capacity["cpu"] = "2000m"
    out = await client.update_status(n)
    assert (out.status.capacity["memory"], out.status.capacity["cpu"]) == ("2Mi", "2")
    p = new_object("Pod", "q-status")
    p.spec.containers[0].resources.requests["memory"] = "131072Ki"
    p = await client.create(p)
    p.spec.containers[0].resources.requests["memory"] = "1Gi"        # not a status write's to change
    p.status.phase = "Running"
    out = await client.update_status(p)
    assert out.status.phase == "Running"
    assert (await client.get("Pod", "q-status", "default")).spec.containers[0].resources.requests["memory"] == "128Mi"
