"""The real kubectl against the HTTP API with the configuration and storage
kinds: its own `create configmap|secret` requests, `get` Tables with
kubectl's columns, base64 Secret data, and an immutable ConfigMap's refusal."""
from __future__ import annotations

import base64
import json

import yaml

from tests.integration.http.test_kubectl import ns, rows


def test_kubectl_creates_and_lists_config_and_secrets(kube):
    n = ns(kube, "cfg")
    assert kube.ok("create", "configmap", "settings", "-n", n, "--from-literal=mode=fast",
                   "--from-literal=level=3") == "configmap/settings created\n"
    assert kube.ok("create", "secret", "generic", "db", "-n", n,
                   "--from-literal=password=hunter2") == "secret/db created\n"
    assert rows(kube.ok("get", "cm", "-n", n))[0] == ["NAME", "DATA", "AGE"]
    assert rows(kube.ok("get", "cm", "-n", n))[1][:2] == ["settings", "2"]
    table = rows(kube.ok("get", "secrets", "-n", n))
    assert table[0] == ["NAME", "TYPE", "DATA", "AGE"] and table[1][:3] == ["db", "Opaque", "1"]
    secret = json.loads(kube.ok("get", "secret", "db", "-n", n, "-o", "json"))
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    frozen = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen", "namespace": n},
              "data": {"a": "1"}, "immutable": True}
    kube.ok("apply", "-f", "-", input=yaml.safe_dump(frozen))
    frozen["data"]["a"] = "2"
    err = kube.fails("apply", "-f", "-", input=yaml.safe_dump(frozen))
    assert "data: Forbidden: field is immutable when `immutable` is set" in err


def test_kubectl_gets_volumes_claims_and_classes_with_kubectls_columns(kube):
    n = ns(kube, "vol")
    kube.ok("apply", "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "manual"},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-kubectl"},
         "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                  "storageClassName": "manual", "hostPath": {"path": "/mnt/x"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": n},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                  "resources": {"requests": {"storage": "1Gi"}}}}]))
    assert rows(kube.ok("get", "sc"))[0] == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                                             "ALLOWVOLUMEEXPANSION", "AGE"]
    pv = rows(kube.ok("get", "pv"))
    assert pv[0] == ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS",
                     "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
    assert pv[1][:5] == ["pv-kubectl", "2Gi", "RWO", "Retain", "Pending"]
    pvc = rows(kube.ok("get", "pvc", "-n", n))
    assert pvc[0] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS",
                      "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert pvc[1][:3] == ["data", "Pending", "manual"]
