"""Apiserver throughput and latency next to raw etcd, measured in one run.

    .venv/bin/python bench/api.py [--ops 2000] [--ops64 6000] [--only create|get|http]

Starts its own etcd and kctl-apiserver on free loopback ports in a
temporary directory (harness.control_plane), then measures, at concurrency 1 and
64: Pod creates and gets through the API over gRPC (machinery.client, i.e.
gRPC → apiserver → etcd txn/range) and over the Kubernetes HTTP API (JSON,
aiohttp's client with a pooled connection per worker, as client libraries
keep them), and raw etcd puts/gets of the same bytes with aetcd directly; and
the transports' own floor (bench/transport.py): a unary call that does
nothing, over grpc.aio and over aiohttp, the same way.  Then, with --node-watchers (default 1,000) node-agent-like
watches open, creates and binds 1,000 pods until every watcher has seen its
pods; and (bench/fanout.py) with as many watchers of one kind that every
node follows, the time from a write until every watcher saw it, p50/p99,
next to the same with raw etcd watches.  Per phase also the CPU per
operation of the apiserver, of etcd and of the whole machine (/proc/stat:
every process, this client's included), and the operations per second the
machine's cores would allow at that cost.  Prints a table, the API/etcd
ratios, the fan-out figures, the time to list every pod, and ends with one
machine-readable line `RESULT key=value ...`.  --only runs just one set
of phases (e.g. creates next to raw etcd puts) and nothing after them: the
short variant for A/B runs and profiles on a busy machine.
Everything it started is stopped by PID on the way out.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import aetcd  # noqa: E402  (the benchmark's own raw-etcd baseline)
import aiohttp  # noqa: E402  (the HTTP API's client side)

from machinery.client import Client  # noqa: E402
from harness.control_plane import ControlPlane  # noqa: E402
from harness.objects import new_object  # noqa: E402
from harness.process import free_port  # noqa: E402
from machinery import codec  # noqa: E402
from bench.fanout import print_fanout, run_fanout  # noqa: E402
from bench.phase import run_phase  # noqa: E402
from bench.proccpu import cpu_seconds, machine_busy  # noqa: E402
from bench import transport  # noqa: E402


async def fanout(clients: list[Client], watchers: int, pods: int = 1000) -> dict[str, float]:
    """`watchers` node-agent-like watches (`spec.nodeName=node-i`) open while
    `pods` pods are created and bound (BindBatch): pods/s until every bound
    pod reached its node's watcher."""
    from machinery.pb import api_pb2
    _, rv = await clients[0].list("Pod", "fanout")
    seen = 0
    all_seen = asyncio.Event()

    async def watch(i):
        nonlocal seen
        async for ev in clients[i % len(clients)].watch("Pod", "fanout", resource_version=rv,
                                                         field_selector=f"spec.nodeName=node-{i}"):
            if ev.type == "ADDED":
                seen += 1
                if seen == pods:
                    all_seen.set()
    ns = new_object("Namespace", "fanout")
    await clients[0].create(ns)
    tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
    await asyncio.sleep(1)                      # let the watches open
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(64)

    async def create(i):
        async with sem:
            await clients[i % len(clients)].create(new_object("Pod", f"f{i}", "fanout"))
    await asyncio.gather(*(create(i) for i in range(pods)))
    for lo in range(0, pods, 100):
        await clients[0].bind_batch(api_pb2.BindRequest(namespace="fanout", name=f"f{i}",
                                                        node_name=f"node-{i % watchers}")
                                    for i in range(lo, min(pods, lo + 100)))
    await asyncio.wait_for(all_seen.wait(), 300)
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"fanout_watchers": watchers, "fanout_pods_per_s": pods / elapsed}


# --only: a short variant that runs one pair of phases (and its ratio) at both concurrencies
PHASES = {"create": ("api_create", "etcd_put", "grpc_floor"), "get": ("api_create", "api_get", "etcd_put", "etcd_get"),
          "http": ("api_create", "http_create", "api_get", "http_get", "grpc_floor", "http_floor")}
ROWS = ("api_create", "http_create", "etcd_put", "api_get", "http_get", "etcd_get", "grpc_floor", "http_floor")


