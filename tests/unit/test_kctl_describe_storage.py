"""`kctl describe` of the configuration and storage kinds: kubectl's layout,
Secret values hidden (sizes only), claims listing the pods that use them."""
from __future__ import annotations

import asyncio
import re

from kubectlish import describe
from kubectlish.describe_blocks import render
from kubectlish.describe_storage import (describe_config_map, describe_persistent_volume,
                                         describe_persistent_volume_claim, describe_secret,
                                         describe_storage_class)
from machinery import codec
from machinery.fakeclient import FakeClient


def o(d):
    return codec.from_dict(d)


def lines(ls):
    """Rendered lines with runs of spaces as one (the alignment width is tabwriter's business)."""
    return [re.sub(r" {2,}", " ", ln.rstrip()) for ln in render(ls).splitlines()]


def test_secret_shows_sizes_never_values():
    s = o({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
           "type": "Opaque", "data": {"password": "aHVudGVyMg=="}})
    out = lines(describe_secret(s, []))
    assert out[-6:] == ["", "Type: Opaque", "", "Data", "====", "password: 7 bytes"]
    assert "hunter2" not in render(describe_secret(s, []))


def test_config_map_shows_data_and_binary_sizes():
    cm = o({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"},
            "data": {"mode": "fast"}, "binaryData": {"blob": "AAE="}})
    out = lines(describe_config_map(cm, []))
    i = out.index("Data")
    assert out[i:i + 5] == ["Data", "====", "mode:", "----", "fast"]
    assert "blob: 2 bytes" in out and out[-1] == "Events: <none>"


def test_volume_claim_and_class():
    pv = o({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                     "volumeMode": "Filesystem", "hostPath": {"path": "/var/lib/kctl/storage/pv1",
                                                              "type": "DirectoryOrCreate"},
                     "claimRef": {"namespace": "default", "name": "data"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}},
            "status": {"phase": "Bound"}})
    out = lines(describe_persistent_volume(pv, []))
    for want in ("Claim: default/data", "Access Modes: RWO", "Status: Bound",
                 " Term 0: kubernetes.io/hostname in [n1]", " Path: /var/lib/kctl/storage/pv1"):
        assert want in out, (want, out)
    pvc = o({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                      "volumeName": "pv1", "storageClassName": "local-path", "volumeMode": "Filesystem"},
             "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}})
    pod = o({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "redis", "namespace": "default"},
             "spec": {"containers": [{"name": "r", "image": "redis"}],
                      "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})
    out = lines(describe_persistent_volume_claim(pvc, [], [pod]))
    assert "Used By: redis" in out and "Capacity: 1Gi" in out and "Volume: pv1" in out
    sc = o({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kctl.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"})
    out = lines(describe_storage_class(sc, []))
    assert out[:2] == ["Name: local-path", "IsDefaultClass: Yes"]
    assert "VolumeBindingMode: WaitForFirstConsumer" in out


def test_describe_one_dispatches_the_storage_kinds():
    async def go():
        client = FakeClient()
        pvc = o({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": "data", "namespace": "default"},
                 "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                 "status": {"phase": "Pending"}})
        await client.create(pvc)
        return await describe.describe_one(client, pvc)
    out = lines(asyncio.run(go()).splitlines())
    assert "Status: Pending" in out and "Used By: <none>" in out
