"""The storage controllers (persistentvolume-binder, pvc-protection,
pv-protection, namespace) against a real apiserver on a real etcd: the
default local-path class, WaitForFirstConsumer provisioning once a node is
selected, static binding, reclaim policies, deletion behind the protection
finalizers, and a namespace taking its ConfigMaps, Secrets and claims along."""
from __future__ import annotations

import asyncio

import pytest

from controllers import main as cm
from controllers import pvmatch as m
from machinery import codec, errors, kinds
from tests.integration.test_controllers_sim import until

CONTROLLERS = "persistentvolume-binder,pvc-protection,pv-protection,namespace"


@pytest.fixture
async def controllers(client):
    args = cm.parse_args(["--controllers", CONTROLLERS])
    tasks, _ = cm.build(client, args)
    running = [asyncio.create_task(coro, name=name) for name, coro in tasks.items()]
    try:
        yield
    finally:
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def claim(name, cls=None, size="1Gi", ns="default"):
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": name, "namespace": ns}, "spec": spec})


async def _get(client, kind, name, ns=""):
    try:
        return await client.get(kind, name, ns)
    except errors.NotFound:
        return None


async def test_local_path_claim_waits_for_a_node_then_is_provisioned_bound_and_reclaimed(client, controllers):
    sc = await until(lambda: _get(client, "StorageClass", "local-path"), "default class")
    assert m.is_default_class(sc) and sc.volume_binding_mode == "WaitForFirstConsumer"
    node = kinds.new("Node")
    node.metadata.name = "n1"
    node.metadata.annotations[m.LOCAL_PATH_DIR_ANNOTATION] = "/var/lib/kctl-test/n1/storage"
    await client.create(node)
    await client.create(claim("data"))

    async def defaulted():
        c = await client.get("PersistentVolumeClaim", "data", "default")
        return c if c.spec.storage_class_name == "local-path" else None
    pvc = await until(defaulted, "default class assigned")
    assert pvc.status.phase == "Pending" and not pvc.spec.volume_name
    assert (await client.list("PersistentVolume"))[0] == []

    pvc.metadata.annotations[m.SELECTED_NODE] = "n1"            # what the scheduler's plugin will do
    await client.update(pvc)

    async def bound():
        c = await client.get("PersistentVolumeClaim", "data", "default")
        return c if c.status.phase == "Bound" else None
    pvc = await until(bound, "claim bound")
    pv = await client.get("PersistentVolume", pvc.spec.volume_name)
    assert pv.metadata.name == f"pvc-{pvc.metadata.uid}" and pv.status.phase == "Bound"
    assert pv.spec.host_path.path == f"/var/lib/kctl-test/n1/storage/{pv.metadata.name}_default_data"
    term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert (term.key, list(term.values)) == (m.HOSTNAME_LABEL, ["n1"])
    assert pv.spec.persistent_volume_reclaim_policy == "Delete" and pvc.status.capacity["storage"] == "1Gi"

    await client.delete("PersistentVolumeClaim", "data", "default")   # no pod uses it
    await until(lambda: _gone(client, "PersistentVolumeClaim", "data", "default"), "claim gone")
    # the data goes first: a helper pod on n1 (no agent runs here, so the test plays its part)
    helper = await until(lambda: _get(client, "Pod", f"cleanup-{pv.metadata.name}", "kube-system"), "helper pod")
    assert helper.spec.node_name == "n1" and helper.spec.volumes[0].host_path.path == "/var/lib/kctl-test/n1/storage"
    assert list(helper.spec.containers[0].command) == ["rm", "-rf", f"/storage/{pv.metadata.name}_default_data"]
    assert (await client.get("PersistentVolume", pv.metadata.name)).status.phase == "Released"
    helper.status.phase = "Succeeded"
    await client.update_status(helper)
    await until(lambda: _gone(client, "PersistentVolume", pv.metadata.name), "Delete policy removes the PV")
    await until(lambda: _gone(client, "Pod", helper.metadata.name, "kube-system"), "helper pod removed")


