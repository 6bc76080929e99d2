"""Resource usage of the node, its pods and their containers, as the kubelet reports it.

Why: the metrics API (apiserver/metricsapi.py), ``kctl top`` and the
HorizontalPodAutoscaler need CPU and memory usage; the kubelet exposes it as
the ``/stats/summary`` document and the Prometheus ``/metrics/resource`` text,
and so does the agent (``NodeAgent.Stats`` in proto/node.proto).

How: ``StatsCollector.sample`` runs every ``interval`` (10 s) and reads

* per container, from the cgroup the runtime created (nodeagent/cgroups.py):
  CPU usage in cumulative nanoseconds (v2 ``cpu.stat`` ``usage_usec``, v1
  ``cpuacct.usage``) and the memory working set, usage minus
  ``inactive_file`` as cAdvisor computes it (v2 ``memory.current`` and
  ``memory.stat`` ``inactive_file``; v1 ``memory.usage_in_bytes`` and
  ``memory.stat`` ``total_inactive_file``).  On a hybrid host the directories
  of every hierarchy are read and whichever files exist are used;
* per pod, the sum of its containers;
* per node, ``/proc/stat`` (user+nice+system+irq+softirq+steal jiffies) and
  ``/proc/meminfo`` (MemTotal - MemFree - Inactive(file)).

The CPU rate (``usageNanoCores``) is the cumulative difference over the
window between the last two samples.  Hollow agents (``agent.fake``) have no
cgroups: ``SyntheticUsage`` integrates a steerable rate instead (a runtime-wide
default, overridden per pod by the annotations ``kctl.io/hollow-cpu-millicores``
and ``kctl.io/hollow-memory-bytes``), so tests and benchmarks see usage move.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

HOLLOW_CPU_ANNOTATION = "kctl.io/hollow-cpu-millicores"
HOLLOW_MEMORY_ANNOTATION = "kctl.io/hollow-memory-bytes"
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Usage:
    """One reading: wall time, cumulative CPU nanoseconds, memory working set bytes."""
    time: float
    cpu_ns: int
    memory: int


def _read(p: Path) -> str | None:
    try:
        return p.read_text()
    except OSError:
        return None


def _stat_value(text: str, key: str) -> int | None:
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return None


def read_cgroup(dirs: list[Path]) -> tuple[int, int] | None:
    """(cumulative CPU ns, memory working set) of a container's cgroup directories
    (one per hierarchy); None when neither is readable (the cgroup is gone)."""
    cpu = mem = None
    for d in dirs:
        if cpu is None and (t := _read(d / "cpu.stat")) is not None and (u := _stat_value(t, "usage_usec")) is not None:
            cpu = u * 1000                                          # v2
        if cpu is None and (t := _read(d / "cpuacct.usage")) is not None:
            cpu = int(t)                                            # v1
        if mem is None:
            for usage_file, inactive_key in (("memory.current", "inactive_file"),
                                             ("memory.usage_in_bytes", "total_inactive_file")):
                usage, stat = _read(d / usage_file), _read(d / "memory.stat")
                if usage is not None:
                    inactive = (_stat_value(stat, inactive_key) if stat else None) or 0
                    mem = max(0, int(usage) - inactive)
                    break
    if cpu is None and mem is None:
        return None
    return cpu or 0, mem or 0


def read_node(proc: Path = Path("/proc")) -> tuple[int, int]:
    """(cumulative CPU ns, memory working set) of the whole machine."""
    first = (proc / "stat").read_text().splitlines()[0].split()
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(first[i]) for i in (1, 2, 3, 6, 7, 8) if i < len(first))
    info = {}
    for line in (proc / "meminfo").read_text().splitlines():
        k, _, v = line.partition(":")
        info[k] = int(v.split()[0]) * 1024
    mem = info.get("MemTotal", 0) - info.get("MemFree", 0) - info.get("Inactive(file)", 0)
    return busy * 1_000_000_000 // USER_HZ, max(0, mem)


class SyntheticUsage:
    """Steerable usage of hollow containers: the CPU counter integrates the current rate."""

    def __init__(self, cpu_millicores: int = 5, memory_bytes: int = 16 << 20) -> None:
        self.cpu_millicores = cpu_millicores
        self.memory_bytes = memory_bytes
        self._cum: dict[str, tuple[int, int]] = {}             # cid -> (last time in µs, cumulative ns)

    def read(self, cid: str, pod, now: float) -> tuple[int, int]:
        ann = pod.metadata.annotations
        rate = int(ann.get(HOLLOW_CPU_ANNOTATION, self.cpu_millicores))
        mem = int(ann.get(HOLLOW_MEMORY_ANNOTATION, self.memory_bytes))
        now_us = round(now * 1_000_000)
        last, cum = self._cum.get(cid, (now_us, 0))
        cum += (now_us - last) * rate                              # 1 µs at 1 millicore = 1 ns: exact
        self._cum[cid] = (now_us, cum)
        return cum, mem

    def forget(self, live: set[str]) -> None:
        for cid in set(self._cum) - live:
            del self._cum[cid]


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")   # the window needs sub-seconds


def _cpu_mem(prev: Usage | None, cur: Usage) -> dict:
    out = {"cpu": {"time": _rfc3339(cur.time), "usageCoreNanoSeconds": cur.cpu_ns},
           "memory": {"time": _rfc3339(cur.time), "workingSetBytes": cur.memory}}
    if prev is not None and cur.time > prev.time:
        out["cpu"]["usageNanoCores"] = max(0, int((cur.cpu_ns - prev.cpu_ns) / (cur.time - prev.time)))
    return out


class StatsCollector:
    """The agent's last two usage samples (see the module docstring)."""

    def __init__(self, agent, interval: float = 10.0, clock=time.time) -> None:
        self.agent, self.interval, self.clock = agent, interval, clock
        self.synthetic = SyntheticUsage() if getattr(agent, "fake", False) else None
        self.prev: dict[tuple, Usage] = {}
        self.cur: dict[tuple, Usage] = {}
        self.pods: dict[tuple, dict] = {}           # (ns, name, uid) -> {"start": t, "containers": {name: start}}
        self.start = clock()

    def _container(self, cid: str, pod, now: float) -> tuple[int, int] | None:
        if self.synthetic is not None:
            return self.synthetic.read(cid, pod, now)
        return read_cgroup(self.agent.runtime.cgroup_dirs(cid))

    def sample(self) -> None:
        now = round(self.clock(), 6)           # whole µs, as the summary's timestamps print
        cur: dict[tuple, Usage] = {}
        pods: dict[tuple, dict] = {}
        live: set[str] = set()
        for w in list(self.agent.workers.values()):
            pod = w.pod
            pkey = (pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
            ctrs = {}
            for name, rec in list(w.records.items()):
                if not rec.cid or rec.state is None or rec.state.status != "running":
                    continue
                got = self._container(rec.cid, pod, now)
                if got is None:
                    continue
                live.add(rec.cid)
                cur[(*pkey, name, rec.cid)] = Usage(now, *got)
                ctrs[name] = rec.state.started_at or now
            if ctrs:
                pods[pkey] = {"start": pod.metadata.creation_timestamp.seconds or now, "containers": ctrs}
        if self.synthetic is not None:
            self.synthetic.forget(live)
            cpu = sum(u.cpu_ns for u in cur.values()) + int((now - self.start) * 50_000_000)   # 50m system
            mem = sum(u.memory for u in cur.values()) + (256 << 20)
        else:
            cpu, mem = read_node()
        cur[("node",)] = Usage(now, cpu, mem)
        self.prev, self.cur, self.pods = self.cur, cur, pods

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def _containers(self, pkey: tuple):
        for key, u in self.cur.items():
            if key[:3] == pkey:
                yield key[3], self.prev.get(key), u

    def summary(self) -> dict:
        """The kubelet's stats/v1alpha1 Summary (the fields metrics-server reads)."""
        if ("node",) not in self.cur:
            return {"node": {"nodeName": self.agent.node_name, "startTime": _rfc3339(self.start)}, "pods": []}
        node = {"nodeName": self.agent.node_name, "startTime": _rfc3339(self.start),
                **_cpu_mem(self.prev.get(("node",)), self.cur[("node",)])}
        pods = []
        for pkey, info in self.pods.items():
            containers, pcur, pprev = [], Usage(0, 0, 0), Usage(0, 0, 0)
            complete = True
            for name, prev, u in self._containers(pkey):
                containers.append({"name": name, "startTime": _rfc3339(info["containers"][name]), **_cpu_mem(prev, u)})
                pcur = Usage(u.time, pcur.cpu_ns + u.cpu_ns, pcur.memory + u.memory)
                complete = complete and prev is not None
                if prev is not None:
                    pprev = Usage(prev.time, pprev.cpu_ns + prev.cpu_ns, 0)
            pods.append({"podRef": {"namespace": pkey[0], "name": pkey[1], "uid": pkey[2]},
                         "startTime": _rfc3339(info["start"]), "containers": containers,
                         **_cpu_mem(pprev if complete else None, pcur)})
        return {"node": node, "pods": pods}

    def resource_metrics(self) -> str:
        """Prometheus text of the kubelet's /metrics/resource (its metric and label names)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ResourceCollector(self))
        return generate_latest(registry).decode()

    def summary_json(self) -> bytes:
        return json.dumps(self.summary()).encode()


class _ResourceCollector:
    def __init__(self, stats: StatsCollector) -> None:
        self.stats = stats

    def collect(self):
        cur = self.stats.cur
        node = cur.get(("node",))
        ncpu = CounterMetricFamily("node_cpu_usage_seconds", "Cumulative cpu time consumed by the node in core-seconds")
        nmem = GaugeMetricFamily("node_memory_working_set_bytes", "Current working set of the node in bytes")
        if node is not None:
            ncpu.add_metric([], node.cpu_ns / 1e9, timestamp=node.time)
            nmem.add_metric([], node.memory, timestamp=node.time)
        labels = ["container", "pod", "namespace"]
        ccpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative cpu time consumed by the container "
                                   "in core-seconds", labels=labels)
        cmem = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set of the container in "
                                 "bytes", labels=labels)
        cstart = GaugeMetricFamily("container_start_time_seconds", "Start time of the container since unix epoch "
                                   "in seconds", labels=labels)
        pcpu = CounterMetricFamily("pod_cpu_usage_seconds", "Cumulative cpu time consumed by the pod in "
                                   "core-seconds", labels=["pod", "namespace"])
        pmem = GaugeMetricFamily("pod_memory_working_set_bytes", "Current working set of the pod in bytes",
                                 labels=["pod", "namespace"])
        for pkey, info in self.stats.pods.items():
            ns, name = pkey[0], pkey[1]
            tot_cpu = tot_mem = 0
            t = 0.0
            for cname, _prev, u in self.stats._containers(pkey):
                ccpu.add_metric([cname, name, ns], u.cpu_ns / 1e9, timestamp=u.time)
                cmem.add_metric([cname, name, ns], u.memory, timestamp=u.time)
                cstart.add_metric([cname, name, ns], info["containers"][cname])
                tot_cpu, tot_mem, t = tot_cpu + u.cpu_ns, tot_mem + u.memory, u.time
            pcpu.add_metric([name, ns], tot_cpu / 1e9, timestamp=t)
            pmem.add_metric([name, ns], tot_mem, timestamp=t)
        scrape = GaugeMetricFamily("scrape_error", "1 if there was an error while getting container metrics, "
                                   "0 otherwise")
        scrape.add_metric([], 0 if node is not None else 1)
        yield from (ncpu, nmem, ccpu, cmem, cstart, pcpu, pmem, scrape)
