"""ConfigMaps, Secrets, PersistentVolumes, claims and StorageClasses through
a real apiserver on a real etcd: CRUD, server-set phases and protection
finalizers, stringData, immutability and validation errors as Kubernetes
words them."""
from __future__ import annotations

import pytest

from machinery import codec, errors, kinds


def config_map(name="settings", **data):
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = name, "default"
    cm.data.update(data or {"mode": "fast"})
    return cm


def volume(name="pv-api"):
    return codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                                     "hostPath": {"path": f"/mnt/{name}"}}})


def claim(name="pvc-api", **spec):
    return codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": name, "namespace": "default"},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "1Gi"}}, **spec}})


def storage_class(name="gold"):
    return codec.from_dict({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                            "metadata": {"name": name}, "provisioner": "example.com/gold"})


async def test_config_map_and_secret_crud(shared_client):
    c = shared_client
    cm = await c.create(config_map("crud-cm", color="blue"))
    cm.data["color"] = "red"
    cm.binary_data["blob"] = b"\x00\x01"
    cm = await c.update(cm)
    got = await c.get("ConfigMap", "crud-cm", "default")
    assert dict(got.data) == {"color": "red"} and got.binary_data["blob"] == b"\x00\x01"
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace = "crud-secret", "default"
    s.type = "kubernetes.io/basic-auth"
    s.string_data["username"], s.string_data["password"] = "admin", "pw"
    created = await c.create(s)
    assert dict(created.data) == {"username": b"admin", "password": b"pw"} and not created.string_data
    created.string_data["password"] = "changed"                  # write-only, merged on update too
    updated = await c.update(created)
    assert updated.data["password"] == b"changed" and not updated.string_data
    for kind, name in (("ConfigMap", "crud-cm"), ("Secret", "crud-secret")):
        _, gone = await c.delete(kind, name, "default")
        assert gone


async def test_immutable_config_map_refuses_data_changes_with_kubernetes_message(shared_client):
    c = shared_client
    cm = config_map("frozen")
    cm.immutable = True
    cm = await c.create(cm)
    cm.data["mode"] = "slow"
    with pytest.raises(errors.Invalid) as exc:
        await c.update(cm)
    assert exc.value.message == ('ConfigMap "frozen" is invalid: data: Forbidden: '
                                 'field is immutable when `immutable` is set')
    cm = await c.get("ConfigMap", "frozen", "default")
    cm.metadata.labels["still"] = "editable"
    assert (await c.update(cm)).metadata.labels["still"] == "editable"


async def test_secret_validation_names_the_missing_keys(shared_client):
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace = "tls-bad", "default"
    s.type = "kubernetes.io/tls"
    s.data["tls.crt"] = b"cert"
    with pytest.raises(errors.Invalid) as exc:
        await shared_client.create(s)
    assert exc.value.message == 'Secret "tls-bad" is invalid: data[tls.key]: Required value'


async def test_volumes_start_pending_with_protection_finalizers(shared_client):
    c = shared_client
    pv = await c.create(volume())
    assert pv.status.phase == "Pending" and list(pv.metadata.finalizers) == ["kubernetes.io/pv-protection"]
    assert pv.spec.persistent_volume_reclaim_policy == "Retain"
    pvc = await c.create(claim())
    assert pvc.status.phase == "Pending" and list(pvc.metadata.finalizers) == ["kubernetes.io/pvc-protection"]
    assert not pvc.spec.HasField("storage_class_name")            # nil: the binder fills in the default
    _, gone = await c.delete("PersistentVolumeClaim", "pvc-api", "default")
    assert not gone                                               # waits for pvc-protection
    held = await c.get("PersistentVolumeClaim", "pvc-api", "default")
    assert held.metadata.HasField("deletion_timestamp")
    del held.metadata.finalizers[:]
    await c.update(held)
    with pytest.raises(errors.NotFound):
        await c.get("PersistentVolumeClaim", "pvc-api", "default")
    pvc2 = await c.create(claim("pvc-imm"))
    pvc2.spec.access_modes[:] = ["ReadWriteMany"]
    with pytest.raises(errors.Invalid, match="spec is immutable after creation except resources.requests"):
        await c.update(pvc2)


async def test_storage_class_crud_and_immutable_provisioner(shared_client):
    c = shared_client
    sc = await c.create(storage_class())
    assert sc.api_version == "storage.k8s.io/v1" and sc.volume_binding_mode == "Immediate"
    assert sc.reclaim_policy == "Delete"
    sc.provisioner = "example.com/other"
    with pytest.raises(errors.Invalid) as exc:
        await c.update(sc)
    assert exc.value.message == ('StorageClass.storage.k8s.io "gold" is invalid: provisioner: Forbidden: '
                                 'updates to provisioner are forbidden.')
    _, gone = await c.delete("StorageClass", "gold")
    assert gone


def test_kctl_create_secret_and_configmap_then_get_yaml(shared_apiserver):
    from tests.integration.kctl_helpers import kctl
    server = shared_apiserver.target
    r = kctl(server, "create", "secret", "generic", "kctl-db", "--from-literal=password=hunter2")
    assert (r.code, r.out) == (0, "secret/kctl-db created\n"), r
    r = kctl(server, "create", "configmap", "kctl-settings", "--from-literal=mode=fast")
    assert (r.code, r.out) == (0, "configmap/kctl-settings created\n"), r
    y = kctl(server, "get", "secret", "kctl-db", "-o", "yaml")
    assert "password: aHVudGVyMg==\n" in y.out and "type: Opaque\n" in y.out and "hunter2" not in y.out
    r = kctl(server, "create", "secret", "generic", "kctl-db", "--from-literal=password=x")
    assert r.code == 1 and r.err == 'Error from server (AlreadyExists): secrets "kctl-db" already exists\n', r