def ratios(r: dict[str, float], conc: int) -> None:
    """API/etcd and HTTP/gRPC ratios of the phases that ran."""
    pairs = {"ratio_create": ("api_create", "etcd_put"), "ratio_get": ("api_get", "etcd_get"),
             "ratio_http_grpc_create": ("http_create", "api_create"),
             "ratio_http_grpc_get": ("http_get", "api_get"),
             "ratio_create_grpc_floor": ("api_create", "grpc_floor"),
             "ratio_http_create_http_floor": ("http_create", "http_floor")}
    for key, (a, b) in pairs.items():
        if f"{a}_c{conc}_ops" in r and f"{b}_c{conc}_ops" in r:
            r[f"{key}_c{conc}"] = r[f"{a}_c{conc}_ops"] / r[f"{b}_c{conc}_ops"]


def http_ops(session: aiohttp.ClientSession, base: str, conc: int, n: int):
    """create and get of Pods over the HTTP API (status checked: a failure ends the run)."""
    pods = f"{base}/api/v1/namespaces/default/pods"
    template = codec.to_dict(new_object("Pod", "template"))   # a client holds its JSON already

    async def create(i):
        body = {**template, "metadata": {**template["metadata"], "name": f"h{conc}-{i}"}}
        async with session.post(pods, json=body) as r:
            await r.read()
            r.raise_for_status()

    async def get(i):
        async with session.get(f"{pods}/h{conc}-{(i * 7919) % n}") as r:
            await r.read()
            r.raise_for_status()
    return create, get


