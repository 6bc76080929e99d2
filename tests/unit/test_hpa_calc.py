"""controllers/hpa_calc.py against Kubernetes' own cases
(pkg/controller/podautoscaler/replica_calculator_test.go; each case carries
the Go test's name). Kubernetes' fixtures give every pod two containers with
the same request and level; here a pod has one, so raw values are per pod
(the replica counts and utilizations are the same). Its testing timing is
used: CPU initialization period 2 min, initial readiness delay 10 s; pod
start and readiness transition times default to "long ago" (Go's zero time)
and metrics are timestamped at that zero time with a 1 min window."""
import time

import pytest

from controllers import hpa_calc
from controllers.hpa_calc import MetricsError, PodMetric
from machinery import kinds

NOW = time.time()
HOT, COOL = NOW - 60, NOW - 600           # hotCpuCreationTime / coolCpuCreationTime
TIMING = {"cpu_init": 120.0, "readiness_delay": 10.0}


def make_pods(n, requests=None, readiness=None, start=None, phase=None, deleting=None, resource="cpu"):
    pods = []
    for i in range(n):
        p = kinds.new("Pod")
        p.metadata.name = f"test-pod-{i}"
        p.status.phase = phase[i] if phase else "Running"
        p.status.start_time.seconds = int(start[i]) if start else 0
        p.status.conditions.add(type="Ready", status=readiness[i] if readiness and i < len(readiness) else "True")
        c = p.spec.containers.add(name="c")
        if requests is not None and i < len(requests):
            c.resources.requests[resource] = requests[i]
        if deleting and deleting[i]:
            p.metadata.deletion_timestamp.seconds = int(NOW)
        pods.append(p)
    return pods


def levels(values, ts=0.0):
    return {f"test-pod-{i}": PodMetric(v, ts, 60.0) for i, v in enumerate(values)}


ONE = "1.0"
CASES = {
    # name: (current, expected, utilization, raw, pods kwargs, levels, target)
    "TestReplicaCalcScaleUp": (3, 5, 50, 500, dict(requests=[ONE] * 3), [300, 500, 700], 30),
    "TestReplicaCalcScaleUpUnreadyLessScale": (3, 4, 60, 600, dict(requests=[ONE] * 3,
                                               readiness=["False", "True", "True"]), [300, 500, 700], 30),
    "TestReplicaCalcScaleUpHotCpuLessScale": (3, 4, 60, 600, dict(requests=[ONE] * 3, start=[HOT, COOL, COOL]),
                                              [300, 500, 700], 30),
    "TestReplicaCalcScaleUpUnreadyNoScale": (3, 3, 40, 400, dict(requests=[ONE] * 3,
                                             readiness=["True", "False", "False"]), [400, 500, 700], 30),
    "TestReplicaCalcScaleDown": (5, 3, 28, 280, dict(requests=[ONE] * 5), [100, 300, 500, 250, 250], 50),
    "TestReplicaCalcScaleDownIncludeUnreadyPods": (5, 2, 30, 300, dict(requests=[ONE] * 5,
                                                   readiness=["True"] * 3 + ["False"] * 2),
                                                   [100, 300, 500, 250, 250], 50),
    "TestReplicaCalcScaleDownExcludeUnscheduledPods": (5, 1, 10, 100, dict(
        requests=[ONE] * 5, readiness=["True"] + ["False"] * 4, phase=["Running"] + ["Pending"] * 4), [100], 50),
    "TestReplicaCalcScaleDownIgnoreHotCpuPods": (5, 2, 30, 300, dict(requests=[ONE] * 5,
                                                 start=[COOL] * 3 + [HOT] * 2), [100, 300, 500, 250, 250], 50),
    "TestReplicaCalcScaleDownIgnoresFailedPods": (5, 3, 28, 280, dict(
        n=7, requests=[ONE] * 7, readiness=["True"] * 5 + ["False"] * 2, phase=["Running"] * 5 + ["Failed"] * 2),
        [100, 300, 500, 250, 250], 50),
    "TestReplicaCalcScaleDownIgnoresDeletionPods": (5, 3, 28, 280, dict(
        n=7, requests=[ONE] * 7, readiness=["True"] * 5 + ["False"] * 2, deleting=[False] * 5 + [True] * 2),
        [100, 300, 500, 250, 250], 50),
    "TestReplicaCalcTolerance": (3, 3, 102, 1020, dict(requests=["0.9", "1.0", "1.1"]), [1010, 1030, 1020], 100),
    "TestReplicaCalcSuperfluousMetrics": (4, 24, 587, 5875, dict(requests=[ONE] * 4),
                                          [4000, 9500, 3000, 7000, 3200, 2000], 100),
    "TestReplicaCalcMissingMetrics": (4, 3, 24, 247, dict(requests=[ONE] * 4), [400, 95], 100),
    "TestReplicaCalcMissingMetricsNoChangeEq": (2, 2, 100, 1000, dict(requests=[ONE] * 2), [1000], 100),
    "TestReplicaCalcMissingMetricsNoChangeGt": (2, 2, 190, 1900, dict(requests=[ONE] * 2), [1900], 100),
    "TestReplicaCalcMissingMetricsNoChangeLt": (2, 2, 60, 600, dict(requests=[ONE] * 2), [600], 100),
    "TestReplicaCalcMissingMetricsUnreadyChange": (3, 3, 45, 450, dict(requests=[ONE] * 3,
                                                   readiness=["False", "True", "True"]), [100, 450], 50),
    "TestReplicaCalcMissingMetricsHotCpuNoChange": (3, 3, 45, 450, dict(requests=[ONE] * 3,
                                                    start=[HOT, COOL, COOL]), [100, 450], 50),
    "TestReplicaCalcMissingMetricsUnreadyScaleUp": (3, 4, 200, 2000, dict(requests=[ONE] * 3,
                                                    readiness=["False", "True", "True"]), [100, 2000], 50),
    "TestReplicaCalcMissingMetricsHotCpuScaleUp": (3, 4, 200, 2000, dict(
        requests=[ONE] * 3, readiness=["False", "True", "True"], start=[HOT, COOL, COOL]), [100, 2000], 50),
    "TestReplicaCalcMissingMetricsUnreadyScaleDown": (4, 3, 10, 100, dict(
        requests=[ONE] * 4, readiness=["False", "True", "True", "True"]), [100, 100, 100], 50),
}