async def _gone(client, kind, name, ns=""):
    return await _get(client, kind, name, ns) is None


async def test_static_volume_binds_and_is_retained_after_the_claim_goes(client, controllers):
    pv = codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "manual-10"},
                          "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                                   "hostPath": {"path": "/mnt/manual-10"}, "storageClassName": "manual"}})
    await client.create(pv)
    await until(lambda: _phase(client, "PersistentVolume", "manual-10", want="Available"), "PV available")
    await client.create(claim("db", cls="manual", size="3Gi"))
    await until(lambda: _phase(client, "PersistentVolumeClaim", "db", "default", want="Bound"), "bound")
    await until(lambda: _phase(client, "PersistentVolume", "manual-10", want="Bound"), "PV bound")
    _, gone = await client.delete("PersistentVolume", "manual-10")
    assert not gone                                                 # pv-protection: it is Bound
    await client.delete("PersistentVolumeClaim", "db", "default")
    # the claim goes, the volume is Released, then (being deleted and unbound) goes too
    await until(lambda: _gone(client, "PersistentVolume", "manual-10"), "released volume deleted")


async def test_retain_keeps_a_released_volume(client, controllers):
    pv = codec.from_dict({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "keep"},
                          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                   "hostPath": {"path": "/mnt/keep"}, "storageClassName": "",
                                   "claimRef": {"namespace": "default", "name": "pre"}}})
    await client.create(pv)
    await client.create(claim("pre", cls=""))
    await until(lambda: _phase(client, "PersistentVolumeClaim", "pre", "default", want="Bound"), "pre-bound")
    await client.delete("PersistentVolumeClaim", "pre", "default")
    await until(lambda: _phase(client, "PersistentVolume", "keep", want="Released"), "released")
    assert (await client.get("PersistentVolume", "keep")).spec.persistent_volume_reclaim_policy == "Retain"


async def test_deleting_a_namespace_deletes_its_config_secrets_and_claims(client, controllers):
    ns = kinds.new("Namespace")
    ns.metadata.name = "shop"
    await client.create(ns)
    cmap = kinds.new("ConfigMap")
    cmap.metadata.name, cmap.metadata.namespace = "settings", "shop"
    s = kinds.new("Secret")
    s.metadata.name, s.metadata.namespace = "pw", "shop"
    for obj in (cmap, s, claim("data", cls="", ns="shop")):
        await client.create(obj)
    await client.delete("Namespace", "shop")
    await until(lambda: _gone(client, "Namespace", "shop"), "namespace finalized")
    for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim"):
        assert (await client.list(kind, "shop"))[0] == []


async def _phase(client, kind, name, ns="", *, want):
    obj = await _get(client, kind, name, ns)
    return obj is not None and obj.status.phase == want


async def test_reapplying_a_claim_keeps_the_class_the_binder_filled_in(client, apiserver, controllers, tmp_path):
    """kctl apply's three-way merge leaves alone what it never set (the
    default class), so re-applying the manifest is not an immutable-spec error."""
    from tests.integration.kctl_helpers import kctl
    manifest = tmp_path / "pvc.yaml"
    manifest.write_text("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: web-data}\n"
                        "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n")
    r = await asyncio.to_thread(kctl, apiserver.target, "apply", "-f", str(manifest))
    assert r.code == 0, r

    async def defaulted():
        c = await client.get("PersistentVolumeClaim", "web-data", "default")
        return c.spec.HasField("storage_class_name")
    await until(defaulted, "default class assigned")
    r = await asyncio.to_thread(kctl, apiserver.target, "apply", "-f", str(manifest))
    assert (r.code, r.out) == (0, "persistentvolumeclaim/web-data unchanged\n"), r
    r = await asyncio.to_thread(kctl, apiserver.target, "get", "pvc", "web-data")
    assert r.out.splitlines()[1].split()[:3] == ["web-data", "Pending", "local-path"], r