async def bench(cluster: ControlPlane, ops1: int, ops64: int, node_watchers: int = 0,
                http: str = "", only: str = "") -> dict[str, float]:
    results: dict[str, float] = {}
    # the HTTP API serves TLS (the harness CA) and authenticates the admin's client certificate
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64, ssl=cluster.apiserver.ssl_context()))
    template = new_object("Pod", "template")
    payload = template.SerializeToString()
    etcd_port = cluster.etcd.client_port
    creds = cluster.apiserver.credentials
    clients = [Client(cluster.apiserver.target, credentials=creds) for _ in range(8)]   # 8 channels share 64 workers
    raw = aetcd.Client(host="127.0.0.1", port=etcd_port, timeout=10)
    await raw.connect()
    try:
        # warm up both paths
        for i in range(50):
            p = new_object("Pod", f"warm-{i}")
            await clients[0].create(p)
            await raw.put(f"/bench/warm-{i}".encode(), payload)

        for conc, n in ((1, ops1), (64, ops64)):
            def api_create(i, conc=conc):
                return clients[i % len(clients)].create(new_object("Pod", f"c{conc}-{i}"))

            def api_get(i, conc=conc, n=n):
                return clients[i % len(clients)].get("Pod", f"c{conc}-{(i * 7919) % n}")

            def etcd_put(i, conc=conc):
                return raw.put(f"/bench/pods/c{conc}-{i}".encode(), payload)

            def etcd_get(i, conc=conc, n=n):
                return raw.get(f"/bench/pods/c{conc}-{(i * 7919) % n}".encode())

            http_create, http_get = http_ops(session, http, conc, n)
            for name, op in (("api_create", api_create), ("api_get", api_get),
                             ("http_create", http_create), ("http_get", http_get),
                             ("etcd_put", etcd_put), ("etcd_get", etcd_get)):
                if only and name not in PHASES[only]:
                    continue
                cpu0, etcd0, busy0 = cpu_seconds(cluster.apiserver.pid), cpu_seconds(cluster.etcd.pid), machine_busy()
                r = await run_phase(n, conc, op)
                if not name.startswith("etcd"):   # the apiserver's CPU per request: steadier than ops/s
                    r["cpu_us"] = (cpu_seconds(cluster.apiserver.pid) - cpu0) / n * 1e6
                # etcd's and every process's (this client's included): the CPU one operation costs
                # this machine, so cores / machine_us is the most any code could do here at that cost
                r["etcd_cpu_us"] = (cpu_seconds(cluster.etcd.pid) - etcd0) / n * 1e6
                r["machine_cpu_us"] = (machine_busy() - busy0) / n * 1e6
                for k, v in r.items():
                    results[f"{name}_c{conc}_{k}"] = v
            for name, kind in (("grpc_floor", "grpc"), ("http_floor", "http")):    # each its own server process
                if only and name not in PHASES[only]:
                    continue
                for k, v in (await transport.measure(kind, n, conc, payload, free_port())).items():
                    results[f"{name}_c{conc}_{k}"] = v
            ratios(results, conc)

        if node_watchers:
            results.update(await fanout(clients, node_watchers))
            results.update(await run_fanout(cluster.apiserver.target, etcd_port, node_watchers,
                                            apiserver_pid=cluster.apiserver.pid,
                                            kubeconfig=cluster.apiserver.kubeconfig))
        if only:
            return results
        t0 = time.perf_counter()
        items, _ = await clients[0].list("Pod")
        results["list_pods_n"] = len(items)
        results["list_pods_ms"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        sel, _ = await clients[0].list("Pod", label_selector="app=none")
        results["list_pods_selector_ms"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        async with session.get(f"{http}/api/v1/pods") as r:
            results["http_list_pods_n"] = len((await r.json())["items"])
        results["http_list_pods_ms"] = (time.perf_counter() - t0) * 1000
    finally:
        await session.close()
        await asyncio.gather(*(c.close() for c in clients))
        await raw.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=2000, help="operations per phase at concurrency 1")
    ap.add_argument("--ops64", type=int, default=8000, help="operations per phase at concurrency 64")
    ap.add_argument("--node-watchers", type=int, default=1000,
                    help="node-agent-like pod watches open during the fan-out phase (0 skips it)")
    ap.add_argument("--only", choices=sorted(PHASES), default="",
                    help="run only these phases (create: API create vs etcd put), no fan-out, no lists")
    args = ap.parse_args()
    http = f"127.0.0.1:{free_port()}"
    with ControlPlane(apiserver_args=["--metrics-listen", "off", "--http-listen", http]) as cluster:
        print(f"etcd {cluster.etcd.url} (pid {cluster.etcd.pid}), apiserver {cluster.apiserver.target} "
              f"and {cluster.apiserver.http_url} (pid {cluster.apiserver.pid}), cpus {os.cpu_count()}")
        r = asyncio.run(bench(cluster, args.ops, args.ops64, 0 if args.only else args.node_watchers,
                              cluster.apiserver.http_url, args.only))
    cores = os.cpu_count() or 1
    print(f"{'operation':<12} {'conc':>4} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}   CPU us/op: {'apiserver':>9} "
          f"{'etcd':>6} {'machine':>8}   ops/s at {cores} cores busy")
    for conc in (1, 64):
        for name in ROWS:
            k = f"{name}_c{conc}"
            if k + "_ops" not in r:
                continue
            cpu = f"{r[k + '_cpu_us']:>9.0f}" if k + "_cpu_us" in r else f"{'':>9}"
            etcd = f"{r[k + '_etcd_cpu_us']:>6.0f}" if k + "_etcd_cpu_us" in r else f"{'':>6}"
            print(f"{name:<12} {conc:>4} {r[k + '_ops']:>9.0f} {r[k + '_p50']:>8.2f} {r[k + '_p99']:>8.2f}   "
                  f"{'':>11}{cpu} {etcd} {r[k + '_machine_cpu_us']:>8.0f}   "
                  f"{cores / r[k + '_machine_cpu_us'] * 1e6:>9.0f}")
        print(f"  at concurrency {conc}: " + ", ".join(f"{k.removesuffix(f'_c{conc}')} {v:.2f}" for k, v in r.items()
                                                       if k.startswith("ratio") and k.endswith(f"_c{conc}")))
    if "list_pods_n" in r:
        print(f"list {int(r['list_pods_n'])} pods: {r['list_pods_ms']:.0f} ms "
              f"(with a selector matching none: {r['list_pods_selector_ms']:.0f} ms; "
              f"over HTTP: {r['http_list_pods_ms']:.0f} ms)")
    if "fanout_pods_per_s" in r:
        print(f"create+bind 1000 pods with {int(r['fanout_watchers'])} node watchers open: "
              f"{r['fanout_pods_per_s']:.0f} pods/s until every node's watcher saw its pods")
        print_fanout(r)
    keys = [k for k in r if not k.endswith("_mean")]
    print("RESULT " + " ".join(f"{k}={r[k]:.3f}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys))


if __name__ == "__main__":
    main()
