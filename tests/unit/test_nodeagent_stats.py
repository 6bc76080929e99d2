"""nodeagent/stats.py: cgroup v1/v2 parsing, /proc parsing, the CPU rate over the
window, the summary document and the /metrics/resource text."""
import json
from types import SimpleNamespace

from machinery import kinds
from nodeagent.containers import ContainerState
from nodeagent.stats import HOLLOW_CPU_ANNOTATION, StatsCollector, read_cgroup, read_node


def write(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_cgroup_v2_usage_usec_and_working_set(tmp_path):
    d = write(tmp_path / "kctl" / "c1", {
        "cpu.stat": "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
        "memory.current": "10485760\n",
        "memory.stat": "anon 4194304\nfile 6291456\nactive_file 2097152\ninactive_file 4194304\n"})
    assert read_cgroup([d]) == (1_500_000_000, 10485760 - 4194304)


def test_cgroup_v1_hybrid_reads_each_hierarchy(tmp_path):
    cpu = write(tmp_path / "cpu,cpuacct" / "kctl" / "c1", {"cpuacct.usage": "2500000000\n"})
    mem = write(tmp_path / "memory" / "kctl" / "c1", {
        "memory.usage_in_bytes": "8388608\n",
        "memory.stat": "cache 4096\ninactive_file 1\ntotal_inactive_file 1048576\n"})
    unified = write(tmp_path / "unified" / "kctl" / "c1", {"cgroup.procs": ""})   # hugetlb only, no files we read
    assert read_cgroup([cpu, mem, unified]) == (2_500_000_000, 8388608 - 1048576)


def test_cgroup_gone_is_none(tmp_path):
    assert read_cgroup([tmp_path / "missing"]) is None


def test_working_set_never_negative(tmp_path):
    d = write(tmp_path / "c", {"memory.current": "100\n", "memory.stat": "inactive_file 4096\n"})
    assert read_cgroup([d]) == (0, 0)


def test_proc_node_usage(tmp_path):
    write(tmp_path, {"stat": "cpu  100 20 30 5000 7 1 2 3 0 0\ncpu0 1 2 3 4\n",
                     "meminfo": "MemTotal:  2048 kB\nMemFree:  512 kB\nInactive(file):  256 kB\n"})
    cpu, mem = read_node(tmp_path)
    assert cpu == (100 + 20 + 30 + 1 + 2 + 3) * 1_000_000_000 // 100
    assert mem == (2048 - 512 - 256) * 1024


def hollow_agent(cpu_millicores="250"):
    pod = kinds.new("Pod")
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web-1", "default", "u1"
    pod.metadata.annotations[HOLLOW_CPU_ANNOTATION] = cpu_millicores
    rec = SimpleNamespace(cid="cid1", state=ContainerState("running", started_at=1000.0))
    worker = SimpleNamespace(pod=pod, records={"app": rec})
    return SimpleNamespace(fake=True, node_name="n1", workers={"u1": worker})


def test_summary_rate_over_the_window_and_resource_metrics():
    now = [2000.0]
    stats = StatsCollector(hollow_agent(), clock=lambda: now[0])
    stats.sample()
    first = stats.summary()
    assert "usageNanoCores" not in first["pods"][0]["cpu"]     # one sample: no rate yet
    now[0] += 10
    stats.sample()
    s = json.loads(stats.summary_json())
    pod = s["pods"][0]
    assert pod["podRef"] == {"namespace": "default", "name": "web-1", "uid": "u1"}
    assert pod["containers"][0]["name"] == "app"
    assert pod["containers"][0]["cpu"]["usageNanoCores"] == 250_000_000
    assert pod["cpu"]["usageNanoCores"] == 250_000_000
    assert pod["memory"]["workingSetBytes"] == 16 << 20
    assert s["node"]["nodeName"] == "n1"
    assert s["node"]["cpu"]["usageNanoCores"] == 250_000_000 + 50_000_000
    text = stats.resource_metrics()
    assert 'container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 2.5' in text
    assert 'container_memory_working_set_bytes{container="app",namespace="default",pod="web-1"}' in text
    assert "node_cpu_usage_seconds_total " in text
    assert "node_memory_working_set_bytes " in text
    assert 'pod_cpu_usage_seconds_total{namespace="default",pod="web-1"} 2.5' in text
    assert "scrape_error 0.0" in text


def test_non_running_containers_are_not_reported():
    agent = hollow_agent()
    agent.workers["u1"].records["app"].state = ContainerState("exited", exit_code=0)
    stats = StatsCollector(agent, clock=lambda: 5.0)
    stats.sample()
    assert stats.summary()["pods"] == []
