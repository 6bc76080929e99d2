"""Resource metrics and the HorizontalPodAutoscaler end to end, without
containers: real etcd, apiserver (scraping every second), scheduler and
controller manager processes, and two HOLLOW node agents in this process
(nodeagent.main.build_agent runtime="fake"), each serving its NodeAgent
service (with Stats) on 127.0.0.1. The hollow agents' synthetic CPU usage
is steered per container (StatsCollector.synthetic.cpu_millicores):

1. low usage: the HPA reports `cpu: 20%/50%` and keeps 1 replica;
2. high usage: it scales the Deployment up to maxReplicas, with the event
   `New size: ...; reason: cpu resource utilization (percentage of request)
   above target`;
3. `kctl top nodes/pods` and the real `kubectl top nodes/pods` print
   kubectl's columns from metrics.k8s.io; `kubectl get hpa` shows the
   targets; `kubectl get --raw` reads the agents' /stats/summary and
   /metrics/resource through the node proxy;
4. low usage again: after the (short, 2 s) scale-down stabilization window
   it scales back down to minReplicas.
"""
import asyncio
import json
import os
import subprocess
import sys


from harness.control_plane import ControlPlane
from harness.process import REPO, free_port
from machinery import codec
from machinery.client import Client
from harness.pki import session
from nodeagent.main import build_agent
from nodeagent.server import serve
from nodeagent.stats import StatsCollector

from tests.integration.test_controllers_sim import kctl, until

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")


class HollowNodes:
    def __init__(self, client, tmp_path):
        self.client, self.tmp = client, tmp_path
        self.tasks: list[asyncio.Task] = []
        self.stats: list[StatsCollector] = []

    def start(self, name: str) -> None:
        port = free_port()
        a = build_agent(self.client, node_name=name, node_ip="127.0.0.1", root_dir=str(self.tmp / name),
                        runtime="fake", heartbeat_interval=0.5, agent_port=port)
        st = StatsCollector(a, interval=0.5)
        self.stats.append(st)
        self.tasks += [asyncio.create_task(a.run()), asyncio.create_task(
            serve(a, f"127.0.0.1:{port}", session().node_serving(name, "127.0.0.1"), st))]

    def usage(self, millicores: int) -> None:
        for st in self.stats:
            st.synthetic.cpu_millicores = millicores

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def deployment():
    return codec.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "php", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "php"}},
                 "template": {"metadata": {"labels": {"app": "php"}},
                              "spec": {"containers": [{"name": "php", "image": "php-apache:1",
                                                       "resources": {"requests": {"cpu": "100m"}}}]}}}})


def hpa():
    return codec.from_dict({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "php", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 50}}}],
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}}}})


