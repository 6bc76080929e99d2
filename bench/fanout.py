"""Watch fan-out: one write, seen by each of N node-agent-like watchers; next to raw etcd watches.

    .venv/bin/python bench/fanout.py [--watchers 1000] [--writes 100]   (or from bench/api.py)

Every node agent (and its proxy) keeps watches open on kinds that every node
follows, so one write fans out to every node.  This opens ``--watchers``
watches of ConfigMaps in one namespace, spread over ``PROCS`` watcher
processes (as many agents would be; one process could not even decode 1,000
copies of an event as fast as they come), each with a few gRPC channels.  Then
the parent creates one warm-up ConfigMap (not measured: the first event
through every path) and then ``--writes`` ConfigMaps one at a time, ``--gap``
seconds apart, and each watcher process stamps when every one of its watches
received each write; a watch that has all of them stays open until every
watch of its process has.  Per write: write start -> the LAST watcher saw it ("seen by every
watcher"); per delivery: write start -> that watcher saw it.  The watches ask
for bookmarks, as every informer does.  Also the machine's CPU per write
(every process, the watchers' decoding included: /proc/stat over the
writes), and that over the cores, the soonest the last watcher could be
served if all of it ran in parallel.  The same run
does the same with raw etcd watches (aetcd, one watch per watcher on a key
prefix, puts of the same object's bytes): the limit under the apiserver's
watch cache.  All processes share this machine's clock (time.time()).
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.phase import pct  # noqa: E402
from bench.proccpu import cpu_seconds, machine_busy  # noqa: E402

PROCS = 4              # watcher processes
CHANNELS = 4           # gRPC channels per watcher process
NAMESPACE = "fanout"
RAW_PREFIX = b"/bench-fanout/"


async def _run_watchers(one, n: int, opened, deadline: float) -> None:
    """Run one(i, finished) for n watchers until each called finished() (or the
    deadline), then cancel them all; `opened` is set once they had a second to
    open their watches.  A watcher that has seen every write goes on reading
    until all of this process's have: closing its watch at once would put the
    teardown of the first watches (a cancel each, on both sides) among the
    last write's deliveries."""
    left = [n]
    done = asyncio.Event()

    def finished() -> None:
        left[0] -= 1
        if not left[0]:
            done.set()

    tasks = [asyncio.create_task(one(i, finished)) for i in range(n)]
    await asyncio.sleep(1.0)
    opened.set()
    try:
        await asyncio.wait_for(done.wait(), max(1.0, deadline - time.time()))
    except asyncio.TimeoutError:
        pass
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _watch_api(target: str, n: int, rv: str, writes: int, opened, deadline: float) -> dict:
    from machinery.client import Client
    clients = [Client(target, timeout=None) for _ in range(CHANNELS)]
    seen: dict[str, list[float]] = {}

    async def one(i: int, finished) -> None:
        count = 0
        # with bookmarks, as every informer (machinery/informer.py) and client-go reflector asks
        async for ev in clients[i % CHANNELS].watch("ConfigMap", NAMESPACE, resource_version=rv,
                                                    allow_bookmarks=True):
            if ev.type == "ADDED":
                seen.setdefault(ev.object.metadata.name, []).append(time.time())
                count += 1
                if count == writes + 1:            # the warm-up write and the measured ones
                    finished()                     # and the stream stays open (see _run_watchers)
    await _run_watchers(one, n, opened, deadline)
    await asyncio.gather(*(c.close() for c in clients))
    return seen


async def _watch_raw(port: int, n: int, writes: int, opened, deadline: float) -> dict:
    import aetcd
    clients = [aetcd.Client(host="127.0.0.1", port=port) for _ in range(CHANNELS)]
    for c in clients:
        await c.connect()
    seen: dict[str, list[float]] = {}

    async def one(i: int, finished) -> None:
        count = 0
        async for ev in await clients[i % CHANNELS].watch_prefix(RAW_PREFIX):
            seen.setdefault(ev.kv.key.decode().rsplit("/", 1)[1], []).append(time.time())
            count += 1
            if count == writes + 1:                # the warm-up write and the measured ones
                finished()                         # and the stream stays open (see _run_watchers)
    await _run_watchers(one, n, opened, deadline)
    for c in clients:
        await c.close()
    return seen


async def _watch_http(base: str, n: int, rv: str, writes: int, opened, deadline: float, ssl=None) -> dict:
    """As _watch_api over the Kubernetes HTTP API: `GET ...?watch=true`, one JSON line per
    event, decoded as client libraries do; one connection per watch (HTTP/1.1 streams).
    `ssl`: the client's TLS context (default: the $KUBECONFIG admin's)."""
    import json

    import aiohttp
    if ssl is None:
        from machinery import kubeconfig
        ssl = kubeconfig.default_credentials().ssl_context()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=ssl),
                                    timeout=aiohttp.ClientTimeout(total=None))
    url = (f"{base}/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&allowWatchBookmarks=true"
           f"&resourceVersion={rv}")
    seen: dict[str, list[float]] = {}

    async def one(i: int, finished) -> None:
        count = 0
        async with session.get(url) as r:
            r.raise_for_status()
            async for line in r.content:
                ev = json.loads(line)
                if ev["type"] == "ADDED":
                    seen.setdefault(ev["object"]["metadata"]["name"], []).append(time.time())
                    count += 1
                    if count == writes + 1:        # as _watch_api
                        finished()
    await _run_watchers(one, n, opened, deadline)
    await session.close()
    return seen


