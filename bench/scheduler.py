"""Scheduler throughput and latency on hollow nodes.

    python -m bench.scheduler [--nodes 5000] [--pods 10000] [--mode backlog|stream] [--rate R]
                              [--workload plain|placement|both]

Starts its own etcd + apiserver (harness.control_plane), creates N hollow nodes,
starts `kctl-scheduler` as a separate process, then (by mode):

* backlog (default): creates the M pending pods first, then starts the
  scheduler: pods_per_s = M / (last bound - first bound), the scheduler's
  own rate without the creation path in the way. Latencies (created → bound)
  then mostly measure the time spent waiting in the backlog; the
  scheduler's own e2e histogram is printed next to them.
* stream: creates M pending pods (100m / 128Mi each, one owner per
  100 pods) while the scheduler runs. pods_per_s = M / (last bound - first
  created); latency per pod = bound - created, both as seen by this
  process's pod watch (ADDED without nodeName → first event with nodeName).
  --rate paces the creates (latency under a sustainable load).

Afterwards it measures raw etcd transaction throughput on the same etcd
with aetcd's stubs (single-put txns, 64 in flight; and 128-put txns). Not
before: ~100k keys written and deleted leave etcd's backend an order of
magnitude slower for everything that follows (no compaction/defrag here).
It prints the CPU seconds of etcd / apiserver / scheduler / bench during the
binding phase, the apiserver's request table, and the scheduler's own
queue-wait / bind / e2e histograms, to show where the time goes.

Workloads (--workload): `plain` pods only request resources; `placement`
gives a third of the owners (every third block of 100 pods) a zone
topologySpreadConstraint (maxSkew 1, DoNotSchedule) and a required pod
anti-affinity on kubernetes.io/hostname, both selecting their own owner's
pods, so PodTopologySpread and InterPodAffinity filter and count for real
(hollow nodes carry topology.kubernetes.io/zone in 3 zones); `both` runs
plain then placement, each on a fresh control plane, in one invocation.

Ends with (one line per workload)
`RESULT nodes=N pods=M pods_per_s=X p50_ms=Y p99_ms=Z etcd_txn_per_s=W workload=plain`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402
from aetcd import rpc  # noqa: E402

from machinery.client import Client  # noqa: E402
from scheduler import hollow  # noqa: E402
from harness.control_plane import ApiServer, Etcd, Scheduler  # noqa: E402
from harness.process import free_port  # noqa: E402


async def etcd_txn_rate(url: str, seconds: float = 3.0, parallel: int = 64, ops: int = 1) -> float:
    """Transactions per second against etcd directly (each `ops` puts)."""
    endpoint = url.split("://", 1)[-1]
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)
        value = b"x" * 600
        stop = time.monotonic() + seconds
        done = 0

        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop:
                req = rpc.TxnRequest(success=[rpc.RequestOp(request_put=rpc.PutRequest(
                    key=f"/bench/{w}/{i}/{j}".encode(), value=value)) for j in range(ops)])
                await kv.Txn(req)
                i += 1
                done += 1
        t0 = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(parallel)))
        rate = done / (time.monotonic() - t0)
        await kv.DeleteRange(rpc.DeleteRangeRequest(key=b"/bench/", range_end=b"/bench0"))
        return rate


async def create_all(client: Client, objs, parallel: int = 64, rate: float = 0,
                     created: dict | None = None) -> float:
    """Create objects, at most `parallel` in flight, paced at `rate`/s if > 0;
    `created[name]` = when the create call returned."""
    sem = asyncio.Semaphore(parallel)

    async def one(o):
        try:
            await client.create(o)
            if created is not None:
                created[o.metadata.name] = time.monotonic()
        finally:
            sem.release()
    t0 = time.monotonic()
    tasks = []
    for i, o in enumerate(objs):
        if rate > 0:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await sem.acquire()
        tasks.append(asyncio.create_task(one(o)))
    await asyncio.gather(*tasks)
    return time.monotonic() - t0


class Watcher:
    """Pod watch: first sight unbound, first sight bound (monotonic times)."""

    def __init__(self, client: Client, total: int):
        self.client, self.total = client, total
        self.seen: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.all_bound = asyncio.Event()

    async def run(self, rv: str) -> None:
        async for ev in self.client.watch("Pod", "bench", resource_version=rv):
            now = time.monotonic()
            p = ev.object
            if p is None:
                continue
            name = p.metadata.name
            self.seen.setdefault(name, now)
            if p.spec.node_name and name not in self.bound:
                self.bound[name] = now
                if len(self.bound) >= self.total:
                    self.all_bound.set()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url: str) -> dict[tuple, float]:
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def report_apiserver(metrics: dict) -> None:
    rows = {}
    for (name, labels), v in metrics.items():
        d = dict(labels)
        if name == "kctl_apiserver_request_duration_seconds_sum":
            rows.setdefault((d["kind"], d["verb"]), [0, 0])[1] = v
        elif name == "kctl_apiserver_request_duration_seconds_count":
            rows.setdefault((d["kind"], d["verb"]), [0, 0])[0] = v
    print("apiserver requests (count, mean ms):", flush=True)
    for (kind, verb), (n, total) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        if n:
            print(f"  {kind:10} {verb:12} {int(n):7d} {total / n * 1000:8.2f} ms  (total {total:.1f}s)")


def start_scheduler(target: str, workdir: pathlib.Path, extra: list[str], metrics_port: int = 0) -> Scheduler:
    return Scheduler(workdir, target, metrics_port=metrics_port or None, extra_args=extra).start()


async def wait_synced(sched: Scheduler, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sched.running:
            raise RuntimeError(f"scheduler exited:\n{sched.log_tail()}")
        if "caches synced" in sched.log_path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("scheduler never synced")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


ZONE = "topology.kubernetes.io/zone"


def bench_pod(i: int, placement: bool):
    """Pod i of the workload (owner = i // 100; see the module docstring)."""
    owner = i // 100
    app = f"rs-{owner}"
    p = hollow.pod(f"pod-{i:06}", namespace="bench", cpu="100m", memory="128Mi", owner_uid=app,
                   labels={"app": app})
    if placement and owner % 3 == 0:
        c = p.spec.topology_spread_constraints.add(max_skew=1, topology_key=ZONE, when_unsatisfiable="DoNotSchedule")
        c.label_selector.match_labels["app"] = app
        t = p.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution.add(
            topology_key="kubernetes.io/hostname")
        t.label_selector.match_labels["app"] = app
    return p


async def bench(args, workload: str = "plain") -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="kctl-bench-sched-"))
    with Etcd(work) as etcd, ApiServer(etcd, work) as api:
        async with Client(api.target, timeout=120, credentials=api.credentials) as client:
            ns = hollow.node("x")   # touch the builder once (import cost out of the timings)
            del ns
            from machinery import kinds
            n = kinds.new("Namespace")
            n.metadata.name = "bench"
            await client.create(n)
            nodes = [hollow.node(f"hollow-{i:05}", cpu="32", memory="128Gi", pods="110",
                                 labels={"zone": f"zone-{i % 3}", ZONE: f"zone-{i % 3}"})
                     for i in range(args.nodes)]
            dt = await create_all(client, nodes)
            print(f"created {args.nodes} nodes in {dt:.1f}s ({args.nodes / dt:.0f}/s)", flush=True)
            pods = [bench_pod(i, workload == "placement") for i in range(args.pods)]
            _, rv = await client.list("Pod", "bench", timeout=120)
            watcher = Watcher(client, args.pods)
            wtask = asyncio.create_task(watcher.run(rv))
            sched_port = free_port()
            extra = ["--batch-size", str(args.batch_size), "--binds-in-flight", str(args.binds_in_flight)]
            if args.profile:
                extra += ["--profile", os.path.abspath(args.profile)]
            proc = None
            created: dict[str, float] = {}
            try:
                if args.mode == "backlog":
                    dt = await create_all(client, pods, args.parallel)
                    print(f"created {args.pods} pods in {dt:.1f}s ({args.pods / dt:.0f}/s)", flush=True)
                    proc = start_scheduler(api.target, work, extra, sched_port)
                    await wait_synced(proc)
                else:
                    proc = start_scheduler(api.target, work, extra, sched_port)
                    await wait_synced(proc)
                    t_create = time.monotonic()
                    dt = await create_all(client, pods, args.parallel, args.rate, created)
                    print(f"created {args.pods} pods in {dt:.1f}s ({args.pods / dt:.0f}/s) "
                          f"while scheduling; bound so far {len(watcher.bound)}", flush=True)
                em0 = scrape(etcd.url + "/metrics") if args.etcd_metrics else {}
                pids = {"etcd": etcd.pid, "apiserver": api.pid, "scheduler": proc.pid, "bench": os.getpid()}
                cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                w0 = time.monotonic()
                await asyncio.wait_for(watcher.all_bound.wait(), args.timeout)
                wall = time.monotonic() - w0
                cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
                print(f"CPU seconds while waiting for the last binding ({wall:.1f}s wall, 2 cores): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()), flush=True)
                sm = scrape(f"http://127.0.0.1:{sched_port}/metrics")
                n = sm.get(("kctl_scheduler_bind_batch_size_count", ()), 0)
                if n:
                    print(f"bind batches: {int(n)}, mean size "
                          f"{sm[('kctl_scheduler_bind_batch_size_sum', ())] / n:.1f}", flush=True)
                for h in ("bind_batch_duration_seconds", "e2e_scheduling_duration_seconds"):
                    c = sm.get((f"kctl_scheduler_{h}_count", ()), 0)
                    if c:
                        print(f"scheduler {h}: mean {sm[(f'kctl_scheduler_{h}_sum', ())] / c * 1000:.1f} ms "
                              f"over {int(c)}", flush=True)
                report_apiserver(scrape(api.metrics_url))
                if args.etcd_metrics:
                    em1 = scrape(etcd.url + "/metrics")
                    for key, v in sorted(em1.items()):
                        d = v - em0.get(key, 0)
                        if key[0].startswith(("grpc_server_handled_total", "etcd_disk_wal_fsync_duration_seconds_count",
                                              "etcd_debugging_mvcc_put_total", "etcd_mvcc_put_total",
                                              "etcd_network", "etcd_server_proposals_committed_total")) and d:
                            print(f"  etcd {key[0]} {dict(key[1])} +{d:.0f}")
            finally:
                wtask.cancel()
                if proc is not None:
                    proc.stop()
            bound = sorted(watcher.bound.values())
            if args.mode == "backlog":
                span = bound[-1] - bound[0]
            else:
                span = bound[-1] - min(t_create, min(watcher.seen.values()))
            rate = len(bound) / span if span > 0 else float("inf")
            lat = [(watcher.bound[k] - watcher.seen[k]) * 1000 for k in watcher.bound if k in watcher.seen]
            print(f"bound {len(bound)} pods in {span:.2f}s; latency p50 {pct(lat, .5):.0f} ms, "
                  f"p90 {pct(lat, .9):.0f} ms, p99 {pct(lat, .99):.0f} ms, mean {statistics.mean(lat):.0f} ms",
                  flush=True)
            if created:
                wd = [(watcher.seen[k] - created[k]) * 1000 for k in created if k in watcher.seen]
                print(f"apiserver watch delay (create returned -> ADDED seen here): p50 {pct(wd, .5):.0f} ms, "
                      f"p99 {pct(wd, .99):.0f} ms", flush=True)
            print(f"scheduler log: {proc.log_path}", flush=True)
        # After the scheduling phase, so its writes do not sit in etcd's
        # backend while the scheduler is measured.
        txn1 = await etcd_txn_rate(etcd.url)
        txn128 = await etcd_txn_rate(etcd.url, seconds=2, parallel=8, ops=128)
        print(f"etcd: {txn1:.0f} txn/s (1 put, 64 in flight); {txn128:.0f} txn/s = "
              f"{txn128 * 128:.0f} puts/s (128 puts per txn, 8 in flight)", flush=True)
        print(f"RESULT nodes={args.nodes} pods={args.pods} pods_per_s={rate:.0f} "
              f"p50_ms={pct(lat, .5):.0f} p99_ms={pct(lat, .99):.0f} etcd_txn_per_s={txn1:.0f} "
              f"workload={workload}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--pods", type=int, default=10000)
    p.add_argument("--mode", choices=("stream", "backlog"), default="backlog")
    p.add_argument("--parallel", type=int, default=128, help="pod creates in flight")
    p.add_argument("--rate", type=float, default=0, help="stream mode: create pods at this rate (0: flat out)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--binds-in-flight", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--etcd-metrics", action="store_true", help="print etcd request counts of the scheduling phase")
    p.add_argument("--profile", default="", help="cProfile the scheduler into this file")
    p.add_argument("--workload", choices=("plain", "placement", "both"), default="plain",
                   help="placement: spread + anti-affinity on a third of the pods; both: plain, then placement")
    args = p.parse_args(argv)
    for workload in (("plain", "placement") if args.workload == "both" else (args.workload,)):
        print(f"== workload {workload}", flush=True)
        asyncio.run(bench(args, workload))


if __name__ == "__main__":
    main()
