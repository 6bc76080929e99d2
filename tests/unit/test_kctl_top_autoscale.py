"""`kctl top` rows (kubectl's columns and units) and `kctl autoscale` (the
HPA it creates and kubectl's flag errors), on machinery.fakeclient.FakeClient."""
import asyncio

import pytest
from click.testing import CliRunner

from kubectlish import common, top
from kubectlish.main import cli
from machinery import codec, kinds
from machinery.fakeclient import FakeClient
from machinery.pb import metrics_pb2


@pytest.fixture
def fake(monkeypatch):
    f = FakeClient()
    monkeypatch.setattr(common, "CLIENT_FACTORY", lambda server: f)
    return f


def kctl(*args):
    r = CliRunner().invoke(cli, ["--server", "fake:1", *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def node(name, cpu="2", memory="4Gi"):
    n = kinds.new("Node")
    n.metadata.name = name
    n.status.allocatable.update({"cpu": cpu, "memory": memory})
    return n


def test_node_rows_percent_of_allocatable_and_unknown_nodes():
    m = metrics_pb2.NodeMetrics(name="n1")
    m.usage.cpu_nano_cores, m.usage.memory_bytes = 250_000_000, 1 << 30
    rows = top.node_rows([m], [node("n1"), node("n2")])
    assert rows == [["n1", "250m", "12%", "1024Mi", "25%"], ["n2", "<unknown>"] + ["<unknown>"] * 3]


def pod_metrics(name, ns="default", **ctrs):
    pm = metrics_pb2.PodMetrics(name=name, namespace=ns)
    for c, (cpu, mem) in ctrs.items():
        cm = pm.containers.add(name=c)
        cm.usage.cpu_nano_cores, cm.usage.memory_bytes = cpu, mem
    return pm


def test_pod_rows_sum_containers_sort_and_namespaces():
    a = pod_metrics("a", app=(1_000_000, 8 << 20), side=(2_000_000, 8 << 20))
    b = pod_metrics("b", "kube-system", app=(50_000_000, 1 << 20))
    assert top.pod_rows([a, b]) == [["a", "3m", "16Mi"], ["b", "50m", "1Mi"]]
    assert top.pod_rows([a, b], sort_by="memory")[0][0] == "a"
    assert top.pod_rows([a, b], sort_by="cpu", all_namespaces=True)[0] == ["kube-system", "b", "50m", "1Mi"]
    assert top.pod_rows([a], containers=True) == [["a", "app", "1m", "8Mi"], ["a", "side", "2m", "8Mi"]]


def test_autoscale_creates_a_v2_hpa(fake):
    asyncio.run(fake.create(codec.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})))
    code, out, _ = kctl("autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=10")
    assert (code, out) == (0, "horizontalpodautoscaler.autoscaling/web autoscaled\n")
    hpa = asyncio.run(fake.get("HorizontalPodAutoscaler", "web", "default"))
    assert (hpa.spec.scale_target_ref.kind, hpa.spec.scale_target_ref.name, hpa.spec.min_replicas,
            hpa.spec.max_replicas) == ("Deployment", "web", 1, 10)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 50


def test_autoscale_cpu_and_memory_targets():
    from kubectlish.autoscale import manifest
    m = manifest("Deployment", "apps/v1", "web", "web", 1, 5, -1, "500m", "80%")["spec"]["metrics"]
    assert [(x["resource"]["name"], x["resource"]["target"]) for x in m] == [
        ("cpu", {"type": "AverageValue", "averageValue": "500m"}),
        ("memory", {"type": "Utilization", "averageUtilization": 80})]


def test_autoscale_flag_errors(fake):
    code, _, err = kctl("autoscale", "deployment", "web", "--min=1")
    assert code == 1 and "error: --max=MAXPODS is required and must be at least 1, max: -1" in err
    code, _, err = kctl("autoscale", "deployment", "web", "--min=5", "--max=2")
    assert code == 1 and "error: --max=MAXPODS must be larger or equal to --min=MINPODS, max: 2, min: 5" in err
    code, _, err = kctl("autoscale", "deployment", "web", "--max=2", "--cpu=lots")
    assert code == 1 and "error: invalid --cpu value 'lots': expected a percentage or a quantity" in err
    code, _, err = kctl("autoscale", "deployment", "nope", "--max=2")
    assert code == 1 and 'deployments.apps "nope" not found' in err
