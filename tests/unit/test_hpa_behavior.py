"""controllers/hpa_behavior.py: horizontal.go's stabilization and rate limits
(cases named after horizontal_test.go's where they come from)."""
from controllers.hpa_behavior import Normalizer, scale_down_limit, scale_up_limit
from machinery import defaults
from machinery.pb import autoscaling_pb2
from tests.cluster import new_object


def rules(select="Max", window=0, policies=(("Pods", 4, 60),)):
    r = autoscaling_pb2.HPAScalingRules(stabilization_window_seconds=window, select_policy=select)
    for t, v, p in policies:
        r.policies.add(type=t, value=v, period_seconds=p)
    return r


def test_TestCalculateScaleUpLimitWithScalingRules():
    r = rules("Min", 300, [("Pods", 2, 60), ("Percent", 50, 60)])
    assert scale_up_limit(1, [], [], r, 1000.0) == 2


def test_TestCalculateScaleDownLimitWithBehaviors():
    r = rules("Min", 300, [("Pods", 2, 60), ("Percent", 50, 60)])
    assert scale_down_limit(5, [], [], r, 1000.0) == 3


def test_policies_count_changes_made_within_their_period():
    r = rules("Max", 0, [("Pods", 4, 60), ("Percent", 100, 60)])
    assert scale_up_limit(10, [], [], r, 1000.0) == 20              # Max(10+4, 10*2)
    assert scale_up_limit(10, [(990.0, 5)], [], r, 1000.0) == 10     # period started at 5 replicas
    assert scale_up_limit(10, [(900.0, 5)], [], r, 1000.0) == 20     # that change left the period
    assert scale_up_limit(3, [], [], rules("Disabled"), 1000.0) == 3


def hpa(behavior=False, lo=1, hi=10):
    h = new_object("HorizontalPodAutoscaler", "web")
    h.spec.min_replicas, h.spec.max_replicas = lo, hi
    if behavior:
        h.spec.behavior.scale_down.stabilization_window_seconds = 60
    defaults.apply_defaults(h)
    return h


def test_default_behavior_keeps_the_highest_recommendation_of_the_downscale_window():
    n, h = Normalizer(downscale_window=300), hpa()
    out = n.normalize("k", h, 4, 8, 1000.0)
    assert (out.replicas, out.able[0], out.limit[0]) == (8, "ReadyForNewScale", "DesiredWithinRange")
    out = n.normalize("k", h, 8, 2, 1100.0)
    assert (out.replicas, out.able[0]) == (8, "ScaleDownStabilized")
    out = n.normalize("k", h, 8, 2, 1400.0)                           # the 8 left the window
    assert out.replicas == 2


def test_default_scale_up_limit_and_bounds():
    n = Normalizer()
    out = n.normalize("k", hpa(hi=100), 2, 50, 0.0)
    assert (out.replicas, out.limited, out.limit[0]) == (4, True, "ScaleUpLimit")          # max(2*2, 4)
    out = Normalizer().normalize("k", hpa(hi=5), 4, 8, 0.0)
    assert (out.replicas, out.limit[0]) == (5, "TooManyReplicas")
    out = Normalizer().normalize("k", hpa(lo=3), 4, 1, 0.0)
    assert (out.replicas, out.limit[0]) == (3, "TooFewReplicas")


def test_behavior_scale_down_window_and_rate():
    n, h = Normalizer(), hpa(behavior=True)
    assert n.normalize("k", h, 2, 10, 1000.0).replicas == 6             # Max(2+4, 2*2) per 60 s
    n.record_scale("k", h, 2, 6, 1000.0)
    assert n.normalize("k", h, 6, 10, 1010.0).replicas == 6             # 60 s period still counts the +4
    out = n.normalize("k", h, 6, 1, 1030.0)
    assert (out.replicas, out.able[0]) == (6, "ScaleDownStabilized")   # the recent 10s win, capped by the rate
    out = n.normalize("k", h, 6, 1, 1200.0)                            # window (60 s) passed
    assert (out.replicas, out.limit[0]) == (1, "DesiredWithinRange")  # 100 % per 15 s allows it
