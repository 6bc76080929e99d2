"""The effective requests the scheduler places a pod by (scheduler/resources.py).

Kubernetes computes them in component-helpers/resource PodRequests
(KEP-753, sidecar containers): the app containers and native sidecars
summed, or the largest init-time need when that is larger, where an init
container needs its own request plus the sidecars started before it. The
cases named after TestPodResourceRequests in
staging/src/k8s.io/component-helpers/resource/helpers_test.go carry its
numbers (CPU in cores there, milli-cores here).
"""
import pytest

from machinery import kinds
from scheduler import hollow, resources
from scheduler.cache import NodeCache
from scheduler.cycle_state import CycleState
from scheduler.framework import pod_info
from scheduler.plugins import NodeResourcesFit
from scheduler.snapshot import Snapshot

D_CPU, D_MEM = resources.DEFAULT_MILLI_CPU, resources.DEFAULT_MEMORY


def pod(init=(), app=()):
    """init: (cpu, sidecar?) pairs; app: cpu strings ("" = no request)."""
    p = kinds.new("Pod")
    p.metadata.name = "p"
    for i, (cpu, sidecar) in enumerate(init):
        c = p.spec.init_containers.add(name=f"init-{i}", image="busybox")
        if cpu:
            c.resources.requests["cpu"] = cpu
        if sidecar:
            c.restart_policy = "Always"
    for i, cpu in enumerate(app):
        c = p.spec.containers.add(name=f"app-{i}", image="busybox")
        if cpu:
            c.resources.requests["cpu"] = cpu
    return p


@pytest.mark.parametrize("case, init, app, want", [
    ("nil options, larger init container", [("4", False)], ["1"], 4000),
    ("nil options, larger containers", [("2", False)], ["2", "3"], 5000),
    ("restartable init container", [("1", True)], ["1"], 2000),
    ("multiple restartable init containers",
     [("5", False), ("1", True), ("2", True), ("3", True)], ["1"], 7000),
    ("multiple restartable and regular init containers",
     [("5", False), ("1", True), ("2", True), ("5", False), ("3", True)], ["1"], 8000),
    ("restartable-init, init and regular", [("10", True), ("200", False)], ["100"], 210000),
])
def test_effective_cpu_request_as_kubernetes_computes_it(case, init, app, want):
    cpu, mem, _, _ = resources.pod_requests(pod(init, app))
    assert (cpu, mem) == (want, 0), case


def test_two_containers_without_overhead_sum_cpu_and_memory():
    """TestPodRequestsAndLimitsWithoutOverhead "two container no overhead":
    1 + 4 cores, 5 + 12 bytes; and "massive init": the largest init wins."""
    p = pod(app=["1", "4"])
    p.spec.containers[0].resources.requests["memory"] = "5"
    p.spec.containers[1].resources.requests["memory"] = "12"
    assert resources.pod_requests(p)[:2] == (5000, 17)
    for cpu, mem in (("1", "5"), ("40", "120")):
        c = p.spec.init_containers.add(name=f"init-{cpu}", image="busybox")
        c.resources.requests.update({"cpu": cpu, "memory": mem})
    assert resources.pod_requests(p)[:2] == (40000, 120)


def test_non_zero_requests_default_each_container_that_asks_nothing():
    """kube-scheduler scores with NonMissingContainerRequests: every container
    (init ones included) without a cpu/memory request counts 100m/200Mi; a
    request explicitly 0 stays 0."""
    assert resources.pod_requests(pod(app=["", ""])) == (0, 0, 2 * D_CPU, 2 * D_MEM)
    assert resources.pod_requests(pod(app=["250m", ""]))[2] == 250 + D_CPU
    # a sidecar without requests adds its default; a plain init container only caps
    assert resources.pod_requests(pod([("", True)], ["250m"]))[2] == 250 + D_CPU
    assert resources.pod_requests(pod([("", False)], ["250m"]))[2] == 250
    zero = pod(app=["0"])
    zero.spec.containers[0].resources.requests["memory"] = "0"
    assert resources.pod_requests(zero) == (0, 0, 0, 0)


def fit_reasons(p, cpu: str) -> tuple:
    cache = NodeCache(capacity=1)
    cache.set_node(hollow.node("n", cpu=cpu))
    return NodeResourcesFit().filter_node(CycleState(), pod_info(p), Snapshot(cache), "n").reasons


def test_the_fit_filter_counts_a_large_init_container():
    """App containers of 500m fit a 1-core node; an init container of 2 cores
    does not, although it never runs beside them."""
    assert fit_reasons(pod(app=["500m"]), "1") == ()
    assert fit_reasons(pod([("2", False)], ["500m"]), "1") == ("Insufficient cpu",)
    assert fit_reasons(pod([("2", False)], ["500m"]), "2") == ()


def test_the_fit_filter_adds_sidecars_to_the_app_containers():
    """A 600m sidecar beside a 600m app container needs 1200m: no fit on a
    1-core node, though each alone (as plain init + app) would fit."""
    assert fit_reasons(pod([("600m", False)], ["600m"]), "1") == ()
    assert fit_reasons(pod([("600m", True)], ["600m"]), "1") == ("Insufficient cpu",)


def test_a_bound_pod_with_a_sidecar_takes_its_effective_request_from_the_node():
    cache = NodeCache(capacity=1)
    cache.set_node(hollow.node("n", cpu="2"))
    bound = pod([("600m", True)], ["600m"])
    bound.metadata.uid = "bound"
    bound.spec.node_name = "n"
    cache.add_pod(bound)
    snap = Snapshot(cache)
    assert NodeResourcesFit().filter_node(CycleState(), pod_info(pod(app=["900m"])), snap, "n").reasons == \
        ("Insufficient cpu",)
    assert NodeResourcesFit().filter_node(CycleState(), pod_info(pod(app=["800m"])), snap, "n").reasons == ()
