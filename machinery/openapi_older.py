"""OpenAPI schemas of the kinds served in an older version too
(kinds.OLDER_VERSIONS): autoscaling/v1 HorizontalPodAutoscaler. kctl has
no proto message for them (the wire converts, apiserver/http/conversion.py),
so their schemas are written out here, with the descriptions of
k8s.io/api/autoscaling/v1/types.go. `kubectl apply` of an autoscaling/v1
manifest needs them: it looks up the kind's PATCH operation in the group
version's document before it sends anything, and `kubectl explain
--api-version=autoscaling/v1` prints them.
"""
from __future__ import annotations

from machinery import kinds
from machinery.openapi_meta import LIST_META, META, TIME, list_schema

OBJECT_META = f"{META}.ObjectMeta"

PREFIX = "io.k8s.api.autoscaling.v1."
HPA = PREFIX + "HorizontalPodAutoscaler"
NAMES = {("autoscaling/v1", "HorizontalPodAutoscaler"): HPA}


def ref(name: str) -> dict:
    return {"$ref": "#/components/schemas/" + name}


def gvk(info: kinds.KindInfo, kind: str | None = None) -> dict:
    return {"group": info.group, "kind": kind or info.kind, "version": info.version}


def _int(description: str, fmt: str = "int32") -> dict:
    return {"description": description, "type": "integer", "format": fmt}


def _str(description: str) -> dict:
    return {"description": description, "type": "string"}


def _obj(name: str, description: str) -> dict:
    return {"allOf": [ref(name)], "description": description, "default": {}}


def schemas() -> dict[str, dict]:
    info = kinds.OLDER_VERSIONS[0]
    return {
        HPA: {
            "description": "configuration of a horizontal pod autoscaler.", "type": "object",
            "properties": {
                "apiVersion": _str("APIVersion defines the versioned schema of this representation of an object."),
                "kind": _str("Kind is a string value representing the REST resource this object represents."),
                "metadata": _obj(OBJECT_META, "Standard object metadata."),
                "spec": _obj(PREFIX + "HorizontalPodAutoscalerSpec", "spec defines the behaviour of autoscaler."),
                "status": _obj(PREFIX + "HorizontalPodAutoscalerStatus",
                               "status is the current information about the autoscaler.")},
            "x-kubernetes-group-version-kind": [gvk(info)]},
        PREFIX + "HorizontalPodAutoscalerSpec": {
            "description": "specification of a horizontal pod autoscaler.", "type": "object",
            "properties": {
                "scaleTargetRef": _obj(PREFIX + "CrossVersionObjectReference",
                                       "reference to scaled resource; horizontal pod autoscaler will learn the "
                                       "current resource consumption and will set the desired number of pods by "
                                       "using its Scale subresource."),
                "minReplicas": _int("minReplicas is the lower limit for the number of replicas to which the "
                                    "autoscaler can scale down. It defaults to 1 pod."),
                "maxReplicas": _int("maxReplicas is the upper limit for the number of pods that can be set by "
                                    "the autoscaler; cannot be smaller than MinReplicas."),
                "targetCPUUtilizationPercentage": _int(
                    "targetCPUUtilizationPercentage is the target average CPU utilization (represented as a "
                    "percentage of requested CPU) over all the pods; if not specified the default autoscaling "
                    "policy will be used.")},
            "required": ["scaleTargetRef", "maxReplicas"]},
        PREFIX + "HorizontalPodAutoscalerStatus": {
            "description": "current status of a horizontal pod autoscaler", "type": "object",
            "properties": {
                "observedGeneration": _int("observedGeneration is the most recent generation observed by this "
                                           "autoscaler.", "int64"),
                "lastScaleTime": {"allOf": [ref(TIME)],
                                  "description": "lastScaleTime is the last time the HorizontalPodAutoscaler "
                                                 "scaled the number of pods; used by the autoscaler to control "
                                                 "how often the number of pods is changed."},
                "currentReplicas": _int("currentReplicas is the current number of replicas of pods managed by "
                                        "this autoscaler."),
                "desiredReplicas": _int("desiredReplicas is the  desired number of replicas of pods managed by "
                                        "this autoscaler."),
                "currentCPUUtilizationPercentage": _int(
                    "currentCPUUtilizationPercentage is the current average CPU utilization over all pods, "
                    "represented as a percentage of requested CPU, e.g. 70 means that an average pod is using "
                    "now 70% of its requested CPU.")},
            "required": ["currentReplicas", "desiredReplicas"]},
        PREFIX + "CrossVersionObjectReference": {
            "description": "CrossVersionObjectReference contains enough information to let you identify the "
                           "referred resource.", "type": "object",
            "properties": {"apiVersion": _str("apiVersion is the API version of the referent"),
                           "kind": _str("kind is the kind of the referent"),
                           "name": _str("name is the name of the referent")},
            "required": ["kind", "name"], "x-kubernetes-map-type": "atomic"},
        HPA + "List": list_schema(info.kind, ref(HPA), ref(LIST_META), gvk(info, info.kind + "List")),
    }
