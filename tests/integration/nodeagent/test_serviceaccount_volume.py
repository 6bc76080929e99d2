"""The projected ServiceAccount volume on a real agent with runc: the token,
ca.crt and namespace reach the container at the kube-api-access-* mount
(the volume the ServiceAccount admission plugin adds), the token
authenticates at the apiserver (over HTTPS, trusting the cluster CA: the
gRPC port requires a client certificate, so a token never reaches it),
the container has KUBERNETES_SERVICE_HOST/PORT, and the token stops working
once its pod is gone."""
from __future__ import annotations

import jwt
import pytest

from apiserver.serviceaccount.admission import MOUNT_PATH, api_access_volume
from machinery import codec, errors, kinds
from tests.integration.kctl_helpers import whoami
from tests.integration.nodeagent.conftest import (cid_of, make_pod, needs_root, node_ready, pod_gone,
                                                  pod_running)

pytestmark = [pytest.mark.root, needs_root]


async def ensure(api, obj):
    try:
        await api.create(obj)
    except errors.AlreadyExists:
        pass


async def test_token_ca_and_namespace_reach_the_pod_and_the_token_authenticates(api, cluster, make_node):
    node = make_node("sa")
    await node_ready(api, node)
    sa = kinds.new("ServiceAccount")
    sa.metadata.name, sa.metadata.namespace = "default", "default"
    await ensure(api, sa)
    cm = kinds.new("ConfigMap")
    cm.metadata.name, cm.metadata.namespace = "kube-root-ca.crt", "default"
    cm.data["ca.crt"] = "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"
    await ensure(api, cm)
    vol = codec.to_dict(api_access_volume("kube-api-access-test1"))
    await api.create(make_pod("sa-pod", node, {
        "name": "main", "image": "busybox", "command": ["sleep", "3600"],
        "volumeMounts": [{"name": vol["name"], "mountPath": MOUNT_PATH, "readOnly": True}]},
        serviceAccountName="default", volumes=[vol]))
    pod = await pod_running(api, "sa-pod", node)
    cid = cid_of(pod, "main")

    def sh(cmd: str) -> str:
        res = node.runc_exec(cid, "sh", "-c", cmd)
        assert res.returncode == 0, res.stderr
        return res.stdout

    token = sh(f"cat {MOUNT_PATH}/token")
    assert sh(f"cat {MOUNT_PATH}/namespace") == "default"
    assert "BEGIN CERTIFICATE" in sh(f"cat {MOUNT_PATH}/ca.crt")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:default:default"
    assert claims["kubernetes.io"]["pod"] == {"name": "sa-pod", "uid": pod.metadata.uid}
    assert claims["exp"] - claims["iat"] == 3607
    assert "tmpfs" in sh(f"grep ' {MOUNT_PATH} ' /proc/mounts || mount | grep serviceaccount")
    assert "KUBERNETES_SERVICE_HOST=" in sh("env") and "KUBERNETES_SERVICE_PORT=443" in sh("env")
    assert sh(f"touch {MOUNT_PATH}/x 2>&1 || echo refused").strip().endswith("refused")

    assert whoami(cluster.http_url, token) == (201, "system:serviceaccount:default:default")
    assert whoami(cluster.http_url, token[:-4] + "AAAA") == (401, "")
    await api.delete("Pod", "sa-pod", "default", grace_period=0)
    await pod_gone(api, "sa-pod", node)
    assert whoami(cluster.http_url, token) == (401, "")
