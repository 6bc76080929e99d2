"""HPA controller syncs on the FakeClient (after horizontal_test.go's
TestScaleUp, TestScaleDown, TestMinReplicas/TestMaxReplicas style cases,
TestMissingMetrics and TestZeroReplicas): the scale written to the target,
the conditions and the events."""
from controllers.hpa import HPAController
from machinery import errors
from machinery.pb import metrics_pb2
from tests.cluster import new_object
from tests.unit.test_controller_helpers import Clock, harness, rs_obj, set_ready


class Recorder:
    def __init__(self):
        self.events = []

    def event(self, obj, type_, reason, message):
        self.events.append((type_, reason, message))


class Metrics:
    def __init__(self):
        self.millicores: dict[str, int] = {}
        self.fail = None

    async def __call__(self, ns, sel):
        if self.fail:
            raise self.fail
        out = []
        for name, m in self.millicores.items():
            pm = metrics_pb2.PodMetrics(name=name, namespace=ns, window_seconds=15)
            pm.timestamp.seconds = 1_700_000_000
            pm.containers.add(name="main").usage.cpu_nano_cores = m * 1_000_000
            out.append(pm)
        return out


def make(metrics, recorder):
    return lambda h: HPAController(h.client, h.factory, recorder, clock=h.clock, metrics=metrics)


def hpa(lo=1, hi=10, target=50):
    h = new_object("HorizontalPodAutoscaler", "web")
    ref = h.spec.scale_target_ref
    ref.api_version, ref.kind, ref.name = "apps/v1", "ReplicaSet", "web"
    h.spec.min_replicas, h.spec.max_replicas = lo, hi
    m = h.spec.metrics.add(type="Resource")
    m.resource.name, m.resource.target.type, m.resource.target.average_utilization = "cpu", "Utilization", target
    return h


async def setup(h, replicas, usage, metrics):
    rs = rs_obj(replicas=replicas)
    rs.spec.template.spec.containers[0].resources.requests["cpu"] = "100m"
    await h.client.create(rs)
    for i in range(replicas):
        p = new_object("Pod", f"web-{i}", labels={"app": "web"})
        p.spec.containers[0].resources.requests["cpu"] = "100m"
        p = set_ready(await h.client.create(p), True, h.clock() - 600)
        p.status.start_time.seconds = int(h.clock() - 600)
        await h.client.update_status(p)
        metrics.millicores[p.metadata.name] = usage


async def sync(h, c):
    await h.settle()
    await c.sync("default/web")
    await h.settle()
    rs = h.objs("ReplicaSet")
    st = h.objs("HorizontalPodAutoscaler")[0].status
    return rs[0].spec.replicas if rs else None, st, {x.type: (x.status, x.reason) for x in st.conditions}


async def test_scale_up_writes_the_target_and_the_event():
    metrics, rec = Metrics(), Recorder()
    async with harness(make(metrics, rec), clock=Clock()) as (h, c):
        await setup(h, 3, 90, metrics)                                 # 90 % of 100m against 50 %: 3 -> 6
        await h.client.create(hpa())
        replicas, st, conds = await sync(h, c)
        assert replicas == 6 and st.desired_replicas == 6 and st.current_replicas == 3
        assert st.current_metrics[0].resource.current.average_utilization == 90
        assert conds["AbleToScale"] == ("True", "SucceededRescale")
        assert conds["ScalingActive"] == ("True", "ValidMetricFound")
        assert conds["ScalingLimited"] == ("False", "DesiredWithinRange")
        assert ("Normal", "SuccessfulRescale",
                "New size: 6; reason: cpu resource utilization (percentage of request) above target") in rec.events


async def test_scale_down_is_stabilized_then_happens():
    metrics, rec = Metrics(), Recorder()
    async with harness(make(metrics, rec), clock=Clock()) as (h, c):
        await setup(h, 4, 50, metrics)
        await h.client.create(hpa())
        assert (await sync(h, c))[0] == 4                               # at target: no change
        for name in metrics.millicores:
            metrics.millicores[name] = 10                               # 10 %: wants 1
        replicas, _, conds = await sync(h, c)
        assert replicas == 4 and conds["AbleToScale"] == ("True", "ScaleDownStabilized")
        h.clock.advance(301)                                            # past the default 300 s window
        replicas, _, _ = await sync(h, c)
        assert replicas == 1
        assert ("Normal", "SuccessfulRescale", "New size: 1; reason: All metrics below target") in rec.events


async def test_max_replicas_limits_and_says_so():
    metrics, rec = Metrics(), Recorder()
    async with harness(make(metrics, rec), clock=Clock()) as (h, c):
        await setup(h, 3, 500, metrics)
        await h.client.create(hpa(hi=5))
        replicas, _, conds = await sync(h, c)
        assert replicas == 5 and conds["ScalingLimited"] == ("True", "TooManyReplicas")


async def test_missing_metrics_and_zero_replicas():
    metrics, rec = Metrics(), Recorder()
    async with harness(make(metrics, rec), clock=Clock()) as (h, c):
        await setup(h, 2, 50, metrics)
        metrics.fail = errors.NotFound("no metrics")
        await h.client.create(hpa())
        replicas, _, conds = await sync(h, c)
        assert replicas == 2 and conds["ScalingActive"] == ("False", "FailedGetResourceMetric")
        assert any(e[1] == "FailedGetResourceMetric" for e in rec.events)
        rs = h.objs("ReplicaSet")[0]
        rs.spec.replicas = 0
        await h.client.update(rs)
        replicas, _, conds = await sync(h, c)
        assert replicas == 0 and conds["ScalingActive"] == ("False", "ScalingDisabled")


async def test_missing_target_is_reported():
    metrics, rec = Metrics(), Recorder()
    async with harness(make(metrics, rec), clock=Clock()) as (h, c):
        await h.client.create(hpa())
        _, _, conds = await sync(h, c)
        assert conds["AbleToScale"] == ("False", "FailedGetScale")
        assert rec.events[0][:2] == ("Warning", "FailedGetScale")
