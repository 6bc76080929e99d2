"""apiserver/http/conversion.py: autoscaling/v1 <-> v2 HorizontalPodAutoscaler
as Kubernetes' pkg/apis/autoscaling/v1 conversion does it."""
from __future__ import annotations

import json

from apiserver.http import conversion as c

V2 = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
      "metadata": {"name": "h", "annotations": {"keep": "me"}},
      "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
               "minReplicas": 1, "maxReplicas": 5,
               "metrics": [
                   {"type": "Pods", "pods": {"metric": {"name": "qps"},
                                             "target": {"type": "AverageValue", "averageValue": "10"}}},
                   {"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "s"},
                                                 "metric": {"name": "hits"},
                                                 "target": {"type": "Value", "value": "2k"}}},
                   {"type": "External", "external": {"metric": {"name": "queue", "selector": {
                       "matchLabels": {"q": "a"}}}, "target": {"type": "AverageValue", "averageValue": "30"}}},
                   {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                               "averageUtilization": 50}}}],
               "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
      "status": {"currentReplicas": 2, "desiredReplicas": 3,
                 "currentMetrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "current": {"averageUtilization": 30, "averageValue": "30m"}}}],
                 "conditions": [{"type": "AbleToScale", "status": "True"}]}}


def test_v2_to_v1_maps_cpu_and_keeps_the_rest_in_annotations():
    v1 = c.hpa_to_v1(V2)
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"] == {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                          "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}
    assert v1["status"] == {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 30}
    notes = v1["metadata"]["annotations"]
    assert notes["keep"] == "me"
    assert json.loads(notes[c.METRICS]) == [      # autoscaling/v1's (v2beta1-style) MetricSpec
        {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}},
        {"type": "Object", "object": {"target": {"kind": "Service", "name": "s"}, "metricName": "hits",
                                      "targetValue": "2k"}},
        {"type": "External", "external": {"metricName": "queue", "metricSelector": {"matchLabels": {"q": "a"}},
                                          "targetAverageValue": "30"}}]
    assert json.loads(notes[c.CURRENT_METRICS]) == [
        {"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 30,
                                          "currentAverageValue": "30m"}}]
    assert json.loads(notes[c.BEHAVIOR]) == {"scaleDown": {"stabilizationWindowSeconds": 60}}
    assert json.loads(notes[c.CONDITIONS]) == [{"type": "AbleToScale", "status": "True"}]
    assert V2["spec"]["metrics"][3]["resource"]["name"] == "cpu"          # the input is not modified


def test_v1_round_trips_to_the_same_v2():
    back, unknown = c.hpa_to_v2(c.hpa_to_v1(V2))
    assert unknown == [] and back == V2


def test_plain_v1_without_annotations():
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
          "spec": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 70},
          "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 12}}
    v2, unknown = c.hpa_to_v2(v1)
    assert unknown == [] and v2["apiVersion"] == "autoscaling/v2" and "annotations" not in v2["metadata"]
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert v2["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 12}}}]
    no_cpu, _ = c.hpa_to_v2({"spec": {"maxReplicas": 3}})
    assert "metrics" not in no_cpu["spec"]                  # v2 defaulting adds the 80 % CPU target


def test_v2_only_fields_are_reported_and_unreadable_annotations_ignored():
    v1 = {"metadata": {"annotations": {c.METRICS: "not json", c.CONDITIONS: "{"}},
          "spec": {"maxReplicas": 3, "metrics": [], "behavior": {}}, "status": {"conditions": []}}
    v2, unknown = c.hpa_to_v2(v1)
    assert unknown == ["spec.metrics", "spec.behavior", "status.conditions"]
    assert v2["spec"] == {"maxReplicas": 3} and "conditions" not in v2["status"]
    assert "annotations" not in v2["metadata"]


def test_a_v1_protobuf_body_is_read_as_v1_json():
    """What kubectl ≤ 1.32's typed autoscale client sends (application/vnd.kubernetes.protobuf)."""
    from apiserver.http import k8sproto
    hpa = k8sproto.message_class("k8s.io.api.autoscaling.v1.HorizontalPodAutoscaler")()
    hpa.metadata.name = "web"
    hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name = "Deployment", "web"
    hpa.spec.maxReplicas, hpa.spec.targetCPUUtilizationPercentage = 4, 60
    unknown = k8sproto.message_class(k8sproto.UNKNOWN)(raw=hpa.SerializeToString())
    unknown.typeMeta.apiVersion, unknown.typeMeta.kind = "autoscaling/v1", "HorizontalPodAutoscaler"
    data = k8sproto.decode(k8sproto.MAGIC + unknown.SerializeToString())
    assert data["apiVersion"] == "autoscaling/v1" and data["spec"]["targetCPUUtilizationPercentage"] == 60
    v2, _ = c.hpa_to_v2(data)
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
