import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from machinery.pb import meta_pb2 as _meta_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CrossVersionObjectReference(_message.Message):
    __slots__ = ("kind", "name", "api_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    api_version: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., api_version: _Optional[str] = ...) -> None: ...

class MetricTarget(_message.Message):
    __slots__ = ("type", "value", "average_value", "average_utilization")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_VALUE_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    average_value: str
    average_utilization: int
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ..., average_value: _Optional[str] = ..., average_utilization: _Optional[int] = ...) -> None: ...

class ResourceMetricSource(_message.Message):
    __slots__ = ("name", "target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: MetricTarget
    def __init__(self, name: _Optional[str] = ..., target: _Optional[_Union[MetricTarget, _Mapping]] = ...) -> None: ...

class ContainerResourceMetricSource(_message.Message):
    __slots__ = ("name", "target", "container")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: MetricTarget
    container: str
    def __init__(self, name: _Optional[str] = ..., target: _Optional[_Union[MetricTarget, _Mapping]] = ..., container: _Optional[str] = ...) -> None: ...

class MetricSpec(_message.Message):
    __slots__ = ("type", "resource", "container_resource")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_RESOURCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    resource: ResourceMetricSource
    container_resource: ContainerResourceMetricSource
    def __init__(self, type: _Optional[str] = ..., resource: _Optional[_Union[ResourceMetricSource, _Mapping]] = ..., container_resource: _Optional[_Union[ContainerResourceMetricSource, _Mapping]] = ...) -> None: ...

class HPAScalingPolicy(_message.Message):
    __slots__ = ("type", "value", "period_seconds")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: int
    period_seconds: int
    def __init__(self, type: _Optional[str] = ..., value: _Optional[int] = ..., period_seconds: _Optional[int] = ...) -> None: ...

class HPAScalingRules(_message.Message):
    __slots__ = ("stabilization_window_seconds", "select_policy", "policies")
    STABILIZATION_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SELECT_POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    stabilization_window_seconds: int
    select_policy: str
    policies: _containers.RepeatedCompositeFieldContainer[HPAScalingPolicy]
    def __init__(self, stabilization_window_seconds: _Optional[int] = ..., select_policy: _Optional[str] = ..., policies: _Optional[_Iterable[_Union[HPAScalingPolicy, _Mapping]]] = ...) -> None: ...

class HorizontalPodAutoscalerBehavior(_message.Message):
    __slots__ = ("scale_up", "scale_down")
    SCALE_UP_FIELD_NUMBER: _ClassVar[int]
    SCALE_DOWN_FIELD_NUMBER: _ClassVar[int]
    scale_up: HPAScalingRules
    scale_down: HPAScalingRules
    def __init__(self, scale_up: _Optional[_Union[HPAScalingRules, _Mapping]] = ..., scale_down: _Optional[_Union[HPAScalingRules, _Mapping]] = ...) -> None: ...

class HorizontalPodAutoscalerSpec(_message.Message):
    __slots__ = ("scale_target_ref", "min_replicas", "max_replicas", "metrics", "behavior")
    SCALE_TARGET_REF_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOR_FIELD_NUMBER: _ClassVar[int]
    scale_target_ref: CrossVersionObjectReference
    min_replicas: int
    max_replicas: int
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSpec]
    behavior: HorizontalPodAutoscalerBehavior
    def __init__(self, scale_target_ref: _Optional[_Union[CrossVersionObjectReference, _Mapping]] = ..., min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[MetricSpec, _Mapping]]] = ..., behavior: _Optional[_Union[HorizontalPodAutoscalerBehavior, _Mapping]] = ...) -> None: ...

class MetricValueStatus(_message.Message):
    __slots__ = ("value", "average_value", "average_utilization")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_VALUE_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    value: str
    average_value: str
    average_utilization: int
    def __init__(self, value: _Optional[str] = ..., average_value: _Optional[str] = ..., average_utilization: _Optional[int] = ...) -> None: ...

class ResourceMetricStatus(_message.Message):
    __slots__ = ("name", "current")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    current: MetricValueStatus
    def __init__(self, name: _Optional[str] = ..., current: _Optional[_Union[MetricValueStatus, _Mapping]] = ...) -> None: ...

class ContainerResourceMetricStatus(_message.Message):
    __slots__ = ("name", "current", "container")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    name: str
    current: MetricValueStatus
    container: str
    def __init__(self, name: _Optional[str] = ..., current: _Optional[_Union[MetricValueStatus, _Mapping]] = ..., container: _Optional[str] = ...) -> None: ...

class MetricStatus(_message.Message):
    __slots__ = ("type", "resource", "container_resource")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_RESOURCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    resource: ResourceMetricStatus
    container_resource: ContainerResourceMetricStatus
    def __init__(self, type: _Optional[str] = ..., resource: _Optional[_Union[ResourceMetricStatus, _Mapping]] = ..., container_resource: _Optional[_Union[ContainerResourceMetricStatus, _Mapping]] = ...) -> None: ...

class HorizontalPodAutoscalerCondition(_message.Message):
    __slots__ = ("type", "status", "last_transition_time", "reason", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    last_transition_time: _timestamp_pb2.Timestamp
    reason: str
    message: str
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., last_transition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class HorizontalPodAutoscalerStatus(_message.Message):
    __slots__ = ("observed_generation", "last_scale_time", "current_replicas", "desired_replicas", "current_metrics", "conditions")
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    LAST_SCALE_TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_METRICS_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    observed_generation: int
    last_scale_time: _timestamp_pb2.Timestamp
    current_replicas: int
    desired_replicas: int
    current_metrics: _containers.RepeatedCompositeFieldContainer[MetricStatus]
    conditions: _containers.RepeatedCompositeFieldContainer[HorizontalPodAutoscalerCondition]
    def __init__(self, observed_generation: _Optional[int] = ..., last_scale_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_replicas: _Optional[int] = ..., desired_replicas: _Optional[int] = ..., current_metrics: _Optional[_Iterable[_Union[MetricStatus, _Mapping]]] = ..., conditions: _Optional[_Iterable[_Union[HorizontalPodAutoscalerCondition, _Mapping]]] = ...) -> None: ...

class HorizontalPodAutoscaler(_message.Message):
    __slots__ = ("api_version", "kind", "metadata", "spec", "status")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    kind: str
    metadata: _meta_pb2.ObjectMeta
    spec: HorizontalPodAutoscalerSpec
    status: HorizontalPodAutoscalerStatus
    def __init__(self, api_version: _Optional[str] = ..., kind: _Optional[str] = ..., metadata: _Optional[_Union[_meta_pb2.ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[HorizontalPodAutoscalerSpec, _Mapping]] = ..., status: _Optional[_Union[HorizontalPodAutoscalerStatus, _Mapping]] = ...) -> None: ...