def _child(mode: str, where, n: int, rv: str, writes: int, opened, out, deadline: float) -> None:
    if mode == "api":
        seen = asyncio.run(_watch_api(where, n, rv, writes, opened, deadline))
    elif mode == "http":
        seen = asyncio.run(_watch_http(where, n, rv, writes, opened, deadline))
    else:
        seen = asyncio.run(_watch_raw(where, n, writes, opened, deadline))
    out.put(seen)


def _spawn(mode: str, where, watchers: int, rv: str, writes: int, timeout: float):
    ctx = multiprocessing.get_context("spawn")       # never fork a process holding gRPC threads
    out = ctx.Queue()
    deadline = time.time() + timeout
    procs, events = [], []
    for k in range(PROCS):
        n = watchers // PROCS + (1 if k < watchers % PROCS else 0)
        ev = ctx.Event()
        p = ctx.Process(target=_child, args=(mode, where, n, rv, writes, ev, out, deadline), daemon=True)
        p.start()
        procs.append(p)
        events.append(ev)
    return procs, events, out


def _collect(procs, out, starts: dict[str, float], watchers: int) -> dict[str, float]:
    merged: dict[str, list[float]] = {}
    for _ in procs:
        for name, times in out.get(timeout=120).items():
            merged.setdefault(name, []).extend(times)
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    complete = [name for name in starts if len(merged.get(name, [])) == watchers]
    if not complete:
        raise RuntimeError("no write reached every watcher")
    all_seen = [(max(merged[name]) - starts[name]) * 1000 for name in complete]
    each = [(t - starts[name]) * 1000 for name in complete for t in merged[name]]
    return {"all_p50": pct(all_seen, 50), "all_p99": pct(all_seen, 99), "each_p50": pct(each, 50),
            "each_p99": pct(each, 99), "complete": len(complete)}


async def _through_api(c, mode: str, where: str, watchers: int, writes: int, gap: float,
                       apiserver_pid: int | None, prefix: str) -> dict[str, float]:
    """One phase through the apiserver: `watchers` watches (mode "api": gRPC, "http": the HTTP
    API) open from the current revision, a warm-up ConfigMap, then `writes` ConfigMaps named
    PREFIX0.. one at a time; the figures under fanout_{mode}_."""
    from harness.objects import new_object
    _, rv = await c.list("ConfigMap", NAMESPACE)
    procs, opened, out = _spawn(mode, where, watchers, rv, writes, 60 + writes * gap * 4)
    for ev in opened:
        await asyncio.to_thread(ev.wait, 60)
    await c.create(new_object("ConfigMap", f"{prefix}warmup", NAMESPACE))   # not measured: every path's first use
    await asyncio.sleep(gap)
    starts = {}
    cpu0, busy0 = cpu_seconds(apiserver_pid), machine_busy()
    for i in range(writes):
        cm = new_object("ConfigMap", f"{prefix}{i}", NAMESPACE)
        cm.data["k"] = "v"
        starts[cm.metadata.name] = time.time()
        await c.create(cm)
        await asyncio.sleep(gap)
    results = {f"fanout_{mode}_machine_ms": (machine_busy() - busy0) / writes * 1000}
    r = await asyncio.to_thread(_collect, procs, out, starts, watchers)
    if apiserver_pid:
        results[f"fanout_{mode}_cpu_us"] = (cpu_seconds(apiserver_pid) - cpu0) / (watchers * writes) * 1e6
    results.update({f"fanout_{mode}_{k}_ms" if k != "complete" else f"fanout_{mode}_complete": v
                    for k, v in r.items()})
    return results