def kubectl(workdir, http_port, *args) -> subprocess.CompletedProcess:
    cfg = workdir / "kubeconfig"
    if not cfg.exists():
        session().write_kubeconfig(cfg, grpc="127.0.0.1:6443", https_url=f"https://127.0.0.1:{http_port}")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "KUBECONFIG": str(cfg)}
    return subprocess.run([KUBECTL, "--cache-dir", str(workdir / "cache"), *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=REPO)


async def replicas(client) -> int:
    return (await client.get("Deployment", "php", "default")).spec.replicas


async def test_hpa_scales_on_hollow_usage_and_top_prints_it(tmp_path):
    http_port = free_port()
    cp = ControlPlane(tmp_path, ["--metric-resolution", "1", "--http-listen", f"127.0.0.1:{http_port}"],
                      scheduler=True, controller_manager=True,
                      controller_args=["--controllers", "replicaset,deployment,nodeipam,horizontalpodautoscaling",
                                       "--horizontal-pod-autoscaler-sync-period", "1s"]).start()
    client = Client(cp.target, timeout=30)
    nodes = HollowNodes(client, tmp_path)
    try:
        nodes.start("h0")
        nodes.start("h1")
        nodes.usage(20)
        await client.create(deployment())
        await client.create(hpa())

        async def targets():
            h = await client.get("HorizontalPodAutoscaler", "php", "default")
            return h if h.status.current_metrics and h.status.current_metrics[0].resource.current.HasField(
                "average_utilization") else None
        h = await until(targets, "the HPA reads the pods' CPU utilization", timeout=90)
        assert h.status.current_metrics[0].resource.current.average_utilization == 20
        assert h.status.desired_replicas == 1 and await replicas(client) == 1
        code, out = await kctl(cp.target, "get", "hpa")
        assert code == 0, out
        header, row = out.splitlines()
        assert header.split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
        assert "Deployment/php" in row and "cpu: 20%/50%" in row

        nodes.usage(150)                         # 150 % of the request: scale up to maxReplicas

        async def scaled_to(n):
            return await replicas(client) == n
        await until(lambda: scaled_to(4), "the HPA scales the Deployment up to 4", timeout=120)

        async def scaled_up_event():
            events, _ = await client.list("Event", "default")
            return any(e.reason == "SuccessfulRescale" and e.message.startswith("New size: ") and e.message.endswith(
                "; reason: cpu resource utilization (percentage of request) above target") for e in events)
        await until(scaled_up_event, "the scale-up event", timeout=30)
        h = await client.get("HorizontalPodAutoscaler", "php", "default")
        conds = {c.type: (c.status, c.reason) for c in h.status.conditions}
        assert conds["AbleToScale"][0] == "True" and conds["ScalingActive"] == ("True", "ValidMetricFound")

        async def four_pods_measured():
            code, out = await kctl(cp.target, "top", "pods")
            return out if code == 0 and len(out.splitlines()) == 5 else None
        out = await until(four_pods_measured, "kctl top pods shows the 4 pods", timeout=60)
        assert out.splitlines()[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
        # 150m a container (the rate over the window, truncated to millicores as kubectl does)
        assert all(abs(int(line.split()[1][:-1]) - 150) <= 2 and line.split()[2] == "16Mi"
                   for line in out.splitlines()[1:]), out
        code, out = await kctl(cp.target, "top", "nodes")
        assert code == 0, out
        assert out.splitlines()[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
        assert sorted(line.split()[0] for line in out.splitlines()[1:]) == ["h0", "h1"]

        r = await asyncio.to_thread(kubectl, tmp_path, http_port, "top", "pods")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
        assert len(r.stdout.splitlines()) == 5 and "16Mi" in r.stdout
        r = await asyncio.to_thread(kubectl, tmp_path, http_port, "top", "nodes")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
        r = await asyncio.to_thread(kubectl, tmp_path, http_port, "get", "hpa")
        assert r.returncode == 0 and "Deployment/php" in r.stdout and "/50%" in r.stdout, r.stderr
        r = await asyncio.to_thread(kubectl, tmp_path, http_port, "get", "--raw",
                                    "/api/v1/nodes/h0/proxy/metrics/resource")
        assert r.returncode == 0 and "container_cpu_usage_seconds_total{" in r.stdout, r.stderr
        r = await asyncio.to_thread(kubectl, tmp_path, http_port, "get", "--raw", "/api/v1/nodes/h1/proxy/stats/summary")
        assert r.returncode == 0 and json.loads(r.stdout)["node"]["nodeName"] == "h1", r.stderr

        nodes.usage(5)                           # idle: back to minReplicas after the 2 s window
        await until(lambda: scaled_to(1), "the HPA scales the Deployment down to 1", timeout=120)

        async def scaled_down_event():
            events, _ = await client.list("Event", "default")
            return any(e.reason == "SuccessfulRescale" and e.message == "New size: 1; reason: All metrics below target"
                       for e in events)
        await until(scaled_down_event, "the scale-down event (events are written asynchronously)", timeout=30)
    finally:
        await nodes.stop()
        await client.close()
        cp.stop()
