"""The HorizontalPodAutoscaler kind: defaults (autoscaling/v2 defaults.go),
validation (pkg/apis/autoscaling/validation) and kubectl's table columns."""
import pytest

from machinery import defaults, kinds, validation
from machinery.tables import PRINTERS
from tests.cluster import new_object


def hpa(**kw):
    h = new_object("HorizontalPodAutoscaler", "web")
    for k, v in kw.items():
        setattr(h.spec, k, v)
    return h


def messages(h):
    return [f"{e.field}: {e.detail or e.type}" for e in validation.validate(h)]


def test_defaults_min_replicas_80_percent_cpu_and_behavior_rules():
    h = hpa()
    defaults.apply_defaults(h)
    assert h.spec.min_replicas == 1
    (m,) = h.spec.metrics
    assert (m.type, m.resource.name, m.resource.target.type, m.resource.target.average_utilization) == \
        ("Resource", "cpu", "Utilization", 80)
    assert not h.spec.HasField("behavior")          # filled only when given, as Kubernetes does
    h.spec.behavior.scale_down.stabilization_window_seconds = 5
    defaults.apply_defaults(h)
    up, down = h.spec.behavior.scale_up, h.spec.behavior.scale_down
    assert up.stabilization_window_seconds == 0 and up.select_policy == "Max"
    assert [(p.type, p.value, p.period_seconds) for p in up.policies] == [("Pods", 4, 60), ("Percent", 100, 60)]
    assert down.stabilization_window_seconds == 5
    assert [(p.type, p.value, p.period_seconds) for p in down.policies] == [("Percent", 100, 15)]


def test_valid_object_passes():
    h = hpa()
    defaults.apply_defaults(h)
    assert messages(h) == []


@pytest.mark.parametrize("mutate,expected", [
    (lambda h: setattr(h.spec, "min_replicas", 0), "spec.minReplicas: must be greater than or equal to 1"),
    (lambda h: setattr(h.spec, "max_replicas", 0), "spec.maxReplicas: must be greater than 0"),
    (lambda h: (setattr(h.spec, "min_replicas", 5), setattr(h.spec, "max_replicas", 2)),
     "spec.maxReplicas: must be greater than or equal to `minReplicas`"),
    (lambda h: h.spec.scale_target_ref.ClearField("name"), "spec.scaleTargetRef.name: Required"),
    (lambda h: h.spec.metrics[0].resource.target.__setattr__("average_utilization", 0),
     "spec.metrics[0].resource.target.averageUtilization: must be greater than 0"),
    (lambda h: h.spec.metrics[0].__setattr__("type", "External"), 'spec.metrics[0].type: supported values: "Resource", "ContainerResource"'),
    (lambda h: h.spec.behavior.scale_up.policies.add(type="Pods", value=1, period_seconds=1801),
     "spec.behavior.scaleUp.policies[2].periodSeconds: must be less than or equal to 1800"),
    (lambda h: h.spec.behavior.scale_down.__setattr__("stabilization_window_seconds", 3601),
     "spec.behavior.scaleDown.stabilizationWindowSeconds: must be less than or equal to 3600"),
    (lambda h: h.spec.behavior.scale_down.__setattr__("select_policy", "Sometimes"),
     'spec.behavior.scaleDown.selectPolicy: supported values: "Max", "Min", "Disabled"'),
])
def test_invalid(mutate, expected):
    h = hpa()
    h.spec.behavior.scale_up.stabilization_window_seconds = 0
    defaults.apply_defaults(h)
    mutate(h)
    assert expected in messages(h)


def row(h):
    p = PRINTERS["HorizontalPodAutoscaler"]
    return dict(zip([c.name for c in p.columns], p.cells(h, None)))


def test_table_targets_like_kubectl():
    h = hpa(min_replicas=1, max_replicas=10)
    defaults.apply_defaults(h)
    h.spec.metrics[0].resource.target.average_utilization = 50
    r = row(h)
    assert (r["REFERENCE"], r["TARGETS"], r["MINPODS"], r["MAXPODS"], r["REPLICAS"]) == \
        ("Deployment/web", "cpu: <unknown>/50%", "1", "10", "0")
    st = h.status.current_metrics.add(type="Resource")
    st.resource.name = "cpu"
    st.resource.current.average_utilization = 12
    m = h.spec.metrics.add(type="Resource")
    m.resource.name, m.resource.target.type, m.resource.target.average_value = "memory", "AverageValue", "100Mi"
    assert row(h)["TARGETS"] == "cpu: 12%/50%, memory: <unknown>/100Mi"
    for _ in range(2):
        h.spec.metrics.add().CopyFrom(m)
    assert row(h)["TARGETS"].endswith(" + 2 more...")


def test_kind_names():
    assert kinds.resolve("hpa").kind == "HorizontalPodAutoscaler"