@pytest.mark.parametrize("name", list(CASES))
def test_kubernetes_replica_calculator_cases(name):
    current, expected, util, raw, pod_kw, lv, target = CASES[name]
    n = pod_kw.pop("n", current) if "n" in pod_kw else current
    pods = make_pods(n, **{k: v for k, v in pod_kw.items()})
    replicas, got_util, got_raw = hpa_calc.resource_replicas(current, target, "cpu", pods, levels(lv), NOW, **TIMING)
    assert (replicas, got_util, got_raw) == (expected, util, raw)


def test_TestReplicaCalcComputedToleranceAlgImplementation():
    start_pods, used = 10, 150 * 10
    requested = 2 * used
    per_pod = requested // start_pods
    target = abs(1 / (2 * (1 - hpa_calc.TOLERANCE))) + .01
    final = int(target * 100)
    expected = int(-(-(used / (requested * target)) * start_pods // 1))
    reqs = [f"{per_pod + d}m" for d in (100, -100, 10, -10, 2, -2, 1, -1, 0, 0)]
    pods = make_pods(10, requests=reqs)
    assert hpa_calc.resource_replicas(10, final, "cpu", pods, levels([used // 10] * 10), NOW, **TIMING)[0] == expected
    near = int((abs(1 / (2 * (1 - hpa_calc.TOLERANCE))) + .004) * 100)
    assert hpa_calc.resource_replicas(10, near, "cpu", pods, levels([used // 10] * 10), NOW, **TIMING)[0] == 10


def test_TestReplicaCalcEmptyCPURequest():
    with pytest.raises(MetricsError, match="missing request for cpu"):
        hpa_calc.resource_replicas(1, 100, "cpu", make_pods(1, requests=[]), levels([200]), NOW, **TIMING)


def test_TestReplicaCalcDisjointResourcesMetrics_and_no_pods():
    pods = make_pods(1, requests=[ONE])
    with pytest.raises(MetricsError, match="no metrics returned matched known pods"):
        hpa_calc.resource_replicas(1, 100, "cpu", pods, {"other": PodMetric(100, 0, 60)}, NOW, **TIMING)
    with pytest.raises(MetricsError, match="no pods returned by selector"):
        hpa_calc.resource_replicas(1, 100, "cpu", [], levels([100]), NOW, **TIMING)


@pytest.mark.parametrize("name,current,expected,lv,target", [
    # the podMetric (AverageValue) cases of replica_calculator_test.go, same arithmetic as resource AverageValue
    ("TestReplicaCalcScaleUpCM", 3, 4, [20000, 10000, 30000], 15000),
    ("TestReplicaCalcScaleDownCM", 5, 3, [12000] * 5, 20000),
    ("TestReplicaCalcToleranceCM", 3, 3, [20000, 21000, 21000], 20000),
])
def test_kubernetes_average_value_cases(name, current, expected, lv, target):
    pods = make_pods(current)
    assert hpa_calc.raw_replicas(current, target, "memory", pods, levels(lv), NOW, **TIMING)[0] == expected


@pytest.mark.parametrize("name,current,expected,readiness,start,lv,target", [
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", 3, 6, ["True", "True", "False"], [COOL, COOL, HOT],
     [50000, 10000, 30000], 15000),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", 3, 7, ["False", "True", "False"], [HOT, COOL, HOT],
     [50000, 15000, 30000], 15000),
])
def test_unready_pods_count_for_non_cpu_metrics(name, current, expected, readiness, start, lv, target):
    pods = make_pods(current, readiness=readiness, start=start)
    assert hpa_calc.raw_replicas(current, target, "memory", pods, levels(lv), NOW, **TIMING)[0] == expected
