"""kubectl's columns for ConfigMaps, Secrets, PersistentVolumes, claims and
StorageClasses (machinery/tables.py, shared by `kctl get` and the HTTP
API's Tables), compared with kubectl's own output line by line."""
from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from kubectlish import printers
from machinery import codec

NOW = 1_800_000_000.0


def obj(d, age=60):
    o = codec.from_dict(d)
    t = Timestamp()
    t.FromSeconds(int(NOW - age))
    o.metadata.creation_timestamp.CopyFrom(t)
    return o


def test_configmap_and_secret_tables():
    cm = obj({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
              "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})
    assert printers.table("ConfigMap", [cm], at=NOW).splitlines() == [
        "NAME       DATA   AGE",
        "settings   3      60s"]
    s = obj({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "reg"},
             "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}})
    assert printers.table("Secret", [s], at=NOW).splitlines() == [
        "NAME   TYPE                             DATA   AGE",
        "reg    kubernetes.io/dockerconfigjson   1      60s"]


def test_persistent_volume_table():
    pv = obj({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pvc-1234"},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                       "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                       "claimRef": {"namespace": "default", "name": "data"}, "hostPath": {"path": "/x"},
                       "volumeMode": "Filesystem"},
              "status": {"phase": "Bound"}}, age=300)
    assert printers.table("PersistentVolume", [pv], wide=True, at=NOW).splitlines() == [
        "NAME       CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS   CLAIM          STORAGECLASS   "
        "VOLUMEATTRIBUTESCLASS   REASON   AGE   VOLUMEMODE",
        "pvc-1234   1Gi        RWO,RWX        Delete           Bound    default/data   local-path     "
        "<unset>                          5m    Filesystem"]
    pv.metadata.deletion_timestamp.FromSeconds(int(NOW))
    assert printers.row(pv, at=NOW)[4] == "Terminating"


def test_persistent_volume_claim_table_shows_capacity_only_once_bound():
    base = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "local-path"}}
    pending = obj({**base, "status": {"phase": "Pending"}})
    bound = obj({**base, "metadata": {"name": "db"},
                 "spec": {**base["spec"], "volumeName": "pvc-1234"},
                 "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}})
    assert printers.table("PersistentVolumeClaim", [pending, bound], at=NOW).splitlines() == [
        "NAME   STATUS    VOLUME     CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE",
        "data   Pending                                        local-path     <unset>                 60s",
        "db     Bound     pvc-1234   1Gi        RWO            local-path     <unset>                 60s"]


def test_storage_class_table_marks_the_default():
    sc = obj({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
              "metadata": {"name": "local-path",
                           "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
              "provisioner": "kctl.io/local-path", "reclaimPolicy": "Delete",
              "volumeBindingMode": "WaitForFirstConsumer"}, age=7200)
    assert printers.table("StorageClass", [sc], at=NOW).splitlines() == [
        "NAME                   PROVISIONER          RECLAIMPOLICY   VOLUMEBINDINGMODE      "
        "ALLOWVOLUMEEXPANSION   AGE",
        "local-path (default)   kctl.io/local-path   Delete          WaitForFirstConsumer   false                  120m"]
