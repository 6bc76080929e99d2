"""--audit-policy-file in a real apiserver, over gRPC and HTTPS: each
request is logged at the level of the first rule it matches (None:
nothing), with requestObject (Request) and responseObject
(RequestResponse), a RequestReceived event unless omitted; and Pod
Security's audit-level violations are the event's
`pod-security.kubernetes.io/audit-violations` annotation."""
from __future__ import annotations

import json
import urllib.request

from harness.control_plane import ApiServer
from machinery import codec
from machinery.client import Client
from tests.cluster import free_port

POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  resources: [{group: "", resources: [configmaps], resourceNames: [quiet]}]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps], resourceNames: [loud]}]
  omitStages: [RequestReceived]
- level: Request
  verbs: [create]
  namespaces: [default]
  omitStages: [RequestReceived]
- level: Metadata
  verbs: [get]
  resources: [{group: "", resources: [configmaps]}]
- level: Metadata
  nonResourceURLs: [/version]
  omitStages: [RequestReceived]
"""


def configmap(name: str, namespace: str = "default"):
    return codec.from_dict({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name, "namespace": namespace}, "data": {"k": name}})


def http(api: ApiServer, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(api.http_url + path, data=json.dumps(body).encode() if body else None,
                                 method="POST" if body else "GET", headers={"Content-Type": "application/json"})
    with api.urlopen(req) as resp:
        return json.loads(resp.read())


async def test_the_policy_decides_level_and_stages_on_both_transports(etcd, tmp_path):
    log, policy = tmp_path / "audit.log", tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    args = ["--audit-log-path", str(log), "--audit-policy-file", str(policy),
            "--http-listen", f"127.0.0.1:{free_port()}"]
    with ApiServer(etcd, tmp_path, extra_args=args) as api:
        async with Client(api.target, timeout=30) as c:
            await c.create(configmap("other", "kube-public"))                 # no rule: not logged
            await c.create(configmap("loud"))                                 # gRPC create: Request
            http(api, "/api/v1/namespaces/default/configmaps", codec.to_dict(configmap("quiet")))   # HTTP: Request
            http(api, "/api/v1/namespaces/default/configmaps/quiet")          # None
            http(api, "/api/v1/namespaces/default/configmaps/loud")           # RequestResponse
            await c.get("ConfigMap", "loud", "default")                       # RequestResponse over gRPC
            http(api, "/api/v1/namespaces/kube-public/configmaps/other")      # Metadata, both stages
            http(api, "/version")                                             # Metadata
            http(api, "/api/v1/pods")                                         # no rule
            await c.list("Pod", "default")                                    # no rule
    # the harness's readiness probes (gRPC Version, /version over gRPC) match the /version rule too
    events = [e for e in map(json.loads, log.read_text().splitlines()) if e["requestURI"] != "/kctl.v1.Api/Version"]
    seen = [(e["verb"], e["requestURI"], e["stage"], e["level"]) for e in events]
    assert seen == [
        ("create", "/kctl.v1.Api/Create", "ResponseComplete", "Request"),
        ("create", "/api/v1/namespaces/default/configmaps", "ResponseComplete", "Request"),
        ("get", "/api/v1/namespaces/default/configmaps/loud", "ResponseComplete", "RequestResponse"),
        ("get", "/kctl.v1.Api/Get", "ResponseComplete", "RequestResponse"),
        ("get", "/api/v1/namespaces/kube-public/configmaps/other", "RequestReceived", "Metadata"),
        ("get", "/api/v1/namespaces/kube-public/configmaps/other", "ResponseComplete", "Metadata"),
        ("get", "/version", "ResponseComplete", "Metadata")]
    grpc_create, http_create, http_get, grpc_get, received, complete, _ = events
    assert grpc_create["requestObject"]["data"] == {"k": "loud"} and "responseObject" not in grpc_create
    assert http_create["requestObject"]["data"] == {"k": "quiet"} and "responseObject" not in http_create
    assert http_get["responseObject"]["data"] == grpc_get["responseObject"]["data"] == {"k": "loud"}
    assert http_get["responseObject"]["metadata"]["name"] == "loud"
    assert received["auditID"] == complete["auditID"] and "responseStatus" not in received
    assert complete["responseStatus"]["code"] == 200 and "requestObject" not in complete


async def test_pod_security_audit_violations_are_event_annotations(etcd, tmp_path):
    log = tmp_path / "audit.log"
    with ApiServer(etcd, tmp_path, extra_args=["--audit-log-path", str(log)]) as api:
        async with Client(api.target, timeout=30) as c:
            await c.create(codec.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": "team", "labels": {"pod-security.kubernetes.io/audit": "restricted"}}}))
            for name, ns in (("p", "team"), ("q", "default")):
                await c.create(codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                                                "metadata": {"name": name, "namespace": ns},
                                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    pods = [e for e in map(json.loads, log.read_text().splitlines())
            if e.get("objectRef", {}).get("resource") == "pods"]
    assert [e["objectRef"]["namespace"] for e in pods] == ["team", "default"]
    team, default = (e["annotations"] for e in pods)
    assert team["pod-security.kubernetes.io/audit-violations"].startswith(
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false')
    assert team["pod-security.kubernetes.io/enforce-policy"] == "baseline:latest"
    assert "pod-security.kubernetes.io/audit-violations" not in default     # audit level privileged there
    assert default["authorization.k8s.io/decision"] == "allow"
