"""Events written by the real kubectl and the official Python client are
kept for --event-ttl (1 h by default): their etcd keys carry the apiserver's
shared lease, which Kubernetes grants for the ttl plus a minute."""
from __future__ import annotations

from kubernetes import client

from tests.integration.test_api_event_ttl import lease_info, lease_of

EVENT = """apiVersion: v1
kind: Event
metadata: {name: by-kubectl, namespace: default}
involvedObject: {kind: Pod, name: web-0, namespace: default}
reason: Started
message: Started container web
type: Normal
count: 1
"""


def test_events_from_kubectl_and_the_python_client_expire_after_an_hour(kube, k8s):
    kube.ok("create", "-f", "-", input=EVENT)
    client.CoreV1Api(k8s).create_namespaced_event("default", client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="by-python"), reason="Pulled", message="pulled", type="Normal",
        involved_object=client.V1ObjectReference(kind="Pod", name="web-0", namespace="default")))
    assert "by-kubectl" in kube.ok("get", "events", "-n", "default", "-o", "name")
    leases = {lease_of(kube.etcd, "Event", name) for name in ("by-kubectl", "by-python")}
    assert len(leases) == 1 and 0 not in leases
    info = lease_info(kube.etcd, leases.pop())
    assert info["granted"] == 3660
    assert {b"/registry/events/default/by-kubectl", b"/registry/events/default/by-python"} <= set(info["keys"])
