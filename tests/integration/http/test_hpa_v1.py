"""autoscaling/v1 HorizontalPodAutoscaler over HTTP next to the stored v2:
the real kubectl applying a v1 manifest (create, unchanged, a strategic
merge patch), reading and explaining either version (`kubectl autoscale`
of the pinned kubectl 1.37 writes v2, older ones v1: it is read back in v1 here), the
official Python client's AutoscalingV1Api (create, read, patch, replace,
list, watch, delete), a v1 read-modify-write that keeps the v2-only
metrics and behavior it cannot see, and v2-only fields in a v1 body
refused or warned about (apiserver/http/conversion.py)."""
from __future__ import annotations

import json

import pytest

from tests.integration.http.test_kubectl import DEPLOY, ns

HPA_V2 = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: mem}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 60}
"""


HPA_V1 = """
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: php}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 10
  targetCPUUtilizationPercentage: 50
"""
V1 = "horizontalpodautoscalers.v1.autoscaling"


def test_kubectl_applies_and_reads_v1_and_autoscale_reads_back_in_v1(kube):
    n = ns(kube, "hpa1")
    kube.ok("apply", "-n", n, "-f", "-", input=DEPLOY)
    assert kube.ok("apply", "-n", n, "-f", "-", input=HPA_V1).strip() == \
        "horizontalpodautoscaler.autoscaling/php created"
    assert kube.ok("apply", "-n", n, "-f", "-", input=HPA_V1).strip() == \
        "horizontalpodautoscaler.autoscaling/php unchanged"
    assert kube.ok("apply", "-n", n, "-f", "-", input=HPA_V1.replace("50", "55")).strip() == \
        "horizontalpodautoscaler.autoscaling/php configured"        # a strategic merge patch on the v1 form
    v2 = json.loads(kube.ok("get", "hpa", "php", "-n", n, "-o", "json"))           # the preferred version
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 55}}}]
    row = kube.ok("get", V1, "php", "-n", n, "--no-headers").split()
    assert row[:6] == ["php", "Deployment/web", "cpu:", "<unknown>/55%", "1", "10"]

    kube.ok("autoscale", "deploy/web", "-n", n, "--min=2", "--max=5", "--cpu-percent=60")
    v1 = json.loads(kube.ok("get", V1, "web", "-n", n, "-o", "json"))
    assert v1["apiVersion"] == "autoscaling/v1" and "metrics" not in v1["spec"]
    assert (v1["spec"]["minReplicas"], v1["spec"]["maxReplicas"], v1["spec"]["targetCPUUtilizationPercentage"]) \
        == (2, 5, 60)
    listed = json.loads(kube.ok("get", V1, "-n", n, "-o", "json"))
    assert [i["apiVersion"] for i in listed["items"]] == ["autoscaling/v1", "autoscaling/v1"]
    group = json.loads(kube.ok("get", "--raw", "/apis/autoscaling"))
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"] and group["preferredVersion"]["version"] == "v2"
    explained = kube.ok("explain", "hpa.spec.targetCPUUtilizationPercentage", "--api-version=autoscaling/v1")
    assert "VERSION:    v1" in explained and "target average CPU utilization" in explained


def test_python_client_v1_round_trip_keeps_v2_only_fields(kube, k8s):
    from kubernetes import client, watch
    n = ns(kube, "hpa2")
    kube.ok("apply", "-n", n, "-f", "-", input=HPA_V2)
    api = client.AutoscalingV1Api(k8s)
    got = api.read_namespaced_horizontal_pod_autoscaler("mem", n)
    assert got.spec.target_cpu_utilization_percentage == 50
    assert "autoscaling.alpha.kubernetes.io/metrics" in got.metadata.annotations
    got.spec.target_cpu_utilization_percentage = 70
    got.spec.max_replicas = 6
    api.replace_namespaced_horizontal_pod_autoscaler("mem", n, got)
    v2 = json.loads(kube.ok("get", "hpa", "mem", "-n", n, "-o", "json"))
    assert v2["spec"]["maxReplicas"] == 6
    assert v2["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue",
                                                                       "averageValue": "100Mi"}}},
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                    "averageUtilization": 70}}}]
    assert v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert not any(k.startswith("autoscaling.alpha") for k in v2["metadata"].get("annotations", {}))

    api.patch_namespaced_horizontal_pod_autoscaler("mem", n, {"spec": {"minReplicas": 3}})
    created = api.create_namespaced_horizontal_pod_autoscaler(n, client.V1HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="plain"),
        spec=client.V1HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V1CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                                  name="web"),
            max_replicas=3)))
    assert created.spec.target_cpu_utilization_percentage == 80 and created.spec.min_replicas == 1  # v2 defaults
    listed = api.list_namespaced_horizontal_pod_autoscaler(n)
    assert [(h.metadata.name, h.spec.min_replicas) for h in listed.items] == [("mem", 3), ("plain", 1)]
    seen = [ev["object"].spec.target_cpu_utilization_percentage
            for ev in watch.Watch().stream(api.list_namespaced_horizontal_pod_autoscaler, n, timeout_seconds=1)]
    assert sorted(seen) == [70, 80]
    api.delete_namespaced_horizontal_pod_autoscaler("plain", n)
    assert kube.ok("get", "hpa", "-n", n, "-o", "name").split() == ["horizontalpodautoscaler.autoscaling/mem"]


@pytest.mark.parametrize("validation, code", [("Strict", 400), ("Warn", 201)])
def test_v2_only_fields_in_a_v1_body_are_unknown(kube, validation, code):
    import urllib.error
    import urllib.request
    n = ns(kube, f"hpa3{validation.lower()}")
    body = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 2,
                     "metrics": [{"type": "Pods"}]}}
    req = urllib.request.Request(f"{kube.url}/apis/autoscaling/v1/namespaces/{n}/horizontalpodautoscalers"
                                 f"?fieldValidation={validation}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with kube.urlopen(req) as r:
            got, status, warning = json.loads(r.read()), r.status, r.headers.get("Warning", "")
    except urllib.error.HTTPError as e:
        got, status, warning = json.loads(e.read()), e.code, ""
    assert status == code
    if code == 400:
        assert got["message"] == ('HorizontalPodAutoscaler in version "v1" cannot be handled as a '
                                  'HorizontalPodAutoscaler: strict decoding error: unknown field "spec.metrics"')
        assert "x" not in kube.ok("get", "hpa", "-n", n, "-o", "name")
    else:
        assert warning == '299 - "unknown field \\"spec.metrics\\""'
        assert got["spec"]["targetCPUUtilizationPercentage"] == 80