async def run_fanout(target: str, etcd_port: int, watchers: int = 1000, writes: int = 100,
                     gap: float = 0.2, apiserver_pid: int | None = None,
                     kubeconfig: str | os.PathLike | None = None, http: str = "",
                     http_watchers: int = 0) -> dict[str, float]:
    """Both phases (API, then raw etcd); figures in ms, keys fanout_{api,etcd}_{all,each}_p{50,99}_ms;
    with the apiserver's pid also its CPU time per delivered event (fanout_api_cpu_us).
    `kubeconfig`: the apiserver's admin credentials, for this process and the
    watcher processes (they inherit $KUBECONFIG); without it the default kubeconfig's.
    With `http` (the HTTP API's https:// URL) and `http_watchers`, a third phase between
    them: that many watches over the HTTP API (fanout_http_...)."""
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)
    import aetcd
    from machinery.client import Client
    from harness.objects import new_object
    results: dict[str, float] = {"fanout_watchers": watchers, "fanout_writes": writes}
    async with Client(target) as c:
        try:
            await c.create(new_object("Namespace", NAMESPACE))
        except Exception:  # noqa: BLE001 - already there from an earlier phase
            pass
        results.update(await _through_api(c, "api", target, watchers, writes, gap, apiserver_pid, "w"))
        if http and http_watchers:
            results["fanout_http_watchers"] = http_watchers
            results.update(await _through_api(c, "http", http, http_watchers, writes, gap, apiserver_pid, "h"))
        cm = new_object("ConfigMap", "w0", NAMESPACE)
        cm.data["k"] = "v"
        payload = cm.SerializeToString()

    procs, opened, out = _spawn("raw", etcd_port, watchers, "", writes, 60 + writes * gap * 4)
    for ev in opened:
        await asyncio.to_thread(ev.wait, 60)
    raw = aetcd.Client(host="127.0.0.1", port=etcd_port)
    await raw.connect()
    await raw.put(RAW_PREFIX + b"warmup", payload)          # not measured, as above
    await asyncio.sleep(gap)
    starts = {}
    busy0 = machine_busy()
    try:
        for i in range(writes):
            starts[f"w{i}"] = time.time()
            await raw.put(RAW_PREFIX + f"w{i}".encode(), payload)
            await asyncio.sleep(gap)
    finally:
        await raw.close()
    results["fanout_etcd_machine_ms"] = (machine_busy() - busy0) / writes * 1000
    r = await asyncio.to_thread(_collect, procs, out, starts, watchers)
    results.update({f"fanout_etcd_{k}_ms" if k != "complete" else "fanout_etcd_complete": v for k, v in r.items()})
    return results


def print_fanout(r: dict) -> None:
    print(f"{int(r['fanout_watchers'])} watchers, {int(r['fanout_writes'])} writes: "
          f"write -> seen by every watcher p50 {r['fanout_api_all_p50_ms']:.0f} ms, p99 "
          f"{r['fanout_api_all_p99_ms']:.0f} ms (raw etcd watches: p50 {r['fanout_etcd_all_p50_ms']:.0f} ms, "
          f"p99 {r['fanout_etcd_all_p99_ms']:.0f} ms); each delivery p50 {r['fanout_api_each_p50_ms']:.0f} ms, "
          f"p99 {r['fanout_api_each_p99_ms']:.0f} ms (etcd {r['fanout_etcd_each_p50_ms']:.0f} / "
          f"{r['fanout_etcd_each_p99_ms']:.0f} ms)"
          + (f"; apiserver CPU {r['fanout_api_cpu_us']:.0f} us per delivery" if "fanout_api_cpu_us" in r else ""))
    # every process's share of one write (the watchers' decoding included): no schedule on this
    # machine's cores can have the last watcher served sooner than this CPU over the cores
    cores = os.cpu_count() or 1
    print(f"machine CPU per write (every process, the watchers' included): API {r['fanout_api_machine_ms']:.0f} ms, "
          f"raw etcd {r['fanout_etcd_machine_ms']:.0f} ms; over {cores} cores at best "
          f"{r['fanout_api_machine_ms'] / cores:.0f} / {r['fanout_etcd_machine_ms'] / cores:.0f} ms")
    if "fanout_http_all_p99_ms" in r:
        print(f"{int(r['fanout_http_watchers'])} watchers over the HTTP API (JSON lines), {int(r['fanout_writes'])} "
              f"writes: seen by every watcher p50 {r['fanout_http_all_p50_ms']:.0f} ms, p99 "
              f"{r['fanout_http_all_p99_ms']:.0f} ms; each delivery p50 {r['fanout_http_each_p50_ms']:.0f} ms, p99 "
              f"{r['fanout_http_each_p99_ms']:.0f} ms"
              + (f"; apiserver CPU {r['fanout_http_cpu_us']:.0f} us per delivery" if "fanout_http_cpu_us" in r else "")
              + f"; machine CPU per write {r['fanout_http_machine_ms']:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--writes", type=int, default=100,
                    help="measured writes (the p99 of 100 is the second slowest; of fewer, the slowest)")
    ap.add_argument("--gap", type=float, default=0.2, help="seconds between writes")
    ap.add_argument("--http-watchers", type=int, default=0,
                    help="also this many watches over the Kubernetes HTTP API, as kubectl and client libraries watch")
    args = ap.parse_args()
    from harness.control_plane import ControlPlane
    from harness.process import free_port
    http_args = ["--http-listen", f"127.0.0.1:{free_port()}"] if args.http_watchers else []
    with ControlPlane(apiserver_args=["--metrics-listen", "off", *http_args]) as cluster:
        print(f"etcd {cluster.etcd.url}, apiserver {cluster.apiserver.target}, cpus {os.cpu_count()}")
        r = asyncio.run(run_fanout(cluster.apiserver.target, cluster.etcd.client_port, args.watchers,
                                   args.writes, args.gap, cluster.apiserver.pid,
                                   kubeconfig=cluster.apiserver.kubeconfig,
                                   http=cluster.apiserver.http_url if args.http_watchers else "",
                                   http_watchers=args.http_watchers))
    print_fanout(r)
    print("RESULT " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
